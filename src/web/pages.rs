//! The UI's pages. Each reads a bounded amount: a page of tasks through an index, one task
//! with its attempts and its last [`HISTORY`] changes, the tails of its logs, and what the
//! driver has seen of the cluster.

use super::html::{self, clip, query, seg, state, when, Page};
use super::session::{check_form, CsrfForm, Session};
use crate::api::{logs, AppState};
use crate::cluster::Seen;
use crate::leader::Role;
use crate::scheduler::KillError;
use crate::store::{StoreError, TaskFilter, TaskPageQuery};
use crate::task::{TaskRecord, TaskState};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use std::time::Duration;

/// Tasks per page of the task list.
pub const PAGE: u32 = 50;
/// State changes shown on a task's page.
pub const HISTORY: u32 = 100;
/// Bytes of each log shown on a task's page.
pub const TAIL: usize = 8 * 1024;
/// Bytes of a log per page of the log view.
pub const LOG_CHUNK: usize = 64 * 1024;
/// Agents per page of the agents page (sorted by hostname).
pub const AGENTS_PAGE: usize = 200;
/// How long a task's page waits for an agent's logs before showing the page without them.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(3);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn store_error(root: &str, e: StoreError) -> Response {
    tracing::error!(error = %e, "store error in the web UI");
    html::error_page(
        root,
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("state store: {e}"),
    )
}

/// The Airflow state name a task maps to (`queued`, `running`, `success`, `failed`).
fn airflow_name(s: TaskState) -> String {
    serde_json::to_value(s.airflow_state())
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn title_of(t: &TaskRecord) -> &str {
    t.spec.name.as_deref().unwrap_or(&t.id)
}

pub async fn overview(State(st): State<AppState>, Extension(s): Extension<Session>) -> Response {
    let now = now_ms();
    let seen = st.driver.metrics.cluster.summary();
    let counted = super::counts(&st).await;
    let failed = TaskPageQuery {
        filter: TaskFilter {
            states: vec![TaskState::Failed],
            ..TaskFilter::default()
        },
        limit: 10,
        ..TaskPageQuery::default()
    };
    let failures = match st.store.task_page(&failed).await {
        Ok(p) => p.tasks,
        Err(e) => return store_error("", e),
    };

    let body = html! {
        h1 { "Overview" }
        div.card #scheduler {
            h2 { "Scheduler" }
            (subscription(&st, &seen, now))
        }
        div.card #counts {
            h2 { "Tasks" }
            @if let Some(c) = &counted {
                div.counts {
                    a href="tasks" { span.n #count-all { (c.counts.values().sum::<u64>()) } "all" }
                    @for (s, n) in &c.counts {
                        a href={ "tasks?" (query(&[("state", s.as_str())])) } {
                            span.n id={ "count-" (s.as_str()) } { (n) } (state(*s))
                        }
                    }
                }
                p.muted { "Counted " (c.at.elapsed().as_secs()) " s ago." }
            } @else {
                p.muted #counting { "Counting the tasks… (this page reloads itself)" }
            }
        }
        div.card #failures {
            h2 { "Recent failures" }
            @if failures.is_empty() {
                p.muted { "No failed task." }
            } @else {
                div.scroll {
                    table {
                        thead { tr { th { "Task" } th { "Failed" } th { "Reason" } th { "Message" } } }
                        tbody {
                            @for t in &failures {
                                tr {
                                    td { a href={ "tasks/" (seg(&t.id)) } { (title_of(t)) } }
                                    td { (when(t.updated_at, now)) }
                                    td { code { (t.reason.as_deref().unwrap_or("")) } }
                                    td.msg { (clip(t.message.as_deref().unwrap_or(""), 400)) }
                                }
                            }
                        }
                    }
                }
                p { a href={ "tasks?" (query(&[("state", "failed")])) } { "All failed tasks" } }
            }
        }
    };
    Page::new("Overview", "")
        .refresh(10)
        .render(Some(&s), body)
        .into_response()
}

