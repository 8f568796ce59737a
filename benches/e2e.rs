//! End-to-end benchmark of the daemon against the in-process fake Mesos master (issue 8).
//!
//! `cargo bench --bench e2e` (or `bash benches/run.sh`, which also runs the matching bench):
//!
//! Every run is made at three offered loads (`AM_BENCH_LOADS`, default `flat,1000,100`): *flat
//! out* (N tasks submitted at once, each finishing at once), and a fixed rate of 1,000 and 100
//! tasks/s (a `POST /v1/tasks` of rate × 100 ms tasks every 100 ms for `AM_BENCH_LOAD_SECONDS`,
//! default 10 s, each task running 1 s on its agent; the feed is read at most every 100 ms).
//! Next to tasks/s each run reports the **daemon's CPU per task**: its user + system time from
//! `/proc/<pid>/stat` from the first POST until every task is terminal and acknowledged, / N,
//! with the system (kernel) part of it and the context switches of its threads per task (from
//! `/proc/<pid>/task/*/status`); the Python peer runs at the same loads on the same master and
//! reports its own.
//!
//! 1. **launch rate** — the real `airflow-mesos scheduler` binary (a subprocess) is pointed at a
//!    fake master whose agents finish every task at once (STARTING → RUNNING → FINISHED, each
//!    update with a uuid, resent until acknowledged). N tasks (default 10,000) are submitted
//!    through `POST /v1/tasks` in batches; `/v1/events` is followed until every task is
//!    terminal, and the fake master must have received an ACKNOWLEDGE for every update it sent.
//!    Once with SQLite, once with PostgreSQL (a fresh database on `AM_TEST_PG_URL`).
//! 2. **status updates/s** — from the same runs: acknowledgements counted by the fake master,
//!    sampled every 10 ms, over the span from the first to the last one.
//! 3. **memory** — peak RSS (`VmHWM`) of the daemon while 100,000 tasks are tracked (all
//!    launched and held RUNNING by the fake agents).
//! 4. **Python peers** — `benches/peer/mesos110_peer.py` (Airflow 1.10's MesosExecutor algorithm
//!    on pymesos) and, when its venv exists, `benches/peer/avmesos_peer.py` (the AVENTER
//!    provider), against the very fake master of the SQLite run, speaking Mesos JSON.
//!
//! Environment: `AM_BENCH_TASKS` (N), `AM_BENCH_RSS_TASKS`, `AM_BENCH_PEER_TASKS`,
//! `AM_BENCH_AVMESOS_TASKS`, `AM_BENCH_ONLY` (comma list of `sqlite,postgres,rss,peer,avmesos`),
//! `AM_BENCH_LOADS` (comma list of `flat` and rates in tasks/s), `AM_BENCH_LOAD_SECONDS`,
//! `AM_BENCH_SUBMIT_TICK_MS` (time between two submissions of a fixed-rate load, 100),
//! `AM_TEST_PG_URL`, `AM_TEST_PYTHON` (python with pymesos; default `/opt/am-venv/bin/python`),
//! `AM_BENCH_AVMESOS_PYTHON` (python with the provider; default
//! `/opt/am-avmesos-venv/bin/python`), `AM_BENCH_DAEMON` (daemon binary; default the one cargo
//! built for this bench), `AM_BENCH_PERF=1` (`perf record` the daemon during each launch run
//! and print a flat profile). Figures are printed as they come and as a table at the end; a
//! machine-readable copy goes to `target/bench-e2e.json`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use support::fake_master::{AgentSpec, FakeMaster, FakeMasterOptions, TaskScript};

/// Resources every benchmark task asks for (Airflow 1.10's integer defaults).
const TASK_CPUS: f64 = 1.0;
const TASK_MEM: f64 = 256.0;
/// The bearer token the daemon is configured with (a throwaway value, not a secret).
const API_TOKEN: &str = "bench-token";
/// A run fails when no task makes progress for this long.
const STALL: Duration = Duration::from_secs(60);
/// How many task specs go in one `POST /v1/tasks`.
const BATCH: usize = 500;
/// How long a task of a fixed-rate load runs on its fake agent (between RUNNING and FINISHED).
const TASK_SECONDS: f64 = 1.0;
/// The most daemon CPU per task the targets allow (µs), by database.
const CPU_TARGET_SQLITE: &str = "<= 100";
const CPU_TARGET_POSTGRES: &str = "<= 150";

/// What to run, from the environment.
struct Settings {
    tasks: usize,
    rss_tasks: usize,
    peer_tasks: usize,
    avmesos_tasks: usize,
    only: Option<HashSet<String>>,
    pg_url: Option<String>,
    python: PathBuf,
    avmesos_python: PathBuf,
    daemon: PathBuf,
    repo: PathBuf,
    /// The offered loads to run, in order (`AM_BENCH_LOADS`).
    loads: Vec<Load>,
    /// How long a fixed-rate load submits tasks (`AM_BENCH_LOAD_SECONDS`).
    load_seconds: f64,
    /// Time between two submissions of a fixed-rate load (`AM_BENCH_SUBMIT_TICK_MS`).
    tick: Duration,
}

/// An offered load.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Load {
    /// N tasks submitted at once (batches of [`BATCH`], back to back), finishing at once.
    FlatOut,
    /// Tasks submitted at this many per second, each running [`TASK_SECONDS`] on its agent.
    Rate(f64),
}

impl Load {
    fn label(self) -> String {
        match self {
            Load::FlatOut => "flat out".into(),
            Load::Rate(r) => format!("{r:.0} tasks/s offered"),
        }
    }

    fn slug(self) -> String {
        match self {
            Load::FlatOut => "flat".into(),
            Load::Rate(r) => format!("rate{r:.0}"),
        }
    }
}

