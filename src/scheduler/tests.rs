//! Scenario tests of the core's task lifecycle, reconciliation, kills and suppress/revive, on
//! a fake clock (the core takes time as an input, so no sleeping or tokio clock is needed).

use super::types::{
    to_milli, Action, Attribute, BackendState, Event, Flavour, Now, Offer, Quantity, Resource,
    StatusUpdate, UpdateSource,
};
use super::{Core, CoreConfig, KillError, Step};
use crate::task::{Attempt, TaskRecord, TaskSpec, TaskState};
use std::time::{Duration, Instant};

struct Clock {
    base: Instant,
    offset: Duration,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            base: Instant::now(),
            offset: Duration::ZERO,
        }
    }
    fn now(&self) -> Now {
        Now {
            instant: self.base + self.offset,
            unix_ms: 1_700_000_000_000 + self.offset.as_millis() as i64,
        }
    }
    fn advance(&mut self, secs: f64) -> Now {
        self.offset += Duration::from_secs_f64(secs);
        self.now()
    }
}

fn cfg() -> CoreConfig {
    CoreConfig {
        default_image: Some("airflow:2".into()),
        launch_retries: 2,
        ..CoreConfig::default()
    }
}

fn record(id: &str) -> TaskRecord {
    record_with(id, TaskSpec::shell("airflow tasks run x"))
}

fn record_with(id: &str, spec: TaskSpec) -> TaskRecord {
    TaskRecord::queued(id, spec, 0)
}

fn offer(id: &str, agent: &str, cpus: f64, mem: f64) -> Offer {
    let f = Flavour::plain("unreserved");
    Offer {
        id: id.into(),
        agent_id: agent.into(),
        hostname: format!("{agent}.example"),
        agent_url: Some(format!("http://{agent}.example:5051")),
        resources: vec![
            Resource {
                name: "cpus".into(),
                quantity: Quantity::Scalar(to_milli(cpus)),
                flavour: f.clone(),
            },
            Resource {
                name: "mem".into(),
                quantity: Quantity::Scalar(to_milli(mem)),
                flavour: f,
            },
        ],
        attributes: vec![],
        allocation_role: None,
    }
}

fn update(backend_id: &str, state: BackendState, uuid: Option<u8>) -> StatusUpdate {
    StatusUpdate {
        backend_task_id: backend_id.into(),
        state,
        message: None,
        reason: None,
        source: None,
        agent_id: Some("a1".into()),
        uuid: uuid.map(|b| vec![b; 16]),
        timestamp: None,
        exit_code: None,
    }
}

fn subscribed() -> Event {
    Event::Subscribed {
        framework_id: "fw".into(),
        heartbeat_interval_secs: Some(15.0),
        master: None,
    }
}

fn launches(step: &Step) -> Vec<(String, Vec<String>)> {
    step.actions
        .iter()
        .filter_map(|a| match a {
            Action::Launch {
                offer_ids, tasks, ..
            } => Some((
                offer_ids[0].clone(),
                tasks.iter().map(|t| t.backend_task_id.clone()).collect(),
            )),
            _ => None,
        })
        .collect()
}

fn acks(step: &Step) -> Vec<String> {
    step.actions
        .iter()
        .filter_map(|a| match a {
            Action::Acknowledge {
                backend_task_id, ..
            } => Some(backend_task_id.clone()),
            _ => None,
        })
        .collect()
}

fn has(step: &Step, pred: impl Fn(&Action) -> bool) -> bool {
    step.actions.iter().any(pred)
}

/// The step kills `backend_id` with that grace period.
fn kills_with_grace(step: &Step, backend_id: &str, grace: f64) -> bool {
    has(step, |a| {
        matches!(a, Action::Kill { backend_task_id, grace_secs: Some(g), .. }
            if backend_task_id == backend_id && *g == grace)
    })
}

/// A connected core with the given tasks launched on agent `a1` (one offer).
fn running_core(ids: &[&str], clock: &Clock) -> Core {
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    core.submit(ids.iter().map(|i| record(i)).collect(), clock.now());
    let step = core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 64.0, 65536.0)]),
        clock.now(),
    );
    assert_eq!(launches(&step)[0].1.len(), ids.len());
    core
}

#[test]
fn launch_running_finished_with_acks_after_changes() {
    let clock = Clock::new();
    let mut core = Core::new(cfg());
    let s = core.handle_event(subscribed(), clock.now());
    assert_eq!(
        s.actions,
        vec![Action::Reconcile(vec![]), Action::Suppress(vec![])]
    );

    let s = core.submit(vec![record("t-a")], clock.now());
    assert!(s.changes.is_empty(), "submitted tasks are already stored");
    assert_eq!(s.actions, vec![Action::Revive(vec![])]);

    let s = core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 4.0, 4096.0)]),
        clock.now(),
    );
    assert_eq!(
        launches(&s),
        vec![("o1".to_string(), vec!["t-a.1".to_string()])]
    );
    assert_eq!(s.changes.len(), 1);
    let c = &s.changes[0];
    assert_eq!(c.state, TaskState::Launching);
    assert_eq!(c.attempt, 1);
    assert_eq!(c.backend_task_id.as_deref(), Some("t-a.1"));
    assert_eq!(c.agent_id.as_deref(), Some("a1"));
    assert_eq!(c.hostname.as_deref(), Some("a1.example"));
    assert_eq!(c.at, clock.now().unix_ms);
    let Action::Launch {
        tasks,
        refuse_seconds,
        agent_id,
        ..
    } = &s.actions[0]
    else {
        panic!("launch first: {:?}", s.actions)
    };
    assert_eq!(agent_id, "a1");
    assert_eq!(*refuse_seconds, 120.0);
    assert_eq!(tasks[0].image, "airflow:2");
    assert_eq!(tasks[0].labels.get("airflow-mesos.task-id").unwrap(), "t-a");
    assert!(
        has(&s, |a| *a == Action::Suppress(vec![])),
        "queue empty again"
    );

    let mut u = update("t-a.1", BackendState::Running, Some(1));
    u.message = Some("container up".into());
    let s = core.handle_event(Event::Update(u), clock.now());
    assert_eq!(s.changes.len(), 1);
    assert_eq!(s.changes[0].state, TaskState::Running);
    assert_eq!(s.changes[0].message.as_deref(), Some("container up"));
    assert_eq!(
        s.actions,
        vec![Action::Acknowledge {
            agent_id: "a1".into(),
            backend_task_id: "t-a.1".into(),
            uuid: vec![1; 16]
        }]
    );

    let mut u = update("t-a.1", BackendState::Finished, Some(2));
    u.exit_code = Some(0);
    let s = core.handle_event(Event::Update(u), clock.now());
    assert_eq!(s.changes.len(), 1);
    assert_eq!(s.changes[0].state, TaskState::Succeeded);
    assert_eq!(s.changes[0].exit_code, Some(0));
    assert_eq!(acks(&s), vec!["t-a.1".to_string()]);
    assert!(core.task("t-a").is_none());
    assert_eq!(
        core.kill("t-a", clock.now()),
        Err(KillError::AlreadyTerminal(TaskState::Succeeded))
    );
    assert_eq!(core.kill("t-zz", clock.now()), Err(KillError::NotFound));
    core.assert_consistent();
    let st = core.stats();
    assert_eq!((st.succeeded, st.tasks_launched, st.acks), (1, 1, 2));
    assert_eq!(st.running + st.queued + st.launching, 0);
}

#[test]
fn duplicate_updates_change_nothing_but_are_acknowledged() {
    let clock = Clock::new();
    let mut core = running_core(&["t-a"], &clock);
    let s = core.handle_event(
        Event::Update(update("t-a.1", BackendState::Running, Some(1))),
        clock.now(),
    );
    assert_eq!(s.changes.len(), 1);
    let s = core.handle_event(
        Event::Update(update("t-a.1", BackendState::Running, Some(1))),
        clock.now(),
    );
    assert!(s.changes.is_empty());
    assert_eq!(acks(&s), vec!["t-a.1".to_string()]);
    // A late STARTING after RUNNING does not move the task back.
    let s = core.handle_event(
        Event::Update(update("t-a.1", BackendState::Starting, Some(3))),
        clock.now(),
    );
    assert!(s.changes.is_empty());
    assert_eq!(core.task("t-a").unwrap().state, TaskState::Running);
}

