//! `airflow-mesos submit`: submit tasks from the command line (`-- CMD...` or `--shell`) or
//! from YAML/JSON job files (`-f`), optionally `--wait`ing for them.

use crate::cli::SubmitArgs;
use crate::config::Config;
use crate::task::{spec::parse_mem_mb, Command, TaskSpec};
use anyhow::{bail, Context};
use std::io::Write as _;
use std::path::Path;

/// Reads a job file: one spec, a list of specs, or `{tasks: [...]}` (YAML or JSON). Errors
/// name the file and the task (`jobs.yaml: tasks[2]: unknown field `comand``).
pub fn read_job_file(path: &Path) -> anyhow::Result<Vec<TaskSpec>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read job file {}", path.display()))?;
    parse_job_file(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Parses job-file text (YAML, which includes JSON).
pub fn parse_job_file(text: &str) -> Result<Vec<TaskSpec>, String> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let (items, prefixed) = match value {
        serde_yaml_ng::Value::Sequence(items) => (items, true),
        serde_yaml_ng::Value::Mapping(mut m) => {
            match m.remove(serde_yaml_ng::Value::String("tasks".into())) {
                Some(serde_yaml_ng::Value::Sequence(items)) => {
                    if let Some((k, _)) = m.iter().next() {
                        return Err(format!(
                            "unknown top-level key {k:?} (expected only `tasks`)"
                        ));
                    }
                    (items, true)
                }
                Some(_) => return Err("`tasks` must be a list".into()),
                None => (vec![serde_yaml_ng::Value::Mapping(m)], false),
            }
        }
        _ => return Err("expected a task spec, a list of specs, or {tasks: [...]}".into()),
    };
    if items.is_empty() {
        return Err("no tasks in the file".into());
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_yaml_ng::from_value::<TaskSpec>(v).map_err(|e| {
                if prefixed {
                    format!("tasks[{i}]: {e}")
                } else {
                    e.to_string()
                }
            })
        })
        .collect()
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

pub async fn run(args: SubmitArgs, cfg: &Config) -> anyhow::Result<i32> {
    let specs = if args.files.is_empty() {
        vec![spec_from_args(&args)?]
    } else {
        if !args.command.is_empty() {
            bail!("give either -f FILE or `-- CMD ARGS...`, not both");
        }
        let mut all = Vec::new();
        for f in &args.files {
            for mut s in read_job_file(f)? {
                apply_overrides(&mut s, &args)?;
                all.push(s);
            }
        }
        all
    };
    let client = super::client(cfg);
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
    fn job_file_errors_name_the_task_and_field() {
        let e = parse_job_file("tasks:\n  - command: a\n  - comand: b\n").unwrap_err();
        assert!(e.contains("tasks[1]") && e.contains("comand"), "{e}");
        let e = parse_job_file("tasks: 3\n").unwrap_err();
        assert!(e.contains("tasks"), "{e}");
        assert!(parse_job_file("tasks: []\n").is_err());
    }
}
