//! A deliberately thin HTTP client for tests of the fake master itself: sends recorded bytes as
//! they are and reads the subscription stream record by record, without any of the crate's
//! client logic in between.

use std::time::Duration;

use airflow_mesos::mesos::recordio::RecordIoDecoder;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use tokio_util::codec::Decoder as _;

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("reqwest client")
}

/// Sends one request with exactly these headers and body.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let mut req = client().request(method.parse().expect("method"), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("response body");
    Answer {
        status,
        headers,
        body,
    }
}

/// How a subscription stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The body ended with the terminating chunk.
    Clean,
    /// The connection broke (no terminating chunk).
    Aborted,
}

/// An open subscription stream.
pub struct Stream {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: BytesMut,
    decoder: RecordIoDecoder,
    /// Events skipped by `next_of_type` (other than HEARTBEATs), served to later calls first.
    skipped: std::collections::VecDeque<serde_json::Value>,
    pub end: Option<StreamEnd>,
}

impl Stream {
    /// POSTs a SUBSCRIBE body; the response head is read, the body is left open.
    pub async fn open(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Stream {
        let mut req = client().post(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body).send().await.expect("SUBSCRIBE request");
        Stream {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: Box::pin(resp.bytes_stream()),
            buf: BytesMut::new(),
            decoder: RecordIoDecoder::default(),
            skipped: Default::default(),
            end: None,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The next record, or `None` when the stream ended (see `end`). Panics after `timeout`.
    pub async fn next_record(&mut self, timeout: Duration) -> Option<Bytes> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(r) = self
                .decoder
                .decode(&mut self.buf)
                .expect("valid RecordIO from the fake")
            {
                return Some(r);
            }
            if self.end.is_some() {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => panic!("no record within {timeout:?}"),
                Ok(None) => self.end = Some(StreamEnd::Clean),
                Ok(Some(Err(_))) => self.end = Some(StreamEnd::Aborted),
                Ok(Some(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
            }
        }
    }

    /// The next record parsed as JSON.
    pub async fn next_json(&mut self, timeout: Duration) -> Option<serde_json::Value> {
        let r = self.next_record(timeout).await?;
        Some(serde_json::from_slice(&r).unwrap_or_else(|e| {
            panic!("record is not JSON ({e}): {}", String::from_utf8_lossy(&r))
        }))
    }

    /// The next event of type `t`: first from events skipped earlier, then from the stream.
    /// Other events met on the way are kept for later calls (HEARTBEATs are dropped).
    pub async fn next_of_type(&mut self, t: &str, timeout: Duration) -> serde_json::Value {
        if let Some(pos) = self.skipped.iter().position(|e| e["type"] == t) {
            return self.skipped.remove(pos).expect("position is valid");
        }
        loop {
            let e = self
                .next_json(timeout)
                .await
                .unwrap_or_else(|| panic!("stream ended ({:?}) while waiting for {t}", self.end));
            if e["type"] == t {
                return e;
            }
            if e["type"] != "HEARTBEAT" {
                self.skipped.push_back(e);
            }
        }
    }
}
