//! The whole configuration, one step per concern (framework, task defaults, registry, daemon,
//! API), then the task policy; each step reads its keys through the typed getters of [`Cx`].

use super::*;

/// The Mesos master and the framework: where to subscribe, as whom, and with what the operator API takes.
pub(super) struct Framework {
    master: MasterAddr,
    master_configured: bool,
    mesos_ssl: bool,
    framework_name: String,
    framework_user: String,
    framework_role: String,
    checkpoint: bool,
    failover_timeout: f64,
    authenticate: bool,
    default_principal: Option<String>,
    default_secret: Option<Secret>,
    mesos_attributes: Vec<String>,
    mesos_fetch_uri: Option<String>,
    mesos_fetch_uri_username: Option<String>,
    api_username: Option<String>,
    api_password: Option<Secret>,
    mesos_ca_cert: Option<PathBuf>,
}

/// What a task gets when it does not say: resources, image, command form, Docker settings, kill grace and launch retries.
pub(super) struct TaskDefaults {
    task_cpu: f64,
    task_memory: f64,
    task_disk: f64,
    docker_image_slave: Option<String>,
    command_shell: bool,
    docker_network_mode: NetworkMode,
    docker_volumes: Vec<DefaultVolume>,
    docker_sock: Option<String>,
    docker_user_group_id: Option<String>,
    docker_environment: Vec<(String, String)>,
    docker_privileged: bool,
    force_pull: bool,
    kill_grace_period: f64,
    launch_retries: u32,
}

/// The private registry and how its credentials reach the agents.
pub(super) struct Registry {
    registry: Option<String>,
    registry_username: Option<String>,
    registry_password: Option<Secret>,
    docker_config: Option<PathBuf>,
    credentials_uri: Option<String>,
    send_registry_credentials: bool,
}

/// The daemon itself: backend, state database, scheduling intervals, the local machine and high availability.
pub(super) struct Daemon {
    backend: Backend,
    containerizer: Containerizer,
    database_url: String,
    reconciliation_interval: f64,
    offer_refuse_seconds: f64,
    queued_timeout: f64,
    store_outage_limit: f64,
    local_cpus: Option<f64>,
    local_memory: Option<f64>,
    sandbox_dir: PathBuf,
    sandbox_retention: f64,
    task_retention: f64,
    leader_election: bool,
    leader_lease: f64,
}

/// The API: where it listens, its limits and timeouts, its token, and how clients and browsers reach it.
pub(super) struct Api {
    api_listen: SocketAddr,
    api_max_connections: usize,
    api_header_timeout: f64,
    api_idle_timeout: f64,
    api_body_timeout: f64,
    api_token: Option<Secret>,
    api_token_file: PathBuf,
    api_url: String,
    public_url: Option<String>,
    allowed_origins: Vec<String>,
}

