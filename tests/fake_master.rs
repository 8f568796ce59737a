//! Checks of the fake Mesos master (tests/support/fake_master) against traffic recorded from a
//! real Mesos 1.12 master (tests/fixtures/mesos-1.12-real): the recorded requests are
//! replayed (ids swapped for the live ones) and the fake's status codes, key headers, error
//! texts and event bytes are compared with the recorded answers. Behaviour the fixtures do not
//! cover (resends, failover timeout, faults) is checked against the reference.

mod support;

use std::time::Duration;

use airflow_mesos::mesos::proto::scheduler::{call, Call, Event};
use prost::Message as _;
use serde_json::Value;
use support::fake_master::mesos_json::Schema;
use support::fake_master::{AgentSpec, FakeMaster, FakeMasterOptions, Leadership, TaskScript};
use support::fixtures::{self, exchange};
use support::raw_client::{send, Stream, StreamEnd};

const T: Duration = Duration::from_secs(10);
const EVENT: &str = "mesos.v1.scheduler.Event";
const CALL: &str = "mesos.v1.scheduler.Call";
const RUN1: &str = "82b27ca6-d9d1-4eeb-afde-d3151f1e0606";
const HA: &str = "7444006b-5649-413d-a453-3bc76cf30c4f";
const JSON_HEADERS: &[(&str, &str)] = &[
    ("Content-Type", "application/json"),
    ("Accept", "application/json"),
];

fn scheduler_url(m: &FakeMaster) -> String {
    format!("{}/api/v1/scheduler", m.url())
}

/// Our record text with the fake's port written as the recorded master's.
fn as_recorded_port(m: &FakeMaster, text: &str, port: u16) -> String {
    let ours = m.addr().port();
    text.replace(&format!(":{ours}\""), &format!(":{port}\""))
        .replace(&format!("\"port\":{ours}"), &format!("\"port\":{port}"))
}

/// Replays a recorded non-subscribe request with the live stream id (and `swaps` applied to the
/// body) and returns the answer.
async fn replay(
    m: &FakeMaster,
    name: &str,
    stream_id: Option<&str>,
    swaps: &[(&str, &str)],
) -> support::raw_client::Answer {
    let ex = exchange(name);
    let mut body = ex.request_text();
    for (from, to) in swaps {
        body = body.replace(from, to);
    }
    let mut headers: Vec<(&str, &str)> = Vec::new();
    for k in ["Content-Type", "Accept", "Authorization"] {
        if let Some(v) = ex.request_header(k) {
            headers.push((k, v));
        }
    }
    if let Some(recorded) = ex.request_header("Mesos-Stream-Id") {
        headers.push(("Mesos-Stream-Id", stream_id.unwrap_or(recorded)));
    }
    let body = if ex.request_header("Content-Type") == Some("application/x-protobuf") {
        ex.request_body.clone()
    } else {
        body.into_bytes()
    };
    send(
        &ex.method,
        &format!("{}{}", m.url(), ex.path),
        &headers,
        body,
    )
    .await
}

/// Asserts that the answer matches the recording: status, body text, and the key headers.
fn assert_like_recorded(name: &str, got: &support::raw_client::Answer) {
    let ex = exchange(name);
    assert_eq!(
        got.status,
        ex.status,
        "{name}: status (body: {})",
        got.text()
    );
    assert_eq!(got.text(), ex.response_text(), "{name}: body");
    for h in ["Content-Type", "Allow", "WWW-Authenticate"] {
        assert_eq!(got.header(h), ex.response_header(h), "{name}: header {h}");
    }
}

/// The status object of an UPDATE event without the fields that differ per run.
fn normalized_status(event: &Value) -> Value {
    let mut s = event["update"]["status"].clone();
    let obj = s.as_object_mut().expect("status object");
    for k in ["timestamp", "uuid", "container_status"] {
        obj.remove(k);
    }
    s
}

fn status_keys(event: &Value) -> Vec<String> {
    // serde_json keeps keys sorted, so compare key sets; order is checked on raw bytes elsewhere.
    event["update"]["status"]
        .as_object()
        .expect("status")
        .keys()
        .cloned()
        .collect()
}

fn recorded_events(name: &str) -> Vec<Value> {
    fixtures::records(name)
        .iter()
        .map(|r| serde_json::from_slice(r).expect("recorded JSON event"))
        .collect()
}

#[test]
fn json_codec_reproduces_every_recorded_json_event_byte_for_byte() {
    if !fixtures::available() {
        return;
    }
    let schema = Schema::get();
    let mut n = 0;
    for name in fixtures::JSON_STREAMS {
        for record in fixtures::records(name) {
            let text = std::str::from_utf8(&record).expect("utf-8 record");
            let pb = schema
                .parse_json(EVENT, text)
                .unwrap_or_else(|e| panic!("{name}: parse {text}: {e}"));
            Event::decode(pb.as_slice()).expect("prost decodes the parsed event");
            let again = schema.render_json(EVENT, &pb).expect("render");
            assert_eq!(again, text, "{name}: re-rendered event differs");
            n += 1;
        }
    }
    assert!(n > 30, "only {n} records checked");
}

#[test]
fn protobuf_records_survive_a_json_round_trip_bit_for_bit() {
    if !fixtures::available() {
        return;
    }
    let schema = Schema::get();
    for record in fixtures::records("42-subscribe-protobuf") {
        let json = schema
            .render_json(EVENT, &record)
            .expect("render recorded protobuf");
        let back = schema
            .parse_json(EVENT, &json)
            .expect("parse rendered JSON");
        assert_eq!(
            back, record,
            "protobuf -> JSON -> protobuf changed the bytes: {json}"
        );
    }
    // Requests too: the recorded protobuf DECLINE parses and re-encodes identically.
    let decline = exchange("43-decline-protobuf").request_body;
    let json = schema.render_json(CALL, &decline).expect("render call");
    assert!(json.contains("\"refuse_seconds\":5.0"), "{json}");
    assert_eq!(schema.parse_json(CALL, &json).expect("parse"), decline);
}