#[test]
fn updates_without_uuid_are_never_acknowledged_unknown_tasks_with_uuid_are() {
    let clock = Clock::new();
    let mut core = running_core(&["t-a"], &clock);
    let s = core.handle_event(
        Event::Update(update("t-a.1", BackendState::Running, None)),
        clock.now(),
    );
    assert_eq!(s.changes.len(), 1);
    assert!(acks(&s).is_empty());
    let s = core.handle_event(
        Event::Update(update(
            "other-framework-task",
            BackendState::Running,
            Some(9),
        )),
        clock.now(),
    );
    assert!(s.changes.is_empty());
    assert_eq!(acks(&s), vec!["other-framework-task".to_string()]);
    let s = core.handle_event(
        Event::Update(update("t-never.1", BackendState::Finished, Some(9))),
        clock.now(),
    );
    assert!(s.changes.is_empty());
    assert_eq!(acks(&s), vec!["t-never.1".to_string()]);
}

#[test]
fn task_error_fails_the_task() {
    let clock = Clock::new();
    let mut core = running_core(&["t-a"], &clock);
    let mut u = update("t-a.1", BackendState::Error, None);
    u.reason = Some("REASON_TASK_INVALID".into());
    u.message = Some("Task uses no resources".into());
    let s = core.handle_event(Event::Update(u), clock.now());
    assert_eq!(s.changes.len(), 1);
    assert_eq!(s.changes[0].state, TaskState::Failed);
    assert_eq!(s.changes[0].reason.as_deref(), Some("REASON_TASK_INVALID"));
    assert_eq!(
        s.changes[0].message.as_deref(),
        Some("Task uses no resources")
    );
    assert!(launches(&s).is_empty());
    assert_eq!(core.stats().failed, 1);
}

#[test]
fn container_launch_failure_before_start_is_a_launch_failure_not_the_tasks() {
    let mut clock = Clock::new();
    let mut core = running_core(&["t-a", "t-b"], &clock);
    // The agent could not fetch the task's files (e.g. the daemon was down): nothing ran.
    let mut u = update("t-a.1", BackendState::Failed, Some(1));
    u.source = Some(UpdateSource::Agent);
    u.reason = Some("REASON_CONTAINER_LAUNCH_FAILED".into());
    u.message = Some(
        "Failed to launch container: Failed to fetch all URIs for container 'c': exited with \
         status 1"
            .into(),
    );
    let s = core.handle_event(Event::Update(u), clock.advance(1.0));
    assert_eq!(s.changes.len(), 1);
    assert_eq!(s.changes[0].state, TaskState::Queued, "relaunched: {s:?}");
    let msg = s.changes[0].message.as_deref().unwrap();
    assert!(
        msg.contains("did not start") && msg.contains("Failed to fetch all URIs"),
        "{msg}"
    );
    assert_eq!(s.changes[0].exit_code, None);
    assert_eq!(acks(&s), vec!["t-a.1".to_string()]);
    let s = core.handle_event(
        Event::Offers(vec![offer("o2", "a1", 4.0, 4096.0)]),
        clock.now(),
    );
    assert_eq!(launches(&s)[0].1, vec!["t-a.2".to_string()]);

    // The same reason after the attempt started is the task's own failure: final.
    core.handle_event(
        Event::Update(update("t-b.1", BackendState::Starting, Some(2))),
        clock.now(),
    );
    let mut u = update("t-b.1", BackendState::Failed, Some(3));
    u.reason = Some("REASON_CONTAINER_LAUNCH_FAILED".into());
    let s = core.handle_event(Event::Update(u), clock.now());
    assert_eq!(s.changes[0].state, TaskState::Failed);
    // And a command that ran and failed is never relaunched.
    let mut core = running_core(&["t-c"], &clock);
    let mut u = update("t-c.1", BackendState::Failed, Some(4));
    u.reason = Some("REASON_COMMAND_EXECUTOR_FAILED".into());
    u.message = Some("Container exited with status 3".into());
    u.exit_code = Some(3);
    let s = core.handle_event(Event::Update(u), clock.now());
    assert_eq!(s.changes[0].state, TaskState::Failed);
    assert_eq!(s.changes[0].exit_code, Some(3));
}

#[test]
fn secrets_are_kept_only_until_the_attempt_starts() {
    let clock = Clock::new();
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    let mut spec = TaskSpec::shell("run");
    spec.files.push(crate::task::SandboxFile {
        path: "workload.json".into(),
        content: "{\"token\":\"t0k\"}".into(),
    });
    spec.secret_env.insert("PW".into(), "hunter2".into());
    let mut queued_only = TaskSpec::shell("run");
    queued_only.secret_env.insert("PW".into(), "x".into());
    core.submit(
        vec![record_with("t-a", spec), record_with("t-q", queued_only)],
        clock.now(),
    );
    let s = core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 1.0, 1024.0)]),
        clock.now(),
    );
    let launch = s.changes.iter().find(|c| c.task_id == "t-a").unwrap();
    assert!(launch.spec.is_none(), "the agent has yet to fetch them");
    // The attempt started: the stored spec loses its secrets, the core's copy too.
    let s = core.handle_event(
        Event::Update(update("t-a.1", BackendState::Running, Some(1))),
        clock.now(),
    );
    let spec = s.changes[0].spec.as_ref().expect("a blanked spec to store");
    assert_eq!(spec.files[0].path, "workload.json");
    assert_eq!(spec.files[0].content, "");
    assert_eq!(spec.secret_env.get("PW").map(String::as_str), Some(""));
    let held = core.task("t-a").unwrap().spec().unwrap();
    assert!(!held.files[0].content.contains("t0k"));
    assert!(held.secret_env.values().all(String::is_empty));
    // Later changes carry no spec.
    let s = core.handle_event(
        Event::Update(update("t-a.1", BackendState::Finished, Some(2))),
        clock.now(),
    );
    assert!(s.changes[0].spec.is_none());
    // A task that ends without ever starting (killed while queued) drops them too.
    let s = core.kill("t-q", clock.now()).unwrap();
    assert_eq!(s.changes[0].state, TaskState::Killed);
    assert_eq!(s.changes[0].spec.as_ref().unwrap().secret_env["PW"], "");
}

#[test]
fn a_reconciled_failure_waits_for_the_agents_own_update() {
    let mut clock = Clock::new();
    let mut core = Core::new(cfg());
    core.restore(
        vec![
            live("t-a", TaskState::Launching, 1, "a1"),
            live("t-b", TaskState::Running, 1, "a1"),
        ],
        clock.now(),
    );
    core.handle_event(subscribed(), clock.now());
    // Reconciliation answers first: FAILED, with nothing of the agent's.
    let recon = |id: &str| {
        let mut u = update(id, BackendState::Failed, None);
        u.source = Some(UpdateSource::Master);
        u.reason = Some("REASON_RECONCILIATION".into());
        u.message = Some("Reconciliation: Latest task state".into());
        u
    };
    let s = core.handle_event(Event::Update(recon("t-a.1")), clock.advance(1.0));
    assert!(s.changes.is_empty(), "held, not applied: {s:?}");
    let s = core.handle_event(Event::Update(recon("t-b.1")), clock.now());
    assert!(s.changes.is_empty());
    assert_eq!(
        core.next_deadline(),
        Some(clock.now().instant + Duration::from_secs(30))
    );
    // The agent's own update for t-a arrives: a launch failure, relaunched, its message kept.
    let mut u = update("t-a.1", BackendState::Failed, Some(7));
    u.source = Some(UpdateSource::Agent);
    u.reason = Some("REASON_CONTAINER_LAUNCH_FAILED".into());
    u.message = Some("Failed to launch container: Couldn't connect to server".into());
    let s = core.handle_event(Event::Update(u), clock.advance(2.0));
    assert_eq!(s.changes[0].state, TaskState::Queued);
    assert!(s.changes[0]
        .message
        .as_deref()
        .unwrap()
        .contains("Couldn't connect to server"));
    // t-b never hears from its agent: the held answer is applied when the grace runs out.
    let s = core.tick(clock.advance(27.0));
    assert!(
        s.changes.iter().all(|c| c.task_id != "t-b"),
        "too early: {s:?}"
    );
    let s = core.tick(clock.advance(1.0));
    let c = s.changes.iter().find(|c| c.task_id == "t-b").unwrap();
    assert_eq!(c.state, TaskState::Failed);
    assert_eq!(
        c.message.as_deref(),
        Some("Reconciliation: Latest task state")
    );
    core.assert_consistent();
}

