//! The fake master's state machine: frameworks, streams, agents, offers, tasks and their
//! status-update queues. Everything here runs under one mutex, is synchronous, and never
//! sleeps; time-based behaviour (update resends, decline filters, failover timeouts, scripted
//! delays) goes through a timer heap that the ticker task in `mod.rs` drains on the tokio clock,
//! so tests can use a paused clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use airflow_mesos::mesos::proto::scheduler::{call, event, Event};
use airflow_mesos::mesos::proto::v1 as pb;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::resources::{from_proto, ResourceSet};
use super::{AgentSpec, TaskScript, TaskStep};

use pb::task_status::{Reason, Source};
use pb::TaskState;

/// What the HTTP layer writes on a subscription stream.
#[derive(Debug)]
pub enum StreamMsg {
    /// An event, encoded by the stream in its content type.
    Event(Box<Event>),
    /// Raw bytes written as they are (hostile-stream tests).
    Raw(Bytes),
    /// End the body cleanly (terminating chunk), as after TEARDOWN or failover.
    Close,
    /// Abort the connection without the terminating chunk, as when a master dies.
    Abort,
}

/// Where this fake stands in a leader election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// Serves the scheduler API.
    Leader,
    /// Redirects to the leader at `host:port` with a protocol-relative `Location`.
    Standby(String),
    /// Answers 503.
    NoLeader,
}

#[derive(Debug)]
pub struct StreamHandle {
    pub id: String,
    pub tx: mpsc::UnboundedSender<StreamMsg>,
}

#[derive(Debug)]
pub struct Framework {
    pub id: String,
    pub info: pb::FrameworkInfo,
    pub stream: Option<StreamHandle>,
    pub tasks: HashMap<String, Task>,
    pub completed: VecDeque<Task>,
    pub suppressed: HashSet<String>,
    /// Decline filters per (agent index, role): one per refusal, the resources refused and
    /// when the filter expires. As the Mesos allocator's refused-offer filters, each one
    /// alone filters an offer that its resources contain: freed resources that make the
    /// agent's offer larger than any single refusal are offered again.
    pub filters: HashMap<(usize, String), Vec<(ResourceSet, Instant)>>,
    pub failover_gen: u64,
    pub registered_time: f64,
}

impl Framework {
    pub fn has_capability(&self, cap: pb::framework_info::capability::Type) -> bool {
        self.info
            .capabilities
            .iter()
            .any(|c| c.r#type == Some(cap as i32))
    }

    pub fn multi_role(&self) -> bool {
        self.has_capability(pb::framework_info::capability::Type::MultiRole)
    }

    pub fn partition_aware(&self) -> bool {
        self.has_capability(pb::framework_info::capability::Type::PartitionAware)
    }

    pub fn refinement(&self) -> bool {
        self.has_capability(pb::framework_info::capability::Type::ReservationRefinement)
    }

    #[allow(deprecated)]
    pub fn roles(&self) -> Vec<String> {
        if self.multi_role() {
            self.info.roles.clone()
        } else {
            vec![self.info.role.clone().unwrap_or_else(|| "*".to_string())]
        }
    }

    fn send(&self, event: Event) {
        if let Some(s) = &self.stream {
            let _ = s.tx.send(StreamMsg::Event(Box::new(event)));
        }
    }
}

#[derive(Debug, Clone)]
pub struct Task {
    pub info: pb::TaskInfo,
    pub agent: usize,
    pub role: Option<String>,
    pub resources: ResourceSet,
    pub state: i32,
    pub last_status: Option<pb::TaskStatus>,
    pub statuses: Vec<(i32, f64)>,
    /// Agent updates not yet acknowledged; the front one is in flight.
    pub pending: VecDeque<pb::TaskStatus>,
    /// Script steps left after a `Hold` or `Sleep`.
    pub remaining: Vec<TaskStep>,
    pub held: bool,
    pub script_gen: u64,
    pub terminal: bool,
    pub container_id: String,
}

#[derive(Debug)]
pub struct Agent {
    pub spec: AgentSpec,
    pub total: ResourceSet,
    pub used: ResourceSet,
    pub offered: ResourceSet,
    /// Marked unreachable: no offers, its tasks reported UNREACHABLE / LOST.
    pub unreachable: bool,
}

impl Agent {
    fn available(&self) -> ResourceSet {
        let mut a = self.total.clone();
        a.subtract(&self.used);
        a.subtract(&self.offered);
        a
    }
}

#[derive(Debug, Clone)]
pub struct OfferRec {
    pub framework: String,
    pub agent: usize,
    pub role: String,
    pub resources: ResourceSet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    Resend {
        fid: String,
        tid: String,
        uuid: Vec<u8>,
    },
    FilterExpired {
        agent: usize,
    },
    Failover {
        fid: String,
        gen: u64,
    },
    Resume {
        fid: String,
        tid: String,
        gen: u64,
    },
}

/// Counters for benchmarks and assertions (cheap, always on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub subscribes: u64,
    pub offers_sent: u64,
    pub tasks_launched: u64,
    pub agent_updates_sent: u64,
    pub updates_resent: u64,
    pub master_updates_sent: u64,
    pub acknowledged: u64,
    pub tasks_terminal: u64,
}

pub type ScriptFn = Arc<dyn Fn(&pb::TaskInfo) -> TaskScript + Send + Sync>;

