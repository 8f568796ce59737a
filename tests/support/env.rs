//! Environment helpers: services a test needs (ZooKeeper, a Python with pymesos) come from
//! environment variables; with `CI=true` a missing one fails the test, otherwise the test is
//! skipped with a notice.

/// The value of `var`, or `None` (after printing a skip notice) outside CI.
///
/// # Panics
/// When `CI=true` and `var` is unset.
pub fn required_service(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{var} is not set but CI=true: {what} is required in CI")
        }
        _ => {
            eprintln!("skipping: {var} is not set ({what}); see .ci/setup-*.sh");
            None
        }
    }
}

/// The recorded real-Mesos fixtures directory (`tests/fixtures/mesos-1.12-real`).
pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mesos-1.12-real")
}
