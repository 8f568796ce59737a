//! `airflow-mesos wait ID...`: block until the tasks end, following the change feed; exit 0
//! when all succeeded, 1 when any did not, 124 on `--timeout`.

use crate::api::TaskView;
use crate::cli::WaitArgs;
use crate::client::Client;
use crate::config::Config;
use crate::task::TaskState;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::io::Write as _;
use std::time::{Duration, Instant};

pub async fn run(args: WaitArgs, cfg: &Config) -> anyhow::Result<i32> {
    let client = super::client(cfg)?;
    wait_for(&client, &args.ids, args.timeout, args.out.json).await
}

/// Waits for `ids` and prints the outcome; returns the exit code.
pub async fn wait_for(
    client: &Client,
    ids: &[String],
    timeout: Option<f64>,
    json: bool,
) -> anyhow::Result<i32> {
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
    let mut states: HashMap<String, TaskState> = HashMap::new();
    let mut cursor = i64::MAX;
    for id in ids {
        match client.get(id).await {
            Ok(t) => {
                cursor = cursor.min(t.seq);
                states.insert(id.clone(), t.state);
            }
            Err(e) => {
                eprintln!("error: {id}: {e}");
                return Ok(e.exit_code());
            }
        }
    }
    let bar = progress(ids.len() as u64);
    let done = |s: &HashMap<String, TaskState>| s.values().filter(|st| st.is_terminal()).count();
    bar.set_position(done(&states) as u64);
    let mut timed_out = false;
    while done(&states) < ids.len() {
        let wait = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    timed_out = true;
                    break;
                }
                left.as_secs_f64().min(25.0)
            }
            None => 25.0,
        };
        let page = match client.events(cursor, wait).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(e.exit_code());
            }
        };
        for ev in &page.events {
            if let Some(st) = states.get_mut(&ev.task_id) {
                *st = ev.state;
            }
        }
        cursor = page.cursor.max(cursor);
        bar.set_position(done(&states) as u64);
    }
    bar.finish_and_clear();
    let mut finals: Vec<TaskView> = Vec::with_capacity(ids.len());
    for id in ids {
        finals.push(client.get(id).await?);
    }
    if json {
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "tasks": finals }))?
        )?;
    } else {
        super::print_table(&finals, &mut std::io::stdout().lock())?;
    }
    if timed_out {
        eprintln!(
            "timed out waiting for {} task(s)",
            ids.len() - done(&states)
        );
        return Ok(super::EXIT_TIMEOUT);
    }
    let ok = finals.iter().all(|t| t.state == TaskState::Succeeded);
    Ok(if ok { 0 } else { super::EXIT_TASK_FAILED })
}

fn progress(len: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() || len < 2 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {pos}/{len} tasks ended [{elapsed}] {wide_bar}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