#[test]
fn dropped_launch_is_retried_as_a_new_attempt_with_a_new_id() {
    let mut clock = Clock::new();
    let mut core = running_core(&["t-a"], &clock);
    let mut u = update("t-a.1", BackendState::Dropped, None);
    u.reason = Some("REASON_INVALID_OFFERS".into());
    let s = core.handle_event(Event::Update(u), clock.advance(10.0));
    assert_eq!(s.changes.len(), 1);
    assert_eq!(s.changes[0].state, TaskState::Queued);
    assert_eq!(s.changes[0].attempt, 1);
    assert!(s.changes[0]
        .message
        .as_deref()
        .unwrap()
        .contains("TASK_DROPPED"));
    assert!(
        has(&s, |a| *a == Action::Revive(vec![])),
        "work arrived: {:?}",
        s.actions
    );

    let s = core.handle_event(
        Event::Offers(vec![offer("o2", "a2", 4.0, 4096.0)]),
        clock.now(),
    );
    assert_eq!(
        launches(&s),
        vec![("o2".to_string(), vec!["t-a.2".to_string()])]
    );
    assert_eq!(s.changes[0].attempt, 2);
    assert_eq!(s.changes[0].backend_task_id.as_deref(), Some("t-a.2"));
    // The old attempt's late updates change nothing.
    let s = core.handle_event(
        Event::Update(update("t-a.1", BackendState::Dropped, None)),
        clock.now(),
    );
    assert!(s.is_empty());
    assert_eq!(core.task("t-a").unwrap().state, TaskState::Launching);
}

#[test]
fn retry_limit_exhausted_fails_the_task() {
    let mut clock = Clock::new();
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    let spec = TaskSpec {
        retries: Some(1),
        ..TaskSpec::shell("x")
    };
    core.submit(vec![record_with("t-a", spec)], clock.now());
    for attempt in 1..=2 {
        let s = core.handle_event(
            Event::Offers(vec![offer(&format!("o{attempt}"), "a1", 4.0, 4096.0)]),
            clock.advance(10.0),
        );
        assert_eq!(launches(&s)[0].1, vec![format!("t-a.{attempt}")]);
        let s = core.handle_event(
            Event::Update(update(
                &format!("t-a.{attempt}"),
                BackendState::Dropped,
                None,
            )),
            clock.now(),
        );
        let expect = if attempt == 1 {
            TaskState::Queued
        } else {
            TaskState::Failed
        };
        assert_eq!(s.changes[0].state, expect);
    }
    assert_eq!(core.state_of("t-a"), Some(TaskState::Failed));
    core.assert_consistent();
    let st = core.stats();
    assert_eq!((st.launch_failures, st.relaunches, st.failed), (2, 1, 1));
}

/// An ACCEPT the master refused (or that was never written) launched nothing: a new attempt.
/// (One that got no answer at all is held instead: see the `an_unanswered_launch_*` tests.)
#[test]
fn launch_call_failure_counts_as_a_launch_failure() {
    let clock = Clock::new();
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    core.submit(vec![record("t-a")], clock.now());
    let s = core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 4.0, 4096.0)]),
        clock.now(),
    );
    let launch = s.actions[0].clone();
    let s = core.handle_event(
        Event::ActionFailed {
            action: launch,
            error: "503 Service Unavailable: Master has not finished recovery".into(),
            fatal: false,
        },
        clock.now(),
    );
    assert_eq!(s.changes[0].state, TaskState::Queued);
    assert!(s.changes[0]
        .message
        .as_deref()
        .unwrap()
        .contains("not finished recovery"));
    let s = core.handle_event(
        Event::Offers(vec![offer("o2", "a1", 4.0, 4096.0)]),
        clock.now(),
    );
    assert_eq!(launches(&s)[0].1, vec!["t-a.2".to_string()]);
}

/// A core with `t-a` launched on offer `o1` whose ACCEPT got no answer: the step that held it.
fn unconfirmed_core(clock: &Clock) -> (Core, Step) {
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    core.submit(vec![record("t-a")], clock.now());
    let s = core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 4.0, 4096.0)]),
        clock.now(),
    );
    let launch = s.actions[0].clone();
    let s = core.handle_event(
        Event::ActionUnconfirmed {
            action: launch,
            error: "the connection closed before the answer".into(),
        },
        clock.now(),
    );
    (core, s)
}

fn reconciled(backend_id: &str, state: BackendState) -> Event {
    let mut u = update(backend_id, state, None);
    u.source = Some(UpdateSource::Master);
    u.reason = Some("REASON_RECONCILIATION".into());
    Event::Update(u)
}

#[test]
fn an_unanswered_launch_is_held_until_its_offers_are_void_and_the_master_says_it_is_gone() {
    let clock = Clock::new();
    let (mut core, s) = unconfirmed_core(&clock);
    // Held as launching, its offer voided; nothing relaunched.
    assert_eq!(s.changes.len(), 1);
    assert_eq!(s.changes[0].state, TaskState::Launching);
    assert!(
        s.changes[0]
            .message
            .as_deref()
            .unwrap()
            .contains("no answer"),
        "{:?}",
        s.changes[0]
    );
    assert_eq!(
        s.actions,
        vec![Action::VoidOffers {
            offer_ids: vec!["o1".into()]
        }]
    );
    // "Unknown to the master" before the offers are void is not final: the ACCEPT may still
    // arrive and launch it.
    for state in [
        BackendState::Gone,
        BackendState::Unknown,
        BackendState::GoneByOperator,
    ] {
        let s = core.handle_event(reconciled("t-a.1", state), clock.now());
        assert!(s.changes.is_empty(), "{state:?}: {:?}", s.changes);
    }
    assert_eq!(core.state_of("t-a"), Some(TaskState::Launching));
    let s = core.handle_event(
        Event::Offers(vec![offer("o2", "a1", 4.0, 4096.0)]),
        clock.now(),
    );
    assert!(
        launches(&s).is_empty(),
        "no second attempt: {:?}",
        s.actions
    );
    // The master took the DECLINE: the attempt is asked about, and now its answer is final.
    let s = core.handle_event(
        Event::OffersVoided {
            offer_ids: vec!["o1".into()],
        },
        clock.now(),
    );
    assert!(
        has(&s, |a| *a
            == Action::Reconcile(vec![(
                "t-a.1".into(),
                Some("a1".into())
            )])),
        "{:?}",
        s.actions
    );
    let s = core.handle_event(reconciled("t-a.1", BackendState::Gone), clock.now());
    assert_eq!(s.changes[0].state, TaskState::Queued);
    let s = core.handle_event(
        Event::Offers(vec![offer("o3", "a1", 4.0, 4096.0)]),
        clock.now(),
    );
    assert_eq!(launches(&s)[0].1, vec!["t-a.2".to_string()]);
    core.assert_consistent();
}

#[test]
fn an_unanswered_launch_the_master_took_runs_once() {
    let clock = Clock::new();
    let (mut core, _) = unconfirmed_core(&clock);
    let s = core.handle_event(
        Event::OffersVoided {
            offer_ids: vec!["o1".into()],
        },
        clock.now(),
    );
    assert!(has(
        &s,
        |a| matches!(a, Action::Reconcile(l) if l.len() == 1)
    ));
    let s = core.handle_event(reconciled("t-a.1", BackendState::Staging), clock.now());
    assert_eq!(s.changes[0].state, TaskState::Launching);
    assert!(s.changes[0]
        .message
        .as_deref()
        .unwrap()
        .contains("the master has it"));
    // Known to the master: a later GONE (the task really went away) is final again.
    for (state, want) in [
        (BackendState::Starting, TaskState::Starting),
        (BackendState::Running, TaskState::Running),
        (BackendState::Finished, TaskState::Succeeded),
    ] {
        let s = core.handle_event(Event::Update(update("t-a.1", state, Some(1))), clock.now());
        assert_eq!(s.changes[0].state, want);
        assert_eq!(s.changes[0].attempt, 1);
    }
    assert_eq!(core.stats().relaunches, 0);
}

