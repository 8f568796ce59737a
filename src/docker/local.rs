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

use super::auth::{credentials_for, ImageRef};
use super::{connect, engine_message, is_not_found};
use crate::config::{Config, DefaultVolume, RegistryAuth};
use crate::scheduler::types::{
    to_milli, Action, BackendChannels, BackendState, Event, Flavour, LaunchTask, Offer, Quantity,
    Resource, StatusUpdate, UpdateSource,
};
use crate::task::{Command, NetworkMode, Policy, VolumeMode};
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions,
    MountVolumeOptionsDriverConfig, PortBinding,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, InspectContainerOptions,
    ListContainersOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
    WaitContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
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

/// Reads up to `max` bytes of a task's `stdout` (or `stderr`) from `offset`. Returns the bytes
/// and the offset to continue from.
pub async fn read_log(
    sandbox_dir: &Path,
    backend_task_id: &str,
    stderr: bool,
    offset: u64,
    max: usize,
) -> io::Result<(Vec<u8>, u64)> {
    check_task_dir_name(backend_task_id)?;
    let path = sandbox_dir
        .join(backend_task_id)
        .join(if stderr { "stderr" } else { "stdout" });
    let mut f = tokio::fs::File::open(&path)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    f.seek(io::SeekFrom::Start(offset)).await?;
    let mut buf = Vec::with_capacity(max.min(1 << 20));
    (&mut f).take(max as u64).read_to_end(&mut buf).await?;
    let next = offset + buf.len() as u64;
    Ok((buf, next))
}

/// `[mesos] sandbox_retention`'s default: a week, as a Mesos agent's `--gc_delay`.
pub const DEFAULT_SANDBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Shorter retentions are raised to this, so that a sandbox being made is never collected.
const MIN_SANDBOX_RETENTION_SECS: f64 = 60.0;

/// Removes the sandboxes under `dir` of tasks not in `live` whose newest entry (the directory
/// or a file directly in it) was modified more than `retention` before `now`. Only directories
/// named like a task attempt (`<task id>.<n>`) are considered. Returns the names removed.
pub fn collect_sandboxes(
    dir: &Path,
    live: &HashSet<String>,
    retention: Duration,
    now: SystemTime,
) -> io::Result<Vec<String>> {
    let newest = |p: &Path| -> io::Result<SystemTime> {
        let mut t = std::fs::metadata(p)?.modified()?;
        for e in std::fs::read_dir(p)? {
            if let Ok(m) = e.and_then(|e| e.metadata()) {
                if let Ok(mt) = m.modified() {
                    t = t.max(mt);
                }
            }
        }
        Ok(t)
    };
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if live.contains(&name)
            || crate::task::parse_attempt_task_id(&name).is_none()
            || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let path = entry.path();
        let expired = newest(&path)
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > retention);
        if expired {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => removed.push(name),
                Err(e) => {
                    tracing::warn!(sandbox = %path.display(), error = %e, "cannot remove an expired sandbox")
                }
            }
        }
    }
    Ok(removed)
}

fn check_task_dir_name(id: &str) -> io::Result<()> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\\') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{id}` is not a task id"),
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Capacity and offers (pure: time is passed in)
// ------------------------------------------------------------------------------------------

/// What a task holds: thousandths of cpus, mem (MB) and disk (MB), and host ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpus: i64,
    pub mem: i64,
    pub disk: i64,
    pub ports: Vec<u64>,
}

impl Usage {
    /// Adds what another task holds.
    pub fn add(&mut self, other: Usage) {
        self.cpus += other.cpus;
        self.mem += other.mem;
        self.disk += other.disk;
        self.ports.extend(other.ports);
    }

    /// The resources a launch took from the offer (falls back to the spec when the launch
    /// lists none).
    pub fn of(task: &LaunchTask) -> Usage {
        let mut u = Usage::default();
        for r in &task.resources {
            match (&*r.name, &r.quantity) {
                ("cpus", Quantity::Scalar(v)) => u.cpus += v,
                ("mem", Quantity::Scalar(v)) => u.mem += v,
                ("disk", Quantity::Scalar(v)) => u.disk += v,
                ("ports", Quantity::Ranges(rs)) => {
                    for (a, b) in rs {
                        u.ports.extend(*a..=*b);
                    }
                }
                _ => {}
            }
        }
        if task.resources.is_empty() {
            u.cpus = task.spec.cpus.map(to_milli).unwrap_or(0);
            u.mem = task.spec.mem.map(to_milli).unwrap_or(0);
            u.disk = task.spec.disk.map(to_milli).unwrap_or(0);
        }
        for m in &task.port_mappings {
            if !u.ports.contains(&(m.host_port as u64)) {
                u.ports.push(m.host_port as u64);
            }
        }
        u
    }
}

/// The machine's capacity, what is in use, and the outstanding offers. As a Mesos allocator
/// does, an offer stays valid until it is used or declined (SUPPRESS stops further offers only,
/// as in Mesos): capacity
/// freed meanwhile goes out as a further offer of its own, so that a launch in flight on an
/// earlier offer always finds its resources still there.
#[derive(Debug, Clone)]
pub struct OfferBook {
    total: Usage,
    port_range: (u64, u64),
    used: HashMap<String, Usage>,
    /// Offers out, each with the disjoint slice of the free capacity it holds.
    outstanding: Vec<(String, Usage)>,
    seq: u64,
    refuse_until: Option<Instant>,
    suppressed: bool,
    max_refuse: Duration,
}

impl OfferBook {
    pub fn new(
        cpus: f64,
        mem_mb: f64,
        disk_mb: f64,
        port_range: (u64, u64),
        max_refuse: Duration,
    ) -> OfferBook {
        OfferBook {
            total: Usage {
                cpus: to_milli(cpus),
                mem: to_milli(mem_mb),
                disk: to_milli(disk_mb),
                ports: Vec::new(),
            },
            port_range,
            used: HashMap::new(),
            outstanding: Vec::new(),
            seq: 0,
            refuse_until: None,
            suppressed: false,
            max_refuse,
        }
    }

    /// What is free now.
    pub fn free(&self) -> Usage {
        let mut f = self.total.clone();
        let mut used_ports: Vec<u64> = Vec::new();
        for u in self.used.values() {
            f.cpus -= u.cpus;
            f.mem -= u.mem;
            f.disk -= u.disk;
            used_ports.extend(&u.ports);
        }
        f.ports = (self.port_range.0..=self.port_range.1)
            .filter(|p| !used_ports.contains(p))
            .collect();
        f
    }

    /// Records what a task holds (replacing what it held).
    pub fn hold(&mut self, backend_task_id: &str, usage: Usage) {
        self.used.insert(backend_task_id.to_string(), usage);
    }

    /// Gives back what a task held. Returns true when it held something.
    pub fn release(&mut self, backend_task_id: &str) -> bool {
        self.used.remove(backend_task_id).is_some()
    }

    /// What is free and in no outstanding offer.
    fn unoffered(&self) -> Usage {
        let mut f = self.free();
        for (_, o) in &self.outstanding {
            f.cpus -= o.cpus;
            f.mem -= o.mem;
            f.disk -= o.disk;
            f.ports.retain(|p| !o.ports.contains(p));
        }
        f
    }

    /// Whether `usage` fits in what is free and not promised to an outstanding offer.
    pub fn fits(&self, usage: &Usage) -> bool {
        let f = self.unoffered();
        usage.cpus <= f.cpus
            && usage.mem <= f.mem
            && usage.disk <= f.disk
            && usage.ports.iter().all(|p| f.ports.contains(p))
    }

