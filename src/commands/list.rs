//! `airflow-mesos list`: tasks, filtered; `--json` gives `{"tasks": [...], "cursor": N}` so a
//! script can follow changes with `--since <cursor>`.

use crate::cli::ListArgs;
use crate::config::Config;
use std::io::Write as _;

pub async fn run(args: ListArgs, cfg: &Config) -> anyhow::Result<i32> {
    let client = super::client(cfg)?;
    let mut q: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    if let Some(s) = args.state {
        q.push(("state", s));
    }
    if let Some(l) = args.label {
        q.push(("label", l));
    }
    if let Some(k) = args.external_key {
        q.push(("external_key", k));
    }
    if let Some(s) = args.since {
        q.push(("since", s.to_string()));
    }
    match client.list(&q).await {
        Ok(page) => {
            let mut out = std::io::stdout().lock();
            if args.out.json {
                serde_json::to_writer_pretty(
                    &mut out,
                    &serde_json::json!({ "tasks": page.tasks, "cursor": page.cursor }),
                )?;
                writeln!(out)?;
            } else {
                super::print_table(&page.tasks, &mut out)?;
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(e.exit_code())
        }
    }
}
