//! `airflow-mesos kill ID...`: kill queued or running tasks (with the grace period).

use crate::cli::KillArgs;
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
