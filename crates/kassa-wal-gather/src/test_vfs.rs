//! A VFS for tests that sits *under* the gathering VFS (feature `test-vfs`, never in a
//! production build): it passes every call to SQLite's
//! `unix` VFS, and for files under a folder a test names it can make writes to WAL files
//! fail (as `pwrite` failing with ENOSPC or EIO makes the `unix` VFS answer) and record
//! every write, sync, truncation and deletion, for the power-loss harness.
//!
//! [`install`] makes it the process's default VFS and then registers the gathering VFS over
//! it, so plain connections (the "default VFS" of the comparisons) and gathering ones both
//! go through it. It never calls `fsync` (see [`t_sync`]).

use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr};
use std::mem::size_of;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use rusqlite::ffi;

const TEST_VFS_NAME: &CStr = c"kassa-test-vfs";

/// One file-system event under a recorded folder, in the order the VFS saw them.
#[derive(Clone, Debug)]
pub enum Op {
    /// `data` written at `offset`.
    Write {
        file: String,
        offset: i64,
        data: Vec<u8>,
    },
    /// The file's content so far is durable.
    Sync { file: String },
    /// The file cut to `size` bytes.
    Truncate { file: String, size: i64 },
    /// The file deleted.
    Delete { file: String },
}

/// A fault armed for one folder: once `skip` more WAL writes succeeded, the next `count`
/// fail with `code`, and later ones succeed again (space was freed, the device recovered).
#[derive(Clone, Copy, Debug)]
struct Fault {
    skip: u64,
    count: u64,
    code: c_int,
}

#[derive(Default)]
struct Rules {
    faults: HashMap<PathBuf, Fault>,
    recordings: HashMap<PathBuf, Vec<Op>>,
    wal_writes: HashMap<PathBuf, u64>,
    failed_writes: HashMap<PathBuf, u64>,
}

fn rules() -> std::sync::MutexGuard<'static, Rules> {
    static RULES: OnceLock<Mutex<Rules>> = OnceLock::new();
    RULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes this VFS the default and registers the gathering VFS over it (once per process).
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // SAFETY: registers a leaked copy of the unix VFS's table with our open and delete.
        unsafe { register_test_vfs() };
        crate::register().expect("the gathering VFS registers");
    });
}

/// A fresh folder under the system's temporary one, watched by this VFS ([`watch`]): its
/// files' faults are disarmed and the folder removed when it is dropped.
pub struct FaultDir(PathBuf);

impl FaultDir {
    /// Creates the folder, named after the process, a counter and `name`.
    pub fn new(name: &str) -> FaultDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kassa-wal-faults-{}-{}-{name}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        // The VFS sees the full path SQLite makes of the file name.
        let dir = dir.canonicalize().expect("a temporary folder");
        watch(&dir);
        FaultDir(dir)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The database file `test.db` in it.
    pub fn db(&self) -> PathBuf {
        self.0.join("test.db")
    }
}

