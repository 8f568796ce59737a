//! The pure part of [`Store::commit`](super::Store::commit): given the stored heads of the
//! tasks a batch of [`Change`]s touches, work out the new task rows, the attempt rows to upsert
//! and the change-feed events to append. No I/O; the store reads the heads and writes the plan
//! in one transaction.
//!
//! Rules, applied change by change in order (so several changes of one task in one batch chain):
//! - A change with `attempt` greater than the task's `attempts` starts a new attempt: the task's
//!   current attempt id, agent, hostname, message, reason and exit code are replaced by the
//!   change's (even where `None`).
//! - A change for the current attempt (or with `attempt == 0`, meaning "the task, whatever its
//!   attempt") overwrites the fields it carries (`Some`) and keeps the others.
//! - A change for an *older* attempt (`0 < attempt < attempts`) only updates that attempt's row;
//!   a late status of a superseded attempt never moves the task.
//! - `kill_requested` is sticky.
//! - An event is appended when the task's state changes or a new attempt starts; an exact
//!   duplicate appends nothing and leaves the task row untouched, so replays are idempotent.
//! - Every change with `attempt > 0` upserts the row of that attempt (its state, and the fields
//!   it carries; a backend task id, once stored, is never changed).

use super::{Change, StoreError};
use crate::task::{attempt_task_id, TaskEvent, TaskState};
use std::collections::HashMap;

/// The mutable columns of a stored task (everything but the spec and creation time).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TaskHead {
    pub id: String,
    pub external_key: Option<String>,
    pub state: TaskState,
    pub attempts: u32,
    pub current_attempt_id: Option<String>,
    pub agent_id: Option<String>,
    pub hostname: Option<String>,
    pub message: Option<String>,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub kill_requested: bool,
    pub updated_at: i64,
    pub seq: i64,
}

/// An attempt row to insert, or to merge into the stored one (fields that are `None` keep the
/// stored value; `started_at` and `backend_task_id` are only used on insert).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttemptWrite {
    pub task_id: String,
    pub attempt: u32,
    pub backend_task_id: String,
    pub agent_id: Option<String>,
    pub hostname: Option<String>,
    pub agent_url: Option<String>,
    pub state: TaskState,
    pub message: Option<String>,
    pub reason: Option<String>,
    pub started_at: i64,
    pub updated_at: i64,
}

/// What one commit writes.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    /// Task rows whose columns changed (final values).
    pub tasks: Vec<TaskHead>,
    /// At most one per `(task_id, attempt)`, in first-touched order.
    pub attempts: Vec<AttemptWrite>,
    /// Events to append, `seq` from `next_seq` upwards.
    pub events: Vec<TaskEvent>,
}

fn overwrite(field: &mut Option<String>, new: &Option<String>) {
    if new.is_some() {
        field.clone_from(new);
    }
}

