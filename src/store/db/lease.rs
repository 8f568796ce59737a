//! The leader lease: which of the daemons sharing this database leads a framework, until when
//! (on the database's own clock, so that the daemons' clocks never matter), and the fence that
//! keeps a deposed leader from writing.
//!
//! A lease is one row of `leader_lease`. A daemon takes it when it has expired (or nobody holds
//! it) with one conditional `UPDATE` that also increments `term`; the holder renews it before it
//! expires; a clean shutdown releases it. While a [`Fence`] is set on the store, every write
//! transaction first checks, under a row lock, that the lease is still this daemon's, in this
//! term, and unexpired: a leader that was paused or cut off past its lease cannot commit, so it
//! cannot acknowledge or launch either (both follow a commit).

use super::{Pools, Store, StoreError, Text};
use crate::store::Dialect;
use std::time::Duration;

/// Who leads, as the database says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holder's instance id (empty: nobody ever held it, or it was released).
    pub holder: String,
    pub term: i64,
    /// The holder's API URL.
    pub address: String,
    /// Milliseconds until it expires, by the database's clock (negative: expired).
    pub remaining_ms: i64,
}

/// What the store checks before every write while this daemon leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub name: String,
    pub holder: String,
    pub term: i64,
}

/// The database's current time in milliseconds since the Unix epoch, as SQL.
fn now_ms(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Dialect::MySql => "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The statement run first in every fenced write transaction.
pub(super) fn fence_check_sql(d: Dialect) -> String {
    let lock = if d == Dialect::Sqlite {
        ""
    } else {
        " FOR UPDATE"
    };
    d.sql(&format!(
        "SELECT term FROM leader_lease WHERE name = ? AND holder = ? AND term = ? \
         AND expires_at > {}{lock}",
        now_ms(d)
    ))
    .into_owned()
}

impl Store {
    /// Takes the lease `name` for `holder` (reachable at `address`) for `ttl`, if it has
    /// expired or was never held. Returns the new term, or `None` while another daemon holds it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        address: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let d = self.dialect;
        let op = "taking the leader lease";
        let ensure = d.sql(match d {
            Dialect::Sqlite | Dialect::Postgres => {
                "INSERT INTO leader_lease (name, holder, term, expires_at, address) \
                 VALUES (?, '', 0, 0, '') ON CONFLICT (name) DO NOTHING"
            }
            Dialect::MySql => {
                "INSERT IGNORE INTO leader_lease (name, holder, term, expires_at, address) \
                 VALUES (?, '', 0, 0, '')"
            }
        });
        let now = now_ms(d);
        let take = d
            .sql(&format!(
                "UPDATE leader_lease SET holder = ?, term = term + 1, expires_at = {now} + ?, \
             address = ? WHERE name = ? AND expires_at <= {now}"
            ))
            .into_owned();
        let read = d.sql("SELECT term FROM leader_lease WHERE name = ? AND holder = ?");
        let ttl = millis(ttl);
        on_pool!(self, |p| {
            let mut tx = p.begin().await.map_err(StoreError::query(op))?;
            sqlx::query(&ensure)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(op))?;
            let taken = sqlx::query(&take)
                .bind(holder)
                .bind(ttl)
                .bind(address)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(op))?
                .rows_affected()
                == 1;
            let term = if taken {
                Some(
                    sqlx::query_scalar::<_, i64>(&read)
                        .bind(name)
                        .bind(holder)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(StoreError::query(op))?,
                )
            } else {
                None
            };
            tx.commit().await.map_err(StoreError::query(op))?;
            Ok(term)
        })
    }

    /// Extends `holder`'s lease of `term` to `ttl` from now, if it has not expired (an expired
    /// lease may already be another daemon's). False when it is no longer ours.
    pub async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        term: i64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let d = self.dialect;
        let now = now_ms(d);
        let sql = d
            .sql(&format!(
                "UPDATE leader_lease SET expires_at = {now} + ? WHERE name = ? AND holder = ? \
                 AND term = ? AND expires_at > {now}"
            ))
            .into_owned();
        let ttl = millis(ttl);
        on_pool!(self, |p| sqlx::query(&sql)
            .bind(ttl)
            .bind(name)
            .bind(holder)
            .bind(term)
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1))
        .map_err(StoreError::query("renewing the leader lease"))
    }

    /// Gives the lease up at once (a clean shutdown), so that a standby takes over without
    /// waiting for it to expire.
    pub async fn release_lease(
        &self,
        name: &str,
        holder: &str,
        term: i64,
    ) -> Result<(), StoreError> {
        let sql = self.dialect.sql(
            "UPDATE leader_lease SET expires_at = 0 WHERE name = ? AND holder = ? AND term = ?",
        );
        on_pool!(self, |p| sqlx::query(&sql)
            .bind(name)
            .bind(holder)
            .bind(term)
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(StoreError::query("releasing the leader lease"))
    }

    /// The lease `name` as the database has it now.
    pub async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let d = self.dialect;
        let sql = d
            .sql(&format!(
                "SELECT holder, term, address, expires_at - {} FROM leader_lease WHERE name = ?",
                now_ms(d)
            ))
            .into_owned();
        let row = on_pool!(self, |p| sqlx::query_as::<_, (Text, i64, Text, i64)>(&sql)
            .bind(name)
            .fetch_optional(p)
            .await)
        .map_err(StoreError::query("reading the leader lease"))?;
        Ok(row.map(|(holder, term, address, remaining_ms)| Lease {
            holder: holder.0,
            term,
            address: address.0,
            remaining_ms,
        }))
    }

    /// From now on every write first checks that `fence` still holds (`None`: no check, a
    /// single daemon). The cached task heads and feed position are dropped: another leader
    /// may have written.
    pub fn set_fence(&self, fence: Option<Fence>) {
        *self.fence.write().unwrap_or_else(|e| e.into_inner()) = fence;
        self.heads.clear();
        self.last_seq.store(
            super::postgres::UNKNOWN_SEQ,
            std::sync::atomic::Ordering::Release,
        );
    }

    /// The fence writes are checked against.
    pub(crate) fn fence(&self) -> Option<Fence> {
        self.fence.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
