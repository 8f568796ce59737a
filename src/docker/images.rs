//! `images build` and `images push` through the Docker Engine API.
//!
//! A build packs the context ([`super::context::pack`]), sends it to the engine's classic
//! builder with the target, tags and build args asked for, and follows the stream: each
//! `Step N/M : ...` line is a step, the lines after it are that step's output. When the
//! engine reports an error, [`ImageError::BuildStep`] carries the failing step and the tail of
//! its output. A push sends the credentials configured for the image's registry
//! ([`super::auth::credentials_for`]); a refusal names the registry and never the password.
//!
//! Progress goes to a [`Progress`]: an indicatif bar on a terminal, plain lines otherwise, or
//! nothing.

use super::auth::{self, credentials_for, redact, AuthError, ImageRef};
use super::context::{self, ContextError};
use super::{engine_message, ConnectError};
use crate::config::RegistryAuth;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{BuildImageOptions, PushImageOptions, TagImageOptions};
use bollard::Docker;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;

/// The crate version, used in default tags and the `VERSION` build arg.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Lines of a failing step's output kept for the error.
const KEEP_LINES: usize = 60;

/// The tag an image target gets when none is given, so that `images build --target airflow`
/// produces the image `[mesos] docker_image_slave` names (when set).
pub fn default_tag(target: &str, docker_image_slave: Option<&str>) -> String {
    match target {
        "runtime" => format!("airflow-mesos:{VERSION}"),
        "airflow" => docker_image_slave
            .map(str::to_string)
            .unwrap_or_else(|| format!("airflow-mesos-airflow:{VERSION}")),
        other => format!("airflow-mesos-{other}:{VERSION}"),
    }
}

/// True when the Dockerfile text defines a stage named `stage` (`FROM ... AS <stage>`).
pub fn has_stage(dockerfile: &str, stage: &str) -> bool {
    dockerfile.lines().any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        words.len() >= 4
            && words[0].eq_ignore_ascii_case("FROM")
            && words[words.len() - 2].eq_ignore_ascii_case("AS")
            && words[words.len() - 1].eq_ignore_ascii_case(stage)
    })
}

/// What to build.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildRequest {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile (inside or outside the context).
    pub dockerfile: PathBuf,
    /// The stage to build (`--target`); `None` builds the last stage.
    pub target: Option<String>,
    /// Tags for the result (`name:tag`); at least one is usual.
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub no_cache: bool,
}

/// A finished build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The image id (`sha256:...`).
    pub image_id: String,
    pub tags: Vec<String>,
}

/// Why an image could not be built or pushed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("build context: {0}")]
    Context(#[from] ContextError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A Dockerfile step failed: the step, what the engine said, and the step's output.
    #[error("build failed at {step}: {message}\n--- output of the failing step (last {KEEP_LINES} lines) ---\n{output}")]
    BuildStep {
        step: String,
        message: String,
        output: String,
    },
    /// The build failed before any step ran (Dockerfile syntax, missing target, ...).
    #[error("build failed: {message}")]
    Build { message: String },
    #[error("`{0}` is not a valid image tag")]
    BadTag(String),
    #[error("image {0} not found in the local engine: build it first")]
    NoSuchImage(String),
    /// The registry refused the credentials (or their absence).
    #[error("registry {registry} refused to let {who} push {image}: {message}")]
    Unauthorized {
        registry: String,
        /// `user `name`` or `an anonymous client`.
        who: String,
        image: String,
        message: String,
    },
    #[error("push of {image} to registry {registry} failed: {message}")]
    Push {
        registry: String,
        image: String,
        message: String,
    },
}

/// Where progress goes.
pub enum Progress {
    /// Nothing is shown.
    Quiet,
    /// One line per event on stderr (for logs and CI).
    Plain,
    /// An indicatif bar on the terminal.
    Bar(indicatif::ProgressBar),
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn auto() -> Progress {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{pos}/{len}] {elapsed_precise} {wide_msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            Progress::Bar(bar)
        } else {
            Progress::Plain
        }
    }

    fn step(&self, n: u64, total: u64, text: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Plain => eprintln!("{text}"),
            Progress::Bar(b) => {
                b.set_length(total);
                b.set_position(n.saturating_sub(1));
                b.set_message(text.to_string());
            }
        }
    }

    fn line(&self, text: &str) {
        match self {
            Progress::Quiet | Progress::Bar(_) => {}
            Progress::Plain => eprintln!("{text}"),
        }
    }

    fn status(&self, text: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Plain => eprintln!("{text}"),
            Progress::Bar(b) => b.set_message(text.to_string()),
        }
    }

    fn finish(&self, text: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Plain => eprintln!("{text}"),
            Progress::Bar(b) => {
                if let Some(len) = b.length() {
                    b.set_position(len);
                }
                b.finish_with_message(text.to_string());
            }
        }
    }

    fn abandon(&self) {
        if let Progress::Bar(b) = self {
            b.abandon();
        }
    }
}

