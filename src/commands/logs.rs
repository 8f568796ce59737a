//! `airflow-mesos logs ID [--stderr] [--follow]`: a task's sandbox output, all of it (page
//! after page); with `--follow`, then what comes until the task ends.

use crate::cli::LogsArgs;
use crate::config::Config;
use std::io::Write;
use std::time::Duration;

pub async fn run(args: LogsArgs, cfg: &Config) -> anyhow::Result<i32> {
    let client = super::client(cfg)?;
    let mut offset = 0;
    let mut out = std::io::stdout();
    loop {
        let page = match client.logs(&args.id, args.stderr, offset).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(e.exit_code());
            }
        };
        out.write_all(page.data.as_bytes())?;
        out.flush()?;
        let got = page.next_offset > offset;
        offset = page.next_offset;
        // Without --follow: every page there is now. With it: until the task has ended and
        // nothing more comes.
        if !got && (!args.follow || page.terminal) {
            return Ok(0);
        }
        if !got {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
