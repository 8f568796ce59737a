//! One module per subcommand. Each `run` returns the process exit code; `main` only parses,
//! sets up logging, loads the configuration and dispatches.

pub mod config;
pub mod framework;
pub mod generate;
pub mod images;
pub mod kill;
pub mod list;
pub mod logs;
pub mod scheduler;
pub mod status;
pub mod submit;
pub mod wait;

use crate::api::TaskView;
use crate::client::Client;
use crate::config::Config;

/// Exit code when a task did not succeed.
pub const EXIT_TASK_FAILED: i32 = 1;
/// Exit code when `--timeout` ran out (as `timeout(1)`).
pub const EXIT_TIMEOUT: i32 = 124;

/// The API client for the daemon the configuration names, with `[mesos] api_token` or else the
/// token the daemon wrote to `[mesos] api_token_file`.
pub fn client(cfg: &Config) -> anyhow::Result<Client> {
    let token = crate::token::for_client(cfg)?;
    Ok(Client::new(&cfg.api_url, token.token().map(str::to_string)).with_auth_hint(token.hint()))
}

/// Prints tasks as a table (human) — id, state, attempts, name/command, message.
pub fn print_table(tasks: &[TaskView], out: &mut dyn std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<36} {:<10} {:>3}  {:<24} MESSAGE",
        "ID", "STATE", "TRY", "NAME"
    )?;
    for t in tasks {
        let name = t
            .name
            .clone()
            .or_else(|| t.spec.command.as_ref().map(|c| c.display()))
            .unwrap_or_default();
        let name: String = name.chars().take(24).collect();
        writeln!(
            out,
            "{:<36} {:<10} {:>3}  {:<24} {}",
            t.id,
            t.state.as_str(),
            t.attempts,
            name,
            t.message.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

/// Prints one task in detail (human).
pub fn print_task(t: &TaskView, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    writeln!(out, "id:            {}", t.id)?;
    writeln!(out, "name:          {}", opt(&t.name))?;
    writeln!(
        out,
        "state:         {} (airflow: {:?})",
        t.state, t.airflow_state
    )?;
    writeln!(out, "attempts:      {}", t.attempts)?;
    writeln!(out, "backend task:  {}", opt(&t.backend_task_id))?;
    writeln!(out, "agent:         {}", opt(&t.hostname))?;
    let image = t
        .spec
        .image
        .as_deref()
        .unwrap_or("(default: [mesos] docker_image_slave)");
    writeln!(out, "image:         {image}")?;
    if let Some(c) = &t.spec.command {
        writeln!(out, "command:       {}", c.display())?;
    }
    writeln!(out, "external key:  {}", opt(&t.external_key))?;
    writeln!(out, "message:       {}", opt(&t.message))?;
    if let Some(r) = &t.reason {
        writeln!(out, "reason:        {r}")?;
    }
    if let Some(c) = t.exit_code {
        writeln!(out, "exit code:     {c}")?;
    }
    writeln!(out, "created:       {}", t.created_at)?;
    writeln!(out, "updated:       {}", t.updated_at)?;
    Ok(())
}

/// Splits `KEY=VALUE`, naming the flag in the error.
pub fn key_value(flag: &str, s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => anyhow::bail!("{flag} `{s}`: expected KEY=VALUE"),
    }
}
