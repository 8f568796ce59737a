//! [`Store`]: the sqlx implementation of the durable store, over SQLite, PostgreSQL or
//! MySQL/MariaDB.
//!
//! One body of code serves the three databases: each operation is written once inside
//! [`on_pool!`], which expands it for the concrete pool of the connected dialect; only the SQL
//! that truly differs (upserts, schema) lives in [`super::sql`] and `migrations/<dialect>/`.
//!
//! A SQLite database in a file is written by a thread of its own (`db/sqlite_writer.rs`): its
//! rusqlite connection runs a whole insert or commit per hand-off, where a sqlx connection hands
//! each statement to its worker thread and back. The rules (planning, head cache, fence, seq
//! checks) are the same; only the statements are bound differently.
//!
//! # Single writer
//! The driver is the only writer. Change-feed sequence numbers are assigned by the store as
//! `MAX(seq) + 1, …` inside the writing transaction, so they increase strictly in commit order
//! and a reader that has seen `seq = n` will never later see a new event with `seq <= n`.
//! A second concurrent writer cannot corrupt the feed (the event `seq` is a primary key: one of
//! the two transactions fails with a unique-key error) but would see such failures.
//!
//! The writer keeps the heads of the live tasks it last committed (up to
//! [`MAX_CACHED_HEADS`]) so that a commit of their status updates skips reading them back.
//! Each task row is updated only where its `seq` is still the one the head says; if any row
//! was not, the transaction is dropped, the cache cleared, and the commit planned again on
//! fresh reads. A second writer thus costs a retry, never a lost write.

use super::plan::{plan_commit, AttemptWrite, TaskHead};
use super::sql::{chunks, in_list, values_list, MAX_STATEMENT_BYTES, TASK_UPDATE_COLS};
use super::url::{normalize_server_url, redact_url, scrub, Dialect};
use super::{Change, StoreError, TaskFilter};
use crate::task::{Attempt, TaskEvent, TaskRecord, TaskSpec, TaskState};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Connection;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How long `connect` waits for the first connection before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a SQLite statement waits for a lock held by another connection.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pool size for the server databases (one writer plus API readers).
const MAX_CONNECTIONS: u32 = 8;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static MYSQL_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/mysql");

#[derive(Clone)]
enum Pools {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// The durable store. Cheap to clone (a pool handle); clones share the connections.
#[derive(Clone)]
pub struct Store {
    pools: Pools,
    dialect: Dialect,
    /// Heads of the live tasks this process last wrote or read, so that a commit of their
    /// status updates need not read them back (checked against `seq` as it writes).
    heads: Arc<HeadCache>,
    /// The URL with its password redacted, for messages.
    url: Arc<str>,
    /// While set, every write first checks that this daemon still holds the leader lease.
    fence: Arc<std::sync::RwLock<Option<Fence>>>,
    /// SQLite in a file: the thread that runs the inserts and commits (the other statements
    /// use the pool). `None` for the server databases and an in-memory SQLite database (which
    /// exists only in its one pooled connection).
    writer: Option<Arc<SqliteThread>>,
    /// SQLite in a file: the thread that reads the change feed (a read-only connection).
    feed_reader: Option<Arc<SqliteThread>>,
    /// The change feed's last seq as this process last wrote it (PostgreSQL's one-call
    /// commit plans on it; the call checks it), or `postgres::UNKNOWN_SEQ`.
    last_seq: Arc<std::sync::atomic::AtomicI64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dialect", &self.dialect)
            .field("url", &self.url)
            .finish()
    }
}

/// Most heads [`HeadCache`] keeps (about 500 bytes each, so a few MB); the heads of tasks
/// beyond are read back from the database at each commit.
const MAX_CACHED_HEADS: usize = 12_288;

/// The heads of live tasks as this process last inserted, committed or read them. Only the
/// writer (the driver, through [`Store::insert_tasks`] and [`Store::commit`]) fills it; a commit checks every row's `seq` as it
/// updates it, so a stale entry costs a retry, never a wrong write. A commit takes the heads
/// it plans on out of the cache and puts them back once committed (a failed commit leaves
/// them to be read again), so that no head is copied.
#[derive(Default)]
struct HeadCache(std::sync::Mutex<HashMap<String, TaskHead>>);

