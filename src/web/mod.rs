//! The web UI, served by the daemon under `/ui/` and registered with Mesos as the framework's
//! `webui_url`: server-rendered HTML (maud, which escapes every interpolated value), no
//! JavaScript, usable on a phone.
//!
//! | path | page |
//! |---|---|
//! | `/ui/` | overview: backend, subscription, framework id, tasks by state, recent failures |
//! | `/ui/tasks?state=&label=k=v&external_key=&since=&before=` | tasks, newest change first, paged |
//! | `/ui/tasks/{id}` | one task: spec (secrets as `***`), attempts, history, log tails; kill |
//! | `/ui/tasks/{id}/log?stream=&offset=` | a task's stdout or stderr, 64 KiB at a time |
//! | `/ui/agents` | the agents and the latest offers the daemon has seen |
//! | `/ui/login` | the login form (the API token) |
//!
//! # Access
//! Every page but the login form and the stylesheet needs a session. The login form takes the
//! API token and sets a cookie (`HttpOnly`, `SameSite=Strict`, `Secure` when the UI's URL is
//! https) holding an expiry and an HMAC of it and of the token, under a key kept in the state
//! database: changing the token ends every session, and nothing else is stored. Forms that
//! change something (kill, logout) carry a CSRF token derived from the session; a browser's
//! `Origin`, when sent, must be the UI's own. Pages are sent with a `Content-Security-Policy`
//! that allows no script at all.
//!
//! # Links
//! Every page names the UI's root in `<base href>` relatively (`./`, `../`), and every link
//! and redirect is relative, so the UI works unchanged behind a proxy that serves it under a
//! path of its own.
//!
//! # Cost
//! No page reads more than a bounded number of rows, whatever the number of tasks stored
//! (`store::db::browse`). The counts by state are the one read that grows with the table (an
//! index-only count): pages never wait for it. They show the last count, and a count older
//! than [`COUNTS_TTL`] (or twenty times as long as counting took) is redone in the background,
//! one at a time; only the first view after a start waits for it, at most
//! [`FIRST_COUNT_WAIT`].

mod html;
mod pages;
mod session;

use crate::api::AppState;
use crate::config::Config;
use crate::task::TaskState;
use axum::http::{header, HeaderValue};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The least time the counts by state are shown before they are counted again.
pub const COUNTS_TTL: Duration = Duration::from_secs(2);
/// How long the first view after a start waits for the first count.
pub const FIRST_COUNT_WAIT: Duration = Duration::from_millis(50);

/// Name of the key in the state database that signs session cookies and CSRF tokens.
pub const SESSION_KEY_NAME: &str = "web-sessions";

/// What the UI needs beyond the API's state. Cheap to clone.
#[derive(Clone)]
pub struct WebConfig(Arc<Inner>);

struct Inner {
    key: Vec<u8>,
    /// Cookies get `Secure` (the UI is reached over https).
    secure: bool,
    /// `host[:port]` of the UI's URL: a browser `Origin` that may post forms, besides the
    /// request's own `Host`.
    authority: Option<String>,
    counts: Mutex<Option<Counted>>,
    /// What a task that names no image or resources gets (`[mesos]` defaults).
    defaults: crate::task::SpecDefaults,
    /// [`COUNTS_TTL`] (shorter in tests).
    counts_ttl: Duration,
    /// A count is under way.
    counting: std::sync::atomic::AtomicBool,
    counted: tokio::sync::Notify,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("secure", &self.0.secure)
            .field("authority", &self.0.authority)
            .finish_non_exhaustive()
    }
}

impl WebConfig {
    /// `key` signs sessions; `ui_url` is where browsers reach the UI ([`ui_url`]); `defaults`
    /// are shown for what a task's spec leaves out.
    pub fn new(key: &[u8], ui_url: &str, defaults: crate::task::SpecDefaults) -> WebConfig {
        let parsed = url::Url::parse(ui_url).ok();
        WebConfig(Arc::new(Inner {
            key: key.to_vec(),
            secure: parsed.as_ref().is_some_and(|u| u.scheme() == "https"),
            authority: parsed.as_ref().and_then(|u| {
                let host = u.host_str()?;
                Some(match u.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host.to_string(),
                })
            }),
            counts: Mutex::new(None),
            defaults,
            counts_ttl: COUNTS_TTL,
            counting: std::sync::atomic::AtomicBool::new(false),
            counted: tokio::sync::Notify::new(),
        }))
    }
}

