//! End-to-end tests of the daemon on the local Docker backend, driven the way an operator
//! drives it: the `airflow-mesos` binary, an `airflow.cfg`, the CLI verbs and the HTTP API,
//! against the real Docker engine (image from `AM_TEST_BUSYBOX`, made by .ci/setup-docker.sh).

mod common;

use common::{eventually, require_env, task_ids as ids, Daemon};
use serde_json::Value;

fn daemon(token: Option<&str>) -> Option<Daemon> {
    let image = require_env("AM_TEST_BUSYBOX", "a local busybox image")?;
    Some(Daemon::start(
        &format!("backend = docker\ndocker_image_slave = {image}\ntask_cpu = 0.1\ntask_memory = 32\nkill_grace_period = 2\n"),
        token,
    ))
}

fn write(d: &Daemon, name: &str, text: &str) -> String {
    let p = d.home.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn state(d: &Daemon, id: &str) -> String {
    d.cli_json(&["status", id, "--json"])["state"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_wait_list_logs_and_exit_codes() {
    let Some(d) = daemon(None) else { return };
    let jobs = write(
        &d,
        "jobs.yaml",
        "tasks:\n  - name: ok\n    command: [\"sh\", \"-c\", \"echo out-$GREETING; echo err >&2\"]\n    env: {GREETING: hi}\n  - name: bad\n    command: exit 3\n",
    );
    let out = d.cli(&["submit", "-f", &jobs, "--wait", "--json"]);
    assert_eq!(out.status.code(), Some(1), "one task failed: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["state"], "succeeded");
    assert_eq!(tasks[1]["state"], "failed");
    assert_eq!(tasks[1]["exit_code"], 3);
    assert_eq!(tasks[1]["airflow_state"], "failed");
    let ok = tasks[0]["id"].as_str().unwrap();
    let stdout = d.cli(&["logs", ok]);
    assert_eq!(String::from_utf8_lossy(&stdout.stdout), "out-hi\n");
    let stderr = d.cli(&["logs", ok, "--stderr"]);
    assert_eq!(String::from_utf8_lossy(&stderr.stdout), "err\n");

    // A single argv task succeeds and `submit --wait` exits 0.
    let out = d.cli(&["submit", "--wait", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // The change feed shows each transition of each task exactly once, in order.
    let feed: Value = d
        .http(std::time::Duration::from_secs(30))
        .get(d.url("/v1/events?since=0&limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = feed["events"].as_array().unwrap();
    let mut seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    let sorted = {
        let mut s = seqs.clone();
        s.sort();
        s.dedup();
        s
    };
    assert_eq!(seqs, sorted, "seq strictly increasing");
    seqs.clear();
    let of = |id: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["task_id"] == id)
            .map(|e| e["state"].as_str().unwrap().to_string())
            .collect()
    };
    let states = of(ok);
    assert_eq!(states.first().map(String::as_str), Some("queued"));
    assert_eq!(states.last().map(String::as_str), Some("succeeded"));
    for w in states.windows(2) {
        assert_ne!(w[0], w[1], "a transition repeated: {states:?}");
    }
    // `list --since <cursor>` returns only what changed after the cursor.
    let all = d.cli_json(&["list", "--json"]);
    let cursor = all["cursor"].as_i64().unwrap();
    let none = d.cli_json(&["list", "--json", "--since", &cursor.to_string()]);
    assert!(none["tasks"].as_array().unwrap().is_empty(), "{none}");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_needs_the_token_and_refuses_bad_input_without_changing_state() {
    let Some(d) = daemon(Some("s3cret-token")) else {
        return;
    };
    let http = reqwest::Client::new();
    let h = http.get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let m = http.get(d.url("/metrics")).send().await.unwrap();
    assert_eq!(m.status(), 200);
    for auth in [None, Some("Bearer wrong"), Some("Basic dXNlcjpwYXNz")] {
        let mut r = http.get(d.url("/v1/tasks"));
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        assert_eq!(r.send().await.unwrap().status(), 401, "{auth:?}");
    }
    let post = |body: &'static str| {
        http.post(d.url("/v1/tasks"))
            .bearer_auth("s3cret-token")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = post(r#"{"command": "true", "cpus": -2}"#).await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "cpus", "{body}");
    let r = post(r#"{"tasks": [{"command": "true"}, {"command": "true", "imagee": "x"}]}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("imagee"), "{body}");
    assert_eq!(body["field"], "tasks[1].imagee");
    let r = post("not json").await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .get(d.url("/v1/tasks/t-nope"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .post(d.url("/v1/tasks/t-nope/kill"))
        .bearer_auth("s3cret-token")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Nothing was stored by any of the refused requests.
    let list = d.cli_json(&["list", "--json"]);
    assert!(list["tasks"].as_array().unwrap().is_empty(), "{list}");
    // The CLI uses the token from the config.
    let out = d.cli(&["submit", "--wait", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // The token never shows up in the daemon's log.
    assert!(!d.log_text().contains("s3cret-token"));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_queued_and_running_tasks() {
    let Some(d) = daemon(None) else { return };
    // Never placeable (no agent has this attribute): stays queued, kill ends it at once.
    let job = write(
        &d,
        "never.yaml",
        "command: \"true\"\nconstraints: [\"gpu:yes\"]\n",
    );
    let queued = d.cli_json(&["submit", "--json", "-f", &job]);
    let q = ids(&queued).remove(0);
    let running = d.cli_json(&["submit", "--json", "--shell", "sleep 300"]);
    let r = ids(&running).remove(0);
    eventually(30, "task running", || {
        (state(&d, &r) == "running").then_some(())
    });
    let started = std::time::Instant::now();
    let out = d.cli(&["kill", &r]);
    assert!(out.status.success(), "{out:?}");
    eventually(20, "task killed", || {
        (state(&d, &r) == "killed").then_some(())
    });
    // `sh -c sleep` ignores SIGTERM; the grace period (2 s) bounds the stop.
    assert!(started.elapsed().as_secs() < 15, "{:?}", started.elapsed());
    let again = d.cli(&["kill", &r]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "killing an ended task: {again:?}"
    );
    assert_eq!(state(&d, &q), "queued", "no agent has gpu:yes");
    let out = d.cli(&["kill", &q, "--json"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(state(&d, &q), "killed", "a queued task is killed at once");
}

#[tokio::test(flavor = "multi_thread")]
async fn ended_tasks_are_pruned_after_task_retention_and_running_ones_stay() {
    let Some(image) = require_env("AM_TEST_BUSYBOX", "a local busybox image") else {
        return;
    };
    let d = Daemon::start(
        &format!("backend = docker\ndocker_image_slave = {image}\ntask_cpu = 0.1\ntask_memory = 32\ntask_retention = 2\n"),
        None,
    );
    let done = ids(&d.cli_json(&["submit", "--json", "--wait", "--shell", "true"])).remove(0);
    let long = ids(&d.cli_json(&["submit", "--json", "--shell", "sleep 60"])).remove(0);
    eventually(30, "long task running", || {
        (state(&d, &long) == "running").then_some(())
    });
    // Retention 2 s, pruned every second: the ended task goes, with its row and history.
    eventually(20, "the ended task pruned", || {
        let out = d.cli(&["status", &done, "--json"]);
        (out.status.code() == Some(66)).then_some(())
    });
    assert_eq!(state(&d, &long), "running", "a live task is never pruned");
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("airflow_mesos_pruned_tasks_total 1\n"),
        "{metrics}"
    );
    // The feed keeps growing after its old events went: a new task's events come after the
    // newest cursor seen before.
    let head = d.get_json("/v1/events/head").await["cursor"]
        .as_i64()
        .unwrap();
    let next = ids(&d.cli_json(&["submit", "--json", "--wait", "--shell", "true"])).remove(0);
    let feed = d.get_json(&format!("/v1/events?since={head}")).await;
    let seqs: Vec<i64> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["task_id"] == next.as_str())
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(!seqs.is_empty() && seqs.iter().all(|s| *s > head), "{feed}");
    d.cli(&["kill", &long]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_daemon_does_not_spin() {
    let Some(d) = daemon(None) else { return };
    // One task, then nothing: the offers are declined, suppressed, and the decline's hold
    // (max_refuse, 5 s) ends while suppressed.
    ids(&d.cli_json(&["submit", "--json", "--wait", "--shell", "true"]));
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let pid = d.pid().expect("the daemon runs");
    let before = common::cpu_ticks(pid);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let used = common::cpu_ticks(pid) - before;
    // A busy loop burns a whole core (about 300 ticks here); an idle daemon next to nothing.
    assert!(used < 60, "the idle daemon used {used} ticks of CPU in 3 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_killed_with_sigkill_finishes_every_task_once() {
    let Some(mut d) = daemon(None) else { return };
    let marker = "ran-once";
    let mut submitted = Vec::new();
    for i in 0..3 {
        let v = d.cli_json(&[
            "submit",
            "--json",
            "--shell",
            &format!("echo {marker}-{i}; sleep 4"),
        ]);
        submitted.extend(ids(&v));
    }
    eventually(40, "all running", || {
        submitted
            .iter()
            .all(|id| state(&d, id) == "running")
            .then_some(())
    });
    // (An attempt may have been dropped before it ran, e.g. on an offer withdrawn in flight;
    // what must not happen is a relaunch because of the restart.)
    let attempts_before: Vec<Value> = submitted
        .iter()
        .map(|id| d.cli_json(&["status", id, "--json"])["attempts"].clone())
        .collect();
    d.kill9();
    d.spawn();
    eventually(60, "all succeeded after restart", || {
        submitted
            .iter()
            .all(|id| state(&d, id) == "succeeded")
            .then_some(())
    });
    for (i, id) in submitted.iter().enumerate() {
        let t = d.cli_json(&["status", id, "--json"]);
        assert_eq!(
            t["attempts"],
            attempts_before[i],
            "not relaunched by the restart: {t}\ndaemon log:\n{}",
            d.log_text()
        );
        let out = d.cli(&["logs", id]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{marker}-{i}\n"),
            "the command ran exactly once"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_image_fails_clearly_instead_of_hanging() {
    let Some(d) = daemon(None) else { return };
    let out = d.cli(&[
        "submit",
        "--wait",
        "--timeout",
        "120",
        "--json",
        "--image",
        "am-test/does-not-exist:never",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let msg = v["tasks"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("am-test/does-not-exist"),
        "message names the image: {msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_on_one_engine_keep_to_their_own_containers() {
    let Some(mut a) = daemon(None) else { return };
    let v = a.cli_json(&["submit", "--json", "--shell", "echo mine; sleep 6"]);
    let id = ids(&v).remove(0);
    eventually(40, "running", || {
        (state(&a, &id) == "running").then_some(())
    });
    // A is killed with its container running; B starts on the same engine, with its own
    // AIRFLOW_HOME and state store, and runs a task of its own to the end (so its backend has
    // long since looked for containers to adopt).
    a.kill9();
    let Some(b) = daemon(None) else { return };
    let out = b.cli(&["submit", "--wait", "--timeout", "60", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let listed = b.cli_json(&["list", "--json"]);
    assert_eq!(
        listed["tasks"].as_array().map(Vec::len),
        Some(1),
        "B knows only its own task: {listed}"
    );
    // A's container ends while A is down; B must not have taken it over (B would remove it
    // once its exit is acknowledged).
    let docker_ps = |filter: &str| {
        let out = std::process::Command::new("docker")
            .args(["ps", "-a", "-q", "--filter"])
            .arg(format!("label=airflow-mesos.task-id={id}"))
            .args(["--filter", filter])
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    eventually(30, "A's container exited", || {
        (!docker_ps("status=exited").is_empty()).then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        !docker_ps("status=exited").is_empty(),
        "A's exited container is still there for A to adopt"
    );
    // A comes back and finds its task where it left it: launched once, output once.
    a.spawn();
    eventually(60, "succeeded", || {
        (state(&a, &id) == "succeeded").then_some(())
    });
    let t = a.cli_json(&["status", &id, "--json"]);
    assert_eq!(t["attempts"], 1, "adopted, not relaunched: {t}");
    let out = a.cli(&["logs", &id]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "mine\n");
}

/// A TCP front for the local engine's socket (the docker CLI's `DOCKER_HOST=tcp://...`):
/// returns its address and how many connections it carried.
async fn tcp_engine() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let carried = std::sync::Arc::new(AtomicUsize::new(0));
    let count = carried.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                if let Ok(mut unix) = tokio::net::UnixStream::connect("/var/run/docker.sock").await
                {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    (format!("tcp://{addr}"), carried)
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_host_is_honoured_and_an_unreachable_engine_is_reported() {
    let Some(image) = require_env("AM_TEST_BUSYBOX", "a local busybox image") else {
        return;
    };
    let cfg = format!(
        "backend = docker\ndocker_image_slave = {image}\ntask_cpu = 0.1\ntask_memory = 32\n"
    );
    // Nothing listens there: the daemon says so, and queued tasks say why they wait.
    let nowhere = tempfile::tempdir().unwrap();
    let sock = format!("unix://{}/docker.sock", nowhere.path().display());
    let d = Daemon::start_with_env(&cfg, &[("DOCKER_HOST", &sock)]);
    let mut health = Value::Null;
    for _ in 0..100 {
        health = d.get_json("/healthz").await;
        if health["backend_error"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(health["subscribed"], false, "{health}");
    assert!(
        health["backend_error"].as_str().unwrap().contains(&sock),
        "names the engine's address: {health}"
    );
    let v = d.cli_json(&["submit", "--json", "--", "true"]);
    let id = ids(&v).remove(0);
    let t = d.cli_json(&["status", &id, "--json"]);
    assert_eq!(t["state"], "queued");
    let msg = t["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("waiting: the backend is not connected: cannot reach the Docker engine at")
            && msg.contains(&sock),
        "{t}"
    );
    drop(d);

    // tcp:// as the docker CLI takes it: the tasks run on the engine behind that address.
    let (host, carried) = tcp_engine().await;
    let d = Daemon::start_with_env(&cfg, &[("DOCKER_HOST", &host)]);
    let out = d.cli(&["submit", "--wait", "--json", "--", "echo", "via-tcp"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", d.log_text());
    assert!(
        carried.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the engine was reached through DOCKER_HOST"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn output_is_kept_whole_whatever_the_engines_log_driver_keeps() {
    let Some(image) = require_env("AM_TEST_BUSYBOX", "a local busybox image") else {
        return;
    };
    let d = Daemon::start(
        &format!(
            "backend = docker\ndocker_image_slave = {image}\ntask_cpu = 0.1\ntask_memory = 64\n\
             allowed_docker_parameters = log-driver, log-opt\n"
        ),
        None,
    );
    const LINES: usize = 300_000;
    // The engine keeps nothing, or one rotating file of 100 kB: the sandbox keeps it all.
    let job = write(
        &d,
        "seq.yaml",
        &format!(
            "tasks:\n\
             - command: seq 1 {LINES}\n  docker_parameters: [{{key: log-driver, value: none}}]\n\
             - command: seq 1 {LINES}\n  docker_parameters:\n\
             \x20   - {{key: log-driver, value: json-file}}\n\
             \x20   - {{key: log-opt, value: max-size=100k}}\n\
             \x20   - {{key: log-opt, value: max-file=1}}\n"
        ),
    );
    let out = d.cli(&["submit", "--wait", "--json", "-f", &job]);
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", d.log_text());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for id in ids(&v) {
        let logs = d.cli(&["logs", &id]);
        assert!(logs.status.success(), "{logs:?}");
        let text = String::from_utf8_lossy(&logs.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), LINES, "{id}: {} lines", lines.len());
        assert_eq!(lines[0], "1");
        assert_eq!(lines[LINES - 1], LINES.to_string());
    }
}

/// Tasks from concurrent clients at once: every one succeeds at its first attempt (the backend
/// never drops a launch on an offer it withdrew itself, which cost retries and failed tasks
/// with `no launch retries left`). CI runs 300 tasks from 5 clients; the issue's figure is
/// `AM_LOAD_TASKS=5000 AM_LOAD_CLIENTS=10 cargo test --test cli_local concurrent_clients`.
#[tokio::test(flavor = "multi_thread")]
async fn tasks_from_concurrent_clients_all_succeed_at_their_first_attempt() {
    let Some(d) = daemon(None) else { return };
    let num = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .map(|v| v.parse::<usize>().expect(name))
            .unwrap_or(default)
    };
    let (tasks, clients) = (num("AM_LOAD_TASKS", 300), num("AM_LOAD_CLIENTS", 5));
    let d = std::sync::Arc::new(d);
    let started = std::time::Instant::now();
    let mut submitters = tokio::task::JoinSet::new();
    for c in 0..clients {
        let d = d.clone();
        let share = tasks / clients + usize::from(c < tasks % clients);
        submitters.spawn(async move {
            for i in 0..share {
                let spec = serde_json::json!({"name": format!("load-{c}-{i}"), "command": "true"});
                d.api_submit(&spec).await;
            }
        });
    }
    while let Some(r) = submitters.join_next().await {
        r.unwrap();
    }
    let submitted = started.elapsed();
    let list = loop {
        let v = d.get_json("/v1/tasks?limit=10000").await;
        let all = v["tasks"].as_array().unwrap().clone();
        let ended =
            |t: &&Value| matches!(t["state"].as_str(), Some("succeeded" | "failed" | "killed"));
        if all.len() == tasks && all.iter().filter(ended).count() == tasks {
            break all;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60 + tasks as u64),
            "{} of {tasks} tasks ended in time",
            all.iter().filter(ended).count()
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    let elapsed = started.elapsed();
    eprintln!(
        "{tasks} tasks from {clients} clients: submitted in {:.1} s, all ended in {:.1} s",
        submitted.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    let bad: Vec<&Value> = list
        .iter()
        .filter(|t| t["state"] != "succeeded" || t["attempts"] != 1)
        .collect();
    if let Some(first) = bad.first() {
        // What its attempts went through, from the change feed.
        let feed = d.get_json("/v1/events?since=0&limit=10000").await;
        let history: Vec<String> = feed["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["task_id"] == first["id"])
            .map(|e| format!("{} {}", e["state"], e["message"]))
            .collect();
        panic!(
            "{} of {tasks} tasks did not succeed at attempt 1, e.g. {first}: {history:#?}",
            bad.len()
        );
    }
}
