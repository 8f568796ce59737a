//! JSON views of tasks and change-feed events (the stable `--json` contract), and the
//! Prometheus rendering of `/metrics`.

use crate::driver::Metrics;
use crate::task::{TaskEvent, TaskRecord, TaskSpec, TaskState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// RFC 3339 (UTC, milliseconds) from milliseconds since the epoch.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A task as the API and `--json` show it. Field names are a stable contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub id: String,
    pub name: Option<String>,
    pub state: TaskState,
    /// `queued`, `running`, `success` or `failed`.
    pub airflow_state: crate::task::AirflowState,
    pub external_key: Option<String>,
    pub attempts: u32,
    /// Backend (Mesos) task id of the current attempt.
    pub backend_task_id: Option<String>,
    pub agent_id: Option<String>,
    pub hostname: Option<String>,
    pub message: Option<String>,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub kill_requested: bool,
    pub labels: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
    /// Change-feed position of the last change.
    pub seq: i64,
    /// The spec, with sandbox file contents redacted.
    pub spec: TaskSpec,
}

/// A page of tasks (`GET /v1/tasks`), serialized as it is (no `serde_json::Value` in between).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPage {
    pub tasks: Vec<TaskView>,
    pub cursor: i64,
}

/// The tasks a submission created (`POST /v1/tasks`), serialized as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
    pub tasks: Vec<TaskView>,
}

impl From<&TaskRecord> for TaskView {
    fn from(t: &TaskRecord) -> TaskView {
        TaskView {
            id: t.id.clone(),
            name: t.spec.name.clone(),
            state: t.state,
            airflow_state: t.state.airflow_state(),
            external_key: t.spec.external_key.clone(),
            attempts: t.attempts,
            backend_task_id: t.current_attempt_id.clone(),
            agent_id: t.agent_id.clone(),
            hostname: t.hostname.clone(),
            message: t.message.clone(),
            reason: t.reason.clone(),
            exit_code: t.exit_code,
            kill_requested: t.kill_requested,
            labels: t.spec.labels.clone(),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
            seq: t.seq,
            spec: t.spec.redacted(),
        }
    }
}

/// One change-feed entry. The fields are in alphabetical order, the order the feed has always
/// sent them in (it was built as a `serde_json::Value`, whose maps sort their keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub airflow_state: crate::task::AirflowState,
    pub at: String,
    pub attempt: u32,
    pub external_key: Option<String>,
    pub message: Option<String>,
    pub seq: i64,
    pub state: TaskState,
    pub task_id: String,
}

/// A page of the change feed, serialized as it is (no `serde_json::Value` in between: the feed
/// is the API's busiest answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventPage {
    pub cursor: i64,
    pub events: Vec<EventView>,
}

impl From<&TaskEvent> for EventView {
    fn from(e: &TaskEvent) -> EventView {
        EventView {
            seq: e.seq,
            task_id: e.task_id.clone(),
            state: e.state,
            airflow_state: e.state.airflow_state(),
            attempt: e.attempt,
            message: e.message.clone(),
            at: rfc3339(e.at),
            external_key: e.external_key.clone(),
        }
    }
}

