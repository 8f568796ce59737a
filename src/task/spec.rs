//! [`TaskSpec`]: what a user asks for. One schema for JSON (HTTP API) and YAML (job files).
//!
//! A spec is checked and normalised once, at submission ([`TaskSpec::normalize`]): Airflow's
//! `executor_config` (the AVENTER provider's keys) is folded into the explicit fields, and
//! anything that could never run (no image anywhere, negative cpus, more memory than any agent
//! has) is refused with an error naming the field, instead of becoming a stuck task.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The command of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    /// Run with `/bin/sh -c` (Mesos `shell: true`); the image's entrypoint is overridden.
    Shell(String),
    /// Run as an argv without a shell (Mesos `shell: false`); the image's entrypoint is kept
    /// by the Docker containerizer. An empty list runs the image's default command.
    Argv(Vec<String>),
}

impl Command {
    /// A short human rendering (argv joined by spaces, each word shell-quoted when needed).
    pub fn display(&self) -> String {
        match self {
            Command::Shell(s) => s.clone(),
            Command::Argv(v) => {
                shlex::try_join(v.iter().map(String::as_str)).unwrap_or_else(|_| v.join(" "))
            }
        }
    }
}

/// Docker network mode (Mesos `DockerInfo.Network`; `user` needs a network name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    Host,
    Bridge,
    None,
    /// A user-defined Docker (or CNI) network, by name.
    User(String),
}

impl NetworkMode {
    /// Parses `host`, `bridge`, `none`, `user:<name>` or `user=<name>` (case-insensitive
    /// keyword, as the AVENTER provider's `docker_network_mode` values are upper case).
    pub fn parse(s: &str) -> Option<NetworkMode> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        match lower.as_str() {
            "host" => Some(NetworkMode::Host),
            "bridge" => Some(NetworkMode::Bridge),
            "none" => Some(NetworkMode::None),
            _ => {
                let rest = lower
                    .strip_prefix("user:")
                    .or_else(|| lower.strip_prefix("user="))?;
                let name = &t[t.len() - rest.len()..];
                (!name.is_empty()).then(|| NetworkMode::User(name.to_string()))
            }
        }
    }
}

/// Which Mesos containerizer runs the task's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Containerizer {
    /// `ContainerInfo.type = DOCKER` (the agent's Docker containerizer).
    Docker,
    /// `ContainerInfo.type = MESOS` with a Docker `Image` (the unified containerizer).
    Mesos,
    /// No container: the command runs directly on the agent (Mesos's command executor), with
    /// whatever the agent has installed (Airflow 1.10's first mode). Not for the local
    /// Docker backend.
    None,
}

impl Containerizer {
    pub fn parse(s: &str) -> Option<Containerizer> {
        match s.trim().to_ascii_lowercase().as_str() {
            "docker" => Some(Containerizer::Docker),
            "mesos" => Some(Containerizer::Mesos),
            "none" => Some(Containerizer::None),
            _ => None,
        }
    }

    /// The name used in configuration and specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Containerizer::Docker => "docker",
            Containerizer::Mesos => "mesos",
            Containerizer::None => "none",
        }
    }
}

/// A port the container listens on; `host_port` is picked from the offer's `ports` when unset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub container_port: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u32>,
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_protocol() -> String {
    "tcp".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VolumeMode {
    #[default]
    Rw,
    Ro,
}

/// A volume: a host path (bind mount) or a named Docker volume (with an optional driver).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    pub container_path: String,
    /// Host path to bind-mount (absolute, or relative to the sandbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// Named Docker volume (instead of `host_path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Docker volume driver for a named volume (e.g. `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default)]
    pub mode: VolumeMode,
}

/// A file placed in the task's sandbox before the command runs. Its content is treated as a
/// secret: it never goes into the TaskInfo, environment, labels or logs; Mesos agents fetch it
/// from a one-time URL served by the daemon, the local backend writes it into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxFile {
    /// Relative path inside the sandbox (no `..`, not absolute).
    pub path: String,
    /// The content (UTF-8). Redacted (`***`) whenever a spec is shown.
    pub content: String,
}

/// One `docker run --key=value` option (Mesos `DockerInfo.parameters`), for the Docker
/// containerizer. Only what `[mesos] allowed_docker_parameters` lists is accepted; options that
/// would bypass the rest of the policy (volumes, privileged, network, user, devices, ...) never
/// are (see [`crate::task::policy::FORBIDDEN_DOCKER_PARAMETERS`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerParameter {
    /// The option's long name without dashes, e.g. `shm-size`.
    pub key: String,
    pub value: String,
}