/// The subscription as a definition list (overview and agents pages).
fn subscription(st: &AppState, seen: &Seen, now: i64) -> Markup {
    let standby = match st.role.borrow().clone() {
        Role::Leader { .. } => None,
        Role::Standby { leader } => Some(leader),
    };
    html! {
        dl.kv {
            dt { "Backend" } dd #backend { (st.backend) }
            @if let Some(leader) = standby {
                // A standby runs no backend: what its driver saw belongs to an old term.
                dt { "Role" }
                dd #role {
                    "standby: the leading daemon"
                    @if let Some(l) = leader.filter(|l| l.starts_with("http://") || l.starts_with("https://")) {
                        " (" a href={ (l.trim_end_matches('/')) "/ui/" } { (l) } ")"
                    }
                    " runs the backend; the tasks shown here are read from the shared database, \
                     and kills are sent to the leader"
                }
            } @else {
                dt { "Role" } dd #role { "leader" }
                dt { "Subscription" }
                dd #subscription {
                    @if seen.subscribed { "subscribed" } @else { span.error { "not subscribed" } }
                    @if let Some(t) = seen.since_ms { " since " (when(t, now)) }
                }
                dt { "Master" } dd #master { (seen.master.as_deref().unwrap_or("—")) }
                dt { "Framework id" } dd #framework-id { code { (seen.framework_id.as_deref().unwrap_or("—")) } }
                dt { "Offers" }
                dd {
                    @if seen.suppressed { "suppressed (nothing queued)" } @else { "wanted" }
                }
                @if let Some((t, e)) = &seen.last_error {
                    dt { "Last error" } dd.error { (e) " " (when(*t, now)) }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct TasksQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    external_key: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    before: String,
}

fn bad_request(root: &str, field: &str, message: impl std::fmt::Display) -> Response {
    html::error_page(
        root,
        StatusCode::BAD_REQUEST,
        &format!("{field}: {message}"),
    )
}

/// The task list's filter, as the CLI's `list` takes it; an error is `field: what is wrong`.
fn filter_of(q: &TasksQuery) -> Result<(TaskFilter, Option<i64>), String> {
    let mut f = TaskFilter::default();
    for s in q.state.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        f.states.push(s.parse().map_err(|e| format!("state: {e}"))?);
    }
    if !q.label.is_empty() {
        let (k, v) = q.label.split_once('=').ok_or("label: must be key=value")?;
        f.label = Some((k.to_string(), v.to_string()));
    }
    if !q.external_key.is_empty() {
        f.external_key = Some(q.external_key.clone());
    }
    let number = |field: &str, v: &str| -> Result<Option<i64>, String> {
        if v.is_empty() {
            return Ok(None);
        }
        v.trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("{field}: `{v}` is not a change-feed position (a number)"))
    };
    f.since = number("since", &q.since)?;
    Ok((f, number("before", &q.before)?))
}

