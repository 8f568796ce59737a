//! The Airflow provider (`examples/airflow`, package `airflow-mesos-provider`) under test. Every
//! test that runs Airflow installs it from this checkout with `pip install` (no dependencies, no
//! network) into a temporary directory put on `PYTHONPATH`, so the virtualenvs' own copies do not
//! matter.
//!
//! * `shim_unit_tests`: the shim's pytest suite against a fake daemon API (no daemon, no Docker).
//! * `provider_in_airflow_3`, `provider_in_airflow_2`: Airflow 3 and 2.10 find the provider
//!   (`airflow providers list`, `airflow providers executors`, `airflow info`) and its options
//!   with their defaults (`airflow config list`).
//! * `airflow_e2e_local_docker`: real Apache Airflow 3 (api-server, dag-processor, scheduler,
//!   SQLite) with `[core] executor = LocalExecutor,airflow_mesos_executor.AirflowMesosExecutor`,
//!   and this crate's `airflow-mesos scheduler` with `backend = docker`, run the example DAG (its
//!   tasks choose the airflow-mesos executor with `executor=`, one stays on LocalExecutor) in real
//!   containers, with a scheduler restart in the middle; `examples/airflow/tests/e2e_driver.py`
//!   does the run and the checks (final states and executors in Airflow's DB, one run per task
//!   try, the LocalExecutor task on the host and never at the daemon, adoption after the restart,
//!   no workload token in the daemon's log, the containers' config or the API's answers).
//! * `airflow2_e2e_local_docker`: the same with Airflow 2.10 (`AM_TEST_AIRFLOW2_VENV`).
//! * `task_log_in_airflow_2`: Airflow 2.10 and its metadata DB: the reason a try failed before
//!   its command started is in that try's task log as Airflow's log reader shows it.
//! * `airflow_e2e_pushed_image`: the seed's image path: a stand-in for the official Airflow image
//!   built from Debian's Python and PyPI, `images build --target airflow` on it, `images push` to
//!   the htpasswd registry, the local copy removed, and the same DAG and checks with the daemon
//!   pulling that image with the `[mesos] docker_registry*` credentials (no host Python mounted);
//!   then with a wrong registry password: no task runs, and Airflow's record of each failed task
//!   instance (its audit log) and the try's task log as Airflow's REST API serves it (written by
//!   the executor) name the registry and the authentication error, not the password.
//!
//! * `airflow_executor_mesos_path_fake_master`: the executor with real Airflow 3 workloads against
//!   the daemon on the fake Mesos master (`tests/support`), states only
//!   (`examples/airflow/tests/mesos_path_driver.py`): running/success/failed flow back, an adopted
//!   task finishes after an executor restart, and the workload token appears in nothing the fake
//!   master recorded (requests, TaskInfos) nor in the daemon's log; the workload reaches the agent
//!   as a fetch URI served by the daemon.
//!
//! Needs the virtualenvs of `.ci/setup-airflow.sh` (`AM_TEST_AIRFLOW_VENV`, `AM_TEST_AIRFLOW2_VENV`)
//! and, for the end-to-end tests, a Docker engine with `AM_TEST_BASE_IMAGE` (`.ci/setup-docker.sh`).
//! With `CI=true` a missing prerequisite fails the test; otherwise it is skipped with a notice.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Fails under CI, otherwise prints a notice; returns `None` so the caller skips.
fn missing<T>(what: &str) -> Option<T> {
    assert!(!in_ci(), "{what} (CI=true, so this is a failure)");
    eprintln!("NOTICE: skipping: {what}");
    None
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of the virtualenv named by `$var` (made by `.ci/setup-airflow.sh`), if `check`
/// (Python code) succeeds in it; `what` says what the check needs.
fn venv_python(var: &str, check: &str, what: &str) -> Option<PathBuf> {
    let Ok(venv) = std::env::var(var) else {
        return missing(&format!(
            "{var} is not set: run .ci/setup-airflow.sh and source .ci/test-env-airflow.sh"
        ));
    };
    let python = Path::new(&venv).join("bin").join("python");
    let ok = Command::new(&python)
        .args(["-c", check])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return missing(&format!(
            "{} cannot import {what}: run .ci/setup-airflow.sh",
            python.display()
        ));
    }
    Some(python)
}

