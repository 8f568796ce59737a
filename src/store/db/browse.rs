//! Reads for the web UI (`src/web`): pages of tasks, newest change first; a task's history of
//! state changes; the newest task change. Every query is bounded whatever the table holds:
//!
//! - no filter, or states only: an index range walked from a cursor (`tasks_seq`, or
//!   `tasks_state_seq` once per state), stopped after one page;
//! - a label or an external key (which no index serves in `seq` order): a window of at most
//!   [`SCAN_WINDOW`] consecutive change-feed positions below the cursor, each task in it
//!   looked at once; a page may then hold fewer tasks than asked, and says which positions it
//!   searched so the next page goes on below them;
//! - a task's history: the chain of its events, each naming the previous one (`prev_seq`),
//!   followed by primary key.

use super::{collect, in_list, EventRow, Pools, Store, StoreError, TaskFilter, TaskRow};
use super::{EVENT_COLS, TASK_COLS};
use crate::task::{TaskEvent, TaskRecord, TaskState};

/// Most change-feed positions one page of a label or external-key filtered list looks at.
/// Each position holds at most one task's newest change, so it bounds the rows read.
pub const SCAN_WINDOW: i64 = 10_000;

/// Most tasks one page holds.
pub const MAX_PAGE: u32 = 500;

/// Which tasks a page shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskPageQuery {
    /// States, label, external key and `since` as `list` takes them (`limit` is not used).
    pub filter: TaskFilter,
    /// Only tasks whose newest change has `seq < before`: the cursor of a next page.
    pub before: Option<i64>,
    /// Tasks per page (at most [`MAX_PAGE`]).
    pub limit: u32,
    /// Positions a windowed filter looks at per page; `None`: [`SCAN_WINDOW`].
    pub scan_window: Option<i64>,
}

/// One page of tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPage {
    /// Newest change first.
    pub tasks: Vec<TaskRecord>,
    /// `before` of the next (older) page, if there may be one.
    pub next_before: Option<i64>,
    /// For a windowed filter: the change-feed positions searched, `low..high`.
    pub searched: Option<std::ops::Range<i64>>,
}

/// A task's most recent state changes, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskHistory {
    pub events: Vec<TaskEvent>,
    /// True when older changes exist than those returned (or the chain was cut: events
    /// stored before the store linked them).
    pub truncated: bool,
}

impl Store {
    /// One page of tasks matching `q`, newest change first (see the module doc for the cost).
    pub async fn task_page(&self, q: &TaskPageQuery) -> Result<TaskPage, StoreError> {
        let limit = q.limit.clamp(1, MAX_PAGE);
        let f = &q.filter;
        if f.matches_nothing() {
            return Ok(TaskPage {
                tasks: Vec::new(),
                next_before: None,
                searched: None,
            });
        }
        let since = f.since.unwrap_or(0);
        if f.label.is_some() || f.external_key.is_some() {
            let high = match q.before {
                Some(b) => b,
                None => self.max_task_seq().await? + 1,
            };
            let window = q.scan_window.unwrap_or(SCAN_WINDOW).clamp(1, SCAN_WINDOW);
            let low = (high - window).max(since + 1);
            if high <= low {
                return Ok(TaskPage {
                    tasks: Vec::new(),
                    next_before: None,
                    searched: Some(low..low),
                });
            }
            let tasks = self.page_query(f, &f.states, high, low - 1, limit).await?;
            let next_before = if tasks.len() == limit as usize {
                tasks.last().map(|t| t.seq)
            } else if low > since + 1 {
                Some(low)
            } else {
                None
            };
            let searched_low = if tasks.len() == limit as usize {
                tasks.last().map_or(low, |t| t.seq)
            } else {
                low
            };
            return Ok(TaskPage {
                tasks,
                next_before,
                searched: Some(searched_low..high),
            });
        }
        let before = q.before.unwrap_or(i64::MAX);
        let mut tasks = if f.states.is_empty() {
            self.page_query(f, &[], before, since, limit).await?
        } else {
            let mut all = Vec::new();
            let mut states = f.states.clone();
            states.sort();
            states.dedup();
            for s in states {
                all.extend(self.page_query(f, &[s], before, since, limit).await?);
            }
            all.sort_by_key(|t| std::cmp::Reverse(t.seq));
            all
        };
        let full = tasks.len() >= limit as usize;
        tasks.truncate(limit as usize);
        Ok(TaskPage {
            next_before: if full {
                tasks.last().map(|t| t.seq)
            } else {
                None
            },
            tasks,
            searched: None,
        })
    }

