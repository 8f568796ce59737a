//! Mutational fuzzing on the stable toolchain: every parser that reads what others send us
//! (the Mesos master's RecordIO stream and events in protobuf and JSON, `airflow.cfg`, job
//! files and API bodies in JSON and YAML, API query strings) is fed mutations of real inputs
//! (the recorded Mesos traffic, the shipped config and example job files) and must answer with
//! a value or an error, never a panic.
//!
//! Each target runs `AM_FUZZ_EXECS` executions (20,000 by default, what CI runs); the full run
//! is `benches/fuzz.sh` (10^6 per target, figures in SECURITY.md). The mutations come from a
//! fixed-seed generator (`AM_FUZZ_SEED`), so a run can be repeated; an input that panics is
//! written to `target/fuzz-crashes/` and the test fails naming it.

use airflow_mesos::config::{load, CommandOutput, Sources, SystemAccess};
use airflow_mesos::mesos::{convert, json, proto::scheduler, recordio::RecordIoDecoder};
use bytes::BytesMut;
use prost::Message;
use serde::Deserialize;
use std::collections::HashMap;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio_util::codec::Decoder;

/// xorshift64*: small, fast, and the same sequence for the same seed everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u8] = b"\x00\xff\x7f\x80\n\r\t \"'{}[]:,-.0e9%=&#;\\";

/// One to four random edits of `input`: bit flips, interesting bytes, insertions, deletions,
/// duplications, a splice of another seed, or a token of the target's syntax.
fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>], tokens: &[&str]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                v.drain(i..i + n);
            }
            4 if len > 0 && len < 1 << 16 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let chunk = v[i..i + n].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, chunk);
            }
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - i).min(256));
                    let at = rng.below(len + 1);
                    v.splice(at..at, other[i..i + n].iter().copied());
                }
            }
            _ if !tokens.is_empty() => {
                let t = tokens[rng.below(tokens.len())].as_bytes();
                let at = rng.below(len + 1);
                v.splice(at..at, t.iter().copied());
            }
            _ => {}
        }
    }
    v
}

fn execs() -> u64 {
    std::env::var("AM_FUZZ_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn seed() -> u64 {
    std::env::var("AM_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0fa1_f10a)
}

/// Runs `target` on mutations of `seeds` (and the seeds themselves); panics naming the saved
/// input if any execution panicked.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, tokens: &[&str], target: impl Fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    // One target at a time: the panic hook is process-wide.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let n = execs();
    let mut rng = Rng(seed()
        ^ name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }));
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let mut crashes: Vec<PathBuf> = Vec::new();
    for i in 0..n {
        let base = &seeds[rng.below(seeds.len())];
        let input = if (i as usize) < seeds.len() {
            seeds[i as usize].clone()
        } else {
            mutate(&mut rng, base, &seeds, tokens)
        };
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("{name}-{i}.bin"));
            let _ = std::fs::write(&path, &input);
            crashes.push(path);
            if crashes.len() >= 5 {
                break;
            }
        }
    }
    std::panic::set_hook(quiet);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz {name}: {n} executions in {secs:.1} s ({:.0}/s), {} panics",
        n as f64 / secs,
        crashes.len()
    );
    assert!(
        crashes.is_empty(),
        "{name}: inputs that panic (replay with std::fs::read): {crashes:?}"
    );
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mesos-1.12-real")
}

fn fixture_files(suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Every event the real master sent, as the JSON of its RecordIO records.
fn recorded_events() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in fixture_files(".events.jsonl") {
        for line in std::fs::read_to_string(p).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            // Lines without an event mark where the stream ended.
            if v["event"].is_object() {
                out.push(serde_json::to_vec(&v["event"]).unwrap());
            }
        }
    }
    out
}

#[test]
fn recordio_stream_decoder() {
    let seeds: Vec<Vec<u8>> = fixture_files(".response.recordio")
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    fuzz(
        "recordio",
        seeds,
        &[
            "\n",
            "0\n",
            "18446744073709551616\n",
            "-1\n",
            "99999999999\n",
        ],
        |input| {
            let mut d = RecordIoDecoder::new(1 << 20);
            // Delivered in two chunks, as a network would cut it.
            let cut = input.len() / 3;
            let mut buf = BytesMut::from(&input[..cut]);
            while let Ok(Some(_)) = d.decode(&mut buf) {}
            buf.extend_from_slice(&input[cut..]);
            while let Ok(Some(_)) = d.decode(&mut buf) {}
            let _ = d.decode_eof(&mut buf);
        },
    );
}

#[test]
fn mesos_events_in_json() {
    fuzz(
        "event-json",
        recorded_events(),
        &[
            "\"type\":\"UPDATE\"",
            "\"type\":\"OFFERS\"",
            "null",
            "1e308",
            "-1",
            "\"\"",
            "{}",
            "[]",
            "\"value\":",
            "NaN",
            "18446744073709551616",
        ],
        |input| {
            if let Ok(ev) = json::decode::<scheduler::Event>(input) {
                let _ = convert::event_from_proto(ev);
            }
        },
    );
}

