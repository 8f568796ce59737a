//! Leadership among several daemons that share one PostgreSQL or MySQL/MariaDB state database:
//! exactly one leads (subscribes to Mesos or drives the local engine, writes task state,
//! acknowledges); the others stand by, answer reads and forward writes to the leader.
//!
//! The mechanism is a lease in the database itself ([`Store::acquire_lease`]), on the
//! database's clock:
//!
//! - A standby tries to take the lease every [`Election::retry`] (a quarter of the lease, at
//!   most a second); it succeeds only once the lease has expired or was released.
//! - The leader renews it every third of the lease. If it has not renewed successfully for
//!   `lease - margin` on its own monotonic clock (a lost database connection, a long pause),
//!   it steps down by itself: it stops its backend and driver before the database lets anyone
//!   else take over. A clean shutdown releases the lease at once.
//! - Fencing: while it leads, the store checks the lease in every write transaction
//!   ([`Fence`]), so a leader that was paused past its lease (SIGSTOP, a frozen VM) cannot
//!   commit, and so cannot acknowledge or launch, when it resumes; and its Mesos backend asks
//!   [`LeaseClock::valid`] before every SUBSCRIBE, so it does not take the framework back from
//!   the new leader.
//!
//! With SQLite there is one daemon per database file: a second one refuses to start
//! ([`lock_sqlite`]).

use crate::store::{Fence, Store};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What this daemon is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Leads in `term`.
    Leader { term: i64 },
    /// Stands by; `leader` is the leading daemon's API URL, when one leads.
    Standby { leader: Option<String> },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Leader { .. } => "leader",
            Role::Standby { .. } => "standby",
        }
    }
}

/// The leader's own view of how long its lease is good for, on the monotonic clock (which
/// keeps counting while the process is stopped).
#[derive(Debug, Default)]
pub struct LeaseClock {
    /// Milliseconds after `origin` until which this daemon may act as the leader (0: never).
    valid_until_ms: AtomicU64,
    origin: std::sync::OnceLock<Instant>,
}

impl LeaseClock {
    fn origin(&self) -> Instant {
        *self.origin.get_or_init(Instant::now)
    }

    fn set_valid_until(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.origin()).as_millis() as u64;
        self.valid_until_ms.store(ms, Ordering::SeqCst);
    }

    fn invalidate(&self) {
        self.valid_until_ms.store(0, Ordering::SeqCst);
    }

    /// True while this daemon may act as the leader.
    pub fn valid(&self) -> bool {
        let until = self.valid_until_ms.load(Ordering::SeqCst);
        until > 0
            && (Instant::now()
                .saturating_duration_since(self.origin())
                .as_millis() as u64)
                < until
    }
}

/// One daemon's part in the election of the leader of framework `name`.
#[derive(Debug, Clone)]
pub struct Election {
    store: Store,
    /// The lease's name: the framework name (several frameworks may share one database).
    name: String,
    /// This daemon's instance id (fresh at every start).
    holder: String,
    /// This daemon's API URL, where standbys forward writes.
    address: String,
    lease: Duration,
    clock: Arc<LeaseClock>,
}

impl Election {
    pub fn new(store: Store, name: &str, address: &str, lease: Duration) -> Election {
        Election {
            store,
            name: name.to_string(),
            holder: format!(
                "{}-{}",
                crate::docker::local::hostname(),
                uuid::Uuid::new_v4().simple()
            ),
            address: address.to_string(),
            lease,
            clock: Arc::default(),
        }
    }

    /// The clock the backend consults before it subscribes.
    pub fn clock(&self) -> Arc<LeaseClock> {
        self.clock.clone()
    }

    /// This daemon's instance id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How often a standby tries to take the lease.
    fn retry(&self) -> Duration {
        (self.lease / 4).min(Duration::from_secs(1))
    }

    /// How often the leader renews.
    fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// How long before the database would let the lease go the leader steps down, if it could
    /// not renew: two renewal periods' worth of tries fit before it.
    fn margin(&self) -> Duration {
        self.lease / 4
    }

