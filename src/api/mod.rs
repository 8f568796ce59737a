//! The HTTP API of the daemon (axum): task submission, queries, the change feed, kills, logs,
//! one-time files, `/metrics` and `/healthz`.
//!
//! Every route needs the token (`Authorization: Bearer <token>`: `[mesos] api_token`, or the one
//! the daemon generated into `[mesos] api_token_file`, see [`crate::token`]; or HTTP Basic with
//! `api_username`/`api_password`) except `GET /healthz`, `GET /metrics` and the one-time
//! file route (whose URL carries its own unguessable token). Writes go through the driver (the
//! single writer); reads go to the store.
//!
//! | method and path | what |
//! |---|---|
//! | `POST /v1/tasks` | submit one spec, or `{"tasks": [spec, ...]}`; 201 with the stored tasks |
//! | `GET /v1/tasks/{id}` | one task |
//! | `GET /v1/tasks?state=&label=k=v&external_key=&since=&limit=` | tasks, ordered by `seq` |
//! | `GET /v1/events?since=&limit=&wait=` | the change feed: each transition once, in order |
//! | `GET /v1/events/head` | `{"cursor": N}`: the newest position, to start following from now |
//! | `POST /v1/tasks/{id}/kill` | kill a queued or running task |
//! | `GET /v1/tasks/{id}/logs?stream=stdout\|stderr&offset=&length=` | sandbox output |
//! | `GET /v1/files/{attempt}/{slot}/{mac}/{name}` | a sandbox file, for Mesos agents (signed URL) |
//! | `/ui/…` | the web UI (`crate::web`): HTML pages behind a login with the API token |

mod forward;
pub mod logs;
pub mod query;
pub mod serve;
mod views;

/// The web UI forwards a kill made on a standby to the leader, marked like the API's own.
pub(crate) use forward::FORWARDED;
pub use views::{Created, EventPage, EventView, TaskPage, TaskView};

use crate::driver::{DriverHandle, SubmitError};
use crate::onetime::{secret_env_script, OneTimeFiles, Slot};
use crate::scheduler::KillError;
use crate::store::{Store, TaskFilter};
use crate::task::{TaskSpec, TaskState};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use query::ApiQuery;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest accepted request body (a 10,000-task batch fits comfortably).
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// Who may call the API.
#[derive(Clone, Default)]
pub struct Auth {
    pub token: Option<String>,
    pub basic: Option<(String, String)>,
}

impl Auth {
    fn allows(&self, headers: &HeaderMap) -> bool {
        if self.token.is_none() && self.basic.is_none() {
            return true;
        }
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let (scheme, credentials) = value.trim_start().split_once(' ').unwrap_or((value, ""));
        let credentials = credentials.trim();
        if let Some(t) = self
            .token
            .as_ref()
            .filter(|_| scheme.eq_ignore_ascii_case("bearer"))
        {
            return constant_time_eq(t.as_bytes(), credentials.as_bytes());
        }
        if let (Some((u, p)), Some(b64)) = (
            &self.basic,
            Some(credentials).filter(|_| scheme.eq_ignore_ascii_case("basic")),
        ) {
            use base64::Engine;
            if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
                let expected = format!("{u}:{p}");
                return constant_time_eq(expected.as_bytes(), &raw);
            }
        }
        false
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where task logs come from.
#[derive(Clone, Debug)]
pub enum LogSource {
    /// The local Docker backend keeps sandboxes here.
    Local(std::path::PathBuf),
    /// Mesos agents' `/files/read` API.
    Agents,
}

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub driver: DriverHandle,
    pub files: Arc<OneTimeFiles>,
    pub auth: Auth,
    pub logs: LogSource,
    pub http: reqwest::Client,
    /// The backend name for `/healthz` and `/metrics`.
    pub backend: &'static str,
    /// The web UI's settings (`src/web`).
    pub web: crate::web::WebConfig,
    /// Leader or standby (and where the leader is): writes on a standby are forwarded.
    pub role: tokio::sync::watch::Receiver<crate::leader::Role>,
    /// `[mesos] allowed_origins`: the only browser origins `/v1` answers.
    pub allowed_origins: Arc<[String]>,
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let writes = Router::new()
        .route("/v1/tasks", post(submit))
        .route("/v1/tasks/{id}/kill", post(kill))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            forward::writes_to_the_leader,
        ));
    let protected = Router::new()
        .merge(writes)
        .route("/v1/tasks", get(list))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/tasks/{id}/logs", get(task_logs))
        .route("/v1/events", get(events))
        .route("/v1/events/head", get(events_head))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_cross_site,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/files/{attempt}/{slot}/{mac}/{name}", get(sandbox_file))
        .merge(protected)
        .merge(crate::web::routes(state.clone()))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(query::json_errors))
        .with_state(state)
}

