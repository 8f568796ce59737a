//! SQL text shared by the dialects: the statements are written once with `?` placeholders and
//! turned into `$1, $2, …` for PostgreSQL; multi-row `VALUES` lists are built in chunks that
//! respect each database's bind-parameter limit and a statement size cap.

use super::url::Dialect;
use std::borrow::Cow;
use std::ops::Range;

impl Dialect {
    /// Most bind parameters one statement may carry (SQLite: 32766 since 3.32; PostgreSQL and
    /// MySQL: 65535), with some headroom.
    pub(crate) fn max_params(self) -> usize {
        match self {
            Dialect::Sqlite => 32_000,
            Dialect::Postgres | Dialect::MySql => 65_000,
        }
    }

    /// `sql` with `?` placeholders rewritten for this dialect. Our statements hold no `?` in
    /// literals, so a plain scan is exact.
    pub(crate) fn sql<'a>(self, sql: &'a str) -> Cow<'a, str> {
        if self != Dialect::Postgres || !sql.contains('?') {
            return Cow::Borrowed(sql);
        }
        let mut out = String::with_capacity(sql.len() + sql.len() / 4);
        let mut n = 0;
        for ch in sql.chars() {
            if ch == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(ch);
            }
        }
        Cow::Owned(out)
    }

    /// The tail of a multi-row `INSERT INTO attempts …` that merges into an existing row:
    /// state and timestamps from the new row, the other fields only where the new row has them.
    pub(crate) fn attempt_upsert_tail(self) -> &'static str {
        match self {
            Dialect::Sqlite | Dialect::Postgres => {
                " ON CONFLICT (task_id, attempt) DO UPDATE SET \
                 agent_id = COALESCE(excluded.agent_id, attempts.agent_id), \
                 hostname = COALESCE(excluded.hostname, attempts.hostname), \
                 agent_url = COALESCE(excluded.agent_url, attempts.agent_url), \
                 state = excluded.state, \
                 message = COALESCE(excluded.message, attempts.message), \
                 reason = COALESCE(excluded.reason, attempts.reason), \
                 updated_at = excluded.updated_at"
            }
            Dialect::MySql => {
                " ON DUPLICATE KEY UPDATE \
                 agent_id = COALESCE(VALUES(agent_id), agent_id), \
                 hostname = COALESCE(VALUES(hostname), hostname), \
                 agent_url = COALESCE(VALUES(agent_url), agent_url), \
                 state = VALUES(state), \
                 message = COALESCE(VALUES(message), message), \
                 reason = COALESCE(VALUES(reason), reason), \
                 updated_at = VALUES(updated_at)"
            }
        }
    }

    /// A statement that updates `rows` task rows at once from bound tuples of
    /// [`TASK_UPDATE_COLS`] (the first being the id of the row to update) followed by the
    /// row's expected current `seq`: a row whose `seq` is not that is left alone, so the number
    /// of rows the statement reports tells whether the heads the change was planned on were
    /// still those in the database.
    pub(crate) fn task_update(self, rows: usize) -> String {
        let cols = TASK_UPDATE_COLS;
        let set = |prefix: &str| {
            cols[1..]
                .iter()
                .map(|c| format!("{prefix}{c} = v.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sql = match self {
            // A CTE over VALUES names the columns portably (SQLite has no `AS v(a, b)`).
            Dialect::Sqlite | Dialect::Postgres => format!(
                "WITH v ({}, old_seq) AS (VALUES {}) UPDATE tasks SET {} FROM v \
                 WHERE tasks.id = v.id AND tasks.seq = v.old_seq",
                cols.join(", "),
                values_list(rows, cols.len() + 1),
                set("")
            ),
            // MySQL/MariaDB: no UPDATE … FROM, no CTE before UPDATE; join a derived table.
            Dialect::MySql => {
                let first = cols
                    .iter()
                    .map(|c| format!("? AS {c}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let rest = format!(" UNION ALL SELECT {}", vec!["?"; cols.len() + 1].join(", "));
                format!(
                    "UPDATE tasks t JOIN (SELECT {first}, ? AS old_seq{}) v \
                     ON t.id = v.id AND t.seq = v.old_seq SET {}",
                    rest.repeat(rows.saturating_sub(1)),
                    set("t.")
                )
            }
        };
        self.sql(&sql).into_owned()
    }

    /// The statement that stores a daemon key unless one of that name exists.
    pub(crate) fn key_insert(self) -> &'static str {
        match self {
            Dialect::Sqlite | Dialect::Postgres => {
                "INSERT INTO daemon_keys (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
            }
            Dialect::MySql => "INSERT IGNORE INTO daemon_keys (name, value) VALUES (?, ?)",
        }
    }

    /// The statement that stores a framework id, inserting or replacing.
    pub(crate) fn framework_upsert(self) -> &'static str {
        match self {
            Dialect::Sqlite | Dialect::Postgres => {
                "INSERT INTO frameworks (name, framework_id) VALUES (?, ?) \
                 ON CONFLICT (name) DO UPDATE SET framework_id = excluded.framework_id"
            }
            Dialect::MySql => {
                "INSERT INTO frameworks (name, framework_id) VALUES (?, ?) \
                 ON DUPLICATE KEY UPDATE framework_id = VALUES(framework_id)"
            }
        }
    }
}

/// The columns of a bulk task update, in bind order; `id` selects the row.
pub(crate) const TASK_UPDATE_COLS: [&str; 12] = [
    "id",
    "state",
    "attempts",
    "current_attempt_id",
    "agent_id",
    "hostname",
    "message",
    "reason",
    "exit_code",
    "kill_requested",
    "updated_at",
    "seq",
];

/// Largest statement we build, in bytes of bound data (MySQL's `max_allowed_packet` is 16 MiB
/// by default on MariaDB, 64 MiB on MySQL 8; a single larger row still goes alone).
pub(crate) const MAX_STATEMENT_BYTES: usize = 4 << 20;

/// `(?, ?, …), (?, ?, …)`: `rows` tuples of `cols` placeholders.
pub(crate) fn values_list(rows: usize, cols: usize) -> String {
    let one = format!("({})", vec!["?"; cols].join(", "));
    vec![one; rows].join(", ")
}

/// Most rows in one multi-row statement.
pub(crate) const MAX_ROWS_PER_STATEMENT: usize = 256;

/// Splits `0..sizes.len()` into consecutive ranges of at most `max_rows` rows (and at most
/// [`MAX_ROWS_PER_STATEMENT`]) whose summed `sizes` stay under `max_bytes` (a row bigger than
/// that gets a range of its own). Every range holds a power of two of rows, so that a batch of
/// any size is written with a handful of distinct statements, which the connection's statement
/// cache keeps prepared (parsing a statement of thousands of placeholders anew for every
/// commit cost more than running it).
pub(crate) fn chunks(sizes: &[usize], max_rows: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let max_rows = max_rows.clamp(1, MAX_ROWS_PER_STATEMENT);
    let max_rows = 1 << max_rows.ilog2();
    let mut out = Vec::new();
    let mut push = |r: Range<usize>| {
        // Largest powers of two first: 7 rows go as 4 + 2 + 1.
        let mut start = r.start;
        while start < r.end {
            let n = 1 << (r.end - start).ilog2();
            out.push(start..start + n);
            start += n;
        }
    };
    let mut start = 0;
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && (i - start == max_rows || bytes + size > max_bytes) {
            push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        push(start..sizes.len());
    }
    out
}

/// `IN (?, ?, …)` with `n` placeholders.
pub(crate) fn in_list(n: usize) -> String {
    format!("IN ({})", vec!["?"; n].join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_only() {
        let s = "UPDATE t SET a = ?, b = ? WHERE id = ?";
        assert_eq!(
            Dialect::Postgres.sql(s),
            "UPDATE t SET a = $1, b = $2 WHERE id = $3"
        );
        assert_eq!(Dialect::Sqlite.sql(s), s);
        assert_eq!(Dialect::MySql.sql(s), s);
    }

    #[test]
    fn bulk_task_update_statements_bind_every_column_of_every_row() {
        for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            let sql = d.task_update(3);
            let binds = sql.matches('?').count() + sql.matches('$').count();
            assert_eq!(binds, 3 * (TASK_UPDATE_COLS.len() + 1), "{d:?}: {sql}");
            assert!(sql.contains("seq = v.seq"), "{d:?}: {sql}");
            assert!(sql.contains("seq = v.old_seq"), "{d:?}: {sql}");
        }
        assert!(Dialect::Postgres.task_update(2).contains("$26"));
    }

    #[test]
    fn values_lists() {
        assert_eq!(values_list(2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(in_list(2), "IN (?, ?)");
    }

    #[test]
    fn chunks_respect_rows_and_bytes() {
        assert_eq!(chunks(&[1; 5], 2, 100), vec![0..2, 2..4, 4..5]);
        assert_eq!(
            chunks(&[40, 40, 40, 200, 1], 10, 100),
            vec![0..2, 2..3, 3..4, 4..5]
        );
        assert!(chunks(&[], 3, 10).is_empty());
        let all: usize = chunks(&[3; 1000], 7, 20).iter().map(|r| r.len()).sum();
        assert_eq!(all, 1000, "every row lands in exactly one chunk");
        // Power-of-two sizes only, largest first, capped.
        assert_eq!(chunks(&[1; 7], 100, 1000), vec![0..4, 4..6, 6..7]);
        assert_eq!(chunks(&[1; 6], 3, 1000), vec![0..2, 2..4, 4..6]);
        let big = chunks(&[1; 1000], usize::MAX, usize::MAX);
        assert!(big
            .iter()
            .all(|r| r.len().is_power_of_two() && r.len() <= MAX_ROWS_PER_STATEMENT));
        assert_eq!(big.iter().map(|r| r.len()).sum::<usize>(), 1000);
        assert_eq!(big.last(), Some(&(992..1000)));
    }
}
