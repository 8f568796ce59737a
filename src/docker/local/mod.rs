//! The local Docker backend (`backend = docker`): one machine behaves like a one-agent Mesos
//! cluster, and each task runs as a container on the local Docker engine with the semantics
//! of the Mesos Docker containerizer (reference §4.2).
//!
//! # What the driver sees
//!
//! [`spawn`] returns the same [`BackendChannels`] as the Mesos backend. The backend sends
//! `Subscribed` (framework id `local-<hostname>` unless configured), then offers of the free
//! capacity (cpus, mem, disk, ports 31000-32000), each holding its own slice as a Mesos
//! allocator's do: an offer stays valid until it is used or declined, and what a termination
//! or a launch's unused rest frees goes out as a further offer, so a launch in flight is never
//! dropped for an offer withdrawn under it. A decline holds offers back for its
//! `refuse_seconds`, capped at [`LocalBackendConfig::max_refuse`]; `Suppress` stops further
//! offers; `Revive` clears both.
//! Status updates carry a uuid like an agent's, and a terminal update's container is removed
//! once the driver acknowledges it. Reconciliation answers come without uuid, as a master's.
//!
//! # How a task runs
//!
//! - shell command → entrypoint `/bin/sh`, arguments `-c <command>` (the image's ENTRYPOINT is
//!   overridden); argv → the image's ENTRYPOINT is kept and the argv replaces CMD; no command →
//!   the image's defaults.
//! - The sandbox `<sandbox_dir>/<backend task id>` is bind-mounted at `/mnt/mesos/sandbox`
//!   (`MESOS_SANDBOX`, also the working directory). Sandbox files are written there before
//!   start; the container's stdout and stderr are streamed into `stdout` and `stderr` there.
//! - cpus → `NanoCpus`, mem → `Memory` (swap off, so an overrun is an OOM kill → `TASK_FAILED`
//!   with `REASON_CONTAINER_LIMITATION_MEMORY`); network mode, volumes (relative host paths
//!   are taken relative to the sandbox), port mappings (bridge/user networks only),
//!   `privileged` (only when the task asks), `--group-add`.
//! - The image is pulled (with the configured registry credentials) when missing or when
//!   force-pull is set; a pull that fails gives `TASK_FAILED` with
//!   `REASON_CONTAINER_LAUNCH_FAILED` and the engine's message.
//! - Kill → `docker stop` with the grace period → `TASK_KILLED`.
//!
//! # Restarts
//!
//! Containers are labelled (`airflow-mesos.framework`, `.task-id`, `.backend-task-id`, and
//! the resources they hold) and named after the backend task id, so that a task is never
//! started twice. On start the backend adopts every container of its framework: running ones
//! are watched to completion (their logs re-streamed from the engine), exited ones have their
//! terminal update sent again until acknowledged (as an agent resends unacknowledged updates).

use crate::config::{Config, DefaultVolume, RegistryAuth};
use crate::scheduler::types::BackendChannels;
use crate::task::Policy;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Where the sandbox is mounted in every container (as the Mesos Docker containerizer does).
pub const SANDBOX_MOUNT: &str = "/mnt/mesos/sandbox";
/// Container labels.
pub const LABEL_FRAMEWORK: &str = "airflow-mesos.framework";
pub const LABEL_TASK_ID: &str = "airflow-mesos.task-id";
pub const LABEL_BACKEND_TASK_ID: &str = "airflow-mesos.backend-task-id";
const LABEL_CPUS: &str = "airflow-mesos.cpus";
const LABEL_MEM: &str = "airflow-mesos.mem";
const LABEL_DISK: &str = "airflow-mesos.disk";
const LABEL_PORTS: &str = "airflow-mesos.ports";
const LABEL_GRACE: &str = "airflow-mesos.kill-grace-secs";
/// A file in the sandbox that records a kill request, so that a restarted backend still
/// reports `TASK_KILLED` for a container it stopped.
const KILL_MARKER: &str = ".airflow-mesos-killed";
/// The port range the machine offers.
pub const DEFAULT_PORTS: (u64, u64) = (31000, 32000);

/// Settings of the local backend.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalBackendConfig {
    /// Reported in `Subscribed` and put on every container; `local-<hostname>` when unset. The
    /// daemon sets one made once per state store, so that only its own containers are adopted.
    pub framework_id: Option<String>,
    /// This machine's name (offers, agent id, default framework id).
    pub hostname: String,
    /// Capacity; detected from the engine (`docker info`) when unset.
    pub cpus: Option<f64>,
    /// MB; detected from the engine when unset (90 % of its memory).
    pub mem_mb: Option<f64>,
    /// MB offered as `disk` (Docker cannot enforce it on every storage driver; not enforced).
    pub disk_mb: f64,
    /// Inclusive host port range offered as `ports`.
    pub ports: (u64, u64),
    pub sandbox_dir: PathBuf,
    pub registry: RegistryAuth,
    /// Environment given to every task (the task's own env wins).
    pub default_env: Vec<(String, String)>,
    /// Named volumes mounted into every task.
    pub default_volumes: Vec<DefaultVolume>,
    /// Host path of the Docker socket to mount at `/var/run/docker.sock` in every task.
    pub docker_sock: Option<String>,
    /// `--group-add` for every task.
    pub group_add: Option<String>,
    /// How long an image pull may take before the launch fails.
    pub pull_timeout: Duration,
    /// The longest a decline holds offers back, whatever `refuse_seconds` it asks.
    pub max_refuse: Duration,
    /// How long the sandbox of a task that has ended is kept (`None`: forever).
    pub sandbox_retention: Option<Duration>,
    /// What a task may ask for, checked again on every container before it is created.
    pub policy: Policy,
}