impl Drop for FaultDir {
    fn drop(&mut self) {
        disarm(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Arms a fault for files under `dir`: after `skip` more successful WAL writes, the next
/// `count` WAL writes fail with `code` (`SQLITE_FULL` for ENOSPC, `SQLITE_IOERR_WRITE` for
/// EIO), until [`disarm`].
pub fn arm(dir: &Path, skip: u64, count: u64, code: c_int) {
    rules()
        .faults
        .insert(dir.to_path_buf(), Fault { skip, count, code });
}

/// Disarms the fault for `dir`.
pub fn disarm(dir: &Path) {
    rules().faults.remove(dir);
}

/// Starts counting the WAL writes of files under `dir` ([`wal_writes`]).
pub fn watch(dir: &Path) {
    rules().wal_writes.entry(dir.to_path_buf()).or_default();
}

/// WAL writes that reached the `unix` VFS for files under `dir` so far.
pub fn wal_writes(dir: &Path) -> u64 {
    rules().wal_writes.get(dir).copied().unwrap_or(0)
}

/// WAL writes under `dir` that the armed fault failed.
pub fn failed_writes(dir: &Path) -> u64 {
    rules().failed_writes.get(dir).copied().unwrap_or(0)
}

/// Starts recording the events of files under `dir`.
pub fn record(dir: &Path) {
    rules().recordings.insert(dir.to_path_buf(), Vec::new());
}

/// Events recorded under `dir` so far.
pub fn recorded_len(dir: &Path) -> usize {
    rules().recordings.get(dir).map_or(0, Vec::len)
}

/// Stops recording under `dir` and returns its events.
pub fn take_recording(dir: &Path) -> Vec<Op> {
    rules().recordings.remove(dir).unwrap_or_default()
}

/// The folder of `path` that has rules, if any.
fn ruled_dir(rules: &Rules, path: &str) -> Option<PathBuf> {
    let parent = Path::new(path).parent()?;
    (rules.faults.contains_key(parent)
        || rules.recordings.contains_key(parent)
        || rules.wal_writes.contains_key(parent))
    .then(|| parent.to_path_buf())
}

#[repr(C)]
struct TestFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    path: String,
    wal: bool,
}

const INNER_OFFSET_BYTES: usize = size_of::<TestFile>().next_multiple_of(8);

static UNIX: OnceLock<usize> = OnceLock::new();

fn unix_vfs() -> *mut ffi::sqlite3_vfs {
    *UNIX.get().expect("registered") as *mut ffi::sqlite3_vfs
}

unsafe fn register_test_vfs() {
    // SAFETY: SQLite's own unix VFS, registered for the life of the process.
    unsafe {
        let unix = ffi::sqlite3_vfs_find(c"unix".as_ptr());
        assert!(!unix.is_null(), "the unix VFS exists");
        UNIX.set(unix as usize).unwrap();
        let mut vfs = *unix;
        vfs.zName = TEST_VFS_NAME.as_ptr();
        vfs.szOsFile = (INNER_OFFSET_BYTES + (*unix).szOsFile as usize) as c_int;
        vfs.pNext = ptr::null_mut();
        vfs.xOpen = Some(t_open);
        vfs.xDelete = Some(t_delete);
        let rc = ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 1);
        assert_eq!(rc, ffi::SQLITE_OK);
    }
}

unsafe extern "C" fn t_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: the same layout argument as the gathering VFS's x_open.
    unsafe {
        (*file).pMethods = ptr::null();
        let inner = file
            .cast::<u8>()
            .add(INNER_OFFSET_BYTES)
            .cast::<ffi::sqlite3_file>();
        (*inner).pMethods = ptr::null();
        let unix = unix_vfs();
        let rc = ((*unix).xOpen.unwrap())(unix, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            if let Some(close) = (*inner).pMethods.as_ref().and_then(|m| m.xClose) {
                close(inner);
            }
            return rc;
        }
        let path = if name.is_null() {
            String::new()
        } else {
            CStr::from_ptr(name).to_string_lossy().into_owned()
        };
        ptr::write(
            file.cast::<TestFile>(),
            TestFile {
                base: ffi::sqlite3_file {
                    pMethods: &TEST_METHODS,
                },
                inner,
                path,
                wal: flags & ffi::SQLITE_OPEN_WAL != 0,
            },
        );
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn t_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const std::ffi::c_char,
    sync_dir: c_int,
) -> c_int {
    // SAFETY: forwarded to the unix VFS as given.
    unsafe {
        let path = CStr::from_ptr(name).to_string_lossy().into_owned();
        let unix = unix_vfs();
        let rc = ((*unix).xDelete.unwrap())(unix, name, sync_dir);
        if rc == ffi::SQLITE_OK {
            let mut rules = rules();
            if let Some(dir) = ruled_dir(&rules, &path) {
                if let Some(ops) = rules.recordings.get_mut(&dir) {
                    ops.push(Op::Delete { file: path });
                }
            }
        }
        rc
    }
}

unsafe fn this<'f>(file: *mut ffi::sqlite3_file) -> &'f mut TestFile {
    // SAFETY: opened by t_open.
    unsafe { &mut *file.cast::<TestFile>() }
}

unsafe fn inner_methods<'f>(file: &TestFile) -> &'f ffi::sqlite3_io_methods {
    // SAFETY: the inner file opened.
    unsafe { &*(*file.inner).pMethods }
}

unsafe extern "C" fn t_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes each file once.
    unsafe {
        let this = this(file);
        let rc = (inner_methods(this).xClose.unwrap())(this.inner);
        ptr::drop_in_place(file.cast::<TestFile>());
        (*file).pMethods = ptr::null();
        rc
    }
}