pub struct State {
    pub master_info: pb::MasterInfo,
    pub heartbeat: Duration,
    pub update_retry: Duration,
    pub leader: Leadership,
    pub fail_next: Vec<(u16, String)>,
    pub credentials: Option<Vec<(String, String)>>,
    pub frameworks: HashMap<String, Framework>,
    pub removed: HashSet<String>,
    pub agents: Vec<Agent>,
    pub agent_index: HashMap<String, usize>,
    pub offers: HashMap<String, OfferRec>,
    pub next_framework: u64,
    pub next_offer: u64,
    pub next_agent: u64,
    pub scripts: HashMap<String, TaskScript>,
    pub default_script: TaskScript,
    pub script_fn: Option<ScriptFn>,
    pub timers: BinaryHeap<Reverse<(Instant, u64)>>,
    pub timer_data: HashMap<u64, Timer>,
    pub next_timer: u64,
    /// Set when a timer earlier than every other was scheduled: the ticker must re-arm.
    pub wake_ticker: bool,
    pub dirty_agents: HashSet<usize>,
    pub sandboxes: HashMap<String, (String, String)>,
    pub files: HashMap<String, (Bytes, Bytes)>,
    pub stats: Stats,
    /// Every task id ever placed on an agent (a launch the master accepted), for tests that
    /// check that no task ran twice.
    pub launched: std::collections::HashSet<String>,
    pub completed_keep: usize,
    /// When set, agents run the tasks they are given ([`super::exec`]) instead of scripts.
    pub exec: Option<super::exec::Executor>,
}

pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn is_terminal(state: i32) -> bool {
    matches!(
        TaskState::try_from(state),
        Ok(TaskState::TaskFinished
            | TaskState::TaskFailed
            | TaskState::TaskKilled
            | TaskState::TaskError
            | TaskState::TaskDropped
            | TaskState::TaskGone
            | TaskState::TaskGoneByOperator)
    ) || state == TaskState::TaskLost as i32
}

fn event_update(status: pb::TaskStatus) -> Event {
    Event {
        r#type: Some(event::Type::Update as i32),
        update: Some(event::Update { status }),
        ..Default::default()
    }
}

/// An `ERROR` event.
pub fn event_error(message: &str) -> Event {
    Event {
        r#type: Some(event::Type::Error as i32),
        error: Some(event::Error {
            message: message.to_string(),
        }),
        ..Default::default()
    }
}

/// A `HEARTBEAT` event.
pub fn event_heartbeat() -> Event {
    Event {
        r#type: Some(event::Type::Heartbeat as i32),
        ..Default::default()
    }
}

impl State {
    pub fn schedule(&mut self, at: Instant, timer: Timer) {
        if self.next_deadline().is_none_or(|first| at < first) {
            self.wake_ticker = true;
        }
        let id = self.next_timer;
        self.next_timer += 1;
        self.timers.push(Reverse((at, id)));
        self.timer_data.insert(id, timer);
    }