#[test]
fn an_unanswered_launch_the_master_dropped_is_relaunched_without_waiting_for_the_void() {
    let clock = Clock::new();
    let (mut core, _) = unconfirmed_core(&clock);
    let mut u = update("t-a.1", BackendState::Dropped, None);
    u.reason = Some("REASON_INVALID_OFFERS".into());
    let s = core.handle_event(Event::Update(u), clock.now());
    assert_eq!(s.changes[0].state, TaskState::Queued);
}

#[test]
fn a_failed_void_is_sent_again_after_a_backoff_and_after_a_resubscribe() {
    let mut clock = Clock::new();
    let (mut core, s) = unconfirmed_core(&clock);
    let void = s.actions[0].clone();
    let s = core.handle_event(
        Event::ActionFailed {
            action: void.clone(),
            error: "not subscribed to a Mesos master".into(),
            fatal: false,
        },
        clock.now(),
    );
    assert!(!has(&s, |a| matches!(a, Action::VoidOffers { .. })));
    let s = core.tick(clock.advance(1.0));
    assert!(
        !has(&s, |a| matches!(a, Action::VoidOffers { .. })),
        "not in a loop"
    );
    let s = core.tick(clock.advance(5.0));
    assert!(has(&s, |a| *a == void), "{:?}", s.actions);
    // Unanswered, then a new subscription: sent again at once.
    core.handle_event(
        Event::ActionUnconfirmed {
            action: void.clone(),
            error: "timed out".into(),
        },
        clock.now(),
    );
    let s = core.handle_event(subscribed(), clock.now());
    assert!(has(&s, |a| *a == void), "{:?}", s.actions);
    // Voided twice (two DECLINEs taken): reconciled once more, nothing else.
    core.handle_event(
        Event::OffersVoided {
            offer_ids: vec!["o1".into()],
        },
        clock.now(),
    );
    let s = core.handle_event(
        Event::OffersVoided {
            offer_ids: vec!["o1".into()],
        },
        clock.now(),
    );
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    core.assert_consistent();
}

#[test]
fn lost_before_start_is_relaunched_lost_after_start_is_held_unknown() {
    let clock = Clock::new();
    let mut core = running_core(&["t-a", "t-b"], &clock);
    let mut u = update("t-a.1", BackendState::Lost, None);
    u.reason = Some("REASON_AGENT_REMOVED".into());
    let s = core.handle_event(Event::Update(u.clone()), clock.now());
    assert_eq!(
        s.changes[0].state,
        TaskState::Queued,
        "never reached an agent"
    );

    core.handle_event(
        Event::Update(update("t-b.1", BackendState::Running, Some(1))),
        clock.now(),
    );
    u.backend_task_id = "t-b.1".into();
    let s = core.handle_event(Event::Update(u), clock.now());
    assert_eq!(
        s.changes[0].state,
        TaskState::Unknown,
        "ran: never relaunched blindly"
    );
    let s = core.handle_event(
        Event::Update(update("t-b.1", BackendState::Unreachable, None)),
        clock.now(),
    );
    assert!(s.changes.is_empty());
    // The agent comes back.
    let s = core.handle_event(
        Event::Update(update("t-b.1", BackendState::Running, None)),
        clock.now(),
    );
    assert_eq!(s.changes[0].state, TaskState::Running);
}

#[test]
fn kill_of_a_queued_task_is_immediate() {
    let clock = Clock::new();
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    core.submit(vec![record("t-a"), record("t-b")], clock.now());
    let s = core.kill("t-a", clock.now()).unwrap();
    assert_eq!(s.changes.len(), 1);
    assert_eq!(s.changes[0].state, TaskState::Killed);
    assert!(s.changes[0].kill_requested);
    assert!(s.actions.is_empty(), "t-b is still queued: {:?}", s.actions);
    let s = core.kill("t-b", clock.now()).unwrap();
    assert_eq!(s.actions, vec![Action::Suppress(vec![])]);
    let s = core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 4.0, 4096.0)]),
        clock.now(),
    );
    assert!(launches(&s).is_empty());
    assert!(has(
        &s,
        |a| matches!(a, Action::Decline { offer_ids, refuse_seconds } if offer_ids == &vec!["o1".to_string()] && *refuse_seconds == 120.0)
    ));
    assert_eq!(
        core.kill("t-a", clock.now()),
        Err(KillError::AlreadyTerminal(TaskState::Killed))
    );
}

#[test]
fn kill_of_a_running_task_is_sent_with_grace_and_repeated() {
    let mut clock = Clock::new();
    let mut core = running_core(&["t-a"], &clock);
    core.handle_event(
        Event::Update(update("t-a.1", BackendState::Running, Some(1))),
        clock.now(),
    );
    let s = core.kill("t-a", clock.now()).unwrap();
    assert_eq!(s.changes[0].state, TaskState::Killing);
    assert!(s.changes[0].kill_requested);
    assert_eq!(
        s.actions,
        vec![Action::Kill {
            backend_task_id: "t-a.1".into(),
            agent_id: Some("a1".into()),
            grace_secs: Some(30.0)
        }]
    );
    assert!(
        core.kill("t-a", clock.now()).unwrap().is_empty(),
        "idempotent"
    );
    // No terminal update within grace + 30 s: the kill is sent again.
    let deadline = core.next_deadline().unwrap();
    assert_eq!(deadline, clock.now().instant + Duration::from_secs(60));
    assert!(core.tick(clock.advance(59.0)).actions.is_empty());
    let s = core.tick(clock.advance(1.0));
    assert!(has(
        &s,
        |a| matches!(a, Action::Kill { backend_task_id, .. } if backend_task_id == "t-a.1")
    ));
    // A RUNNING (e.g. a reconciliation answer) keeps it Killing.
    let s = core.handle_event(
        Event::Update(update("t-a.1", BackendState::Running, None)),
        clock.now(),
    );
    assert!(s.changes.is_empty());
    let s = core.handle_event(
        Event::Update(update("t-a.1", BackendState::Killed, Some(2))),
        clock.now(),
    );
    assert_eq!(s.changes[0].state, TaskState::Killed);
    assert_eq!(acks(&s), vec!["t-a.1".to_string()]);
    assert!(core
        .tick(clock.advance(120.0))
        .actions
        .iter()
        .all(|a| !matches!(a, Action::Kill { .. })));
}

/// A launched task holds its spec packed (its JSON), not parsed: what is read from it later
/// (the kill's grace period, the launch retries, the spec itself) is the task's own.
#[test]
fn a_launched_tasks_spec_is_held_packed_and_read_back_alike() {
    let mut clock = Clock::new();
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    let graced = TaskSpec {
        kill_grace_period: Some(7.5),
        name: Some("graced".into()),
        ..TaskSpec::shell("sleep 60")
    };
    let no_retry = TaskSpec {
        retries: Some(0),
        ..TaskSpec::shell("x")
    };
    core.submit(
        vec![
            record_with("t-g", graced.clone()),
            record_with("t-r", no_retry),
        ],
        clock.now(),
    );
    let s = core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 8.0, 8192.0)]),
        clock.advance(1.0),
    );
    assert_eq!(launches(&s)[0].1.len(), 2);
    core.assert_consistent();
    assert_eq!(*core.task("t-g").unwrap().spec().unwrap(), graced);
    core.handle_event(
        Event::Update(update("t-g.1", BackendState::Running, Some(1))),
        clock.now(),
    );
    let s = core.kill("t-g", clock.now()).unwrap();
    assert!(kills_with_grace(&s, "t-g.1", 7.5), "{:?}", s.actions);
    let s = core.handle_event(
        Event::Update(update("t-r.1", BackendState::Dropped, Some(2))),
        clock.now(),
    );
    assert_eq!(s.changes[0].state, TaskState::Failed);
    let msg = s.changes[0].message.as_deref().unwrap_or_default();
    assert!(msg.contains("no launch retries left (0 allowed)"), "{msg}");
    core.assert_consistent();
}