/// The longest `kill_grace_period` a task (or `[mesos] kill_grace_period`) may ask for: a
/// day, in seconds.
pub const MAX_KILL_GRACE_SECS: f64 = 86_400.0;

/// What a user asks for. Optional fields fall back to the `[mesos]` defaults at launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Human name (shown in the Mesos UI); defaults to the task id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Shell string or argv. Absent: the image's own entrypoint/cmd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    /// Docker image; defaults to `[mesos] docker_image_slave`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<f64>,
    /// Disk in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secret (passwords, tokens). On Mesos they never
    /// go into the `TaskInfo` (which the master's `/state` shows): the agent fetches them once
    /// from the daemon into the sandbox, and the command runs through `/bin/sh`, which
    /// exports them, removes the file and then runs the command. They need a command. Like
    /// sandbox file contents, they are shown as `***` and blanked in the state database once
    /// the attempt has started.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeSpec>,
    /// `host`, `bridge`, `none` or `{user: name}`; defaults to `[mesos] docker_network_mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_pull: Option<bool>,
    /// Run the container privileged. Off unless asked for.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// Agent constraints, AVENTER syntax: `name:value` must match; `a:x?:b:y` means a:x, or
    /// else b:y; `hostname:<name>` matches the agent's hostname.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Seconds between SIGTERM and SIGKILL on kill; defaults to `[mesos] kill_grace_period`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_grace_period: Option<f64>,
    /// Relaunches after a launch failure (DROPPED, lost before start); defaults to
    /// `[mesos] launch_retries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// A key of the submitter's own (e.g. Airflow's task-instance key), returned with every
    /// state change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_key: Option<String>,
    /// `docker`, `mesos` or `none`; defaults to `[mesos] containerizer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containerizer: Option<Containerizer>,
    /// User to run the command as (Mesos `CommandInfo.user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Files written into the sandbox before start (secret content).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<SandboxFile>,
    /// Extra `docker run` options (Docker containerizer), as `[mesos]
    /// allowed_docker_parameters` permits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker_parameters: Vec<DockerParameter>,
    /// Airflow's `executor_config`, as users write it for the AVENTER provider: `cpus`,
    /// `mem_limit` ("512m", "2g"), `disk`, `image`, `container_type`, `attributes`,
    /// `force_pull`, `network_mode`, `environment`. Folded into the fields above at
    /// submission; explicit fields win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_config: Option<serde_json::Value>,
}

/// The fewest cpus a task may ask for (the Mesos Docker containerizer's `MIN_CPUS`: it would
/// give a container no less).
pub const MIN_CPUS: f64 = 0.01;
/// The least memory a task may ask for, in MB (the Docker containerizer's `MIN_MEMORY`).
pub const MIN_MEM_MB: f64 = 32.0;

/// Defaults and limits a spec is checked against (from the `[mesos]` block and what the
/// backend knows of its agents).
#[derive(Debug, Clone, PartialEq)]
pub struct SpecDefaults {
    pub image: Option<String>,
    pub cpus: f64,
    pub mem: f64,
    pub disk: f64,
    /// The most memory (MB) a task may have, when known for sure (the local engine's
    /// `local_memory`); a task asking for more is refused at submission. Free resources in
    /// offers are no such limit: on a busy cluster they are small while the agents are large.
    pub max_mem: Option<f64>,
    /// The most cpus a task may have, when known for sure (`local_cpus`).
    pub max_cpus: Option<f64>,
    /// The containerizer of tasks that name none (`[mesos] containerizer`).
    pub containerizer: Containerizer,
    /// Tasks may run without a container (`containerizer: none`): only on Mesos.
    pub uncontainerized: bool,
}

/// A spec that can never run, with the field that is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// Dotted path of the offending field, e.g. `cpus`, `executor_config.mem_limit`, `ports[0]`.
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Parses a memory size as Airflow users write it for the AVENTER provider: a bare number is
/// MB; suffixes `k`, `m`, `g`, `t` (optionally followed by `b`/`i`/`ib`, any case) scale it.
/// Returns MB.
pub fn parse_mem_mb(s: &str) -> Option<f64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .or_else(|| t.strip_suffix('i'))
        .unwrap_or(&t);
    let (num, factor) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1.0 / 1024.0),
        'm' => (&t[..t.len() - 1], 1.0),
        'g' => (&t[..t.len() - 1], 1024.0),
        't' => (&t[..t.len() - 1], 1024.0 * 1024.0),
        _ => (t, 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v * factor)
}

