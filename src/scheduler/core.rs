//! [`Core`]: the scheduler's state machine. Inputs are new tasks, kill requests, backend
//! [`Event`]s and timer ticks, each with the current time; every input returns a [`Step`]:
//! state changes to commit (in one transaction) and then actions to send. The driver commits
//! `changes` before it sends `actions`, so an ACKNOWLEDGE always follows the state it
//! acknowledges and a launch's attempt is stored before the ACCEPT goes out.
//!
//! # Decisions
//!
//! * **Status mapping.** STAGING → `Launching` (the agent holds the attempt but has not started
//!   it: it may still be fetching its sandbox files); STARTING → `Starting`; RUNNING → `Running`; KILLING →
//!   `Killing`; FINISHED → `Succeeded`; FAILED/ERROR → `Failed`; KILLED → `Killed` (also when
//!   no kill was asked for: someone killed it). Once a kill was requested, a task that ends
//!   FAILED/ERROR/GONE is recorded `Killed` (its end was asked for), and a FINISHED one
//!   `Succeeded`.
//! * **Launch failures** (DROPPED; LOST with a launch-phase reason such as
//!   `REASON_INVALID_OFFERS`/`REASON_AGENT_REMOVED` before the attempt was seen on an agent;
//!   `ActionFailed` of a launch; GONE/GONE_BY_OPERATOR/UNKNOWN for an attempt never seen on an
//!   agent; FAILED/ERROR with a reason saying the command never ran —
//!   `REASON_CONTAINER_LAUNCH_FAILED` (fetch, image pull, container creation),
//!   `REASON_EXECUTOR_REGISTRATION_TIMEOUT`, `REASON_CONTAINER_PREEMPTED` — before any
//!   STARTING/RUNNING of the attempt) requeue the task for a new attempt while `attempt ≤ retries`
//!   (`spec.retries`, else `launch_retries`), else the task fails. A requeued task keeps its
//!   place in the FIFO order.
//! * **Unconfirmed launches.** A launch whose ACCEPT was written (or may have been) but got
//!   no answer (`ActionUnconfirmed`: the connection broke, the call timed out) may or may not
//!   have been taken by the master. Its attempts stay `Launching`, marked unconfirmed, and are
//!   never relaunched on the master's word that it does not know them until that word is
//!   final: the core first voids the launch's offers (`VoidOffers`, a DECLINE of them), and
//!   only a reconciliation asked after the master took that DECLINE (`OffersVoided`) can
//!   settle them. Before it, TASK_GONE/UNKNOWN/GONE_BY_OPERATOR answers are ignored; any
//!   other answer (the master knows the attempt, or dropped it) settles it at once. A DECLINE
//!   that fails is sent again after a backoff and after every SUBSCRIBED. Why this is final
//!   is in ARCHITECTURE.md ("Launches whose fate is unknown").
//! * **Lost attempts.** LOST/UNREACHABLE of an attempt seen on an agent (any of
//!   STAGING..KILLING was reported) → `Unknown`: never relaunched blindly; periodic
//!   reconciliation asks about it explicitly. GONE/GONE_BY_OPERATOR/UNKNOWN of such an attempt
//!   (the master does not know it, or its agent is gone) resolve it as `Failed`, with a
//!   message saying the attempt is gone.
//! * **Reconciled ends.** A FAILED/ERROR that reconciliation answers for the current attempt
//!   carries no reason or message of the agent's. It is held for `RECONCILED_END_GRACE`: the
//!   agent resends its own unacknowledged update once the framework is subscribed again, and
//!   that one decides (a launch failure is retried; its message is kept). Without it, the
//!   held answer is applied when the grace runs out.
//! * **Old attempts.** Updates for an attempt that is not the task's current one are
//!   acknowledged and change nothing; if such an attempt reports itself alive, it is killed,
//!   so that no task runs twice.
//! * **Acknowledgements.** Every update that carries a uuid is acknowledged, after its change
//!   in the same step: duplicates, old attempts and unknown tasks too (an unacknowledged update
//!   stalls the agent's stream). Updates without uuid never are.
//! * **Offers** are used at once and never held: each used offer gets one LAUNCH (the master
//!   declines the rest with the same filter), the others one DECLINE with
//!   `offer_refuse_seconds`. SUPPRESS once nothing is queued; REVIVE when work arrives: at
//!   once if SUPPRESS was sent since the last REVIVE (no offer comes otherwise), else at most
//!   once per `revive_interval` (a pending REVIVE is sent by `tick`); and at once after a
//!   (re-)subscribe when work is queued.
//! * **Reconciliation.** After every SUBSCRIBED: explicit RECONCILE of every live attempt,
//!   repeated for the unanswered ones with truncated exponential backoff (one round at a
//!   time), then one implicit RECONCILE; then every `reconciliation_interval` an explicit
//!   round for the attempts in `Unknown`/`Launching` (if any) followed by an implicit one.
//! * **Kill.** A queued task is killed at once. A task with a live attempt gets a KILL with
//!   its grace period and goes to `Killing`; the KILL is repeated until a terminal update
//!   arrives. Killing a terminal task is an error.

use super::config::CoreConfig;
use super::launch::{build, prepare, Prepared};
use super::matching::{place_into, satisfies, Demand, Plan, SCALAR_NAMES};
use super::types::{
    from_milli, Action, BackendState, Event, LaunchTask, Now, Offer, Quantity, StatusUpdate,
    UpdateSource,
};
use crate::store::Change;
use crate::task::{parse_attempt_task_id, Attempt, TaskRecord, TaskSpec, TaskState};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What an input made the core decide: commit `changes` (one transaction), then send
/// `actions` in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    pub changes: Vec<Change>,
    pub actions: Vec<Action>,
}

impl Step {
    /// True when there is nothing to commit or send.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.actions.is_empty()
    }

    /// Appends another step's changes and actions after this one's.
    pub fn append(&mut self, mut other: Step) {
        self.changes.append(&mut other.changes);
        self.actions.append(&mut other.actions);
    }
}

/// Why a kill request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KillError {
    /// The core does not hold the task: never submitted, or terminal long ago (the store may
    /// still know it).
    #[error("no such task")]
    NotFound,
    #[error("the task has already ended ({0})")]
    AlreadyTerminal(TaskState),
    /// The driver cannot answer now: the state store is unavailable (never the core's answer).
    #[error("{0}")]
    Unavailable(String),
}

/// Counters and gauges of the core, for `/metrics` and `status`. The core does not time
/// itself; the driver measures how long a step took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreStats {
    pub queued: usize,
    pub launching: usize,
    pub starting: usize,
    pub running: usize,
    pub killing: usize,
    pub unknown: usize,
    /// Distinct (resources, constraints) classes among the queued tasks.
    pub classes: usize,
    /// Tasks that reached a terminal state since start.
    pub succeeded: u64,
    pub failed: u64,
    pub killed: u64,
    pub offers_received: u64,
    pub offers_used: u64,
    pub offers_declined: u64,
    pub offers_rescinded: u64,
    pub matching_rounds: u64,
    pub tasks_launched: u64,
    pub launch_failures: u64,
    pub relaunches: u64,
    pub updates_received: u64,
    /// Updates for an old attempt, a terminal or an unknown task.
    pub stale_updates: u64,
    pub acks: u64,
    pub kills_sent: u64,
    pub reconcile_calls: u64,
    /// Attempts in the current explicit reconciliation that have not been answered yet.
    pub reconcile_pending: usize,
    pub suppressed: bool,
    pub connected: bool,
}

