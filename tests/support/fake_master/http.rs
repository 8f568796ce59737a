//! The fake master's HTTP surface (axum): the scheduler endpoint with the master's checks in the
//! master's order (reference §2.4) and its exact error texts, the subscription stream (RecordIO
//! of protobuf or JSON events), the read-only master endpoints, and a fake agent's
//! `/files/read` and `/slave(1)/state`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use airflow_mesos::mesos::proto::scheduler::{call, Call, Event};
use airflow_mesos::mesos::recordio::encode_record;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use prost::Message as _;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::cut::{Conn, Cut};
use super::mesos_json::{JsonError, Schema};
use super::state::{event_heartbeat, Leadership, StreamMsg};
use super::{RecordedCall, Shared};

const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf";
const CALL: &str = "mesos.v1.scheduler.Call";
const EVENT: &str = "mesos.v1.scheduler.Event";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/scheduler", any(scheduler))
        .route("/master/api/v1/scheduler", any(scheduler))
        .route("/master/redirect", get(redirect))
        .route("/redirect", get(redirect))
        .route("/master/state", get(master_state))
        .route("/state", get(master_state))
        .route("/health", get(health))
        .route("/master/health", get(health))
        .route("/version", get(version))
        .route("/files/read", get(files_read))
        .route("/files/read.json", get(files_read))
        .route("/slave(1)/state", get(agent_state))
        // A real master buffers whole request bodies (an ACCEPT of thousands of tasks is
        // several MB); axum's 2 MB default would refuse what a master takes.
        .layer(axum::extract::DefaultBodyLimit::max(256 * 1024 * 1024))
        .with_state(shared)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

fn redirect_to(location: String) -> Response {
    Response::builder()
        .status(StatusCode::TEMPORARY_REDIRECT)
        .header(header::LOCATION, location)
        .body(Body::empty())
        .expect("valid redirect")
}

async fn scheduler(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let cut = take_cut(&shared, &headers, &body);
    let (response, call) = match cut {
        Some(Cut::BeforeCall) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            (
                text(StatusCode::OK, ""),
                parse_call(ct.unwrap_or(""), &body).ok(),
            )
        }
        _ => handle(&shared, &method, &uri, &headers, &body),
    };
    if cut.is_some() {
        // Nothing of the answer is written: the connection closes.
        conn.cut();
    }
    shared.record(RecordedCall {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers,
        body,
        call,
        status: if cut.is_some() {
            0
        } else {
            response.status().as_u16()
        },
    });
    response
}

/// The cut set for this call's type, if any (taken: each cut happens once).
fn take_cut(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Option<Cut> {
    let mut cuts = shared.cuts.lock().unwrap_or_else(|e| e.into_inner());
    if cuts.is_empty() {
        return None;
    }
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let c = parse_call(ct, body).ok()?;
    let t = call::Type::try_from(c.r#type?).ok()?;
    let i = cuts.iter().position(|(ct, _)| *ct == t)?;
    Some(cuts.remove(i).1)
}

/// The authenticated principal, or `Err(401 response)`.
#[allow(clippy::result_large_err)]
fn authenticate(creds: &[(String, String)], headers: &HeaderMap) -> Result<String, Response> {
    let unauthorized = || {
        let mut r = text(StatusCode::UNAUTHORIZED, "401 Unauthorized.");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mesos-master-scheduler\""),
        );
        r
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let encoded = value.strip_prefix("Basic ").ok_or_else(unauthorized)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| unauthorized())?;
    let decoded = String::from_utf8(decoded).map_err(|_| unauthorized())?;
    let parts: Vec<&str> = decoded.split(':').collect();
    if parts.len() != 2 {
        return Err(unauthorized());
    }
    if creds.iter().any(|(p, s)| p == parts[0] && s == parts[1]) {
        Ok(parts[0].to_string())
    } else {
        Err(unauthorized())
    }
}