impl Settings {
    fn from_env() -> Result<Settings> {
        fn num(name: &str, default: usize) -> Result<usize> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}={v:?} is not a positive integer")),
                Err(_) => Ok(default),
            }
        }
        let tasks = num("AM_BENCH_TASKS", 10_000)?;
        let loads_text = std::env::var("AM_BENCH_LOADS").unwrap_or_else(|_| "flat,1000,100".into());
        let mut loads = Vec::new();
        for l in loads_text
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            loads.push(match l {
                "flat" => Load::FlatOut,
                r => match r.parse::<f64>() {
                    Ok(v) if v > 0.0 && v.is_finite() => Load::Rate(v),
                    _ => bail!("AM_BENCH_LOADS={loads_text:?}: {l:?} is neither `flat` nor a positive rate"),
                },
            });
        }
        let load_seconds = match std::env::var("AM_BENCH_LOAD_SECONDS") {
            Ok(v) => match v.trim().parse::<f64>() {
                Ok(x) if x > 0.0 && x.is_finite() => x,
                _ => bail!("AM_BENCH_LOAD_SECONDS={v:?} is not a positive number"),
            },
            Err(_) => 10.0,
        };
        let tick_ms = num("AM_BENCH_SUBMIT_TICK_MS", 100)?.max(1);
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Ok(Settings {
            tasks,
            rss_tasks: num("AM_BENCH_RSS_TASKS", 100_000)?,
            peer_tasks: num("AM_BENCH_PEER_TASKS", tasks)?,
            avmesos_tasks: num("AM_BENCH_AVMESOS_TASKS", 300)?,
            only: std::env::var("AM_BENCH_ONLY").ok().map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
            pg_url: std::env::var("AM_TEST_PG_URL")
                .ok()
                .filter(|v| !v.is_empty()),
            python: std::env::var_os("AM_TEST_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/opt/am-venv/bin/python")),
            avmesos_python: std::env::var_os("AM_BENCH_AVMESOS_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/opt/am-avmesos-venv/bin/python")),
            daemon: std::env::var_os("AM_BENCH_DAEMON")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_airflow-mesos"))),
            repo,
            loads,
            load_seconds,
            tick: Duration::from_millis(tick_ms as u64),
        })
    }

    fn wants(&self, part: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(part))
    }
}

/// One line of the summary table.
#[derive(Debug, Clone, serde::Serialize)]
struct Figure {
    name: String,
    value: Option<f64>,
    unit: String,
    target: String,
    note: String,
}

impl Figure {
    fn new(name: &str, value: Option<f64>, unit: &str, target: &str, note: String) -> Figure {
        let f = Figure {
            name: name.to_string(),
            value,
            unit: unit.to_string(),
            target: target.to_string(),
            note,
        };
        println!(
            "e2e: {} = {} {} ({}) {}",
            f.name,
            f.value.map_or("n/a".to_string(), |v| format!("{v:.1}")),
            f.unit,
            f.target,
            f.note
        );
        f
    }
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then do nothing.
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e: not run (pass --bench, e.g. `cargo bench --bench e2e`)");
        return Ok(());
    }
    let settings = Settings::from_env()?;
    if !settings.daemon.is_file() {
        bail!(
            "daemon binary {} not found (build it with `cargo build --release` or set AM_BENCH_DAEMON)",
            settings.daemon.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let figures = rt.block_on(run_all(&settings))?;
    print_summary(&figures);
    let out = settings.repo.join("target").join("bench-e2e.json");
    if let Err(e) = std::fs::write(&out, serde_json::to_vec_pretty(&figures)?) {
        eprintln!("e2e: could not write {}: {e}", out.display());
    }
    Ok(())
}

async fn run_all(s: &Settings) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();

    // SQLite, then the peers on the same fake master, once per offered load.
    if s.wants("sqlite") || s.wants("peer") || s.wants("avmesos") {
        for &load in &s.loads {
            let n = load_tasks(s, load);
            let master = load_master(load, n).await;
            let mut ours: Option<LaunchRun> = None;
            if s.wants("sqlite") {
                let dir = tempfile::tempdir()?;
                // `sqlite:/abs/path`: the configuration reads `sqlite:///x` the SQLAlchemy way,
                // as the relative path `x`.
                let url = format!("sqlite:{}", dir.path().join("bench.db").display());
                match launch_run(s, &master, &url, dir.path(), n, load, "sqlite").await {
                    Ok(r) => {
                        figures.extend(r.figures("SQLite", CPU_TARGET_SQLITE));
                        ours = Some(r);
                    }
                    Err(e) => figures.push(Figure::new(
                        &format!("launch rate, SQLite, {}", load.label()),
                        None,
                        "tasks/s",
                        if load == Load::FlatOut {
                            ">= 10000"
                        } else {
                            "(no target)"
                        },
                        format!("FAILED: {e:#}"),
                    )),
                }
            }
            if s.wants("peer") {
                let peer_n = match load {
                    Load::FlatOut => s.peer_tasks,
                    Load::Rate(_) => n,
                };
                figures.extend(peer_run(s, &master, peer_n, load, ours.as_ref()).await);
            }
            if s.wants("avmesos") && load == Load::FlatOut {
                figures.extend(avmesos_run(s, &master, ours.as_ref()).await);
            }
        }
    }

    if s.wants("postgres") {
        for &load in &s.loads {
            let n = load_tasks(s, load);
            let name = format!("launch rate, PostgreSQL, {}", load.label());
            match &s.pg_url {
                None => figures.push(Figure::new(
                    &name,
                    None,
                    "tasks/s",
                    "(no target)",
                    "not run: AM_TEST_PG_URL is not set (bash .ci/setup-databases.sh)".into(),
                )),
                Some(base) => {
                    let res = async {
                        let db = FreshPgDatabase::create(base).await?;
                        let master = load_master(load, n).await;
                        let dir = tempfile::tempdir()?;
                        let r =
                            launch_run(s, &master, &db.url, dir.path(), n, load, "postgres").await;
                        db.drop_database().await;
                        r
                    }
                    .await;
                    match res {
                        Ok(r) => figures.extend(r.figures("PostgreSQL", CPU_TARGET_POSTGRES)),
                        Err(e) => figures.push(Figure::new(
                            &name,
                            None,
                            "tasks/s",
                            "(no target)",
                            format!("FAILED: {e:#}"),
                        )),
                    }
                }
            }
        }
    }

    if s.wants("rss") {
        match rss_queued_run(s).await {
            Ok(f) => figures.push(f),
            Err(e) => figures.push(Figure::new(
                "peak RSS, tasks queued",
                None,
                "MB",
                "<= 200",
                format!("FAILED: {e:#}"),
            )),
        }
        match rss_run(s).await {
            Ok(f) => figures.push(f),
            Err(e) => figures.push(Figure::new(
                "peak RSS, tasks running",
                None,
                "MB",
                "<= 200",
                format!("FAILED: {e:#}"),
            )),
        }
    }
    Ok(figures)
}

