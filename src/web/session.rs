//! Sessions of the web UI: the login form, the session cookie, CSRF tokens, the `Origin`
//! check of forms, and logout.
//!
//! A session cookie is `<expiry>.<nonce>.<mac>`: the expiry in seconds since the epoch, 16
//! random bytes, and an HMAC-SHA256, under the UI's key, of both and of a digest of the API
//! token it was made with. It is valid until it expires or the token changes. A form's CSRF token is an HMAC of
//! the session cookie under the same key, so only a page of the session can hold it.

use super::html::{self, Page};
use crate::api::AppState;
use axum::extract::{Form, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Name of the session cookie.
pub const COOKIE: &str = "airflow_mesos_ui";
/// How long a session lasts.
pub const SESSION_SECS: i64 = 12 * 3600;

type HmacSha256 = Hmac<Sha256>;

/// The session of a request that passed [`require_session`], for the pages' forms.
#[derive(Debug, Clone)]
pub struct Session {
    /// The CSRF token forms of this session carry.
    pub csrf: String,
}

/// The token the UI's login takes: the API's.
fn api_token(st: &AppState) -> Option<&str> {
    st.auth.token.as_deref()
}

fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m
}

/// A new session cookie value for `token`, valid until `now + SESSION_SECS`.
pub fn issue(key: &[u8], token: &str, now: i64) -> String {
    let expiry = (now + SESSION_SECS).to_string();
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let digest = Sha256::digest(token.as_bytes());
    let tag = mac(
        key,
        &[b"session", expiry.as_bytes(), nonce.as_bytes(), &digest],
    )
    .finalize()
    .into_bytes();
    format!("{expiry}.{nonce}.{}", hex::encode(tag))
}

/// True when `value` is a session cookie made for `token` that has not expired at `now`.
pub fn verify(key: &[u8], token: &str, value: &str, now: i64) -> bool {
    let mut parts = value.split('.');
    let (Some(expiry), Some(nonce), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(exp), Ok(tag)) = (expiry.parse::<i64>(), hex::decode(tag)) else {
        return false;
    };
    let digest = Sha256::digest(token.as_bytes());
    exp > now
        && mac(
            key,
            &[b"session", expiry.as_bytes(), nonce.as_bytes(), &digest],
        )
        .verify_slice(&tag)
        .is_ok()
}

/// The CSRF token of the session whose cookie is `session`.
pub fn csrf(key: &[u8], session: &str) -> String {
    hex::encode(
        mac(key, &[b"csrf", session.as_bytes()])
            .finalize()
            .into_bytes(),
    )
}