impl HeadCache {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, TaskHead>> {
        // A panic while holding the lock leaves nothing half-done worth keeping.
        self.0.lock().unwrap_or_else(|e| {
            let mut g = e.into_inner();
            g.clear();
            g
        })
    }

    /// Takes the cached heads of `ids` out of the cache (a commit gives them back with
    /// [`HeadCache::keep`] once written), and returns the ids not cached.
    fn take<'a>(&self, ids: &[&'a str]) -> (Vec<TaskHead>, Vec<&'a str>) {
        let mut map = self.map();
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match map.remove(*id) {
                Some(h) => found.push(h),
                None => missing.push(*id),
            }
        }
        (found, missing)
    }

    /// Keeps `heads` as this process last wrote or read them; terminal tasks leave the cache.
    fn keep(&self, heads: impl IntoIterator<Item = TaskHead>) {
        let mut map = self.map();
        for h in heads {
            if h.state.is_terminal() {
                map.remove(&h.id);
            } else if map.len() < MAX_CACHED_HEADS || map.contains_key(&h.id) {
                map.insert(h.id.clone(), h);
            }
        }
    }

    fn clear(&self) {
        self.map().clear();
    }
}

/// Runs `$body` with `$pool` bound to the concrete pool of `$store`'s dialect.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pools {
            Pools::Sqlite($pool) => $body,
            Pools::Postgres($pool) => $body,
            Pools::MySql($pool) => $body,
        }
    };
}

/// Inside transaction `$tx`, right before it commits: fails with [`StoreError::Deposed`]
/// (dropping, so rolling back, the transaction) unless the leader lease `$fence` (if any) is
/// still held. On PostgreSQL and MySQL the lease row stays locked until the commit, so a
/// standby cannot take the lease between the check and the commit; a daemon that stops in
/// that moment (SIGSTOP, a frozen VM) loses its session to the server's stuck-transaction
/// timeout ([`StoreOptions::stuck_transaction`]), which releases the lock.
macro_rules! check_fence {
    ($d:expr, $tx:ident, $fence:expr, $op:expr) => {
        if let Some(f) = $fence {
            let held = sqlx::query_scalar::<_, i64>(&lease::fence_check_sql($d))
                .bind(&f.name)
                .bind(&f.holder)
                .bind(f.term)
                .fetch_optional(&mut *$tx)
                .await
                .map_err(StoreError::query($op))?;
            if held.is_none() {
                return Err(StoreError::Deposed { term: f.term });
            }
        }
    };
}

/// Appends `$events` to the change feed inside transaction `$tx`, in multi-row chunks.
macro_rules! insert_events {
    ($d:expr, $tx:ident, $events:expr, $op:expr) => {{
        let events: &[TaskEvent] = $events;
        let sizes: Vec<usize> = events.iter().map(event_size).collect();
        for r in chunks(&sizes, $d.max_params() / 9, MAX_STATEMENT_BYTES) {
            let sql = $d
                .sql(&format!(
                    "INSERT INTO task_events ({EVENT_COLS}) VALUES {}",
                    values_list(r.len(), 9)
                ))
                .into_owned();
            let mut q = sqlx::query(&sql);
            for e in &events[r] {
                q = q
                    .bind(e.seq)
                    .bind(&e.task_id)
                    .bind(e.state.as_str())
                    .bind(i64::from(e.attempt))
                    .bind(&e.message)
                    .bind(e.at)
                    .bind(&e.external_key)
                    .bind(e.prev_seq)
                    .bind(&e.reason);
            }
            q.execute(&mut *$tx).await.map_err(StoreError::query($op))?;
        }
    }};
}

