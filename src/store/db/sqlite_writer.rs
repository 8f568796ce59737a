//! The SQLite writer: one thread that owns a rusqlite connection to the database file and its
//! prepared statements, and runs every write of the driver's hot path (inserting tasks,
//! committing changes) a whole transaction per message. A commit thus costs one hand-off to
//! that thread and back, where a sqlx connection hands every statement to its worker thread
//! and back. The change feed is read the same way, on a second such thread whose connection is
//! read-only; the other reads (API, CLI, web UI) stay on the sqlx pool. SQLite's WAL lets them
//! all run while the writer writes.
//!
//! The writer's connection is opened with the settings of the pool's: WAL, `synchronous = FULL`
//! (a commit is on disk before it is reported), `secure_delete`, foreign keys, the busy timeout;
//! and, its own, `temp_store = MEMORY` (see [`SqliteThread::open`]'s pragmas). SQLite syncs
//! with `fdatasync(2)` (`HAVE_FDATASYNC` in `.cargo/config.toml`, as Linux distributions build
//! it), so a commit does not also write the WAL file's inode for its modification time.

use super::{
    event_size, parse_state, to_i32, to_u32, Fence, HeadCache, NewTask, ATTEMPT_INSERT_COLS,
    EVENT_COLS, HEAD_COLS, TASK_INSERT_COLS,
};
use crate::store::plan::{plan_commit, AttemptWrite, TaskHead};
use crate::store::sql::{chunks, in_list, values_list, MAX_STATEMENT_BYTES, TASK_UPDATE_COLS};
use crate::store::{Change, Dialect, StoreError};
use crate::task::TaskEvent;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Statements the connection keeps prepared (a handful of chunk sizes per statement kind).
const STATEMENT_CACHE: usize = 128;

type Job = Box<dyn FnOnce(&mut SqliteConn) + Send>;

/// A thread that owns one connection (the writer's, or the feed reader's) and runs the jobs it
/// is given, in order. The store holds its handle; the thread stops when the last handle is
/// dropped.
pub(in crate::store) struct SqliteThread {
    /// The thread's name, for errors.
    name: &'static str,
    /// `None` once closed.
    jobs: std::sync::Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for SqliteThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteThread")
    }
}

impl SqliteThread {
    /// Opens the writer's connection to `path` (migrated already) and starts its thread.
    pub(in crate::store) fn open(
        path: &Path,
        busy_timeout: std::time::Duration,
    ) -> Result<SqliteThread, StoreError> {
        SqliteThread::start(path, busy_timeout, Role::Writer)
    }

    /// Opens a read-only connection to `path` on a thread of its own, for the change feed:
    /// a page of events costs one hand-off there and back, where the sqlx pool hands every
    /// row over from its worker thread. It writes nothing (`query_only`).
    pub(in crate::store) fn open_reader(
        path: &Path,
        busy_timeout: std::time::Duration,
    ) -> Result<SqliteThread, StoreError> {
        SqliteThread::start(path, busy_timeout, Role::Reader)
    }

