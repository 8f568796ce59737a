//! `airflow-mesos scheduler`: the daemon. Opens the store, starts the configured backend
//! (Mesos framework or local Docker), the driver and the HTTP API, and runs until SIGTERM or
//! SIGINT. Shutdown never tears the framework down: running tasks keep running and are
//! reconciled by the next start.

use crate::api::{self, AppState, Auth, LogSource};
use crate::cli::SchedulerArgs;
use crate::config::{Backend, Config};
use crate::driver::{self, DriverParts};
use crate::leader::{Election, Role};
use crate::onetime::OneTimeFiles;
use crate::scheduler::{Core, CoreConfig};
use crate::store::Store;
use crate::task::SpecDefaults;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Name of the state database's key that signs sandbox file URLs.
const SANDBOX_FILES_KEY: &str = "sandbox-files";

/// Spec defaults and limits from the configuration.
pub fn spec_defaults(cfg: &Config) -> SpecDefaults {
    let local = cfg.backend == Backend::Docker;
    SpecDefaults {
        image: cfg.docker_image_slave.clone(),
        cpus: cfg.task_cpu,
        mem: cfg.task_memory,
        disk: cfg.task_disk,
        // Learned from the offers by the driver (the largest agent seen), or configured.
        max_mem: if local { cfg.local_memory } else { None },
        max_cpus: if local { cfg.local_cpus } else { None },
        containerizer: cfg.containerizer,
        uncontainerized: !local,
    }
}

/// The rules `scheduler` enforces at start beyond the loader's (the Mesos credentials and CA
/// certificate, the registry credentials it serves), as one message each; `config check`
/// runs them too, so that it passes exactly the configurations the scheduler starts with.
pub fn startup_problems(cfg: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = crate::registry::served_docker_tar_gz(&cfg.registry) {
        problems.push(format!(
            "invalid docker registry settings in [mesos]: {e:#}"
        ));
    }
    if cfg.backend == Backend::Mesos {
        if let Err(e) = crate::mesos::backend::MesosBackendConfig::from_config(cfg) {
            problems.push(format!("invalid Mesos settings in [mesos]: {e}"));
        }
    }
    problems
}

