//! The local Docker backend against the real Docker engine: exit codes map to states, output
//! lands in the sandbox, kill honours the grace period, a restarted backend adopts a running
//! container and finishes it once, a missing image fails fast with a clear message.
//!
//! Needs a Docker engine and the `am-test/busybox` image made by `.ci/setup-docker.sh`
//! (`AM_TEST_BUSYBOX`). With `CI=true` a missing prerequisite fails the tests; otherwise they
//! are skipped with a notice.

use airflow_mesos::config::{RegistryAuth, Secret};
use airflow_mesos::docker::local::{self, LocalBackendConfig, LABEL_FRAMEWORK};
use airflow_mesos::scheduler::types::{
    Action, BackendChannels, BackendState, Event, Flavour, LaunchTask, Quantity, Resource,
    StatusUpdate,
};
use airflow_mesos::task::{Command, Containerizer, NetworkMode, SandboxFile, TaskSpec};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The busybox test image, or `None` (skip) outside CI when the prerequisites are missing.
fn busybox() -> Option<String> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let image = std::env::var("AM_TEST_BUSYBOX").ok();
    let engine = std::process::Command::new("docker")
        .args([
            "image",
            "inspect",
            image.as_deref().unwrap_or("am-test/busybox"),
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    match (image, engine) {
        (Some(i), true) => Some(i),
        (i, _) => {
            let why = format!(
                "Docker tests need a Docker engine and AM_TEST_BUSYBOX (got {i:?}); run .ci/setup-docker.sh and source .ci/test-env-docker.sh"
            );
            if ci {
                panic!("{why}");
            }
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

struct Harness {
    ch: BackendChannels,
    shutdown: CancellationToken,
    cfg: LocalBackendConfig,
    framework: String,
    sandbox: tempfile::TempDir,
    /// Updates of other tasks seen while waiting for one task.
    backlog: Vec<StatusUpdate>,
}

impl Harness {
    /// A backend with its own framework id (tests run in parallel and must not adopt each
    /// other's containers) and sandbox directory.
    fn new() -> Harness {
        let framework = format!("test-{}", uuid::Uuid::new_v4().simple());
        let sandbox = tempfile::tempdir().unwrap();
        let mut cfg = LocalBackendConfig::new(sandbox.path());
        cfg.framework_id = Some(framework.clone());
        cfg.cpus = Some(4.0);
        cfg.mem_mb = Some(2048.0);
        cfg.pull_timeout = Duration::from_secs(60);
        let shutdown = CancellationToken::new();
        let ch = local::spawn(cfg.clone(), shutdown.clone());
        Harness {
            ch,
            shutdown,
            cfg,
            framework,
            sandbox,
            backlog: Vec::new(),
        }
    }

    /// Stops the backend the way a crash does (containers and sandbox stay), waits until it
    /// is gone, and starts a fresh one on the same framework id and sandbox directory.
    async fn crash_and_restart(&mut self) {
        self.shutdown.cancel();
        let t0 = Instant::now();
        while self.ch.events.recv().await.is_some() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "backend did not stop"
            );
        }
        self.shutdown = CancellationToken::new();
        self.ch = local::spawn(self.cfg.clone(), self.shutdown.clone());
    }

    async fn next(&mut self, within: Duration) -> Event {
        tokio::time::timeout(within, self.ch.events.recv())
            .await
            .unwrap_or_else(|_| panic!("no event from the local backend within {within:?}"))
            .expect("the local backend stopped")
    }

    /// Waits for an offer (skipping other events) and launches `tasks` on it.
    async fn launch(&mut self, tasks: Vec<LaunchTask>) {
        let offer = loop {
            if let Event::Offers(mut o) = self.next(Duration::from_secs(20)).await {
                break o.remove(0);
            }
        };
        self.ch
            .actions
            .send(Action::Launch {
                offer_ids: vec![offer.id],
                agent_id: offer.agent_id,
                tasks,
                refuse_seconds: 0.0,
            })
            .await
            .unwrap();
    }

    /// Collects updates of `id` (acknowledging them) until one matches `until`.
    async fn updates_until(
        &mut self,
        id: &str,
        within: Duration,
        until: impl Fn(&StatusUpdate) -> bool,
    ) -> Vec<StatusUpdate> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.backlog)
            .into_iter()
            .partition(|u| u.backend_task_id == id);
        self.backlog = others;
        for u in mine {
            let done = until(&u);
            seen.push(u);
            if done {
                return seen;
            }
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self.next(left).await;
            if let Event::Update(u) = ev {
                if let Some(uuid) = &u.uuid {
                    self.ch
                        .actions
                        .send(Action::Acknowledge {
                            agent_id: u.agent_id.clone().unwrap_or_default(),
                            backend_task_id: u.backend_task_id.clone(),
                            uuid: uuid.clone(),
                        })
                        .await
                        .unwrap();
                }
                if u.backend_task_id == id {
                    let done = until(&u);
                    seen.push(u);
                    if done {
                        return seen;
                    }
                } else {
                    self.backlog.push(u);
                }
            }
        }
    }

    async fn until_terminal(&mut self, id: &str) -> Vec<StatusUpdate> {
        self.updates_until(id, Duration::from_secs(60), |u| {
            matches!(
                u.state,
                BackendState::Finished
                    | BackendState::Failed
                    | BackendState::Killed
                    | BackendState::Error
                    | BackendState::Dropped
                    | BackendState::Gone
            )
        })
        .await
    }

    fn file(&self, id: &str, name: &str) -> String {
        std::fs::read_to_string(self.sandbox.path().join(id).join(name)).unwrap_or_default()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
        remove_containers(&self.framework);
    }
}