/// The Python of the Airflow virtualenv, if it has Airflow 3 and the shim.
fn airflow_python() -> Option<PathBuf> {
    venv_python(
        "AM_TEST_AIRFLOW_VENV",
        "import airflow.sdk.execution_time.execute_workload, airflow_mesos_executor, pytest",
        "Airflow 3, the shim and pytest",
    )
}

/// The Python of the Airflow 2.10 virtualenv of `.ci/setup-airflow.sh` (`AM_TEST_AIRFLOW2_VENV`).
fn airflow2_python() -> Option<PathBuf> {
    venv_python(
        "AM_TEST_AIRFLOW2_VENV",
        "import sys, airflow; sys.exit(not airflow.__version__.startswith('2.10.'))",
        "Airflow 2.10",
    )
}

/// The task image, if the Docker engine answers and has it.
fn docker_image() -> Option<String> {
    let Ok(image) = std::env::var("AM_TEST_BASE_IMAGE") else {
        return missing("AM_TEST_BASE_IMAGE is not set: run .ci/setup-docker.sh and source .ci/test-env-docker.sh");
    };
    let ok = Command::new("docker")
        .args(["image", "inspect", &image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return missing(&format!(
            "the Docker engine does not answer or lacks {image}: run .ci/setup-docker.sh"
        ));
    }
    Some(image)
}

/// Runs `cmd` with its output in a temporary file, bounded by `limit` (see [`wait_bounded`]);
/// returns the exit status and the output.
fn run_bounded(cmd: &mut Command, limit: Duration, what: &str) -> (ExitStatus, String) {
    let out = tempfile::NamedTempFile::new().expect("a temporary file for the output");
    let child = cmd
        .stdout(out.reopen().expect("reopening the output file"))
        .stderr(out.reopen().expect("reopening the output file"))
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let status = wait_bounded(child, limit, what, out.path());
    let text = std::fs::read_to_string(out.path()).unwrap_or_default();
    (status, text)
}

/// Waits for `child` up to `limit`; on timeout sends SIGTERM (the driver then stops everything it
/// started), then SIGKILL after a grace period, and panics with the output so far.
fn wait_bounded(mut child: Child, limit: Duration, what: &str, output: &Path) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child process") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let grace = Instant::now();
            while grace.elapsed() < Duration::from_secs(60) {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(output).unwrap_or_default();
            panic!("{what} did not finish within {limit:?}; it was stopped. Output:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn shim_unit_tests() {
    let Some(python) = airflow_python() else {
        return;
    };
    let dir = repo().join("examples").join("airflow");
    let (status, out) = run_bounded(
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
            .current_dir(&dir),
        Duration::from_secs(240),
        "the shim's pytest suite",
    );
    assert!(
        status.success(),
        "the shim's pytest suite failed ({status}):\n{out}"
    );
    println!("{}", out.lines().last().unwrap_or_default());
}

/// `examples/airflow` installed the way an operator does (`pip install`, not editable, no
/// dependencies, nothing fetched) into a temporary directory: the package Airflow loads when that
/// directory is on `PYTHONPATH`. The sources are copied first so that the build leaves nothing in
/// the checkout.
fn install_provider(python: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory for the provider");
    let src = dir.path().join("src");
    let example = repo().join("examples").join("airflow");
    std::fs::create_dir_all(src.join("airflow_mesos_executor")).expect("creating the source copy");
    for f in ["pyproject.toml", "README.md"] {
        std::fs::copy(example.join(f), src.join(f)).expect("copying the provider's sources");
    }
    for entry in std::fs::read_dir(example.join("airflow_mesos_executor")).expect("the package") {
        let path = entry.expect("a package entry").path();
        if path.extension().is_some_and(|e| e == "py") {
            std::fs::copy(
                &path,
                src.join("airflow_mesos_executor")
                    .join(path.file_name().unwrap()),
            )
            .expect("copying a module");
        }
    }
    let (status, out) = run_bounded(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
            ])
            .args(["--no-index", "--target"])
            .arg(dir.path().join("site"))
            .arg(&src),
        Duration::from_secs(180),
        "pip install of examples/airflow",
    );
    assert!(
        status.success(),
        "pip install of examples/airflow failed ({status}):\n{out}"
    );
    dir
}