pub async fn run(args: SchedulerArgs, cfg: &Config) -> anyhow::Result<i32> {
    let problems = startup_problems(cfg);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        return Ok(crate::config::EXIT_CONFIG);
    }
    // One daemon per SQLite file: held until the process ends.
    let _sqlite_lock = match crate::store::sqlite_path(&cfg.database_url) {
        Some(path) => Some(crate::leader::lock_sqlite(&path)?),
        None => None,
    };
    let store = Store::connect_with(
        &cfg.database_url,
        &crate::store::StoreOptions {
            stuck_transaction: Duration::from_secs_f64(cfg.leader_lease),
        },
    )
    .await
    .context("cannot open the state store ([mesos] database_url)")?;
    let shutdown = CancellationToken::new();
    let files = Arc::new(OneTimeFiles::new(
        cfg.public_url.clone(),
        &store.daemon_key(SANDBOX_FILES_KEY).await?,
        crate::registry::served_docker_tar_gz(&cfg.registry)
            .context("invalid docker registry settings in [mesos]")?,
    ));
    let election = cfg.leader_election.then(|| {
        Election::new(
            store.clone(),
            &cfg.framework_name,
            &advertised_url(cfg),
            Duration::from_secs_f64(cfg.leader_lease),
        )
    });
    let (role_tx, role_rx) = watch::channel(match election {
        None => Role::Leader { term: 0 },
        Some(_) => Role::Standby { leader: None },
    });
    let api_token = match &cfg.api_token {
        Some(t) => t.expose().to_string(),
        None => {
            let token = crate::token::from_key(&store.daemon_key(crate::token::STORE_KEY).await?);
            crate::token::write_file(&cfg.api_token_file, &token).with_context(|| {
                format!(
                    "cannot write the generated API token to {} ([mesos] api_token_file)",
                    cfg.api_token_file.display()
                )
            })?;
            tracing::info!(
                file = %cfg.api_token_file.display(),
                "no [mesos] api_token set: the API takes the generated token in this file"
            );
            token
        }
    };
    let (logs, backend_name) = match cfg.backend {
        Backend::Mesos => (LogSource::Agents, "mesos"),
        Backend::Docker => (LogSource::Local(cfg.sandbox_dir.clone()), "docker"),
    };
    let (handle, mut requests) = driver::channel();
    let metrics = handle.metrics.clone();

    let state = AppState {
        store: store.clone(),
        driver: handle,
        files: files.clone(),
        auth: Auth {
            token: Some(api_token),
            basic: match (&cfg.api_username, &cfg.api_password) {
                (Some(u), Some(p)) => Some((u.clone(), p.expose().to_string())),
                _ => None,
            },
        },
        logs,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        backend: backend_name,
        web: crate::web::WebConfig::new(
            &store.daemon_key(crate::web::SESSION_KEY_NAME).await?,
            &crate::web::ui_url(cfg),
            spec_defaults(cfg),
        ),
        role: role_rx,
        allowed_origins: cfg.allowed_origins.clone().into(),
    };
    let listener = api::serve::listen(cfg.api_listen)
        .with_context(|| format!("cannot listen on [mesos] api_listen = {}", cfg.api_listen))?;
    tracing::info!(addr = %listener.local_addr()?, ui = %crate::web::ui_url(cfg), "API listening");
    let api_shutdown = shutdown.clone();
    let limits = api::serve::Limits {
        max_connections: cfg.api_max_connections,
        header_timeout: Duration::from_secs_f64(cfg.api_header_timeout),
        body_timeout: Duration::from_secs_f64(cfg.api_body_timeout),
        idle_timeout: Duration::from_secs_f64(cfg.api_idle_timeout),
    };
    let server = tokio::spawn(api::serve::serve(
        listener,
        api::router(state),
        limits,
        api_shutdown,
    ));

    if let Some(idle) = args.exit_when_idle {
        tokio::spawn(exit_when_idle(
            store.clone(),
            Duration::from_secs_f64(idle),
            shutdown.clone(),
        ));
    }
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down (running tasks keep running)");
        signals.cancel();
    });

    // Lead whenever this daemon holds the leadership; stand by otherwise.
    let result = loop {
        let term = match &election {
            None => 0,
            Some(e) => match e.campaign(&role_tx, &shutdown).await {
                Some(term) => term,
                None => break Ok(()),
            },
        };
        let term_stop = shutdown.child_token();
        let holding = election.clone().map(|e| {
            let (lost, stop) = (term_stop.clone(), term_stop.clone());
            tokio::spawn(async move { e.hold(term, lost, stop).await })
        });
        let led = lead(
            cfg,
            &store,
            &files,
            election.as_ref().map(Election::clock),
            Stops {
                term: term_stop.clone(),
                daemon: shutdown.clone(),
            },
            &mut requests,
            metrics.clone(),
        )
        .await;
        term_stop.cancel();
        if let Some(h) = holding {
            let _ = h.await;
        }
        // Requests that reached this term's driver too late get no answer: their senders see
        // the daemon stopping (503), and clients try again, on the new leader.
        while requests.try_recv().is_ok() {}
        let Some(e) = &election else {
            break led;
        };
        let removed = led.as_ref().is_err_and(|err| {
            matches!(
                err.downcast_ref::<driver::DriverError>(),
                Some(driver::DriverError::FrameworkRemoved { .. })
            )
        });
        if shutdown.is_cancelled() || removed {
            // A removed framework is removed for every daemon: standing by would only lead
            // to the same refusal again.
            e.release(term).await;
            break led;
        }
        match led {
            Ok(()) => tracing::warn!(term, "no longer leading; standing by"),
            Err(err) => tracing::warn!(term, error = %err, "no longer leading; standing by"),
        }
        store.set_fence(None);
        role_tx.send_replace(Role::Standby { leader: None });
    };
    shutdown.cancel();
    let _ = tokio::time::timeout(driver::SHUTDOWN_GRACE, server).await;
    match result {
        Ok(()) => Ok(0),
        Err(e) => {
            tracing::error!(error = %e, "driver stopped");
            Err(e)
        }
    }
}

/// The URL at which other daemons reach this one's API (where standbys forward writes):
/// `public_url`, else `http://<api_listen>` (the host name when it listens on every address).
fn advertised_url(cfg: &Config) -> String {
    if let Some(u) = &cfg.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let addr = cfg.api_listen;
    if addr.ip().is_unspecified() {
        format!(
            "http://{}:{}",
            crate::docker::local::hostname(),
            addr.port()
        )
    } else {
        format!("http://{addr}")
    }
}

/// When a term ends: `term` at the end of the leadership (a lost lease) or of the daemon,
/// `daemon` at the end of the daemon only.
struct Stops {
    term: CancellationToken,
    daemon: CancellationToken,
}

