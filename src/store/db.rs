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
    writer: Option<Arc<SqliteWriter>>,
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
const TERMINAL: &str = "('succeeded', 'failed', 'killed')";

/// A text column, decoded as a string whatever collation flags the server reports: MySQL marks
/// `utf8mb4_bin` columns (which we use for byte-exact keys) as binary, which sqlx will not
/// decode into a `String` directly.
struct Text(String);

impl<DB: sqlx::Database> sqlx::Type<DB> for Text
where
    String: sqlx::Type<DB>,
    Vec<u8>: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as sqlx::Type<DB>>::compatible(ty) || <Vec<u8> as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for Text
where
    String: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        use sqlx::ValueRef;
        if <String as sqlx::Type<DB>>::compatible(&value.type_info()) {
            <String as sqlx::Decode<DB>>::decode(value).map(Text)
        } else {
            let bytes = <Vec<u8> as sqlx::Decode<DB>>::decode(value)?;
            Ok(Text(String::from_utf8(bytes)?))
        }
    }
}

fn opt(t: Option<Text>) -> Option<String> {
    t.map(|t| t.0)
}

#[derive(sqlx::FromRow)]
struct TaskRow {
    id: Text,
    spec: Text,
    state: Text,
    attempts: i64,
    current_attempt_id: Option<Text>,
    agent_id: Option<Text>,
    hostname: Option<Text>,
    message: Option<Text>,
    reason: Option<Text>,
    exit_code: Option<i64>,
    kill_requested: bool,
    created_at: i64,
    updated_at: i64,
    seq: i64,
}

#[derive(sqlx::FromRow)]
struct HeadRow {
    id: Text,
    external_key: Option<Text>,
    state: Text,
    attempts: i64,
    current_attempt_id: Option<Text>,
    agent_id: Option<Text>,
    hostname: Option<Text>,
    message: Option<Text>,
    reason: Option<Text>,
    exit_code: Option<i64>,
    kill_requested: bool,
    updated_at: i64,
    seq: i64,
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    task_id: Text,
    attempt: i64,
    backend_task_id: Text,
    agent_id: Option<Text>,
    hostname: Option<Text>,
    agent_url: Option<Text>,
    state: Text,
    message: Option<Text>,
    reason: Option<Text>,
    started_at: i64,
    updated_at: i64,
}

/// A task row with the columns of one of its attempts (all `None` in a LEFT JOIN miss).
#[derive(sqlx::FromRow)]
struct JoinedRow {
    #[sqlx(flatten)]
    task: TaskRow,
    a_attempt: Option<i64>,
    a_backend_task_id: Option<Text>,
    a_agent_id: Option<Text>,
    a_hostname: Option<Text>,
    a_agent_url: Option<Text>,
    a_state: Option<Text>,
    a_message: Option<Text>,
    a_reason: Option<Text>,
    a_started_at: Option<i64>,
    a_updated_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    task_id: Text,
    state: Text,
    attempt: i64,
    message: Option<Text>,
    at: i64,
    external_key: Option<Text>,
    prev_seq: Option<i64>,
    reason: Option<Text>,
}

fn parse_state(s: &str, whose: &str) -> Result<TaskState, StoreError> {
    s.parse().map_err(|e| StoreError::Corrupt {
        what: format!("state of {whose}"),
        reason: format!("{e}"),
    })
}

fn to_u32(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        what: what.to_string(),
        reason: format!("{v} is not a valid attempt number"),
    })
}

fn to_i32(v: Option<i64>, what: &str) -> Result<Option<i32>, StoreError> {
    v.map(|v| {
        i32::try_from(v).map_err(|_| StoreError::Corrupt {
            what: what.to_string(),
            reason: format!("{v} is not a valid exit code"),
        })
    })
    .transpose()
}

