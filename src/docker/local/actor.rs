//! The backend's loop: offers out, launches, kills and reconciliation in, the runners'
//! reports turned into status updates.

use super::*;
use crate::docker::{connect, engine_message, is_not_found};
use crate::scheduler::types::{
    Action, BackendState, Event, LaunchTask, StatusUpdate, UpdateSource,
};
use bollard::query_parameters::{RemoveContainerOptions, StopContainerOptions};
use bollard::Docker;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod adopt;

use super::launch::Launch;
use super::offers::OfferBook;
use super::sandbox::check_task_dir_name;
use adopt::is_terminal;

/// What a task runner tells the backend loop.
#[derive(Debug)]
pub(super) enum Report {
    Started {
        backend_task_id: String,
        container_id: String,
    },
    Exited {
        backend_task_id: String,
        exit: ExitInfo,
    },
    LaunchFailed {
        backend_task_id: String,
        message: String,
    },
    /// A kill arrived before the container started.
    Cancelled {
        backend_task_id: String,
    },
    Removed,
}

#[derive(Debug, Clone)]
pub(super) struct ExitInfo {
    pub(super) exit_code: Option<i32>,
    pub(super) oom_killed: bool,
    pub(super) error: Option<String>,
    pub(super) killed_marker: bool,
}

#[derive(Debug)]
pub(super) struct TaskEntry {
    container_id: Option<String>,
    state: BackendState,
    exit_code: Option<i32>,
    message: Option<String>,
    reason: Option<String>,
    kill_requested: bool,
    grace_secs: f64,
    cancel: CancellationToken,
    mem_mb: f64,
}

pub(super) struct Backend {
    cfg: LocalBackendConfig,
    docker: Docker,
    framework_id: String,
    agent_id: String,
    events: mpsc::Sender<Event>,
    reports_tx: mpsc::Sender<Report>,
    book: OfferBook,
    tasks: HashMap<String, TaskEntry>,
    /// uuid of an unacknowledged terminal update → its task.
    terminal_unacked: HashMap<Vec<u8>, String>,
    jobs: JoinSet<()>,
    /// The driver is gone: stop.
    closed: bool,
}

pub(super) async fn run(
    cfg: LocalBackendConfig,
    events: mpsc::Sender<Event>,
    mut actions: mpsc::Receiver<Action>,
    shutdown: CancellationToken,
) {
    // Connect, retrying with a capped backoff while the engine is down.
    let mut backoff = Duration::from_millis(500);
    let docker = loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = connect() => r,
        };
        match attempt {
            Ok(d) => break d,
            Err(e) => {
                tracing::warn!(error = %e, "local backend: Docker engine unreachable");
                if events
                    .send(Event::Disconnected {
                        reason: e.to_string(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    let (cpus, mem) = match (cfg.cpus, cfg.mem_mb) {
        (Some(c), Some(m)) => (c, m),
        (c, m) => {
            let info = docker.info().await.ok();
            let ncpu = info.as_ref().and_then(|i| i.ncpu).unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |n| n.get() as i64)
            });
            let mem_total = info.as_ref().and_then(|i| i.mem_total).unwrap_or(1 << 30);
            (
                c.unwrap_or(ncpu as f64),
                m.unwrap_or(((mem_total as f64 / (1024.0 * 1024.0)) * 0.9).floor()),
            )
        }
    };
    let (reports_tx, mut reports_rx) = mpsc::channel(256);
    let framework_id = cfg.framework_id();
    let agent_id = cfg.agent_id();
    let book = OfferBook::new(cpus, mem, cfg.disk_mb, cfg.ports, cfg.max_refuse);
    let mut b = Backend {
        cfg,
        docker,
        framework_id,
        agent_id,
        events,
        reports_tx,
        book,
        tasks: HashMap::new(),
        terminal_unacked: HashMap::new(),
        jobs: JoinSet::new(),
        closed: false,
    };
    if let Err(e) = tokio::fs::create_dir_all(&b.cfg.sandbox_dir).await {
        tracing::error!(dir = %b.cfg.sandbox_dir.display(), error = %e, "cannot create the sandbox directory");
    }
    let subscribed = Event::Subscribed {
        framework_id: b.framework_id.clone(),
        heartbeat_interval_secs: None,
        master: Some(format!("local docker on {}", b.cfg.hostname)),
    };
    b.emit(subscribed).await;
    b.adopt_existing().await;
    // Expired sandboxes are collected at start and then every quarter of the retention (at
    // most hourly), in the background.
    let gc_every = b
        .cfg
        .sandbox_retention
        .map(|r| (r / 4).clamp(Duration::from_secs(60), Duration::from_secs(3600)));
    let mut gc_at = gc_every.map(|_| tokio::time::Instant::now());

    while !b.closed {
        b.offer_if_due().await;
        let wake = b.book.wake_at();
        tokio::select! {
            _ = async { tokio::time::sleep_until(gc_at.expect("guarded")).await }, if gc_at.is_some() => {
                gc_at = gc_every.map(|e| tokio::time::Instant::now() + e);
                b.collect_sandboxes();
            }
            _ = shutdown.cancelled() => break,
            a = actions.recv() => match a {
                Some(a) => b.handle_action(a).await,
                None => break,
            },
            Some(r) = reports_rx.recv() => b.handle_report(r).await,
            Some(res) = b.jobs.join_next(), if !b.jobs.is_empty() => {
                if let Err(e) = res {
                    if e.is_panic() {
                        tracing::error!(error = %e, "local backend: a task runner panicked");
                    }
                }
            }
            _ = sleep_until_opt(wake) => {}
        }
    }
    // Dropping the JoinSet stops the runners; the containers keep running and are adopted
    // by the next start.
    b.jobs.shutdown().await;
}

pub(super) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => futures::future::pending().await,
    }
}