/// Whether the `Accept` header allows `media` (absent header = anything).
fn accepts(headers: &HeaderMap, media: &str) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let (mtype, _) = media.split_once('/').expect("media type");
    accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let range = parts.next().unwrap_or("").trim();
        let q_zero = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f64>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !q_zero && (range == media || range == "*/*" || range == format!("{mtype}/*"))
    })
}

/// Parses the body into a Call the way the master does (exact texts of §2.2 / fixtures).
fn parse_call(content_type: &str, body: &[u8]) -> Result<Call, String> {
    let schema = Schema::get();
    if content_type == JSON {
        let text = std::str::from_utf8(body).map_err(|_| {
            "Failed to parse body into JSON: syntax error at line 1 near: ".to_string()
        })?;
        let bytes = schema.parse_json(CALL, text).map_err(|e| match e {
            JsonError::Syntax(m) => format!("Failed to parse body into JSON: {m}"),
            JsonError::Convert(m) => format!("Failed to convert JSON into Call protobuf: {m}"),
        })?;
        Call::decode(bytes.as_slice())
            .map_err(|e| format!("Failed to convert JSON into Call protobuf: {e}"))
    } else {
        let bad = || "Failed to parse body into Call protobuf".to_string();
        // A C++ parse also fails on missing required fields: check them through the schema.
        schema.check_protobuf(CALL, body).map_err(|_| bad())?;
        Call::decode(body).map_err(|_| bad())
    }
}

/// `validation::scheduler::call::validate`.
fn validate(c: &Call, principal: Option<&str>) -> Result<(), String> {
    use call::Type as T;
    let Some(t) = c.r#type else {
        return Err("Expecting 'type' to be present".to_string());
    };
    let t = T::try_from(t).unwrap_or(T::Unknown);
    if t == T::Subscribe {
        let Some(sub) = &c.subscribe else {
            return Err("Expecting 'subscribe' to be present".to_string());
        };
        let info = &sub.framework_info;
        if let (Some(p), Some(fp)) = (principal, info.principal.as_deref()) {
            if p != fp {
                return Err(format!(
                    "Authenticated principal '{p}' does not match principal '{fp}' set in `FrameworkInfo`"
                ));
            }
        }
        if let Some(fid) = &c.framework_id {
            if Some(fid) != info.id.as_ref() {
                return Err("'framework_id' differs from 'subscribe.framework_info.id'".to_string());
            }
        }
        return Ok(());
    }
    if c.framework_id.is_none() {
        return Err("Expecting 'framework_id' to be present".to_string());
    }
    let need = |present: bool, name: &str| {
        if present {
            Ok(())
        } else {
            Err(format!("Expecting '{name}' to be present"))
        }
    };
    match t {
        T::Accept => need(c.accept.is_some(), "accept"),
        T::Decline => need(c.decline.is_some(), "decline"),
        T::AcceptInverseOffers => need(c.accept_inverse_offers.is_some(), "accept_inverse_offers"),
        T::DeclineInverseOffers => {
            need(c.decline_inverse_offers.is_some(), "decline_inverse_offers")
        }
        T::Kill => need(c.kill.is_some(), "kill"),
        T::Shutdown => need(c.shutdown.is_some(), "shutdown"),
        T::Acknowledge => {
            need(c.acknowledge.is_some(), "acknowledge")?;
            if c.acknowledge.as_ref().map(|a| a.uuid.len()) != Some(16) {
                return Err("Not a valid UUID".to_string());
            }
            Ok(())
        }
        T::AcknowledgeOperationStatus => need(
            c.acknowledge_operation_status.is_some(),
            "acknowledge_operation_status",
        ),
        T::Reconcile => need(c.reconcile.is_some(), "reconcile"),
        T::ReconcileOperations => need(c.reconcile_operations.is_some(), "reconcile_operations"),
        T::Message => need(c.message.is_some(), "message"),
        T::Request => need(c.request.is_some(), "request"),
        T::UpdateFramework => need(c.update_framework.is_some(), "update_framework"),
        _ => Ok(()),
    }
}