#[test]
fn json_parser_applies_mesos_rules() {
    let schema = Schema::get();
    // Unknown keys are ignored; an unknown enum on an optional field is dropped.
    let pb = schema
        .parse_json(
            CALL,
            r#"{"type":"NOT_A_CALL","bogus":1,"framework_id":{"value":"f"}}"#,
        )
        .expect("parses");
    let c = Call::decode(pb.as_slice()).expect("call");
    assert_eq!(c.r#type, None);
    assert_eq!(c.framework_id.expect("id").value, "f");
    // Missing required fields are reported by path.
    let err = schema
        .parse_json(
            CALL,
            r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"name":"x"}}}"#,
        )
        .expect_err("user is required");
    assert_eq!(
        err.to_string(),
        "Missing required fields: subscribe.framework_info.user"
    );
    // Numbers as strings, Infinity, base64 bytes, maps.
    let pb = schema
        .parse_json(
            "mesos.v1.TaskInfo",
            r#"{"name":"n","task_id":{"value":"t"},"agent_id":{"value":"a"},"data":"aGk=",
               "limits":{"cpus":{"value":"Infinity"},"mem":{"value":"512"}}}"#,
        )
        .expect("task info");
    let t = airflow_mesos::mesos::proto::v1::TaskInfo::decode(pb.as_slice()).expect("decode");
    assert_eq!(t.data.as_deref(), Some(&b"hi"[..]));
    assert!(t.limits["cpus"].value.is_infinite());
    assert_eq!(t.limits["mem"].value, 512.0);
    // Writing: defaults of unset optional fields appear; non-finite doubles are bare tokens.
    let out = schema
        .render_json("mesos.v1.TaskInfo", &pb)
        .expect("render");
    assert!(
        out.contains(r#""limits":{"cpus":{"value":Infinity},"mem":{"value":512.0}}"#),
        "{out}"
    );
    let filters = schema
        .render_json("mesos.v1.Filters", &[])
        .expect("empty Filters");
    assert_eq!(filters, r#"{"refuse_seconds":5.0}"#);
    // A JSON number for an enum is an error.
    assert!(schema.parse_json(CALL, r#"{"type":1}"#).is_err());
}

/// Run 1 of the recording (files 05-37), replayed step by step against the fake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run1_replay_matches_the_recorded_master() {
    if !fixtures::available() {
        return;
    }
    let agent = AgentSpec {
        port: 5051,
        ..AgentSpec::new(2.0, 2048.0).with_id(&format!("{RUN1}-S0"))
    };
    let m = FakeMaster::start(FakeMasterOptions {
        master_id: RUN1.to_string(),
        agents: vec![agent],
        ..Default::default()
    })
    .await;
    m.set_task_script("task-sleep-1", TaskScript::run_until_released());
    let recorded = fixtures::records("05-subscribe-json");
    let rec_events = recorded_events("05-subscribe-json");

    let mut s = Stream::open(
        &scheduler_url(&m),
        JSON_HEADERS,
        fixtures::stream_request_body("05-subscribe-json"),
    )
    .await;
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("application/json"));
    let sid = s
        .header("mesos-stream-id")
        .expect("Mesos-Stream-Id")
        .to_string();
    uuid::Uuid::parse_str(&sid).expect("stream id is a UUID");
    let sid = sid.as_str();

    // SUBSCRIBED, HEARTBEAT and the first OFFERS are byte-identical to the real master's.
    for (i, want) in recorded.iter().take(3).enumerate() {
        let got = s.next_record(T).await.expect("record");
        let got = as_recorded_port(&m, std::str::from_utf8(&got).expect("utf-8"), 5050);
        assert_eq!(got, std::str::from_utf8(want).expect("utf-8"), "record {i}");
    }

    // ACCEPT + LAUNCH (06), then STARTING/RUNNING/FINISHED, each acknowledged (07-09).
    assert_like_recorded(
        "06-accept-launch-echo",
        &replay(&m, "06-accept-launch-echo", Some(sid), &[]).await,
    );
    let acks = [
        "07-ack-echo-task_starting",
        "08-ack-echo-task_running",
        "09-ack-echo-task_finished",
    ];
    for (i, ack) in acks.iter().enumerate() {
        let want = &rec_events[[3, 4, 6][i]];
        let got = s.next_of_type("UPDATE", T).await;
        assert_eq!(normalized_status(&got), normalized_status(want));
        assert_eq!(status_keys(&got), status_keys(want));
        let uuid = got["update"]["status"]["uuid"]
            .as_str()
            .expect("agent update has a uuid");
        assert_eq!(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, uuid)
                .expect("b64")
                .len(),
            16
        );
        let recorded_uuid = want["update"]["status"]["uuid"]
            .as_str()
            .expect("recorded uuid");
        assert_like_recorded(
            ack,
            &replay(&m, ack, Some(sid), &[(recorded_uuid, uuid)]).await,
        );
    }

    // Long-running task (11), acknowledged (12, 13).
    let offer = s.next_of_type("OFFERS", T).await;
    let offer_id = offer["offers"]["offers"][0]["id"]["value"]
        .as_str()
        .expect("offer id")
        .to_string();
    let swap_offer = |recorded: &'static str| [(recorded, offer_id.clone())];
    let sw = swap_offer("82b27ca6-d9d1-4eeb-afde-d3151f1e0606-O2");
    let a = replay(
        &m,
        "11-accept-launch-sleep",
        Some(sid),
        &[(sw[0].0, sw[0].1.as_str())],
    )
    .await;
    assert_like_recorded("11-accept-launch-sleep", &a);
    for (ack, idx) in [
        ("12-ack-sleep-task_starting", 8),
        ("13-ack-sleep-task_running", 9),
    ] {
        let want = &rec_events[idx];
        let got = s.next_of_type("UPDATE", T).await;
        assert_eq!(normalized_status(&got), normalized_status(want));
        let uuid = got["update"]["status"]["uuid"].as_str().expect("uuid");
        let recorded_uuid = want["update"]["status"]["uuid"]
            .as_str()
            .expect("recorded uuid");
        assert_like_recorded(
            ack,
            &replay(&m, ack, Some(sid), &[(recorded_uuid, uuid)]).await,
        );
    }

    // Implicit then explicit reconciliation (14, 15): master updates without uuid.
    assert_like_recorded(
        "14-reconcile-implicit",
        &replay(&m, "14-reconcile-implicit", Some(sid), &[]).await,
    );
    let got = s.next_of_type("UPDATE", T).await;
    assert_eq!(normalized_status(&got), normalized_status(&rec_events[10]));
    assert_like_recorded(
        "15-reconcile-explicit-unknown",
        &replay(&m, "15-reconcile-explicit-unknown", Some(sid), &[]).await,
    );
    let got = s.next_of_type("UPDATE", T).await;
    assert_eq!(normalized_status(&got), normalized_status(&rec_events[11]));
    assert!(got["update"]["status"].get("uuid").is_none());

    // Too big (16) and duplicate id (17): TASK_ERROR with the master's exact messages.
    for (name, recorded_offer, idx) in [
        (
            "16-accept-launch-too-big",
            "82b27ca6-d9d1-4eeb-afde-d3151f1e0606-O3",
            13,
        ),
        (
            "17-accept-launch-duplicate-id",
            "82b27ca6-d9d1-4eeb-afde-d3151f1e0606-O4",
            15,
        ),
    ] {
        let offer = s.next_of_type("OFFERS", T).await;
        let oid = offer["offers"]["offers"][0]["id"]["value"]
            .as_str()
            .expect("offer id")
            .to_string();
        assert_like_recorded(
            name,
            &replay(&m, name, Some(sid), &[(recorded_offer, &oid)]).await,
        );
        let got = s.next_of_type("UPDATE", T).await;
        assert_eq!(
            normalized_status(&got),
            normalized_status(&rec_events[idx]),
            "{name}"
        );
    }

    // KILL (18) -> TASK_KILLED from the executor, acknowledged (19).
    assert_like_recorded("18-kill", &replay(&m, "18-kill", Some(sid), &[]).await);
    let got = s.next_of_type("UPDATE", T).await;
    assert_eq!(normalized_status(&got), normalized_status(&rec_events[16]));
    let uuid = got["update"]["status"]["uuid"].as_str().expect("uuid");
    let recorded_uuid = rec_events[16]["update"]["status"]["uuid"]
        .as_str()
        .expect("uuid");
    assert_like_recorded(
        "19-ack-kill-task_killed",
        &replay(
            &m,
            "19-ack-kill-task_killed",
            Some(sid),
            &[(recorded_uuid, uuid)],
        )
        .await,
    );
    assert!(
        !m.knows_task("task-sleep-1"),
        "acknowledged terminal task is forgotten"
    );

    // Error answers (20-28) against the live framework, and SUPPRESS/REVIVE (29, 30).
    for name in [
        "20-wrong-stream-id",
        "21-missing-stream-id",
        "22-malformed-json",
        "23-invalid-call-type",
        "24-missing-framework-id",
        "25-unknown-framework",
        "26-unsupported-content-type",
        "27-unacceptable-accept",
        "28-get-method",
        "29-suppress",
        "30-revive",
    ] {
        let live = if name.starts_with("20") {
            None
        } else {
            Some(sid)
        };
        assert_like_recorded(name, &replay(&m, name, live, &[]).await);
    }

    // TEARDOWN (34): 202 and the stream ends with the terminating chunk.
    assert_like_recorded(
        "34-teardown",
        &replay(&m, "34-teardown", Some(sid), &[]).await,
    );
    while s.next_record(T).await.is_some() {}
    assert_eq!(s.end, Some(StreamEnd::Clean));
    let after = replay(&m, "30-revive", Some(sid), &[]).await;
    assert_eq!(
        (after.status, after.text().as_str()),
        (400, "Framework cannot be found")
    );

    // SUBSCRIBE refusals (36, 37) and an unparsable protobuf body (45).
    for name in [
        "36-subscribe-not-acceptable",
        "37-subscribe-missing-user",
        "45-malformed-protobuf",
    ] {
        assert_like_recorded(name, &replay(&m, name, None, &[]).await);
    }
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_stream_and_calls_match_the_recorded_master() {
    if !fixtures::available() {
        return;
    }
    let agent = AgentSpec {
        port: 5051,
        ..AgentSpec::new(2.0, 2048.0).with_id(&format!("{RUN1}-S0"))
    };
    let m = FakeMaster::start(FakeMasterOptions {
        master_id: RUN1.to_string(),
        agents: vec![agent],
        ..Default::default()
    })
    .await;
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Accept", "application/x-protobuf"),
    ];
    let mut s = Stream::open(
        &scheduler_url(&m),
        &headers,
        fixtures::stream_request_body("42-subscribe-protobuf"),
    )
    .await;
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("application/x-protobuf"));
    let sid = s.header("mesos-stream-id").expect("stream id").to_string();
    let recorded = fixtures::records("42-subscribe-protobuf");

    // Patch the ids that differ between runs, then compare the encoded bytes.
    let mut first =
        Event::decode(s.next_record(T).await.expect("SUBSCRIBED")).expect("protobuf event");
    let fid = first
        .subscribed
        .as_ref()
        .expect("subscribed")
        .framework_id
        .value
        .clone();
    let want = Event::decode(recorded[0].as_slice()).expect("recorded");
    let sub = first.subscribed.as_mut().expect("subscribed");
    sub.framework_id = want.subscribed.as_ref().expect("s").framework_id.clone();
    sub.master_info = want.subscribed.as_ref().expect("s").master_info.clone();
    assert_eq!(first.encode_to_vec(), recorded[0]);
    assert_eq!(
        s.next_record(T).await.expect("HEARTBEAT").to_vec(),
        recorded[1]
    );
    let mut offers = Event::decode(s.next_record(T).await.expect("OFFERS")).expect("offers");
    let want = Event::decode(recorded[2].as_slice()).expect("recorded offers");
    let o = &mut offers.offers.as_mut().expect("offers").offers[0];
    let oid = o.id.value.clone();
    let w = &want.offers.as_ref().expect("o").offers[0];
    o.id = w.id.clone();
    o.framework_id = w.framework_id.clone();
    assert_eq!(offers.encode_to_vec(), recorded[2]);

    // DECLINE (43) and RECONCILE (44) as protobuf, with the live ids.
    for name in [
        "43-decline-protobuf",
        "44-reconcile-protobuf",
        "46-teardown-protobuf",
    ] {
        let ex = exchange(name);
        let mut c = Call::decode(ex.request_body.as_slice()).expect("recorded call");
        c.framework_id.as_mut().expect("fid").value = fid.clone();
        if let Some(d) = c.decline.as_mut() {
            d.offer_ids[0].value = oid.clone();
        }
        let got = send(
            "POST",
            &scheduler_url(&m),
            &[headers[0], headers[1], ("Mesos-Stream-Id", &sid)],
            c.encode_to_vec(),
        )
        .await;
        assert_like_recorded(name, &got);
    }
    while s.next_record(T).await.is_some() {}
    assert_eq!(s.end, Some(StreamEnd::Clean));
    let decline = m.calls_of(call::Type::Decline);
    assert_eq!(
        decline[0]
            .decline
            .as_ref()
            .and_then(|d| d.filters.as_ref())
            .and_then(|f| f.refuse_seconds),
        Some(5.0)
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_answers_match_the_recorded_master() {
    if !fixtures::available() {
        return;
    }
    let m = FakeMaster::start(FakeMasterOptions {
        credentials: Some(vec![(
            "fixture-principal".to_string(),
            "fixture-secret".to_string(),
        )]),
        agents: vec![AgentSpec::new(2.0, 2048.0)],
        ..Default::default()
    })
    .await;
    for name in [
        "49-auth-subscribe-no-credentials",
        "50-auth-subscribe-wrong-secret",
        "51-auth-subscribe-principal-mismatch",
    ] {
        assert_like_recorded(name, &replay(&m, name, None, &[]).await);
    }
    let auth = (
        "Authorization",
        "Basic Zml4dHVyZS1wcmluY2lwYWw6Zml4dHVyZS1zZWNyZXQ=",
    );
    let mut s = Stream::open(
        &scheduler_url(&m),
        &[JSON_HEADERS[0], JSON_HEADERS[1], auth],
        fixtures::stream_request_body("52-auth-subscribe-ok"),
    )
    .await;
    assert_eq!(s.status, 200);
    let sid = s.header("mesos-stream-id").expect("stream id").to_string();
    let subscribed = s.next_json(T).await.expect("SUBSCRIBED");
    let fid = subscribed["subscribed"]["framework_id"]["value"]
        .as_str()
        .expect("fid")
        .to_string();
    let recorded_fid = "8dbeebe9-5c2e-4768-9a31-e8e72b42219c-0000";
    let no_creds = replay(
        &m,
        "53-auth-call-no-credentials",
        Some(&sid),
        &[(recorded_fid, &fid)],
    )
    .await;
    assert_like_recorded("53-auth-call-no-credentials", &no_creds);
    let ok = replay(
        &m,
        "54-auth-teardown-ok",
        Some(&sid),
        &[(recorded_fid, &fid)],
    )
    .await;
    assert_like_recorded("54-auth-teardown-ok", &ok);
    // The principal was filled in from the authenticated one.
    let sub = m
        .calls_of(call::Type::Subscribe)
        .pop()
        .expect("subscribe recorded");
    assert_eq!(
        sub.subscribe
            .expect("s")
            .framework_info
            .principal
            .as_deref(),
        Some("fixture-principal")
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_redirects_match_the_recorded_masters() {
    if !fixtures::available() {
        return;
    }
    let leader = FakeMaster::start(FakeMasterOptions::default()).await;
    let standby = FakeMaster::start(FakeMasterOptions {
        leadership: Leadership::Standby(leader.host_port()),
        ..Default::default()
    })
    .await;
    let as_recorded = |loc: &str| loc.replace(&leader.host_port(), "127.0.0.1:5050");
    for (m, name) in [
        (&leader, "58-master-redirect-leader"),
        (&standby, "59-master-redirect-nonleader"),
        (&standby, "60-subscribe-nonleader"),
        (&standby, "61-master-state-nonleader"),
    ] {
        let got = replay(m, name, None, &[]).await;
        let ex = exchange(name);
        assert_eq!(got.status, 307, "{name}");
        assert_eq!(
            as_recorded(got.header("location").expect("Location")),
            ex.response_header("Location").expect("recorded Location"),
            "{name}"
        );
        assert_eq!(got.header("content-length"), Some("0"), "{name}");
        assert!(got.body.is_empty());
    }
    standby.set_leadership(Leadership::NoLeader);
    let got = replay(&standby, "60-subscribe-nonleader", None, &[]).await;
    assert_eq!(got.status, 503);
    leader.shutdown().await;
    standby.shutdown().await;
}

/// The HA run (62-76): a PARTITION_AWARE framework without MULTI_ROLE, reconciliation answers,
/// and a second SUBSCRIBE while the first stream is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_aware_reconciliation_and_failover_match_the_recorded_master() {
    if !fixtures::available() {
        return;
    }
    let agent = AgentSpec {
        port: 5051,
        ..AgentSpec::new(2.0, 2048.0).with_id(&format!("{HA}-S0"))
    };
    let m = FakeMaster::start(FakeMasterOptions {
        master_id: HA.to_string(),
        agents: vec![agent],
        ..Default::default()
    })
    .await;
    m.set_task_script("task-sleep-ha", TaskScript::run_until_released());
    let recorded = fixtures::records("62-subscribe-leader");
    let mut s = Stream::open(
        &scheduler_url(&m),
        JSON_HEADERS,
        fixtures::stream_request_body("62-subscribe-leader"),
    )
    .await;
    let sid = s.header("mesos-stream-id").expect("stream id").to_string();
    for (i, want) in recorded.iter().take(3).enumerate() {
        let got = s.next_record(T).await.expect("record");
        let got = as_recorded_port(&m, std::str::from_utf8(&got).expect("utf-8"), 5050);
        // No MULTI_ROLE: offers carry "role":"*" and no allocation_info.
        assert_eq!(got, std::str::from_utf8(want).expect("utf-8"), "record {i}");
    }
    assert_like_recorded(
        "63-accept-launch-sleep-ha",
        &replay(&m, "63-accept-launch-sleep-ha", Some(&sid), &[]).await,
    );
    let rec = recorded_events("62-subscribe-leader");
    for (ack, idx) in [
        ("64-ack-sleep-ha-task_starting", 3),
        ("65-ack-sleep-ha-task_running", 4),
    ] {
        let got = s.next_of_type("UPDATE", T).await;
        assert_eq!(normalized_status(&got), normalized_status(&rec[idx]));
        let uuid = got["update"]["status"]["uuid"].as_str().expect("uuid");
        let recorded_uuid = rec[idx]["update"]["status"]["uuid"].as_str().expect("uuid");
        assert_like_recorded(
            ack,
            &replay(&m, ack, Some(&sid), &[(recorded_uuid, uuid)]).await,
        );
    }
    let rec70 = recorded_events("70-resubscribe-new-leader");
    for (name, idx) in [
        ("71-reconcile-running-task", 4),
        ("72-reconcile-unknown-task", 5),
        ("73-reconcile-unknown-task-known-agent", 6),
    ] {
        assert_like_recorded(name, &replay(&m, name, Some(&sid), &[]).await);
        let got = s.next_of_type("UPDATE", T).await;
        assert_eq!(
            normalized_status(&got),
            normalized_status(&rec70[idx]),
            "{name}"
        );
        assert!(
            got["update"]["status"].get("uuid").is_none(),
            "{name}: master update has no uuid"
        );
    }
    // A second SUBSCRIBE with the same id (74): the old stream gets ERROR and a clean end (75).
    let mut s2 = Stream::open(
        &scheduler_url(&m),
        JSON_HEADERS,
        fixtures::stream_request_body("74-resubscribe-while-open"),
    )
    .await;
    assert_eq!(s2.status, 200);
    let sid2 = s2
        .header("mesos-stream-id")
        .expect("new stream id")
        .to_string();
    assert_ne!(sid, sid2);
    let last = loop {
        let r = s.next_record(T).await.expect("ERROR before the end");
        if !r.starts_with(b"{\"type\":\"HEARTBEAT\"") && !r.starts_with(b"{\"type\":\"OFFERS\"") {
            break r;
        }
    };
    assert_eq!(
        &last[..],
        br#"{"type":"ERROR","error":{"message":"Framework failed over"}}"#
    );
    assert_eq!(s.next_record(T).await, None);
    assert_eq!(s.end, Some(StreamEnd::Clean));
    let sub = s2.next_json(T).await.expect("SUBSCRIBED");
    assert_eq!(
        sub["subscribed"]["framework_id"]["value"],
        format!("{HA}-0000")
    );
    // The old stream id is now refused (as in 40), the new one works; TEARDOWN ends it (76).
    let old = replay(&m, "76-teardown-ha-fw", Some(&sid), &[]).await;
    assert_eq!(old.status, 400);
    assert!(old.text().starts_with(&format!(
        "The stream ID '{sid}' included in this request didn't match"
    )));
    assert_like_recorded(
        "76-teardown-ha-fw",
        &replay(&m, "76-teardown-ha-fw", Some(&sid2), &[]).await,
    );
    while s2.next_record(T).await.is_some() {}
    assert_eq!(s2.end, Some(StreamEnd::Clean));
    let resub = Stream::open(
        &scheduler_url(&m),
        JSON_HEADERS,
        fixtures::stream_request_body("74-resubscribe-while-open"),
    )
    .await;
    let mut resub = resub;
    let e = resub.next_json(T).await.expect("ERROR");
    assert_eq!(
        e,
        serde_json::json!({"type":"ERROR","error":{"message":"Framework has been removed"}})
    );
    m.shutdown().await;
}

// ----- behaviour beyond the recordings (reference §2.8-§2.12), on a paused clock ------------

const LONG: Duration = Duration::from_secs(120);

async fn subscribe(m: &FakeMaster, framework_info: Value) -> (Stream, String, String) {
    let body =
        serde_json::json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info}});
    let mut s = Stream::open(
        &scheduler_url(m),
        JSON_HEADERS,
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(s.status, 200);
    let sid = s.header("mesos-stream-id").expect("stream id").to_string();
    let e = s.next_json(LONG).await.expect("SUBSCRIBED");
    assert_eq!(e["type"], "SUBSCRIBED", "{e}");
    let fid = e["subscribed"]["framework_id"]["value"]
        .as_str()
        .expect("fid")
        .to_string();
    (s, sid, fid)
}

