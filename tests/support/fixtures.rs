//! Access to the recorded real-Mesos traffic in `tests/fixtures/mesos-1.12-real`
//! (see its README.txt): request/response summaries and raw RecordIO streams.

use std::path::PathBuf;

use airflow_mesos::mesos::recordio::RecordIoDecoder;
use base64::Engine as _;
use bytes::BytesMut;
use tokio_util::codec::Decoder as _;

fn dir() -> PathBuf {
    super::env::fixtures_dir()
}

/// Whether the fixtures are present; outside CI a test may skip when they are not.
///
/// # Panics
/// With `CI=true` when the directory is missing.
pub fn available() -> bool {
    let ok = dir().join("README.txt").is_file();
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("fixtures missing in CI: {}", dir().display());
        }
        eprintln!("skipping: fixtures not found at {}", dir().display());
    }
    ok
}

/// A recorded request and the real master's answer (`NN-name.json`).
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub status: u16,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
}

impl Exchange {
    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.response_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn request_text(&self) -> String {
        String::from_utf8_lossy(&self.request_body).into_owned()
    }

    pub fn response_text(&self) -> String {
        String::from_utf8_lossy(&self.response_body).into_owned()
    }
}

fn body(v: &serde_json::Value) -> Vec<u8> {
    match v["encoding"].as_str() {
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().unwrap_or(""))
            .expect("fixture base64 body"),
        _ => v["text"].as_str().unwrap_or("").as_bytes().to_vec(),
    }
}

fn headers(v: &serde_json::Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap_or("").to_string(),
                        h[1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Loads `NN-name.json`.
pub fn exchange(name: &str) -> Exchange {
    let path = dir().join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    Exchange {
        method: v["request"]["method"].as_str().unwrap_or("").to_string(),
        path: v["request"]["path"].as_str().unwrap_or("").to_string(),
        request_headers: headers(&v["request"]["headers"]),
        request_body: body(&v["request"]["body"]),
        status: v["response"]["status"].as_u64().unwrap_or(0) as u16,
        response_headers: headers(&v["response"]["headers"]),
        response_body: body(&v["response"]["body"]),
    }
}

/// The raw request body of a stream fixture (`NN-name.request.http`, after the blank line).
pub fn stream_request_body(name: &str) -> Vec<u8> {
    let path = dir().join(format!("{name}.request.http"));
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let pos = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .expect("request head ends with a blank line");
    raw[pos..].to_vec()
}

/// The records of `NN-name.response.recordio`.
pub fn records(name: &str) -> Vec<Vec<u8>> {
    let path = dir().join(format!("{name}.response.recordio"));
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut buf = BytesMut::from(&raw[..]);
    let mut dec = RecordIoDecoder::default();
    let mut out = Vec::new();
    while let Some(r) = dec.decode(&mut buf).expect("fixture RecordIO is valid") {
        out.push(r.to_vec());
    }
    out
}

/// The names of all stream fixtures recorded in JSON.
pub const JSON_STREAMS: &[&str] = &[
    "05-subscribe-json",
    "38-subscribe-failover-first",
    "39-subscribe-failover-resubscribe",
    "52-auth-subscribe-ok",
    "62-subscribe-leader",
    "70-resubscribe-new-leader",
    "74-resubscribe-while-open",
];
