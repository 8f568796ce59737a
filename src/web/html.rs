//! The UI's page layout, its stylesheet and the small formatting helpers the pages share.
//! Every value goes through maud's escaping; URLs are built with percent-encoding.

use super::session::Session;
use crate::task::TaskState;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

const STYLE: &str = include_str!("style.css");

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// A page: its title, the UI's root relative to it, and whether it reloads itself.
pub struct Page<'a> {
    pub title: &'a str,
    /// `./`-relative path from the page to the UI's root (`""`, `"../"`, ...).
    pub root: &'a str,
    /// Seconds after which the browser reloads the page (no script needed).
    pub refresh: Option<u32>,
}

impl<'a> Page<'a> {
    pub fn new(title: &'a str, root: &'a str) -> Page<'a> {
        Page {
            title,
            root,
            refresh: None,
        }
    }

    pub fn refresh(mut self, secs: u32) -> Page<'a> {
        self.refresh = Some(secs);
        self
    }

    /// The whole document around `body`; the navigation and logout button with a session.
    pub fn render(&self, session: Option<&Session>, body: Markup) -> Markup {
        let base = if self.root.is_empty() {
            "./"
        } else {
            self.root
        };
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    @if let Some(s) = self.refresh {
                        meta http-equiv="refresh" content=(s);
                    }
                    base href=(base);
                    title { (self.title) " · airflow-mesos" }
                    link rel="stylesheet" href="style.css";
                }
                body {
                    header {
                        a.brand href="./" { "airflow-mesos" }
                        @if let Some(s) = session {
                            nav {
                                a href="./" { "Overview" }
                                a href="tasks" { "Tasks" }
                                a href="agents" { "Agents" }
                                form.logout method="post" action="logout" {
                                    input type="hidden" name="csrf" value=(s.csrf);
                                    button.link type="submit" { "Log out" }
                                }
                            }
                        }
                    }
                    main { (body) }
                }
            }
        }
    }
}

/// An error page with `status`.
pub fn error_page(root: &str, status: StatusCode, message: &str) -> Response {
    let body = html! {
        div.card {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error #error { (message) }
            p { a href="./" { "Back to the overview" } }
        }
    };
    let mut r = Page::new("Error", root).render(None, body).into_response();
    *r.status_mut() = status;
    r
}

/// The state as a coloured badge.
pub fn state(s: TaskState) -> Markup {
    html! { span class={ "state state-" (s.as_str()) } { (s.as_str()) } }
}

/// `2026-12-05 10:00:01Z` with the age as a tooltip-free suffix (`3 min ago`).
pub fn when(ms: i64, now_ms: i64) -> Markup {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    html! {
        time datetime=(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) {
            (t.format("%Y-%m-%d %H:%M:%SZ").to_string())
            " " span.ago { "(" (ago(ms, now_ms)) ")" }
        }
    }
}

/// `12 s ago`, `3 min ago`, `5 h ago`, `2 d ago`.
pub fn ago(ms: i64, now_ms: i64) -> String {
    let s = (now_ms - ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// What a path segment keeps as is: letters, digits, `-`, `_` and `~` (task ids are
/// `t-<hex>`); a `.` is encoded so that no id becomes a `..` segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// One path segment, percent-encoded.
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// `name=value&...`, form-encoded, the empty values left out.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        q.append_pair(k, v);
    }
    q.finish()
}

/// At most `max` characters of `s`, with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