fn handle(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> (Response, Option<Call>) {
    // Injected failures, authentication and leadership come before any handler logic.
    let (injected, creds, leader) = shared.with_state(|s, _| {
        let injected = if s.fail_next.is_empty() {
            None
        } else {
            Some(s.fail_next.remove(0))
        };
        (injected, s.credentials.clone(), s.leader.clone())
    });
    if let Some((status, msg)) = injected {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (text(status, msg), None);
    }
    let principal = match &creds {
        Some(creds) => match authenticate(creds, headers) {
            Ok(p) => Some(p),
            Err(r) => return (r, None),
        },
        None => None,
    };
    match leader {
        Leadership::Leader => {}
        Leadership::Standby(leader) => {
            let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
            return (
                redirect_to(format!("//{leader}/master/api/v1/scheduler{query}")),
                None,
            );
        }
        Leadership::NoLeader => {
            return (
                text(StatusCode::SERVICE_UNAVAILABLE, "No leader elected"),
                None,
            );
        }
    }
    if method != Method::POST {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "405 Method Not Allowed. Expecting one of {{ 'POST' }}, but received '{method}'."
            ),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return (r, None);
    }
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or(""))
    else {
        return (
            text(
                StatusCode::BAD_REQUEST,
                "Expecting 'Content-Type' to be present",
            ),
            None,
        );
    };
    if content_type != JSON && content_type != PROTOBUF {
        return (
            text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expecting 'Content-Type' of application/json or application/x-protobuf",
            ),
            None,
        );
    }
    let c = match parse_call(content_type, body) {
        Ok(c) => c,
        Err(msg) => return (text(StatusCode::BAD_REQUEST, msg), None),
    };
    if let Err(msg) = validate(&c, principal.as_deref()) {
        return (
            text(
                StatusCode::BAD_REQUEST,
                format!("Failed to validate scheduler::Call: {msg}"),
            ),
            Some(c),
        );
    }
    let t = call::Type::try_from(c.r#type.unwrap_or(0)).unwrap_or(call::Type::Unknown);
    if t == call::Type::Subscribe {
        return (
            subscribe(shared, headers, &c, principal.as_deref()),
            Some(c),
        );
    }
    let response = other_call(shared, headers, &c, t, principal.as_deref());
    (response, Some(c))
}

fn subscribe(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    c: &Call,
    principal: Option<&str>,
) -> Response {
    let json = if accepts(headers, JSON) {
        true
    } else if accepts(headers, PROTOBUF) {
        false
    } else {
        return text(
            StatusCode::NOT_ACCEPTABLE,
            "Expecting 'Accept' to allow 'application/x-protobuf' or 'application/json'",
        );
    };
    if headers.contains_key("mesos-stream-id") {
        return text(
            StatusCode::BAD_REQUEST,
            "Subscribe calls should not include the 'Mesos-Stream-Id' header",
        );
    }
    let sub = c.subscribe.as_ref().expect("validated");
    let stream_id = uuid::Uuid::new_v4().to_string();
    let (rx, current) = shared.with_state(|s, now| {
        let rx = s.subscribe(sub, principal, stream_id.clone(), now);
        let current = s.frameworks.values().find_map(|f| {
            f.stream
                .as_ref()
                .filter(|h| h.id == stream_id)
                .map(|h| (f.id.clone(), h.tx.clone()))
        });
        (rx, current)
    });
    let fid = current.as_ref().map(|(f, _)| f.clone()).unwrap_or_default();
    if let Some((_, tx)) = current {
        spawn_heartbeats(Arc::downgrade(shared), tx);
    }
    let guard = StreamGuard {
        shared: Arc::downgrade(shared),
        fid,
        stream_id: stream_id.clone(),
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, if json { JSON } else { PROTOBUF })
        .header("Mesos-Stream-Id", stream_id)
        .body(stream_body(rx, json, guard))
        .expect("valid stream response")
}

