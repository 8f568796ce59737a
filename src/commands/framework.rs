//! `airflow-mesos framework reset [--yes] [--json]`: forget the stored framework id after the
//! Mesos master removed the framework (its `failover_timeout` ran out, or an operator tore it
//! down). Such an id can never subscribe again, so the scheduler refuses to start until it is
//! forgotten. The tasks that were launched under it were killed by Mesos with the framework:
//! they are marked failed with a message saying so; queued tasks stay queued and run under the
//! new framework. Without `--yes` it only shows what it would do. It works on the state
//! database directly and refuses while a scheduler runs on it.

use crate::cli::OutputArgs;
use crate::config::{Backend, Config};
use crate::store::{Change, Store, TaskFilter};
use crate::task::{TaskRecord, TaskState};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::io::Write as _;

/// Exit code when a scheduler runs on the database (as sysexits' EX_TEMPFAIL: try later).
pub const EXIT_SCHEDULER_RUNNING: i32 = 75;

#[derive(Debug, Args)]
pub struct FrameworkArgs {
    #[command(subcommand)]
    pub action: FrameworkAction,
}

#[derive(Debug, Subcommand)]
pub enum FrameworkAction {
    /// Forget the stored framework id after the master removed the framework: tasks launched
    /// under it are marked failed, queued tasks stay queued; the next start subscribes as a new
    /// framework. Shows what it would do unless --yes is given. Stop the scheduler first.
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Do it (without this flag nothing is changed).
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// The states of tasks that were launched under a framework and not seen to end.
const LAUNCHED: [TaskState; 5] = [
    TaskState::Launching,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Killing,
    TaskState::Unknown,
];

pub async fn run(args: FrameworkArgs, cfg: &Config) -> anyhow::Result<i32> {
    match args.action {
        FrameworkAction::Reset(a) => reset(a, cfg).await,
    }
}

async fn reset(args: ResetArgs, cfg: &Config) -> anyhow::Result<i32> {
    // The same lock a scheduler holds on a SQLite file, for as long as this runs.
    let _sqlite_lock = match crate::store::sqlite_path(&cfg.database_url) {
        Some(path) => match crate::leader::lock_sqlite(&path) {
            Ok(l) => Some(l),
            Err(crate::leader::SqliteLockError::InUse { path }) => {
                eprintln!(
                    "error: a scheduler is running on this database ({path} is locked): stop it \
                     first"
                );
                return Ok(EXIT_SCHEDULER_RUNNING);
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let store = Store::connect(&cfg.database_url)
        .await
        .context("cannot open the state store ([mesos] database_url)")?;
    if let Some(lease) = store.lease(&cfg.framework_name).await? {
        if !lease.holder.is_empty() && lease.remaining_ms > 0 {
            eprintln!(
                "error: a scheduler leads on this database ({}, its lease runs for another \
                 {:.1} s): stop every scheduler first",
                lease.address,
                lease.remaining_ms as f64 / 1000.0
            );
            return Ok(EXIT_SCHEDULER_RUNNING);
        }
    }
    let key = match cfg.backend {
        Backend::Mesos => cfg.framework_name.clone(),
        Backend::Docker => super::scheduler::local_framework_key(&cfg.framework_name),
    };
    let framework_id = store.framework_id(&key).await?;
    let orphaned = store
        .list_tasks(&TaskFilter {
            states: LAUNCHED.to_vec(),
            ..TaskFilter::default()
        })
        .await?;
    let message = format!(
        "framework {} was removed by the Mesos master and Mesos killed its tasks; marked failed \
         by `airflow-mesos framework reset`",
        framework_id.as_deref().unwrap_or("(none)")
    );
    let done = args.yes && framework_id.is_some();
    if done {
        let at = chrono::Utc::now().timestamp_millis();
        let changes: Vec<Change> = orphaned.iter().map(|t| failed(t, &message, at)).collect();
        store.commit(&changes).await?;
        store.forget_framework_id(&key).await?;
    }
    let mut out = std::io::stdout().lock();
    if args.out.json {
        let tasks: Vec<_> = orphaned
            .iter()
            .map(|t| {
                serde_json::json!({
                    "id": t.id,
                    "state": t.state,
                    "attempts": t.attempts,
                    "external_key": t.spec.external_key,
                })
            })
            .collect();
        let v = serde_json::json!({
            "framework_name": key,
            "framework_id": framework_id,
            "orphaned": tasks,
            "reset": done,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(0);
    }
    let Some(id) = &framework_id else {
        writeln!(
            out,
            "no framework id is stored for `{key}`: nothing to reset"
        )?;
        return Ok(0);
    };
    writeln!(out, "framework `{key}`: id {id}")?;
    if orphaned.is_empty() {
        writeln!(out, "no task was launched under it and not seen to end")?;
    } else {
        let verb = if done { "marked" } else { "would be marked" };
        writeln!(
            out,
            "{} task(s) launched under it and not seen to end {verb} failed:",
            orphaned.len()
        )?;
        for t in &orphaned {
            writeln!(
                out,
                "  {} {} (attempt {}){}",
                t.id,
                t.state,
                t.attempts,
                t.spec
                    .external_key
                    .as_deref()
                    .map(|k| format!(" {k}"))
                    .unwrap_or_default()
            )?;
        }
    }
    if done {
        writeln!(
            out,
            "forgot the framework id: the next start subscribes as a new framework"
        )?;
    } else {
        writeln!(
            out,
            "nothing changed: run again with --yes to forget the id (queued tasks stay queued)"
        )?;
    }
    Ok(0)
}

/// The change that ends `t` as failed with `message` (on its current attempt).
fn failed(t: &TaskRecord, message: &str, at: i64) -> Change {
    Change {
        task_id: t.id.clone(),
        state: TaskState::Failed,
        attempt: t.attempts,
        backend_task_id: None,
        agent_id: None,
        hostname: None,
        agent_url: None,
        message: Some(message.to_string()),
        reason: Some("REASON_FRAMEWORK_REMOVED".to_string()),
        exit_code: None,
        kill_requested: false,
        at,
        spec: None,
    }
}
