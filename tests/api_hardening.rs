//! The API under hostile or sloppy clients, from outside, against the real binary: a flood of
//! half-open connections (opened, request head never finished) neither starves `/healthz` nor
//! keeps memory; request-head and idle timeouts; every error answer is JSON naming what was
//! wrong; a job file and an API body are read by one schema that refuses unknown and
//! duplicate keys. Needs no Docker engine (nothing is launched).

mod common;

use common::{cli_in, Daemon};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "hardening-token";

fn daemon(extra: &str) -> Daemon {
    Daemon::start(
        &format!("backend = docker\ndocker_image_slave = x\n{extra}"),
        Some(TOKEN),
    )
}

/// The daemon's open file descriptors and resident memory (kB), from /proc.
fn fds_and_rss(d: &Daemon) -> (usize, u64) {
    let pid = d.pid().expect("daemon running");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

/// Opens a connection and sends half a request head.
async fn half_open(port: u16) -> Option<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .ok()?;
    Some(s)
}

async fn healthz_time(d: &Daemon) -> Duration {
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(d.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(r.status(), 200);
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_neither_starve_healthz_nor_stay_open() {
    const FLOOD: usize = 3_000;
    const LIMIT: usize = 500;
    let d = daemon(&format!("api_max_connections = {LIMIT}\n"));
    let (fds_before, _) = fds_and_rss(&d);
    let mut held = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        if let Some(s) = half_open(d.port).await {
            held.push(s);
        }
    }
    assert!(held.len() >= FLOOD * 9 / 10, "opened {}", held.len());
    let took = healthz_time(&d).await;
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    // The daemon holds at most the limit, not the flood.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (fds, _) = fds_and_rss(&d);
    assert!(
        fds <= fds_before + LIMIT + 20,
        "{fds} descriptors open with {} half-open connections (limit {LIMIT}, {fds_before} before)",
        held.len()
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, rss) = fds_and_rss(&d);
    assert!(rss < 100 * 1024, "RSS {rss} kB after the flood");
    let took = healthz_time(&d).await;
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_heads_and_idle_connections_are_closed() {
    let d = daemon("api_header_timeout = 1\napi_idle_timeout = 2\n");
    // A head never finished: closed after about a second.
    let mut slow = half_open(d.port).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
        .await
        .expect("the server closes a connection whose head never ends");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // Nothing sent at all: the same.
    let mut silent = TcpStream::connect(("127.0.0.1", d.port)).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
    // A kept-alive connection lives past the header timeout between requests, then is closed
    // once idle for api_idle_timeout.
    let mut ka = TcpStream::connect(("127.0.0.1", d.port)).await.unwrap();
    let req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    ka.write_all(req).await.unwrap();
    let n = ka.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    ka.write_all(req).await.unwrap();
    let n = ka.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "kept alive past the header timeout"
    );
    let idle_from = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(6), ka.read(&mut buf))
        .await
        .expect("an idle connection is closed");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(
        idle_from.elapsed() >= Duration::from_millis(1_800),
        "{:?}",
        idle_from.elapsed()
    );
}

