//! The durable store against real databases: SQLite (a temp file) always, PostgreSQL when
//! `AM_TEST_PG_URL` is set and MariaDB/MySQL when `AM_TEST_MYSQL_URL` is set (`.ci/setup-
//! databases.sh` starts both and prints the variables). Every test makes its own fresh database
//! on each server, so tests run in parallel. With `CI=true` a missing variable fails the test;
//! otherwise the server is skipped with a notice.

use airflow_mesos::store::{Change, Store, StoreError, TaskFilter, TaskPageQuery};
use airflow_mesos::task::{
    attempt_task_id, Command, NetworkMode, PortSpec, SandboxFile, TaskEvent, TaskRecord, TaskSpec,
    TaskState, VolumeMode, VolumeSpec,
};
use sqlx::Connection;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// A fresh database for one test on one server.
struct TestDb {
    kind: &'static str,
    url: String,
    _dir: Option<tempfile::TempDir>,
    cleanup: Option<(String, String)>,
}

impl TestDb {
    async fn drop_database(self) {
        let Some((admin, name)) = self.cleanup else {
            return;
        };
        match self.kind {
            "postgres" => {
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            }
            _ => {
                if let Ok(mut c) = sqlx::MySqlConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                        .execute(&mut c)
                        .await;
                }
            }
        }
    }
}

fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{var} is not set but CI=true: run .ci/setup-databases.sh and source .ci/test-env.sh")
        }
        _ => {
            eprintln!("NOTICE: {var} not set; skipping this server (run .ci/setup-databases.sh)");
            None
        }
    }
}

fn with_database(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).expect("test server URL parses");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

fn fresh_name() -> String {
    format!("amt_{}", uuid::Uuid::new_v4().simple())
}

/// One fresh database per available server.
async fn databases() -> Vec<TestDb> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/store.db");
    let mut out = vec![TestDb {
        kind: "sqlite",
        url: format!("sqlite://{}", path.display()),
        _dir: Some(dir),
        cleanup: None,
    }];
    if let Some(admin) = server_url("AM_TEST_PG_URL") {
        let name = fresh_name();
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to AM_TEST_PG_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .expect("create a PostgreSQL test database");
        out.push(TestDb {
            kind: "postgres",
            url: with_database(&admin, &name),
            _dir: None,
            cleanup: Some((admin, name)),
        });
    }
    if let Some(admin) = server_url("AM_TEST_MYSQL_URL") {
        let name = fresh_name();
        let mut c = sqlx::MySqlConnection::connect(&admin)
            .await
            .expect("connect to AM_TEST_MYSQL_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .expect("create a MariaDB test database");
        out.push(TestDb {
            kind: "mysql",
            url: with_database(&admin, &name),
            _dir: None,
            cleanup: Some((admin, name)),
        });
    }
    out
}

fn rich_spec(n: usize) -> TaskSpec {
    TaskSpec {
        name: Some(format!("task {n}")),
        command: Some(Command::Argv(vec![
            "airflow".into(),
            "tasks".into(),
            "run".into(),
        ])),
        image: Some("registry.local/airflow:2.9".into()),
        cpus: Some(0.5),
        mem: Some(512.0),
        disk: Some(100.0),
        ports: vec![PortSpec {
            container_port: 8080,
            host_port: None,
            protocol: "tcp".into(),
        }],
        env: BTreeMap::from([("AIRFLOW__CORE__EXECUTOR".into(), "LocalExecutor".into())]),
        secret_env: BTreeMap::from([("DB_PASSWORD".into(), format!("pw-{n}"))]),
        volumes: vec![VolumeSpec {
            container_path: "/data".into(),
            host_path: Some("/srv/data".into()),
            name: None,
            driver: None,
            mode: VolumeMode::Ro,
        }],
        network: Some(NetworkMode::User("airflow-net".into())),
        force_pull: Some(true),
        privileged: false,
        constraints: vec!["airflow:true?:hostname:h1".into()],
        labels: BTreeMap::from([
            ("dag".into(), format!("dag-{}", n % 3)),
            ("team".into(), "Data Ünïcode".into()),
        ]),
        kill_grace_period: Some(30.0),
        retries: Some(2),
        external_key: Some(format!("dag.task.run-{n}")),
        containerizer: None,
        user: Some("airflow".into()),
        files: vec![SandboxFile {
            path: "workload.json".into(),
            content: "{\"token\": \"s3cr3t-jwt\"}".into(),
        }],
        docker_parameters: vec![airflow_mesos::task::DockerParameter {
            key: "shm-size".into(),
            value: "1g".into(),
        }],
        executor_config: Some(serde_json::json!({"mem_limit": "512m", "nested": [1, 2.5, null]})),
    }
}

fn record(id: &str, spec: TaskSpec) -> TaskRecord {
    TaskRecord::queued(id, spec, 0)
}

fn change(id: &str, state: TaskState, attempt: u32, at: i64) -> Change {
    Change {
        task_id: id.into(),
        state,
        attempt,
        backend_task_id: None,
        agent_id: None,
        hostname: None,
        agent_url: None,
        message: None,
        reason: None,
        exit_code: None,
        kill_requested: false,
        spec: None,
        at,
    }
}

fn launch(id: &str, attempt: u32, at: i64) -> Change {
    Change {
        backend_task_id: Some(attempt_task_id(id, attempt)),
        agent_id: Some(format!("agent-{attempt}")),
        hostname: Some(format!("host{attempt}.example")),
        agent_url: Some(format!("http://host{attempt}.example:5051")),
        ..change(id, TaskState::Launching, attempt, at)
    }
}

#[tokio::test]
async fn migrations_are_idempotent_on_reconnect() {
    for db in databases().await {
        let k = db.kind;
        let s = Store::connect(&db.url)
            .await
            .unwrap_or_else(|e| panic!("{k}: {e}"));
        s.insert_tasks(&[record("t-1", TaskSpec::shell("true"))], 10)
            .await
            .unwrap();
        s.close().await;
        for _ in 0..2 {
            let s = Store::connect(&db.url)
                .await
                .unwrap_or_else(|e| panic!("{k}: {e}"));
            assert!(s.get_task("t-1").await.unwrap().is_some(), "{k}: data kept");
            s.close().await;
        }
        db.drop_database().await;
    }
}