impl Cx<'_> {
    // ----- the whole configuration -----

    pub(super) fn build(&mut self, path: Option<PathBuf>) -> Config {
        let airflow_home = airflow_home(self.env);
        let fw = self.framework();
        let tasks = self.tasks();
        let reg = self.registry();
        let daemon = self.daemon(&airflow_home, fw.master_configured);
        let api = self.api(&airflow_home);
        let policy = self.policy(
            &fw.framework_user,
            &tasks.docker_network_mode,
            tasks.docker_image_slave.as_deref(),
            daemon.containerizer,
            [
                ("task_cpu", tasks.task_cpu),
                ("task_memory", tasks.task_memory),
                ("task_disk", tasks.task_disk),
            ],
        );
        Config {
            path,
            airflow_home,
            master: fw.master,
            framework_name: fw.framework_name,
            framework_user: fw.framework_user,
            task_cpu: tasks.task_cpu,
            task_memory: tasks.task_memory,
            checkpoint: fw.checkpoint,
            failover_timeout: fw.failover_timeout,
            authenticate: fw.authenticate,
            default_principal: fw.default_principal,
            default_secret: fw.default_secret,
            docker_image_slave: tasks.docker_image_slave,
            mesos_ssl: fw.mesos_ssl,
            framework_role: fw.framework_role,
            task_disk: tasks.task_disk,
            command_shell: tasks.command_shell,
            docker_network_mode: tasks.docker_network_mode,
            docker_volumes: tasks.docker_volumes,
            docker_sock: tasks.docker_sock,
            docker_user_group_id: tasks.docker_user_group_id,
            docker_environment: tasks.docker_environment,
            mesos_attributes: fw.mesos_attributes,
            mesos_fetch_uri: fw.mesos_fetch_uri,
            mesos_fetch_uri_username: fw.mesos_fetch_uri_username,
            api_username: fw.api_username,
            api_password: fw.api_password,
            backend: daemon.backend,
            containerizer: daemon.containerizer,
            database_url: daemon.database_url,
            api_listen: api.api_listen,
            api_max_connections: api.api_max_connections,
            api_header_timeout: api.api_header_timeout,
            api_body_timeout: api.api_body_timeout,
            api_idle_timeout: api.api_idle_timeout,
            api_token: api.api_token,
            api_token_file: api.api_token_file,
            api_url: api.api_url,
            public_url: api.public_url,
            registry: RegistryAuth {
                registry: reg.registry,
                username: reg.registry_username,
                password: reg.registry_password,
                docker_config: reg.docker_config,
                credentials_uri: reg.credentials_uri,
            },
            send_registry_credentials: reg.send_registry_credentials,
            force_pull: tasks.force_pull,
            kill_grace_period: tasks.kill_grace_period,
            launch_retries: tasks.launch_retries,
            reconciliation_interval: daemon.reconciliation_interval,
            offer_refuse_seconds: daemon.offer_refuse_seconds,
            store_outage_limit: daemon.store_outage_limit,
            queued_timeout: daemon.queued_timeout,
            mesos_ca_cert: fw.mesos_ca_cert,
            docker_privileged: tasks.docker_privileged,
            local_cpus: daemon.local_cpus,
            local_memory: daemon.local_memory,
            sandbox_dir: daemon.sandbox_dir,
            sandbox_retention: daemon.sandbox_retention,
            task_retention: daemon.task_retention,
            leader_election: daemon.leader_election,
            leader_lease: daemon.leader_lease,
            policy,
            allowed_origins: api.allowed_origins,
        }
    }

    /// The Mesos master and the framework: where to subscribe, as whom, and with what the operator API takes.
    pub(super) fn framework(&mut self) -> Framework {
        let mesos_ssl = self.boolean("mesos_ssl", defaults::MESOS_SSL);
        let master = self.typed("master", None, Some(DEFAULT_MASTER.into()), |t| {
            parse_master(t, mesos_ssl).map_err(|why| format!("{MASTER_EXPECTED} — {why}"))
        });
        let master_configured = self.is_set("master");
        let master = master.unwrap_or_else(|| {
            parse_master(DEFAULT_MASTER, mesos_ssl).expect("the default master parses")
        });
        let framework_name = self.text_or("framework_name", defaults::FRAMEWORK_NAME);
        let checkpoint = self.boolean("checkpoint", defaults::CHECKPOINT);
        let failover_timeout = self
            .number(
                "failover_timeout",
                Some(defaults::FAILOVER_TIMEOUT),
                Bound::NonNegative,
                "seconds (e.g. 604800 for a week)",
            )
            .unwrap_or(defaults::FAILOVER_TIMEOUT);
        let authenticate = self.boolean("authenticate", defaults::AUTHENTICATE);
        let default_principal = self.text("default_principal");
        let default_secret = self.secret("default_secret");
        if authenticate {
            let missing: Vec<&str> = [
                ("default_principal", default_principal.is_none()),
                ("default_secret", default_secret.is_none()),
            ]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(k, _)| *k)
            .collect();
            if !missing.is_empty() {
                self.requires(
                    "authenticate",
                    format!(
                        "= True requires [mesos] default_principal and [mesos] default_secret \
                         (missing: {})",
                        missing.join(", ")
                    ),
                );
            }
        }

        let framework_role = self
            .typed(
                "framework_role",
                Some(defaults::FRAMEWORK_ROLE.to_string()),
                Some(defaults::FRAMEWORK_ROLE.into()),
                parse_role,
            )
            .unwrap_or_else(|| defaults::FRAMEWORK_ROLE.into());
        let mesos_attributes = self
            .typed(
                "mesos_attributes",
                Some(Vec::new()),
                Some("[]".into()),
                parse_attributes,
            )
            .unwrap_or_default();
        let mesos_fetch_uri = self.text("mesos_fetch_uri");
        let mesos_fetch_uri_username = self.text("mesos_fetch_uri_username");
        let api_username = self.text("api_username");
        let api_password = self.secret("api_password");
        if api_username.is_some() != api_password.is_some() {
            let (set, unset) = if api_username.is_some() {
                ("api_username", "api_password")
            } else {
                ("api_password", "api_username")
            };
            self.requires(set, format!("needs [mesos] {unset} as well"));
        }
        if self.text("operator_api_url").is_some() {
            let place = self.at(self.source_of("operator_api_url"));
            self.warnings.push(format!(
                "{place}: [mesos] operator_api_url is accepted for compatibility with the AVENTER \
                 provider and ignored (clients use [mesos] api_url)"
            ));
        }

        let default_user = self
            .env
            .get("USER")
            .filter(|u| !u.is_empty())
            .cloned()
            .unwrap_or_else(|| "root".into());
        let framework_user = self.text_or("framework_user", &default_user);
        let system = self.system;
        let mesos_ca_cert = self.typed("mesos_ca_cert", None, None, |t| {
            existing_file(system, "PEM CA certificate", t)
        });
        Framework {
            master,
            master_configured,
            mesos_ssl,
            framework_name,
            framework_user,
            framework_role,
            checkpoint,
            failover_timeout,
            authenticate,
            default_principal,
            default_secret,
            mesos_attributes,
            mesos_fetch_uri,
            mesos_fetch_uri_username,
            api_username,
            api_password,
            mesos_ca_cert,
        }
    }

    /// What a task gets when it does not say: resources, image, command form, Docker settings, kill grace and launch retries.
    pub(super) fn tasks(&mut self) -> TaskDefaults {
        let task_cpu = self
            .number(
                "task_cpu",
                Some(defaults::TASK_CPU),
                Bound::AtLeast(crate::task::spec::MIN_CPUS),
                "CPUs (e.g. 1 or 0.5)",
            )
            .unwrap_or(defaults::TASK_CPU);
        let task_memory = self
            .number(
                "task_memory",
                Some(defaults::TASK_MEMORY),
                Bound::AtLeast(crate::task::spec::MIN_MEM_MB),
                "MB (e.g. 256 or 1024.5)",
            )
            .unwrap_or(defaults::TASK_MEMORY);
        let task_disk = self
            .number(
                "task_disk",
                Some(defaults::TASK_DISK),
                Bound::NonNegative,
                "MB (0 = no disk requested)",
            )
            .unwrap_or(defaults::TASK_DISK);
        let docker_image_slave = self.text_unquoted("docker_image_slave");
        let command_shell = self.boolean("command_shell", defaults::COMMAND_SHELL);
        let docker_network_mode = self
            .typed(
                "docker_network_mode",
                Some(NetworkMode::Host),
                Some("host".into()),
                |t| {
                    NetworkMode::parse(t).ok_or_else(|| {
                        "a Docker network mode: host, bridge, none or user:<network name> (any case)".into()
                    })
                },
            )
            .unwrap_or(NetworkMode::Host);
        let docker_volume_driver = self.text_unquoted("docker_volume_driver");
        let mut docker_volumes = Vec::new();
        for (name_key, path_key) in [
            ("docker_volume_dag_name", "docker_volume_dag_container_path"),
            (
                "docker_volume_logs_name",
                "docker_volume_logs_container_path",
            ),
        ] {
            let name = self.text_unquoted(name_key);
            let container_path = self.typed(path_key, None, None, |t| {
                let t = t
                    .strip_prefix('"')
                    .and_then(|r| r.strip_suffix('"'))
                    .unwrap_or(t);
                if t.starts_with('/') {
                    Ok(t.to_string())
                } else {
                    Err("an absolute path inside the container (e.g. /opt/airflow/dags)".into())
                }
            });
            match (name, container_path) {
                (Some(name), Some(container_path)) => docker_volumes.push(DefaultVolume {
                    name,
                    container_path,
                    driver: docker_volume_driver.clone(),
                }),
                (Some(_), None) if !self.is_set(path_key) => self.requires(
                    name_key,
                    format!("needs [mesos] {path_key} (where to mount the volume)"),
                ),
                (None, Some(_)) => self.requires(
                    path_key,
                    format!("needs [mesos] {name_key} (which volume to mount)"),
                ),
                _ => {}
            }
        }
        let docker_sock = self.text("docker_sock");
        let docker_user_group_id = self.text("docker_user_group_id");
        let docker_environment = self
            .typed(
                "docker_environment",
                Some(Vec::new()),
                Some("[]".into()),
                parse_docker_env,
            )
            .unwrap_or_default();
        if !docker_environment.is_empty() {
            // Show the names only: values are often credentials.
            let names: Vec<String> = docker_environment
                .iter()
                .map(|(n, _)| format!("{n}=***"))
                .collect();
            if let Some(e) = self.entries.get_mut("docker_environment") {
                e.value = Some(names.join(", "));
            }
        }
        let docker_privileged = self.boolean("docker_privileged", defaults::DOCKER_PRIVILEGED);
        let force_pull = self.boolean("force_pull", defaults::FORCE_PULL);
        let kill_grace_period = self
            .typed(
                "kill_grace_period",
                Some(defaults::KILL_GRACE_PERIOD),
                Some(defaults::KILL_GRACE_PERIOD.to_string()),
                |t| match parse_number(t, Bound::NonNegative, "seconds") {
                    Ok(v) if v <= MAX_KILL_GRACE_SECS => Ok(v),
                    _ => Err(format!(
                        "a number of seconds from 0 to {MAX_KILL_GRACE_SECS}"
                    )),
                },
            )
            .unwrap_or(defaults::KILL_GRACE_PERIOD);
        let launch_retries = self
            .typed(
                "launch_retries",
                Some(defaults::LAUNCH_RETRIES),
                Some(defaults::LAUNCH_RETRIES.to_string()),
                |t| {
                    t.parse::<u32>()
                        .map_err(|_| "a whole number of retries, 0 or more".to_string())
                },
            )
            .unwrap_or(defaults::LAUNCH_RETRIES);
        TaskDefaults {
            task_cpu,
            task_memory,
            task_disk,
            docker_image_slave,
            command_shell,
            docker_network_mode,
            docker_volumes,
            docker_sock,
            docker_user_group_id,
            docker_environment,
            docker_privileged,
            force_pull,
            kill_grace_period,
            launch_retries,
        }
    }

    /// The private registry and how its credentials reach the agents.
    pub(super) fn registry(&mut self) -> Registry {
        let registry = self.typed("docker_registry", None, None, parse_registry);
        let registry_username = self.text("docker_registry_username");
        let registry_password = self.secret("docker_registry_password");
        if registry_username.is_some() != registry_password.is_some() {
            let (set, unset) = if registry_username.is_some() {
                ("docker_registry_username", "docker_registry_password")
            } else {
                ("docker_registry_password", "docker_registry_username")
            };
            self.requires(
                set,
                format!("needs [mesos] {unset} (or its _cmd/_secret variant) as well"),
            );
        }
        let system = self.system;
        let docker_config = self.typed("docker_config", None, None, |t| {
            existing_file(system, "docker config.json", t)
        });
        let credentials_uri = self.text("docker_credentials_uri");
        let send_registry_credentials = self.boolean(
            "send_registry_credentials",
            defaults::SEND_REGISTRY_CREDENTIALS,
        );
        Registry {
            registry,
            registry_username,
            registry_password,
            docker_config,
            credentials_uri,
            send_registry_credentials,
        }
    }

    /// The daemon itself: backend, state database, scheduling intervals, the local machine and high availability.
    pub(super) fn daemon(&mut self, airflow_home: &Path, master_configured: bool) -> Daemon {
        let auto_backend = if master_configured {
            Backend::Mesos
        } else {
            Backend::Docker
        };
        let backend = self
            .typed(
                "backend",
                Some(auto_backend),
                Some(format!(
                    "{} ({})",
                    backend_name(auto_backend),
                    if master_configured {
                        "master is set"
                    } else {
                        "no master is set"
                    }
                )),
                |t| match t.to_ascii_lowercase().as_str() {
                    "mesos" => Ok(Backend::Mesos),
                    "docker" => Ok(Backend::Docker),
                    _ => Err("mesos or docker".into()),
                },
            )
            .unwrap_or(auto_backend);
        let containerizer = self
            .typed(
                "containerizer",
                Some(Containerizer::Docker),
                Some("docker".into()),
                |t| Containerizer::parse(t).ok_or_else(|| "docker, mesos or none".into()),
            )
            .unwrap_or(Containerizer::Docker);
        if backend == Backend::Docker && containerizer == Containerizer::None {
            self.requires(
                "containerizer",
                "none runs tasks on Mesos agents without a container; the local Docker backend \
                 (backend = docker) needs one: set containerizer = docker or backend = mesos"
                    .to_string(),
            );
        }
        let default_db = format!("sqlite:{}", airflow_home.join("airflow-mesos.db").display());
        let database_url = self
            .typed(
                "database_url",
                Some(default_db.clone()),
                Some(default_db.clone()),
                parse_database_url,
            )
            .unwrap_or(default_db);
        let reconciliation_interval = self
            .number(
                "reconciliation_interval",
                Some(defaults::RECONCILIATION_INTERVAL),
                Bound::Positive,
                "seconds",
            )
            .unwrap_or(defaults::RECONCILIATION_INTERVAL);
        let offer_refuse_seconds = self
            .number(
                "offer_refuse_seconds",
                Some(defaults::OFFER_REFUSE_SECONDS),
                Bound::NonNegative,
                "seconds",
            )
            .unwrap_or(defaults::OFFER_REFUSE_SECONDS);
        let queued_timeout = self
            .number(
                "queued_timeout",
                Some(defaults::QUEUED_TIMEOUT),
                Bound::NonNegative,
                "seconds",
            )
            .unwrap_or(defaults::QUEUED_TIMEOUT);
        let store_outage_limit = self
            .number(
                "store_outage_limit",
                Some(defaults::STORE_OUTAGE_LIMIT),
                Bound::NonNegative,
                "seconds",
            )
            .unwrap_or(defaults::STORE_OUTAGE_LIMIT);
        let local_cpus = self.number("local_cpus", None, Bound::Positive, "CPUs");
        let local_memory = self.number("local_memory", None, Bound::Positive, "MB");
        let default_sandbox = airflow_home.join("airflow-mesos").join("sandboxes");
        let sandbox_dir = self
            .typed(
                "sandbox_dir",
                Some(default_sandbox.clone()),
                Some(default_sandbox.display().to_string()),
                |t| Ok(PathBuf::from(t)),
            )
            .unwrap_or(default_sandbox);
        let sandbox_retention = self
            .number(
                "sandbox_retention",
                Some(defaults::SANDBOX_RETENTION),
                Bound::NonNegative,
                "seconds",
            )
            .unwrap_or(defaults::SANDBOX_RETENTION);
        let task_retention = self
            .number(
                "task_retention",
                Some(defaults::TASK_RETENTION),
                Bound::NonNegative,
                "seconds (0 keeps ended tasks forever)",
            )
            .unwrap_or(defaults::TASK_RETENTION);
        let sqlite = database_url.starts_with("sqlite:");
        let leader_election = self
            .typed(
                "leader_election",
                Some(!sqlite),
                Some("auto".into()),
                |t| match t.to_ascii_lowercase().as_str() {
                    "auto" => Ok(!sqlite),
                    "database" if sqlite => Err("none with a SQLite database_url (SQLite is \
                         for one daemon: run several on PostgreSQL or MySQL)"
                        .into()),
                    "database" => Ok(true),
                    "none" => Ok(false),
                    _ => Err("auto, database or none".into()),
                },
            )
            .unwrap_or(!sqlite);
        let leader_lease = self
            .typed(
                "leader_lease",
                Some(defaults::LEADER_LEASE),
                Some(defaults::LEADER_LEASE.to_string()),
                |t| match parse_number(t, Bound::Positive, "seconds") {
                    Ok(v) if !(1.0..=3600.0).contains(&v) => {
                        Err("a number of seconds from 1 to 3600".into())
                    }
                    other => other,
                },
            )
            .unwrap_or(defaults::LEADER_LEASE);
        Daemon {
            backend,
            containerizer,
            database_url,
            reconciliation_interval,
            offer_refuse_seconds,
            queued_timeout,
            store_outage_limit,
            local_cpus,
            local_memory,
            sandbox_dir,
            sandbox_retention,
            task_retention,
            leader_election,
            leader_lease,
        }
    }

    /// The API: where it listens, its limits and timeouts, its token, and how clients and browsers reach it.
    pub(super) fn api(&mut self, airflow_home: &Path) -> Api {
        let default_listen: SocketAddr = defaults::API_LISTEN.parse().expect("valid default");
        let api_listen = self
            .typed(
                "api_listen",
                Some(default_listen),
                Some(defaults::API_LISTEN.into()),
                parse_listen,
            )
            .unwrap_or(default_listen);
        let api_max_connections = self
            .typed(
                "api_max_connections",
                Some(defaults::API_MAX_CONNECTIONS),
                Some(defaults::API_MAX_CONNECTIONS.to_string()),
                |t| match t.parse::<usize>() {
                    Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                    _ => Err("a whole number of connections from 1 to 1000000".to_string()),
                },
            )
            .unwrap_or(defaults::API_MAX_CONNECTIONS);
        let api_header_timeout = self.seconds_within(
            "api_header_timeout",
            defaults::API_HEADER_TIMEOUT,
            0.1,
            3600.0,
        );
        let api_idle_timeout = self.seconds_within(
            "api_idle_timeout",
            defaults::API_IDLE_TIMEOUT,
            0.1,
            86_400.0,
        );
        let api_body_timeout =
            self.seconds_within("api_body_timeout", defaults::API_BODY_TIMEOUT, 0.1, 3600.0);
        let api_token = self.secret("api_token");
        let default_token_file = airflow_home.join("airflow-mesos").join("api-token");
        let api_token_file = self
            .typed(
                "api_token_file",
                Some(default_token_file.clone()),
                Some(default_token_file.display().to_string()),
                |t| Ok(PathBuf::from(t)),
            )
            .unwrap_or(default_token_file);
        let default_api_url = api_url_for(api_listen);
        let api_url = self
            .typed(
                "api_url",
                Some(default_api_url.clone()),
                Some(default_api_url.clone()),
                parse_http_urls,
            )
            .unwrap_or(default_api_url);
        let public_url = self.typed("public_url", None, None, parse_http_url);
        let allowed_origins = self
            .list("allowed_origins", "", parse_origin)
            .unwrap_or_default();

        Api {
            api_listen,
            api_max_connections,
            api_header_timeout,
            api_idle_timeout,
            api_body_timeout,
            api_token,
            api_token_file,
            api_url,
            public_url,
            allowed_origins,
        }
    }

    /// A comma-separated list (empty = no items); each item parsed by `item`.
    pub(super) fn list<T>(
        &mut self,
        key: &'static str,
        default_shown: &str,
        item: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        self.typed(
            key,
            Some(Vec::new()),
            Some(default_shown.to_string()),
            |t| {
                t.split(',')
                    .map(str::trim)
                    .filter(|i| !i.is_empty())
                    .map(|i| {
                        item(i).map_err(|e| {
                            // The item as it may be shown (a URL's password masked).
                            let i = Self::shown(key, i).unwrap_or_else(|| "***".into());
                            format!("a comma-separated list; `{i}`: {e}")
                        })
                    })
                    .collect()
            },
        )
    }

    /// A list in which `*` alone means "anything" (`None`).
    pub(super) fn list_or_any(
        &mut self,
        key: &'static str,
        default: Option<Vec<String>>,
        default_shown: &str,
        item: impl Fn(&str) -> Result<String, String>,
    ) -> Option<Vec<String>> {
        let raw = self.typed(
            key,
            Some(default.clone()),
            Some(default_shown.into()),
            |t| {
                if t.trim() == "*" {
                    return Ok(None);
                }
                t.split(',')
                    .map(str::trim)
                    .filter(|i| !i.is_empty())
                    .map(|i| {
                        if i == "*" {
                            Err("`*` must stand alone (it allows anything)".to_string())
                        } else {
                            item(i).map_err(|e| format!("a comma-separated list or *; `{i}`: {e}"))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            },
        );
        raw.unwrap_or(default)
    }

    /// The task policy keys (see [`crate::task::policy`]).
    pub(super) fn policy(
        &mut self,
        framework_user: &str,
        network: &NetworkMode,
        image: Option<&str>,
        containerizer: Containerizer,
        defaults: [(&'static str, f64); 3],
    ) -> Policy {
        let d = Policy::default();
        let allow_privileged = self.boolean("allow_privileged", false);
        let host_paths = self
            .list("allowed_host_paths", "", |t| {
                let p = Path::new(t);
                if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
                    Err("an absolute path without `..`".into())
                } else {
                    Ok(p.to_path_buf())
                }
            })
            .unwrap_or_default();
        let users = self.list_or_any(
            "allowed_users",
            Some(Vec::new()),
            "(only framework_user)",
            |t| {
                if t.chars().any(|c| c.is_whitespace() || c == ':') {
                    Err("a user name".into())
                } else {
                    Ok(t.to_string())
                }
            },
        );
        let network_modes = self
            .list(
                "allowed_network_modes",
                policy::DEFAULT_NETWORK_MODES,
                |t| {
                    NetworkRule::parse(t)
                        .ok_or_else(|| "host, bridge, none, user:<network> or user:*".to_string())
                },
            )
            .filter(|_| self.is_set("allowed_network_modes"))
            .unwrap_or(d.network_modes);
        let images = self.list_or_any("allowed_images", None, "*", |t| {
            let tagged = t.contains('/') && t.rsplit('/').next().is_some_and(|l| l.contains(':'));
            if t.contains(['@', ' ']) || tagged {
                Err("a registry (host[:port]) or a repository prefix, without tag or digest".into())
            } else {
                Ok(policy::image_prefix(t))
            }
        });
        let mut max = [None; 3];
        for (i, (key, unit)) in [
            ("max_task_cpu", "CPUs"),
            ("max_task_memory", "MB"),
            ("max_task_disk", "MB"),
        ]
        .into_iter()
        .enumerate()
        {
            max[i] = self.number(key, None, Bound::Positive, unit);
            let (default_key, default) = defaults[i];
            if let Some(m) = max[i].filter(|m| default > *m) {
                self.requires(
                    key,
                    format!("= {} is less than [mesos] {default_key} = {}, the default every task asks for", fmt_num(m), fmt_num(default)),
                );
            }
        }
        let docker_parameters = self.list_or_any(
            "allowed_docker_parameters",
            Some(Vec::new()),
            "(none)",
            |t| {
                let k = t.trim_start_matches('-');
                if policy::FORBIDDEN_DOCKER_PARAMETERS.contains(&k) {
                    Err("never allowed: it would bypass the rest of the policy".into())
                } else if k.is_empty()
                    || !k
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                {
                    Err("a docker run option name such as shm-size".into())
                } else {
                    Ok(k.to_string())
                }
            },
        );
        Policy {
            allow_privileged,
            host_paths,
            users,
            network_modes,
            images,
            max_cpus: max[0],
            max_mem: max[1],
            max_disk: max[2],
            docker_parameters,
            default_user: framework_user.to_string(),
            default_network: network.clone(),
            default_image: image.map(str::to_string),
            default_containerizer: containerizer,
        }
    }
}
