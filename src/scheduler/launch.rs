//! The launch-spec builder: a task's spec resolved against the `[mesos]` defaults
//! ([`CoreConfig`]) and the resources taken from an offer, giving a [`LaunchTask`].
//!
//! What a spec leaves out comes from the config: image (`docker_image_slave`), containerizer,
//! network mode, `force_pull`, kill grace period, environment (overlaid by the spec's), default
//! volumes, privileged; the result is the resolved spec in [`LaunchTask::spec`], which the
//! backends turn into their own launch calls. Docker parameters (`group-add` from
//! `docker_user_group_id`) and registry credentials are per-backend and come from the
//! backend's own launch context, not from here. Labels name the task (`airflow-mesos.task-id`,
//! `airflow-mesos.attempt`, `airflow-mesos.external-key`) next to the user's labels; sandbox
//! file contents and other secrets never go into labels or the environment here.

use super::config::CoreConfig;
use super::matching::{Demand, Take};
use super::types::{from_milli, to_milli, LaunchTask, Offer, PortMapping};
use crate::task::spec::{parse_constraint, AttrMatch};
use crate::task::{attempt_task_id, Command, Containerizer, TaskSpec};
use std::collections::BTreeMap;

/// Label holding our task id.
pub const LABEL_TASK_ID: &str = "airflow-mesos.task-id";
/// Label holding the attempt number.
pub const LABEL_ATTEMPT: &str = "airflow-mesos.attempt";
/// Label holding the submitter's external key (e.g. Airflow's task-instance key).
pub const LABEL_EXTERNAL_KEY: &str = "airflow-mesos.external-key";

/// Why a spec cannot be launched at all (the task fails at once instead of staying queued).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrepareError {
    #[error("no image: the task names none and [mesos] docker_image_slave is not set")]
    NoImage,
    #[error("command `{0}` cannot be split into words (command_shell = false): unbalanced quotes")]
    Unsplittable(String),
    #[error("constraints[{index}]: `{text}` is not `name:value` (or `a:x?:b:y`)")]
    BadConstraint { index: usize, text: String },
    #[error("{field} must be a finite number of zero or more, got {value}")]
    BadQuantity { field: &'static str, value: f64 },
    /// The operator's policy forbids what the spec asks (it may have changed since the task
    /// was submitted).
    #[error(transparent)]
    Forbidden(#[from] crate::task::PolicyError),
}

/// What the core derives from a spec once, at submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub demand: Demand,
    /// The resolved command and whether it runs through a shell.
    pub command: Option<Command>,
    pub shell: bool,
}

fn milli(field: &'static str, v: f64) -> Result<i64, PrepareError> {
    if v.is_finite() && v >= 0.0 {
        Ok(to_milli(v))
    } else {
        Err(PrepareError::BadQuantity { field, value: v })
    }
}

/// Resolves the resource request, constraints and command of `spec`.
pub fn prepare(cfg: &CoreConfig, spec: &TaskSpec) -> Result<Prepared, PrepareError> {
    let containerizer = spec.containerizer.unwrap_or(cfg.containerizer);
    if spec.image.is_none() && cfg.default_image.is_none() && containerizer != Containerizer::None {
        return Err(PrepareError::NoImage);
    }
    cfg.policy.check(spec)?;
    let scalars = [
        milli("cpus", spec.cpus.unwrap_or(cfg.task_cpus))?,
        milli("mem", spec.mem.unwrap_or(cfg.task_mem))?,
        milli("disk", spec.disk.unwrap_or(cfg.task_disk))?,
    ];
    let mut fixed_ports: Vec<u64> = spec
        .ports
        .iter()
        .filter_map(|p| p.host_port.map(u64::from))
        .collect();
    fixed_ports.sort_unstable();
    fixed_ports.dedup();
    let dynamic_ports = spec.ports.iter().filter(|p| p.host_port.is_none()).count() as u32;
    let mut constraints: Vec<Vec<AttrMatch>> = cfg.constraints.clone();
    for (index, text) in spec.constraints.iter().enumerate() {
        let c = parse_constraint(text).ok_or_else(|| PrepareError::BadConstraint {
            index,
            text: text.clone(),
        })?;
        if !constraints.contains(&c) {
            constraints.push(c);
        }
    }
    let (command, shell) = match &spec.command {
        None => (None, false),
        Some(Command::Argv(v)) => (Some(Command::Argv(v.clone())), false),
        Some(Command::Shell(s)) if cfg.command_shell => (Some(Command::Shell(s.clone())), true),
        Some(Command::Shell(s)) => {
            let words = shlex::split(s).ok_or_else(|| PrepareError::Unsplittable(s.clone()))?;
            (Some(Command::Argv(words)), false)
        }
    };
    Ok(Prepared {
        demand: Demand {
            scalars,
            fixed_ports,
            dynamic_ports,
            constraints,
        },
        command,
        shell,
    })
}

