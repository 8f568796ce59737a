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
use std::borrow::Cow;
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
/// stored value; `started_at` and `backend_task_id` are only used on insert). It borrows from
/// the changes it was planned from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttemptWrite<'c> {
    pub task_id: &'c str,
    pub attempt: u32,
    pub backend_task_id: Cow<'c, str>,
    pub agent_id: Option<&'c str>,
    pub hostname: Option<&'c str>,
    pub agent_url: Option<&'c str>,
    pub state: TaskState,
    pub message: Option<&'c str>,
    pub reason: Option<&'c str>,
    pub started_at: i64,
    pub updated_at: i64,
}

/// What one commit writes.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan<'c> {
    /// Task rows whose columns changed (final values), in the order first touched.
    pub tasks: Vec<TaskHead>,
    /// For each of `tasks`, the `seq` its row had when read (the row is written only where
    /// it still has it).
    pub old_seq: Vec<i64>,
    /// The heads given that no change moved (to keep in the head cache).
    pub untouched: Vec<TaskHead>,
    /// At most one per `(task_id, attempt)`, in first-touched order.
    pub attempts: Vec<AttemptWrite<'c>>,
    /// Events to append, `seq` from `next_seq` upwards.
    pub events: Vec<TaskEvent>,
}

/// Sets `field` to `new` (even `None`); true when that changed it.
fn assign(field: &mut Option<String>, new: &Option<String>) -> bool {
    if field != new {
        field.clone_from(new);
        true
    } else {
        false
    }
}

/// Sets `field` to `new` when `new` is `Some`; true when that changed it.
fn overwrite(field: &mut Option<String>, new: &Option<String>) -> bool {
    new.is_some() && assign(field, new)
}

/// Sets an attempt's `field` to a later change's `new` when that carries it.
fn later<'c>(field: &mut Option<&'c str>, new: &'c Option<String>) {
    if let Some(n) = new {
        *field = Some(n.as_str());
    }
}

/// A head being planned: its row's `seq` when read, and the position among the dirty tasks.
struct Slot {
    head: TaskHead,
    old_seq: i64,
    dirty: Option<usize>,
}