fn event_size(e: &TaskEvent) -> usize {
    80 + e.task_id.len()
        + e.message.as_ref().map_or(0, String::len)
        + e.reason.as_ref().map_or(0, String::len)
        + e.external_key.as_ref().map_or(0, String::len)
}

/// Starts a writing transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`), so
/// a read-then-write transaction never fails to upgrade its lock.
trait BeginWrite {
    type Db: sqlx::Database;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

impl BeginWrite for MySqlPool {
    type Db = sqlx::MySql;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::MySql>, sqlx::Error> {
        self.begin().await
    }
}

const TASK_COLS: &str = "t.id, t.spec, t.state, t.attempts, t.current_attempt_id, t.agent_id, \
    t.hostname, t.message, t.reason, t.exit_code, t.kill_requested, t.created_at, t.updated_at, \
    t.seq";
const HEAD_COLS: &str = "id, external_key, state, attempts, current_attempt_id, agent_id, \
    hostname, message, reason, exit_code, kill_requested, updated_at, seq";
const ATTEMPT_COLS: &str = "a.task_id, a.attempt, a.backend_task_id, a.agent_id, a.hostname, \
    a.agent_url, a.state, a.message, a.reason, a.started_at, a.updated_at";
/// The attempt columns under `a_` names, next to [`TASK_COLS`] in a join.
const JOINED_ATTEMPT_COLS: &str =
    "a.attempt AS a_attempt, a.backend_task_id AS a_backend_task_id, \
    a.agent_id AS a_agent_id, a.hostname AS a_hostname, a.agent_url AS a_agent_url, \
    a.state AS a_state, a.message AS a_message, a.reason AS a_reason, \
    a.started_at AS a_started_at, a.updated_at AS a_updated_at";
const EVENT_COLS: &str =
    "seq, task_id, state, attempt, message, at, external_key, prev_seq, reason";

/// The change feed's query: the events after a cursor (`?`), in order, at most a limit (`?`).
fn feed_sql() -> String {
    format!("SELECT {EVENT_COLS} FROM task_events WHERE seq > ? ORDER BY seq LIMIT ?")
}

const TERMINAL: &str = "('succeeded', 'failed', 'killed')";

/// How a [`Store`] connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long PostgreSQL or MySQL lets one of this daemon's transactions sit idle (the
    /// process stopped or cut off mid-transaction) before it ends the session, rolling it back
    /// and releasing its locks. Several daemons on one database set it to the leader lease.
    pub stuck_transaction: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            stuck_transaction: Duration::from_secs(30),
        }
    }
}

