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
use held::HeldSpec;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod held;
mod offers;
mod timers;
mod updates;

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

    #[cfg(test)]
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
    /// Parsed while queued, packed once launched (see [`held`]).
    spec: HeldSpec,
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
    /// The spec holds secrets (sandbox file contents, secret environment values) that are
    /// blanked once the attempt runs.
    secrets: bool,
    pub last_backend_state: Option<BackendState>,
    pub message: Option<String>,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    /// FIFO position: older tasks have smaller numbers.
    pub seq: u64,
    /// Resolved demand and command, held while the task is queued; `None` once it is
    /// launched (a relaunch prepares it again from the spec, and fails the task when the spec
    /// can no longer be launched), so that running tasks do not hold it.
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

impl TaskView {
    /// The task's spec (parsed again if the task is launched); `Err` says why it could not be.
    pub fn spec(&self) -> Result<Arc<TaskSpec>, String> {
        self.spec.get()
    }
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
    /// Boxed: a running task's view is ~300 bytes, and a table of them inline would be
    /// copied whole (both sizes live at once) each time it grows.
    tasks: HashMap<String, Box<TaskView>>,
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
        let secrets = rec.spec.has_secrets();
        let spec = Arc::new(rec.spec);
        let mut view = TaskView {
            id: rec.id.clone(),
            spec: HeldSpec::Parsed(spec.clone()),
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
            secrets,
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
            match prepare(&self.cfg, &spec) {
                Ok(p) => {
                    view.prepared = Some(Box::new(p));
                    self.counts[TaskState::Queued as usize] += 1;
                    self.tasks.insert(rec.id.clone(), Box::new(view));
                    self.enqueue(&rec.id, now.instant);
                    self.revive_wanted = true;
                }
                Err(e) => {
                    view.message = Some(format!("cannot be launched: {e}"));
                    self.counts[TaskState::Queued as usize] += 1;
                    self.tasks.insert(rec.id.clone(), Box::new(view));
                    let msg = Some(format!("cannot be launched: {e}"));
                    self.finish(&rec.id, TaskState::Failed, msg, None, None, now, step);
                }
            }
            return;
        }
        // Launched: prepared again if it is relaunched (see `launch_failed`).
        view.spec.pack();
        if view.kill_requested {
            view.kill_at = Some(now.instant);
            self.kill_timers.insert((now.instant, rec.id.clone()));
        }
        self.counts[view.state as usize] += 1;
        self.tasks.insert(rec.id, Box::new(view));
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

    #[cfg(test)]
    /// What the core holds about a non-terminal task.
    pub fn task(&self, id: &str) -> Option<&TaskView> {
        self.tasks.get(id).map(|t| &**t)
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
}

#[cfg(test)]
impl Core {
    /// Checks the bookkeeping: per-state counts, queue membership, classes, prepared specs,
    /// kill timers.
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
            // What a spec is prepared into is held while queued only (100,000 running tasks
            // do not keep it).
            assert_eq!(
                t.prepared.is_some(),
                t.state == TaskState::Queued,
                "{id} is {} and {} its prepared spec",
                t.state,
                if t.prepared.is_some() {
                    "holds"
                } else {
                    "lacks"
                }
            );
            // So is its spec parsed (launched, it is packed).
            assert_eq!(
                t.spec.is_parsed(),
                t.state == TaskState::Queued,
                "{id} is {} and its spec is parsed: {}",
                t.state,
                t.spec.is_parsed()
            );
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