#[test]
fn kill_before_start_then_dropped_ends_killed_not_relaunched() {
    let clock = Clock::new();
    let mut core = running_core(&["t-a"], &clock);
    core.kill("t-a", clock.now()).unwrap();
    let s = core.handle_event(
        Event::Update(update("t-a.1", BackendState::Dropped, None)),
        clock.now(),
    );
    assert_eq!(s.changes[0].state, TaskState::Killed);
    assert!(launches(&s).is_empty());
}

fn live(id: &str, state: TaskState, attempt: u32, agent: &str) -> (TaskRecord, Option<Attempt>) {
    let mut rec = record(id);
    rec.state = state;
    rec.attempts = attempt;
    rec.current_attempt_id = Some(format!("{id}.{attempt}"));
    rec.agent_id = Some(agent.into());
    let a = Attempt {
        task_id: id.into(),
        attempt,
        backend_task_id: format!("{id}.{attempt}"),
        agent_id: Some(agent.into()),
        hostname: None,
        agent_url: None,
        state,
        message: None,
        reason: None,
        started_at: 0,
        updated_at: 0,
    };
    (rec, Some(a))
}

#[test]
fn restore_then_reconcile_with_gone_and_running_answers() {
    let mut clock = Clock::new();
    let mut core = Core::new(cfg());
    let mut queued = record("t-q");
    queued.attempts = 1;
    queued.current_attempt_id = Some("t-q.1".into());
    core.restore(
        vec![
            live("t-run", TaskState::Running, 1, "a1"),
            live("t-launch", TaskState::Launching, 2, "a2"),
            live("t-unk", TaskState::Unknown, 1, "a3"),
            (queued, None),
            live("t-done", TaskState::Succeeded, 1, "a1"),
        ],
        clock.now(),
    );
    assert_eq!(core.stats().queued, 1);
    assert_eq!(
        core.kill("t-done", clock.now()),
        Err(KillError::AlreadyTerminal(TaskState::Succeeded))
    );

    let s = core.handle_event(subscribed(), clock.now());
    assert_eq!(
        s.actions[0],
        Action::Reconcile(vec![
            ("t-launch.2".into(), Some("a2".into())),
            ("t-run.1".into(), Some("a1".into())),
            ("t-unk.1".into(), Some("a3".into())),
        ])
    );
    assert!(
        has(&s, |a| *a == Action::Revive(vec![])),
        "queued work after subscribe"
    );

    // Answers (no uuid, from the master).
    let mut ans = update("t-run.1", BackendState::Running, None);
    ans.reason = Some("REASON_RECONCILIATION".into());
    let s = core.handle_event(Event::Update(ans.clone()), clock.now());
    assert!(s.is_empty(), "already running: {s:?}");
    ans.backend_task_id = "t-launch.2".into();
    ans.state = BackendState::Gone;
    let s = core.handle_event(Event::Update(ans.clone()), clock.now());
    assert_eq!(
        s.changes[0].state,
        TaskState::Queued,
        "never reached an agent: relaunched"
    );
    assert_eq!(core.stats().reconcile_pending, 1);

    // t-unk got no answer: asked again after the backoff, alone.
    assert_eq!(
        core.next_deadline(),
        Some(clock.now().instant + Duration::from_secs(5))
    );
    let s = core.tick(clock.advance(5.0));
    assert!(has(&s, |a| *a
        == Action::Reconcile(vec![(
            "t-unk.1".into(),
            Some("a3".into())
        )])));
    assert_eq!(
        core.next_deadline(),
        Some(clock.now().instant + Duration::from_secs(10))
    );
    ans.backend_task_id = "t-unk.1".into();
    let s = core.handle_event(Event::Update(ans), clock.now());
    assert_eq!(s.changes[0].state, TaskState::Failed);
    assert!(s.changes[0].message.as_deref().unwrap().contains("is gone"));
    assert!(
        has(&s, |a| *a == Action::Reconcile(vec![])),
        "then one implicit round"
    );

    // The relaunched task keeps its place: older (by creation, then id) first.
    let s = core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 8.0, 8192.0)]),
        clock.advance(5.0),
    );
    let launched: Vec<String> = launches(&s).into_iter().flat_map(|(_, t)| t).collect();
    assert_eq!(
        launched,
        vec!["t-launch.3".to_string(), "t-q.2".to_string()]
    );
    // Periodic round 900 s after the last one: explicit for the attempts not yet seen on an
    // agent, then implicit.
    assert_eq!(
        core.next_deadline(),
        Some(clock.now().instant + Duration::from_secs(895))
    );
    let s = core.tick(clock.advance(895.0));
    assert!(
        has(&s, |a| matches!(a, Action::Reconcile(l) if l.len() == 2)),
        "launching attempts asked explicitly: {s:?}"
    );
}

#[test]
fn old_attempt_alive_is_killed() {
    let clock = Clock::new();
    let mut core = running_core(&["t-a"], &clock);
    core.handle_event(
        Event::Update(update("t-a.1", BackendState::Dropped, None)),
        clock.now(),
    );
    core.handle_event(
        Event::Offers(vec![offer("o2", "a2", 4.0, 4096.0)]),
        clock.now(),
    );
    let s = core.handle_event(
        Event::Update(update("t-a.1", BackendState::Running, Some(4))),
        clock.now(),
    );
    assert!(s.changes.is_empty());
    assert!(has(
        &s,
        |a| matches!(a, Action::Kill { backend_task_id, .. } if backend_task_id == "t-a.1")
    ));
    assert_eq!(acks(&s), vec!["t-a.1".to_string()]);
    assert_eq!(
        core.task("t-a").unwrap().backend_task_id.as_deref(),
        Some("t-a.2")
    );
}

#[test]
fn suppress_and_revive_are_rate_limited_on_a_fake_clock() {
    let mut clock = Clock::new();
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    assert!(core.stats().suppressed);
    let s = core.submit(vec![record("t-1")], clock.now());
    assert_eq!(s.actions, vec![Action::Revive(vec![])]);
    let s = core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 4.0, 4096.0)]),
        clock.advance(1.0),
    );
    assert!(has(&s, |a| *a == Action::Suppress(vec![])));
    // More work 1 s later: suppressed, so nothing would come without a REVIVE: at once.
    let s = core.submit(vec![record("t-2")], clock.advance(1.0));
    assert_eq!(s.actions, vec![Action::Revive(vec![])]);
    // Still more 1 s later, not suppressed: this REVIVE (which only clears decline filters)
    // waits for the 5 s rate limit.
    let s = core.submit(vec![record("t-3")], clock.advance(1.0));
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    assert_eq!(
        core.next_deadline(),
        Some(clock.now().instant + Duration::from_secs(4))
    );
    assert!(core.tick(clock.advance(3.0)).actions.is_empty());
    let s = core.tick(clock.advance(1.0));
    assert_eq!(s.actions, vec![Action::Revive(vec![])]);
    // Nothing more to do until the offers come.
    assert!(core.tick(clock.advance(10.0)).actions.is_empty());
    // Suppress is sent once, when the queue runs empty, and remembered.
    let s = core.kill("t-2", clock.now()).unwrap();
    assert!(s.actions.is_empty(), "t-3 is still queued: {:?}", s.actions);
    let s = core.kill("t-3", clock.now()).unwrap();
    assert_eq!(s.actions, vec![Action::Suppress(vec![])]);
    let s = core.kill("t-1", clock.now()).unwrap();
    assert!(
        matches!(s.actions.as_slice(), [Action::Kill { .. }]),
        "{:?}",
        s.actions
    );
    assert!(core.submit(vec![], clock.now()).actions.is_empty());
}

