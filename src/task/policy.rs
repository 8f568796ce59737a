//! [`Policy`]: what the operator lets a task ask for — privileged containers, host paths, the
//! user it runs as, network modes, images, the largest cpus/mem/disk, docker parameters.
//!
//! The policy comes from the `[mesos]` block (`allow_privileged`, `allowed_host_paths`,
//! `allowed_users`, `allowed_network_modes`, `allowed_images`, `max_task_cpu`,
//! `max_task_memory`, `max_task_disk`, `allowed_docker_parameters`) and is checked three times:
//! at submission (the API answers 403 naming the field and the key that forbids it), when the
//! core prepares a queued task (also after a restart, so a stricter policy applies to tasks
//! stored before it), and by each backend on the launch it is about to make (the spec resolved
//! against the `[mesos]` defaults). What the operator configured for every task
//! (`docker_privileged`, its `docker_sock`, `docker_network_mode`, `docker_image_slave`,
//! `framework_user`) is always allowed: the policy limits what a task adds.
//!
//! Every check is a pure function of the spec; nothing here touches the file system (a host
//! path is compared component by component, `..` is refused outright).

use super::spec::{Containerizer, NetworkMode, TaskSpec};
use std::path::{Component, Path, PathBuf};

/// A request the policy refuses: the spec field and the `[mesos]` key that forbids it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message} (not allowed by [mesos] {key})")]
pub struct PolicyError {
    /// Dotted path of the field, e.g. `privileged`, `volumes[0].host_path`,
    /// `executor_config.network_mode`.
    pub field: String,
    /// The `[mesos]` key that would allow it.
    pub key: &'static str,
    pub message: String,
}

impl PolicyError {
    fn new(field: impl Into<String>, key: &'static str, message: impl Into<String>) -> Self {
        PolicyError {
            field: field.into(),
            key,
            message: message.into(),
        }
    }
}

/// One entry of `allowed_network_modes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkRule {
    /// Exactly this mode (`host`, `bridge`, `none`, `user:<name>`).
    Mode(NetworkMode),
    /// `user:*`: any user-defined network.
    AnyUser,
}

impl NetworkRule {
    /// Parses `host`, `bridge`, `none`, `user:<name>` or `user:*` (any case keyword).
    pub fn parse(s: &str) -> Option<NetworkRule> {
        let t = s.trim().to_ascii_lowercase();
        if t == "user:*" || t == "user=*" {
            return Some(NetworkRule::AnyUser);
        }
        NetworkMode::parse(s).map(NetworkRule::Mode)
    }

    fn allows(&self, m: &NetworkMode) -> bool {
        match self {
            NetworkRule::Mode(r) => r == m,
            NetworkRule::AnyUser => matches!(m, NetworkMode::User(_)),
        }
    }
}

/// Docker parameters a task may never pass, whatever `allowed_docker_parameters` says: each
/// would bypass another part of the policy (host paths, privileged, network, user) or the
/// container's isolation from the host.
pub const FORBIDDEN_DOCKER_PARAMETERS: &[&str] = &[
    "v",
    "volume",
    "mount",
    "volumes-from",
    "privileged",
    "net",
    "network",
    "u",
    "user",
    "pid",
    "ipc",
    "uts",
    "userns",
    "cgroupns",
    "device",
    "cap-add",
    "security-opt",
    "runtime",
];