/// Prometheus text exposition of the driver's counters and the per-state task counts (`None`
/// when the store cannot count them now: the series has no samples then, rather than zeros).
pub fn render_metrics(
    m: &Metrics,
    counts: Option<&BTreeMap<TaskState, u64>>,
    backend: &str,
    leading: bool,
) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP airflow_mesos_{name} {help}");
        let _ = writeln!(out, "# TYPE airflow_mesos_{name} {kind}");
        let _ = writeln!(out, "airflow_mesos_{name} {value}");
    };
    let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    metric(
        "launches_total",
        "counter",
        "Tasks launched (attempts).",
        c(&m.launches),
    );
    metric(
        "status_updates_total",
        "counter",
        "Status updates received.",
        c(&m.status_updates),
    );
    metric(
        "offers_received_total",
        "counter",
        "Resource offers received.",
        c(&m.offers_received),
    );
    metric(
        "offers_declined_total",
        "counter",
        "Resource offers declined.",
        c(&m.offers_declined),
    );
    metric(
        "acknowledgements_total",
        "counter",
        "Status updates acknowledged.",
        c(&m.acks),
    );
    metric(
        "reconnects_total",
        "counter",
        "Times the subscription was lost.",
        c(&m.reconnects),
    );
    metric(
        "commits_total",
        "counter",
        "State-store transactions committed by the driver.",
        c(&m.commits),
    );
    metric(
        "subscribed",
        "gauge",
        "1 while subscribed to the backend.",
        c(&m.subscribed),
    );
    metric(
        "matching_last_seconds",
        "gauge",
        "Duration of the last offer-handling step.",
        format!(
            "{:.6}",
            m.last_matching_us.load(Ordering::Relaxed) as f64 / 1e6
        ),
    );
    metric(
        "matching_seconds_sum",
        "counter",
        "Total time spent in offer-handling steps.",
        format!(
            "{:.6}",
            m.matching_us_total.load(Ordering::Relaxed) as f64 / 1e6
        ),
    );
    metric(
        "matching_rounds_total",
        "counter",
        "Offer-handling steps.",
        c(&m.matching_rounds),
    );
    metric(
        "store_retries_total",
        "counter",
        "State-store operations retried after a transient database error.",
        m.store.retries().to_string(),
    );
    metric(
        "pruned_tasks_total",
        "counter",
        "Ended tasks deleted from the state database after task_retention.",
        c(&m.pruned_tasks),
    );
    metric(
        "store_degraded",
        "gauge",
        "1 while a state-store operation is being retried through a database outage.",
        u8::from(m.store.degraded().is_some()).to_string(),
    );
    if let Some(s) = m.core_stats() {
        let core_metrics: [(&str, &str, &str, u64); 10] = [
            (
                "offers_used_total",
                "counter",
                "Resource offers used for launches.",
                s.offers_used,
            ),
            (
                "offers_rescinded_total",
                "counter",
                "Resource offers the backend withdrew.",
                s.offers_rescinded,
            ),
            (
                "launch_failures_total",
                "counter",
                "Attempts that failed to launch (the command never ran).",
                s.launch_failures,
            ),
            (
                "relaunches_total",
                "counter",
                "New attempts started after a launch failure.",
                s.relaunches,
            ),
            (
                "stale_updates_total",
                "counter",
                "Status updates for an old attempt, an ended or an unknown task.",
                s.stale_updates,
            ),
            (
                "kills_sent_total",
                "counter",
                "Kill calls sent (repeated until the task ends).",
                s.kills_sent,
            ),
            (
                "reconciliations_total",
                "counter",
                "Reconciliation calls sent.",
                s.reconcile_calls,
            ),
            (
                "reconcile_pending",
                "gauge",
                "Attempts in the current explicit reconciliation not answered yet.",
                s.reconcile_pending as u64,
            ),
            (
                "queued_classes",
                "gauge",
                "Distinct resource classes among the queued tasks.",
                s.classes as u64,
            ),
            (
                "suppressed",
                "gauge",
                "1 while offers are suppressed (nothing queued).",
                u64::from(s.suppressed),
            ),
        ];
        for (name, kind, help, value) in core_metrics {
            metric(name, kind, help, value.to_string());
        }
        let _ = writeln!(
            out,
            "# HELP airflow_mesos_tasks_ended_total Tasks that ended since this daemon became the leader, by final state."
        );
        let _ = writeln!(out, "# TYPE airflow_mesos_tasks_ended_total counter");
        for (state, n) in [
            ("succeeded", s.succeeded),
            ("failed", s.failed),
            ("killed", s.killed),
        ] {
            let _ = writeln!(
                out,
                "airflow_mesos_tasks_ended_total{{state=\"{state}\"}} {n}"
            );
        }
    }
    let _ = writeln!(out, "# HELP airflow_mesos_tasks Tasks by state.");
    let _ = writeln!(out, "# TYPE airflow_mesos_tasks gauge");
    for st in TaskState::ALL.into_iter().filter(|_| counts.is_some()) {
        let n = counts.and_then(|c| c.get(&st)).copied().unwrap_or(0);
        let _ = writeln!(out, "airflow_mesos_tasks{{state=\"{st}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP airflow_mesos_info Build and backend.");
    let _ = writeln!(out, "# TYPE airflow_mesos_info gauge");
    let _ = writeln!(
        out,
        "airflow_mesos_info{{version=\"{}\",backend=\"{backend}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "# HELP airflow_mesos_leader 1 on the leading daemon, 0 on a standby."
    );
    let _ = writeln!(out, "# TYPE airflow_mesos_leader gauge");
    let _ = writeln!(out, "airflow_mesos_leader {}", u8::from(leading));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The feed's page, serialized as it is, has the very bytes it had when it was built as
    /// a `serde_json::Value` (keys sorted), so no client sees a change.
    #[test]
    fn an_event_page_serializes_as_the_feed_always_did() {
        let event = |seq, message: Option<&str>, key: Option<&str>| TaskEvent {
            seq,
            task_id: format!("t-{seq}"),
            state: TaskState::Running,
            attempt: 2,
            message: message.map(str::to_string),
            at: 1_733_450_000_123,
            external_key: key.map(str::to_string),
            reason: Some("REASON_X".into()),
            prev_seq: Some(1),
        };
        let evs = [
            event(7, Some("on \"h\" é"), None),
            event(9, None, Some("dag|run|1")),
        ];
        let views: Vec<EventView> = evs.iter().map(EventView::from).collect();
        let before = serde_json::json!({ "events": views, "cursor": 9 }).to_string();
        let page = EventPage {
            cursor: 9,
            events: views,
        };
        assert_eq!(serde_json::to_string(&page).unwrap(), before);
        let back: EventPage = serde_json::from_str(&before).unwrap();
        assert_eq!(back, page);
    }

    #[test]
    fn metrics_render_every_state_and_counter() {
        let m = Metrics::default();
        m.launches.store(3, Ordering::Relaxed);
        let mut counts = BTreeMap::new();
        counts.insert(TaskState::Running, 2);
        let text = render_metrics(&m, Some(&counts), "mesos", true);
        assert!(text.contains("airflow_mesos_leader 1\n"));
        assert!(text.contains("airflow_mesos_launches_total 3\n"));
        assert!(text.contains("airflow_mesos_tasks{state=\"running\"} 2\n"));
        assert!(text.contains("airflow_mesos_tasks{state=\"queued\"} 0\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample line: {line}");
        }
    }

    #[test]
    fn the_cores_figures_are_exported_once_the_driver_runs() {
        let m = Metrics::default();
        let before = render_metrics(&m, None, "mesos", false);
        assert!(
            !before.contains("airflow_mesos_relaunches_total"),
            "{before}"
        );
        *m.core.lock().unwrap() = Some(crate::scheduler::CoreStats {
            relaunches: 4,
            offers_used: 7,
            classes: 2,
            suppressed: true,
            succeeded: 5,
            killed: 1,
            ..Default::default()
        });
        let text = render_metrics(&m, None, "mesos", true);
        for line in [
            "airflow_mesos_relaunches_total 4\n",
            "airflow_mesos_offers_used_total 7\n",
            "airflow_mesos_queued_classes 2\n",
            "airflow_mesos_suppressed 1\n",
            "airflow_mesos_tasks_ended_total{state=\"succeeded\"} 5\n",
            "airflow_mesos_tasks_ended_total{state=\"failed\"} 0\n",
            "airflow_mesos_tasks_ended_total{state=\"killed\"} 1\n",
            "# TYPE airflow_mesos_reconcile_pending gauge\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
