//! A list file the risk features read (the IP list, the BIN list): looked at again at most
//! once a second and read again when its modification time or length changed, so an updated
//! list applies without a restart. A line that does not parse is skipped and logged with its
//! number; a file that cannot be read keeps the list read before.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often the file's modification time is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

struct Loaded<T> {
    entries: Arc<T>,
    /// The file's modification time and length when read.
    signature: Option<(SystemTime, u64)>,
    checked_at: Option<Instant>,
}

/// A list parsed into `T` by `parse`; `None` path: no list.
pub struct ListFile<T> {
    /// What the list is, for the logs.
    what: &'static str,
    path: Option<PathBuf>,
    parse: fn(&str) -> T,
    loaded: Mutex<Loaded<T>>,
}

impl<T: Default> ListFile<T> {
    /// The list at `path` (empty: none), read on first use.
    pub fn new(what: &'static str, path: &str, parse: fn(&str) -> T) -> ListFile<T> {
        ListFile {
            what,
            path: (!path.is_empty()).then(|| PathBuf::from(path)),
            parse,
            loaded: Mutex::new(Loaded {
                entries: Arc::default(),
                signature: None,
                checked_at: None,
            }),
        }
    }

    /// Whether a list is configured.
    pub fn configured(&self) -> bool {
        self.path.is_some()
    }

    /// The entries as of now (the file read again if it changed); `None` without a list.
    pub fn current(&self) -> Option<Arc<T>> {
        let path = self.path.as_ref()?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded
            .checked_at
            .is_none_or(|checked| checked.elapsed() >= CHECK_EVERY)
        {
            self.reload_if_changed(path, &mut loaded);
        }
        Some(loaded.entries.clone())
    }

    fn reload_if_changed(&self, path: &PathBuf, loaded: &mut Loaded<T>) {
        loaded.checked_at = Some(Instant::now());
        let signature = match std::fs::metadata(path) {
            Ok(meta) => meta.modified().ok().map(|modified| (modified, meta.len())),
            Err(error) => {
                tracing::warn!(list = self.what, path = %path.display(), %error, "risk list cannot be read");
                return;
            }
        };
        if signature.is_some() && signature == loaded.signature {
            return;
        }
        match std::fs::read_to_string(path) {
            Ok(text) => {
                loaded.entries = Arc::new((self.parse)(&text));
                loaded.signature = signature;
                tracing::info!(list = self.what, "risk list read");
            }
            Err(error) => {
                tracing::warn!(list = self.what, path = %path.display(), %error, "risk list cannot be read")
            }
        }
    }
}

/// The entries of a list's `text`: each line without its `#` comment, trimmed, and not
/// empty, given to `parse_line`; lines it refuses are logged (with `expected`) and skipped.
pub fn parse_lines<E>(
    text: &str,
    expected: &'static str,
    parse_line: impl Fn(&str) -> Option<E>,
) -> Vec<E> {
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Some(entry) => entries.push(entry),
            None => tracing::warn!(line = number + 1, expected, "risk list line skipped"),
        }
    }
    entries
}
