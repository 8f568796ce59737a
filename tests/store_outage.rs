//! Database outages against the real daemon on the fake master: a SQLite file on a disk that
//! fills up (a small tmpfs) and a PostgreSQL server that is stopped and started again (a
//! throwaway cluster of the local PostgreSQL installation). Through the outage the daemon
//! keeps running, reports the store degraded, refuses writes with 503 and acknowledges
//! nothing; afterwards every task ends exactly once. Past `store_outage_limit` it exits with
//! an error naming the database, and a restart finishes the work.

mod common;
mod support;

use airflow_mesos::mesos::proto::scheduler::call;
use common::{eventually, Daemon};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use support::fake_master::{AgentSpec, FakeMaster, FakeMasterOptions, TaskScript};
use support::outage::{PgCluster, SmallDisk};

const TASKS: usize = 12;

async fn master(task_secs: u64) -> FakeMaster {
    let m = FakeMaster::start(FakeMasterOptions {
        heartbeat_interval: Duration::from_secs(1),
        update_retry_interval: Duration::from_millis(300),
        ..FakeMasterOptions::default()
    })
    .await;
    m.add_agent(AgentSpec::new(8.0, 8192.0).with_id("agent-1"));
    m.set_default_task_script(TaskScript::finish_after(Duration::from_secs(task_secs)));
    m
}

fn daemon(m: &FakeMaster, database_url: &str, limit_secs: u64) -> Daemon {
    Daemon::start(
        &format!(
            "backend = mesos\nmaster = {}\ndatabase_url = {database_url}\n\
             docker_image_slave = example/airflow:1\ntask_cpu = 0.1\ntask_memory = 32\n\
             framework_name = am-outage\nstore_outage_limit = {limit_secs}\n",
            m.host_port()
        ),
        None,
    )
}

/// Runs a blocking call off the async runtime (the fake master runs on it).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn submit(d: &Daemon, n: usize) -> Vec<String> {
    let out = d.submit_echo_jobs(n, 0).await;
    assert!(out.status.success(), "submit: {out:?}\n{}", d.log_text());
    common::task_ids(&serde_json::from_slice(&out.stdout).unwrap())
}

fn launched(m: &FakeMaster) -> Vec<String> {
    m.calls_of(call::Type::Accept)
        .iter()
        .flat_map(|c| c.accept.as_ref().unwrap().operations.iter())
        .filter_map(|op| op.launch.as_ref())
        .flat_map(|l| l.task_infos.iter())
        .map(|t| t.task_id.value.clone())
        .collect()
}

