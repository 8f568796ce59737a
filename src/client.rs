//! The HTTP client of our own API, used by the CLI verbs (`submit`, `status`, `list`, `wait`,
//! `kill`, `logs`).

use crate::api::{EventView, TaskView};
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

impl ClientError {
    /// Exit code for the CLI: 69 (unavailable) when the daemon cannot be reached, 65 (data
    /// error) for a refused request, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Unreachable { .. } => 69,
            ClientError::Api { status: 400, .. } => 65,
            ClientError::Api { status: 404, .. } => 66,
            _ => 1,
        }
    }
}

/// A page of the change feed.
#[derive(Debug, Clone, Deserialize)]
pub struct EventPage {
    pub events: Vec<EventView>,
    pub cursor: i64,
}

/// A page of tasks.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskPage {
    pub tasks: Vec<TaskView>,
    pub cursor: i64,
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

/// Client of the daemon's API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(120))
                .build()
                .expect("TLS backend initialises"),
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = rb.send().await.map_err(|source| ClientError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        if !status.is_success() {
            let (message, field) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => (b.error, b.field),
                Err(_) => (String::from_utf8_lossy(&bytes).into_owned(), None),
            };
            return Err(ClientError::Api {
                status: status.as_u16(),
                message,
                field,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn submit(&self, specs: &[TaskSpec]) -> Result<Vec<TaskView>, ClientError> {
        #[derive(Deserialize)]
        struct Created {
            tasks: Vec<TaskView>,
        }
        let body = serde_json::json!({ "tasks": specs });
        let c: Created = self
            .send(self.req(reqwest::Method::POST, "/v1/tasks").json(&body))
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
