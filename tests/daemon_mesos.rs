//! End-to-end tests of the daemon on the Mesos backend: the real `airflow-mesos` binary,
//! configured through `airflow.cfg`, driven through the CLI, against the in-process fake
//! master of `tests/support/` (protobuf on the wire, as in production).

mod common;
mod support;

use airflow_mesos::mesos::proto::scheduler::call;
use common::{task_ids, Daemon};
use serde_json::Value;
use std::time::Duration;
use support::fake_master::cut::Cut;
use support::fake_master::{
    AgentSpec, FakeMaster, FakeMasterOptions, Reason, TaskScript, TaskState, TaskStep,
};

async fn master() -> FakeMaster {
    let m = FakeMaster::start(FakeMasterOptions {
        heartbeat_interval: Duration::from_secs(1),
        update_retry_interval: Duration::from_millis(500),
        ..FakeMasterOptions::default()
    })
    .await;
    m.add_agent(AgentSpec::new(4.0, 4096.0).with_id("agent-1"));
    m
}

fn daemon_for(masters: &str) -> Daemon {
    Daemon::start(
        &format!(
            "master = {masters}\nbackend = mesos\ndocker_image_slave = example/airflow:1\n\
             task_cpu = 0.5\ntask_memory = 128\nframework_name = am-test\ncheckpoint = True\n\
             kill_grace_period = 1\nreconciliation_interval = 30\n"
        ),
        None,
    )
}

/// Runs a blocking CLI call off the async runtime (the fake master runs on it).
async fn cli(d: &Daemon, args: &[&str]) -> std::process::Output {
    let home = d.home.path().to_path_buf();
    let cfg = d.cfg_path();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        common::cli_in(&home, &cfg, &a)
    })
    .await
    .unwrap()
}

