//! The Debian package, installed into a Debian container: the binary runs, the configuration
//! is a conffile only root and the service user can read and `config check` accepts, the
//! systemd unit passes `systemd-analyze verify`, and the man pages and shell completions are
//! there. The package is built by `.ci/run` (`packaging/deb/build.sh --profile dev`) into
//! `AM_TEST_DEB`; the image (am-test/debian plus systemd and adduser) is made by
//! `.ci/setup-packaging.sh` into `AM_TEST_DEB_IMAGE`. With `CI=true` their absence fails.

mod common;

use common::require_env;
use std::process::{Command, Output};

/// The Debian package and the image to install it into, or `None` (skip) outside CI.
fn package_and_image() -> Option<(String, String)> {
    let deb = require_env("AM_TEST_DEB", "the Debian package (packaging/deb/build.sh)")?;
    let image = require_env(
        "AM_TEST_DEB_IMAGE",
        "a Debian image with systemd (.ci/setup-packaging.sh)",
    )?;
    Some((deb, image))
}

/// A container that is removed on drop.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

impl Container {
    fn exec(&self, script: &str) -> Output {
        Command::new("docker")
            .args(["exec", &self.0, "bash", "-c", script])
            .output()
            .expect("docker exec")
    }

    /// Runs `script`; panics unless it exits 0. Returns stdout.
    fn ok(&self, script: &str) -> String {
        let out = self.exec(script);
        assert!(
            out.status.success(),
            "`{script}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn the_package_installs_runs_and_its_unit_verifies() {
    let Some(deb) = require_env("AM_TEST_DEB", "the Debian package (packaging/deb/build.sh)")
    else {
        return;
    };
    let Some(image) = require_env(
        "AM_TEST_DEB_IMAGE",
        "a Debian image with systemd (.ci/setup-packaging.sh)",
    ) else {
        return;
    };
    let name = format!("am-test-deb-{}", std::process::id());
    let out = Command::new("docker")
        .args(["run", "-d", "--name", &name, "--network", "none"])
        .arg("-v")
        .arg(format!("{deb}:/tmp/airflow-mesos.deb:ro"))
        .args([&image, "sleep", "600"])
        .output()
        .expect("docker run");
    assert!(out.status.success(), "docker run: {out:?}");
    let c = Container(name);

    c.ok("dpkg -i /tmp/airflow-mesos.deb");
    assert_eq!(
        c.ok("airflow-mesos --version"),
        format!("airflow-mesos {}\n", env!("CARGO_PKG_VERSION"))
    );

    // Where everything went.
    let files = c.ok("dpkg -L airflow-mesos");
    for f in [
        "/usr/bin/airflow-mesos",
        "/etc/airflow-mesos/airflow.cfg",
        "/usr/lib/systemd/system/airflow-mesos.service",
        "/usr/share/man/man1/airflow-mesos.1.gz",
        "/usr/share/man/man1/airflow-mesos-submit.1.gz",
        "/usr/share/man/man1/airflow-mesos-config-check.1.gz",
        "/usr/share/bash-completion/completions/airflow-mesos",
        "/usr/share/zsh/vendor-completions/_airflow-mesos",
        "/usr/share/fish/vendor_completions.d/airflow-mesos.fish",
        "/usr/share/doc/airflow-mesos/copyright",
    ] {
        assert!(
            files.lines().any(|l| l == f),
            "{f} not in the package:\n{files}"
        );
    }
    assert!(
        c.ok("dpkg-query -W -f='${Conffiles}' airflow-mesos")
            .contains("/etc/airflow-mesos/airflow.cfg"),
        "the configuration is a conffile (kept as edited on upgrade)"
    );
    assert_eq!(
        c.ok("cat /etc/airflow-mesos/airflow.cfg"),
        std::fs::read_to_string("config/airflow.cfg").unwrap(),
        "the annotated configuration, every key with its meaning and default"
    );

    // Its own user; the configuration (which may hold the API token) readable by it and root.
    assert_eq!(
        c.ok("getent passwd airflow-mesos | cut -d: -f6,7"),
        "/var/lib/airflow-mesos:/usr/sbin/nologin\n"
    );
    assert_eq!(
        c.ok("stat -c '%U:%G %a' /etc/airflow-mesos/airflow.cfg /var/lib/airflow-mesos"),
        "root:airflow-mesos 640\nairflow-mesos:airflow-mesos 750\n"
    );

    // `config check` as the service runs it (its user, its environment).
    let check = c.ok(
        "runuser -u airflow-mesos -- env AIRFLOW_HOME=/var/lib/airflow-mesos \
         AIRFLOW_CONFIG=/etc/airflow-mesos/airflow.cfg airflow-mesos config check",
    );
    assert!(check.starts_with("configuration OK"), "{check}");
    // A broken key fails it with exit 64 and the key's name: the unit's ExecStartPre then
    // stops the start (and RestartPreventExitStatus=64 a restart loop).
    let bad = c.exec(
        "printf '[mesos]\\ntask_cpu = lots\\n' >/tmp/bad.cfg && \
         AIRFLOW_HOME=/tmp airflow-mesos config check --config /tmp/bad.cfg",
    );
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("task_cpu")
            || String::from_utf8_lossy(&bad.stderr).contains("task_cpu")
    );

    // The unit: systemd's own check, with nothing to say.
    let verify = c.exec("systemd-analyze verify /usr/lib/systemd/system/airflow-mesos.service");
    assert!(
        verify.status.success() && verify.stderr.is_empty() && verify.stdout.is_empty(),
        "systemd-analyze verify:\n{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let unit = c.ok("cat /usr/lib/systemd/system/airflow-mesos.service");
    for line in [
        "User=airflow-mesos",
        "Restart=on-failure",
        "ExecStart=/usr/bin/airflow-mesos --log-format json scheduler",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "{line} in the unit:\n{unit}"
        );
    }

    // Man pages and completions work.
    assert!(c
        .ok("zcat /usr/share/man/man1/airflow-mesos.1.gz")
        .contains(".TH airflow-mesos 1"));
    assert!(c
        .ok(". /usr/share/bash-completion/completions/airflow-mesos && complete -p airflow-mesos")
        .contains("airflow-mesos"));

    // Removal keeps the configuration; purge takes it.
    c.ok("dpkg -r airflow-mesos && test -f /etc/airflow-mesos/airflow.cfg && ! test -e /usr/bin/airflow-mesos");
    c.ok("dpkg -P airflow-mesos && ! test -e /etc/airflow-mesos/airflow.cfg");
}

/// `GET /healthz` of the daemon in the container, through bash's /dev/tcp (no curl there).
fn healthz(c: &Container) -> Option<serde_json::Value> {
    let out = c.exec(
        "exec 3<>/dev/tcp/127.0.0.1/11000 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3",
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()
}

/// The service under systemd as the unit runs it (its user, its hardening), with
/// `backend = docker` and the host's Docker socket: it reaches the engine (the local backend
/// subscribes), and it does not once its user leaves the `docker` group.
#[test]
fn the_hardened_service_reaches_the_docker_socket() {
    let Some((deb, image)) = package_and_image() else {
        return;
    };
    let socket = "/var/run/docker.sock";
    let gid =
        std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(socket).expect("the Docker socket"));
    let name = format!("am-test-deb-systemd-{}", std::process::id());
    // systemd as PID 1 (an unprivileged container: systemd skips the namespace options it
    // cannot set up there, and says so; the seccomp filters, capabilities, NoNewPrivileges and
    // address families it applies all the same).
    let out = Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
        ])
        .args(["-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro"])
        .arg("-v")
        .arg(format!("{socket}:/run/docker.sock"))
        .arg("-v")
        .arg(format!("{deb}:/tmp/airflow-mesos.deb:ro"))
        .args([&image, "/lib/systemd/systemd"])
        .output()
        .expect("docker run");
    assert!(out.status.success(), "docker run: {out:?}");
    let c = Container(name);
    c.ok(
        "for i in $(seq 50); do systemctl is-system-running >/dev/null 2>&1 && break; \
          [ \"$(systemctl is-system-running 2>/dev/null)\" = degraded ] && break; sleep 0.2; done",
    );
    // A docker group owning the socket, as Docker's package makes: the postinst adds the
    // service user to it.
    c.ok(&format!(
        "groupadd -g {gid} docker && dpkg -i /tmp/airflow-mesos.deb"
    ));
    assert!(c
        .ok("id -nG airflow-mesos")
        .split_whitespace()
        .any(|g| g == "docker"));
    c.ok(
        "printf '%s\\n' '[mesos]' 'backend = docker' 'docker_image_slave = am-test/busybox' \
          'api_listen = 127.0.0.1:11000' 'api_token = packaged-test-token' \
          >/etc/airflow-mesos/airflow.cfg && systemctl start airflow-mesos",
    );
    let subscribed = |c: &Container| {
        (0..100).find_map(|_| {
            let h = healthz(c).filter(|h| h["subscribed"] == true);
            if h.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            h
        })
    };
    let h = subscribed(&c).unwrap_or_else(|| {
        panic!(
            "the service did not reach the Docker engine:\n{}",
            c.ok("systemctl status airflow-mesos --no-pager; journalctl -u airflow-mesos --no-pager | tail -30")
        )
    });
    assert_eq!(h["backend"], "docker");
    // It runs as the unit says: its own user, no capabilities, no new privileges, seccomp.
    let status = c.ok("cat /proc/$(systemctl show -p MainPID --value airflow-mesos)/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(field("CapEff"), "0000000000000000");
    assert_eq!(field("CapBnd"), "0000000000000000");
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2", "SystemCallFilter applied");
    assert_eq!(
        c.ok("stat -c %U /proc/$(systemctl show -p MainPID --value airflow-mesos)")
            .trim(),
        "airflow-mesos"
    );
    let score = c.ok("systemd-analyze security airflow-mesos --no-pager | tail -n 1");
    eprintln!("systemd-analyze security: {}", score.trim());

    // The control: without the docker group, the same unit cannot reach the engine.
    c.ok("gpasswd -d airflow-mesos docker >/dev/null && systemctl restart airflow-mesos");
    let journal = (0..50)
        .find_map(|_| {
            let j = c.ok("journalctl -u airflow-mesos --no-pager -n 5");
            if j.contains("Docker engine unreachable") {
                return Some(j);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            None
        })
        .expect("the daemon says it cannot reach the Docker engine");
    assert!(journal.contains("/var/run/docker.sock"), "{journal}");
    assert_eq!(
        healthz(&c).map(|h| h["subscribed"].clone()),
        Some(serde_json::Value::Bool(false)),
        "up, but not subscribed without access to the socket"
    );
}