/// How many tasks a run of `load` submits: N flat out, rate × `load_seconds` otherwise.
fn load_tasks(s: &Settings, load: Load) -> usize {
    match load {
        Load::FlatOut => s.tasks,
        Load::Rate(r) => ((r * s.load_seconds).round() as usize).max(1),
    }
}

/// The fake master of one offered load: flat out, 10 agents with room for all `tasks` at
/// once, each task finishing at once; at a fixed rate, 10 agents with room for three seconds'
/// worth of tasks, each task running [`TASK_SECONDS`].
async fn load_master(load: Load, tasks: usize) -> FakeMaster {
    match load {
        Load::FlatOut => throughput_master(tasks, TaskScript::finish()).await,
        Load::Rate(r) => {
            let room = ((r * 3.0 * TASK_SECONDS).ceil() as usize).max(10);
            throughput_master(
                room,
                TaskScript::finish_after(Duration::from_secs_f64(TASK_SECONDS)),
            )
            .await
        }
    }
}

/// A fake master whose agents, together, can run `tasks` tasks at once (10 agents).
async fn throughput_master(tasks: usize, script: TaskScript) -> FakeMaster {
    let agents = 10usize;
    let per_agent = tasks.div_ceil(agents).max(1) as f64;
    let opts = FakeMasterOptions {
        record_calls: false,
        default_task_script: script,
        agents: (0..agents)
            .map(|_| AgentSpec::new(per_agent * TASK_CPUS, per_agent * TASK_MEM))
            .collect(),
        ..Default::default()
    };
    FakeMaster::start(opts).await
}

// ------------------------------------------------------------------------------------------
// The daemon as a subprocess.