    /// Pops every timer due at `now`.
    pub fn due_timers(&mut self, now: Instant) -> Vec<Timer> {
        let mut out = Vec::new();
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(t) = self.timer_data.remove(&id) {
                out.push(t);
            }
        }
        out
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    pub fn fire(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::Resend { fid, tid, uuid } => {
                let retry = self.update_retry;
                let Some(fw) = self.frameworks.get(&fid) else {
                    return;
                };
                let Some(task) = fw.tasks.get(&tid) else {
                    return;
                };
                let Some(head) = task.pending.front() else {
                    return;
                };
                if head.uuid.as_deref() != Some(uuid.as_slice()) {
                    return;
                }
                let head = head.clone();
                if fw.stream.is_some() {
                    fw.send(event_update(head));
                    self.stats.updates_resent += 1;
                }
                self.schedule(now + retry, Timer::Resend { fid, tid, uuid });
            }
            Timer::FilterExpired { agent } => {
                self.dirty_agents.insert(agent);
                self.allocate(now);
            }
            Timer::Failover { fid, gen } => {
                let expired = self
                    .frameworks
                    .get(&fid)
                    .is_some_and(|f| f.failover_gen == gen && f.stream.is_none());
                if expired {
                    self.remove_framework(&fid, now);
                }
            }
            Timer::Resume { fid, tid, gen } => {
                let steps = {
                    let Some(task) = self
                        .frameworks
                        .get_mut(&fid)
                        .and_then(|f| f.tasks.get_mut(&tid))
                    else {
                        return;
                    };
                    if task.script_gen != gen || task.terminal {
                        return;
                    }
                    std::mem::take(&mut task.remaining)
                };
                self.run_script(&fid, &tid, steps, now);
                self.allocate(now);
            }
        }
    }

    pub fn add_agent(&mut self, mut spec: AgentSpec, default_port: u16, now: Instant) -> String {
        if spec.id.is_empty() {
            spec.id = format!("{}-S{}", self.master_info.id, self.next_agent);
        }
        self.next_agent += 1;
        if spec.port == 0 {
            spec.port = default_port;
        }
        let id = spec.id.clone();
        let idx = self.agents.len();
        self.agents.push(Agent {
            total: ResourceSet(spec.resources.clone()),
            used: ResourceSet::default(),
            offered: ResourceSet::default(),
            unreachable: false,
            spec,
        });
        self.agent_index.insert(id.clone(), idx);
        self.dirty_agents.insert(idx);
        self.allocate(now);
        id
    }

    // ----- subscription -------------------------------------------------------------------

    /// Handles a validated SUBSCRIBE; returns the stream to serve. `principal` is the
    /// authenticated principal, if any.
    #[allow(deprecated)]
    pub fn subscribe(
        &mut self,
        sub: &call::Subscribe,
        principal: Option<&str>,
        stream_id: String,
        now: Instant,
    ) -> mpsc::UnboundedReceiver<StreamMsg> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut info = sub.framework_info.clone();
        if info.principal.is_none() {
            info.principal = principal.map(str::to_string);
        }
        let refuse = |tx: &mpsc::UnboundedSender<StreamMsg>, msg: &str| {
            let _ = tx.send(StreamMsg::Event(Box::new(event_error(msg))));
            let _ = tx.send(StreamMsg::Close);
        };
        if let Some(id) = &info.id {
            if self.removed.contains(&id.value) {
                refuse(&tx, "Framework has been removed");
                return rx;
            }
        }
        let multi_role = info
            .capabilities
            .iter()
            .any(|c| c.r#type == Some(pb::framework_info::capability::Type::MultiRole as i32));
        if multi_role && info.role.is_some() {
            refuse(
                &tx,
                "'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable",
            );
            return rx;
        }
        if !multi_role && !info.roles.is_empty() {
            refuse(&tx, "'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable");
            return rx;
        }
        if let Some(bad) = info
            .roles
            .iter()
            .chain(info.role.iter())
            .find(|r| !valid_role(r))
        {
            refuse(&tx, &format!("Role '{bad}' is invalid"));
            return rx;
        }
        let roles: Vec<String> = if multi_role {
            info.roles.clone()
        } else {
            vec![info.role.clone().unwrap_or_else(|| "*".to_string())]
        };
        let stray: Vec<&String> = sub
            .suppressed_roles
            .iter()
            .filter(|r| !roles.contains(r))
            .collect();
        if !stray.is_empty() {
            refuse(
                &tx,
                &format!(
                    "Suppressed roles {{ {} }} are not contained in the set of roles",
                    stray
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            return rx;
        }

        let fid = match &info.id {
            Some(id) => id.value.clone(),
            None => {
                let id = format!("{}-{:04}", self.master_info.id, self.next_framework);
                self.next_framework += 1;
                id
            }
        };
        info.id = Some(pb::FrameworkId { value: fid.clone() });

        if let Some(existing) = self.frameworks.get(&fid) {
            if existing.info.principal != info.principal {
                refuse(&tx, "Changing framework's principal is not allowed.");
                return rx;
            }
        }
        self.stats.subscribes += 1;
        let registered_time = now_secs();
        let fw = self
            .frameworks
            .entry(fid.clone())
            .or_insert_with(|| Framework {
                id: fid.clone(),
                info: info.clone(),
                stream: None,
                tasks: HashMap::new(),
                completed: VecDeque::new(),
                suppressed: HashSet::new(),
                filters: HashMap::new(),
                failover_gen: 0,
                registered_time,
            });
        // `user` and `checkpoint` cannot change on failover; the rest is updated.
        let (user, checkpoint) = (fw.info.user.clone(), fw.info.checkpoint);
        fw.info = info;
        fw.info.user = user;
        fw.info.checkpoint = checkpoint;
        fw.suppressed = sub.suppressed_roles.iter().cloned().collect();
        fw.failover_gen += 1;
        if let Some(old) = fw.stream.take() {
            let _ = old.tx.send(StreamMsg::Event(Box::new(event_error(
                "Framework failed over",
            ))));
            let _ = old.tx.send(StreamMsg::Close);
        }
        fw.stream = Some(StreamHandle { id: stream_id, tx });
        let subscribed = Event {
            r#type: Some(event::Type::Subscribed as i32),
            subscribed: Some(event::Subscribed {
                framework_id: pb::FrameworkId { value: fid.clone() },
                heartbeat_interval_seconds: Some(self.heartbeat.as_secs_f64()),
                master_info: Some(self.master_info.clone()),
            }),
            ..Default::default()
        };
        fw.send(subscribed);
        fw.send(event_heartbeat());
        self.drop_offers_of(&fid);
        self.dirty_agents.extend(0..self.agents.len());
        self.allocate(now);
        rx
    }

    /// The stream `stream_id` of `fid` ended (client went away, or the fake dropped it).
    pub fn stream_closed(&mut self, fid: &str, stream_id: &str, now: Instant) {
        let Some(fw) = self.frameworks.get_mut(fid) else {
            return;
        };
        if fw.stream.as_ref().map(|s| s.id.as_str()) != Some(stream_id) {
            return;
        }
        fw.stream = None;
        fw.failover_gen += 1;
        let gen = fw.failover_gen;
        let timeout = fw.info.failover_timeout.unwrap_or(0.0);
        let timeout = if timeout.is_finite() && timeout > 0.0 {
            Duration::from_secs_f64(timeout.min(1e9))
        } else {
            Duration::ZERO
        };
        self.drop_offers_of(fid);
        self.schedule(
            now + timeout,
            Timer::Failover {
                fid: fid.to_string(),
                gen,
            },
        );
        self.allocate(now);
    }

    fn drop_offers_of(&mut self, fid: &str) {
        let ids: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.framework == fid)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Some(o) = self.offers.remove(&id) {
                self.agents[o.agent].offered.subtract(&o.resources);
                self.dirty_agents.insert(o.agent);
            }
        }
    }

    /// Removes a framework (TEARDOWN or failover timeout): its tasks are killed silently and
    /// its stream, if any, ends cleanly.
    pub fn remove_framework(&mut self, fid: &str, now: Instant) {
        self.drop_offers_of(fid);
        if let Some(fw) = self.frameworks.remove(fid) {
            for task in fw.tasks.values() {
                if !task.terminal {
                    self.agents[task.agent].used.subtract(&task.resources);
                    self.dirty_agents.insert(task.agent);
                }
            }
            if let Some(s) = fw.stream {
                let _ = s.tx.send(StreamMsg::Close);
            }
        }
        self.removed.insert(fid.to_string());
        self.allocate(now);
    }

    /// Sends `msg` to the current stream of every connected framework.
    pub fn broadcast(&self, msg: impl Fn() -> StreamMsg) {
        for fw in self.frameworks.values() {
            if let Some(s) = &fw.stream {
                let _ = s.tx.send(msg());
            }
        }
    }

    // ----- allocation ---------------------------------------------------------------------

    /// Offers the free resources of every dirty agent to connected, unsuppressed frameworks.
    pub fn allocate(&mut self, now: Instant) {
        if self.dirty_agents.is_empty() {
            return;
        }
        let mut agents: Vec<usize> = self.dirty_agents.drain().collect();
        agents.sort_unstable();
        let mut fids: Vec<String> = self
            .frameworks
            .values()
            .filter(|f| f.stream.is_some())
            .map(|f| f.id.clone())
            .collect();
        fids.sort();
        let mut batches: HashMap<String, Vec<pb::Offer>> = HashMap::new();
        for a in agents {
            if self.agents[a].unreachable {
                continue;
            }
            for fid in &fids {
                let fw = &self.frameworks[fid];
                let roles = fw.roles();
                let mut unreserved_taken = false;
                for role in roles {
                    if fw.suppressed.contains(&role) {
                        continue;
                    }
                    let available = self.agents[a].available();
                    let offerable = available.offerable_to(&role, !unreserved_taken);
                    if offerable.is_empty() {
                        continue;
                    }
                    if let Some(refusals) = fw.filters.get(&(a, role.clone())) {
                        if refusals
                            .iter()
                            .any(|(refused, until)| *until > now && refused.contains(&offerable))
                        {
                            continue;
                        }
                    }
                    unreserved_taken |= offerable.0.iter().any(|r| r.reserved_for.is_none());
                    let offer_id = format!("{}-O{}", self.master_info.id, self.next_offer);
                    self.next_offer += 1;
                    let agent = &self.agents[a];
                    let alloc_role = fw.multi_role().then_some(role.as_str());
                    let offer = pb::Offer {
                        id: pb::OfferId {
                            value: offer_id.clone(),
                        },
                        framework_id: pb::FrameworkId { value: fid.clone() },
                        agent_id: pb::AgentId {
                            value: agent.spec.id.clone(),
                        },
                        hostname: agent.spec.hostname.clone(),
                        url: Some(pb::Url {
                            scheme: "http".to_string(),
                            address: pb::Address {
                                hostname: Some(agent.spec.hostname.clone()),
                                ip: Some("127.0.0.1".to_string()),
                                port: i32::from(agent.spec.port),
                            },
                            path: Some("/slave(1)".to_string()),
                            ..Default::default()
                        }),
                        resources: offerable.to_proto(alloc_role, fw.refinement()),
                        attributes: agent.spec.attributes.clone(),
                        allocation_info: alloc_role.map(|r| pb::resource::AllocationInfo {
                            role: Some(r.to_string()),
                        }),
                        ..Default::default()
                    };
                    batches.entry(fid.clone()).or_default().push(offer);
                    self.agents[a].offered.add(&offerable);
                    self.offers.insert(
                        offer_id,
                        OfferRec {
                            framework: fid.clone(),
                            agent: a,
                            role: role.clone(),
                            resources: offerable,
                        },
                    );
                }
            }
        }
        for (fid, offers) in batches {
            self.stats.offers_sent += offers.len() as u64;
            self.frameworks[&fid].send(Event {
                r#type: Some(event::Type::Offers as i32),
                offers: Some(event::Offers { offers }),
                ..Default::default()
            });
        }
    }

    /// Rescinds every outstanding offer (RESCIND events) and re-offers after `refuse`.
    pub fn rescind_all(&mut self, now: Instant) {
        let ids: Vec<String> = self.offers.keys().cloned().collect();
        for id in ids {
            let Some(o) = self.offers.remove(&id) else {
                continue;
            };
            self.agents[o.agent].offered.subtract(&o.resources);
            if let Some(fw) = self.frameworks.get(&o.framework) {
                fw.send(Event {
                    r#type: Some(event::Type::Rescind as i32),
                    rescind: Some(event::Rescind {
                        offer_id: pb::OfferId { value: id },
                    }),
                    ..Default::default()
                });
            }
            self.dirty_agents.insert(o.agent);
        }
        self.allocate(now);
    }

    fn install_filter(
        &mut self,
        fid: &str,
        agent: usize,
        role: &str,
        resources: ResourceSet,
        filters: Option<&pb::Filters>,
        now: Instant,
    ) {
        let refuse = filters.and_then(|f| f.refuse_seconds).unwrap_or(5.0);
        let refuse = if !refuse.is_finite() || refuse < 0.0 {
            5.0
        } else {
            refuse.min(365.0 * 86400.0)
        };
        self.dirty_agents.insert(agent);
        if refuse == 0.0 || resources.is_empty() {
            return;
        }
        let until = now + Duration::from_secs_f64(refuse);
        if let Some(fw) = self.frameworks.get_mut(fid) {
            let refusals = fw.filters.entry((agent, role.to_string())).or_default();
            refusals.retain(|(_, t)| *t > now);
            refusals.push((resources, until));
        }
        self.schedule(until, Timer::FilterExpired { agent });
    }

    // ----- calls --------------------------------------------------------------------------

    pub fn decline(&mut self, fid: &str, d: &call::Decline, now: Instant) {
        for oid in &d.offer_ids {
            let owned = self
                .offers
                .get(&oid.value)
                .is_some_and(|o| o.framework == fid);
            if !owned {
                continue;
            }
            let o = self.offers.remove(&oid.value).expect("checked above");
            self.agents[o.agent].offered.subtract(&o.resources);
            self.install_filter(fid, o.agent, &o.role, o.resources, d.filters.as_ref(), now);
        }
        self.allocate(now);
    }

    fn master_status(
        &self,
        tid: &str,
        state: TaskState,
        reason: Reason,
        message: String,
        agent: Option<&str>,
    ) -> pb::TaskStatus {
        pb::TaskStatus {
            task_id: pb::TaskId {
                value: tid.to_string(),
            },
            state: state as i32,
            message: Some(message),
            source: Some(Source::Master as i32),
            reason: Some(reason as i32),
            agent_id: agent.map(|a| pb::AgentId {
                value: a.to_string(),
            }),
            timestamp: Some(now_secs()),
            ..Default::default()
        }
    }

    fn send_master_update(&mut self, fid: &str, status: pb::TaskStatus) {
        if let Some(fw) = self.frameworks.get(fid) {
            if fw.stream.is_some() {
                self.stats.master_updates_sent += 1;
            }
            fw.send(event_update(status));
        }
    }

    pub fn accept(&mut self, fid: &str, a: &call::Accept, now: Instant) {
        let launches: Vec<&pb::TaskInfo> = a
            .operations
            .iter()
            .filter(|op| op.r#type == Some(pb::offer::operation::Type::Launch as i32))
            .filter_map(|op| op.launch.as_ref())
            .flat_map(|l| l.task_infos.iter())
            .collect();
        // Validate the offers as a whole (§2.12).
        let mut error = None;
        let mut seen = HashSet::new();
        let mut agent = None;
        let mut role = None;
        if a.offer_ids.is_empty() {
            error = Some("No offers specified".to_string());
        }
        for oid in &a.offer_ids {
            if !seen.insert(oid.value.clone()) {
                error.get_or_insert(format!(
                    "Duplicate offer {} in the same ACCEPT call",
                    oid.value
                ));
                continue;
            }
            match self.offers.get(&oid.value) {
                None => {
                    error.get_or_insert(format!("Offer {} is no longer valid", oid.value));
                }
                Some(o) if o.framework != fid => {
                    error.get_or_insert(format!("Offer {} is not for framework {fid}", oid.value));
                }
                Some(o) => {
                    if agent.is_some_and(|x| x != o.agent) {
                        error.get_or_insert(
                            "Aggregated offers must belong to one single agent".to_string(),
                        );
                    }
                    if role.as_ref().is_some_and(|r: &String| r != &o.role) {
                        error.get_or_insert(
                            "Aggregated offers must be allocated to the same role".to_string(),
                        );
                    }
                    agent = Some(o.agent);
                    role = Some(o.role.clone());
                }
            }
        }
        // Valid offers named in the call are used up either way.
        let mut remaining = ResourceSet::default();
        for oid in &a.offer_ids {
            if self
                .offers
                .get(&oid.value)
                .is_some_and(|o| o.framework == fid)
            {
                let o = self.offers.remove(&oid.value).expect("checked");
                self.agents[o.agent].offered.subtract(&o.resources);
                self.dirty_agents.insert(o.agent);
                remaining.add(&o.resources);
            }
        }
        let pa = self
            .frameworks
            .get(fid)
            .is_some_and(Framework::partition_aware);
        if let Some(err) = error {
            let state = if pa {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            };
            for t in launches {
                let status = self.master_status(
                    &t.task_id.value,
                    state,
                    Reason::InvalidOffers,
                    format!("Task launched with invalid offers: {err}"),
                    None,
                );
                self.send_master_update(fid, status);
            }
            self.allocate(now);
            return;
        }
        let (agent, role) = (agent.expect("valid offers"), role.expect("valid offers"));
        let multi_role = self.frameworks.get(fid).is_some_and(Framework::multi_role);
        let alloc_role = multi_role.then_some(role.clone());
        let agent_id = self.agents[agent].spec.id.clone();
        for t in launches {
            let tid = t.task_id.value.clone();
            let problem = self.validate_task(fid, t, &agent_id, &remaining, alloc_role.as_deref());
            match problem {
                Err(message) => {
                    let status = self.master_status(
                        &tid,
                        TaskState::TaskError,
                        Reason::TaskInvalid,
                        message,
                        Some(&agent_id),
                    );
                    self.send_master_update(fid, status);
                }
                Ok(resources) => {
                    remaining.subtract(&resources);
                    self.launch(fid, t, agent, &role, resources, now);
                }
            }
        }
        self.install_filter(fid, agent, &role, remaining, a.filters.as_ref(), now);
        self.allocate(now);
    }

    fn validate_task(
        &self,
        fid: &str,
        t: &pb::TaskInfo,
        agent_id: &str,
        available: &ResourceSet,
        alloc_role: Option<&str>,
    ) -> Result<ResourceSet, String> {
        let fw = &self.frameworks[fid];
        if fw.tasks.contains_key(&t.task_id.value) {
            return Err(format!("Task has duplicate ID: {}", t.task_id.value));
        }
        if t.agent_id.value != agent_id {
            return Err(format!(
                "Task uses invalid agent {} while the offers are for agent {agent_id}",
                t.agent_id.value
            ));
        }
        if t.resources.is_empty() {
            return Err("Task uses no resources".to_string());
        }
        if t.command.is_some() == t.executor.is_some() {
            return Err("Task should have at least one (but not both) of CommandInfo or ExecutorInfo present".to_string());
        }
        let mut all = t.resources.clone();
        if let Some(ex) = &t.executor {
            all.extend(ex.resources.iter().cloned());
        }
        let (set, mismatch) = from_proto(&all, alloc_role)
            .map_err(|e| format!("Task uses invalid resources: {}", e.0))?;
        if mismatch || !available.contains(&set) {
            return Err(format!(
                "Total resources {} required by task and its executor is more than available {}",
                set.describe(alloc_role),
                available.describe(alloc_role)
            ));
        }
        Ok(set)
    }

    fn launch(
        &mut self,
        fid: &str,
        t: &pb::TaskInfo,
        agent: usize,
        role: &str,
        resources: ResourceSet,
        now: Instant,
    ) {
        let tid = t.task_id.value.clone();
        self.agents[agent].used.add(&resources);
        self.stats.tasks_launched += 1;
        self.launched.insert(tid.clone());
        let container_id = uuid::Uuid::new_v4().to_string();
        let agent_id = self.agents[agent].spec.id.clone();
        let dir = match &self.exec {
            Some(e) => e
                .sandbox_dir(&agent_id, fid, &tid, &container_id)
                .display()
                .to_string(),
            None => format!(
                "/var/lib/mesos/agent/slaves/{agent_id}/frameworks/{fid}/executors/{tid}/runs/{container_id}"
            ),
        };
        self.sandboxes
            .insert(dir.clone(), (fid.to_string(), tid.clone()));
        let script = self
            .scripts
            .get(&tid)
            .cloned()
            .or_else(|| self.script_fn.as_ref().map(|f| f(t)))
            .unwrap_or_else(|| self.default_script.clone());
        let task = Task {
            info: t.clone(),
            agent,
            role: Some(role.to_string()),
            resources,
            state: TaskState::TaskStaging as i32,
            last_status: None,
            statuses: Vec::new(),
            pending: VecDeque::new(),
            remaining: Vec::new(),
            held: false,
            script_gen: 0,
            terminal: false,
            container_id,
        };
        if let Some(fw) = self.frameworks.get_mut(fid) {
            fw.tasks.insert(tid.clone(), task);
        }
        if let Some(e) = &self.exec {
            let _ = e.tx.send(super::exec::Job::Launch {
                fid: fid.to_string(),
                tid,
                info: Box::new(t.clone()),
                sandbox: dir.into(),
            });
            return;
        }
        self.run_script(fid, &tid, script.0, now);
    }

    /// Runs script steps until a `Hold`, a `Sleep` or a terminal update.
    pub fn run_script(&mut self, fid: &str, tid: &str, steps: Vec<TaskStep>, now: Instant) {
        let mut iter = steps.into_iter();
        while let Some(step) = iter.next() {
            match step {
                TaskStep::Update {
                    state,
                    message,
                    reason,
                } => {
                    let terminal = self.agent_update(fid, tid, state, message, reason, now);
                    if terminal {
                        return;
                    }
                }
                TaskStep::Hold => {
                    if let Some(task) = self.task_mut(fid, tid) {
                        task.held = true;
                        task.remaining = iter.collect();
                    }
                    return;
                }
                TaskStep::Sleep(d) => {
                    let gen = match self.task_mut(fid, tid) {
                        Some(task) => {
                            task.remaining = iter.collect();
                            task.script_gen += 1;
                            task.script_gen
                        }
                        None => return,
                    };
                    self.schedule(
                        now + d,
                        Timer::Resume {
                            fid: fid.to_string(),
                            tid: tid.to_string(),
                            gen,
                        },
                    );
                    return;
                }
            }
        }
    }

    pub fn task_mut(&mut self, fid: &str, tid: &str) -> Option<&mut Task> {
        self.frameworks
            .get_mut(fid)
            .and_then(|f| f.tasks.get_mut(tid))
    }

    /// Finds the framework owning task `tid` (tests address tasks by id only).
    pub fn owner_of(&self, tid: &str) -> Option<String> {
        let mut fids: Vec<&String> = self.frameworks.keys().collect();
        fids.sort();
        fids.into_iter()
            .find(|f| self.frameworks[*f].tasks.contains_key(tid))
            .cloned()
    }

    /// An update from the "agent" (with a uuid, reliably delivered). Returns true if it was
    /// terminal.
    pub fn agent_update(
        &mut self,
        fid: &str,
        tid: &str,
        state: TaskState,
        message: Option<String>,
        reason: Option<Reason>,
        now: Instant,
    ) -> bool {
        self.agent_update_from(fid, tid, state, message, reason, Source::Executor, now)
    }

    /// [`State::agent_update`] from a given source (the agent itself for launch failures).
    #[allow(clippy::too_many_arguments)]
    pub fn agent_update_from(
        &mut self,
        fid: &str,
        tid: &str,
        state: TaskState,
        message: Option<String>,
        reason: Option<Reason>,
        source: Source,
        now: Instant,
    ) -> bool {
        let retry = self.update_retry;
        let Some(fw) = self.frameworks.get_mut(fid) else {
            return false;
        };
        let connected = fw.stream.is_some();
        let Some(task) = fw.tasks.get_mut(tid) else {
            return false;
        };
        if task.terminal {
            return true;
        }
        let agent_id = self.agents[task.agent].spec.id.clone();
        let uuid = uuid::Uuid::new_v4().as_bytes().to_vec();
        let status = pb::TaskStatus {
            task_id: pb::TaskId {
                value: tid.to_string(),
            },
            state: state as i32,
            message,
            source: Some(source as i32),
            reason: reason.map(|r| r as i32),
            agent_id: Some(pb::AgentId { value: agent_id }),
            executor_id: Some(pb::ExecutorId {
                value: tid.to_string(),
            }),
            timestamp: Some(now_secs()),
            uuid: Some(uuid.clone()),
            container_status: Some(pb::ContainerStatus {
                container_id: Some(pb::ContainerId {
                    value: task.container_id.clone(),
                    parent: None,
                }),
                network_infos: vec![pb::NetworkInfo {
                    ip_addresses: vec![pb::network_info::IpAddress {
                        protocol: Some(pb::network_info::Protocol::IPv4 as i32),
                        ip_address: Some("127.0.0.1".to_string()),
                    }],
                    ..Default::default()
                }],
                executor_pid: Some(executor_pid(tid)),
            }),
            ..Default::default()
        };
        task.state = state as i32;
        task.statuses
            .push((state as i32, status.timestamp.unwrap_or_default()));
        task.last_status = Some(status.clone());
        let terminal = is_terminal(state as i32);
        task.pending.push_back(status.clone());
        let first = task.pending.len() == 1;
        if terminal {
            task.terminal = true;
            task.held = false;
            task.remaining.clear();
            let (agent, res) = (task.agent, task.resources.clone());
            self.agents[agent].used.subtract(&res);
            self.dirty_agents.insert(agent);
            self.stats.tasks_terminal += 1;
        }
        if first {
            if connected {
                self.stats.agent_updates_sent += 1;
                self.frameworks[fid].send(event_update(status));
            }
            self.schedule(
                now + retry,
                Timer::Resend {
                    fid: fid.to_string(),
                    tid: tid.to_string(),
                    uuid,
                },
            );
        }
        terminal
    }

    pub fn acknowledge(&mut self, fid: &str, ack: &call::Acknowledge, now: Instant) {
        let retry = self.update_retry;
        let tid = ack.task_id.value.clone();
        let Some(fw) = self.frameworks.get_mut(fid) else {
            return;
        };
        let connected = fw.stream.is_some();
        let Some(task) = fw.tasks.get_mut(&tid) else {
            return;
        };
        if task.pending.front().and_then(|s| s.uuid.as_deref()) != Some(ack.uuid.as_slice()) {
            return;
        }
        task.pending.pop_front();
        self.stats.acknowledged += 1;
        if let Some(next) = task.pending.front().cloned() {
            let uuid = next.uuid.clone().unwrap_or_default();
            if connected {
                self.stats.agent_updates_sent += 1;
                fw.send(event_update(next));
            }
            self.schedule(
                now + retry,
                Timer::Resend {
                    fid: fid.to_string(),
                    tid,
                    uuid,
                },
            );
        } else if task.terminal {
            let done = fw.tasks.remove(&tid).expect("present");
            fw.completed.push_back(done);
            while fw.completed.len() > self.completed_keep {
                fw.completed.pop_front();
            }
        }
    }

    pub fn kill(&mut self, fid: &str, k: &call::Kill, now: Instant) {
        let tid = k.task_id.value.clone();
        let known = self
            .frameworks
            .get(fid)
            .and_then(|f| f.tasks.get(&tid))
            .map(|t| t.terminal);
        match known {
            Some(false) if self.exec.is_some() => {
                // The executor stops the container and reports TASK_KILLED.
                let grace = k
                    .kill_policy
                    .as_ref()
                    .and_then(|p| p.grace_period.as_ref())
                    .map(|d| Duration::from_nanos(d.nanoseconds.max(0) as u64))
                    .unwrap_or(Duration::from_secs(3));
                if let Some(e) = &self.exec {
                    let _ = e.tx.send(super::exec::Job::Kill { tid, grace });
                }
            }
            Some(false) => {
                if let Some(task) = self.task_mut(fid, &tid) {
                    task.remaining.clear();
                    task.script_gen += 1;
                }
                self.agent_update(
                    fid,
                    &tid,
                    TaskState::TaskKilled,
                    Some("Command terminated with signal Terminated".to_string()),
                    None,
                    now,
                );
                self.allocate(now);
            }
            Some(true) => {}
            None => {
                let r = call::Reconcile {
                    tasks: vec![call::reconcile::Task {
                        task_id: k.task_id.clone(),
                        agent_id: k.agent_id.clone(),
                    }],
                };
                self.reconcile(fid, &r);
            }
        }
    }

    pub fn reconcile(&mut self, fid: &str, r: &call::Reconcile) {
        let Some(fw) = self.frameworks.get(fid) else {
            return;
        };
        let pa = fw.partition_aware();
        let latest = |t: &Task, tid: &str| -> pb::TaskStatus {
            let mut s = t.last_status.clone().unwrap_or_else(|| pb::TaskStatus {
                task_id: pb::TaskId {
                    value: tid.to_string(),
                },
                state: TaskState::TaskStaging as i32,
                timestamp: Some(now_secs()),
                ..Default::default()
            });
            s.uuid = None;
            s.executor_id = None;
            s.message = Some("Reconciliation: Latest task state".to_string());
            s.source = Some(Source::Master as i32);
            s.reason = Some(Reason::Reconciliation as i32);
            s.agent_id = Some(pb::AgentId {
                value: self.agents[t.agent].spec.id.clone(),
            });
            s
        };
        let mut out = Vec::new();
        if r.tasks.is_empty() {
            let mut tids: Vec<&String> = fw.tasks.keys().collect();
            tids.sort();
            for tid in tids {
                out.push(latest(&fw.tasks[tid], tid));
            }
        } else {
            for rt in &r.tasks {
                let tid = &rt.task_id.value;
                if let Some(t) = fw.tasks.get(tid) {
                    out.push(latest(t, tid));
                    continue;
                }
                let agent = rt.agent_id.as_ref().map(|a| a.value.as_str());
                let (state, msg, agent) = match agent {
                    Some(a) if self.agent_index.contains_key(a) => (
                        if pa {
                            TaskState::TaskGone
                        } else {
                            TaskState::TaskLost
                        },
                        "Reconciliation: Task is unknown to the agent",
                        Some(a),
                    ),
                    _ => (
                        if pa {
                            TaskState::TaskUnknown
                        } else {
                            TaskState::TaskLost
                        },
                        "Reconciliation: Task is unknown",
                        None,
                    ),
                };
                out.push(self.master_status(
                    tid,
                    state,
                    Reason::Reconciliation,
                    msg.to_string(),
                    agent,
                ));
            }
        }
        for s in out {
            self.send_master_update(fid, s);
        }
    }

    /// The agent is partitioned away: its offers are rescinded, frameworks get FAILURE and a
    /// master update per task (TASK_UNREACHABLE with PARTITION_AWARE, else TASK_LOST).
    pub fn mark_unreachable(&mut self, agent_id: &str, _now: Instant) -> bool {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return false;
        };
        if self.agents[a].unreachable {
            return true;
        }
        self.agents[a].unreachable = true;
        let offer_ids: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.agent == a)
            .map(|(id, _)| id.clone())
            .collect();
        for id in offer_ids {
            let o = self.offers.remove(&id).expect("listed");
            self.agents[a].offered.subtract(&o.resources);
            if let Some(fw) = self.frameworks.get(&o.framework) {
                fw.send(Event {
                    r#type: Some(event::Type::Rescind as i32),
                    rescind: Some(event::Rescind {
                        offer_id: pb::OfferId { value: id },
                    }),
                    ..Default::default()
                });
            }
        }
        let secs = now_secs();
        let mut fids: Vec<String> = self.frameworks.keys().cloned().collect();
        fids.sort();
        for fid in fids {
            let fw = &self.frameworks[&fid];
            let pa = fw.partition_aware();
            let mut tids: Vec<String> = fw
                .tasks
                .iter()
                .filter(|(_, t)| t.agent == a && !t.terminal)
                .map(|(id, _)| id.clone())
                .collect();
            tids.sort();
            fw.send(Event {
                r#type: Some(event::Type::Failure as i32),
                failure: Some(event::Failure {
                    agent_id: Some(pb::AgentId {
                        value: agent_id.to_string(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
            for tid in tids {
                let state = if pa {
                    TaskState::TaskUnreachable
                } else {
                    TaskState::TaskLost
                };
                let mut status = self.master_status(
                    &tid,
                    state,
                    Reason::AgentRemoved,
                    format!("Agent {agent_id} is unreachable"),
                    Some(agent_id),
                );
                if pa {
                    status.unreachable_time = Some(pb::TimeInfo {
                        nanoseconds: (secs * 1e9) as i64,
                    });
                }
                if let Some(t) = self.task_mut(&fid, &tid) {
                    t.state = state as i32;
                    t.statuses.push((state as i32, secs));
                    let mut latest = status.clone();
                    latest.message = None;
                    latest.container_status = t
                        .last_status
                        .as_ref()
                        .and_then(|l| l.container_status.clone());
                    t.last_status = Some(latest);
                }
                self.send_master_update(&fid, status);
            }
        }
        true
    }

    /// The agent comes back: its tasks report their state again (master updates with
    /// REASON_AGENT_REREGISTERED, as after a master failover) and its resources are offered.
    pub fn reregister(&mut self, agent_id: &str, now: Instant) -> bool {
        let Some(&a) = self.agent_index.get(agent_id) else {
            return false;
        };
        if !self.agents[a].unreachable {
            return true;
        }
        self.agents[a].unreachable = false;
        let mut fids: Vec<String> = self.frameworks.keys().cloned().collect();
        fids.sort();
        for fid in fids {
            let mut tids: Vec<String> = self.frameworks[&fid]
                .tasks
                .iter()
                .filter(|(_, t)| t.agent == a && !t.terminal)
                .map(|(id, _)| id.clone())
                .collect();
            tids.sort();
            for tid in tids {
                let mut status = self.master_status(
                    &tid,
                    TaskState::TaskRunning,
                    Reason::AgentReregistered,
                    "Unknown agent reregistered".to_string(),
                    Some(agent_id),
                );
                if let Some(t) = self.task_mut(&fid, &tid) {
                    status.container_status = t
                        .last_status
                        .as_ref()
                        .and_then(|l| l.container_status.clone());
                    t.state = TaskState::TaskRunning as i32;
                    t.statuses.push((TaskState::TaskRunning as i32, now_secs()));
                    let mut latest = status.clone();
                    latest.message = None;
                    t.last_status = Some(latest);
                }
                self.send_master_update(&fid, status);
            }
        }
        self.dirty_agents.insert(a);
        self.allocate(now);
        true
    }

    pub fn revive(&mut self, fid: &str, roles: &[String], now: Instant) {
        let Some(fw) = self.frameworks.get_mut(fid) else {
            return;
        };
        let mine = fw.roles();
        if roles.iter().any(|r| !mine.contains(r)) {
            return; // the master logs and drops the whole call
        }
        let roles: Vec<String> = if roles.is_empty() {
            mine
        } else {
            roles.to_vec()
        };
        for r in &roles {
            fw.suppressed.remove(r);
        }
        fw.filters.retain(|(_, role), _| !roles.contains(role));
        self.dirty_agents.extend(0..self.agents.len());
        self.allocate(now);
    }

    pub fn suppress(&mut self, fid: &str, roles: &[String]) {
        let Some(fw) = self.frameworks.get_mut(fid) else {
            return;
        };
        let mine = fw.roles();
        if roles.iter().any(|r| !mine.contains(r)) {
            return;
        }
        let roles: Vec<String> = if roles.is_empty() {
            mine
        } else {
            roles.to_vec()
        };
        fw.suppressed.extend(roles);
    }
}

/// A stable made-up pid for a task's executor.
fn executor_pid(tid: &str) -> u32 {
    20000
        + tid
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % 10000
}

/// Mesos's role-name rules (§1.2).
pub fn valid_role(role: &str) -> bool {
    if role == "*" {
        return true;
    }
    if role.is_empty() || role.starts_with('/') || role.ends_with('/') || role.contains("//") {
        return false;
    }
    role.split('/').all(|part| {
        !(part.is_empty()
            || part == "."
            || part == ".."
            || part == "*"
            || part.starts_with('-')
            || part.chars().any(|c| c.is_whitespace() || c == '\u{8}'))
    })
}