/// Follows a build stream: the current step and the tail of its output.
#[derive(Debug, Default)]
struct StepTracker {
    step: Option<String>,
    output: VecDeque<String>,
    partial: String,
    image_id: Option<String>,
}

impl StepTracker {
    /// Feeds a `stream` chunk; returns the complete lines it ended.
    fn feed(&mut self, chunk: &str) -> Vec<String> {
        self.partial.push_str(chunk);
        let mut lines = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            let line = line.trim_end().to_string();
            if let Some(rest) = line.strip_prefix("Step ") {
                self.step = Some(format!("Step {rest}"));
                self.output.clear();
            } else if !line.trim().is_empty()
                && !line.starts_with(" ---> ")
                && !line.starts_with("Removing intermediate container ")
            {
                if self.output.len() == KEEP_LINES {
                    self.output.pop_front();
                }
                self.output.push_back(line.clone());
            }
            if let Some(id) = line.strip_prefix("Successfully built ") {
                self.image_id.get_or_insert_with(|| id.trim().to_string());
            }
            lines.push(line);
        }
        lines
    }

    /// `(n, total)` of the current step, from `Step n/total : ...`.
    fn numbers(&self) -> Option<(u64, u64)> {
        let s = self.step.as_deref()?.strip_prefix("Step ")?;
        let (frac, _) = s.split_once(' ').unwrap_or((s, ""));
        let (n, total) = frac.split_once('/')?;
        Some((n.parse().ok()?, total.parse().ok()?))
    }

    fn failure(&mut self, message: String) -> ImageError {
        if !self.partial.trim().is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.feed(&format!("{rest}\n"));
        }
        match self.step.take() {
            Some(step) => ImageError::BuildStep {
                step,
                message,
                output: self.output.drain(..).collect::<Vec<_>>().join("\n"),
            },
            None => ImageError::Build { message },
        }
    }
}

/// Builds an image. Credentials configured in `auth` are offered to the engine for pulls of
/// private base images (only for their own registry).
pub async fn build(
    docker: &Docker,
    req: &BuildRequest,
    auth: &RegistryAuth,
    progress: &Progress,
) -> Result<Built, ImageError> {
    for t in &req.tags {
        if t.trim().is_empty() || t.chars().any(char::is_whitespace) {
            return Err(ImageError::BadTag(t.clone()));
        }
    }
    let (ctx, df) = (req.context.clone(), req.dockerfile.clone());
    progress.status(&format!("packing build context {}", ctx.display()));
    let packed = tokio::task::spawn_blocking(move || context::pack(&ctx, &df))
        .await
        .map_err(|e| ImageError::Build {
            message: format!("packing the context panicked: {e}"),
        })??;
    progress.status(&format!(
        "sending build context ({} files, {} KiB)",
        packed.entries.len(),
        packed.tar.len() / 1024
    ));

    let mut registry_creds: HashMap<String, DockerCredentials> = HashMap::new();
    if let Some(host) = auth.registry.as_deref() {
        if let Some(c) = credentials_for(auth, host, None)? {
            registry_creds.insert(auth::normalize_host(host), c);
        }
    }

    let mut opts = BuildImageOptions {
        dockerfile: packed.dockerfile.clone(),
        t: req.tags.first().cloned(),
        nocache: req.no_cache,
        rm: true,
        forcerm: true,
        target: req.target.clone().unwrap_or_default(),
        ..Default::default()
    };
    if !req.build_args.is_empty() {
        opts.buildargs = Some(req.build_args.clone().into_iter().collect());
    }
    let creds = (!registry_creds.is_empty()).then_some(registry_creds);
    let mut stream = docker.build_image(
        opts,
        creds,
        Some(bollard::body_full(bytes::Bytes::from(packed.tar))),
    );
    let mut tracker = StepTracker::default();
    let mut aux_id = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(s) = info.stream.as_deref() {
                    for line in tracker.feed(s) {
                        if line.starts_with("Step ") {
                            let (n, total) = tracker.numbers().unwrap_or((0, 0));
                            progress.step(n, total, &line);
                        } else {
                            progress.line(&line);
                        }
                    }
                }
                if let Some(status) = info.status.as_deref() {
                    progress.line(status);
                }
                if let Some(id) = info.aux.as_ref().and_then(|a| a.id.clone()) {
                    aux_id = Some(id);
                }
            }
            Err(e) => {
                progress.abandon();
                return Err(tracker.failure(engine_message(&e)));
            }
        }
    }
    let image_id = match aux_id.or(tracker.image_id.clone()) {
        Some(id) => id,
        None => {
            progress.abandon();
            return Err(
                tracker.failure("the engine ended the build without an image id".to_string())
            );
        }
    };
    for extra in req.tags.iter().skip(1) {
        let r = ImageRef::parse(extra);
        docker
            .tag_image(
                &image_id,
                Some(TagImageOptions {
                    repo: Some(r.repository.clone()),
                    tag: r.tag.clone(),
                }),
            )
            .await
            .map_err(|e| ImageError::Build {
                message: format!("tagging {image_id} as {extra}: {}", engine_message(&e)),
            })?;
    }
    progress.finish(&format!("built {image_id} {}", req.tags.join(" ")));
    Ok(Built {
        image_id,
        tags: req.tags.clone(),
    })
}

