//! Retention (`[mesos] task_retention`): ended tasks whose last change is older than the cutoff
//! are deleted with their attempts and labels, and change-feed events older than it are dropped.
//! The newest event is always kept: the next event's `seq` is `MAX(seq) + 1`, so the feed's
//! numbers never go back. Deletes run in small batches, each in its own transaction and behind
//! the leader's fence, so that a prune never holds the database for long.

use super::*;

/// What one call of [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub tasks: u64,
    pub events: u64,
}

impl Pruned {
    pub fn is_empty(&self) -> bool {
        self.tasks == 0 && self.events == 0
    }
}

impl Store {
    /// Deletes up to `batch` ended tasks (succeeded, failed, killed) whose last change is older
    /// than `cutoff_ms`, with their attempts and labels, and up to `batch` change-feed events
    /// older than `cutoff_ms` (never the newest). Call again while it deletes something.
    pub async fn prune(&self, cutoff_ms: i64, batch: u32) -> Result<Pruned, StoreError> {
        let op = "pruning ended tasks";
        let d = self.dialect;
        let fence = self.fence();
        let find = d.sql(&format!(
            "SELECT id FROM tasks WHERE state IN {TERMINAL} AND updated_at < ? ORDER BY seq LIMIT {batch}"
        )).into_owned();
        let first_events = d
            .sql(&format!(
                "SELECT seq, at FROM task_events ORDER BY seq LIMIT {batch}"
            ))
            .into_owned();
        let newest = "SELECT MAX(seq) FROM task_events";
        let delete_events = d.sql("DELETE FROM task_events WHERE seq <= ?").into_owned();
        let pruned = on_pool!(self, |p| {
            let mut tx = p.begin().await.map_err(StoreError::query(op))?;
            let ids: Vec<Text> = sqlx::query_scalar(&find)
                .bind(cutoff_ms)
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::query(op))?;
            let mut tasks = 0;
            if !ids.is_empty() {
                let list = in_list(ids.len());
                for table in ["task_labels", "attempts"] {
                    let sql = d
                        .sql(&format!("DELETE FROM {table} WHERE task_id {list}"))
                        .into_owned();
                    let mut q = sqlx::query(&sql);
                    for id in &ids {
                        q = q.bind(&id.0);
                    }
                    q.execute(&mut *tx).await.map_err(StoreError::query(op))?;
                }
                let sql = d
                    .sql(&format!(
                        "DELETE FROM tasks WHERE state IN {TERMINAL} AND id {list}"
                    ))
                    .into_owned();
                let mut q = sqlx::query(&sql);
                for id in &ids {
                    q = q.bind(&id.0);
                }
                tasks = q
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query(op))?
                    .rows_affected();
            }
            // The oldest events, up to the first one at or after the cutoff; never the newest.
            let max: Option<i64> = sqlx::query_scalar(newest)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::query(op))?;
            let oldest: Vec<(i64, i64)> = sqlx::query_as(&first_events)
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::query(op))?;
            let upto = oldest
                .iter()
                .take_while(|(seq, at)| *at < cutoff_ms && Some(*seq) != max)
                .last()
                .map(|(seq, _)| *seq);
            let mut events = 0;
            if let Some(upto) = upto {
                events = sqlx::query(&delete_events)
                    .bind(upto)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query(op))?
                    .rows_affected();
            }
            check_fence!(d, tx, &fence, op);
            tx.commit().await.map_err(StoreError::query(op))?;
            Ok::<_, StoreError>(Pruned { tasks, events })
        })?;
        if pruned.tasks > 0 {
            // Heads of deleted tasks must not outlive them in the writer's cache.
            self.heads.clear();
        }
        Ok(pruned)
    }
}
