//! Web UI benchmark: how long each page of the UI takes on the server with 100,000 tasks
//! stored (the limit the UI is held to is 100 ms a page).
//!
//! The store is filled as a busy cluster leaves it: N tasks (default 100,000) with labels and
//! external keys, then their changes committed in batches: 60 % succeeded, 10 % failed after a
//! relaunch (two attempts, a reason and a message), 5 % killed, 10 % running, 15 % still queued.
//! The driver's view holds 10,000 agents (its cap) and 50 offers. Each page is then asked
//! through the daemon's own router (no network), logged in with a session cookie, and timed
//! from the request to the last byte of the body: the overview with its counts counted again
//! every time (the 2 s cache left cold), the task list (first page, a page deep in the table,
//! by state, by states, by label and by external key, a label no task has), a task's page (its
//! attempts, history and the tails of a 1 MiB stdout and stderr in a local sandbox), its log
//! page, and the agents page.
//!
//! Run with `cargo bench --bench web` (SQLite in a temporary directory); with
//! `AM_TEST_PG_URL` / `AM_TEST_MYSQL_URL` set, the same on a fresh PostgreSQL / MySQL database
//! too. `AM_BENCH_WEB_TASKS` sets N, `AM_BENCH_WEB_RUNS` the runs per page (default 20).
//! The tables are analyzed after filling (as autovacuum or `PRAGMA optimize` would) unless
//! `AM_BENCH_WEB_NO_ANALYZE` is set.

mod common;

use common::{env_usize, fresh_database};

use airflow_mesos::api::{router, AppState, Auth, LogSource};
use airflow_mesos::onetime::OneTimeFiles;
use airflow_mesos::scheduler::types::{Event, Flavour, Offer, Quantity, Resource};
use airflow_mesos::store::{Change, Store};
use airflow_mesos::task::{Containerizer, SpecDefaults, TaskRecord, TaskSpec, TaskState};
use airflow_mesos::web::WebConfig;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const TOKEN: &str = "bench-token";
const TEAMS: usize = 8;

fn defaults() -> SpecDefaults {
    SpecDefaults {
        image: Some("apache/airflow:3.1.0".into()),
        cpus: 1.0,
        mem: 256.0,
        disk: 0.0,
        max_mem: None,
        max_cpus: None,
        containerizer: Containerizer::Docker,
        uncontainerized: false,
    }
}

fn spec(i: usize) -> TaskSpec {
    let mut spec: TaskSpec = serde_json::from_value(serde_json::json!({
        "name": format!("etl.load_partition_{i}"),
        "command": ["airflow", "tasks", "run", "etl", format!("load_partition_{i}"), "2026-12-05"],
        "labels": {"team": format!("team-{}", i % TEAMS), "dag": "etl"},
        "external_key": format!("etl.load_partition_{i}.2026-12-05.1"),
        "env": {"AIRFLOW__CORE__LOAD_EXAMPLES": "False"},
    }))
    .expect("a valid spec");
    spec.normalize(&defaults()).expect("a valid spec");
    spec
}

fn change(id: &str, state: TaskState, attempt: u32, at: i64) -> Change {
    let launch = state == TaskState::Launching;
    let agent = attempt as usize + id.len() % 97;
    Change {
        task_id: id.to_string(),
        state,
        attempt,
        backend_task_id: launch.then(|| format!("{id}.{attempt}")),
        agent_id: launch.then(|| format!("agent-{agent}-S0")),
        hostname: launch.then(|| format!("agent-{agent}.example")),
        agent_url: launch.then(|| format!("http://agent-{agent}.example:5051")),
        message: match state {
            TaskState::Failed => {
                Some("Command exited with status 1: load failed: connection refused".into())
            }
            TaskState::Queued => Some("Container launch failed: image pull timed out".into()),
            TaskState::Succeeded => Some("Command exited with status 0".into()),
            _ => None,
        },
        reason: match state {
            TaskState::Failed => Some("REASON_COMMAND_EXECUTOR_FAILED".into()),
            TaskState::Queued => Some("REASON_CONTAINER_LAUNCH_FAILED".into()),
            _ => None,
        },
        exit_code: match state {
            TaskState::Failed => Some(1),
            TaskState::Succeeded => Some(0),
            _ => None,
        },
        kill_requested: state == TaskState::Killing,
        at,
        spec: None,
    }
}

