//! Several daemons on one state database (PostgreSQL, MariaDB): one leads, the others stand
//! by. A run of tasks through the fake master while the leader is SIGKILLed again and again
//! and once paused (SIGSTOP) for longer than its lease: every task ends exactly once, the
//! leadership moves within the lease, a paused leader does not take the framework back when it
//! resumes, and a client pointed at every daemon keeps working through a failover.
//!
//! Size: `AM_HA_TASKS` tasks (default 300; `bash benches/ha.sh` runs 2,000) and
//! `AM_HA_KILLS` SIGKILLs of the leader (default 5). Failover times are printed as
//! `failover_ms` lines (BENCHMARKS.md, "Failover").

mod common;
mod support;

use airflow_mesos::mesos::proto::scheduler::call;
use common::Daemon;
use serde_json::Value;
use sqlx::Connection;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::fake_master::{AgentSpec, FakeMaster, FakeMasterOptions, TaskScript};

const LEASE_SECS: f64 = 2.0;

fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fresh database on the server `var` names, or `None` (skip) outside CI.
async fn fresh_database(var: &str, kind: &str) -> Option<String> {
    let admin = support::env::required_service(var, kind)?;
    let name = format!("amha_{}", uuid::Uuid::new_v4().simple());
    let sql = format!("CREATE DATABASE {name}");
    if admin.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&sql).execute(&mut c).await.unwrap();
    } else {
        let mut c = sqlx::MySqlConnection::connect(&admin).await.unwrap();
        sqlx::query(&sql).execute(&mut c).await.unwrap();
    }
    let mut u = url::Url::parse(&admin).unwrap();
    u.set_path(&format!("/{name}"));
    Some(u.to_string())
}

struct Cluster {
    daemons: Vec<Daemon>,
    http: reqwest::Client,
    api_urls: String,
}

impl Cluster {
    fn start(n: usize, master: &FakeMaster, database_url: &str) -> Cluster {
        let ports: Vec<u16> = (0..n).map(|_| common::free_port()).collect();
        let api_urls = ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let daemons = ports
            .iter()
            .map(|&p| {
                Daemon::start_on(
                    p,
                    &format!(
                        "backend = mesos\nmaster = {}\ndatabase_url = {database_url}\n\
                         docker_image_slave = example/airflow:1\ntask_cpu = 0.1\ntask_memory = 32\n\
                         framework_name = am-ha\nleader_election = database\nleader_lease = {LEASE_SECS}\n\
                         api_url = {api_urls}\npublic_url = http://127.0.0.1:{p}\n",
                        master.host_port()
                    ),
                    None,
                )
            })
            .collect();
        let daemons: Vec<Daemon> = daemons;
        // One database, one generated token: every daemon takes it.
        let http = daemons[0].http(Duration::from_secs(10));
        Cluster {
            daemons,
            http,
            api_urls,
        }
    }

