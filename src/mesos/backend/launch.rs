//! What a launch carries besides its TaskInfo: the signed fetch URIs of its sandbox files, its
//! secret environment and the registry credentials, registered right before the ACCEPT.

use super::*;

/// What a launch needs besides its task: registry material prepared once per backend, and the
/// daemon's sandbox files (whose URLs the agents fetch).
pub(super) struct LaunchMaterial {
    files: Arc<OneTimeFiles>,
    registry: RegistryAuth,
    send_registry_credentials: bool,
    docker_config: Option<Secret>,
    docker_parameters: Vec<(String, String)>,
    policy: Policy,
}

/// A launch that cannot get its fetch URIs, or that the policy forbids.
#[derive(Debug, thiserror::Error)]
pub(super) enum LaunchPrepError {
    #[error("task {task}: {error}")]
    Forbidden { task: String, error: PolicyError },
    #[error(
        "task {task}: sandbox files and secret_env need [mesos] public_url (the address agents \
         fetch them from)"
    )]
    NoPublicUrlForFiles { task: String },
    #[error(
        "task {task}: registry credentials for the Docker containerizer need [mesos] public_url, \
         a docker registry credentials URI, or [mesos] send_registry_credentials = False with \
         the credentials on the agents (--docker_config)"
    )]
    NoPublicUrlForCredentials { task: String },
}

/// Shell line that exports the secret environment fetched into the sandbox, then removes it.
pub(super) fn secret_env_prelude() -> String {
    let file = format!("\"$MESOS_SANDBOX/{SECRET_ENV_FILE}\"");
    format!(". {file} && rm -f {file}")
}

/// Shell line that removes the registry credentials the Docker containerizer pulled with.
pub(super) const REMOVE_CREDENTIALS: &str =
    "rm -rf \"$MESOS_SANDBOX/.docker\" \"$MESOS_SANDBOX/docker.tar.gz\"";

impl LaunchMaterial {
    pub(super) fn new(
        cfg: &MesosBackendConfig,
        files: Arc<OneTimeFiles>,
    ) -> Result<LaunchMaterial, RegistryError> {
        Ok(LaunchMaterial {
            files,
            registry: cfg.registry.clone(),
            send_registry_credentials: cfg.send_registry_credentials,
            docker_config: registry::docker_config_json(&cfg.registry)?,
            docker_parameters: cfg.docker_parameters.clone(),
            policy: cfg.policy.clone(),
        })
    }