/// The operator's policy. [`Policy::default`] is what an empty `[mesos]` block gives: nothing
/// privileged, no host paths, only `framework_user`, the default network plus `bridge` and
/// `none`, any image, no per-task maximum, no docker parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `allow_privileged` (or `docker_privileged`, which runs every task privileged anyway):
    /// a task may ask `privileged: true`, or to run without a container (`containerizer:
    /// none`, the command runs on the agent's host).
    pub allow_privileged: bool,
    /// `allowed_host_paths`: absolute path prefixes a volume's `host_path` may name (compared
    /// by whole components: `/srv/data` allows `/srv/data/x`, not `/srv/database`). Relative
    /// host paths (inside the task's sandbox) are always allowed.
    pub host_paths: Vec<PathBuf>,
    /// `allowed_users`: users a task may run as besides `framework_user`; `None` = any (`*`).
    pub users: Option<Vec<String>>,
    /// `allowed_network_modes`: modes a task may ask besides `docker_network_mode`.
    pub network_modes: Vec<NetworkRule>,
    /// `allowed_images`: registries or repository prefixes, normalised like Docker names them
    /// (`docker.io/library/busybox`); `None` = any image (`*`).
    pub images: Option<Vec<String>>,
    /// `max_task_cpu`, `max_task_memory` (MB), `max_task_disk` (MB).
    pub max_cpus: Option<f64>,
    pub max_mem: Option<f64>,
    pub max_disk: Option<f64>,
    /// `allowed_docker_parameters`: `docker run` option names a task's `docker_parameters` may
    /// use (never one of [`FORBIDDEN_DOCKER_PARAMETERS`]); `None` = any of the others (`*`).
    pub docker_parameters: Option<Vec<String>>,
    /// Always allowed: what the operator set for every task.
    pub default_user: String,
    pub default_network: NetworkMode,
    pub default_image: Option<String>,
    pub default_containerizer: Containerizer,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            allow_privileged: false,
            host_paths: Vec::new(),
            users: Some(Vec::new()),
            network_modes: vec![
                NetworkRule::Mode(NetworkMode::Bridge),
                NetworkRule::Mode(NetworkMode::None),
            ],
            images: None,
            max_cpus: None,
            max_mem: None,
            max_disk: None,
            docker_parameters: Some(Vec::new()),
            default_user: "root".into(),
            default_network: NetworkMode::Host,
            default_image: None,
            default_containerizer: Containerizer::Docker,
        }
    }
}

/// The default of `allowed_network_modes`.
pub const DEFAULT_NETWORK_MODES: &str = "bridge, none";

impl Policy {
    /// A policy that allows everything but what is never allowed (`..` in host paths, the
    /// docker parameters of [`FORBIDDEN_DOCKER_PARAMETERS`]): for tests and tools that check
    /// the rest of a spec.
    pub fn permissive() -> Policy {
        Policy {
            allow_privileged: true,
            host_paths: vec![PathBuf::from("/")],
            users: None,
            network_modes: vec![
                NetworkRule::Mode(NetworkMode::Host),
                NetworkRule::Mode(NetworkMode::Bridge),
                NetworkRule::Mode(NetworkMode::None),
                NetworkRule::AnyUser,
            ],
            images: None,
            docker_parameters: None,
            ..Policy::default()
        }
    }

    /// Checks what `spec` asks for. Fields a spec leaves out take the operator's defaults and
    /// pass. The first refusal is returned.
    pub fn check(&self, spec: &TaskSpec) -> Result<(), PolicyError> {
        let containerizer = spec.containerizer.unwrap_or(self.default_containerizer);
        if spec.privileged && !self.allow_privileged {
            return Err(PolicyError::new(
                "privileged",
                "allow_privileged",
                "privileged containers are not allowed",
            ));
        }
        if containerizer == Containerizer::None
            && self.default_containerizer != Containerizer::None
            && !self.allow_privileged
        {
            return Err(PolicyError::new(
                "containerizer",
                "allow_privileged",
                "none runs the command on the agent's host, outside any container",
            ));
        }
        for (i, v) in spec.volumes.iter().enumerate() {
            if let Some(h) = &v.host_path {
                self.check_host_path(&format!("volumes[{i}].host_path"), h)?;
            }
        }
        if let Some(u) = &spec.user {
            let listed = self.users.as_ref().is_none_or(|l| l.iter().any(|x| x == u));
            if u != &self.default_user && !listed {
                return Err(PolicyError::new(
                    "user",
                    "allowed_users",
                    format!(
                        "tasks run as `{}` ([mesos] framework_user); `{u}` is not allowed",
                        self.default_user
                    ),
                ));
            }
        }
        if let Some(n) = &spec.network {
            if n != &self.default_network && !self.network_modes.iter().any(|r| r.allows(n)) {
                return Err(PolicyError::new(
                    "network",
                    "allowed_network_modes",
                    format!("network mode `{}` is not allowed", network_name(n)),
                ));
            }
        }
        if let (Some(image), Some(allowed)) = (&spec.image, &self.images) {
            let name = image_name(image);
            let is_default = self
                .default_image
                .as_deref()
                .is_some_and(|d| image_name(d) == name);
            if !is_default && !allowed.iter().any(|a| prefix_matches(a, &name)) {
                return Err(PolicyError::new(
                    "image",
                    "allowed_images",
                    format!("image `{image}` ({name}) is from no allowed registry or prefix"),
                ));
            }
        }
        for (field, v, max, key, unit) in [
            ("cpus", spec.cpus, self.max_cpus, "max_task_cpu", ""),
            ("mem", spec.mem, self.max_mem, "max_task_memory", " MB"),
            ("disk", spec.disk, self.max_disk, "max_task_disk", " MB"),
        ] {
            if let (Some(v), Some(max)) = (v, max) {
                if v > max {
                    return Err(PolicyError::new(
                        field,
                        key,
                        format!("{v}{unit} is more than a task may ask for ({max}{unit})"),
                    ));
                }
            }
        }
        for (i, p) in spec.docker_parameters.iter().enumerate() {
            let field = format!("docker_parameters[{i}].key");
            let k = p.key.trim_start_matches('-');
            if FORBIDDEN_DOCKER_PARAMETERS.contains(&k) {
                return Err(PolicyError::new(
                    field,
                    "allowed_docker_parameters",
                    format!(
                        "`{k}` is never allowed as a docker parameter (it would bypass the \
                         policy or the container's isolation; use the spec's own fields)"
                    ),
                ));
            }
            let listed = self
                .docker_parameters
                .as_ref()
                .is_none_or(|l| l.iter().any(|x| x == k));
            if !listed {
                return Err(PolicyError::new(
                    field,
                    "allowed_docker_parameters",
                    format!("docker parameter `{k}` is not allowed"),
                ));
            }
        }
        Ok(())
    }