impl TryFrom<TaskRow> for TaskRecord {
    type Error = StoreError;
    fn try_from(r: TaskRow) -> Result<TaskRecord, StoreError> {
        let id = r.id.0;
        // The serde error names a position and field, never the (secret) content.
        let spec: TaskSpec = serde_json::from_str(&r.spec.0).map_err(|e| StoreError::Corrupt {
            what: format!("spec of task {id}"),
            reason: e.to_string(),
        })?;
        Ok(TaskRecord {
            state: parse_state(&r.state.0, &format!("task {id}"))?,
            attempts: to_u32(r.attempts, &format!("attempts of task {id}"))?,
            exit_code: to_i32(r.exit_code, &format!("exit code of task {id}"))?,
            id,
            spec,
            current_attempt_id: opt(r.current_attempt_id),
            agent_id: opt(r.agent_id),
            hostname: opt(r.hostname),
            message: opt(r.message),
            reason: opt(r.reason),
            kill_requested: r.kill_requested,
            created_at: r.created_at,
            updated_at: r.updated_at,
            seq: r.seq,
        })
    }
}

impl TryFrom<HeadRow> for TaskHead {
    type Error = StoreError;
    fn try_from(r: HeadRow) -> Result<TaskHead, StoreError> {
        let id = r.id.0;
        Ok(TaskHead {
            state: parse_state(&r.state.0, &format!("task {id}"))?,
            attempts: to_u32(r.attempts, &format!("attempts of task {id}"))?,
            exit_code: to_i32(r.exit_code, &format!("exit code of task {id}"))?,
            id,
            external_key: opt(r.external_key),
            current_attempt_id: opt(r.current_attempt_id),
            agent_id: opt(r.agent_id),
            hostname: opt(r.hostname),
            message: opt(r.message),
            reason: opt(r.reason),
            kill_requested: r.kill_requested,
            updated_at: r.updated_at,
            seq: r.seq,
        })
    }
}

impl TryFrom<AttemptRow> for Attempt {
    type Error = StoreError;
    fn try_from(r: AttemptRow) -> Result<Attempt, StoreError> {
        let backend_task_id = r.backend_task_id.0;
        Ok(Attempt {
            state: parse_state(&r.state.0, &format!("attempt {backend_task_id}"))?,
            attempt: to_u32(r.attempt, &format!("attempt {backend_task_id}"))?,
            task_id: r.task_id.0,
            backend_task_id,
            agent_id: opt(r.agent_id),
            hostname: opt(r.hostname),
            agent_url: opt(r.agent_url),
            message: opt(r.message),
            reason: opt(r.reason),
            started_at: r.started_at,
            updated_at: r.updated_at,
        })
    }
}

impl TryFrom<JoinedRow> for (TaskRecord, Option<Attempt>) {
    type Error = StoreError;
    fn try_from(r: JoinedRow) -> Result<(TaskRecord, Option<Attempt>), StoreError> {
        let attempt = match (r.a_attempt, r.a_backend_task_id, r.a_state) {
            (Some(attempt), Some(backend_task_id), Some(state)) => {
                Some(Attempt::try_from(AttemptRow {
                    task_id: Text(r.task.id.0.clone()),
                    attempt,
                    backend_task_id,
                    agent_id: r.a_agent_id,
                    hostname: r.a_hostname,
                    agent_url: r.a_agent_url,
                    state,
                    message: r.a_message,
                    reason: r.a_reason,
                    started_at: r.a_started_at.unwrap_or_default(),
                    updated_at: r.a_updated_at.unwrap_or_default(),
                })?)
            }
            _ => None,
        };
        Ok((TaskRecord::try_from(r.task)?, attempt))
    }
}

impl TryFrom<EventRow> for TaskEvent {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<TaskEvent, StoreError> {
        Ok(TaskEvent {
            state: parse_state(&r.state.0, &format!("event {}", r.seq))?,
            attempt: to_u32(r.attempt, &format!("event {}", r.seq))?,
            seq: r.seq,
            task_id: r.task_id.0,
            message: opt(r.message),
            at: r.at,
            external_key: opt(r.external_key),
            reason: opt(r.reason),
            prev_seq: r.prev_seq,
        })
    }
}

fn collect<R, T: TryFrom<R, Error = StoreError>>(rows: Vec<R>) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(T::try_from).collect()
}

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