    /// `SELECT … WHERE seq < before AND seq > above [AND state …] [AND key/label] ORDER BY
    /// seq DESC LIMIT limit`.
    async fn page_query(
        &self,
        f: &TaskFilter,
        states: &[TaskState],
        before: i64,
        above: i64,
        limit: u32,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let mut sql = format!("SELECT {TASK_COLS} FROM tasks t WHERE t.seq < ? AND t.seq > ?");
        match states.len() {
            0 => {}
            1 => sql.push_str(" AND t.state = ?"),
            n => sql.push_str(&format!(" AND t.state {}", in_list(n))),
        }
        if f.external_key.is_some() {
            sql.push_str(" AND t.external_key = ?");
        }
        if f.label.is_some() {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM task_labels l \
                 WHERE l.task_id = t.id AND l.name = ? AND l.value = ?)",
            );
        }
        sql.push_str(" ORDER BY t.seq DESC LIMIT ?");
        let sql = self.dialect.sql(&sql).into_owned();
        let rows = on_pool!(self, |p| {
            let mut q = sqlx::query_as::<_, TaskRow>(&sql).bind(before).bind(above);
            for s in states {
                q = q.bind(s.as_str());
            }
            if let Some(k) = &f.external_key {
                q = q.bind(k);
            }
            if let Some((k, v)) = &f.label {
                q = q.bind(k).bind(v);
            }
            q.bind(i64::from(limit)).fetch_all(p).await
        })
        .map_err(StoreError::query("reading a page of tasks"))?;
        collect(rows)
    }

    /// The highest `seq` of any task (0 when there are none): an end of the `tasks_seq` index.
    pub async fn max_task_seq(&self) -> Result<i64, StoreError> {
        let max: Option<i64> = on_pool!(self, |p| sqlx::query_scalar("SELECT MAX(seq) FROM tasks")
            .fetch_one(p)
            .await)
        .map_err(StoreError::query("reading the newest task change"))?;
        Ok(max.unwrap_or(0))
    }

    /// The last `limit` state changes of task `task` (whose newest change is at
    /// `task.seq`), oldest first.
    pub async fn task_history(
        &self,
        task: &TaskRecord,
        limit: u32,
    ) -> Result<TaskHistory, StoreError> {
        let cols = EVENT_COLS
            .split(", ")
            .map(|c| format!("e.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        // One more than asked, to tell whether older changes exist.
        // The next link is a scalar subquery, not a join: SQLite would otherwise build a Bloom
        // filter over the whole feed for the join (a scan, 20 ms at 100k tasks).
        let sql = self
            .dialect
            .sql(&format!(
                "WITH RECURSIVE chain (seq, prev_seq, depth) AS ( \
                   SELECT seq, prev_seq, 1 FROM task_events WHERE seq = ? AND task_id = ? \
                   UNION ALL \
                   SELECT c.prev_seq, \
                     (SELECT e.prev_seq FROM task_events e WHERE e.seq = c.prev_seq), \
                     c.depth + 1 \
                   FROM chain c WHERE c.prev_seq IS NOT NULL AND c.depth < ? \
                 ) \
                 SELECT {cols} FROM chain c JOIN task_events e ON e.seq = c.seq \
                 WHERE e.task_id = ? ORDER BY e.seq"
            ))
            .into_owned();
        let rows = on_pool!(self, |p| sqlx::query_as::<_, EventRow>(&sql)
            .bind(task.seq)
            .bind(&task.id)
            .bind(i64::from(limit) + 1)
            .bind(&task.id)
            .fetch_all(p)
            .await)
        .map_err(StoreError::query("reading a task's history"))?;
        let mut events: Vec<TaskEvent> = collect(rows)?;
        let mut truncated = events.len() > limit as usize;
        if truncated {
            events.remove(0);
        }
        // A chain that ends on an event other than a submission was stored before events
        // were linked: older changes exist but cannot be reached.
        if let Some(first) = events.first() {
            truncated |=
                first.prev_seq.is_none() && (first.state != TaskState::Queued || first.attempt > 0);
        }
        Ok(TaskHistory { events, truncated })
    }
}