    fn start(
        path: &Path,
        busy_timeout: std::time::Duration,
        role: Role,
    ) -> Result<SqliteThread, StoreError> {
        let (op, flags, pragmas, name) = match role {
            Role::Writer => (
                "opening the SQLite writer",
                OpenFlags::SQLITE_OPEN_READ_WRITE,
                // temp_store: a multi-row statement keeps the pages it may have to undo in a
                // statement journal, which otherwise spills to a temporary file past 64 KiB
                // (a `pwrite` per page). The journal lives only while its statement runs.
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON; \
                 PRAGMA temp_store = MEMORY;",
                "store-writer",
            ),
            Role::Reader => (
                "opening the SQLite change-feed reader",
                OpenFlags::SQLITE_OPEN_READ_ONLY,
                "PRAGMA query_only = ON;",
                "store-reader",
            ),
        };
        let err = |e| StoreError::Sqlite { op, source: e };
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(err)?;
        conn.busy_timeout(busy_timeout).map_err(err)?;
        conn.execute_batch(pragmas).map_err(err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let mut w = SqliteConn {
            conn,
            sql: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    // A panic in a job must not leave a transaction open for the next one.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut w)));
                    if !w.conn.is_autocommit() {
                        let _ = w.conn.execute_batch("ROLLBACK");
                    }
                    if r.is_err() {
                        tracing::error!("a store write panicked; its transaction was rolled back");
                    }
                }
            })
            .map_err(|e| StoreError::WriterStopped {
                reason: format!("cannot start the SQLite {name} thread: {e}"),
            })?;
        Ok(SqliteThread {
            name,
            jobs: std::sync::Mutex::new(Some(jobs)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Stops taking jobs and waits until the thread has run those it was given and closed
    /// its connection.
    pub(in crate::store) async fn close(&self) {
        drop(lock(&self.jobs).take());
        let thread = lock(&self.thread).take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    /// Runs `f` on the writer thread and returns what it returns.
    pub(in crate::store) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteConn) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |w| {
            let _ = reply.send(f(w));
        });
        let gone = || StoreError::WriterStopped {
            reason: format!("the SQLite {} thread stopped", self.name),
        };
        let sent = match &*lock(&self.jobs) {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(gone());
        }
        rx.await.map_err(|_| gone())?
    }
}

/// What a [`SqliteThread`]'s connection is for.
#[derive(Debug, Clone, Copy)]
enum Role {
    Writer,
    Reader,
}

/// A [`SqliteThread`]'s connection, with the SQL text of the statements it has built.
pub(in crate::store) struct SqliteConn {
    conn: Connection,
    /// SQL by (statement kind, rows): building a statement of hundreds of rows' placeholders
    /// costs more than looking it up.
    sql: HashMap<(Kind, usize), Arc<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Heads,
    TaskInsert,
    Labels,
    TaskUpdate,
    AttemptUpsert,
    Events,
    Feed,
}

fn build_sql(kind: Kind, rows: usize) -> String {
    let d = Dialect::Sqlite;
    match kind {
        Kind::Heads => format!("SELECT {HEAD_COLS} FROM tasks WHERE id {}", in_list(rows)),
        Kind::TaskInsert => format!(
            "INSERT INTO tasks (id, external_key, spec, state, attempts, current_attempt_id, \
             agent_id, hostname, message, reason, exit_code, kill_requested, created_at, \
             updated_at, seq) VALUES {}",
            values_list(rows, TASK_INSERT_COLS)
        ),
        Kind::Labels => format!(
            "INSERT INTO task_labels (task_id, name, value) VALUES {}",
            values_list(rows, 3)
        ),
        Kind::TaskUpdate => d.task_update(rows),
        Kind::AttemptUpsert => format!(
            "INSERT INTO attempts (task_id, attempt, backend_task_id, agent_id, hostname, \
             agent_url, state, message, reason, started_at, updated_at) VALUES {}{}",
            values_list(rows, ATTEMPT_INSERT_COLS),
            d.attempt_upsert_tail()
        ),
        Kind::Events => format!(
            "INSERT INTO task_events ({EVENT_COLS}) VALUES {}",
            values_list(rows, 9)
        ),
        Kind::Feed => super::feed_sql(),
    }
}

impl SqliteConn {
    fn sql(&mut self, kind: Kind, rows: usize) -> Arc<str> {
        self.sql
            .entry((kind, rows))
            .or_insert_with(|| build_sql(kind, rows).into())
            .clone()
    }

    /// The change feed after `cursor` (as [`super::Store::events_since`]), read in one go.
    pub(in crate::store) fn events_since(
        &mut self,
        cursor: i64,
        limit: u32,
    ) -> Result<Vec<TaskEvent>, StoreError> {
        let err = |e| StoreError::Sqlite {
            op: "reading the change feed",
            source: e,
        };
        let sql = self.sql(Kind::Feed, 0);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(err)?;
        let rows = stmt
            .query_map(
                (cursor, i64::from(limit)),
                super::rows::EventRow::from_sqlite,
            )
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        super::collect(rows)
    }
}

/// Binds parameters one after the other, from the first.
struct Binder<'s, 'c> {
    stmt: &'s mut rusqlite::CachedStatement<'c>,
    next: usize,
}

impl<'s, 'c> Binder<'s, 'c> {
    fn new(stmt: &'s mut rusqlite::CachedStatement<'c>) -> Self {
        Binder { stmt, next: 1 }
    }

