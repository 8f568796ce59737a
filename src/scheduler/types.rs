//! Domain types shared by the backends (Mesos, local Docker), the pure core and the driver.
//!
//! A backend turns what it hears into [`Event`]s and carries out [`Action`]s. The Mesos
//! backend converts to and from protobuf in `mesos::convert`; nothing here knows the wire.

use crate::task::{Containerizer, NetworkMode, TaskSpec};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The current time, passed into the core: a monotonic instant for timers and the wall clock
/// (milliseconds since the Unix epoch) for what is stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub instant: Instant,
    pub unix_ms: i64,
}

/// A resource quantity. Scalars are fixed point in thousandths (Mesos keeps 3 decimals), so
/// sums never drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quantity {
    /// Thousandths of a unit (`cpus` 1.5 = 1500; `mem` 256 MB = 256000).
    Scalar(i64),
    /// Inclusive ranges, sorted and non-overlapping (e.g. `ports`).
    Ranges(Vec<(u64, u64)>),
    Set(Vec<String>),
}

/// Converts a scalar to fixed point (rounded to 3 decimals, as Mesos does).
pub fn to_milli(v: f64) -> i64 {
    (v * 1000.0).round() as i64
}

/// Converts fixed point back to a scalar.
pub fn from_milli(m: i64) -> f64 {
    m as f64 / 1000.0
}

/// Everything about an offered resource except its quantity: name, type, roles, reservations,
/// allocation info, disk, revocable, provider, shared. Two entries can be combined only when
/// their flavours are equal; a launch copies the flavour back so the master sees the very
/// resource it offered.
///
/// `key` is opaque bytes produced by the backend (the Mesos backend encodes the `Resource`
/// protobuf with its quantity cleared); the core only compares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Flavour {
    pub key: Arc<[u8]>,
    /// The role the resource is reserved for, if any (for display and role-aware choice).
    pub reserved_role: Option<String>,
    /// True when the entry must be used whole (MOUNT disks, persistent volumes): the core
    /// never takes part of it.
    pub whole: bool,
    /// Revocable resources may be taken away; the core does not use them for tasks.
    pub revocable: bool,
}

impl Flavour {
    /// A plain unreserved flavour with the given key (used by the local backend and tests).
    pub fn plain(key: &str) -> Flavour {
        Flavour {
            key: Arc::from(key.as_bytes()),
            reserved_role: None,
            whole: false,
            revocable: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `cpus`, `mem` (MB), `disk` (MB), `ports`, `gpus`, ...
    pub name: String,
    pub quantity: Quantity,
    pub flavour: Flavour,
}

/// An agent attribute, its value rendered as text (scalars as `1.5`, ranges as `[1-2]`, sets
/// as `{a,b}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: String,
}

/// A resource offer: one agent, one role.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub id: String,
    pub agent_id: String,
    pub hostname: String,
    /// Base URL of the agent's HTTP endpoint (`http://host:5051`), if the offer said.
    pub agent_url: Option<String>,
    pub resources: Vec<Resource>,
    pub attributes: Vec<Attribute>,
    /// The role the offer is allocated to (MULTI_ROLE), if any.
    pub allocation_role: Option<String>,
}

/// Mesos `TaskState`, mirrored in the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendState {
    Staging,
    Starting,
    Running,
    Killing,
    Finished,
    Failed,
    Killed,
    Error,
    Lost,
    Dropped,
    Unreachable,
    Gone,
    GoneByOperator,
    Unknown,
}

impl BackendState {
    /// The Mesos name (`TASK_RUNNING`, ...).
    pub fn mesos_name(self) -> &'static str {
        match self {
            BackendState::Staging => "TASK_STAGING",
            BackendState::Starting => "TASK_STARTING",
            BackendState::Running => "TASK_RUNNING",
            BackendState::Killing => "TASK_KILLING",
            BackendState::Finished => "TASK_FINISHED",
            BackendState::Failed => "TASK_FAILED",
            BackendState::Killed => "TASK_KILLED",
            BackendState::Error => "TASK_ERROR",
            BackendState::Lost => "TASK_LOST",
            BackendState::Dropped => "TASK_DROPPED",
            BackendState::Unreachable => "TASK_UNREACHABLE",
            BackendState::Gone => "TASK_GONE",
            BackendState::GoneByOperator => "TASK_GONE_BY_OPERATOR",
            BackendState::Unknown => "TASK_UNKNOWN",
        }
    }
}

/// Who produced a status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateSource {
    Master,
    Agent,
    Executor,
}

/// A task status update.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    /// The backend task id (`<task id>.<attempt>`).
    pub backend_task_id: String,
    pub state: BackendState,
    pub message: Option<String>,
    /// Mesos reason name, e.g. `REASON_RECONCILIATION`.
    pub reason: Option<String>,
    pub source: Option<UpdateSource>,
    pub agent_id: Option<String>,
    /// Present when the update must be acknowledged (16 bytes in Mesos).
    pub uuid: Option<Vec<u8>>,
    /// Seconds since the epoch, as the backend stamped it.
    pub timestamp: Option<f64>,
    /// Container exit code, when the backend knows it (the local Docker backend does).
    pub exit_code: Option<i32>,
}