    pub(super) fn context(&self, t: &LaunchTask) -> Result<LaunchContext, LaunchPrepError> {
        let attempt = &t.backend_task_id;
        self.policy
            .check(&t.spec)
            .map_err(|error| LaunchPrepError::Forbidden {
                task: attempt.clone(),
                error,
            })?;
        let files_url = |slot: Slot, name: &str| {
            self.files.url(attempt, slot, name).ok_or_else(|| {
                LaunchPrepError::NoPublicUrlForFiles {
                    task: attempt.clone(),
                }
            })
        };
        let mut ctx = LaunchContext::default();
        for (i, f) in t.spec.files.iter().enumerate() {
            let name = f.path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("file");
            ctx.uris.push(FetchUri {
                value: files_url(Slot::File(i), name)?,
                extract: false,
                executable: false,
                output_file: Some(f.path.clone()),
            });
        }
        if !t.spec.secret_env.is_empty() {
            ctx.uris.push(FetchUri {
                value: files_url(Slot::SecretEnv, SECRET_ENV_FILE)?,
                extract: false,
                executable: false,
                output_file: Some(SECRET_ENV_FILE.to_string()),
            });
            ctx.prelude.push(secret_env_prelude());
        }
        let creds = self.send_registry_credentials
            && (self.docker_config.is_some() || self.registry.credentials_uri.is_some())
            && registry::applies_to(&self.registry, &t.image);
        if creds {
            match t.containerizer {
                Containerizer::Docker => {
                    let value = match &self.registry.credentials_uri {
                        Some(uri) => uri.clone(),
                        None if self.files.registry_tar().is_some() => self
                            .files
                            .url(attempt, Slot::RegistryConfig, "docker.tar.gz")
                            .ok_or_else(|| LaunchPrepError::NoPublicUrlForCredentials {
                                task: attempt.clone(),
                            })?,
                        None => String::new(),
                    };
                    if !value.is_empty() {
                        ctx.uris.push(FetchUri {
                            value,
                            extract: true,
                            executable: false,
                            output_file: None,
                        });
                        // Pulled by now: out of the sandbox (and of the agent's /files API)
                        // before the command runs, whenever the command runs through a shell.
                        if t.shell || !ctx.prelude.is_empty() {
                            ctx.prelude.insert(0, REMOVE_CREDENTIALS.to_string());
                        }
                    }
                }
                Containerizer::Mesos => ctx.docker_config = self.docker_config.clone(),
                Containerizer::None => {}
            }
        }
        if t.containerizer == Containerizer::Docker {
            ctx.docker_parameters = self.docker_parameters.clone();
            ctx.docker_parameters.extend(
                t.spec
                    .docker_parameters
                    .iter()
                    .map(|p| (p.key.trim_start_matches('-').to_string(), p.value.clone())),
            );
        }
        Ok(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesos::backend::tests::cfg;
    use crate::scheduler::types::{Flavour, Quantity, Resource};
    use crate::task::{NetworkMode, SandboxFile, TaskSpec};
    use std::collections::BTreeMap;

    fn task(containerizer: Containerizer, image: &str, files: Vec<SandboxFile>) -> LaunchTask {
        LaunchTask {
            task_id: "t".into(),
            backend_task_id: "t.1".into(),
            attempt: 1,
            name: "t".into(),
            agent_id: "S".into(),
            resources: vec![Resource {
                name: "cpus".into(),
                quantity: Quantity::Scalar(1),
                flavour: Flavour::plain("x"),
            }],
            image: image.into(),
            containerizer,
            network: NetworkMode::Host,
            port_mappings: vec![],
            force_pull: false,
            kill_grace_secs: 1.0,
            labels: BTreeMap::new(),
            shell: true,
            spec: TaskSpec {
                files,
                ..TaskSpec::default()
            },
        }
    }

    fn material(registry: RegistryAuth, base: Option<&str>) -> (LaunchMaterial, Arc<OneTimeFiles>) {
        let tar = registry::served_docker_tar_gz(&registry).unwrap();
        let files = Arc::new(OneTimeFiles::new(base.map(str::to_string), b"key", tar));
        let mut c = cfg();
        c.registry = registry;
        c.docker_parameters = vec![("group-add".into(), "999".into())];
        (LaunchMaterial::new(&c, files.clone()).unwrap(), files)
    }

    fn creds() -> RegistryAuth {
        RegistryAuth {
            registry: Some("reg.example.com".into()),
            username: Some("u".into()),
            password: Some(Secret::new("pw")),
            ..Default::default()
        }
    }

    /// The slot a fetch URL names, checked as the API checks it.
    fn served_slot(files: &OneTimeFiles, url: &str) -> Option<Slot> {
        let p: Vec<&str> = url.split('/').collect();
        files.verify(p[5], p[6], p[7], p[8])
    }

    #[test]
    fn sandbox_files_become_signed_fetch_uris() {
        let (m, files) = material(RegistryAuth::default(), Some("http://daemon:11000"));
        let t = task(
            Containerizer::Docker,
            "img",
            vec![SandboxFile {
                path: "conf/workload.json".into(),
                content: "{\"secret\":1}".into(),
            }],
        );
        let ctx = m.context(&t).unwrap();
        assert_eq!(ctx.uris.len(), 1);
        let u = &ctx.uris[0];
        assert!(
            u.value.starts_with("http://daemon:11000/v1/files/t.1/f0/"),
            "{}",
            u.value
        );
        assert!(u.value.ends_with("/workload.json"), "{}", u.value);
        assert_eq!(served_slot(&files, &u.value), Some(Slot::File(0)));
        assert!(!u.extract);
        assert_eq!(u.output_file.as_deref(), Some("conf/workload.json"));
        assert!(ctx.docker_config.is_none());
        assert!(ctx.prelude.is_empty());
        assert_eq!(
            ctx.docker_parameters,
            vec![("group-add".to_string(), "999".to_string())]
        );
        // Without a public URL the launch cannot get its files.
        let (m, _) = material(RegistryAuth::default(), None);
        assert!(matches!(
            m.context(&t),
            Err(LaunchPrepError::NoPublicUrlForFiles { .. })
        ));
    }

    #[test]
    fn the_policy_is_checked_again_before_the_task_info_is_built() {
        let (m, _) = material(RegistryAuth::default(), Some("http://daemon:11000"));
        let mut t = task(Containerizer::Docker, "reg.example.com/airflow:2", vec![]);
        t.spec.user = Some("postgres".into());
        let e = m.context(&t).unwrap_err().to_string();
        assert!(e.contains("user") && e.contains("allowed_users"), "{e}");
        t.spec.user = None;
        t.spec.docker_parameters = vec![crate::task::DockerParameter {
            key: "shm-size".into(),
            value: "1g".into(),
        }];
        let e = m.context(&t).unwrap_err().to_string();
        assert!(e.contains("allowed_docker_parameters"), "{e}");
        // Allowed: after the configured ones, in DockerInfo.parameters.
        let mut c = cfg();
        c.docker_parameters = vec![("group-add".into(), "999".into())];
        c.policy.docker_parameters = Some(vec!["shm-size".into()]);
        let files = Arc::new(OneTimeFiles::new(None, b"key", None));
        let m = LaunchMaterial::new(&c, files).unwrap();
        let ctx = m.context(&t).unwrap();
        assert_eq!(
            ctx.docker_parameters,
            vec![
                ("group-add".to_string(), "999".to_string()),
                ("shm-size".to_string(), "1g".to_string())
            ]
        );
    }

    #[test]
    fn secret_env_is_fetched_and_exported_by_the_shell_never_put_in_the_task_info() {
        let (m, files) = material(creds(), Some("http://daemon:11000"));
        let mut t = task(Containerizer::Docker, "reg.example.com/airflow:2", vec![]);
        t.spec.command = Some(crate::task::Command::Argv(vec![
            "airflow".into(),
            "tasks".into(),
        ]));
        t.shell = false;
        t.spec
            .secret_env
            .insert("DB_PASSWORD".into(), "hunter2".into());
        let ctx = m.context(&t).unwrap();
        let env_uri = ctx
            .uris
            .iter()
            .find(|u| u.output_file.as_deref() == Some(SECRET_ENV_FILE))
            .expect("the secret environment is fetched");
        assert_eq!(served_slot(&files, &env_uri.value), Some(Slot::SecretEnv));
        // The credentials are removed first, then the secrets exported (and their file removed).
        assert_eq!(ctx.prelude[0], REMOVE_CREDENTIALS);
        assert!(ctx.prelude[1].starts_with(". \"$MESOS_SANDBOX/"));
        let mut resources_ok = t.clone();
        resources_ok.resources.clear();
        let info = convert::task_info(&resources_ok, &ctx).unwrap();
        let cmd = info.command.as_ref().unwrap();
        assert_eq!(cmd.shell, Some(true));
        assert!(
            cmd.value
                .as_deref()
                .unwrap()
                .ends_with("\nexec airflow tasks"),
            "{:?}",
            cmd.value
        );
        let bytes = prost::Message::encode_to_vec(&info);
        assert!(!bytes.windows(7).any(|w| w == b"hunter2"));
        assert!(!bytes.windows(11).any(|w| w == b"DB_PASSWORD"));
    }

    #[test]
    fn docker_containerizer_fetches_a_docker_tar_gz_with_the_credentials() {
        let (m, files) = material(creds(), Some("http://daemon:11000"));
        let mut t = task(Containerizer::Docker, "reg.example.com/airflow:2", vec![]);
        t.spec.command = Some(crate::task::Command::Shell("echo hi".into()));
        let ctx = m.context(&t).unwrap();
        assert_eq!(ctx.uris.len(), 1);
        assert!(ctx.uris[0].value.ends_with("/docker.tar.gz"));
        assert!(ctx.uris[0].extract);
        assert!(ctx.docker_config.is_none());
        assert_eq!(
            served_slot(&files, &ctx.uris[0].value),
            Some(Slot::RegistryConfig)
        );
        assert_eq!(&files.registry_tar().unwrap()[..2], &[0x1f, 0x8b]);
        // A shell command removes them from the sandbox before it runs.
        assert_eq!(ctx.prelude, vec![REMOVE_CREDENTIALS.to_string()]);
        // An argv runs as the image's ENTRYPOINT sees it: no shell, so nothing removes them.
        let mut argv = t.clone();
        argv.shell = false;
        argv.spec.command = Some(crate::task::Command::Argv(vec!["true".into()]));
        assert!(m.context(&argv).unwrap().prelude.is_empty());
        // An image from another registry gets no credentials.
        let other = task(Containerizer::Docker, "apache/airflow:2", vec![]);
        assert!(m.context(&other).unwrap().uris.is_empty());
        // A pre-made URI wins and needs no public URL.
        let mut r = creds();
        r.credentials_uri = Some("http://store/docker.tar.gz".into());
        let (m, _) = material(r, None);
        let ctx = m.context(&t).unwrap();
        assert_eq!(ctx.uris[0].value, "http://store/docker.tar.gz");
        assert!(ctx.uris[0].extract);
        // Credentials but nowhere to serve them from: a clear error.
        let (m, _) = material(creds(), None);
        assert!(matches!(
            m.context(&t),
            Err(LaunchPrepError::NoPublicUrlForCredentials { .. })
        ));
        // Agents with their own credentials: none sent, none needed.
        let mut c = cfg();
        c.registry = creds();
        c.send_registry_credentials = false;
        let m = LaunchMaterial::new(&c, files.clone()).unwrap();
        let ctx = m.context(&t).unwrap();
        assert!(ctx.uris.is_empty() && ctx.prelude.is_empty());
        let mut mesos = t.clone();
        mesos.containerizer = Containerizer::Mesos;
        assert!(m.context(&mesos).unwrap().docker_config.is_none());
    }

    #[test]
    fn mesos_containerizer_gets_the_config_json_and_no_fetch() {
        let (m, _files) = material(creds(), Some("http://daemon:11000"));
        let t = task(Containerizer::Mesos, "reg.example.com/airflow:2", vec![]);
        let ctx = m.context(&t).unwrap();
        assert!(ctx.uris.is_empty());
        let json: serde_json::Value =
            serde_json::from_str(ctx.docker_config.unwrap().expose()).unwrap();
        assert!(json["auths"]["reg.example.com"]["auth"].is_string());
        assert!(
            ctx.docker_parameters.is_empty(),
            "docker run parameters are Docker-only"
        );
    }
}