pub async fn tasks(
    State(st): State<AppState>,
    Extension(s): Extension<Session>,
    Query(q): Query<TasksQuery>,
) -> Response {
    let (filter, before) = match filter_of(&q) {
        Ok(f) => f,
        Err(e) => return html::error_page("", StatusCode::BAD_REQUEST, &e),
    };
    let page = match st
        .store
        .task_page(&TaskPageQuery {
            filter,
            before,
            limit: PAGE,
            scan_window: None,
        })
        .await
    {
        Ok(p) => p,
        Err(e) => return store_error("", e),
    };
    let now = now_ms();
    let keep = |before: &str| {
        query(&[
            ("state", &q.state),
            ("label", &q.label),
            ("external_key", &q.external_key),
            ("since", &q.since),
            ("before", before),
        ])
    };
    let body = html! {
        h1 { "Tasks" }
        div.card {
            form.filters method="get" action="tasks" {
                label { "State" input name="state" value=(q.state) placeholder="failed,killed"; }
                label { "Label" input name="label" value=(q.label) placeholder="team=data"; }
                label { "External key" input name="external_key" value=(q.external_key); }
                label { "Changed after" input name="since" value=(q.since) placeholder="cursor" inputmode="numeric"; }
                button type="submit" { "Filter" }
                a href="tasks" { "Clear" }
            }
        }
        div.card {
            @if page.tasks.is_empty() {
                p.muted #no-tasks { "No task here." }
            } @else {
                div.scroll {
                    table #tasks {
                        thead { tr {
                            th { "Task" } th { "State" } th { "Attempts" } th { "Changed" }
                            th.wide { "Host" } th { "Message" }
                        } }
                        tbody {
                            @for t in &page.tasks {
                                tr {
                                    td {
                                        a href={ "tasks/" (seg(&t.id)) } { (title_of(t)) }
                                        @if t.spec.name.is_some() { br; code.muted { (t.id) } }
                                        @for (k, v) in &t.spec.labels { br; span.label { (k) "=" (v) } }
                                    }
                                    td { (state(t.state)) }
                                    td { (t.attempts) }
                                    td { (when(t.updated_at, now)) }
                                    td.wide { (t.hostname.as_deref().unwrap_or("")) }
                                    td.msg { (clip(t.message.as_deref().unwrap_or(""), 200)) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(r) = &page.searched {
                p.muted {
                    "Searched the changes " (r.start) "–" (r.end.saturating_sub(1))
                    " (label and external-key filters look at "
                    (crate::store::SCAN_WINDOW) " changes per page)."
                }
            }
            div.pager {
                @if before.is_some() { a #newest href={ "tasks?" (keep("")) } { "Newest" } }
                @if let Some(b) = page.next_before {
                    a #older href={ "tasks?" (keep(&b.to_string())) } { "Older →" }
                }
            }
        }
    };
    Page::new("Tasks", "")
        .render(Some(&s), body)
        .into_response()
}

/// The tail of one log as text, or why there is none.
async fn tail_of(st: &AppState, t: &TaskRecord, stderr: bool) -> Result<(u64, String), String> {
    match tokio::time::timeout(LOG_TIMEOUT, logs::tail(st, t, stderr, TAIL)).await {
        Ok(Ok((start, chunk))) => Ok((start, String::from_utf8_lossy(&chunk.data).into_owned())),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", LOG_TIMEOUT.as_secs())),
    }
}

pub async fn task(
    State(st): State<AppState>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let root = "../";
    let t = match st.store.get_task(&id).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return html::error_page(root, StatusCode::NOT_FOUND, &format!("no task `{id}`"))
        }
        Err(e) => return store_error(root, e),
    };
    let (attempts, history) =
        match tokio::try_join!(st.store.attempts(&t.id), st.store.task_history(&t, HISTORY)) {
            Ok(x) => x,
            Err(e) => return store_error(root, e),
        };
    let (stdout, stderr) = tokio::join!(tail_of(&st, &t, false), tail_of(&st, &t, true));
    let now = now_ms();
    let spec = t.spec.redacted();
    let spec_json = serde_json::to_string_pretty(&spec).unwrap_or_default();
    let id_seg = seg(&t.id);
    let defaults = &st.web.0.defaults;
    let qty = |name: &str, unit: &str, v: Option<f64>, d: f64| match v {
        Some(v) => format!("{name} {v}{unit}"),
        None => format!("{name} {d}{unit} (default)"),
    };
    let image = match (&spec.image, &defaults.image) {
        (Some(i), _) => i.clone(),
        (None, Some(d)) => format!("{d} (default)"),
        (None, None) => "—".to_string(),
    };
    let mut resources = vec![
        qty("cpus", "", spec.cpus, defaults.cpus),
        qty("mem", " MB", spec.mem, defaults.mem),
    ];
    if spec.disk.is_some() || defaults.disk > 0.0 {
        resources.push(qty("disk", " MB", spec.disk, defaults.disk));
    }
    for p in &spec.ports {
        resources.push(format!("port {}/{}", p.container_port, p.protocol));
    }
    let resources = resources.join(" · ");
    let log_block = |name: &str, tail: &Result<(u64, String), String>| {
        html! {
            h2 { (name) }
            @match tail {
                Ok((start, text)) => {
                    @if *start > 0 { p.muted { "… the last " (text.len()) " bytes, from byte " (start) } }
                    pre id=(name) { (text) }
                }
                Err(e) => { p.muted id=(name) { (e) } }
            }
            p { a href={ "tasks/" (id_seg) "/log?" (query(&[("stream", name)])) } { "Whole " (name) } }
        }
    };
    let body = html! {
        h1 { (title_of(&t)) " " span #state { (state(t.state)) } }
        div.actions {
            @if !t.state.is_terminal() {
                form method="post" action={ "tasks/" (id_seg) "/kill" } {
                    input type="hidden" name="csrf" value=(s.csrf);
                    button.danger #kill type="submit" { "Kill" }
                }
            }
            @if t.kill_requested { span.muted #kill-requested { "kill requested" } }
        }
        div.card #details {
            dl.kv {
                dt { "Id" } dd { code #task-id { (t.id) } }
                dt { "State" } dd { (state(t.state)) " (Airflow: " (airflow_name(t.state)) ")" }
                @if let Some(c) = t.exit_code { dt { "Exit code" } dd #exit-code { (c) } }
                @if let Some(m) = &t.message { dt { "Message" } dd #message { (m) } }
                @if let Some(r) = &t.reason { dt { "Reason" } dd { code { (r) } } }
                @if let Some(k) = &t.spec.external_key { dt { "External key" } dd { code { (k) } } }
                dt { "Attempts" } dd { (t.attempts) }
                @if let Some(a) = &t.current_attempt_id { dt { "Mesos task id" } dd { code { (a) } } }
                @if let Some(a) = &t.agent_id { dt { "Agent" } dd { code { (a) } } }
                @if let Some(h) = &t.hostname { dt { "Host" } dd { (h) } }
                dt { "Image" } dd #image { code { (image) } }
                dt { "Resources" } dd #resources { (resources) }
                @if let Some(c) = &spec.command { dt { "Command" } dd { code { (c.display()) } } }
                @if !spec.labels.is_empty() {
                    dt { "Labels" }
                    dd { @for (k, v) in &spec.labels { span.label { (k) "=" (v) } } }
                }
                dt { "Submitted" } dd { (when(t.created_at, now)) }
                dt { "Changed" } dd { (when(t.updated_at, now)) }
            }
        }
        div.card #logs {
            (log_block("stdout", &stdout))
            (log_block("stderr", &stderr))
        }
        div.card {
            h2 { "State changes" }
            @if history.truncated { p.muted { "Older changes are not shown." } }
            div.scroll {
                table #history {
                    thead { tr { th { "When" } th { "State" } th { "Attempt" } th { "Reason" } th { "Message" } } }
                    tbody {
                        @for e in &history.events {
                            tr {
                                td { (when(e.at, now)) }
                                td { (state(e.state)) }
                                td { (e.attempt) }
                                td { code { (e.reason.as_deref().unwrap_or("")) } }
                                td.msg { (e.message.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        @if !attempts.is_empty() {
            div.card {
                h2 { "Attempts" }
                div.scroll {
                    table #attempts {
                        thead { tr {
                            th { "#" } th { "Mesos task id" } th { "Host" } th { "State" }
                            th { "Started" } th { "Reason" } th { "Message" }
                        } }
                        tbody {
                            @for a in &attempts {
                                tr {
                                    td { (a.attempt) }
                                    td.id { (a.backend_task_id) }
                                    td { (a.hostname.as_deref().unwrap_or("")) br; code.muted { (a.agent_id.as_deref().unwrap_or("")) } }
                                    td { (state(a.state)) }
                                    td { (when(a.started_at, now)) }
                                    td { code { (a.reason.as_deref().unwrap_or("")) } }
                                    td.msg { (a.message.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        div.card {
            h2 { "Spec" }
            p.muted { "Secret values and sandbox file contents are shown as ***." }
            pre #spec { (spec_json) }
        }
    };
    let title = title_of(&t).to_string();
    let mut page = Page::new(&title, root);
    if !t.state.is_terminal() {
        page = page.refresh(5);
    }
    page.render(Some(&s), body).into_response()
}

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    stream: String,
    #[serde(default)]
    offset: String,
}

pub async fn log(
    State(st): State<AppState>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Response {
    let root = "../../";
    let stderr = match q.stream.as_str() {
        "" | "stdout" => false,
        "stderr" => true,
        other => {
            return bad_request(
                root,
                "stream",
                format!("must be stdout or stderr, not `{other}`"),
            )
        }
    };
    let offset = match q.offset.trim() {
        "" => None,
        o => match o.parse::<u64>() {
            Ok(o) => Some(o),
            Err(_) => return bad_request(root, "offset", format!("`{o}` is not a byte offset")),
        },
    };
    let t = match st.store.get_task(&id).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return html::error_page(root, StatusCode::NOT_FOUND, &format!("no task `{id}`"))
        }
        Err(e) => return store_error(root, e),
    };
    let stream = if stderr { "stderr" } else { "stdout" };
    let read = match offset {
        None => logs::tail(&st, &t, stderr, LOG_CHUNK).await,
        Some(o) => logs::read(&st, &t, stderr, o, LOG_CHUNK)
            .await
            .map(|c| (o, c)),
    };
    let id_seg = seg(&t.id);
    let link = |offset: &str| {
        format!(
            "tasks/{id_seg}/log?{}",
            query(&[("stream", stream), ("offset", offset)])
        )
    };
    let body = html! {
        h1 { a href={ "tasks/" (id_seg) } { (title_of(&t)) } " · " (stream) }
        div.card {
            @match &read {
                Ok((start, chunk)) => {
                    p.muted { "Bytes " (start) "–" (chunk.next_offset) }
                    pre #log { (String::from_utf8_lossy(&chunk.data)) }
                    div.pager {
                        @if *start > 0 { a href=(link("0")) { "From the start" } }
                        @if chunk.data.len() >= LOG_CHUNK / 2 { a href=(link(&chunk.next_offset.to_string())) { "Next →" } }
                        a href=(link("")) { "The end" }
                    }
                }
                Err(e) => { p.error #log-error { (e.to_string()) } }
            }
        }
    };
    let title = format!("{} {stream}", title_of(&t));
    Page::new(&title, root)
        .render(Some(&s), body)
        .into_response()
}

pub async fn kill(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let root = "../../";
    if let Err(e) = check_form(&st, &headers, &f) {
        return html::error_page(root, StatusCode::FORBIDDEN, e);
    }
    let leader = match st.role.borrow().clone() {
        Role::Leader { .. } => None,
        Role::Standby { leader } => Some(leader),
    };
    let done = super::session::see_other(&format!("../{}", seg(&id)));
    match leader {
        None => match st.driver.kill(&id).await {
            Ok(_) => {
                tracing::info!(task = %id, "kill requested from the web UI");
                done
            }
            Err(KillError::NotFound) => {
                html::error_page(root, StatusCode::NOT_FOUND, &format!("no task `{id}`"))
            }
            Err(KillError::AlreadyTerminal(s)) => html::error_page(
                root,
                StatusCode::CONFLICT,
                &format!("task `{id}` already ended ({s})"),
            ),
            Err(KillError::Unavailable(e)) => {
                html::error_page(root, StatusCode::SERVICE_UNAVAILABLE, &e)
            }
        },
        Some(None) => html::error_page(
            root,
            StatusCode::SERVICE_UNAVAILABLE,
            "this daemon stands by and no leader is elected yet: try again in a few seconds",
        ),
        Some(Some(leader)) => match kill_on_the_leader(&st, &leader, &id).await {
            Ok(()) => {
                tracing::info!(task = %id, %leader, "kill requested from the web UI, sent to the leader");
                done
            }
            Err((status, message)) => html::error_page(root, status, &message),
        },
    }
}

/// A kill made on a standby: the leader's API does it (as the API forwards its own writes).
async fn kill_on_the_leader(
    st: &AppState,
    leader: &str,
    id: &str,
) -> Result<(), (StatusCode, String)> {
    let url = format!("{}/v1/tasks/{}/kill", leader.trim_end_matches('/'), seg(id));
    let mut req = st
        .http
        .post(&url)
        .header(crate::api::FORWARDED, "1")
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body("{}");
    if let Some(t) = &st.auth.token {
        req = req.bearer_auth(t);
    }
    let unreachable = |e: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this daemon stands by and cannot reach the leader at {leader} ({e}): try again in a few seconds"),
        )
    };
    let resp = req.send().await.map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let message = body["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("the leader answered {status}"));
    Err((
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
        message,
    ))
}

#[derive(Debug, Deserialize)]
pub struct AgentsQuery {
    #[serde(default)]
    page: String,
}

pub async fn agents(
    State(st): State<AppState>,
    Extension(s): Extension<Session>,
    Query(q): Query<AgentsQuery>,
) -> Response {
    let page = match q.page.trim() {
        "" => 0,
        p => match p.parse::<usize>() {
            Ok(p) => p,
            Err(_) => return bad_request("", "page", format!("`{p}` is not a page number")),
        },
    };
    let now = now_ms();
    let seen = st.driver.metrics.cluster.snapshot();
    let total = seen.agents.len();
    let mut agents: Vec<_> = seen.agents.values().collect();
    agents.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
    let agents: Vec<_> = agents
        .into_iter()
        .skip(page * AGENTS_PAGE)
        .take(AGENTS_PAGE)
        .collect();
    let more = total > (page + 1) * AGENTS_PAGE;
    let body = html! {
        h1 { "Agents and offers" }
        div.card { (subscription(&st, &seen, now)) }
        div.card {
            h2 { "Agents (" (total) ")" }
            p.muted { "The agents that made an offer since the daemon started, with what they offered last." }
            @if agents.is_empty() {
                p.muted #no-agents { "No offer yet." }
            } @else {
                div.scroll {
                    table #agents {
                        thead { tr { th { "Host" } th { "Offered" } th { "Last offer" } th { "Offers" } th.wide { "Attributes" } } }
                        tbody {
                            @for a in &agents {
                                tr {
                                    td { (a.hostname) br; code.muted { (a.id) } }
                                    td { (a.resources) }
                                    td { (when(a.last_offer_ms, now)) }
                                    td { (a.offers) }
                                    td.wide { @for (k, v) in &a.attributes { span.label { (k) ":" (v) } } }
                                }
                            }
                        }
                    }
                }
                div.pager {
                    @if page > 0 { a href={ "agents?" (query(&[("page", &(page - 1).to_string())])) } { "← Previous" } }
                    @if more { a #more-agents href={ "agents?" (query(&[("page", &(page + 1).to_string())])) } { "Next →" } }
                }
            }
        }
        div.card {
            h2 { "Latest offers" }
            p.muted { "Offers are used or declined as they come; these are the latest "
                (crate::cluster::MAX_OFFERS) "." }
            @if seen.offers.is_empty() {
                p.muted { "No offer yet." }
            } @else {
                div.scroll {
                    table #offers {
                        thead { tr { th { "Received" } th { "Host" } th { "Resources" } th { "Outcome" } th.wide { "Offer id" } } }
                        tbody {
                            @for o in &seen.offers {
                                tr {
                                    td { (when(o.at_ms, now)) }
                                    td { (o.hostname) }
                                    td { (o.resources) }
                                    td { (o.outcome.to_string()) }
                                    td.wide.id { (o.id) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Page::new("Agents", "")
        .refresh(10)
        .render(Some(&s), body)
        .into_response()
}
