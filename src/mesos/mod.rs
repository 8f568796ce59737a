//! The Mesos wire boundary: protobuf types (`proto`), the RecordIO codec, the v1 scheduler
//! HTTP client, master detection, and the conversion between wire and domain types.
//!
//! # Layout (bottom-up)
//!
//! | module | what it does |
//! |---|---|
//! | [`proto`] | prost types of the hand-written `mesos.v1` / `mesos.v1.scheduler` subset |
//! | [`recordio`] | the `<len>\n<bytes>` stream framing, bounded, as a tokio codec |
//! | [`json`] | Mesos's JSON mapping ([`json::Encoding`] picks protobuf or JSON per message) |
//! | [`convert`] | the only place where wire types meet domain types (events in, calls out) |
//! | [`detect`] | master addresses: host lists, 307 `Location`s, `zk://` leader watch, `file://` |
//! | [`pipeline`] | one persistent HTTP/1.1 connection for calls, requests pipelined (as Mesos's own library does) |
//! | [`client`] | HTTP: SUBSCRIBE stream and calls, typed errors, retry-vs-fatal decision |
//! | [`subscription`] | the subscription state machine (pure) and the backoff type |
//! | [`backend`] | the running backend: subscription loop, call worker, explicit teardown |
//!
//! Nothing outside this module sees a protobuf type: the driver and the core speak
//! [`crate::scheduler::types`].

pub mod backend;
pub mod client;
pub mod convert;
pub mod detect;
pub mod json;
pub mod pipeline;
pub mod proto;
pub mod recordio;
pub mod subscription;

/// Reads a recorded real-Mesos fixture from `tests/fixtures/mesos-1.12-real/`. A missing file
/// fails under `CI=true` and skips the test (`None`, with a notice) otherwise.
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> Option<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mesos-1.12-real")
        .join(name);
    match std::fs::read(&path) {
        Ok(data) => Some(data),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("fixture {} is missing in CI: {e}", path.display())
        }
        Err(e) => {
            eprintln!("skipping: fixture {} not readable: {e}", path.display());
            None
        }
    }
}
