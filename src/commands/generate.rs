//! `airflow-mesos generate`: shell completion scripts and man pages, made from the clap
//! definitions in `cli.rs` (so they never drift from `--help`). The Debian package ships their
//! output (`packaging/deb/build.sh`).

use crate::cli::{Cli, Generate, GenerateArgs};
use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use std::io::Write;

/// Prints what `args` asks for on `out`, or writes the man pages into `--out-dir`.
pub fn run(args: &GenerateArgs, out: &mut dyn Write) -> anyhow::Result<i32> {
    let cmd = Cli::command();
    let shell = match args.what {
        Generate::Man => {
            match &args.out_dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    clap_mangen::generate_to(cmd, dir).with_context(|| {
                        format!("cannot write man pages into {}", dir.display())
                    })?;
                }
                None => clap_mangen::Man::new(cmd).render(out)?,
            }
            return Ok(0);
        }
        Generate::Bash => Shell::Bash,
        Generate::Zsh => Shell::Zsh,
        Generate::Fish => Shell::Fish,
        Generate::Elvish => Shell::Elvish,
        Generate::Powershell => Shell::PowerShell,
    };
    if args.out_dir.is_some() {
        anyhow::bail!("--out-dir is for `generate man`; completion scripts go to stdout");
    }
    clap_complete::generate(shell, &mut Cli::command(), "airflow-mesos", out);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn generate(args: &[&str]) -> String {
        let cli = Cli::try_parse_from(args).unwrap();
        let crate::cli::Command::Generate(a) = cli.command else {
            panic!("not generate")
        };
        let mut out = Vec::new();
        assert_eq!(run(&a, &mut out).unwrap(), 0);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn completions_and_man_pages_know_every_verb_and_flag() {
        let bash = generate(&["airflow-mesos", "generate", "bash"]);
        for word in [
            "scheduler",
            "submit",
            "--external-key",
            "--exit-when-idle",
            "generate",
        ] {
            assert!(bash.contains(word), "bash completion lacks {word}");
        }
        let zsh = generate(&["airflow-mesos", "generate", "zsh"]);
        assert!(zsh.starts_with("#compdef airflow-mesos"));
        let fish = generate(&["airflow-mesos", "generate", "fish"]);
        assert!(fish.contains("complete -c airflow-mesos"));
        let man = generate(&["airflow-mesos", "generate", "man"]);
        assert!(man.contains(".TH airflow-mesos 1"), "{man}");
        assert!(man.contains("scheduler") && man.contains("\\-\\-config"));

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("man1");
        let cli = Cli::try_parse_from([
            "airflow-mesos",
            "generate",
            "man",
            "--out-dir",
            d.to_str().unwrap(),
        ])
        .unwrap();
        let crate::cli::Command::Generate(a) = cli.command else {
            panic!()
        };
        run(&a, &mut Vec::new()).unwrap();
        let mut pages: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        pages.sort();
        for p in [
            "airflow-mesos.1",
            "airflow-mesos-submit.1",
            "airflow-mesos-config-check.1",
        ] {
            assert!(pages.contains(&p.to_string()), "{p} in {pages:?}");
        }
    }
}
