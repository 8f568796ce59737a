//! The operator examples checked against the daemon itself: every query of the Grafana
//! dashboard (`examples/grafana/`) names a metric the daemon's `/metrics` exports (and only
//! task states that exist), and the Marathon app (`examples/marathon/`) runs the daemon image's
//! port and health check with a configuration the daemon's own `config check` accepts.

mod common;

use common::{require_env, Daemon, BIN};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON: {e}"))
}

/// `airflow_mesos_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("airflow_mesos_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.push(name);
    }
    out
}

/// The values a `state="a"`, `state=~"a|b"` or `state!~"a|b"` matcher names.
fn state_values(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for op in ["state=\"", "state=~\"", "state!~\"", "state!=\""] {
        for (at, _) in expr.match_indices(op) {
            let v = &expr[at + op.len()..];
            let v = &v[..v.find('"').unwrap()];
            out.extend(v.split('|').map(str::to_string));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_names_a_metric_the_daemon_exports() {
    let Some(image) = require_env("AM_TEST_BUSYBOX", "a local busybox image") else {
        return;
    };
    let d = Daemon::start(
        &format!("backend = docker\ndocker_image_slave = {image}\n"),
        None,
    );
    // The core's series appear once the driver has taken its first step.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let metrics = loop {
        let text = d.metrics().await;
        if text.contains("airflow_mesos_relaunches_total") || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    let states: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("airflow_mesos_tasks{state=\""))
        .map(|l| l.split('"').next().unwrap().to_string())
        .collect();
    assert!(
        exported.contains("airflow_mesos_launches_total"),
        "{metrics}"
    );
    assert_eq!(states.len(), 9, "{states:?}");

    let dash = read_json("examples/grafana/airflow-mesos.json");
    assert_eq!(dash["title"], "airflow-mesos");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    let mut used = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap();
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: no expr"));
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "{title}: `{expr}` names no airflow-mesos metric"
            );
            for n in names {
                assert!(
                    exported.contains(&n),
                    "{title}: `{n}` is not exported by /metrics"
                );
                used.insert(n);
            }
            for s in state_values(expr) {
                assert!(
                    states.contains(&s),
                    "{title}: no task state `{s}` in `{expr}`"
                );
            }
        }
    }
    // The `job` variable's query, too.
    for v in dash["templating"]["list"].as_array().unwrap() {
        for n in metric_names(v["definition"].as_str().unwrap_or_default()) {
            assert!(exported.contains(&n), "variable {}: `{n}`", v["name"]);
        }
    }
    // And nothing exported is left off the dashboard.
    assert_eq!(used, exported, "metrics without a panel");
}

#[test]
fn the_marathon_app_runs_the_daemon_image_with_a_configuration_it_accepts() {
    let app = read_json("examples/marathon/airflow-mesos.json");
    // Two daemons, on two hosts, one leading (the other stands by) through the shared database.
    assert_eq!(app["instances"], 2);
    assert_eq!(
        app["constraints"],
        serde_json::json!([["hostname", "UNIQUE"]])
    );
    assert_eq!(app["container"]["type"], "DOCKER");
    // The port the runtime image exposes and the daemon listens on.
    let dockerfile = std::fs::read_to_string("docker/Dockerfile").unwrap();
    let exposed: u64 = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE in docker/Dockerfile")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        app["container"]["portMappings"][0]["containerPort"],
        exposed
    );
    let env = app["env"].as_object().unwrap();
    assert_eq!(
        env["AIRFLOW__MESOS__API_LISTEN"].as_str().unwrap(),
        format!("0.0.0.0:{exposed}")
    );
    assert!(
        dockerfile.contains("ENTRYPOINT [\"airflow-mesos\"]"),
        "the image runs the daemon"
    );
    let cmd = app["cmd"].as_str().unwrap();
    assert!(
        cmd.contains("exec airflow-mesos") && cmd.ends_with(" scheduler"),
        "{cmd}"
    );
    // Health on /healthz, the daemon's unauthenticated liveness route.
    let hc = &app["healthChecks"][0];
    assert_eq!(hc["path"], "/healthz");
    assert_eq!(hc["portIndex"], 0);
    // The state database and the token come from secrets the app declares.
    let secrets = app["secrets"].as_object().unwrap();
    for key in ["AIRFLOW__MESOS__DATABASE_URL", "AIRFLOW__MESOS__API_TOKEN"] {
        let name = env[key]["secret"]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is not from a secret"));
        assert!(
            secrets.contains_key(name),
            "{key}: secret {name} not declared"
        );
    }

    // The daemon's own check of that environment (secrets filled in as Marathon would, and
    // public_url as the cmd sets it): no error, no unknown key, the backend and database meant.
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("airflow.cfg"), "").unwrap();
    let mut check = Command::new(BIN);
    check
        .args(["config", "show", "--json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIRFLOW_HOME", home.path())
        .env("AIRFLOW__MESOS__PUBLIC_URL", "http://10.0.0.5:31005");
    for (k, v) in env {
        let value = match v {
            Value::String(s) => s.clone(),
            _ => match v["secret"].as_str().unwrap() {
                "database_url" => {
                    "postgres://airflow_mesos:pw@db.example:5432/airflow_mesos".into()
                }
                "api_token" => "0123456789abcdef0123456789abcdef".into(),
                other => panic!("unexpected secret {other}"),
            },
        };
        check.env(k, value);
    }
    let out = check.output().unwrap();
    assert!(out.status.success(), "config show: {out:?}");
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["warnings"], serde_json::json!([]), "unknown keys");
    let value = |key: &str| -> Value {
        shown["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == key)
            .map(|e| e["value"].clone())
            .unwrap_or_else(|| panic!("no {key}"))
    };
    assert_eq!(value("backend"), "mesos");
    assert_eq!(value("leader_election"), "database");
    assert!(value("database_url")
        .as_str()
        .unwrap()
        .starts_with("postgres://"));
    assert_eq!(value("api_token"), "***");
    assert_eq!(value("public_url"), "http://10.0.0.5:31005");
    for (k, _) in env {
        let key = k.strip_prefix("AIRFLOW__MESOS__").unwrap().to_lowercase();
        let entry = shown["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == key);
        assert_eq!(
            entry.map(|e| e["source"].as_str().unwrap().to_string()),
            Some(format!("env {k}")),
            "{k} is a key the daemon reads"
        );
    }
    let check = Command::new(BIN)
        .args(["config", "check"])
        .env_clear()
        .envs(check.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .unwrap();
    assert!(check.status.success(), "config check: {check:?}");
}