/// What the core holds about one non-terminal task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub id: String,
    pub spec: Arc<TaskSpec>,
    pub state: TaskState,
    /// The latest attempt made (0 before the first launch).
    pub attempt: u32,
    /// Backend task id of the latest attempt.
    pub backend_task_id: Option<String>,
    /// Agent id, hostname and agent URL are shared by every task on the agent (interned).
    pub agent_id: Option<Arc<str>>,
    pub hostname: Option<Arc<str>>,
    pub agent_url: Option<Arc<str>>,
    /// The latest attempt was seen on an agent (some STAGING..KILLING update came): it is
    /// never relaunched blindly.
    pub started: bool,
    pub kill_requested: bool,
    pub last_backend_state: Option<BackendState>,
    pub message: Option<String>,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    /// FIFO position: older tasks have smaller numbers.
    pub seq: u64,
    /// Resolved demand and command; `None` when the spec can no longer be launched (then a
    /// relaunch fails the task).
    prepared: Option<Box<Prepared>>,
    class: Option<usize>,
    kill_at: Option<Instant>,
    /// When the latest attempt was launched in this process (`None` after a restore).
    launched_at: Option<Instant>,
    /// A terminal FAILED/ERROR that reconciliation reported for the current attempt, applied
    /// at the instant given unless the agent's own update (with its reason and message)
    /// arrives first.
    held_end: Option<(Instant, Box<StatusUpdate>)>,
    /// The latest attempt's ACCEPT got no answer: the master may or may not have it.
    unconfirmed: Option<Box<Unconfirmed>>,
    /// Attempts that never reached an agent for the cluster's own reasons (offers withdrawn
    /// or rescinded, the agent removed or disconnected meanwhile): they do not count against
    /// the task's launch retries (up to [`MAX_FREE_RELAUNCHES`]).
    free_attempts: u32,
    /// When it fails for having waited queued too long (`queued_timeout`).
    queue_deadline: Option<Instant>,
}

/// Attempts lost to the cluster's own reasons that are relaunched without counting against
/// the launch retries; beyond this many they count (a cluster that never keeps an offer).
const MAX_FREE_RELAUNCHES: u32 = 20;

