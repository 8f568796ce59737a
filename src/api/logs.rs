//! Reading a task's sandbox output (stdout/stderr): from the local backend's sandbox
//! directory, or from the Mesos agent that ran the attempt, through its `/state` (to find the
//! sandbox directory) and `/files/read` APIs.

use super::{AppState, LogSource};
use crate::task::TaskRecord;

/// A piece of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub data: Vec<u8>,
    /// Offset to ask for next.
    pub next_offset: u64,
}

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("task has not been launched yet; no logs")]
    NotLaunched,
    #[error(
        "the sandbox of {0} was removed: an ended task's sandbox is kept for \
         [mesos] sandbox_retention seconds"
    )]
    SandboxRemoved(String),
    #[error("cannot read the local sandbox: {0}")]
    Io(#[from] std::io::Error),
    #[error("agent {agent}: {message}")]
    Agent { agent: String, message: String },
}

/// Reads `length` bytes from `offset` of the current attempt's stdout (or stderr).
pub async fn read(
    st: &AppState,
    task: &TaskRecord,
    stderr: bool,
    offset: u64,
    length: usize,
) -> Result<LogChunk, LogError> {
    let raw = read_raw(st, task, stderr, offset, length).await?;
    // Whatever the task printed of a workload token is not served (see `redact_tokens`).
    let eof = task.state.is_terminal() && (raw.data.len() as u64) < length as u64;
    let (data, used) = redact_tokens(&raw.data, eof);
    Ok(LogChunk {
        data,
        next_offset: offset + used as u64,
    })
}

/// The end of the current attempt's stdout (or stderr): at most `max` bytes, from the start
/// of a line when the log is longer. Returns the offset the chunk starts at.
pub async fn tail(
    st: &AppState,
    task: &TaskRecord,
    stderr: bool,
    max: usize,
) -> Result<(u64, LogChunk), LogError> {
    let size = log_size(st, task, stderr).await?;
    let mut start = size.saturating_sub(max as u64);
    let mut chunk = read(st, task, stderr, start, max).await?;
    if start > 0 {
        // Drop the partial first line (unless the chunk is one long line).
        if let Some(nl) = chunk.data.iter().position(|b| *b == b'\n') {
            chunk.data.drain(..=nl);
            start += nl as u64 + 1;
        }
    }
    Ok((start, chunk))
}

/// Where the current attempt's logs are: the local sandbox directory, or an agent's URL and
/// the attempt's sandbox directory on it.
enum Sandbox {
    Local(std::path::PathBuf),
    Agent { url: String, dir: String },
}

async fn sandbox(st: &AppState, task: &TaskRecord) -> Result<Sandbox, LogError> {
    let Some(backend_id) = task.current_attempt_id.as_deref() else {
        return Err(LogError::NotLaunched);
    };
    match &st.logs {
        LogSource::Local(dir) => {
            // Our own `<task id>.<attempt>` names; never a path.
            if backend_id.contains(['/', '\\']) || backend_id.starts_with('.') {
                return Err(LogError::NotLaunched);
            }
            let sandbox = dir.join(backend_id);
            if task.state.is_terminal() && !sandbox.exists() {
                return Err(LogError::SandboxRemoved(backend_id.to_string()));
            }
            Ok(Sandbox::Local(sandbox))
        }
        LogSource::Agents => {
            let url = agent_of(st, task, backend_id).await?;
            let dir = agent_sandbox(&st.http, &url, backend_id).await?;
            Ok(Sandbox::Agent { url, dir })
        }
    }
}

/// The size in bytes of the current attempt's stdout (or stderr).
pub async fn log_size(st: &AppState, task: &TaskRecord, stderr: bool) -> Result<u64, LogError> {
    let name = if stderr { "stderr" } else { "stdout" };
    match sandbox(st, task).await? {
        Sandbox::Local(dir) => Ok(tokio::fs::metadata(dir.join(name)).await?.len()),
        Sandbox::Agent { url, dir } => {
            // `offset=-1` asks the agent for the file's length only.
            let resp = files_read(&st.http, &url, &format!("{dir}/{name}"), -1, 0).await?;
            Ok(resp.get("offset").and_then(|v| v.as_u64()).unwrap_or(0))
        }
    }
}