impl LocalBackendConfig {
    /// Defaults for a sandbox directory (capacity detected, no registry credentials).
    pub fn new(sandbox_dir: impl Into<PathBuf>) -> LocalBackendConfig {
        LocalBackendConfig {
            framework_id: None,
            hostname: hostname(),
            cpus: None,
            mem_mb: None,
            disk_mb: 65536.0,
            ports: DEFAULT_PORTS,
            sandbox_dir: sandbox_dir.into(),
            registry: RegistryAuth::default(),
            default_env: Vec::new(),
            default_volumes: Vec::new(),
            docker_sock: None,
            group_add: None,
            pull_timeout: Duration::from_secs(600),
            max_refuse: Duration::from_secs(5),
            sandbox_retention: Some(DEFAULT_SANDBOX_RETENTION),
            policy: Policy::default(),
        }
    }

    /// The local backend's settings from the `[mesos]` block.
    pub fn from_config(cfg: &Config) -> LocalBackendConfig {
        LocalBackendConfig {
            cpus: cfg.local_cpus,
            mem_mb: cfg.local_memory,
            registry: cfg.registry.clone(),
            default_env: cfg.docker_environment.clone(),
            default_volumes: cfg.docker_volumes.clone(),
            docker_sock: cfg.docker_sock.clone().filter(|_| cfg.docker_privileged),
            group_add: cfg.docker_user_group_id.clone(),
            policy: cfg.task_policy(),
            sandbox_retention: (cfg.sandbox_retention > 0.0).then(|| {
                Duration::from_secs_f64(cfg.sandbox_retention.max(MIN_SANDBOX_RETENTION_SECS))
            }),
            ..LocalBackendConfig::new(cfg.sandbox_dir.clone())
        }
    }

    fn framework_id(&self) -> String {
        self.framework_id
            .clone()
            .unwrap_or_else(|| format!("local-{}", self.hostname))
    }

    fn agent_id(&self) -> String {
        format!("local-docker-{}", self.hostname)
    }
}

/// This machine's hostname (from the kernel), `localhost` when unknown.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Starts the local backend as a task of the current runtime. It stops when `shutdown` is
/// cancelled or the driver drops its end of the channels; containers keep running and are
/// adopted by the next start.
pub fn spawn(cfg: LocalBackendConfig, shutdown: CancellationToken) -> BackendChannels {
    let (event_tx, event_rx) = mpsc::channel(1024);
    let (action_tx, action_rx) = mpsc::channel(256);
    tokio::spawn(run(cfg, event_tx, action_rx, shutdown));
    BackendChannels {
        events: event_rx,
        actions: action_tx,
    }
}

mod actor;
mod container;
mod launch;
mod offers;
mod sandbox;

use actor::run;
pub use container::{container_name, container_spec};
pub use offers::Usage;
use sandbox::MIN_SANDBOX_RETENTION_SECS;
pub use sandbox::{collect_sandboxes, read_log, DEFAULT_SANDBOX_RETENTION};

#[cfg(test)]
mod test_support {
    //! What the unit tests of the backend's parts share: a launch and a configuration.
    use super::LocalBackendConfig;
    use crate::scheduler::types::{Flavour, LaunchTask, Quantity, Resource};
    use crate::task::{Command, Containerizer, NetworkMode, TaskSpec};
    use std::collections::BTreeMap;

    pub(super) fn task(cmd: Option<Command>, shell: bool) -> LaunchTask {
        LaunchTask {
            task_id: "t-1".into(),
            backend_task_id: "t-1.1".into(),
            attempt: 1,
            name: "n".into(),
            agent_id: "a".into(),
            resources: vec![
                Resource {
                    name: "cpus".into(),
                    quantity: Quantity::Scalar(500),
                    flavour: Flavour::plain("cpus"),
                },
                Resource {
                    name: "mem".into(),
                    quantity: Quantity::Scalar(64_000),
                    flavour: Flavour::plain("mem"),
                },
            ],
            image: "am-test/busybox".into(),
            containerizer: Containerizer::Docker,
            network: NetworkMode::Bridge,
            port_mappings: vec![],
            force_pull: false,
            kill_grace_secs: 2.0,
            labels: BTreeMap::new(),
            shell,
            spec: TaskSpec {
                command: cmd,
                ..TaskSpec::default()
            },
        }
    }

    pub(super) fn cfg() -> LocalBackendConfig {
        LocalBackendConfig::new("/sb")
    }
}