/// The changes that take task `i` to where the mix puts it.
fn life(i: usize, id: &str, at: i64) -> Vec<Change> {
    use TaskState::*;
    let run = |attempt| {
        vec![
            change(id, Launching, attempt, at),
            change(id, Starting, attempt, at + 1),
            change(id, Running, attempt, at + 2),
        ]
    };
    let mut out = Vec::new();
    match i % 20 {
        0..=11 => {
            out.extend(run(1));
            out.push(change(id, Succeeded, 1, at + 3));
        }
        12 | 13 => {
            out.push(change(id, Launching, 1, at));
            out.push(change(id, Queued, 1, at + 1));
            out.extend(run(2));
            out.push(change(id, Failed, 2, at + 5));
        }
        14 => {
            out.extend(run(1));
            out.push(change(id, Killing, 1, at + 3));
            out.push(change(id, Killed, 1, at + 4));
        }
        15 | 16 => out.extend(run(1)),
        _ => {}
    }
    out
}

fn offer(i: usize) -> Offer {
    let scalar = |name: &str, v: i64| Resource {
        name: name.into(),
        quantity: Quantity::Scalar(v),
        flavour: Flavour::plain(name),
    };
    Offer {
        id: format!("offer-{i}"),
        agent_id: format!("agent-{i}-S0"),
        hostname: format!("agent-{i}.example"),
        agent_url: None,
        resources: vec![
            scalar("cpus", 16_000),
            scalar("mem", 64_000_000),
            scalar("disk", 500_000_000),
            Resource {
                name: "ports".into(),
                quantity: Quantity::Ranges(vec![(31000, 32000)]),
                flavour: Flavour::plain("ports"),
            },
        ],
        attributes: vec![],
        allocation_role: None,
    }
}

struct Fixture {
    store: Store,
    /// A failed task (two attempts) and its sandbox's backend id.
    failed: String,
    middle_seq: i64,
    sandboxes: tempfile::TempDir,
}

async fn fill(store: Store, url: &str, n: usize) -> Fixture {
    let at = chrono::Utc::now().timestamp_millis();
    let ids: Vec<String> = (0..n).map(|i| format!("t-bench{i:08}")).collect();
    let t0 = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let recs: Vec<TaskRecord> = chunk
            .iter()
            .map(|&i| TaskRecord::queued(ids[i].clone(), spec(i), at))
            .collect();
        store.insert_tasks(&recs, at).await.expect("insert");
    }
    let changes: Vec<Change> = (0..n).flat_map(|i| life(i, &ids[i], at)).collect();
    for chunk in changes.chunks(2_000) {
        store.commit(chunk).await.expect("commit");
    }
    println!(
        "  filled: {n} tasks, {} changes in {:.1} s",
        changes.len(),
        t0.elapsed().as_secs_f64()
    );
    // The statistics a running database keeps (autovacuum, or SQLite's optimize) unless
    // AM_BENCH_WEB_NO_ANALYZE is set: the planner's view of a table just bulk-loaded.
    if std::env::var_os("AM_BENCH_WEB_NO_ANALYZE").is_none() {
        analyze(url).await.expect("analyze");
    }
    let failed = ids[12].clone();
    let sandboxes = tempfile::tempdir().expect("a temporary directory");
    let dir = sandboxes.path().join(format!("{failed}.2"));
    std::fs::create_dir_all(&dir).unwrap();
    let line = "2026-12-05 10:00:00 INFO loading partition rows into the warehouse table\n";
    let mib = line.repeat((1 << 20) / line.len());
    std::fs::write(dir.join("stdout"), &mib).unwrap();
    std::fs::write(dir.join("stderr"), &mib).unwrap();
    let middle_seq = store.max_task_seq().await.unwrap() / 2;
    Fixture {
        store,
        failed,
        middle_seq,
        sandboxes,
    }
}

fn state(f: &Fixture, key: &[u8]) -> AppState {
    let (driver, _requests) = airflow_mesos::driver::channel();
    driver.metrics.cluster.observe(
        &Event::Subscribed {
            framework_id: "bench-framework".into(),
            heartbeat_interval_secs: Some(15.0),
            master: Some("master.example:5050".into()),
        },
        chrono::Utc::now().timestamp_millis(),
    );
    driver.metrics.cluster.observe(
        &Event::Offers((0..10_000).map(offer).collect()),
        chrono::Utc::now().timestamp_millis(),
    );
    AppState {
        store: f.store.clone(),
        driver,
        files: Arc::new(OneTimeFiles::new(None, key, None)),
        auth: Auth {
            token: Some(TOKEN.into()),
            basic: None,
        },
        logs: LogSource::Local(f.sandboxes.path().to_path_buf()),
        http: reqwest::Client::new(),
        backend: "mesos",
        web: WebConfig::new(key, "http://127.0.0.1:11000/ui/", defaults()),
        role: tokio::sync::watch::channel(airflow_mesos::leader::Role::Leader { term: 0 }).1,
        allowed_origins: Vec::new().into(),
    }
}

async fn get(app: &axum::Router, path: &str, cookie: &str) -> (StatusCode, usize, Duration) {
    let req = Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let t = Instant::now();
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body.len(), t.elapsed())
}

