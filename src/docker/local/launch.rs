//! One launch, from sandbox to exit: image pull, container creation and start, and the
//! watch that copies its output into the sandbox and reads how it ended.

use super::actor::{ExitInfo, Report};
use super::sandbox::write_sandbox;
use super::*;
use crate::config::RegistryAuth;
use crate::docker::auth::{credentials_for, ImageRef};
use crate::docker::{engine_message, is_not_found};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, InspectContainerOptions,
    LogsOptions, RemoveContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One launch, from sandbox to exit.
pub(super) struct Launch {
    pub(super) docker: Docker,
    pub(super) backend_task_id: String,
    pub(super) image: String,
    pub(super) force_pull: bool,
    pub(super) files: Vec<(String, String)>,
    pub(super) sandbox: PathBuf,
    pub(super) spec: ContainerCreateBody,
    pub(super) registry: RegistryAuth,
    pub(super) pull_timeout: Duration,
    pub(super) reports: mpsc::Sender<Report>,
    pub(super) cancel: CancellationToken,
}

impl Launch {
    pub(super) async fn run(self) {
        let id = self.backend_task_id.clone();
        let reports = self.reports.clone();
        let cancel = self.cancel.clone();
        let prepared = tokio::select! {
            _ = cancel.cancelled() => Err(None),
            r = self.prepare() => r.map_err(Some),
        };
        let (cid, attached) = match prepared {
            Ok(p) => p,
            Err(None) => {
                // The kill may have cut `prepare` after the container was created: remove it
                // so that nothing of this launch runs on.
                let _ = self
                    .docker
                    .remove_container(
                        &container_name(&id),
                        Some(RemoveContainerOptions {
                            force: true,
                            ..Default::default()
                        }),
                    )
                    .await;
                let _ = reports
                    .send(Report::Cancelled {
                        backend_task_id: id,
                    })
                    .await;
                return;
            }
            Err(Some(message)) => {
                let _ = reports
                    .send(Report::LaunchFailed {
                        backend_task_id: id,
                        message,
                    })
                    .await;
                return;
            }
        };
        let _ = reports
            .send(Report::Started {
                backend_task_id: id.clone(),
                container_id: cid.clone(),
            })
            .await;
        let exit = watch(&self.docker, &cid, &self.sandbox, attached).await;
        let _ = reports
            .send(Report::Exited {
                backend_task_id: id,
                exit,
            })
            .await;
    }

    /// Sandbox, image, container; returns the started container's id and, for a container
    /// made here, its output attached before the start (so that none of it is lost, whatever
    /// the engine's log driver keeps).
    pub(super) async fn prepare(&self) -> Result<(String, Option<Output>), String> {
        write_sandbox(&self.sandbox, &self.files)
            .await
            .map_err(|e| format!("cannot prepare the sandbox {}: {e}", self.sandbox.display()))?;
        self.ensure_image().await?;
        let name = container_name(&self.backend_task_id);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                self.spec.clone(),
            )
            .await;
        let cid = match created {
            Ok(r) => r.id,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                // Already created by an earlier run of this launch: never start it twice.
                let info = self
                    .docker
                    .inspect_container(&name, None::<InspectContainerOptions>)
                    .await
                    .map_err(|e| {
                        format!("cannot inspect container {name}: {}", engine_message(&e))
                    })?;
                let cid = info.id.unwrap_or(name.clone());
                start_if_created(&self.docker, &cid).await?;
                return Ok((cid, None));
            }
            Err(e) => {
                return Err(format!(
                    "cannot create the container for image `{}`: {}",
                    self.image,
                    engine_message(&e)
                ))
            }
        };
        let attached = match self
            .docker
            .attach_container(
                &cid,
                Some(AttachContainerOptions {
                    stdout: true,
                    stderr: true,
                    stream: true,
                    logs: false,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(a) => Some(a.output),
            Err(e) => {
                // The engine's log is the fallback (limited by its log driver).
                tracing::warn!(container = %cid, error = %engine_message(&e), "cannot attach to the container's output");
                None
            }
        };
        if let Err(e) = self.docker.start_container(&cid, None).await {
            let message = format!("cannot start the container: {}", engine_message(&e));
            let _ = self
                .docker
                .remove_container(
                    &cid,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
            return Err(message);
        }
        Ok((cid, attached))
    }

    pub(super) async fn ensure_image(&self) -> Result<(), String> {
        let present = match self.docker.inspect_image(&self.image).await {
            Ok(_) => true,
            Err(e) if is_not_found(&e) => false,
            Err(e) => {
                return Err(format!(
                    "cannot inspect image `{}`: {}",
                    self.image,
                    engine_message(&e)
                ))
            }
        };
        if present && !self.force_pull {
            return Ok(());
        }
        let r = ImageRef::parse(&self.image);
        let creds = credentials_for(&self.registry, &r.registry, None)
            .map_err(|e| format!("registry credentials for {}: {e}", r.registry))?;
        let opts = CreateImageOptions {
            from_image: Some(r.full()),
            ..Default::default()
        };
        let pull = async {
            let mut stream = self.docker.create_image(Some(opts), None, creds.clone());
            while let Some(item) = stream.next().await {
                item.map_err(|e| crate::docker::auth::redact(&engine_message(&e), creds.as_ref()))?;
            }
            Ok::<(), String>(())
        };
        let what = if present {
            "force-pulling"
        } else {
            "image is not on this machine and pulling"
        };
        match tokio::time::timeout(self.pull_timeout, pull).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(format!("{what} `{}` failed: {msg}", self.image)),
            Err(_) => Err(format!(
                "{what} `{}` did not finish within {} s",
                self.image,
                self.pull_timeout.as_secs()
            )),
        }
    }
}

