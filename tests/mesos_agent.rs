//! What an agent does with the `TaskInfo`s the daemon launches: the fake master's agents run
//! each one as a real Mesos agent does ([`support::fake_master::exec`]: fetch, pull,
//! `docker run` composed as the Docker containerizer does, the command executor's `execvp`),
//! in real containers on the local Docker engine, and the tests check what came out.
//!
//! First the composition itself (pure, and against the recorded real exchange); then the real
//! `airflow-mesos` binary on the fake master with executing agents: argv and shell commands,
//! the image's own entrypoint, the README's example job files, the unified containerizer,
//! tasks without a container, secret environment, registry credentials and a failed pull.

mod common;
mod support;

use airflow_mesos::mesos::proto::v1 as pb;
use common::Daemon;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use support::fake_master::exec::{docker_run_args, executor_argv, ImageConfig};
use support::fake_master::{AgentSpec, FakeMaster, FakeMasterOptions};

fn command(shell: bool, value: Option<&str>, args: &[&str]) -> pb::CommandInfo {
    pb::CommandInfo {
        shell: Some(shell),
        value: value.map(str::to_string),
        arguments: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

fn docker_task(cmd: pb::CommandInfo) -> pb::TaskInfo {
    pb::TaskInfo {
        name: "t".into(),
        task_id: pb::TaskId {
            value: "t.1".into(),
        },
        agent_id: pb::AgentId { value: "S0".into() },
        command: Some(cmd),
        container: Some(pb::ContainerInfo {
            r#type: pb::container_info::Type::Docker as i32,
            docker: Some(pb::container_info::DockerInfo {
                image: "img:1".into(),
                network: Some(pb::container_info::docker_info::Network::Host as i32),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What follows the image in `docker run` (the container's command line).
fn after_image(info: &pb::TaskInfo) -> (bool, Vec<String>) {
    let args = docker_run_args(info, Path::new("/sb"), "mesos-x", "m").unwrap();
    let at = args.iter().position(|a| a == "img:1").unwrap();
    let entrypoint_sh = args
        .windows(2)
        .any(|w| w[0] == "--entrypoint" && w[1] == "/bin/sh");
    (entrypoint_sh, args[at + 1..].to_vec())
}

#[test]
fn the_docker_containerizer_runs_value_then_arguments_after_the_image() {
    // argv: the image's ENTRYPOINT (none overridden) gets value followed by the arguments.
    let (sh, rest) = after_image(&docker_task(command(
        false,
        Some("echo"),
        &["hello", "world"],
    )));
    assert!(!sh);
    assert_eq!(rest, ["echo", "hello", "world"]);
    // The command executor's form (arguments repeating argv[0]) doubles the first word here:
    // what a real agent ran before the fix.
    let (_, rest) = after_image(&docker_task(command(
        false,
        Some("echo"),
        &["echo", "hello", "world"],
    )));
    assert_eq!(rest, ["echo", "echo", "hello", "world"]);
    // A shell string: /bin/sh as the entrypoint, `-c value`, arguments ignored.
    let (sh, rest) = after_image(&docker_task(command(true, Some("echo $X"), &["ignored"])));
    assert!(sh);
    assert_eq!(rest, ["-c", "echo $X"]);
    // No command: the image's ENTRYPOINT and CMD.
    let (sh, rest) = after_image(&docker_task(command(false, None, &[])));
    assert!(!sh && rest.is_empty());
    // A shell without a value is refused, as Docker::RunOptions::create does.
    let err = docker_run_args(
        &docker_task(command(true, None, &[])),
        Path::new("/sb"),
        "n",
        "m",
    )
    .unwrap_err();
    assert!(err.contains("no command value"), "{err}");
    // The sandbox is mounted where Mesos mounts it, with MESOS_SANDBOX pointing there; memory
    // is at least the containerizer's 32 MB.
    let mut info = docker_task(command(true, Some("true"), &[]));
    info.resources = vec![pb::Resource {
        name: "mem".into(),
        r#type: pb::value::Type::Scalar as i32,
        scalar: Some(pb::value::Scalar { value: 16.0 }),
        ..Default::default()
    }];
    let args = docker_run_args(&info, Path::new("/sb"), "n", "m").unwrap();
    assert!(
        args.contains(&"/sb:/mnt/mesos/sandbox:rw".to_string()),
        "{args:?}"
    );
    assert!(args.contains(&"MESOS_SANDBOX=/mnt/mesos/sandbox".to_string()));
    assert!(args.contains(&"--memory=32m".to_string()), "{args:?}");
}

#[test]
fn the_command_executor_execs_value_with_the_whole_argv_and_merges_the_image() {
    // execvp(value, arguments): arguments carry argv[0].
    assert_eq!(
        executor_argv(
            &command(false, Some("airflow"), &["airflow", "tasks"]),
            None
        )
        .unwrap(),
        (
            "airflow".to_string(),
            vec!["airflow".to_string(), "tasks".to_string()]
        )
    );
    assert_eq!(
        executor_argv(&command(true, Some("echo hi; exit 3"), &[]), None)
            .unwrap()
            .1,
        ["sh", "-c", "echo hi; exit 3"]
    );
    // No value: the image's ENTRYPOINT, then the arguments or else the CMD.
    let img = ImageConfig {
        entrypoint: vec!["/entry".into(), "-x".into()],
        cmd: vec!["default".into()],
    };
    assert_eq!(
        executor_argv(&command(false, None, &[]), Some(&img))
            .unwrap()
            .1,
        ["/entry", "-x", "default"]
    );
    assert_eq!(
        executor_argv(&command(false, None, &["mine"]), Some(&img))
            .unwrap()
            .1,
        ["/entry", "-x", "mine"]
    );
    // No ENTRYPOINT: CMD[0], then the arguments or else the rest of CMD.
    let img = ImageConfig {
        entrypoint: vec![],
        cmd: vec!["sh".into(), "-c".into(), "x".into()],
    };
    assert_eq!(
        executor_argv(&command(false, None, &["a"]), Some(&img))
            .unwrap()
            .1,
        ["sh", "a"]
    );
    assert!(executor_argv(&command(false, None, &[]), Some(&ImageConfig::default())).is_err());
}

#[test]
fn the_recorded_real_task_runs_to_the_recorded_output() {
    // Fixture 06: a shell command under the command executor; the real agent's sandbox stdout
    // was recorded.
    let ex = support::fixtures::exchange("06-accept-launch-echo");
    let body: Value = serde_json::from_slice(&ex.request_body).unwrap();
    let info = &body["accept"]["operations"][0]["launch"]["task_infos"][0];
    let cmd = command(
        info["command"]["shell"].as_bool().unwrap(),
        info["command"]["value"].as_str(),
        &[],
    );
    let (program, argv) = executor_argv(&cmd, None).unwrap();
    let out = std::process::Command::new(program)
        .args(&argv[1..])
        .output()
        .unwrap();
    let recorded =
        std::fs::read(support::env::fixtures_dir().join("logs/task-echo-1.sandbox.stdout"))
            .unwrap();
    assert_eq!(out.stdout, recorded);
}

// ----- the daemon on executing agents --------------------------------------------------

fn busybox() -> Option<String> {
    support::env::required_service("AM_TEST_BUSYBOX", "a local busybox image")
}

async fn executing_master() -> FakeMaster {
    let m = FakeMaster::start(FakeMasterOptions {
        heartbeat_interval: Duration::from_secs(1),
        update_retry_interval: Duration::from_millis(500),
        ..FakeMasterOptions::default()
    })
    .await;
    m.add_agent(AgentSpec::new(4.0, 4096.0).with_id("agent-1"));
    m.execute_tasks();
    m
}

fn daemon(m: &FakeMaster, image: &str, extra: &str) -> Daemon {
    Daemon::start(
        &format!(
            "backend = mesos\nmaster = {}\ndocker_image_slave = {image}\ntask_cpu = 0.1\n\
             task_memory = 64\nkill_grace_period = 1\npublic_url = http://127.0.0.1:{{api_port}}\n{extra}",
            m.host_port()
        ),
        None,
    )
}

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

/// Submits and waits; returns the task views.
async fn run(d: &Daemon, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["submit", "--json", "--wait", "--timeout", "120"];
    a.extend_from_slice(args);
    let out = cli(d, &a).await;
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {out:?}\n{}", d.log_text()));
    v["tasks"].as_array().unwrap().clone()
}

async fn stdout_of(d: &Daemon, id: &str) -> String {
    let out = cli(d, &["logs", id]).await;
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_in_real_containers_as_they_were_written() {
    let Some(image) = busybox() else { return };
    let m = executing_master().await;
    let d = daemon(&m, &image, "");
    // An argv, run without a shell: each word once.
    let t = run(&d, &["--", "echo", "hello", "world"]).await;
    assert_eq!(t[0]["state"], "succeeded", "{t:?}\n{}", d.log_text());
    assert_eq!(
        stdout_of(&d, t[0]["id"].as_str().unwrap()).await,
        "hello world\n"
    );
    // An argv that runs a shell itself.
    let t = run(&d, &["--", "sh", "-c", "echo \"$0-$1\"; exit 3", "a", "b"]).await;
    assert_eq!(t[0]["state"], "failed");
    assert_eq!(t[0]["exit_code"], 3);
    assert_eq!(stdout_of(&d, t[0]["id"].as_str().unwrap()).await, "a-b\n");
    // A shell string.
    let t = run(&d, &["--shell", "for i in 1 2; do echo step $i; done"]).await;
    assert_eq!(t[0]["state"], "succeeded");
    assert_eq!(
        stdout_of(&d, t[0]["id"].as_str().unwrap()).await,
        "step 1\nstep 2\n"
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_job_files_behave_as_documented_on_a_docker_agent() {
    let Some(image) = busybox() else { return };
    let m = executing_master().await;
    let d = daemon(&m, &image, "");
    let jobs = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/jobs");
    let by_name = |tasks: &[Value], name: &str| -> Value {
        tasks
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {tasks:?}"))
            .clone()
    };
    let t = run(&d, &["-f", jobs.join("hello.yaml").to_str().unwrap()]).await;
    assert_eq!(t[0]["state"], "succeeded", "{t:?}");
    let out = stdout_of(&d, t[0]["id"].as_str().unwrap()).await;
    assert!(
        out.starts_with("hello from ") && out.contains("/mnt/mesos/sandbox"),
        "{out}"
    );

    let t = run(&d, &["-f", jobs.join("batch.yaml").to_str().unwrap()]).await;
    let count = by_name(&t, "count");
    assert_eq!(count["state"], "succeeded", "{t:?}");
    assert_eq!(
        stdout_of(&d, count["id"].as_str().unwrap()).await,
        "step 1\nstep 2\nstep 3\n"
    );
    let env = by_name(&t, "env");
    assert_eq!(
        stdout_of(&d, env["id"].as_str().unwrap()).await,
        "GREETING=hi\n"
    );
    let fails = by_name(&t, "fails");
    assert_eq!(fails["state"], "failed");
    assert_eq!(fails["exit_code"], 3);

    let t = run(
        &d,
        &["-f", jobs.join("airflow-style.yaml").to_str().unwrap()],
    )
    .await;
    assert_eq!(t[0]["state"], "succeeded", "{t:?}");
    assert_eq!(
        stdout_of(&d, t[0]["id"].as_str().unwrap()).await,
        "running with from-executor-config\n"
    );
    m.shutdown().await;
}

/// An image whose ENTRYPOINT prints its arguments, built from the local busybox image.
fn entrypoint_image(busybox: &str) -> String {
    let tag = "am-test/entrypoint:1".to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {busybox}\nENTRYPOINT [\"echo\", \"entrypoint:\"]\nCMD [\"default-cmd\"]\n"),
    )
    .unwrap();
    let out = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    tag
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_own_entrypoint_runs_under_each_containerizer() {
    let Some(bb) = busybox() else { return };
    let image = entrypoint_image(&bb);
    let m = executing_master().await;
    let d = daemon(&m, &image, "");
    let job = d.home.path().join("entry.yaml");
    std::fs::write(
        &job,
        concat!(
            "tasks:\n",
            "  - name: docker-plain\n",
            "  - name: docker-args\n",
            "    command: [one, two]\n",
            "  - name: mesos-plain\n",
            "    containerizer: mesos\n",
            "  - name: mesos-argv\n",
            "    containerizer: mesos\n",
            "    command: [echo, direct]\n",
        ),
    )
    .unwrap();
    let t = run(&d, &["-f", job.to_str().unwrap()]).await;
    let out = |name: &str| {
        let t = t.iter().find(|t| t["name"] == name).unwrap().clone();
        let d = &d;
        async move {
            assert_eq!(t["state"], "succeeded", "{t:?}");
            stdout_of(d, t["id"].as_str().unwrap()).await
        }
    };
    // Docker containerizer: ENTRYPOINT + CMD; an argv replaces CMD after the ENTRYPOINT, as
    // `docker run IMAGE one two` does.
    assert_eq!(out("docker-plain").await, "entrypoint: default-cmd\n");
    assert_eq!(out("docker-args").await, "entrypoint: one two\n");
    // Unified containerizer: ENTRYPOINT + CMD merged by the agent; an argv is exec'd directly.
    assert_eq!(out("mesos-plain").await, "entrypoint: default-cmd\n");
    assert_eq!(out("mesos-argv").await, "direct\n");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_container_the_command_runs_on_the_agent_itself() {
    let m = executing_master().await;
    let d = daemon(&m, "unused/image:1", "containerizer = none\n");
    let t = run(
        &d,
        &[
            "--",
            "sh",
            "-c",
            "echo on-the-host; test -d \"$MESOS_SANDBOX\"",
        ],
    )
    .await;
    assert_eq!(t[0]["state"], "succeeded", "{t:?}\n{}", d.log_text());
    assert_eq!(
        stdout_of(&d, t[0]["id"].as_str().unwrap()).await,
        "on-the-host\n"
    );
    let tid = t[0]["backend_task_id"].as_str().unwrap();
    // No container at all: the command executor's argv, on the host.
    assert_eq!(
        m.executed_command(tid).unwrap(),
        ["sh", "-c", "echo on-the-host; test -d \"$MESOS_SANDBOX\""]
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_environment_reaches_the_container_and_nothing_else() {
    let Some(image) = busybox() else { return };
    let m = executing_master().await;
    let d = daemon(&m, &image, "");
    let job = d.home.path().join("secret.yaml");
    std::fs::write(
        &job,
        concat!(
            "command: [sh, -c, 'echo \"pw=$DB_PASSWORD\"; ls -a \"$MESOS_SANDBOX\"']\n",
            "secret_env: {DB_PASSWORD: \"it's s3cret\"}\n",
        ),
    )
    .unwrap();
    let t = run(&d, &["-f", job.to_str().unwrap()]).await;
    assert_eq!(t[0]["state"], "succeeded", "{t:?}\n{}", d.log_text());
    let out = stdout_of(&d, t[0]["id"].as_str().unwrap()).await;
    assert!(out.starts_with("pw=it's s3cret\n"), "{out}");
    assert!(
        !out.contains("secret-env"),
        "the secrets file is removed first: {out}"
    );
    // Nothing the master saw holds the secret.
    for c in m.calls() {
        assert!(
            !c.body.windows(6).any(|w| w == b"s3cret"),
            "a {} call carries the secret",
            c.path
        );
    }
    let tid = t[0]["backend_task_id"].as_str().unwrap();
    let line = m.executed_command(tid).unwrap().join(" ");
    assert!(
        !line.contains("s3cret") && !line.contains("DB_PASSWORD="),
        "{line}"
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_that_fails_is_a_launch_failure_relaunched_then_failed_without_exit_code() {
    let Some(image) = busybox() else { return };
    let m = executing_master().await;
    // The agents fetch from an address where nothing listens (the daemon unreachable).
    let d = Daemon::start(
        &format!(
            "backend = mesos\nmaster = {}\ndocker_image_slave = {image}\ntask_cpu = 0.1\n\
             task_memory = 64\npublic_url = http://127.0.0.1:9\nlaunch_retries = 1\n",
            m.host_port()
        ),
        None,
    );
    let job = d.home.path().join("files.yaml");
    std::fs::write(
        &job,
        "command: [cat, workload.json]\nfiles: [{path: workload.json, content: '{}'}]\n",
    )
    .unwrap();
    let t = run(&d, &["-f", job.to_str().unwrap()]).await;
    assert_eq!(t[0]["state"], "failed", "{t:?}");
    assert_eq!(t[0]["attempts"], 2, "relaunched once: {t:?}");
    assert!(t[0]["exit_code"].is_null(), "the command never ran: {t:?}");
    let msg = t[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("did not start") && msg.contains("Failed to fetch"),
        "{msg}"
    );
    m.shutdown().await;
}

/// The test registry (htpasswd) of `.ci/setup-docker.sh`.
fn registry() -> Option<(String, String, String)> {
    let r = support::env::required_service("AM_TEST_REGISTRY", "a Docker registry")?;
    let u = support::env::required_service("AM_TEST_REGISTRY_USER", "the registry user")?;
    let p = support::env::required_service("AM_TEST_REGISTRY_PASSWORD", "its password")?;
    Some((r, u, p))
}

/// Pushes `busybox` to the registry under a fresh name and removes the local copy, so that an
/// agent must pull it with credentials.
fn pushed_image(busybox: &str, reg: &str, user: &str, pass: &str) -> String {
    let image = format!("{reg}/am-test/agent-pull:{}", uuid::Uuid::new_v4().simple());
    let cfg = tempfile::tempdir().unwrap();
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .arg("--config")
            .arg(cfg.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "docker {args:?}: {out:?}");
    };
    docker(&["login", "-u", user, "-p", pass, reg]);
    docker(&["tag", busybox, &image]);
    docker(&["push", &image]);
    docker(&["rmi", &image]);
    image
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_pulls_with_the_credentials_it_fetched_and_a_bad_password_is_a_launch_failure() {
    let (Some(bb), Some((reg, user, pass))) = (busybox(), registry()) else {
        return;
    };
    let image = pushed_image(&bb, &reg, &user, &pass);
    let m = executing_master().await;
    let creds = |pw: &str| {
        format!(
            "docker_registry = {reg}\ndocker_registry_username = {user}\n\
             docker_registry_password = {pw}\nlaunch_retries = 1\n"
        )
    };
    let d = daemon(&m, &image, &creds(&pass));
    let t = run(&d, &["--shell", "ls -a \"$MESOS_SANDBOX\"; echo pulled"]).await;
    assert_eq!(t[0]["state"], "succeeded", "{t:?}\n{}", d.log_text());
    let out = stdout_of(&d, t[0]["id"].as_str().unwrap()).await;
    assert!(out.ends_with("pulled\n"), "{out}");
    assert!(
        !out.contains(".docker") && !out.contains("docker.tar.gz"),
        "the credentials are removed before the command runs: {out}"
    );
    drop(d);
    // A wrong password: the pull fails, the command never runs, the registry's refusal is
    // in the message.
    let _ = std::process::Command::new("docker")
        .args(["rmi", &image])
        .output();
    let d = daemon(&m, &image, &creds("wrong-password"));
    let t = run(&d, &["--", "true"]).await;
    assert_eq!(t[0]["state"], "failed", "{t:?}");
    assert!(t[0]["exit_code"].is_null(), "{t:?}");
    let msg = t[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("pull") && msg.contains(&reg) && msg.to_lowercase().contains("unauthorized"),
        "{msg}"
    );
    m.shutdown().await;
}