/// Builds attempt `attempt` of task `task_id` on `offer` with the resources of `take`. The
/// returned [`LaunchTask::spec`] is the spec resolved against the defaults (see its doc).
pub fn build(
    cfg: &CoreConfig,
    task_id: &str,
    attempt: u32,
    spec: &TaskSpec,
    prepared: &Prepared,
    offer: &Offer,
    take: Take,
) -> LaunchTask {
    let mut dynamic = take.dynamic_ports.iter();
    let port_mappings = spec
        .ports
        .iter()
        .map(|p| PortMapping {
            host_port: match p.host_port {
                Some(h) => h,
                // `take` holds exactly one dynamic port per port without a host port.
                None => dynamic.next().map_or(0, |h| *h as u32),
            },
            container_port: p.container_port,
            protocol: p.protocol.clone(),
        })
        .collect();
    let mut labels = spec.labels.clone();
    labels.insert(LABEL_TASK_ID.to_string(), task_id.to_string());
    labels.insert(LABEL_ATTEMPT.to_string(), attempt.to_string());
    if let Some(k) = &spec.external_key {
        labels.insert(LABEL_EXTERNAL_KEY.to_string(), k.clone());
    }
    let spec = resolve_spec(cfg, spec, prepared);
    LaunchTask {
        task_id: task_id.to_string(),
        backend_task_id: attempt_task_id(task_id, attempt),
        attempt,
        name: spec.name.clone().unwrap_or_else(|| task_id.to_string()),
        agent_id: offer.agent_id.clone(),
        resources: take.resources,
        image: spec.image.clone().unwrap_or_default(),
        containerizer: spec.containerizer.unwrap_or(cfg.containerizer),
        network: spec.network.clone().unwrap_or_else(|| cfg.network.clone()),
        port_mappings,
        force_pull: spec.force_pull.unwrap_or(cfg.force_pull),
        kill_grace_secs: spec.kill_grace_period.unwrap_or(cfg.kill_grace_secs),
        labels,
        shell: prepared.shell,
        spec,
    }
}