#[test]
fn resubscribe_revives_queued_work_and_disconnect_sends_nothing() {
    let mut clock = Clock::new();
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    core.submit(vec![record("t-1")], clock.now());
    let s = core.handle_event(
        Event::Disconnected {
            reason: "stream closed".into(),
        },
        clock.advance(1.0),
    );
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    // Only the queued task's message changes: it says why it waits.
    assert_eq!(s.changes.len(), 1);
    assert_eq!(
        s.changes[0].message.as_deref(),
        Some("waiting: the backend is not connected: stream closed")
    );
    assert_eq!(core.next_deadline(), None, "no timers while disconnected");
    let s = core.handle_event(subscribed(), clock.advance(1.0));
    assert!(has(&s, |a| *a == Action::Revive(vec![])), "{:?}", s.actions);
    assert!(has(&s, |a| *a == Action::Reconcile(vec![])));
}

#[test]
fn failed_suppress_is_retried_later_not_in_a_loop() {
    let mut clock = Clock::new();
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    let s = core.handle_event(
        Event::ActionFailed {
            action: Action::Suppress(vec![]),
            error: "503".into(),
            fatal: false,
        },
        clock.now(),
    );
    assert!(s.actions.is_empty());
    assert_eq!(
        core.next_deadline().map(|d| d - clock.now().instant),
        Some(Duration::from_secs(5))
    );
    let s = core.tick(clock.advance(5.0));
    assert_eq!(s.actions, vec![Action::Suppress(vec![])]);
}

#[test]
fn older_tasks_first_and_unfit_tasks_stay_queued() {
    let clock = Clock::new();
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    let big = TaskSpec {
        cpus: Some(3.0),
        ..TaskSpec::shell("x")
    };
    core.submit(
        vec![
            record("t-1"),
            record_with("t-2", big.clone()),
            record("t-3"),
            record_with("t-4", big),
        ],
        clock.now(),
    );
    let s = core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 4.0, 4096.0)]),
        clock.now(),
    );
    assert_eq!(
        launches(&s)[0].1,
        vec!["t-1.1".to_string(), "t-2.1".to_string()]
    );
    assert_eq!(core.stats().queued, 2);
    assert!(!has(&s, |a| matches!(a, Action::Suppress(_))));
    core.assert_consistent();
}

#[test]
fn constraints_from_config_and_spec_pick_the_agent() {
    let clock = Clock::new();
    let mut c = cfg();
    c.constraints = vec![crate::task::spec::parse_constraint("airflow:true").unwrap()];
    let mut core = Core::new(c);
    core.handle_event(subscribed(), clock.now());
    let spec = TaskSpec {
        constraints: vec!["hostname:a3.example".into()],
        ..TaskSpec::shell("x")
    };
    core.submit(
        vec![record("t-any"), record_with("t-a3", spec)],
        clock.now(),
    );
    let mut o1 = offer("o1", "a1", 4.0, 4096.0);
    let mut o2 = offer("o2", "a2", 4.0, 4096.0);
    let mut o3 = offer("o3", "a3", 4.0, 4096.0);
    o2.attributes = vec![Attribute {
        name: "AIRFLOW".into(),
        value: "True".into(),
    }];
    o3.attributes = o2.attributes.clone();
    o1.attributes = vec![];
    let s = core.handle_event(Event::Offers(vec![o1, o2, o3]), clock.now());
    assert_eq!(
        launches(&s),
        vec![
            ("o2".to_string(), vec!["t-any.1".to_string()]),
            ("o3".to_string(), vec!["t-a3.1".to_string()]),
        ]
    );
    assert!(has(
        &s,
        |a| matches!(a, Action::Decline { offer_ids, .. } if offer_ids == &vec!["o1".to_string()])
    ));
}

#[test]
fn unlaunchable_spec_fails_at_submission() {
    let clock = Clock::new();
    let mut core = Core::new(CoreConfig::default()); // no default image
    let s = core.submit(vec![record("t-a")], clock.now());
    assert_eq!(s.changes.len(), 1);
    assert_eq!(s.changes[0].state, TaskState::Failed);
    assert!(s.changes[0]
        .message
        .as_deref()
        .unwrap()
        .contains("no image"));
}

#[test]
fn periodic_reconciliation_skips_attempts_launched_moments_ago() {
    let mut clock = Clock::new();
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    core.submit(vec![record("t-old")], clock.now());
    core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 4.0, 4096.0)]),
        clock.advance(1.0),
    );
    // 30 s before the periodic round, a second task is launched: still in flight then.
    core.submit(vec![record("t-new")], clock.advance(868.0));
    core.handle_event(
        Event::Offers(vec![offer("o2", "a1", 4.0, 4096.0)]),
        clock.advance(1.0),
    );
    let s = core.tick(clock.advance(30.0));
    assert!(
        has(&s, |a| *a
            == Action::Reconcile(vec![(
                "t-old.1".into(),
                Some("a1".into())
            )])),
        "{:?}",
        s.actions
    );
}

#[test]
fn gone_resolves_started_attempts_as_failed_and_relaunches_unstarted_ones() {
    let clock = Clock::new();
    let mut core = running_core(&["t-a", "t-b", "t-c"], &clock);
    core.handle_event(
        Event::Update(update("t-a.1", BackendState::Starting, Some(1))),
        clock.now(),
    );
    let s = core.handle_event(
        Event::Update(update("t-a.1", BackendState::GoneByOperator, None)),
        clock.now(),
    );
    assert_eq!(s.changes[0].state, TaskState::Failed);
    assert!(s.changes[0]
        .message
        .as_deref()
        .unwrap()
        .contains("TASK_GONE_BY_OPERATOR"));
    let s = core.handle_event(
        Event::Update(update("t-b.1", BackendState::Unknown, None)),
        clock.now(),
    );
    assert_eq!(s.changes[0].state, TaskState::Queued);
    // Killed without a kill request is still Killed (someone else killed it).
    let s = core.handle_event(
        Event::Update(update("t-c.1", BackendState::Killed, None)),
        clock.now(),
    );
    assert_eq!(s.changes[0].state, TaskState::Killed);
    assert!(!s.changes[0].kill_requested);
}

/// The one task launched in `step`.
fn only_launch(step: &Step) -> crate::scheduler::types::LaunchTask {
    let tasks: Vec<&crate::scheduler::types::LaunchTask> = step
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Launch { tasks, .. } => Some(tasks),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(tasks.len(), 1, "{:?}", step.actions);
    tasks[0].clone()
}

/// A launched task does not keep what its spec was prepared into; a relaunch prepares it
/// again and launches it as the first time (resources, command, shell, the resolved spec).
#[test]
fn a_relaunch_prepares_the_spec_again_and_launches_it_alike() {
    let clock = Clock::new();
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    let mut spec = TaskSpec::shell("echo $HOME");
    spec.cpus = Some(0.5);
    spec.mem = Some(300.0);
    spec.env.insert("A".into(), "1".into());
    core.submit(vec![record_with("t-1", spec)], clock.now());
    let first = only_launch(&core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 4.0, 4096.0)]),
        clock.now(),
    ));
    let mut u = update("t-1.1", BackendState::Dropped, None);
    u.reason = Some("REASON_INVALID_OFFERS".into());
    let s = core.handle_event(Event::Update(u), clock.now());
    assert_eq!(s.changes.last().unwrap().state, TaskState::Queued);
    let second = only_launch(&core.handle_event(
        Event::Offers(vec![offer("o2", "a1", 4.0, 4096.0)]),
        clock.now(),
    ));
    assert_eq!(second.backend_task_id, "t-1.2");
    assert_eq!(second.resources, first.resources);
    assert_eq!(second.spec, first.spec);
    assert_eq!(second.shell, first.shell);
    core.assert_consistent();
}

