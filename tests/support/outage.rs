//! Database outages for tests: a small tmpfs that can be filled ([`SmallDisk`]) and a
//! PostgreSQL cluster of its own that can be stopped and started ([`PgCluster`]). Both need
//! root; with `CI=true` their absence fails the test, otherwise it is skipped with a notice.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A free TCP port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `pg_ctlcluster <version> <name> <action>` (`stop` is a fast stop: sessions are cut).
pub fn pg_ctl(version: &str, name: &str, action: &str) {
    let mut args = vec![version, name, action];
    if action == "stop" {
        args.extend(["-m", "fast"]);
    }
    let out = Command::new("pg_ctlcluster").args(&args).output().unwrap();
    assert!(out.status.success(), "pg_ctlcluster {args:?}: {out:?}");
}

/// A small tmpfs, unmounted on drop.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(mb: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(SmallDisk { dir });
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot mount a tmpfs (root is needed) but CI=true"
        );
        eprintln!("skipping: cannot mount a tmpfs (run as root)");
        None
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a file; returns its path.
    pub fn fill(&self) -> PathBuf {
        let p = self.path().join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let chunk = vec![0xa5u8; 16 * 1024];
        while f.write_all(&chunk).is_ok() {}
        // The last partial chunk may have gone in; a few single bytes finish it.
        while f.write_all(&[0]).is_ok() {}
        p
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A PostgreSQL cluster of its own (the local installation's `pg_createcluster`), so that it
/// can be stopped without touching the one other tests use; dropped at the end.
pub struct PgCluster {
    pub version: String,
    pub name: String,
    pub port: u16,
}

impl PgCluster {
    /// A new cluster named `<prefix><port>`, started, with a role and a database to use.
    pub fn create(prefix: &str) -> Option<PgCluster> {
        let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PostgreSQL is not installed but CI=true (.ci/setup-databases.sh)"
            );
            eprintln!("skipping: PostgreSQL is not installed");
            return None;
        };
        let mut vs: Vec<String> = versions
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        vs.sort_by_key(|v| v.parse::<u32>().unwrap_or(0));
        let version = vs.pop()?;
        let port = free_port();
        let c = PgCluster {
            version,
            name: format!("{prefix}{port}"),
            port,
        };
        c.run(
            "pg_createcluster",
            &[&c.version, &c.name, "-p", &port.to_string()],
        );
        c.ctl("start");
        // One statement per psql: CREATE DATABASE cannot run in a transaction block.
        for stmt in [
            "CREATE ROLE am_outage LOGIN PASSWORD 'am_outage_pw'",
            "CREATE DATABASE am_outage OWNER am_outage",
        ] {
            let ok = Command::new("su")
                .args(["postgres", "-c"])
                .arg(format!(
                    "psql -q -p {port} -v ON_ERROR_STOP=1 -c \"{stmt}\""
                ))
                .status()
                .unwrap();
            assert!(ok.success(), "{stmt}");
        }
        Some(c)
    }

    pub fn url(&self) -> String {
        format!(
            "postgresql://am_outage:am_outage_pw@127.0.0.1:{}/am_outage",
            self.port
        )
    }

    fn run(&self, cmd: &str, args: &[&str]) {
        let out = Command::new(cmd).args(args).output().unwrap();
        assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
    }

    pub fn ctl(&self, action: &str) {
        pg_ctl(&self.version, &self.name, action);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new("pg_dropcluster")
            .args(["--stop", &self.version, &self.name])
            .output();
    }
}