    /// Waits until this daemon leads (or `shutdown`), publishing who leads meanwhile. Returns
    /// the term, with the store fenced to it.
    pub async fn campaign(
        &self,
        role: &watch::Sender<Role>,
        shutdown: &CancellationToken,
    ) -> Option<i64> {
        let mut logged_standby = false;
        loop {
            let asked = Instant::now();
            match self
                .store
                .acquire_lease(&self.name, &self.holder, &self.address, self.lease)
                .await
            {
                Ok(Some(term)) => {
                    self.clock
                        .set_valid_until(asked + self.lease.saturating_sub(self.margin()));
                    self.store.set_fence(Some(Fence {
                        name: self.name.clone(),
                        holder: self.holder.clone(),
                        term,
                    }));
                    tracing::info!(term, "leading: took the leader lease");
                    role.send_replace(Role::Leader { term });
                    return Some(term);
                }
                Ok(None) => {
                    let leader = match self.store.lease(&self.name).await {
                        Ok(Some(l)) if !l.address.is_empty() && l.remaining_ms > 0 => {
                            Some(l.address)
                        }
                        _ => None,
                    };
                    if !logged_standby {
                        tracing::info!(
                            leader = leader.as_deref().unwrap_or("(unknown)"),
                            "standing by: another daemon leads"
                        );
                        logged_standby = true;
                    }
                    role.send_if_modified(|r| {
                        let new = Role::Standby { leader };
                        let changed = *r != new;
                        *r = new;
                        changed
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the state database to elect a leader; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(self.retry()) => {}
            }
        }
    }

    /// Keeps the lease of `term` until `stop`; cancels `lost` (and returns) when it can no
    /// longer be sure to hold it.
    pub async fn hold(&self, term: i64, lost: CancellationToken, stop: CancellationToken) {
        let mut last_ok = Instant::now();
        loop {
            let deadline = last_ok + self.lease.saturating_sub(self.margin());
            let next = (Instant::now() + self.renew_every()).min(deadline);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            if Instant::now() >= deadline {
                self.step_down(term, "the lease could not be renewed in time", &lost);
                return;
            }
            let asked = Instant::now();
            let renewed = tokio::time::timeout(
                deadline.saturating_duration_since(asked),
                self.store
                    .renew_lease(&self.name, &self.holder, term, self.lease),
            )
            .await;
            match renewed {
                Ok(Ok(true)) => {
                    last_ok = asked;
                    self.clock
                        .set_valid_until(asked + self.lease.saturating_sub(self.margin()));
                }
                Ok(Ok(false)) => {
                    self.step_down(term, "the lease expired or was taken over", &lost);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, term, "cannot renew the leader lease; retrying")
                }
                Err(_) => {}
            }
        }
    }

    fn step_down(&self, term: i64, why: &str, lost: &CancellationToken) {
        self.clock.invalidate();
        tracing::warn!(term, "stepping down as the leader: {why}");
        lost.cancel();
    }

    /// Gives the lease up after a clean stop, so that a standby takes over at once.
    pub async fn release(&self, term: i64) {
        self.clock.invalidate();
        self.store.set_fence(None);
        if let Err(e) = self
            .store
            .release_lease(&self.name, &self.holder, term)
            .await
        {
            tracing::warn!(error = %e, "could not release the leader lease; a standby takes over once it expires");
        }
    }
}

/// Why this daemon cannot use its SQLite database.
#[derive(Debug, thiserror::Error)]
pub enum SqliteLockError {
    #[error(
        "{path}: another airflow-mesos daemon is using this SQLite state database (SQLite is for \
         one daemon; run several on PostgreSQL or MySQL, see \"Running more than one daemon\" \
         in the README)"
    )]
    InUse { path: String },
    #[error("{path}: cannot lock: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Takes an exclusive lock on `<db file>.lock` for as long as the returned file is open, so that
/// a second daemon on the same SQLite file refuses to start.
pub fn lock_sqlite(db_file: &std::path::Path) -> Result<std::fs::File, SqliteLockError> {
    let path = db_file.with_extension(match db_file.extension() {
        Some(e) => format!("{}.lock", e.to_string_lossy()),
        None => "lock".to_string(),
    });
    let shown = path.display().to_string();
    let io = |source| SqliteLockError::Io {
        path: shown.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(SqliteLockError::InUse { path: shown }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_sqlite_file_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let first = lock_sqlite(&db).unwrap();
        let err = lock_sqlite(&db).unwrap_err();
        assert!(matches!(err, SqliteLockError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("state.db.lock"), "{err}");
        drop(first);
        lock_sqlite(&db).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_clock_runs_out_without_renewals() {
        let c = LeaseClock::default();
        assert!(!c.valid(), "never held");
        c.set_valid_until(Instant::now() + Duration::from_secs(5));
        assert!(c.valid());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(
            !c.valid(),
            "a paused leader that resumes knows its lease ran out"
        );
        c.set_valid_until(Instant::now() + Duration::from_secs(5));
        c.invalidate();
        assert!(!c.valid());
    }
}
