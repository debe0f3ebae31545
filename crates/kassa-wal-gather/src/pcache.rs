//! Process-wide SQLite settings made before the first connection (ADR 18), and a page cache
//! whose one change applies to the writers' connections only (ADR 19, 38).
//!
//! - **No memory statistics.** With them (SQLite's default), every allocation SQLite makes
//!   takes a process-wide mutex to count bytes; Kassa never reads the counts.
//! - **A page cache that keeps its highest key honest.** When `balance_nonroot` puts
//!   rebalanced B-tree pages into ascending order it parks a page under a temporary key,
//!   the database's lock page (`PENDING_BYTE` / page size + 1), for the length of three
//!   calls. The default page cache remembers that key as its highest ever, so the
//!   truncation at the end of every later transaction finds keys above the file's size and
//!   walks its whole hash table: ~9% of the wallet writer's samples with 10,000 players
//!   (docs/perf-log.md, notes 22 and 31). This cache passes every call to the default one
//!   (`pcache1`) and changes only that key, to 0, which no page of a database ever has.
//!   Nothing else sees the difference: SQLite never reads the lock page, the parked page
//!   leaves the key again within the same `balance_nonroot` call, and a truncation that
//!   would discard the lock page's key discards key 0 too.
//!
//! SQLite takes a page cache only process-wide (`SQLITE_CONFIG_PCACHE2`), so the layer is
//! installed for every connection, but only the caches of Kassa's two writer connections
//! remap the key; every other cache is the default cache, call for call (ADR 19, 38):
//! - the wallet writer's, created inside [`opening_writer`] (a thread-local flag, set while
//!   that connection opens on its own thread);
//! - sqlx's one writer connection (payments, payouts, players), created inside
//!   [`opening_pooled_writer`]. sqlx opens it on a worker thread of its own, which no
//!   thread-local flag reaches, so that window is process-wide and limited to threads
//!   named as sqlx names its SQLite workers. A cache of another store that sqlx happens to
//!   open in the same window parks too, which is correct, only not needed.

use std::cell::Cell;
use std::ffi::{c_int, c_uint, c_void};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The key a page parked under the lock page's number is kept under instead.
const PARKING_KEY: c_uint = 0;

/// The default page cache's methods, as SQLite handed them out.
struct DefaultCache(ffi::sqlite3_pcache_methods2);

// SAFETY: the methods table is a set of C function pointers and a context pointer that
// SQLite's own page cache shares between all threads; it is written once, then only read.
unsafe impl Send for DefaultCache {}
// SAFETY: as above; nothing writes through the table after it is stored.
unsafe impl Sync for DefaultCache {}

static DEFAULT_CACHE: OnceLock<DefaultCache> = OnceLock::new();

/// Pages parked under the lock page's key so far in this process.
static PARKED_PAGES: AtomicU64 = AtomicU64::new(0);

/// How many times a page has been parked under the lock page's key (and kept under
/// [`PARKING_KEY`] instead) in this process: shows that B-tree rebalancing went through
/// this cache.
pub fn parked_pages() -> u64 {
    PARKED_PAGES.load(Ordering::Relaxed)
}

thread_local! {
    /// Set while [`opening_writer`] runs on this thread.
    static OPENING_WRITER: Cell<bool> = const { Cell::new(false) };
}

/// Runs `open` with the page caches SQLite creates meanwhile on this thread marked as the
/// wallet writer's: only those park the lock page's key elsewhere. Open the writer's
/// connection, set its page size and read its schema inside it (SQLite makes the cache
/// again once it learns the file's page size).
pub fn opening_writer<T>(open: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            OPENING_WRITER.with(|flag| flag.set(self.0));
        }
    }
    let _reset = Reset(OPENING_WRITER.with(|flag| flag.replace(true)));
    open()
}

/// How sqlx names the thread each of its SQLite connections runs on.
const SQLX_WORKER_THREAD_PREFIX: &str = "sqlx-sqlite-worker";

/// Pooled writer connections being opened now ([`opening_pooled_writer`]).
static OPENING_POOLED_WRITERS: AtomicUsize = AtomicUsize::new(0);

/// Runs `open` (the connecting of sqlx's writer pool) with the page caches that sqlx's
/// SQLite worker threads create meanwhile marked as a writer's: only those, and the wallet
/// writer's ([`opening_writer`]), park the lock page's key elsewhere. Keep the pool from
/// replacing its connection later (no idle timeout, no maximum lifetime): a connection
/// opened outside the window is correct but walks its cache at every commit again.
pub async fn opening_pooled_writer<F: Future>(open: F) -> F::Output {
    struct Closing;
    impl Drop for Closing {
        fn drop(&mut self) {
            OPENING_POOLED_WRITERS.fetch_sub(1, Ordering::SeqCst);
        }
    }
    OPENING_POOLED_WRITERS.fetch_add(1, Ordering::SeqCst);
    let _closing = Closing;
    open.await
}

