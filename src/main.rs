//! The `airflow-mesos` binary: parse the command line, set up logging, load the
//! configuration (exit 64 when it is bad), dispatch to one command.

use airflow_mesos::cli::{Cli, Command, LogFormat};
use airflow_mesos::{commands, config};
use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRFLOW_MESOS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let code = match run(cli) {
        Ok(code) => code,
        // A closed pipe (`airflow-mesos list | head`) is not an error.
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                c.downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            })
            == Some(std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    if let Command::Generate(args) = &cli.command {
        return commands::generate::run(args, &mut std::io::stdout());
    }
    let loaded = config::load_from_process(cli.config.as_deref());
    if let Command::Config(args) = &cli.command {
        return Ok(commands::config::run(args, loaded, &mut std::io::stdout()));
    }
    let loaded = match loaded {
        Ok(l) => l,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(config::EXIT_CONFIG);
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let cfg = loaded.config;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        match cli.command {
            // The daemon runs on a worker of the runtime, not on this thread: the driver and
            // the tasks it wakes (backend, commits, API) then hand work over on one worker
            // more often than across threads, which is 6-12 % less CPU per task at 100
            // and 1,000 tasks/s (BENCHMARKS.md, "Where the CPU goes at 100 tasks/s").
            Command::Scheduler(a) => {
                match tokio::spawn(async move { commands::scheduler::run(a, &cfg).await }).await {
                    Ok(r) => r,
                    Err(e) => Err(anyhow::anyhow!("the daemon's task ended abnormally: {e}")),
                }
            }
            Command::Submit(a) => commands::submit::run(a, &cfg).await,
            Command::Status(a) => commands::status::run(a, &cfg).await,
            Command::List(a) => commands::list::run(a, &cfg).await,
            Command::Wait(a) => commands::wait::run(a, &cfg).await,
            Command::Kill(a) => commands::kill::run(a, &cfg).await,
            Command::Logs(a) => commands::logs::run(a, &cfg).await,
            Command::Images(a) => commands::images::run(a, &cfg).await,
            Command::Framework(a) => commands::framework::run(a, &cfg).await,
            Command::Config(_) | Command::Generate(_) => unreachable!("handled above"),
        }
    })
}
