//! Store benchmark: how many task changes the state store commits per second, without the
//! daemon, the HTTP API or the master around it. This is the serial resource of the end-to-end
//! run (see BENCHMARKS.md), so it gets a bench of its own to iterate on.
//!
//! The workload is the end-to-end bench's, written straight to the store: N tasks inserted in
//! submissions of 500, then, in commits of `AM_BENCH_STORE_BATCH` changes (default 1,000, the
//! size the driver's batches reach under load), each task's launch (a new attempt on an agent)
//! and its three status updates (STARTING, RUNNING, FINISHED), in the order a busy driver sees
//! them: launches of one wave, then their updates, interleaved with the next wave's launches.
//!
//! Run with `cargo bench --bench store` (SQLite in a temporary directory, `synchronous = FULL`);
//! with `AM_TEST_PG_URL` / `AM_TEST_MYSQL_URL` set, the same on a fresh PostgreSQL / MySQL
//! database too. `AM_BENCH_STORE_TASKS` sets N (default 10,000).

mod common;

use common::{env_usize, fresh_database};

use airflow_mesos::store::{Change, Store};
use airflow_mesos::task::{new_task_id, SpecDefaults, TaskRecord, TaskSpec, TaskState};
use std::time::Instant;

const SUBMISSION: usize = 500;

fn spec(i: usize) -> TaskSpec {
    let mut spec: TaskSpec = serde_json::from_value(serde_json::json!({
        "name": format!("bench-{i}"),
        "command": "true",
        "cpus": 1.0,
        "mem": 256.0,
    }))
    .expect("a valid spec");
    let defaults = SpecDefaults {
        image: Some("apache/airflow:2.10.5".into()),
        cpus: 1.0,
        mem: 256.0,
        disk: 0.0,
        max_mem: None,
        max_cpus: None,
        containerizer: airflow_mesos::task::Containerizer::Docker,
        uncontainerized: false,
    };
    spec.normalize(&defaults).expect("a valid spec");
    spec
}

fn change(id: &str, state: TaskState, attempt: u32, agent: usize, at: i64) -> Change {
    let launch = state == TaskState::Launching;
    Change {
        task_id: id.to_string(),
        state,
        attempt,
        backend_task_id: launch.then(|| format!("{id}.{attempt}")),
        agent_id: launch.then(|| format!("agent-{agent}-S0")),
        hostname: launch.then(|| format!("agent-{agent}.example")),
        agent_url: launch.then(|| format!("http://agent-{agent}.example:5051")),
        message: (state == TaskState::Succeeded).then(|| "Command exited with status 0".into()),
        reason: None,
        exit_code: (state == TaskState::Succeeded).then_some(0),
        kill_requested: false,
        at,
        spec: None,
    }
}

/// Every change of the run, in commit order: waves of `batch / 4` launches, each followed by
/// the previous wave's updates, so that a commit holds launches and updates as under load.
fn workload(ids: &[String], batch: usize, at: i64) -> Vec<Change> {
    let wave = (batch / 4).max(1);
    let mut out = Vec::with_capacity(ids.len() * 4);
    let waves: Vec<&[String]> = ids.chunks(wave).collect();
    for (w, ids) in waves.iter().enumerate() {
        for (i, id) in ids.iter().enumerate() {
            out.push(change(id, TaskState::Launching, 1, (w + i) % 10, at));
        }
        for id in ids.iter() {
            for s in [
                TaskState::Starting,
                TaskState::Running,
                TaskState::Succeeded,
            ] {
                out.push(change(id, s, 1, 0, at));
            }
        }
    }
    out
}

async fn run(label: &str, url: &str, n: usize, batch: usize) {
    let store = match Store::connect(url).await {
        Ok(s) => s,
        Err(e) => {
            println!("{label}: cannot connect: {e}");
            return;
        }
    };
    let at = chrono::Utc::now().timestamp_millis();
    let records: Vec<TaskRecord> = (0..n)
        .map(|i| TaskRecord::queued(new_task_id(), spec(i), at))
        .collect();
    let t0 = Instant::now();
    for chunk in records.chunks(SUBMISSION) {
        store.insert_tasks(chunk, at).await.expect("insert");
    }
    let insert_s = t0.elapsed().as_secs_f64();
    let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    let changes = workload(&ids, batch, at);
    let t1 = Instant::now();
    let mut commits = 0;
    for chunk in changes.chunks(batch) {
        store.commit(chunk).await.expect("commit");
        commits += 1;
    }
    let commit_s = t1.elapsed().as_secs_f64();
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts.get(&TaskState::Succeeded).copied(), Some(n as u64));
    println!(
        "{label}: insert {n} tasks in {SUBMISSION}s: {insert_s:.3} s ({:.0} tasks/s); \
         commit {} changes in {commits} commits of {batch}: {commit_s:.3} s ({:.0} changes/s, \
         {:.2} ms/commit); all: {:.0} tasks/s",
        n as f64 / insert_s,
        changes.len(),
        changes.len() as f64 / commit_s,
        commit_s * 1000.0 / commits as f64,
        n as f64 / (insert_s + commit_s),
    );
    store.close().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench binaries without `--bench`: nothing to do.
        return;
    }
    let n = env_usize("AM_BENCH_STORE_TASKS", 10_000);
    let batch = env_usize("AM_BENCH_STORE_BATCH", 1_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("bench.db");
    run("sqlite", &format!("sqlite:{}", path.display()), n, batch).await;
    for (label, var) in [
        ("postgres", "AM_TEST_PG_URL"),
        ("mysql", "AM_TEST_MYSQL_URL"),
    ] {
        let Ok(base) = std::env::var(var) else {
            continue;
        };
        println!("{label}: (using a fresh database on {var})");
        match fresh_database(&base, "am_bench_store").await {
            Ok(url) => run(label, &url, n, batch).await,
            Err(e) => println!("{label}: cannot make a fresh database: {e}"),
        }
    }
}