#[tokio::test]
async fn insert_and_get_round_trip_with_the_full_spec() {
    for db in databases().await {
        let k = db.kind;
        let s = Store::connect(&db.url).await.unwrap();
        let recs: Vec<TaskRecord> = (0..5)
            .map(|n| record(&format!("t-{n}"), rich_spec(n)))
            .collect();
        let events = s.insert_tasks(&recs, 1_700_000_000_123).await.unwrap();
        assert_eq!(events.len(), 5, "{k}");
        assert!(
            events.windows(2).all(|w| w[0].seq < w[1].seq),
            "{k}: {events:?}"
        );
        assert!(events
            .iter()
            .all(|e| e.state == TaskState::Queued && e.at == 1_700_000_000_123));
        assert_eq!(
            events[2].external_key.as_deref(),
            Some("dag.task.run-2"),
            "{k}"
        );

        for (rec, ev) in recs.iter().zip(&events) {
            let got = s
                .get_task(&rec.id)
                .await
                .unwrap()
                .expect("inserted task is found");
            let want = TaskRecord {
                created_at: 1_700_000_000_123,
                updated_at: 1_700_000_000_123,
                seq: ev.seq,
                ..rec.clone()
            };
            assert_eq!(got, want, "{k}");
            assert_eq!(
                got.spec.files[0].content, "{\"token\": \"s3cr3t-jwt\"}",
                "{k}"
            );
        }
        assert_eq!(s.get_task("t-missing").await.unwrap(), None, "{k}");

        // Filters: label, external key, since, states, limit; ordered by seq.
        let by_label = TaskFilter {
            label: Some(("dag".into(), "dag-1".into())),
            ..TaskFilter::default()
        };
        let ids: Vec<String> = s
            .list_tasks(&by_label)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, vec!["t-1", "t-4"], "{k}");
        let unicode = TaskFilter {
            label: Some(("team".into(), "Data Ünïcode".into())),
            ..TaskFilter::default()
        };
        assert_eq!(s.list_tasks(&unicode).await.unwrap().len(), 5, "{k}");
        let case = TaskFilter {
            label: Some(("team".into(), "data ünïcode".into())),
            ..TaskFilter::default()
        };
        assert!(
            s.list_tasks(&case).await.unwrap().is_empty(),
            "{k}: label match is exact"
        );
        let by_key = TaskFilter {
            external_key: Some("dag.task.run-3".into()),
            ..TaskFilter::default()
        };
        let got = s.list_tasks(&by_key).await.unwrap();
        assert_eq!(got.len(), 1, "{k}");
        assert_eq!(got[0].id, "t-3", "{k}");
        let page = TaskFilter {
            since: Some(events[1].seq),
            limit: Some(2),
            ..TaskFilter::default()
        };
        let ids: Vec<String> = s
            .list_tasks(&page)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, vec!["t-2", "t-3"], "{k}");
        let running = TaskFilter {
            states: vec![TaskState::Running, TaskState::Failed],
            ..TaskFilter::default()
        };
        assert!(s.list_tasks(&running).await.unwrap().is_empty(), "{k}");

        // A duplicate id is refused and the whole batch is rolled back.
        let dup = [
            record("t-new", TaskSpec::shell("x")),
            record("t-0", TaskSpec::shell("x")),
        ];
        assert!(
            s.insert_tasks(&dup, 5).await.is_err(),
            "{k}: duplicate id refused"
        );
        assert_eq!(
            s.get_task("t-new").await.unwrap(),
            None,
            "{k}: batch rolled back"
        );
        assert_eq!(
            s.events_since(0, 100).await.unwrap().len(),
            5,
            "{k}: no stray events"
        );
        s.close().await;
        db.drop_database().await;
    }
}

/// A lookup by a text with a NUL character (which no task holds, and which PostgreSQL refuses
/// to be asked for) finds nothing on every database, where it failed the query on PostgreSQL
/// (an API client got 503 "state store" for its own bad input).
#[tokio::test]
async fn lookups_by_a_text_with_a_nul_find_nothing() {
    for db in databases().await {
        let k = db.kind;
        let s = Store::connect(&db.url).await.unwrap();
        s.insert_tasks(&[record("t-1", rich_spec(1))], 1)
            .await
            .unwrap();
        assert!(s.get_task("t-1\0").await.unwrap().is_none(), "{k}");
        assert!(s.attempts("t-1\0").await.unwrap().is_empty(), "{k}");
        for filter in [
            TaskFilter {
                external_key: Some("dag.task.run-1\0".into()),
                ..TaskFilter::default()
            },
            TaskFilter {
                label: Some(("team\0".into(), "x".into())),
                ..TaskFilter::default()
            },
            TaskFilter {
                label: Some(("team".into(), "\0".into())),
                ..TaskFilter::default()
            },
        ] {
            assert!(s.list_tasks(&filter).await.unwrap().is_empty(), "{k}");
            let page = s
                .task_page(&TaskPageQuery {
                    filter,
                    before: None,
                    limit: 10,
                    scan_window: None,
                })
                .await
                .unwrap();
            assert!(page.tasks.is_empty(), "{k}");
        }
        assert!(s.get_task("t-1").await.unwrap().is_some(), "{k}");
        s.close().await;
    }
}

#[tokio::test]
async fn a_full_lifecycle_commits_rows_attempts_and_events() {
    for db in databases().await {
        let k = db.kind;
        let s = Store::connect(&db.url).await.unwrap();
        let ins = s
            .insert_tasks(&[record("t-a", rich_spec(7))], 100)
            .await
            .unwrap();

        let ev = s.commit(&[launch("t-a", 1, 200)]).await.unwrap();
        assert_eq!(ev.len(), 1, "{k}");
        let mut starting = change("t-a", TaskState::Starting, 1, 300);
        starting.message = Some("container is starting".into());
        let ev2 = s
            .commit(&[starting, change("t-a", TaskState::Running, 1, 400)])
            .await
            .unwrap();
        let mut fin = change("t-a", TaskState::Succeeded, 1, 500);
        fin.exit_code = Some(0);
        fin.message = Some("Command exited with status 0".into());
        fin.reason = Some("REASON_COMMAND_EXECUTOR_FAILED".into());
        let ev3 = s.commit(&[fin]).await.unwrap();

        let states: Vec<TaskState> = ev.iter().chain(&ev2).chain(&ev3).map(|e| e.state).collect();
        use TaskState::*;
        assert_eq!(states, vec![Launching, Starting, Running, Succeeded], "{k}");

        let t = s.get_task("t-a").await.unwrap().unwrap();
        assert_eq!(t.state, Succeeded, "{k}");
        assert_eq!(t.attempts, 1, "{k}");
        assert_eq!(t.current_attempt_id.as_deref(), Some("t-a.1"), "{k}");
        assert_eq!(t.agent_id.as_deref(), Some("agent-1"), "{k}");
        assert_eq!(t.hostname.as_deref(), Some("host1.example"), "{k}");
        assert_eq!(
            t.message.as_deref(),
            Some("Command exited with status 0"),
            "{k}"
        );
        assert_eq!(
            t.reason.as_deref(),
            Some("REASON_COMMAND_EXECUTOR_FAILED"),
            "{k}"
        );
        assert_eq!(t.exit_code, Some(0), "{k}");
        assert_eq!((t.created_at, t.updated_at), (100, 500), "{k}");
        assert_eq!(t.seq, ev3[0].seq, "{k}");

        let atts = s.attempts("t-a").await.unwrap();
        assert_eq!(atts.len(), 1, "{k}");
        let a = &atts[0];
        assert_eq!(a.backend_task_id, "t-a.1", "{k}");
        assert_eq!(
            a.agent_url.as_deref(),
            Some("http://host1.example:5051"),
            "{k}"
        );
        assert_eq!(a.state, Succeeded, "{k}");
        assert_eq!((a.started_at, a.updated_at), (200, 500), "{k}");
        assert_eq!(
            a.message.as_deref(),
            Some("Command exited with status 0"),
            "{k}"
        );

        let (ft, fa) = s.find_by_backend_task_id("t-a.1").await.unwrap().unwrap();
        assert_eq!(ft, t, "{k}");
        assert_eq!(&fa, a, "{k}");
        assert!(
            s.find_by_backend_task_id("t-a.2").await.unwrap().is_none(),
            "{k}"
        );

        let feed = s.events_since(0, 100).await.unwrap();
        let mut all = ins.clone();
        all.extend(ev.into_iter().chain(ev2).chain(ev3));
        assert_eq!(feed, all, "{k}: returned events are the feed");
        assert!(
            feed.iter()
                .all(|e| e.external_key.as_deref() == Some("dag.task.run-7")),
            "{k}"
        );
        assert_eq!(feed[1].attempt, 1, "{k}");

        let counts = s.counts().await.unwrap();
        assert_eq!(
            counts.len(),
            TaskState::ALL.len(),
            "{k}: every state listed"
        );
        assert_eq!(counts[&Succeeded], 1, "{k}");
        assert_eq!(counts.values().sum::<u64>(), 1, "{k}");
        s.close().await;
        db.drop_database().await;
    }
}