async fn metrics_text(d: &Daemon) -> String {
    d.http(Duration::from_secs(5))
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn metric(d: &Daemon, name: &str) -> f64 {
    let text = metrics_text(d).await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

/// Waits until the health check says `store` is `want`.
async fn wait_store(d: &Daemon, want: &str, secs: u64) -> Value {
    for _ in 0..secs * 10 {
        let h = d.get_json("/healthz").await;
        if h["store"] == want {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/healthz never said store {want}:\n{}", d.log_text());
}

/// Every task succeeded at its first attempt, each was launched exactly once and every update
/// was acknowledged.
async fn assert_each_ran_once(d: &Daemon, m: &FakeMaster, ids: &[String]) {
    for _ in 0..600 {
        let (home, cfg) = (d.home.path().to_path_buf(), d.cfg_path());
        let out = blocking(move || common::cli_in(&home, &cfg, &["list", "--json"])).await;
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let done = v["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["state"] == "succeeded")
                .count();
            if done == ids.len() {
                for t in v["tasks"].as_array().unwrap() {
                    assert_eq!(t["attempts"], 1, "{t}");
                }
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (home, cfg) = (d.home.path().to_path_buf(), d.cfg_path());
    let out = blocking(move || common::cli_in(&home, &cfg, &["list", "--json"])).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: Vec<&Value> = v["tasks"].as_array().unwrap().iter().collect();
    assert!(
        states.iter().all(|t| t["state"] == "succeeded"),
        "not all succeeded: {states:?}\n{}",
        d.log_text()
    );
    let mut l = launched(m);
    l.sort();
    let mut want: Vec<String> = ids.iter().map(|id| format!("{id}.1")).collect();
    want.sort();
    assert_eq!(l, want, "each task launched exactly once");
    // The last acknowledgements follow the last commits by a moment.
    for _ in 0..100 {
        if want.iter().all(|id| m.unacknowledged_updates(id) == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &want {
        assert_eq!(m.unacknowledged_updates(id), 0, "{id} fully acknowledged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_sqlite_is_ridden_out_and_nothing_runs_twice() {
    let Some(disk) = SmallDisk::mount(6) else {
        return;
    };
    let m = master(3).await;
    let url = format!("sqlite:{}", disk.path().join("am.db").display());
    let mut d = daemon(&m, &url, 120);
    let ids = submit(&d, TASKS).await;
    eventually(30, "every task launched", || {
        (launched(&m).len() == TASKS).then_some(())
    });

    // The tasks finish while the disk is full: their updates cannot be committed.
    let filler = disk.fill();
    let h = wait_store(&d, "degraded", 30).await;
    let err = h["store_error"].as_str().unwrap().to_string();
    assert!(err.contains("full"), "{h}");
    assert!(metric(&d, "airflow_mesos_store_retries_total").await >= 1.0);
    assert_eq!(metric(&d, "airflow_mesos_store_degraded").await, 1.0);
    // Task counts that cannot be read are left out, not reported as zeros.
    let text = metrics_text(&d).await;
    assert!(!text.contains("airflow_mesos_tasks{"), "{text}");
    let refused = d
        .http(Duration::from_secs(10))
        .post(d.url("/v1/tasks"))
        .json(&serde_json::json!({"command": "echo late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503, "writes answer 503 during the outage");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("unavailable"),
        "{body}"
    );
    // Nothing was acknowledged that is not committed: the master still resends the updates.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        ids.iter()
            .any(|id| m.unacknowledged_updates(&format!("{id}.1")) > 0),
        "the updates that could not be committed were not acknowledged"
    );
    assert!(d.is_running(), "the daemon rides out the outage");

    std::fs::remove_file(filler).unwrap();
    wait_store(&d, "ok", 30).await;
    // Writes succeed again without a restart: a new submission is stored and runs.
    let mut ids = ids;
    ids.extend(submit(&d, 1).await);
    assert_each_ran_once(&d, &m, &ids).await;
    assert!(d.is_running());
    assert!(
        d.log_text().contains("state store unavailable; retrying"),
        "the outage is logged"
    );
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_past_the_limit_stops_the_daemon_and_a_restart_finishes_the_work() {
    let Some(disk) = SmallDisk::mount(6) else {
        return;
    };
    let m = master(2).await;
    let db = disk.path().join("am.db");
    let url = format!("sqlite:{}", db.display());
    let mut d = daemon(&m, &url, 3);
    let ids = submit(&d, TASKS).await;
    eventually(30, "every task launched", || {
        (launched(&m).len() == TASKS).then_some(())
    });
    let filler = disk.fill();
    let code = tokio::task::block_in_place(|| d.wait_exit(60));
    assert!(
        matches!(code, Some(c) if c != 0),
        "exits with an error: {code:?}\n{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(
        log.contains(&db.display().to_string()),
        "names the database:\n{log}"
    );
    assert!(log.contains("store_outage_limit"), "names the key:\n{log}");

    std::fs::remove_file(filler).unwrap();
    d.spawn();
    assert_each_ran_once(&d, &m, &ids).await;
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_is_ridden_out_and_nothing_runs_twice() {
    if support::env::required_service("AM_TEST_PG_URL", "a PostgreSQL server").is_none() {
        return;
    }
    let Some(pg) = blocking(|| PgCluster::create("amoutage")).await else {
        return;
    };
    let m = master(3).await;
    let mut d = daemon(&m, &pg.url(), 120);
    let ids = submit(&d, TASKS).await;
    eventually(30, "every task launched", || {
        (launched(&m).len() == TASKS).then_some(())
    });

    // The server goes away while the tasks finish, for longer than the tasks take.
    blocking({
        let (v, n) = (pg.version.clone(), pg.name.clone());
        move || {
            let out = Command::new("pg_ctlcluster")
                .args([&v, &n, "stop", "-m", "fast"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
    })
    .await;
    let h = wait_store(&d, "degraded", 30).await;
    assert!(h["store_error"].as_str().is_some(), "{h}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        d.is_running(),
        "the daemon rides out the outage:\n{}",
        d.log_text()
    );
    assert!(metric(&d, "airflow_mesos_store_retries_total").await >= 1.0);

    blocking({
        let (v, n) = (pg.version.clone(), pg.name.clone());
        move || {
            let out = Command::new("pg_ctlcluster")
                .args([&v, &n, "start"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
    })
    .await;
    wait_store(&d, "ok", 60).await;
    assert_each_ran_once(&d, &m, &ids).await;
    assert!(d.is_running());
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_an_outage_does_not_wait_for_its_end_and_loses_nothing() {
    let Some(disk) = SmallDisk::mount(6) else {
        return;
    };
    let m = master(2).await;
    let url = format!("sqlite:{}", disk.path().join("am.db").display());
    let mut d = daemon(&m, &url, 300);
    let ids = submit(&d, TASKS).await;
    eventually(30, "every task launched", || {
        (launched(&m).len() == TASKS).then_some(())
    });
    let filler = disk.fill();
    wait_store(&d, "degraded", 30).await;
    // SIGTERM: the daemon stops within moments, not after store_outage_limit.
    let started = std::time::Instant::now();
    let code = tokio::task::block_in_place(|| d.terminate());
    assert!(code.is_some(), "stopped by itself:\n{}", d.log_text());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped after {:?}",
        started.elapsed()
    );
    std::fs::remove_file(filler).unwrap();
    d.spawn();
    assert_each_ran_once(&d, &m, &ids).await;
    d.terminate();
}