/// True when `given` is the CSRF token of `session` (compared in constant time).
pub fn check_csrf(key: &[u8], session: &str, given: &str) -> bool {
    hex::decode(given).is_ok_and(|g| {
        mac(key, &[b"csrf", session.as_bytes()])
            .verify_slice(&g)
            .is_ok()
    })
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// True unless the request carries a browser `Origin` that is neither the request's own host
/// nor the host of the UI's configured URL.
pub fn same_origin(st: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(authority) = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'))
    else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    Some(authority) == host || st.web.0.authority.as_deref() == Some(authority)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A `303 See Other` to `location` (relative to the request's URL).
pub fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// `../` once per level the request's path is below `/ui/`: the UI's root, relatively.
pub fn root_from(path: &str) -> String {
    let rest = path.strip_prefix("/ui/").unwrap_or("");
    "../".repeat(rest.matches('/').count())
}

/// Lets requests with a valid session through (with their [`Session`]); sends the others to
/// the login form (a `GET`) or refuses them (anything else).
pub async fn require_session(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let key = &st.web.0.key;
    let valid = match (api_token(&st), cookie(req.headers(), COOKIE)) {
        (Some(token), Some(value)) => verify(key, token, value, now()).then(|| value.to_string()),
        _ => None,
    };
    match valid {
        Some(value) => {
            req.extensions_mut().insert(Session {
                csrf: csrf(key, &value),
            });
            next.run(req).await
        }
        None if req.method() == axum::http::Method::GET => {
            let path = req.uri().path();
            let wanted = path.strip_prefix("/ui/").unwrap_or("");
            let mut location = format!("{}login", root_from(path));
            if !wanted.is_empty() {
                let mut next_url = wanted.to_string();
                if let Some(q) = req.uri().query() {
                    next_url = format!("{next_url}?{q}");
                }
                location.push_str("?next=");
                location.extend(url::form_urlencoded::byte_serialize(next_url.as_bytes()));
            }
            see_other(&location)
        }
        None => html::error_page(
            &root_from(req.uri().path()),
            StatusCode::UNAUTHORIZED,
            "not logged in (or the session expired): log in again",
        ),
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Where to go after logging in: a path under the UI's root, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if !n.is_empty()
                && !n.starts_with('/')
                && !n.contains("://")
                && !n.contains('\\')
                && !n.split(['/', '?']).any(|seg| seg == "..") =>
        {
            n.to_string()
        }
        _ => "./".to_string(),
    }
}

pub async fn login_form(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if let (Some(token), Some(value)) = (api_token(&st), cookie(&headers, COOKIE)) {
        if verify(&st.web.0.key, token, value, now()) {
            return see_other(&safe_next(q.next.as_deref()));
        }
    }
    login_page(&st, StatusCode::OK, q.next.as_deref(), None)
}

fn login_page(
    st: &AppState,
    status: StatusCode,
    next: Option<&str>,
    error: Option<&str>,
) -> Response {
    let configured = api_token(st).is_some();
    let body = html! {
        div.card.login {
            h1 { "Log in" }
            @if let Some(e) = error {
                p.error #login-error { (e) }
            }
            @if configured {
                form method="post" action="login" {
                    label for="token" { "API token" }
                    input #token type="password" name="token" autocomplete="current-password" required autofocus;
                    input type="hidden" name="next" value=(next.unwrap_or(""));
                    button #login type="submit" { "Log in" }
                }
                p.hint {
                    "The daemon's API token: " code { "[mesos] api_token" } " in airflow.cfg."
                }
            } @else {
                p.error {
                    "The web UI needs an API token: set " code { "[mesos] api_token" }
                    " and restart the daemon."
                }
            }
        }
    };
    let mut r = Page::new("Log in", "").render(None, body).into_response();
    *r.status_mut() = status;
    r
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

pub async fn login(
    State(st): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if !same_origin(&st, &headers) {
        return html::error_page("", StatusCode::FORBIDDEN, "cross-site login refused");
    }
    let key = &st.web.0.key;
    let Some(token) = api_token(&st) else {
        return login_page(&st, StatusCode::UNAUTHORIZED, f.next.as_deref(), None);
    };
    // Compare digests under the key: constant time, whatever the lengths.
    let expected = mac(key, &[b"login", token.as_bytes()])
        .finalize()
        .into_bytes();
    if mac(key, &[b"login", f.token.trim().as_bytes()])
        .verify_slice(&expected)
        .is_err()
    {
        tracing::info!("web UI: a login with a wrong token was refused");
        return login_page(
            &st,
            StatusCode::UNAUTHORIZED,
            f.next.as_deref(),
            Some("Wrong token."),
        );
    }
    let value = issue(key, token, now());
    let mut r = see_other(&safe_next(f.next.as_deref()));
    let cookie = format!(
        "{COOKIE}={value}; Max-Age={SESSION_SECS}; HttpOnly; SameSite=Strict{}",
        if st.web.0.secure { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// Checks a form post of a session: same origin and the session's CSRF token.
pub fn check_form(st: &AppState, headers: &HeaderMap, form: &CsrfForm) -> Result<(), &'static str> {
    if !same_origin(st, headers) {
        return Err("cross-site request refused");
    }
    let session = cookie(headers, COOKIE).unwrap_or_default();
    if !check_csrf(&st.web.0.key, session, &form.csrf) {
        return Err("this form is stale or was not sent by this UI (CSRF token): reload the page");
    }
    Ok(())
}

pub async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(e) = check_form(&st, &headers, &f) {
        return html::error_page("", StatusCode::FORBIDDEN, e);
    }
    let mut r = see_other("login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("airflow_mesos_ui=; Max-Age=0; HttpOnly; SameSite=Strict"),
    );
    r
}
