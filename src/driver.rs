//! The async driver: owns all I/O and connects backend, core, store, timers and shutdown.
//!
//! One task owns the [`Core`] and `select!`s over backend events, commands from the API
//! (bounded channel), the core's next timer, and shutdown. Every step of the core is committed
//! to the store in one transaction *before* the actions it produced are sent, so an
//! acknowledgement always follows the commit of the state it acknowledges and a launch's
//! attempt is durable before ACCEPT leaves. Events that are already waiting are handled in one
//! batch and committed together, which is what makes thousands of updates per second cheap.

use crate::scheduler::types::{Action, BackendChannels, Event, Now};
use crate::scheduler::{Core, KillError, Step};
use crate::store::{Store, StoreError};
use crate::task::{
    new_task_id, PolicyError, SpecDefaults, SpecError, TaskRecord, TaskSpec, TaskState,
};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Most events handled before one commit.
const MAX_BATCH: usize = 2048;
/// Most tasks accepted in one submission.
pub const MAX_SUBMIT: usize = 20_000;

/// A request from the API to the driver.
#[derive(Debug)]
pub enum Request {
    Submit {
        specs: Vec<TaskSpec>,
        reply: oneshot::Sender<Result<Vec<TaskRecord>, SubmitError>>,
    },
    Kill {
        id: String,
        reply: oneshot::Sender<Result<TaskState, KillError>>,
    },
}

/// Why a submission was refused. Nothing is stored when any spec is refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Spec number `index` (0-based) is invalid.
    #[error("tasks[{index}].{}", .error)]
    Invalid { index: usize, error: SpecError },
    /// Spec number `index` asks for what the operator's policy forbids.
    #[error("tasks[{index}].{}", .error)]
    Forbidden { index: usize, error: PolicyError },
    #[error("too many tasks in one submission ({0}; at most {MAX_SUBMIT})")]
    TooMany(usize),
    #[error("no tasks given")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the scheduler is shutting down")]
    ShuttingDown,
}

/// Counters the driver keeps for `/metrics`. Read without locks.
#[derive(Debug, Default)]
pub struct Metrics {
    pub launches: AtomicU64,
    pub status_updates: AtomicU64,
    pub offers_received: AtomicU64,
    pub offers_declined: AtomicU64,
    pub reconnects: AtomicU64,
    pub acks: AtomicU64,
    pub commits: AtomicU64,
    /// 1 while subscribed to the backend.
    pub subscribed: AtomicU64,
    /// Duration of the last step that handled offers, in microseconds.
    pub last_matching_us: AtomicU64,
    /// Sum of offer-handling step durations (µs) and their count, for an average.
    pub matching_us_total: AtomicU64,
    pub matching_rounds: AtomicU64,
    /// Highest committed change-feed sequence number.
    pub last_seq: AtomicI64,
    /// What the driver sees of the cluster (subscription, agents, latest offers).
    pub cluster: crate::cluster::ClusterView,
}

/// What the API holds to talk to the driver.
#[derive(Debug, Clone)]
pub struct DriverHandle {
    tx: mpsc::Sender<Request>,
    pub metrics: Arc<Metrics>,
}

impl DriverHandle {
    /// Submits specs; returns the stored records (state `queued`).
    pub async fn submit(&self, specs: Vec<TaskSpec>) -> Result<Vec<TaskRecord>, SubmitError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Submit { specs, reply })
            .await
            .map_err(|_| SubmitError::ShuttingDown)?;
        rx.await.map_err(|_| SubmitError::ShuttingDown)?
    }

    /// Requests a kill; returns the task's state after the request.
    pub async fn kill(&self, id: &str) -> Result<TaskState, KillError> {
        let (reply, rx) = oneshot::channel();
        let req = Request::Kill {
            id: id.to_string(),
            reply,
        };
        if self.tx.send(req).await.is_err() {
            return Err(KillError::NotFound);
        }
        rx.await.unwrap_or(Err(KillError::NotFound))
    }
}

