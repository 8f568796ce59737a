//! A PostgreSQL commit in one round trip: the plan goes to the `am_commit_changes` function
//! (migration 20261205100001) as one array per column, in one statement that runs in its own
//! transaction. The function checks what the multi-statement commit of the other databases
//! checks (the change feed's last seq, each task row's seq, the leader lease) and writes
//! nothing when a check fails.
//!
//! The feed's last seq is the one this process last wrote ([`Store`]'s `last_seq`), read from
//! the database only when unknown (at start, after a failed check); the heads of tasks not in
//! the head cache are read first, in one statement.

use super::{collect, HeadRow, Store, HEAD_COLS};
use crate::store::plan::{plan_commit, TaskHead};
use crate::store::{Change, StoreError};
use crate::task::TaskEvent;
use sqlx::postgres::PgPool;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// `last_seq` when this process does not know the feed's last seq.
pub(super) const UNKNOWN_SEQ: i64 = i64::MIN;

const COMMIT: &str = "SELECT am_commit_changes($1, $2, $3, $4, \
    $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
    $18, $19, \
    $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, \
    $31, $32, $33, $34, $35, $36, $37, $38, $39)";

impl Store {
    /// One try of a commit on PostgreSQL: `None`, with nothing written, when another writer
    /// moved a task row or the change feed since this process planned on them.
    pub(super) async fn commit_once_pg(
        &self,
        pool: &PgPool,
        changes: &[Change],
        use_cache: bool,
    ) -> Result<Option<Vec<TaskEvent>>, StoreError> {
        let op = "committing task changes";
        let mut ids: Vec<&str> = changes.iter().map(|c| c.task_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let (mut heads, missing) = if use_cache {
            self.heads.take(&ids)
        } else {
            (Vec::new(), ids)
        };
        if !missing.is_empty() {
            let rows: Vec<HeadRow> =
                sqlx::query_as(&format!("SELECT {HEAD_COLS} FROM tasks WHERE id = ANY($1)"))
                    .bind(&missing)
                    .fetch_all(pool)
                    .await
                    .map_err(StoreError::query(op))?;
            heads.extend(collect::<_, TaskHead>(rows)?);
        }
        let mut last = self.last_seq.load(Ordering::Acquire);
        if last == UNKNOWN_SEQ {
            last = sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(seq), 0) FROM task_events")
                .fetch_one(pool)
                .await
                .map_err(StoreError::query(op))?;
        }
        let plan = plan_commit(heads, changes, last + 1)?;

        let n = plan.tasks.len();
        let mut t_id = Vec::with_capacity(n);
        let mut t_state = Vec::with_capacity(n);
        let mut t_attempts = Vec::with_capacity(n);
        let mut t_current = Vec::with_capacity(n);
        let mut t_agent = Vec::with_capacity(n);
        let mut t_host = Vec::with_capacity(n);
        let mut t_message = Vec::with_capacity(n);
        let mut t_reason = Vec::with_capacity(n);
        let mut t_exit = Vec::with_capacity(n);
        let mut t_kill = Vec::with_capacity(n);
        let mut t_updated = Vec::with_capacity(n);
        let mut t_seq = Vec::with_capacity(n);
        for t in &plan.tasks {
            t_id.push(t.id.as_str());
            t_state.push(t.state.as_str());
            t_attempts.push(i64::from(t.attempts));
            t_current.push(t.current_attempt_id.as_deref());
            t_agent.push(t.agent_id.as_deref());
            t_host.push(t.hostname.as_deref());
            t_message.push(t.message.as_deref());
            t_reason.push(t.reason.as_deref());
            t_exit.push(t.exit_code.map(i64::from));
            t_kill.push(t.kill_requested);
            t_updated.push(t.updated_at);
            t_seq.push(t.seq);
        }

        // The last spec given for each task (one row updated once).
        let mut s_id: Vec<&str> = Vec::new();
        let mut s_spec: Vec<String> = Vec::new();
        let mut s_at: HashMap<&str, usize> = HashMap::new();
        for c in changes {
            let Some(spec) = &c.spec else { continue };
            let json = super::write::spec_json(spec, &c.task_id)?;
            match s_at.get(c.task_id.as_str()) {
                Some(&i) => s_spec[i] = json,
                None => {
                    s_at.insert(&c.task_id, s_id.len());
                    s_id.push(&c.task_id);
                    s_spec.push(json);
                }
            }
        }

        let n = plan.attempts.len();
        let mut a_task = Vec::with_capacity(n);
        let mut a_attempt = Vec::with_capacity(n);
        let mut a_backend = Vec::with_capacity(n);
        let mut a_agent = Vec::with_capacity(n);
        let mut a_host = Vec::with_capacity(n);
        let mut a_url = Vec::with_capacity(n);
        let mut a_state = Vec::with_capacity(n);
        let mut a_message = Vec::with_capacity(n);
        let mut a_reason = Vec::with_capacity(n);
        let mut a_started = Vec::with_capacity(n);
        let mut a_updated = Vec::with_capacity(n);
        for a in &plan.attempts {
            a_task.push(a.task_id);
            a_attempt.push(i64::from(a.attempt));
            a_backend.push(a.backend_task_id.as_ref());
            a_agent.push(a.agent_id);
            a_host.push(a.hostname);
            a_url.push(a.agent_url);
            a_state.push(a.state.as_str());
            a_message.push(a.message);
            a_reason.push(a.reason);
            a_started.push(a.started_at);
            a_updated.push(a.updated_at);
        }

        let n = plan.events.len();
        let mut e_seq = Vec::with_capacity(n);
        let mut e_task = Vec::with_capacity(n);
        let mut e_state = Vec::with_capacity(n);
        let mut e_attempt = Vec::with_capacity(n);
        let mut e_message = Vec::with_capacity(n);
        let mut e_at = Vec::with_capacity(n);
        let mut e_key = Vec::with_capacity(n);
        let mut e_prev = Vec::with_capacity(n);
        let mut e_reason = Vec::with_capacity(n);
        for e in &plan.events {
            e_seq.push(e.seq);
            e_task.push(e.task_id.as_str());
            e_state.push(e.state.as_str());
            e_attempt.push(i64::from(e.attempt));
            e_message.push(e.message.as_deref());
            e_at.push(e.at);
            e_key.push(e.external_key.as_deref());
            e_prev.push(e.prev_seq);
            e_reason.push(e.reason.as_deref());
        }

        let fence = self.fence();
        let done = sqlx::query(COMMIT)
            .bind(last)
            .bind(fence.as_ref().map(|f| f.name.as_str()))
            .bind(fence.as_ref().map(|f| f.holder.as_str()))
            .bind(fence.as_ref().map(|f| f.term))
            .bind(&t_id)
            .bind(&t_state)
            .bind(&t_attempts)
            .bind(&t_current)
            .bind(&t_agent)
            .bind(&t_host)
            .bind(&t_message)
            .bind(&t_reason)
            .bind(&t_exit)
            .bind(&t_kill)
            .bind(&t_updated)
            .bind(&t_seq)
            .bind(&plan.old_seq)
            .bind(&s_id)
            .bind(&s_spec)
            .bind(&a_task)
            .bind(&a_attempt)
            .bind(&a_backend)
            .bind(&a_agent)
            .bind(&a_host)
            .bind(&a_url)
            .bind(&a_state)
            .bind(&a_message)
            .bind(&a_reason)
            .bind(&a_started)
            .bind(&a_updated)
            .bind(&e_seq)
            .bind(&e_task)
            .bind(&e_state)
            .bind(&e_attempt)
            .bind(&e_message)
            .bind(&e_at)
            .bind(&e_key)
            .bind(&e_prev)
            .bind(&e_reason)
            .execute(pool)
            .await;
        if let Err(e) = done {
            self.last_seq.store(UNKNOWN_SEQ, Ordering::Release);
            let code = match &e {
                sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
                _ => None,
            };
            return match code.as_deref() {
                Some("AMSEQ" | "AMROW") => Ok(None),
                Some("AMDEP") => Err(StoreError::Deposed {
                    term: fence.map_or(0, |f| f.term),
                }),
                _ => Err(StoreError::query(op)(e)),
            };
        }
        let events = plan.events;
        self.last_seq
            .store(events.last().map_or(last, |e| e.seq), Ordering::Release);
        self.heads
            .keep(plan.tasks.into_iter().chain(plan.untouched));
        Ok(Some(events))
    }
}