/// What a backend tells the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The subscription is live. `framework_id` must be stored and reused.
    Subscribed {
        framework_id: String,
        heartbeat_interval_secs: Option<f64>,
        /// Where the leading master is (`host:port`), for display.
        master: Option<String>,
    },
    Offers(Vec<Offer>),
    /// An offer is no longer valid.
    Rescind(String),
    Update(StatusUpdate),
    /// An agent or executor failed.
    Failure {
        agent_id: Option<String>,
        executor_id: Option<String>,
        status: Option<i32>,
    },
    /// The master reported an error on the stream (e.g. "Framework failed over"); the backend
    /// has dropped the subscription.
    Error(String),
    Heartbeat,
    /// The subscription ended (stream closed, heartbeat lost, master gone). Offers are void;
    /// the backend resubscribes on its own and sends `Subscribed` again.
    Disconnected {
        reason: String,
    },
    /// An action could not be carried out (the call was refused or never reached the master).
    /// For a `Launch`, the tasks were not launched: the core treats it as a launch failure.
    ActionFailed {
        action: Action,
        error: String,
        /// True when retrying the same action cannot help (e.g. a 4xx other than 503).
        fatal: bool,
    },
    /// An action was written to the master (or may have been) but no answer came: the
    /// connection broke or the call timed out. The master may or may not carry it out. For a
    /// `Launch`, the attempts' fate is unknown until they are settled (see
    /// [`Action::VoidOffers`]): they are never launched again blindly.
    ActionUnconfirmed {
        action: Action,
        error: String,
    },
    /// The master has taken the DECLINE of [`Action::VoidOffers`]: from now on no ACCEPT of
    /// these offers, however late it arrives, can launch anything.
    OffersVoided {
        offer_ids: Vec<String>,
    },
}

/// The driver's end of a running backend: events come in, actions go out. Each backend runs
/// as its own task and owns its connections; dropping `actions` asks it to stop.
#[derive(Debug)]
pub struct BackendChannels {
    pub events: tokio::sync::mpsc::Receiver<Event>,
    pub actions: tokio::sync::mpsc::Sender<Action>,
}

/// A host port mapping chosen for a launch (host port taken from the offer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u32,
    pub container_port: u32,
    pub protocol: String,
}

/// One task to launch: the normalized spec plus everything resolved against the config
/// defaults and the chosen offer.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchTask {
    /// Our task id.
    pub task_id: String,
    /// `<task id>.<attempt>`.
    pub backend_task_id: String,
    pub attempt: u32,
    /// Name shown in the Mesos UI.
    pub name: String,
    pub agent_id: String,
    /// Resources taken from the offer, flavour by flavour.
    pub resources: Vec<Resource>,
    pub image: String,
    pub containerizer: Containerizer,
    pub network: NetworkMode,
    pub port_mappings: Vec<PortMapping>,
    pub force_pull: bool,
    pub kill_grace_secs: f64,
    /// Labels to put on the task (ours + the user's); never secrets.
    pub labels: BTreeMap<String, String>,
    /// Run the command through `/bin/sh -c` (Mesos `shell`), from `command_shell` and the spec.
    pub shell: bool,
    /// The normalized spec (command, env, volumes, files, user, privileged ...), resolved by
    /// the core against the `[mesos]` defaults: `env` is `docker_environment` overlaid by the
    /// spec's; `volumes` are `docker_volumes` (+ the Docker socket when `docker_privileged`)
    /// then the spec's; `privileged` includes `docker_privileged`; a string `command` is
    /// already split into an argv when `command_shell = false`; `image`, `containerizer`,
    /// `network`, `force_pull`, `kill_grace_period`, `cpus`, `mem`, `disk` are filled in.
    pub spec: TaskSpec,
}

/// What the driver asks a backend to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// ACCEPT `offer_ids` (all on `agent_id`) with one LAUNCH of `tasks`; what is left over is
    /// declined for `refuse_seconds`.
    Launch {
        offer_ids: Vec<String>,
        agent_id: String,
        tasks: Vec<LaunchTask>,
        refuse_seconds: f64,
    },
    Decline {
        offer_ids: Vec<String>,
        refuse_seconds: f64,
    },
    Kill {
        backend_task_id: String,
        agent_id: Option<String>,
        grace_secs: Option<f64>,
    },
    Acknowledge {
        agent_id: String,
        backend_task_id: String,
        uuid: Vec<u8>,
    },
    /// Makes offers unusable for an ACCEPT still on its way: a DECLINE of `offer_ids` (a
    /// no-op for the master when they were already used or are gone), answered by
    /// [`Event::OffersVoided`] once the master has taken it, or by `ActionFailed`. A
    /// reconciliation asked after that answer is final for an attempt launched on them. No
    /// decline filter: an offer that was still outstanding is offered again at once.
    VoidOffers { offer_ids: Vec<String> },
    /// Explicit reconciliation of `(backend task id, agent id)` pairs; empty = implicit.
    Reconcile(Vec<(String, Option<String>)>),
    /// Stop offers for these roles (empty = all).
    Suppress(Vec<String>),
    /// Resume offers for these roles (empty = all) and clear decline filters.
    Revive(Vec<String>),
}
