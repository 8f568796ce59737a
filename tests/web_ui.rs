//! The web UI over HTTP, against the real daemon on the local Docker backend (image from
//! `AM_TEST_BUSYBOX`): what is reachable without a session, the login and its cookie, CSRF and
//! origin checks on kill, escaping of user input, secrets kept out of the pages. The browser
//! test (tests/web_browser.rs) drives the same pages through Chromium.

mod common;

use common::{eventually, require_env, Daemon};
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOKEN: &str = "web-ui-test-token-0123456789";

fn daemon() -> Option<Daemon> {
    let image = require_env("AM_TEST_BUSYBOX", "a local busybox image")?;
    Some(Daemon::start(
        &format!("backend = docker\ndocker_image_slave = {image}\ntask_cpu = 0.1\ntask_memory = 32\nkill_grace_period = 1\n"),
        Some(TOKEN),
    ))
}

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn page(d: &Daemon, path: &str, cookie: &str) -> (StatusCode, String) {
    let r = client()
        .get(d.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The CSRF token in a page's forms.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_session_no_page_shows_task_data() {
    let Some(d) = daemon() else { return };
    let id = d
        .api_submit(&json!({"name": "secret-name-42", "command": "true"}))
        .await;
    let c = client();
    for path in [
        "/ui/".to_string(),
        "/ui/tasks".into(),
        "/ui/tasks?state=queued".into(),
        format!("/ui/tasks/{id}"),
        format!("/ui/tasks/{id}/log?stream=stdout"),
        "/ui/agents".into(),
    ] {
        let r = c.get(d.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        let to = r.headers()[LOCATION].to_str().unwrap().to_string();
        assert!(to.contains("login"), "{path} -> {to}");
        let body = r.text().await.unwrap();
        assert!(
            !body.contains(&id) && !body.contains("secret-name-42"),
            "{path}: {body}"
        );
        // A forged cookie is no session either.
        let r = c
            .get(d.url(&path))
            .header(COOKIE, "airflow_mesos_ui=99999999999.00ff")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}, forged cookie");
    }
    for path in [format!("/ui/tasks/{id}/kill"), "/ui/logout".into()] {
        let r = c
            .post(d.url(&path))
            .form(&[("csrf", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(!r.text().await.unwrap().contains("secret-name-42"));
    }
    assert_ne!(d.api_state(&id).await, "killed");
    // What is open: the login form and the stylesheet, neither with task data.
    for path in ["/ui/login", "/ui/style.css"] {
        let r = c.get(d.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(!r.text().await.unwrap().contains("secret-name-42"));
    }
    // The Mesos UI's link (`/ui`) leads to the overview.
    let r = c.get(d.url("/ui")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "ui/");
}

#[tokio::test(flavor = "multi_thread")]
async fn login_takes_the_api_token_and_sets_a_strict_http_only_cookie() {
    let Some(d) = daemon() else { return };
    let c = client();
    let wrong = c
        .post(d.url("/ui/login"))
        .form(&[("token", "not-the-token"), ("next", "tasks")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(wrong.text().await.unwrap().contains("Wrong token"));

    let r = c
        .post(d.url("/ui/login"))
        .form(&[("token", TOKEN), ("next", "tasks?state=queued")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "tasks?state=queued");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(set.starts_with("airflow_mesos_ui="), "{set}");
    assert!(set.contains("; HttpOnly"), "{set}");
    assert!(set.contains("; SameSite=Strict"), "{set}");
    assert!(!set.contains("Secure"), "plain http: no Secure flag: {set}");
    assert!(!set.contains(TOKEN), "the cookie does not hold the token");
    let cookie = set.split(';').next().unwrap().to_string();

    let (status, body) = page(&d, "/ui/", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("id=\"backend\">docker<"), "{body}");
    // Redirects after login stay on this UI.
    for evil in [
        "//evil.example/x",
        "https://evil.example",
        "/v1/tasks",
        "../../x",
    ] {
        let r = c
            .post(d.url("/ui/login"))
            .form(&[("token", TOKEN), ("next", evil)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()[LOCATION], "./", "{evil}");
    }
    // A login posted from another site is refused.
    let r = c
        .post(d.url("/ui/login"))
        .header(ORIGIN, "http://evil.example")
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get(SET_COOKIE).is_none());
    // Pages forbid scripts and framing.
    let r = c
        .get(d.url("/ui/tasks"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(
        !csp.contains("script-src"),
        "no script allowed at all: {csp}"
    );
    // Logging out ends the cookie.
    let (_, body) = page(&d, "/ui/", &cookie).await;
    let r = c
        .post(d.url("/ui/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf_of(&body))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_from_the_ui_needs_the_csrf_token_of_the_session_and_this_origin() {
    let Some(d) = daemon() else { return };
    let id = d
        .api_submit(&json!({"name": "sleeper", "command": "sleep 60"}))
        .await;
    eventually(60, "the task running", || {
        let out = d.cli_json(&["status", &id, "--json"]);
        (out["state"] == "running").then_some(())
    });
    let cookie = d.ui_login().await;
    let (status, body) = page(&d, &format!("/ui/tasks/{id}"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("id=\"kill\""), "a kill button: {body}");
    let token = csrf_of(&body);
    let c = client();
    let kill = |csrf: String, origin: Option<&'static str>| {
        let mut req = c
            .post(d.url(&format!("/ui/tasks/{id}/kill")))
            .header(COOKIE, &cookie)
            .form(&[("csrf", csrf)]);
        if let Some(o) = origin {
            req = req.header(ORIGIN, o);
        }
        req.send()
    };
    let r = kill(String::new(), None).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no CSRF token");
    let other_session = csrf_of(&page(&d, "/ui/", &d.ui_login().await).await.1);
    let r = kill(other_session, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "another session's token");
    let r = kill(token.clone(), Some("http://evil.example"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "another site");
    assert_eq!(d.api_state(&id).await, "running", "nothing was killed");

    let own_origin: &'static str =
        Box::leak(format!("http://127.0.0.1:{}", d.port).into_boxed_str());
    let r = kill(token, Some(own_origin)).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION].to_str().unwrap(), format!("../{id}"));
    eventually(30, "the task killed", || {
        let out = d.cli_json(&["status", &id, "--json"]);
        (out["state"] == "killed").then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn user_input_is_shown_escaped_and_secrets_are_not_shown() {
    let Some(d) = daemon() else { return };
    let evil = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>";
    let id = d
        .api_submit(&json!({
            "name": evil,
            "command": "echo '<b>out</b>'; exit 3",
            "labels": {"team": "\"><svg onload=alert(2)>"},
            "secret_env": {"DB_PASSWORD": "hunter2-very-secret"},
        }))
        .await;
    eventually(60, "the task failed", || {
        let out = d.cli_json(&["status", &id, "--json"]);
        (out["state"] == "failed").then_some(())
    });
    let cookie = d.ui_login().await;
    for path in [
        "/ui/".to_string(),
        "/ui/tasks".into(),
        format!("/ui/tasks/{id}"),
        format!("/ui/tasks/{id}/log?stream=stdout"),
    ] {
        let (status, body) = page(&d, &path, &cookie).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!body.contains("<script>document"), "{path}: {body}");
        assert!(!body.contains("<img src=x"), "{path}");
        assert!(!body.contains("<svg"), "{path}");
        assert!(!body.contains("<b>out"), "{path}");
        assert!(
            !body.contains("hunter2-very-secret"),
            "{path}: the secret is shown"
        );
        if path != "/ui/tasks" || body.contains(&id) {
            assert!(
                body.contains("&lt;script&gt;document.title=") || body.contains("&lt;b&gt;out"),
                "{path}: the text itself is shown, escaped"
            );
        }
    }
    let (_, body) = page(&d, &format!("/ui/tasks/{id}"), &cookie).await;
    assert!(body.contains("DB_PASSWORD"), "secret names are shown");
    assert!(
        body.contains("&lt;b&gt;out&lt;/b&gt;"),
        "stdout tail: {body}"
    );
    assert!(body.contains("id=\"exit-code\">3<"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_filters_are_named_and_unknown_tasks_are_404() {
    let Some(d) = daemon() else { return };
    let cookie = d.ui_login().await;
    for (path, field) in [
        ("/ui/tasks?state=sleeping", "state"),
        ("/ui/tasks?label=nokey", "label"),
        ("/ui/tasks?since=abc", "since"),
        ("/ui/tasks?before=1e3", "before"),
    ] {
        let (status, body) = page(&d, path, &cookie).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(body.contains(&format!("{field}: ")), "{path}: {body}");
    }
    let (status, _) = page(&d, "/ui/tasks/t-nope", &cookie).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The local agent offers once the backend is up (moments after the API).
    let mut body = String::new();
    for _ in 0..100 {
        let (status, b) = page(&d, "/ui/agents", &cookie).await;
        assert_eq!(status, StatusCode::OK);
        body = b;
        if body.contains("id=\"agents\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        body.contains("id=\"agents\""),
        "the local agent made offers: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standbys_ui_reads_the_shared_database_and_sends_kills_to_the_leader() {
    use sqlx::Connection;
    let Some(image) = require_env("AM_TEST_BUSYBOX", "a local busybox image") else {
        return;
    };
    let Some(admin) = require_env("AM_TEST_PG_URL", "PostgreSQL (.ci/setup-databases.sh)") else {
        return;
    };
    let name = format!("amweb_{}", uuid::Uuid::new_v4().simple());
    let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    let mut db = url::Url::parse(&admin).unwrap();
    db.set_path(&format!("/{name}"));
    let ports = [common::free_port(), common::free_port()];
    let daemons: Vec<Daemon> = ports
        .iter()
        .map(|&p| {
            Daemon::start_on(
                p,
                &format!(
                    "backend = docker\ndocker_image_slave = {image}\ntask_cpu = 0.1\ntask_memory = 32\n\
                     kill_grace_period = 1\ndatabase_url = {db}\nleader_election = database\n\
                     leader_lease = 2\npublic_url = http://127.0.0.1:{p}\n"
                ),
                Some(TOKEN),
            )
        })
        .collect();
    let role = |d: &Daemon| {
        let url = d.url("/healthz");
        async move {
            let v: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
            v["role"].as_str().map(str::to_string)
        }
    };
    let mut leader = None;
    for _ in 0..100 {
        for (i, d) in daemons.iter().enumerate() {
            if role(d).await.as_deref() == Some("leader") {
                leader = Some(i);
            }
        }
        if leader.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let leader = leader.expect("a leader within 10 s");
    let (lead, standby) = (&daemons[leader], &daemons[1 - leader]);
    let id = lead
        .api_submit(&json!({"name": "sleeper", "command": "sleep 60"}))
        .await;
    eventually(60, "the task running", || {
        let out = lead.cli_json(&["status", &id, "--json"]);
        (out["state"] == "running").then_some(())
    });

    let cookie = standby.ui_login().await;
    let (_, overview) = page(standby, "/ui/", &cookie).await;
    assert!(
        overview.contains("standby: the leading daemon"),
        "{overview}"
    );
    assert!(
        overview.contains(&format!("href=\"http://127.0.0.1:{}/ui/\"", lead.port)),
        "a link to the leader's UI: {overview}"
    );
    let (status, body) = page(standby, &format!("/ui/tasks/{id}"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("id=\"state\"><span class=\"state state-running\""),
        "{body}"
    );
    let r = client()
        .post(standby.url(&format!("/ui/tasks/{id}/kill")))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf_of(&body))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text().await);
    eventually(30, "the task killed by the leader", || {
        let out = lead.cli_json(&["status", &id, "--json"]);
        (out["state"] == "killed").then_some(())
    });
    drop(daemons);
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut c)
        .await;
}