/// An attempt whose ACCEPT got no answer.
#[derive(Debug, Clone, PartialEq)]
struct Unconfirmed {
    /// The offers its ACCEPT used (shared by the attempts of that ACCEPT).
    offer_ids: Arc<[String]>,
    /// The master has taken a DECLINE of these offers: no late ACCEPT can use them any more,
    /// so its word that it does not know the attempt is final.
    voided: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClassKey {
    scalars: [i64; 3],
    fixed_ports: Vec<u64>,
    dynamic_ports: u32,
    constraints: Vec<Vec<(String, String)>>,
}

impl ClassKey {
    fn of(d: &Demand) -> ClassKey {
        ClassKey {
            scalars: d.scalars,
            fixed_ports: d.fixed_ports.clone(),
            dynamic_ports: d.dynamic_ports,
            constraints: d
                .constraints
                .iter()
                .map(|alts| {
                    alts.iter()
                        .map(|a| (a.name.clone(), a.value.clone()))
                        .collect()
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct Class {
    key: ClassKey,
    demand: Demand,
    /// seq → task id, oldest first.
    queue: BTreeMap<u64, String>,
    /// The [`Core::seen_version`] at which its tasks' waiting message was last decided.
    checked: u64,
}

/// What the core has seen an agent offer: the largest amounts of each scalar (thousandths,
/// non-revocable) in any one offer, and its latest offer (for its attributes and hostname).
#[derive(Debug, Clone)]
struct SeenAgent {
    largest: [i64; 3],
    offer: Offer,
}

/// How the message of a task that waits because no agent could ever hold it begins.
const WAITING: &str = "waiting: ";

#[derive(Debug, Clone, Default)]
struct Recon {
    /// An explicit round is under way.
    explicit: bool,
    /// Backend task id → agent id, not answered yet.
    pending: BTreeMap<String, Option<String>>,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// When the next periodic round starts (set once the explicit round is over).
    periodic_at: Option<Instant>,
}

/// The pure scheduler core. See the module documentation for its decisions.
#[derive(Debug, Clone)]
pub struct Core {
    cfg: CoreConfig,
    tasks: HashMap<String, TaskView>,
    agents: Interner,
    /// Terminal tasks remembered (bounded by `remember_terminal`), oldest first in `order`.
    terminal: HashMap<String, TaskState>,
    terminal_order: VecDeque<String>,
    classes: Vec<Option<Class>>,
    free_classes: Vec<usize>,
    class_index: HashMap<ClassKey, usize>,
    /// Live tasks per state (indexed by `TaskState as usize`).
    counts: [usize; 9],
    next_seq: u64,
    connected: bool,
    suppressed: bool,
    suppress_retry_at: Option<Instant>,
    revive_wanted: bool,
    last_revive: Option<Instant>,
    recon: Recon,
    kill_timers: BTreeSet<(Instant, String)>,
    /// When each held reconciliation answer ([`TaskView`]'s `held_end`) is applied.
    held_timers: BTreeSet<(Instant, String)>,
    /// When the DECLINEs that void the offers of unconfirmed launches are sent again (one
    /// failed), and the wait before the next time.
    void_retry_at: Option<Instant>,
    void_backoff: Duration,
    /// Changes decided outside a step (by `restore`), returned with the next step.
    pending: Step,
    pending_since: Option<Instant>,
    stats: CoreStats,
    /// The last matching round's plan, kept so the next round reuses its buffers.
    plan: Plan,
    /// Every agent that made an offer, by agent id.
    seen_agents: HashMap<String, SeenAgent>,
    /// Bumped when an agent is seen for the first time or offers more than before: the
    /// waiting messages of the queued classes are decided again.
    seen_version: u64,
    /// While the backend is not connected: the message queued tasks carry.
    offline: Option<String>,
    /// `queued_timeout` deadlines of queued tasks (entries of tasks launched since are
    /// stale and skipped).
    queue_timers: BTreeSet<(Instant, String)>,
}

/// How long after its launch an attempt still counts as in flight for periodic
/// reconciliation.
const LAUNCH_SETTLE: Duration = Duration::from_secs(60);

/// How long a FAILED/ERROR answer of reconciliation waits for the agent's own update of the
/// same attempt. The master answers with the latest state only ("Reconciliation: Latest task
/// state", no reason of the agent's); the agent resends its unacknowledged update as soon as
/// the framework is subscribed again, and that update says why (a launch failure is retried,
/// a command's failure is final).
const RECONCILED_END_GRACE: Duration = Duration::from_secs(30);

/// Reasons with which an agent reports that the attempt's command never ran: the container
/// could not be made (fetch, image pull, containerizer error) or the executor never came up.
const NEVER_STARTED_REASONS: [&str; 3] = [
    "REASON_CONTAINER_LAUNCH_FAILED",
    "REASON_EXECUTOR_REGISTRATION_TIMEOUT",
    "REASON_CONTAINER_PREEMPTED",
];

/// Reasons with which the master reports a launch that never reached an agent.
const LAUNCH_PHASE_REASONS: [&str; 5] = [
    "REASON_INVALID_OFFERS",
    "REASON_AGENT_REMOVED",
    "REASON_AGENT_DISCONNECTED",
    "REASON_SLAVE_REMOVED",
    "REASON_SLAVE_DISCONNECTED",
];

enum Next {
    Live(TaskState),
    Terminal(TaskState, Option<String>),
    LaunchFailed(String),
    /// A launch failure that is the cluster's doing, not the task's (it costs no retry).
    LaunchVoid(String),
}

impl Core {
    pub fn new(cfg: CoreConfig) -> Core {
        Core {
            cfg,
            tasks: HashMap::new(),
            agents: Interner::default(),
            terminal: HashMap::new(),
            terminal_order: VecDeque::new(),
            classes: Vec::new(),
            free_classes: Vec::new(),
            class_index: HashMap::new(),
            counts: [0; 9],
            next_seq: 0,
            connected: false,
            suppressed: false,
            suppress_retry_at: None,
            revive_wanted: false,
            last_revive: None,
            recon: Recon::default(),
            kill_timers: BTreeSet::new(),
            held_timers: BTreeSet::new(),
            void_retry_at: None,
            void_backoff: Duration::ZERO,
            pending: Step::default(),
            pending_since: None,
            stats: CoreStats::default(),
            plan: Plan::default(),
            seen_agents: HashMap::new(),
            seen_version: 1,
            offline: None,
            queue_timers: BTreeSet::new(),
        }
    }

    /// The configuration the core runs with.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// After a restart: queued tasks are queued again (oldest first); tasks with a live
    /// attempt are held and reconciled after the next SUBSCRIBED; terminal ones are
    /// remembered. A queued task whose spec can no longer be launched (e.g. no image any
    /// more) fails; that change comes with the next step.
    pub fn restore(&mut self, active: Vec<(TaskRecord, Option<Attempt>)>, now: Now) {
        let mut active = active;
        active.sort_by(|a, b| (a.0.created_at, &a.0.id).cmp(&(b.0.created_at, &b.0.id)));
        let mut step = std::mem::take(&mut self.pending);
        for (rec, attempt) in active {
            self.restore_one(rec, attempt, now, &mut step);
        }
        if !step.is_empty() {
            self.pending_since.get_or_insert(now.instant);
        }
        self.pending = step;
    }

    fn restore_one(
        &mut self,
        rec: TaskRecord,
        attempt: Option<Attempt>,
        now: Now,
        step: &mut Step,
    ) {
        if rec.state.is_terminal() {
            self.remember_terminal(&rec.id, rec.state);
            return;
        }
        if self.tasks.contains_key(&rec.id) || self.terminal.contains_key(&rec.id) {
            return;
        }
        let prepared = prepare(&self.cfg, &rec.spec);
        let seq = self.next_seq;
        self.next_seq += 1;
        let (backend_task_id, agent_id, hostname, agent_url) = match &attempt {
            Some(a) => (
                Some(a.backend_task_id.clone()),
                a.agent_id.clone().or(rec.agent_id.clone()),
                a.hostname.clone().or(rec.hostname.clone()),
                a.agent_url.clone(),
            ),
            None => (
                rec.current_attempt_id.clone(),
                rec.agent_id.clone(),
                rec.hostname.clone(),
                None,
            ),
        };
        let mut view = TaskView {
            id: rec.id.clone(),
            spec: Arc::new(rec.spec),
            state: rec.state,
            attempt: attempt
                .as_ref()
                .map_or(rec.attempts, |a| a.attempt.max(rec.attempts)),
            backend_task_id,
            agent_id: self.agents.intern(agent_id),
            hostname: self.agents.intern(hostname),
            agent_url: self.agents.intern(agent_url),
            started: rec.state != TaskState::Launching,
            kill_requested: rec.kill_requested,
            last_backend_state: None,
            message: rec.message,
            reason: rec.reason,
            exit_code: rec.exit_code,
            seq,
            prepared: None,
            class: None,
            kill_at: None,
            launched_at: None,
            held_end: None,
            unconfirmed: None,
            free_attempts: 0,
            queue_deadline: None,
        };
        if rec.state == TaskState::Queued {
            match prepared {
                Ok(p) => {
                    view.prepared = Some(Box::new(p));
                    self.counts[TaskState::Queued as usize] += 1;
                    self.tasks.insert(rec.id.clone(), view);
                    self.enqueue(&rec.id, now.instant);
                    self.revive_wanted = true;
                }
                Err(e) => {
                    view.message = Some(format!("cannot be launched: {e}"));
                    self.counts[TaskState::Queued as usize] += 1;
                    self.tasks.insert(rec.id.clone(), view);
                    let msg = Some(format!("cannot be launched: {e}"));
                    self.finish(&rec.id, TaskState::Failed, msg, None, None, now, step);
                }
            }
            return;
        }
        view.prepared = prepared.ok().map(Box::new);
        if view.kill_requested {
            view.kill_at = Some(now.instant);
            self.kill_timers.insert((now.instant, rec.id.clone()));
        }
        self.counts[view.state as usize] += 1;
        self.tasks.insert(rec.id, view);
    }

    /// New tasks, already stored as queued. A task whose spec cannot be launched (no image,
    /// bad constraint, unsplittable command) fails at once with a message saying why.
    pub fn submit(&mut self, tasks: Vec<TaskRecord>, now: Now) -> Step {
        let mut step = self.take_pending();
        for mut rec in tasks {
            if self.tasks.contains_key(&rec.id) || self.terminal.contains_key(&rec.id) {
                continue;
            }
            if !rec.state.is_terminal() && !rec.state.has_live_attempt() {
                rec.state = TaskState::Queued;
            }
            let id = rec.id.clone();
            self.restore_one(rec, None, now, &mut step);
            if let Some(msg) = self.offline.clone() {
                self.say_waiting(&id, &msg, now, &mut step);
            }
        }
        self.after(now, &mut step);
        step
    }

    /// Kills a task: a queued one at once, one with a live attempt through the backend.
    pub fn kill(&mut self, task_id: &str, now: Now) -> Result<Step, KillError> {
        let mut step = self.take_pending();
        let Some(t) = self.tasks.get(task_id) else {
            return match self.terminal.get(task_id) {
                Some(s) => Err(KillError::AlreadyTerminal(*s)),
                None => Err(KillError::NotFound),
            };
        };
        if t.state == TaskState::Queued {
            self.dequeue(task_id);
            if let Some(t) = self.tasks.get_mut(task_id) {
                t.kill_requested = true;
            }
            let msg = Some("killed before it was launched".to_string());
            self.finish(task_id, TaskState::Killed, msg, None, None, now, &mut step);
        } else if !t.kill_requested {
            let t = self.tasks.get_mut(task_id).expect("checked above");
            t.kill_requested = true;
            let old = t.state;
            t.state = TaskState::Killing;
            t.message = Some("kill requested".to_string());
            self.counts[old as usize] -= 1;
            self.counts[TaskState::Killing as usize] += 1;
            step.changes.push(change_of(t, now));
            self.send_kill(task_id, now, &mut step);
        }
        self.after(now, &mut step);
        Ok(step)
    }

    /// Handles one backend event.
    pub fn handle_event(&mut self, ev: Event, now: Now) -> Step {
        let mut step = self.take_pending();
        match ev {
            Event::Subscribed { .. } => self.on_subscribed(now, &mut step),
            Event::Offers(offers) => self.on_offers(offers, now, &mut step),
            Event::Rescind(_) => self.stats.offers_rescinded += 1,
            Event::Update(u) => self.on_update(u, now, &mut step),
            Event::Failure { agent_id, .. } => {
                tracing::debug!(?agent_id, "agent or executor failure reported");
            }
            Event::Error(reason) | Event::Disconnected { reason } => {
                // Offers are void (the core holds none); tasks keep running.
                self.connected = false;
                self.went_offline(&reason, now, &mut step);
            }
            Event::Heartbeat => {}
            Event::ActionFailed { action, error, .. } => {
                self.on_action_failed(action, &error, now, &mut step)
            }
            Event::ActionUnconfirmed { action, error } => {
                self.on_action_unconfirmed(action, &error, now, &mut step)
            }
            Event::OffersVoided { offer_ids } => self.on_offers_voided(&offer_ids, now, &mut step),
        }
        self.after(now, &mut step);
        step
    }

    /// Timers: reconciliation retries and rounds, a rate-limited REVIVE, kill retries.
    pub fn tick(&mut self, now: Now) -> Step {
        let mut step = self.take_pending();
        self.fire_held_ends(now, &mut step);
        self.fire_queue_timeouts(now, &mut step);
        if self.connected {
            self.fire_kills(now, &mut step);
            if self.void_retry_at.is_some_and(|t| t <= now.instant) {
                self.void_retry_at = None;
                self.void_offers_again(&mut step);
            }
            if self.recon.explicit {
                if self.recon.retry_at.is_some_and(|t| t <= now.instant) {
                    let list: Vec<_> = self
                        .recon
                        .pending
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    step.actions.push(Action::Reconcile(list));
                    self.stats.reconcile_calls += 1;
                    self.recon.backoff =
                        (self.recon.backoff * 2).min(self.cfg.reconcile_backoff_max);
                    self.recon.retry_at = Some(now.instant + self.recon.backoff);
                }
            } else if self.recon.periodic_at.is_some_and(|t| t <= now.instant) {
                // Attempts launched moments ago are left out: their ACCEPT may still be on its
                // way, and a "TASK_GONE" for it would wrongly relaunch the task.
                let settled = |t: &TaskView| {
                    t.launched_at
                        .is_none_or(|at| at + LAUNCH_SETTLE <= now.instant)
                };
                let mut list = self
                    .tasks
                    .values()
                    .filter(|t| {
                        t.state == TaskState::Unknown
                            || (t.state == TaskState::Launching && settled(t))
                    })
                    .filter_map(|t| {
                        Some((
                            t.backend_task_id.clone()?,
                            t.agent_id.as_deref().map(str::to_string),
                        ))
                    })
                    .collect::<Vec<_>>();
                list.sort();
                self.start_round(list, now, &mut step);
            }
        }
        self.after(now, &mut step);
        step
    }

    /// When `tick` next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = self.pending_since;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.held_timers.first().map(|(t, _)| *t));
        consider(self.queue_timers.first().map(|(t, _)| *t));
        if self.connected {
            consider(self.kill_timers.first().map(|(t, _)| *t));
            consider(self.void_retry_at);
            if self.recon.explicit {
                consider(self.recon.retry_at);
            } else {
                consider(self.recon.periodic_at);
            }
            let queued = self.counts[TaskState::Queued as usize];
            if queued > 0 && self.revive_wanted {
                consider(self.last_revive.map(|t| t + self.cfg.revive_interval));
            }
            if queued == 0 && !self.suppressed {
                consider(self.suppress_retry_at);
            }
        }
        next
    }

    /// Counters and gauges.
    pub fn stats(&self) -> CoreStats {
        let c = |s: TaskState| self.counts[s as usize];
        CoreStats {
            queued: c(TaskState::Queued),
            launching: c(TaskState::Launching),
            starting: c(TaskState::Starting),
            running: c(TaskState::Running),
            killing: c(TaskState::Killing),
            unknown: c(TaskState::Unknown),
            classes: self.class_index.len(),
            reconcile_pending: self.recon.pending.len(),
            suppressed: self.suppressed,
            connected: self.connected,
            ..self.stats.clone()
        }
    }

    /// What the core holds about a non-terminal task.
    pub fn task(&self, id: &str) -> Option<&TaskView> {
        self.tasks.get(id)
    }

    /// The state of a task the core holds or remembers as terminal.
    pub fn state_of(&self, id: &str) -> Option<TaskState> {
        self.tasks
            .get(id)
            .map(|t| t.state)
            .or_else(|| self.terminal.get(id).copied())
    }

    // ---- inputs ----

    fn on_subscribed(&mut self, now: Now, step: &mut Step) {
        self.connected = true;
        // The waiting messages are decided again at the next offers (a "not connected" one
        // goes then).
        self.offline = None;
        self.seen_version += 1;
        self.suppress_retry_at = None;
        // After a (re-)subscribe, decline filters of the old session may still hold: revive at
        // once when work is queued. The backend re-declares suppressed roles itself.
        self.last_revive = None;
        self.revive_wanted = self.counts[TaskState::Queued as usize] > 0;
        let mut list: Vec<(String, Option<String>)> = self
            .tasks
            .values()
            .filter(|t| t.state.has_live_attempt())
            .filter_map(|t| {
                Some((
                    t.backend_task_id.clone()?,
                    t.agent_id.as_deref().map(str::to_string),
                ))
            })
            .collect();
        list.sort();
        self.start_round(list, now, step);
        self.fire_kills(now, step);
        self.void_retry_at = None;
        self.void_offers_again(step);
    }

    fn start_round(&mut self, list: Vec<(String, Option<String>)>, now: Now, step: &mut Step) {
        self.stats.reconcile_calls += 1;
        if list.is_empty() {
            step.actions.push(Action::Reconcile(Vec::new()));
            self.recon = Recon {
                periodic_at: Some(now.instant + self.cfg.reconciliation_interval),
                ..Recon::default()
            };
        } else {
            self.recon = Recon {
                explicit: true,
                pending: list.iter().cloned().collect(),
                retry_at: Some(now.instant + self.cfg.reconcile_backoff_initial),
                backoff: self.cfg.reconcile_backoff_initial,
                periodic_at: None,
            };
            step.actions.push(Action::Reconcile(list));
        }
    }

    fn on_offers(&mut self, offers: Vec<Offer>, now: Now, step: &mut Step) {
        self.stats.offers_received += offers.len() as u64;
        if offers.is_empty() {
            return;
        }
        self.stats.matching_rounds += 1;
        self.see_agents(&offers);
        let live: Vec<usize> = (0..self.classes.len())
            .filter(|&i| self.classes[i].is_some())
            .collect();
        let mut plan = std::mem::take(&mut self.plan);
        {
            let inputs = live
                .iter()
                .map(|&i| {
                    let c = self.classes[i].as_ref().expect("live class");
                    (&c.demand, c.queue.keys().copied())
                })
                .collect();
            place_into(&mut plan, inputs, &offers);
        }
        // Sized up front: a LaunchTask is large, regrowing would copy them around.
        let mut counts = vec![0usize; offers.len()];
        for p in &plan.placements {
            counts[p.offer] += 1;
        }
        let mut per_offer: Vec<Vec<LaunchTask>> =
            counts.into_iter().map(Vec::with_capacity).collect();
        step.changes.reserve(plan.placements.len());
        let shared: Vec<AgentNames> = offers
            .iter()
            .map(|o| {
                (
                    self.agents.get(&o.agent_id),
                    self.agents.get(&o.hostname),
                    o.agent_url.as_deref().map(|u| self.agents.get(u)),
                )
            })
            .collect();
        for p in &plan.placements {
            let ci = live[p.class];
            let class = self.classes[ci].as_mut().expect("live class");
            let Some(id) = class.queue.remove(&p.seq) else {
                continue;
            };
            let offer = &offers[p.offer];
            let t = self.tasks.get_mut(&id).expect("queued task is held");
            let attempt = t.attempt + 1;
            let prepared = t.prepared.as_ref().expect("queued task is prepared");
            let take = plan.take(p, offer);
            let launch = build(&self.cfg, &id, attempt, &t.spec, prepared, offer, take);
            t.class = None;
            t.attempt = attempt;
            t.backend_task_id = Some(launch.backend_task_id.clone());
            let (agent_id, hostname, agent_url) = &shared[p.offer];
            t.agent_id = Some(agent_id.clone());
            t.hostname = Some(hostname.clone());
            t.agent_url = agent_url.clone();
            t.started = false;
            t.launched_at = Some(now.instant);
            t.unconfirmed = None;
            t.last_backend_state = None;
            t.message = None;
            t.reason = None;
            t.exit_code = None;
            t.state = TaskState::Launching;
            self.counts[TaskState::Queued as usize] -= 1;
            self.counts[TaskState::Launching as usize] += 1;
            let mut ch = change_of(t, now);
            ch.backend_task_id = Some(launch.backend_task_id.clone());
            step.changes.push(ch);
            per_offer[p.offer].push(launch);
        }
        self.plan = plan;
        // Drop classes that ran empty.
        for &ci in &live {
            if self.classes[ci]
                .as_ref()
                .is_some_and(|c| c.queue.is_empty())
            {
                self.drop_class(ci);
            }
        }
        self.tell_waiting(now, step);
        let mut declined = Vec::new();
        for (offer, tasks) in offers.into_iter().zip(per_offer) {
            if tasks.is_empty() {
                declined.push(offer.id);
            } else {
                self.stats.offers_used += 1;
                self.stats.tasks_launched += tasks.len() as u64;
                step.actions.push(Action::Launch {
                    offer_ids: vec![offer.id],
                    agent_id: offer.agent_id,
                    tasks,
                    refuse_seconds: self.cfg.offer_refuse_seconds,
                });
            }
        }
        if !declined.is_empty() {
            self.stats.offers_declined += declined.len() as u64;
            step.actions.push(Action::Decline {
                offer_ids: declined,
                refuse_seconds: self.cfg.offer_refuse_seconds,
            });
        }
    }

    /// The backend is gone (the master or the engine unreachable): queued tasks say so.
    fn went_offline(&mut self, reason: &str, now: Now, step: &mut Step) {
        let msg = format!("{WAITING}the backend is not connected: {}", reason.trim());
        if self.offline.as_deref() == Some(msg.as_str()) {
            return;
        }
        self.offline = Some(msg.clone());
        let queued: Vec<String> = self
            .classes
            .iter()
            .flatten()
            .flat_map(|c| c.queue.values().cloned())
            .collect();
        for tid in queued {
            self.say_waiting(&tid, &msg, now, step);
        }
    }

    /// Sets `msg` on a queued task (see [`set_waiting`]).
    fn say_waiting(&mut self, tid: &str, msg: &str, now: Now, step: &mut Step) {
        if let Some(t) = self.tasks.get_mut(tid) {
            if t.state == TaskState::Queued {
                set_waiting(t, Some(msg), now, step);
            }
        }
    }

    /// Records what each offer shows of its agent.
    fn see_agents(&mut self, offers: &[Offer]) {
        for o in offers {
            let mut amounts = [0i64; 3];
            for r in o.resources.iter().filter(|r| !r.flavour.revocable) {
                if let (Some(i), Quantity::Scalar(v)) =
                    (SCALAR_NAMES.iter().position(|n| *n == r.name), &r.quantity)
                {
                    amounts[i] += v;
                }
            }
            match self.seen_agents.get_mut(&o.agent_id) {
                Some(seen) => {
                    let grew = (0..3).any(|i| amounts[i] > seen.largest[i]);
                    for (largest, now) in seen.largest.iter_mut().zip(amounts) {
                        *largest = (*largest).max(now);
                    }
                    seen.offer = o.clone();
                    if grew {
                        self.seen_version += 1;
                    }
                }
                None => {
                    self.seen_agents.insert(
                        o.agent_id.clone(),
                        SeenAgent {
                            largest: amounts,
                            offer: o.clone(),
                        },
                    );
                    self.seen_version += 1;
                }
            }
        }
    }

    /// After a round: the tasks still queued whose class no agent seen so far could hold get
    /// a message saying why they wait (once per change of what was seen); the message goes
    /// when an agent that could hold them has been seen (they then wait for room).
    fn tell_waiting(&mut self, now: Now, step: &mut Step) {
        let version = self.seen_version;
        for ci in 0..self.classes.len() {
            let Some(class) = self.classes[ci].as_mut() else {
                continue;
            };
            if class.checked == version || class.queue.is_empty() {
                continue;
            }
            class.checked = version;
            let why = waiting_reason(&class.demand, &self.seen_agents);
            for tid in class.queue.values() {
                if let Some(t) = self.tasks.get_mut(tid) {
                    set_waiting(t, why.as_deref(), now, step);
                }
            }
        }
    }

    fn on_update(&mut self, u: StatusUpdate, now: Now, step: &mut Step) {
        self.stats.updates_received += 1;
        let mut ack_agent = u.agent_id.clone();
        match parse_attempt_task_id(&u.backend_task_id) {
            Some((tid, n)) => {
                let tid = tid.to_string();
                let current = match self.tasks.get(&tid) {
                    Some(t) => {
                        let same = t.backend_task_id.as_deref() == Some(u.backend_task_id.as_str());
                        if same && ack_agent.is_none() {
                            ack_agent = t.agent_id.as_deref().map(str::to_string);
                        }
                        same && t.attempt == n && t.state.has_live_attempt()
                    }
                    None => false,
                };
                if current {
                    self.recon.pending.remove(&u.backend_task_id);
                    self.apply_update(&tid, &u, now, step);
                } else {
                    self.stats.stale_updates += 1;
                    self.recon.pending.remove(&u.backend_task_id);
                    let alive = matches!(
                        u.state,
                        BackendState::Staging
                            | BackendState::Starting
                            | BackendState::Running
                            | BackendState::Killing
                    );
                    let ours = self.tasks.contains_key(&tid) || self.terminal.contains_key(&tid);
                    if alive && ours {
                        // An attempt we gave up on is running: stop it, a task runs once.
                        tracing::warn!(backend_task_id = %u.backend_task_id, state = u.state.mesos_name(),
                            "an old attempt reports itself alive; killing it");
                        self.stats.kills_sent += 1;
                        step.actions.push(Action::Kill {
                            backend_task_id: u.backend_task_id.clone(),
                            agent_id: u.agent_id.clone(),
                            grace_secs: Some(self.cfg.kill_grace_secs),
                        });
                    }
                }
            }
            None => {
                self.stats.stale_updates += 1;
                tracing::debug!(backend_task_id = %u.backend_task_id, "update for a task id we never made");
            }
        }
        if let Some(uuid) = u.uuid {
            match ack_agent {
                Some(agent_id) => {
                    self.stats.acks += 1;
                    step.actions.push(Action::Acknowledge {
                        agent_id,
                        backend_task_id: u.backend_task_id,
                        uuid,
                    });
                }
                None => tracing::warn!(backend_task_id = %u.backend_task_id,
                    "update with a uuid but no agent id: cannot acknowledge it"),
            }
        }
    }

    fn apply_update(&mut self, tid: &str, u: &StatusUpdate, now: Now, step: &mut Step) {
        let t = self.tasks.get_mut(tid).expect("checked by caller");
        if let Some(unc) = t.unconfirmed.take() {
            let unknown_to_master = matches!(
                u.state,
                BackendState::Gone | BackendState::GoneByOperator | BackendState::Unknown
            );
            if unknown_to_master && !unc.voided {
                // An ACCEPT of this attempt may still reach the master and launch it.
                tracing::debug!(backend_task_id = %u.backend_task_id, state = u.state.mesos_name(),
                    "not final for an unconfirmed launch whose offers are not void yet");
                t.unconfirmed = Some(unc);
                return;
            }
            if u.state == BackendState::Staging && t.state == TaskState::Launching {
                // Known to the master: the launch goes on (a STAGING changes no state).
                t.message = Some(format!(
                    "attempt {}: the master has it ({}); launching",
                    t.attempt,
                    u.state.mesos_name()
                ));
                step.changes.push(change_of(t, now));
            }
        }
        let reconciled_end = u.source == Some(UpdateSource::Master)
            && u.reason.as_deref() == Some("REASON_RECONCILIATION")
            && matches!(u.state, BackendState::Failed | BackendState::Error);
        if reconciled_end {
            if t.held_end.is_none() {
                let at = now.instant + RECONCILED_END_GRACE;
                t.held_end = Some((at, Box::new(u.clone())));
                self.held_timers.insert((at, tid.to_string()));
            }
            return;
        }
        self.release_held_end(tid);
        self.apply_update_now(tid, u, now, step);
    }

    /// Forgets a held reconciliation answer (the agent's own update came, or the task ended).
    fn release_held_end(&mut self, tid: &str) -> Option<Box<StatusUpdate>> {
        let (at, u) = self.tasks.get_mut(tid)?.held_end.take()?;
        self.held_timers.remove(&(at, tid.to_string()));
        Some(u)
    }

    /// Applies the reconciliation answers whose grace ran out without the agent's update.
    fn fire_held_ends(&mut self, now: Now, step: &mut Step) {
        while let Some((at, tid)) = self.held_timers.first().cloned() {
            if at > now.instant {
                break;
            }
            self.held_timers.pop_first();
            let held = self.tasks.get_mut(&tid).and_then(|t| t.held_end.take());
            if let Some((_, u)) = held {
                self.apply_update_now(&tid, &u, now, step);
            }
        }
    }

    fn apply_update_now(&mut self, tid: &str, u: &StatusUpdate, now: Now, step: &mut Step) {
        let t = self.tasks.get_mut(tid).expect("checked by caller");
        if t.agent_id.is_none() {
            t.agent_id = u.agent_id.as_deref().map(|a| self.agents.get(a));
        }
        t.last_backend_state = Some(u.state);
        if u.message.is_some() {
            t.message = u.message.clone();
        }
        if u.reason.is_some() {
            t.reason = u.reason.clone();
        }
        if u.exit_code.is_some() {
            t.exit_code = u.exit_code;
        }
        let n = t.attempt;
        let name = u.state.mesos_name();
        let launch_phase = u
            .reason
            .as_deref()
            .is_some_and(|r| LAUNCH_PHASE_REASONS.contains(&r));
        let never_started = u
            .reason
            .as_deref()
            .is_some_and(|r| NEVER_STARTED_REASONS.contains(&r));
        let detail = describe(u);
        use BackendState as B;
        let next = match u.state {
            // STAGING (only reconciliation reports it): the agent has the task but has not
            // started it, and may still be fetching its sandbox files.
            B::Staging => Next::Live(TaskState::Launching),
            B::Starting => Next::Live(TaskState::Starting),
            B::Running => Next::Live(TaskState::Running),
            B::Killing => Next::Live(TaskState::Killing),
            B::Finished => Next::Terminal(TaskState::Succeeded, None),
            B::Failed | B::Error if !t.started && never_started => Next::LaunchFailed(format!(
                "attempt {n} did not start on its agent: {detail}"
            )),
            B::Failed | B::Error => Next::Terminal(TaskState::Failed, None),
            B::Killed => Next::Terminal(TaskState::Killed, None),
            // Offers withdrawn or rescinded, the agent gone meanwhile: not the task's doing.
            B::Dropped | B::Lost if !t.started && launch_phase => Next::LaunchVoid(format!(
                "attempt {n} was not launched: {detail}"
            )),
            B::Dropped => Next::LaunchFailed(format!("attempt {n} was not launched: {detail}")),
            B::Lost | B::Unreachable => Next::Live(TaskState::Unknown),
            B::Unknown | B::Gone | B::GoneByOperator if !t.started => Next::LaunchFailed(format!(
                "attempt {n} never reached an agent and the master does not know it: {detail}"
            )),
            B::Unknown | B::Gone | B::GoneByOperator => Next::Terminal(
                TaskState::Failed,
                Some(format!(
                    "attempt {n} is gone: the master answered {name}; whether it ran to the end is unknown{}",
                    u.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
                )),
            ),
        };
        match next {
            Next::Live(s) => {
                // The command has started: the agent fetched the sandbox files before.
                let running = !matches!(s, TaskState::Unknown | TaskState::Launching);
                if s != TaskState::Unknown {
                    t.started = true;
                }
                let s = if t.kill_requested && s != TaskState::Unknown {
                    TaskState::Killing
                } else {
                    s
                };
                let regress = match s {
                    TaskState::Launching => t.state != TaskState::Unknown,
                    TaskState::Starting => {
                        matches!(t.state, TaskState::Running | TaskState::Killing)
                    }
                    _ => false,
                };
                if s == t.state || regress {
                    return; // duplicate: nothing to commit
                }
                let old = t.state;
                t.state = s;
                self.counts[old as usize] -= 1;
                self.counts[s as usize] += 1;
                let mut change = change_of(t, now);
                if running && t.spec.has_secrets() {
                    // The agent has fetched what it needs: keep no secret any longer.
                    t.spec = Arc::new(t.spec.without_secrets());
                    change.spec = Some(t.spec.clone());
                }
                step.changes.push(change);
            }
            Next::Terminal(mut s, msg) => {
                if t.kill_requested && s == TaskState::Failed {
                    s = TaskState::Killed;
                }
                let msg = msg.or_else(|| t.message.clone());
                let (reason, code) = (t.reason.clone(), t.exit_code);
                self.finish(tid, s, msg, reason, code, now, step);
            }
            Next::LaunchFailed(what) => self.launch_failed(tid, what, false, now, step),
            Next::LaunchVoid(what) => self.launch_failed(tid, what, true, now, step),
        }
    }

    fn on_action_failed(&mut self, action: Action, error: &str, now: Now, step: &mut Step) {
        match action {
            Action::Launch { tasks, .. } => {
                for lt in tasks {
                    let failed = self.tasks.get(&lt.task_id).is_some_and(|t| {
                        t.state == TaskState::Launching
                            && t.backend_task_id.as_deref() == Some(lt.backend_task_id.as_str())
                    });
                    if failed {
                        self.recon.pending.remove(&lt.backend_task_id);
                        let what = format!(
                            "attempt {} was not launched: the ACCEPT call failed: {error}",
                            lt.attempt
                        );
                        self.launch_failed(&lt.task_id, what, false, now, step);
                    }
                }
            }
            Action::Suppress(_) => {
                self.suppressed = false;
                self.suppress_retry_at = Some(now.instant + self.cfg.revive_interval);
            }
            Action::Revive(_) => self.revive_wanted = true,
            Action::VoidOffers { .. } => {
                let initial = self.cfg.reconcile_backoff_initial;
                self.void_backoff = (self.void_backoff * 2)
                    .max(initial)
                    .min(self.cfg.reconcile_backoff_max);
                self.void_retry_at
                    .get_or_insert(now.instant + self.void_backoff);
            }
            // Unanswered reconciliation is retried by its backoff; kills by their timer; an
            // unacknowledged update is sent again by the agent; a failed decline only leaves
            // the offer to time out or be rescinded.
            Action::Reconcile(_)
            | Action::Kill { .. }
            | Action::Acknowledge { .. }
            | Action::Decline { .. } => {
                tracing::debug!(%error, "backend call failed; its retry is scheduled");
            }
        }
    }

    /// A launch got no answer: its attempts are held, unconfirmed, and its offers voided.
    /// Any other unanswered call is handled as a failed one.
    fn on_action_unconfirmed(&mut self, action: Action, error: &str, now: Now, step: &mut Step) {
        let Action::Launch {
            offer_ids, tasks, ..
        } = action
        else {
            return self.on_action_failed(action, error, now, step);
        };
        let shared: Arc<[String]> = offer_ids.into();
        let mut held = false;
        for lt in tasks {
            let Some(t) = self.tasks.get_mut(&lt.task_id) else {
                continue;
            };
            let same = t.backend_task_id.as_deref() == Some(lt.backend_task_id.as_str());
            if !same || !t.state.has_live_attempt() || t.started || t.unconfirmed.is_some() {
                continue;
            }
            t.unconfirmed = Some(Box::new(Unconfirmed {
                offer_ids: shared.clone(),
                voided: false,
            }));
            t.message = Some(format!(
                "attempt {}: no answer to its launch ({error}); the master may have it, so \
                 it is settled with the master before anything is relaunched",
                lt.attempt
            ));
            step.changes.push(change_of(t, now));
            held = true;
        }
        if held {
            tracing::warn!(offers = ?shared, %error,
                "a launch got no answer; its attempts are held until the master settles them");
            step.actions.push(Action::VoidOffers {
                offer_ids: shared.to_vec(),
            });
        }
    }

    /// The master took the DECLINE of an unconfirmed launch's offers: what it now answers
    /// about those attempts is final, so they are reconciled.
    fn on_offers_voided(&mut self, offer_ids: &[String], now: Now, step: &mut Step) {
        self.void_backoff = Duration::ZERO;
        let mut list: Vec<(String, Option<String>)> = Vec::new();
        for t in self.tasks.values_mut() {
            let Some(unc) = t.unconfirmed.as_mut() else {
                continue;
            };
            if unc.voided || *unc.offer_ids != *offer_ids {
                continue;
            }
            unc.voided = true;
            if let Some(b) = &t.backend_task_id {
                list.push((b.clone(), t.agent_id.as_deref().map(str::to_string)));
            }
        }
        if list.is_empty() || !self.connected {
            return;
        }
        list.sort();
        if self.recon.explicit {
            // One round at a time: these join it, and are asked about at once.
            self.recon.pending.extend(list.iter().cloned());
            self.stats.reconcile_calls += 1;
            step.actions.push(Action::Reconcile(list));
        } else {
            self.start_round(list, now, step);
        }
    }

    /// Sends the DECLINE again for every unconfirmed launch whose offers are not void yet.
    fn void_offers_again(&mut self, step: &mut Step) {
        let mut sets: Vec<Arc<[String]>> = self
            .tasks
            .values()
            .filter_map(|t| t.unconfirmed.as_ref())
            .filter(|u| !u.voided)
            .map(|u| u.offer_ids.clone())
            .collect();
        sets.sort();
        sets.dedup();
        for ids in sets {
            step.actions.push(Action::VoidOffers {
                offer_ids: ids.to_vec(),
            });
        }
    }

    // ---- transitions ----

    /// An attempt failed before its command ran: relaunch while retries are left. `free`:
    /// the cluster's doing (offers withdrawn, agent gone), which costs no retry.
    fn launch_failed(&mut self, tid: &str, what: String, free: bool, now: Now, step: &mut Step) {
        self.stats.launch_failures += 1;
        if free {
            if let Some(t) = self.tasks.get_mut(tid) {
                t.free_attempts += 1;
            }
        }
        self.release_held_end(tid);
        let t = self.tasks.get(tid).expect("checked by caller");
        if t.kill_requested {
            let msg = Some(format!("killed before it started ({what})"));
            let reason = t.reason.clone();
            self.finish(tid, TaskState::Killed, msg, reason, None, now, step);
            return;
        }
        let limit = t.spec.retries.unwrap_or(self.cfg.launch_retries);
        // Attempts the cluster lost before they reached an agent are not the task's.
        let n = t.attempt - t.free_attempts.min(MAX_FREE_RELAUNCHES).min(t.attempt);
        if n > limit || t.prepared.is_none() {
            let why = if t.prepared.is_none() {
                "the spec can no longer be launched".to_string()
            } else {
                format!("no launch retries left ({limit} allowed)")
            };
            let msg = Some(format!("{what}; {why}"));
            let reason = t.reason.clone();
            self.finish(tid, TaskState::Failed, msg, reason, None, now, step);
            return;
        }
        self.stats.relaunches += 1;
        let t = self.tasks.get_mut(tid).expect("checked above");
        let old = t.state;
        t.state = TaskState::Queued;
        t.message = Some(if free && t.free_attempts <= MAX_FREE_RELAUNCHES {
            format!("{what}; relaunching (the cluster's doing: no retry counted)")
        } else {
            format!("{what}; relaunching (retry {n} of {limit})")
        });
        t.started = false;
        t.unconfirmed = None;
        self.counts[old as usize] -= 1;
        self.counts[TaskState::Queued as usize] += 1;
        step.changes.push(change_of(t, now));
        self.remove_kill_timer(tid);
        self.enqueue(tid, now.instant);
        self.revive_wanted = true;
    }

    /// Moves a task to a terminal state: one change, then it is forgotten (but remembered as
    /// terminal).
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        tid: &str,
        state: TaskState,
        message: Option<String>,
        reason: Option<String>,
        exit_code: Option<i32>,
        now: Now,
        step: &mut Step,
    ) {
        self.remove_kill_timer(tid);
        self.release_held_end(tid);
        let Some(mut t) = self.tasks.remove(tid) else {
            return;
        };
        if let Some(b) = &t.backend_task_id {
            self.recon.pending.remove(b);
        }
        self.counts[t.state as usize] -= 1;
        t.state = state;
        t.message = message;
        t.reason = reason;
        t.exit_code = exit_code;
        let mut change = change_of(&t, now);
        if t.spec.has_secrets() {
            change.spec = Some(Arc::new(t.spec.without_secrets()));
        }
        step.changes.push(change);
        match state {
            TaskState::Succeeded => self.stats.succeeded += 1,
            TaskState::Killed => self.stats.killed += 1,
            _ => self.stats.failed += 1,
        }
        self.remember_terminal(tid, state);
    }

    fn remember_terminal(&mut self, tid: &str, state: TaskState) {
        if self.cfg.remember_terminal == 0 {
            return;
        }
        if self.terminal.insert(tid.to_string(), state).is_none() {
            self.terminal_order.push_back(tid.to_string());
        }
        while self.terminal_order.len() > self.cfg.remember_terminal {
            if let Some(old) = self.terminal_order.pop_front() {
                self.terminal.remove(&old);
            }
        }
    }

    // ---- kills ----

    fn send_kill(&mut self, tid: &str, now: Now, step: &mut Step) {
        self.remove_kill_timer(tid);
        let Some(t) = self.tasks.get_mut(tid) else {
            return;
        };
        let grace = t.spec.kill_grace_period.unwrap_or(self.cfg.kill_grace_secs);
        if let Some(b) = &t.backend_task_id {
            self.stats.kills_sent += 1;
            step.actions.push(Action::Kill {
                backend_task_id: b.clone(),
                agent_id: t.agent_id.as_deref().map(str::to_string),
                grace_secs: Some(grace),
            });
        }
        let at = now.instant
            + Duration::try_from_secs_f64(grace).unwrap_or_default()
            + self.cfg.kill_retry_after;
        t.kill_at = Some(at);
        self.kill_timers.insert((at, tid.to_string()));
    }

    fn remove_kill_timer(&mut self, tid: &str) {
        if let Some(t) = self.tasks.get_mut(tid) {
            if let Some(at) = t.kill_at.take() {
                self.kill_timers.remove(&(at, tid.to_string()));
            }
        }
    }

    /// Fails the tasks that have waited queued longer than `queued_timeout`, with the reason
    /// they waited.
    fn fire_queue_timeouts(&mut self, now: Now, step: &mut Step) {
        while let Some((at, id)) = self.queue_timers.first().cloned() {
            if at > now.instant {
                return;
            }
            self.queue_timers.pop_first();
            let due = self
                .tasks
                .get(&id)
                .is_some_and(|t| t.state == TaskState::Queued && t.queue_deadline == Some(at));
            if !due {
                continue;
            }
            let limit = self.cfg.queued_timeout.map_or(0.0, |d| d.as_secs_f64());
            let why = self.tasks[&id]
                .message
                .as_deref()
                .and_then(|m| m.strip_prefix(WAITING))
                .unwrap_or("no offer could hold it")
                .to_string();
            self.dequeue(&id);
            let msg = format!("queued for longer than queued_timeout ({limit} s): {why}");
            self.finish(&id, TaskState::Failed, Some(msg), None, None, now, step);
        }
    }

    fn fire_kills(&mut self, now: Now, step: &mut Step) {
        let due: Vec<String> = self
            .kill_timers
            .iter()
            .take_while(|(at, _)| *at <= now.instant)
            .map(|(_, id)| id.clone())
            .collect();
        for id in due {
            let live = self
                .tasks
                .get(&id)
                .is_some_and(|t| t.kill_requested && t.state.has_live_attempt());
            if live {
                self.send_kill(&id, now, step);
            } else {
                self.remove_kill_timer(&id);
            }
        }
    }

    // ---- queue ----

    fn enqueue(&mut self, tid: &str, now: Instant) {
        if let Some(limit) = self.cfg.queued_timeout {
            let at = now + limit;
            self.tasks.get_mut(tid).expect("held").queue_deadline = Some(at);
            self.queue_timers.insert((at, tid.to_string()));
        }
        let t = self.tasks.get(tid).expect("held");
        let Some(prepared) = &t.prepared else {
            return;
        };
        let key = ClassKey::of(&prepared.demand);
        let ci = match self.class_index.get(&key) {
            Some(&ci) => ci,
            None => {
                let class = Class {
                    key: key.clone(),
                    demand: prepared.demand.clone(),
                    queue: BTreeMap::new(),
                    checked: 0,
                };
                let ci = match self.free_classes.pop() {
                    Some(ci) => {
                        self.classes[ci] = Some(class);
                        ci
                    }
                    None => {
                        self.classes.push(Some(class));
                        self.classes.len() - 1
                    }
                };
                self.class_index.insert(key, ci);
                ci
            }
        };
        let seq = t.seq;
        self.classes[ci]
            .as_mut()
            .expect("indexed class")
            .queue
            .insert(seq, tid.to_string());
        self.tasks.get_mut(tid).expect("held").class = Some(ci);
    }

    fn dequeue(&mut self, tid: &str) {
        let Some(t) = self.tasks.get_mut(tid) else {
            return;
        };
        let Some(ci) = t.class.take() else {
            return;
        };
        let seq = t.seq;
        let empty = match self.classes[ci].as_mut() {
            Some(c) => {
                c.queue.remove(&seq);
                c.queue.is_empty()
            }
            None => false,
        };
        if empty {
            self.drop_class(ci);
        }
    }

    fn drop_class(&mut self, ci: usize) {
        if let Some(c) = self.classes[ci].take() {
            self.class_index.remove(&c.key);
            self.free_classes.push(ci);
        }
    }

    // ---- bookkeeping after every input ----

    fn take_pending(&mut self) -> Step {
        self.pending_since = None;
        std::mem::take(&mut self.pending)
    }

    /// Completes a finished explicit reconciliation and keeps SUPPRESS/REVIVE in line with the
    /// queue.
    fn after(&mut self, now: Now, step: &mut Step) {
        if !self.connected {
            return;
        }
        if self.recon.explicit && self.recon.pending.is_empty() {
            self.start_round(Vec::new(), now, step);
        }
        if self.counts[TaskState::Queued as usize] == 0 {
            self.revive_wanted = false;
            let blocked = self.suppress_retry_at.is_some_and(|t| t > now.instant);
            if !self.suppressed && !blocked {
                step.actions.push(Action::Suppress(Vec::new()));
                self.suppressed = true;
                self.suppress_retry_at = None;
            }
        } else if self.revive_wanted || self.suppressed {
            // A suppressed framework gets no offer at all until it revives, so that REVIVE
            // goes out at once; the interval only spaces the REVIVEs that clear decline
            // filters while offers still come.
            let due = self.suppressed
                || self
                    .last_revive
                    .is_none_or(|t| now.instant >= t + self.cfg.revive_interval);
            if due {
                step.actions.push(Action::Revive(Vec::new()));
                self.last_revive = Some(now.instant);
                self.suppressed = false;
                self.revive_wanted = false;
            } else {
                self.revive_wanted = true;
            }
        }
    }
}

#[cfg(test)]
impl Core {
    /// Checks the bookkeeping: per-state counts, queue membership, classes, kill timers.
    pub(crate) fn assert_consistent(&self) {
        let mut counts = [0usize; 9];
        for (id, t) in &self.tasks {
            assert_eq!(&t.id, id);
            assert!(!t.state.is_terminal(), "{id} is terminal but held");
            counts[t.state as usize] += 1;
            match (t.state, t.class) {
                (TaskState::Queued, Some(ci)) => {
                    let c = self.classes[ci].as_ref().expect("class of a queued task");
                    assert_eq!(c.queue.get(&t.seq), Some(id), "{id} in its class queue");
                }
                (TaskState::Queued, None) => panic!("{id} queued without a class"),
                (_, Some(_)) => panic!("{id} is {} but still in a class", t.state),
                (_, None) => {}
            }
            if let Some(at) = t.kill_at {
                assert!(self.kill_timers.contains(&(at, id.clone())));
            }
            if let Some((at, _)) = &t.held_end {
                assert!(self.held_timers.contains(&(*at, id.clone())));
            }
        }
        assert_eq!(
            self.held_timers.len(),
            self.tasks.values().filter(|t| t.held_end.is_some()).count()
        );
        assert_eq!(counts, self.counts);
        let queued: usize = self.classes.iter().flatten().map(|c| c.queue.len()).sum();
        assert_eq!(queued, counts[TaskState::Queued as usize]);
        for c in self.classes.iter().flatten() {
            assert!(!c.queue.is_empty(), "empty classes are dropped");
            assert!(self.class_index.contains_key(&c.key));
        }
        assert_eq!(
            self.kill_timers.len(),
            self.tasks.values().filter(|t| t.kill_at.is_some()).count()
        );
    }
}

/// An offer's agent id, hostname and agent URL, interned.
type AgentNames = (Arc<str>, Arc<str>, Option<Arc<str>>);

/// One shared copy of each agent id, hostname and URL: with thousands of tasks per agent,
/// a copy per task would be most of what a running task costs. Grows with the agents seen.
#[derive(Debug, Default, Clone)]
struct Interner(std::collections::HashSet<Arc<str>>);

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(a.clone());
        a
    }

    fn intern(&mut self, s: Option<String>) -> Option<Arc<str>> {
        s.map(|s| self.get(&s))
    }
}

/// A change carrying the task's current fields.
/// Sets (or, with `None`, clears) the message saying why a queued task waits, with a change
/// when it differs. A message of another kind (a relaunch's) is left as it is: it stays until
/// the next launch.
fn set_waiting(t: &mut TaskView, msg: Option<&str>, now: Now, step: &mut Step) {
    let replaceable = t.message.as_deref().is_none_or(|m| m.starts_with(WAITING));
    if replaceable && t.message.as_deref() != msg {
        t.message = msg.map(str::to_string);
        step.changes.push(change_of(t, now));
    }
}

/// Why tasks of `demand` cannot run on any agent seen so far, or `None` when one of them
/// could hold such a task (it then only waits for room).
fn waiting_reason(demand: &Demand, seen: &HashMap<String, SeenAgent>) -> Option<String> {
    let matching: Vec<&SeenAgent> = seen
        .values()
        .filter(|a| satisfies(&a.offer, &demand.constraints))
        .collect();
    if matching.is_empty() {
        return Some(format!(
            "{WAITING}none of the {} agent(s) that offered so far matches the task's \
             constraints",
            seen.len()
        ));
    }
    let holds = |a: &&SeenAgent| (0..3).all(|i| a.largest[i] >= demand.scalars[i]);
    if matching.iter().any(holds) {
        return None;
    }
    let amounts = |v: &[i64; 3]| {
        let mut parts = vec![
            format!("{} cpus", from_milli(v[0])),
            format!("{} MB", from_milli(v[1])),
        ];
        if demand.scalars[2] > 0 {
            parts.push(format!("{} MB of disk", from_milli(v[2])));
        }
        parts.join(", ")
    };
    let best = matching
        .iter()
        .max_by_key(|a| (a.largest[0], a.largest[1]))
        .expect("not empty");
    Some(format!(
        "{WAITING}no agent has offered {} at once yet (the largest offer so far: {}); the task \
         stays queued until one does",
        amounts(&demand.scalars),
        amounts(&best.largest)
    ))
}

fn change_of(t: &TaskView, now: Now) -> Change {
    Change {
        task_id: t.id.clone(),
        state: t.state,
        attempt: t.attempt,
        backend_task_id: None,
        agent_id: t.agent_id.as_deref().map(str::to_string),
        hostname: t.hostname.as_deref().map(str::to_string),
        agent_url: t.agent_url.as_deref().map(str::to_string),
        message: t.message.clone(),
        reason: t.reason.clone(),
        exit_code: t.exit_code,
        kill_requested: t.kill_requested,
        at: now.unix_ms,
        spec: None,
    }
}

/// `TASK_DROPPED (REASON_INVALID_OFFERS): message`.
fn describe(u: &StatusUpdate) -> String {
    let mut s = u.state.mesos_name().to_string();
    if let Some(r) = &u.reason {
        s.push_str(&format!(" ({r})"));
    }
    if let Some(m) = &u.message {
        s.push_str(&format!(": {m}"));
    }
    s
}