    fn check_host_path(&self, field: &str, h: &str) -> Result<(), PolicyError> {
        let p = Path::new(h);
        if p.components().any(|c| c == Component::ParentDir) {
            return Err(PolicyError::new(
                field,
                "allowed_host_paths",
                "`..` is not allowed in a host path",
            ));
        }
        if !p.is_absolute() {
            // Relative to the task's sandbox, and without `..` it stays inside it.
            return Ok(());
        }
        if self.host_paths.iter().any(|a| p.starts_with(a)) {
            return Ok(());
        }
        Err(PolicyError::new(
            field,
            "allowed_host_paths",
            format!("host path `{h}` is not under an allowed prefix"),
        ))
    }

    /// Renames the field of a refusal that came from `executor_config` (the explicit field was
    /// not set in `explicit`, the spec as submitted) to `executor_config.<its key>`.
    pub fn attribute(&self, mut e: PolicyError, explicit: &TaskSpec) -> PolicyError {
        let Some(serde_json::Value::Object(ec)) = &explicit.executor_config else {
            return e;
        };
        let (set_explicitly, keys): (bool, &[&str]) = match e.field.as_str() {
            "privileged" => (explicit.privileged, &["privileged"]),
            "network" => (explicit.network.is_some(), &["network_mode", "network"]),
            "image" => (explicit.image.is_some(), &["image"]),
            "cpus" => (explicit.cpus.is_some(), &["cpus"]),
            "mem" => (explicit.mem.is_some(), &["mem_limit", "mem", "memory"]),
            "disk" => (explicit.disk.is_some(), &["disk"]),
            "containerizer" => (
                explicit.containerizer.is_some(),
                &["container_type", "containerizer"],
            ),
            _ => return e,
        };
        if !set_explicitly {
            if let Some(k) = keys
                .iter()
                .find(|k| ec.get(**k).is_some_and(|v| !v.is_null()))
            {
                e.field = format!("executor_config.{k}");
            }
        }
        e
    }
}

fn network_name(n: &NetworkMode) -> String {
    match n {
        NetworkMode::Host => "host".into(),
        NetworkMode::Bridge => "bridge".into(),
        NetworkMode::None => "none".into(),
        NetworkMode::User(u) => format!("user:{u}"),
    }
}

