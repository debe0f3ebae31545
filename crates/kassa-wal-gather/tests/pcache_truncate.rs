//! The writer's page cache, called as SQLite's pager calls it: a truncation that discards
//! the lock page's key discards a page parked under it too, as the default cache does.

use std::ffi::c_int;

use rusqlite::ffi;

#[test]
fn a_truncation_below_the_lock_page_discards_the_parked_page() {
    assert_eq!(kassa_wal_gather::tune_process(), Ok(()));
    // SAFETY: every field is an integer, a pointer or an `Option` of a function pointer, for
    // which all-zero bytes are 0, null and `None`; GETPCACHE2 fills the table below.
    let mut methods: ffi::sqlite3_pcache_methods2 = unsafe { std::mem::zeroed() };
    // SAFETY: before SQLite initialises, GETPCACHE2 fills the table with the installed
    // cache (ours); initialising then calls its xInit. Pages are used as the pager would.
    unsafe {
        assert_eq!(
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, &mut methods),
            ffi::SQLITE_OK
        );
        assert_eq!(ffi::sqlite3_initialize(), ffi::SQLITE_OK);
        let page_size: c_int = 1024;
        let lock_page = (0x4000_0000 / page_size + 1) as u32;
        let cache =
            kassa_wal_gather::opening_writer(|| (methods.xCreate.unwrap())(page_size, 64, 1));
        assert!(!cache.is_null());
        // Room for unpinned pages to stay cached, as the pager's cache_size gives.
        (methods.xCachesize.unwrap())(cache, 100);
        let fetch = methods.xFetch.unwrap();
        // balance_nonroot parks page 7 under the lock page's key, then releases it.
        let page = fetch(cache, 7, 2);
        assert!(!page.is_null());
        (methods.xRekey.unwrap())(cache, page, 7, lock_page);
        (methods.xUnpin.unwrap())(cache, page, 0);
        assert_eq!(fetch(cache, lock_page, 0), page, "the parked page is found");
        (methods.xUnpin.unwrap())(cache, page, 0);
        assert_eq!(kassa_wal_gather::parked_pages(), 1);
        // The pager truncates to 3 pages: every key from 4 up goes, the lock page's too.
        (methods.xTruncate.unwrap())(cache, 4);
        assert!(
            fetch(cache, lock_page, 0).is_null(),
            "the parked page survived"
        );
        assert_eq!((methods.xPagecount.unwrap())(cache), 0);
        (methods.xDestroy.unwrap())(cache);
    }
}