async fn cli_json(d: &Daemon, args: &[&str]) -> Value {
    let out = cli(d, args).await;
    assert!(out.status.success(), "{args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn state(d: &Daemon, id: &str) -> String {
    cli_json(d, &["status", id, "--json"]).await["state"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn wait_state(d: &Daemon, id: &str, want: &str) {
    for _ in 0..300 {
        if state(d, id).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "task {id} never reached {want} (now {}):\n{}",
        state(d, id).await,
        d.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn launch_run_finish_with_acks_and_packing() {
    let m = master().await;
    let d = daemon_for(&m.host_port());
    let jobs = d.home.path().join("jobs.yaml");
    std::fs::write(
        &jobs,
        "tasks:\n  - command: echo a\n  - command: [\"echo\", \"b\"]\n  - command: echo c\n    image: other/image:2\n",
    )
    .unwrap();
    let out = cli(
        &d,
        &["submit", "-f", jobs.to_str().unwrap(), "--wait", "--json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", d.log_text());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for t in v["tasks"].as_array().unwrap() {
        assert_eq!(t["state"], "succeeded", "{t}");
        assert_eq!(t["attempts"], 1);
        let backend_id = t["backend_task_id"].as_str().unwrap();
        assert_eq!(
            m.unacknowledged_updates(backend_id),
            0,
            "every update acknowledged"
        );
    }
    // Several tasks went into one offer, as Docker containers with the right images.
    let accepts = m.calls_of(call::Type::Accept);
    let launched: Vec<_> = accepts
        .iter()
        .flat_map(|c| c.accept.as_ref().unwrap().operations.iter())
        .filter_map(|op| op.launch.as_ref())
        .flat_map(|l| l.task_infos.iter())
        .collect();
    assert_eq!(launched.len(), 3, "each task launched once");
    assert!(
        accepts.iter().any(|c| {
            c.accept
                .as_ref()
                .unwrap()
                .operations
                .iter()
                .filter_map(|o| o.launch.as_ref())
                .map(|l| l.task_infos.len())
                .sum::<usize>()
                > 1
        }),
        "tasks are packed into one offer"
    );
    let mut images: Vec<&str> = launched
        .iter()
        .map(|t| {
            t.container
                .as_ref()
                .unwrap()
                .docker
                .as_ref()
                .unwrap()
                .image
                .as_str()
        })
        .collect();
    images.sort();
    assert_eq!(
        images,
        ["example/airflow:1", "example/airflow:1", "other/image:2"]
    );
    for t in &launched {
        assert_ne!(
            t.container
                .as_ref()
                .unwrap()
                .docker
                .as_ref()
                .unwrap()
                .privileged,
            Some(true),
            "never privileged unless asked"
        );
    }
    // Acknowledgements carried the uuids of the updates (none for uuid-less ones).
    assert!(m.calls_of(call::Type::Acknowledge).len() >= 9);
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_errors_duplicates_and_logs() {
    let m = master().await;
    let d = daemon_for(&m.host_port());
    m.set_task_script_fn(|t| {
        let cmd = t
            .command
            .as_ref()
            .and_then(|c| c.value.clone())
            .unwrap_or_default();
        if cmd.contains("fail") {
            TaskScript::fail(2)
        } else if cmd.contains("hold") {
            TaskScript::run_until_released()
        } else {
            TaskScript::finish()
        }
    });
    let failing = task_ids(&cli_json(&d, &["submit", "--json", "--shell", "fail"]).await).remove(0);
    wait_state(&d, &failing, "failed").await;
    let t = cli_json(&d, &["status", &failing, "--json"]).await;
    assert!(t["message"].as_str().unwrap().contains("status 2"), "{t}");

    // A duplicate RUNNING update changes nothing and shows once in the change feed.
    let held = task_ids(&cli_json(&d, &["submit", "--json", "--shell", "hold"]).await).remove(0);
    wait_state(&d, &held, "running").await;
    let backend_id = format!("{held}.1");
    assert!(m.send_task_update(&backend_id, TaskState::TaskRunning, None, None));
    m.set_task_output(&backend_id, "hello stdout\n", "hello stderr\n");
    let out = cli(&d, &["logs", &held]).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello stdout\n",
        "{out:?}"
    );
    let out = cli(&d, &["logs", &held, "--stderr"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello stderr\n");
    assert!(m.send_task_update(
        &backend_id,
        TaskState::TaskError,
        Some("bad task"),
        Some(Reason::TaskInvalid)
    ));
    wait_state(&d, &held, "failed").await;
    let feed = d.get_json("/v1/events?since=0&limit=1000").await;
    let states: Vec<&str> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["task_id"] == held.as_str())
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "running").count(),
        1,
        "{states:?}"
    );
    assert_eq!(states.last(), Some(&"failed"));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_launch_is_retried_as_a_new_attempt() {
    let m = master().await;
    let d = daemon_for(&m.host_port());
    m.set_task_script_fn(|t| {
        if t.task_id.value.ends_with(".1") {
            TaskScript(vec![]).then(TaskState::TaskDropped, Some("agent went away"), None)
        } else {
            TaskScript::finish()
        }
    });
    let id = task_ids(&cli_json(&d, &["submit", "--json", "--", "true"]).await).remove(0);
    wait_state(&d, &id, "succeeded").await;
    let t = cli_json(&d, &["status", &id, "--json"]).await;
    assert_eq!(t["attempts"], 2, "{t}");
    assert_eq!(t["backend_task_id"], format!("{id}.2"));
    m.shutdown().await;
}

/// The backend task ids each recorded ACCEPT launched (the cut ones too), in order, with the
/// call's index in `m.calls()`.
fn accepted(m: &FakeMaster) -> Vec<(usize, Vec<String>, Vec<String>)> {
    m.calls()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.call_type() == Some(call::Type::Accept))
        .map(|(i, c)| {
            let a = c.call.as_ref().unwrap().accept.as_ref().unwrap();
            let offers = a.offer_ids.iter().map(|o| o.value.clone()).collect();
            let tasks = a
                .operations
                .iter()
                .filter_map(|op| op.launch.as_ref())
                .flat_map(|l| l.task_infos.iter().map(|t| t.task_id.value.clone()))
                .collect();
            (i, offers, tasks)
        })
        .collect()
}

/// Index in `m.calls()` of the first call after `from` that `pred` accepts and the master
/// answered 202.
fn first_after(
    m: &FakeMaster,
    from: usize,
    pred: impl Fn(&airflow_mesos::mesos::proto::scheduler::Call) -> bool,
) -> Option<usize> {
    m.calls()
        .iter()
        .enumerate()
        .skip(from + 1)
        .find(|(_, c)| c.status == 202 && c.call.as_ref().is_some_and(&pred))
        .map(|(i, _)| i)
}

fn declines(offer: &str) -> impl Fn(&airflow_mesos::mesos::proto::scheduler::Call) -> bool + '_ {
    move |c| {
        c.decline
            .as_ref()
            .is_some_and(|d| d.offer_ids.iter().any(|o| o.value == offer))
    }
}

fn reconciles(task: &str) -> impl Fn(&airflow_mesos::mesos::proto::scheduler::Call) -> bool + '_ {
    move |c| {
        c.reconcile
            .as_ref()
            .is_some_and(|r| r.tasks.iter().any(|t| t.task_id.value == task))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_accept_the_master_took_without_answering_is_settled_and_runs_once() {
    let m = master().await;
    // The attempt waits on its agent until released: no update says it exists.
    m.set_default_task_script(
        TaskScript(vec![TaskStep::Hold])
            .then(TaskState::TaskStarting, None, None)
            .then(TaskState::TaskRunning, None, None)
            .then(TaskState::TaskFinished, Some("done"), None),
    );
    m.cut_connection_at_next(call::Type::Accept, Cut::AfterCall);
    let d = daemon_for(&m.host_port());
    let id = task_ids(&cli_json(&d, &["submit", "--json", "--", "true"]).await).remove(0);
    let first = format!("{id}.1");
    // The daemon voids the offer, then asks the master, which has the attempt (STAGING).
    m.wait_for(
        "the attempt reconciled after its offer was voided",
        Duration::from_secs(30),
        |m| {
            let Some((i, offers, _)) = accepted(m).into_iter().next() else {
                return false;
            };
            first_after(m, i, declines(&offers[0]))
                .and_then(|j| first_after(m, j, reconciles(&first)))
                .is_some()
        },
    )
    .await;
    for _ in 0..100 {
        let t = cli_json(&d, &["status", &id, "--json"]).await;
        if t["message"]
            .as_str()
            .unwrap_or("")
            .contains("the master has it")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = cli_json(&d, &["status", &id, "--json"]).await;
    assert_eq!(t["state"], "launching", "{t}\n{}", d.log_text());
    assert!(
        t["message"].as_str().unwrap().contains("the master has it"),
        "{t}"
    );
    assert!(m.release_task(&first));
    wait_state(&d, &id, "succeeded").await;
    let t = cli_json(&d, &["status", &id, "--json"]).await;
    assert_eq!(t["attempts"], 1, "{t}");
    let launched: Vec<String> = accepted(&m).into_iter().flat_map(|a| a.2).collect();
    assert_eq!(launched, vec![first.clone()], "launched once");
    assert_eq!(m.unacknowledged_updates(&first), 0);
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_accept_cut_before_the_master_read_it_is_relaunched_only_once_the_master_says_so() {
    let m = master().await;
    m.cut_connection_at_next(call::Type::Accept, Cut::BeforeCall);
    let d = daemon_for(&m.host_port());
    let id = task_ids(&cli_json(&d, &["submit", "--json", "--", "true"]).await).remove(0);
    wait_state(&d, &id, "succeeded").await;
    let t = cli_json(&d, &["status", &id, "--json"]).await;
    assert_eq!(t["attempts"], 2, "{t}");
    let accepts = accepted(&m);
    assert_eq!(
        m.calls()[accepts[0].0].status,
        0,
        "the first ACCEPT was cut"
    );
    assert_eq!(accepts[0].2, vec![format!("{id}.1")]);
    // The relaunch comes only after the cut ACCEPT's offer was voided (DECLINE, 202) and the
    // master, asked after that, said it does not know the first attempt.
    let void = first_after(&m, accepts[0].0, declines(&accepts[0].1[0]));
    let asked = void.and_then(|j| first_after(&m, j, reconciles(&format!("{id}.1"))));
    let relaunch = accepts
        .iter()
        .find(|a| a.2.contains(&format!("{id}.2")))
        .map(|a| a.0);
    assert!(
        matches!((asked, relaunch), (Some(a), Some(r)) if a < r),
        "void {void:?}, reconcile {asked:?}, relaunch {relaunch:?}\n{}",
        d.log_text()
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_running_and_queued() {
    let m = master().await;
    m.set_default_task_script(TaskScript::run_until_released());
    let d = daemon_for(&m.host_port());
    let running =
        task_ids(&cli_json(&d, &["submit", "--json", "--", "sleep", "1000"]).await).remove(0);
    wait_state(&d, &running, "running").await;
    let out = cli(&d, &["kill", &running]).await;
    assert!(out.status.success(), "{out:?}");
    wait_state(&d, &running, "killed").await;
    let kills = m.calls_of(call::Type::Kill);
    assert_eq!(kills.len(), 1);
    let policy = kills[0].kill.as_ref().unwrap().kill_policy.as_ref();
    assert_eq!(
        policy
            .and_then(|p| p.grace_period.as_ref())
            .map(|g| g.nanoseconds),
        Some(1_000_000_000),
        "the grace period goes with the kill"
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_busy_cluster_a_task_larger_than_any_free_slice_is_accepted_and_runs_when_room_is_made(
) {
    let m = master().await; // one agent: 4 cpus, 4096 MB
    m.set_default_task_script(TaskScript::run_until_released());
    let mut d = daemon_for(&m.host_port());
    let jobs = d.home.path().join("fill.yaml");
    let fill: String = (0..4)
        .map(|i| format!("  - command: fill {i}\n    cpus: 0.9\n    mem: 512\n"))
        .collect();
    std::fs::write(&jobs, format!("tasks:\n{fill}")).unwrap();
    let busy = task_ids(&cli_json(&d, &["submit", "-f", jobs.to_str().unwrap(), "--json"]).await);
    for id in &busy {
        wait_state(&d, id, "running").await;
    }
    // A restart: the only offers the daemon sees now are the agent's leftovers.
    d.kill9();
    d.spawn();
    // The only offers the daemon sees now are the agent's leftovers (0.4 cpus): a small task
    // runs on one.
    m.set_default_task_script(TaskScript::finish());
    let small = cli(
        &d,
        &["submit", "--wait", "--json", "--cpus", "0.1", "--", "small"],
    )
    .await;
    assert_eq!(small.status.code(), Some(0), "{small:?}");
    let big = cli(
        &d,
        &[
            "submit", "--json", "--cpus", "3", "--mem", "2048", "--", "big",
        ],
    )
    .await;
    assert_eq!(big.status.code(), Some(0), "accepted: {big:?}");
    let big = task_ids(&serde_json::from_slice(&big.stdout).unwrap()).remove(0);
    assert_eq!(state(&d, &big).await, "queued");
    // It says why it waits once an offer was seen that could not hold it.
    let mut said = String::new();
    for _ in 0..100 {
        let t = cli_json(&d, &["status", &big, "--json"]).await;
        said = t["message"].as_str().unwrap_or_default().to_string();
        if !said.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        said.starts_with("waiting: no agent has offered 3 cpus, 2048 MB at once yet"),
        "{said}"
    );
    // Room is made: the big task runs.
    for id in &busy {
        assert!(m.release_task(&format!("{id}.1")), "{id}");
    }
    wait_state(&d, &big, "succeeded").await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_restart_keeps_framework_reconciles_and_launches_nothing_twice() {
    let m = master().await;
    m.set_default_task_script(TaskScript::run_until_released());
    let mut d = daemon_for(&m.host_port());
    let mut submitted = Vec::new();
    for i in 0..4 {
        submitted.extend(task_ids(
            &cli_json(&d, &["submit", "--json", "--shell", &format!("work {i}")]).await,
        ));
    }
    for id in &submitted {
        wait_state(&d, id, "running").await;
    }
    let fids = m.framework_ids();
    assert_eq!(fids.len(), 1);
    d.kill9();
    m.clear_calls();
    d.spawn();
    // Re-subscribed with the same framework id, then reconciled the running tasks.
    m.wait_for("resubscribe and reconcile", Duration::from_secs(20), |m| {
        !m.calls_of(call::Type::Reconcile).is_empty()
    })
    .await;
    assert_eq!(m.framework_ids(), fids, "same framework id after restart");
    let subs = m.calls_of(call::Type::Subscribe);
    assert_eq!(
        subs[0].framework_id.as_ref().map(|f| f.value.clone()),
        Some(fids[0].clone())
    );
    let reconciled: Vec<String> = m
        .calls_of(call::Type::Reconcile)
        .iter()
        .flat_map(|c| {
            c.reconcile
                .as_ref()
                .unwrap()
                .tasks
                .iter()
                .map(|t| t.task_id.value.clone())
        })
        .collect();
    for id in &submitted {
        assert!(
            reconciled.contains(&format!("{id}.1")),
            "{id} reconciled: {reconciled:?}"
        );
    }
    for id in &submitted {
        assert!(m.release_task(&format!("{id}.1")));
    }
    for id in &submitted {
        wait_state(&d, id, "succeeded").await;
        let t = cli_json(&d, &["status", id, "--json"]).await;
        assert_eq!(t["attempts"], 1, "not launched again: {t}");
    }
    assert!(m.calls_of(call::Type::Accept).iter().all(|c| c
        .accept
        .as_ref()
        .unwrap()
        .operations
        .iter()
        .all(|o| o.launch.is_none())));
    assert!(
        m.calls_of(call::Type::Teardown).is_empty(),
        "never tears down"
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_daemon_does_not_spin() {
    let m = master().await;
    let d = daemon_for(&m.host_port());
    let id = task_ids(&cli_json(&d, &["submit", "--json", "--", "true"]).await).remove(0);
    wait_state(&d, &id, "succeeded").await;
    // Nothing queued: offers declined and suppressed, heartbeats every second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = d.pid().expect("the daemon runs");
    let before = common::cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = common::cpu_ticks(pid) - before;
    println!("idle_mesos_daemon_cpu_ticks_in_5s={used}");
    assert!(used < 60, "the idle daemon used {used} ticks of CPU in 5 s");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn master_failover_mid_run() {
    let a = master().await;
    let b = master().await;
    b.set_leadership(support::fake_master::Leadership::Standby(a.host_port()));
    a.set_default_task_script(TaskScript::run_until_released());
    let d = daemon_for(&format!("{},{}", b.host_port(), a.host_port()));
    let id = task_ids(&cli_json(&d, &["submit", "--json", "--", "true"]).await).remove(0);
    wait_state(&d, &id, "running").await;
    // The leader dies: b takes over and knows nothing of the task until reconciliation.
    a.flip_leader_to(&b);
    b.wait_for(
        "resubscribed to the new leader",
        Duration::from_secs(30),
        |m| !m.framework_ids().is_empty() && !m.calls_of(call::Type::Reconcile).is_empty(),
    )
    .await;
    let t = cli_json(&d, &["status", &id, "--json"]).await;
    assert_ne!(t["state"], "queued", "never relaunched blindly: {t}");
    assert_eq!(t["attempts"], 1);
    m_shutdown(a, b).await;
}

async fn m_shutdown(a: FakeMaster, b: FakeMaster) {
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_stays_responsive_while_ten_thousand_tasks_are_submitted() {
    let m = master().await;
    for i in 0..4 {
        m.add_agent(AgentSpec::new(1000.0, 1_000_000.0).with_id(&format!("big-{i}")));
    }
    let d = daemon_for(&m.host_port());
    let specs: Vec<Value> = (0..10_000)
        .map(|i| serde_json::json!({"command": format!("echo {i}"), "cpus": 0.01, "mem": 32}))
        .collect();
    let body = serde_json::json!({ "tasks": specs });
    let http = d.http(Duration::from_secs(5));
    let submit = {
        let http = http.clone();
        let url = d.url("/v1/tasks");
        tokio::spawn(async move { http.post(url).json(&body).send().await })
    };
    // While the batch is stored, matched and launched, the API keeps answering.
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    while !submit.is_finished() || probes < 20 {
        let started = std::time::Instant::now();
        let r = http
            .get(d.url("/healthz"))
            .send()
            .await
            .expect("healthz answers within 5 s");
        assert_eq!(r.status(), 200);
        let r = http
            .get(d.url("/v1/tasks?limit=5"))
            .send()
            .await
            .expect("list answers within 5 s");
        assert_eq!(r.status(), 200);
        worst = worst.max(started.elapsed());
        probes += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = submit.await.unwrap().expect("the batch is accepted");
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["tasks"].as_array().unwrap().len(), 10_000);
    eprintln!("{probes} probes during the 10,000-task batch; slowest answer {worst:?}");
    // All of them are stored, and launching has begun.
    let all: Value = http
        .get(d.url("/v1/tasks?limit=10000"))
        // 10,000 tasks are megabytes of JSON: the probes' 5 s is for small answers.
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["tasks"].as_array().unwrap().len(), 10_000);
    // And every one of them ends, acknowledged (this once deadlocked the driver and the
    // backend on their bounded channels after the first thousand tasks).
    let started = std::time::Instant::now();
    let mut done = 0;
    while started.elapsed() < Duration::from_secs(240) {
        let page: Value = http
            .get(d.url("/v1/tasks?state=succeeded&limit=10000"))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        done = page["tasks"].as_array().unwrap().len();
        if done == 10_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        done,
        10_000,
        "all tasks succeeded:\n{}",
        d.log_text()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "10,000 tasks ended in {:?} (debug build)",
        started.elapsed()
    );
    m.shutdown().await;
}

/// A daemon whose `public_url` (where agents fetch one-time files) is its own API.
fn registry_daemon(master: &FakeMaster, containerizer: &str) -> Daemon {
    Daemon::start(
        &format!(
            "backend = mesos\nmaster = {}\n\
             docker_image_slave = reg.example:5000/team/job:1\ncontainerizer = {containerizer}\n\
             docker_registry = reg.example:5000\ndocker_registry_username = robot\n\
             docker_registry_password = hunter2-registry\npublic_url = http://127.0.0.1:{{api_port}}\n",
            master.host_port()
        ),
        None,
    )
}

async fn launched_task_info(m: &FakeMaster) -> airflow_mesos::mesos::proto::v1::TaskInfo {
    m.wait_for("a launch", Duration::from_secs(30), |m| {
        !m.calls_of(call::Type::Accept).is_empty()
    })
    .await;
    m.calls_of(call::Type::Accept)
        .into_iter()
        .flat_map(|c| c.accept.unwrap().operations)
        .filter_map(|o| o.launch)
        .flat_map(|l| l.task_infos)
        .next()
        .expect("a TaskInfo")
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_credentials_reach_the_docker_containerizer_once_through_a_one_time_url() {
    let m = master().await;
    // The agent fetches before the task starts: hold it there.
    m.set_default_task_script(TaskScript(vec![TaskStep::Hold]));
    let d = registry_daemon(&m, "docker");
    cli_json(&d, &["submit", "--json", "--", "true"]).await;
    let ti = launched_task_info(&m).await;
    let debug = format!("{ti:?}");
    assert!(
        !debug.contains("hunter2-registry"),
        "no password in the TaskInfo"
    );
    let uri = ti
        .command
        .as_ref()
        .unwrap()
        .uris
        .iter()
        .find(|u| u.value.ends_with("docker.tar.gz"))
        .expect("a docker.tar.gz URI")
        .value
        .clone();
    assert!(
        uri.starts_with(&format!("http://127.0.0.1:{}/v1/files/", d.port)),
        "{uri}"
    );
    let first = reqwest::get(&uri).await.unwrap();
    assert_eq!(first.status(), 200);
    let bytes = first.bytes().await.unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut config = None;
    for entry in archive.entries().unwrap() {
        let mut e = entry.unwrap();
        if e.path().unwrap().to_string_lossy().trim_start_matches("./") == ".docker/config.json" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            config = Some(s);
        }
    }
    let config: Value =
        serde_json::from_str(&config.expect(".docker/config.json in the archive")).unwrap();
    use base64::Engine;
    let auth = config["auths"]["reg.example:5000"]["auth"]
        .as_str()
        .unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .unwrap();
    assert_eq!(decoded, b"robot:hunter2-registry");
    // Served once: a second fetch gets nothing, nor does a forged URL.
    assert_eq!(reqwest::get(&uri).await.unwrap().status(), 410);
    let mut forged = uri.clone();
    let at = forged.rfind("/docker.tar.gz").unwrap() - 1;
    let last = if &forged[at..at + 1] == "0" { "1" } else { "0" };
    forged.replace_range(at..at + 1, last);
    assert_eq!(reqwest::get(&forged).await.unwrap().status(), 404);
    let other_attempt = uri.replace(".1/registry/", ".2/registry/");
    assert_eq!(reqwest::get(&other_attempt).await.unwrap().status(), 404);
    assert!(
        !d.log_text().contains("hunter2-registry"),
        "no password in the log"
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_files_outlive_a_daemon_restart_until_the_attempt_starts() {
    let m = master().await;
    // The agent has the launch but has not fetched yet (it fetches before the task starts).
    m.set_default_task_script(
        TaskScript(vec![TaskStep::Hold])
            .then(TaskState::TaskStarting, None, None)
            .then(TaskState::TaskRunning, None, None),
    );
    let mut d = registry_daemon(&m, "docker");
    let job = d.home.path().join("job.yaml");
    std::fs::write(
        &job,
        "command: [\"sh\", \"-c\", \"echo ok\"]\nfiles:\n  - path: conf/workload.json\n    content: '{\"token\": \"wl-s3cret\"}'\nsecret_env: {DB_PASSWORD: db-s3cret}\n",
    )
    .unwrap();
    let submitted = cli_json(&d, &["submit", "--json", "-f", job.to_str().unwrap()]).await;
    let id = submitted["tasks"][0]["id"].as_str().unwrap().to_string();
    let ti = launched_task_info(&m).await;
    let text = format!("{ti:?}");
    for secret in ["wl-s3cret", "db-s3cret", "DB_PASSWORD", "hunter2-registry"] {
        assert!(!text.contains(secret), "{secret} in the TaskInfo: {text}");
    }
    let uris: Vec<String> = ti
        .command
        .as_ref()
        .unwrap()
        .uris
        .iter()
        .map(|u| u.value.clone())
        .collect();
    assert_eq!(uris.len(), 3, "workload, secret env, registry: {uris:?}");

    // The daemon dies before the agent fetches, and comes back.
    d.kill9();
    d.spawn();
    let workload = uris.iter().find(|u| u.ends_with("/workload.json")).unwrap();
    let mut got = None;
    for _ in 0..300 {
        if let Ok(r) = reqwest::get(workload).await {
            if r.status() == 200 {
                got = Some(r.text().await.unwrap());
                break;
            }
            assert_ne!(r.status(), 410, "the restart lost the file");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = got.expect("the restarted daemon serves the workload within 30 s");
    assert!(got.contains("wl-s3cret"), "{got}");
    let env = uris.iter().find(|u| u.contains("/env/")).unwrap();
    let script = reqwest::get(env).await.unwrap().text().await.unwrap();
    assert_eq!(script, "export DB_PASSWORD='db-s3cret'\n");
    assert_eq!(reqwest::get(workload).await.unwrap().status(), 410, "once");

    // The attempt starts: nothing is served any more, and the store forgets the secrets.
    assert!(m.release_task(&format!("{id}.1")));
    for _ in 0..300 {
        if state(&d, &id).await == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state(&d, &id).await, "running");
    let registry = uris.iter().find(|u| u.ends_with("/docker.tar.gz")).unwrap();
    assert_eq!(reqwest::get(registry).await.unwrap().status(), 410);
    let shown = cli_json(&d, &["status", &id, "--json"]).await.to_string();
    assert!(
        !shown.contains("wl-s3cret") && !shown.contains("db-s3cret"),
        "{shown}"
    );
    let store = airflow_mesos::store::Store::connect(&format!(
        "sqlite:{}",
        d.home.path().join("airflow-mesos.db").display()
    ))
    .await
    .unwrap();
    let stored = store.get_task(&id).await.unwrap().unwrap().spec;
    assert_eq!(stored.files[0].content, "");
    assert_eq!(stored.secret_env["DB_PASSWORD"], "");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_credentials_reach_the_mesos_containerizer_as_an_image_secret() {
    let m = master().await;
    m.set_default_task_script(TaskScript::run_until_released());
    let d = registry_daemon(&m, "mesos");
    cli_json(&d, &["submit", "--json", "--", "true"]).await;
    let ti = launched_task_info(&m).await;
    let container = ti.container.as_ref().unwrap();
    assert!(
        container.docker.is_none(),
        "type MESOS carries no DockerInfo"
    );
    let image = container.mesos.as_ref().unwrap().image.as_ref().unwrap();
    let docker = image.docker.as_ref().unwrap();
    assert_eq!(docker.name, "reg.example:5000/team/job:1");
    let secret = docker.config.as_ref().expect("Image.Docker.config");
    let data = &secret.value.as_ref().unwrap().data;
    let config: Value = serde_json::from_slice(data).unwrap();
    assert!(
        config["auths"]["reg.example:5000"]["auth"].is_string(),
        "{config}"
    );
    let env = format!(
        "{:?}{:?}",
        ti.command.as_ref().unwrap().environment,
        ti.labels
    );
    assert!(!env.contains("hunter2") && !env.contains("cm9ib3Q6aHVudGVyMi1yZWdpc3RyeQ"));
    m.shutdown().await;
}

/// The web UI on the Mesos backend: the overview shows the master and the framework id, the
/// agents page the fake master's agent and its offers, and a task's page the end of a long
/// stdout read through the agent's `/files/read` (its size asked with `offset=-1`).
#[tokio::test(flavor = "multi_thread")]
async fn the_web_ui_shows_the_master_the_agents_and_an_agents_log_tail() {
    let m = master().await;
    let token = "mesos-ui-token-0123456789";
    let d = Daemon::start(
        &format!(
            "master = {}\nbackend = mesos\ndocker_image_slave = example/airflow:1\n\
             task_cpu = 0.5\ntask_memory = 128\nframework_name = am-ui\n",
            m.host_port()
        ),
        Some(token),
    );
    m.set_task_script_fn(|_| TaskScript::run_until_released());
    let id = task_ids(&cli_json(&d, &["submit", "--json", "--shell", "hold"]).await).remove(0);
    wait_state(&d, &id, "running").await;
    let lines: String = (0..2000).map(|i| format!("line {i:04}\n")).collect();
    m.set_task_output(&format!("{id}.1"), &lines, "");

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = d.ui_login().await;
    let get = |path: &str| {
        let req = http.get(d.url(path)).header("cookie", cookie.clone());
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let task = get(&format!("/ui/tasks/{id}")).await;
    assert!(
        task.contains("line 1999\n</pre>"),
        "the end of stdout: {task}"
    );
    assert!(
        !task.contains("line 0000"),
        "only the tail (8 KiB of 20 KB)"
    );
    assert!(task.contains("… the last"), "{task}");
    let overview = get("/ui/").await;
    assert!(overview.contains(&m.host_port()), "the master: {overview}");
    let agents = get("/ui/agents").await;
    assert!(agents.contains("agent-1"), "{agents}");
    assert!(
        agents.contains("used: 1 task") || agents.contains("declined"),
        "{agents}"
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_of_a_task_that_ended_before_a_restart_is_a_conflict_not_an_unknown_task() {
    let m = master().await;
    let mut d = daemon_for(&m.host_port());
    let jobs = d.home.path().join("one.yaml");
    std::fs::write(&jobs, "tasks:\n  - command: echo done\n").unwrap();
    let v = cli_json(
        &d,
        &["submit", "-f", jobs.to_str().unwrap(), "--wait", "--json"],
    )
    .await;
    let id = task_ids(&v).remove(0);
    assert_eq!(state(&d, &id).await, "succeeded");
    // The core forgets ended tasks at a restart; the store does not.
    d.terminate();
    d.spawn();

    let http = d.http(Duration::from_secs(10));
    let r = http
        .post(d.url(&format!("/v1/tasks/{id}/kill")))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("already ended"),
        "{body}"
    );
    let out = cli(&d, &["kill", &id]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("{id} succeeded (already ended)"));
    let out = cli(&d, &["kill", &id, "--json"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][0]["already_ended"], true, "{v}");
    assert_eq!(v["results"][0]["state"], "succeeded", "{v}");

    let r = http
        .post(d.url("/v1/tasks/t-nosuchtask/kill"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        cli(&d, &["kill", "t-nosuchtask"]).await.status.code(),
        Some(66)
    );
}

/// Runs the scheduler until it exits by itself (at most `secs`); its exit code and output.
async fn scheduler_until_exit(d: &Daemon, secs: u64) -> (Option<i32>, String) {
    let (home, cfg) = (d.home.path().to_path_buf(), d.cfg_path());
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(common::BIN)
            .args(["scheduler"])
            .env("AIRFLOW_HOME", &home)
            .env("AIRFLOW_CONFIG", &cfg)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        let code = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = child.wait_with_output().unwrap();
        (
            code,
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_framework_stops_the_scheduler_with_advice_and_framework_reset_recovers() {
    let m = master().await;
    m.set_default_task_script(TaskScript::run_until_released());
    let mut d = daemon_for(&m.host_port());
    let jobs = d.home.path().join("two.yaml");
    std::fs::write(
        &jobs,
        "tasks:\n  - command: echo long\n    external_key: dag.t.1\n",
    )
    .unwrap();
    let v = cli_json(&d, &["submit", "-f", jobs.to_str().unwrap(), "--json"]).await;
    let running = task_ids(&v).remove(0);
    wait_state(&d, &running, "running").await;
    d.terminate();
    // Stored while the daemon is down: it stays queued through the reset.
    let fid = m.framework_ids().remove(0);
    m.remove_framework(&fid);

    // The next start is refused by the master: the scheduler exits and says what to do.
    let (code, out) = scheduler_until_exit(&d, 30).await;
    assert!(matches!(code, Some(c) if c != 0), "{code:?}\n{out}");
    assert!(out.contains(&fid), "names the framework id:\n{out}");
    assert!(out.contains("framework reset"), "says what to do:\n{out}");

    // Without --yes: shows, changes nothing.
    let shown = cli(&d, &["framework", "reset"]).await;
    assert_eq!(shown.status.code(), Some(0), "{shown:?}");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains(&fid) && text.contains(&running), "{text}");
    assert!(text.contains("would be marked failed"), "{text}");
    let v = cli_json(&d, &["framework", "reset", "--json"]).await;
    assert_eq!(v["framework_id"], fid.as_str(), "{v}");
    assert_eq!(v["reset"], false, "{v}");
    assert_eq!(v["orphaned"][0]["id"], running.as_str(), "{v}");
    assert_eq!(v["orphaned"][0]["external_key"], "dag.t.1", "{v}");

    let v = cli_json(&d, &["framework", "reset", "--yes", "--json"]).await;
    assert_eq!(v["reset"], true, "{v}");

    // A new framework: the scheduler starts, the orphaned task is failed with the reason, new
    // work runs.
    m.set_default_task_script(TaskScript::finish());
    d.spawn();
    let t = cli_json(&d, &["status", &running, "--json"]).await;
    assert_eq!(t["state"], "failed", "{t}");
    assert!(
        t["message"]
            .as_str()
            .unwrap()
            .contains("removed by the Mesos master"),
        "{t}"
    );
    let again = d.home.path().join("again.yaml");
    std::fs::write(&again, "tasks:\n  - command: echo again\n").unwrap();
    let v = cli_json(
        &d,
        &["submit", "-f", again.to_str().unwrap(), "--wait", "--json"],
    )
    .await;
    assert_eq!(v["tasks"][0]["state"], "succeeded", "{v}");
    let ids = m.framework_ids();
    assert!(ids.iter().any(|i| i != &fid), "a new framework id: {ids:?}");

    // While a scheduler runs on the database, reset refuses.
    let busy = cli(&d, &["framework", "reset", "--yes"]).await;
    assert_eq!(busy.status.code(), Some(75), "{busy:?}");
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("stop it first"),
        "{busy:?}"
    );
}
