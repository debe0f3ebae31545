//! The SQLite shims that need `unsafe`: a VFS that writes a commit's WAL frames with one
//! system call (ADR 16, this module), and a page cache that keeps B-tree rebalancing from
//! costing a walk of the whole cache at every commit ([`tune_process`], ADR 18).
//!
//! SQLite writes each WAL frame as two `pwrite`s, its 24-byte header and its page. A wallet
//! batch with 10,000 players dirties ~150 pages, so its commit made ~300 system calls before
//! its `fsync`, and `pwrite` was a quarter to a third of the wallet writer's CPU (docs/perf-log.md,
//! note 27). This VFS sits on top of the default one (`unix`) and changes one thing: writes
//! to a WAL file that follow each other in the file are gathered in memory and reach the
//! file as one `pwrite`, before anything could need them there.
//!
//! When the gathered bytes are written:
//! - before the WAL file is synced, read, truncated, sized, closed or sent a file control,
//!   so SQLite's own view of the file never differs from what it wrote;
//! - before a write that does not follow the gathered ones, so the writes reach the file
//!   in the order SQLite made them (a rewritten frame still lands after its first version);
//! - before any lock, unlock or barrier on the database's shared memory (the WAL index),
//!   through the database file it belongs to. A commit becomes visible to other
//!   connections only when its writer updates the WAL index header, which it does around
//!   such a barrier, and the write lock is released the same way, so no other connection
//!   can read or overwrite frames this one still holds.
//!
//! When such a write fails (ADR 19), the file is failed for good: that call and every later
//! call on it answer `SQLITE_IOERR_WRITE` (the write itself may answer what the default VFS
//! said, e.g. `SQLITE_FULL`), until SQLite closes it. SQLite handles an I/O error from any
//! call by rolling back the whole transaction, so a write it was told had succeeded can
//! never be part of a commit: the commit's own sync (or any read) reports the failure
//! first. A read never answers `SQLITE_FULL`, which SQLite would take as "roll back this
//! statement only". Unlocks always reach the default VFS, whatever the flush said: SQLite
//! ignores an unlock's result, and a lock that stays taken blocks every other writer.
//!
//! Gathering needs `synchronous = FULL` (or EXTRA) in normal locking mode, seen by the
//! database file as `PRAGMA` statements run (`SQLITE_FCNTL_PRAGMA`). Then every commit syncs
//! its WAL before it updates the index, so the barrier finds nothing left to write and a
//! failed write always reaches SQLite before the commit is acknowledged. Under any other
//! setting (or before the connection has set one) the WAL's writes pass straight through,
//! and the log says so once.
//!
//! A WAL file is gathered only when SQLite names the database file it belongs to and that
//! file was opened through this VFS too; anything else passes straight through.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::mem::size_of;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use rusqlite::ffi;

mod pcache;
pub use pcache::{opening_pooled_writer, opening_writer, parked_pages, tune_process};

#[cfg(feature = "test-vfs")]
pub mod test_vfs;

/// The name to open a connection with (`Connection::open_with_flags_and_vfs`).
pub const VFS_NAME: &str = "kassa-wal-gather";
const VFS_NAME_C: &CStr = c"kassa-wal-gather";

/// Most bytes gathered before they are written anyway: 124 KiB, because the default VFS
/// writes at most 128 KiB - 1 per call (`seekAndWriteFd` masks the length to 17 bits) and
/// answers a longer write with `SQLITE_FULL`. A wallet batch of a few hundred KiB of frames
/// (10,000 players) takes a few writes.
const PENDING_BYTES_MAX: usize = 124 * 1024;

/// Registers the VFS over the default one (once per process; later calls return the first
/// call's result). It is not made the default: only connections that name [`VFS_NAME`] use it.
/// Tests that want a VFS of their own below it (fault injection, a power-loss recorder)
/// make theirs the default before the first call.
pub fn register() -> Result<(), c_int> {
    static REGISTERED: OnceLock<c_int> = OnceLock::new();
    // SAFETY: runs once (OnceLock), and `register_once` only reads the default VFS that
    // SQLite hands out and registers a leaked, never freed, copy of it.
    sqlite_result(*REGISTERED.get_or_init(|| unsafe { register_once() }))
}

