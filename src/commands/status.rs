//! `airflow-mesos status ID`: one task.

use crate::cli::StatusArgs;
use crate::config::Config;
use std::io::Write as _;

pub async fn run(args: StatusArgs, cfg: &Config) -> anyhow::Result<i32> {
    let client = super::client(cfg)?;
    match client.get(&args.id).await {
        Ok(t) => {
            let mut out = std::io::stdout().lock();
            if args.out.json {
                serde_json::to_writer_pretty(&mut out, &t)?;
                writeln!(out)?;
            } else {
                super::print_task(&t, &mut out)?;
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(e.exit_code())
        }
    }
}