    fn bind<T: rusqlite::ToSql>(&mut self, v: T) -> rusqlite::Result<&mut Self> {
        self.stmt.raw_bind_parameter(self.next, v)?;
        self.next += 1;
        Ok(self)
    }
}

impl SqliteConn {
    /// Runs `body` in a `BEGIN IMMEDIATE` transaction that it commits; whatever it leaves
    /// uncommitted (an error, a `None`) is rolled back.
    fn in_transaction<R>(
        &mut self,
        op: &'static str,
        body: impl FnOnce(&mut Self) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.conn
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut s| s.execute([]))
            .map_err(sqlite_err(op))?;
        let r = body(self);
        if !self.conn.is_autocommit() {
            // Errors here leave nothing to do: the transaction is gone either way.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        r
    }

    fn finish(&mut self, op: &'static str, fence: Option<&Fence>) -> Result<(), StoreError> {
        if let Some(f) = fence {
            let sql = super::lease::fence_check_sql(Dialect::Sqlite);
            let mut stmt = self.conn.prepare_cached(&sql).map_err(sqlite_err(op))?;
            let held = stmt
                .query_row((&f.name, &f.holder, f.term), |_| Ok(()))
                .optional()
                .map_err(sqlite_err(op))?;
            if held.is_none() {
                return Err(StoreError::Deposed { term: f.term });
            }
        }
        self.conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]))
            .map_err(sqlite_err(op))?;
        Ok(())
    }

    fn max_seq(&mut self, op: &'static str) -> Result<i64, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT MAX(seq) FROM task_events")
            .map_err(sqlite_err(op))?;
        let max: Option<i64> = stmt.query_row([], |r| r.get(0)).map_err(sqlite_err(op))?;
        Ok(max.unwrap_or(0))
    }

    /// Inserts `rows` (their `seq` assigned here) with one change-feed event each; returns
    /// the events and the rows' heads.
    pub(in crate::store) fn insert(
        &mut self,
        mut rows: Vec<NewTask>,
        at_ms: i64,
        fence: Option<&Fence>,
    ) -> Result<(Vec<TaskEvent>, Vec<TaskHead>), StoreError> {
        let op = "inserting tasks";
        self.in_transaction(op, |w| {
            let first = w.max_seq(op)? + 1;
            for (i, r) in rows.iter_mut().enumerate() {
                r.head.seq = first + i as i64;
            }
            let sizes: Vec<usize> = rows.iter().map(NewTask::size).collect();
            for r in chunks(
                &sizes,
                Dialect::Sqlite.max_params() / TASK_INSERT_COLS,
                MAX_STATEMENT_BYTES,
            ) {
                let sql = w.sql(Kind::TaskInsert, r.len());
                let mut stmt = w.conn.prepare_cached(&sql).map_err(sqlite_err(op))?;
                let mut b = Binder::new(&mut stmt);
                for n in &rows[r] {
                    let t = &n.head;
                    b.bind(&t.id)
                        .and_then(|b| b.bind(&t.external_key))
                        .and_then(|b| b.bind(&n.spec))
                        .and_then(|b| b.bind(t.state.as_str()))
                        .and_then(|b| b.bind(i64::from(t.attempts)))
                        .and_then(|b| b.bind(&t.current_attempt_id))
                        .and_then(|b| b.bind(&t.agent_id))
                        .and_then(|b| b.bind(&t.hostname))
                        .and_then(|b| b.bind(&t.message))
                        .and_then(|b| b.bind(&t.reason))
                        .and_then(|b| b.bind(t.exit_code.map(i64::from)))
                        .and_then(|b| b.bind(t.kill_requested))
                        .and_then(|b| b.bind(at_ms))
                        .and_then(|b| b.bind(at_ms))
                        .and_then(|b| b.bind(t.seq))
                        .map_err(sqlite_err(op))?;
                }
                stmt.raw_execute().map_err(sqlite_err(op))?;
            }
            let (labels, sizes) = super::write::label_rows(&rows);
            for r in chunks(
                &sizes,
                Dialect::Sqlite.max_params() / 3,
                MAX_STATEMENT_BYTES,
            ) {
                let sql = w.sql(Kind::Labels, r.len());
                let mut stmt = w.conn.prepare_cached(&sql).map_err(sqlite_err(op))?;
                let mut b = Binder::new(&mut stmt);
                for (id, k, v) in &labels[r] {
                    b.bind(id)
                        .and_then(|b| b.bind(k))
                        .and_then(|b| b.bind(v))
                        .map_err(sqlite_err(op))?;
                }
                stmt.raw_execute().map_err(sqlite_err(op))?;
            }
            let events = super::insert_events_of(&rows, at_ms);
            w.insert_events(op, &events)?;
            w.finish(op, fence)?;
            Ok((events, rows.into_iter().map(|n| n.head).collect()))
        })
    }

    fn insert_events(&mut self, op: &'static str, events: &[TaskEvent]) -> Result<(), StoreError> {
        let sizes: Vec<usize> = events.iter().map(event_size).collect();
        for r in chunks(
            &sizes,
            Dialect::Sqlite.max_params() / 9,
            MAX_STATEMENT_BYTES,
        ) {
            let sql = self.sql(Kind::Events, r.len());
            let mut stmt = self.conn.prepare_cached(&sql).map_err(sqlite_err(op))?;
            let mut b = Binder::new(&mut stmt);
            for e in &events[r] {
                b.bind(e.seq)
                    .and_then(|b| b.bind(&e.task_id))
                    .and_then(|b| b.bind(e.state.as_str()))
                    .and_then(|b| b.bind(i64::from(e.attempt)))
                    .and_then(|b| b.bind(&e.message))
                    .and_then(|b| b.bind(e.at))
                    .and_then(|b| b.bind(&e.external_key))
                    .and_then(|b| b.bind(e.prev_seq))
                    .and_then(|b| b.bind(&e.reason))
                    .map_err(sqlite_err(op))?;
            }
            stmt.raw_execute().map_err(sqlite_err(op))?;
        }
        Ok(())
    }

    fn read_heads(&mut self, op: &'static str, ids: &[&str]) -> Result<Vec<TaskHead>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for r in chunks(&vec![0; ids.len()], 4096, usize::MAX) {
            let sql = self.sql(Kind::Heads, r.len());
            let mut stmt = self.conn.prepare_cached(&sql).map_err(sqlite_err(op))?;
            let mut b = Binder::new(&mut stmt);
            for id in &ids[r] {
                b.bind(id).map_err(sqlite_err(op))?;
            }
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next().map_err(sqlite_err(op))? {
                out.push(head_from_row(row).map_err(|e| match e {
                    RowError::Sql(e) => sqlite_err(op)(e),
                    RowError::Store(e) => e,
                })?);
            }
        }
        Ok(out)
    }

    /// One try of a commit (see [`super::Store::commit`]): `None`, with nothing written, when
    /// a task row was not at the `seq` its head said.
    pub(in crate::store) fn commit_once(
        &mut self,
        cache: &HeadCache,
        changes: &[Change],
        use_cache: bool,
        fence: Option<&Fence>,
    ) -> Result<Option<Vec<TaskEvent>>, StoreError> {
        let op = "committing task changes";
        self.in_transaction(op, |w| {
            let mut ids: Vec<&str> = changes.iter().map(|c| c.task_id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            let (mut heads, missing) = if use_cache {
                cache.take(&ids)
            } else {
                (Vec::new(), ids.clone())
            };
            heads.extend(w.read_heads(op, &missing)?);
            let next = w.max_seq(op)? + 1;
            let plan = plan_commit(heads, changes, next)?;

            let sizes: Vec<usize> = plan.tasks.iter().map(TaskHead::size).collect();
            let per_chunk = Dialect::Sqlite.max_params() / (TASK_UPDATE_COLS.len() + 1);
            for r in chunks(&sizes, per_chunk, MAX_STATEMENT_BYTES) {
                let sql = w.sql(Kind::TaskUpdate, r.len());
                let rows = r.len();
                let mut stmt = w.conn.prepare_cached(&sql).map_err(sqlite_err(op))?;
                let mut b = Binder::new(&mut stmt);
                for (t, old_seq) in plan.tasks[r.clone()].iter().zip(&plan.old_seq[r]) {
                    b.bind(&t.id)
                        .and_then(|b| b.bind(t.state.as_str()))
                        .and_then(|b| b.bind(i64::from(t.attempts)))
                        .and_then(|b| b.bind(&t.current_attempt_id))
                        .and_then(|b| b.bind(&t.agent_id))
                        .and_then(|b| b.bind(&t.hostname))
                        .and_then(|b| b.bind(&t.message))
                        .and_then(|b| b.bind(&t.reason))
                        .and_then(|b| b.bind(t.exit_code.map(i64::from)))
                        .and_then(|b| b.bind(t.kill_requested))
                        .and_then(|b| b.bind(t.updated_at))
                        .and_then(|b| b.bind(t.seq))
                        .and_then(|b| b.bind(*old_seq))
                        .map_err(sqlite_err(op))?;
                }
                if stmt.raw_execute().map_err(sqlite_err(op))? != rows {
                    return Ok(None);
                }
            }

            let sizes: Vec<usize> = plan.attempts.iter().map(AttemptWrite::size).collect();
            for r in chunks(
                &sizes,
                Dialect::Sqlite.max_params() / ATTEMPT_INSERT_COLS,
                MAX_STATEMENT_BYTES,
            ) {
                let sql = w.sql(Kind::AttemptUpsert, r.len());
                let mut stmt = w.conn.prepare_cached(&sql).map_err(sqlite_err(op))?;
                let mut b = Binder::new(&mut stmt);
                for a in &plan.attempts[r] {
                    b.bind(a.task_id)
                        .and_then(|b| b.bind(i64::from(a.attempt)))
                        .and_then(|b| b.bind(a.backend_task_id.as_ref()))
                        .and_then(|b| b.bind(a.agent_id))
                        .and_then(|b| b.bind(a.hostname))
                        .and_then(|b| b.bind(a.agent_url))
                        .and_then(|b| b.bind(a.state.as_str()))
                        .and_then(|b| b.bind(a.message))
                        .and_then(|b| b.bind(a.reason))
                        .and_then(|b| b.bind(a.started_at))
                        .and_then(|b| b.bind(a.updated_at))
                        .map_err(sqlite_err(op))?;
                }
                stmt.raw_execute().map_err(sqlite_err(op))?;
            }

            for c in changes {
                let Some(spec) = &c.spec else { continue };
                let json = super::spec_json(spec, &c.task_id)?;
                let mut stmt = w
                    .conn
                    .prepare_cached("UPDATE tasks SET spec = ? WHERE id = ?")
                    .map_err(sqlite_err(op))?;
                stmt.execute((json, &c.task_id)).map_err(sqlite_err(op))?;
            }

            w.insert_events(op, &plan.events)?;
            // Last, so that the lease is checked as close to the commit as can be.
            w.finish(op, fence)?;
            let events = plan.events;
            cache.keep(plan.tasks.into_iter().chain(plan.untouched));
            Ok(Some(events))
        })
    }
}

