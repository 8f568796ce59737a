//! The async driver: owns all I/O and connects backend, core, store, timers and shutdown.
//!
//! One task owns the [`Core`] and `select!`s over backend events, commands from the API
//! (bounded channel), the core's next timer, and shutdown. Every step of the core is committed
//! to the store in one transaction *before* the actions it produced are sent, so an
//! acknowledgement always follows the commit of the state it acknowledges and a launch's
//! attempt is durable before ACCEPT leaves. Events that are already waiting are handled in one
//! batch and committed together, which is what makes thousands of updates per second cheap.
//!
//! Group commit: one commit is in flight at a time, and the driver keeps handling events while
//! it is. What they change waits in `pending` and rides the next commit, started as soon as the
//! one in flight is done; every action (an acknowledgement, a launch) waits for the commit of
//! the step that produced it and goes out in order.
//!
//! A commit that fails with a transient error (a database restart or failover, a lost
//! connection, a busy file, a full disk) is tried again with backoff for up to
//! `store_outage_limit` ([`crate::store::retry`]); meanwhile events are still taken in (up to
//! `MAX_PENDING` changes), nothing that depends on the commit is sent, and submissions and kills
//! are answered "unavailable" at once. Any other failure, or an outage past the limit, stops the
//! driver: nothing of its step, nor of any later one, is sent.

use crate::scheduler::types::{Action, BackendChannels, Event, Now};
use crate::scheduler::{Core, CoreStats, KillError, Step};
use crate::store::{RetryPolicy, Store, StoreError, StoreHealth};
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
/// Changes waiting for the commit in flight beyond which no more events are taken in (two
/// batches alive at once at most: the one committing and the next).
const MAX_PENDING: usize = MAX_BATCH;
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
    /// Whether the state store answers, and how often commits were retried.
    pub store: StoreHealth,
    /// Ended tasks deleted by `task_retention`.
    pub pruned_tasks: AtomicU64,
    /// The core's counters and gauges as of its last step (`None` until the driver runs, and
    /// on a standby daemon).
    pub core: std::sync::Mutex<Option<CoreStats>>,
}

impl Metrics {
    /// The core's figures as of its last step.
    pub fn core_stats(&self) -> Option<CoreStats> {
        self.core.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
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
    /// How long commits are retried through a database outage.
    pub store_retry: RetryPolicy,
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
    /// The backend stopped for good after this error (the master refused us).
    #[error("the backend stopped: {0}")]
    Backend(String),
    /// The master removed the framework: its id can never subscribe again.
    #[error(
        "the Mesos master removed framework {framework_id} ([mesos] framework_name = \
         {framework_name}): no scheduler subscribed again within its failover_timeout, or an \
         operator tore it down, and Mesos killed its tasks. That id cannot be used again: run \
         `airflow-mesos framework reset` (it shows what it will change and asks for --yes) to \
         forget it, then start the scheduler again"
    )]
    FrameworkRemoved {
        framework_id: String,
        framework_name: String,
    },
}

/// What the master's ERROR event says when the framework id was removed.
const FRAMEWORK_REMOVED: &str = "Framework has been removed";

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
    let mut driver = Driver {
        outbox: Default::default(),
        in_flight: None,
        pending: Step::default(),
        core: parts.core,
        store: parts.store,
        actions: parts.backend.actions,
        defaults: parts.defaults,
        framework_name: parts.framework_name,
        store_retry: parts.store_retry,
        backend_error: None,
        metrics,
    };
    // Queued tasks restored from the store may need a revive.
    let step = driver.core.tick(now());
    driver.apply(step);
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
        let committing = driver.in_flight.is_some();
        let room = driver.pending.changes.len() < MAX_PENDING;
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
            done = wait_commit(&mut driver.in_flight), if committing => driver.committed(done)?,
            n = events.recv_many(&mut batch, MAX_BATCH), if room => {
                if n == 0 {
                    if shutdown.is_cancelled() { break; }
                    return Err(driver.backend_gone().await);
                }
                driver.handle_events(std::mem::take(&mut batch)).await?;
            }
            req = requests.recv() => match req {
                Some(req) => driver.handle_request(req).await?,
                None => break,
            },
            _ = sleep => {
                let step = driver.core.tick(now());
                driver.apply(step);
            }
        }
    }
    // What was decided is committed (and its actions queued) before the driver stops.
    driver.settle().await?;
    *driver
        .metrics
        .core
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = None;
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
    store_retry: RetryPolicy,
    /// The last error the backend reported (it stops after a fatal one).
    backend_error: Option<String>,
    metrics: Arc<Metrics>,
    /// The commit under way and the actions of its steps.
    in_flight: Option<InFlight>,
    /// Decided while a commit was in flight: its changes ride the next commit, its actions
    /// wait for that commit.
    pending: Step,
}