#[tokio::test]
async fn ended_tasks_and_old_events_are_pruned_and_the_feed_keeps_growing() {
    for db in databases().await {
        let k = db.kind;
        let s = Store::connect(&db.url).await.unwrap();
        let ids = ["t-old-1", "t-old-2", "t-live", "t-new"];
        let recs: Vec<TaskRecord> = ids.iter().map(|id| record(id, rich_spec(3))).collect();
        s.insert_tasks(&recs, 100).await.unwrap();
        for id in ["t-old-1", "t-old-2", "t-live", "t-new"] {
            s.commit(&[launch(id, 1, 200)]).await.unwrap();
        }
        s.commit(&[
            change("t-old-1", TaskState::Succeeded, 1, 300),
            change("t-old-2", TaskState::Failed, 1, 300),
            change("t-live", TaskState::Running, 1, 300),
        ])
        .await
        .unwrap();
        s.commit(&[change("t-new", TaskState::Succeeded, 1, 10_000)])
            .await
            .unwrap();
        let newest = s.head_seq().await.unwrap();

        // Small batches: the caller repeats until nothing is left to delete.
        let (mut tasks, mut events, mut calls) = (0, 0, 0);
        loop {
            let p = s.prune(1_000, 2).await.unwrap();
            calls += 1;
            if p.is_empty() {
                break;
            }
            tasks += p.tasks;
            events += p.events;
        }
        assert!(calls > 2, "{k}: batches of 2");
        assert_eq!(tasks, 2, "{k}: the two tasks that ended before the cutoff");
        // 4 inserts, 4 launches, 3 changes at 300 are older than the cutoff; t-new's end is not.
        assert_eq!(events, 11, "{k}");
        assert!(s.get_task("t-old-1").await.unwrap().is_none(), "{k}");
        assert!(s.get_task("t-old-2").await.unwrap().is_none(), "{k}");
        assert!(s.attempts("t-old-1").await.unwrap().is_empty(), "{k}");
        assert_eq!(
            s.get_task("t-live").await.unwrap().unwrap().state,
            TaskState::Running,
            "{k}"
        );
        assert_eq!(s.attempts("t-live").await.unwrap().len(), 1, "{k}");
        assert_eq!(
            s.get_task("t-new").await.unwrap().unwrap().state,
            TaskState::Succeeded,
            "{k}"
        );
        let labelled = s
            .list_tasks(&TaskFilter {
                label: Some(("team".into(), "Data Ünïcode".into())),
                ..TaskFilter::default()
            })
            .await
            .unwrap();
        let mut left: Vec<&str> = labelled.iter().map(|t| t.id.as_str()).collect();
        left.sort();
        assert_eq!(
            left,
            vec!["t-live", "t-new"],
            "{k}: labels of pruned tasks are gone"
        );
        assert_eq!(
            s.head_seq().await.unwrap(),
            newest,
            "{k}: the newest event stays"
        );

        // Everything is old now: only the newest event survives, and the next one follows it.
        s.commit(&[change("t-live", TaskState::Succeeded, 1, 20_000)])
            .await
            .unwrap();
        let newest = s.head_seq().await.unwrap();
        while !s.prune(i64::MAX / 2, 1000).await.unwrap().is_empty() {}
        assert!(s.get_task("t-live").await.unwrap().is_none(), "{k}");
        assert_eq!(s.events_since(0, 100).await.unwrap().len(), 1, "{k}");
        let ev = s
            .insert_tasks(&[record("t-after", rich_spec(1))], 30_000)
            .await
            .unwrap();
        assert_eq!(ev[0].seq, newest + 1, "{k}: seq never goes back");
        s.close().await;
        db.drop_database().await;
    }
}

#[tokio::test]
async fn duplicate_changes_append_no_duplicate_events() {
    for db in databases().await {
        let k = db.kind;
        let s = Store::connect(&db.url).await.unwrap();
        s.insert_tasks(&[record("t-d", TaskSpec::shell("x"))], 1)
            .await
            .unwrap();
        let running = change("t-d", TaskState::Running, 1, 20);
        let first = s
            .commit(&[launch("t-d", 1, 10), running.clone(), running.clone()])
            .await
            .unwrap();
        assert_eq!(
            first.len(),
            2,
            "{k}: launching + running, the in-batch duplicate dropped"
        );
        let before = s.get_task("t-d").await.unwrap().unwrap();
        let again = s.commit(std::slice::from_ref(&running)).await.unwrap();
        assert!(again.is_empty(), "{k}: a replayed update appends nothing");
        let mut later = running.clone();
        later.at = 99;
        assert!(s.commit(&[later]).await.unwrap().is_empty(), "{k}");
        assert_eq!(
            s.get_task("t-d").await.unwrap().unwrap(),
            before,
            "{k}: row untouched"
        );
        assert_eq!(s.events_since(0, 100).await.unwrap().len(), 3, "{k}");
        s.close().await;
        db.drop_database().await;
    }
}