#[test]
fn mesos_events_in_protobuf() {
    let seeds: Vec<Vec<u8>> = recorded_events()
        .iter()
        .map(|j| json::decode::<scheduler::Event>(j).unwrap().encode_to_vec())
        .collect();
    fuzz("event-protobuf", seeds, &[], |input| {
        if let Ok(ev) = scheduler::Event::decode(input) {
            let _ = convert::event_from_proto(ev);
        }
    });
}

/// Runs no commands and reads no files: a fuzzed `<key>_secret = /dev/zero` must not read
/// forever.
struct Sealed;

impl SystemAccess for Sealed {
    fn run_command(&self, _: &[String]) -> io::Result<CommandOutput> {
        Err(io::Error::other("no commands while fuzzing"))
    }
    fn read_file(&self, _: &Path) -> io::Result<String> {
        Err(io::Error::other("no files while fuzzing"))
    }
    fn is_file(&self, _: &Path) -> bool {
        false
    }
}

#[test]
fn airflow_cfg() {
    let shipped =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/airflow.cfg")).unwrap();
    let seeds = vec![
        shipped,
        b"[mesos]\nmaster = zk://u:p@z1:2181,z2/mesos\nbackend = mesos\ntask_cpu = 0.5\n".to_vec(),
        b"[core]\nexecutor = x\n[mesos]\napi_token_cmd = cat t\ndocker_environment = A=1,B=%(x)s\n"
            .to_vec(),
        b"[mesos]\nallowed_origins = https://a.example\nmax_task_cpu = 4\nkill_grace_period = 5\n"
            .to_vec(),
    ];
    let env: HashMap<String, String> = [("AIRFLOW_HOME".to_string(), "/nonexistent".to_string())]
        .into_iter()
        .collect();
    fuzz(
        "config",
        seeds,
        &[
            "[mesos]", "\n", " = ", "%(", ")s", "%%", "_cmd", "_secret", "True", "-1", "1e999",
            "NaN", "inf", "zk://", "\n\t", ";", "#",
        ],
        |input| {
            let text = String::from_utf8_lossy(input);
            let src =
                Sources::new(env.clone(), &Sealed).with_file("/etc/airflow.cfg", text.into_owned());
            let _ = load(&src);
        },
    );
}

fn job_seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/jobs");
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect();
    v.push(
        br#"{"tasks":[{"command":["echo","a"],"cpus":0.5,"mem":"512m","env":{"A":"1"},"retries":2,"kill_grace_period":3,"constraints":["rack:a"],"labels":{"k":"v"},"volumes":[{"host_path":"data","container_path":"/d"}],"executor_config":{"image":"x"}}]}"#
            .to_vec(),
    );
    v
}

#[test]
fn task_specs_in_json() {
    let seeds: Vec<Vec<u8>> = job_seeds()
        .into_iter()
        .filter_map(|y| {
            let v: serde_json::Value = serde_yaml_ng::from_slice(&y).ok()?;
            serde_json::to_vec(&v).ok()
        })
        .collect();
    fuzz(
        "spec-json",
        seeds,
        &[
            "\"cpus\":",
            "\"mem\":",
            "1e308",
            "-1",
            "NaN",
            "null",
            "\"\"",
            "[]",
            "{}",
            "\"..\"",
            "\"retries\":",
            "18446744073709551616",
            "\"command\":",
        ],
        |input| {
            let _ = airflow_mesos::task::submission::from_json(input);
        },
    );
}

#[test]
fn task_specs_in_yaml() {
    fuzz(
        "spec-yaml",
        job_seeds(),
        &[
            "\n- ",
            ": ",
            "&a ",
            "*a",
            "!!binary ",
            "---\n",
            "{",
            "}",
            "[",
            "]",
            "~",
            ".inf",
            "-.nan",
            "<<: *a\n",
            "cpus: ",
            "mem: ",
            "\t",
        ],
        |input| {
            let _ = airflow_mesos::task::submission::from_yaml(&String::from_utf8_lossy(input));
        },
    );
}

/// The query parameters of `GET /v1/events`, `GET /v1/tasks` and the logs route, read with
/// the API's own deserializers.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
struct Query {
    #[serde(default, deserialize_with = "airflow_mesos::api::query::wait_seconds")]
    wait: Option<f64>,
    #[serde(default, deserialize_with = "airflow_mesos::api::query::page_size")]
    limit: Option<u32>,
    #[serde(default, deserialize_with = "airflow_mesos::api::query::feed_position")]
    since: Option<i64>,
    #[serde(default, deserialize_with = "airflow_mesos::api::query::byte_offset")]
    offset: Option<u64>,
    #[serde(default, deserialize_with = "airflow_mesos::api::query::byte_length")]
    length: Option<usize>,
    state: Option<String>,
    label: Option<String>,
}

#[test]
fn api_query_strings() {
    let seeds = vec![
        b"wait=30&since=12".to_vec(),
        b"limit=100&state=running,queued&label=team%3Ddata".to_vec(),
        b"offset=0&length=65536".to_vec(),
        b"since=-1&wait=1e999".to_vec(),
    ];
    fuzz(
        "api-query",
        seeds,
        &[
            "&", "=", "%", "%ff", "NaN", "inf", "-1", "1e999", "wait=", "limit=", "since=",
            "offset=", "length=", "+", "%00",
        ],
        |input| {
            let _ =
                airflow_mesos::api::query::parse_query::<Query>(&String::from_utf8_lossy(input));
        },
    );
}
