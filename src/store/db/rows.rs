//! Rows as the databases return them, and their conversion into the store's records.

use super::*;

/// A text column, decoded as a string whatever collation flags the server reports: MySQL marks
/// `utf8mb4_bin` columns (which we use for byte-exact keys) as binary, which sqlx will not
/// decode into a `String` directly.
pub(super) struct Text(pub(super) String);

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

pub(super) fn opt(t: Option<Text>) -> Option<String> {
    t.map(|t| t.0)
}

#[derive(sqlx::FromRow)]
pub(super) struct TaskRow {
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
pub(super) struct HeadRow {
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
pub(super) struct AttemptRow {
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
pub(super) struct JoinedRow {
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
pub(super) struct EventRow {
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

impl EventRow {
    /// A row of `SELECT {EVENT_COLS}` read by rusqlite (the SQLite change-feed reader).
    pub(super) fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
        let text = |i| r.get::<_, String>(i).map(Text);
        let opt_text = |i| r.get::<_, Option<String>>(i).map(|t| t.map(Text));
        Ok(EventRow {
            seq: r.get(0)?,
            task_id: text(1)?,
            state: text(2)?,
            attempt: r.get(3)?,
            message: opt_text(4)?,
            at: r.get(5)?,
            external_key: opt_text(6)?,
            prev_seq: r.get(7)?,
            reason: opt_text(8)?,
        })
    }
}

pub(super) fn parse_state(s: &str, whose: &str) -> Result<TaskState, StoreError> {
    s.parse().map_err(|e| StoreError::Corrupt {
        what: format!("state of {whose}"),
        reason: format!("{e}"),
    })
}

pub(super) fn to_u32(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        what: what.to_string(),
        reason: format!("{v} is not a valid attempt number"),
    })
}

pub(super) fn to_i32(v: Option<i64>, what: &str) -> Result<Option<i32>, StoreError> {
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

pub(super) fn collect<R, T: TryFrom<R, Error = StoreError>>(
    rows: Vec<R>,
) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(T::try_from).collect()
}