/// Everything the driver needs to run.
pub struct DriverParts {
    pub core: Core,
    pub store: Store,
    pub backend: BackendChannels,
    pub defaults: SpecDefaults,
    /// Name under which the framework id is stored.
    pub framework_name: String,
    pub shutdown: CancellationToken,
}

/// Creates the request channel; the handle goes to the API, the receiver to [`run`].
pub fn channel() -> (DriverHandle, mpsc::Receiver<Request>) {
    let (tx, rx) = mpsc::channel(1024);
    (
        DriverHandle {
            tx,
            metrics: Arc::new(Metrics::default()),
        },
        rx,
    )
}

fn now() -> Now {
    Now {
        instant: tokio::time::Instant::now().into_std(),
        unix_ms: chrono::Utc::now().timestamp_millis(),
    }
}

/// Errors that stop the driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    #[error("the backend stopped")]
    BackendGone,
}

/// Runs the driver until shutdown. Restores active tasks from the store first. `requests`
/// outlives one run: a daemon that loses and regains the leadership runs the driver again on
/// the same channel.
pub async fn run(
    mut parts: DriverParts,
    metrics: Arc<Metrics>,
    requests: &mut mpsc::Receiver<Request>,
) -> Result<(), DriverError> {
    metrics
        .last_seq
        .store(parts.store.head_seq().await?, Ordering::Relaxed);
    let active = parts.store.load_active().await?;
    tracing::info!(tasks = active.len(), "restored active tasks");
    parts.core.restore(active, now());
    let configured_limits = parts.defaults.max_cpus.is_some() || parts.defaults.max_mem.is_some();
    let mut driver = Driver {
        agent_sizes: Default::default(),
        outbox: Default::default(),
        configured_limits,
        core: parts.core,
        store: parts.store,
        actions: parts.backend.actions,
        defaults: parts.defaults,
        framework_name: parts.framework_name,
        metrics,
    };
    // Queued tasks restored from the store may need a revive.
    let step = driver.core.tick(now());
    driver.apply(step).await?;
    let mut events = parts.backend.events;
    let shutdown = parts.shutdown;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let deadline = driver.core.next_deadline();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let sender = driver.actions.clone();
        let waiting = !driver.outbox.is_empty();
        // Not biased: a steady stream of status updates must not starve submissions (nor
        // the reverse); the branches that are ready are taken in random order.
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // Actions go out as the backend takes them, while events keep being handled:
            // blocking on a full action channel while the backend blocks on a full event
            // channel would deadlock the two.
            permit = sender.reserve(), if waiting => match permit {
                Ok(permit) => {
                    if let Some(a) = driver.outbox.pop_front() {
                        permit.send(a);
                    }
                    driver.flush()?;
                }
                Err(_) => return Err(DriverError::BackendGone),
            },
            n = events.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    if shutdown.is_cancelled() { break; }
                    return Err(DriverError::BackendGone);
                }
                driver.handle_events(std::mem::take(&mut batch)).await?;
            }
            req = requests.recv() => match req {
                Some(req) => driver.handle_request(req).await?,
                None => break,
            },
            _ = sleep => {
                let step = driver.core.tick(now());
                driver.apply(step).await?;
            }
        }
    }
    tracing::info!("driver stopped; running tasks keep running");
    Ok(())
}

struct Driver {
    core: Core,
    store: Store,
    actions: mpsc::Sender<Action>,
    /// Committed actions not yet taken by the backend, in order.
    outbox: std::collections::VecDeque<Action>,
    defaults: SpecDefaults,
    framework_name: String,
    metrics: Arc<Metrics>,
    /// Largest (cpus, mem) in thousandths each agent has offered.
    agent_sizes: std::collections::HashMap<String, (i64, i64)>,
    /// True when the limits came from the configuration (then offers do not change them).
    configured_limits: bool,
}