/// The Airflow CLI of the virtualenv of `python`, with the provider of `site` importable and a
/// fresh AIRFLOW_HOME; runs the given commands concurrently (each Airflow start-up takes seconds).
fn airflow_cli(python: &Path, site: &Path, home: &Path, commands: &[&[&str]]) -> Vec<String> {
    let airflow = python.with_file_name("airflow");
    let children: Vec<_> = commands
        .iter()
        .map(|args| {
            let out = tempfile::NamedTempFile::new().expect("a temporary file for the output");
            let child = Command::new(&airflow)
                .args(*args)
                .env("AIRFLOW_HOME", home)
                .env("PYTHONPATH", site)
                .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
                .env(
                    "AIRFLOW__CORE__EXECUTOR",
                    "LocalExecutor,airflow_mesos_executor.AirflowMesosExecutor",
                )
                .env("AIRFLOW__MESOS__API_URL", "http://mesos-daemon.test:11000")
                .env_remove("AIRFLOW_CONFIG")
                .stdout(out.reopen().expect("reopening the output file"))
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {} {args:?}: {e}", airflow.display()));
            (args, child, out)
        })
        .collect();
    children
        .into_iter()
        .map(|(args, child, out)| {
            let what = format!("airflow {}", args.join(" "));
            let status = wait_bounded(child, Duration::from_secs(240), &what, out.path());
            let text = std::fs::read_to_string(out.path()).unwrap_or_default();
            assert!(status.success(), "{what} failed ({status}):\n{text}");
            text
        })
        .collect()
}

/// The lines of `[section]` in the output of `airflow config list`.
fn config_section(listing: &str, section: &str) -> Vec<String> {
    let header = format!("[{section}]");
    listing
        .lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Checks the provider in the Airflow of `python`: listed by `airflow providers list` (with its
/// version) and `airflow info`, its executor by `airflow providers executors`, its options with
/// their defaults (and a value from the environment) by `airflow config list`.
fn check_provider(python: &Path) {
    let provider = install_provider(python);
    let home = tempfile::tempdir().expect("a temporary AIRFLOW_HOME");
    let site = provider.path().join("site");
    let outs = airflow_cli(
        python,
        &site,
        home.path(),
        &[
            &["providers", "list", "-o", "json"],
            &["providers", "executors", "-o", "json"],
            &["config", "list"],
            &["info"],
        ],
    );
    let json_of = |text: &str| -> serde_json::Value {
        // Airflow 2.10 may print warnings and log lines (`[2026-…] {cli_parser.py:67} ERROR …`,
        // with SQLite and LocalExecutor) before the JSON document: the document is the first
        // line-initial `[` that parses as a JSON array.
        text.match_indices('[')
            .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n'))
            .find_map(|(i, _)| {
                serde_json::Deserializer::from_str(&text[i..])
                    .into_iter::<serde_json::Value>()
                    .next()
                    .and_then(Result::ok)
                    .filter(serde_json::Value::is_array)
            })
            .unwrap_or_else(|| panic!("no JSON array in:\n{text}"))
    };
    let providers = json_of(&outs[0]);
    let ours = providers
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|p| p["package_name"] == "airflow-mesos-provider")
        })
        .unwrap_or_else(|| {
            panic!(
                "airflow providers list lacks airflow-mesos-provider:\n{}",
                outs[0]
            )
        });
    assert_eq!(ours["version"], "0.1.0", "the provider's version: {ours}");
    let executors = json_of(&outs[1]);
    assert!(
        executors.as_array().is_some_and(|a| a
            .iter()
            .any(|e| e["executor_class_names"] == "airflow_mesos_executor.AirflowMesosExecutor")),
        "airflow providers executors lacks the executor:\n{}",
        outs[1]
    );
    let mesos = config_section(&outs[2], "mesos");
    assert!(
        mesos.contains(&"api_url = http://mesos-daemon.test:11000".to_string()),
        "airflow config list: [mesos] lacks api_url from the environment: {mesos:?}\n{}",
        outs[2]
    );
    assert!(
        mesos
            .iter()
            .any(|l| l.trim_start_matches("# ").starts_with("api_token =")),
        "airflow config list: [mesos] does not declare api_token: {mesos:?}"
    );
    let executor = config_section(&outs[2], "mesos_executor");
    for line in ["task_template =", "events_wait = 0", "request_timeout = 10"] {
        assert!(
            executor.contains(&line.to_string()),
            "airflow config list: [mesos_executor] lacks `{line}`: {executor:?}"
        );
    }
    assert!(
        outs[3]
            .lines()
            .any(|l| l.starts_with("airflow-mesos-provider") && l.contains("0.1.0")),
        "airflow info does not list the provider:\n{}",
        outs[3]
    );
    assert!(
        outs[3].contains("LocalExecutor,airflow_mesos_executor.AirflowMesosExecutor"),
        "airflow info does not show the executors:\n{}",
        outs[3]
    );
}