    /// An offer of the free capacity no outstanding offer holds, if one should go out now:
    /// not suppressed or refused, and some cpus and memory of that kind.
    pub fn next_offer(&mut self, now: Instant, agent_id: &str, hostname: &str) -> Option<Offer> {
        if self.suppressed {
            return None;
        }
        if matches!(self.refuse_until, Some(t) if now < t) {
            return None;
        }
        self.refuse_until = None;
        let f = self.unoffered();
        if f.cpus <= 0 || f.mem <= 0 {
            return None;
        }
        self.seq += 1;
        let id = format!("{agent_id}-O{}", self.seq);
        self.outstanding.push((id.clone(), f.clone()));
        let mut resources = vec![
            Resource {
                name: "cpus".into(),
                quantity: Quantity::Scalar(f.cpus),
                flavour: Flavour::plain("cpus"),
            },
            Resource {
                name: "mem".into(),
                quantity: Quantity::Scalar(f.mem),
                flavour: Flavour::plain("mem"),
            },
        ];
        if f.disk > 0 {
            resources.push(Resource {
                name: "disk".into(),
                quantity: Quantity::Scalar(f.disk),
                flavour: Flavour::plain("disk"),
            });
        }
        let ranges = to_ranges(&f.ports);
        if !ranges.is_empty() {
            resources.push(Resource {
                name: "ports".into(),
                quantity: Quantity::Ranges(ranges),
                flavour: Flavour::plain("ports"),
            });
        }
        Some(Offer {
            id,
            agent_id: agent_id.to_string(),
            hostname: hostname.to_string(),
            agent_url: None,
            resources,
            attributes: Vec::new(),
            allocation_role: None,
        })
    }

    /// Takes the outstanding offers `offer_ids` names, if all of them are outstanding (their
    /// capacity is the launch's from now on). False: some offer is not valid, nothing taken.
    pub fn take(&mut self, offer_ids: &[String]) -> bool {
        let valid = !offer_ids.is_empty()
            && offer_ids
                .iter()
                .all(|i| self.outstanding.iter().any(|(o, _)| o == i));
        if valid {
            self.outstanding.retain(|(o, _)| !offer_ids.contains(o));
        }
        valid
    }

    /// Declines: offers are held back for `refuse_seconds` (at most `max_refuse`).
    pub fn decline(&mut self, offer_ids: &[String], refuse_seconds: f64, now: Instant) {
        if self.take(offer_ids) {
            let secs = if refuse_seconds.is_finite() && refuse_seconds > 0.0 {
                refuse_seconds
            } else {
                0.0
            };
            let d = Duration::from_secs_f64(secs).min(self.max_refuse);
            self.refuse_until = (!d.is_zero()).then(|| now + d);
        }
    }

    /// Stops further offers until [`OfferBook::revive`]; outstanding ones stay valid (the
    /// framework may be launching on them, or declines them).
    pub fn suppress(&mut self) {
        self.suppressed = true;
    }

    /// Resumes offers and clears a decline's hold.
    pub fn revive(&mut self) {
        self.suppressed = false;
        self.refuse_until = None;
    }

    /// When the next offer may go out because a decline's hold ends.
    pub fn wake_at(&self) -> Option<Instant> {
        self.refuse_until
    }
}

