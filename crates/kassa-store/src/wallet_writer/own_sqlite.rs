//! The wallet writer's own SQLite connection, and what happens after an I/O error on it
//! (ADR 35).
//!
//! Through the WAL shim a failed write leaves the connection answering
//! `SQLITE_IOERR_WRITE` until it is closed (ADR 19); a plain connection recovers when its
//! transaction has rolled back, but a fresh one does no harm. So a batch that fails with
//! an I/O error (or a full disk) is answered with it, the connection is dropped, and it is
//! opened again, with the same pragmas and tuning, before the next batch. When that fails,
//! batches are refused at once with [`StoreError::WriterReopening`] until the next try, after
//! a backoff that doubles from [`REOPEN_BACKOFF_MIN`] to [`REOPEN_BACKOFF_MAX`]. Both errors
//! answer 503 `database_unavailable`: SQLite rolled the batch back, and every wallet call
//! is safe to retry (replays by `txn_id`). The outage is logged when it starts and when a
//! batch commits again, not once per batch.

use std::time::{Duration, Instant};

use super::TurnKeeper;
use crate::sqlite_writer::SqliteWriter;
use crate::{Store, StoreError};

/// Wait after the first failed reopen; doubled after each further one.
pub(super) const REOPEN_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest wait between two reopens.
pub(super) const REOPEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The connection (none while it is being reopened) and the write turn it commits in.
pub(super) struct OwnSqlite {
    writer: Option<SqliteWriter>,
    pub(super) turn: TurnKeeper,
    outage: Option<Outage>,
}

/// Since an I/O error dropped the connection, until a batch commits again.
struct Outage {
    since: Instant,
    reopen_failures: u32,
    next_reopen: Instant,
}

impl OwnSqlite {
    pub(super) fn new(writer: SqliteWriter) -> OwnSqlite {
        OwnSqlite {
            writer: Some(writer),
            turn: TurnKeeper::default(),
            outage: None,
        }
    }

    /// The connection for the next batch, opened again first if an I/O error dropped it,
    /// and the write turn.
    pub(super) fn connection(
        &mut self,
        store: &Store,
    ) -> Result<(&mut SqliteWriter, &mut TurnKeeper), StoreError> {
        if self.writer.is_none() {
            self.reopen(store, Instant::now())?;
        }
        match &mut self.writer {
            Some(writer) => Ok((writer, &mut self.turn)),
            None => Err(StoreError::WriterReopening),
        }
    }

    fn reopen(&mut self, store: &Store, now: Instant) -> Result<(), StoreError> {
        let outage = self.outage.get_or_insert_with(|| Outage::starting(now));
        if now < outage.next_reopen {
            return Err(StoreError::WriterReopening);
        }
        match store.sqlite_writer() {
            Some(Ok(writer)) => {
                self.writer = Some(writer);
                Ok(())
            }
            failed => {
                outage.reopen_failures += 1;
                outage.next_reopen = now + reopen_backoff(outage.reopen_failures);
                if let Some(Err(error)) = failed {
                    tracing::debug!(%error, cause = ?std::error::Error::source(&error),
                        failures = outage.reopen_failures, "wallet writer cannot reopen its SQLite connection yet");
                }
                Err(StoreError::WriterReopening)
            }
        }
    }

    /// Notes a batch's result: an I/O error drops the connection (and starts an outage,
    /// logged once); a commit ends the outage (logged once).
    pub(super) fn after_batch<T>(&mut self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => {
                if let Some(outage) = self.outage.take() {
                    tracing::warn!(
                        outage_ms = outage.since.elapsed().as_millis() as u64,
                        reopen_failures = outage.reopen_failures,
                        "wallet writer's SQLite connection reopened; batches commit again"
                    );
                }
            }
            Err(error) if error.is_sqlite_io_failure() => {
                // Dropping the connection closes it: a failed WAL file still closes its
                // descriptor (kassa-wal-gather), and SQLite has rolled the batch back.
                self.writer = None;
                if self.outage.is_none() {
                    tracing::error!(
                        %error,
                        cause = ?std::error::Error::source(error),
                        "wallet writer's SQLite connection failed with an I/O error; it is \
                         reopened before the next batch, calls answer 503 until one commits"
                    );
                    self.outage = Some(Outage::starting(Instant::now()));
                }
            }
            Err(_) => {}
        }
    }
}

