//! The web UI in a real browser: Debian's headless Chromium driven over WebDriver
//! (`chromedriver`, from `chromium-driver`) by fantoccini, against the daemon on the local
//! Docker backend. `.ci/setup-browser.sh` installs both and writes `AM_TEST_CHROMIUM` and
//! `AM_TEST_CHROMEDRIVER`; with `CI=true` their absence fails the test.
//!
//! The story: a wrong token is refused; the right one logs in; a task waits queued behind
//! another that holds the only CPU, the blocker is killed from its page, the queued task runs,
//! its page goes to `succeeded` by itself and shows its stdout; a task named with HTML stays
//! text. Screenshots of the overview (desktop and phone width) and of the task's page are
//! saved under `target/tmp/web-ui/` (the README's picture is a copy of `overview.png`).

mod common;

use common::{free_port, require_env, Daemon};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "browser-test-token-9f8e7d6c5b4a";

/// A chromedriver process, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_chromedriver(bin: &str) -> Driver {
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let d = Driver { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

async fn browser(driver: &Driver, chromium: &str) -> Client {
    let caps = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            // --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--hide-scrollbars", "--force-device-scale-factor=1"]
        }
    });
    let caps = match caps {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with Chromium")
}

/// Waits (up to 30 s) until the API says task `id` is in state `want`.
async fn wait_api_state(d: &Daemon, id: &str, want: &str) {
    for _ in 0..300 {
        if d.api_state(id).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "task {id} is not {want} after 30 s: {}",
        d.api_state(id).await
    );
}