/// A container's output stream (attached, or the engine's log followed).
pub(super) type Output = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>>
            + Send,
    >,
>;

/// Copies a container's output into `stdout` / `stderr` in the sandbox until it stops, then
/// reads how it ended. `attached`: the output attached before the container started, all of
/// it, whatever the engine's log driver keeps (a new launch). Without it (a container adopted
/// after a restart) the files are rewritten from the engine's log of the whole output, which
/// its log driver may have cut.
pub(super) async fn watch(
    docker: &Docker,
    cid: &str,
    sandbox: &Path,
    attached: Option<Output>,
) -> ExitInfo {
    let from_scratch = attached.is_none();
    let killed_marker = || sandbox.join(KILL_MARKER).exists();
    if let Err(e) = tokio::fs::create_dir_all(sandbox).await {
        tracing::warn!(dir = %sandbox.display(), error = %e, "cannot create the sandbox for logs");
    }
    let open = |name: &'static str| {
        let path = sandbox.join(name);
        async move {
            let mut o = tokio::fs::OpenOptions::new();
            o.create(true);
            if from_scratch {
                o.write(true).truncate(true);
            } else {
                o.append(true);
            }
            o.open(&path).await
        }
    };
    let (mut out, mut err) = (open("stdout").await.ok(), open("stderr").await.ok());
    let mut logs: Output = match attached {
        Some(a) => a,
        None => Box::pin(docker.logs(
            cid,
            Some(LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        )),
    };
    while let Some(item) = logs.next().await {
        match item {
            Ok(bollard::container::LogOutput::StdOut { message })
            | Ok(bollard::container::LogOutput::Console { message }) => {
                if let Some(f) = out.as_mut() {
                    let _ = f.write_all(&message).await;
                }
            }
            Ok(bollard::container::LogOutput::StdErr { message }) => {
                if let Some(f) = err.as_mut() {
                    let _ = f.write_all(&message).await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(container = %cid, error = %engine_message(&e), "log stream ended early");
                break;
            }
        }
    }
    for f in [out.as_mut(), err.as_mut()].into_iter().flatten() {
        let _ = f.flush().await;
    }
    // The log stream ends when the container stops; wait makes sure of it.
    let mut wait = docker.wait_container(cid, None::<WaitContainerOptions>);
    while let Some(r) = wait.next().await {
        if let Err(e) = r {
            if !matches!(e, bollard::errors::Error::DockerContainerWaitError { .. }) {
                tracing::warn!(container = %cid, error = %engine_message(&e), "waiting for a container failed");
            }
            break;
        }
    }
    match docker
        .inspect_container(cid, None::<InspectContainerOptions>)
        .await
    {
        Ok(info) => {
            let st = info.state.unwrap_or_default();
            ExitInfo {
                exit_code: st.exit_code.map(|c| c as i32),
                oom_killed: st.oom_killed.unwrap_or(false),
                error: st.error.filter(|e| !e.is_empty()),
                killed_marker: killed_marker(),
            }
        }
        Err(e) => ExitInfo {
            exit_code: None,
            oom_killed: false,
            error: Some(format!("the container disappeared: {}", engine_message(&e))),
            killed_marker: killed_marker(),
        },
    }
}

/// Starts a container that was created but never started (a previous run died in between).
pub(super) async fn start_if_created(docker: &Docker, cid: &str) -> Result<(), String> {
    let info = docker
        .inspect_container(cid, None::<InspectContainerOptions>)
        .await
        .map_err(|e| format!("cannot inspect container {cid}: {}", engine_message(&e)))?;
    let created = info
        .state
        .and_then(|s| s.status)
        .is_some_and(|s| s == bollard::models::ContainerStateStatusEnum::CREATED);
    if created {
        docker
            .start_container(cid, None)
            .await
            .map_err(|e| format!("cannot start container {cid}: {}", engine_message(&e)))?;
    }
    Ok(())
}