/// A task prepared for insertion: its head (`seq` assigned in the inserting transaction), its
/// spec as stored, its labels.
pub(super) struct NewTask {
    head: TaskHead,
    spec: String,
    labels: Vec<(String, String)>,
}

impl NewTask {
    fn new(rec: &TaskRecord, at_ms: i64) -> Result<NewTask, StoreError> {
        Ok(NewTask {
            head: TaskHead {
                id: rec.id.clone(),
                external_key: rec.spec.external_key.clone(),
                state: rec.state,
                attempts: rec.attempts,
                current_attempt_id: rec.current_attempt_id.clone(),
                agent_id: rec.agent_id.clone(),
                hostname: rec.hostname.clone(),
                message: rec.message.clone(),
                reason: rec.reason.clone(),
                exit_code: rec.exit_code,
                kill_requested: rec.kill_requested,
                updated_at: at_ms,
                seq: 0,
            },
            spec: spec_json(&rec.spec, &rec.id)?,
            labels: rec
                .spec
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// Bytes of bound data, for chunking.
    fn size(&self) -> usize {
        self.spec.len() + 256
    }
}

/// The change-feed events of inserted tasks (their `seq` assigned).
fn insert_events_of(rows: &[NewTask], at_ms: i64) -> Vec<TaskEvent> {
    rows.iter()
        .map(|n| TaskEvent {
            seq: n.head.seq,
            task_id: n.head.id.clone(),
            state: n.head.state,
            attempt: n.head.attempts,
            message: n.head.message.clone(),
            at: at_ms,
            external_key: n.head.external_key.clone(),
            reason: n.head.reason.clone(),
            prev_seq: None,
        })
        .collect()
}

/// A spec as stored (JSON). serde_json cannot fail on these types (string keys,
/// finite-or-null floats); the error names the task, never the (secret) content.
fn spec_json(spec: &TaskSpec, task_id: &str) -> Result<String, StoreError> {
    serde_json::to_string(spec).map_err(|e| StoreError::Corrupt {
        what: format!("spec of task {task_id}"),
        reason: e.to_string(),
    })
}

/// Columns of a task row insert, of an attempt upsert.
const TASK_INSERT_COLS: usize = 15;
const ATTEMPT_INSERT_COLS: usize = 11;

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
            last_seq: Arc::new(std::sync::atomic::AtomicI64::new(postgres::UNKNOWN_SEQ)),
        };
        store.migrate(url).await?;
        if let Some(file) = writer_file {
            let w =
                tokio::task::spawn_blocking(move || SqliteWriter::open(&file, SQLITE_BUSY_TIMEOUT))
                    .await
                    .map_err(|e| StoreError::WriterStopped {
                        reason: format!("opening the SQLite writer: {e}"),
                    })??;
            store.writer = Some(Arc::new(w));
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

    /// Which database this store talks to.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The database URL with its password redacted.
    pub fn redacted_url(&self) -> &str {
        &self.url
    }

    /// Closes all connections (waiting for those in use to be returned, and for the SQLite
    /// writer to finish what it was given).
    pub async fn close(&self) {
        if let Some(w) = &self.writer {
            w.close().await;
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

    /// Inserts new tasks in one transaction, with one change-feed event each (in the state of
    /// the record, normally `queued`). The store assigns `seq` and sets `created_at` and
    /// `updated_at` to `at_ms`; the other fields are stored as given. Returns the events.
    pub async fn insert_tasks(
        &self,
        tasks: &[TaskRecord],
        at_ms: i64,
    ) -> Result<Vec<TaskEvent>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let op = "inserting tasks";
        let d = self.dialect;
        let fence = self.fence();
        let mut rows = tasks
            .iter()
            .map(|rec| NewTask::new(rec, at_ms))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(w) = &self.writer {
            let (events, heads) = w
                .run(move |w| w.insert(rows, at_ms, fence.as_ref()))
                .await?;
            // The driver commits these tasks' launches next: their heads are known exactly.
            self.heads.keep(heads);
            return Ok(events);
        }
        on_pool!(self, |p| {
            let mut tx = p.begin_write().await.map_err(StoreError::query(op))?;
            let max: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM task_events")
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::query(op))?;
            let first = max.unwrap_or(0) + 1;
            for (i, n) in rows.iter_mut().enumerate() {
                n.head.seq = first + i as i64;
            }
            let events = insert_events_of(&rows, at_ms);

            let sizes: Vec<usize> = rows.iter().map(NewTask::size).collect();
            for r in chunks(
                &sizes,
                d.max_params() / TASK_INSERT_COLS,
                MAX_STATEMENT_BYTES,
            ) {
                let sql = d
                    .sql(&format!(
                        "INSERT INTO tasks (id, external_key, spec, state, attempts, \
                     current_attempt_id, agent_id, hostname, message, reason, exit_code, \
                     kill_requested, created_at, updated_at, seq) VALUES {}",
                        values_list(r.len(), TASK_INSERT_COLS)
                    ))
                    .into_owned();
                let mut q = sqlx::query(&sql);
                for n in &rows[r] {
                    let t = &n.head;
                    q = q
                        .bind(&t.id)
                        .bind(&t.external_key)
                        .bind(&n.spec)
                        .bind(t.state.as_str())
                        .bind(i64::from(t.attempts))
                        .bind(&t.current_attempt_id)
                        .bind(&t.agent_id)
                        .bind(&t.hostname)
                        .bind(&t.message)
                        .bind(&t.reason)
                        .bind(t.exit_code.map(i64::from))
                        .bind(t.kill_requested)
                        .bind(at_ms)
                        .bind(at_ms)
                        .bind(t.seq);
                }
                q.execute(&mut *tx).await.map_err(StoreError::query(op))?;
            }

            let labels: Vec<(&str, &str, &str)> = rows
                .iter()
                .flat_map(|n| {
                    n.labels
                        .iter()
                        .map(move |(k, v)| (n.head.id.as_str(), k.as_str(), v.as_str()))
                })
                .collect();
            let sizes: Vec<usize> = labels
                .iter()
                .map(|l| l.0.len() + l.1.len() + l.2.len())
                .collect();
            for r in chunks(&sizes, d.max_params() / 3, MAX_STATEMENT_BYTES) {
                let sql = d
                    .sql(&format!(
                        "INSERT INTO task_labels (task_id, name, value) VALUES {}",
                        values_list(r.len(), 3)
                    ))
                    .into_owned();
                let mut q = sqlx::query(&sql);
                for (id, k, v) in &labels[r] {
                    q = q.bind(*id).bind(*k).bind(*v);
                }
                q.execute(&mut *tx).await.map_err(StoreError::query(op))?;
            }

            insert_events!(d, tx, &events, op);
            // Last, so that the lease row is locked only for the commit itself.
            check_fence!(d, tx, &fence, op);
            tx.commit().await.map_err(StoreError::query(op))?;
            if let Some(last) = events.last() {
                self.last_seq
                    .store(last.seq, std::sync::atomic::Ordering::Release);
            }
            // The driver commits these tasks' launches next: their heads are known exactly.
            self.heads.keep(rows.into_iter().map(|n| n.head));
            Ok(events)
        })
    }

    /// Applies `changes`, in order, in one transaction: task rows, attempt rows, and one
    /// change-feed event per transition. Returns the appended events in seq order.
    ///
    /// - A change with `attempt` above the task's `attempts` starts a new attempt (its agent,
    ///   hostname, message, reason and exit code replace the old attempt's, even where `None`).
    /// - A change for the current attempt, or with `attempt == 0` ("the task"), overwrites the
    ///   fields it carries (`Some`) and keeps the others; `kill_requested` is sticky.
    /// - A change for an older attempt (`0 < attempt < attempts`) only updates that attempt's
    ///   row: a late status of a superseded attempt never moves the task.
    /// - An event is appended when the state changes or a new attempt starts; an exact
    ///   duplicate appends nothing and leaves the task row untouched (idempotent replays).
    /// - Every change with `attempt > 0` upserts that attempt's row (`started_at` is the time
    ///   of its first change; its backend task id, once stored, never changes).
    ///
    /// Fails with [`StoreError::UnknownTask`], writing nothing, when a change names a task that
    /// is not stored.
    pub async fn commit(&self, changes: &[Change]) -> Result<Vec<TaskEvent>, StoreError> {
        if self.writer.is_some() {
            return self.commit_owned(changes.to_vec()).await;
        }
        self.commit_here(changes).await
    }

    /// [`Store::commit`] of changes the caller gives away (the SQLite writer thread takes
    /// them without a copy).
    pub async fn commit_owned(&self, changes: Vec<Change>) -> Result<Vec<TaskEvent>, StoreError> {
        self.commit_shared(std::sync::Arc::new(changes)).await
    }

    /// [`Store::commit`] of shared changes: a caller that may have to try again (through a
    /// database outage) keeps them without a copy.
    pub async fn commit_shared(
        &self,
        changes: std::sync::Arc<Vec<Change>>,
    ) -> Result<Vec<TaskEvent>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let Some(w) = &self.writer else {
            return self.commit_here(&changes).await;
        };
        let fence = self.fence();
        let heads = self.heads.clone();
        w.run(move |w| {
            let fence = fence.as_ref();
            if let Some(events) = w.commit_once(&heads, &changes, true, fence)? {
                return Ok(events);
            }
            warn_concurrent_writer();
            heads.clear();
            for _ in 0..3 {
                if let Some(events) = w.commit_once(&heads, &changes, false, fence)? {
                    return Ok(events);
                }
            }
            Err(StoreError::ConcurrentWriter)
        })
        .await
    }

    /// [`Store::commit`] through the pool.
    async fn commit_here(&self, changes: &[Change]) -> Result<Vec<TaskEvent>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(events) = self.commit_once(changes, true).await? {
            return Ok(events);
        }
        // Another writer moved a task under the cached heads: forget them all and plan again
        // on what the database holds (on PostgreSQL and MySQL a writer can still slip in
        // between the read and the write of one transaction, hence a few tries).
        warn_concurrent_writer();
        self.heads.clear();
        for _ in 0..3 {
            if let Some(events) = self.commit_once(changes, false).await? {
                return Ok(events);
            }
        }
        Err(StoreError::ConcurrentWriter)
    }

