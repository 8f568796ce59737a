//! The container a launch becomes, with the Mesos Docker containerizer's semantics (pure).

use super::*;
use crate::scheduler::types::LaunchTask;
use crate::task::{Command, NetworkMode, VolumeMode};
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions,
    MountVolumeOptionsDriverConfig, PortBinding,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

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
pub(super) fn docker_parameter(hc: &mut HostConfig, key: &str, value: &str) -> Result<(), String> {
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

pub(super) fn named_volume(
    name: &str,
    target: &str,
    driver: Option<&str>,
    read_only: bool,
) -> Mount {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::local::test_support::{cfg, task};
    use crate::scheduler::types::PortMapping;
    use crate::task::VolumeSpec;

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
    fn container_names_are_docker_safe() {
        assert_eq!(container_name("t-ab.1"), "airflow-mesos-t-ab.1");
        assert_eq!(container_name("a b/c"), "airflow-mesos-a_b_c");
    }
}
