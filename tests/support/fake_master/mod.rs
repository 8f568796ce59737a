//! A protocol-faithful, in-process fake Mesos master (v1 scheduler HTTP API) for tests and
//! benchmarks. It behaves as the real Mesos 1.12 master whose traffic is recorded in
//! `tests/fixtures/mesos-1.12-real`; `tests/fake_master.rs` replays that traffic against it.
//!
//! ```ignore
//! let master = FakeMaster::start(FakeMasterOptions::default()).await;
//! master.add_agent(AgentSpec::new(4.0, 4096.0));
//! master.set_task_script("t1", TaskScript::finish());
//! // ... point a client at master.url() ...
//! assert!(master.calls().iter().any(|c| c.call_type() == Some(call::Type::Accept)));
//! master.shutdown().await;
//! ```
//!
//! What it does: `POST /api/v1/scheduler` (and `/master/api/v1/scheduler`) with the master's
//! checks in the master's order and its exact error texts; protobuf and Mesos JSON on requests
//! and streams; SUBSCRIBE with framework ids, stream ids, SUBSCRIBED + HEARTBEAT, failover;
//! offers from scriptable agents; ACCEPT/LAUNCH validation (TASK_ERROR / TASK_DROPPED or
//! TASK_LOST as master updates without uuid); scripted task lifecycles as agent updates with
//! uuids, resent until acknowledged and queued per task; KILL, RECONCILE, DECLINE filters,
//! SUPPRESS/REVIVE, TEARDOWN, failover timeout; fault injection; `/master/redirect`,
//! `/master/state`, `/health`, `/version`, and an agent's `/files/read` + `/slave(1)/state`.
//!
//! Faults and events a test can cause: [`FakeMaster::drop_streams`] (connection reset, no
//! terminating chunk), [`FakeMaster::close_streams`], [`FakeMaster::stop_heartbeats`],
//! [`FakeMaster::close_mid_record`], [`FakeMaster::inject_raw`], [`FakeMaster::fail_next_calls`]
//! (e.g. 503), [`FakeMaster::set_leadership`] / [`FakeMaster::flip_leader_to`] (standby
//! redirects), [`FakeMaster::require_auth`], [`FakeMaster::rescind_offers`],
//! [`FakeMaster::mark_agent_unreachable`] / [`FakeMaster::reregister_agent`],
//! [`FakeMaster::send_task_update`], [`FakeMaster::release_task`],
//! [`FakeMaster::cut_connection_at_next`] (the call connection closes without an answer,
//! before or after the call is carried out; see [`cut`]).
//!
//! Time (heartbeats, update resends, decline filters, failover timeouts, scripted sleeps) runs
//! on the tokio clock, so `#[tokio::test(start_paused = true)]` tests need no real waiting.
//!
//! Executing agents: after [`FakeMaster::execute_tasks`], the agents no longer play scripts but
//! run every launched `TaskInfo` as a real agent does ([`exec`]): they fetch its URIs into a
//! real sandbox, pull its image (with the fetched registry credentials), compose `docker run`
//! as the Docker containerizer does (or the command executor's argv for the unified
//! containerizer and for tasks without a container), run it on the local Docker engine, and
//! report STARTING, RUNNING and the real exit status; `/files/read` serves the sandbox. Tests of
//! what a task's command line becomes use it (`tests/mesos_agent.rs`).

pub mod cut;
pub mod exec;
pub mod http;
pub mod mesos_json;
pub mod resources;
pub mod state;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use airflow_mesos::mesos::proto::scheduler::{call, Call};
use airflow_mesos::mesos::proto::v1 as pb;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use resources::Res;
pub use state::{Leadership, Stats};
use state::{State, StreamMsg};

pub use pb::task_status::Reason;
pub use pb::TaskState;

