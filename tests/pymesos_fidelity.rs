//! Fidelity of the fake master's JSON encoding: pymesos (PyPI), a Mesos scheduler client
//! nobody on this project wrote, subscribes, accepts an offer, launches a task, acknowledges its
//! updates to TASK_FINISHED and reconciles, against the fake; the test asserts on what the fake
//! recorded. Needs `AM_TEST_PYTHON` (a Python with pymesos; `.ci/setup-python.sh`).

mod support;

use std::time::Duration;

use airflow_mesos::mesos::proto::scheduler::call;
use support::fake_master::{AgentSpec, FakeMaster, FakeMasterOptions, Leadership, TaskState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymesos_runs_a_task_to_finished_against_the_fake_master() {
    let Some(python) = support::env::required_service("AM_TEST_PYTHON", "a Python with pymesos")
    else {
        return;
    };
    let master = FakeMaster::start(FakeMasterOptions {
        agents: vec![AgentSpec::new(2.0, 2048.0)],
        ..Default::default()
    })
    .await;
    let stdout = run_smoke(&python, &master.host_port()).await;
    let summary: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("summary line is JSON ({e}): {stdout}"));

    // What pymesos saw: agent updates with uuids, then the master's reconciliation answer.
    let updates = summary["updates"].as_array().expect("updates array");
    let task_states: Vec<&str> = updates
        .iter()
        .filter(|u| u["task_id"] == "pymesos-task-1")
        .map(|u| u["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        task_states,
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    );
    assert!(updates
        .iter()
        .filter(|u| u["task_id"] == "pymesos-task-1")
        .all(|u| u["has_uuid"] == true && u["source"] == "SOURCE_EXECUTOR"));
    let reconciled = updates
        .iter()
        .find(|u| u["task_id"] == "pymesos-no-such-task")
        .expect("reconciliation answer for the unknown task");
    assert_eq!(reconciled["state"], "TASK_LOST"); // not PARTITION_AWARE
    assert_eq!(reconciled["reason"], "REASON_RECONCILIATION");
    assert_eq!(reconciled["has_uuid"], false);

    // What the fake recorded.
    let calls = master.calls();
    let subscribe = calls
        .iter()
        .find(|c| c.call_type() == Some(call::Type::Subscribe))
        .expect("pymesos subscribed");
    assert_eq!(subscribe.status, 200);
    assert_eq!(subscribe.header("content-type"), Some("application/json"));
    let fid = summary["framework_id"].as_str().expect("registered");
    assert_eq!(master.framework_ids(), vec![fid.to_string()]);

    let accepts = master.calls_of(call::Type::Accept);
    assert_eq!(accepts.len(), 1, "one ACCEPT");
    let launch = &accepts[0].accept.as_ref().expect("accept").operations[0];
    let task = &launch.launch.as_ref().expect("launch").task_infos[0];
    assert_eq!(task.task_id.value, "pymesos-task-1");
    assert_eq!(
        task.command.as_ref().and_then(|c| c.value.as_deref()),
        Some("echo hello")
    );

    let acks = master.calls_of(call::Type::Acknowledge);
    assert_eq!(
        acks.len(),
        3,
        "one ACKNOWLEDGE per agent update, none for the master's"
    );
    assert!(acks.iter().all(|a| {
        let ack = a.acknowledge.as_ref().expect("acknowledge");
        ack.task_id.value == "pymesos-task-1" && ack.uuid.len() == 16
    }));
    assert!(calls
        .iter()
        .filter(|c| c.call_type().is_some() && c.call_type() != Some(call::Type::Subscribe))
        .all(|c| c.status == 202 && c.header("mesos-stream-id").is_some()));
    assert_eq!(master.calls_of(call::Type::Reconcile).len(), 1);
    assert!(
        !master.knows_task("pymesos-task-1"),
        "terminal + acknowledged tasks are forgotten"
    );
    assert_eq!(master.stats().acknowledged, 3);
    assert_eq!(master.task_state("pymesos-task-1"), None::<TaskState>);
    master.shutdown().await;
}

/// Runs tests/py/pymesos_smoke.py against `master` (`host:port`); returns its stdout.
async fn run_smoke(python: &str, master: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/pymesos_smoke.py");
    let child = tokio::process::Command::new(python)
        .arg(script)
        .arg(master)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), child)
        .await
        .expect("pymesos smoke script finishes within 90 s")
        .unwrap_or_else(|e| panic!("run {python} {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pymesos smoke failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymesos_follows_a_standby_redirect_to_the_leader() {
    let Some(python) = support::env::required_service("AM_TEST_PYTHON", "a Python with pymesos")
    else {
        return;
    };
    let leader = FakeMaster::start(FakeMasterOptions {
        agents: vec![AgentSpec::new(2.0, 2048.0)],
        ..Default::default()
    })
    .await;
    let standby = FakeMaster::start(FakeMasterOptions {
        leadership: Leadership::Standby(leader.host_port()),
        ..Default::default()
    })
    .await;
    run_smoke(&python, &standby.host_port()).await;
    // The standby answered the SUBSCRIBE with a protocol-relative 307; pymesos followed it.
    let redirected = standby.calls();
    assert!(redirected.iter().any(|c| c.status == 307), "{redirected:?}");
    assert!(redirected.iter().all(|c| c.status == 307));
    assert_eq!(leader.calls_of(call::Type::Subscribe).len(), 1);
    assert_eq!(leader.calls_of(call::Type::Acknowledge).len(), 3);
    leader.shutdown().await;
    standby.shutdown().await;
}