async fn post(m: &FakeMaster, sid: &str, body: Value) -> support::raw_client::Answer {
    let headers = [
        ("Content-Type", "application/json"),
        ("Mesos-Stream-Id", sid),
    ];
    send(
        "POST",
        &scheduler_url(m),
        &headers,
        body.to_string().into_bytes(),
    )
    .await
}

fn framework(extra: Value) -> Value {
    let mut f =
        serde_json::json!({"user": "root", "name": "fake-master-test", "failover_timeout": 60.0});
    f.as_object_mut()
        .expect("obj")
        .extend(extra.as_object().expect("obj").clone());
    f
}

fn launch(fid: &str, offer: &Value, task_id: &str, cpus: f64) -> Value {
    let agent = offer["agent_id"]["value"].as_str().expect("agent id");
    serde_json::json!({
        "framework_id": {"value": fid}, "type": "ACCEPT",
        "accept": {"offer_ids": [offer["id"]], "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{
            "name": task_id, "task_id": {"value": task_id}, "agent_id": {"value": agent},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}}],
            "command": {"value": "true"}}]}}],
            "filters": {"refuse_seconds": 0.0}}
    })
}

fn ack(fid: &str, update: &Value) -> Value {
    let st = &update["update"]["status"];
    serde_json::json!({"framework_id": {"value": fid}, "type": "ACKNOWLEDGE",
        "acknowledge": {"agent_id": st["agent_id"], "task_id": st["task_id"], "uuid": st["uuid"]}})
}