/// Refuses what a web page in a browser could send: a request whose `Origin` is not in
/// `[mesos] allowed_origins` (browsers send it with every cross-origin request and every
/// POST), and a write whose body is not declared JSON or YAML (the content types a page can
/// send without a CORS preflight are refused, so a cross-site form or `no-cors` fetch never
/// reaches a handler). No CORS headers are ever sent. The CLI and the Airflow executor send
/// no `Origin` and declare their bodies.
async fn refuse_cross_site(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let o = origin.to_str().unwrap_or("");
        if !st.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(o)) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "cross-origin request from `{}` refused: not in [mesos] allowed_origins",
                    o.chars().take(200).collect::<String>()
                ),
            )
            .field("Origin")
            .key("allowed_origins")
            .into_response();
        }
    }
    if req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !WRITE_CONTENT_TYPES
            .iter()
            .any(|t| t.eq_ignore_ascii_case(essence))
        {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "a {} needs `Content-Type: application/json`, not `{}`",
                    req.method(),
                    ct.chars().take(100).collect::<String>()
                ),
            )
            .field("Content-Type")
            .into_response();
        }
    }
    next.run(req).await
}

/// The content types a write may declare (a kill's body is empty but declared all the same).
pub const WRITE_CONTENT_TYPES: [&str; 1] = ["application/json"];

async fn require_auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if st.auth.allows(req.headers()) {
        next.run(req).await
    } else {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong credentials: send `Authorization: Bearer <token>` ([mesos] api_token, \
             or the content of the daemon's [mesos] api_token_file)",
        )
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"airflow-mesos\""),
        );
        r
    }
}

/// An error answer: `{"error": message, "field": ..., "key": ...}` with a status code
/// (`field`: the request's field at fault; `key`: the `[mesos]` key of a policy refusal).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
    key: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
            key: None,
        }
    }
    fn field(mut self, f: impl Into<String>) -> ApiError {
        self.field = Some(f.into());
        self
    }
    fn key(mut self, k: &'static str) -> ApiError {
        self.key = Some(k);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        if let Some(k) = self.key {
            body["key"] = json!(k);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        tracing::error!(error = %e, "store error in API");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("state store: {e}"))
    }
}

async fn healthz(State(st): State<AppState>) -> impl IntoResponse {
    let subscribed = st
        .driver
        .metrics
        .subscribed
        .load(std::sync::atomic::Ordering::Relaxed)
        == 1;
    let role = st.role.borrow().clone();
    let leader = match &role {
        crate::leader::Role::Leader { .. } => None,
        crate::leader::Role::Standby { leader } => leader.clone(),
    };
    let degraded = st.driver.metrics.store.degraded();
    // Why the backend is not subscribed (the Mesos master or the Docker engine unreachable).
    let backend_error = if subscribed {
        None
    } else {
        st.driver
            .metrics
            .cluster
            .summary()
            .last_error
            .map(|(_, e)| e)
    };
    Json(json!({
        "status": "ok",
        "backend": st.backend,
        "subscribed": subscribed,
        "backend_error": backend_error,
        "role": role.name(),
        "leader": leader,
        "store": if degraded.is_some() { "degraded" } else { "ok" },
        "store_error": degraded.as_ref().map(|d| &d.error),
        "store_degraded_since": degraded.as_ref().map(|d| views::rfc3339(d.since_ms)),
    }))
}

async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    // Through a database outage the driver's own figures still tell what is going on (the
    // counts by state would wait for a connection that does not come).
    let counts = match st.driver.metrics.store.degraded() {
        Some(_) => None,
        None => Some(st.store.counts().await?),
    };
    let leading = matches!(*st.role.borrow(), crate::leader::Role::Leader { .. });
    let body = views::render_metrics(&st.driver.metrics, counts.as_ref(), st.backend, leading);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// Parses a submission body: one spec, `{"tasks": [...]}`, or a bare list, with the schema of
