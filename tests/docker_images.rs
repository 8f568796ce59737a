//! `images build` / `images push` against the real Docker engine and a real registry.
//!
//! - The real `docker/Dockerfile` `runtime` target builds with locally made base images and a
//!   prebuilt binary (this test binary's `airflow-mesos`), and the image runs `--version`.
//! - A Dockerfile whose step fails makes `images build` exit non-zero, naming the step and
//!   showing its output.
//! - Push to the htpasswd registry works with the right credentials (and the image pulls
//!   back); wrong credentials fail with an error that names the registry and not the password.
//!
//! Needs `.ci/setup-docker.sh`: `AM_TEST_BASE_IMAGE`, `AM_TEST_BUSYBOX`, `AM_TEST_REGISTRY`,
//! `AM_TEST_REGISTRY_USER`, `AM_TEST_REGISTRY_PASSWORD`. With `CI=true` a missing prerequisite
//! fails; otherwise the tests are skipped with a notice.

use airflow_mesos::commands::images::{run, BuildArgs, ImagesArgs, ImagesCommand};
use airflow_mesos::config::{self, RegistryAuth, Secret};
use airflow_mesos::docker::images::{self, BuildRequest, ImageError, Progress};
use airflow_mesos::docker::{auth::ImageRef, connect};
use bollard::query_parameters::{CreateImageOptions, RemoveImageOptions};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

struct Env {
    base: String,
    python: String,
    busybox: String,
    registry: String,
    user: String,
    password: String,
}

fn env() -> Option<Env> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let got = (
        var("AM_TEST_BASE_IMAGE"),
        var("AM_TEST_PYTHON_IMAGE"),
        var("AM_TEST_BUSYBOX"),
        var("AM_TEST_REGISTRY"),
        var("AM_TEST_REGISTRY_USER"),
        var("AM_TEST_REGISTRY_PASSWORD"),
    );
    let engine = std::process::Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    match got {
        (Some(base), Some(python), Some(busybox), Some(registry), Some(user), Some(password))
            if engine =>
        {
            Some(Env {
                base,
                python,
                busybox,
                registry,
                user,
                password,
            })
        }
        _ => {
            let why = "image tests need a Docker engine and AM_TEST_BASE_IMAGE, AM_TEST_PYTHON_IMAGE, AM_TEST_BUSYBOX, AM_TEST_REGISTRY, AM_TEST_REGISTRY_USER, AM_TEST_REGISTRY_PASSWORD (run .ci/setup-docker.sh, source .ci/test-env-docker.sh)";
            if ci {
                panic!("{why}");
            }
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A build context with what docker/Dockerfile copies, plus this build's binary under
/// `dist/` (for `PREBUILT_BINARY`) and a `.pem` that `.dockerignore` must keep out.
fn prebuilt_context() -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    let root = repo_root();
    for f in ["Cargo.toml", "Cargo.lock", "build.rs", ".dockerignore"] {
        std::fs::copy(root.join(f), ctx.path().join(f)).unwrap();
    }
    copy_dir(&root.join(".cargo"), &ctx.path().join(".cargo"));
    copy_dir(&root.join("proto"), &ctx.path().join("proto"));
    copy_dir(&root.join("docker"), &ctx.path().join("docker"));
    copy_dir(
        &root.join("examples/airflow/airflow_mesos_executor"),
        &ctx.path().join("examples/airflow/airflow_mesos_executor"),
    );
    std::fs::create_dir_all(ctx.path().join("dist")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_airflow-mesos"),
        ctx.path().join("dist/airflow-mesos"),
    )
    .unwrap();
    std::fs::write(ctx.path().join("registry.pem"), "not-for-the-image").unwrap();
    ctx
}

fn docker_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap()
}

