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
    /// The SQLite writer (or change-feed reader) thread is gone (the store was closed).
    #[error("the SQLite store thread is not running: {reason}")]
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
    /// Transient errors went on for longer than `store_outage_limit`.
    #[error(
        "the state database at `{url}` stayed unavailable for {secs:.0} s \
         ([mesos] store_outage_limit): {source}"
    )]
    Outage {
        url: String,
        secs: f64,
        #[source]
        source: Box<StoreError>,
    },
    /// A write was refused while an earlier commit is retried through an outage.
    #[error("the state database is unavailable (retrying): {error}")]
    Unavailable { error: String },
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

    /// True when retrying the same operation later may succeed: the database is unreachable,
    /// restarting, failing over, busy, out of space or out of connections, or aborted the
    /// transaction for a conflict. False for errors that will repeat (bad URL, unknown task,
    /// schema or data problems, a lost leadership).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Query { source, .. } => transient_sqlx(source),
            StoreError::Sqlite { source, .. } => source
                .sqlite_error_code()
                .is_some_and(transient_sqlite_code),
            _ => false,
        }
    }
}

/// SQLite result codes worth retrying: busy and locked (another connection), out of space
/// (a full disk frees up), I/O errors and a database file that cannot be opened (a storage
/// hiccup, an unmounted volume).
fn transient_sqlite_code(code: rusqlite::ErrorCode) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        code,
        C::DatabaseBusy | C::DatabaseLocked | C::DiskFull | C::SystemIoFailure | C::CannotOpen
    )
}

/// MySQL/MariaDB server error numbers worth retrying: disk full (1021), too many connections
/// (1040), lock wait timeout (1205), deadlock (1213), read-only server (1290, 1792, 1836:
/// during a failover), table full (1114), server shutting down (1053), lost connection
/// (2006, 2013).
const MYSQL_TRANSIENT: [u16; 11] = [
    1021, 1040, 1053, 1114, 1205, 1213, 1290, 1792, 1836, 2006, 2013,
];

/// [`transient_sqlite_code`] of a result code as sqlx gives it: the (extended) number as text.
fn transient_sqlite_text(code: &str) -> bool {
    code.parse::<i32>()
        .is_ok_and(|c| transient_sqlite_code(rusqlite::ffi::Error::new(c).code))
}

fn transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            if let Some(m) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return MYSQL_TRANSIENT.contains(&m.number())
                    || matches!(m.code(), Some("40001" | "08S01"));
            }
            let Some(code) = db.code() else {
                return false;
            };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                return transient_sqlite_text(&code);
            }
            transient_sqlstate(&code)
        }
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs worth retrying: connection exceptions (class 08), insufficient
/// resources (class 53: disk full, out of memory, too many connections), operator
/// intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now),
/// serialization failure and deadlock (40001, 40P01), and a read-only transaction (25006: a
/// standby answered during a failover).
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "25006"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_of_outages_are_transient_and_data_errors_are_not() {
        for code in [
            "08006", "08001", "53100", "53300", "57P01", "57P03", "40P01", "25006",
        ] {
            assert!(transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "22P02", "XX000", "57014"] {
            assert!(!transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn sqlite_outages_are_transient_and_constraint_errors_are_not() {
        use rusqlite::ErrorCode as C;
        for c in [C::DatabaseBusy, C::DiskFull, C::SystemIoFailure] {
            assert!(transient_sqlite_code(c), "{c:?}");
        }
        for c in [C::ConstraintViolation, C::DatabaseCorrupt, C::ReadOnly] {
            assert!(!transient_sqlite_code(c), "{c:?}");
        }
        // As sqlx reports them: extended codes (SQLITE_BUSY_SNAPSHOT 517, SQLITE_IOERR_WRITE
        // 778, SQLITE_FULL 13) and a constraint (SQLITE_CONSTRAINT_UNIQUE 2067).
        for (code, transient) in [("517", true), ("778", true), ("13", true), ("2067", false)] {
            assert_eq!(transient_sqlite_text(code), transient, "{code}");
        }
        let full = StoreError::Sqlite {
            op: "committing",
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            ),
        };
        assert!(full.is_transient());
        assert!(!StoreError::ConcurrentWriter.is_transient());
        assert!(!StoreError::Deposed { term: 3 }.is_transient());
    }
}
