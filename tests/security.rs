//! The daemon's defences, tested from outside like an attacker or an operator would: the task
//! policy (403 naming field and key until the operator allows it), cross-site requests, the
//! token, and a starved API. Runs the real binary on the local Docker backend (image from
//! `AM_TEST_BUSYBOX`, made by .ci/setup-docker.sh).

mod common;

use common::{require_env, Daemon};
use serde_json::{json, Value};

const TOKEN: &str = "sec-test-token";

fn daemon(extra: &str) -> Option<Daemon> {
    let image = require_env("AM_TEST_BUSYBOX", "a local busybox image")?;
    Some(Daemon::start(
        &format!(
            "backend = docker\ndocker_image_slave = {image}\ntask_cpu = 0.1\ntask_memory = 32\n{extra}"
        ),
        Some(TOKEN),
    ))
}

async fn post(d: &Daemon, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(d.url("/v1/tasks"))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_refuses_with_403_naming_field_and_key_until_the_operator_allows_it() {
    let Some(mut d) = daemon("") else { return };
    let shared = d.home.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let shared = shared.to_string_lossy().into_owned();
    let refused = [
        (
            json!({"command": "true", "privileged": true}),
            "privileged",
            "allow_privileged",
        ),
        (
            json!({"command": "true", "volumes": [{"container_path": "/host", "host_path": "/"}]}),
            "volumes[0].host_path",
            "allowed_host_paths",
        ),
        (
            json!({"command": "true", "user": "postgres"}),
            "user",
            "allowed_users",
        ),
        (
            json!({"command": "true", "network": {"user": "other"}}),
            "network",
            "allowed_network_modes",
        ),
        (
            json!({"command": "true", "containerizer": "none"}),
            // The local backend has no uncontainerized tasks at all: 400, checked first.
            "containerizer",
            "",
        ),
        (
            json!({"tasks": [{"command": "true"}, {"command": "true", "executor_config": {"privileged": "True"}}]}),
            "tasks[1].executor_config.privileged",
            "allow_privileged",
        ),
    ];
    for (body, field, key) in &refused {
        let (status, answer) = post(&d, body).await;
        if key.is_empty() {
            assert_eq!(status, 400, "{body}: {answer}");
        } else {
            assert_eq!(status, 403, "{body}: {answer}");
            assert_eq!(answer["key"], *key, "{answer}");
            let error = answer["error"].as_str().unwrap();
            assert!(error.contains(&format!("[mesos] {key}")), "{answer}");
        }
        assert_eq!(answer["field"], *field, "{answer}");
    }
    // `..` never leaves the sandbox, relative or not.
    for path in ["../../etc", "data/../../../etc"] {
        let (status, answer) = post(
            &d,
            &json!({"command": "true", "volumes": [{"container_path": "/x", "host_path": path}]}),
        )
        .await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["field"], "volumes[0].host_path", "{answer}");
    }
    // The CLI: a job file asking for a host path exits 65 and names field and key.
    let job = d.home.path().join("job.yaml");
    std::fs::write(
        &job,
        format!("command: \"true\"\nvolumes: [{{container_path: /s, host_path: {shared}}}]\n"),
    )
    .unwrap();
    let out = d.cli(&["submit", "-f", &job.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("volumes[0].host_path") && err.contains("allowed_host_paths"),
        "{err}"
    );
    let list = d.cli_json(&["list", "--json"]);
    assert!(
        list["tasks"].as_array().unwrap().is_empty(),
        "nothing refused was stored: {list}"
    );

    // The operator allows them: the same requests are taken and run.
    d.terminate();
    let cfg = std::fs::read_to_string(d.cfg_path()).unwrap();
    std::fs::write(
        d.cfg_path(),
        format!("{cfg}allow_privileged = true\nallowed_host_paths = {shared}\nallowed_users = *\n"),
    )
    .unwrap();
    d.spawn();
    // (Privileged containers may not start where the tests run, inside a container: accepted
    // is what this checks.)
    let (status, answer) = post(&d, &json!({"command": "true", "privileged": true})).await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = post(
        &d,
        &json!({"command": "echo ran > /s/out", "user": "root",
                "volumes": [{"container_path": "/s", "host_path": shared}]}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["tasks"][0]["id"].as_str().unwrap().to_string();
    let out = d.cli(&["wait", &id, "--timeout", "60", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        d.log_text()
    );
    assert_eq!(
        std::fs::read_to_string(format!("{shared}/out")).unwrap(),
        "ran\n"
    );
    let out = d.cli(&["submit", "-f", &job.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_cross_site_requests_reach_the_api() {
    let Some(d) = daemon("allowed_origins = https://airflow.example.com\n") else {
        return;
    };
    let http = reqwest::Client::new();
    let body = r#"{"command": "true"}"#;
    // What a page on another site can send without a CORS preflight: a text/plain POST
    // (`fetch(..., {mode: "no-cors"})`), a form, an empty POST; with or without the token.
    for (origin, ct, token) in [
        (Some("http://evil.example"), Some("text/plain"), false),
        (Some("http://evil.example"), Some("text/plain"), true),
        (
            Some("null"),
            Some("application/x-www-form-urlencoded"),
            true,
        ),
        (None, Some("text/plain"), true),
        (None, Some("multipart/form-data; boundary=x"), true),
        (None, None, true),
        (Some("http://evil.example"), Some("application/json"), true),
    ] {
        let mut r = http.post(d.url("/v1/tasks")).body(body);
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        if let Some(c) = ct {
            r = r.header("Content-Type", c);
        }
        if token {
            r = r.bearer_auth(TOKEN);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "no CORS"
        );
        let answer: Value = r.json().await.unwrap();
        if origin.is_some() {
            assert_eq!(status, 403, "{origin:?} {ct:?}: {answer}");
            assert_eq!(answer["key"], "allowed_origins", "{answer}");
        } else {
            assert_eq!(status, 415, "{ct:?}: {answer}");
            assert_eq!(answer["field"], "Content-Type", "{answer}");
        }
    }
    // A kill is a write too.
    let r = http
        .post(d.url("/v1/tasks/t-any/kill"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Reads from a foreign page are refused as well; the preflight gets no CORS grant.
    let r = http
        .get(d.url("/v1/tasks"))
        .header("Origin", "http://evil.example")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .request(reqwest::Method::OPTIONS, d.url("/v1/tasks"))
        .header("Origin", "https://airflow.example.com")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert!(!r.status().is_success(), "{}", r.status());
    // Nothing was stored; an allowed origin with a JSON body is served.
    let list = d.cli_json(&["list", "--json"]);
    assert!(list["tasks"].as_array().unwrap().is_empty(), "{list}");
    let r = http
        .post(d.url("/v1/tasks"))
        .header("Origin", "https://airflow.example.com")
        .header("Content-Type", "application/json")
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // The CLI's kill declares its (empty) body: accepted.
    let id = d.cli_json(&["list", "--json"])["tasks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = d.cli(&["kill", &id]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_configured_token_the_api_takes_only_the_generated_one() {
    let Some(image) = require_env("AM_TEST_BUSYBOX", "a local busybox image") else {
        return;
    };
    let mut d = Daemon::start(
        &format!(
            "backend = docker\ndocker_image_slave = {image}\ntask_cpu = 0.1\ntask_memory = 32\n"
        ),
        None,
    );
    let file = d.token_file();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    let dir_mode = std::fs::metadata(file.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let token = d.token.clone().expect("the daemon wrote its token");
    assert_eq!(token.len(), 64, "256 random bits in hex");

    // Nobody without the token submits or reads, whatever the scheme's case.
    let http = reqwest::Client::new();
    let spec = json!({"command": "echo hi"});
    for auth in [
        None,
        Some("Bearer ".to_string()),
        Some("Bearer nope".to_string()),
    ] {
        let mut r = http.post(d.url("/v1/tasks")).json(&spec);
        if let Some(a) = &auth {
            r = r.header("Authorization", a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("api_token_file"),
            "{body}"
        );
    }
    let r = http.get(d.url("/v1/tasks")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = http
            .get(d.url("/v1/tasks"))
            .header("Authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }

    // The CLI (same AIRFLOW_HOME) finds the file; the token survives a restart.
    let out = d.cli_json(&["submit", "--json", "--wait", "--", "echo", "from-cli"]);
    assert_eq!(out["tasks"][0]["state"], "succeeded", "{out}");
    d.terminate();
    std::fs::remove_file(&file).unwrap();
    d.token = None;
    d.spawn();
    assert_eq!(
        d.token.as_deref(),
        Some(token.as_str()),
        "the same token after a restart"
    );

    // A CLI that cannot find the file says where it looked.
    let other_home = tempfile::tempdir().unwrap();
    let out = common::cli_in(other_home.path(), &d.cfg_path(), &["list"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") || err.contains("credentials"), "{err}");
    assert!(
        err.contains(
            &other_home
                .path()
                .join("airflow-mesos")
                .join("api-token")
                .display()
                .to_string()
        ),
        "{err}"
    );
    assert!(!err.contains(&token), "the token is never printed: {err}");
}
