//! `airflow-mesos images build|push`: builds the project's multi-stage `docker/Dockerfile`
//! through the Docker Engine API and pushes the result with the registry credentials of the
//! `[mesos]` block (or the user's docker `config.json`).
//!
//! Default tags agree with `[mesos] docker_image_slave`: the `airflow` target is tagged with
//! that image when it is set, so that build + push is all a user needs before launching tasks.

use crate::config::Config;
use crate::docker::images::{self, default_tag, BuildRequest, Progress, VERSION};
use crate::docker::{auth, connect};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `images` and its subcommands.
#[derive(clap::Args, Debug, Clone)]
pub struct ImagesArgs {
    #[command(subcommand)]
    pub command: ImagesCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ImagesCommand {
    /// Build a stage of docker/Dockerfile (builder, runtime, airflow).
    Build(BuildArgs),
    /// Push built images to their registry.
    Push(PushArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct BuildArgs {
    /// The Dockerfile stage to build. Default: `runtime` when the Dockerfile has that stage,
    /// else its last stage.
    #[arg(long)]
    pub target: Option<String>,
    /// Tag(s) for the image (repeatable). Default: `airflow-mesos:<version>` for runtime,
    /// `[mesos] docker_image_slave` (else `airflow-mesos-airflow:<version>`) for airflow.
    #[arg(long = "tag", short = 't', value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// A build argument (repeatable), e.g. `--build-arg RUNTIME_IMAGE=debian:bookworm-slim`.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Do not use the engine's build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Push the tags after a successful build.
    #[arg(long)]
    pub push: bool,
    /// The Dockerfile.
    #[arg(long = "file", short = 'f', default_value = "docker/Dockerfile")]
    pub file: PathBuf,
    /// The build context directory (its `.dockerignore` applies).
    #[arg(long, default_value = ".")]
    pub context: PathBuf,
    /// Plain progress lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PushArgs {
    /// Image(s) to push (repeatable). Default: the default tag of `--target`.
    #[arg(long = "tag", short = 't', value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Whose default tag to push when no `--tag` is given.
    #[arg(long, default_value = "runtime")]
    pub target: String,
    /// Plain progress lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
}

/// Runs `images build` or `images push`. Returns the exit code: 0, or 1 after printing what
/// failed (the failing build step and its output, or the registry that refused).
pub async fn run(args: ImagesArgs, cfg: &Config) -> anyhow::Result<i32> {
    let result = match args.command {
        ImagesCommand::Build(b) => build(b, cfg).await,
        ImagesCommand::Push(p) => push(p, cfg).await,
    };
    match result {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(1)
        }
    }
}

fn progress(plain: bool) -> Progress {
    if plain {
        Progress::Plain
    } else {
        Progress::auto()
    }
}

/// The build request `images build` makes from its arguments and the config.
pub fn build_request(b: &BuildArgs, cfg: &Config) -> anyhow::Result<BuildRequest> {
    let mut build_args = BTreeMap::new();
    build_args.insert("VERSION".to_string(), VERSION.to_string());
    build_args.insert(
        "CREATED".to_string(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    for kv in &b.build_args {
        let (k, v) = super::key_value("--build-arg", kv)?;
        build_args.insert(k, v);
    }
    let target = match &b.target {
        Some(t) if !t.is_empty() => Some(t.clone()),
        Some(_) => None,
        None => {
            let text = std::fs::read_to_string(&b.file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", b.file.display()))?;
            images::has_stage(&text, "runtime").then(|| "runtime".to_string())
        }
    };
    let tags = if !b.tags.is_empty() {
        b.tags.clone()
    } else if let Some(t) = &target {
        vec![default_tag(t, cfg.docker_image_slave.as_deref())]
    } else {
        anyhow::bail!(
            "{} has no `runtime` stage and no --target was given: say --tag for the image",
            b.file.display()
        );
    };
    Ok(BuildRequest {
        context: b.context.clone(),
        dockerfile: b.file.clone(),
        target,
        tags,
        build_args,
        no_cache: b.no_cache,
    })
}

async fn build(b: BuildArgs, cfg: &Config) -> anyhow::Result<()> {
    let req = build_request(&b, cfg)?;
    let docker = connect().await?;
    let p = progress(b.plain);
    let built = images::build(&docker, &req, &cfg.registry, &p).await?;
    println!("{} {}", built.image_id, built.tags.join(" "));
    if b.push {
        let fallback = auth::default_docker_config();
        for t in &built.tags {
            images::push(&docker, t, &cfg.registry, fallback.as_deref(), &p).await?;
            println!("pushed {t}");
        }
    }
    Ok(())
}

async fn push(a: PushArgs, cfg: &Config) -> anyhow::Result<()> {
    let tags = if a.tags.is_empty() {
        vec![default_tag(&a.target, cfg.docker_image_slave.as_deref())]
    } else {
        a.tags
    };
    let docker = connect().await?;
    let p = progress(a.plain);
    let fallback = auth::default_docker_config();
    for t in &tags {
        images::push(&docker, t, &cfg.registry, fallback.as_deref(), &p).await?;
        println!("pushed {t}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        images: ImagesArgs,
    }

    #[test]
    fn build_arguments_parse() {
        let cli = Cli::try_parse_from([
            "x",
            "build",
            "--target",
            "airflow",
            "--build-arg",
            "A=1",
            "--build-arg",
            "B=x=y",
            "--no-cache",
            "--push",
            "-f",
            "d/Dockerfile",
        ])
        .unwrap();
        let ImagesCommand::Build(b) = cli.images.command else {
            panic!("not build")
        };
        assert_eq!(b.target.as_deref(), Some("airflow"));
        assert_eq!(b.build_args, vec!["A=1", "B=x=y"]);
        assert!(b.no_cache && b.push);
        assert_eq!(b.file, PathBuf::from("d/Dockerfile"));
        assert_eq!(b.context, PathBuf::from("."));
        let cli = Cli::try_parse_from(["x", "push", "--tag", "r:5000/a:1"]).unwrap();
        let ImagesCommand::Push(p) = cli.images.command else {
            panic!("not push")
        };
        assert_eq!(p.tags, vec!["r:5000/a:1"]);
    }

    fn cfg(slave: Option<&str>) -> Config {
        let mut env = std::collections::HashMap::new();
        env.insert(
            "AIRFLOW_HOME".to_string(),
            "/tmp/am-images-test".to_string(),
        );
        if let Some(s) = slave {
            env.insert(
                "AIRFLOW__MESOS__DOCKER_IMAGE_SLAVE".to_string(),
                s.to_string(),
            );
        }
        crate::config::load(&crate::config::Sources::new(env, &crate::config::NoSystem))
            .unwrap()
            .config
    }

    fn args(file: &std::path::Path, target: Option<&str>, tags: &[&str]) -> BuildArgs {
        BuildArgs {
            target: target.map(str::to_string),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            build_args: vec!["VERSION=9.9".into()],
            no_cache: false,
            push: false,
            file: file.to_path_buf(),
            context: ".".into(),
            plain: true,
        }
    }

    #[test]
    fn targets_and_tags_default_sensibly() {
        let d = tempfile::tempdir().unwrap();
        let project = d.path().join("Dockerfile");
        std::fs::write(
            &project,
            "FROM a AS builder\nFROM b AS runtime\nFROM c AS airflow\n",
        )
        .unwrap();
        let r = build_request(&args(&project, None, &[]), &cfg(None)).unwrap();
        assert_eq!(r.target.as_deref(), Some("runtime"));
        assert_eq!(r.tags, vec![format!("airflow-mesos:{VERSION}")]);
        assert_eq!(
            r.build_args["VERSION"], "9.9",
            "--build-arg overrides the default"
        );
        let r = build_request(
            &args(&project, Some("airflow"), &[]),
            &cfg(Some("reg:5000/af:2")),
        )
        .unwrap();
        assert_eq!(r.tags, vec!["reg:5000/af:2".to_string()]);
        let other = d.path().join("Other");
        std::fs::write(&other, "FROM scratch\n").unwrap();
        let e = build_request(&args(&other, None, &[]), &cfg(None)).unwrap_err();
        assert!(e.to_string().contains("--tag"), "{e}");
        let r = build_request(&args(&other, None, &["x:1"]), &cfg(None)).unwrap();
        assert_eq!((r.target, r.tags), (None, vec!["x:1".to_string()]));
        let mut bad = args(&project, None, &[]);
        bad.build_args = vec!["NOEQUALS".into()];
        assert!(build_request(&bad, &cfg(None)).is_err());
    }
}