/// job files ([`crate::task::submission`]): unknown and duplicate keys are refused, and errors
/// name the field by its path (`tasks[3].cpus: invalid type ...`).
pub fn parse_submission(body: &[u8]) -> Result<Vec<TaskSpec>, ApiError> {
    crate::task::submission::from_json(body).map_err(|e| {
        let field = if e.field.is_empty() {
            "body".to_string()
        } else {
            e.field.clone()
        };
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string()).field(field)
    })
}

async fn submit(State(st): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let specs = parse_submission(&body)?;
    let single = specs.len() == 1;
    match st.driver.submit(specs).await {
        Ok(records) => {
            let tasks = records.iter().map(TaskView::from).collect();
            Ok((StatusCode::CREATED, Json(Created { tasks })).into_response())
        }
        Err(SubmitError::Invalid { index, error }) => {
            let field = if single {
                error.field.clone()
            } else {
                format!("tasks[{index}].{}", error.field)
            };
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{field}: {}", error.message),
            )
            .field(field))
        }
        Err(SubmitError::Forbidden { index, error }) => {
            let field = if single {
                error.field.clone()
            } else {
                format!("tasks[{index}].{}", error.field)
            };
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{field}: {} (not allowed by [mesos] {})",
                    error.message, error.key
                ),
            )
            .field(field)
            .key(error.key))
        }
        Err(e @ (SubmitError::TooMany(_) | SubmitError::Empty)) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, e.to_string()).field("tasks"))
        }
        Err(e @ SubmitError::ShuttingDown) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
        Err(SubmitError::Store(e)) => Err(e.into()),
    }
}

async fn get_task(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match st.store.get_task(&id).await? {
        Some(t) => Ok(Json(TaskView::from(&t)).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no task `{id}`"),
        )),
    }
}

/// Unknown parameters are refused: a misspelt filter must not list (or feed a script) every
/// task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    label: Option<String>,
    external_key: Option<String>,
    #[serde(default, deserialize_with = "query::feed_position")]
    since: Option<i64>,
    #[serde(default, deserialize_with = "query::page_size")]
    limit: Option<u32>,
}

async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let mut filter = TaskFilter {
        since: q.since,
        limit: Some(q.limit.unwrap_or(1000).min(query::MAX_PAGE)),
        external_key: q.external_key,
        ..TaskFilter::default()
    };
    if let Some(states) = q.state {
        for s in states.split(',').filter(|s| !s.is_empty()) {
            let st: TaskState = s.parse().map_err(|e: crate::task::state::UnknownState| {
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string()).field("state")
            })?;
            filter.states.push(st);
        }
    }
    if let Some(l) = q.label {
        let (k, v) = l.split_once('=').ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "label must be key=value").field("label")
        })?;
        filter.label = Some((k.to_string(), v.to_string()));
    }
    let tasks = st.store.list_tasks(&filter).await?;
    let cursor = tasks.last().map(|t| t.seq).or(q.since).unwrap_or(0);
    let tasks = tasks.iter().map(TaskView::from).collect();
    Ok(Json(TaskPage { tasks, cursor }).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    #[serde(default, deserialize_with = "query::feed_position")]
    since: Option<i64>,
    #[serde(default, deserialize_with = "query::page_size")]
    limit: Option<u32>,
    /// Seconds to wait for new events when there are none (long poll, at most 60).
    #[serde(default, deserialize_with = "query::wait_seconds")]
    wait: Option<f64>,
}

async fn events(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    let since = q.since.unwrap_or(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, query::MAX_PAGE);
    let wait = Duration::from_secs_f64(q.wait.unwrap_or(0.0).clamp(0.0, query::MAX_WAIT_SECS));
    let deadline = Instant::now() + wait;
    loop {
        let evs = st.store.events_since(since, limit).await?;
        if !evs.is_empty() || Instant::now() >= deadline {
            let cursor = evs.last().map(|e| e.seq).unwrap_or(since);
            let events = evs.iter().map(EventView::from).collect();
            return Ok(Json(EventPage { cursor, events }).into_response());
        }
        // Poll cheaply: only hit the store again once the driver committed something new
        // (a standby's driver commits nothing: it asks the store every quarter second).
        let last = &st.driver.metrics.last_seq;
        let step = Duration::from_millis(50);
        let standby_until = Instant::now() + Duration::from_millis(250);
        while last.load(std::sync::atomic::Ordering::Relaxed) <= since && Instant::now() < deadline
        {
            if matches!(*st.role.borrow(), crate::leader::Role::Standby { .. })
                && Instant::now() >= standby_until
            {
                break;
            }
            tokio::time::sleep(step).await;
        }
    }
}