/// A SQLite result code as a `Result`: `Err` holds any code but `SQLITE_OK`.
fn sqlite_result(rc: c_int) -> Result<(), c_int> {
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rc)
    }
}

/// The calls that write what is gathered before they do their own work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushPoint {
    /// A write that does not follow the gathered bytes, or would overflow the buffer.
    Write,
    /// A read of the WAL file.
    Read,
    /// A sync of the WAL file.
    Sync,
    /// A truncation of the WAL file.
    Truncate,
    /// A size query of the WAL file.
    FileSize,
    /// A file control on the WAL file or its database file.
    FileControl,
    /// A lock taken on the database's shared memory.
    ShmLock,
    /// A lock released on the database's shared memory.
    ShmUnlock,
    /// A memory barrier on the database's shared memory.
    Barrier,
    /// The WAL file or its database file being closed.
    Close,
}

impl FlushPoint {
    /// Every flush point, in declaration order.
    pub const ALL: [FlushPoint; 10] = [
        FlushPoint::Write,
        FlushPoint::Read,
        FlushPoint::Sync,
        FlushPoint::Truncate,
        FlushPoint::FileSize,
        FlushPoint::FileControl,
        FlushPoint::ShmLock,
        FlushPoint::ShmUnlock,
        FlushPoint::Barrier,
        FlushPoint::Close,
    ];
}

/// Failed flushes per [`FlushPoint`] in this process, counted only when a write fails.
static FAILED_FLUSHES: [AtomicU64; 10] = [const { AtomicU64::new(0) }; 10];

/// How many flushes at `point` failed in this process: lets fault-injection tests show
/// which call a failure reached SQLite through.
pub fn failed_flushes(point: FlushPoint) -> u64 {
    FAILED_FLUSHES[point as usize].load(Ordering::Relaxed)
}

/// Logs, once per process, that a WAL file is written through because its connection's
/// settings do not allow gathering.
fn refuse_gathering_once() {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "kassa-wal-gather: a connection does not run `synchronous = FULL` in normal \
             locking mode; its WAL writes pass through ungathered (ADR 19)"
        );
    }
}

/// What SQLite allocates for each open file of this VFS (`szOsFile` bytes): this header,
/// then the inner VFS's own file object.
#[repr(C)]
struct GatherFile {
    /// Must come first: SQLite sees a `GatherFile` as a `sqlite3_file`.
    base: ffi::sqlite3_file,
    /// The inner VFS's file, right after this header in the same allocation.
    inner: *mut ffi::sqlite3_file,
    /// Bytes written by SQLite and not yet by the file, starting at `pending_offset`.
    pending: Vec<u8>,
    pending_offset: i64,
    /// A gathered write failed: every later call answers `SQLITE_IOERR_WRITE` (sticky).
    failed: bool,
    /// A database file: its open WAL file, flushed before its shared-memory locks/barriers.
    wal: *mut GatherFile,
    /// A database file: the connection last set `synchronous` to FULL or EXTRA.
    synchronous_full: bool,
    /// A database file: the connection set `locking_mode = EXCLUSIVE` (no shared memory).
    exclusive_locking: bool,
    /// A WAL file: the database file it belongs to. Writes are gathered only while this is
    /// set, since that file's shared-memory calls are what flush them in time.
    db: *mut GatherFile,
}

/// The offset of the inner VFS's file object within a [`GatherFile`] allocation, kept at
/// 8-byte alignment as SQLite's own allocations are.
const INNER_OFFSET_BYTES: usize = size_of::<GatherFile>().next_multiple_of(8);

/// The VFS this one wraps.
fn inner_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: `vfs` is a VFS registered by `register_once`, whose `pAppData` is the inner
    // VFS; SQLite never frees registered VFS objects.
    unsafe { (*vfs).pAppData.cast() }
}