#[tokio::test]
async fn retries_and_late_updates_of_old_attempts() {
    for db in databases().await {
        let k = db.kind;
        let s = Store::connect(&db.url).await.unwrap();
        s.insert_tasks(&[record("t-r", TaskSpec::shell("x"))], 1)
            .await
            .unwrap();
        let mut dropped = change("t-r", TaskState::Queued, 1, 20);
        dropped.message = Some("TASK_DROPPED".into());
        s.commit(&[launch("t-r", 1, 10), dropped]).await.unwrap();
        let ev = s
            .commit(&[
                launch("t-r", 2, 30),
                change("t-r", TaskState::Running, 2, 40),
            ])
            .await
            .unwrap();
        assert_eq!(
            ev.iter().map(|e| e.attempt).collect::<Vec<_>>(),
            vec![2, 2],
            "{k}"
        );
        // A late status of attempt 1 updates only attempt 1.
        let late = s
            .commit(&[change("t-r", TaskState::Failed, 1, 50)])
            .await
            .unwrap();
        assert!(late.is_empty(), "{k}");
        let t = s.get_task("t-r").await.unwrap().unwrap();
        assert_eq!((t.state, t.attempts), (TaskState::Running, 2), "{k}");
        assert_eq!(t.current_attempt_id.as_deref(), Some("t-r.2"), "{k}");
        assert_eq!(t.agent_id.as_deref(), Some("agent-2"), "{k}");
        assert_eq!(
            t.message, None,
            "{k}: the new attempt's fields replace the old ones"
        );
        let atts = s.attempts("t-r").await.unwrap();
        assert_eq!(
            atts.iter()
                .map(|a| (a.attempt, a.state))
                .collect::<Vec<_>>(),
            vec![(1, TaskState::Failed), (2, TaskState::Running)],
            "{k}"
        );
        assert_eq!(atts[0].message.as_deref(), Some("TASK_DROPPED"), "{k}");

        // An unknown task fails the whole batch; the valid change before it is not applied.
        let bad = s
            .commit(&[
                change("t-r", TaskState::Killing, 2, 60),
                change("t-nope", TaskState::Running, 1, 60),
            ])
            .await;
        match bad {
            Err(StoreError::UnknownTask { task_id }) => assert_eq!(task_id, "t-nope", "{k}"),
            other => panic!("{k}: expected UnknownTask, got {other:?}"),
        }
        assert_eq!(
            s.get_task("t-r").await.unwrap().unwrap().state,
            TaskState::Running,
            "{k}"
        );

        // Kill is sticky.
        let mut kill = change("t-r", TaskState::Killing, 2, 70);
        kill.kill_requested = true;
        s.commit(&[kill, change("t-r", TaskState::Killed, 2, 80)])
            .await
            .unwrap();
        let t = s.get_task("t-r").await.unwrap().unwrap();
        assert!(t.kill_requested, "{k}");
        assert_eq!(t.state, TaskState::Killed, "{k}");
        s.close().await;
        db.drop_database().await;
    }
}

#[tokio::test]
async fn change_feed_is_ordered_and_complete_across_many_commits() {
    use TaskState::*;
    for db in databases().await {
        let k = db.kind;
        let s = Store::connect(&db.url).await.unwrap();
        let recs: Vec<TaskRecord> = (0..30)
            .map(|n| record(&format!("t-{n:02}"), TaskSpec::shell("x")))
            .collect();
        let mut returned: Vec<TaskEvent> = s.insert_tasks(&recs, 1).await.unwrap();
        let path = [Launching, Starting, Running, Succeeded];
        let mut at = 10;
        // Each commit advances a different, overlapping subset of tasks one step, and repeats
        // some earlier changes as duplicates.
        let mut step = vec![0usize; recs.len()];
        for round in 0..40 {
            let mut batch = Vec::new();
            for (i, r) in recs.iter().enumerate() {
                if (i + round) % 3 == 0 && step[i] < path.len() {
                    at += 1;
                    let c = if step[i] == 0 {
                        launch(&r.id, 1, at)
                    } else {
                        change(&r.id, path[step[i]], 1, at)
                    };
                    batch.push(c.clone());
                    if round % 4 == 0 {
                        batch.push(c); // duplicate
                    }
                    step[i] += 1;
                }
            }
            returned.extend(s.commit(&batch).await.unwrap());
        }
        // Read the feed in small pages, as the API does.
        let mut feed = Vec::new();
        let mut cursor = 0;
        loop {
            let page = s.events_since(cursor, 7).await.unwrap();
            let Some(last) = page.last() else { break };
            cursor = last.seq;
            feed.extend(page);
        }
        assert_eq!(
            feed, returned,
            "{k}: the feed is exactly what the commits returned"
        );
        assert!(
            feed.windows(2).all(|w| w[0].seq < w[1].seq),
            "{k}: strictly increasing"
        );
        let distinct: HashSet<(String, TaskState)> =
            feed.iter().map(|e| (e.task_id.clone(), e.state)).collect();
        assert_eq!(distinct.len(), feed.len(), "{k}: each transition once");
        let expected: usize = recs.len() + step.iter().sum::<usize>();
        assert_eq!(feed.len(), expected, "{k}");
        // Per task, transitions follow the path in order.
        for r in &recs {
            let mine: Vec<TaskState> = feed
                .iter()
                .filter(|e| e.task_id == r.id)
                .map(|e| e.state)
                .collect();
            assert_eq!(mine[0], Queued, "{k}");
            assert_eq!(&mine[1..], &path[..mine.len() - 1], "{k}");
        }
        // `since` on tasks agrees with the feed.
        let tail = &feed[feed.len() - 5..];
        let since = TaskFilter {
            since: Some(tail[0].seq - 1),
            ..TaskFilter::default()
        };
        let listed: HashSet<String> = s
            .list_tasks(&since)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        let want: HashSet<String> = tail.iter().map(|e| e.task_id.clone()).collect();
        assert!(want.is_subset(&listed), "{k}");
        assert!(s.events_since(cursor, 10).await.unwrap().is_empty(), "{k}");
        s.close().await;
        db.drop_database().await;
    }
}

/// Task id, state, and (attempt, backend task id) of its current attempt.
type Summary = (String, TaskState, Option<(u32, String)>);