async fn read_raw(
    st: &AppState,
    task: &TaskRecord,
    stderr: bool,
    offset: u64,
    length: usize,
) -> Result<LogChunk, LogError> {
    let Some(backend_id) = task.current_attempt_id.as_deref() else {
        return Err(LogError::NotLaunched);
    };
    match &st.logs {
        LogSource::Local(dir) => {
            match crate::docker::local::read_log(dir, backend_id, stderr, offset, length).await {
                Ok((data, next_offset)) => Ok(LogChunk { data, next_offset }),
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && task.state.is_terminal()
                        && !dir.join(backend_id).exists() =>
                {
                    Err(LogError::SandboxRemoved(backend_id.to_string()))
                }
                Err(e) => Err(e.into()),
            }
        }
        LogSource::Agents => {
            let agent = agent_of(st, task, backend_id).await?;
            read_from_agent(&st.http, &agent, backend_id, stderr, offset, length).await
        }
    }
}

/// The URL of the agent that runs (or ran) the attempt.
async fn agent_of(st: &AppState, task: &TaskRecord, backend_id: &str) -> Result<String, LogError> {
    let attempt = st
        .store
        .find_by_backend_task_id(backend_id)
        .await
        .ok()
        .flatten()
        .map(|(_, a)| a);
    attempt
        .as_ref()
        .and_then(|a| a.agent_url.clone())
        .or_else(|| task.hostname.as_ref().map(|h| format!("http://{h}:5051")))
        .ok_or(LogError::NotLaunched)
}

fn agent_err(agent: &str, message: impl Into<String>) -> LogError {
    LogError::Agent {
        agent: agent.to_string(),
        message: message.into(),
    }
}

/// Finds the sandbox directory of `task_id` in an agent's `/state` JSON.
pub fn sandbox_directory(state: &serde_json::Value, task_id: &str) -> Option<String> {
    let frameworks = ["frameworks", "completed_frameworks"];
    let executors = ["executors", "completed_executors"];
    let task_lists = ["tasks", "queued_tasks", "completed_tasks"];
    for f in frameworks {
        for fw in state
            .get(f)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            for e in executors {
                for ex in fw.get(e).and_then(|v| v.as_array()).into_iter().flatten() {
                    let runs_task = ex.get("id").and_then(|v| v.as_str()) == Some(task_id)
                        || task_lists.iter().any(|l| {
                            ex.get(*l).and_then(|v| v.as_array()).is_some_and(|ts| {
                                ts.iter()
                                    .any(|t| t.get("id").and_then(|v| v.as_str()) == Some(task_id))
                            })
                        });
                    if runs_task {
                        if let Some(d) = ex.get("directory").and_then(|v| v.as_str()) {
                            return Some(d.to_string());
                        }
                    }
                }
            }
        }
    }
    None
}

/// The sandbox directory of `backend_task_id` on the agent at `agent`, from its `/state`.
async fn agent_sandbox(
    http: &reqwest::Client,
    agent: &str,
    backend_task_id: &str,
) -> Result<String, LogError> {
    let base = agent.trim_end_matches('/');
    // `/slave(1)/state` is the agent's own route; `/state` reaches it too on a real agent.
    let mut last_error = String::new();
    for path in ["/slave(1)/state", "/state"] {
        let state = match http.get(format!("{base}{path}")).send().await {
            Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await,
            Ok(r) => {
                last_error = format!("GET {path}: {}", r.status());
                continue;
            }
            Err(e) => Err(e),
        };
        match state {
            Ok(state) => {
                if let Some(dir) = sandbox_directory(&state, backend_task_id) {
                    return Ok(dir);
                }
                last_error = format!("no sandbox for task {backend_task_id} in {path}");
            }
            Err(e) => last_error = format!("GET {path} failed: {e}"),
        }
    }
    Err(agent_err(agent, last_error))
}

