//! [`StoreError`]: what can go wrong with the durable store. Messages name the database by its
//! redacted URL (never with its password) and the operation that failed.

use std::path::PathBuf;

/// An error of the durable store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL could not be parsed.
    #[error("database URL `{url}` is not valid: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The URL names a database we do not support.
    #[error(
        "database URL `{url}`: unsupported scheme `{scheme}` \
         (expected sqlite:, postgres:, postgresql:, mysql: or mariadb:)"
    )]
    UnsupportedScheme { url: String, scheme: String },
    /// The directory for a SQLite file could not be created.
    #[error("cannot create directory {} for the SQLite database: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The SQLite file could not be created.
    #[error("cannot create the SQLite database file {}: {source}", path.display())]
    CreateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database could not be reached or refused us.
    #[error("cannot connect to the database at `{url}`: {reason}")]
    Connect { url: String, reason: String },
    /// Applying the schema migrations failed.
    #[error("migrating the database at `{url}` failed: {reason}")]
    Migrate { url: String, reason: String },
    /// A statement failed.
    #[error("database error while {op}: {source}")]
    Query {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A statement of the SQLite writer failed.
    #[error("database error while {op}: {source}")]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The SQLite writer thread is gone (the store was closed).
    #[error("the SQLite writer is not running: {reason}")]
    WriterStopped { reason: String },
    /// Another writer kept changing the same task rows while this one committed.
    #[error(
        "another process kept writing the same tasks while this one committed \
         (is a second scheduler using this database?)"
    )]
    ConcurrentWriter,
    /// This daemon no longer holds the leader lease (it expired, or another daemon took it):
    /// nothing was written.
    #[error(
        "this daemon is no longer the leader (its lease of term {term} expired or was taken \
         over): nothing was written"
    )]
    Deposed { term: i64 },
    /// A change names a task that was never inserted.
    #[error("a change names task `{task_id}`, which is not in the store")]
    UnknownTask { task_id: String },
    /// A stored value cannot be read back (e.g. an unknown state name, a spec that no longer
    /// parses).
    #[error("stored {what} is unreadable: {reason}")]
    Corrupt { what: String, reason: String },
}

impl StoreError {
    pub(crate) fn query(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Query { op, source }
    }

    /// True when retrying the same operation later may succeed (the database is unreachable,
    /// busy, or aborted the transaction for a conflict); false for errors that will repeat
    /// (bad URL, unknown task, schema or data problems).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Query { source, .. } => match source {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_) => true,
                sqlx::Error::Database(db) => {
                    // SQLite BUSY / LOCKED (result codes), and the SQLSTATEs of a
                    // serialization failure or deadlock (PostgreSQL, MySQL) and of an
                    // administrator shutdown (PostgreSQL).
                    let code = db.code();
                    matches!(
                        code.as_deref(),
                        Some("5" | "6" | "40001" | "40P01" | "57P01")
                    )
                }
                _ => false,
            },
            StoreError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }
}