fn load_config(env: &[(&str, &str)]) -> config::Config {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config::load(&config::Sources::new(env, &config::NoSystem))
        .unwrap_or_else(|e| panic!("test config: {e}"))
        .config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_target_builds_from_a_prebuilt_binary_and_runs_version() {
    let Some(env) = env() else { return };
    let ctx = prebuilt_context();
    let tag = format!("am-test/runtime:{}", uuid::Uuid::new_v4().simple());
    let cfg = load_config(&[("AIRFLOW_HOME", "/tmp/am-test-home")]);
    let args = ImagesArgs {
        command: ImagesCommand::Build(BuildArgs {
            target: Some("runtime".into()),
            tags: vec![tag.clone()],
            build_args: vec![
                format!("RUST_IMAGE={}", env.base),
                format!("RUNTIME_IMAGE={}", env.base),
                "PREBUILT_BINARY=dist/airflow-mesos".into(),
            ],
            no_cache: false,
            push: false,
            file: ctx.path().join("docker/Dockerfile"),
            context: ctx.path().to_path_buf(),
            plain: true,
        }),
    };
    let code = run(args, &cfg).await.unwrap();
    assert_eq!(code, 0, "images build of the runtime target failed");

    let out = docker_cli(&["run", "--rm", &tag, "--version"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "docker run {tag} --version: {out:?}");
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")),
        "--version printed {stdout:?}"
    );
    let inspect = docker_cli(&[
        "inspect",
        "--format",
        "{{.Config.User}}@@{{json .Config.Healthcheck}}@@{{index .Config.Labels \"org.opencontainers.image.version\"}}@@{{json .Config.Entrypoint}}",
        &tag,
    ]);
    let text = String::from_utf8_lossy(&inspect.stdout);
    let parts: Vec<&str> = text.trim().split("@@").collect();
    assert_eq!(parts[0], "10001:10001", "runs as a non-root user: {text}");
    assert!(
        parts[1].contains("/healthz"),
        "healthcheck asks /healthz: {text}"
    );
    assert_eq!(
        parts[2],
        env!("CARGO_PKG_VERSION"),
        "OCI version label: {text}"
    );
    assert_eq!(parts[3], "[\"airflow-mesos\"]");
    // The HEALTHCHECK asks the daemon's /healthz: a daemon that serves its API becomes healthy.
    let name = format!("am-test-health-{}", uuid::Uuid::new_v4().simple());
    let out = docker_cli(&[
        "run",
        "-d",
        "--name",
        &name,
        "--health-interval",
        "1s",
        "--health-start-period",
        "1s",
        "-e",
        "AIRFLOW__MESOS__BACKEND=docker",
        "-e",
        "AIRFLOW__MESOS__API_TOKEN=health-test-token",
        &tag,
    ]);
    assert!(out.status.success(), "{out:?}");
    let mut health = String::new();
    for _ in 0..60 {
        let o = docker_cli(&["inspect", "--format", "{{.State.Health.Status}}", &name]);
        health = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if health == "healthy" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let logs = docker_cli(&["logs", &name]);
    docker_cli(&["rm", "-f", &name]);
    assert_eq!(health, "healthy", "daemon logs: {logs:?}");

    // The builder stage copied the whole context as filtered by .dockerignore: the sources
    // are there, the .pem is not.
    let builder_tag = format!("{tag}-builder");
    let docker = connect().await.unwrap();
    let req = BuildRequest {
        context: ctx.path().to_path_buf(),
        dockerfile: ctx.path().join("docker/Dockerfile"),
        target: Some("builder".into()),
        tags: vec![builder_tag.clone()],
        build_args: [
            ("RUST_IMAGE", env.base.as_str()),
            ("PREBUILT_BINARY", "dist/airflow-mesos"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        no_cache: false,
    };
    images::build(&docker, &req, &RegistryAuth::default(), &Progress::Quiet)
        .await
        .unwrap();
    let ls = docker_cli(&[
        "run",
        "--rm",
        &builder_tag,
        "sh",
        "-c",
        "test -e /src/Cargo.toml && echo has-sources; test -e /src/registry.pem && echo has-pem; true",
    ]);
    let listing = String::from_utf8_lossy(&ls.stdout);
    assert!(listing.contains("has-sources"), "{ls:?}");
    assert!(
        !listing.contains("has-pem"),
        "a .pem got into the build context: {ls:?}"
    );
    docker_cli(&["rmi", "-f", &builder_tag]);
    docker_cli(&["rmi", "-f", &tag]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_is_reported_with_its_output_and_a_non_zero_exit() {
    let Some(env) = env() else { return };
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN echo step-one-ok\nRUN echo about-to-fail && echo on-stderr >&2 && exit 7\nRUN echo never-reached\n",
            env.busybox
        ),
    )
    .unwrap();
    let docker = connect().await.unwrap();
    let req = BuildRequest {
        context: ctx.path().to_path_buf(),
        dockerfile: ctx.path().join("Dockerfile"),
        target: None,
        tags: vec![format!("am-test/failing:{}", uuid::Uuid::new_v4().simple())],
        build_args: BTreeMap::new(),
        no_cache: true,
    };
    let e = images::build(&docker, &req, &RegistryAuth::default(), &Progress::Quiet)
        .await
        .unwrap_err();
    match &e {
        ImageError::BuildStep {
            step,
            message,
            output,
        } => {
            assert!(step.starts_with("Step 3/4"), "{step}");
            assert!(step.contains("exit 7"), "{step}");
            assert!(message.contains('7'), "{message}");
            assert!(output.contains("about-to-fail"), "{output}");
            assert!(
                !output.contains("step-one-ok"),
                "only the failing step: {output}"
            );
        }
        other => panic!("expected BuildStep, got {other}"),
    }
    assert!(e.to_string().contains("about-to-fail"));

    // Through the command: exit code 1.
    let cfg = load_config(&[("AIRFLOW_HOME", "/tmp/am-test-home")]);
    let args = ImagesArgs {
        command: ImagesCommand::Build(BuildArgs {
            target: None,
            tags: vec!["am-test/failing:cli".into()],
            build_args: vec![],
            no_cache: false,
            push: false,
            file: ctx.path().join("Dockerfile"),
            context: ctx.path().to_path_buf(),
            plain: true,
        }),
    };
    assert_eq!(run(args, &cfg).await.unwrap(), 1);

    // A Dockerfile that does not parse fails before any step, with the engine's reason.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nNOTANINSTRUCTION x\n",
    )
    .unwrap();
    let e = images::build(&docker, &req, &RegistryAuth::default(), &Progress::Quiet)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .to_ascii_lowercase()
            .contains("notaninstruction"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_an_htpasswd_registry_with_right_and_wrong_credentials() {
    let Some(env) = env() else { return };
    let docker = connect().await.unwrap();
    let repo = format!("{}/am-test/busybox-push", env.registry);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let image = format!("{repo}:{tag}");
    let out = docker_cli(&["tag", &env.busybox, &image]);
    assert!(out.status.success(), "{out:?}");

    // Wrong password: refused, the registry is named, the password is not shown.
    let wrong = "Wr0ng-Pa55-do-not-print";
    let bad = RegistryAuth {
        registry: Some(env.registry.clone()),
        username: Some(env.user.clone()),
        password: Some(Secret::new(wrong)),
        ..Default::default()
    };
    let e = images::push(&docker, &image, &bad, None, &Progress::Quiet)
        .await
        .unwrap_err();
    let msg = e.to_string();
    eprintln!("push refused as expected: {msg}");
    assert!(matches!(e, ImageError::Unauthorized { .. }), "{msg}");
    assert!(msg.contains(&env.registry), "{msg}");
    assert!(!msg.contains(wrong), "the password leaked: {msg}");
    assert!(
        !format!("{e:?}").contains(wrong),
        "the password leaked in Debug"
    );

    // Right credentials, given through the config as a user would.
    let cfg = load_config(&[
        ("AIRFLOW_HOME", "/tmp/am-test-home"),
        ("AIRFLOW__MESOS__DOCKER_REGISTRY", &env.registry),
        ("AIRFLOW__MESOS__DOCKER_REGISTRY_USERNAME", &env.user),
        ("AIRFLOW__MESOS__DOCKER_REGISTRY_PASSWORD", &env.password),
    ]);
    images::push(&docker, &image, &cfg.registry, None, &Progress::Quiet)
        .await
        .unwrap();

    // Pull it back after removing the local tag.
    docker
        .remove_image(&image, None::<RemoveImageOptions>, None)
        .await
        .unwrap();
    let r = ImageRef::parse(&image);
    let creds =
        airflow_mesos::docker::auth::credentials_for(&cfg.registry, &r.registry, None).unwrap();
    assert!(creds.is_some());
    let mut pull = docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(image.clone()),
            ..Default::default()
        }),
        None,
        creds,
    );
    while let Some(item) = pull.next().await {
        item.unwrap_or_else(|e| panic!("pull back of {image}: {e}"));
    }
    docker.inspect_image(&image).await.unwrap();
    docker_cli(&["rmi", "-f", &image]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_airflow_target_is_tagged_as_docker_image_slave_and_has_the_shim() {
    let Some(env) = env() else { return };
    let ctx = prebuilt_context();
    let slave = format!("am-test/slave:{}", uuid::Uuid::new_v4().simple());
    let cfg = load_config(&[
        ("AIRFLOW_HOME", "/tmp/am-test-home"),
        ("AIRFLOW__MESOS__DOCKER_IMAGE_SLAVE", &slave),
    ]);
    let args = ImagesArgs {
        command: ImagesCommand::Build(BuildArgs {
            target: Some("airflow".into()),
            tags: vec![],
            build_args: vec![
                format!("RUST_IMAGE={}", env.base),
                format!("RUNTIME_IMAGE={}", env.base),
                format!("AIRFLOW_IMAGE={}", env.python),
                "PREBUILT_BINARY=dist/airflow-mesos".into(),
            ],
            no_cache: false,
            push: false,
            file: ctx.path().join("docker/Dockerfile"),
            context: ctx.path().to_path_buf(),
            plain: true,
        }),
    };
    assert_eq!(
        run(args, &cfg).await.unwrap(),
        0,
        "images build --target airflow failed"
    );
    // No --tag: the image is the one docker_image_slave names, so tasks can use it as is.
    let out = docker_cli(&[
        "run",
        "--rm",
        &slave,
        "sh",
        "-c",
        "python3 -c 'import airflow_mesos_executor as m; print(\"shim\", m.__version__)' && airflow-mesos --version && id -u",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let init = std::fs::read_to_string(
        repo_root().join("examples/airflow/airflow_mesos_executor/__init__.py"),
    )
    .unwrap();
    let shim_version = init
        .lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("__version__ in the shim");
    assert!(stdout.contains(&format!("shim {shim_version}")), "{stdout}");
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("50000"),
        "runs as the airflow uid: {stdout}"
    );
    docker_cli(&["rmi", "-f", &slave]);
}

/// The full multi-stage build (Rust compile inside the builder stage) of the runtime target
/// from the repository itself. Slow (a release build of every dependency on a cold cache), so
/// not part of the default run: `AM_TEST_RUST_IMAGE` names a local Rust image
/// (`.ci/setup-docker.sh --rust` makes `am-test/rust:bookworm` from the host toolchain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: full Rust build inside Docker; run with --ignored and AM_TEST_RUST_IMAGE"]
async fn full_multi_stage_build_of_the_repository() {
    let Some(env) = env() else { return };
    let rust = std::env::var("AM_TEST_RUST_IMAGE").expect("AM_TEST_RUST_IMAGE");
    let tag = format!("am-test/full:{}", uuid::Uuid::new_v4().simple());
    let mut build_args: BTreeMap<String, String> = [
        ("RUST_IMAGE", rust.as_str()),
        ("RUNTIME_IMAGE", env.base.as_str()),
        ("VERSION", env!("CARGO_PKG_VERSION")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // A TLS-inspecting proxy's CA (public certificates only), as the Dockerfile documents.
    let extra: String = std::fs::read_dir("/usr/local/share/ca-certificates")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    if !extra.is_empty() {
        build_args.insert("EXTRA_CA_CERTS".into(), extra);
    }
    let req = BuildRequest {
        context: repo_root(),
        dockerfile: repo_root().join("docker/Dockerfile"),
        target: Some("runtime".into()),
        tags: vec![tag.clone()],
        build_args,
        no_cache: false,
    };
    let docker = connect().await.unwrap();
    let started = std::time::Instant::now();
    let built = images::build(&docker, &req, &RegistryAuth::default(), &Progress::Plain)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "full build took {:?}: {}",
        started.elapsed(),
        built.image_id
    );
    let out = docker_cli(&["run", "--rm", &tag, "--version"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{out:?}"
    );
    docker_cli(&["rmi", "-f", &tag]);
}