#[test]
fn provider_in_airflow_3() {
    let Some(python) = airflow_python() else {
        return;
    };
    check_provider(&python);
}

#[test]
fn provider_in_airflow_2() {
    let Some(python) = airflow2_python() else {
        return;
    };
    check_provider(&python);
}

/// Airflow 2.10 with a real (SQLite) metadata DB: a try that failed at the daemon while Airflow
/// still had it queued gets the reason in its task log as Airflow's log reader shows it, the
/// registry password redacted; a try that reported in gets nothing written
/// (`examples/airflow/tests/task_log_airflow2_check.py`). Airflow 3 is covered by the unit tests
/// and `airflow_e2e_pushed_image`.
#[test]
fn task_log_in_airflow_2() {
    let Some(python) = airflow2_python() else {
        return;
    };
    let provider = install_provider(&python);
    let home = tempfile::tempdir().expect("a temporary AIRFLOW_HOME");
    let site = provider.path().join("site");
    airflow_cli(&python, &site, home.path(), &[&["db", "migrate"]]);
    let script = repo().join("examples/airflow/tests/task_log_airflow2_check.py");
    let (status, out) = run_bounded(
        Command::new(&python)
            .arg(&script)
            .env("AIRFLOW_HOME", home.path())
            .env("PYTHONPATH", &site)
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env(
                "AIRFLOW__CORE__EXECUTOR",
                "LocalExecutor,airflow_mesos_executor.AirflowMesosExecutor",
            )
            .env("AIRFLOW__MESOS__API_URL", "http://mesos-daemon.test:11000")
            .env(
                "AIRFLOW__MESOS__DOCKER_REGISTRY_PASSWORD",
                format!("pw-{}", uuid::Uuid::new_v4().simple()),
            )
            .env_remove("AIRFLOW_CONFIG"),
        Duration::from_secs(240),
        "the Airflow 2.10 task log check",
    );
    assert!(
        status.success(),
        "the Airflow 2.10 task log check failed ({status}):\n{out}"
    );
}

#[test]
fn airflow_e2e_local_docker() {
    let Some(python) = airflow_python() else {
        return;
    };
    let Some(image) = docker_image() else {
        return;
    };
    e2e_local_docker(&python, &image);
}

/// The same DAG, the same checks, with Airflow 2.10 (`airflow tasks run` in the containers).
#[test]
fn airflow2_e2e_local_docker() {
    let Some(python) = airflow2_python() else {
        return;
    };
    let Some(image) = docker_image() else {
        return;
    };
    e2e_local_docker(&python, &image);
}

fn e2e_local_docker(python: &Path, image: &str) {
    // The executor as installed by pip (not the venv's copy, which may be of another checkout).
    let provider = install_provider(python);
    let driver = repo()
        .join("examples")
        .join("airflow")
        .join("tests")
        .join("e2e_driver.py");
    let (status, out) = run_bounded(
        Command::new(python)
            .arg(&driver)
            .env("PYTHONPATH", provider.path().join("site"))
            .args(["--daemon-bin", env!("CARGO_BIN_EXE_airflow-mesos")])
            .args(["--image", image, "--timeout", "400"]),
        Duration::from_secs(450),
        "the Airflow end-to-end run",
    );
    assert!(
        status.success(),
        "the Airflow end-to-end run failed ({status}):\n{out}"
    );
    // The driver's own progress lines (Airflow's import-time chatter left out).
    let progress: Vec<&str> = out.lines().filter(|l| l.starts_with("[e2e")).collect();
    println!("{}", progress.join("\n"));
}

/// An environment variable the image-path test needs, or `None` (skip, or fail under CI).
fn required_var(name: &str, what: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => missing(&format!(
            "{name} is not set ({what}): run .ci/setup-docker.sh"
        )),
    }
}

