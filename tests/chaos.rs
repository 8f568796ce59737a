//! Chaos: one run of many tasks against the fake master while the faults a production cluster
//! sees strike in a random (seeded) order: SIGKILLs of the daemon, master failovers (every
//! stream dropped; the framework subscribes again and reconciles), connections cut right before
//! and right after an ACCEPT is read, and a database outage (a PostgreSQL server stopped and
//! started again; a full disk under SQLite). At the end every task has succeeded, exactly one
//! attempt of each ran on an agent, no update is left unacknowledged and the daemon is running.
//!
//! The size fits CI by default; `benches/chaos.sh` runs the full size (5,000 tasks, 20 kills,
//! 10 failovers, 10 cuts, a 30 s outage) with the knobs `AM_CHAOS_TASKS`, `AM_CHAOS_KILLS`,
//! `AM_CHAOS_FAILOVERS`, `AM_CHAOS_CUTS`, `AM_CHAOS_OUTAGE_SECS` and `AM_CHAOS_SEED`.

mod common;
mod support;

use airflow_mesos::mesos::proto::scheduler::call;
use common::Daemon;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::fake_master::cut::Cut;
use support::fake_master::{AgentSpec, FakeMaster, FakeMasterOptions, TaskScript};
use support::outage::{pg_ctl, PgCluster, SmallDisk};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Kill,
    Failover,
    CutBefore,
    CutAfter,
    Outage,
}

/// How the database is taken away for `Fault::Outage`.
enum Database {
    Postgres(PgCluster),
    FullDisk(SmallDisk),
}

impl Database {
    fn url(&self) -> String {
        match self {
            Database::Postgres(pg) => pg.url(),
            Database::FullDisk(disk) => format!("sqlite:{}", disk.path().join("am.db").display()),
        }
    }

    /// Takes the database away for `secs`, then gives it back.
    async fn outage(&self, secs: u64) {
        match self {
            Database::Postgres(pg) => {
                let (v, n) = (pg.version.clone(), pg.name.clone());
                blocking(move || pg_ctl(&v, &n, "stop")).await;
                tokio::time::sleep(Duration::from_secs(secs)).await;
                let (v, n) = (pg.version.clone(), pg.name.clone());
                blocking(move || pg_ctl(&v, &n, "start")).await;
            }
            Database::FullDisk(disk) => {
                let filler = disk.fill();
                tokio::time::sleep(Duration::from_secs(secs)).await;
                std::fs::remove_file(filler).unwrap();
            }
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Submits `n` tasks through the CLI, trying again while the daemon is restarting or its
/// database is away (the CLI itself retries a 503 for a while).
async fn submit(d: &Daemon, n: usize, from: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let out = d.submit_echo_jobs(n, from).await;
        if out.status.success() {
            return common::task_ids(&serde_json::from_slice(&out.stdout).unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "submit never succeeded: {out:?}\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every task the daemon knows, through the CLI (all pages).
async fn all_tasks(d: &Daemon) -> Option<Vec<Value>> {
    let (home, cfg) = (d.home.path().to_path_buf(), d.cfg_path());
    let out =
        blocking(move || common::cli_in(&home, &cfg, &["list", "--json", "--limit", "10000"]))
            .await;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v["tasks"].as_array()?.clone())
}

async fn chaos(db: Database, kind: &str) {
    let tasks = knob("AM_CHAOS_TASKS", 400) as usize;
    let outage_secs = knob("AM_CHAOS_OUTAGE_SECS", 6);
    let seed = knob("AM_CHAOS_SEED", 20261205);
    let mut faults: Vec<Fault> = Vec::new();
    faults.extend(std::iter::repeat_n(
        Fault::Kill,
        knob("AM_CHAOS_KILLS", 4) as usize,
    ));
    faults.extend(std::iter::repeat_n(
        Fault::Failover,
        knob("AM_CHAOS_FAILOVERS", 3) as usize,
    ));
    let cuts = knob("AM_CHAOS_CUTS", 4) as usize;
    faults.extend(std::iter::repeat_n(Fault::CutBefore, cuts.div_ceil(2)));
    faults.extend(std::iter::repeat_n(Fault::CutAfter, cuts / 2));
    faults.push(Fault::Outage);
    let mut rng = StdRng::seed_from_u64(seed);
    faults.shuffle(&mut rng);

    let m = FakeMaster::start(FakeMasterOptions {
        heartbeat_interval: Duration::from_secs(1),
        update_retry_interval: Duration::from_millis(300),
        ..FakeMasterOptions::default()
    })
    .await;
    for i in 0..8 {
        m.add_agent(AgentSpec::new(8.0, 16384.0).with_id(&format!("agent-{i}")));
    }
    m.set_default_task_script(TaskScript::finish_after(Duration::from_millis(400)));
    let mut d = Daemon::start(
        &format!(
            "backend = mesos\nmaster = {}\ndatabase_url = {}\n\
             docker_image_slave = example/airflow:1\ntask_cpu = 0.1\ntask_memory = 32\n\
             framework_name = am-chaos\nstore_outage_limit = {}\n",
            m.host_port(),
            db.url(),
            outage_secs * 10 + 60,
        ),
        None,
    );

    let started = Instant::now();
    let rounds = faults.len() + 1;
    let per = tasks.div_ceil(rounds);
    let mut ids: Vec<String> = Vec::new();
    let mut done_faults: HashMap<String, usize> = HashMap::new();
    for round in 0..rounds {
        let n = per.min(tasks - ids.len());
        if n > 0 {
            ids.extend(submit(&d, n, ids.len()).await);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1200))).await;
        let Some(&fault) = faults.get(round) else {
            continue;
        };
        *done_faults.entry(format!("{fault:?}")).or_default() += 1;
        match fault {
            Fault::Kill => {
                d.kill9();
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..800))).await;
                d.spawn();
            }
            Fault::Failover => m.drop_streams(),
            Fault::CutBefore => m.cut_connection_at_next(call::Type::Accept, Cut::BeforeCall),
            Fault::CutAfter => m.cut_connection_at_next(call::Type::Accept, Cut::AfterCall),
            Fault::Outage => db.outage(outage_secs).await,
        }
    }
    assert_eq!(ids.len(), tasks);