#[tokio::test]
async fn load_active_after_a_restart() {
    use TaskState::*;
    for db in databases().await {
        let k = db.kind;
        let s = Store::connect(&db.url).await.unwrap();
        let recs: Vec<TaskRecord> = ["t-q", "t-run", "t-done", "t-unk", "t-killed"]
            .iter()
            .map(|id| record(id, TaskSpec::shell("x")))
            .collect();
        s.insert_tasks(&recs, 1).await.unwrap();
        s.commit(&[
            launch("t-run", 1, 2),
            change("t-run", Running, 1, 3),
            launch("t-done", 1, 2),
            change("t-done", Succeeded, 1, 3),
            launch("t-unk", 1, 2),
            launch("t-unk", 2, 4),
            change("t-unk", Unknown, 2, 5),
            change("t-killed", Killed, 0, 3),
        ])
        .await
        .unwrap();
        s.set_framework_id("airflow", "fw-123").await.unwrap();
        drop(s); // the daemon dies without closing

        let s2 = Store::connect(&db.url).await.unwrap();
        let active = s2.load_active().await.unwrap();
        let got: Vec<Summary> = active
            .iter()
            .map(|(t, a)| {
                (
                    t.id.clone(),
                    t.state,
                    a.as_ref().map(|a| (a.attempt, a.backend_task_id.clone())),
                )
            })
            .collect();
        let want = vec![
            ("t-q".to_string(), Queued, None),
            (
                "t-run".to_string(),
                Running,
                Some((1, "t-run.1".to_string())),
            ),
            (
                "t-unk".to_string(),
                Unknown,
                Some((2, "t-unk.2".to_string())),
            ),
        ];
        let mut sorted = got.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(sorted, want, "{k}");
        let seqs: Vec<i64> = active.iter().map(|(t, _)| t.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{k}: in seq order");
        let (_, unk) = active.iter().find(|(t, _)| t.id == "t-unk").unwrap();
        assert_eq!(
            unk.as_ref().unwrap().agent_url.as_deref(),
            Some("http://host2.example:5051"),
            "{k}"
        );
        assert_eq!(
            s2.framework_id("airflow").await.unwrap().as_deref(),
            Some("fw-123"),
            "{k}"
        );
        s2.close().await;
        db.drop_database().await;
    }
}

#[tokio::test]
async fn framework_id_upsert() {
    for db in databases().await {
        let k = db.kind;
        let s = Store::connect(&db.url).await.unwrap();
        assert_eq!(s.framework_id("airflow").await.unwrap(), None, "{k}");
        s.set_framework_id("airflow", "fw-1").await.unwrap();
        s.set_framework_id("other", "fw-x").await.unwrap();
        assert_eq!(
            s.framework_id("airflow").await.unwrap().as_deref(),
            Some("fw-1"),
            "{k}"
        );
        s.set_framework_id("airflow", "fw-2").await.unwrap();
        assert_eq!(
            s.framework_id("airflow").await.unwrap().as_deref(),
            Some("fw-2"),
            "{k}"
        );
        assert_eq!(
            s.framework_id("other").await.unwrap().as_deref(),
            Some("fw-x"),
            "{k}"
        );
        assert_eq!(
            s.framework_id("Airflow").await.unwrap(),
            None,
            "{k}: names are exact"
        );
        s.close().await;
        db.drop_database().await;
    }
}

#[tokio::test]
async fn a_daemon_key_is_made_once_and_shared() {
    for db in databases().await {
        let k = db.kind;
        let a = Store::connect(&db.url).await.unwrap();
        let b = Store::connect(&db.url).await.unwrap();
        let (ka, kb) = tokio::join!(a.daemon_key("sandbox-files"), b.daemon_key("sandbox-files"));
        let (ka, kb) = (ka.unwrap(), kb.unwrap());
        assert_eq!(ka.len(), 32, "{k}");
        assert_eq!(ka, kb, "{k}: two daemons asking at once get one key");
        assert_eq!(a.daemon_key("sandbox-files").await.unwrap(), ka, "{k}");
        assert_ne!(a.daemon_key("other").await.unwrap(), ka, "{k}");
        a.close().await;
        b.close().await;
        db.drop_database().await;
    }
}

#[tokio::test]
async fn a_change_can_replace_the_stored_spec() {
    for db in databases().await {
        let k = db.kind;
        let s = Store::connect(&db.url).await.unwrap();
        let spec = rich_spec(1);
        s.insert_tasks(&[record("t-1", spec.clone())], 1)
            .await
            .unwrap();
        assert_eq!(s.get_task("t-1").await.unwrap().unwrap().spec, spec, "{k}");
        s.commit(&[launch("t-1", 1, 2)]).await.unwrap();
        let blanked = std::sync::Arc::new(spec.without_secrets());
        s.commit(&[Change {
            spec: Some(blanked.clone()),
            ..change("t-1", TaskState::Running, 1, 3)
        }])
        .await
        .unwrap();
        let got = s.get_task("t-1").await.unwrap().unwrap();
        assert_eq!(got.state, TaskState::Running, "{k}");
        assert_eq!(got.spec, *blanked, "{k}");
        assert_eq!(got.spec.secret_env["DB_PASSWORD"], "", "{k}");
        s.close().await;
        db.drop_database().await;
    }
}

#[tokio::test]
async fn the_leader_lease_has_one_holder_and_fences_a_deposed_one() {
    use airflow_mesos::store::Fence;
    for db in databases().await {
        let k = db.kind;
        let a = Store::connect(&db.url).await.unwrap();
        let b = Store::connect(&db.url).await.unwrap();
        let ttl = Duration::from_millis(600);
        let ta = a
            .acquire_lease("fw", "daemon-a", "http://a:1", ttl)
            .await
            .unwrap()
            .expect("a free lease is taken");
        assert_eq!(
            b.acquire_lease("fw", "daemon-b", "http://b:1", ttl)
                .await
                .unwrap(),
            None,
            "{k}: held"
        );
        let l = b.lease("fw").await.unwrap().unwrap();
        assert_eq!(
            (l.holder.as_str(), l.term, l.address.as_str()),
            ("daemon-a", ta, "http://a:1")
        );
        assert!(l.remaining_ms > 0 && l.remaining_ms <= 600, "{k}: {l:?}");
        // Another framework's lease is another row.
        assert!(b
            .acquire_lease("other", "daemon-b", "http://b:1", ttl)
            .await
            .unwrap()
            .is_some());
        // The holder writes under its fence.
        a.set_fence(Some(Fence {
            name: "fw".into(),
            holder: "daemon-a".into(),
            term: ta,
        }));
        a.insert_tasks(&[record("t-1", TaskSpec::shell("true"))], 1)
            .await
            .unwrap();
        assert!(a.renew_lease("fw", "daemon-a", ta, ttl).await.unwrap());
        // It lets the lease run out (a pause, a lost connection): the other takes over...
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            !a.renew_lease("fw", "daemon-a", ta, ttl).await.unwrap(),
            "{k}: expired"
        );
        let tb = b
            .acquire_lease("fw", "daemon-b", "http://b:1", ttl)
            .await
            .unwrap()
            .expect("an expired lease is taken");
        assert_eq!(tb, ta + 1, "{k}");
        // ...and the old holder can no longer write anything.
        let err = a.commit(&[launch("t-1", 1, 2)]).await.unwrap_err();
        assert!(matches!(err, StoreError::Deposed { .. }), "{k}: {err}");
        let err = a
            .insert_tasks(&[record("t-2", TaskSpec::shell("true"))], 3)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Deposed { .. }), "{k}: {err}");
        assert!(
            b.get_task("t-2").await.unwrap().is_none(),
            "{k}: nothing written"
        );
        assert_eq!(
            b.get_task("t-1").await.unwrap().unwrap().state,
            TaskState::Queued,
            "{k}"
        );
        // The new holder writes; a release hands the lease over at once.
        b.set_fence(Some(Fence {
            name: "fw".into(),
            holder: "daemon-b".into(),
            term: tb,
        }));
        b.commit(&[launch("t-1", 1, 4)]).await.unwrap();
        b.release_lease("fw", "daemon-b", tb).await.unwrap();
        assert_eq!(
            a.acquire_lease("fw", "daemon-a", "http://a:1", ttl)
                .await
                .unwrap(),
            Some(tb + 1),
            "{k}"
        );
        a.close().await;
        b.close().await;
        db.drop_database().await;
    }
}

