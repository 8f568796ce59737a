//! The fake agents' executor: runs each launched `TaskInfo` the way a real Mesos 1.12 agent
//! does, in real containers on the local Docker engine (or as a host process for a task
//! without a container), so that a mis-composed command fails a test.
//!
//! What it copies (apache/mesos: `src/docker/docker.cpp`, `src/docker/executor.cpp`,
//! `src/launcher/executor.cpp`, `src/slave/containerizer/mesos/isolators/docker/runtime.cpp`,
//! `src/launcher/fetcher.cpp`, `src/slave/slave.cpp`):
//!
//! - The fetcher: every `CommandInfo.URI` is downloaded into the sandbox (`output_file`, else
//!   the URI's last segment), `.tar.gz`/`.tgz` extracted when `extract`. A failure is a
//!   `TASK_FAILED` from the agent, `REASON_CONTAINER_LAUNCH_FAILED`, and nothing runs.
//! - Docker containerizer (`ContainerInfo.type = DOCKER`): `docker pull` when the image is not
//!   there (or `force_pull_image`), with the sandbox as the docker config's home (the fetched
//!   `docker.tar.gz` holds `.docker/config.json`); a failed pull is a container launch failure
//!   with the agent's text. Then `TASK_STARTING`, `docker run` composed as
//!   `Docker::RunOptions::create` + `Docker::run` do ([`docker_run_args`]), `TASK_RUNNING`, and
//!   "Container exited with status N" at the end.
//! - Unified containerizer (`MESOS` with a Docker image) and no container: the command
//!   executor's `execvp(value, arguments)` or `/bin/sh -c value`, merged with the image's
//!   ENTRYPOINT/CMD when there is no value ([`executor_argv`]); run in a container with the
//!   entrypoint overridden to exactly that argv, or on the host; "Command exited with status N".
//! - KILL: `docker stop -t <grace>` (SIGTERM on the host), then `TASK_KILLED`.
//!
//! Sandboxes are real directories under the executor's root; the agent's `/files/read` serves
//! their files (`stdout`, `stderr`, and whatever the task wrote).

use super::state::State;
use super::Shared;
use airflow_mesos::mesos::proto::v1 as pb;
use pb::task_status::{Reason, Source};
use pb::TaskState;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::process::Command;
use tokio::sync::mpsc;

/// Where the container sees its sandbox (the Docker containerizer's mapped directory).
pub const SANDBOX_IN_CONTAINER: &str = "/mnt/mesos/sandbox";
/// The Docker containerizer's minimum memory for a container.
const MIN_MEMORY_MB: f64 = 32.0;

/// A job for the executor.
#[derive(Debug)]
pub enum Job {
    Launch {
        fid: String,
        tid: String,
        info: Box<pb::TaskInfo>,
        sandbox: PathBuf,
    },
    Kill {
        tid: String,
        grace: Duration,
    },
}

/// What a test can see of the tasks the agents ran.
#[derive(Debug, Default)]
pub struct Record {
    /// Task id → the command line that ran (`docker ...` args, or the host argv).
    pub commands: HashMap<String, Vec<String>>,
}

/// The executor's handle, kept in the fake master's state.
#[derive(Debug, Clone)]
pub struct Executor {
    pub tx: mpsc::UnboundedSender<Job>,
    pub root: PathBuf,
    /// Label value on every container it starts (the fake master's id).
    pub label: String,
    pub record: Arc<Mutex<Record>>,
}

impl Executor {
    /// The sandbox directory of a new run.
    pub fn sandbox_dir(&self, agent: &str, fid: &str, tid: &str, container: &str) -> PathBuf {
        self.root
            .join("slaves")
            .join(agent)
            .join("frameworks")
            .join(fid)
            .join("executors")
            .join(tid)
            .join("runs")
            .join(container)
    }
}

