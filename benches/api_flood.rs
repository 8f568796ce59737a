//! API flood benchmark: the outside probe of issue 23, item 4. N half-open connections
//! (default 24,000: each opened and sent half a request head, never finished) against a
//! daemon started with the default `[mesos] api_max_connections` (1024), `api_header_timeout`
//! (10 s) and `api_idle_timeout` (60 s), and a file limit of 20,000 (as the probe had). While
//! the connections are opened and held, a separate client asks `GET /healthz` every 100 ms on a
//! fresh connection; the figures are the slowest and median answer during the flood and once it
//! is all held, the daemon's open descriptors and resident memory at its peak, and its
//! resident memory once the connections are closed.
//!
//! Run with `cargo bench --bench api_flood` (builds the daemon with the bench profile).
//! `AM_BENCH_FLOOD` sets N; `AM_BENCH_DAEMON` names another daemon binary (e.g. an older build,
//! for a before/after comparison). The connections are held by child processes of 10,000
//! each (a process holds no more descriptors than its limit), spread over several loopback
//! source addresses (127.0.0.2-9) so the ephemeral ports suffice. Needs `prlimit`
//! (util-linux) to start the daemon with its limit.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

fn proc_stat(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    (fds, rss)
}

/// Raises the recorded peak of the daemon's descriptors and memory to what they are now.
fn note_peak(peak: &Mutex<(usize, u64)>, pid: u32) {
    let (f, r) = proc_stat(pid);
    let mut p = peak.lock().unwrap();
    *p = (p.0.max(f), p.1.max(r));
}

async fn half_open(addr: SocketAddr, i: usize) -> Option<TcpStream> {
    let sock = TcpSocket::new_v4().ok()?;
    let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8));
    sock.bind(SocketAddr::new(src, 0)).ok()?;
    let mut s = tokio::time::timeout(Duration::from_secs(10), sock.connect(addr))
        .await
        .ok()?
        .ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .ok()?;
    Some(s)
}

/// One `GET /healthz` on a fresh connection: its time, or None after 10 s or on an error.
async fn healthz(url: &str) -> Option<Duration> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    let started = Instant::now();
    let r = client.get(url).send().await.ok()?;
    r.status().is_success().then(|| started.elapsed())
}

fn summary(mut v: Vec<Option<Duration>>) -> String {
    let failed = v.iter().filter(|d| d.is_none()).count();
    let mut ok: Vec<Duration> = v.drain(..).flatten().collect();
    ok.sort();
    if ok.is_empty() {
        return format!("no answer ({failed} failed)");
    }
    format!(
        "median {:.1} ms, max {:.1} ms, {} asked, {failed} unanswered",
        ok[ok.len() / 2].as_secs_f64() * 1e3,
        ok[ok.len() - 1].as_secs_f64() * 1e3,
        ok.len() + failed
    )
}

/// A flooding process: opens `count` half-open connections, prints how many it holds, and
/// holds them until its stdin closes.
async fn flood_child(spec: &str) {
    let v: Vec<usize> = spec.split(',').map(|x| x.parse().unwrap()).collect();
    let (port, first, count) = (v[0] as u16, v[1], v[2]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut held = Vec::with_capacity(count);
    let batch = 500;
    let mut i = first;
    while i < first + count {
        let end = (i + batch).min(first + count);
        let opened = futures::future::join_all((i..end).map(|k| half_open(addr, k))).await;
        held.extend(opened.into_iter().flatten());
        i = end;
    }
    println!("{}", held.len());
    let mut sink = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(spec) = std::env::var("AM_BENCH_FLOOD_CHILD") {
        return flood_child(&spec).await;
    }
    let n = env_usize("AM_BENCH_FLOOD", 24_000);
    let bin = std::env::var("AM_BENCH_DAEMON")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_airflow-mesos").to_string());
    let home = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = home.path().join("airflow.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[mesos]\nbackend = docker\ndocker_image_slave = x\napi_listen = 127.0.0.1:{port}\n\
             api_token = bench-token\n"
        ),
    )
    .unwrap();
    let mut daemon = Command::new("prlimit")
        .args(["--nofile=20000:20000", "--", &bin, "scheduler"])
        .env("AIRFLOW_HOME", home.path())
        .env("AIRFLOW_CONFIG", &cfg)
        .env("AIRFLOW_MESOS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let pid = daemon.id();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let started = Instant::now();
    while healthz(&url).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "daemon did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds0, rss0) = proc_stat(pid);

    // The prober: /healthz every 100 ms; the peak of the daemon's descriptors and memory.
    let flooding = Arc::new(AtomicBool::new(true));
    let during = Arc::new(Mutex::new(Vec::new()));
    let peak = Arc::new(Mutex::new((0usize, 0u64)));
    let prober = {
        let (flooding, during, peak, url) =
            (flooding.clone(), during.clone(), peak.clone(), url.clone());
        tokio::spawn(async move {
            while flooding.load(Ordering::Relaxed) {
                let d = healthz(&url).await;
                during.lock().unwrap().push(d);
                note_peak(&peak, pid);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // The flood, from child processes (this bench re-run with AM_BENCH_FLOOD_CHILD) of at
    // most 10,000 connections each: a process may not hold more descriptors than its limit.
    let t0 = Instant::now();
    let per = 10_000;
    let mut children = Vec::new();
    let mut first = 0;
    while first < n {
        let count = per.min(n - first);
        let child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .env("AM_BENCH_FLOOD_CHILD", format!("{port},{first},{count}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a flooding process");
        children.push(child);
        first += count;
    }
    let mut opened = 0;
    for c in &mut children {
        let mut line = String::new();
        let mut out = tokio::io::BufReader::new(c.stdout.take().unwrap());
        tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
            .await
            .unwrap();
        opened += line.trim().parse::<usize>().unwrap_or(0);
    }
    let open_time = t0.elapsed();
    // All held: /healthz 20 more times, one after the other.
    let mut held_answers = Vec::new();
    for _ in 0..20 {
        held_answers.push(healthz(&url).await);
        note_peak(&peak, pid);
    }
    flooding.store(false, Ordering::Relaxed);
    let _ = prober.await;
    let (fds_held, rss_held) = proc_stat(pid);
    for mut c in children {
        drop(c.stdin.take());
        let _ = c.wait().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (fds_after, rss_after) = proc_stat(pid);
    let after = healthz(&url).await;
    let _ = daemon.kill();
    let _ = daemon.wait();

    let during = std::mem::take(&mut *during.lock().unwrap());
    let (peak_fds, peak_rss) = *peak.lock().unwrap();
    println!("## API flood: {n} half-open connections (daemon file limit 20,000)");
    println!();
    println!("| | |");
    println!("|---|---|");
    println!("| daemon | `{bin}` |");
    println!(
        "| connections opened (half a request head each) | {opened} of {n} in {:.1} s |",
        open_time.as_secs_f64()
    );
    println!(
        "| /healthz while they were being opened | {} |",
        summary(during)
    );
    println!(
        "| /healthz with all of them held | {} |",
        summary(held_answers)
    );
    println!(
        "| /healthz after they were closed | {} |",
        after.map_or("no answer".into(), |d| format!(
            "{:.1} ms",
            d.as_secs_f64() * 1e3
        ))
    );
    println!("| daemon descriptors: idle / peak / all held / after | {fds0} / {peak_fds} / {fds_held} / {fds_after} |");
    println!(
        "| daemon RSS: idle / peak / all held / after | {:.1} / {:.1} / {:.1} / {:.1} MB |",
        rss0 as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        rss_held as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
}