/// One term of leadership: the backend and the driver, until `stop.term` (shutdown, or the lease
/// lost) or an error. The framework id is read now: a previous leader may have stored it.
async fn lead(
    cfg: &Config,
    store: &Store,
    files: &Arc<OneTimeFiles>,
    lease: Option<Arc<crate::leader::LeaseClock>>,
    stop: Stops,
    requests: &mut tokio::sync::mpsc::Receiver<driver::Request>,
    metrics: Arc<driver::Metrics>,
) -> anyhow::Result<()> {
    let backend = match cfg.backend {
        Backend::Mesos => {
            let framework_id = store.framework_id(&cfg.framework_name).await?;
            tracing::info!(framework = %cfg.framework_name, id = framework_id.as_deref().unwrap_or("(new)"), "starting the Mesos backend");
            let mut mcfg = crate::mesos::backend::MesosBackendConfig::from_config(cfg)
                .context("invalid Mesos settings in [mesos]")?;
            mcfg.lease = lease;
            crate::mesos::backend::spawn(mcfg, files.clone(), framework_id, stop.term.child_token())
        }
        Backend::Docker => {
            let mut lcfg = crate::docker::local::LocalBackendConfig::from_config(cfg);
            lcfg.framework_id = Some(local_framework_id(store, &cfg.framework_name).await?);
            tracing::info!(sandboxes = %cfg.sandbox_dir.display(), "starting the local Docker backend");
            crate::docker::local::spawn(lcfg, stop.term.child_token())
        }
    };
    let mut core_cfg = CoreConfig::from_config(cfg);
    if cfg.backend == Backend::Docker {
        // Reviving the local engine costs nothing: new work starts at once.
        core_cfg.revive_interval = Duration::from_millis(100);
    }
    let parts = DriverParts {
        core: Core::new(core_cfg),
        store: store.clone(),
        backend,
        defaults: spec_defaults(cfg),
        framework_name: match cfg.backend {
            Backend::Mesos => cfg.framework_name.clone(),
            Backend::Docker => local_framework_key(&cfg.framework_name),
        },
        store_retry: crate::store::RetryPolicy {
            limit: Duration::from_secs_f64(cfg.store_outage_limit),
            url: store.redacted_url().to_string(),
            // The daemon's stop, not the term's: a leader that loses its lease during an
            // outage keeps its commit until the database answers (and refuses it).
            give_up: stop.daemon,
        },
        shutdown: stop.term.clone(),
    };
    let stop_term = stop.term;
    if cfg.task_retention > 0.0 {
        tokio::spawn(prune_ended_tasks(
            store.clone(),
            Duration::from_secs_f64(cfg.task_retention),
            metrics.clone(),
            stop_term.child_token(),
        ));
    }
    driver::run(parts, metrics, requests).await?;
    Ok(())
}

/// Deletes what `[mesos] task_retention` no longer keeps, while this daemon leads: at the start
/// of the term and then every quarter of the retention (between a second and an hour), in
/// batches that each commit on their own.
async fn prune_ended_tasks(
    store: Store,
    retention: Duration,
    metrics: Arc<driver::Metrics>,
    stop: CancellationToken,
) {
    const BATCH: u32 = 1000;
    let every = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        let cutoff_ms = chrono::Utc::now().timestamp_millis() - retention.as_millis() as i64;
        let mut total = crate::store::Pruned::default();
        loop {
            if stop.is_cancelled() {
                return;
            }
            match store.prune(cutoff_ms, BATCH).await {
                Ok(p) if p.is_empty() => break,
                Ok(p) => {
                    total.tasks += p.tasks;
                    total.events += p.events;
                    metrics
                        .pruned_tasks
                        .fetch_add(p.tasks, std::sync::atomic::Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pruning ended tasks failed; trying again later");
                    break;
                }
            }
        }
        if !total.is_empty() {
            tracing::info!(
                tasks = total.tasks,
                events = total.events,
                "pruned what task_retention no longer keeps"
            );
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The key under which the local backend's framework id is stored (apart from the Mesos
/// framework id of the same name, so that switching backends loses neither).
pub(crate) fn local_framework_key(framework_name: &str) -> String {
    format!("{framework_name} (local docker)")
}

/// The local backend's framework id: made once per state store and kept there. Containers
/// are labelled with it and a start adopts only its own, so two daemons on one engine (two
/// `AIRFLOW_HOME`s, or a test suite) never take over each other's tasks.
async fn local_framework_id(store: &Store, framework_name: &str) -> anyhow::Result<String> {
    let key = local_framework_key(framework_name);
    if let Some(id) = store.framework_id(&key).await? {
        return Ok(id);
    }
    let id = format!(
        "local-{}-{}",
        crate::docker::local::hostname(),
        uuid::Uuid::new_v4().simple()
    );
    store.set_framework_id(&key, &id).await?;
    Ok(id)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Cancels `shutdown` once no task has been queued or running for `idle`.
async fn exit_when_idle(store: Store, idle: Duration, shutdown: CancellationToken) {
    let mut idle_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let busy = match store.counts().await {
            Ok(c) => c.iter().any(|(s, n)| !s.is_terminal() && *n > 0),
            Err(_) => true,
        };
        if busy {
            idle_since = tokio::time::Instant::now();
        } else if idle_since.elapsed() >= idle {
            tracing::info!("idle; exiting as asked (--exit-when-idle)");
            shutdown.cancel();
            return;
        }
    }
}
