//! Task states, their transitions, and the mapping to Airflow states.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The state of one of our tasks (across attempts).
///
/// `Queued → Launching → Starting → Running → {Succeeded, Failed, Killed}`; a launch that the
/// backend drops goes back to `Queued` for a new attempt (up to the retry limit); an attempt
/// whose fate is not known (Mesos LOST/UNREACHABLE/UNKNOWN) is held in `Unknown` and reconciled,
/// never relaunched blindly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for resources.
    Queued,
    /// Sent to the backend (ACCEPT/LAUNCH made), no status yet.
    Launching,
    /// The backend reports the container starting (STAGING/STARTING).
    Starting,
    Running,
    /// A kill was sent and the task is being stopped.
    Killing,
    /// The backend lost track of the attempt (LOST, UNREACHABLE, UNKNOWN); being reconciled.
    Unknown,
    /// Exited 0 (TASK_FINISHED).
    Succeeded,
    /// Exited non-zero, or errored, or ran out of launch retries.
    Failed,
    /// Killed at a user's request.
    Killed,
}

impl TaskState {
    pub const ALL: [TaskState; 9] = [
        TaskState::Queued,
        TaskState::Launching,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Killing,
        TaskState::Unknown,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Killed,
    ];

    /// True for the states a task never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Killed
        )
    }

    /// True while an attempt may be alive on the backend (it must be reconciled after a
    /// restart, and killed through the backend).
    pub fn has_live_attempt(self) -> bool {
        matches!(
            self,
            TaskState::Launching
                | TaskState::Starting
                | TaskState::Running
                | TaskState::Killing
                | TaskState::Unknown
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Launching => "launching",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Killing => "killing",
            TaskState::Unknown => "unknown",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Killed => "killed",
        }
    }

    /// The Airflow task-instance state this maps to.
    pub fn airflow_state(self) -> AirflowState {
        match self {
            TaskState::Queued | TaskState::Launching => AirflowState::Queued,
            TaskState::Starting | TaskState::Running | TaskState::Killing | TaskState::Unknown => {
                AirflowState::Running
            }
            TaskState::Succeeded => AirflowState::Success,
            TaskState::Failed | TaskState::Killed => AirflowState::Failed,
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a state name that is not one of [`TaskState::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown task state `{0}` (expected one of: queued, launching, starting, running, killing, unknown, succeeded, failed, killed)")]
pub struct UnknownState(pub String);

impl FromStr for TaskState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// Airflow's task-instance states that an executor reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AirflowState {
    Queued,
    Running,
    Success,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for st in TaskState::ALL {
            assert_eq!(st.as_str().parse::<TaskState>().unwrap(), st);
            assert_eq!(
                serde_json::to_string(&st).unwrap(),
                format!("\"{}\"", st.as_str())
            );
        }
        assert!("done".parse::<TaskState>().is_err());
    }

    #[test]
    fn terminal_states_have_no_live_attempt() {
        for st in TaskState::ALL {
            assert!(!(st.is_terminal() && st.has_live_attempt()), "{st}");
        }
        assert_eq!(TaskState::Killed.airflow_state(), AirflowState::Failed);
        assert_eq!(TaskState::Unknown.airflow_state(), AirflowState::Running);
    }
}
