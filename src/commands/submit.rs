//! `airflow-mesos submit`: submit tasks from the command line (`-- CMD...` or `--shell`) or
//! from YAML/JSON job files (`-f`), optionally `--wait`ing for them.

use crate::cli::SubmitArgs;
use crate::config::Config;
use crate::task::{spec::parse_mem_mb, Command, TaskSpec};
use anyhow::{bail, Context};
use std::io::Write as _;
use std::path::Path;

/// Exit code of a job file that is not a valid submission (as README's exit code table says).
pub const EXIT_BAD_JOB_FILE: i32 = 65;
/// Exit code of a job file that cannot be read.
pub const EXIT_UNREADABLE_JOB_FILE: i32 = 66;
/// Exit code of bad usage (flags that do not go together, a malformed `--env`).
pub const EXIT_USAGE: i32 = 2;

/// Why a job file could not be used, with the exit code it gives.
#[derive(Debug)]
pub struct JobFileError {
    pub message: String,
    pub exit_code: i32,
}

/// Reads a job file: one spec, a list of specs, or `{tasks: [...]}` (YAML or JSON), with the
/// schema of `POST /v1/tasks` ([`crate::task::submission`]). Errors name the file and the
/// field (`job file jobs.yaml: tasks[2]: unknown field `comand``).
pub fn read_job_file(path: &Path) -> Result<Vec<TaskSpec>, JobFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| JobFileError {
        message: format!("cannot read job file {}: {e}", path.display()),
        exit_code: EXIT_UNREADABLE_JOB_FILE,
    })?;
    parse_job_file(&text).map_err(|e| JobFileError {
        message: format!("job file {}: {e}", path.display()),
        exit_code: EXIT_BAD_JOB_FILE,
    })
}

/// Parses job-file text (YAML, which includes JSON).
pub fn parse_job_file(text: &str) -> Result<Vec<TaskSpec>, String> {
    let specs = crate::task::submission::from_yaml(text).map_err(|e| e.to_string())?;
    if specs.is_empty() {
        return Err("no tasks in the file".into());
    }
    Ok(specs)
}

fn spec_from_args(args: &SubmitArgs) -> anyhow::Result<TaskSpec> {
    let command = match (&args.shell, args.command.is_empty()) {
        (Some(s), true) => Command::Shell(s.clone()),
        (None, false) => Command::Argv(args.command.clone()),
        (Some(_), false) => bail!("give either --shell 'CMD' or `-- CMD ARGS...`, not both"),
        (None, true) => bail!("nothing to run: give `-- CMD ARGS...`, --shell 'CMD', or -f FILE"),
    };
    let mut spec = TaskSpec {
        command: Some(command),
        ..TaskSpec::default()
    };
    apply_overrides(&mut spec, args)?;
    Ok(spec)
}

fn apply_overrides(spec: &mut TaskSpec, args: &SubmitArgs) -> anyhow::Result<()> {
    if let Some(i) = &args.image {
        spec.image = Some(i.clone());
    }
    if let Some(c) = args.cpus {
        spec.cpus = Some(c);
    }
    if let Some(m) = &args.mem {
        spec.mem = Some(
            parse_mem_mb(m)
                .with_context(|| format!("--mem `{m}`: expected MB or a size like 512m, 2g"))?,
        );
    }
    if let Some(n) = &args.name {
        spec.name = Some(n.clone());
    }
    if let Some(k) = &args.external_key {
        spec.external_key = Some(k.clone());
    }
    for e in &args.env {
        let (k, v) = super::key_value("--env", e)?;
        spec.env.insert(k, v);
    }
    for l in &args.labels {
        let (k, v) = super::key_value("--label", l)?;
        spec.labels.insert(k, v);
    }
    Ok(())
}

/// The specs to submit: from the job files, or from the command line; with the flags applied.
fn specs_of(args: &SubmitArgs) -> Result<Vec<TaskSpec>, JobFileError> {
    let usage = |e: anyhow::Error| JobFileError {
        message: format!("{e:#}"),
        exit_code: EXIT_USAGE,
    };
    if args.files.is_empty() {
        return Ok(vec![spec_from_args(args).map_err(usage)?]);
    }
    if !args.command.is_empty() || args.shell.is_some() {
        return Err(usage(anyhow::anyhow!(
            "give either -f FILE or a command (`-- CMD ARGS...`, --shell), not both"
        )));
    }
    let mut all = Vec::new();
    for f in &args.files {
        for mut s in read_job_file(f)? {
            apply_overrides(&mut s, args).map_err(usage)?;
            all.push(s);
        }
    }
    Ok(all)
}

pub async fn run(args: SubmitArgs, cfg: &Config) -> anyhow::Result<i32> {
    let specs = match specs_of(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", e.message);
            return Ok(e.exit_code);
        }
    };
    let client = super::client(cfg)?;
    let tasks = match client.submit(&specs).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: submission refused: {e}");
            return Ok(e.exit_code());
        }
    };
    if !args.wait {
        if args.out.json {
            writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "tasks": tasks }))?
            )?;
        } else {
            for t in &tasks {
                writeln!(std::io::stdout().lock(), "{} {}", t.id, t.state)?;
            }
        }
        return Ok(0);
    }
    if !args.out.json {
        for t in &tasks {
            eprintln!("submitted {}", t.id);
        }
    }
    let ids: Vec<String> = tasks.into_iter().map(|t| t.id).collect();
    super::wait::wait_for(&client, &ids, args.timeout, args.out.json).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_files_take_three_shapes() {
        assert_eq!(parse_job_file("command: echo hi\n").unwrap().len(), 1);
        assert_eq!(
            parse_job_file("- command: a\n- command: [b, c]\n")
                .unwrap()
                .len(),
            2
        );
        let t = parse_job_file("tasks:\n  - command: a\n    cpus: 0.5\n").unwrap();
        assert_eq!(t[0].cpus, Some(0.5));
    }

    #[test]
    fn job_files_refuse_duplicate_and_unknown_keys_with_the_path() {
        let e = parse_job_file("tasks:\n  - command: a\n    cpus: 1\n    cpus: 2\n").unwrap_err();
        assert!(e.starts_with("tasks[0]: duplicate key `cpus`"), "{e}");
        let e = parse_job_file("tasks:\n  - command: a\n    cpus: many\n").unwrap_err();
        assert!(e.starts_with("tasks[0].cpus: invalid type"), "{e}");
        let e = parse_job_file("tasks: [{command: a}]\nextra: 1\n").unwrap_err();
        assert!(e.starts_with("extra: "), "{e}");
    }

    #[test]
    fn a_bad_job_file_exits_65_and_an_unreadable_one_66() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hello.yaml");
        std::fs::write(&p, "tasks:\n  - command: a\n    cpus: [1]\n").unwrap();
        let e = read_job_file(&p).unwrap_err();
        assert_eq!(e.exit_code, 65);
        assert!(
            e.message.starts_with("job file ")
                && e.message
                    .contains("hello.yaml: tasks[0].cpus: invalid type"),
            "{}",
            e.message
        );
        let e = read_job_file(&dir.path().join("missing.yaml")).unwrap_err();
        assert_eq!(e.exit_code, 66, "{}", e.message);
    }

    #[test]
    fn job_file_errors_name_the_task_and_field() {
        let e = parse_job_file("tasks:\n  - command: a\n  - comand: b\n").unwrap_err();
        assert!(e.contains("tasks[1]") && e.contains("comand"), "{e}");
        let e = parse_job_file("tasks: 3\n").unwrap_err();
        assert!(e.contains("tasks"), "{e}");
        assert!(parse_job_file("tasks: []\n").is_err());
    }
}