/// One step of a task's scripted life on its fake agent.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskStep {
    /// The agent reports `state` (an update with a uuid, resent until acknowledged).
    Update {
        state: TaskState,
        message: Option<String>,
        reason: Option<Reason>,
    },
    /// Stop here until [`FakeMaster::release_task`] (or a KILL).
    Hold,
    /// Continue after this long on the tokio clock.
    Sleep(Duration),
}

/// The scripted life of a launched task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskScript(pub Vec<TaskStep>);

impl TaskScript {
    fn update(state: TaskState, message: Option<&str>) -> TaskStep {
        TaskStep::Update {
            state,
            message: message.map(str::to_string),
            reason: None,
        }
    }

    /// STARTING → RUNNING → FINISHED at once (the default).
    pub fn finish() -> TaskScript {
        TaskScript(vec![
            Self::update(TaskState::TaskStarting, None),
            Self::update(TaskState::TaskRunning, None),
            Self::update(
                TaskState::TaskFinished,
                Some("Command exited with status 0"),
            ),
        ])
    }

    /// STARTING → RUNNING, then held until released or killed.
    pub fn run_until_released() -> TaskScript {
        TaskScript(vec![
            Self::update(TaskState::TaskStarting, None),
            Self::update(TaskState::TaskRunning, None),
            TaskStep::Hold,
            Self::update(
                TaskState::TaskFinished,
                Some("Command exited with status 0"),
            ),
        ])
    }

    /// STARTING → RUNNING → FAILED with the command's exit status.
    pub fn fail(exit_status: i32) -> TaskScript {
        TaskScript(vec![
            Self::update(TaskState::TaskStarting, None),
            Self::update(TaskState::TaskRunning, None),
            Self::update(
                TaskState::TaskFailed,
                Some(&format!("Command exited with status {exit_status}")),
            ),
        ])
    }

    /// STARTING → RUNNING → `after` → FINISHED.
    pub fn finish_after(after: Duration) -> TaskScript {
        TaskScript(vec![
            Self::update(TaskState::TaskStarting, None),
            Self::update(TaskState::TaskRunning, None),
            TaskStep::Sleep(after),
            Self::update(
                TaskState::TaskFinished,
                Some("Command exited with status 0"),
            ),
        ])
    }

    /// Appends one agent update.
    pub fn then(
        mut self,
        state: TaskState,
        message: Option<&str>,
        reason: Option<Reason>,
    ) -> TaskScript {
        self.0.push(TaskStep::Update {
            state,
            message: message.map(str::to_string),
            reason,
        });
        self
    }
}

/// A fake agent: what its offers carry.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    /// Empty = `<master id>-S<n>`.
    pub id: String,
    pub hostname: String,
    /// 0 = the fake master's own port (which also serves the agent's `/files/read`).
    pub port: u16,
    pub resources: Vec<Res>,
    pub attributes: Vec<pb::Attribute>,
}

impl AgentSpec {
    /// An agent on 127.0.0.1 with `cpus`, `mem` (MB), 4096 MB disk and ports 31000-32000.
    pub fn new(cpus: f64, mem: f64) -> AgentSpec {
        AgentSpec {
            id: String::new(),
            hostname: "127.0.0.1".to_string(),
            port: 0,
            resources: vec![
                Res::ranges("ports", 31000, 32000),
                Res::scalar("cpus", cpus),
                Res::scalar("mem", mem),
                Res::scalar("disk", 4096.0),
            ],
            attributes: Vec::new(),
        }
    }

    pub fn with_id(mut self, id: &str) -> AgentSpec {
        self.id = id.to_string();
        self
    }

    pub fn with_hostname(mut self, hostname: &str) -> AgentSpec {
        self.hostname = hostname.to_string();
        self
    }

    /// Adds a resource (e.g. `Res::scalar("cpus", 2.0).reserved("eng")`).
    pub fn with_resource(mut self, r: Res) -> AgentSpec {
        self.resources.push(r);
        self
    }