async fn events_head(State(st): State<AppState>) -> Result<Response, ApiError> {
    let head = st.store.head_seq().await?;
    Ok(Json(json!({ "cursor": head })).into_response())
}

async fn kill(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    match st.driver.kill(&id).await {
        Ok(state) => Ok(Json(json!({ "id": id, "state": state })).into_response()),
        Err(KillError::NotFound) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no task `{id}`"),
        )),
        Err(KillError::AlreadyTerminal(s)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("task `{id}` already ended ({s})"),
        )),
        Err(KillError::Unavailable(e)) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    stream: Option<String>,
    #[serde(default, deserialize_with = "query::byte_offset")]
    offset: Option<u64>,
    #[serde(default, deserialize_with = "query::byte_length")]
    length: Option<usize>,
}

async fn task_logs(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Response, ApiError> {
    let stderr = match q.stream.as_deref().unwrap_or("stdout") {
        "stdout" => false,
        "stderr" => true,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("stream must be stdout or stderr, not `{other}`"),
            )
            .field("stream"))
        }
    };
    let Some(task) = st.store.get_task(&id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no task `{id}`"),
        ));
    };
    let offset = q.offset.unwrap_or(0);
    let length = q.length.unwrap_or(1 << 20).min(8 << 20);
    let chunk = logs::read(&st, &task, stderr, offset, length)
        .await
        .map_err(|e| {
            let status = match e {
                logs::LogError::SandboxRemoved(_) => StatusCode::GONE,
                _ => StatusCode::BAD_GATEWAY,
            };
            ApiError::new(status, e.to_string())
        })?;
    Ok(Json(json!({
        "id": id,
        "stream": if stderr { "stderr" } else { "stdout" },
        "offset": offset,
        "next_offset": chunk.next_offset,
        "data": String::from_utf8_lossy(&chunk.data),
        "terminal": task.state.is_terminal(),
    }))
    .into_response())
}

/// A sandbox file of an attempt that is being launched, for the agent that fetches it. The
/// URL is signed ([`OneTimeFiles::verify`]); the file is there only while the attempt has not
/// started, and once per daemon process.
async fn sandbox_file(
    State(st): State<AppState>,
    Path((attempt, slot, mac, name)): Path<(String, String, String, String)>,
) -> Response {
    let gone = |why: &str| ApiError::new(StatusCode::GONE, why.to_string()).into_response();
    let Some(slot) = st.files.verify(&attempt, &slot, &mac, &name) else {
        return ApiError::new(StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let Some((task_id, _)) = crate::task::parse_attempt_task_id(&attempt) else {
        return ApiError::new(StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let rec = match st.store.get_task(task_id).await {
        Ok(Some(r)) => r,
        Ok(None) => return ApiError::new(StatusCode::NOT_FOUND, "no such task").into_response(),
        Err(e) => {
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
    };
    if rec.current_attempt_id.as_deref() != Some(attempt.as_str())
        || rec.state != TaskState::Launching
    {
        st.files.forget(&attempt);
        return gone("the attempt has started or ended: its sandbox files are no longer served");
    }
    let content = match slot {
        Slot::File(i) => rec
            .spec
            .files
            .get(i)
            .filter(|f| f.path.rsplit('/').find(|s| !s.is_empty()) == Some(name.as_str()))
            .map(|f| Bytes::from(f.content.clone().into_bytes())),
        Slot::SecretEnv => Some(Bytes::from(secret_env_script(&rec.spec.secret_env))),
        Slot::RegistryConfig => st.files.registry_tar().cloned(),
    };
    let Some(content) = content else {
        return ApiError::new(StatusCode::NOT_FOUND, "no such file").into_response();
    };
    if !st.files.first_serving(&attempt, slot) {
        return gone("already fetched: a sandbox file is served once");
    }
    tracing::debug!(%attempt, %name, "sandbox file fetched");
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        content,
    )
        .into_response()
}