async fn run(label: &str, url: &str, n: usize, runs: usize) {
    let store = match Store::connect(url).await {
        Ok(s) => s,
        Err(e) => {
            println!("{label}: cannot connect: {e}");
            return;
        }
    };
    println!("{label}:");
    let f = fill(store, url, n).await;
    let key = f.store.daemon_key("web-sessions").await.unwrap();
    let app = router(state(&f, &key));
    let login = Request::post("/ui/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={TOKEN}")))
        .unwrap();
    let r = app.clone().oneshot(login).await.unwrap();
    let cookie = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // The overview's counts: counted in the background, the page shows the last count.
    let mut count_times = Vec::new();
    for _ in 0..runs.min(5) {
        let t = Instant::now();
        f.store.counts().await.unwrap();
        count_times.push(t.elapsed());
    }
    count_times.sort();
    println!(
        "  {:<40} median {:>7.2} ms  max {:>7.2} ms  (in the background, not in a page)",
        "count by state",
        count_times[count_times.len() / 2].as_secs_f64() * 1000.0,
        count_times.last().unwrap().as_secs_f64() * 1000.0
    );
    let _ = get(&app, "/ui/", &cookie).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pages = [
        ("overview", "/ui/".to_string()),
        (
            "overview, first view after a start",
            "/ui/?first".to_string(),
        ),
        ("tasks, first page", "/ui/tasks".into()),
        (
            "tasks, a page in the middle",
            format!("/ui/tasks?before={}", f.middle_seq),
        ),
        ("tasks ?state=failed", "/ui/tasks?state=failed".into()),
        (
            "tasks ?state=queued,running,failed",
            "/ui/tasks?state=queued,running,failed".into(),
        ),
        (
            "tasks ?label=team=team-3",
            "/ui/tasks?label=team%3Dteam-3".into(),
        ),
        (
            "tasks ?label=team=nobody (no match)",
            "/ui/tasks?label=team%3Dnobody".into(),
        ),
        (
            "tasks ?external_key=…",
            "/ui/tasks?external_key=etl.load_partition_77777.2026-12-05.1".into(),
        ),
        (
            "task page (2 attempts, 1 MiB logs)",
            format!("/ui/tasks/{}", f.failed),
        ),
        (
            "log page (64 KiB of stdout)",
            format!("/ui/tasks/{}/log?stream=stdout", f.failed),
        ),
        ("agents (10,000 agents, 50 offers)", "/ui/agents".into()),
    ];
    let mut worst = Duration::ZERO;
    for (name, path) in &pages {
        let mut times = Vec::with_capacity(runs);
        let mut bytes = 0;
        for _ in 0..runs {
            // The first view after a start: a fresh state, no count yet (it waits for the
            // first count up to 50 ms, then shows the page without it).
            let app = if path == "/ui/?first" {
                router(state(&f, &key))
            } else {
                app.clone()
            };
            let (status, len, t) = get(&app, path, &cookie).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            bytes = len;
            times.push(t);
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        worst = worst.max(*times.last().unwrap());
        println!(
            "  {name:<40} median {:>7.2} ms  max {:>7.2} ms  ({:>6} bytes)",
            ms(times[times.len() / 2]),
            ms(*times.last().unwrap()),
            bytes
        );
    }
    println!(
        "  slowest page, slowest run: {:.2} ms",
        worst.as_secs_f64() * 1000.0
    );
    f.store.close().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench binaries without `--bench`: nothing to do.
        return;
    }
    let n = env_usize("AM_BENCH_WEB_TASKS", 100_000);
    let runs = env_usize("AM_BENCH_WEB_RUNS", 20).max(1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("bench.db");
    run("sqlite", &format!("sqlite:{}", path.display()), n, runs).await;
    for (label, var) in [
        ("postgres", "AM_TEST_PG_URL"),
        ("mysql", "AM_TEST_MYSQL_URL"),
    ] {
        let Ok(base) = std::env::var(var) else {
            continue;
        };
        match fresh_database(&base, "am_bench_web").await {
            Ok(url) => {
                run(label, &url, n, runs).await;
                common::drop_database(&base, &url).await;
            }
            Err(e) => println!("{label}: cannot make a fresh database: {e}"),
        }
    }
}

/// Updates the planner's statistics of the database at `url`.
async fn analyze(url: &str) -> Result<(), sqlx::Error> {
    use sqlx::{Connection, Executor};
    if url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(url).await?;
        c.execute("ANALYZE").await?;
    } else if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await?;
        c.execute("VACUUM ANALYZE").await?;
    } else {
        let mut c = sqlx::MySqlConnection::connect(url).await?;
        c.execute("ANALYZE TABLE tasks, task_labels, attempts, task_events")
            .await?;
    }
    Ok(())
}
