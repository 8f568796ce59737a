//! The Mesos backend: one task that keeps a subscription alive and carries out the driver's
//! actions as scheduler calls.
//!
//! - The subscription loop follows the pure state machine in
//!   [`subscription`](super::subscription): SUBSCRIBE (with the stored framework id and the
//!   roles that are currently suppressed), wait for SUBSCRIBED, read events, watch heartbeats
//!   (no record for `heartbeat_factor` × the master's interval means the stream is dead), and
//!   back off with jitter between attempts. A master ERROR ("Framework failed over",
//!   "Framework has been removed") or a fatal answer (401, 400 …) ends the backend: the driver
//!   gets `Error` + `Disconnected` and then the events channel closes.
//! - Calls go out on the session's call connection with the `Mesos-Stream-Id` of the live
//!   subscription, in two lanes: acknowledgements (many in flight at once) and every other
//!   call (in order). A call that fails comes back as `ActionFailed`; an ACCEPT that was
//!   written (or may have been) and got no answer as `ActionUnconfirmed`; the DECLINE of a
//!   `VoidOffers` that the master took as `OffersVoided`.
//! - Launches get the signed fetch URIs of their sandbox files, secret environment and
//!   registry `docker.tar.gz` here, right before the ACCEPT goes out.
//! - Shutdown closes the stream and stops. It never sends TEARDOWN: the framework's tasks keep
//!   running for the next daemon (`failover_timeout`).

use super::client::{
    CallKind, ClientConfig, ClientError, Credentials, Disposition, EncodedCall, MesosClient,
    Session,
};
use super::convert::{self, FetchUri, LaunchContext};
use super::detect::{DetectError, MasterSource};
use super::proto::scheduler::{self, call, event};
use super::proto::v1;
use super::subscription::{step, Backoff, Effect, SubInput, SubState};
use crate::config::{defaults, Config, MasterAddr, RegistryAuth, Secret};
use crate::onetime::{OneTimeFiles, Slot, SECRET_ENV_FILE};
use crate::registry::{self, RegistryError};
use crate::scheduler::types::{Action, BackendChannels, Event, LaunchTask};
use crate::task::{Containerizer, Policy, PolicyError};
use futures::future::{BoxFuture, Fuse, FusedFuture, FutureExt};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod calls;
mod launch;
mod session;

use calls::call_worker;
use launch::LaunchMaterial;
use session::SubscriptionLoop;

/// How the framework presents itself (`FrameworkInfo`).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameworkSettings {
    pub name: String,
    /// Default OS user of tasks (`FrameworkInfo.user`).
    pub user: String,
    /// The one role the framework subscribes with (MULTI_ROLE, `roles = [role]`).
    pub role: String,
    pub checkpoint: bool,
    /// Seconds the master keeps tasks running while the framework is away.
    pub failover_timeout: f64,
    pub principal: Option<String>,
    pub hostname: Option<String>,
    /// Shown as the framework's web UI link in the Mesos UI.
    pub webui_url: Option<String>,
}

/// Everything the Mesos backend needs. Tests build it directly; the daemon uses
/// [`MesosBackendConfig::from_config`].
#[derive(Debug, Clone)]
pub struct MesosBackendConfig {
    pub master: MasterAddr,
    /// `http`/`https` for masters given without a scheme, and for ZooKeeper-found leaders.
    pub ssl: bool,
    pub framework: FrameworkSettings,
    /// HTTP: encoding, credentials, CA, timeouts, redirect limit, record limit, path.
    pub client: ClientConfig,
    pub registry: RegistryAuth,
    /// `docker run` parameters for every Docker-containerizer task (`group-add` …).
    pub docker_parameters: Vec<(String, String)>,
    /// What a task may ask for, checked again on every launch before its `TaskInfo` is built.
    pub policy: Policy,
    /// No event for `heartbeat_factor` × the heartbeat interval means the stream is dead.
    pub heartbeat_factor: f64,
    /// Used until SUBSCRIBED says otherwise (Mesos: 15 s).
    pub default_heartbeat: Duration,
    pub backoff: Backoff,
    /// Send the registry credentials with each task (`docker.tar.gz` fetched into the
    /// sandbox, or `Image.Docker.config`); false when the agents have their own
    /// (`--docker_config`).
    pub send_registry_credentials: bool,
    /// Pause between ZooKeeper reconnects.
    pub zk_retry: Duration,
    /// Capacity of the events and actions channels.
    pub channel_capacity: usize,
    /// With several daemons: this daemon's hold on the leadership. No SUBSCRIBE goes out unless
    /// it is valid, so a leader that lost its lease never takes the framework back.
    pub lease: Option<std::sync::Arc<crate::leader::LeaseClock>>,
}