    /// Adds a TEXT attribute.
    pub fn with_text_attribute(mut self, name: &str, value: &str) -> AgentSpec {
        self.attributes.push(pb::Attribute {
            name: name.to_string(),
            r#type: pb::value::Type::Text as i32,
            text: Some(pb::value::Text {
                value: value.to_string(),
            }),
            ..Default::default()
        });
        self
    }

    /// Adds a SCALAR attribute.
    pub fn with_scalar_attribute(mut self, name: &str, value: f64) -> AgentSpec {
        self.attributes.push(pb::Attribute {
            name: name.to_string(),
            r#type: pb::value::Type::Scalar as i32,
            scalar: Some(pb::value::Scalar { value }),
            ..Default::default()
        });
        self
    }
}

/// How to start a fake master.
#[derive(Clone)]
pub struct FakeMasterOptions {
    /// Sent in SUBSCRIBED and used for HEARTBEATs (a real master: always 15 s).
    pub heartbeat_interval: Duration,
    /// How long an unacknowledged agent update waits before it is resent (agent: 10 s).
    pub update_retry_interval: Duration,
    /// Empty = a random UUID.
    pub master_id: String,
    pub hostname: String,
    /// `Some` = HTTP Basic framework authentication with these (principal, secret) pairs.
    pub credentials: Option<Vec<(String, String)>>,
    /// Record every request (turn off for benchmarks with millions of calls).
    pub record_calls: bool,
    pub default_task_script: TaskScript,
    pub agents: Vec<AgentSpec>,
    pub leadership: Leadership,
    /// Terminal tasks kept per framework for `/master/state`.
    pub completed_tasks_kept: usize,
}

impl Default for FakeMasterOptions {
    fn default() -> Self {
        FakeMasterOptions {
            heartbeat_interval: Duration::from_secs(15),
            update_retry_interval: Duration::from_secs(10),
            master_id: String::new(),
            hostname: "127.0.0.1".to_string(),
            credentials: None,
            record_calls: true,
            default_task_script: TaskScript::finish(),
            agents: Vec::new(),
            leadership: Leadership::Leader,
            completed_tasks_kept: 1000,
        }
    }
}

/// One request the fake received, with the answer's status.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub method: String,
    pub path: String,
    pub headers: ::http::HeaderMap,
    pub body: Bytes,
    /// The decoded call, when the body was a valid Call.
    pub call: Option<Call>,
    pub status: u16,
}

impl RecordedCall {
    pub fn call_type(&self) -> Option<call::Type> {
        self.call
            .as_ref()
            .and_then(|c| c.r#type)
            .and_then(|t| call::Type::try_from(t).ok())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    calls: Mutex<Vec<RecordedCall>>,
    record_calls: bool,
    timer_wake: Notify,
    changed: Notify,
    heartbeats: AtomicBool,
    heartbeat_interval: Duration,
    addr: SocketAddr,
    /// Connection cuts still to make: at the next call of that type.
    cuts: Mutex<Vec<(call::Type, cut::Cut)>>,
}

impl Shared {
    /// Runs `f` on the state, then wakes the timer task and waiters.
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut State, Instant) -> R) -> R {
        let (r, wake) = {
            let mut st = self.lock();
            let r = f(&mut st, Instant::now());
            (r, std::mem::take(&mut st.wake_ticker))
        };
        if wake {
            self.timer_wake.notify_one();
        }
        self.changed.notify_waiters();
        r
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, c: RecordedCall) {
        if self.record_calls {
            self.calls.lock().unwrap_or_else(|e| e.into_inner()).push(c);
        }
        self.changed.notify_waiters();
    }
}

/// A running fake master. Dropping it stops the server.
pub struct FakeMaster {
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    ticker: JoinHandle<()>,
    /// The executing agents' sandbox root and container label, once [`FakeMaster::execute_tasks`].
    exec: Mutex<Option<(tempfile::TempDir, String)>>,
}