/// Whether a cache created now, on this thread, belongs to a writer connection.
fn creating_writer_cache() -> bool {
    OPENING_WRITER.with(Cell::get)
        || (OPENING_POOLED_WRITERS.load(Ordering::SeqCst) > 0
            && std::thread::current()
                .name()
                .is_some_and(|name| name.starts_with(SQLX_WORKER_THREAD_PREFIX)))
}

/// Where SQLite's lock byte sits in database files (`PENDING_BYTE`, 1 GiB unless a test
/// moved it with `SQLITE_TESTCTRL_PENDING_BYTE`); the page that holds it is never used.
fn pending_byte() -> c_uint {
    // SAFETY: with 0 as its argument, this test control only reads SQLite's global.
    let byte = unsafe { ffi::sqlite3_test_control(ffi::SQLITE_TESTCTRL_PENDING_BYTE, 0 as c_uint) };
    c_uint::try_from(byte).unwrap_or(0x4000_0000)
}

/// One page cache: the default cache's, and the key its lock page has; `parks` is false
/// for every cache but the writers', which then passes every key through.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    lock_page_key: c_uint,
    parks: bool,
}

impl Cache {
    fn key(&self, key: c_uint) -> c_uint {
        if self.parks && key == self.lock_page_key {
            PARKING_KEY
        } else {
            key
        }
    }
}

/// Applies the settings above. Call it before anything in the process opens a SQLite
/// connection: SQLite takes such settings only before it initialises, and answers
/// `SQLITE_MISUSE` after. Later calls return the first call's result.
pub fn tune_process() -> Result<(), c_int> {
    static TUNED: OnceLock<c_int> = OnceLock::new();
    // SAFETY: runs once (OnceLock); `tune_once` only calls `sqlite3_config` with the
    // argument types each option documents.
    crate::sqlite_result(*TUNED.get_or_init(|| unsafe { tune_once() }))
}

/// # Safety
/// Must run at most once per process, before SQLite initialises (it checks that itself).
unsafe fn tune_once() -> c_int {
    // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int.
    let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let mut default = ffi::sqlite3_pcache_methods2 {
        iVersion: 0,
        pArg: std::ptr::null_mut(),
        xInit: None,
        xShutdown: None,
        xCreate: None,
        xCachesize: None,
        xPagecount: None,
        xFetch: None,
        xUnpin: None,
        xRekey: None,
        xTruncate: None,
        xDestroy: None,
        xShrink: None,
    };
    // SAFETY: SQLITE_CONFIG_GETPCACHE2 fills the methods table it is given.
    let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, &mut default) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    if DEFAULT_CACHE.set(DefaultCache(default)).is_err() {
        return ffi::SQLITE_MISUSE;
    }
    let ours = ffi::sqlite3_pcache_methods2 {
        iVersion: 1,
        pArg: std::ptr::null_mut(),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        xCreate: Some(x_create),
        xCachesize: Some(x_cachesize),
        xPagecount: Some(x_pagecount),
        xFetch: Some(x_fetch),
        xUnpin: Some(x_unpin),
        xRekey: Some(x_rekey),
        xTruncate: Some(x_truncate),
        xDestroy: Some(x_destroy),
        xShrink: Some(x_shrink),
    };
    // SAFETY: SQLITE_CONFIG_PCACHE2 copies the methods table it is given.
    unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &ours) }
}

fn default_cache() -> &'static ffi::sqlite3_pcache_methods2 {
    // Set before our methods are handed to SQLite, so before any of them can run.
    &DEFAULT_CACHE
        .get()
        .expect("the default page cache is stored before ours is installed")
        .0
}

/// The [`Cache`] behind a cache pointer SQLite hands back.
///
/// # Safety
/// `cache` must come from [`x_create`] and not yet have been given to [`x_destroy`].
unsafe fn cache<'c>(cache: *mut ffi::sqlite3_pcache) -> &'c Cache {
    // SAFETY: x_create made it from a Box<Cache>, which lives until x_destroy.
    unsafe { &*cache.cast::<Cache>() }
}

