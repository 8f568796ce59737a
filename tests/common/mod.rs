//! Helpers for tests that run the real `airflow-mesos` binary: a daemon in a temporary
//! `AIRFLOW_HOME`, CLI invocations against it, and environment checks.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_airflow-mesos");

/// Reads a test-environment variable. Under `CI=true` a missing one fails the test; elsewhere
/// the test is skipped with a notice (returns `None`).
pub fn require_env(name: &str, what: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{name} is not set under CI=true: {what} is required (see .ci/run)")
        }
        _ => {
            eprintln!("SKIP: {name} not set ({what}); run .ci/run to start it");
            None
        }
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A daemon running in its own temporary `AIRFLOW_HOME`.
pub struct Daemon {
    pub home: tempfile::TempDir,
    pub port: u16,
    pub token: Option<String>,
    child: Option<Child>,
    pub log: PathBuf,
    /// Extra environment of the daemon process.
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// Writes `airflow.cfg` with `extra` lines in `[mesos]` (plus `api_listen`; `{api_port}` in
    /// `extra` becomes the daemon's port) and starts the daemon, waiting until it listens.
    pub fn start(extra: &str, token: Option<&str>) -> Daemon {
        Daemon::start_on(free_port(), extra, token)
    }

    /// [`Daemon::start`] on a port chosen beforehand (several daemons that name each other).
    pub fn start_on(port: u16, extra: &str, token: Option<&str>) -> Daemon {
        Daemon::start_full(port, extra, token, &[])
    }

    /// [`Daemon::start`] with extra environment variables for the daemon process.
    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_full(free_port(), extra, None, env)
    }

    fn start_full(port: u16, extra: &str, token: Option<&str>, env: &[(&str, &str)]) -> Daemon {
        let home = tempfile::tempdir().expect("tempdir");
        let extra = extra.replace("{api_port}", &port.to_string());
        let mut cfg = format!("[mesos]\napi_listen = 127.0.0.1:{port}\n{extra}\n");
        if let Some(t) = token {
            cfg.push_str(&format!("api_token = {t}\n"));
        }
        std::fs::write(home.path().join("airflow.cfg"), cfg).unwrap();
        let log = home.path().join("scheduler.log");
        let mut d = Daemon {
            home,
            port,
            token: token.map(str::to_string),
            child: None,
            log,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        d.spawn();
        d
    }

    /// Where the daemon writes its generated API token (`[mesos] api_token_file`'s default).
    pub fn token_file(&self) -> PathBuf {
        self.home.path().join("airflow-mesos").join("api-token")
    }

    pub fn cfg_path(&self) -> PathBuf {
        self.home.path().join("airflow.cfg")
    }

    /// Starts (or restarts) the daemon process.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["--log-format", "json", "scheduler"])
            .env("AIRFLOW_HOME", self.home.path())
            .env("AIRFLOW_CONFIG", self.cfg_path())
            .env("AIRFLOW_MESOS_LOG", "info,airflow_mesos=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn the daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("daemon exited early ({status}):\n{}", self.log_text());
                }
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                if self.token.is_none() {
                    // No api_token configured: the daemon generated one into its file.
                    self.token = std::fs::read_to_string(self.token_file())
                        .ok()
                        .map(|t| t.trim().to_string());
                }
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not listen:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the daemon process.
    pub fn signal(&self, signal: &str) {
        if let Some(c) = self.child.as_ref() {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &c.id().to_string()])
                .status();
        }
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `secs` for the daemon to exit by itself; its exit code (`None`: still
    /// running, or killed by a signal).
    pub fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let c = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                self.child = None;
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// True while the daemon process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Runs a CLI verb against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli_in(self.home.path(), &self.cfg_path(), args)
    }

    /// Runs a CLI verb and parses its `--json` stdout.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

/// The daemon's HTTP API and web UI, for the tests that use them directly.
impl Daemon {
    /// An HTTP client that sends the daemon's token with every request.
    pub fn http(&self, timeout: Duration) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = &self.token {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
        }
        reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .build()
            .unwrap()
    }

    /// `POST /v1/tasks` with `spec` and the daemon's token; the new task's id.
    /// `GET path` with the daemon's token; the JSON answer (whatever the status).
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.http(Duration::from_secs(30))
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `submit -f <job file> --json` for `n` tasks `echo <i>` (i from `from`), run off the async
    /// runtime; the CLI's output.
    pub async fn submit_echo_jobs(&self, n: usize, from: usize) -> Output {
        let jobs = self.home.path().join(format!("jobs-{from}.yaml"));
        let body: String = (from..from + n)
            .map(|i| format!("  - command: echo {i}\n"))
            .collect();
        std::fs::write(&jobs, format!("tasks:\n{body}")).unwrap();
        let (home, cfg) = (self.home.path().to_path_buf(), self.cfg_path());
        tokio::task::spawn_blocking(move || {
            cli_in(
                &home,
                &cfg,
                &["submit", "-f", jobs.to_str().unwrap(), "--json"],
            )
        })
        .await
        .unwrap()
    }

    /// The text of `/metrics` (no token needed).
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn api_submit(&self, spec: &serde_json::Value) -> String {
        let mut req = reqwest::Client::new()
            .post(self.url("/v1/tasks"))
            .json(spec);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("POST /v1/tasks");
        assert_eq!(r.status(), 201, "submit {spec}");
        let v: serde_json::Value = r.json().await.unwrap();
        v["tasks"][0]["id"].as_str().unwrap().to_string()
    }

    /// The state of task `id`, through `GET /v1/tasks/{id}`.
    pub async fn api_state(&self, id: &str) -> String {
        let mut req = reqwest::Client::new().get(self.url(&format!("/v1/tasks/{id}")));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let v: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
        v["state"].as_str().unwrap_or_default().to_string()
    }

    /// Logs into the web UI with the daemon's token; the session cookie as `name=value`.
    pub async fn ui_login(&self) -> String {
        let r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(self.url("/ui/login"))
            .form(&[("token", self.token.as_deref().unwrap_or_default())])
            .send()
            .await
            .expect("POST /ui/login");
        assert_eq!(r.status(), 303, "login");
        let set = r.headers()["set-cookie"].to_str().unwrap();
        set.split(';').next().unwrap().to_string()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs the binary with `AIRFLOW_HOME`/`AIRFLOW_CONFIG` set.
/// The task ids of a `{"tasks": [...]}` answer (the API's, or `submit --json`'s).
pub fn task_ids(v: &serde_json::Value) -> Vec<String> {
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

pub fn cli_in(home: &Path, cfg: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("AIRFLOW_HOME", home)
        .env("AIRFLOW_CONFIG", cfg)
        .stdin(Stdio::null())
        .output()
        .expect("run the CLI")
}

/// CPU a process has used so far: utime + stime from `/proc/<pid>/stat`, in clock ticks (100 a
/// second).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name in parentheses: utime and stime are the 12th and 13th.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    fields[0] + fields[1]
}

/// Polls `f` until it returns `Some`, or panics after `secs`.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