#[tokio::test]
async fn translated_and_alias_urls_connect() {
    let dir = tempfile::tempdir().unwrap();
    let abs = dir.path().join("a/b/airflow.db");
    let url = airflow_mesos::store::translate_url(&format!("sqlite:///{}", abs.display())).unwrap();
    let s = Store::connect(&url).await.unwrap();
    s.set_framework_id("f", "1").await.unwrap();
    assert!(
        abs.exists(),
        "the file (and its parent dirs) were created at {}",
        abs.display()
    );
    #[cfg(unix)]
    for f in [abs.clone(), abs.with_extension("db-wal")] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} holds secrets: owner-only", f.display());
    }
    s.close().await;

    if let Some(pg) = server_url("AM_TEST_PG_URL") {
        let alias = pg.replacen("postgres://", "postgresql+psycopg2://", 1);
        let s = Store::connect(&airflow_mesos::store::translate_url(&alias).unwrap())
            .await
            .unwrap();
        s.framework_id("f").await.unwrap();
        let s = Store::connect(&pg.replacen("postgres://", "postgresql://", 1))
            .await
            .unwrap();
        s.framework_id("f").await.unwrap();
    }
    if let Some(my) = server_url("AM_TEST_MYSQL_URL") {
        let alias = my.replacen("mysql://", "mysql+pymysql://", 1);
        let s = Store::connect(&airflow_mesos::store::translate_url(&alias).unwrap())
            .await
            .unwrap();
        s.framework_id("f").await.unwrap();
        let s = Store::connect(&my.replacen("mysql://", "mariadb://", 1))
            .await
            .unwrap();
        s.framework_id("f").await.unwrap();
    }
}

#[tokio::test]
async fn bad_or_unreachable_databases_give_clear_errors_without_the_password() {
    let pw = "Sup3r-Secret-Pw";
    let cases = [
        format!("postgres://am:{pw}@127.0.0.1:1/db"),
        format!("mysql://am:{pw}@127.0.0.1:1/db"),
        format!("oracle://am:{pw}@127.0.0.1/db"),
        format!("postgres://am:{pw}@127.0.0.1:5432/db?sslmode=bogus"),
    ];
    for url in &cases {
        let e = Store::connect(url).await.expect_err(url).to_string();
        assert!(!e.contains(pw), "password leaked: {e}");
        assert!(e.contains("127.0.0.1"), "the server is named: {e}");
    }
    let e = Store::connect(&cases[0]).await.unwrap_err();
    assert!(matches!(e, StoreError::Connect { .. }), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
    assert!(e.is_transient(), "an unreachable server may come back");

    let e = Store::connect("sqlite:///proc/no/such/dir/x.db")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("/proc/no/such/dir"), "{e}");

    // Wrong password against the real servers.
    for var in ["AM_TEST_PG_URL", "AM_TEST_MYSQL_URL"] {
        let Some(good) = server_url(var) else {
            continue;
        };
        let mut u = url::Url::parse(&good).unwrap();
        u.set_password(Some(pw)).unwrap();
        let e = Store::connect(u.as_str()).await.unwrap_err().to_string();
        assert!(!e.contains(pw), "{var}: password leaked: {e}");
        assert!(e.contains("***"), "{var}: the URL is shown redacted: {e}");
        assert!(
            e.to_lowercase().contains("denied") || e.contains("authentication"),
            "{var}: {e}"
        );
    }
}

/// Throughput on each database: 10,000 tasks inserted in one call, launched in one commit, then
/// driven to success in commits of 500 changes. Prints the rates; asserts only correctness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_insert_and_batched_commit_rates() {
    const N: usize = 10_000;
    const BATCH: usize = 500;
    for db in databases().await {
        let k = db.kind;
        let s = Store::connect(&db.url).await.unwrap();
        let recs: Vec<TaskRecord> = (0..N)
            .map(|n| record(&format!("t-{n:05}"), rich_spec(n)))
            .collect();
        let t0 = Instant::now();
        let ev = s.insert_tasks(&recs, 1).await.unwrap();
        let insert_s = t0.elapsed().as_secs_f64();
        assert_eq!(ev.len(), N, "{k}");

        // All launches in one commit: every statement is split into chunks.
        let launches: Vec<Change> = recs
            .iter()
            .enumerate()
            .map(|(i, r)| launch(&r.id, 1, 10 + i as i64))
            .collect();
        let t0 = Instant::now();
        let ev = s.commit(&launches).await.unwrap();
        let big_s = t0.elapsed().as_secs_f64();
        assert_eq!(ev.len(), N, "{k}");
        assert!(ev.windows(2).all(|w| w[1].seq == w[0].seq + 1), "{k}");
        assert_eq!(
            s.counts().await.unwrap()[&TaskState::Launching],
            N as u64,
            "{k}"
        );
        assert_eq!(s.attempts("t-09999").await.unwrap().len(), 1, "{k}");

        let mut changes = Vec::with_capacity(2 * N);
        for (i, r) in recs.iter().enumerate() {
            changes.push(change(&r.id, TaskState::Running, 1, 20_000 + i as i64));
        }
        for (i, r) in recs.iter().enumerate() {
            let mut c = change(&r.id, TaskState::Succeeded, 1, 40_000 + i as i64);
            c.exit_code = Some(0);
            changes.push(c);
        }
        let t0 = Instant::now();
        let mut appended = 0;
        for batch in changes.chunks(BATCH) {
            appended += s.commit(batch).await.unwrap().len();
        }
        let commit_s = t0.elapsed().as_secs_f64();
        assert_eq!(appended, 2 * N, "{k}");
        println!(
            "store rates [{k}]: insert {N} tasks in {insert_s:.2} s ({:.0} tasks/s); \
             one commit of {N} launches in {big_s:.2} s; \
             commit {} changes in batches of {BATCH} in {commit_s:.2} s ({:.0} changes/s)",
            N as f64 / insert_s,
            changes.len(),
            changes.len() as f64 / commit_s,
        );
        let counts = s.counts().await.unwrap();
        assert_eq!(counts[&TaskState::Succeeded], N as u64, "{k}");
        assert!(s.load_active().await.unwrap().is_empty(), "{k}");
        s.close().await;
        db.drop_database().await;
    }
}

