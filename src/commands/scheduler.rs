//! `airflow-mesos scheduler`: the daemon. Opens the store, starts the configured backend
//! (Mesos framework or local Docker), the driver and the HTTP API, and runs until SIGTERM or
//! SIGINT. Shutdown never tears the framework down: running tasks keep running and are
//! reconciled by the next start.

use crate::api::{self, AppState, Auth, LogSource};
use crate::cli::SchedulerArgs;
use crate::config::{Backend, Config};
use crate::driver::{self, DriverParts};
use crate::onetime::OneTimeFiles;
use crate::scheduler::{Core, CoreConfig};
use crate::store::Store;
use crate::task::SpecDefaults;
use anyhow::{bail, Context};
use std::sync::Arc;
use std::time::Duration;
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

/// Refuses to expose the API beyond loopback without a token.
pub fn check_listen(cfg: &Config) -> anyhow::Result<()> {
    if !cfg.api_listen.ip().is_loopback() && cfg.api_token.is_none() {
        bail!(
            "[mesos] api_listen = {} is not a loopback address and [mesos] api_token is not set: \
             refusing to serve an unauthenticated API to the network (set api_token, or listen on 127.0.0.1)",
            cfg.api_listen
        );
    }
    Ok(())
}

pub async fn run(args: SchedulerArgs, cfg: &Config) -> anyhow::Result<i32> {
    check_listen(cfg)?;
    let store = Store::connect(&cfg.database_url)
        .await
        .context("cannot open the state store ([mesos] database_url)")?;
    let shutdown = CancellationToken::new();
    let files = Arc::new(OneTimeFiles::new(
        cfg.public_url.clone(),
        &store.daemon_key(SANDBOX_FILES_KEY).await?,
        crate::registry::served_docker_tar_gz(&cfg.registry)
            .context("invalid docker registry settings in [mesos]")?,
    ));
    let framework_id = store.framework_id(&cfg.framework_name).await?;
    let (backend, logs, backend_name) = match cfg.backend {
        Backend::Mesos => {
            tracing::info!(framework = %cfg.framework_name, id = framework_id.as_deref().unwrap_or("(new)"), "starting the Mesos backend");
            (
                mesos_backend(cfg, files.clone(), framework_id, shutdown.child_token())?,
                LogSource::Agents,
                "mesos",
            )
        }
        Backend::Docker => {
            let mut lcfg = crate::docker::local::LocalBackendConfig::from_config(cfg);
            lcfg.framework_id = Some(local_framework_id(&store, &cfg.framework_name).await?);
            tracing::info!(sandboxes = %cfg.sandbox_dir.display(), "starting the local Docker backend");
            (
                crate::docker::local::spawn(lcfg, shutdown.child_token()),
                LogSource::Local(cfg.sandbox_dir.clone()),
                "docker",
            )
        }
    };
    let (handle, requests) = driver::channel();
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
        shutdown: shutdown.clone(),
    };
    let metrics = handle.metrics.clone();
    let driver_task = tokio::spawn(driver::run(parts, metrics, requests));

    let state = AppState {
        store: store.clone(),
        driver: handle,
        files,
        auth: Auth {
            token: cfg.api_token.as_ref().map(|t| t.expose().to_string()),
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
    };
    let listener = tokio::net::TcpListener::bind(cfg.api_listen)
        .await
        .with_context(|| format!("cannot listen on [mesos] api_listen = {}", cfg.api_listen))?;
    tracing::info!(addr = %listener.local_addr()?, ui = %crate::web::ui_url(cfg), "API listening");
    let api_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(async move { api_shutdown.cancelled().await })
            .await
    });

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

    let result = driver_task.await.context("driver task panicked")?;
    shutdown.cancel();
    let _ = tokio::time::timeout(driver::SHUTDOWN_GRACE, server).await;
    match result {
        Ok(()) => Ok(0),
        Err(e) => {
            tracing::error!(error = %e, "driver stopped");
            Err(e.into())
        }
    }
}

/// The key under which the local backend's framework id is stored (apart from the Mesos
/// framework id of the same name, so that switching backends loses neither).
fn local_framework_key(framework_name: &str) -> String {
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

fn mesos_backend(
    cfg: &Config,
    files: Arc<OneTimeFiles>,
    framework_id: Option<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<crate::scheduler::types::BackendChannels> {
    let mcfg = crate::mesos::backend::MesosBackendConfig::from_config(cfg)
        .context("invalid Mesos settings in [mesos]")?;
    Ok(crate::mesos::backend::spawn(
        mcfg,
        files,
        framework_id,
        shutdown,
    ))
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