fn spawn_heartbeats(shared: Weak<Shared>, tx: mpsc::UnboundedSender<StreamMsg>) {
    let Some(period) = shared.upgrade().map(|s| s.heartbeat_interval) else {
        return;
    };
    tokio::spawn(async move {
        let mut interval = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            interval.tick().await;
            if tx.is_closed() {
                return;
            }
            let Some(s) = shared.upgrade() else { return };
            if s.heartbeats.load(Ordering::SeqCst)
                && tx
                    .send(StreamMsg::Event(Box::new(event_heartbeat())))
                    .is_err()
            {
                return;
            }
        }
    });
}

/// Tells the master when a subscription stream's body is dropped (client gone, or ended).
struct StreamGuard {
    shared: Weak<Shared>,
    fid: String,
    stream_id: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(s) = self.shared.upgrade() {
            s.with_state(|st, now| st.stream_closed(&self.fid, &self.stream_id, now));
        }
    }
}

fn encode_event(e: &Event, json: bool) -> Bytes {
    let bytes = e.encode_to_vec();
    if json {
        let text = Schema::get()
            .render_json(EVENT, &bytes)
            .expect("the fake's own events encode");
        encode_record(text.as_bytes())
    } else {
        encode_record(&bytes)
    }
}

/// Most bytes put into one HTTP chunk when events queue up (records never split across
/// writes by us; clients must not care about chunk boundaries anyway).
const MAX_BATCH: usize = 256 * 1024;

struct StreamState {
    rx: mpsc::UnboundedReceiver<StreamMsg>,
    guard: StreamGuard,
    /// A Close/Abort met while batching, handled on the next poll.
    stashed: Option<StreamMsg>,
}

