//! Integration tests of the Mesos scheduler client (`airflow_mesos::mesos::client`) and master
//! detection (`airflow_mesos::mesos::detect`) against the fake master (tests/support), and
//! against a real ZooKeeper for `zk://` (needs `AM_TEST_ZK`, see `.ci/setup-zookeeper.sh`).

mod support;

use std::time::Duration;

use airflow_mesos::config::Secret;
use airflow_mesos::mesos::client::{
    CallKind, ClientConfig, ClientError, Credentials, Disposition, MesosClient, Session,
    StreamError, Subscription,
};
use airflow_mesos::mesos::detect::{parse_master, MasterSource};
use airflow_mesos::mesos::json::Encoding;
use airflow_mesos::mesos::proto::scheduler::{call, event, Call, Event};
use airflow_mesos::mesos::proto::v1 as pb;
use airflow_mesos::mesos::recordio::RecordIoError;
use prost::Message as _;
use support::fake_master::{AgentSpec, FakeMaster, FakeMasterOptions, Leadership};
use tokio_util::sync::CancellationToken;
use url::Url;

const T: Duration = Duration::from_secs(10);

fn subscribe_call(framework_id: Option<&str>) -> Call {
    let id = framework_id.map(|v| pb::FrameworkId {
        value: v.to_string(),
    });
    Call {
        framework_id: id.clone(),
        r#type: Some(call::Type::Subscribe as i32),
        subscribe: Some(call::Subscribe {
            framework_info: pb::FrameworkInfo {
                user: "root".to_string(),
                name: "mesos-client-test".to_string(),
                id,
                failover_timeout: Some(3600.0),
                checkpoint: Some(true),
                roles: vec!["*".to_string()],
                capabilities: [
                    pb::framework_info::capability::Type::MultiRole,
                    pb::framework_info::capability::Type::PartitionAware,
                ]
                .into_iter()
                .map(|t| pb::framework_info::Capability {
                    r#type: Some(t as i32),
                })
                .collect(),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn revive(framework_id: &str) -> Call {
    Call {
        framework_id: Some(pb::FrameworkId {
            value: framework_id.to_string(),
        }),
        r#type: Some(call::Type::Revive as i32),
        ..Default::default()
    }
}

fn client(encoding: Encoding) -> MesosClient {
    MesosClient::new(ClientConfig {
        encoding,
        ..Default::default()
    })
    .expect("client")
}

fn base(m: &FakeMaster) -> Url {
    Url::parse(&m.url()).expect("url")
}

async fn next_event(sub: &mut Subscription) -> Event {
    tokio::time::timeout(T, sub.events.next())
        .await
        .expect("an event within 10 s")
        .expect("stream open")
        .expect("a valid event")
}

/// Reads events until SUBSCRIBED; returns the framework id.
async fn subscribed(sub: &mut Subscription) -> String {
    let e = next_event(sub).await;
    assert_eq!(
        e.r#type,
        Some(event::Type::Subscribed as i32),
        "first event: {e:?}"
    );
    e.subscribed.expect("subscribed").framework_id.value
}

/// The stream's end: `None` = clean end, `Some(err)` = a stream error.
async fn stream_end(sub: &mut Subscription) -> Option<StreamError> {
    loop {
        match tokio::time::timeout(T, sub.events.next())
            .await
            .expect("stream ends within 10 s")
        {
            None => return None,
            Some(Err(e)) => return Some(e),
            Some(Ok(_)) => {}
        }
    }
}

fn session(sub: &Subscription, fid: &str) -> Session {
    Session {
        endpoint: sub.endpoint.clone(),
        stream_id: sub.stream_id.clone(),
        framework_id: fid.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_subscribe_then_calls_use_the_stream_id_in_both_encodings() {
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let m = FakeMaster::start(FakeMasterOptions {
            agents: vec![AgentSpec::new(2.0, 1024.0)],
            ..Default::default()
        })
        .await;
        let c = client(encoding);
        let mut sub = c
            .subscribe(&[base(&m)], &subscribe_call(None))
            .await
            .expect("subscribe");
        let fid = subscribed(&mut sub).await;
        assert_eq!(m.framework_ids(), vec![fid.clone()]);
        assert_eq!(Some(sub.stream_id.clone()), m.stream_id(&fid));
        assert_eq!(
            next_event(&mut sub).await.r#type,
            Some(event::Type::Heartbeat as i32)
        );
        let offers = next_event(&mut sub).await;
        assert_eq!(offers.offers.expect("offers").offers.len(), 1);
        c.call(&session(&sub, &fid), &revive(&fid))
            .await
            .expect("REVIVE accepted");

        let calls = m.calls();
        let (sub_rec, revive_rec) = (&calls[0], &calls[1]);
        let ct = encoding.content_type();
        assert_eq!(sub_rec.header("content-type"), Some(ct), "{encoding:?}");
        assert_eq!(
            sub_rec.header("accept"),
            Some(ct),
            "ask for the same encoding back"
        );
        assert_eq!(
            sub_rec.header("mesos-stream-id"),
            None,
            "never on SUBSCRIBE"
        );
        assert_eq!(
            revive_rec.header("mesos-stream-id"),
            Some(sub.stream_id.as_str())
        );
        assert_eq!(revive_rec.status, 202);
        assert_eq!(revive_rec.call_type(), Some(call::Type::Revive));
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribe_with_the_stored_framework_id_after_the_stream_drops() {
    let m = FakeMaster::start(FakeMasterOptions::default()).await;
    let c = client(Encoding::Protobuf);
    let mut sub = c
        .subscribe(&[base(&m)], &subscribe_call(None))
        .await
        .expect("subscribe");
    let fid = subscribed(&mut sub).await;
    let old = session(&sub, &fid);
    m.drop_streams();
    let end = stream_end(&mut sub).await;
    assert!(
        end.is_some(),
        "an aborted stream is an error, not a clean end"
    );
    m.wait_for("disconnected", T, |m| !m.is_connected(&fid))
        .await;
    let err = c
        .call(&old, &revive(&fid))
        .await
        .expect_err("403 while disconnected");
    assert_eq!(err.status(), Some(403));
    assert_eq!(err.master_message(), Some("Framework is not subscribed"));
    assert_eq!(
        err.disposition(CallKind::Call),
        Disposition::Retry,
        "works again after re-subscribing"
    );

    let mut sub2 = c
        .subscribe(&[base(&m)], &subscribe_call(Some(&fid)))
        .await
        .expect("re-subscribe");
    assert_eq!(subscribed(&mut sub2).await, fid, "same framework id");
    assert_ne!(sub2.stream_id, old.stream_id);
    let err = c
        .call(&old, &revive(&fid))
        .await
        .expect_err("old stream id");
    assert_eq!(err.status(), Some(400));
    assert!(err
        .master_message()
        .expect("message")
        .contains("didn't match the stream ID currently associated"));
    c.call(&session(&sub2, &fid), &revive(&fid))
        .await
        .expect("new stream id works");
    let resub = m
        .calls_of(call::Type::Subscribe)
        .pop()
        .expect("second SUBSCRIBE");
    assert_eq!(
        resub.framework_id.as_ref().map(|f| f.value.as_str()),
        Some(fid.as_str())
    );
    assert_eq!(
        resub
            .subscribe
            .expect("s")
            .framework_info
            .id
            .map(|f| f.value),
        Some(fid.clone())
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_redirects_subscribe_and_calls_go_to_the_leader() {
    let leader = FakeMaster::start(FakeMasterOptions::default()).await;
    let standby = FakeMaster::start(FakeMasterOptions {
        leadership: Leadership::Standby(leader.host_port()),
        ..Default::default()
    })
    .await;
    let c = client(Encoding::Protobuf);
    let mut sub = c
        .subscribe(&[base(&standby)], &subscribe_call(None))
        .await
        .expect("subscribe via standby");
    let fid = subscribed(&mut sub).await;
    assert_eq!(sub.endpoint.port(), Some(leader.addr().port()));
    assert_eq!(
        sub.endpoint.path(),
        "/master/api/v1/scheduler",
        "the Location's path is kept"
    );
    c.call(&session(&sub, &fid), &revive(&fid))
        .await
        .expect("call to the leader");
    assert_eq!(
        standby.calls().len(),
        1,
        "only the redirected SUBSCRIBE hit the standby"
    );
    assert_eq!(standby.calls()[0].status, 307);
    assert_eq!(leader.calls_of(call::Type::Revive).len(), 1);

    // A redirect loop is cut off, as transient.
    let a = FakeMaster::start(FakeMasterOptions::default()).await;
    let b = FakeMaster::start(FakeMasterOptions {
        leadership: Leadership::Standby(a.host_port()),
        ..Default::default()
    })
    .await;
    a.set_leadership(Leadership::Standby(b.host_port()));
    let err = c
        .subscribe(&[base(&a)], &subscribe_call(None))
        .await
        .expect_err("loop");
    assert!(matches!(err, ClientError::TooManyRedirects { .. }), "{err}");
    assert_eq!(err.disposition(CallKind::Subscribe), Disposition::Retry);
    assert!(
        a.calls().len() + b.calls().len() <= 8,
        "bounded: {} requests",
        a.calls().len() + b.calls().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_list_of_masters_the_leader_is_reached_at_the_address_given() {
    // The standby names the leader by its advertised hostname (`localhost` here, as a master
    // started without --hostname on a developer machine; a name that does not resolve where
    // the daemon runs in the second round). The operator gave addresses: they are used.
    let leader = FakeMaster::start(FakeMasterOptions::default()).await;
    let c = client(Encoding::Protobuf);
    for advertised in ["localhost", "mesos-leader.invalid"] {
        let standby = FakeMaster::start(FakeMasterOptions {
            leadership: Leadership::Standby(format!("{advertised}:{}", leader.addr().port())),
            ..Default::default()
        })
        .await;
        let mut sub = c
            .subscribe(&[base(&standby), base(&leader)], &subscribe_call(None))
            .await
            .expect("the leader, at the address the operator gave");
        let fid = subscribed(&mut sub).await;
        assert_eq!(sub.endpoint.host_str(), Some("127.0.0.1"), "{advertised}");
        assert_eq!(sub.endpoint.port(), Some(leader.addr().port()));
        leader.clear_calls();
        c.call(&session(&sub, &fid), &revive(&fid))
            .await
            .expect("calls go there too");
        assert_eq!(leader.calls_of(call::Type::Revive).len(), 1);
        // The standby's redirect was not followed.
        assert_eq!(standby.calls().len(), 1);
        assert_eq!(standby.calls()[0].status, 307);
        standby.shutdown().await;
    }

    // A single master given: its redirect is all there is, and it is followed.
    let only = FakeMaster::start(FakeMasterOptions {
        leadership: Leadership::Standby(leader.host_port()),
        ..Default::default()
    })
    .await;
    let mut sub = c
        .subscribe(&[base(&only)], &subscribe_call(None))
        .await
        .expect("redirect followed");
    subscribed(&mut sub).await;
    assert_eq!(sub.endpoint.port(), Some(leader.addr().port()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_masters_are_skipped_and_a_503_is_retryable() {
    let m = FakeMaster::start(FakeMasterOptions::default()).await;
    let c = client(Encoding::Protobuf);
    m.fail_next_calls(1, 503, "Master has not finished recovery");
    let err = c
        .subscribe(&[base(&m)], &subscribe_call(None))
        .await
        .expect_err("503");
    assert_eq!(err.status(), Some(503));
    assert_eq!(
        err.master_message(),
        Some("Master has not finished recovery")
    );
    assert_eq!(err.disposition(CallKind::Subscribe), Disposition::Retry);
    // Recovery: the next attempt works.
    let mut sub = c
        .subscribe(&[base(&m)], &subscribe_call(None))
        .await
        .expect("recovered");
    subscribed(&mut sub).await;

    // A list: a dead address and a master without leader are skipped for the live one.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = l.local_addr().expect("addr");
        drop(l);
        Url::parse(&format!("http://{a}")).expect("url")
    };
    let leaderless = FakeMaster::start(FakeMasterOptions {
        leadership: Leadership::NoLeader,
        ..Default::default()
    })
    .await;
    let live = FakeMaster::start(FakeMasterOptions::default()).await;
    let mut sub = c
        .subscribe(
            &[dead, base(&leaderless), base(&live)],
            &subscribe_call(None),
        )
        .await
        .expect("live master");
    subscribed(&mut sub).await;
    assert_eq!(leaderless.calls()[0].status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failure_is_a_clear_fatal_error_and_credentials_work() {
    let m = FakeMaster::start(FakeMasterOptions::default()).await;
    m.require_auth("fixture-principal", "fixture-secret");
    let err = client(Encoding::Protobuf)
        .subscribe(&[base(&m)], &subscribe_call(None))
        .await
        .expect_err("401");
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.disposition(CallKind::Subscribe), Disposition::Fatal);
    let text = err.to_string();
    assert!(
        text.contains("401") && text.contains("default_principal"),
        "says what to fix: {text}"
    );
    assert_eq!(m.calls().len(), 1, "a fatal error is not retried");

    let wrong = MesosClient::new(ClientConfig {
        credentials: Some(Credentials {
            principal: "fixture-principal".into(),
            secret: Secret::new("hunter2-wrong"),
        }),
        ..Default::default()
    })
    .expect("client");
    let err = wrong
        .subscribe(&[base(&m)], &subscribe_call(None))
        .await
        .expect_err("wrong secret");
    assert!(
        !err.to_string().contains("hunter2-wrong"),
        "secret never in errors: {err}"
    );
    assert!(!format!("{err:?}").contains("hunter2-wrong"));

    let good = MesosClient::new(ClientConfig {
        credentials: Some(Credentials {
            principal: "fixture-principal".into(),
            secret: Secret::new("fixture-secret"),
        }),
        ..Default::default()
    })
    .expect("client");
    let mut sub = good
        .subscribe(&[base(&m)], &subscribe_call(None))
        .await
        .expect("authenticated");
    let fid = subscribed(&mut sub).await;
    good.call(&session(&sub, &fid), &revive(&fid))
        .await
        .expect("authenticated call");
    let rec = m.calls().pop().expect("call");
    assert_eq!(
        rec.header("authorization"),
        Some("Basic Zml4dHVyZS1wcmluY2lwYWw6Zml4dHVyZS1zZWNyZXQ=")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_streams_end_in_errors_without_panics_and_resubscribe_works() {
    let bad_protobuf = {
        let mut v = b"5\n".to_vec();
        v.extend_from_slice(&[0x0a, 0xff, 0xff, 0xff, 0x7f]);
        v
    };
    let cases: [(&str, Vec<u8>); 4] = [
        ("garbage length", b"12x\n{}".to_vec()),
        ("huge length", b"99999999999999999999999999\n".to_vec()),
        ("over the maximum", b"1048577\n".to_vec()),
        ("bad protobuf", bad_protobuf),
    ];
    for (what, bytes) in cases {
        let m = FakeMaster::start(FakeMasterOptions::default()).await;
        let c = MesosClient::new(ClientConfig {
            max_record: 1024 * 1024,
            ..Default::default()
        })
        .expect("client");
        let mut sub = c
            .subscribe(&[base(&m)], &subscribe_call(None))
            .await
            .expect("subscribe");
        let fid = subscribed(&mut sub).await;
        m.inject_raw(&bytes);
        let err = stream_end(&mut sub)
            .await
            .unwrap_or_else(|| panic!("{what}: stream error expected"));
        match (what, &err) {
            ("garbage length", StreamError::Framing(RecordIoError::NonDigitLength { .. }))
            | (
                "huge length" | "over the maximum",
                StreamError::Framing(RecordIoError::TooLarge { .. }),
            )
            | ("bad protobuf", StreamError::Decode(_)) => {}
            _ => panic!("{what}: unexpected error {err}"),
        }
        drop(sub);
        m.wait_for("disconnected", T, |m| !m.is_connected(&fid))
            .await;
        let mut again = c
            .subscribe(&[base(&m)], &subscribe_call(Some(&fid)))
            .await
            .expect("re-subscribe");
        assert_eq!(subscribed(&mut again).await, fid, "{what}");
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_record_is_an_error() {
    let m = FakeMaster::start(FakeMasterOptions::default()).await;
    let c = client(Encoding::Json);
    let mut sub = c
        .subscribe(&[base(&m)], &subscribe_call(None))
        .await
        .expect("subscribe");
    subscribed(&mut sub).await;
    m.close_mid_record();
    assert!(
        stream_end(&mut sub).await.is_some(),
        "a truncated record is not a clean end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_calls_surface_the_masters_message_and_are_not_retried() {
    let m = FakeMaster::start(FakeMasterOptions::default()).await;
    let c = client(Encoding::Protobuf);
    let mut sub = c
        .subscribe(&[base(&m)], &subscribe_call(None))
        .await
        .expect("subscribe");
    let fid = subscribed(&mut sub).await;
    let s = session(&sub, &fid);
    m.clear_calls();

    // Unknown framework: 400, not 403.
    let err = c
        .call(&s, &revive("no-such-framework"))
        .await
        .expect_err("unknown framework");
    assert!(
        matches!(&err, ClientError::BadRequest { message, .. } if message == "Framework cannot be found"),
        "{err}"
    );
    assert_eq!(err.disposition(CallKind::Call), Disposition::Fatal);
    // A call without its sub-message: validation error text from the master.
    let kill = Call {
        framework_id: Some(pb::FrameworkId { value: fid.clone() }),
        r#type: Some(call::Type::Kill as i32),
        ..Default::default()
    };
    let err = c.call(&s, &kill).await.expect_err("no kill message");
    assert_eq!(
        err.master_message(),
        Some("Failed to validate scheduler::Call: Expecting 'kill' to be present")
    );
    // An ACKNOWLEDGE with a short uuid.
    let ack = Call {
        framework_id: Some(pb::FrameworkId { value: fid.clone() }),
        r#type: Some(call::Type::Acknowledge as i32),
        acknowledge: Some(call::Acknowledge {
            agent_id: pb::AgentId { value: "a".into() },
            task_id: pb::TaskId { value: "t".into() },
            uuid: vec![1, 2, 3],
        }),
        ..Default::default()
    };
    let err = c.call(&s, &ack).await.expect_err("short uuid");
    assert!(err.to_string().contains("Not a valid UUID"), "{err}");
    assert_eq!(
        m.calls().len(),
        3,
        "each rejected call was sent exactly once"
    );
    assert!(m.calls().iter().all(|r| r.status == 400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_master_detection_follows_the_leader_node_while_subscribed() {
    let Some(zk) = support::env::required_service("AM_TEST_ZK", "a ZooKeeper server") else {
        return;
    };
    let a = FakeMaster::start(FakeMasterOptions::default()).await;
    let b = FakeMaster::start(FakeMasterOptions {
        leadership: Leadership::Standby(a.host_port()),
        ..Default::default()
    })
    .await;
    let group = support::zk::ZkMasters::new(&zk).await;
    let node_a = group.publish(&a.zk_node_json()).await;
    let _node_b = group.publish(&b.zk_node_json()).await;

    let addr = parse_master(&group.url(), false).expect("zk:// address");
    let shutdown = CancellationToken::new();
    let mut source =
        MasterSource::start(&addr, false, Duration::from_millis(200), &shutdown).expect("source");
    let deadline = tokio::time::Instant::now() + T;
    while source.candidates().is_empty() {
        tokio::time::timeout_at(deadline, source.changed())
            .await
            .expect("leader known within 10 s");
    }
    let ports: Vec<Option<u16>> = source.candidates().iter().map(Url::port).collect();
    assert_eq!(
        ports,
        vec![Some(a.addr().port())],
        "the lowest json.info_ node leads"
    );

    let c = client(Encoding::Protobuf);
    let mut sub = c
        .subscribe(&source.candidates(), &subscribe_call(None))
        .await
        .expect("subscribe to the leader");
    let fid = subscribed(&mut sub).await;

    // The leader dies: its stream breaks, its node goes away, the standby takes over.
    a.flip_leader_to(&b);
    group.withdraw(&node_a).await;
    assert!(stream_end(&mut sub).await.is_some());
    tokio::time::timeout(T, source.changed())
        .await
        .expect("leader change seen");
    while source.candidates().first().and_then(|u| u.port()) != Some(b.addr().port()) {
        tokio::time::timeout(T, source.changed())
            .await
            .expect("new leader within 10 s");
    }
    let mut sub = c
        .subscribe(&source.candidates(), &subscribe_call(Some(&fid)))
        .await
        .expect("re-subscribe to the new leader");
    assert_eq!(subscribed(&mut sub).await, fid);
    assert_eq!(
        b.framework_ids(),
        vec![fid.clone()],
        "the new leader accepted the old framework id"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_leader_is_reached_by_its_ip_when_its_hostname_does_not_resolve() {
    let Some(zk) = support::env::required_service("AM_TEST_ZK", "a ZooKeeper server") else {
        return;
    };
    let m = FakeMaster::start(FakeMasterOptions {
        hostname: "mesos-leader.invalid".into(),
        ..Default::default()
    })
    .await;
    assert!(m
        .zk_node_json()
        .contains("\"hostname\":\"mesos-leader.invalid\""));
    let group = support::zk::ZkMasters::new(&zk).await;
    group.publish(&m.zk_node_json()).await;
    let addr = parse_master(&group.url(), false).expect("zk:// address");
    let shutdown = CancellationToken::new();
    let mut source =
        MasterSource::start(&addr, false, Duration::from_millis(200), &shutdown).expect("source");
    let deadline = tokio::time::Instant::now() + T;
    while source.candidates().is_empty() {
        tokio::time::timeout_at(deadline, source.changed())
            .await
            .expect("leader known within 10 s");
    }
    let leader = source.candidates()[0].clone();
    assert_eq!(leader.host_str(), Some("127.0.0.1"), "{leader}");
    let c = client(Encoding::Protobuf);
    let mut sub = c
        .subscribe(&source.candidates(), &subscribe_call(None))
        .await
        .expect("subscribe at the leader's IP");
    subscribed(&mut sub).await;
    shutdown.cancel();
}

#[test]
fn encoded_calls_are_what_the_master_parses() {
    // The client's JSON for a SUBSCRIBE is accepted by the fake's independent parser.
    let call = subscribe_call(Some("fw-1"));
    let json = Encoding::Json.encode(&call);
    let parsed = support::fake_master::mesos_json::Schema::get()
        .parse_json(
            "mesos.v1.scheduler.Call",
            std::str::from_utf8(&json).expect("utf-8"),
        )
        .expect("the fake parses the client's JSON");
    assert_eq!(Call::decode(parsed.as_slice()).expect("decode"), call);
}

// ----- the backend's subscription loop (airflow_mesos::mesos::backend) --------------------

mod backend {
    use super::*;
    use airflow_mesos::config::MasterAddr;
    use airflow_mesos::mesos::backend::{spawn, MesosBackendConfig};
    use airflow_mesos::onetime::OneTimeFiles;
    use airflow_mesos::scheduler::types::{Action, BackendChannels, Event as Ev};
    use std::sync::Arc;

    const LONG: Duration = Duration::from_secs(600);

    fn config(master: MasterAddr) -> MesosBackendConfig {
        MesosBackendConfig::new(master, "backend-test", "root")
    }

    fn hosts(masters: &[&FakeMaster]) -> MasterAddr {
        MasterAddr::Hosts(masters.iter().map(|m| m.url()).collect())
    }

    fn start(
        cfg: MesosBackendConfig,
        framework_id: Option<&str>,
    ) -> (BackendChannels, CancellationToken) {
        let shutdown = CancellationToken::new();
        let files = Arc::new(OneTimeFiles::new(None, b"k", None));
        let ch = spawn(
            cfg,
            files,
            framework_id.map(str::to_string),
            shutdown.clone(),
        );
        (ch, shutdown)
    }

    /// The next backend event that is not a heartbeat or offers.
    async fn next(ch: &mut BackendChannels) -> Ev {
        loop {
            let e = tokio::time::timeout(LONG, ch.events.recv())
                .await
                .expect("a backend event in time")
                .expect("backend still running");
            if !matches!(e, Ev::Heartbeat | Ev::Offers(_) | Ev::Rescind(_)) {
                return e;
            }
        }
    }

    async fn subscribed(ch: &mut BackendChannels) -> String {
        match next(ch).await {
            Ev::Subscribed { framework_id, .. } => framework_id,
            other => panic!("expected Subscribed, got {other:?}"),
        }
    }

    async fn disconnected(ch: &mut BackendChannels) -> String {
        match next(ch).await {
            Ev::Disconnected { reason } => reason,
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }

    fn subscribes(m: &FakeMaster) -> Vec<support::fake_master::RecordedCall> {
        m.calls()
            .into_iter()
            .filter(|c| c.call_type() == Some(call::Type::Subscribe))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn resubscribes_with_its_framework_id_after_the_stream_drops() {
        let m = FakeMaster::start(FakeMasterOptions::default()).await;
        let (mut ch, shutdown) = start(config(hosts(&[&m])), None);
        let fid = subscribed(&mut ch).await;
        m.drop_streams();
        disconnected(&mut ch).await;
        assert_eq!(subscribed(&mut ch).await, fid);
        let subs = subscribes(&m);
        assert_eq!(subs.len(), 2);
        let second = subs[1].call.as_ref().expect("call");
        assert_eq!(
            second.framework_id.as_ref().map(|f| f.value.as_str()),
            Some(fid.as_str())
        );
        assert_eq!(subs[1].header("mesos-stream-id"), None);
        assert!(m.is_connected(&fid));
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_hostile_stream_is_dropped_and_the_backend_resubscribes() {
        let m = FakeMaster::start(FakeMasterOptions::default()).await;
        let (mut ch, shutdown) = start(config(hosts(&[&m])), None);
        let fid = subscribed(&mut ch).await;
        for (i, hostile) in [
            &b"7x\n"[..],
            &b"99999999999999999999999999\n"[..],
            &b"3\n\xff\xff\xff"[..],
        ]
        .into_iter()
        .enumerate()
        {
            m.inject_raw(hostile);
            let reason = disconnected(&mut ch).await;
            assert!(reason.contains("event stream broken"), "{reason}");
            assert_eq!(subscribed(&mut ch).await, fid);
            assert_eq!(subscribes(&m).len(), i + 2);
        }
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn lost_heartbeats_mean_reconnect_after_five_intervals() {
        let m = FakeMaster::start(FakeMasterOptions::default()).await;
        let (mut ch, shutdown) = start(config(hosts(&[&m])), Some("fw-given"));
        let fid = subscribed(&mut ch).await;
        assert_eq!(
            fid, "fw-given",
            "a stored framework id is reused on the first SUBSCRIBE"
        );
        m.stop_heartbeats();
        let silent_since = tokio::time::Instant::now();
        let reason = disconnected(&mut ch).await;
        let waited = silent_since.elapsed();
        assert!(reason.contains("heartbeat"), "{reason}");
        assert!(
            waited >= Duration::from_secs(74) && waited <= Duration::from_secs(80),
            "gave up after {waited:?}, expected 5 x 15 s"
        );
        m.resume_heartbeats();
        assert_eq!(subscribed(&mut ch).await, fid);
        assert_eq!(subscribes(&m).len(), 2);
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn follows_a_leader_change_through_a_307() {
        let a = FakeMaster::start(FakeMasterOptions::default()).await;
        let b = FakeMaster::start(FakeMasterOptions {
            leadership: Leadership::Standby(a.host_port()),
            ..Default::default()
        })
        .await;
        let (mut ch, shutdown) = start(config(hosts(&[&a, &b])), None);
        let fid = subscribed(&mut ch).await;
        assert!(a.is_connected(&fid));
        a.flip_leader_to(&b);
        disconnected(&mut ch).await;
        assert_eq!(subscribed(&mut ch).await, fid);
        assert!(b.is_connected(&fid), "now on the new leader");
        assert!(
            a.calls().iter().any(|c| c.status == 307),
            "the old leader redirected"
        );
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn backs_off_on_503_and_recovers() {
        let m = FakeMaster::start(FakeMasterOptions::default()).await;
        m.fail_next_calls(4, 503, "Master has not finished recovery");
        let t0 = tokio::time::Instant::now();
        let (mut ch, shutdown) = start(config(hosts(&[&m])), None);
        let fid = loop {
            match next(&mut ch).await {
                Ev::Subscribed { framework_id, .. } => break framework_id,
                Ev::Disconnected { .. } | Ev::Error(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        };
        let statuses: Vec<u16> = m.calls().iter().map(|c| c.status).collect();
        assert_eq!(statuses, [503, 503, 503, 503, 200]);
        // 0.5 s doubling, half jittered: at least 0.25 + 0.5 + 1 + 2 s of waiting.
        assert!(
            t0.elapsed() >= Duration::from_millis(3750),
            "no backoff: {:?}",
            t0.elapsed()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "backoff too long: {:?}",
            t0.elapsed()
        );
        assert!(m.is_connected(&fid));
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn bad_credentials_stop_the_backend_with_a_clear_error() {
        let m = FakeMaster::start(FakeMasterOptions::default()).await;
        m.require_auth("fixture-principal", "fixture-secret");
        let (mut ch, shutdown) = start(config(hosts(&[&m])), None);
        let mut saw_error = None;
        while let Some(e) = tokio::time::timeout(LONG, ch.events.recv())
            .await
            .expect("backend ends in time")
        {
            if let Ev::Error(msg) = e {
                saw_error = Some(msg);
            }
        }
        let msg = saw_error.expect("an Error event before the channel closed");
        assert!(msg.contains("401"), "{msg}");
        assert_eq!(
            subscribes(&m).len(),
            0,
            "unauthenticated requests are not decoded"
        );
        assert_eq!(m.calls().len(), 1, "a fatal answer is not retried");
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn voiding_offers_is_a_decline_without_filter_reported_once_the_master_took_it() {
        let m = FakeMaster::start(FakeMasterOptions::default()).await;
        let (mut ch, shutdown) = start(config(hosts(&[&m])), None);
        subscribed(&mut ch).await;
        let void = Action::VoidOffers {
            offer_ids: vec!["gone-offer".into()],
        };
        ch.actions.send(void).await.expect("backend takes actions");
        loop {
            match next(&mut ch).await {
                Ev::OffersVoided { offer_ids } => {
                    assert_eq!(offer_ids, vec!["gone-offer".to_string()]);
                    break;
                }
                Ev::Heartbeat | Ev::Offers(_) => {}
                other => panic!("expected OffersVoided, got {other:?}"),
            }
        }
        let d = m.calls_of(call::Type::Decline);
        let d = d[0].decline.as_ref().unwrap();
        assert_eq!(d.offer_ids[0].value, "gone-offer");
        assert_eq!(d.filters.as_ref().and_then(|f| f.refuse_seconds), Some(0.0));
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_call_comes_back_as_a_fatal_action_failure_sent_once() {
        let m = FakeMaster::start(FakeMasterOptions::default()).await;
        let (mut ch, shutdown) = start(config(hosts(&[&m])), None);
        subscribed(&mut ch).await;
        let ack = Action::Acknowledge {
            agent_id: "a".into(),
            backend_task_id: "t.1".into(),
            uuid: vec![1, 2, 3],
        };
        ch.actions.send(ack).await.expect("backend takes actions");
        match next(&mut ch).await {
            Ev::ActionFailed { error, fatal, .. } => {
                assert!(fatal, "{error}");
                assert!(
                    error.contains("Not a valid UUID"),
                    "the master's message: {error}"
                );
            }
            other => panic!("expected ActionFailed, got {other:?}"),
        }
        assert_eq!(m.calls_of(call::Type::Acknowledge).len(), 1);
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn another_instance_failing_over_ends_this_one() {
        let m = FakeMaster::start(FakeMasterOptions::default()).await;
        let (mut ch, shutdown) = start(config(hosts(&[&m])), None);
        let fid = subscribed(&mut ch).await;
        let c = client(Encoding::Protobuf);
        let _other = c
            .subscribe(&[base(&m)], &subscribe_call(Some(&fid)))
            .await
            .expect("second instance");
        match next(&mut ch).await {
            Ev::Error(msg) => assert!(msg.contains("Framework failed over"), "{msg}"),
            other => panic!("expected Error, got {other:?}"),
        }
        shutdown.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn zk_leader_change_while_subscribed() {
        let Some(zk) = support::env::required_service("AM_TEST_ZK", "a ZooKeeper server") else {
            return;
        };
        let a = FakeMaster::start(FakeMasterOptions::default()).await;
        let b = FakeMaster::start(FakeMasterOptions {
            leadership: Leadership::Standby(a.host_port()),
            ..Default::default()
        })
        .await;
        let group = support::zk::ZkMasters::new(&zk).await;
        let node_a = group.publish(&a.zk_node_json()).await;
        group.publish(&b.zk_node_json()).await;
        let mut cfg = config(parse_master(&group.url(), false).expect("zk address"));
        cfg.zk_retry = Duration::from_millis(200);
        let (mut ch, shutdown) = start(cfg, None);
        let fid = subscribed(&mut ch).await;
        assert!(a.is_connected(&fid));
        // The leader's node disappears and the standby takes over; its stream breaks too.
        a.flip_leader_to(&b);
        group.withdraw(&node_a).await;
        disconnected(&mut ch).await;
        assert_eq!(subscribed(&mut ch).await, fid);
        assert!(b.is_connected(&fid), "re-subscribed on the new leader");
        shutdown.cancel();
    }
}
