//! The HTTP client of our own API, used by the CLI verbs (`submit`, `status`, `list`, `wait`,
//! `kill`, `logs`).
//!
//! With several daemons (`api_url` lists them), a request goes to the one that answered last,
//! and to the next when a daemon cannot be reached or answers 503 (no leader yet, or the
//! leadership changing). A write is sent again elsewhere only when it cannot have been taken:
//! the connection was never made, or the daemon answered 503. While every daemon answers 503
//! (a failover in progress), requests are retried for up to [`FAILOVER_WAIT`].

use crate::api::{Created, EventPage, TaskPage, TaskView};
use crate::task::TaskSpec;
use serde::Deserialize;
use std::time::Duration;

/// What went wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the airflow-mesos daemon at {url}: {source} (is `airflow-mesos scheduler` running? check [mesos] api_url)")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{status}: {message}")]
    Api {
        status: u16,
        message: String,
        field: Option<String>,
    },
    #[error("bad answer from the daemon: {0}")]
    Decode(String),
}

/// A request, kept whole so that it can be sent to another daemon.
struct Req {
    method: reqwest::Method,
    path: String,
    query: Vec<(String, String)>,
    json: Option<serde_json::Value>,
}

impl Req {
    fn query<K: ToString, V: ToString>(mut self, q: &[(K, V)]) -> Req {
        self.query
            .extend(q.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    fn json(mut self, body: serde_json::Value) -> Req {
        self.json = Some(body);
        self
    }
}

impl ClientError {
    /// True when the request never left this machine (no connection was made), so another
    /// daemon may be sent it without risk of doing it twice.
    fn never_sent(&self) -> bool {
        matches!(self, ClientError::Unreachable { source, .. } if source.is_connect())
    }

    /// Exit code for the CLI: 69 (unavailable) when the daemon cannot be reached, 65 (data
    /// error) for a refused request, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Unreachable { .. } => 69,
            // A bad spec (400), one the policy forbids (403), a body too large (413).
            ClientError::Api {
                status: 400 | 403 | 413,
                ..
            } => 65,
            ClientError::Api { status: 404, .. } => 66,
            _ => 1,
        }
    }
}

/// One chunk of a log.
#[derive(Debug, Clone, Deserialize)]
pub struct LogPage {
    pub data: String,
    pub next_offset: u64,
    pub terminal: bool,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    field: Option<String>,
}

/// How long requests keep being retried while every daemon answers 503 (an election takes
/// up to the leader lease, 10 s by default).
pub const FAILOVER_WAIT: Duration = Duration::from_secs(60);