/// # Safety
/// Call once; SQLite must be usable (it initialises itself on `sqlite3_vfs_find`).
unsafe fn register_once() -> c_int {
    // SAFETY: a null name asks SQLite for its default VFS, which lives as long as the process.
    let inner = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
    if inner.is_null() {
        return ffi::SQLITE_ERROR;
    }
    // SAFETY: `inner` was just checked non-null and points at a registered VFS.
    let inner_ref = unsafe { &*inner };
    let Ok(sz_os_file) = c_int::try_from(INNER_OFFSET_BYTES + inner_ref.szOsFile as usize) else {
        return ffi::SQLITE_ERROR;
    };
    let vfs = Box::new(ffi::sqlite3_vfs {
        // Every method up to version 3 is forwarded when the inner VFS has it.
        iVersion: inner_ref.iVersion.min(3),
        szOsFile: sz_os_file,
        mxPathname: inner_ref.mxPathname,
        pNext: ptr::null_mut(),
        zName: VFS_NAME_C.as_ptr(),
        pAppData: inner.cast(),
        xOpen: Some(x_open),
        xDelete: inner_ref.xDelete.and(Some(vfs_calls::x_delete)),
        xAccess: inner_ref.xAccess.and(Some(vfs_calls::x_access)),
        xFullPathname: inner_ref
            .xFullPathname
            .and(Some(vfs_calls::x_full_pathname)),
        xDlOpen: inner_ref.xDlOpen.and(Some(vfs_calls::x_dl_open)),
        xDlError: inner_ref.xDlError.and(Some(vfs_calls::x_dl_error)),
        xDlSym: inner_ref.xDlSym.and(Some(vfs_calls::x_dl_sym)),
        xDlClose: inner_ref.xDlClose.and(Some(vfs_calls::x_dl_close)),
        xRandomness: inner_ref.xRandomness.and(Some(vfs_calls::x_randomness)),
        xSleep: inner_ref.xSleep.and(Some(vfs_calls::x_sleep)),
        xCurrentTime: inner_ref.xCurrentTime.and(Some(vfs_calls::x_current_time)),
        xGetLastError: inner_ref
            .xGetLastError
            .and(Some(vfs_calls::x_get_last_error)),
        xCurrentTimeInt64: inner_ref
            .xCurrentTimeInt64
            .and(Some(vfs_calls::x_current_time_int64)),
        xSetSystemCall: inner_ref
            .xSetSystemCall
            .and(Some(vfs_calls::x_set_system_call)),
        xGetSystemCall: inner_ref
            .xGetSystemCall
            .and(Some(vfs_calls::x_get_system_call)),
        xNextSystemCall: inner_ref
            .xNextSystemCall
            .and(Some(vfs_calls::x_next_system_call)),
    });
    // SAFETY: the VFS object is leaked, so it outlives every connection that uses it, as
    // SQLite requires; `0` keeps the default VFS the default.
    unsafe { ffi::sqlite3_vfs_register(Box::leak(vfs), 0) }
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let inner_vfs = inner_vfs(vfs);
    let gather_file = file.cast::<GatherFile>();
    // SAFETY: SQLite hands us `szOsFile` bytes at `file`, which covers the header and the
    // inner VFS's file object at INNER_OFFSET_BYTES; the header is written before use.
    unsafe {
        (*file).pMethods = ptr::null();
        let inner = file
            .cast::<u8>()
            .add(INNER_OFFSET_BYTES)
            .cast::<ffi::sqlite3_file>();
        (*inner).pMethods = ptr::null();
        let Some(open) = (*inner_vfs).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        let rc = open(inner_vfs, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            // SQLite closes only files whose pMethods is set; ours stays null, so close the
            // inner file here if its VFS left it half open.
            if let Some(close) = (*inner).pMethods.as_ref().and_then(|m| m.xClose) {
                close(inner);
            }
            return rc;
        }
        let db = if flags & ffi::SQLITE_OPEN_WAL != 0 && !name.is_null() {
            database_of(name)
        } else {
            ptr::null_mut()
        };
        ptr::write(
            gather_file,
            GatherFile {
                base: ffi::sqlite3_file {
                    pMethods: &GATHER_METHODS,
                },
                inner,
                pending: Vec::new(),
                pending_offset: 0,
                failed: false,
                wal: ptr::null_mut(),
                synchronous_full: false,
                exclusive_locking: false,
                db,
            },
        );
        if !db.is_null() {
            (*db).wal = gather_file;
        }
    }
    ffi::SQLITE_OK
}