/// Copies `from` into `to` byte for byte (a plain write: no holes, which the build context's tar
/// would carry as sparse entries the Docker engine refuses).
fn copy_file(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().expect("a parent directory"))
        .expect("creating a directory");
    let bytes = std::fs::read(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    std::fs::write(to, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", to.display()));
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("a directory entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            copy_file(&entry.path(), &dest);
        }
    }
}

fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The seed's image path, end to end, with Airflow 3: a local stand-in for the official Airflow
/// image is built from Debian's Python and PyPI (`tests/fixtures/airflow-base`); `airflow-mesos
/// images build --target airflow --build-arg AIRFLOW_IMAGE=<stand-in>` builds the mesos-enabled
/// image from `docker/Dockerfile` (tagged `[mesos] docker_image_slave`, a name in the test
/// registry); `images push` puts it into the htpasswd-protected registry; the local copy is
/// removed; then the example DAG runs (`e2e_driver.py --pushed`, all its checks) with the daemon
/// pulling that image with the `[mesos] docker_registry*` credentials, and nothing of the host's
/// Python mounted into the task containers.
#[test]
fn airflow_e2e_pushed_image() {
    let Some(python) = airflow_python() else {
        return;
    };
    let Some(base) = docker_image() else {
        return;
    };
    let Some(python_image) = required_var("AM_TEST_PYTHON_IMAGE", "a Debian 12 image with python3")
    else {
        return;
    };
    let Some(registry) = required_var("AM_TEST_REGISTRY", "the htpasswd registry") else {
        return;
    };
    let (Some(user), Some(password)) = (
        required_var("AM_TEST_REGISTRY_USER", "the registry's user"),
        required_var("AM_TEST_REGISTRY_PASSWORD", "the registry's password"),
    ) else {
        return;
    };
    let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if !ca.exists() {
        missing::<()>(
            "/etc/ssl/certs/ca-certificates.crt (pip's CA bundle for the image build) is missing",
        );
        return;
    }
    let version = Command::new(&python)
        .args(["-c", "import airflow; print(airflow.__version__)"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .expect("Airflow's version");

    // 1. The stand-in for apache/airflow:<version>: Debian's Python and Airflow from PyPI. The
    //    CA bundle goes into the context; no host environment (PIP_*, REQUESTS_CA_BUNDLE) does.
    let stand_in = format!("am-test/airflow-base:{version}");
    let base_ctx = tempfile::tempdir().expect("a build context");
    copy_file(
        &repo().join("tests/fixtures/airflow-base/Dockerfile"),
        &base_ctx.path().join("Dockerfile"),
    );
    copy_file(ca, &base_ctx.path().join("ca.crt"));
    let (status, out) = run_bounded(
        Command::new("docker")
            .args(["build", "--network", "host", "--build-arg"])
            .arg(format!("BASE={python_image}"))
            .arg("--build-arg")
            .arg(format!("AIRFLOW_VERSION={version}"))
            .args(["-t", &stand_in])
            .arg(base_ctx.path()),
        Duration::from_secs(1200),
        "docker build of the Airflow stand-in",
    );
    assert!(
        status.success(),
        "building {stand_in} failed ({status}):\n{out}"
    );

    // 2. The mesos-enabled image from docker/Dockerfile, tagged as docker_image_slave.
    let ctx = tempfile::tempdir().expect("a build context");
    for f in ["Cargo.toml", "Cargo.lock", "build.rs", ".dockerignore"] {
        copy_file(&repo().join(f), &ctx.path().join(f));
    }
    for d in [
        ".cargo",
        "proto",
        "docker",
        "examples/airflow/airflow_mesos_executor",
    ] {
        copy_tree(&repo().join(d), &ctx.path().join(d));
    }
    copy_file(
        Path::new(env!("CARGO_BIN_EXE_airflow-mesos")),
        &ctx.path().join("dist/airflow-mesos"),
    );
    let slave = format!(
        "{registry}/am-test/airflow-mesos-e2e:{}",
        uuid::Uuid::new_v4().simple()
    );
    let home = tempfile::tempdir().expect("an AIRFLOW_HOME for the CLI");
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_airflow-mesos"));
        cmd.args(args)
            .env_remove("AIRFLOW_CONFIG")
            .env("AIRFLOW_HOME", home.path())
            .env("AIRFLOW__MESOS__DOCKER_IMAGE_SLAVE", &slave)
            .env("AIRFLOW__MESOS__DOCKER_REGISTRY", &registry)
            .env("AIRFLOW__MESOS__DOCKER_REGISTRY_USERNAME", &user)
            .env("AIRFLOW__MESOS__DOCKER_REGISTRY_PASSWORD", &password);
        cmd
    };
    let dockerfile = ctx.path().join("docker/Dockerfile");
    let (status, out) = run_bounded(
        cli(&["images", "build", "--target", "airflow", "--plain"])
            .arg("--build-arg")
            .arg(format!("AIRFLOW_IMAGE={stand_in}"))
            .arg("--build-arg")
            .arg(format!("RUST_IMAGE={base}"))
            .arg("--build-arg")
            .arg(format!("RUNTIME_IMAGE={base}"))
            .args(["--build-arg", "PREBUILT_BINARY=dist/airflow-mesos"])
            .arg("--context")
            .arg(ctx.path())
            .arg("--file")
            .arg(&dockerfile),
        Duration::from_secs(600),
        "airflow-mesos images build --target airflow",
    );
    assert!(status.success(), "images build failed ({status}):\n{out}");

    // 3. Pushed with the configured credentials; 4. the local copy removed.
    let (status, out) = run_bounded(
        &mut cli(&["images", "push", "--target", "airflow", "--plain"]),
        Duration::from_secs(600),
        "airflow-mesos images push",
    );
    assert!(status.success(), "images push failed ({status}):\n{out}");
    assert!(
        !out.contains(&password),
        "images push printed the password:\n{out}"
    );
    // One task (`transform`) names its own image in executor_config: the same build under a
    // second name in the registry, pulled on its own.
    let own = format!(
        "{registry}/am-test/airflow-mesos-e2e-transform:{}",
        uuid::Uuid::new_v4().simple()
    );
    assert!(docker_ok(&["tag", &slave, &own]), "tagging {own}");
    let (status, out) = run_bounded(
        cli(&["images", "push", "--target", "airflow", "--plain"])
            .env("AIRFLOW__MESOS__DOCKER_IMAGE_SLAVE", &own),
        Duration::from_secs(600),
        "airflow-mesos images push (transform's image)",
    );
    assert!(
        status.success(),
        "images push of {own} failed ({status}):\n{out}"
    );
    assert!(docker_ok(&["rmi", &own]), "removing the local {own}");
    assert!(docker_ok(&["rmi", &slave]), "removing the local {slave}");
    assert!(
        !docker_ok(&["image", "inspect", &slave]),
        "{slave} is still local"
    );

    // 5. The DAG, its tasks in the pulled image.
    let provider = install_provider(&python);
    let driver = repo().join("examples/airflow/tests/e2e_driver.py");
    let (status, out) = run_bounded(
        Command::new(&python)
            .arg(&driver)
            .env("PYTHONPATH", provider.path().join("site"))
            .env("AM_TEST_REGISTRY_USER", &user)
            .env("AM_TEST_REGISTRY_PASSWORD", &password)
            .args(["--daemon-bin", env!("CARGO_BIN_EXE_airflow-mesos")])
            .args(["--image", &slave, "--pushed", "--registry", &registry])
            .args(["--transform-image", &own])
            .args(["--timeout", "400"]),
        Duration::from_secs(450),
        "the Airflow end-to-end run on the pushed image",
    );
    let pulled = docker_ok(&["image", "inspect", &slave]) && docker_ok(&["image", "inspect", &own]);
    docker_ok(&["rmi", "-f", &slave]);
    docker_ok(&["rmi", "-f", &own]);
    assert!(
        status.success(),
        "the Airflow end-to-end run on the pushed image failed ({status}):\n{out}"
    );
    assert!(pulled, "the daemon did not pull {slave} and {own}");
    let progress: Vec<&str> = out.lines().filter(|l| l.starts_with("[e2e")).collect();
    println!("{}", progress.join("\n"));

    // 6. A wrong registry password: the pull is refused, no task runs, and Airflow records the
    //    reason (registry and authentication error, not the password) with each task instance and
    //    in the failed try's task log (read through Airflow's REST API).
    let wrong = format!("wrong-{}", uuid::Uuid::new_v4().simple());
    let (status, out) = run_bounded(
        Command::new(&python)
            .arg(&driver)
            .env("PYTHONPATH", provider.path().join("site"))
            .env("AM_TEST_REGISTRY_USER", &user)
            .env("AM_TEST_REGISTRY_PASSWORD", &wrong)
            .args(["--daemon-bin", env!("CARGO_BIN_EXE_airflow-mesos")])
            .args(["--image", &slave, "--pushed", "--registry", &registry])
            .args(["--expect-pull-refused", "--timeout", "300"]),
        Duration::from_secs(350),
        "the Airflow run with a wrong registry password",
    );
    let pulled = docker_ok(&["image", "inspect", &slave]);
    docker_ok(&["rmi", "-f", &slave]);
    assert!(
        status.success(),
        "the Airflow run with a wrong registry password failed its checks ({status}):\n{out}"
    );
    assert!(!pulled, "{slave} was pulled with a wrong password");
    let progress: Vec<&str> = out.lines().filter(|l| l.starts_with("[e2e")).collect();
    println!("{}", progress.join("\n"));
}

/// Kills (and reaps) the child when dropped, also when a check panics.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airflow_executor_mesos_path_fake_master() {
    use airflow_mesos::mesos::proto::scheduler::call;
    use support::fake_master::{AgentSpec, FakeMaster, FakeMasterOptions, TaskScript, TaskStep};

    let Some(python) = airflow_python() else {
        return;
    };
    let master = std::sync::Arc::new(FakeMaster::start(FakeMasterOptions::default()).await);
    master.add_agent(AgentSpec::new(8.0, 16384.0));
    master.set_task_script_fn(|info| {
        let task = info
            .labels
            .as_ref()
            .and_then(|l| l.labels.iter().find(|l| l.key == "airflow.task_id"))
            .and_then(|l| l.value.clone())
            .unwrap_or_default();
        // Held until the test, acting as the agent's fetcher, has fetched the sandbox files.
        let mut steps = vec![TaskStep::Hold];
        steps.extend(
            match task.as_str() {
                "doomed" => TaskScript::fail(1),
                "slow" => TaskScript::finish_after(Duration::from_secs(10)),
                _ => TaskScript::finish(),
            }
            .0,
        );
        TaskScript(steps)
    });
    // The fetcher: each launched task's URIs, fetched once before the task starts (as a Mesos
    // agent does), then the task is released. Keeps (URI, status, body) of every fetch.
    let fetched = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, u16, String)>::new()));
    let fetcher = {
        let (master, fetched) = (master.clone(), fetched.clone());
        tokio::spawn(async move {
            let mut done = std::collections::HashSet::new();
            loop {
                let infos: Vec<_> = master
                    .calls_of(call::Type::Accept)
                    .into_iter()
                    .filter_map(|c| c.accept)
                    .flat_map(|a| a.operations)
                    .filter_map(|op| op.launch)
                    .flat_map(|l| l.task_infos)
                    .collect();
                for info in infos {
                    if !done.insert(info.task_id.value.clone()) {
                        continue;
                    }
                    for u in info.command.iter().flat_map(|c| c.uris.iter()) {
                        let r = reqwest::get(&u.value).await.expect("fetching a URI");
                        let status = r.status().as_u16();
                        let body = r.text().await.unwrap_or_default();
                        fetched
                            .lock()
                            .unwrap()
                            .push((u.value.clone(), status, body));
                    }
                    master.release_task(&info.task_id.value);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let home = tempfile::tempdir().expect("a temporary AIRFLOW_HOME");
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let api_token = format!("am-api-{}", uuid::Uuid::new_v4().simple());
    let workload_token = format!(
        "eyJhbGciOiJIUzUxMiJ9.{}.{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let cfg = home.path().join("airflow.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[mesos]\nmaster = {}\nframework_name = airflow-e2e\ndocker_image_slave = am-test/none:latest\n\
             api_listen = 127.0.0.1:{port}\napi_url = {api}\npublic_url = {api}\n\
             database_url = sqlite:///{}/airflow-mesos.db\n",
            master.host_port(),
            home.path().display()
        ),
    )
    .expect("writing airflow.cfg");
    let log_path = home.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("creating the daemon log");
    let _daemon = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_airflow-mesos"))
            .args(["--config", cfg.to_str().expect("utf-8 path"), "scheduler"])
            .env("AIRFLOW_HOME", home.path())
            .env("AIRFLOW__MESOS__API_TOKEN", &api_token)
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .expect("starting airflow-mesos scheduler"),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the daemon's API did not open within 30 s; log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let driver = repo()
        .join("examples")
        .join("airflow")
        .join("tests")
        .join("mesos_path_driver.py");
    let (py_home, token_env, api_env) = (
        home.path().join("airflow-home"),
        workload_token.clone(),
        api.clone(),
    );
    let api_token_env = api_token.clone();
    let (status, out) = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&py_home).expect("creating the driver's AIRFLOW_HOME");
        let provider = install_provider(&python);
        run_bounded(
            Command::new(&python)
                .arg(&driver)
                .env("PYTHONPATH", provider.path().join("site"))
                .args(["--timeout", "120"])
                .env("AIRFLOW_HOME", &py_home)
                .env("AIRFLOW__MESOS__API_URL", &api_env)
                .env("AIRFLOW__MESOS__API_TOKEN", &api_token_env)
                .env("AM_TEST_WORKLOAD_TOKEN", &token_env),
            Duration::from_secs(180),
            "the Mesos-path executor run",
        )
    })
    .await
    .expect("joining the driver thread");
    let daemon_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "the Mesos-path executor run failed ({status}):\n{out}\n--- daemon log ---\n{daemon_log}"
    );
    assert!(
        out.contains("RESULT "),
        "the driver printed no result:\n{out}"
    );

    // Nothing the fake master recorded holds the token: neither raw requests nor the TaskInfos.
    let calls = master.calls();
    assert!(!calls.is_empty(), "the fake master recorded no request");
    for c in &calls {
        assert!(
            !contains(&c.body, workload_token.as_bytes()),
            "a {} {} request to the fake master carries the workload token",
            c.method,
            c.path
        );
        for (name, value) in &c.headers {
            assert!(
                !contains(value.as_bytes(), workload_token.as_bytes()),
                "header {name} of a request to the fake master carries the workload token"
            );
        }
    }
    let launched: Vec<_> = master
        .calls_of(call::Type::Accept)
        .into_iter()
        .filter_map(|c| c.accept)
        .flat_map(|a| a.operations)
        .filter_map(|op| op.launch)
        .flat_map(|l| l.task_infos)
        .collect();
    assert_eq!(
        launched.len(),
        3,
        "expected 3 launched TaskInfos: {launched:?}"
    );
    for info in &launched {
        let command = info.command.as_ref().expect("a TaskInfo without a command");
        let args = command.arguments.join(" ");
        assert!(
            args.contains("execute_workload") && args.contains("--json-path"),
            "unexpected task command: {:?} {args}",
            command.value
        );
        let uri = command
            .uris
            .iter()
            .find(|u| {
                u.output_file.as_deref() == Some("workload.json")
                    || u.value.ends_with("/workload.json")
            })
            .unwrap_or_else(|| panic!("no fetch URI for workload.json in {:?}", command.uris));
        assert!(
            uri.value.starts_with(&api),
            "the workload URI {} is not served by the daemon ({api})",
            uri.value
        );
        // The fetcher above got it before the task started; now it is gone.
        let (_, status, body) = fetched
            .lock()
            .unwrap()
            .iter()
            .find(|(u, _, _)| *u == uri.value)
            .cloned()
            .unwrap_or_else(|| panic!("{} was never fetched", uri.value));
        assert_eq!(status, 200, "the workload URI {} is not served", uri.value);
        assert!(
            body.contains(&workload_token) && body.contains("\"ExecuteTask\""),
            "the fetched workload is not the Airflow workload: {body:.200}"
        );
        let again = reqwest::get(&uri.value)
            .await
            .expect("fetching the workload again");
        assert_eq!(
            again.status(),
            410,
            "the workload URI served its content twice"
        );
        let env = format!("{:?}", command.environment);
        assert!(
            env.contains("AIRFLOW__CORE__EXECUTION_API_SERVER_URL"),
            "the task's env lacks the execution API URL: {env}"
        );
    }
    assert!(
        !daemon_log.contains(&workload_token),
        "the daemon's log contains the workload token"
    );
    assert!(
        !daemon_log.contains(&api_token),
        "the daemon's log contains its API token"
    );
    fetcher.abort();
    let _ = fetcher.await;
    if let Ok(master) = std::sync::Arc::try_unwrap(master) {
        master.shutdown().await;
    }
}