/// Pushes `image` (`[host/]repo[:tag]`) with the credentials configured for its registry
/// (`fallback_config`: a docker `config.json` to consult when `auth` has none for it).
pub async fn push(
    docker: &Docker,
    image: &str,
    auth: &RegistryAuth,
    fallback_config: Option<&std::path::Path>,
    progress: &Progress,
) -> Result<(), ImageError> {
    let r = ImageRef::parse(image);
    let full = r.full();
    if let Err(e) = docker.inspect_image(&full).await {
        return Err(if super::is_not_found(&e) {
            ImageError::NoSuchImage(full)
        } else {
            ImageError::Push {
                registry: r.registry.clone(),
                image: full,
                message: engine_message(&e),
            }
        });
    }
    let creds = credentials_for(auth, &r.registry, fallback_config)?;
    let who = match creds.as_ref().and_then(|c| c.username.clone()) {
        Some(u) => format!("user `{u}`"),
        None => "an anonymous client".to_string(),
    };
    progress.status(&format!("pushing {full} to {} as {who}", r.registry));
    let mut stream = docker.push_image(
        &r.repository,
        Some(PushImageOptions {
            tag: r.tag.clone(),
            ..Default::default()
        }),
        creds.clone(),
    );
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(status) = info.status.as_deref() {
                    progress.line(&redact(status, creds.as_ref()));
                }
            }
            Err(e) => {
                progress.abandon();
                let message = redact(&engine_message(&e), creds.as_ref());
                let lower = message.to_ascii_lowercase();
                let refused = lower.contains("unauthorized")
                    || lower.contains("authentication required")
                    || lower.contains("denied")
                    || lower.contains("401");
                return Err(if refused {
                    ImageError::Unauthorized {
                        registry: r.registry.clone(),
                        who,
                        image: full,
                        message,
                    }
                } else {
                    ImageError::Push {
                        registry: r.registry.clone(),
                        image: full,
                        message,
                    }
                });
            }
        }
    }
    progress.finish(&format!("pushed {full}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tags_agree_with_docker_image_slave() {
        assert_eq!(
            default_tag("runtime", Some("x")),
            format!("airflow-mesos:{VERSION}")
        );
        assert_eq!(
            default_tag("airflow", Some("reg:5000/af:1")),
            "reg:5000/af:1"
        );
        assert_eq!(
            default_tag("airflow", None),
            format!("airflow-mesos-airflow:{VERSION}")
        );
        assert_eq!(
            default_tag("builder", None),
            format!("airflow-mesos-builder:{VERSION}")
        );
    }

    #[test]
    fn tracker_keeps_the_failing_step_and_its_output() {
        let mut t = StepTracker::default();
        t.feed("Step 1/3 : FROM x\n ---> abc\nStep 2/3 : RUN ech");
        t.feed("o hi && exit 3\n ---> Running in 123\nhi\nRemoving intermediate container 123\n");
        assert_eq!(t.numbers(), Some((2, 3)));
        t.feed("partial line without newline");
        match t.failure("The command returned a non-zero code: 3".into()) {
            ImageError::BuildStep {
                step,
                output,
                message,
            } => {
                assert_eq!(step, "Step 2/3 : RUN echo hi && exit 3");
                assert!(output.contains("hi"), "{output}");
                assert!(output.contains("partial line"), "{output}");
                assert!(!output.contains("Running in"), "{output}");
                assert!(!output.contains("Removing intermediate"), "{output}");
                assert!(message.contains("non-zero code: 3"));
            }
            other => panic!("{other}"),
        }
        let mut t = StepTracker::default();
        assert!(matches!(
            t.failure("dockerfile parse error".into()),
            ImageError::Build { .. }
        ));
    }

    #[test]
    fn stages_are_found() {
        let df = "ARG X=1\nFROM ${X} AS builder\nfrom debian as Runtime\nFROM scratch\n";
        assert!(has_stage(df, "builder"));
        assert!(has_stage(df, "runtime"));
        assert!(!has_stage(df, "airflow"));
        assert!(!has_stage("FROM runtime\n", "runtime"));
    }

    #[test]
    fn tracker_reads_the_image_id() {
        let mut t = StepTracker::default();
        t.feed("Successfully built 0123abcd\nSuccessfully tagged x:1\n");
        assert_eq!(t.image_id.as_deref(), Some("0123abcd"));
    }
}