    // Every task ends.
    let deadline = Instant::now() + Duration::from_secs(120 + tasks as u64 / 10);
    let listed = loop {
        if let Some(all) = all_tasks(&d).await {
            let ended = all
                .iter()
                .filter(|t| matches!(t["state"].as_str(), Some("succeeded" | "failed" | "killed")))
                .count();
            if ended == all.len() && all.len() >= tasks {
                break all;
            }
        }
        assert!(
            Instant::now() < deadline,
            "tasks never ended\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let elapsed = started.elapsed();

    // Exactly the submitted tasks, each succeeded, each with exactly one attempt that ran.
    assert_eq!(listed.len(), tasks, "no task stored twice or lost");
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for c in m.calls_of(call::Type::Accept) {
        for op in c.accept.unwrap().operations {
            for t in op.launch.map(|l| l.task_infos).unwrap_or_default() {
                let id = t.task_id.value.rsplit_once('.').unwrap().0.to_string();
                sent.entry(id).or_default().push(t.task_id.value);
            }
        }
    }
    let mut relaunched = 0;
    for t in &listed {
        let id = t["id"].as_str().unwrap();
        assert!(ids.iter().any(|i| i == id), "a task nobody submitted: {t}");
        assert_eq!(t["state"], "succeeded", "{t}");
        let attempts = sent.get(id).cloned().unwrap_or_default();
        let ran: Vec<&String> = attempts.iter().filter(|a| m.was_launched(a)).collect();
        assert_eq!(
            ran.len(),
            1,
            "{id}: ran as {ran:?} (sent {attempts:?}): {t}"
        );
        assert_eq!(t["backend_task_id"], ran[0].as_str(), "{t}");
        relaunched += usize::from(attempts.len() > 1);
    }
    // Every update acknowledged (the last ones follow their commits by a moment).
    let deadline = Instant::now() + Duration::from_secs(30);
    for t in &listed {
        let attempt = t["backend_task_id"].as_str().unwrap();
        while m.unacknowledged_updates(attempt) > 0 {
            assert!(
                Instant::now() < deadline,
                "{attempt}: an update never acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        d.is_running(),
        "the daemon runs at the end:\n{}",
        d.log_text()
    );
    println!(
        "chaos kind={kind} tasks={tasks} faults={done_faults:?} outage_s={outage_secs} seed={seed} \
         seconds={:.1} attempts_sent_more_than_once={relaunched}",
        elapsed.as_secs_f64()
    );
    d.terminate();
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_postgresql_every_task_runs_exactly_once() {
    if support::env::required_service("AM_TEST_PG_URL", "a PostgreSQL server").is_none() {
        return;
    }
    let Some(pg) = blocking(|| PgCluster::create("amchaos")).await else {
        return;
    };
    chaos(Database::Postgres(pg), "postgresql").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_sqlite_with_a_full_disk_every_task_runs_exactly_once() {
    let Some(disk) = SmallDisk::mount(64) else {
        return;
    };
    chaos(Database::FullDisk(disk), "sqlite").await;
}
