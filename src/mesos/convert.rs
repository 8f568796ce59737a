//! The one place where Mesos wire types meet domain types.
//!
//! Inbound: a protobuf [`Event`](scheduler::Event) becomes a domain
//! [`Event`] (offers with fixed-point quantities and opaque
//! resource flavours, status updates). Outbound: a domain [`Action`] becomes the
//! [`Call`](scheduler::Call) that carries it out; a launch builds full `TaskInfo`s (command,
//! container, volumes, kill policy, labels, fetch URIs).
//!
//! A resource's [`Flavour`] key is the encoded `Resource` protobuf with its quantity (scalar,
//! ranges, set) cleared. A launch decodes the key and sets the chosen quantity, so the master
//! gets back exactly the resource it offered (role, reservations, allocation info, disk …),
//! flavour by flavour.
//!
//! Secrets: sandbox file contents never enter a `TaskInfo` (only one-time fetch URLs do); the
//! registry config for the Mesos containerizer goes only into `Image.Docker.config`.

use super::proto::scheduler::{self, call, event};
use super::proto::v1;
use crate::config::Secret;
use crate::scheduler::types::{
    from_milli, to_milli, Action, Attribute, BackendState, Event, Flavour, LaunchTask, Offer,
    Quantity, Resource, StatusUpdate, UpdateSource,
};
use crate::task::{Command, Containerizer, NetworkMode, VolumeMode};
use prost::Message;
use std::sync::Arc;

/// A wire value that cannot be turned into a domain value, or a launch that cannot be
/// expressed on the wire.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConvertError {
    #[error(
        "resource '{name}' of task {task}: its flavour key is not an encoded mesos.v1.Resource"
    )]
    BadFlavour { task: String, name: String },
    #[error("task {task}: command {command:?} cannot be split into arguments (unbalanced quotes)")]
    BadCommand { task: String, command: String },
    #[error("task {task}: no image to run")]
    NoImage { task: String },
    #[error("volume '{container_path}' of task {task}: needs a host_path or a name")]
    BadVolume {
        task: String,
        container_path: String,
    },
    #[error("{what}: unknown enum value {value}")]
    UnknownEnum { what: &'static str, value: i32 },
}

/// A file the agent fetches into the sandbox before the task starts (`CommandInfo.URI`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchUri {
    pub value: String,
    /// Unpack archives (tar, zip …) into the sandbox.
    pub extract: bool,
    pub executable: bool,
    /// Name (relative path) in the sandbox.
    pub output_file: Option<String>,
}

/// What the backend resolved for one task before it can be launched: fetch URIs (one-time URLs
/// of sandbox files, the registry `docker.tar.gz`), the registry config for the Mesos
/// containerizer, and extra `docker run` parameters.
#[derive(Clone, Default, PartialEq)]
pub struct LaunchContext {
    pub uris: Vec<FetchUri>,
    /// Docker config JSON (`{"auths":…}`) for `Image.Docker.config` (Mesos containerizer).
    pub docker_config: Option<Secret>,
    /// `--key=value` parameters for `docker run` (Docker containerizer), e.g. `group-add`.
    pub docker_parameters: Vec<(String, String)>,
    /// Shell lines run before the task's command (export the fetched secret environment,
    /// remove fetched credentials). When there are any, the command runs through `/bin/sh`.
    pub prelude: Vec<String>,
}

impl std::fmt::Debug for LaunchContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URIs are one-time tokens: show only how many there are.
        f.debug_struct("LaunchContext")
            .field("uris", &self.uris.len())
            .field("docker_config", &self.docker_config.as_ref().map(|_| "***"))
            .field("docker_parameters", &self.docker_parameters)
            .field("prelude", &self.prelude)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Inbound.

/// Turns a master event into a domain event. `Ok(None)` for events the domain does not use
/// (inverse offers, executor messages, operation updates, UNKNOWN).
pub fn event_from_proto(e: scheduler::Event) -> Result<Option<Event>, ConvertError> {
    use event::Type;
    let Ok(t) = Type::try_from(e.r#type.unwrap_or(0)) else {
        return Ok(None);
    };
    Ok(match t {
        Type::Subscribed => e.subscribed.map(|s| Event::Subscribed {
            framework_id: s.framework_id.value,
            heartbeat_interval_secs: s.heartbeat_interval_seconds,
            master: s.master_info.as_ref().map(master_host_port),
        }),
        Type::Offers => Some(Event::Offers(
            e.offers
                .map(|o| o.offers)
                .unwrap_or_default()
                .into_iter()
                .map(offer_from_proto)
                .collect(),
        )),
        Type::Rescind => e.rescind.map(|r| Event::Rescind(r.offer_id.value)),
        Type::Update => match e.update {
            Some(u) => Some(Event::Update(status_from_proto(u.status)?)),
            None => None,
        },
        Type::Failure => e.failure.map(|f| Event::Failure {
            agent_id: f.agent_id.map(|a| a.value),
            executor_id: f.executor_id.map(|x| x.value),
            status: f.status,
        }),
        Type::Error => Some(Event::Error(e.error.map(|x| x.message).unwrap_or_default())),
        Type::Heartbeat => Some(Event::Heartbeat),
        Type::Unknown
        | Type::InverseOffers
        | Type::RescindInverseOffer
        | Type::UpdateOperationStatus
        | Type::Message => None,
    })
}

/// `ip:port` to connect to a master: `address.ip`, else the deprecated `ip`, falling back to
/// the hostname only when no IP is known. The hostname a master advertises (`--hostname`, or
/// its own reverse lookup) need not resolve where the daemon runs — inside a container, across
/// networks — while its IP is the address it listens on.
pub fn master_connect_addr(m: &v1::MasterInfo) -> String {
    if let Some(a) = &m.address {
        if let Some(ip) = a.ip.as_deref().filter(|ip| !ip.is_empty()) {
            return format!("{}:{}", bracket_v6(ip), a.port);
        }
    }
    if m.ip != 0 {
        // `ip` is an IPv4 address in network byte order, read as a little-endian integer.
        let b = m.ip.to_le_bytes();
        return format!("{}.{}.{}.{}:{}", b[0], b[1], b[2], b[3], m.port);
    }
    master_host_port(m)
}

