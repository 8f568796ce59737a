//! The write path: inserting new tasks and committing changes, with their change-feed events.

use super::*;

/// A task prepared for insertion: its head (`seq` assigned in the inserting transaction), its
/// spec as stored, its labels.
pub(super) struct NewTask {
    pub(super) head: TaskHead,
    pub(super) spec: String,
    pub(super) labels: Vec<(String, String)>,
}

impl NewTask {
    pub(super) fn new(rec: &TaskRecord, at_ms: i64) -> Result<NewTask, StoreError> {
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
    pub(super) fn size(&self) -> usize {
        self.spec.len() + 256
    }
}

/// The change-feed events of inserted tasks (their `seq` assigned).
/// The label rows of new tasks, `(task id, name, value)`, and the bytes of each (for chunking
/// the multi-row INSERT).
pub(super) fn label_rows(rows: &[NewTask]) -> (Vec<(&str, &str, &str)>, Vec<usize>) {
    let labels: Vec<(&str, &str, &str)> = rows
        .iter()
        .flat_map(|n| {
            n.labels
                .iter()
                .map(move |(k, v)| (n.head.id.as_str(), k.as_str(), v.as_str()))
        })
        .collect();
    let sizes = labels
        .iter()
        .map(|l| l.0.len() + l.1.len() + l.2.len())
        .collect();
    (labels, sizes)
}

pub(super) fn insert_events_of(rows: &[NewTask], at_ms: i64) -> Vec<TaskEvent> {
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
pub(super) fn spec_json(spec: &TaskSpec, task_id: &str) -> Result<String, StoreError> {
    serde_json::to_string(spec).map_err(|e| StoreError::Corrupt {
        what: format!("spec of task {task_id}"),
        reason: e.to_string(),
    })
}

/// Columns of a task row insert, of an attempt upsert.
pub(super) const TASK_INSERT_COLS: usize = 15;
pub(super) const ATTEMPT_INSERT_COLS: usize = 11;

impl Store {
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

            let (labels, sizes) = label_rows(&rows);
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
    pub(super) async fn commit_here(
        &self,
        changes: &[Change],
    ) -> Result<Vec<TaskEvent>, StoreError> {
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
    pub(super) async fn commit_once(
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
}
