//! Durable state in SQL (sqlx): tasks, attempts, the change feed, and the framework id.
//!
//! SQLite (default, a file under `$AIRFLOW_HOME`), PostgreSQL and MySQL/MariaDB, chosen by URL.
//! The driver is the only writer, so change-feed sequence numbers are assigned in commit order.
//!
//! # Layout
//! - [`Store`] (`db.rs`): connect + migrate, and every read and write, written once for the
//!   three databases.
//! - `db/sqlite_writer.rs`: the thread that runs inserts and commits on a SQLite file.
//! - `db/browse.rs`: the bounded reads of the web UI ([`Store::task_page`],
//!   [`Store::task_history`]).
//! - `plan.rs`: the pure rules of [`Store::commit`] (which rows change, which events append).
//! - `sql.rs`: the little SQL that differs by dialect, placeholders and chunking.
//! - `url.rs`: [`translate_url`] (SQLAlchemy → sqlx) and [`redact_url`].
//! - `error.rs`: [`StoreError`].
//! - `outage.rs`: [`retry`] through transient errors, and the [`StoreHealth`] it reports.
//! - `migrations/<dialect>/` at the crate root: the schema, one folder per dialect.

mod db;
mod error;
mod outage;
mod plan;
mod sql;
mod url;

pub use db::{sqlite_path, Fence, Pruned, Store, StoreOptions, TaskPageQuery, SCAN_WINDOW};
pub use error::StoreError;
pub use outage::{retry, RetryPolicy, StoreHealth};
pub use url::{redact_url, redact_urls, translate_url, Dialect};

use crate::task::TaskState;

/// A state change of one task, as the core decides it; committed in one transaction with the
/// others of the same step, before any call that depends on it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub task_id: String,
    pub state: TaskState,
    /// The attempt this change is about (0 before the first launch).
    pub attempt: u32,
    /// Set when a new attempt starts (`<task id>.<attempt>`).
    pub backend_task_id: Option<String>,
    pub agent_id: Option<String>,
    pub hostname: Option<String>,
    pub agent_url: Option<String>,
    pub message: Option<String>,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    /// Marks the task as having a kill requested (sticky).
    pub kill_requested: bool,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// A spec to store in place of the task's (its secrets blanked once the attempt started).
    pub spec: Option<std::sync::Arc<crate::task::TaskSpec>>,
}

/// Filters for listing tasks. All given conditions must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    pub states: Vec<TaskState>,
    /// `key=value` label that must be present.
    pub label: Option<(String, String)>,
    pub external_key: Option<String>,
    /// Only tasks whose last change has `seq > since`.
    pub since: Option<i64>,
    /// At most this many (ordered by seq ascending).
    pub limit: Option<u32>,
}

impl TaskFilter {
    /// True when the filter asks for a text with a NUL character, which no task holds: a
    /// submission with one is refused, and PostgreSQL cannot store one (asking it fails the
    /// query). Such a filter matches nothing, on every database.
    pub(crate) fn matches_nothing(&self) -> bool {
        let label = self
            .label
            .as_ref()
            .is_some_and(|(k, v)| has_nul(k) || has_nul(v));
        label || self.external_key.as_deref().is_some_and(has_nul)
    }
}

/// True when `s` holds a NUL character: no task id, label or external key does (see
/// [`TaskFilter::matches_nothing`]), so a lookup by one finds nothing without asking.
pub(crate) fn has_nul(s: &str) -> bool {
    s.contains('\0')
}