fn to_ranges(ports: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &p in ports {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == p => *hi = p,
            _ => out.push((p, p)),
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// Container specs (pure)
// ------------------------------------------------------------------------------------------

/// A launch that cannot run as given (reported as `TASK_ERROR`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTask(pub String);

/// The container name of a backend task id.
pub fn container_name(backend_task_id: &str) -> String {
    let clean: String = backend_task_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("airflow-mesos-{clean}")
}

/// The container a launch becomes (Mesos Docker-containerizer semantics, see the module
/// doc). `sandbox` is the host path of the task's sandbox.
pub fn container_spec(
    task: &LaunchTask,
    cfg: &LocalBackendConfig,
    framework_id: &str,
    sandbox: &Path,
) -> Result<ContainerCreateBody, InvalidTask> {
    cfg.policy
        .check(&task.spec)
        .map_err(|e| InvalidTask(e.to_string()))?;
    let (entrypoint, cmd) = match (&task.spec.command, task.shell) {
        (Some(Command::Shell(s)), true) => {
            if s.trim().is_empty() {
                return Err(InvalidTask(
                    "shell specified but no command value provided".into(),
                ));
            }
            (
                Some(vec!["/bin/sh".to_string()]),
                Some(vec!["-c".to_string(), s.clone()]),
            )
        }
        (Some(Command::Argv(v)), true) if !v.is_empty() => {
            let joined = shlex::try_join(v.iter().map(String::as_str))
                .map_err(|e| InvalidTask(format!("command cannot be quoted for a shell: {e}")))?;
            (
                Some(vec!["/bin/sh".to_string()]),
                Some(vec!["-c".to_string(), joined]),
            )
        }
        (Some(Command::Shell(s)), false) => {
            let argv = shlex::split(s)
                .ok_or_else(|| InvalidTask(format!("command `{s}` has unbalanced quotes")))?;
            (None, Some(argv))
        }
        (Some(Command::Argv(v)), _) if !v.is_empty() => (None, Some(v.clone())),
        // No command (or an empty argv): the image's own ENTRYPOINT and CMD.
        _ => (None, None),
    };

    let mut env: BTreeMap<String, String> = cfg.default_env.iter().cloned().collect();
    env.extend(task.spec.env.clone());
    // Only Docker's own API shows a container's environment here (unlike a Mesos master).
    env.extend(task.spec.secret_env.clone());
    env.insert("MESOS_SANDBOX".into(), SANDBOX_MOUNT.into());
    env.insert("MESOS_TASK_ID".into(), task.backend_task_id.clone());
    let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();

    let usage = Usage::of(task);
    let mut labels: HashMap<String, String> = task.labels.clone().into_iter().collect();
    labels.insert(LABEL_FRAMEWORK.into(), framework_id.into());
    labels.insert(LABEL_TASK_ID.into(), task.task_id.clone());
    labels.insert(LABEL_BACKEND_TASK_ID.into(), task.backend_task_id.clone());
    labels.insert(LABEL_CPUS.into(), usage.cpus.to_string());
    labels.insert(LABEL_MEM.into(), usage.mem.to_string());
    labels.insert(LABEL_DISK.into(), usage.disk.to_string());
    labels.insert(
        LABEL_PORTS.into(),
        usage
            .ports
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    labels.insert(LABEL_GRACE.into(), task.kill_grace_secs.to_string());

    let mut binds = vec![format!("{}:{SANDBOX_MOUNT}:rw", sandbox.display())];
    let mut mounts: Vec<Mount> = Vec::new();
    let mut taken: Vec<String> = vec![SANDBOX_MOUNT.to_string()];
    for (i, v) in task.spec.volumes.iter().enumerate() {
        let mode = match v.mode {
            VolumeMode::Rw => "rw",
            VolumeMode::Ro => "ro",
        };
        taken.push(v.container_path.clone());
        match (&v.host_path, &v.name) {
            (Some(h), _) => {
                let host = if Path::new(h).is_absolute() {
                    PathBuf::from(h)
                } else {
                    sandbox.join(h)
                };
                binds.push(format!("{}:{}:{mode}", host.display(), v.container_path));
            }
            (None, Some(name)) => mounts.push(named_volume(
                name,
                &v.container_path,
                v.driver.as_deref(),
                v.mode == VolumeMode::Ro,
            )),
            (None, None) => {
                return Err(InvalidTask(format!(
                    "volumes[{i}]: give a host_path or a volume name"
                )))
            }
        }
    }
    for dv in &cfg.default_volumes {
        if !taken.contains(&dv.container_path) {
            taken.push(dv.container_path.clone());
            mounts.push(named_volume(
                &dv.name,
                &dv.container_path,
                dv.driver.as_deref(),
                false,
            ));
        }
    }
    if let Some(sock) = &cfg.docker_sock {
        if !taken.iter().any(|t| t == "/var/run/docker.sock") {
            binds.push(format!("{sock}:/var/run/docker.sock:rw"));
        }
    }

    let network_mode = match &task.network {
        NetworkMode::Host => "host".to_string(),
        NetworkMode::Bridge => "bridge".to_string(),
        NetworkMode::None => "none".to_string(),
        NetworkMode::User(n) => n.clone(),
    };
    let mut exposed = Vec::new();
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    if !task.port_mappings.is_empty() {
        if !matches!(task.network, NetworkMode::Bridge | NetworkMode::User(_)) {
            return Err(InvalidTask(format!(
                "port mappings need a bridge or user network, not `{network_mode}`"
            )));
        }
        for m in &task.port_mappings {
            let proto = if m.protocol.is_empty() {
                "tcp"
            } else {
                m.protocol.as_str()
            };
            let key = format!("{}/{proto}", m.container_port);
            exposed.push(key.clone());
            port_bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: None,
                    host_port: Some(m.host_port.to_string()),
                });
        }
    }

    let nano_cpus = (usage.cpus > 0).then(|| usage.cpus * 1_000_000);
    let memory = (usage.mem > 0).then(|| usage.mem * 1024 * 1024 / 1000);
    let mut host_config = HostConfig {
        binds: Some(binds),
        mounts: (!mounts.is_empty()).then_some(mounts),
        network_mode: Some(network_mode),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        privileged: Some(task.spec.privileged),
        nano_cpus,
        memory,
        memory_swap: memory,
        group_add: cfg.group_add.clone().map(|g| vec![g]),
        ..Default::default()
    };
    for (i, p) in task.spec.docker_parameters.iter().enumerate() {
        docker_parameter(&mut host_config, p.key.trim_start_matches('-'), &p.value)
            .map_err(|why| InvalidTask(format!("docker_parameters[{i}]: {why}")))?;
    }
    Ok(ContainerCreateBody {
        image: Some(task.image.clone()),
        entrypoint,
        cmd,
        env: Some(env),
        labels: Some(labels),
        working_dir: Some(SANDBOX_MOUNT.to_string()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// The `docker run` options a task's `docker_parameters` may carry on the local backend (the
/// Mesos Docker containerizer passes any option to `docker run`; the Engine API needs each
/// mapped to its field).
pub const LOCAL_DOCKER_PARAMETERS: &[&str] = &[
    "shm-size",
    "cap-drop",
    "add-host",
    "dns",
    "init",
    "log-driver",
    "log-opt",
];

/// Applies one `docker run --key=value` option to the container's host config.
fn docker_parameter(hc: &mut HostConfig, key: &str, value: &str) -> Result<(), String> {
    match key {
        "shm-size" => {
            let mb = crate::task::spec::parse_mem_mb(value)
                .filter(|mb| *mb > 0.0)
                .ok_or_else(|| format!("shm-size `{value}`: expected a size such as 64m"))?;
            hc.shm_size = Some((mb * 1024.0 * 1024.0) as i64);
        }
        "cap-drop" => hc
            .cap_drop
            .get_or_insert_with(Vec::new)
            .push(value.to_string()),
        "add-host" => hc
            .extra_hosts
            .get_or_insert_with(Vec::new)
            .push(value.to_string()),
        "dns" => hc.dns.get_or_insert_with(Vec::new).push(value.to_string()),
        // The engine's log of the container; the sandbox's stdout and stderr do not depend on it.
        "log-driver" => hc.log_config.get_or_insert_with(Default::default).typ = Some(value.into()),
        "log-opt" => {
            let (k, v) = value
                .split_once('=')
                .ok_or_else(|| format!("log-opt `{value}`: expected key=value"))?;
            hc.log_config
                .get_or_insert_with(Default::default)
                .config
                .get_or_insert_with(Default::default)
                .insert(k.to_string(), v.to_string());
        }
        "init" => {
            hc.init = Some(
                crate::config::load::parse_bool(value)
                    .map_err(|_| format!("init `{value}`: expected true or false"))?,
            )
        }
        other => {
            return Err(format!(
                "`{other}` is not supported by the local Docker backend (it supports {})",
                LOCAL_DOCKER_PARAMETERS.join(", ")
            ))
        }
    }
    Ok(())
}

fn named_volume(name: &str, target: &str, driver: Option<&str>, read_only: bool) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(name.to_string()),
        typ: Some(MountType::VOLUME),
        read_only: Some(read_only),
        volume_options: driver.map(|d| MountVolumeOptions {
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: Some(d.to_string()),
                options: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

// ------------------------------------------------------------------------------------------
// The backend task
// ------------------------------------------------------------------------------------------

/// What a task runner tells the backend loop.
#[derive(Debug)]
enum Report {
    Started {
        backend_task_id: String,
        container_id: String,
    },
    Exited {
        backend_task_id: String,
        exit: ExitInfo,
    },
    LaunchFailed {
        backend_task_id: String,
        message: String,
    },
    /// A kill arrived before the container started.
    Cancelled {
        backend_task_id: String,
    },
    Removed,
}

#[derive(Debug, Clone)]
struct ExitInfo {
    exit_code: Option<i32>,
    oom_killed: bool,
    error: Option<String>,
    killed_marker: bool,
}

#[derive(Debug)]
struct TaskEntry {
    container_id: Option<String>,
    state: BackendState,
    exit_code: Option<i32>,
    message: Option<String>,
    reason: Option<String>,
    kill_requested: bool,
    grace_secs: f64,
    cancel: CancellationToken,
    mem_mb: f64,
}

struct Backend {
    cfg: LocalBackendConfig,
    docker: Docker,
    framework_id: String,
    agent_id: String,
    events: mpsc::Sender<Event>,
    reports_tx: mpsc::Sender<Report>,
    book: OfferBook,
    tasks: HashMap<String, TaskEntry>,
    /// uuid of an unacknowledged terminal update → its task.
    terminal_unacked: HashMap<Vec<u8>, String>,
    jobs: JoinSet<()>,
    /// The driver is gone: stop.
    closed: bool,
}

async fn run(
    cfg: LocalBackendConfig,
    events: mpsc::Sender<Event>,
    mut actions: mpsc::Receiver<Action>,
    shutdown: CancellationToken,
) {
    // Connect, retrying with a capped backoff while the engine is down.
    let mut backoff = Duration::from_millis(500);
    let docker = loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = connect() => r,
        };
        match attempt {
            Ok(d) => break d,
            Err(e) => {
                tracing::warn!(error = %e, "local backend: Docker engine unreachable");
                if events
                    .send(Event::Disconnected {
                        reason: e.to_string(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    let (cpus, mem) = match (cfg.cpus, cfg.mem_mb) {
        (Some(c), Some(m)) => (c, m),
        (c, m) => {
            let info = docker.info().await.ok();
            let ncpu = info.as_ref().and_then(|i| i.ncpu).unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |n| n.get() as i64)
            });
            let mem_total = info.as_ref().and_then(|i| i.mem_total).unwrap_or(1 << 30);
            (
                c.unwrap_or(ncpu as f64),
                m.unwrap_or(((mem_total as f64 / (1024.0 * 1024.0)) * 0.9).floor()),
            )
        }
    };
    let (reports_tx, mut reports_rx) = mpsc::channel(256);
    let framework_id = cfg.framework_id();
    let agent_id = cfg.agent_id();
    let book = OfferBook::new(cpus, mem, cfg.disk_mb, cfg.ports, cfg.max_refuse);
    let mut b = Backend {
        cfg,
        docker,
        framework_id,
        agent_id,
        events,
        reports_tx,
        book,
        tasks: HashMap::new(),
        terminal_unacked: HashMap::new(),
        jobs: JoinSet::new(),
        closed: false,
    };
    if let Err(e) = tokio::fs::create_dir_all(&b.cfg.sandbox_dir).await {
        tracing::error!(dir = %b.cfg.sandbox_dir.display(), error = %e, "cannot create the sandbox directory");
    }
    let subscribed = Event::Subscribed {
        framework_id: b.framework_id.clone(),
        heartbeat_interval_secs: None,
        master: Some(format!("local docker on {}", b.cfg.hostname)),
    };
    b.emit(subscribed).await;
    b.adopt_existing().await;
    // Expired sandboxes are collected at start and then every quarter of the retention (at
    // most hourly), in the background.
    let gc_every = b
        .cfg
        .sandbox_retention
        .map(|r| (r / 4).clamp(Duration::from_secs(60), Duration::from_secs(3600)));
    let mut gc_at = gc_every.map(|_| tokio::time::Instant::now());

    while !b.closed {
        b.offer_if_due().await;
        let wake = b.book.wake_at();
        tokio::select! {
            _ = async { tokio::time::sleep_until(gc_at.expect("guarded")).await }, if gc_at.is_some() => {
                gc_at = gc_every.map(|e| tokio::time::Instant::now() + e);
                b.collect_sandboxes();
            }
            _ = shutdown.cancelled() => break,
            a = actions.recv() => match a {
                Some(a) => b.handle_action(a).await,
                None => break,
            },
            Some(r) = reports_rx.recv() => b.handle_report(r).await,
            Some(res) = b.jobs.join_next(), if !b.jobs.is_empty() => {
                if let Err(e) = res {
                    if e.is_panic() {
                        tracing::error!(error = %e, "local backend: a task runner panicked");
                    }
                }
            }
            _ = sleep_until_opt(wake) => {}
        }
    }
    // Dropping the JoinSet stops the runners; the containers keep running and are adopted
    // by the next start.
    b.jobs.shutdown().await;
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => futures::future::pending().await,
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Backend {
    async fn emit(&mut self, e: Event) {
        if self.events.send(e).await.is_err() {
            self.closed = true;
        }
    }

    /// Removes expired sandboxes of tasks this backend no longer holds, off the runtime.
    fn collect_sandboxes(&mut self) {
        let Some(retention) = self.cfg.sandbox_retention else {
            return;
        };
        let live: HashSet<String> = self.tasks.keys().cloned().collect();
        let dir = self.cfg.sandbox_dir.clone();
        self.jobs.spawn(async move {
            let found = tokio::task::spawn_blocking(move || {
                collect_sandboxes(&dir, &live, retention, SystemTime::now())
            })
            .await;
            match found {
                Ok(Ok(removed)) if !removed.is_empty() => {
                    tracing::info!(count = removed.len(), "removed expired task sandboxes")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot list the sandbox directory"),
                _ => {}
            }
        });
    }

    fn sandbox_of(&self, backend_task_id: &str) -> PathBuf {
        self.cfg.sandbox_dir.join(backend_task_id)
    }

    async fn offer_if_due(&mut self) {
        // tokio's clock, so that a paused test clock governs the decline hold too.
        let now = tokio::time::Instant::now().into_std();
        if let Some(o) = self
            .book
            .next_offer(now, &self.agent_id, &self.cfg.hostname)
        {
            self.emit(Event::Offers(vec![o])).await;
        }
    }

    /// A status update from the "agent" (with a uuid to acknowledge).
    async fn update(&mut self, id: &str, state: BackendState, source: UpdateSource) {
        let uuid = uuid::Uuid::new_v4().as_bytes().to_vec();
        let Some(t) = self.tasks.get_mut(id) else {
            return;
        };
        t.state = state;
        let is_terminal = is_terminal(state);
        let upd = StatusUpdate {
            backend_task_id: id.to_string(),
            state,
            message: t.message.clone(),
            reason: t.reason.clone(),
            source: Some(source),
            agent_id: Some(self.agent_id.clone()),
            uuid: Some(uuid.clone()),
            timestamp: Some(now_secs()),
            exit_code: t.exit_code,
        };
        if is_terminal {
            self.terminal_unacked.insert(uuid, id.to_string());
        }
        self.emit(Event::Update(upd)).await;
    }

    /// An answer without uuid (reconciliation, invalid launches), as a master sends them.
    async fn master_update(
        &mut self,
        id: &str,
        state: BackendState,
        reason: &str,
        message: String,
        exit_code: Option<i32>,
    ) {
        let upd = StatusUpdate {
            backend_task_id: id.to_string(),
            state,
            message: Some(message),
            reason: Some(reason.to_string()),
            source: Some(UpdateSource::Master),
            agent_id: Some(self.agent_id.clone()),
            uuid: None,
            timestamp: Some(now_secs()),
            exit_code,
        };
        self.emit(Event::Update(upd)).await;
    }

    async fn handle_action(&mut self, a: Action) {
        match a {
            Action::Launch {
                offer_ids,
                tasks,
                refuse_seconds: _,
                ..
            } => self.launch(offer_ids, tasks).await,
            Action::Decline {
                offer_ids,
                refuse_seconds,
            } => self
                .book
                .decline(&offer_ids, refuse_seconds, Instant::now()),
            // A launch here is carried out or refused in this process, never left unanswered;
            // a void is still answered, so the core's bookkeeping holds on either backend.
            Action::VoidOffers { offer_ids } => {
                self.book.decline(&offer_ids, 0.0, Instant::now());
                self.emit(Event::OffersVoided { offer_ids }).await;
            }
            Action::Kill {
                backend_task_id,
                grace_secs,
                ..
            } => self.kill(backend_task_id, grace_secs).await,
            Action::Acknowledge { uuid, .. } => {
                if let Some(id) = self.terminal_unacked.remove(&uuid) {
                    self.forget(&id);
                }
            }
            Action::Reconcile(list) => self.reconcile(list).await,
            Action::Suppress(_) => {
                self.book.suppress();
            }
            Action::Revive(_) => self.book.revive(),
        }
    }

    async fn launch(&mut self, offer_ids: Vec<String>, tasks: Vec<LaunchTask>) {
        // Offers are never withdrawn under the framework (see [`OfferBook`]): one that is no
        // longer outstanding was used or declined already.
        let granted = self.book.take(&offer_ids);
        if !granted {
            for t in &tasks {
                self.master_update(
                    &t.backend_task_id,
                    BackendState::Dropped,
                    "REASON_INVALID_OFFERS",
                    format!("offer {} is no longer valid", offer_ids.join(",")),
                    None,
                )
                .await;
            }
            return;
        }
        for task in tasks {
            let id = task.backend_task_id.clone();
            if let Err(e) = check_task_dir_name(&id) {
                self.master_update(
                    &id,
                    BackendState::Error,
                    "REASON_TASK_INVALID",
                    e.to_string(),
                    None,
                )
                .await;
                continue;
            }
            if self.tasks.contains_key(&id) {
                self.master_update(
                    &id,
                    BackendState::Error,
                    "REASON_TASK_INVALID",
                    format!("task {id} is already running on this machine"),
                    None,
                )
                .await;
                continue;
            }
            let usage = Usage::of(&task);
            if !self.book.fits(&usage) {
                self.master_update(
                    &id,
                    BackendState::Error,
                    "REASON_TASK_INVALID",
                    "the task uses more resources than the offer holds".into(),
                    None,
                )
                .await;
                continue;
            }
            let sandbox = self.sandbox_of(&id);
            let spec = match container_spec(&task, &self.cfg, &self.framework_id, &sandbox) {
                Ok(s) => s,
                Err(e) => {
                    self.master_update(&id, BackendState::Error, "REASON_TASK_INVALID", e.0, None)
                        .await;
                    continue;
                }
            };
            self.book.hold(&id, usage.clone());
            let cancel = CancellationToken::new();
            self.tasks.insert(
                id.clone(),
                TaskEntry {
                    container_id: None,
                    state: BackendState::Staging,
                    exit_code: None,
                    message: None,
                    reason: None,
                    kill_requested: false,
                    grace_secs: task.kill_grace_secs,
                    cancel: cancel.clone(),
                    mem_mb: usage.mem as f64 / 1000.0,
                },
            );
            self.update(&id, BackendState::Starting, UpdateSource::Executor)
                .await;
            let job = Launch {
                docker: self.docker.clone(),
                backend_task_id: id,
                image: task.image.clone(),
                force_pull: task.force_pull,
                files: task
                    .spec
                    .files
                    .iter()
                    .map(|f| (f.path.clone(), f.content.clone()))
                    .collect(),
                sandbox,
                spec,
                registry: self.cfg.registry.clone(),
                pull_timeout: self.cfg.pull_timeout,
                reports: self.reports_tx.clone(),
                cancel,
            };
            self.jobs.spawn(job.run());
        }
    }

    async fn kill(&mut self, id: String, grace: Option<f64>) {
        let sandbox = self.sandbox_of(&id);
        let Some(t) = self.tasks.get_mut(&id) else {
            // Not ours (anymore): say what we know, as a master would.
            self.reconcile(vec![(id, None)]).await;
            return;
        };
        if is_terminal(t.state) {
            return;
        }
        t.kill_requested = true;
        let grace = grace.unwrap_or(t.grace_secs).max(0.0);
        // Durable, so that a restarted backend still reports KILLED.
        let _ = tokio::fs::write(sandbox.join(KILL_MARKER), b"").await;
        match t.container_id.clone() {
            None => t.cancel.cancel(),
            Some(cid) => {
                let docker = self.docker.clone();
                self.jobs.spawn(async move {
                    let opts = StopContainerOptions {
                        t: Some(grace.ceil() as i32),
                        signal: None,
                    };
                    if let Err(e) = docker.stop_container(&cid, Some(opts)).await {
                        tracing::warn!(container = %cid, error = %engine_message(&e), "stopping a task container failed");
                    }
                });
            }
        }
    }

    fn forget(&mut self, id: &str) {
        if let Some(t) = self.tasks.remove(id) {
            if let Some(cid) = t.container_id {
                let docker = self.docker.clone();
                let reports = self.reports_tx.clone();
                self.jobs.spawn(async move {
                    let opts = RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    };
                    if let Err(e) = docker.remove_container(&cid, Some(opts)).await {
                        if !is_not_found(&e) {
                            tracing::warn!(container = %cid, error = %engine_message(&e), "removing a finished task container failed");
                        }
                    }
                    let _ = reports.send(Report::Removed).await;
                });
            }
        }
    }

    async fn reconcile(&mut self, list: Vec<(String, Option<String>)>) {
        let ids: Vec<String> = if list.is_empty() {
            let mut v: Vec<String> = self.tasks.keys().cloned().collect();
            v.sort();
            v
        } else {
            list.into_iter().map(|(id, _)| id).collect()
        };
        for id in ids {
            if let Some(t) = self.tasks.get(&id) {
                let (state, code, msg) = (t.state, t.exit_code, t.message.clone());
                let state = if state == BackendState::Staging {
                    BackendState::Starting
                } else {
                    state
                };
                let msg = msg.unwrap_or_else(|| "reconciliation".to_string());
                self.master_update(&id, state, "REASON_RECONCILIATION", msg, code)
                    .await;
            } else {
                self.master_update(
                    &id,
                    BackendState::Gone,
                    "REASON_RECONCILIATION",
                    format!("no container of task {id} on this machine"),
                    None,
                )
                .await;
            }
        }
    }

    async fn handle_report(&mut self, r: Report) {
        match r {
            Report::Started {
                backend_task_id,
                container_id,
            } => {
                let Some(t) = self.tasks.get_mut(&backend_task_id) else {
                    return;
                };
                t.container_id = Some(container_id.clone());
                if t.kill_requested {
                    // The kill came while the container was being created: stop it now.
                    let grace = t.grace_secs;
                    let docker = self.docker.clone();
                    self.jobs.spawn(async move {
                        let opts = StopContainerOptions {
                            t: Some(grace.ceil() as i32),
                            signal: None,
                        };
                        let _ = docker.stop_container(&container_id, Some(opts)).await;
                    });
                }
                if t.state != BackendState::Running {
                    self.update(
                        &backend_task_id,
                        BackendState::Running,
                        UpdateSource::Executor,
                    )
                    .await;
                }
            }
            Report::Exited {
                backend_task_id,
                exit,
            } => {
                let Some(t) = self.tasks.get_mut(&backend_task_id) else {
                    return;
                };
                let killed = t.kill_requested || exit.killed_marker;
                let code = exit.exit_code;
                t.exit_code = code;
                let state = if killed {
                    t.message = Some(format!(
                        "killed at the framework's request (exit code {})",
                        code.map_or("unknown".to_string(), |c| c.to_string())
                    ));
                    t.reason = None;
                    BackendState::Killed
                } else if exit.oom_killed {
                    t.message = Some(format!(
                        "the container went over its memory limit of {} MB and was OOM-killed",
                        t.mem_mb
                    ));
                    t.reason = Some("REASON_CONTAINER_LIMITATION_MEMORY".into());
                    BackendState::Failed
                } else if code == Some(0) {
                    t.message = Some("command exited with code 0".into());
                    BackendState::Finished
                } else {
                    t.message = Some(match (&exit.error, code) {
                        (Some(e), _) if !e.is_empty() => format!("container error: {e}"),
                        // The engine can miss an OOM kill that comes within moments of
                        // the start (its OOM notification is not armed yet): say so.
                        (_, Some(137)) => format!(
                            "command was killed by SIGKILL (exit code 137), not at the \
                             framework's request; if it was near its memory limit of {} MB, \
                             it likely ran out of memory",
                            t.mem_mb
                        ),
                        (_, Some(c)) => format!("command exited with code {c}"),
                        _ => "the container ended and its exit code is unknown".into(),
                    });
                    BackendState::Failed
                };
                self.book.release(&backend_task_id);
                self.update(&backend_task_id, state, UpdateSource::Executor)
                    .await;
            }
            Report::LaunchFailed {
                backend_task_id,
                message,
            } => {
                let Some(t) = self.tasks.get_mut(&backend_task_id) else {
                    return;
                };
                t.message = Some(message);
                t.reason = Some("REASON_CONTAINER_LAUNCH_FAILED".into());
                self.book.release(&backend_task_id);
                self.update(&backend_task_id, BackendState::Failed, UpdateSource::Agent)
                    .await;
            }
            Report::Cancelled { backend_task_id } => {
                let Some(t) = self.tasks.get_mut(&backend_task_id) else {
                    return;
                };
                t.message = Some("killed before the container started".into());
                t.reason = Some("REASON_TASK_KILLED_DURING_LAUNCH".into());
                self.book.release(&backend_task_id);
                self.update(&backend_task_id, BackendState::Killed, UpdateSource::Agent)
                    .await;
            }
            Report::Removed => {}
        }
    }

    /// Adopts the containers of this framework that a previous run left: running ones are
    /// watched to completion, exited ones reported again, created ones started.
    async fn adopt_existing(&mut self) {
        let mut filters = HashMap::new();
        filters.insert(
            "label".to_string(),
            vec![format!("{LABEL_FRAMEWORK}={}", self.framework_id)],
        );
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = match self.docker.list_containers(Some(opts)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %engine_message(&e), "local backend: cannot list containers to adopt");
                return;
            }
        };
        for c in list {
            let (Some(cid), Some(labels)) = (c.id, c.labels) else {
                continue;
            };
            let Some(id) = labels.get(LABEL_BACKEND_TASK_ID).cloned() else {
                continue;
            };
            if check_task_dir_name(&id).is_err() || self.tasks.contains_key(&id) {
                continue;
            }
            let num = |k: &str| {
                labels
                    .get(k)
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            let usage = Usage {
                cpus: num(LABEL_CPUS),
                mem: num(LABEL_MEM),
                disk: num(LABEL_DISK),
                ports: labels
                    .get(LABEL_PORTS)
                    .map(|p| p.split(',').filter_map(|x| x.parse().ok()).collect())
                    .unwrap_or_default(),
            };
            let grace = labels
                .get(LABEL_GRACE)
                .and_then(|g| g.parse::<f64>().ok())
                .unwrap_or(3.0);
            tracing::info!(task = %id, container = %cid, "local backend: adopting a container from a previous run");
            self.book.hold(&id, usage.clone());
            let cancel = CancellationToken::new();
            self.tasks.insert(
                id.clone(),
                TaskEntry {
                    container_id: Some(cid.clone()),
                    state: BackendState::Running,
                    exit_code: None,
                    message: None,
                    reason: None,
                    kill_requested: false,
                    grace_secs: grace,
                    cancel,
                    mem_mb: usage.mem as f64 / 1000.0,
                },
            );
            let docker = self.docker.clone();
            let sandbox = self.sandbox_of(&id);
            let reports = self.reports_tx.clone();
            self.jobs.spawn(async move {
                let started = start_if_created(&docker, &cid).await;
                if let Err(message) = started {
                    let _ = reports
                        .send(Report::LaunchFailed {
                            backend_task_id: id,
                            message,
                        })
                        .await;
                    return;
                }
                let exit = watch(&docker, &cid, &sandbox, None).await;
                let _ = reports
                    .send(Report::Exited {
                        backend_task_id: id,
                        exit,
                    })
                    .await;
            });
        }
    }
}

fn is_terminal(s: BackendState) -> bool {
    matches!(
        s,
        BackendState::Finished
            | BackendState::Failed
            | BackendState::Killed
            | BackendState::Error
            | BackendState::Dropped
            | BackendState::Gone
            | BackendState::GoneByOperator
    )
}

/// Starts a container that was created but never started (a previous run died in between).
async fn start_if_created(docker: &Docker, cid: &str) -> Result<(), String> {
    let info = docker
        .inspect_container(cid, None::<InspectContainerOptions>)
        .await
        .map_err(|e| format!("cannot inspect container {cid}: {}", engine_message(&e)))?;
    let created = info
        .state
        .and_then(|s| s.status)
        .is_some_and(|s| s == bollard::models::ContainerStateStatusEnum::CREATED);
    if created {
        docker
            .start_container(cid, None)
            .await
            .map_err(|e| format!("cannot start container {cid}: {}", engine_message(&e)))?;
    }
    Ok(())
}

/// One launch, from sandbox to exit.
struct Launch {
    docker: Docker,
    backend_task_id: String,
    image: String,
    force_pull: bool,
    files: Vec<(String, String)>,
    sandbox: PathBuf,
    spec: ContainerCreateBody,
    registry: RegistryAuth,
    pull_timeout: Duration,
    reports: mpsc::Sender<Report>,
    cancel: CancellationToken,
}

impl Launch {
    async fn run(self) {
        let id = self.backend_task_id.clone();
        let reports = self.reports.clone();
        let cancel = self.cancel.clone();
        let prepared = tokio::select! {
            _ = cancel.cancelled() => Err(None),
            r = self.prepare() => r.map_err(Some),
        };
        let (cid, attached) = match prepared {
            Ok(p) => p,
            Err(None) => {
                // The kill may have cut `prepare` after the container was created: remove it
                // so that nothing of this launch runs on.
                let _ = self
                    .docker
                    .remove_container(
                        &container_name(&id),
                        Some(RemoveContainerOptions {
                            force: true,
                            ..Default::default()
                        }),
                    )
                    .await;
                let _ = reports
                    .send(Report::Cancelled {
                        backend_task_id: id,
                    })
                    .await;
                return;
            }
            Err(Some(message)) => {
                let _ = reports
                    .send(Report::LaunchFailed {
                        backend_task_id: id,
                        message,
                    })
                    .await;
                return;
            }
        };
        let _ = reports
            .send(Report::Started {
                backend_task_id: id.clone(),
                container_id: cid.clone(),
            })
            .await;
        let exit = watch(&self.docker, &cid, &self.sandbox, attached).await;
        let _ = reports
            .send(Report::Exited {
                backend_task_id: id,
                exit,
            })
            .await;
    }

    /// Sandbox, image, container; returns the started container's id and, for a container
    /// made here, its output attached before the start (so that none of it is lost, whatever
    /// the engine's log driver keeps).
    async fn prepare(&self) -> Result<(String, Option<Output>), String> {
        write_sandbox(&self.sandbox, &self.files)
            .await
            .map_err(|e| format!("cannot prepare the sandbox {}: {e}", self.sandbox.display()))?;
        self.ensure_image().await?;
        let name = container_name(&self.backend_task_id);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                self.spec.clone(),
            )
            .await;
        let cid = match created {
            Ok(r) => r.id,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                // Already created by an earlier run of this launch: never start it twice.
                let info = self
                    .docker
                    .inspect_container(&name, None::<InspectContainerOptions>)
                    .await
                    .map_err(|e| {
                        format!("cannot inspect container {name}: {}", engine_message(&e))
                    })?;
                let cid = info.id.unwrap_or(name.clone());
                start_if_created(&self.docker, &cid).await?;
                return Ok((cid, None));
            }
            Err(e) => {
                return Err(format!(
                    "cannot create the container for image `{}`: {}",
                    self.image,
                    engine_message(&e)
                ))
            }
        };
        let attached = match self
            .docker
            .attach_container(
                &cid,
                Some(AttachContainerOptions {
                    stdout: true,
                    stderr: true,
                    stream: true,
                    logs: false,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(a) => Some(a.output),
            Err(e) => {
                // The engine's log is the fallback (limited by its log driver).
                tracing::warn!(container = %cid, error = %engine_message(&e), "cannot attach to the container's output");
                None
            }
        };
        if let Err(e) = self.docker.start_container(&cid, None).await {
            let message = format!("cannot start the container: {}", engine_message(&e));
            let _ = self
                .docker
                .remove_container(
                    &cid,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
            return Err(message);
        }
        Ok((cid, attached))
    }

    async fn ensure_image(&self) -> Result<(), String> {
        let present = match self.docker.inspect_image(&self.image).await {
            Ok(_) => true,
            Err(e) if is_not_found(&e) => false,
            Err(e) => {
                return Err(format!(
                    "cannot inspect image `{}`: {}",
                    self.image,
                    engine_message(&e)
                ))
            }
        };
        if present && !self.force_pull {
            return Ok(());
        }
        let r = ImageRef::parse(&self.image);
        let creds = credentials_for(&self.registry, &r.registry, None)
            .map_err(|e| format!("registry credentials for {}: {e}", r.registry))?;
        let opts = CreateImageOptions {
            from_image: Some(r.full()),
            ..Default::default()
        };
        let pull = async {
            let mut stream = self.docker.create_image(Some(opts), None, creds.clone());
            while let Some(item) = stream.next().await {
                item.map_err(|e| super::auth::redact(&engine_message(&e), creds.as_ref()))?;
            }
            Ok::<(), String>(())
        };
        let what = if present {
            "force-pulling"
        } else {
            "image is not on this machine and pulling"
        };
        match tokio::time::timeout(self.pull_timeout, pull).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(format!("{what} `{}` failed: {msg}", self.image)),
            Err(_) => Err(format!(
                "{what} `{}` did not finish within {} s",
                self.image,
                self.pull_timeout.as_secs()
            )),
        }
    }
}

/// Creates the sandbox and writes the task's files into it (never into env or labels).
async fn write_sandbox(sandbox: &Path, files: &[(String, String)]) -> io::Result<()> {
    tokio::fs::create_dir_all(sandbox).await?;
    set_mode(sandbox, 0o777).await?;
    for (rel, content) in files {
        let p = Path::new(rel);
        if rel.is_empty()
            || p.is_absolute()
            || p.components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("sandbox file path `{rel}` leaves the sandbox"),
            ));
        }
        let dest = sandbox.join(p);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::write(&dest, content.as_bytes()).await?;
        set_mode(&dest, 0o644).await?;
    }
    Ok(())
}

async fn set_mode(p: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).await
}

/// A container's output stream (attached, or the engine's log followed).
type Output = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>>
            + Send,
    >,
>;

/// Copies a container's output into `stdout` / `stderr` in the sandbox until it stops, then
/// reads how it ended. `attached`: the output attached before the container started, all of
/// it, whatever the engine's log driver keeps (a new launch). Without it (a container adopted
/// after a restart) the files are rewritten from the engine's log of the whole output, which
/// its log driver may have cut.
async fn watch(docker: &Docker, cid: &str, sandbox: &Path, attached: Option<Output>) -> ExitInfo {
    let from_scratch = attached.is_none();
    let killed_marker = || sandbox.join(KILL_MARKER).exists();
    if let Err(e) = tokio::fs::create_dir_all(sandbox).await {
        tracing::warn!(dir = %sandbox.display(), error = %e, "cannot create the sandbox for logs");
    }
    let open = |name: &'static str| {
        let path = sandbox.join(name);
        async move {
            let mut o = tokio::fs::OpenOptions::new();
            o.create(true);
            if from_scratch {
                o.write(true).truncate(true);
            } else {
                o.append(true);
            }
            o.open(&path).await
        }
    };
    let (mut out, mut err) = (open("stdout").await.ok(), open("stderr").await.ok());
    let mut logs: Output = match attached {
        Some(a) => a,
        None => Box::pin(docker.logs(
            cid,
            Some(LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        )),
    };
    while let Some(item) = logs.next().await {
        match item {
            Ok(bollard::container::LogOutput::StdOut { message })
            | Ok(bollard::container::LogOutput::Console { message }) => {
                if let Some(f) = out.as_mut() {
                    let _ = f.write_all(&message).await;
                }
            }
            Ok(bollard::container::LogOutput::StdErr { message }) => {
                if let Some(f) = err.as_mut() {
                    let _ = f.write_all(&message).await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(container = %cid, error = %engine_message(&e), "log stream ended early");
                break;
            }
        }
    }
    for f in [out.as_mut(), err.as_mut()].into_iter().flatten() {
        let _ = f.flush().await;
    }
    // The log stream ends when the container stops; wait makes sure of it.
    let mut wait = docker.wait_container(cid, None::<WaitContainerOptions>);
    while let Some(r) = wait.next().await {
        if let Err(e) = r {
            if !matches!(e, bollard::errors::Error::DockerContainerWaitError { .. }) {
                tracing::warn!(container = %cid, error = %engine_message(&e), "waiting for a container failed");
            }
            break;
        }
    }
    match docker
        .inspect_container(cid, None::<InspectContainerOptions>)
        .await
    {
        Ok(info) => {
            let st = info.state.unwrap_or_default();
            ExitInfo {
                exit_code: st.exit_code.map(|c| c as i32),
                oom_killed: st.oom_killed.unwrap_or(false),
                error: st.error.filter(|e| !e.is_empty()),
                killed_marker: killed_marker(),
            }
        }
        Err(e) => ExitInfo {
            exit_code: None,
            oom_killed: false,
            error: Some(format!("the container disappeared: {}", engine_message(&e))),
            killed_marker: killed_marker(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::types::PortMapping;
    use crate::task::{Containerizer, TaskSpec, VolumeSpec};

    fn task(cmd: Option<Command>, shell: bool) -> LaunchTask {
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

    fn cfg() -> LocalBackendConfig {
        LocalBackendConfig::new("/sb")
    }

    #[test]
    fn shell_commands_override_the_entrypoint_and_argv_keeps_it() {
        let sb = Path::new("/sb/t-1.1");
        let s = container_spec(
            &task(Some(Command::Shell("echo hi".into())), true),
            &cfg(),
            "f",
            sb,
        )
        .unwrap();
        assert_eq!(s.entrypoint, Some(vec!["/bin/sh".to_string()]));
        assert_eq!(s.cmd, Some(vec!["-c".to_string(), "echo hi".to_string()]));
        let argv = Command::Argv(vec!["run".into(), "--x".into()]);
        let s = container_spec(&task(Some(argv), false), &cfg(), "f", sb).unwrap();
        assert_eq!(s.entrypoint, None);
        assert_eq!(s.cmd, Some(vec!["run".to_string(), "--x".to_string()]));
        let s = container_spec(&task(None, false), &cfg(), "f", sb).unwrap();
        assert_eq!((s.entrypoint, s.cmd), (None, None));
        let e = container_spec(
            &task(Some(Command::Shell(" ".into())), true),
            &cfg(),
            "f",
            sb,
        )
        .unwrap_err();
        assert!(e.0.contains("no command value"), "{e}");
    }

    #[test]
    fn expired_sandboxes_of_ended_tasks_are_collected_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(24 * 3600);
        let make = |name: &str, age: Duration, file_age: Option<Duration>| {
            let d = root.path().join(name);
            std::fs::create_dir(&d).unwrap();
            if let Some(fa) = file_age {
                let f = std::fs::File::create(d.join("stdout")).unwrap();
                f.set_modified(now - fa).unwrap();
            }
            std::fs::File::open(&d)
                .unwrap()
                .set_modified(now - age)
                .unwrap();
        };
        make("t-old.1", 3 * day, Some(3 * day));
        make("t-live.1", 3 * day, Some(3 * day));
        make("t-fresh.2", Duration::ZERO, None);
        make("t-writing.1", 3 * day, Some(Duration::from_secs(5)));
        make("not-a-task", 3 * day, None);
        std::fs::write(root.path().join("t-file.1"), b"x").unwrap();
        let live: HashSet<String> = ["t-live.1".to_string()].into();
        let removed = collect_sandboxes(root.path(), &live, day, now).unwrap();
        assert_eq!(removed, vec!["t-old.1".to_string()]);
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "not-a-task",
                "t-file.1",
                "t-fresh.2",
                "t-live.1",
                "t-writing.1"
            ]
        );
        // A second pass finds nothing more; a longer retention keeps everything.
        assert!(collect_sandboxes(root.path(), &live, day, now)
            .unwrap()
            .is_empty());
        assert!(
            collect_sandboxes(root.path(), &HashSet::new(), 10 * day, now)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn sandbox_limits_labels_and_volumes() {
        let mut t = task(Some(Command::Shell("true".into())), true);
        t.spec.env.insert("A".into(), "task".into());
        t.spec.volumes.push(VolumeSpec {
            container_path: "/data".into(),
            host_path: Some("rel".into()),
            name: None,
            driver: None,
            mode: VolumeMode::Ro,
        });
        t.spec.files.push(crate::task::SandboxFile {
            path: "secret.json".into(),
            content: "s3cr3t".into(),
        });
        let mut c = cfg();
        c.default_env = vec![("A".into(), "default".into()), ("B".into(), "b".into())];
        c.group_add = Some("999".into());
        let s = container_spec(&t, &c, "fw", Path::new("/sb/t-1.1")).unwrap();
        let env = s.env.clone().unwrap();
        assert!(
            env.contains(&"A=task".to_string()),
            "task env wins: {env:?}"
        );
        assert!(env.contains(&"B=b".to_string()));
        assert!(env.contains(&format!("MESOS_SANDBOX={SANDBOX_MOUNT}")));
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("s3cr3t"),
            "sandbox file content leaked into the container spec"
        );
        let hc = s.host_config.unwrap();
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.memory, Some(64 * 1024 * 1024));
        assert_eq!(hc.memory_swap, hc.memory);
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.group_add, Some(vec!["999".to_string()]));
        let binds = hc.binds.unwrap();
        assert!(binds.contains(&format!("/sb/t-1.1:{SANDBOX_MOUNT}:rw")));
        assert!(binds.contains(&"/sb/t-1.1/rel:/data:ro".to_string()));
        let labels = s.labels.unwrap();
        assert_eq!(labels[LABEL_FRAMEWORK], "fw");
        assert_eq!(labels[LABEL_TASK_ID], "t-1");
        assert_eq!(labels[LABEL_BACKEND_TASK_ID], "t-1.1");
    }

    #[test]
    fn port_mappings_only_on_bridge_or_user_networks() {
        let mut t = task(Some(Command::Shell("true".into())), true);
        t.port_mappings.push(PortMapping {
            host_port: 31005,
            container_port: 80,
            protocol: "tcp".into(),
        });
        let s = container_spec(&t, &cfg(), "f", Path::new("/sb/x")).unwrap();
        let pb = s.host_config.unwrap().port_bindings.unwrap();
        assert_eq!(
            pb["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("31005")
        );
        assert_eq!(Usage::of(&t).ports, vec![31005]);
        t.network = NetworkMode::Host;
        let e = container_spec(&t, &cfg(), "f", Path::new("/sb/x")).unwrap_err();
        assert!(e.0.contains("bridge or user network"), "{e}");
    }

    #[test]
    fn the_policy_is_checked_again_on_the_container() {
        // A launch that got past the core (e.g. from an older daemon's store) with a host path
        // or privileged is refused here, naming the field and the key.
        let mut t = task(Some(Command::Shell("true".into())), true);
        t.spec.volumes.push(VolumeSpec {
            container_path: "/host".into(),
            host_path: Some("/etc".into()),
            name: None,
            driver: None,
            mode: VolumeMode::Rw,
        });
        let e = container_spec(&t, &cfg(), "f", Path::new("/sb/x")).unwrap_err();
        assert!(
            e.0.contains("volumes[0].host_path") && e.0.contains("allowed_host_paths"),
            "{e}"
        );
        let mut c = cfg();
        c.policy.host_paths.push("/etc".into());
        assert!(container_spec(&t, &c, "f", Path::new("/sb/x")).is_ok());
        t.spec.privileged = true;
        let e = container_spec(&t, &c, "f", Path::new("/sb/x")).unwrap_err();
        assert!(e.0.contains("allow_privileged"), "{e}");
        c.policy.allow_privileged = true;
        // Docker parameters: allowed ones map to the Engine API's fields.
        t.spec.docker_parameters = vec![
            crate::task::DockerParameter {
                key: "shm-size".into(),
                value: "64m".into(),
            },
            crate::task::DockerParameter {
                key: "cap-drop".into(),
                value: "NET_RAW".into(),
            },
        ];
        let e = container_spec(&t, &c, "f", Path::new("/sb/x")).unwrap_err();
        assert!(e.0.contains("allowed_docker_parameters"), "{e}");
        c.policy.docker_parameters = None;
        let hc = container_spec(&t, &c, "f", Path::new("/sb/x"))
            .unwrap()
            .host_config
            .unwrap();
        assert_eq!(hc.shm_size, Some(64 * 1024 * 1024));
        assert_eq!(hc.cap_drop, Some(vec!["NET_RAW".to_string()]));
        t.spec.docker_parameters[0].key = "oom-score-adj".into();
        let e = container_spec(&t, &c, "f", Path::new("/sb/x")).unwrap_err();
        assert!(
            e.0.contains("not supported by the local Docker backend"),
            "{e}"
        );
    }

    #[test]
    fn offers_stay_valid_while_capacity_frees_or_offers_are_suppressed() {
        let t0 = Instant::now();
        let mut b = OfferBook::new(2.0, 1024.0, 0.0, (31000, 31003), Duration::from_secs(5));
        let cpus = |n: i64| Usage {
            cpus: n,
            mem: 100_000,
            ..Usage::default()
        };
        b.hold("x", cpus(1000));
        let o1 = b.next_offer(t0, "a", "h").unwrap();
        // Capacity freed while o1 is out goes into a further offer; o1 keeps its share.
        assert!(b.release("x"));
        let o2 = b.next_offer(t0, "a", "h").unwrap();
        assert!(
            b.next_offer(t0, "a", "h").is_none(),
            "everything is offered"
        );
        let scalar = |o: &Offer| {
            o.resources
                .iter()
                .find(|r| r.name == "cpus")
                .unwrap()
                .quantity
                .clone()
        };
        assert_eq!(scalar(&o1), Quantity::Scalar(1000));
        assert_eq!(scalar(&o2), Quantity::Scalar(1000));
        assert!(b.take(std::slice::from_ref(&o2.id)));
        assert!(b.fits(&cpus(1000)), "o2's share is the launch's");
        assert!(!b.fits(&cpus(1001)), "o1's share is not");
        b.hold("y", cpus(1000));
        assert!(b.take(std::slice::from_ref(&o1.id)), "o1 is still valid");
        assert!(b.fits(&cpus(1000)));
        assert!(!b.take(std::slice::from_ref(&o1.id)), "used once");
        assert!(!b.take(&[o1.id.clone(), "never-made".into()]));
        b.hold("z", cpus(1000));
        // SUPPRESS stops further offers; one already out stays valid.
        b.release("z");
        let o3 = b.next_offer(t0, "a", "h").unwrap();
        b.suppress();
        b.release("y");
        assert!(b.next_offer(t0, "a", "h").is_none(), "suppressed");
        assert!(b.take(std::slice::from_ref(&o3.id)));
    }

    #[test]
    fn offers_follow_free_capacity_declines_and_revive() {
        let t0 = Instant::now();
        let mut b = OfferBook::new(2.0, 1024.0, 0.0, (31000, 31003), Duration::from_secs(5));
        let o = b.next_offer(t0, "a", "h").unwrap();
        assert!(b.next_offer(t0, "a", "h").is_none(), "one offer at a time");
        let scalar = |o: &Offer, n: &str| {
            o.resources
                .iter()
                .find(|r| r.name == n)
                .map(|r| r.quantity.clone())
        };
        assert_eq!(scalar(&o, "cpus"), Some(Quantity::Scalar(2000)));
        assert_eq!(
            scalar(&o, "ports"),
            Some(Quantity::Ranges(vec![(31000, 31003)]))
        );
        assert!(b.take(std::slice::from_ref(&o.id)));
        assert!(
            !b.take(std::slice::from_ref(&o.id)),
            "an offer is used once"
        );
        b.hold(
            "x",
            Usage {
                cpus: 1500,
                mem: 512_000,
                disk: 0,
                ports: vec![31001],
            },
        );
        let o2 = b.next_offer(t0, "a", "h").unwrap();
        assert_eq!(scalar(&o2, "cpus"), Some(Quantity::Scalar(500)));
        assert_eq!(scalar(&o2, "mem"), Some(Quantity::Scalar(512_000)));
        assert_eq!(
            scalar(&o2, "ports"),
            Some(Quantity::Ranges(vec![(31000, 31000), (31002, 31003)]))
        );
        // A decline holds offers back, capped at max_refuse.
        b.decline(std::slice::from_ref(&o2.id), 3600.0, t0);
        assert!(b
            .next_offer(t0 + Duration::from_secs(4), "a", "h")
            .is_none());
        assert_eq!(b.wake_at(), Some(t0 + Duration::from_secs(5)));
        let o3 = b.next_offer(t0 + Duration::from_secs(5), "a", "h").unwrap();
        b.decline(std::slice::from_ref(&o3.id), 60.0, t0);
        b.revive();
        let o4 = b.next_offer(t0, "a", "h").unwrap();
        b.suppress();
        assert!(b.take(std::slice::from_ref(&o4.id)), "still valid");
        assert!(b.next_offer(t0, "a", "h").is_none(), "suppressed");
        b.revive();
        assert!(b.release("x"));
        let o5 = b.next_offer(t0, "a", "h").unwrap();
        assert_eq!(scalar(&o5, "cpus"), Some(Quantity::Scalar(2000)));
        // Nothing free, nothing offered.
        b.take(std::slice::from_ref(&o5.id));
        b.hold(
            "y",
            Usage {
                cpus: 2000,
                mem: 1,
                disk: 0,
                ports: vec![],
            },
        );
        assert!(b.next_offer(t0, "a", "h").is_none());
        assert!(!b.fits(&Usage {
            cpus: 1,
            ..Usage::default()
        }));
    }

    #[tokio::test]
    async fn read_log_pages_and_refuses_path_tricks() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("t-1.1")).unwrap();
        std::fs::write(d.path().join("t-1.1/stdout"), b"hello world").unwrap();
        let (b, next) = read_log(d.path(), "t-1.1", false, 0, 5).await.unwrap();
        assert_eq!((b.as_slice(), next), (&b"hello"[..], 5));
        let (b, next) = read_log(d.path(), "t-1.1", false, next, 100).await.unwrap();
        assert_eq!((b.as_slice(), next), (&b" world"[..], 11));
        let (b, next) = read_log(d.path(), "t-1.1", false, next, 100).await.unwrap();
        assert_eq!((b.len(), next), (0, 11));
        let e = read_log(d.path(), "t-1.1", true, 0, 10).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = read_log(d.path(), "../etc", false, 0, 10)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn container_names_are_docker_safe() {
        assert_eq!(container_name("t-ab.1"), "airflow-mesos-t-ab.1");
        assert_eq!(container_name("a b/c"), "airflow-mesos-a_b_c");
    }
}