impl Driver {
    async fn handle_events(&mut self, events: Vec<Event>) -> Result<(), DriverError> {
        let mut total = Step::default();
        let mut offers_seen = false;
        let started = Instant::now();
        let n_events = events.len();
        let received_ms = chrono::Utc::now().timestamp_millis();
        for ev in events {
            self.metrics.cluster.observe(&ev, received_ms);
            match &ev {
                Event::Subscribed {
                    framework_id,
                    master,
                    ..
                } => {
                    self.store
                        .set_framework_id(&self.framework_name, framework_id)
                        .await?;
                    self.metrics.subscribed.store(1, Ordering::Relaxed);
                    tracing::info!(%framework_id, master = master.as_deref().unwrap_or("-"), "subscribed");
                }
                Event::Disconnected { reason } => {
                    self.metrics.subscribed.store(0, Ordering::Relaxed);
                    self.metrics.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%reason, "disconnected from the backend");
                }
                Event::Error(message) => {
                    self.metrics.subscribed.store(0, Ordering::Relaxed);
                    tracing::warn!(%message, "backend error");
                }
                Event::Offers(offers) => {
                    offers_seen = true;
                    self.learn_agent_sizes(offers);
                    self.metrics
                        .offers_received
                        .fetch_add(offers.len() as u64, Ordering::Relaxed);
                }
                Event::Update(_) => {
                    self.metrics.status_updates.fetch_add(1, Ordering::Relaxed);
                }
                Event::ActionFailed {
                    action,
                    error,
                    fatal,
                } => {
                    tracing::warn!(action = action_name(action), %error, fatal, "action failed");
                }
                Event::ActionUnconfirmed { action, error } => {
                    tracing::warn!(action = action_name(action), %error, "action unanswered");
                }
                _ => {}
            }
            let step = self.core.handle_event(ev, now());
            total.changes.extend(step.changes);
            total.actions.extend(step.actions);
        }
        if offers_seen {
            let us = started.elapsed().as_micros() as u64;
            self.metrics.last_matching_us.store(us, Ordering::Relaxed);
            self.metrics
                .matching_us_total
                .fetch_add(us, Ordering::Relaxed);
            self.metrics.matching_rounds.fetch_add(1, Ordering::Relaxed);
        }
        let handled = started.elapsed();
        let (changes, actions) = (total.changes.len(), total.actions.len());
        self.apply(total).await?;
        tracing::debug!(
            events = n_events,
            changes,
            actions,
            handle_us = handled.as_micros() as u64,
            commit_us = (started.elapsed() - handled).as_micros() as u64,
            "batch"
        );
        Ok(())
    }

    /// Remembers the largest cpus/mem each agent has offered, so that a spec asking for more
    /// than any agent has is refused at submission instead of waiting forever.
    fn learn_agent_sizes(&mut self, offers: &[crate::scheduler::types::Offer]) {
        use crate::scheduler::types::{from_milli, Quantity};
        for o in offers {
            let total = |name: &str| -> i64 {
                o.resources
                    .iter()
                    .filter(|r| r.name == name && !r.flavour.revocable)
                    .map(|r| match r.quantity {
                        Quantity::Scalar(m) => m,
                        _ => 0,
                    })
                    .sum()
            };
            let seen = self.agent_sizes.entry(o.agent_id.clone()).or_default();
            seen.0 = seen.0.max(total("cpus"));
            seen.1 = seen.1.max(total("mem"));
        }
        let (cpus, mem) = self
            .agent_sizes
            .values()
            .fold((0, 0), |(c, m), (ac, am)| (c.max(*ac), m.max(*am)));
        if !self.configured_limits {
            self.defaults.max_cpus = Some(from_milli(cpus));
            self.defaults.max_mem = Some(from_milli(mem));
        }
    }

    async fn handle_request(&mut self, req: Request) -> Result<(), DriverError> {
        let started = Instant::now();
        match req {
            Request::Submit { specs, reply } => match self.store_submission(specs).await {
                Ok(records) => {
                    tracing::debug!(
                        tasks = records.len(),
                        store_us = started.elapsed().as_micros() as u64,
                        "submission stored"
                    );
                    // Stored as queued: the client may know them now. What the core makes of
                    // them must be committed too; if that fails the driver stops, and the next
                    // start finds the tasks queued in the store.
                    let _ = reply.send(Ok(records.clone()));
                    let step = self.core.submit(records, now());
                    self.apply(step).await?;
                }
                Err(e) => {
                    if let SubmitError::Store(s) = &e {
                        tracing::error!(error = %s, "could not store a submission");
                    }
                    let _ = reply.send(Err(e));
                }
            },
            Request::Kill { id, reply } => match self.core.kill(&id, now()) {
                Ok(step) => {
                    self.apply(step).await?;
                    let state = self.core.state_of(&id).unwrap_or(TaskState::Killed);
                    let _ = reply.send(Ok(state));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
        }
        Ok(())
    }

    /// Checks and stores a submission (all of it or nothing), as queued tasks.
    async fn store_submission(
        &mut self,
        specs: Vec<TaskSpec>,
    ) -> Result<Vec<TaskRecord>, SubmitError> {
        if specs.is_empty() {
            return Err(SubmitError::Empty);
        }
        if specs.len() > MAX_SUBMIT {
            return Err(SubmitError::TooMany(specs.len()));
        }
        let at = chrono::Utc::now().timestamp_millis();
        let mut records = Vec::with_capacity(specs.len());
        for (index, mut spec) in specs.into_iter().enumerate() {
            // As submitted, to name an `executor_config` key that the policy refuses.
            let explicit = spec.executor_config.is_some().then(|| spec.clone());
            spec.normalize(&self.defaults)
                .map_err(|error| SubmitError::Invalid { index, error })?;
            let policy = &self.core.config().policy;
            policy.check(&spec).map_err(|e| SubmitError::Forbidden {
                index,
                error: match &explicit {
                    Some(x) => policy.attribute(e, x),
                    None => e,
                },
            })?;
            records.push(TaskRecord::queued(new_task_id(), spec, at));
        }
        let events = self.store.insert_tasks(&records, at).await?;
        for (r, e) in records.iter_mut().zip(&events) {
            r.seq = e.seq;
        }
        if let Some(last) = events.last() {
            self.metrics.last_seq.fetch_max(last.seq, Ordering::Relaxed);
        }
        Ok(records)
    }

    /// Commits the step's changes, then queues its actions for the backend, in order.
    async fn apply(&mut self, step: Step) -> Result<(), DriverError> {
        if !step.changes.is_empty() {
            let events = self.store.commit(&step.changes).await?;
            self.metrics.commits.fetch_add(1, Ordering::Relaxed);
            if let Some(last) = events.last() {
                self.metrics.last_seq.fetch_max(last.seq, Ordering::Relaxed);
            }
        }
        for action in step.actions {
            self.metrics.cluster.observe_action(&action);
            match &action {
                Action::Launch { tasks, .. } => {
                    self.metrics
                        .launches
                        .fetch_add(tasks.len() as u64, Ordering::Relaxed);
                }
                Action::Decline { offer_ids, .. } => {
                    self.metrics
                        .offers_declined
                        .fetch_add(offer_ids.len() as u64, Ordering::Relaxed);
                }
                Action::Acknowledge { .. } => {
                    self.metrics.acks.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            self.outbox.push_back(action);
        }
        self.flush()
    }

    /// Hands queued actions to the backend as far as its channel has room; the rest wait in
    /// the outbox for the main loop.
    fn flush(&mut self) -> Result<(), DriverError> {
        use tokio::sync::mpsc::error::TrySendError;
        while let Some(a) = self.outbox.pop_front() {
            match self.actions.try_send(a) {
                Ok(()) => {}
                Err(TrySendError::Full(a)) => {
                    self.outbox.push_front(a);
                    break;
                }
                Err(TrySendError::Closed(_)) => return Err(DriverError::BackendGone),
            }
        }
        Ok(())
    }
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Launch { .. } => "launch",
        Action::Decline { .. } => "decline",
        Action::VoidOffers { .. } => "void offers",
        Action::Kill { .. } => "kill",
        Action::Acknowledge { .. } => "acknowledge",
        Action::Reconcile(_) => "reconcile",
        Action::Suppress(_) => "suppress",
        Action::Revive(_) => "revive",
    }
}

/// How long to wait for in-flight work at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