impl Outage {
    fn starting(now: Instant) -> Outage {
        Outage {
            since: now,
            reopen_failures: 0,
            next_reopen: now,
        }
    }
}

/// The wait before the next reopen after `failures` failed ones.
pub(super) fn reopen_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    REOPEN_BACKOFF_MIN
        .saturating_mul(1 << doublings)
        .min(REOPEN_BACKOFF_MAX)
}

/// The errors the calls of a batch get when the writer's own SQLite connection failed
/// with an I/O error or is being reopened: the same error for each, since split into
/// single calls each would only meet it again. `None` for any other error.
pub(super) fn connection_failure_for_each(
    error: &StoreError,
    calls: usize,
) -> Option<Vec<StoreError>> {
    let copy = || match error {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, message)) => {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(*failure, message.clone()))
        }
        _ => StoreError::WriterReopening,
    };
    let is_connection_failure =
        error.is_sqlite_io_failure() || matches!(error, StoreError::WriterReopening);
    is_connection_failure.then(|| (0..calls).map(|_| copy()).collect())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::testing::{migrated_store, TestBackend};

    #[test]
    fn the_backoff_doubles_up_to_its_limit() {
        assert_eq!(reopen_backoff(1), REOPEN_BACKOFF_MIN);
        assert_eq!(reopen_backoff(2), REOPEN_BACKOFF_MIN * 2);
        assert_eq!(reopen_backoff(4), REOPEN_BACKOFF_MIN * 8);
        assert_eq!(reopen_backoff(8), REOPEN_BACKOFF_MAX);
        assert_eq!(reopen_backoff(u32::MAX), REOPEN_BACKOFF_MAX);
    }

    fn io_error() -> Result<(), StoreError> {
        Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_WRITE),
            None,
        )))
    }

    /// Puts a folder in `path`'s place, which SQLite cannot open, and returns where the
    /// database went.
    fn hide_database(path: &Path) -> PathBuf {
        let hidden = path.with_extension("hidden");
        std::fs::rename(path, &hidden).unwrap();
        std::fs::create_dir(path).unwrap();
        hidden
    }

    /// An I/O error drops the connection; a reopen that fails refuses batches without
    /// trying again until the backoff has passed; the next try reopens, and a commit ends
    /// the outage.
    #[tokio::test]
    async fn a_failed_reopen_waits_for_its_backoff() {
        let store = migrated_store(TestBackend::Sqlite).await.unwrap();
        let path = PathBuf::from(store.sqlite_path.clone().unwrap());
        let mut own = OwnSqlite::new(store.sqlite_writer().unwrap().unwrap());
        assert!(own.connection(&store).is_ok());

        own.after_batch(&io_error());
        assert!(own.writer.is_none(), "an I/O error drops the connection");
        let hidden = hide_database(&path);
        assert!(matches!(
            own.connection(&store),
            Err(StoreError::WriterReopening)
        ));
        let outage = own.outage.as_ref().unwrap();
        assert_eq!(outage.reopen_failures, 1);
        assert!(outage.next_reopen > Instant::now());

        // Within the backoff the database is not even tried: it is back, yet refused.
        std::fs::remove_dir(&path).unwrap();
        std::fs::rename(&hidden, &path).unwrap();
        assert!(matches!(
            own.connection(&store),
            Err(StoreError::WriterReopening)
        ));
        assert_eq!(own.outage.as_ref().unwrap().reopen_failures, 1);

        tokio::time::sleep(REOPEN_BACKOFF_MIN * 2).await;
        assert!(own.connection(&store).is_ok(), "reopened after the backoff");
        assert!(
            own.outage.is_some(),
            "the outage lasts until a batch commits"
        );
        own.after_batch(&Ok(()));
        assert!(own.outage.is_none());
    }
}