/// The API reads the change feed while the driver writes: a poller must see every event exactly
/// once and never a gap (each commit's events become visible together, in seq order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_reader_never_misses_nor_repeats_events() {
    use TaskState::*;
    for db in databases().await {
        let k = db.kind;
        let writer = Store::connect(&db.url).await.unwrap();
        let reader = Store::connect(&db.url).await.unwrap();
        let recs: Vec<TaskRecord> = (0..200)
            .map(|n| record(&format!("t-{n:03}"), TaskSpec::shell("x")))
            .collect();
        let w = writer.clone();
        let write = tokio::spawn(async move {
            let mut all = w.insert_tasks(&recs, 1).await.unwrap();
            for (step, state) in [Starting, Running, Succeeded].into_iter().enumerate() {
                for chunk in recs.chunks(25) {
                    let batch: Vec<Change> = chunk
                        .iter()
                        .map(|r| match step {
                            0 => Change {
                                state,
                                ..launch(&r.id, 1, 2)
                            },
                            _ => change(&r.id, state, 1, 3 + step as i64),
                        })
                        .collect();
                    all.extend(w.commit(&batch).await.unwrap());
                }
            }
            all
        });
        let mut seen: Vec<TaskEvent> = Vec::new();
        let mut cursor = 0;
        loop {
            let done = write.is_finished();
            let page = reader.events_since(cursor, 64).await.unwrap();
            if let Some(last) = page.last() {
                cursor = last.seq;
            }
            let empty = page.is_empty();
            seen.extend(page);
            if done && empty {
                break;
            }
            tokio::task::yield_now().await;
        }
        let all = write.await.unwrap();
        assert_eq!(seen.len(), all.len(), "{k}");
        assert_eq!(
            seen, all,
            "{k}: the reader saw exactly the committed events, in order"
        );
        writer.close().await;
        reader.close().await;
        db.drop_database().await;
    }
}

#[tokio::test]
async fn an_in_memory_sqlite_store_works() {
    let s = Store::connect("sqlite::memory:").await.unwrap();
    s.insert_tasks(&[record("t-m", TaskSpec::shell("x"))], 1)
        .await
        .unwrap();
    s.commit(&[launch("t-m", 1, 2)]).await.unwrap();
    let again = s.clone();
    assert_eq!(
        again.get_task("t-m").await.unwrap().unwrap().state,
        TaskState::Launching
    );
    assert_eq!(again.events_since(0, 10).await.unwrap().len(), 2);
}

/// The store is used from spawned tasks and axum handlers: its futures must be `Send`.
#[allow(dead_code)]
fn store_futures_are_send(s: &Store, f: &TaskFilter) {
    fn send<T: Send>(_: T) {}
    send(Store::connect("sqlite::memory:"));
    send(s.insert_tasks(&[], 0));
    send(s.commit(&[]));
    send(s.get_task("t"));
    send(s.list_tasks(f));
    send(s.events_since(0, 1));
    send(s.attempts("t"));
    send(s.load_active());
    send(s.find_by_backend_task_id("t.1"));
    send(s.counts());
    send(s.framework_id("f"));
    send(s.set_framework_id("f", "id"));
}

/// The store keeps the heads of the tasks it commits, so that the next status updates need not
/// read them back; a second writer on the same database must make it re-read, never write over
/// what the other wrote.
/// The states of the change feed's first 100 events, in order.
async fn feed_states(s: &Store) -> Vec<TaskState> {
    let events = s.events_since(0, 100).await.unwrap();
    events.iter().map(|e| e.state).collect()
}

/// Two stores on one database, the first having inserted the queued task `id`.
async fn two_writers(url: &str, id: &str) -> (Store, Store) {
    let a = Store::connect(url).await.unwrap();
    let b = Store::connect(url).await.unwrap();
    a.insert_tasks(&[record(id, TaskSpec::shell("x"))], 1)
        .await
        .unwrap();
    (a, b)
}

#[tokio::test]
async fn a_second_writer_is_noticed_and_nothing_it_wrote_is_lost() {
    for db in databases().await {
        let k = db.kind;
        let (a, b) = two_writers(&db.url, "t-w").await;
        // A launches (and caches the head), B moves the task on behind A's back.
        a.commit(&[launch("t-w", 1, 10)]).await.unwrap();
        let mut killed = change("t-w", TaskState::Running, 1, 20);
        killed.kill_requested = true;
        killed.message = Some("from b".into());
        let by_b = b.commit(&[killed]).await.unwrap();
        assert_eq!(by_b.len(), 1, "{k}");
        // A's next change is planned on what B wrote, not on its cached head.
        let mut done = change("t-w", TaskState::Succeeded, 1, 30);
        done.exit_code = Some(0);
        let by_a = a.commit(&[done]).await.unwrap();
        assert_eq!(by_a.len(), 1, "{k}");
        assert!(by_a[0].seq > by_b[0].seq, "{k}: feed order kept");
        let t = a.get_task("t-w").await.unwrap().unwrap();
        assert_eq!(t.state, TaskState::Succeeded, "{k}");
        assert!(
            t.kill_requested,
            "{k}: B's sticky kill flag survived A's write"
        );
        assert_eq!(t.message.as_deref(), Some("from b"), "{k}");
        assert_eq!(t.exit_code, Some(0), "{k}");
        let feed = feed_states(&a).await;
        assert_eq!(
            feed,
            vec![
                TaskState::Queued,
                TaskState::Launching,
                TaskState::Running,
                TaskState::Succeeded
            ],
            "{k}"
        );
        a.close().await;
        b.close().await;
        db.drop_database().await;
    }
}

#[tokio::test]
async fn a_head_remembered_at_insert_is_checked_before_it_is_trusted() {
    for db in databases().await {
        let k = db.kind;
        // A inserts (and remembers the queued head); B launches the task behind A's back.
        let (a, b) = two_writers(&db.url, "t-i").await;
        b.commit(&[launch("t-i", 1, 10)]).await.unwrap();
        // Planned on A's stale head, attempt 1 would count as a new attempt and wipe the
        // agent B stored; planned on what B wrote, it is the running attempt B launched.
        let by_a = a
            .commit(&[change("t-i", TaskState::Running, 1, 20)])
            .await
            .unwrap();
        assert_eq!(by_a.len(), 1, "{k}");
        let t = a.get_task("t-i").await.unwrap().unwrap();
        assert_eq!(t.state, TaskState::Running, "{k}");
        assert_eq!(t.attempts, 1, "{k}");
        assert_eq!(
            t.agent_id.as_deref(),
            Some("agent-1"),
            "{k}: B's launch kept"
        );
        let feed = feed_states(&a).await;
        assert_eq!(
            feed,
            vec![TaskState::Queued, TaskState::Launching, TaskState::Running],
            "{k}"
        );
        a.close().await;
        b.close().await;
        db.drop_database().await;
    }
}

/// Every page of `q` in turn, concatenated (at most 1000 pages).
async fn all_pages(s: &Store, mut q: TaskPageQuery) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let page = s.task_page(&q).await.unwrap();
        pages += 1;
        assert!(page.tasks.len() <= q.limit as usize);
        assert!(
            page.tasks.windows(2).all(|w| w[0].seq > w[1].seq),
            "newest change first"
        );
        ids.extend(page.tasks.iter().map(|t| t.id.clone()));
        match page.next_before {
            Some(b) if pages < 1000 => q.before = Some(b),
            _ => return (ids, pages),
        }
    }
}