fn as_f64(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_bool(v: &serde_json::Value) -> Option<bool> {
    match v {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "1" => Some(true),
            "f" | "false" | "0" => Some(false),
            _ => None,
        },
        serde_json::Value::Number(n) => n.as_i64().map(|i| i != 0),
        _ => None,
    }
}

impl TaskSpec {
    /// A shell command task, the rest defaulted.
    pub fn shell(cmd: impl Into<String>) -> TaskSpec {
        TaskSpec {
            command: Some(Command::Shell(cmd.into())),
            ..TaskSpec::default()
        }
    }

    /// Folds `executor_config` into the explicit fields (explicit fields win) and checks the
    /// result against `defaults`. Idempotent. `executor_config` is kept as given.
    pub fn normalize(&mut self, defaults: &SpecDefaults) -> Result<(), SpecError> {
        self.fold_executor_config()?;
        self.validate(defaults)
    }

    fn fold_executor_config(&mut self) -> Result<(), SpecError> {
        let Some(ec) = self.executor_config.clone() else {
            return Ok(());
        };
        let obj = match ec {
            serde_json::Value::Null => return Ok(()),
            serde_json::Value::Object(o) => o,
            _ => {
                return Err(SpecError::new(
                    "executor_config",
                    "must be an object (a dict of settings)",
                ))
            }
        };
        let f = |k: &str| format!("executor_config.{k}");
        for (k, v) in &obj {
            if v.is_null() {
                continue;
            }
            match k.as_str() {
                "cpus" if self.cpus.is_none() => {
                    self.cpus = Some(as_f64(v).ok_or_else(|| {
                        SpecError::new(f(k), "expected a number of cpus, e.g. 0.5")
                    })?)
                }
                "mem_limit" | "mem" | "memory" if self.mem.is_none() => {
                    let mb = match v {
                        serde_json::Value::String(s) => parse_mem_mb(s),
                        other => as_f64(other),
                    };
                    self.mem = Some(mb.ok_or_else(|| {
                        SpecError::new(
                            f(k),
                            "expected a memory size such as \"512m\", \"2g\" or a number of MB",
                        )
                    })?)
                }
                "disk" if self.disk.is_none() => {
                    let mb = match v {
                        serde_json::Value::String(s) => parse_mem_mb(s),
                        other => as_f64(other),
                    };
                    self.disk =
                        Some(mb.ok_or_else(|| SpecError::new(f(k), "expected a disk size in MB"))?)
                }
                "image" if self.image.is_none() => {
                    self.image = Some(
                        v.as_str()
                            .ok_or_else(|| SpecError::new(f(k), "expected an image name"))?
                            .to_string(),
                    )
                }
                "container_type" | "containerizer" if self.containerizer.is_none() => {
                    let s = v.as_str().unwrap_or_default();
                    self.containerizer = Some(Containerizer::parse(s).ok_or_else(|| {
                        SpecError::new(f(k), "expected \"DOCKER\", \"MESOS\" or \"NONE\"")
                    })?)
                }
                "attributes" | "constraints" => {
                    let items = v.as_array().ok_or_else(|| {
                        SpecError::new(f(k), "expected a list of \"name:value\" strings")
                    })?;
                    for (i, it) in items.iter().enumerate() {
                        let s = it.as_str().ok_or_else(|| {
                            SpecError::new(
                                format!("{}[{i}]", f(k)),
                                "expected a \"name:value\" string",
                            )
                        })?;
                        if !self.constraints.iter().any(|c| c == s) {
                            self.constraints.push(s.to_string());
                        }
                    }
                }
                "force_pull" if self.force_pull.is_none() => {
                    self.force_pull = Some(
                        as_bool(v).ok_or_else(|| SpecError::new(f(k), "expected true or false"))?,
                    )
                }
                "network_mode" | "network" if self.network.is_none() => {
                    let s = v.as_str().unwrap_or_default();
                    self.network = Some(NetworkMode::parse(s).ok_or_else(|| {
                        SpecError::new(f(k), "expected HOST, BRIDGE, NONE or USER:<network>")
                    })?)
                }
                "environment" | "env" => {
                    let m = v.as_object().ok_or_else(|| {
                        SpecError::new(f(k), "expected a mapping of variable names to values")
                    })?;
                    for (name, val) in m {
                        let val = match val {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        self.env.entry(name.clone()).or_insert(val);
                    }
                }
                "privileged" => {
                    self.privileged |=
                        as_bool(v).ok_or_else(|| SpecError::new(f(k), "expected true or false"))?
                }
                "command" => {
                    return Err(SpecError::new(
                        f(k),
                        "the command comes from Airflow; it cannot be set in executor_config",
                    ))
                }
                // Known keys already set explicitly, the provider's internal ones, and keys of
                // other executors: ignored (the spec keeps them for reference).
                _ => {}
            }
        }
        Ok(())
    }

    /// Refuses a NUL character in the spec's text: no `execve(2)` can carry one (command,
    /// image, environment, user, paths, Docker parameters: such a task could only fail at
    /// launch on its agent), and PostgreSQL's text columns cannot hold one (name, external key,
    /// labels). The error names the field, never the value (`secret_env` values are secrets).
    /// Sandbox file contents and `executor_config` may hold anything (they are stored as JSON,
    /// and what `executor_config` sets is checked here once folded in).
    fn check_no_nul(&self) -> Result<(), SpecError> {
        // The field's name is only made for the error: this runs for every submitted task.
        fn nul(v: &str, field: impl FnOnce() -> String) -> Result<(), SpecError> {
            if v.contains('\0') {
                Err(SpecError::new(
                    field(),
                    "must not contain a NUL character (\\0)",
                ))
            } else {
                Ok(())
            }
        }
        match &self.command {
            Some(Command::Shell(c)) => nul(c, || "command".into())?,
            Some(Command::Argv(a)) => {
                for (i, w) in a.iter().enumerate() {
                    nul(w, || format!("command[{i}]"))?;
                }
            }
            None => {}
        }
        for (field, t) in [
            ("image", &self.image),
            ("name", &self.name),
            ("user", &self.user),
            ("external_key", &self.external_key),
        ] {
            if let Some(t) = t {
                nul(t, || field.into())?;
            }
        }
        for (i, c) in self.constraints.iter().enumerate() {
            nul(c, || format!("constraints[{i}]"))?;
        }
        for (map, name) in [
            (&self.env, "env"),
            (&self.secret_env, "secret_env"),
            (&self.labels, "labels"),
        ] {
            for (k, v) in map {
                let field = || format!("{name}.{}", k.escape_default());
                nul(k, field)?;
                nul(v, field)?;
            }
        }
        for (i, v) in self.volumes.iter().enumerate() {
            nul(&v.container_path, || format!("volumes[{i}].container_path"))?;
            for (what, t) in [
                ("host_path", &v.host_path),
                ("name", &v.name),
                ("driver", &v.driver),
            ] {
                if let Some(t) = t {
                    nul(t, || format!("volumes[{i}].{what}"))?;
                }
            }
        }
        for (i, f) in self.files.iter().enumerate() {
            nul(&f.path, || format!("files[{i}].path"))?;
        }
        for (i, p) in self.docker_parameters.iter().enumerate() {
            nul(&p.key, || format!("docker_parameters[{i}].key"))?;
            nul(&p.value, || format!("docker_parameters[{i}].value"))?;
        }
        Ok(())
    }

    /// Checks a (folded) spec against the defaults; see [`SpecError`].
    pub fn validate(&self, d: &SpecDefaults) -> Result<(), SpecError> {
        self.check_no_nul()?;
        if let Some(Command::Shell(s)) = &self.command {
            if s.trim().is_empty() {
                return Err(SpecError::new("command", "must not be empty"));
            }
        }
        let image = self.image.as_deref().or(d.image.as_deref());
        let containerizer = self.containerizer.unwrap_or(d.containerizer);
        match image {
            None if containerizer == Containerizer::None => {}
            None => {
                return Err(SpecError::new(
                    "image",
                    "no image given and no default: set `image` or [mesos] docker_image_slave",
                ))
            }
            Some(i) if i.trim().is_empty() || i.chars().any(char::is_whitespace) => {
                return Err(SpecError::new(
                    "image",
                    format!("`{i}` is not an image reference"),
                ))
            }
            _ => {}
        }
        let check = |field: &str, v: Option<f64>, default: f64, max: Option<f64>, unit: &str| {
            let v = v.unwrap_or(default);
            if !v.is_finite() || v <= 0.0 {
                return Err(SpecError::new(
                    field,
                    format!("must be a positive number, got {v}"),
                ));
            }
            let min = if field == "cpus" {
                MIN_CPUS
            } else {
                MIN_MEM_MB
            };
            if v < min {
                return Err(SpecError::new(
                    field,
                    format!(
                        "{v}{unit} is less than the smallest container ({min}{unit}, the Mesos \
                         Docker containerizer's minimum): ask for at least that"
                    ),
                ));
            }
            if let Some(max) = max {
                if v > max {
                    return Err(SpecError::new(
                        field,
                        format!("{v}{unit} is more than this machine has ({max}{unit})"),
                    ));
                }
            }
            Ok(())
        };
        check("cpus", self.cpus, d.cpus, d.max_cpus, "")?;
        check("mem", self.mem, d.mem, d.max_mem, " MB")?;
        if let Some(disk) = self.disk {
            if !disk.is_finite() || disk < 0.0 {
                return Err(SpecError::new(
                    "disk",
                    format!("must be zero or positive, got {disk}"),
                ));
            }
        }
        if let Some(g) = self.kill_grace_period {
            if !g.is_finite() || !(0.0..=MAX_KILL_GRACE_SECS).contains(&g) {
                return Err(SpecError::new(
                    "kill_grace_period",
                    format!("must be 0 to {MAX_KILL_GRACE_SECS} seconds"),
                ));
            }
        }
        for (i, p) in self.ports.iter().enumerate() {
            if p.container_port == 0 || p.container_port > 65535 {
                return Err(SpecError::new(
                    format!("ports[{i}].container_port"),
                    "must be 1-65535",
                ));
            }
            if matches!(p.host_port, Some(h) if h == 0 || h > 65535) {
                return Err(SpecError::new(
                    format!("ports[{i}].host_port"),
                    "must be 1-65535",
                ));
            }
            if !matches!(p.protocol.as_str(), "tcp" | "udp") {
                return Err(SpecError::new(
                    format!("ports[{i}].protocol"),
                    "must be tcp or udp",
                ));
            }
        }
        for (i, v) in self.volumes.iter().enumerate() {
            if !v.container_path.starts_with('/') {
                return Err(SpecError::new(
                    format!("volumes[{i}].container_path"),
                    "must be an absolute path",
                ));
            }
            if v.host_path.is_some() == v.name.is_some() {
                return Err(SpecError::new(
                    format!("volumes[{i}]"),
                    "give exactly one of host_path or name",
                ));
            }
            if let Some(h) = &v.host_path {
                let p = std::path::Path::new(h);
                if h.is_empty() || p.components().any(|c| c == std::path::Component::ParentDir) {
                    return Err(SpecError::new(
                        format!("volumes[{i}].host_path"),
                        "must be an absolute path, or a path inside the sandbox, without `..`",
                    ));
                }
            }
        }
        for (i, f) in self.files.iter().enumerate() {
            let p = std::path::Path::new(&f.path);
            if f.path.is_empty()
                || p.is_absolute()
                || p.components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(SpecError::new(
                    format!("files[{i}].path"),
                    "must be a relative path inside the sandbox, without `..`",
                ));
            }
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if crate::task::spec::parse_constraint(c).is_none() {
                return Err(SpecError::new(
                    format!("constraints[{i}]"),
                    format!("`{c}` is not `name:value` (or `a:x?:b:y`)"),
                ));
            }
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') {
                return Err(SpecError::new(
                    format!("env.{k}"),
                    "not a valid variable name",
                ));
            }
        }
        for k in self.secret_env.keys() {
            if !is_shell_name(k) {
                return Err(SpecError::new(
                    format!("secret_env.{k}"),
                    "not a valid variable name (letters, digits and _, not starting with a digit)",
                ));
            }
            if self.env.contains_key(k) {
                return Err(SpecError::new(
                    format!("secret_env.{k}"),
                    "also given in env: give it in one of them",
                ));
            }
        }
        for (i, p) in self.docker_parameters.iter().enumerate() {
            let k = p.key.trim_start_matches('-');
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(SpecError::new(
                    format!("docker_parameters[{i}].key"),
                    "must be a docker run option name such as shm-size",
                ));
            }
        }
        if !self.docker_parameters.is_empty() && containerizer != Containerizer::Docker {
            return Err(SpecError::new(
                "docker_parameters",
                "are for the Docker containerizer (containerizer: docker) only",
            ));
        }
        if self.containerizer == Some(Containerizer::None) && !d.uncontainerized {
            return Err(SpecError::new(
                "containerizer",
                "none (no container) is for Mesos agents; the local Docker backend runs every \
                 task in a container",
            ));
        }
        if !self.secret_env.is_empty() && self.command.is_none() {
            return Err(SpecError::new(
                "secret_env",
                "needs a command (the secrets are exported by a shell that then runs it)",
            ));
        }
        Ok(())
    }

    /// A copy fit to show: sandbox file contents and secret environment values replaced by
    /// `***`.
    pub fn redacted(&self) -> TaskSpec {
        self.with_secrets_as("***")
    }

    /// True when the spec carries secret material: sandbox file contents or secret environment
    /// values (not yet blanked).
    pub fn has_secrets(&self) -> bool {
        self.files.iter().any(|f| !f.content.is_empty())
            || self.secret_env.values().any(|v| !v.is_empty())
    }

    /// A copy to keep once the secrets have been delivered: file contents and secret
    /// environment values emptied (paths and names stay, for display).
    pub fn without_secrets(&self) -> TaskSpec {
        self.with_secrets_as("")
    }

    fn with_secrets_as(&self, placeholder: &str) -> TaskSpec {
        let mut s = self.clone();
        for f in &mut s.files {
            f.content = placeholder.to_string();
        }
        for v in s.secret_env.values_mut() {
            *v = placeholder.to_string();
        }
        s
    }
}