enum RowError {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for RowError {
    fn from(e: rusqlite::Error) -> Self {
        RowError::Sql(e)
    }
}

impl From<StoreError> for RowError {
    fn from(e: StoreError) -> Self {
        RowError::Store(e)
    }
}

/// A row of [`HEAD_COLS`].
fn head_from_row(r: &rusqlite::Row<'_>) -> Result<TaskHead, RowError> {
    let id: String = r.get(0)?;
    let state: String = r.get(2)?;
    Ok(TaskHead {
        state: parse_state(&state, &format!("task {id}"))?,
        attempts: to_u32(r.get(3)?, &format!("attempts of task {id}"))?,
        exit_code: to_i32(r.get(9)?, &format!("exit code of task {id}"))?,
        external_key: r.get(1)?,
        current_attempt_id: r.get(4)?,
        agent_id: r.get(5)?,
        hostname: r.get(6)?,
        message: r.get(7)?,
        reason: r.get(8)?,
        kill_requested: r.get(10)?,
        updated_at: r.get(11)?,
        seq: r.get(12)?,
        id,
    })
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sqlite_err(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { op, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's connection keeps the durability and privacy settings of the pool's, and
    /// keeps its statement journals in memory (`temp_store`).
    #[tokio::test]
    async fn the_writer_connection_is_durable_and_overwrites_what_it_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        std::fs::File::create(&path).unwrap();
        let w = SqliteThread::open(&path, std::time::Duration::from_secs(1)).unwrap();
        let got = w
            .run(|w| {
                let p = |name: &str| -> String {
                    w.conn
                        .query_row(&format!("PRAGMA {name}"), [], |r| {
                            r.get::<_, rusqlite::types::Value>(0)
                        })
                        .map(|v| format!("{v:?}"))
                        .unwrap()
                };
                Ok([
                    p("journal_mode"),
                    p("synchronous"),
                    p("secure_delete"),
                    p("foreign_keys"),
                    p("temp_store"),
                ])
            })
            .await
            .unwrap();
        assert_eq!(
            got,
            [
                r#"Text("wal")"#.to_string(),
                "Integer(2)".into(), // FULL
                "Integer(1)".into(),
                "Integer(1)".into(),
                "Integer(2)".into(), // MEMORY
            ]
        );
        w.close().await;
        assert!(w.run(|_| Ok(())).await.is_err(), "closed");
    }

    /// The change-feed reader reads what the writer committed, in pages, and cannot write.
    #[tokio::test]
    async fn the_feed_reader_reads_what_was_committed_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.db");
        std::fs::File::create(&path).unwrap();
        let timeout = std::time::Duration::from_secs(1);
        let w = SqliteThread::open(&path, timeout).unwrap();
        w.run(|w| {
            w.conn
                .execute_batch(
                    "CREATE TABLE task_events (seq INTEGER PRIMARY KEY, task_id TEXT NOT NULL, \
                     state TEXT NOT NULL, attempt INTEGER NOT NULL, message TEXT, \
                     at INTEGER NOT NULL, external_key TEXT, prev_seq INTEGER, reason TEXT); \
                     INSERT INTO task_events VALUES (1, 'a', 'queued', 0, NULL, 10, 'k', NULL, NULL), \
                     (2, 'a', 'launching', 1, 'on h', 11, 'k', 1, NULL), \
                     (3, 'b', 'queued', 0, NULL, 12, NULL, NULL, NULL);",
                )
                .map_err(|e| StoreError::Sqlite { op: "test", source: e })
        })
        .await
        .unwrap();
        let r = SqliteThread::open_reader(&path, timeout).unwrap();
        let page = r.run(|c| c.events_since(1, 1)).await.unwrap();
        assert_eq!(page.len(), 1);
        let e = &page[0];
        assert_eq!(
            (
                e.seq,
                e.task_id.as_str(),
                e.state,
                e.attempt,
                e.message.as_deref()
            ),
            (2, "a", crate::task::TaskState::Launching, 1, Some("on h"))
        );
        assert_eq!(
            (e.at, e.external_key.as_deref(), e.prev_seq),
            (11, Some("k"), Some(1))
        );
        let rest = r.run(|c| c.events_since(2, 10)).await.unwrap();
        assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
        let write = r
            .run(|c| {
                c.conn
                    .execute("DELETE FROM task_events", [])
                    .map_err(|e| StoreError::Sqlite {
                        op: "test",
                        source: e,
                    })
            })
            .await;
        assert!(write.is_err(), "the reader wrote: {write:?}");
        let all = r.run(|c| c.events_since(0, 10)).await.unwrap();
        assert_eq!(all.len(), 3, "nothing was deleted");
        r.close().await;
        let closed = r.run(|c| c.events_since(0, 1)).await.unwrap_err();
        assert!(closed.to_string().contains("store-reader"), "{closed}");
    }
}
