//! Writes on a standby daemon: a submission or a kill sent to a daemon that does not lead is
//! forwarded to the leader (the address it published with its lease) and the leader's answer
//! is returned as is, so clients need not know which daemon leads. Reads are answered by every
//! daemon from the shared state database.

use super::{ApiError, AppState};
use crate::leader::Role;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Marks a request a daemon forwarded, so that it is never forwarded twice (two daemons that
/// each believe the other leads would otherwise bounce it).
pub const FORWARDED: HeaderName = HeaderName::from_static("x-airflow-mesos-forwarded");

/// Headers passed on to the leader.
const PASSED: [HeaderName; 3] = [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT];

/// Middleware of the write routes: runs the handler on the leader, forwards on a standby.
pub async fn writes_to_the_leader(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let role = st.role.borrow().clone();
    let leader = match role {
        Role::Leader { .. } => return next.run(req).await,
        Role::Standby { leader } => leader,
    };
    let unavailable = |why: &str| {
        let mut r = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why.to_string()).into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    };
    let Some(leader) = leader else {
        return unavailable("this daemon stands by and no leader is elected yet; retry shortly");
    };
    if req.headers().contains_key(&FORWARDED) {
        return unavailable("forwarded here, but this daemon does not lead (the leadership is changing); retry shortly");
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = to_bytes(body, super::MAX_BODY).await else {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            .into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{path}", leader.trim_end_matches('/'));
    let mut out = st
        .http
        .request(parts.method.clone(), &url)
        .header(FORWARDED, "1")
        .body(body);
    for name in PASSED {
        if let Some(v) = parts.headers.get(&name) {
            out = out.header(name, v);
        }
    }
    match out.send().await {
        Ok(resp) => {
            let status = resp.status();
            let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
            let bytes = resp.bytes().await.unwrap_or_default();
            let mut r = Response::new(Body::from(bytes));
            *r.status_mut() = status;
            if let Some(ct) = content_type {
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            r
        }
        Err(e) => {
            tracing::warn!(%leader, error = %e, "cannot forward a write to the leader");
            unavailable(&format!(
                "this daemon stands by and cannot reach the leader at {leader}; retry shortly"
            ))
        }
    }
}
