//! [`CoreConfig`]: the defaults and policies the scheduler core applies, taken from the
//! `[mesos]` block once at start ([`CoreConfig::from_config`]).

use crate::config::{defaults, Config};
use crate::task::spec::{parse_constraint, AttrMatch};
use crate::task::{Containerizer, NetworkMode, VolumeMode, VolumeSpec};
use std::time::Duration;

/// Where the Docker socket is mounted inside a task container.
pub const DOCKER_SOCK_CONTAINER_PATH: &str = "/var/run/docker.sock";

/// Defaults for task specs and the policies of the core (timers, limits).
#[derive(Debug, Clone, PartialEq)]
pub struct CoreConfig {
    /// `docker_image_slave`: the image of a task that names none.
    pub default_image: Option<String>,
    /// `task_cpu`.
    pub task_cpus: f64,
    /// `task_memory` (MB).
    pub task_mem: f64,
    /// `task_disk` (MB); 0 = no disk requested.
    pub task_disk: f64,
    pub containerizer: Containerizer,
    /// `docker_network_mode`.
    pub network: NetworkMode,
    pub force_pull: bool,
    /// `kill_grace_period` (seconds).
    pub kill_grace_secs: f64,
    /// `launch_retries`: relaunches after a launch failure, unless a spec says otherwise.
    pub launch_retries: u32,
    /// `queued_timeout`: a task queued this long (since it was last queued) fails with the
    /// reason it waits; `None`: it waits for ever.
    pub queued_timeout: Option<Duration>,
    /// `command_shell`: run string commands through `/bin/sh -c`. When false, a string
    /// command is split with shlex and run as an argv (Airflow 1.10 style).
    pub command_shell: bool,
    /// `docker_environment`: given to every task; a spec's `env` overrides it key by key.
    pub environment: Vec<(String, String)>,
    /// Volumes mounted into every task: `docker_volumes` and, when `docker_privileged`, the
    /// Docker socket (`docker_sock`, default `/var/run/docker.sock`) at
    /// [`DOCKER_SOCK_CONTAINER_PATH`]. The socket is never mounted otherwise, even when
    /// `docker_sock` is set: access to it is root on the agent.
    pub volumes: Vec<VolumeSpec>,
    /// `docker_privileged`: run every task privileged.
    pub privileged: bool,
    /// What a task may ask for (`allow_privileged`, `allowed_host_paths`, ...), checked again
    /// when a queued task is prepared for launch.
    pub policy: crate::task::Policy,
    /// `mesos_attributes`, parsed: constraints applied to every task.
    pub constraints: Vec<Vec<AttrMatch>>,
    /// `offer_refuse_seconds`: the filter unused offers are declined with.
    pub offer_refuse_seconds: f64,
    /// `reconciliation_interval`: between periodic implicit reconciliations.
    pub reconciliation_interval: Duration,
    /// At most one REVIVE per this interval.
    pub revive_interval: Duration,
    /// First wait before an unanswered explicit reconciliation is repeated; doubles up to
    /// `reconcile_backoff_max`.
    pub reconcile_backoff_initial: Duration,
    pub reconcile_backoff_max: Duration,
    /// A kill is sent again when no terminal update came within the grace period plus this.
    pub kill_retry_after: Duration,
    /// How many terminal tasks the core remembers (to answer a kill with
    /// `AlreadyTerminal`); older ones are forgotten (the store still has them).
    pub remember_terminal: usize,
}

impl Default for CoreConfig {
    /// Airflow 1.10's `[mesos]` defaults and the project's own.
    fn default() -> CoreConfig {
        CoreConfig {
            default_image: None,
            task_cpus: defaults::TASK_CPU,
            task_mem: defaults::TASK_MEMORY,
            task_disk: defaults::TASK_DISK,
            containerizer: Containerizer::Docker,
            network: NetworkMode::Host,
            force_pull: defaults::FORCE_PULL,
            kill_grace_secs: defaults::KILL_GRACE_PERIOD,
            launch_retries: defaults::LAUNCH_RETRIES,
            queued_timeout: None,
            command_shell: defaults::COMMAND_SHELL,
            environment: Vec::new(),
            volumes: Vec::new(),
            privileged: false,
            policy: crate::task::Policy::default(),
            constraints: Vec::new(),
            offer_refuse_seconds: defaults::OFFER_REFUSE_SECONDS,
            reconciliation_interval: Duration::from_secs(defaults::RECONCILIATION_INTERVAL as u64),
            revive_interval: Duration::from_secs(5),
            reconcile_backoff_initial: Duration::from_secs(5),
            reconcile_backoff_max: Duration::from_secs(300),
            kill_retry_after: Duration::from_secs(30),
            remember_terminal: 100_000,
        }
    }
}

fn secs(v: f64, default: Duration) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or(default)
}

impl CoreConfig {
    /// The core's view of the configuration. A `mesos_attributes` entry that does not parse is
    /// skipped with a warning (the config loader is expected to refuse it first).
    pub fn from_config(cfg: &Config) -> CoreConfig {
        let d = CoreConfig::default();
        let mut volumes: Vec<VolumeSpec> = cfg
            .docker_volumes
            .iter()
            .map(|v| VolumeSpec {
                container_path: v.container_path.clone(),
                host_path: None,
                name: Some(v.name.clone()),
                driver: v.driver.clone(),
                mode: VolumeMode::Rw,
            })
            .collect();
        if cfg.docker_privileged {
            volumes.push(VolumeSpec {
                container_path: DOCKER_SOCK_CONTAINER_PATH.to_string(),
                host_path: Some(
                    cfg.docker_sock
                        .clone()
                        .unwrap_or_else(|| DOCKER_SOCK_CONTAINER_PATH.to_string()),
                ),
                name: None,
                driver: None,
                mode: VolumeMode::Rw,
            });
        }
        let constraints = cfg
            .mesos_attributes
            .iter()
            .filter_map(|c| {
                let parsed = parse_constraint(c);
                if parsed.is_none() {
                    tracing::warn!(constraint = %c, "[mesos] mesos_attributes: not `name:value`; ignored");
                }
                parsed
            })
            .collect();
        CoreConfig {
            default_image: cfg.docker_image_slave.clone(),
            task_cpus: cfg.task_cpu,
            task_mem: cfg.task_memory,
            task_disk: cfg.task_disk,
            containerizer: cfg.containerizer,
            network: cfg.docker_network_mode.clone(),
            force_pull: cfg.force_pull,
            kill_grace_secs: cfg.kill_grace_period,
            launch_retries: cfg.launch_retries,
            queued_timeout: (cfg.queued_timeout > 0.0)
                .then(|| Duration::from_secs_f64(cfg.queued_timeout)),
            command_shell: cfg.command_shell,
            environment: cfg.docker_environment.clone(),
            volumes,
            privileged: cfg.docker_privileged,
            policy: cfg.task_policy(),
            constraints,
            offer_refuse_seconds: cfg.offer_refuse_seconds,
            reconciliation_interval: secs(cfg.reconciliation_interval, d.reconciliation_interval),
            ..d
        }
    }
}