struct Daemon {
    child: Child,
    api: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Daemon {
    /// Writes an airflow.cfg for `master` and `database_url` into `dir`, starts
    /// `airflow-mesos scheduler`, and waits until it is subscribed.
    async fn start(
        s: &Settings,
        master: &FakeMaster,
        database_url: &str,
        dir: &Path,
    ) -> Result<Daemon> {
        let api_port = free_port()?;
        let cfg = dir.join("airflow.cfg");
        let text = format!(
            "[mesos]\n\
             master = {master}\n\
             framework_name = airflow-mesos-bench\n\
             backend = mesos\n\
             database_url = {database_url}\n\
             api_listen = 127.0.0.1:{api_port}\n\
             api_token = {API_TOKEN}\n\
             docker_image_slave = am-bench/busybox\n\
             task_cpu = {TASK_CPUS}\n\
             task_memory = {TASK_MEM}\n\
             checkpoint = True\n\
             failover_timeout = 604800\n",
            master = master.host_port(),
        );
        std::fs::write(&cfg, text).with_context(|| format!("writing {}", cfg.display()))?;
        // AM_BENCH_KEEP_LOGS=1 keeps the daemon's log in target/ (with AM_BENCH_DAEMON_LOG).
        let log = if std::env::var("AM_BENCH_KEEP_LOGS").ok().as_deref() == Some("1") {
            s.repo.join("target").join(format!(
                "bench-daemon-{}.log",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ))
        } else {
            dir.join("daemon.log")
        };
        let log_file = std::fs::File::create(&log)?;
        let before: HashSet<String> = master.framework_ids().into_iter().collect();
        let child = Command::new(&s.daemon)
            .arg("scheduler")
            .env("AIRFLOW_CONFIG", &cfg)
            .env("AIRFLOW_HOME", dir)
            .env(
                "AIRFLOW_MESOS_LOG",
                std::env::var("AM_BENCH_DAEMON_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {} scheduler", s.daemon.display()))?;
        let mut d = Daemon {
            child,
            api: format!("http://127.0.0.1:{api_port}"),
            log,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(4)
                .build()?,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = d.child.try_wait()? {
                bail!(
                    "the daemon exited with {status} before subscribing; its log:\n{}",
                    d.log_tail()
                );
            }
            let subscribed = master
                .framework_ids()
                .into_iter()
                .any(|f| !before.contains(&f) && master.is_connected(&f));
            let healthy = d
                .http
                .get(format!("{}/healthz", d.api))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if subscribed && healthy {
                return Ok(d);
            }
            if Instant::now() > deadline {
                let _ = d.child.kill();
                bail!(
                    "the daemon did not subscribe and answer /healthz within 60 s (subscribed: {subscribed}, healthy: {healthy}); its log:\n{}",
                    d.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        rb.bearer_auth(API_TOKEN)
    }

    /// `POST /v1/tasks` with one batch; returns the ids the daemon gave the tasks.
    async fn submit(&self, specs: &[Value]) -> Result<Vec<String>> {
        let resp = self
            .auth(self.http.post(format!("{}/v1/tasks", self.api)))
            .json(&json!({ "tasks": specs }))
            .timeout(STALL)
            .send()
            .await
            .with_context(|| {
                format!(
                    "POST /v1/tasks (daemon VmHWM {} MB)",
                    self.memory_kb()
                        .map_or("?".into(), |(hwm, _)| format!("{:.0}", hwm as f64 / 1024.0))
                )
            })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST /v1/tasks answered {status}: {body}");
        }
        let ids = submitted_ids(&body);
        if ids.len() != specs.len() {
            bail!(
                "POST /v1/tasks accepted {} of {} tasks: {body}",
                ids.len(),
                specs.len()
            );
        }
        Ok(ids)
    }

    /// One long poll of the change feed after `since`.
    async fn events(&self, since: &Option<String>) -> Result<(Vec<TaskEvent>, Option<String>)> {
        let mut url = format!("{}/v1/events?wait=5&limit=10000", self.api);
        if let Some(c) = since {
            write!(url, "&since={c}").ok();
        }
        let resp = self
            .auth(self.http.get(url))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .context("GET /v1/events")?;
        let status = resp.status();
        if !status.is_success() {
            bail!(
                "GET /v1/events answered {status}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
        let body: Value = resp.json().await.context("GET /v1/events body")?;
        Ok(parse_events(&body, since))
    }

    /// The daemon's `/metrics` without comment lines (for error messages).
    async fn metrics_text(&self) -> String {
        match self.http.get(format!("{}/metrics", self.api)).send().await {
            Ok(r) => r
                .text()
                .await
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("(GET /metrics failed: {e})"),
        }
    }

    /// Peak and current resident set size in kB, from `/proc/<pid>/status`.
    fn memory_kb(&self) -> Option<(u64, u64)> {
        proc_memory_kb(self.pid())
    }

    /// SIGTERM (the daemon's normal shutdown), then SIGKILL after 30 s.
    async fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("e2e: the daemon did not stop within 30 s of SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn proc_memory_kb(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A state change read from `/v1/events`.
#[derive(Debug, Clone)]
struct TaskEvent {
    task_id: String,
    state: String,
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "killed")
}

/// The task ids in a `POST /v1/tasks` answer.
fn submitted_ids(body: &Value) -> Vec<String> {
    let list = body
        .get("tasks")
        .or_else(|| body.get("ids"))
        .and_then(Value::as_array)
        .cloned()
        .or_else(|| body.as_array().cloned())
        .unwrap_or_default();
    list.iter()
        .filter_map(|t| match t {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o
                .get("id")
                .or_else(|| o.get("task_id"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        })
        .collect()
}

/// Events and the next cursor from a `/v1/events` answer.
fn parse_events(body: &Value, since: &Option<String>) -> (Vec<TaskEvent>, Option<String>) {
    let list = body
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .or_else(|| body.as_array().cloned())
        .unwrap_or_default();
    let mut events = Vec::with_capacity(list.len());
    let mut last_seq: Option<String> = None;
    for e in &list {
        let id = e
            .get("task_id")
            .or_else(|| e.get("id"))
            .and_then(Value::as_str);
        let state = e.get("state").and_then(Value::as_str);
        if let (Some(id), Some(state)) = (id, state) {
            events.push(TaskEvent {
                task_id: id.to_string(),
                state: state.to_string(),
            });
        }
        if let Some(seq) = e.get("seq").or_else(|| e.get("cursor")) {
            last_seq = Some(value_text(seq));
        }
    }
    let next = ["next", "cursor", "next_since", "last_seq"]
        .iter()
        .find_map(|k| body.get(*k).filter(|v| !v.is_null()).map(value_text))
        .or(last_seq)
        .or_else(|| since.clone());
    (events, next)
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn task_spec(i: usize) -> Value {
    json!({
        "name": format!("bench-{i}"),
        "command": "true",
        "cpus": TASK_CPUS,
        "mem": TASK_MEM,
    })
}

// ------------------------------------------------------------------------------------------
// Launch rate and status-update rate.

struct LaunchRun {
    load: Load,
    tasks: usize,
    seconds: f64,
    submit_seconds: f64,
    acks: u64,
    ack_span_seconds: f64,
    peak_ack_rate: f64,
    failed: usize,
    rss_peak_kb: Option<u64>,
    /// CPU seconds (user + system) the daemon and this bench process (the fake master and the
    /// API client) used during the run, and the 1-minute load average at its start.
    daemon_cpu: f64,
    bench_cpu: f64,
    /// The daemon's share of `daemon_cpu` spent in the kernel (system time), in seconds.
    daemon_sys: f64,
    /// Context switches of the daemon's threads during the run (voluntary and not).
    daemon_switches: u64,
    load_before: String,
}

impl LaunchRun {
    fn tasks_per_s(&self) -> f64 {
        self.tasks as f64 / self.seconds
    }

    fn updates_per_s(&self) -> f64 {
        self.acks as f64 / self.ack_span_seconds.max(1e-9)
    }

    /// The daemon's CPU time per task, in µs.
    fn cpu_us_per_task(&self) -> f64 {
        self.daemon_cpu / self.tasks.max(1) as f64 * 1e6
    }

    fn figures(&self, db: &str, cpu_target: &str) -> Vec<Figure> {
        let n = self.tasks;
        let load = self.load.label();
        let rate_target = match (db, self.load) {
            ("SQLite", Load::FlatOut) => ">= 10000",
            _ => "(no target)",
        };
        let how = match self.load {
            Load::FlatOut => format!("N={n} submitted at once in POSTs of {BATCH}"),
            Load::Rate(_) => {
                format!("N={n} submitted at a fixed rate, each running {TASK_SECONDS} s")
            }
        };
        let mut out = vec![
            Figure::new(
                &format!("launch rate, {db}, {load}"),
                Some(self.tasks_per_s()),
                "tasks/s",
                rate_target,
                format!(
                    "{how}: {:.2} s from first POST to all terminal+acked (POSTs took {:.2} s), {} failed, daemon peak RSS {} MB; CPU used: daemon {:.2} s, fake master + client {:.2} s; load average before: {}",
                    self.seconds,
                    self.submit_seconds,
                    self.failed,
                    self.rss_peak_kb.map_or("?".into(), |k| format!("{:.0}", k as f64 / 1024.0)),
                    self.daemon_cpu,
                    self.bench_cpu,
                    self.load_before,
                ),
            ),
            Figure::new(
                &format!("daemon CPU per task, {db}, {load}"),
                Some(self.cpu_us_per_task()),
                "µs",
                cpu_target,
                format!(
                    "user+sys of the daemon ({:.3} s, of which system {:.3} s = {:.0} µs per task; {:.1} context switches per task) from the first POST until all {n} tasks were terminal and acknowledged, / N",
                    self.daemon_cpu,
                    self.daemon_sys,
                    self.daemon_sys / n.max(1) as f64 * 1e6,
                    self.daemon_switches as f64 / n.max(1) as f64,
                ),
            ),
        ];
        if self.load == Load::FlatOut {
            out.push(Figure::new(
                &format!("status updates, {db}"),
                Some(self.updates_per_s()),
                "updates/s",
                ">= 20000",
                format!(
                    "{} updates committed+acknowledged in {:.2} s (first to last ACK); best 100 ms window {:.0}/s",
                    self.acks, self.ack_span_seconds, self.peak_ack_rate
                ),
            ));
        }
        out
    }
}

async fn launch_run(
    s: &Settings,
    master: &FakeMaster,
    database_url: &str,
    dir: &Path,
    n: usize,
    load: Load,
    label: &str,
) -> Result<LaunchRun> {
    let daemon = Daemon::start(s, master, database_url, dir).await?;
    let perf = Profiler::start(s, daemon.pid(), &format!("{label}-{}", load.slug()));
    let load_before = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let daemon_before = CpuTimes::of(daemon.pid()).unwrap_or_default();
    let bench_cpu_before = CpuTimes::of(std::process::id()).unwrap_or_default().total();
    let switches_before = context_switches(daemon.pid());
    let acks_before = master.stats().acknowledged;
    let updates_before = master.stats().agent_updates_sent;
    let specs: Vec<Value> = (0..n).map(task_spec).collect();

    // Sample the fake master's ACK counter every 10 ms while the work runs (first/last ACK
    // time, best 100 ms window).
    let stop = AtomicBool::new(false);
    let sampler = async {
        let mut samples: Vec<(Instant, u64)> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            samples.push((Instant::now(), master.stats().acknowledged));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        samples.push((Instant::now(), master.stats().acknowledged));
        samples
    };
    let work = async {
        let r = drive_launch(
            &daemon,
            master,
            &specs,
            load,
            s.tick,
            acks_before,
            updates_before,
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        r
    };
    let (result, samples) = tokio::join!(work, sampler);
    let daemon_after = CpuTimes::of(daemon.pid()).unwrap_or_default();
    let daemon_switches = context_switches(daemon.pid()).saturating_sub(switches_before);
    let bench_cpu = CpuTimes::of(std::process::id()).unwrap_or_default().total() - bench_cpu_before;
    if let Some(p) = perf {
        p.finish();
    }
    daemon.stop().await;
    let (seconds, submit_seconds, failed, rss_peak_kb) = result?;

    let acks = master.stats().acknowledged - acks_before;
    let (span, peak) = ack_span(&samples, acks_before);
    Ok(LaunchRun {
        load,
        tasks: n,
        seconds,
        submit_seconds,
        acks,
        ack_span_seconds: span,
        peak_ack_rate: peak,
        failed,
        rss_peak_kb,
        daemon_cpu: daemon_after.total() - daemon_before.total(),
        daemon_sys: daemon_after.sys - daemon_before.sys,
        daemon_switches,
        bench_cpu,
        load_before,
    })
}

/// The CPU seconds a process has used, from `/proc/<pid>/stat` (clock ticks of 1/100 s).
#[derive(Debug, Default, Clone, Copy)]
struct CpuTimes {
    user: f64,
    sys: f64,
}

impl CpuTimes {
    fn of(pid: u32) -> Option<CpuTimes> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        Some(CpuTimes {
            user: utime / 100.0,
            sys: stime / 100.0,
        })
    }

    fn total(self) -> f64 {
        self.user + self.sys
    }
}

/// Context switches (voluntary and not) of the threads a process has now, from
/// `/proc/<pid>/task/*/status`; threads that already ended are not counted (the daemon's
/// threads live as long as it does, but for the runtime's blocking pool).
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Submits every spec (flat out: back to back in POSTs of [`BATCH`]; at a fixed rate: a POST
/// of `rate × tick` specs every `tick`), follows the change feed until all are terminal and
/// waits for the fake master to have every agent update acknowledged. Returns (seconds,
/// seconds spent submitting, tasks not succeeded, daemon peak RSS in kB).
///
/// Flat out, the feed is long-polled back to back; at a fixed rate, at most once per `tick`
/// (as an Airflow executor reads it once per heartbeat), so that the daemon's CPU is not spent
/// answering a poll per commit.
async fn drive_launch(
    daemon: &Daemon,
    master: &FakeMaster,
    specs: &[Value],
    load: Load,
    tick: Duration,
    acks_before: u64,
    updates_before: u64,
) -> Result<(f64, f64, usize, Option<u64>)> {
    let n = specs.len();
    let t0 = Instant::now();
    let submit = async {
        let mut ids: HashSet<String> = HashSet::with_capacity(n);
        match load {
            Load::FlatOut => {
                for chunk in specs.chunks(BATCH) {
                    ids.extend(daemon.submit(chunk).await?);
                }
            }
            Load::Rate(rate) => {
                let per_tick = ((rate * tick.as_secs_f64()).round() as usize).max(1);
                for (k, chunk) in specs.chunks(per_tick).enumerate() {
                    tokio::time::sleep_until((t0 + tick * k as u32).into()).await;
                    ids.extend(daemon.submit(chunk).await?);
                }
            }
        }
        let took = t0.elapsed().as_secs_f64();
        if ids.len() != n {
            bail!(
                "the daemon returned {} distinct ids for {n} tasks",
                ids.len()
            );
        }
        Ok((ids, took))
    };
    // Flat out, following starts once every task is submitted (as before fixed-rate loads
    // existed); at a fixed rate, alongside the submissions.
    let follow = async {
        let mut terminal: HashMap<String, bool> = HashMap::with_capacity(n);
        let mut cursor: Option<String> = None;
        let mut rss_peak_kb = None;
        let mut progress = Instant::now();
        while terminal.len() < n {
            if progress.elapsed() > STALL {
                bail!(
                    "stalled: {} of {n} tasks terminal and no new one for {STALL:?}; daemon metrics:\n{}\ndaemon log:\n{}",
                    terminal.len(),
                    daemon.metrics_text().await,
                    daemon.log_tail()
                );
            }
            let polled = Instant::now();
            let (events, next) = daemon.events(&cursor).await?;
            cursor = next;
            for e in events {
                if is_terminal(&e.state) && !terminal.contains_key(&e.task_id) {
                    progress = Instant::now();
                    terminal.insert(e.task_id, e.state == "succeeded");
                }
            }
            rss_peak_kb = daemon.memory_kb().map(|(hwm, _)| hwm).or(rss_peak_kb);
            if matches!(load, Load::Rate(_)) && terminal.len() < n {
                tokio::time::sleep_until((polled + tick).into()).await;
            }
        }
        Ok((terminal, rss_peak_kb))
    };
    let ((ids, submit_seconds), (terminal, rss_peak_kb)) = match load {
        Load::FlatOut => {
            let sub = submit.await?;
            (sub, follow.await?)
        }
        Load::Rate(_) => tokio::try_join!(submit, follow)?,
    };
    if let Some(stray) = terminal.keys().find(|id| !ids.contains(*id)) {
        bail!("the change feed reported task {stray}, which this run did not submit");
    }
    let failed = terminal.values().filter(|ok| !**ok).count();
    // Every update the agents sent must be acknowledged (3 per task with these scripts).
    let expected = master.stats().agent_updates_sent - updates_before;
    let deadline = Instant::now() + Duration::from_secs(60);
    while master.stats().acknowledged - acks_before < expected {
        if Instant::now() > deadline {
            bail!(
                "all {n} tasks terminal, but only {} of {expected} agent updates acknowledged after 60 s more",
                master.stats().acknowledged - acks_before
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok((
        t0.elapsed().as_secs_f64(),
        submit_seconds,
        failed,
        rss_peak_kb,
    ))
}

/// Seconds from the first to the last ACK, and the best rate over a 100 ms window.
fn ack_span(samples: &[(Instant, u64)], base: u64) -> (f64, f64) {
    let first = samples.iter().find(|(_, a)| *a > base);
    let last_value = samples.last().map_or(base, |(_, a)| *a);
    let last = samples.iter().find(|(_, a)| *a == last_value);
    let span = match (first, last) {
        (Some((t1, _)), Some((t2, _))) => t2.duration_since(*t1).as_secs_f64(),
        _ => 0.0,
    };
    let mut peak = 0.0f64;
    let mut j = 0;
    for i in 0..samples.len() {
        while j < samples.len()
            && samples[j].0.duration_since(samples[i].0) < Duration::from_millis(100)
        {
            j += 1;
        }
        if j < samples.len() {
            let dt = samples[j].0.duration_since(samples[i].0).as_secs_f64();
            let da = samples[j].1 - samples[i].1;
            peak = peak.max(da as f64 / dt);
        }
    }
    (span, peak)
}

/// `perf record` of the daemon during a launch run, when `AM_BENCH_PERF=1` (flat profile,
/// sampled at 499 Hz; the report is printed, grouped by thread name and symbol).
struct Profiler {
    child: Child,
    data: PathBuf,
}

impl Profiler {
    fn start(s: &Settings, pid: u32, label: &str) -> Option<Profiler> {
        if std::env::var("AM_BENCH_PERF").ok().as_deref() != Some("1") {
            return None;
        }
        let data = s.repo.join("target").join(format!("perf-e2e-{label}.data"));
        // AM_BENCH_PERF_ARGS: more `perf record` options, e.g. `--call-graph dwarf`.
        let extra = std::env::var("AM_BENCH_PERF_ARGS").unwrap_or_default();
        match Command::new("perf")
            .args(["record", "-q", "-F", "499", "-p", &pid.to_string()])
            .args(extra.split_whitespace())
            .arg("-o")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => Some(Profiler { child, data }),
            Err(e) => {
                eprintln!("e2e: AM_BENCH_PERF=1 but perf could not start: {e}");
                None
            }
        }
    }

    fn finish(mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        for sort in ["comm", "comm,dso,symbol"] {
            match Command::new("perf")
                .args(["report", "--stdio", "--no-children", "--sort", sort, "-i"])
                .arg(&self.data)
                .stderr(Stdio::null())
                .output()
            {
                Ok(out) => {
                    let text = String::from_utf8_lossy(&out.stdout);
                    println!(
                        "e2e: perf profile of the daemon ({sort}), {}:",
                        self.data.display()
                    );
                    for line in text
                        .lines()
                        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                        .take(40)
                    {
                        println!("    {line}");
                    }
                }
                Err(e) => eprintln!("e2e: perf report failed: {e}"),
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Memory with 100,000 tasks tracked.

/// 100,000 tasks submitted to a daemon whose master has no agent: all stay queued.
async fn rss_queued_run(s: &Settings) -> Result<Figure> {
    let n = s.rss_tasks;
    let master = FakeMaster::start(FakeMasterOptions {
        record_calls: false,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}", dir.path().join("rss-queued.db").display());
    let daemon = Daemon::start(s, &master, &url, dir.path()).await?;
    let t0 = Instant::now();
    let mut submitted = 0usize;
    for start in (0..n).step_by(BATCH) {
        let specs: Vec<Value> = (start..n.min(start + BATCH)).map(task_spec).collect();
        submitted += daemon.submit(&specs).await?.len();
    }
    let took = t0.elapsed().as_secs_f64();
    let mut peak = 0u64;
    let mut current = 0u64;
    for _ in 0..30 {
        if let Some((hwm, rss)) = daemon.memory_kb() {
            peak = peak.max(hwm);
            current = rss;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.stop().await;
    Ok(Figure::new(
        "peak RSS, tasks queued",
        Some(peak as f64 / 1024.0),
        "MB",
        "<= 200",
        format!(
            "{submitted} tasks submitted in {took:.1} s and tracked as queued (master without agents, SQLite); VmRSS then {:.0} MB",
            current as f64 / 1024.0
        ),
    ))
}

async fn rss_run(s: &Settings) -> Result<Figure> {
    let n = s.rss_tasks;
    // 500 task slots per agent: one ACCEPT stays well under a megabyte.
    let agents = n.div_ceil(500).max(1);
    let per_agent = n.div_ceil(agents) as f64;
    let master = FakeMaster::start(FakeMasterOptions {
        record_calls: false,
        default_task_script: TaskScript::run_until_released(),
        agents: (0..agents)
            .map(|_| AgentSpec::new(per_agent * TASK_CPUS, per_agent * TASK_MEM))
            .collect(),
        completed_tasks_kept: 0,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}", dir.path().join("rss.db").display());
    let daemon = Daemon::start(s, &master, &url, dir.path()).await?;
    let (hwm_idle, _) = daemon.memory_kb().unwrap_or((0, 0));
    let t0 = Instant::now();
    let specs: Vec<Value> = (0..n).map(task_spec).collect();
    let mut ids: HashSet<String> = HashSet::with_capacity(n);
    for chunk in specs.chunks(BATCH) {
        ids.extend(daemon.submit(chunk).await?);
    }
    drop(specs);
    // Wait until every task is RUNNING (all tracked, launched, acknowledged).
    let mut running: HashSet<String> = HashSet::with_capacity(n);
    let mut cursor = None;
    let mut progress = Instant::now();
    while running.len() < n {
        if progress.elapsed() > STALL {
            bail!(
                "stalled: {} of {n} tasks RUNNING and no new one for {STALL:?}; daemon VmHWM {} MB; daemon metrics:\n{}\ndaemon log:\n{}",
                running.len(),
                daemon.memory_kb().map_or("?".into(), |(hwm, _)| format!("{:.0}", hwm as f64 / 1024.0)),
                daemon.metrics_text().await,
                daemon.log_tail()
            );
        }
        let (events, next) = daemon.events(&cursor).await?;
        cursor = next;
        for e in events {
            if e.state == "running" && ids.contains(&e.task_id) && running.insert(e.task_id) {
                progress = Instant::now();
            }
        }
    }
    let ramp = t0.elapsed().as_secs_f64();
    // Let the daemon settle (periodic work, allocator churn) and sample for a few seconds.
    let mut peak = 0u64;
    let mut current = 0u64;
    for _ in 0..50 {
        if let Some((hwm, rss)) = daemon.memory_kb() {
            peak = peak.max(hwm);
            current = rss;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.stop().await;
    Ok(Figure::new(
        "peak RSS, tasks running",
        Some(peak as f64 / 1024.0),
        "MB",
        "<= 200",
        format!(
            "{n} tasks tracked (all RUNNING on {agents} agents of 500 slots, reached in {ramp:.1} s, SQLite); VmRSS then {:.0} MB; {:.0} MB peak before the first task",
            current as f64 / 1024.0,
            hwm_idle as f64 / 1024.0
        ),
    ))
}

// ------------------------------------------------------------------------------------------
// Python peers.

#[derive(Debug, serde::Deserialize)]
struct PeerResult {
    complete: bool,
    terminal: u64,
    seconds: f64,
    tasks_per_s: Option<f64>,
    #[serde(default)]
    cpu_us_per_task: Option<f64>,
}

async fn run_python(
    python: &Path,
    script: &Path,
    args: &[String],
    timeout: Duration,
) -> Result<(PeerResult, Value)> {
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {} {}", python.display(), script.display()))?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("{} did not finish within {timeout:?}", script.display()))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| {
            anyhow!(
                "{} printed no JSON result (exit {}); stderr tail:\n{}",
                script.display(),
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 20)
            )
        })?;
    let raw: Value = serde_json::from_str(line).context("peer JSON")?;
    let r: PeerResult = serde_json::from_value(raw.clone()).context("peer JSON fields")?;
    Ok((r, raw))
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

async fn peer_run(
    s: &Settings,
    master: &FakeMaster,
    n: usize,
    load: Load,
    ours: Option<&LaunchRun>,
) -> Vec<Figure> {
    let script = s.repo.join("benches/peer/mesos110_peer.py");
    let name = format!(
        "Python peer (Airflow 1.10 algorithm, pymesos), {}",
        load.label()
    );
    let acks_before = master.stats().acknowledged;
    let updates_before = master.stats().agent_updates_sent;
    let mut args = vec![
        "--master".to_string(),
        master.host_port(),
        "--tasks".to_string(),
        n.to_string(),
        "--task-cpu".to_string(),
        format!("{}", TASK_CPUS as i64),
        "--task-mem".to_string(),
        format!("{}", TASK_MEM as i64),
        "--timeout".to_string(),
        "1200".to_string(),
    ];
    if let Load::Rate(rate) = load {
        args.extend([
            "--rate".to_string(),
            format!("{rate}"),
            "--tick".to_string(),
            format!("{}", s.tick.as_secs_f64()),
        ]);
    }
    let res = run_python(&s.python, &script, &args, Duration::from_secs(1300)).await;
    let (r, raw) = match res {
        Ok(x) => x,
        Err(e) => {
            return vec![Figure::new(
                &name,
                None,
                "tasks/s",
                "(reference)",
                format!("FAILED: {e:#} (python: {})", s.python.display()),
            )]
        }
    };
    let acked = master.stats().acknowledged - acks_before;
    let sent = master.stats().agent_updates_sent - updates_before;
    let mut out = vec![
        Figure::new(
            &name,
            r.tasks_per_s,
            "tasks/s",
            "(reference)",
            format!(
                "N={n}: {} terminal in {:.2} s (complete: {}); fake master: {acked} of {sent} updates acknowledged; {raw}",
                r.terminal, r.seconds, r.complete
            ),
        ),
        Figure::new(
            &format!("Python peer CPU per task, {}", load.label()),
            r.cpu_us_per_task,
            "µs",
            "(reference)",
            "user+sys of the peer process from SUBSCRIBED until the last terminal result, / N"
                .into(),
        ),
    ];
    if let (Some(ours), Some(theirs)) = (ours, r.cpu_us_per_task) {
        out.push(Figure::new(
            &format!("ratio peer/ours CPU per task (SQLite), {}", load.label()),
            Some(theirs / ours.cpu_us_per_task().max(1e-9)),
            "x",
            ">= 10 (goal 50)",
            format!("peer {theirs:.1} µs, ours {:.1} µs", ours.cpu_us_per_task()),
        ));
    }
    if let (Load::FlatOut, Some(ours), Some(theirs)) = (load, ours, r.tasks_per_s) {
        out.push(Figure::new(
            "ratio ours/1.10 peer tasks/s (SQLite), flat out",
            Some(ours.tasks_per_s() / theirs),
            "x",
            ">= 50",
            String::new(),
        ));
    }
    out
}

async fn avmesos_run(s: &Settings, master: &FakeMaster, ours: Option<&LaunchRun>) -> Vec<Figure> {
    let name = "Python peer (AVENTER provider 0.4.0)";
    if !s.avmesos_python.is_file() {
        return vec![Figure::new(
            name,
            None,
            "tasks/s",
            "(reference)",
            format!(
                "not run: {} not found (bash benches/run.sh builds that venv)",
                s.avmesos_python.display()
            ),
        )];
    }
    let script = s.repo.join("benches/peer/avmesos_peer.py");
    let n = s.avmesos_tasks;
    let args = vec![
        "--master".to_string(),
        master.host_port(),
        "--tasks".to_string(),
        n.to_string(),
        "--task-cpu".to_string(),
        format!("{TASK_CPUS}"),
        "--task-mem".to_string(),
        format!("{TASK_MEM}"),
        "--timeout".to_string(),
        "600".to_string(),
    ];
    match run_python(&s.avmesos_python, &script, &args, Duration::from_secs(700)).await {
        Err(e) => vec![Figure::new(
            name,
            None,
            "tasks/s",
            "(reference)",
            format!("FAILED: {e:#}"),
        )],
        Ok((r, raw)) => {
            let mut out = vec![Figure::new(
                name,
                r.tasks_per_s,
                "tasks/s",
                "(reference)",
                format!(
                    "N={n}: {} terminal in {:.2} s (complete: {}); {raw}",
                    r.terminal, r.seconds, r.complete
                ),
            )];
            if let Some(cpu) = r.cpu_us_per_task {
                out.push(Figure::new(
                    "AVENTER provider CPU per task, flat out",
                    Some(cpu),
                    "µs",
                    "(reference)",
                    "user+sys of the peer process from SUBSCRIBED to the end, / N (it polls sync() every 10 ms)".into(),
                ));
            }
            if let (Some(ours), Some(theirs)) = (ours, r.tasks_per_s.filter(|t| *t > 0.0)) {
                out.push(Figure::new(
                    "ratio ours/AVENTER tasks/s (SQLite)",
                    Some(ours.tasks_per_s() / theirs),
                    "x",
                    ">= 50",
                    String::new(),
                ));
            }
            out
        }
    }
}

// ------------------------------------------------------------------------------------------
// A fresh PostgreSQL database per run.

struct FreshPgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl FreshPgDatabase {
    async fn create(base: &str) -> Result<FreshPgDatabase> {
        use sqlx::Connection;
        let name = format!(
            "am_bench_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis()
        );
        let mut conn = sqlx::PgConnection::connect(base)
            .await
            .with_context(|| "connecting to AM_TEST_PG_URL".to_string())?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        conn.close().await.ok();
        let mut url = url::Url::parse(base).context("AM_TEST_PG_URL is not a URL")?;
        url.set_path(&format!("/{name}"));
        Ok(FreshPgDatabase {
            admin_url: base.to_string(),
            name,
            url: url.to_string(),
        })
    }

    async fn drop_database(&self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
            let q = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            if let Err(e) = sqlx::query(&q).execute(&mut conn).await {
                eprintln!("e2e: could not drop {}: {e}", self.name);
            }
            conn.close().await.ok();
        }
    }
}

// ------------------------------------------------------------------------------------------

fn print_summary(figures: &[Figure]) {
    let mut rows: BTreeMap<usize, &Figure> = BTreeMap::new();
    for (i, f) in figures.iter().enumerate() {
        rows.insert(i, f);
    }
    let w = figures.iter().map(|f| f.name.len()).max().unwrap_or(10);
    println!("\n=== e2e summary ({} cores)", num_cpus());
    println!(
        "{:<w$}  {:>12}  {:<10}  {:<12}",
        "figure", "value", "unit", "target"
    );
    for f in rows.values() {
        let v = f.value.map_or("n/a".to_string(), |v| format!("{v:.1}"));
        println!(
            "{:<w$}  {:>12}  {:<10}  {:<12}",
            f.name, v, f.unit, f.target
        );
    }
    for f in rows
        .values()
        .filter(|f| f.note.starts_with("FAILED") || f.note.starts_with("not run"))
    {
        println!("  {}: {}", f.name, f.note);
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}
