//! The Airflow executor shim (`examples/airflow`) under test:
//!
//! * `shim_unit_tests`: the shim's pytest suite against a fake daemon API (no daemon, no Docker).
//! * `airflow_e2e_local_docker`: real Apache Airflow 3 (api-server, dag-processor, scheduler,
//!   SQLite) with `AirflowMesosExecutor`, and this crate's `airflow-mesos scheduler` with
//!   `backend = docker`, run the example DAG in real containers, with a scheduler restart in the
//!   middle; `examples/airflow/tests/e2e_driver.py` does the run and the checks (final states in
//!   Airflow's DB, one run per task try, adoption after the restart, no workload token in the
//!   daemon's log, the containers' config or the API's answers).
//!
//! Needs the virtualenv of `.ci/setup-airflow.sh` (`AM_TEST_AIRFLOW_VENV`) and, for the end-to-end
//! test, a Docker engine with `AM_TEST_BASE_IMAGE` (`.ci/setup-docker.sh`). With `CI=true` a
//! missing prerequisite fails the test; otherwise it is skipped with a notice.

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

/// The Python of the Airflow virtualenv, if it has Airflow 3 and the shim.
fn airflow_python() -> Option<PathBuf> {
    let Ok(venv) = std::env::var("AM_TEST_AIRFLOW_VENV") else {
        return missing(
            "AM_TEST_AIRFLOW_VENV is not set: run .ci/setup-airflow.sh and source .ci/test-env-airflow.sh",
        );
    };
    let python = Path::new(&venv).join("bin").join("python");
    let ok = Command::new(&python)
        .args([
            "-c",
            "import airflow.sdk.execution_time.execute_workload, airflow_mesos_executor, pytest",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return missing(&format!(
            "{} cannot import Airflow 3, the shim and pytest: run .ci/setup-airflow.sh",
            python.display()
        ));
    }
    Some(python)
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

#[test]
fn airflow_e2e_local_docker() {
    let Some(python) = airflow_python() else {
        return;
    };
    let Some(image) = docker_image() else {
        return;
    };
    let driver = repo()
        .join("examples")
        .join("airflow")
        .join("tests")
        .join("e2e_driver.py");
    let (status, out) = run_bounded(
        Command::new(&python)
            .arg(&driver)
            .args(["--daemon-bin", env!("CARGO_BIN_EXE_airflow-mesos")])
            .args(["--image", &image, "--timeout", "280"]),
        Duration::from_secs(330),
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