    async fn health(&self, i: usize) -> Option<Value> {
        let r = self
            .http
            .get(self.daemons[i].url("/healthz"))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// The daemons that say they lead.
    async fn leaders(&self, alive: &[bool]) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, up) in alive.iter().enumerate() {
            if *up && self.health(i).await.is_some_and(|h| h["role"] == "leader") {
                out.push(i);
            }
        }
        out
    }

    /// Waits until exactly one live daemon other than `not` leads; returns it.
    async fn wait_leader(&self, alive: &[bool], not: Option<usize>, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let l = self.leaders(alive).await;
            if l.len() == 1 && Some(l[0]) != not {
                return l[0];
            }
            assert!(l.len() <= 1, "two daemons lead at once: {l:?}");
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .daemons
                    .iter()
                    .map(|d| {
                        let t = d.log_text();
                        let tail: Vec<&str> = t.lines().rev().take(15).collect();
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    })
                    .collect();
                panic!(
                    "no new leader within {within:?} (leaders: {l:?}); logs:\n{}",
                    logs.join("\n-----\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn submit(&self, i: usize, n: usize, from: usize) -> Vec<String> {
        let specs: Vec<Value> = (from..from + n)
            .map(|k| serde_json::json!({"command": format!("echo {k}"), "name": format!("ha-{k}")}))
            .collect();
        // Any daemon takes it: a standby forwards to the leader; 503 while none leads.
        for _ in 0..100 {
            let r = self
                .http
                .post(self.daemons[i].url("/v1/tasks"))
                .json(&serde_json::json!({ "tasks": specs }))
                .send()
                .await;
            if let Ok(r) = r {
                if r.status() == 201 {
                    let v: Value = r.json().await.unwrap();
                    return v["tasks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t["id"].as_str().unwrap().to_string())
                        .collect();
                }
                assert_eq!(r.status(), 503, "{:?}", r.text().await);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("no daemon took the submission");
    }

    async fn task(&self, alive: &[bool], id: &str) -> Value {
        for (i, up) in alive.iter().enumerate() {
            if !up {
                continue;
            }
            if let Ok(r) = self
                .http
                .get(self.daemons[i].url(&format!("/v1/tasks/{id}")))
                .send()
                .await
            {
                if r.status() == 200 {
                    return r.json().await.unwrap();
                }
            }
        }
        panic!("no daemon answers for task {id}");
    }
}

fn median(v: &mut [u128]) -> u128 {
    v.sort_unstable();
    v[v.len() / 2]
}

async fn ha_run(database_url: String, kind: &str, n_daemons: usize) {
    let tasks = env_usize("AM_HA_TASKS", 300);
    let kills = env_usize("AM_HA_KILLS", 5);
    let m = FakeMaster::start(FakeMasterOptions {
        heartbeat_interval: Duration::from_secs(1),
        update_retry_interval: Duration::from_millis(500),
        ..FakeMasterOptions::default()
    })
    .await;
    for i in 0..4 {
        m.add_agent(AgentSpec::new(8.0, 16384.0).with_id(&format!("agent-{i}")));
    }
    m.set_default_task_script(TaskScript::finish_after(Duration::from_millis(700)));
    let mut c = Cluster::start(n_daemons, &m, &database_url);
    let mut alive = vec![true; n_daemons];
    let lease = Duration::from_secs_f64(LEASE_SECS);
    let mut leader = c.wait_leader(&alive, None, lease * 5).await;

    let mut ids = Vec::new();
    let batches = 10;
    let per = tasks.div_ceil(batches);
    let mut failovers: Vec<u128> = Vec::new();
    let mut changes = 0;
    for b in 0..batches {
        let via = (leader + 1 + b) % n_daemons;
        let via = if alive[via] { via } else { leader };
        ids.extend(c.submit(via, per.min(tasks - ids.len()), ids.len()).await);
        if b < kills {
            // SIGKILL the leader; another takes over once its lease has run out.
            let t0 = Instant::now();
            c.daemons[leader].kill9();
            alive[leader] = false;
            let new = c.wait_leader(&alive, Some(leader), lease * 4).await;
            failovers.push(t0.elapsed().as_millis());
            changes += 1;
            c.daemons[leader].spawn();
            alive[leader] = true;
            leader = new;
        } else if b == kills {
            // Pause the leader past its lease: a standby takes over, and the paused one, once
            // resumed, must stand by (it cannot commit, and it must not subscribe again).
            let t0 = Instant::now();
            c.daemons[leader].signal("STOP");
            let new = {
                let mut others = alive.clone();
                others[leader] = false;
                c.wait_leader(&others, Some(leader), lease * 4).await
            };
            failovers.push(t0.elapsed().as_millis());
            changes += 1;
            tokio::time::sleep(lease).await;
            c.daemons[leader].signal("CONT");
            let deadline = Instant::now() + lease * 3;
            loop {
                let h = c.health(leader).await;
                if h.as_ref().is_some_and(|h| h["role"] == "standby") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the resumed daemon still says {h:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(
                c.leaders(&alive).await,
                vec![new],
                "one leader after the pause"
            );
            leader = new;
        }
    }
    assert_eq!(ids.len(), tasks);

    // A CLI `submit --wait` pointed at every daemon, through a failover.
    let cli = {
        let (home, cfg) = (
            c.daemons[(leader + 1) % n_daemons]
                .home
                .path()
                .to_path_buf(),
            c.daemons[(leader + 1) % n_daemons].cfg_path(),
        );
        tokio::task::spawn_blocking(move || {
            common::cli_in(
                &home,
                &cfg,
                &[
                    "submit",
                    "--json",
                    "--wait",
                    "--timeout",
                    "120",
                    "--",
                    "true",
                ],
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.daemons[leader].kill9();
    alive[leader] = false;
    let new = c.wait_leader(&alive, Some(leader), lease * 4).await;
    changes += 1;
    c.daemons[leader].spawn();
    alive[leader] = true;
    let out = cli.await.unwrap();
    assert!(
        out.status.success(),
        "submit --wait through a failover: {out:?}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tasks"][0]["state"], "succeeded", "{v}");
    ids.push(v["tasks"][0]["id"].as_str().unwrap().to_string());
    let _ = new;

    // Every task ends, once.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut pending: Vec<String> = ids.clone();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in &pending {
            let t = c.task(&alive, id).await;
            if !matches!(t["state"].as_str(), Some("succeeded" | "failed" | "killed")) {
                still.push(id.clone());
            }
        }
        pending = still;
        assert!(
            Instant::now() < deadline || pending.is_empty(),
            "{} tasks never ended, e.g. {:?}",
            pending.len(),
            pending.first()
        );
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // Each task ran exactly once: of the attempts sent in ACCEPTs, one reached an agent. The
    // others never ran: their ACCEPT was refused (a deposed leader's, on a stream the master
    // had closed) or the master dropped the launch (offers it had rescinded at the failover),
    // and a new attempt was made only after that was known.
    let mut launches: HashMap<String, Vec<String>> = HashMap::new();
    for a in m.calls_of(call::Type::Accept) {
        for op in a.accept.unwrap().operations {
            for t in op.launch.map(|l| l.task_infos).unwrap_or_default() {
                let id = t.task_id.value.rsplit_once('.').unwrap().0.to_string();
                launches.entry(id).or_default().push(t.task_id.value);
            }
        }
    }
    for id in &ids {
        let t = c.task(&alive, id).await;
        assert_eq!(t["state"], "succeeded", "{t}");
        let sent = launches.get(id).cloned().unwrap_or_default();
        let ran: Vec<String> = sent.iter().filter(|b| m.was_launched(b)).cloned().collect();
        assert_eq!(ran.len(), 1, "{id} ran as {ran:?} (sent {sent:?}): {t}");
        if sent.len() > 1 {
            println!("relaunched without running twice: {id} sent {sent:?}, ran {ran:?}");
        }
        assert_eq!(t["backend_task_id"], ran[0].as_str(), "{t}");
        // Acknowledged after its commit: the last ones may still be on their way.
        for b in &ran {
            let deadline = Instant::now() + Duration::from_secs(10);
            while m.unacknowledged_updates(b) > 0 {
                assert!(
                    Instant::now() < deadline,
                    "{b}: an update never acknowledged"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // A deposed leader never took the framework back: one SUBSCRIBE per leadership change,
    // give or take a reconnect.
    let subscribes = m.calls_of(call::Type::Subscribe).len();
    assert!(
        subscribes <= changes + 1 + 3,
        "{subscribes} SUBSCRIBEs for {changes} leadership changes"
    );
    let worst = *failovers.iter().max().unwrap();
    let med = median(&mut failovers.clone());
    println!(
        "failover_ms kind={kind} daemons={n_daemons} tasks={} lease_s={LEASE_SECS} changes={changes} median={med} worst={worst} all={failovers:?}",
        ids.len()
    );
    assert!(
        worst < (lease * 3).as_millis(),
        "a failover took {worst} ms with a {LEASE_SECS} s lease"
    );
    let _ = c.api_urls;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_on_postgresql_lose_nothing_and_run_nothing_twice() {
    let Some(url) = fresh_database("AM_TEST_PG_URL", "a PostgreSQL server").await else {
        return;
    };
    ha_run(url, "postgres", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_mariadb_lose_nothing_and_run_nothing_twice() {
    let Some(url) = fresh_database("AM_TEST_MYSQL_URL", "a MariaDB server").await else {
        return;
    };
    ha_run(url, "mysql", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_one_sqlite_file_refuses_to_start() {
    let first = Daemon::start("backend = docker\ndocker_image_slave = x\n", None);
    let db = first.home.path().join("airflow-mesos.db");
    let second_home = tempfile::tempdir().unwrap();
    let cfg = second_home.path().join("airflow.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[mesos]\nbackend = docker\ndocker_image_slave = x\napi_listen = 127.0.0.1:{}\ndatabase_url = sqlite:{}\n",
            common::free_port(),
            db.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airflow-mesos"))
        .args(["scheduler"])
        .env("AIRFLOW_HOME", second_home.path())
        .env("AIRFLOW_CONFIG", &cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another airflow-mesos daemon is using this SQLite state database"),
        "{err}"
    );
    drop(first);
}