/// The spec with every default filled in (what [`LaunchTask::spec`] holds). Its
/// `executor_config` is left out: it was folded into the other fields at submission.
pub fn resolve_spec(cfg: &CoreConfig, spec: &TaskSpec, prepared: &Prepared) -> TaskSpec {
    let mut env: BTreeMap<String, String> = cfg.environment.iter().cloned().collect();
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut volumes: Vec<_> = cfg
        .volumes
        .iter()
        .filter(|d| {
            !spec
                .volumes
                .iter()
                .any(|v| v.container_path == d.container_path)
        })
        .cloned()
        .collect();
    volumes.extend(spec.volumes.iter().cloned());
    TaskSpec {
        name: spec.name.clone(),
        command: prepared.command.clone(),
        image: spec.image.clone().or_else(|| cfg.default_image.clone()),
        cpus: Some(from_milli(prepared.demand.scalars[0])),
        mem: Some(from_milli(prepared.demand.scalars[1])),
        disk: Some(from_milli(prepared.demand.scalars[2])),
        ports: spec.ports.clone(),
        env,
        secret_env: spec.secret_env.clone(),
        volumes,
        network: Some(spec.network.clone().unwrap_or_else(|| cfg.network.clone())),
        force_pull: Some(spec.force_pull.unwrap_or(cfg.force_pull)),
        privileged: spec.privileged || cfg.privileged,
        constraints: spec.constraints.clone(),
        labels: spec.labels.clone(),
        kill_grace_period: Some(spec.kill_grace_period.unwrap_or(cfg.kill_grace_secs)),
        retries: Some(spec.retries.unwrap_or(cfg.launch_retries)),
        external_key: spec.external_key.clone(),
        containerizer: Some(spec.containerizer.unwrap_or(cfg.containerizer)),
        user: spec.user.clone(),
        files: spec.files.clone(),
        docker_parameters: spec.docker_parameters.clone(),
        // Folded into the fields above at submission; not needed to launch.
        executor_config: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::types::{Flavour, Quantity, Resource};
    use crate::task::{Containerizer, NetworkMode, PortSpec, VolumeMode, VolumeSpec};

    fn offer() -> Offer {
        Offer {
            id: "o1".into(),
            agent_id: "a1".into(),
            hostname: "h1".into(),
            agent_url: None,
            resources: vec![],
            attributes: vec![],
            allocation_role: None,
        }
    }

    fn cfg() -> CoreConfig {
        CoreConfig {
            default_image: Some("airflow:slave".into()),
            environment: vec![("A".into(), "cfg".into()), ("B".into(), "cfg".into())],
            volumes: vec![
                VolumeSpec {
                    container_path: "/dags".into(),
                    host_path: None,
                    name: Some("dags".into()),
                    driver: Some("local".into()),
                    mode: VolumeMode::Rw,
                },
                VolumeSpec {
                    container_path: "/logs".into(),
                    host_path: None,
                    name: Some("logs".into()),
                    driver: None,
                    mode: VolumeMode::Rw,
                },
            ],
            policy: crate::task::Policy::permissive(),
            ..CoreConfig::default()
        }
    }

    #[test]
    fn prepare_refuses_what_the_policy_forbids() {
        // A task stored before the policy got stricter (or forged into the store) is refused
        // when the core prepares it for launch, naming the field and the key.
        let c = CoreConfig {
            default_image: Some("airflow:slave".into()),
            ..CoreConfig::default()
        };
        let mut spec = TaskSpec::shell("id");
        spec.volumes.push(VolumeSpec {
            container_path: "/host".into(),
            host_path: Some("/".into()),
            name: None,
            driver: None,
            mode: VolumeMode::Rw,
        });
        let e = prepare(&c, &spec).unwrap_err();
        assert!(
            e.to_string()
                .contains("volumes[0].host_path: host path `/` is not under an allowed prefix (not allowed by [mesos] allowed_host_paths)"),
            "{e}"
        );
        let mut spec = TaskSpec::shell("id");
        spec.privileged = true;
        assert!(matches!(
            prepare(&c, &spec),
            Err(PrepareError::Forbidden(crate::task::PolicyError {
                key: "allow_privileged",
                ..
            }))
        ));
    }

    #[test]
    fn defaults_fill_what_the_spec_leaves_out() {
        let c = cfg();
        let mut spec = TaskSpec::shell("echo hi");
        spec.env.insert("B".into(), "spec".into());
        spec.labels.insert("team".into(), "data".into());
        spec.labels.insert(LABEL_TASK_ID.into(), "forged".into());
        spec.external_key = Some("dag.task.2024".into());
        spec.volumes.push(VolumeSpec {
            container_path: "/logs".into(),
            host_path: Some("/var/log/x".into()),
            name: None,
            driver: None,
            mode: VolumeMode::Ro,
        });
        spec.ports = vec![
            PortSpec {
                container_port: 8080,
                host_port: None,
                protocol: "tcp".into(),
            },
            PortSpec {
                container_port: 9090,
                host_port: Some(31500),
                protocol: "udp".into(),
            },
        ];
        let p = prepare(&c, &spec).unwrap();
        assert_eq!(p.demand.scalars, [1000, 256_000, 0]);
        assert_eq!(p.demand.fixed_ports, vec![31500]);
        assert_eq!(p.demand.dynamic_ports, 1);
        let take = Take {
            resources: vec![Resource {
                name: "cpus".into(),
                quantity: Quantity::Scalar(1000),
                flavour: Flavour::plain("c"),
            }],
            dynamic_ports: vec![31007],
        };
        let l = build(&c, "t-1", 2, &spec, &p, &offer(), take);
        assert_eq!(l.backend_task_id, "t-1.2");
        assert_eq!(l.name, "t-1");
        assert_eq!(l.image, "airflow:slave");
        assert_eq!(l.agent_id, "a1");
        assert_eq!(l.containerizer, Containerizer::Docker);
        assert_eq!(l.network, NetworkMode::Host);
        assert!(l.shell);
        assert_eq!(l.spec.command, Some(Command::Shell("echo hi".into())));
        assert_eq!(l.spec.env.get("A").unwrap(), "cfg");
        assert_eq!(l.spec.env.get("B").unwrap(), "spec");
        assert_eq!(l.labels.get(LABEL_TASK_ID).unwrap(), "t-1");
        assert_eq!(l.labels.get(LABEL_ATTEMPT).unwrap(), "2");
        assert_eq!(l.labels.get(LABEL_EXTERNAL_KEY).unwrap(), "dag.task.2024");
        assert_eq!(l.labels.get("team").unwrap(), "data");
        assert_eq!(l.spec.volumes.len(), 2);
        assert_eq!(l.spec.volumes[0].container_path, "/dags");
        assert_eq!(l.spec.volumes[1].host_path.as_deref(), Some("/var/log/x"));
        assert_eq!(l.spec.image.as_deref(), Some("airflow:slave"));
        assert_eq!(l.spec.cpus, Some(1.0));
        assert_eq!(l.spec.mem, Some(256.0));
        assert_eq!(
            l.port_mappings,
            vec![
                PortMapping {
                    host_port: 31007,
                    container_port: 8080,
                    protocol: "tcp".into()
                },
                PortMapping {
                    host_port: 31500,
                    container_port: 9090,
                    protocol: "udp".into()
                },
            ]
        );
        assert!(!l.spec.privileged);
        assert_eq!(l.kill_grace_secs, 30.0);
    }

    #[test]
    fn spec_values_win_over_defaults() {
        let c = cfg();
        let spec = TaskSpec {
            name: Some("my task".into()),
            image: Some("other:1".into()),
            command: Some(Command::Argv(vec!["airflow".into(), "tasks".into()])),
            containerizer: Some(Containerizer::Mesos),
            network: Some(NetworkMode::Bridge),
            force_pull: Some(true),
            kill_grace_period: Some(5.0),
            privileged: true,
            cpus: Some(0.25),
            mem: Some(64.0),
            disk: Some(10.0),
            ..TaskSpec::default()
        };
        let p = prepare(&c, &spec).unwrap();
        assert_eq!(p.demand.scalars, [250, 64_000, 10_000]);
        let take = Take {
            resources: vec![],
            dynamic_ports: vec![],
        };
        let l = build(&c, "t-9", 1, &spec, &p, &offer(), take);
        assert_eq!(l.name, "my task");
        assert_eq!(l.image, "other:1");
        assert!(!l.shell);
        assert_eq!(l.containerizer, Containerizer::Mesos);
        assert_eq!(l.network, NetworkMode::Bridge);
        assert!(l.force_pull);
        assert_eq!(l.kill_grace_secs, 5.0);
        assert!(l.spec.privileged);
    }

    #[test]
    fn command_shell_false_splits_string_commands() {
        let c = CoreConfig {
            command_shell: false,
            ..cfg()
        };
        let p = prepare(&c, &TaskSpec::shell("airflow run 'my dag' t1")).unwrap();
        assert!(!p.shell);
        assert_eq!(
            p.command,
            Some(Command::Argv(vec![
                "airflow".into(),
                "run".into(),
                "my dag".into(),
                "t1".into()
            ]))
        );
        assert!(matches!(
            prepare(&c, &TaskSpec::shell("echo 'unbalanced")),
            Err(PrepareError::Unsplittable(_))
        ));
    }

    #[test]
    fn unlaunchable_specs_are_refused() {
        let c = CoreConfig::default();
        assert_eq!(
            prepare(&c, &TaskSpec::shell("x")),
            Err(PrepareError::NoImage)
        );
        let mut s = TaskSpec::shell("x");
        s.image = Some("i".into());
        s.constraints = vec!["nocolon".into()];
        assert!(matches!(
            prepare(&c, &s),
            Err(PrepareError::BadConstraint { index: 0, .. })
        ));
        s.constraints.clear();
        s.cpus = Some(f64::NAN);
        assert!(matches!(
            prepare(&c, &s),
            Err(PrepareError::BadQuantity { field: "cpus", .. })
        ));
    }

    #[test]
    fn global_and_spec_constraints_combine() {
        let c = CoreConfig {
            constraints: vec![parse_constraint("airflow:true").unwrap()],
            ..cfg()
        };
        let mut s = TaskSpec::shell("x");
        s.constraints = vec!["gpu:true?:cpu:true".into(), "AIRFLOW:TRUE".into()];
        let p = prepare(&c, &s).unwrap();
        assert_eq!(p.demand.constraints.len(), 2, "duplicates are merged");
        assert_eq!(p.demand.constraints[1].len(), 2);
    }
}