impl Store {
    /// Connects to the database at `url` (sqlx syntax: `sqlite:path`, `sqlite:///abs/path`,
    /// `postgres://…`, `mysql://…`; `postgresql:`, `mariadb:` and `+driver` schemes are
    /// accepted too) and brings its schema up to date.
    ///
    /// A SQLite file and its parent directories are created when missing; SQLite runs in WAL
    /// mode with a busy timeout. Errors name the URL with its password redacted.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, &StoreOptions::default()).await
    }

    /// [`Store::connect`] with `options`.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let (dialect, sqlx_url) = normalize_server_url(url.trim())?;
        let shown: Arc<str> = redact_url(url.trim()).into();
        let invalid = |e: sqlx::Error| StoreError::InvalidUrl {
            url: shown.to_string(),
            reason: scrub(&e.to_string(), url),
        };
        let mut writer_file = None;
        let pools = match dialect {
            Dialect::Sqlite => {
                let opts = SqliteConnectOptions::from_str(&sqlx_url)
                    .map_err(invalid)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // FULL: a commit is on disk before `commit` returns, so an acknowledgement
                    // sent after it survives a power loss too (NORMAL only survives a crash of
                    // the process). Batched commits keep the fsyncs few.
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    // Blanked secrets (sandbox files, secret env once an attempt started) are
                    // overwritten with zeros in the file, not just unlinked from the row.
                    .pragma("secure_delete", "ON")
                    .foreign_keys(true);
                let in_memory = sqlx_url.contains(":memory:") || sqlx_url.contains("mode=memory");
                if !in_memory {
                    if let Some(dir) = opts.get_filename().parent() {
                        if !dir.as_os_str().is_empty() {
                            tokio::fs::create_dir_all(dir).await.map_err(|source| {
                                StoreError::CreateDir {
                                    path: dir.to_path_buf(),
                                    source,
                                }
                            })?;
                        }
                    }
                    create_private_file(opts.get_filename()).await?;
                    writer_file = Some(opts.get_filename().to_path_buf());
                }
                probe(&opts, url, &shown).await?;
                // An in-memory database lives as long as one connection does: keep exactly one.
                let pool_opts = if in_memory {
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                } else {
                    SqlitePoolOptions::new().max_connections(4)
                };
                Pools::Sqlite(pool_opts.connect_lazy_with(opts))
            }
            Dialect::Postgres => {
                let stuck = options.stuck_transaction.as_millis().max(1000).to_string();
                let opts = PgConnectOptions::from_str(&sqlx_url)
                    .map_err(invalid)?
                    .options([("idle_in_transaction_session_timeout", stuck.as_str())]);
                probe(&opts, url, &shown).await?;
                Pools::Postgres(
                    PgPoolOptions::new()
                        .max_connections(MAX_CONNECTIONS)
                        .acquire_timeout(CONNECT_TIMEOUT)
                        .connect_lazy_with(opts),
                )
            }
            Dialect::MySql => {
                let opts = MySqlConnectOptions::from_str(&sqlx_url).map_err(invalid)?;
                probe(&opts, url, &shown).await?;
                // MySQL has no timeout for a transaction left idle, only for an idle session:
                // the pool retires its idle connections before the server would.
                let stuck = options.stuck_transaction.as_secs().max(2);
                let set = format!("SET SESSION wait_timeout = {stuck}");
                Pools::MySql(
                    MySqlPoolOptions::new()
                        .max_connections(MAX_CONNECTIONS)
                        .acquire_timeout(CONNECT_TIMEOUT)
                        .idle_timeout(Some(Duration::from_secs(stuck - 1)))
                        .after_connect(move |conn, _| {
                            let set = set.clone();
                            Box::pin(async move {
                                sqlx::Executor::execute(conn, set.as_str()).await?;
                                Ok(())
                            })
                        })
                        .connect_lazy_with(opts),
                )
            }
        };
        let mut store = Store {
            pools,
            dialect,
            url: shown,
            heads: Arc::default(),
            fence: Arc::default(),
            writer: None,
            feed_reader: None,
            last_seq: Arc::new(std::sync::atomic::AtomicI64::new(postgres::UNKNOWN_SEQ)),
        };
        store.migrate(url).await?;
        if let Some(file) = writer_file {
            let (w, r) = tokio::task::spawn_blocking(move || {
                Ok::<_, StoreError>((
                    SqliteThread::open(&file, SQLITE_BUSY_TIMEOUT)?,
                    SqliteThread::open_reader(&file, SQLITE_BUSY_TIMEOUT)?,
                ))
            })
            .await
            .map_err(|e| StoreError::WriterStopped {
                reason: format!("opening the SQLite writer: {e}"),
            })??;
            store.writer = Some(Arc::new(w));
            store.feed_reader = Some(Arc::new(r));
        }
        tracing::debug!(url = %store.url, dialect = dialect.name(), "store connected");
        Ok(store)
    }

    async fn migrate(&self, raw_url: &str) -> Result<(), StoreError> {
        let res = match &self.pools {
            Pools::Sqlite(p) => SQLITE_MIGRATOR.run(p).await,
            Pools::Postgres(p) => POSTGRES_MIGRATOR.run(p).await,
            Pools::MySql(p) => MYSQL_MIGRATOR.run(p).await,
        };
        res.map_err(|e| StoreError::Migrate {
            url: self.url.to_string(),
            reason: scrub(&e.to_string(), raw_url),
        })
    }

    /// The database URL with its password redacted.
    pub fn redacted_url(&self) -> &str {
        &self.url
    }

    /// Closes all connections (waiting for those in use to be returned, and for the SQLite
    /// writer and feed reader to finish what they were given).
    pub async fn close(&self) {
        for t in [&self.writer, &self.feed_reader].into_iter().flatten() {
            t.close().await;
        }
        on_pool!(self, |p| p.close().await)
    }

    /// The framework id stored for `framework_name`, if any.
    pub async fn framework_id(&self, framework_name: &str) -> Result<Option<String>, StoreError> {
        let sql = self
            .dialect
            .sql("SELECT framework_id FROM frameworks WHERE name = ?");
        let id = on_pool!(self, |p| sqlx::query_scalar::<_, Text>(&sql)
            .bind(framework_name)
            .fetch_optional(p)
            .await)
        .map_err(StoreError::query("reading the framework id"))?;
        Ok(opt(id))
    }

    /// Stores (inserts or replaces) the framework id of `framework_name`.
    pub async fn set_framework_id(&self, framework_name: &str, id: &str) -> Result<(), StoreError> {
        let sql = self.dialect.sql(self.dialect.framework_upsert());
        on_pool!(self, |p| sqlx::query(&sql)
            .bind(framework_name)
            .bind(id)
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(StoreError::query("storing the framework id"))
    }

    /// Forgets the framework id of `framework_name` (the next start subscribes as a new
    /// framework). True when there was one.
    pub async fn forget_framework_id(&self, framework_name: &str) -> Result<bool, StoreError> {
        let sql = self.dialect.sql("DELETE FROM frameworks WHERE name = ?");
        on_pool!(self, |p| sqlx::query(&sql)
            .bind(framework_name)
            .execute(p)
            .await
            .map(|r| r.rows_affected() > 0))
        .map_err(StoreError::query("forgetting the framework id"))
    }

    /// The key named `name` shared by the daemons of this database: 32 random bytes made by
    /// the first that asks (two asking at once get the same key).
    pub async fn daemon_key(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        let insert = self.dialect.sql(self.dialect.key_insert());
        on_pool!(self, |p| sqlx::query(&insert)
            .bind(name)
            .bind(&fresh)
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(StoreError::query("storing a daemon key"))?;
        let select = self
            .dialect
            .sql("SELECT value FROM daemon_keys WHERE name = ?");
        let value = on_pool!(self, |p| sqlx::query_scalar::<_, Text>(&select)
            .bind(name)
            .fetch_one(p)
            .await)
        .map_err(StoreError::query("reading a daemon key"))?;
        hex::decode(&value.0).map_err(|e| StoreError::Corrupt {
            what: format!("daemon key {name}"),
            reason: e.to_string(),
        })
    }

    /// One task, by id.
    pub async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        if super::has_nul(id) {
            return Ok(None);
        }
        let sql = self
            .dialect
            .sql(&format!("SELECT {TASK_COLS} FROM tasks t WHERE t.id = ?"))
            .into_owned();
        let row = on_pool!(self, |p| sqlx::query_as::<_, TaskRow>(&sql)
            .bind(id)
            .fetch_optional(p)
            .await)
        .map_err(StoreError::query("reading a task"))?;
        row.map(TaskRecord::try_from).transpose()
    }

    /// The tasks matching `filter`, ordered by seq (the position of their last transition).
    pub async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        if filter.matches_nothing() {
            return Ok(Vec::new());
        }
        let mut sql = format!("SELECT {TASK_COLS} FROM tasks t WHERE 1 = 1");
        if !filter.states.is_empty() {
            sql.push_str(&format!(" AND t.state {}", in_list(filter.states.len())));
        }
        if filter.external_key.is_some() {
            sql.push_str(" AND t.external_key = ?");
        }
        if filter.since.is_some() {
            sql.push_str(" AND t.seq > ?");
        }
        if filter.label.is_some() {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM task_labels l \
                 WHERE l.task_id = t.id AND l.name = ? AND l.value = ?)",
            );
        }
        sql.push_str(" ORDER BY t.seq, t.id");
        if filter.limit.is_some() {
            sql.push_str(" LIMIT ?");
        }
        let sql = self.dialect.sql(&sql).into_owned();
        let rows = on_pool!(self, |p| {
            let mut q = sqlx::query_as::<_, TaskRow>(&sql);
            for s in &filter.states {
                q = q.bind(s.as_str());
            }
            if let Some(k) = &filter.external_key {
                q = q.bind(k);
            }
            if let Some(s) = filter.since {
                q = q.bind(s);
            }
            if let Some((k, v)) = &filter.label {
                q = q.bind(k).bind(v);
            }
            if let Some(l) = filter.limit {
                q = q.bind(i64::from(l));
            }
            q.fetch_all(p).await
        })
        .map_err(StoreError::query("listing tasks"))?;
        collect(rows)
    }

    /// The change feed after `cursor`: at most `limit` events with `seq > cursor`, in seq order.
    /// Each transition appears exactly once; pass the last seen `seq` as the next cursor.
    pub async fn events_since(
        &self,
        cursor: i64,
        limit: u32,
    ) -> Result<Vec<TaskEvent>, StoreError> {
        if let Some(r) = &self.feed_reader {
            return r.run(move |c| c.events_since(cursor, limit)).await;
        }
        let sql = self.dialect.sql(&feed_sql()).into_owned();
        let rows = on_pool!(self, |p| sqlx::query_as::<_, EventRow>(&sql)
            .bind(cursor)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await)
        .map_err(StoreError::query("reading the change feed"))?;
        collect(rows)
    }

    /// The newest change-feed position (0 when the feed is empty): a client that starts
    /// following the feed now passes it as `since`.
    pub async fn head_seq(&self) -> Result<i64, StoreError> {
        let max: Option<i64> = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT MAX(seq) FROM task_events"
        )
        .fetch_one(p)
        .await)
        .map_err(StoreError::query("reading the change-feed head"))?;
        Ok(max.unwrap_or(0))
    }

    /// The attempts of a task, oldest first.
    pub async fn attempts(&self, task_id: &str) -> Result<Vec<Attempt>, StoreError> {
        if super::has_nul(task_id) {
            return Ok(Vec::new());
        }
        let sql = self
            .dialect
            .sql(&format!(
                "SELECT {ATTEMPT_COLS} FROM attempts a WHERE a.task_id = ? ORDER BY a.attempt"
            ))
            .into_owned();
        let rows = on_pool!(self, |p| sqlx::query_as::<_, AttemptRow>(&sql)
            .bind(task_id)
            .fetch_all(p)
            .await)
        .map_err(StoreError::query("reading attempts"))?;
        collect(rows)
    }

    /// Every non-terminal task with its current attempt (none while never launched), in seq
    /// order: what the driver reloads after a restart.
    pub async fn load_active(&self) -> Result<Vec<(TaskRecord, Option<Attempt>)>, StoreError> {
        let sql = format!(
            "SELECT {TASK_COLS}, {JOINED_ATTEMPT_COLS} FROM tasks t \
             LEFT JOIN attempts a ON a.task_id = t.id AND a.attempt = t.attempts \
             WHERE t.state NOT IN {TERMINAL} ORDER BY t.seq, t.id"
        );
        let rows = on_pool!(self, |p| sqlx::query_as::<_, JoinedRow>(&sql)
            .fetch_all(p)
            .await)
        .map_err(StoreError::query("loading active tasks"))?;
        collect(rows)
    }

    /// The task and attempt that a backend task id (`<task id>.<attempt>`) belongs to.
    pub async fn find_by_backend_task_id(
        &self,
        backend_task_id: &str,
    ) -> Result<Option<(TaskRecord, Attempt)>, StoreError> {
        let sql = self
            .dialect
            .sql(&format!(
                "SELECT {TASK_COLS}, {JOINED_ATTEMPT_COLS} FROM attempts a \
                 JOIN tasks t ON t.id = a.task_id WHERE a.backend_task_id = ?"
            ))
            .into_owned();
        let row = on_pool!(self, |p| sqlx::query_as::<_, JoinedRow>(&sql)
            .bind(backend_task_id)
            .fetch_optional(p)
            .await)
        .map_err(StoreError::query("finding a task by backend task id"))?;
        let Some(row) = row else { return Ok(None) };
        match <(TaskRecord, Option<Attempt>)>::try_from(row)? {
            (task, Some(attempt)) => Ok(Some((task, attempt))),
            (task, None) => Err(StoreError::Corrupt {
                what: format!("attempt {backend_task_id} of task {}", task.id),
                reason: "the attempt row has no state".into(),
            }),
        }
    }

    /// The number of tasks in each state (every state present, zero included).
    pub async fn counts(&self) -> Result<BTreeMap<TaskState, u64>, StoreError> {
        let sql = "SELECT state, COUNT(*) FROM tasks GROUP BY state";
        let rows: Vec<(Text, i64)> = on_pool!(self, |p| sqlx::query_as(sql).fetch_all(p).await)
            .map_err(StoreError::query("counting tasks"))?;
        let mut out: BTreeMap<TaskState, u64> = TaskState::ALL.iter().map(|s| (*s, 0)).collect();
        for (state, n) in rows {
            let st = parse_state(&state.0, "a task count")?;
            out.insert(st, u64::try_from(n).unwrap_or(0));
        }
        Ok(out)
    }
}

