//! Task sandboxes on the host: writing a launch's files, reading its logs, collecting the
//! sandboxes of ended tasks.

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Reads up to `max` bytes of a task's `stdout` (or `stderr`) from `offset`. Returns the bytes
/// and the offset to continue from.
pub async fn read_log(
    sandbox_dir: &Path,
    backend_task_id: &str,
    stderr: bool,
    offset: u64,
    max: usize,
) -> io::Result<(Vec<u8>, u64)> {
    check_task_dir_name(backend_task_id)?;
    let path = sandbox_dir
        .join(backend_task_id)
        .join(if stderr { "stderr" } else { "stdout" });
    let mut f = tokio::fs::File::open(&path)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    f.seek(io::SeekFrom::Start(offset)).await?;
    let mut buf = Vec::with_capacity(max.min(1 << 20));
    (&mut f).take(max as u64).read_to_end(&mut buf).await?;
    let next = offset + buf.len() as u64;
    Ok((buf, next))
}

/// `[mesos] sandbox_retention`'s default: a week, as a Mesos agent's `--gc_delay`.
pub const DEFAULT_SANDBOX_RETENTION: Duration =
    Duration::from_secs(crate::config::defaults::SANDBOX_RETENTION as u64);
/// Shorter retentions are raised to this, so that a sandbox being made is never collected.
pub(super) const MIN_SANDBOX_RETENTION_SECS: f64 = 60.0;

/// Removes the sandboxes under `dir` of tasks not in `live` whose newest entry (the directory
/// or a file directly in it) was modified more than `retention` before `now`. Only directories
/// named like a task attempt (`<task id>.<n>`) are considered. Returns the names removed.
pub fn collect_sandboxes(
    dir: &Path,
    live: &HashSet<String>,
    retention: Duration,
    now: SystemTime,
) -> io::Result<Vec<String>> {
    let newest = |p: &Path| -> io::Result<SystemTime> {
        let mut t = std::fs::metadata(p)?.modified()?;
        for e in std::fs::read_dir(p)? {
            if let Ok(m) = e.and_then(|e| e.metadata()) {
                if let Ok(mt) = m.modified() {
                    t = t.max(mt);
                }
            }
        }
        Ok(t)
    };
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if live.contains(&name)
            || crate::task::parse_attempt_task_id(&name).is_none()
            || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let path = entry.path();
        let expired = newest(&path)
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > retention);
        if expired {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => removed.push(name),
                Err(e) => {
                    tracing::warn!(sandbox = %path.display(), error = %e, "cannot remove an expired sandbox")
                }
            }
        }
    }
    Ok(removed)
}

pub(super) fn check_task_dir_name(id: &str) -> io::Result<()> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\\') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{id}` is not a task id"),
        ));
    }
    Ok(())
}

/// Creates the sandbox and writes the task's files into it (never into env or labels).
pub(super) async fn write_sandbox(sandbox: &Path, files: &[(String, String)]) -> io::Result<()> {
    tokio::fs::create_dir_all(sandbox).await?;
    set_mode(sandbox, 0o777).await?;
    for (rel, content) in files {
        let p = Path::new(rel);
        if rel.is_empty()
            || p.is_absolute()
            || p.components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("sandbox file path `{rel}` leaves the sandbox"),
            ));
        }
        let dest = sandbox.join(p);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::write(&dest, content.as_bytes()).await?;
        set_mode(&dest, 0o644).await?;
    }
    Ok(())
}

pub(super) async fn set_mode(p: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_sandboxes_of_ended_tasks_are_collected_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(24 * 3600);
        let make = |name: &str, age: Duration, file_age: Option<Duration>| {
            let d = root.path().join(name);
            std::fs::create_dir(&d).unwrap();
            if let Some(fa) = file_age {
                let f = std::fs::File::create(d.join("stdout")).unwrap();
                f.set_modified(now - fa).unwrap();
            }
            std::fs::File::open(&d)
                .unwrap()
                .set_modified(now - age)
                .unwrap();
        };
        make("t-old.1", 3 * day, Some(3 * day));
        make("t-live.1", 3 * day, Some(3 * day));
        make("t-fresh.2", Duration::ZERO, None);
        make("t-writing.1", 3 * day, Some(Duration::from_secs(5)));
        make("not-a-task", 3 * day, None);
        std::fs::write(root.path().join("t-file.1"), b"x").unwrap();
        let live: HashSet<String> = ["t-live.1".to_string()].into();
        let removed = collect_sandboxes(root.path(), &live, day, now).unwrap();
        assert_eq!(removed, vec!["t-old.1".to_string()]);
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "not-a-task",
                "t-file.1",
                "t-fresh.2",
                "t-live.1",
                "t-writing.1"
            ]
        );
        // A second pass finds nothing more; a longer retention keeps everything.
        assert!(collect_sandboxes(root.path(), &live, day, now)
            .unwrap()
            .is_empty());
        assert!(
            collect_sandboxes(root.path(), &HashSet::new(), 10 * day, now)
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn read_log_pages_and_refuses_path_tricks() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("t-1.1")).unwrap();
        std::fs::write(d.path().join("t-1.1/stdout"), b"hello world").unwrap();
        let (b, next) = read_log(d.path(), "t-1.1", false, 0, 5).await.unwrap();
        assert_eq!((b.as_slice(), next), (&b"hello"[..], 5));
        let (b, next) = read_log(d.path(), "t-1.1", false, next, 100).await.unwrap();
        assert_eq!((b.as_slice(), next), (&b" world"[..], 11));
        let (b, next) = read_log(d.path(), "t-1.1", false, next, 100).await.unwrap();
        assert_eq!((b.len(), next), (0, 11));
        let e = read_log(d.path(), "t-1.1", true, 0, 10).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = read_log(d.path(), "../etc", false, 0, 10)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
