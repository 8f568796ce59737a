//! Command-line argument types (clap). Every verb takes `--config` and talks to the daemon
//! that configuration names (`[mesos] api_url`, `api_token`).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Run Apache Airflow tasks (or any command) in Docker containers on Apache Mesos, or on the
/// local Docker engine.
#[derive(Debug, Parser)]
#[command(name = "airflow-mesos", version, about, long_about = None)]
pub struct Cli {
    /// airflow.cfg to read (default: $AIRFLOW_CONFIG, else $AIRFLOW_HOME/airflow.cfg).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human on a terminal, JSON otherwise.
    Auto,
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scheduler daemon (Mesos framework, or the local Docker backend) and its API.
    Scheduler(SchedulerArgs),
    /// Submit tasks: `submit -- CMD ARGS...`, `submit --shell 'CMD'`, or `submit -f jobs.yaml`.
    Submit(SubmitArgs),
    /// Show one task.
    Status(StatusArgs),
    /// List tasks.
    List(ListArgs),
    /// Wait until tasks end; exit 1 if any did not succeed.
    Wait(WaitArgs),
    /// Kill tasks (queued or running).
    Kill(KillArgs),
    /// Print a task's stdout (or stderr).
    Logs(LogsArgs),
    /// Show or check the effective configuration.
    Config(crate::commands::config::ConfigArgs),
    /// Manage the Mesos framework this scheduler registers (`framework reset` after the master
    /// removed it).
    Framework(crate::commands::framework::FrameworkArgs),
    /// Build and push the project's Docker images (docker/Dockerfile) through the Docker Engine API.
    Images(crate::commands::images::ImagesArgs),
    /// Print a shell completion script, or write the man pages (made from these definitions).
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// `man` (the man page on stdout, or every page with --out-dir), or the completion script
    /// of a shell.
    #[arg(value_enum)]
    pub what: Generate,
    /// Write the man pages (airflow-mesos.1 and one per verb) into this directory.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    Man,
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Exit after the daemon has been idle (nothing queued or running) for this many seconds
    /// (useful for one-shot runs and tests; default: run until SIGTERM/SIGINT).
    #[arg(long, value_name = "SECS", value_parser = seconds, allow_negative_numbers = true)]
    pub exit_when_idle: Option<f64>,
}

/// Options shared by the verbs that print tasks.
#[derive(Debug, Args, Clone, Copy)]
pub struct OutputArgs {
    /// Machine-readable JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Job file(s) in YAML or JSON: a spec, a list of specs, or `{tasks: [...]}`.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Run this string with `/bin/sh -c` (instead of an argv after `--`).
    #[arg(long, conflicts_with = "files")]
    pub shell: Option<String>,
    /// Docker image (default: [mesos] docker_image_slave).
    #[arg(long)]
    pub image: Option<String>,
    /// CPUs (a fraction is a share of one).
    #[arg(long, value_parser = cpus, allow_negative_numbers = true)]
    pub cpus: Option<f64>,
    /// Memory in MB, or a size like 512m / 2g.
    #[arg(long)]
    pub mem: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Label KEY=VALUE (repeatable).
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Your own key for the task (e.g. an Airflow task-instance key).
    #[arg(long)]
    pub external_key: Option<String>,
    /// Block until every submitted task ends; exit 1 if any did not succeed.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds (exit 124).
    #[arg(long, value_name = "SECS", requires = "wait", value_parser = seconds, allow_negative_numbers = true)]
    pub timeout: Option<f64>,
    #[command(flatten)]
    pub out: OutputArgs,
    /// The command and its arguments (run without a shell).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub id: String,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only tasks in these states (comma-separated: queued,running,succeeded,failed,...).
    #[arg(long)]
    pub state: Option<String>,
    /// Only tasks with this label (KEY=VALUE).
    #[arg(long)]
    pub label: Option<String>,
    #[arg(long)]
    pub external_key: Option<String>,
    /// Only tasks changed after this change-feed position (the `cursor` of a previous list).
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..), allow_negative_numbers = true)]
    pub since: Option<i64>,
    /// Most tasks to list (1 to 10000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Give up after this many seconds (exit 124).
    #[arg(long, value_name = "SECS", value_parser = seconds, allow_negative_numbers = true)]
    pub timeout: Option<f64>,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    #[arg(required = true)]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub id: String,
    /// Print stderr instead of stdout.
    #[arg(long)]
    pub stderr: bool,
    /// Keep printing new output until the task ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// Longest duration a flag takes (about 31 years): a `Duration` of it cannot overflow.
const MAX_SECONDS: f64 = 1e9;

/// A number of seconds: finite, 0 or more, at most [`MAX_SECONDS`].
fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}`: seconds must be a finite number, 0 or more"));
    }
    if v > MAX_SECONDS {
        return Err(format!("`{s}`: at most {MAX_SECONDS} seconds"));
    }
    Ok(v)
}

/// A number of CPUs: finite and more than 0.
fn cpus(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of CPUs"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("`{s}`: CPUs must be a finite number above 0"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn submit_takes_argv_after_double_dash() {
        let cli = Cli::parse_from([
            "airflow-mesos",
            "submit",
            "--wait",
            "--",
            "echo",
            "-n",
            "hi",
        ]);
        let Command::Submit(s) = cli.command else {
            panic!("not submit")
        };
        assert!(s.wait);
        assert_eq!(s.command, vec!["echo", "-n", "hi"]);
    }

    fn parse(args: &[&str]) -> Result<Cli, String> {
        Cli::try_parse_from(args).map_err(|e| e.to_string())
    }

    #[test]
    fn numeric_flags_refuse_nan_negative_and_huge_values_naming_the_flag() {
        for (args, flag) in [
            (
                &["am", "scheduler", "--exit-when-idle", "-1"][..],
                "--exit-when-idle",
            ),
            (
                &["am", "scheduler", "--exit-when-idle", "NaN"][..],
                "--exit-when-idle",
            ),
            (
                &["am", "scheduler", "--exit-when-idle", "1e300"][..],
                "--exit-when-idle",
            ),
            (&["am", "wait", "t-1", "--timeout", "inf"][..], "--timeout"),
            (
                &["am", "submit", "--wait", "--timeout", "-5", "--", "true"][..],
                "--timeout",
            ),
            (
                &["am", "submit", "--cpus", "NaN", "--", "true"][..],
                "--cpus",
            ),
            (&["am", "submit", "--cpus", "0", "--", "true"][..], "--cpus"),
            (&["am", "list", "--limit", "0"][..], "--limit"),
            (&["am", "list", "--limit", "100000"][..], "--limit"),
            (&["am", "list", "--since", "-3"][..], "--since"),
        ] {
            let e = parse(args).expect_err(&format!("{args:?} must be refused"));
            assert!(e.contains(flag), "{args:?}: {e}");
        }
        assert!(parse(&["am", "scheduler", "--exit-when-idle", "0.5"]).is_ok());
        assert!(parse(&["am", "list", "--limit", "10000", "--since", "0"]).is_ok());
    }
}