/// The file of a SQLite `url` (sqlx syntax, as `database_url` holds it); `None` for another
/// database or an in-memory one.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let url = url.trim();
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let opts = SqliteConnectOptions::from_str(url).ok()?;
    Some(opts.get_filename().to_path_buf())
}

mod retention;
pub use retention::Pruned;
mod rows;
use rows::*;
mod write;
use write::{insert_events_of, spec_json, NewTask, ATTEMPT_INSERT_COLS, TASK_INSERT_COLS};
mod browse;
pub use browse::{TaskPageQuery, SCAN_WINDOW};
mod lease;
pub use lease::Fence;
mod postgres;
mod sqlite_writer;
use sqlite_writer::SqliteThread;

fn warn_concurrent_writer() {
    tracing::warn!(
        "the state store changed under this process's cached task heads; \
         re-reading them (is a second scheduler writing to the same database?)"
    );
}

/// Opens (and closes) one connection, so that an unreachable server, a refused login or a bad
/// SQLite path fails `connect` with the database's own words rather than a pool timeout later.
async fn probe<O>(opts: &O, raw_url: &str, shown: &str) -> Result<(), StoreError>
where
    O: sqlx::ConnectOptions,
    O::Connection: Sized,
{
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, opts.connect())
        .await
        .map_err(|_| StoreError::Connect {
            url: shown.to_string(),
            reason: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        })?
        .map_err(|e| StoreError::Connect {
            url: shown.to_string(),
            reason: scrub(&e.to_string(), raw_url),
        })?;
    let _ = conn.close().await;
    Ok(())
}

/// Creates an empty SQLite file readable by its owner only, unless it exists: task specs hold
/// secrets (sandbox file contents). SQLite gives its `-wal` and `-shm` files the permissions of
/// the database file.
async fn create_private_file(path: &std::path::Path) -> Result<(), StoreError> {
    let mut open = tokio::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    open.mode(0o600);
    match open.open(path).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::CreateFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl TaskHead {
    fn size(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        96 + self.id.len()
            + opt(&self.current_attempt_id)
            + opt(&self.agent_id)
            + opt(&self.hostname)
            + opt(&self.message)
            + opt(&self.reason)
    }
}

impl AttemptWrite<'_> {
    fn size(&self) -> usize {
        let opt = |s: &Option<&str>| s.map_or(0, str::len);
        64 + self.task_id.len()
            + self.backend_task_id.len()
            + opt(&self.agent_id)
            + opt(&self.hostname)
            + opt(&self.agent_url)
            + opt(&self.message)
            + opt(&self.reason)
    }
}