/// The URL at which browsers reach the UI, registered as `FrameworkInfo.webui_url`:
/// `<public_url>/ui/` when `public_url` is set (the address agents, and so the cluster's
/// operators, reach the daemon at), else `<api_url>/ui/`; a loopback `api_url` of a daemon
/// listening beyond loopback is replaced by the machine's hostname, which other machines can
/// reach.
pub fn ui_url(cfg: &Config) -> String {
    if let Some(p) = &cfg.public_url {
        return format!("{}/ui/", p.trim_end_matches('/'));
    }
    // `api_url` may list several daemons: the first one's.
    let base = cfg
        .api_url
        .split(',')
        .next()
        .unwrap_or("")
        .trim_end_matches('/');
    if let Ok(mut u) = url::Url::parse(base) {
        let loopback = match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        if loopback && !cfg.api_listen.ip().is_loopback() {
            let host = crate::docker::local::hostname();
            if u.set_host(Some(&host)).is_ok() {
                return format!("{}/ui/", u.as_str().trim_end_matches('/'));
            }
        }
    }
    format!("{base}/ui/")
}

/// The UI's routes, merged into the API's router.
pub fn routes(state: AppState) -> Router<AppState> {
    let protected = Router::new()
        .route("/ui/", get(pages::overview))
        .route("/ui/tasks", get(pages::tasks))
        .route("/ui/tasks/{id}", get(pages::task))
        .route("/ui/tasks/{id}/log", get(pages::log))
        .route("/ui/tasks/{id}/kill", post(pages::kill))
        .route("/ui/agents", get(pages::agents))
        .route("/ui/logout", post(session::logout))
        .route_layer(middleware::from_fn_with_state(
            state,
            session::require_session,
        ));
    Router::new()
        .route("/ui", get(|| async { session::see_other("ui/") }))
        .route("/ui/style.css", get(html::stylesheet))
        .route("/ui/login", get(session::login_form).post(session::login))
        .merge(protected)
        .layer(middleware::map_response(security_headers))
}

/// Headers every UI answer carries: no script, no framing, no caching, no sniffing.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             base-uri 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// The tasks by state, as last counted.
#[derive(Debug, Clone)]
pub struct Counted {
    pub counts: BTreeMap<TaskState, u64>,
    pub at: Instant,
    /// How long counting took.
    pub took: Duration,
}

/// The last counts by state (None until the first count is done); starts a count in the
/// background when they are older than [`COUNTS_TTL`] or twenty times what counting takes.
async fn counts(st: &AppState) -> Option<Counted> {
    use std::sync::atomic::Ordering;
    let inner = &st.web.0;
    let last = inner
        .counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let stale = last
        .as_ref()
        .is_none_or(|c| c.at.elapsed() > inner.counts_ttl.max(c.took * 20));
    let notified = inner.counted.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    if stale && !inner.counting.swap(true, Ordering::AcqRel) {
        let (store, web) = (st.store.clone(), st.web.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            match store.counts().await {
                Ok(counts) => {
                    *web.0.counts.lock().unwrap_or_else(|e| e.into_inner()) = Some(Counted {
                        counts,
                        at: Instant::now(),
                        took: t.elapsed(),
                    });
                }
                Err(e) => tracing::warn!(error = %e, "web UI: counting tasks by state failed"),
            }
            web.0.counting.store(false, Ordering::Release);
            web.0.counted.notify_waiters();
        });
    }
    if last.is_some() {
        return last;
    }
    let _ = tokio::time::timeout(FIRST_COUNT_WAIT, notified).await;
    inner
        .counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

#[cfg(test)]
mod tests;