/// A commit under way on its own task, and what waits for it.
struct InFlight {
    commit: tokio::task::JoinHandle<Result<Vec<crate::task::TaskEvent>, StoreError>>,
    actions: Vec<Action>,
    changes: usize,
    started: Instant,
}

/// The result of the commit in flight (which the caller then clears).
async fn wait_commit(
    in_flight: &mut Option<InFlight>,
) -> Result<Vec<crate::task::TaskEvent>, StoreError> {
    let Some(f) = in_flight else {
        return std::future::pending().await;
    };
    match (&mut f.commit).await {
        Ok(r) => r,
        // The commit task panicked or was cancelled: as good as a failed commit.
        Err(e) => Err(StoreError::WriterStopped {
            reason: format!("the commit task ended abnormally: {e}"),
        }),
    }
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
                    self.backend_error = Some(message.clone());
                }
                Event::Offers(offers) => {
                    offers_seen = true;
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
        self.apply(total);
        tracing::debug!(
            events = n_events,
            changes,
            actions,
            handle_us = handled.as_micros() as u64,
            queued_behind_a_commit = self.pending.changes.len(),
            "batch"
        );
        Ok(())
    }

    async fn handle_request(&mut self, req: Request) -> Result<(), DriverError> {
        if let Some(d) = self.metrics.store.degraded() {
            // The commit under way is being retried through an outage, which may last
            // minutes: say so at once rather than keep the client waiting.
            let error = StoreError::Unavailable { error: d.error };
            match req {
                Request::Submit { reply, .. } => {
                    let _ = reply.send(Err(SubmitError::Store(error)));
                }
                Request::Kill { reply, .. } => {
                    let _ = reply.send(Err(KillError::Unavailable(error.to_string())));
                }
            }
            return Ok(());
        }
        // A submission's insert and a kill's answer follow everything decided before them.
        self.settle().await?;
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
                    self.apply(step);
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
                    self.apply(step);
                    self.settle().await?;
                    let state = self.core.state_of(&id).unwrap_or(TaskState::Killed);
                    let _ = reply.send(Ok(state));
                }
                // The core forgets ended tasks at a restart; the store still knows them.
                Err(KillError::NotFound) => {
                    let answer = match self.store.get_task(&id).await {
                        Ok(Some(t)) => KillError::AlreadyTerminal(t.state),
                        Ok(None) => KillError::NotFound,
                        Err(e) => KillError::Unavailable(e.to_string()),
                    };
                    let _ = reply.send(Err(answer));
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

    /// Commits the step's changes, then queues its actions for the backend, in order: at once
    /// when there is nothing to commit nor a commit in flight; after the commit of its changes
    /// otherwise (one started now, or the next one when a commit is in flight).
    fn apply(&mut self, step: Step) {
        *self.metrics.core.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.core.stats());
        if self.in_flight.is_some() {
            self.pending.changes.extend(step.changes);
            self.pending.actions.extend(step.actions);
        } else if step.changes.is_empty() {
            self.release(step.actions);
        } else {
            self.start_commit(step);
        }
    }

    fn start_commit(&mut self, step: Step) {
        let store = self.store.clone();
        let changes = Arc::new(step.changes);
        let metrics = self.metrics.clone();
        let policy = self.store_retry.clone();
        self.in_flight = Some(InFlight {
            changes: changes.len(),
            started: Instant::now(),
            commit: tokio::spawn(async move {
                crate::store::retry(&metrics.store, &policy, "committing task changes", || {
                    store.commit_shared(changes.clone())
                })
                .await
            }),
            actions: step.actions,
        });
    }

    /// The commit in flight is done: its actions go out, and what waited for it is committed
    /// next (or, with nothing to commit, goes out too).
    fn committed(
        &mut self,
        done: Result<Vec<crate::task::TaskEvent>, StoreError>,
    ) -> Result<(), DriverError> {
        let Some(f) = self.in_flight.take() else {
            return Ok(());
        };
        let events = done?;
        tracing::debug!(
            changes = f.changes,
            actions = f.actions.len(),
            commit_us = f.started.elapsed().as_micros() as u64,
            "committed"
        );
        self.metrics.commits.fetch_add(1, Ordering::Relaxed);
        if let Some(last) = events.last() {
            self.metrics.last_seq.fetch_max(last.seq, Ordering::Relaxed);
        }
        self.release(f.actions);
        let next = std::mem::take(&mut self.pending);
        self.apply(next);
        self.flush()
    }

    /// Why the backend stopped: the last error it reported, if any.
    async fn backend_gone(&mut self) -> DriverError {
        match self.backend_error.take() {
            Some(m) if m.contains(FRAMEWORK_REMOVED) => DriverError::FrameworkRemoved {
                framework_id: match self.store.framework_id(&self.framework_name).await {
                    Ok(Some(id)) => id,
                    _ => "(unknown id)".to_string(),
                },
                framework_name: self.framework_name.clone(),
            },
            Some(m) => DriverError::Backend(m),
            None => DriverError::BackendGone,
        }
    }

    /// Waits until nothing is committing or waiting to be committed.
    async fn settle(&mut self) -> Result<(), DriverError> {
        while self.in_flight.is_some() {
            let done = wait_commit(&mut self.in_flight).await;
            self.committed(done)?;
        }
        Ok(())
    }

    /// Queues committed actions for the backend, in order.
    fn release(&mut self, actions: Vec<Action>) {
        for action in actions {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::types::{
        to_milli, BackendState, Flavour, Offer, Quantity, Resource, StatusUpdate,
    };
    use crate::scheduler::CoreConfig;

    /// A driver on a SQLite file, with the test as its backend.
    struct Harness {
        events: mpsc::Sender<Event>,
        actions: mpsc::Receiver<Action>,
        handle: DriverHandle,
        driver: tokio::task::JoinHandle<Result<(), DriverError>>,
        db: std::path::PathBuf,
        _dir: tempfile::TempDir,
    }

    async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("driver.db");
        let store = Store::connect(&format!("sqlite:{}", db.display()))
            .await
            .unwrap();
        let (events, events_rx) = mpsc::channel(64);
        let (actions_tx, actions) = mpsc::channel(64);
        let (handle, mut requests) = channel();
        let parts = DriverParts {
            core: Core::new(CoreConfig {
                default_image: Some("img".into()),
                ..CoreConfig::default()
            }),
            store,
            backend: BackendChannels {
                events: events_rx,
                actions: actions_tx,
            },
            defaults: SpecDefaults {
                image: Some("img".into()),
                cpus: 1.0,
                mem: 256.0,
                disk: 0.0,
                max_mem: None,
                max_cpus: None,
                containerizer: crate::task::Containerizer::Docker,
                uncontainerized: false,
            },
            framework_name: "fw".into(),
            store_retry: RetryPolicy {
                limit: Duration::from_secs(5),
                url: "sqlite:driver.db".into(),
                give_up: CancellationToken::new(),
            },
            shutdown: CancellationToken::new(),
        };
        let metrics = handle.metrics.clone();
        let driver = tokio::spawn(async move { run(parts, metrics, &mut requests).await });
        Harness {
            events,
            actions,
            handle,
            driver,
            db,
            _dir: dir,
        }
    }

    fn offer() -> Offer {
        let f = Flavour::plain("*");
        let scalar = |name: &str, v: f64| Resource {
            name: name.into(),
            quantity: Quantity::Scalar(to_milli(v)),
            flavour: f.clone(),
        };
        Offer {
            id: "o1".into(),
            agent_id: "a1".into(),
            hostname: "a1.example".into(),
            agent_url: None,
            resources: vec![scalar("cpus", 8.0), scalar("mem", 8192.0)],
            attributes: vec![],
            allocation_role: None,
        }
    }

    fn update(backend_task_id: &str, state: BackendState, uuid: u8) -> Event {
        Event::Update(StatusUpdate {
            backend_task_id: backend_task_id.into(),
            state,
            message: None,
            reason: None,
            source: None,
            agent_id: Some("a1".into()),
            uuid: Some(vec![uuid; 16]),
            timestamp: None,
            exit_code: None,
        })
    }

    impl Harness {
        /// The next action, skipping revives, suppresses and reconciliations.
        async fn next_action(&mut self) -> Action {
            loop {
                let a = tokio::time::timeout(Duration::from_secs(10), self.actions.recv())
                    .await
                    .expect("an action within 10 s")
                    .expect("the driver is running");
                if !matches!(
                    a,
                    Action::Revive(_) | Action::Suppress(_) | Action::Reconcile(_)
                ) {
                    return a;
                }
            }
        }

        /// Subscribes, submits one task and lets it launch; returns its backend task id.
        async fn launched_task(&mut self) -> String {
            self.events
                .send(Event::Subscribed {
                    framework_id: "fw-1".into(),
                    heartbeat_interval_secs: None,
                    master: None,
                })
                .await
                .unwrap();
            let rec = self
                .handle
                .submit(vec![TaskSpec::shell("true")])
                .await
                .unwrap();
            self.events
                .send(Event::Offers(vec![offer()]))
                .await
                .unwrap();
            match self.next_action().await {
                Action::Launch { tasks, .. } => {
                    assert_eq!(tasks.len(), 1);
                    assert!(tasks[0].backend_task_id.starts_with(&rec[0].id));
                    tasks[0].backend_task_id.clone()
                }
                other => panic!("expected a launch, got {other:?}"),
            }
        }

        /// A second connection to the database.
        async fn sql(&self, statement: &str) {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", self.db.display()))
                .await
                .unwrap();
            sqlx::query(statement).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
    }

    /// An update is acknowledged only once committed: when the commit that holds it fails,
    /// no acknowledgement goes out (the master resends the update to whoever leads next) and
    /// the driver stops.
    #[tokio::test]
    async fn a_failing_commit_blocks_the_acknowledgement() {
        let mut h = start().await;
        let task = h.launched_task().await;
        h.events
            .send(update(&task, BackendState::Starting, 1))
            .await
            .unwrap();
        match h.next_action().await {
            Action::Acknowledge {
                backend_task_id,
                uuid,
                ..
            } => assert_eq!(
                (backend_task_id.as_str(), uuid),
                (task.as_str(), vec![1; 16])
            ),
            other => panic!("expected the STARTING acknowledgement, got {other:?}"),
        }
        // From now on every commit fails.
        h.sql(
            "CREATE TRIGGER no_events BEFORE INSERT ON task_events \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        )
        .await;
        h.events
            .send(update(&task, BackendState::Running, 2))
            .await
            .unwrap();
        let stopped = tokio::time::timeout(Duration::from_secs(10), &mut h.driver)
            .await
            .expect("the driver stops")
            .unwrap();
        let err = stopped.expect_err("a failed commit stops the driver");
        assert!(err.to_string().contains("injected failure"), "{err}");
        while let Ok(a) = h.actions.try_recv() {
            assert!(
                !matches!(a, Action::Acknowledge { .. }),
                "acknowledged without a commit: {a:?}"
            );
        }
    }

    /// While a commit waits (here for the database's write lock, held by another connection),
    /// the update it holds is not acknowledged; updates arriving meanwhile are handled and
    /// ride the next commit, one for all of them, and their acknowledgements follow it.
    #[tokio::test]
    async fn updates_arriving_during_a_commit_ride_the_next_one() {
        let mut h = start().await;
        let task = h.launched_task().await;
        use sqlx::Connection;
        let mut blocker = sqlx::SqliteConnection::connect(&format!("sqlite:{}", h.db.display()))
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut blocker)
            .await
            .unwrap();
        let metrics = h.handle.metrics.clone();
        let commits = || metrics.commits.load(Ordering::Relaxed);
        let before = commits();
        h.events
            .send(update(&task, BackendState::Starting, 1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (state, uuid) in [(BackendState::Running, 2), (BackendState::Finished, 3)] {
            h.events.send(update(&task, state, uuid)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(h.handle.metrics.status_updates.load(Ordering::Relaxed), 3);
        while let Ok(a) = h.actions.try_recv() {
            assert!(
                !matches!(a, Action::Acknowledge { .. }),
                "acknowledged before the commit: {a:?}"
            );
        }
        assert_eq!(commits(), before, "the first commit still waits");
        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
        let mut acked = Vec::new();
        while acked.len() < 3 {
            if let Action::Acknowledge { uuid, .. } = h.next_action().await {
                acked.push(uuid[0]);
            }
        }
        assert_eq!(acked, [1, 2, 3], "in order");
        assert_eq!(commits(), before + 2, "RUNNING and FINISHED in one commit");
        let done = h.handle.metrics.last_seq.load(Ordering::Relaxed);
        assert!(done > 0);
    }
}