/// A POSIX shell variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_shell_name(k: &str) -> bool {
    let mut b = k.bytes();
    b.next()
        .is_some_and(|c| c == b'_' || c.is_ascii_alphabetic())
        && b.all(|c| c == b'_' || c.is_ascii_alphanumeric())
}

/// One alternative of an agent constraint: attribute (or `hostname`) `name` must equal `value`
/// (case-insensitive, as in the AVENTER provider).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrMatch {
    pub name: String,
    pub value: String,
}

/// Parses a constraint `name:value` or a fallback chain `a:x?:b:y` (the first alternative that
/// matches satisfies it). Returns the alternatives in order.
pub fn parse_constraint(s: &str) -> Option<Vec<AttrMatch>> {
    let mut out = Vec::new();
    for alt in s.split("?:").flat_map(|a| a.split('?')) {
        // `a:x?:b:y` splits to ["a:x", "b:y"]; `a:x?b:y` is accepted as well.
        let alt = alt.trim();
        if alt.is_empty() {
            continue;
        }
        let (n, v) = alt.split_once(':')?;
        if n.trim().is_empty() || v.trim().is_empty() {
            return None;
        }
        out.push(AttrMatch {
            name: n.trim().to_ascii_lowercase(),
            value: v.trim().to_ascii_lowercase(),
        });
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> SpecDefaults {
        SpecDefaults {
            image: Some("airflow-mesos/airflow:latest".into()),
            cpus: 1.0,
            mem: 256.0,
            disk: 0.0,
            max_mem: Some(4096.0),
            max_cpus: None,
            containerizer: Containerizer::Docker,
            uncontainerized: true,
        }
    }

    #[test]
    fn command_is_shell_string_or_argv() {
        let s: TaskSpec = serde_json::from_str(r#"{"command":"echo hi"}"#).unwrap();
        assert_eq!(s.command, Some(Command::Shell("echo hi".into())));
        let s: TaskSpec = serde_yaml_ng::from_str("command: [echo, hi]\n").unwrap();
        assert_eq!(
            s.command,
            Some(Command::Argv(vec!["echo".into(), "hi".into()]))
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let e = serde_json::from_str::<TaskSpec>(r#"{"comand":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("comand"), "{e}");
    }

    #[test]
    fn executor_config_is_folded_and_explicit_fields_win() {
        let mut s: TaskSpec = serde_json::from_value(serde_json::json!({
            "command": "true",
            "cpus": 2.0,
            "executor_config": {"cpus": 0.2, "mem_limit": "2g", "disk": 100,
                "image": "x/y:1", "container_type": "MESOS", "attributes": ["airflow:true"],
                "force_pull": "True", "network_mode": "BRIDGE", "environment": {"A": "1"}}
        }))
        .unwrap();
        s.normalize(&defaults()).unwrap();
        assert_eq!(s.cpus, Some(2.0));
        assert_eq!(s.mem, Some(2048.0));
        assert_eq!(s.disk, Some(100.0));
        assert_eq!(s.image.as_deref(), Some("x/y:1"));
        assert_eq!(s.containerizer, Some(Containerizer::Mesos));
        assert_eq!(s.constraints, vec!["airflow:true".to_string()]);
        assert_eq!(s.force_pull, Some(true));
        assert_eq!(s.network, Some(NetworkMode::Bridge));
        assert_eq!(s.env.get("A").map(String::as_str), Some("1"));
        let again = s.clone();
        s.normalize(&defaults()).unwrap();
        assert_eq!(s, again, "normalize is idempotent");
    }

    #[test]
    fn bad_specs_name_the_field() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (serde_json::json!({"command": "x", "cpus": -1}), "cpus"),
            (serde_json::json!({"command": "x", "mem": 100000}), "mem"),
            (serde_json::json!({"command": ""}), "command"),
            (
                serde_json::json!({"command": "x", "executor_config": {"mem_limit": "lots"}}),
                "executor_config.mem_limit",
            ),
            (
                serde_json::json!({"command": "x", "ports": [{"container_port": 0}]}),
                "ports[0].container_port",
            ),
            (
                serde_json::json!({"command": "x", "volumes": [{"container_path": "/a"}]}),
                "volumes[0]",
            ),
            (
                serde_json::json!({"command": "x", "files": [{"path": "../etc/x", "content": ""}]}),
                "files[0].path",
            ),
            (
                serde_json::json!({"command": "x", "constraints": ["nocolon"]}),
                "constraints[0]",
            ),
        ];
        for (v, field) in cases {
            let mut s: TaskSpec = serde_json::from_value(v.clone()).unwrap();
            let e = s.normalize(&defaults()).unwrap_err();
            assert_eq!(e.field, field, "{v}: {e}");
        }
        let mut no_image = TaskSpec::shell("x");
        let d = SpecDefaults {
            image: None,
            ..defaults()
        };
        assert_eq!(no_image.normalize(&d).unwrap_err().field, "image");
        // Without a container (Mesos's command executor on the agent) no image is needed...
        let mut bare = TaskSpec::shell("airflow tasks run x");
        bare.containerizer = Some(Containerizer::None);
        bare.normalize(&d).unwrap();
        let by_default = SpecDefaults {
            containerizer: Containerizer::None,
            ..d.clone()
        };
        TaskSpec::shell("x").normalize(&by_default).unwrap();
        // ...but the local Docker backend has nowhere to run it.
        let local = SpecDefaults {
            uncontainerized: false,
            ..d
        };
        assert_eq!(bare.normalize(&local).unwrap_err().field, "containerizer");
    }

    /// A NUL character, which no process and no PostgreSQL text column can take, is refused
    /// at submission in every text field, naming the field and never showing a secret; file
    /// contents may hold one.
    #[test]
    fn a_nul_character_is_refused_naming_the_field() {
        let cases = [
            (serde_json::json!({"command": "echo a\0b"}), "command"),
            (
                serde_json::json!({"command": ["echo", "a\0"]}),
                "command[1]",
            ),
            (
                serde_json::json!({"command": "x", "image": "busy\0box"}),
                "image",
            ),
            (serde_json::json!({"command": "x", "user": "\0"}), "user"),
            (serde_json::json!({"command": "x", "name": "n\0"}), "name"),
            (
                serde_json::json!({"command": "x", "external_key": "k\0"}),
                "external_key",
            ),
            (
                serde_json::json!({"command": "x", "env": {"A\0B": "x"}}),
                "env.A\\u{0}B",
            ),
            (
                serde_json::json!({"command": "x", "env": {"A": "x\0"}}),
                "env.A",
            ),
            (
                serde_json::json!({"command": "x", "labels": {"team": "d\0"}}),
                "labels.team",
            ),
            (
                serde_json::json!({"command": "x", "constraints": ["a:b\0"]}),
                "constraints[0]",
            ),
            (
                serde_json::json!({"command": "x", "volumes": [{"container_path": "/a\0", "name": "v"}]}),
                "volumes[0].container_path",
            ),
            (
                serde_json::json!({"command": "x", "volumes": [{"container_path": "/a", "host_path": "/tmp/\0"}]}),
                "volumes[0].host_path",
            ),
            (
                serde_json::json!({"command": "x", "files": [{"path": "a\0", "content": ""}]}),
                "files[0].path",
            ),
            (
                serde_json::json!({"command": "x", "docker_parameters": [{"key": "shm-size", "value": "1g\0"}]}),
                "docker_parameters[0].value",
            ),
            // What executor_config sets is checked once folded in.
            (
                serde_json::json!({"command": "x", "executor_config": {"env": {"B": "\0"}}}),
                "env.B",
            ),
        ];
        for (v, field) in cases {
            let mut s: TaskSpec = serde_json::from_value(v.clone()).unwrap();
            let e = s.normalize(&defaults()).unwrap_err();
            assert_eq!(e.field, field, "{v}: {e}");
            assert!(e.to_string().contains("NUL"), "{v}: {e}");
        }
        let mut s: TaskSpec = serde_json::from_value(
            serde_json::json!({"command": "x", "secret_env": {"TOKEN": "s3cr3t\0"}}),
        )
        .unwrap();
        let e = s.normalize(&defaults()).unwrap_err();
        assert_eq!(e.field, "secret_env.TOKEN");
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        let mut fine: TaskSpec = serde_json::from_value(
            serde_json::json!({"command": "x", "files": [{"path": "a", "content": "\0"}]}),
        )
        .unwrap();
        fine.normalize(&defaults()).unwrap();
    }

    #[test]
    fn secret_env_is_checked_and_never_shown() {
        let mut s = TaskSpec::shell("run");
        s.secret_env.insert("DB_PASSWORD".into(), "hunter2".into());
        s.normalize(&defaults()).unwrap();
        assert!(s.has_secrets());
        let shown = serde_json::to_string(&s.redacted()).unwrap();
        assert!(
            !shown.contains("hunter2") && shown.contains("DB_PASSWORD"),
            "{shown}"
        );
        assert!(!s.without_secrets().has_secrets());
        for (name, field) in [
            ("1X", "secret_env.1X"),
            ("A-B", "secret_env.A-B"),
            ("", "secret_env."),
        ] {
            let mut bad = TaskSpec::shell("run");
            bad.secret_env.insert(name.into(), "v".into());
            assert_eq!(bad.normalize(&defaults()).unwrap_err().field, field);
        }
        let mut both = s.clone();
        both.env.insert("DB_PASSWORD".into(), "x".into());
        assert_eq!(
            both.normalize(&defaults()).unwrap_err().field,
            "secret_env.DB_PASSWORD"
        );
        let mut no_command = s.clone();
        no_command.command = None;
        assert_eq!(
            no_command.normalize(&defaults()).unwrap_err().field,
            "secret_env"
        );
    }

    #[test]
    fn resources_below_the_smallest_container_are_refused_naming_the_field() {
        for (cpus, mem, field) in [
            (0.0001, 64.0, "cpus"),
            (0.5, 16.0, "mem"),
            (0.5, 0.0001, "mem"),
        ] {
            let mut s = TaskSpec::shell("x");
            s.cpus = Some(cpus);
            s.mem = Some(mem);
            let e = s.normalize(&defaults()).unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.message.contains("smallest container"), "{e}");
        }
        // executor_config too (Airflow users write mem_limit).
        let mut s: TaskSpec = serde_json::from_value(
            serde_json::json!({"command": "x", "executor_config": {"mem_limit": "16m"}}),
        )
        .unwrap();
        assert_eq!(s.normalize(&defaults()).unwrap_err().field, "mem");
        let mut ok = TaskSpec::shell("x");
        ok.cpus = Some(MIN_CPUS);
        ok.mem = Some(MIN_MEM_MB);
        ok.normalize(&defaults()).unwrap();
    }

    #[test]
    fn mem_sizes() {
        assert_eq!(parse_mem_mb("512m"), Some(512.0));
        assert_eq!(parse_mem_mb("2g"), Some(2048.0));
        assert_eq!(parse_mem_mb("2Gi"), Some(2048.0));
        assert_eq!(parse_mem_mb("300"), Some(300.0));
        assert_eq!(parse_mem_mb("1.5G"), Some(1536.0));
        assert_eq!(parse_mem_mb("x"), None);
        assert_eq!(parse_mem_mb("-1m"), None);
    }

    #[test]
    fn constraints_parse() {
        assert_eq!(parse_constraint("airflow:true").unwrap().len(), 1);
        let alts = parse_constraint("gpu:true?:cpu:true").unwrap();
        assert_eq!(
            alts[1],
            AttrMatch {
                name: "cpu".into(),
                value: "true".into()
            }
        );
        assert!(parse_constraint("x").is_none());
        assert!(parse_constraint(":y").is_none());
    }

    #[test]
    fn network_modes() {
        assert_eq!(NetworkMode::parse("HOST"), Some(NetworkMode::Host));
        assert_eq!(
            NetworkMode::parse("user:MyNet"),
            Some(NetworkMode::User("MyNet".into()))
        );
        assert_eq!(NetworkMode::parse("user:"), None);
        assert_eq!(NetworkMode::parse("weird"), None);
    }

    #[test]
    fn redacted_hides_file_content() {
        let mut s = TaskSpec::shell("x");
        s.files.push(SandboxFile {
            path: "w.json".into(),
            content: "jwt-secret".into(),
        });
        let shown = serde_json::to_string(&s.redacted()).unwrap();
        assert!(!shown.contains("jwt-secret"));
    }
}