async fn call(
    d: &Daemon,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = reqwest::Client::new()
        .request(method, d.url(path))
        .bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path}: {status} answer is not JSON ({e}): {text:?}"));
    (status, v, headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_naming_what_was_wrong() {
    use reqwest::Method;
    let d = daemon("");
    let (s, v, _) = call(&d, Method::GET, "/v1/nothing-here", None).await;
    assert_eq!((s, v["error"].is_string()), (404, true), "{v}");
    let (s, v, h) = call(&d, Method::DELETE, "/healthz", None).await;
    assert_eq!(s, 405, "{v}");
    assert!(v["error"].as_str().unwrap().contains("DELETE"), "{v}");
    assert!(h.get("allow").is_some(), "{h:?}");
    let (s, v, _) = call(&d, Method::POST, "/v1/events/head", Some(b"{}".to_vec())).await;
    assert_eq!(s, 405, "{v}");
    let (s, v, _) = call(&d, Method::POST, "/v1/tasks", Some(vec![b' '; 33 << 20])).await;
    assert_eq!(s, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("too large"), "{v}");

    let (s, v, _) = call(&d, Method::GET, "/v1/events?wait=NaN", None).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["field"], "wait", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("query parameter wait: expected a number of seconds ≥ 0"),
        "{v}"
    );
    for q in ["wait=-1", "limit=abc", "limit=0", "since=x"] {
        let (s, v, _) = call(&d, Method::GET, &format!("/v1/events?{q}"), None).await;
        let name = q.split('=').next().unwrap();
        assert_eq!((s, v["field"].as_str()), (400, Some(name)), "{q}: {v}");
    }
    let (s, v, _) = call(&d, Method::GET, "/v1/tasks?limit=1e9", None).await;
    assert_eq!((s, v["field"].as_str()), (400, Some("limit")), "{v}");
    // Huge values are bounded, not refused.
    let (s, v, _) = call(
        &d,
        Method::GET,
        "/v1/tasks?limit=99999999999999999999",
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v, _) = call(&d, Method::GET, "/v1/tasks/x/logs?offset=-1", None).await;
    assert_eq!((s, v["field"].as_str()), (400, Some("offset")), "{v}");
    // A misspelt parameter is refused, not ignored: `?stat=running` must not list every task.
    for (path, name) in [
        ("/v1/tasks?stat=running", "stat"),
        ("/v1/tasks?limit=5&after=3", "after"),
        ("/v1/events?after=3", "after"),
        ("/v1/tasks/x/logs?strem=stderr", "strem"),
    ] {
        let (s, v, _) = call(&d, Method::GET, path, None).await;
        assert_eq!((s, v["field"].as_str()), (400, Some(name)), "{path}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!("query parameter {name}: unknown field")),
            "{path}: {v}"
        );
    }

    // Bodies: the job-file schema, with field paths; duplicates and stray keys refused.
    for (body, field) in [
        (
            json!({"tasks": [{"command": "a", "retries": -1}]}).to_string(),
            "tasks[0].retries",
        ),
        (
            r#"{"command": "a", "cpus": 1, "cpus": 2}"#.to_string(),
            "body",
        ),
        (
            r#"{"tasks": [{"command": "a", "env": {"A": "1", "A": "2"}}]}"#.to_string(),
            "tasks[0].env",
        ),
        (
            json!({"tasks": [{"command": "a"}], "priority": 1}).to_string(),
            "priority",
        ),
        ("{not json".to_string(), "body"),
        (
            json!({"tasks": [{"command": "a"}, {"command": "b", "env": {"A": "x\0y"}}]})
                .to_string(),
            "tasks[1].env.A",
        ),
    ] {
        let (s, v, _) = call(
            &d,
            Method::POST,
            "/v1/tasks",
            Some(body.clone().into_bytes()),
        )
        .await;
        assert_eq!((s, v["field"].as_str()), (400, Some(field)), "{body}: {v}");
        let msg = v["error"].as_str().unwrap();
        if field != "body" {
            assert!(msg.starts_with(&format!("{field}: ")), "{body}: {v}");
        }
    }
    let (_, v, _) = call(
        &d,
        Method::POST,
        "/v1/tasks",
        Some(br#"{"command": "a", "cpus": 1, "cpus": 2}"#.to_vec()),
    )
    .await;
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("duplicate key `cpus`"),
        "{v}"
    );
}

#[test]
fn a_bad_job_file_exits_65_naming_file_and_field() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("airflow.cfg");
    std::fs::write(&cfg, "[mesos]\napi_listen = 127.0.0.1:9\n").unwrap();
    let job = home.path().join("hello.yaml");
    for (text, want) in [
        (
            "tasks:\n  - command: a\n    cpus: [1]\n",
            "hello.yaml: tasks[0].cpus: invalid type",
        ),
        (
            "tasks:\n  - command: a\n    env: {A: x, A: y}\n",
            "hello.yaml: tasks[0].env: duplicate key `A`",
        ),
        (
            "tasks:\n  - command: a\n    comand: b\n",
            "hello.yaml: tasks[0].comand: unknown field `comand`",
        ),
        ("tasks: [{command: a}]\nextra: 1\n", "hello.yaml: extra: "),
    ] {
        std::fs::write(&job, text).unwrap();
        let out = cli_in(home.path(), &cfg, &["submit", "-f", job.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(65), "{text}: {err}");
        assert!(
            err.contains("job file ") && err.contains(want),
            "{text}: {err}"
        );
    }
    let out = cli_in(
        home.path(),
        &cfg,
        &["submit", "-f", "/nonexistent/job.yaml"],
    );
    assert_eq!(out.status.code(), Some(66), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_byte_by_byte_is_cut_off_and_a_long_poll_is_not() {
    let d = daemon("api_header_timeout = 1\napi_body_timeout = 2\napi_idle_timeout = 30\n");
    // Head complete, body promised (100 bytes) and sent one byte a second.
    let mut slow = TcpStream::connect(("127.0.0.1", d.port)).await.unwrap();
    slow.write_all(
        format!(
            "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut closed_after = None;
    let mut buf = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(10) {
        let _ = slow.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            // An answer (408/400) then the close also ends it.
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
    }
    let took = closed_after.expect("the connection of a body that never ends is closed");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
        "closed after {took:?}"
    );
    // A request without a body that waits longer than the body timeout (a long poll) is
    // answered.
    let r = reqwest::Client::new()
        .get(d.url("/v1/events?since=0&wait=4"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