/// The full name of an image as Docker normalises it, without tag or digest:
/// `busybox:1` → `docker.io/library/busybox`, `am-test/x` → `docker.io/am-test/x`,
/// `Reg.Example.com:5000/a/b@sha256:…` → `reg.example.com:5000/a/b`.
pub fn image_name(reference: &str) -> String {
    let r = reference.trim();
    let r = r.split_once('@').map_or(r, |(n, _)| n);
    // A tag is a `:` after the last `/` (a `:` before it is a registry port).
    let r = match (r.rfind(':'), r.rfind('/')) {
        (Some(c), Some(s)) if c > s => &r[..c],
        (Some(c), None) => &r[..c],
        _ => r,
    };
    qualify(r)
}

/// Puts `docker.io/` (and `library/` for a one-word name) before a name whose first component
/// is not a registry host; lower-cases the registry.
fn qualify(name: &str) -> String {
    match name.split_once('/') {
        Some((first, rest)) if is_registry(first) => {
            format!("{}/{rest}", first.to_ascii_lowercase())
        }
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    }
}

fn is_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first.eq_ignore_ascii_case("localhost")
}

/// Normalises an `allowed_images` entry: a registry host (`reg.example.com:5000`) stays a
/// registry; a name without one is on Docker Hub (`am-test` → `docker.io/am-test`,
/// `library/busybox` → `docker.io/library/busybox`). A trailing `/` is dropped.
pub fn image_prefix(entry: &str) -> String {
    let e = entry.trim().trim_end_matches('/');
    let first = e.split('/').next().unwrap_or("");
    if is_registry(first) {
        match e.split_once('/') {
            Some((reg, rest)) => format!("{}/{rest}", reg.to_ascii_lowercase()),
            None => e.to_ascii_lowercase(),
        }
    } else {
        format!("docker.io/{e}")
    }
}