/// One call of an agent's `/files/read` (`offset = -1`: the file's length only).
async fn files_read(
    http: &reqwest::Client,
    agent: &str,
    path: &str,
    offset: i64,
    length: usize,
) -> Result<serde_json::Value, LogError> {
    let base = agent.trim_end_matches('/');
    http.get(format!("{base}/files/read"))
        .query(&[
            ("path", path),
            ("offset", &offset.to_string()),
            ("length", &length.to_string()),
        ])
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| agent_err(agent, format!("GET /files/read failed: {e}")))?
        .json()
        .await
        .map_err(|e| agent_err(agent, format!("GET /files/read: bad JSON: {e}")))
}

/// Reads through an agent's files API.
pub async fn read_from_agent(
    http: &reqwest::Client,
    agent: &str,
    backend_task_id: &str,
    stderr: bool,
    offset: u64,
    length: usize,
) -> Result<LogChunk, LogError> {
    let dir = agent_sandbox(http, agent, backend_task_id).await?;
    let path = format!("{dir}/{}", if stderr { "stderr" } else { "stdout" });
    let offset_i = i64::try_from(offset).unwrap_or(i64::MAX);
    let resp = files_read(http, agent, &path, offset_i, length).await?;
    let data = resp
        .get("data")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .as_bytes()
        .to_vec();
    let at = resp
        .get("offset")
        .and_then(|v| v.as_u64())
        .unwrap_or(offset);
    Ok(LogChunk {
        next_offset: at + data.len() as u64,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_sandbox_of_running_and_completed_tasks() {
        let state = serde_json::json!({
            "frameworks": [{"executors": [{"id": "t-1.1", "directory": "/var/lib/mesos/a",
                "tasks": [{"id": "t-1.1"}]}]}],
            "completed_frameworks": [{"completed_executors": [{"id": "x", "directory": "/b",
                "completed_tasks": [{"id": "t-2.1"}]}]}]
        });
        assert_eq!(
            sandbox_directory(&state, "t-1.1").as_deref(),
            Some("/var/lib/mesos/a")
        );
        assert_eq!(sandbox_directory(&state, "t-2.1").as_deref(), Some("/b"));
        assert_eq!(sandbox_directory(&state, "t-3.1"), None);
    }
}

/// Replaces JWT-shaped strings (`eyJ…​.…​.…`, as in an Airflow 3 workload's token, which
/// Airflow itself prints to the task's stdout) with `***` in log data that is served.
/// Returns the redacted bytes and how many bytes of `data` were consumed: a token that runs
/// to the very end of the chunk (it may continue in the next one) is held back, unless `eof`.
pub fn redact_tokens(data: &[u8], eof: bool) -> (Vec<u8>, usize) {
    fn is_b64url(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'='
    }
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(b"eyJ") && (i == 0 || !is_b64url(data[i - 1])) {
            let mut j = i;
            let mut dots = 0;
            while j < data.len() && (is_b64url(data[j]) || data[j] == b'.') {
                dots += usize::from(data[j] == b'.');
                j += 1;
            }
            if j == data.len() && !eof && j - i < 16 * 1024 {
                return (out, i);
            }
            if dots >= 2 && j - i >= 20 {
                out.extend_from_slice(b"***");
                i = j;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    (out, data.len())
}

#[cfg(test)]
mod redact_tests {
    use super::redact_tokens;

    #[test]
    fn jwts_are_redacted_and_a_token_cut_by_the_chunk_is_held_back() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0aSJ9.c2lnbmF0dXJlLXNlY3JldA";
        let line = format!("workload=ExecuteTask(token='{jwt}') done\n");
        let (out, used) = redact_tokens(line.as_bytes(), false);
        assert_eq!(used, line.len());
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out, "workload=ExecuteTask(token='***') done\n");
        let cut = &line.as_bytes()[..40];
        let (out, used) = redact_tokens(cut, false);
        assert_eq!(used, "workload=ExecuteTask(token='".len(), "held back");
        assert!(!String::from_utf8(out).unwrap().contains("eyJ"));
        let (out, _) = redact_tokens(b"plain eyJ text and key.value", true);
        assert_eq!(out, b"plain eyJ text and key.value".to_vec(), "not a JWT");
    }
}