unsafe extern "C" fn t_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: `buf` holds `amount` bytes (SQLite's contract).
    unsafe {
        let this = this(file);
        {
            let mut rules = rules();
            if let Some(dir) = ruled_dir(&rules, &this.path) {
                if this.wal {
                    if let Some(fault) = rules.faults.get_mut(&dir) {
                        if fault.skip == 0 && fault.count > 0 {
                            fault.count -= 1;
                            let code = fault.code;
                            *rules.failed_writes.entry(dir).or_default() += 1;
                            return code;
                        }
                        fault.skip = fault.skip.saturating_sub(1);
                    }
                    *rules.wal_writes.entry(dir.clone()).or_default() += 1;
                }
                if let Some(ops) = rules.recordings.get_mut(&dir) {
                    let data = std::slice::from_raw_parts(buf.cast::<u8>(), amount as usize);
                    ops.push(Op::Write {
                        file: this.path.clone(),
                        offset,
                        data: data.to_vec(),
                    });
                }
            }
        }
        (inner_methods(this).xWrite.unwrap())(this.inner, buf, amount, offset)
    }
}

/// Durability is what the power-loss harness models from the recorded syncs; the disk's
/// own `fsync` only made the tests wait, so it is left out.
unsafe extern "C" fn t_sync(file: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    // SAFETY: only reads the file's header.
    unsafe {
        let this = this(file);
        let rc = ffi::SQLITE_OK;
        if rc == ffi::SQLITE_OK {
            let mut rules = rules();
            if let Some(dir) = ruled_dir(&rules, &this.path) {
                if let Some(ops) = rules.recordings.get_mut(&dir) {
                    ops.push(Op::Sync {
                        file: this.path.clone(),
                    });
                }
            }
        }
        rc
    }
}

unsafe extern "C" fn t_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: forwarded as given.
    unsafe {
        let this = this(file);
        let rc = (inner_methods(this).xTruncate.unwrap())(this.inner, size);
        if rc == ffi::SQLITE_OK {
            let mut rules = rules();
            if let Some(dir) = ruled_dir(&rules, &this.path) {
                if let Some(ops) = rules.recordings.get_mut(&dir) {
                    ops.push(Op::Truncate {
                        file: this.path.clone(),
                        size,
                    });
                }
            }
        }
        rc
    }
}

macro_rules! forward {
    ($name:ident, $method:ident, $ret:ty, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: forwarded as given to the unix VFS's method.
            unsafe {
                let this = this(file);
                (inner_methods(this).$method.unwrap())(this.inner $(, $arg)*)
            }
        }
    };
}

forward!(t_read, xRead, c_int, (buf: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64));
forward!(t_file_size, xFileSize, c_int, (size: *mut ffi::sqlite3_int64));
forward!(t_lock, xLock, c_int, (level: c_int));
forward!(t_unlock, xUnlock, c_int, (level: c_int));
forward!(t_check_reserved_lock, xCheckReservedLock, c_int, (out: *mut c_int));
forward!(t_file_control, xFileControl, c_int, (op: c_int, arg: *mut c_void));
forward!(t_sector_size, xSectorSize, c_int, ());
forward!(t_device_characteristics, xDeviceCharacteristics, c_int, ());
forward!(t_shm_map, xShmMap, c_int,
    (region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void));
forward!(t_shm_lock, xShmLock, c_int, (offset: c_int, n: c_int, flags: c_int));
forward!(t_shm_barrier, xShmBarrier, (), ());
forward!(t_shm_unmap, xShmUnmap, c_int, (delete: c_int));
forward!(t_fetch, xFetch, c_int,
    (offset: ffi::sqlite3_int64, amount: c_int, out: *mut *mut c_void));
forward!(t_unfetch, xUnfetch, c_int, (offset: ffi::sqlite3_int64, page: *mut c_void));

static TEST_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(t_close),
    xRead: Some(t_read),
    xWrite: Some(t_write),
    xTruncate: Some(t_truncate),
    xSync: Some(t_sync),
    xFileSize: Some(t_file_size),
    xLock: Some(t_lock),
    xUnlock: Some(t_unlock),
    xCheckReservedLock: Some(t_check_reserved_lock),
    xFileControl: Some(t_file_control),
    xSectorSize: Some(t_sector_size),
    xDeviceCharacteristics: Some(t_device_characteristics),
    xShmMap: Some(t_shm_map),
    xShmLock: Some(t_shm_lock),
    xShmBarrier: Some(t_shm_barrier),
    xShmUnmap: Some(t_shm_unmap),
    xFetch: Some(t_fetch),
    xUnfetch: Some(t_unfetch),
};