fn stream_body(rx: mpsc::UnboundedReceiver<StreamMsg>, json: bool, guard: StreamGuard) -> Body {
    let init = Some(StreamState {
        rx,
        guard,
        stashed: None,
    });
    let stream = futures::stream::unfold(init, move |st| async move {
        let mut st = st?;
        let first = match st.stashed.take() {
            Some(m) => Some(m),
            None => st.rx.recv().await,
        };
        let mut batch = match first {
            None | Some(StreamMsg::Close) => return None,
            Some(StreamMsg::Abort) => {
                // Let hyper flush what was written before breaking the connection.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                drop(st);
                let err = std::io::Error::other("fake master aborted the stream");
                return Some((Err(err), None));
            }
            Some(StreamMsg::Event(e)) => bytes::BytesMut::from(&encode_event(&e, json)[..]),
            Some(StreamMsg::Raw(b)) => bytes::BytesMut::from(&b[..]),
        };
        // Under load, send what is already queued in one chunk (fewer writes).
        while batch.len() < MAX_BATCH {
            match st.rx.try_recv() {
                Ok(StreamMsg::Event(e)) => batch.extend_from_slice(&encode_event(&e, json)),
                Ok(StreamMsg::Raw(b)) => batch.extend_from_slice(&b),
                Ok(other) => {
                    st.stashed = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        Some((Ok(batch.freeze()), Some(st)))
    });
    Body::from_stream(stream)
}

fn other_call(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    c: &Call,
    t: call::Type,
    principal: Option<&str>,
) -> Response {
    let fid = c
        .framework_id
        .as_ref()
        .map(|f| f.value.clone())
        .unwrap_or_default();
    let stream_header = headers
        .get("mesos-stream-id")
        .map(|v| v.to_str().unwrap_or("").to_string());
    shared.with_state(|s, now| {
        let Some(fw) = s.frameworks.get(&fid) else {
            return text(StatusCode::BAD_REQUEST, "Framework cannot be found");
        };
        if let Some(p) = principal {
            let fp = fw.info.principal.clone().unwrap_or_default();
            if p != fp {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("Authenticated principal '{p}' does not match principal '{fp}' set in `FrameworkInfo`"),
                );
            }
        }
        let Some(current) = fw.stream.as_ref().map(|h| h.id.clone()) else {
            return text(StatusCode::FORBIDDEN, "Framework is not subscribed");
        };
        let Some(sid) = stream_header else {
            return text(
                StatusCode::BAD_REQUEST,
                "All non-subscribe calls should include the 'Mesos-Stream-Id' header",
            );
        };
        if sid != current {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "The stream ID '{sid}' included in this request didn't match the stream ID currently associated with framework ID {fid}"
                ),
            );
        }
        use call::Type as T;
        match t {
            T::Teardown => s.remove_framework(&fid, now),
            T::Accept => s.accept(&fid, c.accept.as_ref().expect("validated"), now),
            T::Decline => s.decline(&fid, c.decline.as_ref().expect("validated"), now),
            T::Revive => {
                let roles = c.revive.as_ref().map(|r| r.roles.clone()).unwrap_or_default();
                s.revive(&fid, &roles, now)
            }
            T::Suppress => {
                let roles = c.suppress.as_ref().map(|r| r.roles.clone()).unwrap_or_default();
                s.suppress(&fid, &roles)
            }
            T::Kill => s.kill(&fid, c.kill.as_ref().expect("validated"), now),
            T::Acknowledge => s.acknowledge(&fid, c.acknowledge.as_ref().expect("validated"), now),
            T::Reconcile => s.reconcile(&fid, c.reconcile.as_ref().expect("validated")),
            T::UpdateFramework => {
                let u = c.update_framework.as_ref().expect("validated");
                if let Some(fw) = s.frameworks.get_mut(&fid) {
                    let (user, checkpoint) = (fw.info.user.clone(), fw.info.checkpoint);
                    fw.info = u.framework_info.clone();
                    fw.info.user = user;
                    fw.info.checkpoint = checkpoint;
                    fw.suppressed = u.suppressed_roles.iter().cloned().collect();
                }
                s.dirty_agents.extend(0..s.agents.len());
                s.allocate(now);
                return StatusCode::OK.into_response();
            }
            T::Unknown => return StatusCode::NOT_IMPLEMENTED.into_response(),
            // SHUTDOWN, MESSAGE, REQUEST, inverse offers, operation calls: accepted, no effect.
            _ => {}
        }
        StatusCode::ACCEPTED.into_response()
    })
}

// ----- read-only master endpoints --------------------------------------------------------

async fn redirect(State(shared): State<Arc<Shared>>) -> Response {
    let leader = shared.with_state(|s, _| s.leader.clone());
    match leader {
        Leadership::Leader => redirect_to(format!("//{}", shared.addr)),
        Leadership::Standby(l) => redirect_to(format!("//{l}")),
        Leadership::NoLeader => text(StatusCode::SERVICE_UNAVAILABLE, "No leader elected"),
    }
}

async fn health() -> Response {
    StatusCode::OK.into_response()
}

async fn version() -> Response {
    axum::Json(json!({
        "build_date": "2026-11-25 15:54:05",
        "build_time": 1795622045.0,
        "build_user": "",
        "version": "1.12.0"
    }))
    .into_response()
}

fn state_name(state: i32) -> String {
    airflow_mesos::mesos::proto::v1::TaskState::try_from(state)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| state.to_string())
}

fn resources_json(r: &super::resources::ResourceSet) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for name in ["disk", "mem", "gpus", "cpus"] {
        m.insert(name.to_string(), json!(r.scalar_total(name)));
    }
    serde_json::Value::Object(m)
}