/// The database file a WAL file named `wal_name` belongs to, if it is one of ours.
///
/// # Safety
/// `wal_name` must be the name SQLite passed to `xOpen` for a WAL file.
unsafe fn database_of(wal_name: ffi::sqlite3_filename) -> *mut GatherFile {
    // SAFETY: SQLite documents this call for the journal and WAL names its xOpen receives.
    let db = unsafe { ffi::sqlite3_database_file_object(wal_name) };
    // SAFETY: a non-null result is the open database file object of the same connection.
    if db.is_null() || !ptr::eq(unsafe { (*db).pMethods }, &GATHER_METHODS) {
        return ptr::null_mut();
    }
    db.cast()
}

static GATHER_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};

/// The header of one of our open files.
///
/// # Safety
/// `file` must be a file SQLite opened through [`x_open`] and has not closed.
unsafe fn this<'f>(file: *mut ffi::sqlite3_file) -> &'f mut GatherFile {
    // SAFETY: per the contract, `file` starts with an initialised GatherFile, and SQLite
    // calls a file's methods from one thread at a time.
    unsafe { &mut *file.cast::<GatherFile>() }
}

/// The inner VFS's methods of `file`'s inner file.
///
/// # Safety
/// As for [`this`].
unsafe fn inner_methods<'f>(file: &GatherFile) -> &'f ffi::sqlite3_io_methods {
    // SAFETY: the inner file opened successfully (x_open), so its pMethods is set and
    // points at the inner VFS's method table, which lives as long as the VFS.
    unsafe { &*(*file.inner).pMethods }
}

/// What a call other than a write answers after a failed flush: an I/O error, which makes
/// SQLite roll back the whole transaction, never `SQLITE_FULL`, which would make it roll
/// back only the statement and keep a transaction whose pages were lost.
fn for_non_write(rc: c_int) -> c_int {
    if rc == ffi::SQLITE_OK {
        rc
    } else {
        ffi::SQLITE_IOERR_WRITE
    }
}

impl GatherFile {
    /// Writes what is gathered, in one call of the inner file's `xWrite`. Returns the inner
    /// write's result; once one failed, `SQLITE_IOERR_WRITE` for good.
    fn flush(&mut self, point: FlushPoint) -> c_int {
        if self.failed {
            return ffi::SQLITE_IOERR_WRITE;
        }
        if self.pending.is_empty() {
            return ffi::SQLITE_OK;
        }
        // The buffer is capped at PENDING_BYTES_MAX, far below c_int::MAX.
        let len = self.pending.len() as c_int;
        // SAFETY: `self` is an open file (callers hold it through `this`), and `pending`
        // is `len` initialised bytes.
        let rc = unsafe {
            match inner_methods(self).xWrite {
                Some(write) => write(
                    self.inner,
                    self.pending.as_ptr().cast(),
                    len,
                    self.pending_offset,
                ),
                None => ffi::SQLITE_IOERR_WRITE,
            }
        };
        self.pending.clear();
        if rc != ffi::SQLITE_OK {
            // SQLite was told these bytes were written; from now on it must hear an error
            // from every call, so that no commit can include them.
            self.failed = true;
            self.pending = Vec::new();
            FAILED_FLUSHES[point as usize].fetch_add(1, Ordering::Relaxed);
        }
        rc
    }

