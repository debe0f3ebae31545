//! A database that is briefly unreachable is not a bug: requests are answered 503
//! `database_unavailable` with `Retry-After`, `/readyz` fails until it is back, and the
//! outage is logged once when it starts and once when it ends, not once per request.
//!
//! The state is per process (one process serves one database); a watcher
//! ([`crate::workers::spawn_database_watch`]) notices the end of an outage even when nothing
//! asks `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};

/// Seconds a client is asked to wait before retrying.
pub const RETRY_AFTER_S: u64 = 1;

static DATABASE_DOWN: AtomicBool = AtomicBool::new(false);

/// Notes that the database could not be reached; logs only the first time per outage.
pub fn database_unreachable(cause: &str) {
    if !DATABASE_DOWN.swap(true, Ordering::SeqCst) {
        tracing::error!(
            error = %cause,
            "database unreachable: answering 503 database_unavailable until it is back"
        );
    }
}

/// Notes that the database answered; logs the end of an outage once.
pub fn database_reachable() {
    if DATABASE_DOWN.swap(false, Ordering::SeqCst) {
        tracing::warn!("database reachable again");
    }
}

/// Whether an outage is under way (as last noted).
pub fn database_down() -> bool {
    DATABASE_DOWN.load(Ordering::SeqCst)
}
