//! The task model: what a user asks for ([`TaskSpec`]), the state a task is in ([`TaskState`]),
//! and what the store keeps about it ([`TaskRecord`], [`Attempt`], [`TaskEvent`]).
//!
//! A task is ours; each launch of it on a backend is an *attempt* with its own backend task id
//! (`<task id>.<attempt>`), so that a retry never reuses a Mesos TaskID.

pub mod policy;
pub mod spec;
pub mod state;
pub mod submission;

pub use policy::{Policy, PolicyError};
pub use spec::{
    Command, Containerizer, DockerParameter, NetworkMode, PortSpec, SandboxFile, SpecDefaults,
    SpecError, TaskSpec, VolumeMode, VolumeSpec,
};
pub use state::{AirflowState, TaskState};

use serde::{Deserialize, Serialize};

/// Our id of a task: `t-` followed by 26 lowercase base32-ish characters (a UUIDv4 in hex,
/// shortened). Opaque to users; stable for the task's life.
pub type TaskId = String;

/// Makes a fresh task id.
pub fn new_task_id() -> TaskId {
    format!("t-{}", uuid::Uuid::new_v4().simple())
}

/// The backend task id of attempt `attempt` (1-based) of task `id`.
pub fn attempt_task_id(id: &str, attempt: u32) -> String {
    format!("{id}.{attempt}")
}

/// Splits a backend task id made by [`attempt_task_id`] into our task id and the attempt.
pub fn parse_attempt_task_id(mesos_task_id: &str) -> Option<(&str, u32)> {
    let (id, n) = mesos_task_id.rsplit_once('.')?;
    Some((id, n.parse().ok()?))
}

/// Everything the store keeps about one task. Timestamps are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: TaskId,
    pub spec: TaskSpec,
    pub state: TaskState,
    /// Number of launch attempts made so far (0 while never launched).
    pub attempts: u32,
    /// The backend task id of the current (latest) attempt.
    pub current_attempt_id: Option<String>,
    /// Agent of the current attempt.
    pub agent_id: Option<String>,
    /// Hostname of the agent of the current attempt.
    pub hostname: Option<String>,
    /// Last status message from the backend (or our own reason for a transition).
    pub message: Option<String>,
    /// Last Mesos reason name (e.g. `REASON_CONTAINER_LIMITATION_MEMORY`), if any.
    pub reason: Option<String>,
    /// Exit code of the container, where the backend knows it.
    pub exit_code: Option<i32>,
    /// Set once a kill was requested.
    pub kill_requested: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Change-feed position of the last change to this task.
    pub seq: i64,
}

impl TaskRecord {
    /// A newly submitted task: queued, never launched, stamped `at` (ms since the epoch).
    pub fn queued(id: impl Into<TaskId>, spec: TaskSpec, at: i64) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            spec,
            state: TaskState::Queued,
            attempts: 0,
            current_attempt_id: None,
            agent_id: None,
            hostname: None,
            message: None,
            reason: None,
            exit_code: None,
            kill_requested: false,
            created_at: at,
            updated_at: at,
            seq: 0,
        }
    }
}

/// One launch attempt of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub task_id: TaskId,
    pub attempt: u32,
    /// The backend task id (`<task id>.<attempt>`).
    pub backend_task_id: String,
    pub agent_id: Option<String>,
    pub hostname: Option<String>,
    /// Base URL of the agent's HTTP endpoint (`http://host:5051`), for sandbox logs.
    pub agent_url: Option<String>,
    pub state: TaskState,
    pub message: Option<String>,
    pub reason: Option<String>,
    pub started_at: i64,
    pub updated_at: i64,
}

/// One entry of the change feed: a task entered `state` at `at`. `seq` strictly increases in
/// commit order, so `list --since <seq>` never misses nor repeats a transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub seq: i64,
    pub task_id: TaskId,
    pub state: TaskState,
    pub attempt: u32,
    pub message: Option<String>,
    pub at: i64,
    pub external_key: Option<String>,
    /// The Mesos reason of the change (e.g. `REASON_COMMAND_EXECUTOR_FAILED`), if any.
    pub reason: Option<String>,
    /// `seq` of the task's previous event: `None` for its first event (and for events stored
    /// before the store kept this link). A task's history is read by following it.
    pub prev_seq: Option<i64>,
}