    /// One try of [`Store::commit`]: `None` (nothing written) when a task row was not at the
    /// `seq` its head said.
    async fn commit_once(
        &self,
        changes: &[Change],
        use_cache: bool,
    ) -> Result<Option<Vec<TaskEvent>>, StoreError> {
        if let Pools::Postgres(p) = &self.pools {
            return self.commit_once_pg(p, changes, use_cache).await;
        }
        let op = "committing task changes";
        let d = self.dialect;
        let mut ids: Vec<&str> = changes.iter().map(|c| c.task_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let fence = self.fence();
        on_pool!(self, |p| {
            let t0 = std::time::Instant::now();
            let mut tx = p.begin_write().await.map_err(StoreError::query(op))?;
            let t_begin = t0.elapsed();
            let (mut heads, missing) = if use_cache {
                self.heads.take(&ids)
            } else {
                (Vec::new(), ids.clone())
            };
            let cached = heads.len();
            for r in chunks(
                &vec![0; missing.len()],
                d.max_params().min(5000),
                usize::MAX,
            ) {
                let sql = d
                    .sql(&format!(
                        "SELECT {HEAD_COLS} FROM tasks WHERE id {}",
                        in_list(r.len())
                    ))
                    .into_owned();
                let mut q = sqlx::query_as::<_, HeadRow>(&sql);
                for id in &missing[r] {
                    q = q.bind(*id);
                }
                let rows = q.fetch_all(&mut *tx).await.map_err(StoreError::query(op))?;
                heads.extend(collect::<_, TaskHead>(rows)?);
            }
            let t_heads = t0.elapsed();
            let max: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM task_events")
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::query(op))?;
            let t_max = t0.elapsed();
            let plan = plan_commit(heads, changes, max.unwrap_or(0) + 1)?;
            let t_read = t0.elapsed();

            let sizes: Vec<usize> = plan.tasks.iter().map(TaskHead::size).collect();
            let per_chunk = d.max_params() / (TASK_UPDATE_COLS.len() + 1);
            for r in chunks(&sizes, per_chunk, MAX_STATEMENT_BYTES) {
                let sql = d.task_update(r.len());
                let rows = r.len() as u64;
                let mut q = sqlx::query(&sql);
                for (t, old_seq) in plan.tasks[r.clone()].iter().zip(&plan.old_seq[r]) {
                    q = q
                        .bind(&t.id)
                        .bind(t.state.as_str())
                        .bind(i64::from(t.attempts))
                        .bind(&t.current_attempt_id)
                        .bind(&t.agent_id)
                        .bind(&t.hostname)
                        .bind(&t.message)
                        .bind(&t.reason)
                        .bind(t.exit_code.map(i64::from))
                        .bind(t.kill_requested)
                        .bind(t.updated_at)
                        .bind(t.seq)
                        .bind(*old_seq);
                }
                let done = q.execute(&mut *tx).await.map_err(StoreError::query(op))?;
                if done.rows_affected() != rows {
                    // Dropping the transaction rolls it back.
                    return Ok(None);
                }
            }

            let sizes: Vec<usize> = plan.attempts.iter().map(AttemptWrite::size).collect();
            for r in chunks(
                &sizes,
                d.max_params() / ATTEMPT_INSERT_COLS,
                MAX_STATEMENT_BYTES,
            ) {
                let sql = d
                    .sql(&format!(
                        "INSERT INTO attempts (task_id, attempt, backend_task_id, agent_id, \
                         hostname, agent_url, state, message, reason, started_at, updated_at) \
                         VALUES {}{}",
                        values_list(r.len(), ATTEMPT_INSERT_COLS),
                        d.attempt_upsert_tail()
                    ))
                    .into_owned();
                let mut q = sqlx::query(&sql);
                for a in &plan.attempts[r] {
                    q = q
                        .bind(a.task_id)
                        .bind(i64::from(a.attempt))
                        .bind(a.backend_task_id.as_ref())
                        .bind(a.agent_id)
                        .bind(a.hostname)
                        .bind(a.agent_url)
                        .bind(a.state.as_str())
                        .bind(a.message)
                        .bind(a.reason)
                        .bind(a.started_at)
                        .bind(a.updated_at);
                }
                q.execute(&mut *tx).await.map_err(StoreError::query(op))?;
            }

            for c in changes {
                let Some(spec) = &c.spec else { continue };
                let json = spec_json(spec, &c.task_id)?;
                let sql = d.sql("UPDATE tasks SET spec = ? WHERE id = ?");
                sqlx::query(&sql)
                    .bind(json)
                    .bind(&c.task_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query(op))?;
            }

            let t_rows = t0.elapsed();
            insert_events!(d, tx, &plan.events, op);
            let t_events = t0.elapsed();
            // Last, so that the lease row is locked only for the commit itself.
            check_fence!(d, tx, &fence, op);
            tx.commit().await.map_err(StoreError::query(op))?;
            let events = plan.events;
            self.heads
                .keep(plan.tasks.into_iter().chain(plan.untouched));
            tracing::trace!(
                changes = changes.len(),
                cached,
                begin_us = t_begin.as_micros() as u64,
                heads_us = (t_heads - t_begin).as_micros() as u64,
                max_us = (t_max - t_heads).as_micros() as u64,
                read_us = t_read.as_micros() as u64,
                rows_us = (t_rows - t_read).as_micros() as u64,
                events_us = (t_events - t_rows).as_micros() as u64,
                commit_us = (t0.elapsed() - t_events).as_micros() as u64,
                "commit"
            );
            Ok(Some(events))
        })
    }

    /// One task, by id.
    pub async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
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
        let sql = self
            .dialect
            .sql(&format!(
                "SELECT {EVENT_COLS} FROM task_events WHERE seq > ? ORDER BY seq LIMIT ?"
            ))
            .into_owned();
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

mod browse;
pub use browse::{TaskHistory, TaskPage, TaskPageQuery, MAX_PAGE, SCAN_WINDOW};
mod lease;
pub use lease::{Fence, Lease};
mod postgres;
mod sqlite_writer;
use sqlite_writer::SqliteWriter;

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