/// An IPv6 literal in brackets, as a URL authority needs it.
fn bracket_v6(ip: &str) -> String {
    if ip.contains(':') && !ip.starts_with('[') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// `host:port` of a master for display, from `address` (hostname, else ip) or the deprecated
/// fields.
pub fn master_host_port(m: &v1::MasterInfo) -> String {
    if let Some(a) = &m.address {
        if let Some(h) = a.hostname.as_deref().or(a.ip.as_deref()) {
            return format!("{h}:{}", a.port);
        }
    }
    let host = m.hostname.clone().unwrap_or_else(|| {
        // `ip` is an IPv4 address in network byte order, read as a little-endian integer.
        let b = m.ip.to_le_bytes();
        format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
    });
    format!("{host}:{}", m.port)
}

/// A domain offer from a protobuf offer.
pub fn offer_from_proto(o: v1::Offer) -> Offer {
    let agent_url = o.url.as_ref().and_then(|u| {
        let host = u.address.hostname.as_deref().or(u.address.ip.as_deref())?;
        Some(format!("{}://{}:{}", u.scheme, host, u.address.port))
    });
    Offer {
        id: o.id.value,
        agent_id: o.agent_id.value,
        hostname: o.hostname,
        agent_url,
        resources: o.resources.into_iter().map(resource_from_proto).collect(),
        attributes: o.attributes.iter().map(attribute_from_proto).collect(),
        allocation_role: o.allocation_info.and_then(|a| a.role),
    }
}

/// A domain resource: the quantity in fixed point, everything else in the flavour.
pub fn resource_from_proto(mut r: v1::Resource) -> Resource {
    let quantity = match v1::value::Type::try_from(r.r#type) {
        Ok(v1::value::Type::Ranges) => {
            let mut ranges: Vec<(u64, u64)> = r
                .ranges
                .take()
                .map(|rs| rs.range.into_iter().map(|x| (x.begin, x.end)).collect())
                .unwrap_or_default();
            ranges.sort_unstable();
            Quantity::Ranges(ranges)
        }
        Ok(v1::value::Type::Set) => Quantity::Set(r.set.take().map(|s| s.item).unwrap_or_default()),
        // SCALAR, and anything unexpected, as a scalar (0 when absent).
        _ => Quantity::Scalar(r.scalar.take().map(|s| to_milli(s.value)).unwrap_or(0)),
    };
    r.scalar = None;
    r.ranges = None;
    r.set = None;
    let reserved_role = reserved_role(&r);
    let whole = r.disk.as_ref().is_some_and(|d| {
        d.persistence.is_some()
            || d.source.as_ref().is_some_and(|s| {
                matches!(
                    v1::resource::disk_info::source::Type::try_from(s.r#type),
                    Ok(v1::resource::disk_info::source::Type::Mount
                        | v1::resource::disk_info::source::Type::Block
                        | v1::resource::disk_info::source::Type::Raw)
                )
            })
    });
    let revocable = r.revocable.is_some();
    Resource {
        name: r.name.clone(),
        quantity,
        flavour: Flavour {
            key: Arc::from(r.encode_to_vec()),
            reserved_role,
            whole,
            revocable,
        },
    }
}

/// The role a resource is reserved for: the innermost refined reservation, else the old-format
/// role when it is not `*`.
#[allow(deprecated)] // `Resource.role` is how pre-refinement offers name reservations.
fn reserved_role(r: &v1::Resource) -> Option<String> {
    if let Some(last) = r.reservations.last() {
        return last.role.clone();
    }
    match r.role.as_deref() {
        Some(role) if role != "*" => Some(role.to_string()),
        _ => None,
    }
}

fn fmt_scalar(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// An attribute rendered as text: scalars `1.5`, ranges `[1-2,5-6]`, sets `{a,b}`, text as is.
pub fn attribute_from_proto(a: &v1::Attribute) -> Attribute {
    let value = match v1::value::Type::try_from(a.r#type) {
        Ok(v1::value::Type::Scalar) => a
            .scalar
            .as_ref()
            .map(|s| fmt_scalar(s.value))
            .unwrap_or_default(),
        Ok(v1::value::Type::Ranges) => {
            let parts: Vec<String> = a
                .ranges
                .iter()
                .flat_map(|r| r.range.iter())
                .map(|r| format!("{}-{}", r.begin, r.end))
                .collect();
            format!("[{}]", parts.join(","))
        }
        Ok(v1::value::Type::Set) => {
            let items: Vec<&str> = a
                .set
                .iter()
                .flat_map(|s| s.item.iter().map(String::as_str))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        _ => a.text.as_ref().map(|t| t.value.clone()).unwrap_or_default(),
    };
    Attribute {
        name: a.name.clone(),
        value,
    }
}

/// Maps a Mesos task state to the domain.
pub fn state_from_proto(state: i32) -> Result<BackendState, ConvertError> {
    use v1::TaskState as T;
    let s = T::try_from(state).map_err(|_| ConvertError::UnknownEnum {
        what: "TaskStatus.state",
        value: state,
    })?;
    Ok(match s {
        T::TaskStaging => BackendState::Staging,
        T::TaskStarting => BackendState::Starting,
        T::TaskRunning => BackendState::Running,
        T::TaskKilling => BackendState::Killing,
        T::TaskFinished => BackendState::Finished,
        T::TaskFailed => BackendState::Failed,
        T::TaskKilled => BackendState::Killed,
        T::TaskError => BackendState::Error,
        T::TaskLost => BackendState::Lost,
        T::TaskDropped => BackendState::Dropped,
        T::TaskUnreachable => BackendState::Unreachable,
        T::TaskGone => BackendState::Gone,
        T::TaskGoneByOperator => BackendState::GoneByOperator,
        T::TaskUnknown => BackendState::Unknown,
    })
}

/// The exit code of the task's command, from the executor's final message: "Command exited
/// with status 3" (command executor) or "Container exited with status 137" (Docker executor).
/// Other messages that quote an exit status (a failed `docker pull` or fetch: "Failed to
/// launch container: Failed to run '…': exited with status 1") are not the command's and
/// give none.
fn exit_code_from_message(msg: &str) -> Option<i32> {
    let rest = [
        "Command exited with status ",
        "Container exited with status ",
    ]
    .iter()
    .find_map(|p| msg.strip_prefix(p))?;
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

/// A domain status update from a protobuf one.
pub fn status_from_proto(s: v1::TaskStatus) -> Result<StatusUpdate, ConvertError> {
    let state = state_from_proto(s.state)?;
    let reason = s.reason.map(|r| {
        v1::task_status::Reason::try_from(r)
            .map(|r| r.as_str_name().to_string())
            .unwrap_or_else(|_| format!("REASON_{r}"))
    });
    let source = s
        .source
        .and_then(|x| v1::task_status::Source::try_from(x).ok())
        .map(|x| match x {
            v1::task_status::Source::Master => UpdateSource::Master,
            v1::task_status::Source::Agent => UpdateSource::Agent,
            v1::task_status::Source::Executor => UpdateSource::Executor,
        });
    let exit_code = s.message.as_deref().and_then(exit_code_from_message);
    Ok(StatusUpdate {
        backend_task_id: s.task_id.value,
        state,
        message: s.message,
        reason,
        source,
        agent_id: s.agent_id.map(|a| a.value),
        uuid: s.uuid,
        timestamp: s.timestamp,
        exit_code,
    })
}

// ---------------------------------------------------------------------------------------
// Outbound.

fn base_call(framework_id: &str, t: call::Type) -> scheduler::Call {
    scheduler::Call {
        framework_id: Some(v1::FrameworkId {
            value: framework_id.to_string(),
        }),
        r#type: Some(t as i32),
        ..Default::default()
    }
}

fn filters(refuse_seconds: f64) -> Option<v1::Filters> {
    Some(v1::Filters {
        refuse_seconds: Some(refuse_seconds),
    })
}

fn offer_ids(ids: &[String]) -> Vec<v1::OfferId> {
    ids.iter()
        .map(|id| v1::OfferId { value: id.clone() })
        .collect()
}

fn duration(secs: f64) -> v1::DurationInfo {
    v1::DurationInfo {
        nanoseconds: (secs.max(0.0) * 1e9).round() as i64,
    }
}

/// The call that carries out `action` for framework `framework_id`. A `Launch` needs one
/// [`LaunchContext`] per task, in order (missing ones count as empty).
pub fn action_to_call(
    framework_id: &str,
    action: &Action,
    contexts: &[LaunchContext],
) -> Result<scheduler::Call, ConvertError> {
    Ok(match action {
        Action::Launch {
            offer_ids: ids,
            tasks,
            refuse_seconds,
            ..
        } => {
            let empty = LaunchContext::default();
            let task_infos = tasks
                .iter()
                .enumerate()
                .map(|(i, t)| task_info(t, contexts.get(i).unwrap_or(&empty)))
                .collect::<Result<Vec<_>, _>>()?;
            scheduler::Call {
                accept: Some(call::Accept {
                    offer_ids: offer_ids(ids),
                    operations: vec![v1::offer::Operation {
                        r#type: Some(v1::offer::operation::Type::Launch as i32),
                        launch: Some(v1::offer::operation::Launch { task_infos }),
                        ..Default::default()
                    }],
                    filters: filters(*refuse_seconds),
                }),
                ..base_call(framework_id, call::Type::Accept)
            }
        }
        // A DECLINE without filter; what makes it a void is that the backend reports its 202
        // (`Event::OffersVoided`).
        Action::VoidOffers { offer_ids: ids } => scheduler::Call {
            decline: Some(call::Decline {
                offer_ids: offer_ids(ids),
                filters: filters(0.0),
            }),
            ..base_call(framework_id, call::Type::Decline)
        },
        Action::Decline {
            offer_ids: ids,
            refuse_seconds,
        } => scheduler::Call {
            decline: Some(call::Decline {
                offer_ids: offer_ids(ids),
                filters: filters(*refuse_seconds),
            }),
            ..base_call(framework_id, call::Type::Decline)
        },
        Action::Kill {
            backend_task_id,
            agent_id,
            grace_secs,
        } => scheduler::Call {
            kill: Some(call::Kill {
                task_id: v1::TaskId {
                    value: backend_task_id.clone(),
                },
                agent_id: agent_id.as_ref().map(|a| v1::AgentId { value: a.clone() }),
                kill_policy: grace_secs.map(|g| v1::KillPolicy {
                    grace_period: Some(duration(g)),
                }),
            }),
            ..base_call(framework_id, call::Type::Kill)
        },
        Action::Acknowledge {
            agent_id,
            backend_task_id,
            uuid,
        } => scheduler::Call {
            acknowledge: Some(call::Acknowledge {
                agent_id: v1::AgentId {
                    value: agent_id.clone(),
                },
                task_id: v1::TaskId {
                    value: backend_task_id.clone(),
                },
                uuid: uuid.clone(),
            }),
            ..base_call(framework_id, call::Type::Acknowledge)
        },
        Action::Reconcile(tasks) => scheduler::Call {
            reconcile: Some(call::Reconcile {
                tasks: tasks
                    .iter()
                    .map(|(t, a)| call::reconcile::Task {
                        task_id: v1::TaskId { value: t.clone() },
                        agent_id: a.as_ref().map(|a| v1::AgentId { value: a.clone() }),
                    })
                    .collect(),
            }),
            ..base_call(framework_id, call::Type::Reconcile)
        },
        Action::Suppress(roles) => scheduler::Call {
            suppress: Some(call::Suppress {
                roles: roles.clone(),
            }),
            ..base_call(framework_id, call::Type::Suppress)
        },
        Action::Revive(roles) => scheduler::Call {
            revive: Some(call::Revive {
                roles: roles.clone(),
            }),
            ..base_call(framework_id, call::Type::Revive)
        },
    })
}

/// A protobuf resource from a domain one: the flavour key decoded, the quantity set.
pub fn resource_to_proto(task: &str, r: &Resource) -> Result<v1::Resource, ConvertError> {
    let mut p = v1::Resource::decode(&r.flavour.key[..]).map_err(|_| ConvertError::BadFlavour {
        task: task.to_string(),
        name: r.name.clone(),
    })?;
    if p.name != r.name {
        return Err(ConvertError::BadFlavour {
            task: task.to_string(),
            name: r.name.clone(),
        });
    }
    p.scalar = None;
    p.ranges = None;
    p.set = None;
    match &r.quantity {
        Quantity::Scalar(m) => {
            p.r#type = v1::value::Type::Scalar as i32;
            p.scalar = Some(v1::value::Scalar {
                value: from_milli(*m),
            });
        }
        Quantity::Ranges(rs) => {
            p.r#type = v1::value::Type::Ranges as i32;
            p.ranges = Some(v1::value::Ranges {
                range: rs
                    .iter()
                    .map(|&(begin, end)| v1::value::Range { begin, end })
                    .collect(),
            });
        }
        Quantity::Set(items) => {
            p.r#type = v1::value::Type::Set as i32;
            p.set = Some(v1::value::Set {
                item: items.clone(),
            });
        }
    }
    Ok(p)
}

/// The `CommandInfo` of a task (without URIs): shell string vs argv, environment, user.
///
/// An argv (`shell = false`) is written the way the task's containerizer reads it:
///
/// - **Docker containerizer**: the agent runs `docker run … IMAGE <value> <arguments…>`, so
///   `value` is `argv[0]` and `arguments` are the rest (the image's ENTRYPOINT, if any, runs
///   first and gets the whole argv, as with `docker run IMAGE argv…`).
/// - **Command executor** (unified containerizer, or no container): the executor calls
///   `execvp(value, arguments)`, so `value` is `argv[0]` and `arguments` is the whole argv,
///   `argv[0]` included (the image's ENTRYPOINT is not used).
///
/// A shell string is `shell = true` with the string as `value` (`/bin/sh -c value` under
/// every containerizer). No command at all leaves `value` unset with `shell = false`: the
/// image's own ENTRYPOINT/CMD run.
///
/// With a `prelude` (lines to run first), the command runs through the shell after them: a
/// shell string as written, an argv as `exec <argv>` (so the image's ENTRYPOINT is not used,
/// under any containerizer). A task without a command gets no prelude.
fn command_info(t: &LaunchTask, prelude: &[String]) -> Result<v1::CommandInfo, ConvertError> {
    let mut c = v1::CommandInfo::default();
    match &t.spec.command {
        Some(cmd) if !prelude.is_empty() && *cmd != Command::Argv(Vec::new()) => {
            let mut script = prelude.join("\n");
            script.push('\n');
            match cmd {
                Command::Shell(s) if t.shell => script.push_str(s),
                Command::Shell(s) => {
                    let argv = shlex::split(s).ok_or_else(|| ConvertError::BadCommand {
                        task: t.backend_task_id.clone(),
                        command: s.clone(),
                    })?;
                    script.push_str(&format!("exec {}", cmd_join(&argv)));
                }
                Command::Argv(v) => script.push_str(&format!("exec {}", cmd_join(v))),
            }
            c.shell = Some(true);
            c.value = Some(script);
        }
        None => {
            // The image's own entrypoint/cmd: shell must be false explicitly (the proto
            // default is true, which would need a value).
            c.shell = Some(false);
        }
        Some(cmd) if t.shell => {
            c.shell = Some(true);
            c.value = Some(match cmd {
                Command::Shell(s) => s.clone(),
                Command::Argv(v) => cmd_join(v),
            });
        }
        Some(cmd) => {
            let argv = match cmd {
                Command::Argv(v) => v.clone(),
                Command::Shell(s) => shlex::split(s).ok_or_else(|| ConvertError::BadCommand {
                    task: t.backend_task_id.clone(),
                    command: s.clone(),
                })?,
            };
            c.shell = Some(false);
            if let Some((first, rest)) = argv.split_first() {
                c.value = Some(first.clone());
                c.arguments = match t.containerizer {
                    Containerizer::Docker => rest.to_vec(),
                    Containerizer::Mesos | Containerizer::None => argv,
                };
            }
        }
    }
    if !t.spec.env.is_empty() {
        c.environment = Some(v1::Environment {
            variables: t
                .spec
                .env
                .iter()
                .map(|(k, v)| v1::environment::Variable {
                    name: k.clone(),
                    r#type: Some(v1::environment::variable::Type::Value as i32),
                    value: Some(v.clone()),
                    secret: None,
                })
                .collect(),
        });
    }
    c.user = t.spec.user.clone();
    Ok(c)
}

fn cmd_join(v: &[String]) -> String {
    shlex::try_join(v.iter().map(String::as_str)).unwrap_or_else(|_| v.join(" "))
}

fn volumes(t: &LaunchTask) -> Result<Vec<v1::Volume>, ConvertError> {
    t.spec
        .volumes
        .iter()
        .map(|v| {
            let mode = match v.mode {
                VolumeMode::Rw => v1::volume::Mode::Rw,
                VolumeMode::Ro => v1::volume::Mode::Ro,
            } as i32;
            if let Some(host) = &v.host_path {
                Ok(v1::Volume {
                    mode,
                    container_path: v.container_path.clone(),
                    host_path: Some(host.clone()),
                    ..Default::default()
                })
            } else if let Some(name) = &v.name {
                Ok(v1::Volume {
                    mode,
                    container_path: v.container_path.clone(),
                    source: Some(v1::volume::Source {
                        r#type: Some(v1::volume::source::Type::DockerVolume as i32),
                        docker_volume: Some(v1::volume::source::DockerVolume {
                            driver: v.driver.clone(),
                            name: name.clone(),
                            driver_options: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            } else {
                Err(ConvertError::BadVolume {
                    task: t.backend_task_id.clone(),
                    container_path: v.container_path.clone(),
                })
            }
        })
        .collect()
}

/// The task's `ContainerInfo`; `None` for a task run without a container.
fn container_info(
    t: &LaunchTask,
    ctx: &LaunchContext,
) -> Result<Option<v1::ContainerInfo>, ConvertError> {
    if t.containerizer == Containerizer::None {
        return Ok(None);
    }
    if t.image.is_empty() {
        return Err(ConvertError::NoImage {
            task: t.backend_task_id.clone(),
        });
    }
    let volumes = volumes(t)?;
    let user_network = |port_mappings: Vec<v1::network_info::PortMapping>| match &t.network {
        NetworkMode::User(name) => vec![v1::NetworkInfo {
            name: Some(name.clone()),
            port_mappings,
            ..Default::default()
        }],
        _ => Vec::new(),
    };
    Ok(Some(match t.containerizer {
        Containerizer::None => unreachable!("returned above"),
        Containerizer::Docker => {
            use v1::container_info::docker_info::Network;
            let network = match &t.network {
                NetworkMode::Host => Network::Host,
                NetworkMode::Bridge => Network::Bridge,
                NetworkMode::None => Network::None,
                NetworkMode::User(_) => Network::User,
            };
            v1::ContainerInfo {
                r#type: v1::container_info::Type::Docker as i32,
                volumes,
                docker: Some(v1::container_info::DockerInfo {
                    image: t.image.clone(),
                    network: Some(network as i32),
                    // Docker allows port mappings only on bridge and user networks; on the
                    // host network the container uses the offered host ports directly.
                    port_mappings: t
                        .port_mappings
                        .iter()
                        .filter(|_| matches!(t.network, NetworkMode::Bridge | NetworkMode::User(_)))
                        .map(|p| v1::container_info::docker_info::PortMapping {
                            host_port: p.host_port,
                            container_port: p.container_port,
                            protocol: Some(p.protocol.clone()),
                        })
                        .collect(),
                    privileged: t.spec.privileged.then_some(true),
                    parameters: ctx
                        .docker_parameters
                        .iter()
                        .map(|(k, v)| v1::Parameter {
                            key: k.clone(),
                            value: v.clone(),
                        })
                        .collect(),
                    force_pull_image: Some(t.force_pull),
                    ..Default::default()
                }),
                network_infos: user_network(Vec::new()),
                ..Default::default()
            }
        }
        Containerizer::Mesos => v1::ContainerInfo {
            r#type: v1::container_info::Type::Mesos as i32,
            volumes,
            mesos: Some(v1::container_info::MesosInfo {
                image: Some(v1::Image {
                    r#type: v1::image::Type::Docker as i32,
                    docker: Some(v1::image::Docker {
                        name: t.image.clone(),
                        config: ctx.docker_config.as_ref().map(|c| v1::Secret {
                            r#type: Some(v1::secret::Type::Value as i32),
                            reference: None,
                            value: Some(v1::secret::Value {
                                data: c.expose().as_bytes().to_vec(),
                            }),
                        }),
                        ..Default::default()
                    }),
                    cached: Some(!t.force_pull),
                    appc: None,
                }),
            }),
            network_infos: user_network(
                t.port_mappings
                    .iter()
                    .map(|p| v1::network_info::PortMapping {
                        host_port: p.host_port,
                        container_port: p.container_port,
                        protocol: Some(p.protocol.clone()),
                    })
                    .collect(),
            ),
            ..Default::default()
        },
    }))
}

/// The full `TaskInfo` of one task.
pub fn task_info(t: &LaunchTask, ctx: &LaunchContext) -> Result<v1::TaskInfo, ConvertError> {
    let resources = t
        .resources
        .iter()
        .map(|r| resource_to_proto(&t.backend_task_id, r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut command = command_info(t, &ctx.prelude)?;
    command.uris = ctx
        .uris
        .iter()
        .map(|u| v1::command_info::Uri {
            value: u.value.clone(),
            executable: u.executable.then_some(true),
            extract: Some(u.extract),
            cache: None,
            output_file: u.output_file.clone(),
        })
        .collect();
    Ok(v1::TaskInfo {
        name: t.name.clone(),
        task_id: v1::TaskId {
            value: t.backend_task_id.clone(),
        },
        agent_id: v1::AgentId {
            value: t.agent_id.clone(),
        },
        resources,
        command: Some(command),
        container: container_info(t, ctx)?,
        kill_policy: Some(v1::KillPolicy {
            grace_period: Some(duration(t.kill_grace_secs)),
        }),
        labels: (!t.labels.is_empty()).then(|| v1::Labels {
            labels: t
                .labels
                .iter()
                .map(|(k, v)| v1::Label {
                    key: k.clone(),
                    value: Some(v.clone()),
                })
                .collect(),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
#[allow(deprecated)] // offers to non-refinement frameworks carry `Resource.role`.
mod tests {
    use super::*;
    use crate::scheduler::types::PortMapping;
    use crate::task::{TaskSpec, VolumeSpec};
    use std::collections::BTreeMap;

    fn scalar(name: &str, v: f64) -> v1::Resource {
        v1::Resource {
            name: name.into(),
            r#type: v1::value::Type::Scalar as i32,
            scalar: Some(v1::value::Scalar { value: v }),
            role: Some("*".into()),
            allocation_info: Some(v1::resource::AllocationInfo {
                role: Some("*".into()),
            }),
            ..Default::default()
        }
    }

    fn reserved(name: &str, v: f64, role: &str) -> v1::Resource {
        v1::Resource {
            reservations: vec![v1::resource::ReservationInfo {
                r#type: Some(v1::resource::reservation_info::Type::Dynamic as i32),
                role: Some(role.into()),
                principal: Some("p".into()),
                labels: None,
            }],
            role: None,
            allocation_info: Some(v1::resource::AllocationInfo {
                role: Some(role.into()),
            }),
            ..scalar(name, v)
        }
    }

    fn ports(ranges: &[(u64, u64)]) -> v1::Resource {
        v1::Resource {
            name: "ports".into(),
            r#type: v1::value::Type::Ranges as i32,
            ranges: Some(v1::value::Ranges {
                range: ranges
                    .iter()
                    .map(|&(begin, end)| v1::value::Range { begin, end })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    fn offer(resources: Vec<v1::Resource>) -> v1::Offer {
        v1::Offer {
            id: v1::OfferId { value: "O1".into() },
            framework_id: v1::FrameworkId { value: "F".into() },
            agent_id: v1::AgentId { value: "S1".into() },
            hostname: "agent1".into(),
            url: Some(v1::Url {
                scheme: "http".into(),
                address: v1::Address {
                    hostname: Some("agent1".into()),
                    ip: Some("10.0.0.1".into()),
                    port: 5051,
                },
                path: Some("/slave(1)".into()),
                ..Default::default()
            }),
            resources,
            attributes: vec![
                v1::Attribute {
                    name: "rack".into(),
                    r#type: v1::value::Type::Text as i32,
                    text: Some(v1::value::Text { value: "r1".into() }),
                    ..Default::default()
                },
                v1::Attribute {
                    name: "speed".into(),
                    r#type: v1::value::Type::Scalar as i32,
                    scalar: Some(v1::value::Scalar { value: 1.5 }),
                    ..Default::default()
                },
                v1::Attribute {
                    name: "zones".into(),
                    r#type: v1::value::Type::Set as i32,
                    set: Some(v1::value::Set {
                        item: vec!["a".into(), "b".into()],
                    }),
                    ..Default::default()
                },
                v1::Attribute {
                    name: "p".into(),
                    r#type: v1::value::Type::Ranges as i32,
                    ranges: Some(v1::value::Ranges {
                        range: vec![
                            v1::value::Range { begin: 1, end: 2 },
                            v1::value::Range { begin: 5, end: 6 },
                        ],
                    }),
                    ..Default::default()
                },
            ],
            allocation_info: Some(v1::resource::AllocationInfo {
                role: Some("*".into()),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn offer_resources_become_quantities_and_flavours() {
        let o = offer_from_proto(offer(vec![
            scalar("cpus", 2.0),
            reserved("cpus", 1.5, "eng"),
            scalar("mem", 2048.0),
            ports(&[(32000, 32100), (31000, 31010)]),
        ]));
        assert_eq!(o.id, "O1");
        assert_eq!(o.agent_id, "S1");
        assert_eq!(o.agent_url.as_deref(), Some("http://agent1:5051"));
        assert_eq!(o.allocation_role.as_deref(), Some("*"));
        assert_eq!(o.resources[0].quantity, Quantity::Scalar(2000));
        assert_eq!(o.resources[1].quantity, Quantity::Scalar(1500));
        assert_eq!(o.resources[2].quantity, Quantity::Scalar(2_048_000));
        assert_eq!(
            o.resources[3].quantity,
            Quantity::Ranges(vec![(31000, 31010), (32000, 32100)])
        );
        // Unreserved and reserved cpus are different flavours; reserved role is known.
        assert_ne!(o.resources[0].flavour, o.resources[1].flavour);
        assert_eq!(o.resources[0].flavour.reserved_role, None);
        assert_eq!(o.resources[1].flavour.reserved_role.as_deref(), Some("eng"));
        // The key carries no quantity: two offers of different sizes share a flavour.
        let other = offer_from_proto(offer(vec![scalar("cpus", 0.5)]));
        assert_eq!(other.resources[0].flavour, o.resources[0].flavour);
        let attrs: Vec<(String, String)> = o
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.value.clone()))
            .collect();
        assert_eq!(
            attrs,
            vec![
                ("rack".into(), "r1".into()),
                ("speed".into(), "1.5".into()),
                ("zones".into(), "{a,b}".into()),
                ("p".into(), "[1-2,5-6]".into()),
            ]
        );
    }

    #[test]
    fn mount_disks_and_persistent_volumes_are_whole_and_revocable_is_flagged() {
        let mut mount = scalar("disk", 100.0);
        mount.disk = Some(v1::resource::DiskInfo {
            source: Some(v1::resource::disk_info::Source {
                r#type: v1::resource::disk_info::source::Type::Mount as i32,
                mount: Some(v1::resource::disk_info::source::Mount {
                    root: Some("/mnt/d1".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut rev = scalar("cpus", 1.0);
        rev.revocable = Some(v1::resource::RevocableInfo {});
        let o = offer_from_proto(offer(vec![mount, rev, scalar("disk", 10.0)]));
        assert!(o.resources[0].flavour.whole);
        assert!(!o.resources[0].flavour.revocable);
        assert!(o.resources[1].flavour.revocable);
        assert!(!o.resources[2].flavour.whole);
    }

    fn launch_task(resources: Vec<Resource>) -> LaunchTask {
        LaunchTask {
            task_id: "t-1".into(),
            backend_task_id: "t-1.1".into(),
            attempt: 1,
            name: "my task".into(),
            agent_id: "S1".into(),
            resources,
            image: "registry.example.com/airflow:2".into(),
            containerizer: Containerizer::Docker,
            network: NetworkMode::Bridge,
            port_mappings: vec![PortMapping {
                host_port: 31005,
                container_port: 8080,
                protocol: "tcp".into(),
            }],
            force_pull: false,
            kill_grace_secs: 12.5,
            labels: BTreeMap::from([("airflow-mesos/task".to_string(), "t-1".to_string())]),
            shell: true,
            spec: TaskSpec {
                command: Some(Command::Shell("airflow tasks run x".into())),
                env: BTreeMap::from([("A".to_string(), "1".to_string())]),
                user: Some("nobody".into()),
                volumes: vec![
                    VolumeSpec {
                        container_path: "/data".into(),
                        host_path: Some("/srv/data".into()),
                        name: None,
                        driver: None,
                        mode: VolumeMode::Ro,
                    },
                    VolumeSpec {
                        container_path: "/cache".into(),
                        host_path: None,
                        name: Some("cache".into()),
                        driver: Some("local".into()),
                        mode: VolumeMode::Rw,
                    },
                ],
                ..TaskSpec::default()
            },
        }
    }

    /// Takes `amount` of each offered flavour, as the core does.
    fn take(o: &Offer, name: &str, idx: usize, q: Quantity) -> Resource {
        let r = o
            .resources
            .iter()
            .filter(|r| r.name == name)
            .nth(idx)
            .unwrap();
        Resource {
            name: r.name.clone(),
            quantity: q,
            flavour: r.flavour.clone(),
        }
    }

    #[test]
    fn launch_copies_resources_flavour_by_flavour_including_reservations() {
        let offered = [
            scalar("cpus", 2.0),
            reserved("cpus", 1.5, "eng"),
            scalar("mem", 2048.0),
            ports(&[(31000, 32000)]),
        ];
        let o = offer_from_proto(offer(offered.to_vec()));
        let t = launch_task(vec![
            take(&o, "cpus", 0, Quantity::Scalar(500)),
            take(&o, "cpus", 1, Quantity::Scalar(1000)),
            take(&o, "mem", 0, Quantity::Scalar(256_000)),
            take(&o, "ports", 0, Quantity::Ranges(vec![(31005, 31005)])),
        ]);
        let info = task_info(&t, &LaunchContext::default()).unwrap();
        assert_eq!(info.resources.len(), 4);
        // Same resource as offered, only the quantity differs.
        let mut want0 = offered[0].clone();
        want0.scalar = Some(v1::value::Scalar { value: 0.5 });
        assert_eq!(info.resources[0], want0);
        let mut want1 = offered[1].clone();
        want1.scalar = Some(v1::value::Scalar { value: 1.0 });
        assert_eq!(info.resources[1], want1);
        assert_eq!(
            info.resources[1].reservations[0].role.as_deref(),
            Some("eng")
        );
        assert_eq!(info.resources[2].scalar.as_ref().unwrap().value, 256.0);
        assert_eq!(
            info.resources[3].ranges.as_ref().unwrap().range,
            vec![v1::value::Range {
                begin: 31005,
                end: 31005
            }]
        );
        assert_eq!(info.task_id.value, "t-1.1");
        assert_eq!(info.agent_id.value, "S1");
        assert_eq!(info.name, "my task");
    }

    #[test]
    fn a_flavour_key_that_is_not_a_resource_is_refused() {
        let t = launch_task(vec![Resource {
            name: "cpus".into(),
            quantity: Quantity::Scalar(1000),
            flavour: Flavour::plain("\u{ff}garbage"),
        }]);
        let err = task_info(&t, &LaunchContext::default()).unwrap_err();
        assert!(matches!(err, ConvertError::BadFlavour { .. }), "{err}");
    }

    #[test]
    fn docker_containerizer_task_info() {
        let o = offer_from_proto(offer(vec![scalar("cpus", 1.0)]));
        let mut t = launch_task(vec![take(&o, "cpus", 0, Quantity::Scalar(1000))]);
        let ctx = LaunchContext {
            uris: vec![FetchUri {
                value: "http://d:1/v1/files/tok/docker.tar.gz".into(),
                extract: true,
                executable: false,
                output_file: None,
            }],
            docker_config: Some(Secret::new("{\"auths\":{}}")),
            docker_parameters: vec![("group-add".into(), "999".into())],
            prelude: Vec::new(),
        };
        let info = task_info(&t, &ctx).unwrap();
        let c = info.container.as_ref().unwrap();
        assert_eq!(c.r#type(), v1::container_info::Type::Docker);
        let d = c.docker.as_ref().unwrap();
        assert_eq!(d.image, "registry.example.com/airflow:2");
        assert_eq!(
            d.network(),
            v1::container_info::docker_info::Network::Bridge
        );
        assert_eq!(d.port_mappings.len(), 1);
        assert_eq!(d.port_mappings[0].host_port, 31005);
        assert_eq!(d.port_mappings[0].container_port, 8080);
        assert_eq!(d.privileged, None, "privileged only when asked for");
        assert_eq!(d.force_pull_image, Some(false));
        assert_eq!(d.parameters[0].key, "group-add");
        assert!(c.mesos.is_none());
        // Volumes: a read-only bind mount and a named docker volume.
        assert_eq!(c.volumes[0].mode(), v1::volume::Mode::Ro);
        assert_eq!(c.volumes[0].host_path.as_deref(), Some("/srv/data"));
        let dv = c.volumes[1]
            .source
            .as_ref()
            .unwrap()
            .docker_volume
            .as_ref()
            .unwrap();
        assert_eq!(
            (dv.name.as_str(), dv.driver.as_deref()),
            ("cache", Some("local"))
        );
        // Command, env, user, URIs.
        let cmd = info.command.as_ref().unwrap();
        assert_eq!(cmd.shell, Some(true));
        assert_eq!(cmd.value.as_deref(), Some("airflow tasks run x"));
        assert_eq!(cmd.user.as_deref(), Some("nobody"));
        let env = &cmd.environment.as_ref().unwrap().variables;
        assert_eq!(
            (env[0].name.as_str(), env[0].value.as_deref()),
            ("A", Some("1"))
        );
        assert_eq!(cmd.uris[0].extract, Some(true));
        // The docker config is not used by the Docker containerizer and appears nowhere.
        let bytes = info.encode_to_vec();
        assert!(!bytes.windows(7).any(|w| w == b"\"auths\""));
        // Kill policy and labels.
        assert_eq!(
            info.kill_policy.unwrap().grace_period.unwrap().nanoseconds,
            12_500_000_000
        );
        let labels = info.labels.unwrap().labels;
        assert_eq!(labels[0].key, "airflow-mesos/task");
        // Host network: no port mappings (Docker refuses them there).
        t.network = NetworkMode::Host;
        let info = task_info(&t, &ctx).unwrap();
        let d = info.container.unwrap().docker.unwrap();
        assert_eq!(d.network(), v1::container_info::docker_info::Network::Host);
        assert!(d.port_mappings.is_empty());
        // Privileged when asked for; user network.
        t.spec.privileged = true;
        t.network = NetworkMode::User("net1".into());
        let info = task_info(&t, &ctx).unwrap();
        let c = info.container.unwrap();
        assert_eq!(c.docker.as_ref().unwrap().privileged, Some(true));
        assert_eq!(
            c.docker.as_ref().unwrap().network(),
            v1::container_info::docker_info::Network::User
        );
        assert_eq!(c.network_infos[0].name.as_deref(), Some("net1"));
    }

    #[test]
    fn mesos_containerizer_task_info_carries_the_registry_config_as_a_value_secret() {
        let o = offer_from_proto(offer(vec![scalar("cpus", 1.0)]));
        let mut t = launch_task(vec![take(&o, "cpus", 0, Quantity::Scalar(1000))]);
        t.containerizer = Containerizer::Mesos;
        t.force_pull = true;
        let config = "{\"auths\":{\"registry.example.com\":{\"auth\":\"dTpw\"}}}";
        let ctx = LaunchContext {
            docker_config: Some(Secret::new(config)),
            ..Default::default()
        };
        let info = task_info(&t, &ctx).unwrap();
        let c = info.container.unwrap();
        assert_eq!(c.r#type(), v1::container_info::Type::Mesos);
        assert!(c.docker.is_none());
        let image = c.mesos.unwrap().image.unwrap();
        assert_eq!(image.r#type(), v1::image::Type::Docker);
        assert_eq!(image.cached, Some(false), "force_pull = not cached");
        let docker = image.docker.unwrap();
        assert_eq!(docker.name, "registry.example.com/airflow:2");
        let secret = docker.config.unwrap();
        assert_eq!(secret.r#type(), v1::secret::Type::Value);
        assert_eq!(secret.value.unwrap().data, config.as_bytes());
        // Never in env or labels.
        let cmd = info.command.unwrap();
        assert!(cmd.environment.unwrap().variables.iter().all(|v| !v
            .value
            .as_deref()
            .unwrap_or("")
            .contains("auths")));
        // Without credentials: no config, cached.
        t.force_pull = false;
        let info = task_info(&t, &LaunchContext::default()).unwrap();
        let image = info.container.unwrap().mesos.unwrap().image.unwrap();
        assert_eq!(image.cached, Some(true));
        assert!(image.docker.unwrap().config.is_none());
    }

    #[test]
    fn command_shell_argv_and_none() {
        let mut t = launch_task(vec![]);
        // argv without a shell under the Docker containerizer (`docker run IMAGE value
        // arguments...`): value = argv[0], arguments = the rest.
        t.shell = false;
        assert_eq!(t.containerizer, Containerizer::Docker);
        t.spec.command = Some(Command::Argv(vec![
            "airflow".into(),
            "tasks".into(),
            "a b".into(),
        ]));
        let c = command_info(&t, &[]).unwrap();
        assert_eq!(c.shell, Some(false));
        assert_eq!(c.value.as_deref(), Some("airflow"));
        assert_eq!(c.arguments, vec!["tasks", "a b"]);
        // The command executor (unified containerizer) calls execvp(value, arguments):
        // arguments carry argv[0] too.
        t.containerizer = Containerizer::Mesos;
        let c = command_info(&t, &[]).unwrap();
        assert_eq!(c.value.as_deref(), Some("airflow"));
        assert_eq!(c.arguments, vec!["airflow", "tasks", "a b"]);
        // A one-word argv: no arguments for Docker, the word itself for the executor.
        t.spec.command = Some(Command::Argv(vec!["true".into()]));
        assert_eq!(command_info(&t, &[]).unwrap().arguments, vec!["true"]);
        t.containerizer = Containerizer::Docker;
        assert!(command_info(&t, &[]).unwrap().arguments.is_empty());
        // A shell string with shell off is split like a shell would.
        t.spec.command = Some(Command::Shell("echo 'a b' c".into()));
        let c = command_info(&t, &[]).unwrap();
        assert_eq!(c.value.as_deref(), Some("echo"));
        assert_eq!(c.arguments, vec!["a b", "c"]);
        t.spec.command = Some(Command::Shell("echo 'unbalanced".into()));
        assert!(matches!(
            command_info(&t, &[]),
            Err(ConvertError::BadCommand { .. })
        ));
        // argv with the shell on: joined with quoting.
        t.shell = true;
        t.spec.command = Some(Command::Argv(vec!["echo".into(), "a b".into()]));
        let c = command_info(&t, &[]).unwrap();
        assert_eq!(c.shell, Some(true));
        assert_eq!(c.value.as_deref(), Some("echo 'a b'"));
        assert!(c.arguments.is_empty());
        // No command: the image's own entrypoint, shell explicitly false, no value.
        t.spec.command = None;
        let c = command_info(&t, &[]).unwrap();
        assert_eq!(c.shell, Some(false));
        assert_eq!(c.value, None);
        assert!(c.arguments.is_empty());
        // An empty argv is the same as no command.
        t.shell = false;
        t.spec.command = Some(Command::Argv(vec![]));
        let c = command_info(&t, &[]).unwrap();
        assert_eq!((c.shell, c.value), (Some(false), None));
    }

    #[test]
    fn no_container_and_a_prelude() {
        let o = offer_from_proto(offer(vec![scalar("cpus", 1.0)]));
        let mut t = launch_task(vec![take(&o, "cpus", 0, Quantity::Scalar(1000))]);
        // Without a container: no ContainerInfo, no image needed; the command executor's form.
        t.containerizer = Containerizer::None;
        t.image = String::new();
        t.shell = false;
        t.spec.command = Some(Command::Argv(vec!["airflow".into(), "version".into()]));
        let info = task_info(&t, &LaunchContext::default()).unwrap();
        assert!(info.container.is_none());
        let c = info.command.unwrap();
        assert_eq!(c.value.as_deref(), Some("airflow"));
        assert_eq!(c.arguments, vec!["airflow", "version"]);
        // A prelude runs first, through the shell; a shell string follows it as written, an
        // argv is exec'd.
        let prelude = vec!["first".to_string(), "second".to_string()];
        let c = command_info(&t, &prelude).unwrap();
        assert_eq!(c.shell, Some(true));
        assert_eq!(
            c.value.as_deref(),
            Some("first\nsecond\nexec airflow version")
        );
        assert!(c.arguments.is_empty());
        t.shell = true;
        t.spec.command = Some(Command::Shell("echo $X && exit 3".into()));
        let c = command_info(&t, &prelude).unwrap();
        assert_eq!(c.value.as_deref(), Some("first\nsecond\necho $X && exit 3"));
        // No command: the image's entrypoint; nothing can run before it.
        t.spec.command = None;
        let c = command_info(&t, &prelude).unwrap();
        assert_eq!((c.shell, c.value), (Some(false), None));
    }

    #[test]
    fn actions_become_calls() {
        let c = action_to_call(
            "F",
            &Action::Decline {
                offer_ids: vec!["O1".into(), "O2".into()],
                refuse_seconds: 30.0,
            },
            &[],
        )
        .unwrap();
        assert_eq!(c.r#type(), call::Type::Decline);
        assert_eq!(c.framework_id.as_ref().unwrap().value, "F");
        let d = c.decline.unwrap();
        assert_eq!(d.offer_ids.len(), 2);
        assert_eq!(d.filters.unwrap().refuse_seconds, Some(30.0));

        let c = action_to_call(
            "F",
            &Action::Kill {
                backend_task_id: "t.1".into(),
                agent_id: Some("S1".into()),
                grace_secs: Some(3.0),
            },
            &[],
        )
        .unwrap();
        let k = c.kill.unwrap();
        assert_eq!(k.task_id.value, "t.1");
        assert_eq!(k.agent_id.unwrap().value, "S1");
        assert_eq!(
            k.kill_policy.unwrap().grace_period.unwrap().nanoseconds,
            3_000_000_000
        );

        let c = action_to_call(
            "F",
            &Action::Acknowledge {
                agent_id: "S1".into(),
                backend_task_id: "t.1".into(),
                uuid: vec![7; 16],
            },
            &[],
        )
        .unwrap();
        assert_eq!(c.r#type(), call::Type::Acknowledge);
        assert_eq!(c.acknowledge.unwrap().uuid, vec![7; 16]);

        let c = action_to_call(
            "F",
            &Action::Reconcile(vec![
                ("t.1".into(), Some("S1".into())),
                ("t.2".into(), None),
            ]),
            &[],
        )
        .unwrap();
        let tasks = c.reconcile.unwrap().tasks;
        assert_eq!(tasks[1].task_id.value, "t.2");
        assert!(tasks[1].agent_id.is_none());
        // Implicit reconciliation: an empty RECONCILE (the sub-message must be present).
        let c = action_to_call("F", &Action::Reconcile(vec![]), &[]).unwrap();
        assert!(c.reconcile.unwrap().tasks.is_empty());

        let c = action_to_call("F", &Action::Suppress(vec!["r".into()]), &[]).unwrap();
        assert_eq!(
            (c.r#type(), c.suppress.unwrap().roles),
            (call::Type::Suppress, vec!["r".to_string()])
        );
        let c = action_to_call("F", &Action::Revive(vec![]), &[]).unwrap();
        assert_eq!(c.r#type(), call::Type::Revive);
        assert!(c.revive.unwrap().roles.is_empty());
    }

    #[test]
    fn launch_becomes_accept_with_one_launch_operation() {
        let o = offer_from_proto(offer(vec![scalar("cpus", 1.0)]));
        let t = launch_task(vec![take(&o, "cpus", 0, Quantity::Scalar(100))]);
        let action = Action::Launch {
            offer_ids: vec!["O1".into()],
            agent_id: "S1".into(),
            tasks: vec![t.clone(), t],
            refuse_seconds: 5.0,
        };
        let c = action_to_call("F", &action, &[]).unwrap();
        assert_eq!(c.r#type(), call::Type::Accept);
        let a = c.accept.unwrap();
        assert_eq!(a.offer_ids[0].value, "O1");
        assert_eq!(a.operations.len(), 1);
        assert_eq!(a.operations[0].r#type(), v1::offer::operation::Type::Launch);
        assert!(a.operations[0].id.is_none(), "no operation id on LAUNCH");
        assert_eq!(a.operations[0].launch.as_ref().unwrap().task_infos.len(), 2);
        assert_eq!(a.filters.unwrap().refuse_seconds, Some(5.0));
    }

    #[test]
    fn recorded_events_convert_to_domain_events() {
        use crate::mesos::json;
        use crate::mesos::recordio::RecordIoDecoder;
        use tokio_util::codec::Decoder;
        let Some(data) = crate::mesos::fixture("05-subscribe-json.response.recordio") else {
            return;
        };
        let mut d = RecordIoDecoder::default();
        let mut buf = bytes::BytesMut::from(&data[..]);
        let mut events = Vec::new();
        while let Some(r) = d.decode_eof(&mut buf).unwrap() {
            let e: scheduler::Event = json::decode(&r).unwrap();
            events.push(event_from_proto(e).unwrap().unwrap());
        }
        assert_eq!(
            events[0],
            Event::Subscribed {
                framework_id: "82b27ca6-d9d1-4eeb-afde-d3151f1e0606-0000".into(),
                heartbeat_interval_secs: Some(15.0),
                master: Some("127.0.0.1:5050".into()),
            }
        );
        assert_eq!(events[1], Event::Heartbeat);
        let Event::Offers(offers) = &events[2] else {
            panic!("{:?}", events[2])
        };
        assert_eq!(
            offers[0].agent_url.as_deref(),
            Some("http://127.0.0.1:5051")
        );
        let cpus = offers[0]
            .resources
            .iter()
            .find(|r| r.name == "cpus")
            .unwrap();
        assert_eq!(cpus.quantity, Quantity::Scalar(2000));
        let Event::Update(u) = &events[3] else {
            panic!("{:?}", events[3])
        };
        assert_eq!(u.state, BackendState::Starting);
        assert_eq!(u.source, Some(UpdateSource::Executor));
        assert_eq!(u.uuid.as_ref().map(Vec::len), Some(16));
        // The master's reconciliation answer carries no uuid.
        let recon = events
            .iter()
            .find_map(|e| match e {
                Event::Update(u) if u.reason.as_deref() == Some("REASON_RECONCILIATION") => Some(u),
                _ => None,
            })
            .unwrap();
        assert_eq!(recon.source, Some(UpdateSource::Master));
        assert!(recon.uuid.is_none());
    }

    #[test]
    fn status_exit_code_is_read_from_the_message() {
        assert_eq!(
            exit_code_from_message("Command exited with status 3"),
            Some(3)
        );
        assert_eq!(
            exit_code_from_message("Container exited with status 137 (killed)"),
            Some(137)
        );
        assert_eq!(
            exit_code_from_message("Command terminated with signal Killed"),
            None
        );
        // A failed pull (the Docker containerizer's text) quotes `docker pull`'s status, not
        // the task's: the command never ran.
        assert_eq!(
            exit_code_from_message(
                "Failed to launch container: Failed to run 'docker -H unix:///var/run/docker.sock \
                 pull reg:5000/a:1': exited with status 1; stderr='Error response from daemon: \
                 unauthorized'"
            ),
            None
        );
        let s = status_from_proto(v1::TaskStatus {
            task_id: v1::TaskId {
                value: "t.1".into(),
            },
            state: v1::TaskState::TaskFailed as i32,
            message: Some("Command exited with status 2".into()),
            reason: Some(v1::task_status::Reason::CommandExecutorFailed as i32),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.state, BackendState::Failed);
        assert_eq!(s.exit_code, Some(2));
        assert_eq!(s.reason.as_deref(), Some("REASON_COMMAND_EXECUTOR_FAILED"));
        let err = status_from_proto(v1::TaskStatus {
            state: 99,
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, ConvertError::UnknownEnum { value: 99, .. }));
    }

    #[test]
    fn every_mesos_state_maps_to_the_state_of_that_name() {
        for n in 0..=13 {
            let s = state_from_proto(n).unwrap();
            let wire = v1::TaskState::try_from(n).unwrap();
            assert_eq!(s.mesos_name(), wire.as_str_name());
        }
    }

    #[test]
    fn master_address_prefers_address_then_legacy_fields() {
        let mut m = v1::MasterInfo {
            id: "m".into(),
            ip: 16_777_343,
            port: 5050,
            ..Default::default()
        };
        assert_eq!(master_host_port(&m), "127.0.0.1:5050");
        m.address = Some(v1::Address {
            hostname: Some("master1".into()),
            ip: Some("10.0.0.2".into()),
            port: 5051,
        });
        assert_eq!(master_host_port(&m), "master1:5051");
    }
}