/// Starts the executor: jobs come from `State::launch` / `State::kill`.
pub fn start(shared: Weak<Shared>, root: PathBuf, label: String) -> Executor {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    let record = Arc::new(Mutex::new(Record::default()));
    let kills: Arc<Mutex<HashMap<String, tokio::sync::oneshot::Sender<Duration>>>> = Arc::default();
    let exec = Executor {
        tx,
        root,
        label: label.clone(),
        record: record.clone(),
    };
    tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            match job {
                Job::Launch {
                    fid,
                    tid,
                    info,
                    sandbox,
                } => {
                    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel();
                    kills.lock().unwrap().insert(tid.clone(), kill_tx);
                    let run = Run {
                        shared: shared.clone(),
                        fid,
                        tid,
                        info: *info,
                        sandbox,
                        label: label.clone(),
                        record: record.clone(),
                    };
                    tokio::spawn(run.run(kill_rx));
                }
                Job::Kill { tid, grace } => {
                    if let Some(k) = kills.lock().unwrap().remove(&tid) {
                        let _ = k.send(grace);
                    }
                }
            }
        }
    });
    exec
}

/// Removes every container labelled `label` (at the fake master's shutdown).
pub fn remove_containers(label: &str) {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=am-fake-master={label}"),
        ])
        .output();
    if let Ok(out) = out {
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

// ----- composition (pure) ----------------------------------------------------------------

/// The image's own ENTRYPOINT and CMD (from `docker image inspect`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

/// The arguments of `docker` that the Docker containerizer runs for `info` (`run` ... `IMAGE`
/// and the command), as `Docker::RunOptions::create` and `Docker::run` compose them.
pub fn docker_run_args(
    info: &pb::TaskInfo,
    sandbox: &Path,
    name: &str,
    label: &str,
) -> Result<Vec<String>, String> {
    let container = info.container.as_ref().ok_or("no ContainerInfo")?;
    let docker = container.docker.as_ref().ok_or("no DockerInfo")?;
    let cmd = info.command.as_ref().ok_or("no CommandInfo")?;
    let shell = cmd.shell.unwrap_or(true);
    let mut a: Vec<String> = vec!["run".into(), "--name".into(), name.into()];
    a.extend(["--label".into(), format!("am-fake-master={label}")]);
    if docker.privileged == Some(true) {
        a.push("--privileged".into());
    }
    let scalar = |n: &str| {
        info.resources
            .iter()
            .filter(|r| r.name == n)
            .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
            .sum::<f64>()
    };
    let cpus = scalar("cpus");
    if cpus > 0.0 {
        a.push(format!("--cpu-shares={}", (cpus * 1024.0).round() as u64));
    }
    let mem = scalar("mem");
    if mem > 0.0 {
        a.push(format!(
            "--memory={}m",
            mem.max(MIN_MEMORY_MB).ceil() as u64
        ));
    }
    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(e) = &cmd.environment {
        for v in &e.variables {
            let value = match (&v.value, &v.secret) {
                (Some(val), _) => val.clone(),
                (None, Some(secret)) => secret
                    .value
                    .as_ref()
                    .map(|s| String::from_utf8_lossy(&s.data).into_owned())
                    .unwrap_or_default(),
                (None, None) => String::new(),
            };
            env.push((v.name.clone(), value));
        }
    }
    env.push(("MESOS_SANDBOX".into(), SANDBOX_IN_CONTAINER.into()));
    env.push(("MESOS_CONTAINER_NAME".into(), name.into()));
    env.push(("MESOS_TASK_ID".into(), info.task_id.value.clone()));
    for (k, v) in env {
        a.extend(["-e".into(), format!("{k}={v}")]);
    }
    for v in &container.volumes {
        let mode = if v.mode == pb::volume::Mode::Ro as i32 {
            "ro"
        } else {
            "rw"
        };
        let target = if v.container_path.starts_with('/') {
            v.container_path.clone()
        } else {
            format!("{SANDBOX_IN_CONTAINER}/{}", v.container_path)
        };
        if let Some(host) = &v.host_path {
            let source = if host.starts_with('/') {
                host.clone()
            } else {
                sandbox.join(host).display().to_string()
            };
            a.extend(["-v".into(), format!("{source}:{target}:{mode}")]);
        } else if let Some(dv) = v.source.as_ref().and_then(|s| s.docker_volume.as_ref()) {
            if let Some(driver) = &dv.driver {
                a.push(format!("--volume-driver={driver}"));
            }
            a.extend(["-v".into(), format!("{}:{target}:{mode}", dv.name)]);
        }
    }
    a.extend([
        "-v".into(),
        format!("{}:{SANDBOX_IN_CONTAINER}:rw", sandbox.display()),
    ]);
    use pb::container_info::docker_info::Network;
    match Network::try_from(docker.network.unwrap_or(Network::Host as i32)) {
        Ok(Network::Host) => a.push("--net=host".into()),
        Ok(Network::Bridge) => a.push("--net=bridge".into()),
        Ok(Network::None) => a.push("--net=none".into()),
        Ok(Network::User) => {
            let net = container
                .network_infos
                .first()
                .and_then(|n| n.name.clone())
                .ok_or("a USER network needs a NetworkInfo with a name")?;
            a.push(format!("--net={net}"));
        }
        Err(_) => return Err("unknown network mode".into()),
    }
    for p in &docker.port_mappings {
        let proto = p.protocol.clone().unwrap_or_else(|| "tcp".into());
        a.extend([
            "-p".into(),
            format!("{}:{}/{proto}", p.host_port, p.container_port),
        ]);
    }
    for p in &docker.parameters {
        a.push(format!("--{}={}", p.key, p.value));
    }
    if shell {
        // The entrypoint is overridden so that the command runs within a shell (MESOS-1770).
        a.extend(["--entrypoint".into(), "/bin/sh".into()]);
    }
    a.push(docker.image.clone());
    if shell {
        let value = cmd
            .value
            .clone()
            .ok_or("Shell specified but no command value provided")?;
        a.extend(["-c".into(), value]);
    } else {
        if let Some(v) = &cmd.value {
            a.push(v.clone());
        }
        a.extend(cmd.arguments.iter().cloned());
    }
    Ok(a)
}

/// What the command executor executes for `cmd`: `(program, argv)`, merged with the image's
/// ENTRYPOINT/CMD when the command has no value (the unified containerizer's
/// `getLaunchCommand` table).
pub fn executor_argv(
    cmd: &pb::CommandInfo,
    image: Option<&ImageConfig>,
) -> Result<(String, Vec<String>), String> {
    if cmd.shell.unwrap_or(true) {
        let value = cmd
            .value
            .clone()
            .ok_or("Shell specified but no command value provided")?;
        return Ok(("/bin/sh".into(), vec!["sh".into(), "-c".into(), value]));
    }
    if let Some(v) = &cmd.value {
        // execvp(value, arguments): arguments are the whole argv, argv[0] included.
        return Ok((v.clone(), cmd.arguments.clone()));
    }
    let img = image.ok_or("Executable of the task is not specified")?;
    if let Some((first, rest)) = img.entrypoint.split_first() {
        let mut argv = vec![first.clone()];
        argv.extend(rest.iter().cloned());
        if cmd.arguments.is_empty() {
            argv.extend(img.cmd.iter().cloned());
        } else {
            argv.extend(cmd.arguments.iter().cloned());
        }
        Ok((first.clone(), argv))
    } else if let Some((first, rest)) = img.cmd.split_first() {
        let mut argv = vec![first.clone()];
        if cmd.arguments.is_empty() {
            argv.extend(rest.iter().cloned());
        } else {
            argv.extend(cmd.arguments.iter().cloned());
        }
        Ok((first.clone(), argv))
    } else {
        Err("No executable is found".into())
    }
}

// ----- running ---------------------------------------------------------------------------

struct Run {
    shared: Weak<Shared>,
    fid: String,
    tid: String,
    info: pb::TaskInfo,
    sandbox: PathBuf,
    label: String,
    record: Arc<Mutex<Record>>,
}

/// How a run ended.
enum End {
    Exited(i32),
    Signalled,
    Killed,
}

impl Run {
    fn update(
        &self,
        state: TaskState,
        message: Option<String>,
        reason: Option<Reason>,
        source: Source,
    ) {
        if let Some(shared) = self.shared.upgrade() {
            shared.with_state(|s: &mut State, now| {
                s.agent_update_from(&self.fid, &self.tid, state, message, reason, source, now);
                if matches!(
                    state,
                    TaskState::TaskFinished
                        | TaskState::TaskFailed
                        | TaskState::TaskKilled
                        | TaskState::TaskError
                ) {
                    s.allocate(now);
                }
            });
        }
    }

    fn launch_failed(&self, why: String) {
        self.update(
            TaskState::TaskFailed,
            Some(format!("Failed to launch container: {why}")),
            Some(Reason::ContainerLaunchFailed),
            Source::Agent,
        );
    }

    async fn run(self, kill: tokio::sync::oneshot::Receiver<Duration>) {
        if let Err(why) = std::fs::create_dir_all(&self.sandbox) {
            return self.launch_failed(format!("cannot create the sandbox: {why}"));
        }
        if let Err(why) = self.fetch().await {
            return self.launch_failed(why);
        }
        let container = self.info.container.clone();
        let kind = container.as_ref().map(|c| c.r#type());
        let result = match kind {
            Some(pb::container_info::Type::Docker) => self.run_docker(kill).await,
            Some(pb::container_info::Type::Mesos) => self.run_mesos(kill).await,
            _ => self.run_host(kill).await,
        };
        let word = if kind == Some(pb::container_info::Type::Docker) {
            "Container"
        } else {
            "Command"
        };
        match result {
            Err(why) => self.launch_failed(why),
            Ok(End::Killed) => self.update(
                TaskState::TaskKilled,
                Some(format!("{word} terminated with signal Terminated")),
                None,
                Source::Executor,
            ),
            Ok(End::Exited(0)) => self.update(
                TaskState::TaskFinished,
                Some(format!("{word} exited with status 0")),
                None,
                Source::Executor,
            ),
            Ok(End::Exited(n)) => self.update(
                TaskState::TaskFailed,
                Some(format!("{word} exited with status {n}")),
                Some(Reason::CommandExecutorFailed),
                Source::Executor,
            ),
            Ok(End::Signalled) => self.update(
                TaskState::TaskFailed,
                Some(format!("{word} terminated with signal Killed")),
                Some(Reason::CommandExecutorFailed),
                Source::Executor,
            ),
        }
    }

    /// The fetcher: every URI into the sandbox.
    async fn fetch(&self) -> Result<(), String> {
        let Some(cmd) = &self.info.command else {
            return Ok(());
        };
        let fail = |what: String| {
            format!(
                "Failed to fetch all URIs for container '{}': exited with status 1 ({what})",
                self.tid
            )
        };
        for u in &cmd.uris {
            let name = match &u.output_file {
                Some(f) => f.clone(),
                None => u.value.rsplit('/').next().unwrap_or("download").to_string(),
            };
            let resp = reqwest::get(&u.value)
                .await
                .map_err(|e| fail(format!("{}: Couldn't connect to server: {e}", u.value)))?;
            if !resp.status().is_success() {
                return Err(fail(format!("{}: HTTP {}", u.value, resp.status())));
            }
            let bytes = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
            let path = self.sandbox.join(&name);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
            }
            std::fs::write(&path, &bytes).map_err(|e| fail(e.to_string()))?;
            if u.executable == Some(true) {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
            }
            let archive = name.ends_with(".tar.gz") || name.ends_with(".tgz");
            if u.extract.unwrap_or(true) && archive {
                let gz = flate2::read::GzDecoder::new(&bytes[..]);
                tar::Archive::new(gz)
                    .unpack(&self.sandbox)
                    .map_err(|e| fail(format!("extracting {name}: {e}")))?;
            }
        }
        Ok(())
    }

    fn record(&self, line: Vec<String>) {
        self.record
            .lock()
            .unwrap()
            .commands
            .insert(self.tid.clone(), line);
    }

    fn out_err(&self) -> Result<(std::fs::File, std::fs::File), String> {
        let o = std::fs::File::create(self.sandbox.join("stdout")).map_err(|e| e.to_string())?;
        let e = std::fs::File::create(self.sandbox.join("stderr")).map_err(|e| e.to_string())?;
        Ok((o, e))
    }

    /// `docker pull` as the Docker containerizer does it (the sandbox as HOME).
    async fn pull(
        &self,
        image: &str,
        force: bool,
        config_dir: Option<&Path>,
    ) -> Result<(), String> {
        let present = Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .await
            .map(|o| o.status.success())
            .unwrap_or(false);
        if present && !force {
            return Ok(());
        }
        let mut c = Command::new("docker");
        if let Some(dir) = config_dir {
            c.arg("--config").arg(dir);
        }
        let out = c
            .args(["pull", image])
            .output()
            .await
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "Failed to run 'docker -H unix:///var/run/docker.sock pull {image}': exited with status {}; stderr='{}'",
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    async fn run_docker(
        &self,
        kill: tokio::sync::oneshot::Receiver<Duration>,
    ) -> Result<End, String> {
        let docker = self
            .info
            .container
            .as_ref()
            .and_then(|c| c.docker.clone())
            .ok_or("no DockerInfo")?;
        let home = self.sandbox.join(".docker");
        let config = home.join("config.json").exists().then_some(home.as_path());
        self.pull(&docker.image, docker.force_pull_image == Some(true), config)
            .await?;
        self.update(TaskState::TaskStarting, None, None, Source::Executor);
        let name = format!("mesos-{}", uuid::Uuid::new_v4().simple());
        let args = docker_run_args(&self.info, &self.sandbox, &name, &self.label)?;
        self.record(args.clone());
        self.container(args, &name, kill).await
    }

    async fn run_mesos(
        &self,
        kill: tokio::sync::oneshot::Receiver<Duration>,
    ) -> Result<End, String> {
        let c = self.info.container.clone().unwrap_or_default();
        let image = c
            .mesos
            .and_then(|m| m.image)
            .and_then(|i| i.docker)
            .ok_or("a MESOS container without a Docker image")?;
        let cfg_dir = match &image.config {
            Some(secret) => {
                let dir = self.sandbox.join(".pull-config");
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                let data = secret
                    .value
                    .as_ref()
                    .map(|v| v.data.clone())
                    .unwrap_or_default();
                std::fs::write(dir.join("config.json"), data).map_err(|e| e.to_string())?;
                Some(dir)
            }
            None => None,
        };
        self.pull(&image.name, false, cfg_dir.as_deref()).await?;
        if let Some(d) = cfg_dir {
            let _ = std::fs::remove_dir_all(d);
        }
        let cmd = self.info.command.clone().unwrap_or_default();
        let img = image_config(&image.name).await?;
        let (program, argv) = executor_argv(&cmd, Some(&img))?;
        self.update(TaskState::TaskStarting, None, None, Source::Executor);
        let name = format!("mesos-{}", uuid::Uuid::new_v4().simple());
        let mut args: Vec<String> = vec!["run".into(), "--name".into(), name.clone()];
        args.extend(["--label".into(), format!("am-fake-master={}", self.label)]);
        args.extend([
            "-v".into(),
            format!("{}:{SANDBOX_IN_CONTAINER}:rw", self.sandbox.display()),
            "-w".into(),
            SANDBOX_IN_CONTAINER.into(),
        ]);
        for (k, v) in command_env(&cmd, SANDBOX_IN_CONTAINER, &self.info.task_id.value) {
            args.extend(["-e".into(), format!("{k}={v}")]);
        }
        args.extend(["--entrypoint".into(), program]);
        args.push(image.name.clone());
        args.extend(argv.into_iter().skip(1));
        self.record(args.clone());
        self.container(args, &name, kill).await
    }

    async fn run_host(
        &self,
        kill: tokio::sync::oneshot::Receiver<Duration>,
    ) -> Result<End, String> {
        let cmd = self.info.command.clone().unwrap_or_default();
        let (program, argv) = executor_argv(&cmd, None)?;
        self.update(TaskState::TaskStarting, None, None, Source::Executor);
        let (out, err) = self.out_err()?;
        let mut line = vec![program.clone()];
        line.extend(argv.iter().skip(1).cloned());
        self.record(line);
        let mut c = Command::new(&program);
        c.args(argv.iter().skip(1))
            .current_dir(&self.sandbox)
            .stdout(out)
            .stderr(err)
            .stdin(std::process::Stdio::null());
        if let Some(first) = argv.first() {
            c.arg0(first);
        }
        let sandbox = self.sandbox.display().to_string();
        for (k, v) in command_env(&cmd, &sandbox, &self.info.task_id.value) {
            c.env(k, v);
        }
        let mut child = c
            .spawn()
            .map_err(|e| format!("Failed to execute '{program}': {e}"))?;
        self.update(TaskState::TaskRunning, None, None, Source::Executor);
        tokio::select! {
            status = child.wait() => Ok(end_of(status.map_err(|e| e.to_string())?)),
            Ok(_grace) = kill => {
                if let Some(pid) = child.id() {
                    let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
                }
                let _ = child.wait().await;
                Ok(End::Killed)
            }
        }
    }

    /// Runs `docker <args>` (a `run` without `-d`: its output is the container's) with stdout
    /// and stderr into the sandbox, until it ends or is killed.
    async fn container(
        &self,
        args: Vec<String>,
        name: &str,
        kill: tokio::sync::oneshot::Receiver<Duration>,
    ) -> Result<End, String> {
        let (out, err) = self.out_err()?;
        let mut child = Command::new("docker")
            .args(&args)
            .stdout(out)
            .stderr(err)
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("Failed to run docker container: {e}"))?;
        self.update(TaskState::TaskRunning, None, None, Source::Executor);
        let end = tokio::select! {
            status = child.wait() => end_of(status.map_err(|e| e.to_string())?),
            Ok(grace) = kill => {
                let _ = Command::new("docker")
                    .args(["stop", "-t", &grace.as_secs().to_string(), name])
                    .output()
                    .await;
                let _ = child.wait().await;
                End::Killed
            }
        };
        let _ = Command::new("docker")
            .args(["rm", "-f", name])
            .output()
            .await;
        Ok(end)
    }
}

fn end_of(status: std::process::ExitStatus) -> End {
    match status.code() {
        Some(n) => End::Exited(n),
        None => End::Signalled,
    }
}

/// The environment the command executor gives a task: `CommandInfo.environment` and the
/// agent's own variables.
fn command_env(cmd: &pb::CommandInfo, sandbox: &str, task_id: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = cmd
        .environment
        .iter()
        .flat_map(|e| e.variables.iter())
        .map(|v| (v.name.clone(), v.value.clone().unwrap_or_default()))
        .collect();
    env.push(("MESOS_SANDBOX".into(), sandbox.into()));
    env.push(("MESOS_TASK_ID".into(), task_id.into()));
    env
}

/// ENTRYPOINT and CMD of a local image.
async fn image_config(image: &str) -> Result<ImageConfig, String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{json .Config}}", image])
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("cannot inspect image {image}"));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let list = |k: &str| -> Vec<String> {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(ImageConfig {
        entrypoint: list("Entrypoint"),
        cmd: list("Cmd"),
    })
}