/// The text of `css`, waiting up to 10 s for it to appear (a click may return before the
/// next page has loaded).
async fn text(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Waits until the text of `css` on the current page (reloaded by the page itself, or by us
/// when `reload`) satisfies `ok`.
async fn wait_text(
    c: &Client,
    css: &str,
    secs: u64,
    reload: bool,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                if ok(&t) {
                    return t;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on {css}: {:?}",
            text(c, "main").await
        );
        if reload {
            c.refresh().await.unwrap();
        } else {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn log_in(c: &Client, token: &str) {
    c.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    c.find(Locator::Css("#login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// True when the page does not scroll sideways (tables scroll inside their boxes).
async fn fits_the_width(c: &Client) -> Value {
    c.execute(
        "return document.documentElement.scrollWidth <= window.innerWidth;",
        vec![],
    )
    .await
    .unwrap()
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-ui");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_logs_in_watches_a_task_reads_its_log_and_kills_another() {
    let Some(driver_bin) = require_env(
        "AM_TEST_CHROMEDRIVER",
        "chromedriver (.ci/setup-browser.sh)",
    ) else {
        return;
    };
    let Some(chromium) = require_env("AM_TEST_CHROMIUM", "Chromium (.ci/setup-browser.sh)") else {
        return;
    };
    let Some(image) = require_env("AM_TEST_BUSYBOX", "a local busybox image") else {
        return;
    };
    // One CPU: a task holding it keeps the next one queued.
    let d = Daemon::start(
        &format!("backend = docker\ndocker_image_slave = {image}\ntask_cpu = 1\ntask_memory = 32\nlocal_cpus = 1\nlocal_memory = 1024\nkill_grace_period = 1\nframework_name = airflow-mesos\n"),
        Some(TOKEN),
    );
    let driver = start_chromedriver(&driver_bin);
    let c = browser(&driver, &chromium).await;
    let ui = d.url("/ui/");

    // A wrong token is refused: the form again, an error, no cookie.
    c.goto(&ui).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));
    log_in(&c, "not-the-token").await;
    assert_eq!(text(&c, "#login-error").await, "Wrong token.");
    assert!(
        c.get_all_cookies().await.unwrap().is_empty(),
        "no session cookie"
    );
    assert!(
        c.find(Locator::Css("#counts")).await.is_err(),
        "no overview"
    );

    // The right one: the overview.
    c.goto(&ui).await.unwrap();
    log_in(&c, TOKEN).await;
    assert_eq!(text(&c, "#backend").await, "docker");
    assert_eq!(c.current_url().await.unwrap().path(), "/ui/");
    let cookies = c.get_all_cookies().await.unwrap();
    assert_eq!(cookies.len(), 1);
    assert_eq!(cookies[0].http_only(), Some(true));
    assert_eq!(format!("{:?}", cookies[0].same_site()), "Some(Strict)");

    // Something for the overview to show: one success, one failure with its message.
    d.api_submit(&json!({"name": "extract-orders", "command": "echo extracted 1200 rows", "labels": {"team": "data"}})).await;
    let failing = d.api_submit(&json!({"name": "load-warehouse", "command": "echo 'connection refused' >&2; exit 3", "labels": {"team": "data"}})).await;
    wait_api_state(&d, &failing, "failed").await;

    // A blocker holds the only CPU; the watched task waits queued behind it.
    let blocker = d
        .api_submit(&json!({"name": "long-backfill", "command": "sleep 600"}))
        .await;
    wait_api_state(&d, &blocker, "running").await;
    let watched = d.api_submit(&json!({"name": "report-daily", "command": "sleep 1; echo hello-from-the-browser-test; echo done >&2"}),
    )
    .await;
    c.goto(&format!("{ui}tasks/{watched}")).await.unwrap();
    assert_eq!(text(&c, "#state").await, "queued");
    assert_eq!(text(&c, "h1").await, "report-daily queued");

    // From the task list to the blocker's page; kill it there.
    c.goto(&format!("{ui}tasks?state=running")).await.unwrap();
    c.find(Locator::LinkText("long-backfill"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text(&c, "#state").await, "running");
    c.find(Locator::Css("#kill"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#state", 30, true, |s| s == "killed").await;
    assert!(c
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with(&format!("/ui/tasks/{blocker}")));
    assert!(
        c.find(Locator::Css("#kill")).await.is_err(),
        "no kill button once ended"
    );

    // The watched task runs now; its page follows it by itself (meta refresh) to the end.
    c.goto(&format!("{ui}tasks/{watched}")).await.unwrap();
    let seen = wait_text(&c, "#state", 60, false, |s| s == "succeeded").await;
    assert_eq!(seen, "succeeded");
    assert_eq!(
        text(&c, "#stdout").await.trim(),
        "hello-from-the-browser-test"
    );
    assert_eq!(text(&c, "#stderr").await.trim(), "done");
    assert_eq!(text(&c, "#image").await, format!("{image} (default)"));
    assert_eq!(
        text(&c, "#resources").await,
        "cpus 1 (default) · mem 32 MB (default)"
    );
    let history = text(&c, "#history").await;
    for s in ["queued", "launching", "running", "succeeded"] {
        assert!(history.contains(s), "{s} in the history: {history}");
    }
    std::fs::write(artifacts().join("task.png"), c.screenshot().await.unwrap()).unwrap();
    // The whole log, on its own page.
    c.find(Locator::LinkText("Whole stdout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text(&c, "#log").await.trim(), "hello-from-the-browser-test");

    // HTML in a task's name is text, not markup, in the browser too.
    let name = "<img src=x onerror=\"document.title='pwned'\">";
    let evil = d
        .api_submit(&json!({"name": name, "command": "true"}))
        .await;
    c.goto(&format!("{ui}tasks/{evil}")).await.unwrap();
    assert!(text(&c, "h1").await.starts_with(name));
    assert!(c.find_all(Locator::Css("img")).await.unwrap().is_empty());
    // Had the handler run, the title would be just `pwned`.
    assert_eq!(c.title().await.unwrap(), format!("{name} · airflow-mesos"));

    // The overview, for the README; then at a phone's width, which must not scroll sideways.
    c.goto(&ui).await.unwrap();
    // (The counts are reused for 2 s: reload until they include the last task.)
    wait_text(&c, "#count-succeeded", 30, true, |n| n == "3").await;
    assert_eq!(text(&c, "#count-failed").await, "1");
    assert_eq!(text(&c, "#count-killed").await, "1");
    let failures = text(&c, "#failures").await;
    assert!(
        failures.contains("load-warehouse") && failures.contains("exited with code 3"),
        "{failures}"
    );
    let dir = artifacts();
    std::fs::write(dir.join("overview.png"), c.screenshot().await.unwrap()).unwrap();
    c.set_window_size(390, 844).await.unwrap();
    c.refresh().await.unwrap();
    let fits = fits_the_width(&c).await;
    assert_eq!(fits, Value::Bool(true), "the overview fits a phone's width");
    std::fs::write(
        dir.join("overview-phone.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    c.goto(&format!("{ui}tasks")).await.unwrap();
    let fits = fits_the_width(&c).await;
    assert_eq!(
        fits,
        Value::Bool(true),
        "the task list fits a phone's width (its table scrolls inside)"
    );
    eprintln!("screenshots in {}", dir.display());
    c.close().await.unwrap();
}