/// A configuration the Mesos backend cannot work with, naming the `[mesos]` key.
#[derive(Debug, thiserror::Error)]
pub enum BackendConfigError {
    #[error("[mesos] authenticate = true needs [mesos] {0}")]
    MissingCredential(&'static str),
    #[error("[mesos] {0} must not contain ':' (HTTP Basic authentication splits on it)")]
    ColonInCredential(&'static str),
    #[error("[mesos] mesos_ca_cert = {path}: cannot read: {source}")]
    CaCert {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("[mesos] docker registry settings: {0}")]
    Registry(#[from] RegistryError),
}

impl MesosBackendConfig {
    /// Maps the daemon configuration. Reads `mesos_ca_cert` and checks the registry settings.
    pub fn from_config(c: &Config) -> Result<MesosBackendConfig, BackendConfigError> {
        let credentials = if c.authenticate {
            let principal = c
                .default_principal
                .clone()
                .ok_or(BackendConfigError::MissingCredential("default_principal"))?;
            let secret = c
                .default_secret
                .clone()
                .ok_or(BackendConfigError::MissingCredential("default_secret"))?;
            if principal.contains(':') {
                return Err(BackendConfigError::ColonInCredential("default_principal"));
            }
            if secret.expose().contains(':') {
                return Err(BackendConfigError::ColonInCredential("default_secret"));
            }
            Some(Credentials { principal, secret })
        } else {
            None
        };
        let ca_cert_pem = match &c.mesos_ca_cert {
            Some(p) => Some(
                std::fs::read(p).map_err(|source| BackendConfigError::CaCert {
                    path: p.display().to_string(),
                    source,
                })?,
            ),
            None => None,
        };
        // Fail at start-up, not at the first launch.
        registry::docker_config_json(&c.registry)?;
        Ok(MesosBackendConfig {
            master: c.master.clone(),
            ssl: c.mesos_ssl,
            framework: FrameworkSettings {
                name: c.framework_name.clone(),
                user: c.framework_user.clone(),
                role: if c.framework_role.trim().is_empty() {
                    "*".to_string()
                } else {
                    c.framework_role.clone()
                },
                checkpoint: c.checkpoint,
                failover_timeout: c.failover_timeout,
                principal: c.default_principal.clone(),
                hostname: local_hostname(),
                webui_url: Some(crate::web::ui_url(c)),
            },
            client: ClientConfig {
                credentials,
                ca_cert_pem,
                ..ClientConfig::default()
            },
            registry: c.registry.clone(),
            send_registry_credentials: c.send_registry_credentials,
            docker_parameters: c
                .docker_user_group_id
                .iter()
                .map(|g| ("group-add".to_string(), g.clone()))
                .collect(),
            policy: c.task_policy(),
            ..MesosBackendConfig::new(c.master.clone(), &c.framework_name, &c.framework_user)
        })
    }

    /// Defaults for everything but the master and the framework's name and user.
    pub fn new(master: MasterAddr, name: &str, user: &str) -> MesosBackendConfig {
        MesosBackendConfig {
            master,
            ssl: false,
            framework: FrameworkSettings {
                name: name.to_string(),
                user: user.to_string(),
                role: defaults::FRAMEWORK_ROLE.to_string(),
                checkpoint: defaults::CHECKPOINT,
                failover_timeout: defaults::FAILOVER_TIMEOUT,
                principal: None,
                hostname: None,
                webui_url: None,
            },
            client: ClientConfig::default(),
            registry: RegistryAuth::default(),
            docker_parameters: Vec::new(),
            policy: Policy {
                default_user: user.to_string(),
                ..Policy::default()
            },
            heartbeat_factor: 5.0,
            default_heartbeat: Duration::from_secs(15),
            backoff: Backoff::default(),
            send_registry_credentials: defaults::SEND_REGISTRY_CREDENTIALS,
            zk_retry: Duration::from_secs(2),
            channel_capacity: 1024,
            lease: None,
        }
    }

    /// The `FrameworkInfo` sent on SUBSCRIBE.
    pub fn framework_info(&self, framework_id: Option<&str>) -> v1::FrameworkInfo {
        use v1::framework_info::{capability::Type, Capability};
        let fw = &self.framework;
        v1::FrameworkInfo {
            user: fw.user.clone(),
            name: fw.name.clone(),
            id: framework_id.map(|id| v1::FrameworkId { value: id.into() }),
            failover_timeout: Some(fw.failover_timeout),
            checkpoint: Some(fw.checkpoint),
            hostname: fw.hostname.clone(),
            principal: fw.principal.clone(),
            webui_url: fw.webui_url.clone(),
            capabilities: [
                Type::PartitionAware,
                Type::MultiRole,
                Type::TaskKillingState,
            ]
            .into_iter()
            .map(|t| Capability {
                r#type: Some(t as i32),
            })
            .collect(),
            roles: vec![fw.role.clone()],
            ..Default::default()
        }
    }

    /// The SUBSCRIBE call: framework id in both places when known, suppressed roles
    /// re-declared.
    pub fn subscribe_call(
        &self,
        framework_id: Option<&str>,
        suppressed: &BTreeSet<String>,
    ) -> scheduler::Call {
        let roles = [self.framework.role.clone()];
        scheduler::Call {
            framework_id: framework_id.map(|id| v1::FrameworkId { value: id.into() }),
            r#type: Some(call::Type::Subscribe as i32),
            subscribe: Some(call::Subscribe {
                framework_info: self.framework_info(framework_id),
                suppressed_roles: roles
                    .iter()
                    .filter(|r| suppressed.contains(*r))
                    .cloned()
                    .collect(),
                offer_constraints: None,
            }),
            ..Default::default()
        }
    }

    fn heartbeat_timeout(&self, interval: Option<f64>) -> Duration {
        // The interval comes from the master: a day at most, so no value it sends can overflow
        // a Duration (Duration::from_secs_f64 panics past u64::MAX seconds).
        const MAX_HEARTBEAT_SECS: f64 = 86_400.0;
        let secs = interval
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(self.default_heartbeat.as_secs_f64())
            .min(MAX_HEARTBEAT_SECS);
        Duration::from_secs_f64(secs * self.heartbeat_factor.max(1.0))
    }
}

fn local_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Starts the backend. It runs until `shutdown` is cancelled, the driver drops its action
/// sender, or a fatal error (then the driver gets `Error` and `Disconnected` first). The
/// events channel closing tells the driver the backend is gone.
pub fn spawn(
    cfg: MesosBackendConfig,
    files: Arc<OneTimeFiles>,
    framework_id: Option<String>,
    shutdown: CancellationToken,
) -> BackendChannels {
    let (ev_tx, ev_rx) = mpsc::channel(cfg.channel_capacity.max(1));
    let (act_tx, act_rx) = mpsc::channel(cfg.channel_capacity.max(1));
    tokio::spawn(async move {
        if let Err(message) = run(cfg, files, framework_id, shutdown, ev_tx.clone(), act_rx).await {
            tracing::error!(error = %message, "Mesos backend could not start");
            let _ = ev_tx.send(Event::Error(message.clone())).await;
            let _ = ev_tx.send(Event::Disconnected { reason: message }).await;
        }
    });
    BackendChannels {
        events: ev_rx,
        actions: act_tx,
    }
}

async fn run(
    cfg: MesosBackendConfig,
    files: Arc<OneTimeFiles>,
    framework_id: Option<String>,
    shutdown: CancellationToken,
    events: mpsc::Sender<Event>,
    mut actions: mpsc::Receiver<Action>,
) -> Result<(), String> {
    let client = MesosClient::new(cfg.client.clone()).map_err(|e| e.to_string())?;
    let material = LaunchMaterial::new(&cfg, files).map_err(|e| e.to_string())?;
    let stop = shutdown.child_token();
    let masters = MasterSource::start(&cfg.master, cfg.ssl, cfg.zk_retry, &stop)
        .map_err(|e: DetectError| e.to_string())?;
    let (session_tx, session_rx) = watch::channel::<Option<Arc<Session>>>(None);
    let (work_tx, work_rx) = mpsc::channel::<Action>(cfg.channel_capacity.max(1));
    let worker = tokio::spawn(call_worker(
        client.clone(),
        session_rx,
        work_rx,
        events.clone(),
        material,
    ));
    let mut sub = SubscriptionLoop {
        cfg,
        client,
        masters,
        events,
        session_tx,
        framework_id,
        suppressed: BTreeSet::new(),
        pending: None,
    };
    sub.run(&shutdown, &mut actions, &work_tx).await;
    stop.cancel();
    drop(work_tx);
    // Calls already queued get a moment to go out; then the worker is stopped.
    let abort = worker.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), worker)
        .await
        .is_err()
    {
        abort.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn cfg() -> MesosBackendConfig {
        MesosBackendConfig::new(
            MasterAddr::Hosts(vec!["http://127.0.0.1:1".into()]),
            "fw",
            "nobody",
        )
    }

    #[test]
    fn framework_info_declares_capabilities_roles_and_failover() {
        let mut c = cfg();
        c.framework.role = "airflow".into();
        c.framework.principal = Some("p".into());
        c.framework.checkpoint = true;
        let fi = c.framework_info(Some("F-1"));
        assert_eq!(fi.user, "nobody");
        assert_eq!(fi.name, "fw");
        assert_eq!(fi.id.unwrap().value, "F-1");
        assert_eq!(fi.roles, vec!["airflow"]);
        #[allow(deprecated)]
        let role = fi.role;
        assert_eq!(role, None, "MULTI_ROLE forbids `role`");
        assert_eq!(fi.checkpoint, Some(true));
        assert_eq!(fi.failover_timeout, Some(604800.0));
        assert_eq!(fi.principal.as_deref(), Some("p"));
        let caps: Vec<_> = fi.capabilities.iter().map(|c| c.r#type()).collect();
        use v1::framework_info::capability::Type;
        assert_eq!(
            caps,
            vec![
                Type::PartitionAware,
                Type::MultiRole,
                Type::TaskKillingState
            ]
        );
    }

    #[test]
    fn subscribe_call_carries_the_id_twice_and_the_suppressed_roles() {
        let c = cfg();
        let first = c.subscribe_call(None, &BTreeSet::new());
        assert!(first.framework_id.is_none());
        assert!(first
            .subscribe
            .as_ref()
            .unwrap()
            .framework_info
            .id
            .is_none());
        let suppressed = BTreeSet::from(["*".to_string(), "not-ours".to_string()]);
        let again = c.subscribe_call(Some("F"), &suppressed);
        assert_eq!(again.framework_id.as_ref().unwrap().value, "F");
        let s = again.subscribe.unwrap();
        assert_eq!(s.framework_info.id.unwrap().value, "F");
        // Only subscribed roles may be declared suppressed.
        assert_eq!(s.suppressed_roles, vec!["*"]);
    }

    fn load(ini: &str) -> crate::config::Config {
        let env = std::collections::HashMap::from([
            ("AIRFLOW_HOME".to_string(), "/tmp/am-test-home".to_string()),
            ("USER".to_string(), "tester".to_string()),
        ]);
        let sys = crate::config::source::NoSystem;
        let src = crate::config::source::Sources::new(env, &sys).with_file("airflow.cfg", ini);
        crate::config::load(&src).expect("valid test config").config
    }

    #[test]
    fn the_registered_webui_url_is_the_ui_a_browser_can_reach() {
        let ui = |ini: &str| {
            MesosBackendConfig::from_config(&load(&format!("[mesos]\nmaster = m1:5050\n{ini}")))
                .unwrap()
                .framework
                .webui_url
        };
        assert_eq!(
            ui("public_url = https://ops.example/airflow-mesos/\napi_listen = 0.0.0.0:11000\napi_token = t\n")
                .as_deref(),
            Some("https://ops.example/airflow-mesos/ui/")
        );
        assert_eq!(ui("").as_deref(), Some("http://127.0.0.1:11000/ui/"));
        assert_eq!(
            ui("api_url = http://sched.example:8080\n").as_deref(),
            Some("http://sched.example:8080/ui/")
        );
        // Listening on every address: the loopback default would not reach a browser elsewhere.
        let host = crate::docker::local::hostname();
        assert_eq!(
            ui("api_listen = 0.0.0.0:11000\napi_token = t\n").as_deref(),
            Some(format!("http://{host}:11000/ui/").as_str())
        );
    }

    #[test]
    fn from_config_maps_the_mesos_block() {
        let c = load(
            "[mesos]\nmaster = m1:5050,m2:5050\nframework_name = af\nframework_user = airflow\n\
             framework_role = etl\ncheckpoint = True\nfailover_timeout = 3600\n\
             authenticate = True\ndefault_principal = af-principal\ndefault_secret = s3cret\n\
             docker_user_group_id = 999\n",
        );
        let m = MesosBackendConfig::from_config(&c).unwrap();
        assert_eq!(m.master, c.master);
        assert_eq!(m.framework.name, "af");
        assert_eq!(m.framework.user, "airflow");
        assert_eq!(m.framework.role, "etl");
        assert!(m.framework.checkpoint);
        assert_eq!(m.framework.failover_timeout, 3600.0);
        assert_eq!(m.framework.principal.as_deref(), Some("af-principal"));
        let creds = m.client.credentials.as_ref().unwrap();
        assert_eq!(creds.principal, "af-principal");
        assert_eq!(creds.secret.expose(), "s3cret");
        assert!(
            !format!("{m:?}").contains("s3cret"),
            "Debug never shows the secret"
        );
        assert_eq!(
            m.docker_parameters,
            vec![("group-add".to_string(), "999".to_string())]
        );
        let fi = m.framework_info(None);
        assert_eq!(fi.roles, vec!["etl"]);

        // authenticate without a secret (the loader refuses it too) or with a ':' in it.
        let mut c = c;
        c.default_secret = None;
        let err = MesosBackendConfig::from_config(&c).unwrap_err();
        assert!(err.to_string().contains("default_secret"), "{err}");
        c.default_secret = Some(Secret::new("a:b"));
        let err = MesosBackendConfig::from_config(&c).unwrap_err();
        assert!(matches!(
            err,
            BackendConfigError::ColonInCredential("default_secret")
        ));
        assert!(!err.to_string().contains("a:b"), "{err}");
        // Without authenticate: no credentials, principal still declared when given.
        let c = load("[mesos]\nmaster = m1:5050\ndefault_principal = p\n");
        let m = MesosBackendConfig::from_config(&c).unwrap();
        assert!(m.client.credentials.is_none());
        assert_eq!(m.framework.principal.as_deref(), Some("p"));
    }

    #[test]
    fn heartbeat_timeout_is_factor_times_interval() {
        let c = cfg();
        assert_eq!(c.heartbeat_timeout(Some(15.0)), Duration::from_secs(75));
        assert_eq!(c.heartbeat_timeout(None), Duration::from_secs(75));
        assert_eq!(c.heartbeat_timeout(Some(2.0)), Duration::from_secs(10));
        assert_eq!(c.heartbeat_timeout(Some(f64::NAN)), Duration::from_secs(75));
        // A huge interval from the master is capped, not a panic.
        assert_eq!(
            c.heartbeat_timeout(Some(1e308)),
            Duration::from_secs(5 * 86_400)
        );
    }
}

#[cfg(test)]
mod loop_tests {
    use super::*;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use bytes::Bytes;
    use prost::Message;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    #[derive(Default)]
    struct MiniState {
        /// (received at, call, Mesos-Stream-Id header)
        calls: Vec<(Instant, scheduler::Call, Option<String>)>,
        streams: Vec<mpsc::UnboundedSender<Bytes>>,
        /// Statuses forced on the next requests.
        forced: VecDeque<u16>,
        next_stream: u32,
    }

    #[derive(Clone, Default)]
    struct Mini(Arc<Mutex<MiniState>>);

    impl Mini {
        fn lock(&self) -> std::sync::MutexGuard<'_, MiniState> {
            self.0.lock().unwrap()
        }
        fn calls_of(&self, t: call::Type) -> Vec<(Instant, scheduler::Call, Option<String>)> {
            self.lock()
                .calls
                .iter()
                .filter(|(_, c, _)| c.r#type() == t)
                .cloned()
                .collect()
        }
        fn send_all(&self, e: &scheduler::Event) {
            let rec = crate::mesos::recordio::encode_record(&e.encode_to_vec());
            self.lock().streams.retain(|s| s.send(rec.clone()).is_ok());
        }
        fn end_streams(&self) {
            self.lock().streams.clear();
        }
        fn force(&self, statuses: &[u16]) {
            self.lock().forced.extend(statuses.iter().copied());
        }
    }

    fn event(t: event::Type) -> scheduler::Event {
        scheduler::Event {
            r#type: Some(t as i32),
            ..Default::default()
        }
    }

    async fn handle(State(m): State<Mini>, headers: HeaderMap, body: Bytes) -> Response {
        let call = scheduler::Call::decode(body).expect("the backend sends valid protobuf");
        let sid = headers
            .get(crate::mesos::client::STREAM_ID_HEADER)
            .map(|v| v.to_str().unwrap().to_string());
        let mut st = m.lock();
        st.calls.push((Instant::now(), call.clone(), sid));
        if let Some(code) = st.forced.pop_front() {
            let status = StatusCode::from_u16(code).unwrap();
            return (status, format!("forced {code}")).into_response();
        }
        if call.r#type() != call::Type::Subscribe {
            return StatusCode::ACCEPTED.into_response();
        }
        let fid = call
            .framework_id
            .map(|f| f.value)
            .unwrap_or_else(|| "F-1".to_string());
        st.next_stream += 1;
        let stream_id = format!("stream-{}", st.next_stream);
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let subscribed = scheduler::Event {
            subscribed: Some(event::Subscribed {
                framework_id: v1::FrameworkId { value: fid },
                heartbeat_interval_seconds: Some(15.0),
                master_info: None,
            }),
            ..event(event::Type::Subscribed)
        };
        for e in [subscribed, event(event::Type::Heartbeat)] {
            tx.send(crate::mesos::recordio::encode_record(&e.encode_to_vec()))
                .unwrap();
        }
        st.streams.push(tx);
        let body = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
        });
        Response::builder()
            .status(200)
            .header("Content-Type", "application/x-protobuf")
            .header("Mesos-Stream-Id", stream_id)
            .body(axum::body::Body::from_stream(body))
            .unwrap()
    }