impl Drop for FakeMaster {
    fn drop(&mut self) {
        self.server.abort();
        self.ticker.abort();
        if let Some((_, label)) = self.exec.lock().unwrap_or_else(|e| e.into_inner()).take() {
            exec::remove_containers(&label);
        }
    }
}

fn master_info(id: &str, hostname: &str, port: u16) -> pb::MasterInfo {
    use pb::master_info::capability::Type as Cap;
    pb::MasterInfo {
        id: id.to_string(),
        ip: u32::from_le_bytes([127, 0, 0, 1]),
        port: u32::from(port),
        pid: Some(format!("master@127.0.0.1:{port}")),
        hostname: Some(hostname.to_string()),
        version: Some("1.12.0".to_string()),
        address: Some(pb::Address {
            hostname: Some(hostname.to_string()),
            ip: Some("127.0.0.1".to_string()),
            port: i32::from(port),
        }),
        domain: None,
        capabilities: [Cap::AgentUpdate, Cap::AgentDraining, Cap::QuotaV2]
            .into_iter()
            .map(|t| pb::master_info::Capability {
                r#type: Some(t as i32),
            })
            .collect(),
    }
}

impl FakeMaster {
    /// Binds 127.0.0.1:0 and serves until shut down.
    pub async fn start(opts: FakeMasterOptions) -> FakeMaster {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the fake master");
        let addr = listener.local_addr().expect("local addr");
        let id = if opts.master_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            opts.master_id.clone()
        };
        let state = State {
            master_info: master_info(&id, &opts.hostname, addr.port()),
            heartbeat: opts.heartbeat_interval,
            update_retry: opts.update_retry_interval,
            leader: opts.leadership.clone(),
            fail_next: Vec::new(),
            credentials: opts.credentials.clone(),
            frameworks: Default::default(),
            removed: Default::default(),
            agents: Vec::new(),
            agent_index: Default::default(),
            offers: Default::default(),
            next_framework: 0,
            next_offer: 0,
            next_agent: 0,
            scripts: Default::default(),
            default_script: opts.default_task_script.clone(),
            script_fn: None,
            timers: Default::default(),
            timer_data: Default::default(),
            next_timer: 0,
            wake_ticker: false,
            dirty_agents: Default::default(),
            sandboxes: Default::default(),
            files: Default::default(),
            stats: Stats::default(),
            launched: Default::default(),
            completed_keep: opts.completed_tasks_kept,
            exec: None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            calls: Mutex::new(Vec::new()),
            record_calls: opts.record_calls,
            timer_wake: Notify::new(),
            changed: Notify::new(),
            heartbeats: AtomicBool::new(true),
            heartbeat_interval: opts.heartbeat_interval,
            addr,
            cuts: Mutex::new(Vec::new()),
        });
        let router = http::router(shared.clone());
        let server = tokio::spawn(async move {
            let app = router.into_make_service_with_connect_info::<cut::Conn>();
            let _ = axum::serve(cut::CutListener(listener), app).await;
        });
        let ticker = tokio::spawn(ticker(Arc::downgrade(&shared)));
        let master = FakeMaster {
            shared,
            server,
            ticker,
            exec: Mutex::new(None),
        };
        for a in opts.agents {
            master.add_agent(a);
        }
        master
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// `127.0.0.1:<port>`.
    pub fn host_port(&self) -> String {
        self.shared.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn master_info(&self) -> pb::MasterInfo {
        self.shared.lock().master_info.clone()
    }

    /// The MasterInfo JSON a real master writes into its ZooKeeper `json.info_*` node
    /// (keys in alphabetical order, compact).
    pub fn zk_node_json(&self) -> String {
        let mi = self.master_info();
        let port = mi.port;
        let host = mi.hostname.clone().unwrap_or_default();
        format!(
            "{{\"address\":{{\"hostname\":\"{host}\",\"ip\":\"127.0.0.1\",\"port\":{port}}},\"capabilities\":[{{\"type\":\"AGENT_UPDATE\"}},{{\"type\":\"AGENT_DRAINING\"}},{{\"type\":\"QUOTA_V2\"}}],\"hostname\":\"{host}\",\"id\":\"{}\",\"ip\":{},\"pid\":\"master@127.0.0.1:{port}\",\"port\":{port},\"version\":\"1.12.0\"}}",
            mi.id, mi.ip
        )
    }

    /// Registers an agent; its free resources are offered at once. Returns the agent id.
    pub fn add_agent(&self, spec: AgentSpec) -> String {
        let port = self.shared.addr.port();
        self.shared
            .with_state(|s, now| s.add_agent(spec, port, now))
    }

    /// The script for the task with this id (overrides the default).
    /// Removes a framework as an operator's teardown (or a failover timeout that ran out)
    /// does: its tasks are killed silently, and its id can never subscribe again.
    pub fn remove_framework(&self, framework_id: &str) {
        self.shared
            .with_state(|s, now| s.remove_framework(framework_id, now));
    }

    pub fn set_task_script(&self, task_id: &str, script: TaskScript) {
        self.shared
            .with_state(|s, _| s.scripts.insert(task_id.to_string(), script));
    }

    pub fn set_default_task_script(&self, script: TaskScript) {
        self.shared.with_state(|s, _| s.default_script = script);
    }

    /// Chooses a script per launched TaskInfo (wins over the default, not over per-id scripts).
    pub fn set_task_script_fn(
        &self,
        f: impl Fn(&pb::TaskInfo) -> TaskScript + Send + Sync + 'static,
    ) {
        self.shared
            .with_state(|s, _| s.script_fn = Some(Arc::new(f)));
    }

    /// Continues a task held by [`TaskStep::Hold`]. Returns false if no such held task.
    pub fn release_task(&self, task_id: &str) -> bool {
        self.shared.with_state(|s, now| {
            let Some(fid) = s.owner_of(task_id) else {
                return false;
            };
            let steps = match s.task_mut(&fid, task_id) {
                Some(t) if t.held && !t.terminal => {
                    t.held = false;
                    std::mem::take(&mut t.remaining)
                }
                _ => return false,
            };
            s.run_script(&fid, task_id, steps, now);
            s.allocate(now);
            true
        })
    }

    /// Makes the agent report `state` for a task now (queued behind unacknowledged updates).
    pub fn send_task_update(
        &self,
        task_id: &str,
        state: TaskState,
        message: Option<&str>,
        reason: Option<Reason>,
    ) -> bool {
        self.shared.with_state(|s, now| {
            let Some(fid) = s.owner_of(task_id) else {
                return false;
            };
            if let Some(t) = s.task_mut(&fid, task_id) {
                t.remaining.clear();
                t.held = false;
                t.script_gen += 1;
            }
            s.agent_update(
                &fid,
                task_id,
                state,
                message.map(str::to_string),
                reason,
                now,
            );
            s.allocate(now);
            true
        })
    }

    /// The latest state the master knows for a task it still tracks.
    pub fn task_state(&self, task_id: &str) -> Option<TaskState> {
        let st = self.shared.lock();
        let fid = st.owner_of(task_id)?;
        TaskState::try_from(st.frameworks[&fid].tasks[task_id].state).ok()
    }

    /// Agent updates of this task not yet acknowledged.
    pub fn unacknowledged_updates(&self, task_id: &str) -> usize {
        let st = self.shared.lock();
        st.owner_of(task_id)
            .map(|fid| st.frameworks[&fid].tasks[task_id].pending.len())
            .unwrap_or(0)
    }

    /// Whether the master ever placed the task on an agent (its launch was accepted), whatever
    /// became of it since.
    pub fn was_launched(&self, task_id: &str) -> bool {
        self.shared.lock().launched.contains(task_id)
    }

    /// Whether the master still tracks the task (terminal + acknowledged tasks are dropped).
    pub fn knows_task(&self, task_id: &str) -> bool {
        self.shared.lock().owner_of(task_id).is_some()
    }

    /// The stdout and stderr that `/files/read` serves for a task's sandbox.
    pub fn set_task_output(&self, task_id: &str, stdout: &str, stderr: &str) {
        self.shared.with_state(|s, _| {
            s.files.insert(
                task_id.to_string(),
                (
                    Bytes::from(stdout.to_string()),
                    Bytes::from(stderr.to_string()),
                ),
            )
        });
    }

    /// The sandbox directory of a launched task (as `/slave(1)/state` reports it).
    pub fn sandbox_dir(&self, task_id: &str) -> Option<String> {
        let st = self.shared.lock();
        st.sandboxes
            .iter()
            .find(|(_, (_, t))| t == task_id)
            .map(|(d, _)| d.clone())
    }

    /// Every request received so far, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The decoded calls of one type.
    pub fn calls_of(&self, t: call::Type) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.call_type() == Some(t))
            .filter_map(|c| c.call)
            .collect()
    }

    pub fn clear_calls(&self) {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// Ids of the frameworks the master knows (connected or not).
    pub fn framework_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shared.lock().frameworks.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn is_connected(&self, framework_id: &str) -> bool {
        self.shared
            .lock()
            .frameworks
            .get(framework_id)
            .is_some_and(|f| f.stream.is_some())
    }

    /// The current `Mesos-Stream-Id` of a framework.
    pub fn stream_id(&self, framework_id: &str) -> Option<String> {
        self.shared
            .lock()
            .frameworks
            .get(framework_id)
            .and_then(|f| f.stream.as_ref().map(|s| s.id.clone()))
    }

    /// Outstanding offer ids.
    pub fn outstanding_offers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shared.lock().offers.keys().cloned().collect();
        v.sort();
        v
    }

    /// Waits (on the tokio clock) until `cond` holds; panics with `what` after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&FakeMaster) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if cond(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() && !cond(self) {
                panic!("fake master: timed out after {timeout:?} waiting for {what}");
            }
        }
    }

    // ----- faults ---------------------------------------------------------------------------

    /// Aborts every subscription stream (no terminating chunk), as a dying master does.
    pub fn drop_streams(&self) {
        self.shared
            .with_state(|s, _| s.broadcast(|| StreamMsg::Abort));
    }

    /// Ends every subscription stream cleanly (terminating chunk).
    pub fn close_streams(&self) {
        self.shared
            .with_state(|s, _| s.broadcast(|| StreamMsg::Close));
    }

    /// Stops sending periodic HEARTBEATs (streams stay open and silent).
    pub fn stop_heartbeats(&self) {
        self.shared.heartbeats.store(false, Ordering::SeqCst);
    }

    pub fn resume_heartbeats(&self) {
        self.shared.heartbeats.store(true, Ordering::SeqCst);
    }

    /// Writes the first bytes of a record and then aborts every stream.
    pub fn close_mid_record(&self) {
        self.shared.with_state(|s, _| {
            s.broadcast(|| StreamMsg::Raw(Bytes::from_static(b"120\n{\"type\":\"HEART")));
            s.broadcast(|| StreamMsg::Abort);
        });
    }

    /// Writes raw bytes on every stream (hostile-stream tests).
    pub fn inject_raw(&self, bytes: &[u8]) {
        let b = Bytes::copy_from_slice(bytes);
        self.shared
            .with_state(|s, _| s.broadcast(|| StreamMsg::Raw(b.clone())));
    }

    /// Answers the next `n` scheduler calls (SUBSCRIBE included) with `status` and `body`.
    pub fn fail_next_calls(&self, n: usize, status: u16, body: &str) {
        self.shared.with_state(|s, _| {
            for _ in 0..n {
                s.fail_next.push((status, body.to_string()));
            }
        });
    }

    /// Closes the connection that carries the next call of type `t`, without an answer:
    /// before the call is carried out or right after ([`cut::Cut`]). The call is recorded
    /// with status 0. Cuts add up: two calls cut the next two calls of that type.
    pub fn cut_connection_at_next(&self, t: call::Type, when: cut::Cut) {
        self.shared
            .cuts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((t, when));
    }

    /// Leader, standby redirecting to another master, or no leader.
    pub fn set_leadership(&self, l: Leadership) {
        self.shared.with_state(|s, _| s.leader = l);
    }

    /// Makes this master a standby of `leader` (its streams are dropped, as when a leader
    /// dies) and `leader` the leader.
    pub fn flip_leader_to(&self, leader: &FakeMaster) {
        leader.set_leadership(Leadership::Leader);
        self.set_leadership(Leadership::Standby(leader.host_port()));
        self.drop_streams();
    }

    /// Turns on HTTP Basic framework authentication.
    pub fn require_auth(&self, principal: &str, secret: &str) {
        let cred = (principal.to_string(), secret.to_string());
        self.shared
            .with_state(|s, _| s.credentials = Some(vec![cred]));
    }

    /// Partitions an agent away (see [`state::State::mark_unreachable`]). False if unknown.
    pub fn mark_agent_unreachable(&self, agent_id: &str) -> bool {
        self.shared
            .with_state(|s, now| s.mark_unreachable(agent_id, now))
    }

    /// Brings an unreachable agent back; its running tasks are reported RUNNING again.
    pub fn reregister_agent(&self, agent_id: &str) -> bool {
        self.shared.with_state(|s, now| s.reregister(agent_id, now))
    }

    /// Rescinds every outstanding offer (RESCIND events) and makes new ones.
    pub fn rescind_offers(&self) {
        self.shared.with_state(|s, now| s.rescind_all(now));
    }

    /// Stops the server and its timers.
    /// From now on the agents run every task they are given, as a real agent does (see
    /// [`exec`]): fetch, pull, `docker run` or the command executor, real output and exit
    /// status. Needs the Docker engine for containerized tasks. Task scripts no longer apply.
    pub fn execute_tasks(&self) {
        let root = tempfile::Builder::new()
            .prefix("am-fake-agent-")
            .tempdir()
            .expect("a sandbox root for the fake agents");
        let label = self.shared.lock().master_info.id.clone();
        let executor = exec::start(
            Arc::downgrade(&self.shared),
            root.path().to_path_buf(),
            label.clone(),
        );
        self.shared.with_state(|s, _| s.exec = Some(executor));
        *self.exec.lock().unwrap() = Some((root, label));
    }

    /// The command line an executing agent ran for `task_id`: the `docker` arguments, or the
    /// argv of a task without a container.
    pub fn executed_command(&self, task_id: &str) -> Option<Vec<String>> {
        let record = self.shared.lock().exec.as_ref()?.record.clone();
        let commands = &record.lock().unwrap().commands;
        commands.get(task_id).cloned()
    }

    /// The host directory of a task's sandbox (executing agents).
    pub fn sandbox_path(&self, task_id: &str) -> Option<std::path::PathBuf> {
        let dir = self.sandbox_dir(task_id)?;
        let p = std::path::PathBuf::from(dir);
        p.is_dir().then_some(p)
    }

    pub async fn shutdown(self) {
        self.drop_streams();
        self.server.abort();
        self.ticker.abort();
        tokio::task::yield_now().await;
    }
}

/// Drains the timer heap on the tokio clock.
async fn ticker(shared: std::sync::Weak<Shared>) {
    loop {
        let (deadline, wake) = {
            let Some(s) = shared.upgrade() else { return };
            let d = s.lock().next_deadline();
            (d, s)
        };
        let notified = wake.timer_wake.notified();
        match deadline {
            Some(at) => {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            None => notified.await,
        }
        drop(wake);
        let Some(s) = shared.upgrade() else { return };
        {
            let mut st = s.lock();
            let now = Instant::now();
            for t in st.due_timers(now) {
                st.fire(t, now);
            }
        }
        s.changed.notify_waiters();
    }
}
