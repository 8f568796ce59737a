//! Query strings and error answers of the API.
//!
//! [`ApiQuery`] parses a query string into a struct and, when a parameter is wrong, answers 400
//! `{"error": "query parameter <name>: <what was expected>", "field": "<name>"}`. The
//! deserializers below give each kind of parameter its message and its bounds.
//!
//! [`json_errors`] turns every error answer that is not JSON yet (axum's own: an unknown
//! method, a body over the size limit, a bad path parameter) into `{"error": ...}`, so a client
//! of `/v1` always gets JSON.

use super::ApiError;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;

/// Largest page of a listing (`limit` on `GET /v1/tasks` and `GET /v1/events`); a larger
/// `limit` gets this many.
pub const MAX_PAGE: u32 = 10_000;
/// Longest long poll (`wait` on `GET /v1/events`), in seconds; a longer `wait` waits this long.
pub const MAX_WAIT_SECS: f64 = 60.0;

/// A query string parsed into `T`, or 400 naming the parameter at fault.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(ApiQuery)
    }
}

/// Parses a query string (`a=1&b=x`) into `T`; the error names the parameter.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // A duplicate parameter is reported at the top level, naming it in the message.
        let name = if path == "." {
            inner.split('`').nth(1).unwrap_or("").to_string()
        } else {
            path
        };
        if name.is_empty() {
            ApiError::new(StatusCode::BAD_REQUEST, format!("query string: {inner}")).field("query")
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("query parameter {name}: {inner}"),
            )
            .field(name)
        }
    })
}

fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// `wait`: seconds, ≥ 0, at most [`MAX_WAIT_SECS`] (more waits that long).
pub fn wait_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let Some(t) = text(d)? else { return Ok(None) };
    match t.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v.min(MAX_WAIT_SECS))),
        _ => Err(D::Error::custom(format!(
            "expected a number of seconds ≥ 0 (at most {MAX_WAIT_SECS} are waited), not `{}`",
            shorten(&t)
        ))),
    }
}

/// `limit`: a page size from 1 to [`MAX_PAGE`] (more gets [`MAX_PAGE`]).
pub fn page_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(t) = text(d)? else { return Ok(None) };
    match t.trim().parse::<u128>() {
        Ok(v) if v >= 1 => Ok(Some(v.min(MAX_PAGE as u128) as u32)),
        _ => Err(D::Error::custom(format!(
            "expected a whole number from 1 to {MAX_PAGE}, not `{}`",
            shorten(&t)
        ))),
    }
}

/// `since`: a position in the change feed (a `cursor` from an earlier answer), ≥ 0.
pub fn feed_position<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(t) = text(d)? else { return Ok(None) };
    match t.trim().parse::<i64>() {
        Ok(v) if v >= 0 => Ok(Some(v)),
        _ => Err(D::Error::custom(format!(
            "expected a change-feed position (a cursor: a whole number ≥ 0), not `{}`",
            shorten(&t)
        ))),
    }
}

/// `offset`: a byte offset, ≥ 0.
pub fn byte_offset<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(t) = text(d)? else { return Ok(None) };
    t.trim().parse::<u64>().map(Some).map_err(|_| {
        D::Error::custom(format!(
            "expected a byte offset (a whole number ≥ 0), not `{}`",
            shorten(&t)
        ))
    })
}

/// `length`: a number of bytes, ≥ 0, at most `max` (more gets `max`).
pub fn byte_length<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let Some(t) = text(d)? else { return Ok(None) };
    t.trim()
        .parse::<u128>()
        .map(|v| Some(v.min(usize::MAX as u128) as usize))
        .map_err(|_| {
            D::Error::custom(format!(
                "expected a number of bytes (a whole number ≥ 0), not `{}`",
                shorten(&t)
            ))
        })
}

fn shorten(t: &str) -> String {
    t.chars().take(40).collect()
}

/// Makes every error answer outside the web UI JSON: `{"error": ...}` (with the `Allow` and
/// other headers kept). Answers that are JSON already, and the web UI's pages, pass unchanged.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let ui = req.uri().path().starts_with("/ui");
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(200).collect();
    let res = next.run(req).await;
    let status = res.status();
    if ui || !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            format!("method {method} is not allowed on {path} (allowed: {allow})")
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("request body too large: at most {} bytes", super::MAX_BODY)
        }
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
        _ => text,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let mut res = ApiError::new(status, message).into_response();
    for (name, value) in parts.headers.iter() {
        res.headers_mut().insert(name.clone(), value.clone());
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Q {
        #[serde(default, deserialize_with = "wait_seconds")]
        wait: Option<f64>,
        #[serde(default, deserialize_with = "page_size")]
        limit: Option<u32>,
        #[serde(default, deserialize_with = "feed_position")]
        since: Option<i64>,
        state: Option<String>,
    }

    fn err(q: &str) -> (String, String) {
        let e = parse_query::<Q>(q).unwrap_err();
        (e.message.clone(), e.field.clone().unwrap_or_default())
    }

    #[test]
    fn bad_parameters_are_named() {
        let (m, f) = err("wait=NaN");
        assert_eq!(f, "wait");
        assert!(
            m.starts_with("query parameter wait: expected a number of seconds ≥ 0"),
            "{m}"
        );
        for q in ["wait=-1", "wait=inf", "wait=x", "wait="] {
            assert_eq!(err(q).1, "wait", "{q}");
        }
        let (m, f) = err("limit=abc");
        assert_eq!(f, "limit");
        assert!(m.contains("from 1 to 10000"), "{m}");
        assert_eq!(err("limit=0").1, "limit");
        assert_eq!(err("limit=-3").1, "limit");
        let (m, f) = err("since=-1");
        assert_eq!(f, "since", "{m}");
        let (m, f) = err("state=a&state=b");
        assert_eq!(f, "state", "{m}");
    }

    #[test]
    fn large_values_are_bounded() {
        let q: Q = parse_query("wait=1e300&limit=99999999999999999999&since=5").unwrap();
        assert_eq!(q.wait, Some(MAX_WAIT_SECS));
        assert_eq!(q.limit, Some(MAX_PAGE));
        assert_eq!(q.since, Some(5));
        let q: Q = parse_query("").unwrap();
        assert!(q.wait.is_none() && q.limit.is_none() && q.state.is_none());
    }
}