unsafe extern "C" fn x_init(_arg: *mut c_void) -> c_int {
    let default = default_cache();
    match default.xInit {
        // SAFETY: the default cache's own init, with its own context.
        Some(init) => unsafe { init(default.pArg) },
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn x_shutdown(_arg: *mut c_void) {
    let default = default_cache();
    if let Some(shutdown) = default.xShutdown {
        // SAFETY: the default cache's own shutdown, with its own context.
        unsafe { shutdown(default.pArg) }
    }
}

unsafe extern "C" fn x_create(
    page_size: c_int,
    extra_size: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let Some(create) = default_cache().xCreate else {
        return std::ptr::null_mut();
    };
    // SAFETY: the arguments SQLite gave, passed on unchanged.
    let inner = unsafe { create(page_size, extra_size, purgeable) };
    if inner.is_null() {
        return inner;
    }
    // SQLite's page sizes are powers of two from 512 to 65,536.
    let lock_page_key = pending_byte() / c_uint::try_from(page_size.max(1)).unwrap_or(1) + 1;
    Box::into_raw(Box::new(Cache {
        inner,
        lock_page_key,
        parks: creating_writer_cache(),
    }))
    .cast()
}

unsafe extern "C" fn x_cachesize(cache_ptr: *mut ffi::sqlite3_pcache, pages: c_int) {
    if let Some(cachesize) = default_cache().xCachesize {
        // SAFETY: SQLite passes a cache from x_create; the inner one is the default's.
        unsafe { cachesize(cache(cache_ptr).inner, pages) }
    }
}

unsafe extern "C" fn x_pagecount(cache_ptr: *mut ffi::sqlite3_pcache) -> c_int {
    match default_cache().xPagecount {
        // SAFETY: as in x_cachesize.
        Some(pagecount) => unsafe { pagecount(cache(cache_ptr).inner) },
        None => 0,
    }
}

unsafe extern "C" fn x_fetch(
    cache_ptr: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    // SAFETY: as in x_cachesize.
    let cache = unsafe { cache(cache_ptr) };
    match default_cache().xFetch {
        // SAFETY: the default cache's fetch on its own cache, with the key mapped.
        Some(fetch) => unsafe { fetch(cache.inner, cache.key(key), create) },
        None => std::ptr::null_mut(),
    }
}

unsafe extern "C" fn x_unpin(
    cache_ptr: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    if let Some(unpin) = default_cache().xUnpin {
        // SAFETY: as in x_cachesize; the page came from the default cache's fetch.
        unsafe { unpin(cache(cache_ptr).inner, page, discard) }
    }
}

unsafe extern "C" fn x_rekey(
    cache_ptr: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old_key: c_uint,
    new_key: c_uint,
) {
    // SAFETY: as in x_cachesize.
    let cache = unsafe { cache(cache_ptr) };
    if cache.parks && new_key == cache.lock_page_key {
        PARKED_PAGES.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(rekey) = default_cache().xRekey {
        // SAFETY: the page is under the mapped old key in the default cache.
        unsafe { rekey(cache.inner, page, cache.key(old_key), cache.key(new_key)) }
    }
}

unsafe extern "C" fn x_truncate(cache_ptr: *mut ffi::sqlite3_pcache, limit: c_uint) {
    // SAFETY: as in x_cachesize.
    let cache = unsafe { cache(cache_ptr) };
    let default = default_cache();
    if cache.parks && limit <= cache.lock_page_key {
        // The default cache discards every key at or above `limit`, the lock page's too; a
        // page parked under key 0 instead goes back under the lock page's key first, so it
        // is discarded with the others, as it would be in the default cache.
        if let (Some(fetch), Some(rekey)) = (default.xFetch, default.xRekey) {
            // SAFETY: the default cache's own calls on its own cache; a fetch that must not
            // create returns null or a page of that cache, which rekey then moves.
            unsafe {
                let parked = fetch(cache.inner, PARKING_KEY, 0);
                if !parked.is_null() {
                    rekey(cache.inner, parked, PARKING_KEY, cache.lock_page_key);
                }
            }
        }
    }
    if let Some(truncate) = default.xTruncate {
        // SAFETY: as in x_cachesize.
        unsafe { truncate(cache.inner, limit) }
    }
}

unsafe extern "C" fn x_destroy(cache_ptr: *mut ffi::sqlite3_pcache) {
    // SAFETY: SQLite destroys each cache from x_create once and uses it no more; the Box
    // is taken back here.
    let cache = unsafe { Box::from_raw(cache_ptr.cast::<Cache>()) };
    if let Some(destroy) = default_cache().xDestroy {
        // SAFETY: the default cache's own destroy, once, for its own cache.
        unsafe { destroy(cache.inner) }
    }
}

unsafe extern "C" fn x_shrink(cache_ptr: *mut ffi::sqlite3_pcache) {
    if let Some(shrink) = default_cache().xShrink {
        // SAFETY: as in x_cachesize.
        unsafe { shrink(cache(cache_ptr).inner) }
    }
}