#[tokio::test(start_paused = true)]
async fn agent_updates_are_resent_until_acknowledged_and_queue_per_task() {
    let m = FakeMaster::start(FakeMasterOptions {
        agents: vec![AgentSpec::new(4.0, 4096.0)],
        ..Default::default()
    })
    .await;
    let (mut s, sid, fid) = subscribe(&m, framework(serde_json::json!({}))).await;
    let offers = s.next_of_type("OFFERS", LONG).await;
    let offer = &offers["offers"]["offers"][0];
    assert_eq!(
        post(&m, &sid, launch(&fid, offer, "t1", 1.0)).await.status,
        202
    );
    let starting = s.next_of_type("UPDATE", LONG).await;
    assert_eq!(starting["update"]["status"]["state"], "TASK_STARTING");
    assert_eq!(
        m.unacknowledged_updates("t1"),
        3,
        "RUNNING and FINISHED wait behind STARTING"
    );
    // Not acknowledged: after the agent's retry interval the same update (same uuid) comes again.
    let before = tokio::time::Instant::now();
    let again = s.next_of_type("UPDATE", LONG).await;
    assert!(
        before.elapsed() >= Duration::from_secs(10),
        "resent after the retry interval, not before"
    );
    assert_eq!(again["update"]["status"]["state"], "TASK_STARTING");
    assert_eq!(
        again["update"]["status"]["uuid"],
        starting["update"]["status"]["uuid"]
    );
    assert_eq!(m.stats().updates_resent, 1);
    // A wrong uuid acknowledges nothing.
    let mut wrong = ack(&fid, &starting);
    wrong["acknowledge"]["uuid"] = Value::from("AAAAAAAAAAAAAAAAAAAAAA==");
    assert_eq!(post(&m, &sid, wrong).await.status, 202);
    assert_eq!(m.unacknowledged_updates("t1"), 3);
    // A uuid that is not 16 bytes is a 400.
    let mut short = ack(&fid, &starting);
    short["acknowledge"]["uuid"] = Value::from("AAAA");
    let bad = post(&m, &sid, short).await;
    assert_eq!(
        (bad.status, bad.text().as_str()),
        (400, "Failed to validate scheduler::Call: Not a valid UUID")
    );
    let mut seen = vec![];
    let mut update = starting;
    loop {
        assert_eq!(post(&m, &sid, ack(&fid, &update)).await.status, 202);
        if update["update"]["status"]["state"] == "TASK_FINISHED" {
            break;
        }
        update = s.next_of_type("UPDATE", LONG).await;
        assert_ne!(update["update"]["status"]["uuid"], Value::Null);
        seen.push(
            update["update"]["status"]["state"]
                .as_str()
                .expect("state")
                .to_string(),
        );
    }
    assert_eq!(seen, ["TASK_RUNNING", "TASK_FINISHED"]);
    assert!(!m.knows_task("t1"));
    m.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn lost_stream_disconnects_and_failover_timeout_removes_the_framework() {
    let m = FakeMaster::start(FakeMasterOptions {
        agents: vec![AgentSpec::new(4.0, 4096.0)],
        ..Default::default()
    })
    .await;
    let (mut s, sid, fid) =
        subscribe(&m, framework(serde_json::json!({"failover_timeout": 30.0}))).await;
    s.next_of_type("OFFERS", LONG).await;
    assert_eq!(m.outstanding_offers().len(), 1);
    m.drop_streams();
    while s.next_record(LONG).await.is_some() {}
    assert_eq!(
        s.end,
        Some(StreamEnd::Aborted),
        "a dying master sends no terminating chunk"
    );
    m.wait_for("framework disconnected", LONG, |m| !m.is_connected(&fid))
        .await;
    assert!(
        m.outstanding_offers().is_empty(),
        "offers are dropped with the stream"
    );
    let revive = serde_json::json!({"framework_id": {"value": fid}, "type": "REVIVE"});
    let r = post(&m, &sid, revive.clone()).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, "Framework is not subscribed")
    );

    // Re-subscribing with the id within the failover timeout keeps the framework.
    let (mut s2, sid2, fid2) = subscribe(
        &m,
        framework(serde_json::json!({"failover_timeout": 30.0, "id": {"value": fid}})),
    )
    .await;
    assert_eq!(fid2, fid);
    assert_ne!(sid2, sid);
    s2.next_of_type("OFFERS", LONG).await;
    assert_eq!(post(&m, &sid2, revive.clone()).await.status, 202);
    let stale = post(&m, &sid, revive).await;
    assert_eq!(stale.status, 400, "old stream id: {}", stale.text());

    // This time the client goes away and does not come back: removed after 30 s.
    drop(s2);
    m.wait_for("framework disconnected again", LONG, |m| {
        !m.is_connected(&fid)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(31)).await;
    m.wait_for("framework removed", LONG, |m| m.framework_ids().is_empty())
        .await;
    let body = serde_json::json!({"type": "SUBSCRIBE", "framework_id": {"value": fid},
        "subscribe": {"framework_info": framework(serde_json::json!({"id": {"value": fid}}))}});
    let mut s3 = Stream::open(
        &scheduler_url(&m),
        JSON_HEADERS,
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(s3.status, 200, "SUBSCRIBE errors arrive inside a 200");
    let e = s3.next_json(LONG).await.expect("ERROR");
    assert_eq!(e["error"]["message"], "Framework has been removed");
    assert_eq!(s3.next_record(LONG).await, None);
    m.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn heartbeats_follow_the_interval_and_can_be_stopped() {
    let m = FakeMaster::start(FakeMasterOptions {
        heartbeat_interval: Duration::from_secs(15),
        ..Default::default()
    })
    .await;
    let (mut s, _sid, _fid) = subscribe(&m, framework(serde_json::json!({}))).await;
    let first = s.next_json(LONG).await.expect("HEARTBEAT");
    assert_eq!(
        first,
        serde_json::json!({"type": "HEARTBEAT"}),
        "immediately after SUBSCRIBED"
    );
    let t0 = tokio::time::Instant::now();
    assert_eq!(
        s.next_json(LONG).await.expect("periodic")["type"],
        "HEARTBEAT"
    );
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(15) && waited < Duration::from_secs(16),
        "{waited:?}"
    );
    m.stop_heartbeats();
    let silent = tokio::time::timeout(Duration::from_secs(100), s.next_record(LONG)).await;
    assert!(silent.is_err(), "no event while heartbeats are stopped");
    m.resume_heartbeats();
    assert_eq!(
        s.next_json(LONG).await.expect("resumed")["type"],
        "HEARTBEAT"
    );
    m.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn declines_filter_offers_until_refuse_seconds_and_revive_clears_filters() {
    let m = FakeMaster::start(FakeMasterOptions {
        agents: vec![AgentSpec::new(4.0, 4096.0)],
        ..Default::default()
    })
    .await;
    let (mut s, sid, fid) = subscribe(&m, framework(serde_json::json!({}))).await;
    let offers = s.next_of_type("OFFERS", LONG).await;
    let decline = serde_json::json!({"framework_id": {"value": fid}, "type": "DECLINE",
        "decline": {"offer_ids": [offers["offers"]["offers"][0]["id"]], "filters": {"refuse_seconds": 30.0}}});
    assert_eq!(post(&m, &sid, decline).await.status, 202);
    let t0 = tokio::time::Instant::now();
    let again = s.next_of_type("OFFERS", LONG).await;
    assert!(
        t0.elapsed() >= Duration::from_secs(30),
        "re-offered after {:?}",
        t0.elapsed()
    );
    // SUPPRESS: no offers even after filters; REVIVE: offers at once.
    let id = again["offers"]["offers"][0]["id"].clone();
    let decline = serde_json::json!({"framework_id": {"value": fid}, "type": "DECLINE",
        "decline": {"offer_ids": [id], "filters": {"refuse_seconds": 1.0}}});
    assert_eq!(post(&m, &sid, decline).await.status, 202);
    assert_eq!(
        post(
            &m,
            &sid,
            serde_json::json!({"framework_id": {"value": fid}, "type": "SUPPRESS"})
        )
        .await
        .status,
        202
    );
    let quiet = tokio::time::timeout(Duration::from_secs(60), s.next_of_type("OFFERS", LONG)).await;
    assert!(quiet.is_err(), "suppressed framework got offers");
    assert_eq!(
        post(
            &m,
            &sid,
            serde_json::json!({"framework_id": {"value": fid}, "type": "REVIVE"})
        )
        .await
        .status,
        202
    );
    let t1 = tokio::time::Instant::now();
    s.next_of_type("OFFERS", LONG).await;
    assert!(t1.elapsed() < Duration::from_secs(1));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_offers_and_reserved_resources_follow_the_master_rules() {
    let agent = AgentSpec::new(2.0, 1024.0)
        .with_resource(support::fake_master::Res::scalar("cpus", 3.0).reserved("eng"));
    let m = FakeMaster::start(FakeMasterOptions {
        agents: vec![agent],
        ..Default::default()
    })
    .await;
    let (mut s, sid, fid) = subscribe(&m, framework(serde_json::json!({
        "roles": ["*", "eng"], "capabilities": [{"type": "MULTI_ROLE"}, {"type": "PARTITION_AWARE"}]}))).await;
    let offers = s.next_of_type("OFFERS", T).await;
    let list = offers["offers"]["offers"].as_array().expect("offers");
    assert_eq!(list.len(), 2, "one offer per role: {offers}");
    let eng = list
        .iter()
        .find(|o| o["allocation_info"]["role"] == "eng")
        .expect("eng offer");
    let star = list
        .iter()
        .find(|o| o["allocation_info"]["role"] == "*")
        .expect("* offer");
    assert_eq!(
        eng["resources"][0],
        serde_json::json!({"name": "cpus", "type": "SCALAR", "scalar": {"value": 3.0}, "role": "eng", "allocation_info": {"role": "eng"}})
    );

    // An unknown offer: TASK_DROPPED (PARTITION_AWARE), REASON_INVALID_OFFERS, no uuid.
    let mut bogus = star.clone();
    bogus["id"]["value"] = Value::from("no-such-offer");
    assert_eq!(
        post(&m, &sid, launch(&fid, &bogus, "t-bad-offer", 0.5))
            .await
            .status,
        202
    );
    let u = s.next_of_type("UPDATE", T).await;
    assert_eq!(
        normalized_status(&u),
        serde_json::json!({"task_id": {"value": "t-bad-offer"}, "state": "TASK_DROPPED",
        "message": "Task launched with invalid offers: Offer no-such-offer is no longer valid",
        "source": "SOURCE_MASTER", "reason": "REASON_INVALID_OFFERS"})
    );

    // Reserved cpus are only usable through the "eng" offer: 3 cpus do not fit in the "*" one.
    assert_eq!(
        post(&m, &sid, launch(&fid, star, "t-too-big", 3.0))
            .await
            .status,
        202
    );
    let u = s.next_of_type("UPDATE", T).await;
    assert_eq!(u["update"]["status"]["state"], "TASK_ERROR");
    assert_eq!(u["update"]["status"]["reason"], "REASON_TASK_INVALID");
    assert!(u["update"]["status"]["message"]
        .as_str()
        .expect("msg")
        .starts_with("Total resources cpus(allocated: *):3 required by task"));
    let mut reserved = launch(&fid, eng, "t-eng", 3.0);
    reserved["accept"]["operations"][0]["launch"]["task_infos"][0]["resources"][0]["role"] =
        Value::from("eng");
    assert_eq!(post(&m, &sid, reserved).await.status, 202);
    let u = s.next_of_type("UPDATE", T).await;
    assert_eq!(u["update"]["status"]["task_id"]["value"], "t-eng");
    assert_eq!(u["update"]["status"]["state"], "TASK_STARTING");
    // The same offer again is stale now.
    assert_eq!(
        post(&m, &sid, launch(&fid, eng, "t-stale", 0.1))
            .await
            .status,
        202
    );
    let u = loop {
        let u = s.next_of_type("UPDATE", T).await;
        if u["update"]["status"]["task_id"]["value"] == "t-stale" {
            break u;
        }
    };
    assert_eq!(u["update"]["status"]["state"], "TASK_DROPPED");
    // A call of type UNKNOWN is 501.
    let unknown = post(
        &m,
        &sid,
        serde_json::json!({"framework_id": {"value": fid}, "type": "UNKNOWN"}),
    )
    .await;
    assert_eq!(unknown.status, 501);
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_503s_and_raw_bytes_reach_the_client() {
    let m = FakeMaster::start(FakeMasterOptions::default()).await;
    m.fail_next_calls(2, 503, "Master has not finished recovery");
    let body = serde_json::json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework(serde_json::json!({}))}});
    for _ in 0..2 {
        let r = send(
            "POST",
            &scheduler_url(&m),
            JSON_HEADERS,
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (503, "Master has not finished recovery")
        );
    }
    let resp = reqwest::Client::new()
        .post(scheduler_url(&m))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("subscribe");
    assert_eq!(resp.status(), 200, "the third SUBSCRIBE goes through");
    m.wait_for("connected", T, |m| m.framework_ids().len() == 1)
        .await;
    let hostile = b"99999999999999999999999\nxyz";
    m.inject_raw(hostile);
    let mut raw = Vec::new();
    let mut stream = resp.bytes_stream();
    while !raw.ends_with(hostile) {
        let chunk = tokio::time::timeout(T, futures::StreamExt::next(&mut stream))
            .await
            .expect("bytes within 10 s")
            .expect("stream open")
            .expect("chunk");
        raw.extend_from_slice(&chunk);
    }
    assert!(raw.starts_with(b"451\n{\"type\":\"SUBSCRIBED\""));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_mid_record_truncates_the_stream() {
    let m = FakeMaster::start(FakeMasterOptions::default()).await;
    let body = serde_json::json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework(serde_json::json!({}))}});
    let resp = reqwest::Client::new()
        .post(scheduler_url(&m))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("subscribe");
    m.wait_for("connected", T, |m| m.framework_ids().len() == 1)
        .await;
    m.close_mid_record();
    let mut raw = Vec::new();
    let mut stream = resp.bytes_stream();
    let mut aborted = false;
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        match chunk {
            Ok(c) => raw.extend_from_slice(&c),
            Err(_) => {
                aborted = true;
                break;
            }
        }
    }
    assert!(aborted, "connection aborted, no terminating chunk");
    assert!(
        raw.ends_with(b"120\n{\"type\":\"HEART"),
        "partial record at the end: {:?}",
        String::from_utf8_lossy(&raw)
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_state_and_agent_files_serve_what_clients_look_up() {
    if !fixtures::available() {
        return;
    }
    let m = FakeMaster::start(FakeMasterOptions {
        agents: vec![AgentSpec::new(2.0, 2048.0)],
        ..Default::default()
    })
    .await;
    m.set_task_output("t-log", "hello\n", "oops\n");
    let (mut s, sid, fid) = subscribe(&m, framework(serde_json::json!({}))).await;
    let offers = s.next_of_type("OFFERS", T).await;
    m.set_task_script("t-log", TaskScript::run_until_released());
    assert_eq!(
        post(
            &m,
            &sid,
            launch(&fid, &offers["offers"]["offers"][0], "t-log", 0.5)
        )
        .await
        .status,
        202
    );
    s.next_of_type("UPDATE", T).await;

    // /master/state: the recorded shape (top-level, framework and agent keys).
    let state = send("GET", &format!("{}/master/state", m.url()), &[], vec![]).await;
    assert_eq!(state.status, 200);
    assert_eq!(state.header("content-type"), Some("application/json"));
    let ours: Value = serde_json::from_slice(&state.body).expect("state JSON");
    let real: Value = serde_json::from_str(&exchange("31-master-state-during").response_text())
        .expect("recorded state");
    for key in [
        "id",
        "pid",
        "hostname",
        "leader",
        "leader_info",
        "frameworks",
        "slaves",
        "version",
    ] {
        assert!(
            ours.get(key).is_some() && real.get(key).is_some(),
            "state key {key}"
        );
    }
    for key in [
        "id",
        "name",
        "active",
        "connected",
        "tasks",
        "completed_tasks",
        "offers",
        "roles",
        "user",
    ] {
        assert!(
            ours["frameworks"][0].get(key).is_some() && real["frameworks"][0].get(key).is_some(),
            "framework key {key}"
        );
    }
    for key in [
        "id",
        "hostname",
        "port",
        "pid",
        "resources",
        "used_resources",
    ] {
        assert!(
            ours["slaves"][0].get(key).is_some() && real["slaves"][0].get(key).is_some(),
            "agent key {key}"
        );
    }
    assert_eq!(ours["frameworks"][0]["tasks"][0]["id"], "t-log");
    // The master knows the latest state even while earlier updates await acknowledgement.
    assert_eq!(ours["frameworks"][0]["tasks"][0]["state"], "TASK_RUNNING");
    let pid = ours["slaves"][0]["pid"].as_str().expect("agent pid");
    assert_eq!(pid, format!("slave(1)@127.0.0.1:{}", m.addr().port()));

    // The agent: sandbox directory from /slave(1)/state, then /files/read like a real agent.
    let agent = send("GET", &format!("{}/slave(1)/state", m.url()), &[], vec![]).await;
    let agent: Value = serde_json::from_slice(&agent.body).expect("agent state");
    let dir = agent["frameworks"][0]["executors"][0]["directory"]
        .as_str()
        .expect("directory")
        .to_string();
    assert_eq!(Some(dir.clone()), m.sandbox_dir("t-log"));
    let read = |q: String| {
        let url = format!("{}/files/read?{q}", m.url());
        async move {
            let a = send("GET", &url, &[], vec![]).await;
            (
                a.status,
                serde_json::from_slice::<Value>(&a.body).unwrap_or(Value::Null),
            )
        }
    };
    let enc = |p: &str| url::form_urlencoded::byte_serialize(p.as_bytes()).collect::<String>();
    assert_eq!(
        read(format!("path={}&offset=0", enc(&format!("{dir}/stdout")))).await,
        (200, serde_json::json!({"data": "hello\n", "offset": 0}))
    );
    assert_eq!(
        read(format!("path={}&offset=-1", enc(&format!("{dir}/stderr")))).await,
        (200, serde_json::json!({"data": "", "offset": 5}))
    );
    assert_eq!(
        read(format!(
            "path={}&offset=2&length=2",
            enc(&format!("{dir}/stdout"))
        ))
        .await,
        (200, serde_json::json!({"data": "ll", "offset": 2}))
    );
    assert_eq!(
        read(format!("path={}&offset=0", enc("/nope/stdout")))
            .await
            .0,
        404
    );
    assert!(m.release_task("t-log"));
    m.shutdown().await;
}

#[test]
fn protobuf_calls_missing_required_fields_are_unparsable() {
    let schema = Schema::get();
    for name in [
        "06-accept-launch-echo",
        "07-ack-echo-task_starting",
        "43-decline-protobuf",
    ] {
        let ex = exchange(name);
        let bytes = if ex.request_header("Content-Type") == Some("application/x-protobuf") {
            ex.request_body.clone()
        } else {
            schema
                .parse_json(CALL, &ex.request_text())
                .expect("recorded JSON parses")
        };
        schema
            .check_protobuf(CALL, &bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // An ACKNOWLEDGE without its required uuid, and a SUBSCRIBE without a user.
    let mut ack = Call::decode(
        schema
            .parse_json(CALL, &exchange("07-ack-echo-task_starting").request_text())
            .expect("json")
            .as_slice(),
    )
    .expect("call");
    let mut raw = ack.clone();
    // prost always writes required fields, so build the ACKNOWLEDGE without `uuid` by hand.
    let without_uuid = {
        let a = raw.acknowledge.take().expect("ack");
        let mut inner = Vec::new();
        prost::encoding::message::encode(1, &a.agent_id, &mut inner);
        prost::encoding::message::encode(2, &a.task_id, &mut inner);
        let mut call = raw.encode_to_vec();
        prost::encoding::encode_key(8, prost::encoding::WireType::LengthDelimited, &mut call);
        prost::encoding::encode_varint(inner.len() as u64, &mut call);
        call.extend_from_slice(&inner);
        call
    };
    assert_eq!(
        schema.check_protobuf(CALL, &without_uuid),
        Err("Missing required fields: acknowledge.uuid".to_string())
    );
    ack.acknowledge.as_mut().expect("ack").uuid = vec![0; 16];
    assert_eq!(schema.check_protobuf(CALL, &ack.encode_to_vec()), Ok(()));
    assert!(schema.check_protobuf(CALL, b"\xff\xff\xffgarbage").is_err());
}

/// Scale: thousands of tasks through one framework, every update acknowledged (protobuf, as the
/// daemon speaks). Checks bookkeeping at volume (no lost or duplicated updates, resources
/// returned, tasks forgotten after their terminal ACK); prints the rate for information only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_tasks_run_to_completion_with_every_update_acknowledged() {
    use airflow_mesos::mesos::proto::v1 as pb;
    const TASKS: usize = 3000;
    const PER_ACCEPT: usize = 300;
    let m = FakeMaster::start(FakeMasterOptions {
        agents: vec![AgentSpec::new(64.0, 65536.0), AgentSpec::new(64.0, 65536.0)],
        record_calls: false,
        ..Default::default()
    })
    .await;
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Accept", "application/x-protobuf"),
    ];
    let sub = Call {
        r#type: Some(call::Type::Subscribe as i32),
        subscribe: Some(call::Subscribe {
            framework_info: pb::FrameworkInfo {
                user: "root".into(),
                name: "scale".into(),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut s = Stream::open(&scheduler_url(&m), &headers, sub.encode_to_vec()).await;
    let sid = s.header("mesos-stream-id").expect("stream id").to_string();
    let call_headers = [headers[0], headers[1], ("Mesos-Stream-Id", sid.as_str())];
    let http = reqwest::Client::new();
    let post = |c: Call| {
        let req = http
            .post(scheduler_url(&m))
            .header(call_headers[0].0, call_headers[0].1)
            .header(call_headers[2].0, call_headers[2].1)
            .body(c.encode_to_vec());
        async move { req.send().await.expect("call").status().as_u16() }
    };
    let started = std::time::Instant::now();
    let mut fid = None;
    let (mut launched, mut finished, mut acks) = (0usize, 0usize, Vec::new());
    while finished < TASKS {
        let record = s.next_record(T).await.expect("stream open");
        let e = Event::decode(record).expect("event");
        match e.r#type {
            Some(t)
                if t == airflow_mesos::mesos::proto::scheduler::event::Type::Subscribed as i32 =>
            {
                fid = Some(e.subscribed.expect("subscribed").framework_id);
            }
            Some(t) if t == airflow_mesos::mesos::proto::scheduler::event::Type::Offers as i32 => {
                for offer in e.offers.expect("offers").offers {
                    let n = PER_ACCEPT.min(TASKS - launched);
                    let tasks: Vec<pb::TaskInfo> = (launched..launched + n)
                        .map(|i| pb::TaskInfo {
                            name: format!("t{i}"),
                            task_id: pb::TaskId {
                                value: format!("t{i}"),
                            },
                            agent_id: offer.agent_id.clone(),
                            resources: vec![pb::Resource {
                                name: "cpus".into(),
                                r#type: pb::value::Type::Scalar as i32,
                                scalar: Some(pb::value::Scalar { value: 0.1 }),
                                ..Default::default()
                            }],
                            command: Some(pb::CommandInfo {
                                value: Some("true".into()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect();
                    launched += n;
                    let accept = Call {
                        framework_id: fid.clone(),
                        r#type: Some(call::Type::Accept as i32),
                        accept: Some(call::Accept {
                            offer_ids: vec![offer.id.clone()],
                            operations: vec![pb::offer::Operation {
                                r#type: Some(pb::offer::operation::Type::Launch as i32),
                                launch: Some(pb::offer::operation::Launch { task_infos: tasks }),
                                ..Default::default()
                            }],
                            filters: Some(pb::Filters {
                                refuse_seconds: Some(0.0),
                            }),
                        }),
                        ..Default::default()
                    };
                    assert_eq!(post(accept).await, 202);
                }
            }
            Some(t) if t == airflow_mesos::mesos::proto::scheduler::event::Type::Update as i32 => {
                let st = e.update.expect("update").status;
                let uuid = st.uuid.clone().expect("agent update has a uuid");
                if st.state == pb::TaskState::TaskFinished as i32 {
                    finished += 1;
                }
                acks.push(post(Call {
                    framework_id: fid.clone(),
                    r#type: Some(call::Type::Acknowledge as i32),
                    acknowledge: Some(call::Acknowledge {
                        agent_id: st.agent_id.expect("agent"),
                        task_id: st.task_id,
                        uuid,
                    }),
                    ..Default::default()
                }));
                if acks.len() >= 64 {
                    for status in futures::future::join_all(acks.drain(..)).await {
                        assert_eq!(status, 202);
                    }
                }
            }
            _ => {}
        }
    }
    for status in futures::future::join_all(acks.drain(..)).await {
        assert_eq!(status, 202);
    }
    let elapsed = started.elapsed();
    let stats = m.stats();
    assert_eq!(stats.tasks_launched, TASKS as u64);
    assert_eq!(
        stats.acknowledged,
        3 * TASKS as u64,
        "STARTING, RUNNING, FINISHED each acknowledged once"
    );
    assert_eq!(stats.updates_resent, 0);
    assert!(!m.knows_task("t0") && !m.knows_task(&format!("t{}", TASKS - 1)));
    eprintln!(
        "fake master: {TASKS} tasks in {elapsed:?} ({:.0} tasks/s incl. this test's own client)",
        TASKS as f64 / elapsed.as_secs_f64()
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_agent_reports_its_tasks_and_comes_back_like_the_recorded_master() {
    if !fixtures::available() {
        return;
    }
    let agent = AgentSpec {
        port: 5051,
        ..AgentSpec::new(2.0, 2048.0).with_id(&format!("{HA}-S0"))
    };
    let m = FakeMaster::start(FakeMasterOptions {
        master_id: HA.to_string(),
        agents: vec![agent],
        ..Default::default()
    })
    .await;
    m.set_task_script("task-sleep-ha", TaskScript::run_until_released());
    let mut s = Stream::open(
        &scheduler_url(&m),
        JSON_HEADERS,
        fixtures::stream_request_body("62-subscribe-leader"),
    )
    .await;
    let sid = s.header("mesos-stream-id").expect("stream id").to_string();
    s.next_of_type("OFFERS", T).await;
    assert_like_recorded(
        "63-accept-launch-sleep-ha",
        &replay(&m, "63-accept-launch-sleep-ha", Some(&sid), &[]).await,
    );
    for _ in 0..2 {
        let u = s.next_of_type("UPDATE", T).await;
        let uuid = u["update"]["status"]["uuid"]
            .as_str()
            .expect("uuid")
            .to_string();
        let fid = format!("{HA}-0000");
        let body = serde_json::json!({"framework_id": {"value": fid}, "type": "ACKNOWLEDGE", "acknowledge": {
            "agent_id": u["update"]["status"]["agent_id"], "task_id": u["update"]["status"]["task_id"], "uuid": uuid}});
        assert_eq!(post(&m, &sid, body).await.status, 202);
    }
    assert!(m.mark_agent_unreachable(&format!("{HA}-S0")));
    let failure = s.next_of_type("FAILURE", T).await;
    assert_eq!(failure["failure"]["agent_id"]["value"], format!("{HA}-S0"));
    let u = s.next_of_type("UPDATE", T).await;
    let st = &u["update"]["status"];
    assert_eq!(
        (
            st["state"].as_str(),
            st["reason"].as_str(),
            st["source"].as_str()
        ),
        (
            Some("TASK_UNREACHABLE"),
            Some("REASON_AGENT_REMOVED"),
            Some("SOURCE_MASTER")
        )
    );
    assert!(
        st.get("uuid").is_none() && st.get("unreachable_time").is_some(),
        "{st}"
    );
    // Reconciliation reports it unreachable while the agent is away.
    assert_eq!(
        replay(&m, "71-reconcile-running-task", Some(&sid), &[])
            .await
            .status,
        202
    );
    let r = s.next_of_type("UPDATE", T).await;
    assert_eq!(r["update"]["status"]["state"], "TASK_UNREACHABLE");
    assert_eq!(r["update"]["status"]["reason"], "REASON_RECONCILIATION");
    // Back: the same master update the real master sent after its failover (70, third record).
    assert!(m.reregister_agent(&format!("{HA}-S0")));
    let back = s.next_of_type("UPDATE", T).await;
    let want = &recorded_events("70-resubscribe-new-leader")[2];
    assert_eq!(normalized_status(&back), normalized_status(want));
    assert_eq!(
        status_keys(&back),
        status_keys(want),
        "container_status too"
    );
    s.next_of_type("OFFERS", T).await;
    m.shutdown().await;
}