    /// Flushes this database file's WAL file, if it has one open; any failure, now or
    /// earlier, as `SQLITE_IOERR_WRITE`.
    fn flush_wal(&mut self, point: FlushPoint) -> c_int {
        if self.wal.is_null() {
            return ffi::SQLITE_OK;
        }
        // SAFETY: `wal` is set by the WAL's x_open and cleared by its x_close, so it points
        // at an open GatherFile of the same connection (and thread).
        for_non_write(unsafe { (*self.wal).flush(point) })
    }

    /// Whether this WAL file's writes may be gathered: it belongs to a database file of
    /// ours whose connection syncs every commit and uses shared memory (module docs).
    fn may_gather(&self) -> bool {
        if self.db.is_null() {
            return false;
        }
        // SAFETY: `db` is cleared by the database file's x_close before it goes away.
        let db = unsafe { &*self.db };
        let allowed = db.synchronous_full && !db.exclusive_locking;
        if !allowed {
            refuse_gathering_once();
        }
        allowed
    }

    /// Notes the settings that decide [`GatherFile::may_gather`] from a `PRAGMA` that
    /// SQLite passes to the database file (`SQLITE_FCNTL_PRAGMA`: `[error, name, value]`).
    ///
    /// # Safety
    /// `arg` must be the argument SQLite passes with `SQLITE_FCNTL_PRAGMA`.
    unsafe fn note_pragma(&mut self, arg: *mut c_void) {
        let args = arg.cast::<*const c_char>();
        // SAFETY: SQLite passes an array of three C strings; the name is never null, the
        // value is null when the pragma only reads the setting.
        let (name, value) = unsafe { (*args.add(1), *args.add(2)) };
        if name.is_null() || value.is_null() {
            return;
        }
        // SAFETY: both are NUL-terminated strings SQLite owns for the length of this call.
        let (name, value) = unsafe { (CStr::from_ptr(name), CStr::from_ptr(value)) };
        let value = value.to_string_lossy().trim().to_ascii_lowercase();
        match name.to_string_lossy().to_ascii_lowercase().as_str() {
            "synchronous" => {
                self.synchronous_full = matches!(value.as_str(), "full" | "2" | "extra" | "3")
            }
            "locking_mode" if value == "exclusive" => self.exclusive_locking = true,
            "locking_mode" if value == "normal" => self.exclusive_locking = false,
            _ => {}
        }
    }
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes only files x_open opened; the header is dropped after the last
    // use, and SQLite frees the allocation itself.
    unsafe {
        let this = this(file);
        let flushed = for_non_write(this.flush(FlushPoint::Close));
        if !this.db.is_null() {
            (*this.db).wal = ptr::null_mut();
        }
        if !this.wal.is_null() {
            // A database closed before its WAL: the WAL can no longer be published through
            // this file, so it stops gathering. A failed flush stays on the WAL (sticky).
            let wal = &mut *this.wal;
            wal.flush(FlushPoint::Close);
            wal.db = ptr::null_mut();
        }
        // The inner file is closed whatever the flush said, or its descriptor would leak.
        let closed = match inner_methods(this).xClose {
            Some(close) => close(this.inner),
            None => ffi::SQLITE_OK,
        };
        ptr::drop_in_place(file.cast::<GatherFile>());
        (*file).pMethods = ptr::null();
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: `file` is open (SQLite's contract) and `buf` holds `amount` bytes.
    unsafe {
        let this = this(file);
        let amount_bytes = usize::try_from(amount).unwrap_or(0);
        if amount_bytes == 0 || amount_bytes > PENDING_BYTES_MAX || !this.may_gather() {
            let flushed = this.flush(FlushPoint::Write);
            if flushed != ffi::SQLITE_OK {
                return flushed;
            }
            return match inner_methods(this).xWrite {
                Some(write) => write(this.inner, buf, amount, offset),
                None => ffi::SQLITE_IOERR_WRITE,
            };
        }
        let follows = !this.pending.is_empty()
            && offset == this.pending_offset + this.pending.len() as i64
            && this.pending.len() + amount_bytes <= PENDING_BYTES_MAX;
        if !follows {
            // A write answers what the inner write said (e.g. SQLITE_FULL), as the
            // default VFS's would; the file stays failed after it.
            let flushed = this.flush(FlushPoint::Write);
            if flushed != ffi::SQLITE_OK {
                return flushed;
            }
            this.pending_offset = offset;
        }
        this.pending
            .extend_from_slice(std::slice::from_raw_parts(buf.cast::<u8>(), amount_bytes));
        ffi::SQLITE_OK
    }
}

/// Forwards a file method to the inner file after writing what is gathered; a failed
/// write, now or before, answers `SQLITE_IOERR_WRITE` instead.
macro_rules! forward_after_flush {
    ($name:ident, $method:ident, $point:expr, $missing:expr, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: `file` is open (SQLite's contract); the arguments go through as given.
            unsafe {
                let this = this(file);
                let flushed = for_non_write(this.flush($point));
                if flushed != ffi::SQLITE_OK {
                    return flushed;
                }
                match inner_methods(this).$method {
                    Some(method) => method(this.inner $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

forward_after_flush!(x_read, xRead, FlushPoint::Read, ffi::SQLITE_IOERR_READ,
    (buf: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64));
forward_after_flush!(x_truncate, xTruncate, FlushPoint::Truncate, ffi::SQLITE_IOERR_TRUNCATE,
    (size: ffi::sqlite3_int64));
forward_after_flush!(x_sync, xSync, FlushPoint::Sync, ffi::SQLITE_IOERR_FSYNC, (flags: c_int));
forward_after_flush!(x_file_size, xFileSize, FlushPoint::FileSize, ffi::SQLITE_IOERR_FSTAT,
    (size: *mut ffi::sqlite3_int64));

unsafe extern "C" fn x_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: `file` is open (SQLite's contract); `arg` goes through as given.
    unsafe {
        let this = this(file);
        // SQLite ignores the result of many file controls (hints); a failure here is not
        // lost, since the WAL stays failed and the next call that matters reports it.
        let mut flushed = for_non_write(this.flush(FlushPoint::FileControl));
        if flushed == ffi::SQLITE_OK {
            flushed = this.flush_wal(FlushPoint::FileControl);
        }
        if flushed != ffi::SQLITE_OK {
            return flushed;
        }
        if op == ffi::SQLITE_FCNTL_PRAGMA && this.db.is_null() {
            this.note_pragma(arg);
        }
        match inner_methods(this).xFileControl {
            Some(method) => method(this.inner, op, arg),
            None => ffi::SQLITE_NOTFOUND,
        }
    }
}

unsafe extern "C" fn x_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: `file` is open (SQLite's contract); the arguments go through as given.
    unsafe {
        let this = this(file);
        let unlock = flags & ffi::SQLITE_SHM_UNLOCK != 0;
        let point = if unlock {
            FlushPoint::ShmUnlock
        } else {
            FlushPoint::ShmLock
        };
        let flushed = this.flush_wal(point);
        // A lock is not taken after a failed write; an unlock always happens, since SQLite
        // ignores its result and a write lock left taken would block every other writer.
        if flushed != ffi::SQLITE_OK && !unlock {
            return flushed;
        }
        let locked = match inner_methods(this).xShmLock {
            Some(lock) => lock(this.inner, offset, n, flags),
            None => ffi::SQLITE_IOERR_SHMLOCK,
        };
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            locked
        }
    }
}

/// Forwards a file method that neither reads nor writes file content.
macro_rules! forward {
    ($name:ident, $method:ident, $ret:ty, $missing:expr, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: `file` is open (SQLite's contract); the arguments go through as given.
            unsafe {
                let this = this(file);
                match inner_methods(this).$method {
                    Some(method) => method(this.inner $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

forward!(x_lock, xLock, c_int, ffi::SQLITE_IOERR_LOCK, (level: c_int));
forward!(x_unlock, xUnlock, c_int, ffi::SQLITE_IOERR_UNLOCK, (level: c_int));
forward!(x_check_reserved_lock, xCheckReservedLock, c_int, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK,
    (out: *mut c_int));
forward!(x_sector_size, xSectorSize, c_int, 4096, ());
forward!(
    x_device_characteristics,
    xDeviceCharacteristics,
    c_int,
    0,
    ()
);
forward!(x_shm_map, xShmMap, c_int, ffi::SQLITE_IOERR_SHMMAP,
    (region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void));
forward!(x_shm_unmap, xShmUnmap, c_int, ffi::SQLITE_OK, (delete: c_int));
forward!(x_fetch, xFetch, c_int, ffi::SQLITE_OK,
    (offset: ffi::sqlite3_int64, amount: c_int, out: *mut *mut c_void));
forward!(x_unfetch, xUnfetch, c_int, ffi::SQLITE_OK,
    (offset: ffi::sqlite3_int64, page: *mut c_void));

unsafe extern "C" fn x_shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: `file` is open (SQLite's contract).
    unsafe {
        let this = this(file);
        // The WAL index header is about to name frames this connection wrote; they must be
        // in the file first. With `synchronous = FULL` (the only setting that gathers) the
        // commit's sync wrote them already, so nothing is left here. SQLite cannot hear a
        // failure from a barrier; the WAL stays failed and its next call reports it.
        this.flush_wal(FlushPoint::Barrier);
        if let Some(barrier) = inner_methods(this).xShmBarrier {
            barrier(this.inner);
        }
    }
}

/// The VFS-level methods, each handed to the default VFS unchanged.
mod vfs_calls {
    use super::*;

    macro_rules! forward_vfs {
        ($name:ident, $method:ident, $ret:ty, ($($arg:ident: $ty:ty),*)) => {
            pub(super) unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs $(, $arg: $ty)*) -> $ret {
                let inner = inner_vfs(vfs);
                // SAFETY: registered only when the default VFS has this method
                // (`register_once`), so the unwrap cannot fail; arguments go through as given.
                unsafe { ((*inner).$method.unwrap())(inner $(, $arg)*) }
            }
        };
    }

    forward_vfs!(x_delete, xDelete, c_int, (name: *const c_char, sync_dir: c_int));
    forward_vfs!(x_access, xAccess, c_int, (name: *const c_char, flags: c_int, out: *mut c_int));
    forward_vfs!(x_full_pathname, xFullPathname, c_int,
        (name: *const c_char, n_out: c_int, out: *mut c_char));
    forward_vfs!(x_dl_open, xDlOpen, *mut c_void, (name: *const c_char));
    forward_vfs!(x_dl_error, xDlError, (), (n: c_int, out: *mut c_char));
    forward_vfs!(x_dl_sym, xDlSym,
        Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>,
        (handle: *mut c_void, symbol: *const c_char));
    forward_vfs!(x_dl_close, xDlClose, (), (handle: *mut c_void));
    forward_vfs!(x_randomness, xRandomness, c_int, (n: c_int, out: *mut c_char));
    forward_vfs!(x_sleep, xSleep, c_int, (microseconds: c_int));
    forward_vfs!(x_current_time, xCurrentTime, c_int, (out: *mut f64));
    forward_vfs!(x_get_last_error, xGetLastError, c_int, (n: c_int, out: *mut c_char));
    forward_vfs!(x_current_time_int64, xCurrentTimeInt64, c_int, (out: *mut ffi::sqlite3_int64));
    forward_vfs!(x_set_system_call, xSetSystemCall, c_int,
        (name: *const c_char, call: ffi::sqlite3_syscall_ptr));
    forward_vfs!(x_get_system_call, xGetSystemCall, ffi::sqlite3_syscall_ptr, (name: *const c_char));
    forward_vfs!(x_next_system_call, xNextSystemCall, *const c_char, (name: *const c_char));
}