/// Plans the writes of `changes` over the stored `heads`; event seqs start at `next_seq`.
/// Fails with [`StoreError::UnknownTask`] when a change names a task not in `heads`.
pub(crate) fn plan_commit(
    heads: Vec<TaskHead>,
    changes: &[Change],
    next_seq: i64,
) -> Result<Plan<'_>, StoreError> {
    // Heads sorted by id and found by binary search: no map keyed by copies of the ids.
    let mut slots: Vec<Slot> = heads
        .into_iter()
        .map(|head| Slot {
            old_seq: head.seq,
            head,
            dirty: None,
        })
        .collect();
    slots.sort_unstable_by(|a, b| a.head.id.cmp(&b.head.id));
    let mut dirty_order: Vec<usize> = Vec::new();
    let mut attempts: Vec<AttemptWrite<'_>> = Vec::new();
    let mut attempt_idx: HashMap<(&str, u32), usize> = HashMap::new();
    let mut events = Vec::new();
    let mut seq = next_seq;

    for c in changes {
        let Ok(i) = slots.binary_search_by(|s| s.head.id.as_str().cmp(&c.task_id)) else {
            return Err(StoreError::UnknownTask {
                task_id: c.task_id.clone(),
            });
        };
        let slot = &mut slots[i];
        let head = &mut slot.head;
        let backend_id = || -> Cow<'_, str> {
            match &c.backend_task_id {
                Some(b) => Cow::Borrowed(b.as_str()),
                None => Cow::Owned(attempt_task_id(&c.task_id, c.attempt)),
            }
        };

        if c.attempt > 0 {
            match attempt_idx.get(&(c.task_id.as_str(), c.attempt)) {
                Some(&i) => {
                    let a = &mut attempts[i];
                    a.state = c.state;
                    later(&mut a.agent_id, &c.agent_id);
                    later(&mut a.hostname, &c.hostname);
                    later(&mut a.agent_url, &c.agent_url);
                    later(&mut a.message, &c.message);
                    later(&mut a.reason, &c.reason);
                    a.updated_at = c.at;
                }
                None => {
                    attempt_idx.insert((c.task_id.as_str(), c.attempt), attempts.len());
                    attempts.push(AttemptWrite {
                        task_id: &c.task_id,
                        attempt: c.attempt,
                        backend_task_id: backend_id(),
                        agent_id: c.agent_id.as_deref(),
                        hostname: c.hostname.as_deref(),
                        agent_url: c.agent_url.as_deref(),
                        state: c.state,
                        message: c.message.as_deref(),
                        reason: c.reason.as_deref(),
                        started_at: c.at,
                        updated_at: c.at,
                    });
                }
            }
            if c.attempt < head.attempts {
                continue; // a superseded attempt: its row only
            }
        }

        let (before_state, before_seq) = (head.state, head.seq);
        let new_attempt = c.attempt > head.attempts;
        let mut changed = false;
        if new_attempt {
            head.attempts = c.attempt;
            let id = backend_id();
            if head.current_attempt_id.as_deref() != Some(&*id) {
                head.current_attempt_id = Some(id.into_owned());
            }
            changed = true;
            assign(&mut head.agent_id, &c.agent_id);
            assign(&mut head.hostname, &c.hostname);
            assign(&mut head.message, &c.message);
            assign(&mut head.reason, &c.reason);
            head.exit_code = c.exit_code;
        } else {
            if c.attempt > 0 {
                changed |= overwrite(&mut head.current_attempt_id, &c.backend_task_id);
            }
            changed |= overwrite(&mut head.agent_id, &c.agent_id);
            changed |= overwrite(&mut head.hostname, &c.hostname);
            changed |= overwrite(&mut head.message, &c.message);
            changed |= overwrite(&mut head.reason, &c.reason);
            if c.exit_code.is_some() && head.exit_code != c.exit_code {
                head.exit_code = c.exit_code;
                changed = true;
            }
        }
        if head.state != c.state {
            head.state = c.state;
            changed = true;
        }
        if c.kill_requested && !head.kill_requested {
            head.kill_requested = true;
            changed = true;
        }

        if before_state != c.state || new_attempt {
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
                prev_seq: Some(before_seq),
            });
            seq += 1;
        }
        if changed {
            head.updated_at = c.at;
            if slot.dirty.is_none() {
                slot.dirty = Some(dirty_order.len());
                dirty_order.push(i);
            }
        }
    }

    // The dirty heads in the order first touched, the others apart.
    let mut tasks: Vec<Option<(TaskHead, i64)>> = (0..dirty_order.len()).map(|_| None).collect();
    let mut untouched = Vec::with_capacity(slots.len() - dirty_order.len());
    for s in slots {
        match s.dirty {
            Some(k) => tasks[k] = Some((s.head, s.old_seq)),
            None => untouched.push(s.head),
        }
    }
    let (tasks, old_seq) = tasks.into_iter().flatten().unzip();
    Ok(Plan {
        tasks,
        old_seq,
        untouched,
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
        assert_eq!(plan.old_seq, vec![1], "the seq the row is checked against");
        assert!(plan.untouched.is_empty());
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
        let changes = [change("a", TaskState::Running, 1, 99)];
        let plan = plan_commit(vec![h], &changes, 5).unwrap();
        assert!(plan.events.is_empty());
        assert!(plan.tasks.is_empty());
        assert_eq!(plan.untouched.len(), 1, "given back for the head cache");
    }

    #[test]
    fn new_attempt_resets_the_attempt_fields_and_counts_as_a_transition() {
        let mut h = head("a");
        h.state = TaskState::Launching;
        h.attempts = 1;
        h.agent_id = Some("old-agent".into());
        h.message = Some("dropped".into());
        let changes = [change("a", TaskState::Launching, 2, 50)];
        let plan = plan_commit(vec![h], &changes, 3).unwrap();
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
        let changes = [change("a", TaskState::Failed, 1, 50)];
        let plan = plan_commit(vec![h], &changes, 3).unwrap();
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
        let changes = [kill, change("a", TaskState::Killed, 0, 6)];
        let plan = plan_commit(vec![h], &changes, 1).unwrap();
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