/// Plans the writes of `changes` over the stored `heads`; event seqs start at `next_seq`.
/// Fails with [`StoreError::UnknownTask`] when a change names a task not in `heads`.
pub(crate) fn plan_commit(
    heads: Vec<TaskHead>,
    changes: &[Change],
    next_seq: i64,
) -> Result<Plan, StoreError> {
    // (current head, dirty?) per task, and the order tasks were first touched in.
    let mut tasks: HashMap<String, (TaskHead, bool)> = heads
        .into_iter()
        .map(|h| (h.id.clone(), (h, false)))
        .collect();
    let mut touched: Vec<String> = Vec::new();
    let mut attempts: Vec<AttemptWrite> = Vec::new();
    let mut attempt_idx: HashMap<(String, u32), usize> = HashMap::new();
    let mut events = Vec::new();
    let mut seq = next_seq;

    for c in changes {
        let Some((head, dirty)) = tasks.get_mut(&c.task_id) else {
            return Err(StoreError::UnknownTask {
                task_id: c.task_id.clone(),
            });
        };
        let backend_id = || {
            c.backend_task_id
                .clone()
                .unwrap_or_else(|| attempt_task_id(&c.task_id, c.attempt))
        };

        if c.attempt > 0 {
            match attempt_idx.get(&(c.task_id.clone(), c.attempt)) {
                Some(&i) => {
                    let a = &mut attempts[i];
                    a.state = c.state;
                    overwrite(&mut a.agent_id, &c.agent_id);
                    overwrite(&mut a.hostname, &c.hostname);
                    overwrite(&mut a.agent_url, &c.agent_url);
                    overwrite(&mut a.message, &c.message);
                    overwrite(&mut a.reason, &c.reason);
                    a.updated_at = c.at;
                }
                None => {
                    attempt_idx.insert((c.task_id.clone(), c.attempt), attempts.len());
                    attempts.push(AttemptWrite {
                        task_id: c.task_id.clone(),
                        attempt: c.attempt,
                        backend_task_id: backend_id(),
                        agent_id: c.agent_id.clone(),
                        hostname: c.hostname.clone(),
                        agent_url: c.agent_url.clone(),
                        state: c.state,
                        message: c.message.clone(),
                        reason: c.reason.clone(),
                        started_at: c.at,
                        updated_at: c.at,
                    });
                }
            }
            if c.attempt < head.attempts {
                continue; // a superseded attempt: its row only
            }
        }

        let before = head.clone();
        let new_attempt = c.attempt > head.attempts;
        if new_attempt {
            head.attempts = c.attempt;
            head.current_attempt_id = Some(backend_id());
            head.agent_id.clone_from(&c.agent_id);
            head.hostname.clone_from(&c.hostname);
            head.message.clone_from(&c.message);
            head.reason.clone_from(&c.reason);
            head.exit_code = c.exit_code;
        } else {
            if c.attempt > 0 {
                overwrite(&mut head.current_attempt_id, &c.backend_task_id);
            }
            overwrite(&mut head.agent_id, &c.agent_id);
            overwrite(&mut head.hostname, &c.hostname);
            overwrite(&mut head.message, &c.message);
            overwrite(&mut head.reason, &c.reason);
            if c.exit_code.is_some() {
                head.exit_code = c.exit_code;
            }
        }
        head.state = c.state;
        head.kill_requested |= c.kill_requested;

        if before.state != c.state || new_attempt {
            head.seq = seq;
            events.push(TaskEvent {
                seq,
                task_id: c.task_id.clone(),
                state: c.state,
                attempt: head.attempts,
                message: c.message.clone(),
                at: c.at,
                external_key: head.external_key.clone(),
                reason: c.reason.clone(),
                prev_seq: Some(before.seq),
            });
            seq += 1;
        }
        if *head != before {
            head.updated_at = c.at;
            if !*dirty {
                *dirty = true;
                touched.push(c.task_id.clone());
            }
        }
    }

    let tasks = touched
        .into_iter()
        .filter_map(|id| tasks.remove(&id).map(|(h, _)| h))
        .collect();
    Ok(Plan {
        tasks,
        attempts,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(id: &str) -> TaskHead {
        TaskHead {
            id: id.into(),
            external_key: Some(format!("key-{id}")),
            state: TaskState::Queued,
            attempts: 0,
            current_attempt_id: None,
            agent_id: None,
            hostname: None,
            message: None,
            reason: None,
            exit_code: None,
            kill_requested: false,
            updated_at: 1,
            seq: 1,
        }
    }

    fn change(id: &str, state: TaskState, attempt: u32, at: i64) -> Change {
        Change {
            task_id: id.into(),
            state,
            attempt,
            backend_task_id: None,
            agent_id: None,
            hostname: None,
            agent_url: None,
            message: None,
            reason: None,
            exit_code: None,
            kill_requested: false,
            at,
            spec: None,
        }
    }

    #[test]
    fn lifecycle_in_one_batch_chains_and_numbers_events() {
        let mut launch = change("a", TaskState::Launching, 1, 10);
        launch.agent_id = Some("agent-1".into());
        launch.hostname = Some("h1".into());
        let mut fin = change("a", TaskState::Succeeded, 1, 30);
        fin.exit_code = Some(0);
        let changes = [launch, change("a", TaskState::Running, 1, 20), fin];
        let plan = plan_commit(vec![head("a")], &changes, 7).unwrap();

        let seqs: Vec<i64> = plan.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![7, 8, 9]);
        assert!(plan.events.iter().all(|e| e.attempt == 1));
        assert_eq!(plan.events[0].external_key.as_deref(), Some("key-a"));
        let t = &plan.tasks[0];
        assert_eq!(t.state, TaskState::Succeeded);
        assert_eq!(t.seq, 9);
        assert_eq!(t.updated_at, 30);
        assert_eq!(t.current_attempt_id.as_deref(), Some("a.1"));
        assert_eq!(
            t.agent_id.as_deref(),
            Some("agent-1"),
            "kept when later changes omit it"
        );
        assert_eq!(t.exit_code, Some(0));
        assert_eq!(plan.attempts.len(), 1, "one upsert per attempt");
        assert_eq!(plan.attempts[0].started_at, 10);
        assert_eq!(plan.attempts[0].updated_at, 30);
        assert_eq!(plan.attempts[0].state, TaskState::Succeeded);
    }

    #[test]
    fn duplicates_append_nothing_and_leave_the_row_alone() {
        let mut h = head("a");
        h.state = TaskState::Running;
        h.attempts = 1;
        h.current_attempt_id = Some("a.1".into());
        let plan = plan_commit(vec![h], &[change("a", TaskState::Running, 1, 99)], 5).unwrap();
        assert!(plan.events.is_empty());
        assert!(plan.tasks.is_empty());
    }

    #[test]
    fn new_attempt_resets_the_attempt_fields_and_counts_as_a_transition() {
        let mut h = head("a");
        h.state = TaskState::Launching;
        h.attempts = 1;
        h.agent_id = Some("old-agent".into());
        h.message = Some("dropped".into());
        let plan = plan_commit(vec![h], &[change("a", TaskState::Launching, 2, 50)], 3).unwrap();
        assert_eq!(
            plan.events.len(),
            1,
            "same state, new attempt: a transition"
        );
        assert_eq!(plan.events[0].attempt, 2);
        let t = &plan.tasks[0];
        assert_eq!(t.agent_id, None);
        assert_eq!(t.message, None);
        assert_eq!(t.current_attempt_id.as_deref(), Some("a.2"));
    }

    #[test]
    fn a_superseded_attempt_only_touches_its_own_row() {
        let mut h = head("a");
        h.state = TaskState::Running;
        h.attempts = 2;
        let plan = plan_commit(vec![h], &[change("a", TaskState::Failed, 1, 50)], 3).unwrap();
        assert!(plan.events.is_empty());
        assert!(plan.tasks.is_empty());
        assert_eq!(plan.attempts.len(), 1);
        assert_eq!(
            (plan.attempts[0].attempt, plan.attempts[0].state),
            (1, TaskState::Failed)
        );
    }

    #[test]
    fn kill_flag_is_sticky_and_attempt_zero_means_the_task() {
        let mut h = head("a");
        h.attempts = 1;
        h.state = TaskState::Queued;
        let mut kill = change("a", TaskState::Killing, 0, 5);
        kill.kill_requested = true;
        let plan = plan_commit(vec![h], &[kill, change("a", TaskState::Killed, 0, 6)], 1).unwrap();
        assert_eq!(plan.events.len(), 2);
        assert_eq!(plan.events[1].attempt, 1);
        assert!(plan.tasks[0].kill_requested);
        assert!(plan.attempts.is_empty(), "attempt 0 has no attempt row");
    }

    #[test]
    fn unknown_task_is_an_error_naming_it() {
        let e = plan_commit(vec![], &[change("nope", TaskState::Running, 1, 1)], 1).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