pub(super) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Backend {
    pub(super) async fn emit(&mut self, e: Event) {
        if self.events.send(e).await.is_err() {
            self.closed = true;
        }
    }

    /// Removes expired sandboxes of tasks this backend no longer holds, off the runtime.
    pub(super) fn collect_sandboxes(&mut self) {
        let Some(retention) = self.cfg.sandbox_retention else {
            return;
        };
        let live: HashSet<String> = self.tasks.keys().cloned().collect();
        let dir = self.cfg.sandbox_dir.clone();
        self.jobs.spawn(async move {
            let found = tokio::task::spawn_blocking(move || {
                collect_sandboxes(&dir, &live, retention, SystemTime::now())
            })
            .await;
            match found {
                Ok(Ok(removed)) if !removed.is_empty() => {
                    tracing::info!(count = removed.len(), "removed expired task sandboxes")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot list the sandbox directory"),
                _ => {}
            }
        });
    }

    pub(super) fn sandbox_of(&self, backend_task_id: &str) -> PathBuf {
        self.cfg.sandbox_dir.join(backend_task_id)
    }

    pub(super) async fn offer_if_due(&mut self) {
        // tokio's clock, so that a paused test clock governs the decline hold too.
        let now = tokio::time::Instant::now().into_std();
        if let Some(o) = self
            .book
            .next_offer(now, &self.agent_id, &self.cfg.hostname)
        {
            self.emit(Event::Offers(vec![o])).await;
        }
    }

    /// A status update from the "agent" (with a uuid to acknowledge).
    pub(super) async fn update(&mut self, id: &str, state: BackendState, source: UpdateSource) {
        let uuid = uuid::Uuid::new_v4().as_bytes().to_vec();
        let Some(t) = self.tasks.get_mut(id) else {
            return;
        };
        t.state = state;
        let is_terminal = is_terminal(state);
        let upd = StatusUpdate {
            backend_task_id: id.to_string(),
            state,
            message: t.message.clone(),
            reason: t.reason.clone(),
            source: Some(source),
            agent_id: Some(self.agent_id.clone()),
            uuid: Some(uuid.clone()),
            timestamp: Some(now_secs()),
            exit_code: t.exit_code,
        };
        if is_terminal {
            self.terminal_unacked.insert(uuid, id.to_string());
        }
        self.emit(Event::Update(upd)).await;
    }

    /// An answer without uuid (reconciliation, invalid launches), as a master sends them.
    pub(super) async fn master_update(
        &mut self,
        id: &str,
        state: BackendState,
        reason: &str,
        message: String,
        exit_code: Option<i32>,
    ) {
        let upd = StatusUpdate {
            backend_task_id: id.to_string(),
            state,
            message: Some(message),
            reason: Some(reason.to_string()),
            source: Some(UpdateSource::Master),
            agent_id: Some(self.agent_id.clone()),
            uuid: None,
            timestamp: Some(now_secs()),
            exit_code,
        };
        self.emit(Event::Update(upd)).await;
    }

    pub(super) async fn handle_action(&mut self, a: Action) {
        match a {
            Action::Launch {
                offer_ids,
                tasks,
                refuse_seconds: _,
                ..
            } => self.launch(offer_ids, tasks).await,
            Action::Decline {
                offer_ids,
                refuse_seconds,
            } => self
                .book
                .decline(&offer_ids, refuse_seconds, Instant::now()),
            // A launch here is carried out or refused in this process, never left unanswered;
            // a void is still answered, so the core's bookkeeping holds on either backend.
            Action::VoidOffers { offer_ids } => {
                self.book.decline(&offer_ids, 0.0, Instant::now());
                self.emit(Event::OffersVoided { offer_ids }).await;
            }
            Action::Kill {
                backend_task_id,
                grace_secs,
                ..
            } => self.kill(backend_task_id, grace_secs).await,
            Action::Acknowledge { uuid, .. } => {
                if let Some(id) = self.terminal_unacked.remove(&uuid) {
                    self.forget(&id);
                }
            }
            Action::Reconcile(list) => self.reconcile(list).await,
            Action::Suppress(_) => {
                self.book.suppress();
            }
            Action::Revive(_) => self.book.revive(),
        }
    }

    pub(super) async fn launch(&mut self, offer_ids: Vec<String>, tasks: Vec<LaunchTask>) {
        // Offers are never withdrawn under the framework (see [`OfferBook`]): one that is no
        // longer outstanding was used or declined already.
        let granted = self.book.take(&offer_ids);
        if !granted {
            for t in &tasks {
                self.master_update(
                    &t.backend_task_id,
                    BackendState::Dropped,
                    "REASON_INVALID_OFFERS",
                    format!("offer {} is no longer valid", offer_ids.join(",")),
                    None,
                )
                .await;
            }
            return;
        }
        for task in tasks {
            let id = task.backend_task_id.clone();
            if let Err(e) = check_task_dir_name(&id) {
                self.master_update(
                    &id,
                    BackendState::Error,
                    "REASON_TASK_INVALID",
                    e.to_string(),
                    None,
                )
                .await;
                continue;
            }
            if self.tasks.contains_key(&id) {
                self.master_update(
                    &id,
                    BackendState::Error,
                    "REASON_TASK_INVALID",
                    format!("task {id} is already running on this machine"),
                    None,
                )
                .await;
                continue;
            }
            let usage = Usage::of(&task);
            if !self.book.fits(&usage) {
                self.master_update(
                    &id,
                    BackendState::Error,
                    "REASON_TASK_INVALID",
                    "the task uses more resources than the offer holds".into(),
                    None,
                )
                .await;
                continue;
            }
            let sandbox = self.sandbox_of(&id);
            let spec = match container_spec(&task, &self.cfg, &self.framework_id, &sandbox) {
                Ok(s) => s,
                Err(e) => {
                    self.master_update(&id, BackendState::Error, "REASON_TASK_INVALID", e.0, None)
                        .await;
                    continue;
                }
            };
            self.book.hold(&id, usage.clone());
            let cancel = CancellationToken::new();
            self.tasks.insert(
                id.clone(),
                TaskEntry {
                    container_id: None,
                    state: BackendState::Staging,
                    exit_code: None,
                    message: None,
                    reason: None,
                    kill_requested: false,
                    grace_secs: task.kill_grace_secs,
                    cancel: cancel.clone(),
                    mem_mb: usage.mem as f64 / 1000.0,
                },
            );
            self.update(&id, BackendState::Starting, UpdateSource::Executor)
                .await;
            let job = Launch {
                docker: self.docker.clone(),
                backend_task_id: id,
                image: task.image.clone(),
                force_pull: task.force_pull,
                files: task
                    .spec
                    .files
                    .iter()
                    .map(|f| (f.path.clone(), f.content.clone()))
                    .collect(),
                sandbox,
                spec,
                registry: self.cfg.registry.clone(),
                pull_timeout: self.cfg.pull_timeout,
                reports: self.reports_tx.clone(),
                cancel,
            };
            self.jobs.spawn(job.run());
        }
    }

    pub(super) async fn kill(&mut self, id: String, grace: Option<f64>) {
        let sandbox = self.sandbox_of(&id);
        let Some(t) = self.tasks.get_mut(&id) else {
            // Not ours (anymore): say what we know, as a master would.
            self.reconcile(vec![(id, None)]).await;
            return;
        };
        if is_terminal(t.state) {
            return;
        }
        t.kill_requested = true;
        let grace = grace.unwrap_or(t.grace_secs).max(0.0);
        // Durable, so that a restarted backend still reports KILLED.
        let _ = tokio::fs::write(sandbox.join(KILL_MARKER), b"").await;
        match t.container_id.clone() {
            None => t.cancel.cancel(),
            Some(cid) => {
                let docker = self.docker.clone();
                self.jobs.spawn(async move {
                    let opts = StopContainerOptions {
                        t: Some(grace.ceil() as i32),
                        signal: None,
                    };
                    if let Err(e) = docker.stop_container(&cid, Some(opts)).await {
                        tracing::warn!(container = %cid, error = %engine_message(&e), "stopping a task container failed");
                    }
                });
            }
        }
    }

    pub(super) fn forget(&mut self, id: &str) {
        if let Some(t) = self.tasks.remove(id) {
            if let Some(cid) = t.container_id {
                let docker = self.docker.clone();
                let reports = self.reports_tx.clone();
                self.jobs.spawn(async move {
                    let opts = RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    };
                    if let Err(e) = docker.remove_container(&cid, Some(opts)).await {
                        if !is_not_found(&e) {
                            tracing::warn!(container = %cid, error = %engine_message(&e), "removing a finished task container failed");
                        }
                    }
                    let _ = reports.send(Report::Removed).await;
                });
            }
        }
    }

    pub(super) async fn reconcile(&mut self, list: Vec<(String, Option<String>)>) {
        let ids: Vec<String> = if list.is_empty() {
            let mut v: Vec<String> = self.tasks.keys().cloned().collect();
            v.sort();
            v
        } else {
            list.into_iter().map(|(id, _)| id).collect()
        };
        for id in ids {
            if let Some(t) = self.tasks.get(&id) {
                let (state, code, msg) = (t.state, t.exit_code, t.message.clone());
                let state = if state == BackendState::Staging {
                    BackendState::Starting
                } else {
                    state
                };
                let msg = msg.unwrap_or_else(|| "reconciliation".to_string());
                self.master_update(&id, state, "REASON_RECONCILIATION", msg, code)
                    .await;
            } else {
                self.master_update(
                    &id,
                    BackendState::Gone,
                    "REASON_RECONCILIATION",
                    format!("no container of task {id} on this machine"),
                    None,
                )
                .await;
            }
        }
    }

    pub(super) async fn handle_report(&mut self, r: Report) {
        match r {
            Report::Started {
                backend_task_id,
                container_id,
            } => {
                let Some(t) = self.tasks.get_mut(&backend_task_id) else {
                    return;
                };
                t.container_id = Some(container_id.clone());
                if t.kill_requested {
                    // The kill came while the container was being created: stop it now.
                    let grace = t.grace_secs;
                    let docker = self.docker.clone();
                    self.jobs.spawn(async move {
                        let opts = StopContainerOptions {
                            t: Some(grace.ceil() as i32),
                            signal: None,
                        };
                        let _ = docker.stop_container(&container_id, Some(opts)).await;
                    });
                }
                if t.state != BackendState::Running {
                    self.update(
                        &backend_task_id,
                        BackendState::Running,
                        UpdateSource::Executor,
                    )
                    .await;
                }
            }
            Report::Exited {
                backend_task_id,
                exit,
            } => {
                let Some(t) = self.tasks.get_mut(&backend_task_id) else {
                    return;
                };
                let killed = t.kill_requested || exit.killed_marker;
                let code = exit.exit_code;
                t.exit_code = code;
                let state = if killed {
                    t.message = Some(format!(
                        "killed at the framework's request (exit code {})",
                        code.map_or("unknown".to_string(), |c| c.to_string())
                    ));
                    t.reason = None;
                    BackendState::Killed
                } else if exit.oom_killed {
                    t.message = Some(format!(
                        "the container went over its memory limit of {} MB and was OOM-killed",
                        t.mem_mb
                    ));
                    t.reason = Some("REASON_CONTAINER_LIMITATION_MEMORY".into());
                    BackendState::Failed
                } else if code == Some(0) {
                    t.message = Some("command exited with code 0".into());
                    BackendState::Finished
                } else {
                    t.message = Some(match (&exit.error, code) {
                        (Some(e), _) if !e.is_empty() => format!("container error: {e}"),
                        // The engine can miss an OOM kill that comes within moments of
                        // the start (its OOM notification is not armed yet): say so.
                        (_, Some(137)) => format!(
                            "command was killed by SIGKILL (exit code 137), not at the \
                             framework's request; if it was near its memory limit of {} MB, \
                             it likely ran out of memory",
                            t.mem_mb
                        ),
                        (_, Some(c)) => format!("command exited with code {c}"),
                        _ => "the container ended and its exit code is unknown".into(),
                    });
                    BackendState::Failed
                };
                self.book.release(&backend_task_id);
                self.update(&backend_task_id, state, UpdateSource::Executor)
                    .await;
            }
            Report::LaunchFailed {
                backend_task_id,
                message,
            } => {
                let Some(t) = self.tasks.get_mut(&backend_task_id) else {
                    return;
                };
                t.message = Some(message);
                t.reason = Some("REASON_CONTAINER_LAUNCH_FAILED".into());
                self.book.release(&backend_task_id);
                self.update(&backend_task_id, BackendState::Failed, UpdateSource::Agent)
                    .await;
            }
            Report::Cancelled { backend_task_id } => {
                let Some(t) = self.tasks.get_mut(&backend_task_id) else {
                    return;
                };
                t.message = Some("killed before the container started".into());
                t.reason = Some("REASON_TASK_KILLED_DURING_LAUNCH".into());
                self.book.release(&backend_task_id);
                self.update(&backend_task_id, BackendState::Killed, UpdateSource::Agent)
                    .await;
            }
            Report::Removed => {}
        }
    }
}