#[allow(clippy::result_large_err)]
async fn master_state(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared.with_state(|s, _| {
        match &s.leader {
            Leadership::Leader => {}
            Leadership::Standby(l) => return Err(redirect_to(format!("//{l}/master/state"))),
            Leadership::NoLeader => {
                return Err(text(StatusCode::SERVICE_UNAVAILABLE, "No leader elected"))
            }
        }
        let mi = &s.master_info;
        let pid = mi.pid.clone().unwrap_or_default();
        let task_json = |fid: &str, t: &super::state::Task| {
            json!({
                "id": t.info.task_id.value,
                "name": t.info.name,
                "framework_id": fid,
                "executor_id": "",
                "slave_id": s.agents[t.agent].spec.id,
                "state": state_name(t.state),
                "resources": resources_json(&t.resources),
                "role": t.role.clone().unwrap_or_else(|| "*".to_string()),
                "statuses": t.statuses.iter().map(|(st, ts)| json!({"state": state_name(*st), "timestamp": ts})).collect::<Vec<_>>(),
            })
        };
        let mut fids: Vec<&String> = s.frameworks.keys().collect();
        fids.sort();
        let frameworks: Vec<serde_json::Value> = fids
            .into_iter()
            .map(|fid| {
                let fw = &s.frameworks[fid];
                let mut tids: Vec<&String> = fw.tasks.keys().collect();
                tids.sort();
                let offers: Vec<serde_json::Value> = s
                    .offers
                    .iter()
                    .filter(|(_, o)| &o.framework == fid)
                    .map(|(id, o)| json!({
                        "id": id, "framework_id": fid, "slave_id": s.agents[o.agent].spec.id,
                        "resources": resources_json(&o.resources),
                        "allocation_info": {"role": o.role},
                    }))
                    .collect();
                json!({
                    "id": fid,
                    "name": fw.info.name,
                    "user": fw.info.user,
                    "principal": fw.info.principal,
                    "hostname": fw.info.hostname.clone().unwrap_or_default(),
                    "webui_url": fw.info.webui_url.clone().unwrap_or_default(),
                    "failover_timeout": fw.info.failover_timeout.unwrap_or(0.0),
                    "checkpoint": fw.info.checkpoint.unwrap_or(false),
                    "capabilities": fw.info.capabilities.iter().filter_map(|c| c.r#type)
                        .filter_map(|t| airflow_mesos::mesos::proto::v1::framework_info::capability::Type::try_from(t).ok())
                        .map(|t| t.as_str_name()).collect::<Vec<_>>(),
                    "roles": fw.roles(),
                    "active": fw.stream.is_some(),
                    "connected": fw.stream.is_some(),
                    "recovered": false,
                    "registered_time": fw.registered_time,
                    "unregistered_time": 0.0,
                    "tasks": tids.iter().filter(|t| !fw.tasks[**t].terminal).map(|t| task_json(fid, &fw.tasks[*t])).collect::<Vec<_>>(),
                    "unreachable_tasks": [],
                    "completed_tasks": fw.tasks.values().filter(|t| t.terminal).chain(fw.completed.iter()).map(|t| task_json(fid, t)).collect::<Vec<_>>(),
                    "offers": offers,
                    "executors": [],
                })
            })
            .collect();
        let slaves: Vec<serde_json::Value> = s
            .agents
            .iter()
            .map(|a| json!({
                "id": a.spec.id,
                "hostname": a.spec.hostname,
                "port": a.spec.port,
                "pid": format!("slave(1)@{}:{}", a.spec.hostname, a.spec.port),
                "attributes": {},
                "resources": resources_json(&a.total),
                "used_resources": resources_json(&a.used),
                "offered_resources": resources_json(&a.offered),
                "active": true,
                "deactivated": false,
                "version": "1.12.0",
            }))
            .collect();
        let flags_auth = if s.credentials.is_some() { "true" } else { "false" };
        Ok(json!({
            "version": "1.12.0",
            "id": mi.id,
            "pid": pid,
            "hostname": mi.hostname,
            "leader": pid,
            "leader_info": {"id": mi.id, "pid": pid, "port": mi.port, "hostname": mi.hostname},
            "activated_slaves": s.agents.len() as f64,
            "deactivated_slaves": 0.0,
            "unreachable_slaves": 0.0,
            "flags": {"authenticate_http_frameworks": flags_auth},
            "slaves": slaves,
            "frameworks": frameworks,
            "completed_frameworks": [],
            "orphan_tasks": [],
            "unregistered_frameworks": [],
        }))
    });
    match body {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

// ----- fake agent ------------------------------------------------------------------------

async fn agent_state(State(shared): State<Arc<Shared>>) -> Response {
    let v = shared.with_state(|s, _| {
        let mut by_fw: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
        let mut dirs: Vec<(&String, &(String, String))> = s.sandboxes.iter().collect();
        dirs.sort();
        for (dir, (fid, tid)) in dirs {
            let container = dir.rsplit('/').next().unwrap_or_default();
            by_fw.entry(fid.clone()).or_default().push(json!({
                "id": tid, "name": format!("Command Executor (Task: {tid})"), "source": tid,
                "container": container, "directory": dir,
            }));
        }
        let agent = s.agents.first();
        json!({
            "version": "1.12.0",
            "id": agent.map(|a| a.spec.id.clone()).unwrap_or_default(),
            "hostname": agent.map(|a| a.spec.hostname.clone()).unwrap_or_default(),
            "pid": format!("slave(1)@127.0.0.1:{}", shared.addr.port()),
            "frameworks": by_fw.into_iter().map(|(fid, ex)| json!({"id": fid, "executors": ex, "completed_executors": []})).collect::<Vec<_>>(),
            "completed_frameworks": [],
        })
    });
    axum::Json(v).into_response()
}

async fn files_read(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(path) = q.get("path") else {
        return text(
            StatusCode::BAD_REQUEST,
            "Expecting 'path=value' in query.\n",
        );
    };
    let offset: i64 = match q.get("offset").map(|o| o.parse::<i64>()) {
        None => -1,
        Some(Ok(o)) if o >= -1 => o,
        Some(Ok(o)) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Negative offset provided: {o}.\n"),
            )
        }
        Some(Err(e)) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Failed to parse offset: {e}.\n"),
            )
        }
    };
    let length: Option<usize> = match q.get("length").map(|l| l.parse::<i64>()) {
        None => None,
        Some(Ok(l)) if l >= 0 => Some(l as usize),
        Some(Ok(-1)) => None,
        Some(Ok(l)) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Negative length provided: {l}.\n"),
            )
        }
        Some(Err(e)) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Failed to parse length: {e}.\n"),
            )
        }
    };
    let data = shared.with_state(|s, _| {
        // An executing agent's sandbox is a real directory: any file in it.
        let known = s.sandboxes.keys().find(|d| {
            path.strip_prefix(d.as_str())
                .is_some_and(|r| r.starts_with('/'))
        })?;
        let disk = std::path::Path::new(known.as_str());
        if disk.is_dir() {
            let rel = &path[known.len() + 1..];
            if rel.split('/').any(|c| c == ".." || c.is_empty()) {
                return None;
            }
            return std::fs::read(disk.join(rel)).ok().map(Bytes::from);
        }
        let (dir, file) = path.rsplit_once('/')?;
        let (_, tid) = s.sandboxes.get(dir)?;
        let (out, err) = s.files.get(tid).cloned().unwrap_or_default();
        match file {
            "stdout" => Some(out),
            "stderr" => Some(err),
            _ => None,
        }
    });
    let Some(data) = data else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let size = data.len() as i64;
    if offset == -1 {
        return axum::Json(json!({"data": "", "offset": size})).into_response();
    }
    let cap = 16 * 4096;
    let len = length.unwrap_or(cap).min(cap);
    let start = (offset.min(size)) as usize;
    let end = (start + len).min(data.len());
    let chunk = String::from_utf8_lossy(&data[start..end]).into_owned();
    axum::Json(json!({"data": chunk, "offset": offset})).into_response()
}
