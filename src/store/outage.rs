//! Riding out a database outage: an operation that fails with a transient error
//! ([`StoreError::is_transient`]: a restart or failover, a lost connection, a busy file, a full
//! disk) is tried again with a growing pause, for at most `store_outage_limit`; the caller
//! waits meanwhile, so nothing that depends on the write is sent. [`StoreHealth`] tells
//! `/healthz` and `/metrics` that the store is degraded and counts the retries.

use super::StoreError;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// First pause after a failure; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// What the daemon knows of its store's health, shared with the API.
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// Tries that failed with a transient error and were retried.
    retries: AtomicU64,
    /// Set while an operation is being retried.
    degraded: Mutex<Option<Degraded>>,
}

/// An outage under way, as `/healthz` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Degraded {
    /// Milliseconds since the epoch of the first failure.
    pub since_ms: i64,
    /// The last error (names the operation, never a password).
    pub error: String,
}

impl StoreHealth {
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The outage under way, if any.
    pub fn degraded(&self) -> Option<Degraded> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Degraded>> {
        self.degraded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed(&self, e: &StoreError) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        let mut d = self.lock();
        let since_ms = d
            .as_ref()
            .map_or_else(|| chrono::Utc::now().timestamp_millis(), |d| d.since_ms);
        *d = Some(Degraded {
            since_ms,
            error: e.to_string(),
        });
    }

    fn recovered(&self) {
        *self.lock() = None;
    }
}

/// How long to keep trying, and against which database (for the final error).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub limit: Duration,
    /// The database's URL, its password redacted.
    pub url: String,
    /// Cancelled when the daemon stops: a stop does not wait for the outage to end (what was
    /// not committed is dropped, and nothing that depends on it was sent).
    pub give_up: tokio_util::sync::CancellationToken,
}

/// Runs `op` until it succeeds, fails with an error that is not transient, or has failed with
/// transient errors for longer than `policy.limit` (then [`StoreError::Outage`]).
pub async fn retry<T, F, Fut>(
    health: &StoreHealth,
    policy: &RetryPolicy,
    what: &'static str,
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut first_failure: Option<Instant> = None;
    let mut pause = FIRST_PAUSE;
    loop {
        let e = match op().await {
            Ok(v) => {
                if let Some(t0) = first_failure {
                    health.recovered();
                    tracing::warn!(
                        what,
                        after_ms = t0.elapsed().as_millis() as u64,
                        "state store available again"
                    );
                }
                return Ok(v);
            }
            Err(e) if e.is_transient() => e,
            Err(e) => {
                // The database answered: whatever this error is, the outage is over.
                if first_failure.is_some() {
                    health.recovered();
                }
                return Err(e);
            }
        };
        let t0 = *first_failure.get_or_insert_with(Instant::now);
        let lasted = t0.elapsed();
        if lasted >= policy.limit {
            health.recovered();
            return Err(StoreError::Outage {
                url: policy.url.clone(),
                secs: lasted.as_secs_f64(),
                source: Box::new(e),
            });
        }
        health.failed(&e);
        let wait = pause.min(policy.limit - lasted);
        tracing::warn!(
            what,
            error = %e,
            retry_in_ms = wait.as_millis() as u64,
            failing_for_ms = lasted.as_millis() as u64,
            "state store unavailable; retrying"
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = policy.give_up.cancelled() => {
                health.recovered();
                tracing::warn!(what, "stopping during a state-store outage: what was not committed is dropped (nothing that depends on it was sent)");
                return Err(e);
            }
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> StoreError {
        StoreError::Sqlite {
            op: "committing task changes",
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                None,
            ),
        }
    }

    fn policy(limit_ms: u64) -> RetryPolicy {
        RetryPolicy {
            limit: Duration::from_millis(limit_ms),
            url: "sqlite:///tmp/x.db".into(),
            give_up: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_the_store_answers() {
        let health = StoreHealth::default();
        let mut tries = 0;
        let mut seen_degraded = false;
        let v = retry(&health, &policy(60_000), "test", || {
            tries += 1;
            seen_degraded |= health.degraded().is_some();
            let r = if tries < 4 { Err(busy()) } else { Ok(7) };
            async move { r }
        })
        .await
        .unwrap();
        assert_eq!((v, tries), (7, 4));
        assert!(seen_degraded, "degraded while retrying");
        assert_eq!(health.retries(), 3);
        assert_eq!(health.degraded(), None, "healthy again");
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_past_the_limit_is_an_error_naming_the_database() {
        let health = StoreHealth::default();
        let started = tokio::time::Instant::now();
        let e = retry(&health, &policy(10_000), "test", || async {
            Err::<(), _>(busy())
        })
        .await
        .unwrap_err();
        assert!(started.elapsed() >= Duration::from_secs(10));
        assert!(
            started.elapsed() < Duration::from_secs(16),
            "gave up in time"
        );
        let msg = e.to_string();
        assert!(msg.contains("sqlite:///tmp/x.db"), "{msg}");
        assert!(msg.contains("store_outage_limit"), "{msg}");
        assert!(msg.contains("locked"), "{msg}");
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_retried() {
        let health = StoreHealth::default();
        let mut tries = 0;
        let e = retry(&health, &policy(60_000), "test", || {
            tries += 1;
            async { Err::<(), _>(StoreError::ConcurrentWriter) }
        })
        .await
        .unwrap_err();
        assert!(matches!(e, StoreError::ConcurrentWriter));
        assert_eq!((tries, health.retries()), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_after_an_outage_ends_it_even_when_it_is_an_error() {
        let health = StoreHealth::default();
        let mut tries = 0;
        let e = retry(&health, &policy(60_000), "test", || {
            tries += 1;
            let r: Result<(), _> = if tries < 3 {
                Err(busy())
            } else {
                Err(StoreError::Deposed { term: 1 })
            };
            async move { r }
        })
        .await
        .unwrap_err();
        assert!(matches!(e, StoreError::Deposed { term: 1 }));
        assert_eq!(health.degraded(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_retries_at_once() {
        let health = StoreHealth::default();
        let p = policy(300_000);
        let stop = p.give_up.clone();
        let started = tokio::time::Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            stop.cancel();
        });
        let e = retry(&health, &p, "test", || async { Err::<(), _>(busy()) })
            .await
            .unwrap_err();
        assert!(e.is_transient(), "the outage's own error: {e}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(health.degraded(), None);
    }
}
