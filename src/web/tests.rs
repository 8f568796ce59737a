//! Unit tests of the web UI: sessions and CSRF tokens, relative links, escaping, and the pages
//! rendered from a real store.
use super::session::{check_csrf, cookie, csrf, issue, root_from, verify, SESSION_SECS};
use super::{counts, html, WebConfig};
use crate::api::{AppState, Auth, LogSource};
use crate::store::Store;
use crate::task::{TaskRecord, TaskSpec, TaskState};
use axum::http::{header, HeaderMap, HeaderValue};
use std::sync::Arc;
use std::time::Duration;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

#[test]
fn a_session_holds_until_it_expires_or_the_token_changes() {
    let now = 1_800_000_000;
    let c = issue(KEY, "tok", now);
    assert!(verify(KEY, "tok", &c, now));
    assert!(verify(KEY, "tok", &c, now + SESSION_SECS - 1));
    assert!(!verify(KEY, "tok", &c, now + SESSION_SECS), "expired");
    assert!(!verify(KEY, "other-token", &c, now), "the token changed");
    assert!(
        !verify(b"another key", "tok", &c, now),
        "another daemon's key"
    );
    // A later expiry with the old MAC, a cut MAC, garbage: refused.
    let (exp, rest) = c.split_once('.').unwrap();
    let later = format!("{}.{rest}", exp.parse::<i64>().unwrap() + 3600);
    assert!(!verify(KEY, "tok", &later, now));
    assert!(!verify(KEY, "tok", &c[..c.len() - 2], now));
    assert_ne!(
        issue(KEY, "tok", now),
        c,
        "each login is a session of its own"
    );
    for junk in [
        "",
        ".",
        "x.y",
        "123",
        "123.",
        ".abcd",
        "1.2.3.4",
        &format!("{c}.00"),
    ] {
        assert!(!verify(KEY, "tok", junk, now), "{junk:?}");
    }
    assert!(!c.contains("tok"), "the cookie does not carry the token");
}

#[test]
fn csrf_tokens_belong_to_one_session() {
    let a = issue(KEY, "tok", 1);
    let b = issue(KEY, "tok", 1);
    let t = csrf(KEY, &a);
    assert!(check_csrf(KEY, &a, &t));
    assert!(!check_csrf(KEY, &b, &t), "another session's token");
    assert!(!check_csrf(KEY, &a, ""));
    assert!(!check_csrf(KEY, &a, "zz"));
    assert!(!check_csrf(KEY, &a, &t[..t.len() - 2]));
}

#[test]
fn the_session_cookie_is_found_among_others() {
    let mut h = HeaderMap::new();
    h.append(
        header::COOKIE,
        HeaderValue::from_static("a=1; airflow_mesos_ui=9.ab"),
    );
    h.append(header::COOKIE, HeaderValue::from_static("b=2"));
    assert_eq!(cookie(&h, "airflow_mesos_ui"), Some("9.ab"));
    assert_eq!(cookie(&h, "b"), Some("2"));
    assert_eq!(cookie(&h, "airflow_mesos"), None);
}

#[test]
fn pages_find_the_ui_root_relatively() {
    assert_eq!(root_from("/ui/"), "");
    assert_eq!(root_from("/ui/tasks"), "");
    assert_eq!(root_from("/ui/tasks/t-1"), "../");
    assert_eq!(root_from("/ui/tasks/t-1/log"), "../../");
}

#[test]
fn values_are_escaped_and_urls_encoded() {
    let m = html::state(crate::task::TaskState::Failed);
    assert_eq!(m.0, r#"<span class="state state-failed">failed</span>"#);
    let page = html::Page::new("<script>x</script>", "")
        .render(None, maud::html! { p { ("<img src=x onerror=alert(1)>") } });
    assert!(!page.0.contains("<script>x"), "{}", page.0);
    assert!(!page.0.contains("<img src=x"), "{}", page.0);
    assert!(page.0.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert_eq!(html::seg("t-1/../x y"), "t-1%2F%2E%2E%2Fx%20y");
    assert_eq!(html::seg(".."), "%2E%2E");
    assert_eq!(
        html::query(&[("label", "a=b&c"), ("state", ""), ("x", "\"")]),
        "label=a%3Db%26c&x=%22"
    );
    assert_eq!(html::clip("héllo wörld", 5), "héllo…");
    assert_eq!(html::clip("short", 10), "short");
}

fn app_state(store: Store, counts_ttl: Duration) -> AppState {
    let defaults = crate::task::SpecDefaults {
        image: None,
        cpus: 1.0,
        mem: 256.0,
        disk: 0.0,
        max_mem: None,
        max_cpus: None,
        containerizer: crate::task::Containerizer::Docker,
        uncontainerized: false,
    };
    let mut web = WebConfig::new(KEY, "http://127.0.0.1:11000/ui/", defaults);
    Arc::get_mut(&mut web.0).unwrap().counts_ttl = counts_ttl;
    AppState {
        store,
        driver: crate::driver::channel().0,
        files: Arc::new(crate::onetime::OneTimeFiles::new(None, KEY, None)),
        auth: Auth {
            token: Some("tok".into()),
            basic: None,
        },
        logs: LogSource::Agents,
        http: reqwest::Client::new(),
        backend: "mesos",
        web,
        role: tokio::sync::watch::channel(crate::leader::Role::Leader { term: 0 }).1,
        allowed_origins: Vec::new().into(),
    }
}

#[tokio::test]
async fn counts_are_the_last_ones_while_a_new_count_runs_in_the_background() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let st = app_state(store.clone(), Duration::ZERO);
    let first = counts(&st)
        .await
        .expect("the first view waits for the first count");
    assert_eq!(first.counts.values().sum::<u64>(), 0);
    // (Counting is redone after twenty times what it took: make that now.)
    st.web.0.counts.lock().unwrap().as_mut().unwrap().took = Duration::ZERO;
    store
        .insert_tasks(&[TaskRecord::queued("t-1", TaskSpec::shell("true"), 1)], 1)
        .await
        .unwrap();
    let done = st.web.0.counted.notified();
    tokio::pin!(done);
    done.as_mut().enable();
    let second = counts(&st).await.unwrap();
    assert_eq!(
        second.counts.values().sum::<u64>(),
        0,
        "the last count, at once"
    );
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("a count in the background");
    let third = counts(&st).await.unwrap();
    assert_eq!(
        third.counts[&TaskState::Queued],
        1,
        "the background count's"
    );

    // Within the TTL, no new count starts.
    let st = app_state(store.clone(), Duration::from_secs(3600));
    counts(&st).await.unwrap();
    counts(&st).await.unwrap();
    assert!(!st.web.0.counting.load(std::sync::atomic::Ordering::Acquire));
}