/// A task restored launched whose spec this configuration cannot launch (no image, and no
/// default image any more) fails at its relaunch rather than being queued for ever.
#[test]
fn a_restored_task_whose_spec_cannot_launch_fails_at_its_relaunch() {
    let clock = Clock::new();
    let mut core = Core::new(CoreConfig {
        default_image: None,
        ..cfg()
    });
    let (rec, a) = live("t-x", TaskState::Launching, 1, "a1");
    assert!(rec.spec.image.is_none(), "{:?}", rec.spec);
    core.restore(vec![(rec, a)], clock.now());
    core.handle_event(subscribed(), clock.now());
    let mut u = update("t-x.1", BackendState::Dropped, None);
    u.reason = Some("REASON_INVALID_OFFERS".into());
    let s = core.handle_event(Event::Update(u), clock.now());
    let c = s.changes.last().unwrap();
    assert_eq!(c.state, TaskState::Failed, "{c:?}");
    assert!(
        c.message
            .as_deref()
            .unwrap()
            .contains("the spec can no longer be launched"),
        "{c:?}"
    );
    core.assert_consistent();
}

#[test]
fn restored_killing_task_gets_its_kill_again_after_subscribe() {
    let clock = Clock::new();
    let mut core = Core::new(cfg());
    let (mut rec, a) = live("t-k", TaskState::Killing, 1, "a1");
    rec.kill_requested = true;
    core.restore(vec![(rec, a)], clock.now());
    assert_eq!(
        core.next_deadline(),
        None,
        "nothing before the subscription"
    );
    let s = core.handle_event(subscribed(), clock.now());
    assert!(kills_with_grace(&s, "t-k.1", 30.0), "{:?}", s.actions);
    let s = core.handle_event(
        Event::Update(update("t-k.1", BackendState::Failed, Some(1))),
        clock.now(),
    );
    assert_eq!(
        s.changes[0].state,
        TaskState::Killed,
        "its end was asked for"
    );
}

mod random_sequences {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    #[derive(Debug, Clone)]
    enum Op {
        Submit(u8),
        Offers(u8),
        /// (task, attempt back from the latest: 0 = current), state, with uuid
        Update(u8, u8, u8, bool),
        Kill(u8),
        Tick(u16),
        Subscribe,
        Disconnect,
        FailLastLaunch,
        UnconfirmLastLaunch,
        VoidAll,
    }

    const STATES: [BackendState; 14] = [
        BackendState::Staging,
        BackendState::Starting,
        BackendState::Running,
        BackendState::Killing,
        BackendState::Finished,
        BackendState::Failed,
        BackendState::Killed,
        BackendState::Error,
        BackendState::Lost,
        BackendState::Dropped,
        BackendState::Unreachable,
        BackendState::Gone,
        BackendState::GoneByOperator,
        BackendState::Unknown,
    ];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => (1u8..4).prop_map(Op::Submit),
            1 => (1u8..3).prop_map(Op::Offers),
            4 => (any::<u8>(), 0u8..2, 0u8..14, any::<bool>()).prop_map(|(t, b, s, u)| Op::Update(t, b, s, u)),
            1 => any::<u8>().prop_map(Op::Kill),
            1 => (1u16..400).prop_map(Op::Tick),
            1 => Just(Op::Subscribe),
            1 => Just(Op::Disconnect),
            1 => Just(Op::FailLastLaunch),
            1 => Just(Op::UnconfirmLastLaunch),
            1 => Just(Op::VoidAll),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the order of events: the bookkeeping stays consistent, a task is only
        /// launched from the queue (never two live attempts, never the same backend id twice),
        /// reaches at most one terminal state and changes no more after it, and exactly the
        /// updates with a uuid are acknowledged.
        #[test]
        fn lifecycle_invariants(ops in proptest::collection::vec(op(), 1..80)) {
            let mut clock = Clock::new();
            let mut core = Core::new(cfg());
            let mut ids: Vec<String> = Vec::new();
            let mut backend_ids: HashSet<String> = HashSet::new();
            let mut terminal: HashMap<String, TaskState> = HashMap::new();
            let mut live_attempt: HashMap<String, String> = HashMap::new();
            let mut last_launch: Option<Action> = None;
            let mut voids: Vec<Vec<String>> = Vec::new();
            // Attempts whose ACCEPT got no answer, and whether their offers are void yet.
            let mut unconfirmed: HashMap<String, bool> = HashMap::new();
            let mut offer_n = 0;
            for op in ops {
                let mut uuid_sent = false;
                let before: HashMap<String, TaskState> = ids.iter()
                    .filter_map(|i| core.state_of(i).map(|s| (i.clone(), s)))
                    .collect();
                let step = match op {
                    Op::Submit(k) => {
                        let recs = (0..k).map(|_| {
                            let id = format!("t-{}", ids.len());
                            ids.push(id.clone());
                            record(&id)
                        }).collect();
                        core.submit(recs, clock.now())
                    }
                    Op::Offers(n) => {
                        let offers = (0..n).map(|_| {
                            offer_n += 1;
                            offer(&format!("o{offer_n}"), &format!("a{}", offer_n % 3), 2.0, 1024.0)
                        }).collect();
                        core.handle_event(Event::Offers(offers), clock.now())
                    }
                    Op::Update(t, back, s, with_uuid) => {
                        if ids.is_empty() { continue; }
                        let id = &ids[t as usize % ids.len()];
                        let attempt = core.task(id).map_or(1, |v| v.attempt.max(1));
                        let attempt = attempt.saturating_sub(u32::from(back)).max(1);
                        let key = format!("{id}.{attempt}");
                        if !matches!(STATES[s as usize], BackendState::Gone | BackendState::GoneByOperator | BackendState::Unknown) {
                            // Any other answer means the master has (or had) the attempt: its
                            // launch is confirmed, and a GONE after it is an ordinary end.
                            unconfirmed.remove(&key);
                        }
                        let mut u = update(&key, STATES[s as usize], with_uuid.then_some(7));
                        u.agent_id = Some("a1".into());
                        uuid_sent = with_uuid;
                        core.handle_event(Event::Update(u), clock.now())
                    }
                    Op::Kill(t) => {
                        if ids.is_empty() { continue; }
                        let id = ids[t as usize % ids.len()].clone();
                        match core.kill(&id, clock.now()) {
                            Ok(s) => s,
                            Err(KillError::AlreadyTerminal(st)) => {
                                prop_assert_eq!(terminal.get(&id), Some(&st));
                                continue;
                            }
                            Err(e @ (KillError::NotFound | KillError::Unavailable(_))) => {
                                return Err(TestCaseError::fail(format!("{id}: {e}")));
                            }
                        }
                    }
                    Op::Tick(secs) => core.tick(clock.advance(f64::from(secs))),
                    Op::Subscribe => core.handle_event(subscribed(), clock.now()),
                    Op::Disconnect => core.handle_event(Event::Disconnected { reason: "x".into() }, clock.now()),
                    Op::FailLastLaunch => match last_launch.take() {
                        Some(action) => core.handle_event(Event::ActionFailed { action, error: "refused".into(), fatal: false }, clock.now()),
                        None => continue,
                    },
                    Op::UnconfirmLastLaunch => match last_launch.take() {
                        Some(action) => {
                            let step = core.handle_event(Event::ActionUnconfirmed { action, error: "lost".into() }, clock.now());
                            for c in &step.changes {
                                unconfirmed.insert(format!("{}.{}", c.task_id, c.attempt), false);
                            }
                            step
                        }
                        None => continue,
                    },
                    Op::VoidAll => {
                        let mut step = Step::default();
                        for offer_ids in std::mem::take(&mut voids) {
                            step.append(core.handle_event(Event::OffersVoided { offer_ids }, clock.now()));
                        }
                        for v in unconfirmed.values_mut() { *v = true; }
                        step
                    }
                };
                if let Op::Update(_, _, s, _) = op {
                    // A "not known to the master" answer never requeues an unconfirmed attempt
                    // before its offers are void.
                    let gone = matches!(STATES[s as usize], BackendState::Gone | BackendState::GoneByOperator | BackendState::Unknown);
                    for c in &step.changes {
                        let key = format!("{}.{}", c.task_id, c.attempt);
                        if gone && unconfirmed.get(&key) == Some(&false) {
                            prop_assert!(c.state != TaskState::Queued, "{key} requeued before its offers were void");
                        }
                    }
                }
                core.assert_consistent();
                for c in &step.changes {
                    prop_assert!(!terminal.contains_key(&c.task_id), "{} changed after its end: {:?}", c.task_id, c);
                    if c.state.is_terminal() {
                        terminal.insert(c.task_id.clone(), c.state);
                        live_attempt.remove(&c.task_id);
                    }
                    if c.state == TaskState::Queued {
                        live_attempt.remove(&c.task_id);
                    }
                }
                let mut acks = 0;
                for a in &step.actions {
                    match a {
                        Action::Launch { tasks, .. } => {
                            last_launch = Some(a.clone());
                            for lt in tasks {
                                prop_assert_eq!(before.get(&lt.task_id), Some(&TaskState::Queued), "{} launched from outside the queue", lt.task_id);
                                prop_assert!(backend_ids.insert(lt.backend_task_id.clone()), "{} launched twice", lt.backend_task_id);
                                prop_assert!(live_attempt.insert(lt.task_id.clone(), lt.backend_task_id.clone()).is_none(), "two live attempts of {}", lt.task_id);
                            }
                        }
                        Action::Acknowledge { .. } => acks += 1,
                        Action::VoidOffers { offer_ids, .. } => voids.push(offer_ids.clone()),
                        _ => {}
                    }
                }
                prop_assert_eq!(acks, usize::from(uuid_sent));
            }
        }
    }
}