    async fn start() -> (Mini, MesosBackendConfig) {
        let m = Mini::default();
        let app = axum::Router::new()
            .route(SCHEDULER, axum::routing::post(handle))
            .with_state(m.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let cfg = MesosBackendConfig::new(
            MasterAddr::Hosts(vec![format!("http://{addr}")]),
            "fw",
            "nobody",
        );
        (m, cfg)
    }

    const SCHEDULER: &str = crate::mesos::client::SCHEDULER_PATH;

    fn files() -> Arc<OneTimeFiles> {
        Arc::new(OneTimeFiles::new(None, b"k", None))
    }

    async fn next(ch: &mut BackendChannels) -> Option<Event> {
        tokio::time::timeout(Duration::from_secs(600), ch.events.recv())
            .await
            .expect("an event within 10 minutes (paused clock)")
    }

    async fn until_subscribed(ch: &mut BackendChannels) -> (String, Vec<Event>) {
        let mut before = Vec::new();
        loop {
            match next(ch).await.expect("backend alive") {
                Event::Subscribed { framework_id, .. } => return (framework_id, before),
                e => before.push(e),
            }
        }
    }

    async fn wait_calls(m: &Mini, t: call::Type, n: usize) {
        for _ in 0..1000 {
            if m.calls_of(t).len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} {t:?} calls never arrived");
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_loss_resubscribes_with_the_framework_id_and_suppressed_roles() {
        let (m, cfg) = start().await;
        let mut ch = spawn(cfg, files(), None, CancellationToken::new());
        let (fid, _) = until_subscribed(&mut ch).await;
        assert_eq!(fid, "F-1");
        assert_eq!(next(&mut ch).await, Some(Event::Heartbeat));
        let t0 = Instant::now();
        ch.actions.send(Action::Suppress(vec![])).await.unwrap();
        wait_calls(&m, call::Type::Suppress, 1).await;
        // The master goes silent (no heartbeats, stream open).
        let reason = match next(&mut ch).await {
            Some(Event::Disconnected { reason }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason.contains("heartbeats lost"), "{reason}");
        let silent = Instant::now() - t0;
        assert!(
            silent >= Duration::from_secs(74) && silent <= Duration::from_secs(76),
            "watchdog fired after {silent:?}, want 5 x 15 s"
        );
        let (again, _) = until_subscribed(&mut ch).await;
        assert_eq!(again, "F-1");
        let subs = m.calls_of(call::Type::Subscribe);
        assert_eq!(subs.len(), 2);
        assert!(
            subs[0].1.framework_id.is_none(),
            "first SUBSCRIBE has no id"
        );
        let re = &subs[1].1;
        assert_eq!(re.framework_id.as_ref().unwrap().value, "F-1");
        let s = re.subscribe.as_ref().unwrap();
        assert_eq!(s.framework_info.id.as_ref().unwrap().value, "F-1");
        assert_eq!(s.suppressed_roles, vec!["*"]);
        assert!(
            subs.iter().all(|(_, _, sid)| sid.is_none()),
            "no stream id on SUBSCRIBE"
        );
        // After a REVIVE the next re-subscribe declares nothing suppressed.
        ch.actions.send(Action::Revive(vec![])).await.unwrap();
        wait_calls(&m, call::Type::Revive, 1).await;
        m.end_streams();
        loop {
            match next(&mut ch).await {
                Some(Event::Heartbeat) => {}
                Some(Event::Disconnected { reason }) => {
                    assert!(reason.contains("closed the event stream"), "{reason}");
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        until_subscribed(&mut ch).await;
        let subs = m.calls_of(call::Type::Subscribe);
        assert!(subs[2]
            .1
            .subscribe
            .as_ref()
            .unwrap()
            .suppressed_roles
            .is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn calls_carry_the_stream_id_and_failures_come_back_typed() {
        let (m, cfg) = start().await;
        let mut ch = spawn(cfg, files(), Some("F-9".into()), CancellationToken::new());
        let (fid, _) = until_subscribed(&mut ch).await;
        assert_eq!(fid, "F-9");
        let decline = Action::Decline {
            offer_ids: vec!["O1".into()],
            refuse_seconds: 30.0,
        };
        ch.actions.send(decline.clone()).await.unwrap();
        wait_calls(&m, call::Type::Decline, 1).await;
        let (_, c, sid) = &m.calls_of(call::Type::Decline)[0];
        assert_eq!(sid.as_deref(), Some("stream-1"));
        assert_eq!(c.framework_id.as_ref().unwrap().value, "F-9");
        // A 400 is fatal for the call, a 503 is not; both carry the master's message.
        for (code, fatal) in [(400, true), (503, false)] {
            m.force(&[code]);
            ch.actions.send(decline.clone()).await.unwrap();
            loop {
                match next(&mut ch).await.unwrap() {
                    Event::ActionFailed {
                        action,
                        error,
                        fatal: f,
                    } => {
                        assert_eq!(action, decline);
                        assert_eq!(f, fatal, "{error}");
                        assert!(error.contains(&format!("forced {code}")), "{error}");
                        break;
                    }
                    Event::Heartbeat => {}
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_master_error_stops_the_backend_and_nothing_tears_down() {
        let (m, cfg) = start().await;
        let mut ch = spawn(cfg, files(), None, CancellationToken::new());
        until_subscribed(&mut ch).await;
        m.send_all(&scheduler::Event {
            error: Some(event::Error {
                message: "Framework failed over".into(),
            }),
            ..event(event::Type::Error)
        });
        let mut seen = Vec::new();
        while let Some(e) = next(&mut ch).await {
            seen.push(e);
        }
        assert!(
            seen.contains(&Event::Error("Framework failed over".into())),
            "{seen:?}"
        );
        assert!(seen.contains(&Event::Disconnected {
            reason: "Framework failed over".into()
        }));
        // Stopped for good: no new SUBSCRIBE even much later, and never a TEARDOWN.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(m.calls_of(call::Type::Subscribe).len(), 1);
        assert!(m.calls_of(call::Type::Teardown).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_closes_without_teardown() {
        let (m, cfg) = start().await;
        let shutdown = CancellationToken::new();
        let mut ch = spawn(cfg, files(), None, shutdown.clone());
        until_subscribed(&mut ch).await;
        shutdown.cancel();
        while next(&mut ch).await.is_some() {}
        assert!(m.calls_of(call::Type::Teardown).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn unauthorized_is_fatal_and_never_retried() {
        let (m, cfg) = start().await;
        m.force(&[401]);
        let mut ch = spawn(cfg, files(), None, CancellationToken::new());
        let mut seen = Vec::new();
        while let Some(e) = next(&mut ch).await {
            seen.push(e);
        }
        let [Event::Error(msg)] = &seen[..] else {
            panic!("{seen:?}")
        };
        assert!(
            msg.contains("401") && msg.contains("default_principal"),
            "{msg}"
        );
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(m.calls_of(call::Type::Subscribe).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_masters_are_retried_with_growing_backoff() {
        let (m, cfg) = start().await;
        m.force(&[503, 503, 503, 503]);
        let mut ch = spawn(cfg, files(), None, CancellationToken::new());
        let (_, before) = until_subscribed(&mut ch).await;
        assert!(
            before.is_empty(),
            "no events while never subscribed: {before:?}"
        );
        let times: Vec<Instant> = m
            .calls_of(call::Type::Subscribe)
            .iter()
            .map(|(t, _, _)| *t)
            .collect();
        assert_eq!(times.len(), 5);
        // Default backoff: 0.5 s doubling, half jittered.
        for (i, w) in times.windows(2).enumerate() {
            let gap = w[1] - w[0];
            let base = Duration::from_millis(500) * 2u32.pow(i as u32);
            assert!(
                gap >= base / 2 && gap <= base + Duration::from_millis(50),
                "gap {i}: {gap:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn actions_while_disconnected_fail_softly_but_suppress_is_remembered() {
        let (m, cfg) = start().await;
        m.force(&[503]);
        let mut ch = spawn(cfg, files(), None, CancellationToken::new());
        ch.actions.send(Action::Suppress(vec![])).await.unwrap();
        let kill = Action::Kill {
            backend_task_id: "t.1".into(),
            agent_id: None,
            grace_secs: None,
        };
        ch.actions.send(kill.clone()).await.unwrap();
        let mut failed = None;
        loop {
            match next(&mut ch).await.unwrap() {
                Event::ActionFailed { action, fatal, .. } => failed = Some((action, fatal)),
                Event::Subscribed { .. } => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(failed, Some((kill, false)));
        let subs = m.calls_of(call::Type::Subscribe);
        let last = subs.last().unwrap().1.subscribe.as_ref().unwrap();
        assert_eq!(last.suppressed_roles, vec!["*"]);
        assert!(
            m.calls_of(call::Type::Suppress).is_empty(),
            "carried by SUBSCRIBE instead"
        );
    }
}