fn containers_of(framework: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label={LABEL_FRAMEWORK}={framework}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn remove_containers(framework: &str) {
    let ids = containers_of(framework);
    if !ids.is_empty() {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
}

fn task(image: &str, id: &str, command: Option<Command>, mem_mb: i64) -> LaunchTask {
    LaunchTask {
        task_id: id.to_string(),
        backend_task_id: format!("{id}.1"),
        attempt: 1,
        name: id.to_string(),
        agent_id: String::new(),
        resources: vec![
            Resource {
                name: "cpus".into(),
                quantity: Quantity::Scalar(250),
                flavour: Flavour::plain("cpus"),
            },
            Resource {
                name: "mem".into(),
                quantity: Quantity::Scalar(mem_mb * 1000),
                flavour: Flavour::plain("mem"),
            },
        ],
        image: image.to_string(),
        containerizer: Containerizer::Docker,
        network: NetworkMode::None,
        port_mappings: vec![],
        force_pull: false,
        kill_grace_secs: 2.0,
        labels: BTreeMap::new(),
        shell: true,
        spec: TaskSpec {
            command,
            ..TaskSpec::default()
        },
    }
}

fn sh(s: &str) -> Option<Command> {
    Some(Command::Shell(s.to_string()))
}

fn states(us: &[StatusUpdate]) -> Vec<BackendState> {
    us.iter().map(|u| u.state).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_map_to_states_and_output_lands_in_the_sandbox() {
    let Some(img) = busybox() else { return };
    let mut h = Harness::new();
    match h.next(Duration::from_secs(20)).await {
        Event::Subscribed { framework_id, .. } => assert_eq!(framework_id, h.framework),
        other => panic!("expected Subscribed first, got {other:?}"),
    }
    let mut ok = task(
        &img,
        "t-ok",
        sh("echo to-stdout; echo to-stderr >&2; echo \"sandbox=$MESOS_SANDBOX\"; cat $MESOS_SANDBOX/cfg/secret.txt; pwd"),
        32,
    );
    ok.spec.files.push(SandboxFile {
        path: "cfg/secret.txt".into(),
        content: "file-content-42".into(),
    });
    let bad = task(&img, "t-bad", sh("echo failing; exit 3"), 32);
    let oom = task(
        &img,
        "t-oom",
        // The pause lets the engine arm its OOM notification: an OOM kill in the first
        // milliseconds of a container is sometimes not reported by Docker at all.
        sh("sleep 1; dd if=/dev/zero of=/dev/null bs=96M count=1"),
        16,
    );
    // argv, shell off: the image's entrypoint (none) is kept, the argv is the command.
    let mut argv = task(
        &img,
        "t-argv",
        Some(Command::Argv(vec![
            "/bin/sh".into(),
            "-c".into(),
            "exit 0".into(),
        ])),
        32,
    );
    argv.shell = false;
    h.launch(vec![ok, bad, oom, argv]).await;

    let u = h.until_terminal("t-ok.1").await;
    assert_eq!(
        states(&u),
        vec![
            BackendState::Starting,
            BackendState::Running,
            BackendState::Finished
        ]
    );
    assert!(u
        .iter()
        .all(|x| x.uuid.as_ref().is_some_and(|b| b.len() == 16)));
    assert_eq!(u.last().unwrap().exit_code, Some(0));
    let out = h.file("t-ok.1", "stdout");
    assert!(out.contains("to-stdout"), "stdout: {out:?}");
    assert!(
        out.contains("sandbox=/mnt/mesos/sandbox"),
        "stdout: {out:?}"
    );
    assert!(
        out.contains("file-content-42"),
        "sandbox file readable in the container: {out:?}"
    );
    assert!(
        out.contains("/mnt/mesos/sandbox\n"),
        "working directory is the sandbox: {out:?}"
    );
    assert!(!out.contains("to-stderr"));
    assert!(h.file("t-ok.1", "stderr").contains("to-stderr"));
    let (bytes, next) = local::read_log(h.sandbox.path(), "t-ok.1", false, 0, 9)
        .await
        .unwrap();
    assert_eq!((bytes.as_slice(), next), (&b"to-stdout"[..], 9));

    let u = h.until_terminal("t-bad.1").await;
    let last = u.last().unwrap();
    assert_eq!(last.state, BackendState::Failed);
    assert_eq!(last.exit_code, Some(3));
    assert!(
        last.message.as_deref().unwrap().contains("code 3"),
        "{last:?}"
    );
    assert!(h.file("t-bad.1", "stdout").contains("failing"));

    let u = h.until_terminal("t-oom.1").await;
    let last = u.last().unwrap();
    assert_eq!(last.state, BackendState::Failed, "{last:?}");
    assert_eq!(
        last.reason.as_deref(),
        Some("REASON_CONTAINER_LIMITATION_MEMORY"),
        "{last:?}"
    );

    let u = h.until_terminal("t-argv.1").await;
    assert_eq!(u.last().unwrap().state, BackendState::Finished);

    // The secret file content never reaches the container's env or labels.
    let inspect = std::process::Command::new("docker")
        .args(["inspect"])
        .args(containers_of(&h.framework))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&inspect.stdout).contains("file-content-42"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_stops_a_running_container_within_the_grace_period() {
    let Some(img) = busybox() else { return };
    let mut h = Harness::new();
    // One task exits on SIGTERM; the other ignores it (sh as PID 1) and needs the SIGKILL.
    let polite = task(
        &img,
        "t-polite",
        sh("trap 'echo got-term; exit 0' TERM; echo up; while true; do sleep 0.1; done"),
        32,
    );
    let mut stubborn = task(&img, "t-stubborn", sh("echo up; sleep 300"), 32);
    stubborn.kill_grace_secs = 1.0;
    h.launch(vec![polite, stubborn]).await;
    for id in ["t-polite.1", "t-stubborn.1"] {
        h.updates_until(id, Duration::from_secs(30), |u| {
            u.state == BackendState::Running
        })
        .await;
    }
    // Wait until the polite task has installed its trap (it prints `up` after).
    let t0 = Instant::now();
    while !h.file("t-polite.1", "stdout").contains("up") {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "task never printed `up`"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in ["t-polite.1", "t-stubborn.1"] {
        h.ch.actions
            .send(Action::Kill {
                backend_task_id: id.into(),
                agent_id: None,
                grace_secs: None,
            })
            .await
            .unwrap();
    }
    let start = Instant::now();
    let u = h.until_terminal("t-polite.1").await;
    assert_eq!(u.last().unwrap().state, BackendState::Killed);
    assert!(
        h.file("t-polite.1", "stdout").contains("got-term"),
        "SIGTERM first"
    );
    let u = h.until_terminal("t-stubborn.1").await;
    let elapsed = start.elapsed();
    assert_eq!(u.last().unwrap().state, BackendState::Killed);
    assert_eq!(
        u.last().unwrap().exit_code,
        Some(137),
        "SIGKILL after the grace period"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "kill with a 1 s grace period took {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_backend_adopts_a_running_container_and_finishes_it_once() {
    let Some(img) = busybox() else { return };
    let mut h = Harness::new();
    let t = task(
        &img,
        "t-long",
        sh("echo started; while [ ! -f $MESOS_SANDBOX/go ]; do sleep 0.1; done; echo finished; exit 4"),
        32,
    );
    h.launch(vec![t]).await;
    h.updates_until("t-long.1", Duration::from_secs(30), |u| {
        u.state == BackendState::Running
    })
    .await;
    // The backend goes away without touching the container, and a new one starts.
    h.crash_and_restart().await;
    let mut second = h;
    assert!(matches!(
        second.next(Duration::from_secs(20)).await,
        Event::Subscribed { .. }
    ));
    second
        .ch
        .actions
        .send(Action::Reconcile(vec![("t-long.1".into(), None)]))
        .await
        .unwrap();
    let r = second
        .updates_until("t-long.1", Duration::from_secs(20), |_| true)
        .await;
    assert_eq!(r[0].state, BackendState::Running, "{r:?}");
    assert_eq!(r[0].uuid, None, "reconciliation answers carry no uuid");

    std::fs::write(second.sandbox.path().join("t-long.1/go"), b"").unwrap();
    let u = second.until_terminal("t-long.1").await;
    let last = u.last().unwrap();
    assert_eq!(last.state, BackendState::Failed);
    assert_eq!(last.exit_code, Some(4));
    let out = second.file("t-long.1", "stdout");
    assert_eq!(out.matches("started").count(), 1, "started once: {out:?}");
    assert_eq!(out.matches("finished").count(), 1, "{out:?}");
    assert!(
        containers_of(&second.framework).len() <= 1,
        "one container for the task, never a second"
    );
    // After the terminal update is acknowledged the container is removed.
    let t0 = Instant::now();
    while !containers_of(&second.framework).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "container not removed after ack"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_the_launch_with_a_clear_message() {
    if busybox().is_none() {
        return;
    }
    let mut h = Harness::new();
    let t = task("am-test/no-such-image:404", "t-missing", sh("true"), 32);
    let start = Instant::now();
    h.launch(vec![t]).await;
    let u = h.until_terminal("t-missing.1").await;
    let last = u.last().unwrap();
    assert_eq!(last.state, BackendState::Failed, "{last:?}");
    assert_eq!(
        last.reason.as_deref(),
        Some("REASON_CONTAINER_LAUNCH_FAILED")
    );
    let msg = last.message.as_deref().unwrap();
    assert!(msg.contains("am-test/no-such-image:404"), "{msg}");
    assert!(msg.contains("pull"), "{msg}");
    assert!(start.elapsed() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_reconciliation_and_invalid_launches() {
    let Some(img) = busybox() else { return };
    let mut h = Harness::new();
    let offer = loop {
        if let Event::Offers(mut o) = h.next(Duration::from_secs(20)).await {
            break o.remove(0);
        }
    };
    let cpus = offer.resources.iter().find(|r| r.name == "cpus").unwrap();
    assert_eq!(cpus.quantity, Quantity::Scalar(4000));
    let ports = offer.resources.iter().find(|r| r.name == "ports").unwrap();
    assert_eq!(ports.quantity, Quantity::Ranges(vec![(31000, 32000)]));

    // More than the offer holds → TASK_ERROR, nothing started.
    let mut big = task(&img, "t-big", sh("true"), 32);
    big.resources[0].quantity = Quantity::Scalar(64_000);
    h.ch.actions
        .send(Action::Launch {
            offer_ids: vec![offer.id.clone()],
            agent_id: offer.agent_id.clone(),
            tasks: vec![big],
            refuse_seconds: 0.0,
        })
        .await
        .unwrap();
    let u = h.until_terminal("t-big.1").await;
    assert_eq!(u.last().unwrap().state, BackendState::Error);
    // The same offer again: it was used → TASK_DROPPED.
    h.ch.actions
        .send(Action::Launch {
            offer_ids: vec![offer.id.clone()],
            agent_id: offer.agent_id.clone(),
            tasks: vec![task(&img, "t-stale", sh("true"), 32)],
            refuse_seconds: 0.0,
        })
        .await
        .unwrap();
    let u = h.until_terminal("t-stale.1").await;
    assert_eq!(u.last().unwrap().state, BackendState::Dropped);
    assert_eq!(
        u.last().unwrap().reason.as_deref(),
        Some("REASON_INVALID_OFFERS")
    );

    h.ch.actions
        .send(Action::Reconcile(vec![("t-nobody.1".into(), None)]))
        .await
        .unwrap();
    let u = h.until_terminal("t-nobody.1").await;
    let last = u.last().unwrap();
    assert_eq!(last.state, BackendState::Gone);
    assert_eq!(last.reason.as_deref(), Some("REASON_RECONCILIATION"));
    assert_eq!(last.uuid, None);
    assert!(containers_of(&h.framework).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_pulled_with_the_configured_registry_credentials() {
    let Some(img) = busybox() else { return };
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(registry), Some(user), Some(password)) = (
        var("AM_TEST_REGISTRY"),
        var("AM_TEST_REGISTRY_USER"),
        var("AM_TEST_REGISTRY_PASSWORD"),
    ) else {
        let why = "needs AM_TEST_REGISTRY, AM_TEST_REGISTRY_USER, AM_TEST_REGISTRY_PASSWORD (.ci/setup-docker.sh)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}");
        }
        eprintln!("SKIPPED: {why}");
        return;
    };
    let auth = RegistryAuth {
        registry: Some(registry.clone()),
        username: Some(user),
        password: Some(Secret::new(password)),
        ..Default::default()
    };
    // Put the busybox image in the registry, then forget it locally.
    let remote = format!(
        "{registry}/am-test/pull-me:{}",
        uuid::Uuid::new_v4().simple()
    );
    assert!(std::process::Command::new("docker")
        .args(["tag", &img, &remote])
        .status()
        .unwrap()
        .success());
    let docker = airflow_mesos::docker::connect().await.unwrap();
    airflow_mesos::docker::images::push(
        &docker,
        &remote,
        &auth,
        None,
        &airflow_mesos::docker::images::Progress::Quiet,
    )
    .await
    .unwrap();
    let _ = std::process::Command::new("docker")
        .args(["rmi", &remote])
        .output();

    // Without credentials the pull is refused: a clear launch failure.
    let mut h = Harness::new();
    h.launch(vec![task(&remote, "t-nocreds", sh("true"), 32)])
        .await;
    let u = h.until_terminal("t-nocreds.1").await;
    let last = u.last().unwrap();
    assert_eq!(last.state, BackendState::Failed, "{last:?}");
    assert_eq!(
        last.reason.as_deref(),
        Some("REASON_CONTAINER_LAUNCH_FAILED")
    );
    assert!(
        last.message.as_deref().unwrap().contains(&remote),
        "{last:?}"
    );
    drop(h);

    // With the configured credentials the image is pulled and the task runs.
    let mut h = Harness::new();
    h.cfg.registry = auth;
    h.crash_and_restart().await;
    h.launch(vec![task(
        &remote,
        "t-creds",
        sh("echo pulled-and-ran"),
        32,
    )])
    .await;
    let u = h.until_terminal("t-creds.1").await;
    assert_eq!(u.last().unwrap().state, BackendState::Finished, "{u:?}");
    assert!(h.file("t-creds.1", "stdout").contains("pulled-and-ran"));
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &remote])
        .output();
}