#[tokio::test]
async fn task_pages_walk_every_filter_newest_first_without_misses() {
    for db in databases().await {
        let k = db.kind;
        let s = Store::connect(&db.url).await.unwrap();
        let recs: Vec<TaskRecord> = (0..40)
            .map(|n| {
                let mut spec = TaskSpec::shell("true");
                spec.labels
                    .insert("team".into(), if n % 3 == 0 { "a" } else { "b" }.into());
                spec.external_key = Some(format!("key-{}", n % 4));
                record(&format!("t-{n:02}"), spec)
            })
            .collect();
        s.insert_tasks(&recs, 1).await.unwrap();
        // Move some tasks on, so that seq order differs from insertion order.
        let mut changes = Vec::new();
        for n in (0..40).step_by(5) {
            let id = format!("t-{n:02}");
            changes.push(launch(&id, 1, 10));
            changes.push(change(
                &id,
                if n % 2 == 0 {
                    TaskState::Failed
                } else {
                    TaskState::Running
                },
                1,
                20,
            ));
        }
        s.commit(&changes).await.unwrap();
        let mut all = s.list_tasks(&TaskFilter::default()).await.unwrap();
        all.reverse();
        let expect = |keep: &dyn Fn(&TaskRecord) -> bool| -> Vec<String> {
            all.iter()
                .filter(|t| keep(t))
                .map(|t| t.id.clone())
                .collect()
        };
        let q = |filter: TaskFilter| TaskPageQuery {
            filter,
            limit: 7,
            ..TaskPageQuery::default()
        };

        let (ids, pages) = all_pages(&s, q(TaskFilter::default())).await;
        assert_eq!(ids, expect(&|_| true), "{k}: no filter");
        assert_eq!(pages, 6, "{k}: 40 tasks in pages of 7");

        let states = TaskFilter {
            states: vec![TaskState::Failed, TaskState::Running],
            ..TaskFilter::default()
        };
        let (ids, _) = all_pages(&s, q(states)).await;
        assert_eq!(
            ids,
            expect(&|t| matches!(t.state, TaskState::Failed | TaskState::Running)),
            "{k}: states"
        );
        assert_eq!(ids.len(), 8, "{k}");

        let label = TaskFilter {
            label: Some(("team".into(), "a".into())),
            ..TaskFilter::default()
        };
        let (ids, _) = all_pages(&s, q(label.clone())).await;
        assert_eq!(ids, expect(&|t| t.spec.labels["team"] == "a"), "{k}: label");
        // A window smaller than the table: pages stop at each window, nothing is missed.
        let (ids, pages) = all_pages(
            &s,
            TaskPageQuery {
                scan_window: Some(4),
                ..q(label)
            },
        )
        .await;
        assert_eq!(
            ids,
            expect(&|t| t.spec.labels["team"] == "a"),
            "{k}: label, windowed"
        );
        assert!(pages >= 12, "{k}: {pages} pages of at most 4 positions");

        let key_and_state = TaskFilter {
            external_key: Some("key-0".into()),
            states: vec![TaskState::Queued],
            since: Some(3),
            ..TaskFilter::default()
        };
        let (ids, _) = all_pages(&s, q(key_and_state)).await;
        assert_eq!(
            ids,
            expect(&|t| t.spec.external_key.as_deref() == Some("key-0")
                && t.state == TaskState::Queued
                && t.seq > 3),
            "{k}: external key, state and since"
        );
        assert!(!ids.is_empty(), "{k}");
        s.close().await;
        db.drop_database().await;
    }
}

#[tokio::test]
async fn a_task_history_has_each_change_with_its_reason_and_message() {
    for db in databases().await {
        let k = db.kind;
        let s = Store::connect(&db.url).await.unwrap();
        s.insert_tasks(
            &[
                record("t-h", TaskSpec::shell("x")),
                record("t-other", TaskSpec::shell("y")),
            ],
            1,
        )
        .await
        .unwrap();
        let mut dropped = change("t-h", TaskState::Queued, 1, 20);
        dropped.message = Some("offer rescinded".into());
        dropped.reason = Some("REASON_INVALID_OFFERS".into());
        s.commit(&[launch("t-h", 1, 10), launch("t-other", 1, 10), dropped])
            .await
            .unwrap();
        let mut failed = change("t-h", TaskState::Failed, 2, 50);
        failed.message = Some("Command exited with status 3".into());
        failed.reason = Some("REASON_COMMAND_EXECUTOR_FAILED".into());
        s.commit(&[
            launch("t-h", 2, 30),
            change("t-other", TaskState::Running, 1, 35),
            change("t-h", TaskState::Running, 2, 40),
        ])
        .await
        .unwrap();
        s.commit(&[failed]).await.unwrap();

        let t = s.get_task("t-h").await.unwrap().unwrap();
        let h = s.task_history(&t, 50).await.unwrap();
        let seen: Vec<_> = h
            .events
            .iter()
            .map(|e| {
                (
                    e.state,
                    e.attempt,
                    e.reason.as_deref(),
                    e.message.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (TaskState::Queued, 0, None, None),
                (TaskState::Launching, 1, None, None),
                (
                    TaskState::Queued,
                    1,
                    Some("REASON_INVALID_OFFERS"),
                    Some("offer rescinded")
                ),
                (TaskState::Launching, 2, None, None),
                (TaskState::Running, 2, None, None),
                (
                    TaskState::Failed,
                    2,
                    Some("REASON_COMMAND_EXECUTOR_FAILED"),
                    Some("Command exited with status 3")
                ),
            ],
            "{k}"
        );
        assert!(h.events.iter().all(|e| e.task_id == "t-h"), "{k}");
        assert!(!h.truncated, "{k}");
        let last3 = s.task_history(&t, 3).await.unwrap();
        assert_eq!(last3.events, h.events[3..].to_vec(), "{k}");
        assert!(last3.truncated, "{k}");
        s.close().await;
        db.drop_database().await;
    }
}

/// SQLite (built from source for sqlx and rusqlite alike) syncs its files with fdatasync(2), as
/// the distributions' builds of it do on Linux, and not with fsync(2), which also writes the
/// file's inode for its new modification time at every commit (`.cargo/config.toml` sets
/// `HAVE_FDATASYNC`). Seen from outside: the system calls of a command that creates and
/// migrates a fresh SQLite store, under strace.
#[test]
fn sqlite_syncs_its_files_with_fdatasync() {
    let strace_there = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !strace_there {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "strace is not installed but CI=true (.ci/setup-databases.sh installs it)"
        );
        eprintln!("skipping: strace is not installed");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let trace = home.path().join("trace");
    let out = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .args([
            env!("CARGO_BIN_EXE_airflow-mesos"),
            "framework",
            "reset",
            "--yes",
        ])
        .env("AIRFLOW_HOME", home.path())
        .env_remove("AIRFLOW_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        home.path().join("airflow-mesos.db").exists(),
        "no store was made"
    );
    let calls = std::fs::read_to_string(&trace).unwrap();
    let count = |call: &str| calls.lines().filter(|l| l.contains(call)).count();
    let (fsync, fdatasync) = (count(" fsync("), count(" fdatasync("));
    assert!(
        fdatasync > 0,
        "no fdatasync while migrating a fresh store:\n{calls}"
    );
    assert_eq!(fsync, 0, "fsync called {fsync} times:\n{calls}");
}
