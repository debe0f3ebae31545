//! A value every node reads from the database at most once per time-to-live, and at once
//! after this node changed it: the routing document and the risk rule sets (ADRs 47, 62).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

struct Cached<T> {
    value: Arc<T>,
    /// When the read that made `value` began; `None` when a change was made since.
    read_at: Option<Instant>,
}

/// The cached value; cheap to share behind an `Arc`.
pub struct Refreshed<T> {
    ttl: Duration,
    cached: RwLock<Cached<T>>,
    refreshing: tokio::sync::Mutex<()>,
    changes: AtomicU64,
}

impl<T: Default> Refreshed<T> {
    /// An empty value, read on first use.
    pub fn new(ttl: Duration) -> Refreshed<T> {
        Refreshed {
            ttl,
            cached: RwLock::new(Cached {
                value: Arc::default(),
                read_at: None,
            }),
            refreshing: tokio::sync::Mutex::default(),
            changes: AtomicU64::default(),
        }
    }
}

impl<T> Refreshed<T> {
    /// The value, read again by `refresh` (given the value known so far) first when older
    /// than the time-to-live; one read at a time.
    pub async fn get<F, Fut, E>(&self, refresh: F) -> Result<Arc<T>, E>
    where
        F: FnOnce(Arc<T>) -> Fut,
        Fut: Future<Output = Result<Arc<T>, E>>,
    {
        if let Some(fresh) = self.fresh() {
            return Ok(fresh);
        }
        let _one_read = self.refreshing.lock().await;
        if let Some(fresh) = self.fresh() {
            return Ok(fresh);
        }
        let changes_before = self.changes.load(Ordering::SeqCst);
        let began = Instant::now();
        let known = self
            .cached
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .value
            .clone();
        let value = refresh(known).await?;
        // A change made during the read may be missing from it: read again next time.
        let unchanged = self.changes.load(Ordering::SeqCst) == changes_before;
        *self.cached.write().unwrap_or_else(|e| e.into_inner()) = Cached {
            value: value.clone(),
            read_at: unchanged.then_some(began),
        };
        Ok(value)
    }

    /// This node changed the stored value: the next [`Refreshed::get`] reads it.
    pub fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.cached
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .read_at = None;
    }

    fn fresh(&self) -> Option<Arc<T>> {
        let cached = self.cached.read().unwrap_or_else(|e| e.into_inner());
        let read_at = cached.read_at?;
        (read_at.elapsed() < self.ttl).then(|| cached.value.clone())
    }
}