/// True when `name` is `prefix` or below it (by whole `/` components).
fn prefix_matches(prefix: &str, name: &str) -> bool {
    name == prefix
        || name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> TaskSpec {
        serde_json::from_value(json).unwrap()
    }

    fn refused(p: &Policy, json: serde_json::Value) -> PolicyError {
        p.check(&spec(json.clone()))
            .expect_err(&format!("refused: {json}"))
    }

    #[test]
    fn the_default_refuses_what_gives_the_host_away() {
        let p = Policy::default();
        let e = refused(&p, serde_json::json!({"command": "x", "privileged": true}));
        assert_eq!(
            (e.field.as_str(), e.key),
            ("privileged", "allow_privileged")
        );
        let e = refused(
            &p,
            serde_json::json!({"command": "x", "volumes": [{"container_path": "/h", "host_path": "/"}]}),
        );
        assert_eq!(
            (e.field.as_str(), e.key),
            ("volumes[0].host_path", "allowed_host_paths")
        );
        let e = refused(&p, serde_json::json!({"command": "x", "user": "postgres"}));
        assert_eq!((e.field.as_str(), e.key), ("user", "allowed_users"));
        let e = refused(
            &p,
            serde_json::json!({"command": "x", "network": {"user": "x"}}),
        );
        assert_eq!(
            (e.field.as_str(), e.key),
            ("network", "allowed_network_modes")
        );
        let e = refused(
            &p,
            serde_json::json!({"command": "x", "containerizer": "none"}),
        );
        assert_eq!(
            (e.field.as_str(), e.key),
            ("containerizer", "allow_privileged")
        );
        let e = refused(
            &p,
            serde_json::json!({"command": "x", "docker_parameters": [{"key": "shm-size", "value": "1g"}]}),
        );
        assert_eq!(
            (e.field.as_str(), e.key),
            ("docker_parameters[0].key", "allowed_docker_parameters")
        );
        // What the operator set for every task, and what stays in the container, passes.
        for ok in [
            serde_json::json!({"command": "x", "user": "root", "network": "host"}),
            serde_json::json!({"command": "x", "network": "bridge", "image": "any/thing:1"}),
            serde_json::json!({"command": "x", "volumes": [{"container_path": "/d", "host_path": "data/x"}]}),
            serde_json::json!({"command": "x", "volumes": [{"container_path": "/d", "name": "vol"}]}),
        ] {
            p.check(&spec(ok.clone()))
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn each_key_allows_what_it_lists() {
        let p = Policy {
            allow_privileged: true,
            host_paths: vec!["/srv/data".into()],
            users: Some(vec!["airflow".into()]),
            network_modes: vec![NetworkRule::parse("user:*").unwrap()],
            images: Some(vec![
                image_prefix("reg.example.com:5000"),
                image_prefix("am-test"),
            ]),
            max_cpus: Some(2.0),
            docker_parameters: Some(vec!["shm-size".into()]),
            default_image: Some("busybox:1".into()),
            ..Policy::default()
        };
        p.check(&spec(serde_json::json!({
            "command": "x", "privileged": true, "user": "airflow", "network": {"user": "n"},
            "image": "reg.example.com:5000/team/app:3", "cpus": 2,
            "volumes": [{"container_path": "/d", "host_path": "/srv/data/in", "mode": "ro"}],
            "docker_parameters": [{"key": "shm-size", "value": "1g"}]
        })))
        .unwrap();
        p.check(&spec(
            serde_json::json!({"command": "x", "image": "am-test/busybox"}),
        ))
        .unwrap();
        p.check(&spec(
            serde_json::json!({"command": "x", "image": "docker.io/library/busybox:2"}),
        ))
        .expect("the default image, however it is spelled");
        for (json, field, key) in [
            (
                serde_json::json!({"image": "reg.example.com:5000.evil.io/x"}),
                "image",
                "allowed_images",
            ),
            (
                serde_json::json!({"image": "am-testing/x"}),
                "image",
                "allowed_images",
            ),
            (
                serde_json::json!({"image": "evil.io/am-test/x"}),
                "image",
                "allowed_images",
            ),
            (serde_json::json!({"cpus": 2.5}), "cpus", "max_task_cpu"),
            (
                serde_json::json!({"volumes": [{"container_path": "/d", "host_path": "/srv/database"}]}),
                "volumes[0].host_path",
                "allowed_host_paths",
            ),
            (
                serde_json::json!({"volumes": [{"container_path": "/d", "host_path": "/srv/data/../../etc"}]}),
                "volumes[0].host_path",
                "allowed_host_paths",
            ),
            (
                serde_json::json!({"volumes": [{"container_path": "/d", "host_path": "x/../../.."}]}),
                "volumes[0].host_path",
                "allowed_host_paths",
            ),
            (
                serde_json::json!({"docker_parameters": [{"key": "--volume", "value": "/:/h"}]}),
                "docker_parameters[0].key",
                "allowed_docker_parameters",
            ),
        ] {
            let e = refused(&p, json.clone());
            assert_eq!((e.field.as_str(), e.key), (field, key), "{json}");
        }
    }

    #[test]
    fn image_names_are_normalised_like_docker() {
        assert_eq!(image_name("busybox"), "docker.io/library/busybox");
        assert_eq!(image_name("busybox:1.36"), "docker.io/library/busybox");
        assert_eq!(image_name("am-test/busybox:x"), "docker.io/am-test/busybox");
        assert_eq!(
            image_name("Reg.Example.com:5000/a/b:1@sha256:ab"),
            "reg.example.com:5000/a/b"
        );
        assert_eq!(image_name("localhost/x"), "localhost/x");
        assert_eq!(image_prefix("reg.example.com/"), "reg.example.com");
        assert_eq!(image_prefix("library/busybox"), "docker.io/library/busybox");
    }

    #[test]
    fn a_refusal_from_executor_config_names_its_key() {
        let p = Policy::default();
        let explicit = spec(serde_json::json!({
            "command": "x", "executor_config": {"network_mode": "USER:evil", "privileged": "true"}
        }));
        let mut folded = explicit.clone();
        folded.network = Some(NetworkMode::User("evil".into()));
        let e = p.attribute(p.check(&folded).unwrap_err(), &explicit);
        assert_eq!(e.field, "executor_config.network_mode");
        folded.privileged = true;
        let e = p.attribute(p.check(&folded).unwrap_err(), &explicit);
        assert_eq!(e.field, "executor_config.privileged");
        // Set explicitly: the field keeps its own name.
        let mut explicit = explicit;
        explicit.privileged = true;
        let e = p.attribute(p.check(&explicit).unwrap_err(), &explicit);
        assert_eq!(e.field, "privileged");
    }
}