/// Client of the daemon's API.
#[derive(Debug, Clone)]
pub struct Client {
    /// One daemon, or several (`api_url` comma-separated).
    bases: Vec<String>,
    /// Index in `bases` of the daemon that answered last.
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    token: Option<String>,
    /// Added to the message of a 401 answer (where the token came from).
    auth_hint: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// `base`: a daemon's URL, or several comma-separated.
    pub fn new(base: &str, token: Option<String>) -> Client {
        let bases: Vec<String> = base
            .split(',')
            .map(|b| b.trim().trim_end_matches('/').to_string())
            .filter(|b| !b.is_empty())
            .collect();
        Client {
            bases,
            current: Default::default(),
            token,
            auth_hint: None,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(120))
                .build()
                .expect("TLS backend initialises"),
        }
    }

    /// Says, in the error of a 401 answer, where the token came from (or why there is none).
    pub fn with_auth_hint(mut self, hint: String) -> Client {
        self.auth_hint = Some(hint);
        self
    }

    /// A request for `path`; sent to one daemon after another by [`Client::send`].
    fn req(&self, method: reqwest::Method, path: &str) -> Req {
        Req {
            method,
            path: path.to_string(),
            query: Vec::new(),
            json: None,
        }
    }

    async fn send<T: serde::de::DeserializeOwned>(&self, req: Req) -> Result<T, ClientError> {
        let n = self.bases.len().max(1);
        let write = req.method != reqwest::Method::GET;
        let give_up = tokio::time::Instant::now() + FAILOVER_WAIT;
        loop {
            let start = self.current.load(std::sync::atomic::Ordering::Relaxed);
            let mut last = None;
            for i in 0..n {
                let idx = (start + i) % n;
                let base = self.bases.get(idx).map_or("", String::as_str);
                match self.send_to(base, &req).await {
                    Ok(v) => {
                        self.current
                            .store(idx, std::sync::atomic::Ordering::Relaxed);
                        return Ok(v);
                    }
                    // Another daemon may answer; a write only when this one cannot have
                    // taken it.
                    Err(e @ ClientError::Unreachable { .. }) if !write || e.never_sent() => {
                        last = Some(e)
                    }
                    Err(e @ ClientError::Api { status: 503, .. }) => last = Some(e),
                    Err(e) => return Err(e),
                }
            }
            let e = last.expect("at least one daemon was tried");
            let waiting = matches!(e, ClientError::Api { status: 503, .. });
            if !waiting || tokio::time::Instant::now() >= give_up {
                return Err(e);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn send_to<T: serde::de::DeserializeOwned>(
        &self,
        base: &str,
        req: &Req,
    ) -> Result<T, ClientError> {
        let mut rb = self
            .http
            .request(req.method.clone(), format!("{base}{}", req.path))
            .query(&req.query);
        if let Some(body) = &req.json {
            rb = rb.json(body);
        } else if req.method != reqwest::Method::GET {
            // The API takes writes declared JSON only (a cross-site form cannot send that).
            rb = rb.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        let resp = rb.send().await.map_err(|source| ClientError::Unreachable {
            url: base.to_string(),
            source,
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        if !status.is_success() {
            let (mut message, field) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => (b.error, b.field),
                Err(_) => (String::from_utf8_lossy(&bytes).into_owned(), None),
            };
            if let (401, Some(hint)) = (status.as_u16(), &self.auth_hint) {
                message = format!("{message}; {hint}");
            }
            return Err(ClientError::Api {
                status: status.as_u16(),
                message,
                field,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn submit(&self, specs: &[TaskSpec]) -> Result<Vec<TaskView>, ClientError> {
        let body = serde_json::json!({ "tasks": specs });
        let c: Created = self
            .send(self.req(reqwest::Method::POST, "/v1/tasks").json(body))
            .await?;
        Ok(c.tasks)
    }

    pub async fn get(&self, id: &str) -> Result<TaskView, ClientError> {
        self.send(self.req(reqwest::Method::GET, &format!("/v1/tasks/{id}")))
            .await
    }

    pub async fn list(&self, query: &[(&str, String)]) -> Result<TaskPage, ClientError> {
        self.send(self.req(reqwest::Method::GET, "/v1/tasks").query(query))
            .await
    }

    pub async fn events(&self, since: i64, wait_secs: f64) -> Result<EventPage, ClientError> {
        self.send(self.req(reqwest::Method::GET, "/v1/events").query(&[
            ("since", since.to_string()),
            ("wait", wait_secs.to_string()),
        ]))
        .await
    }

    pub async fn kill(&self, id: &str) -> Result<serde_json::Value, ClientError> {
        self.send(self.req(reqwest::Method::POST, &format!("/v1/tasks/{id}/kill")))
            .await
    }

    pub async fn logs(&self, id: &str, stderr: bool, offset: u64) -> Result<LogPage, ClientError> {
        self.send(
            self.req(reqwest::Method::GET, &format!("/v1/tasks/{id}/logs"))
                .query(&[
                    (
                        "stream",
                        if stderr { "stderr" } else { "stdout" }.to_string(),
                    ),
                    ("offset", offset.to_string()),
                ]),
        )
        .await
    }
}
