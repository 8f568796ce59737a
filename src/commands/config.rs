//! `airflow-mesos config show [--json]` and `airflow-mesos config check`: print the effective
//! configuration with each value's source (secrets as `***`), or validate it (exit 0, or 64
//! with every problem listed).
//!
//! The caller loads the configuration (global `--config PATH`) and passes the result in, so
//! this file only formats.

use crate::config::{ConfigErrors, Entry, FileStatus, Loaded, EXIT_CONFIG};
use std::io::Write;

/// `config` subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// What to do with the configuration.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration and where each value comes from (default, file:line,
    /// env, cmd, secret); secrets are shown as ***.
    Show {
        /// Print JSON: {"path": ..., "entries": [{"key", "value", "source"}], "warnings": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration: exit 0 ("configuration OK"), or 64 listing every problem.
    Check,
}

/// Runs a `config` subcommand on an already loaded configuration; returns the exit code.
pub fn run(args: &ConfigArgs, loaded: Result<Loaded, ConfigErrors>, out: &mut dyn Write) -> i32 {
    let res = match (&args.command, loaded) {
        (ConfigCommand::Show { json: true }, Ok(l)) => show_json(&l, out).map(|_| 0),
        (ConfigCommand::Show { json: false }, Ok(l)) => show_table(&l, out).map(|_| 0),
        (ConfigCommand::Show { json: true }, Err(e)) => errors_json(&e, out).map(|_| EXIT_CONFIG),
        (ConfigCommand::Check, Ok(l)) => {
            let problems = super::scheduler::startup_problems(&l.config);
            if problems.is_empty() {
                check_ok(&l, out).map(|_| 0)
            } else {
                startup_problems_text(&problems, &l.warnings, out).map(|_| EXIT_CONFIG)
            }
        }
        (_, Err(e)) => errors_text(&e, out).map(|_| EXIT_CONFIG),
    };
    // A closed stdout (e.g. `| head`) is not a configuration problem; report failure anyway.
    res.unwrap_or(1)
}

fn file_line(file: &FileStatus) -> String {
    match file {
        FileStatus::Read(p) => format!("configuration file: {}", p.display()),
        FileStatus::Missing(p) => format!(
            "configuration file: {} (not found: using defaults and the environment)",
            p.display()
        ),
        FileStatus::NotGiven => "configuration file: none (defaults and the environment)".into(),
    }
}

fn file_path(file: &FileStatus) -> Option<String> {
    match file {
        FileStatus::Read(p) => Some(p.display().to_string()),
        _ => None,
    }
}

fn shown(e: &Entry) -> &str {
    e.value.as_deref().unwrap_or("(unset)")
}

fn show_table(l: &Loaded, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{}", file_line(&l.file))?;
    writeln!(out, "AIRFLOW_HOME: {}", l.config.airflow_home.display())?;
    writeln!(out)?;
    let kw = l
        .entries
        .iter()
        .map(|e| e.key.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let vw = l
        .entries
        .iter()
        .map(|e| shown(e).chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 60);
    writeln!(out, "{:kw$}  {:vw$}  SOURCE", "KEY", "VALUE")?;
    for e in &l.entries {
        // Multi-line values (rare) are shown on one line.
        let v = shown(e).replace('\n', "\\n");
        writeln!(out, "{:kw$}  {:vw$}  {}", e.key, v, e.source)?;
    }
    write_warnings(&l.warnings, out)
}

fn write_warnings(warnings: &[String], out: &mut dyn Write) -> std::io::Result<()> {
    if !warnings.is_empty() {
        writeln!(out)?;
        writeln!(out, "warnings:")?;
        for w in warnings {
            writeln!(out, "  - {w}")?;
        }
    }
    Ok(())
}

fn show_json(l: &Loaded, out: &mut dyn Write) -> std::io::Result<()> {
    let entries: Vec<serde_json::Value> = l
        .entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "key": e.key,
                "value": e.value,
                "source": e.source.to_string(),
                "secret": e.secret,
            })
        })
        .collect();
    let missing = match &l.file {
        FileStatus::Missing(p) => Some(p.display().to_string()),
        _ => None,
    };
    let doc = serde_json::json!({
        "path": file_path(&l.file),
        "missing_path": missing,
        "airflow_home": l.config.airflow_home.display().to_string(),
        "entries": entries,
        "warnings": l.warnings,
    });
    writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)
}

fn errors_json(e: &ConfigErrors, out: &mut dyn Write) -> std::io::Result<()> {
    let doc = serde_json::json!({
        "path": e.path.as_ref().map(|p| p.display().to_string()),
        "errors": e.errors.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
        "warnings": e.warnings,
    });
    writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)
}

fn check_ok(l: &Loaded, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "configuration OK ({})", file_line(&l.file))?;
    write_warnings(&l.warnings, out)
}

fn startup_problems_text(
    problems: &[String],
    warnings: &[String],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "invalid configuration ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    )?;
    for p in problems {
        writeln!(out, "  - {p}")?;
    }
    write_warnings(warnings, out)
}

fn errors_text(e: &ConfigErrors, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{e}")?;
    write_warnings(&e.warnings, out)
}
