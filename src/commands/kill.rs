//! `airflow-mesos kill ID...`: kill queued or running tasks (with the grace period). A task
//! that has already ended is left as it is; the output says so with the state it ended in
//! (`already_ended` in `--json`) and the exit code is 1.

use crate::cli::KillArgs;
use crate::client::ClientError;
use crate::config::Config;
use std::io::Write as _;

pub async fn run(args: KillArgs, cfg: &Config) -> anyhow::Result<i32> {
    let client = super::client(cfg)?;
    let mut code = 0;
    let mut results = Vec::new();
    for id in &args.ids {
        match client.kill(id).await {
            Ok(v) => {
                let state = v
                    .get("state")
                    .and_then(|s| s.as_str())
                    .unwrap_or("?")
                    .to_string();
                if !args.out.json {
                    writeln!(std::io::stdout().lock(), "{id} {state}")?;
                }
                results.push(serde_json::json!({ "id": id, "state": state }));
            }
            // 409: the task had already ended; its state is the one it ended in.
            Err(ClientError::Api { status: 409, .. }) => {
                let state = match client.get(id).await {
                    Ok(t) => t.state.to_string(),
                    Err(_) => "ended".to_string(),
                };
                if !args.out.json {
                    writeln!(std::io::stdout().lock(), "{id} {state} (already ended)")?;
                }
                results
                    .push(serde_json::json!({ "id": id, "state": state, "already_ended": true }));
                code = super::EXIT_TASK_FAILED;
            }
            Err(e) => {
                eprintln!("error: {id}: {e}");
                results.push(serde_json::json!({ "id": id, "error": e.to_string() }));
                code = e.exit_code();
            }
        }
    }
    if args.out.json {
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "results": results }))?
        )?;
    }
    Ok(code)
}