/// The message a queued task carries in the changes of `s`, if `s` changed it.
fn message_change(s: &Step, id: &str) -> Option<Option<String>> {
    s.changes
        .iter()
        .rev()
        .find(|c| c.task_id == id)
        .map(|c| c.message.clone())
}

#[test]
fn a_task_no_agent_seen_could_hold_says_why_it_waits_once() {
    let clock = Clock::new();
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    let big = TaskSpec {
        cpus: Some(6.0),
        ..TaskSpec::shell("x")
    };
    let gpu = TaskSpec {
        constraints: vec!["gpu:yes".into()],
        ..TaskSpec::shell("x")
    };
    core.submit(
        vec![record_with("t-big", big), record_with("t-gpu", gpu)],
        clock.now(),
    );
    let s = core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 4.0, 4096.0)]),
        clock.now(),
    );
    assert!(launches(&s).is_empty());
    let big_msg = message_change(&s, "t-big").expect("a message").unwrap();
    assert!(
        big_msg.starts_with("waiting: no agent has offered 6 cpus, 256 MB at once yet")
            && big_msg.contains("the largest offer so far: 4 cpus, 4096 MB"),
        "{big_msg}"
    );
    let gpu_msg = message_change(&s, "t-gpu").expect("a message").unwrap();
    assert!(
        gpu_msg.contains("matches the task's constraints"),
        "{gpu_msg}"
    );
    assert_eq!(
        core.task("t-big").unwrap().message.as_deref(),
        Some(big_msg.as_str())
    );

    // The same agent offering the same again changes nothing (no change per round).
    let s = core.handle_event(
        Event::Offers(vec![offer("o2", "a1", 4.0, 4096.0)]),
        clock.now(),
    );
    assert_eq!(message_change(&s, "t-big"), None);
    assert_eq!(message_change(&s, "t-gpu"), None);

    // An agent large enough shows up but is busy (its offer is small): the big task now only
    // waits for room, and its message goes.
    let mut busy = offer("o3", "a2", 1.0, 1024.0);
    let s = core.handle_event(Event::Offers(vec![busy.clone()]), clock.now());
    assert_eq!(
        message_change(&s, "t-big"),
        None,
        "a2 is not known to be large yet"
    );
    busy.id = "o4".into();
    busy.resources = offer("o4", "a2", 8.0, 8192.0).resources;
    let s = core.handle_event(Event::Offers(vec![busy]), clock.now());
    assert_eq!(launches(&s)[0].1, vec!["t-big.1".to_string()]);
    core.assert_consistent();
}

#[test]
fn queued_tasks_say_when_the_backend_is_not_connected() {
    let clock = Clock::new();
    let mut core = Core::new(cfg());
    core.handle_event(subscribed(), clock.now());
    core.submit(vec![record("t-1")], clock.now());
    let gone = || Event::Disconnected {
        reason: "cannot reach the Docker engine at unix:///x.sock".into(),
    };
    let s = core.handle_event(gone(), clock.now());
    let want = "waiting: the backend is not connected: cannot reach the Docker engine at \
                unix:///x.sock";
    assert_eq!(message_change(&s, "t-1"), Some(Some(want.to_string())));
    let s = core.handle_event(gone(), clock.now());
    assert_eq!(
        message_change(&s, "t-1"),
        None,
        "the same reason again changes nothing"
    );
    let s = core.submit(vec![record("t-2")], clock.now());
    assert_eq!(message_change(&s, "t-2"), Some(Some(want.to_string())));
    core.handle_event(subscribed(), clock.now());
    let s = core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 4.0, 4096.0)]),
        clock.now(),
    );
    assert_eq!(launches(&s)[0].1.len(), 2);
    assert!(
        s.changes.iter().all(|c| c.message.is_none()),
        "{:?}",
        s.changes
    );
    core.assert_consistent();
}

#[test]
fn launches_the_cluster_dropped_cost_no_retry() {
    let clock = Clock::new();
    let mut core = Core::new(CoreConfig {
        launch_retries: 0,
        ..cfg()
    });
    core.handle_event(subscribed(), clock.now());
    core.submit(vec![record("t-1")], clock.now());
    for attempt in 1..=3 {
        let s = core.handle_event(
            Event::Offers(vec![offer(&format!("o{attempt}"), "a1", 4.0, 4096.0)]),
            clock.now(),
        );
        assert_eq!(launches(&s)[0].1, vec![format!("t-1.{attempt}")]);
        let mut u = update(&format!("t-1.{attempt}"), BackendState::Dropped, None);
        if attempt < 3 {
            // Offers withdrawn under the launch: the cluster's doing.
            u.reason = Some("REASON_INVALID_OFFERS".into());
        }
        let s = core.handle_event(Event::Update(u), clock.now());
        let c = s.changes.last().unwrap();
        if attempt < 3 {
            assert_eq!(c.state, TaskState::Queued, "{c:?}");
            assert!(
                c.message.as_deref().unwrap().contains("no retry counted"),
                "{c:?}"
            );
        } else {
            // A drop of the task's own (no cluster reason) with no retries allowed: failed.
            assert_eq!(c.state, TaskState::Failed, "{c:?}");
            assert!(
                c.message
                    .as_deref()
                    .unwrap()
                    .contains("no launch retries left"),
                "{c:?}"
            );
        }
    }
    core.assert_consistent();
}

#[test]
fn a_task_queued_past_queued_timeout_fails_with_the_reason_it_waited() {
    let mut clock = Clock::new();
    let mut core = Core::new(CoreConfig {
        queued_timeout: Some(Duration::from_secs(60)),
        ..cfg()
    });
    core.handle_event(subscribed(), clock.now());
    let big = TaskSpec {
        cpus: Some(6.0),
        ..TaskSpec::shell("x")
    };
    core.submit(
        vec![record_with("t-big", big), record("t-small")],
        clock.now(),
    );
    let s = core.handle_event(
        Event::Offers(vec![offer("o1", "a1", 4.0, 4096.0)]),
        clock.advance(1.0),
    );
    assert_eq!(launches(&s)[0].1, vec!["t-small.1".to_string()]);
    assert!(core.next_deadline().is_some(), "the timeout is a deadline");
    let s = core.tick(clock.advance(30.0));
    assert!(s.changes.iter().all(|c| c.task_id != "t-big"), "not yet");
    let s = core.tick(clock.advance(30.0));
    let c = s
        .changes
        .iter()
        .find(|c| c.task_id == "t-big")
        .expect("failed now");
    assert_eq!(c.state, TaskState::Failed);
    let msg = c.message.as_deref().unwrap();
    assert!(
        msg.starts_with(
            "queued for longer than queued_timeout (60 s): no agent has offered 6 cpus"
        ),
        "{msg}"
    );
    // The launched task's stale deadline changes nothing.
    assert!(s.changes.iter().all(|c| c.task_id != "t-small"));
    assert_eq!(core.task("t-small").unwrap().state, TaskState::Launching);
    core.assert_consistent();
}
