//! Configuration: the `[mesos]` block of `airflow.cfg` (plus `AIRFLOW__MESOS__*` environment
//! overrides and `<key>_cmd` / `<key>_secret` variants), read into a typed, validated
//! [`Config`].
//!
//! Every key of Airflow 1.10's `[mesos]` block keeps its meaning and default; the keys of the
//! AVENTER provider are accepted with theirs; keys this project adds are documented in
//! `config/airflow.cfg`. Loading is a pure function of its sources (file text, environment
//! map, a command runner), so tests need no files or processes.

mod debug;
pub mod defaults;
pub mod error;
pub mod expand;
pub mod keys;
pub mod load;
pub mod master;
pub mod parse;
pub mod pylit;
pub mod source;

pub use error::{ConfigError, ConfigErrors, Location, Source, EXIT_CONFIG};
pub use load::{load, Entry, FileStatus, Loaded};
pub use source::{
    load_from_process, locate, CommandOutput, ConfigLocation, FileInput, LocationOrigin, NoSystem,
    RealSystem, Sources, SystemAccess, DEFAULT_COMMAND_TIMEOUT,
};

use crate::task::{Containerizer, NetworkMode, Policy};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A secret value (principal secret, registry password, API token). Never printed: `Debug`
/// and `Display` show `***`. Use [`Secret::expose`] only where the value is sent.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where the Mesos master is (`[mesos] master`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterAddr {
    /// One or more masters, as base URLs (`http://host:5050`); tried in turn, 307s followed.
    Hosts(Vec<String>),
    /// `zk://[user:pass@]host1:2181,host2:2181/path`: the leader is the lowest
    /// `json.info_*` node under `path`.
    Zk {
        /// `host1:2181,host2:2181`
        servers: String,
        /// e.g. `/mesos`
        path: String,
        /// Digest auth `user:pass`, if given.
        auth: Option<Secret>,
    },
    /// `file:///path`: a file that holds one of the other forms.
    File(PathBuf),
}

/// Which engine runs tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A Mesos cluster through the v1 HTTP scheduler API.
    Mesos,
    /// The local Docker engine (single machine).
    Docker,
}

/// Registry credentials (`docker_registry*` keys, or a docker `config.json`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryAuth {
    /// Registry `host[:port]`, e.g. `registry.example.com:5000`. Empty = Docker Hub.
    pub registry: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// An existing docker `config.json` to use (its `auths`) instead of username/password.
    pub docker_config: Option<PathBuf>,
    /// A pre-made `docker.tar.gz` URI that agents fetch (Docker containerizer), instead of the
    /// daemon's one-time URL.
    pub credentials_uri: Option<String>,
}

impl RegistryAuth {
    /// True when any credential is configured.
    pub fn is_configured(&self) -> bool {
        self.password.is_some() || self.docker_config.is_some() || self.credentials_uri.is_some()
    }
}

/// A named Docker volume mounted into every task (AVENTER `docker_volume_*` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultVolume {
    pub name: String,
    pub container_path: String,
    pub driver: Option<String>,
}

/// The effective configuration. Field names follow the `[mesos]` keys. `Debug` (in
/// `debug.rs`) masks the password in `database_url` and the values of `docker_environment`.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// Where this configuration came from (for messages), if a file.
    pub path: Option<PathBuf>,
    /// `$AIRFLOW_HOME` (default `~/airflow`).
    pub airflow_home: PathBuf,

    // --- Airflow 1.10 keys ---
    pub master: MasterAddr,
    pub framework_name: String,
    /// `FrameworkInfo.user`: the OS user tasks run as by default (new key; default: the user
    /// running the daemon, or `root`).
    pub framework_user: String,
    pub task_cpu: f64,
    /// MB.
    pub task_memory: f64,
    pub checkpoint: bool,
    /// Seconds.
    pub failover_timeout: f64,
    pub authenticate: bool,
    pub default_principal: Option<String>,
    pub default_secret: Option<Secret>,
    pub docker_image_slave: Option<String>,

    // --- AVENTER provider keys ---
    pub mesos_ssl: bool,
    /// Mesos role to subscribe with (`*` when unset).
    pub framework_role: String,
    /// MB; 0 = no disk requested.
    pub task_disk: f64,
    pub command_shell: bool,
    pub docker_network_mode: NetworkMode,
    pub docker_volumes: Vec<DefaultVolume>,
    /// Host path of the Docker socket to bind-mount into tasks at `/var/run/docker.sock`.
    pub docker_sock: Option<String>,
    /// `--group-add` for task containers.
    pub docker_user_group_id: Option<String>,
    /// Environment given to every task.
    pub docker_environment: Vec<(String, String)>,
    /// Agent constraints applied to every task (AVENTER syntax).
    pub mesos_attributes: Vec<String>,
    pub mesos_fetch_uri: Option<String>,
    pub mesos_fetch_uri_username: Option<String>,
    pub api_username: Option<String>,
    pub api_password: Option<Secret>,

    // --- keys this project adds ---
    pub backend: Backend,
    pub containerizer: Containerizer,
    /// sqlx URL (`sqlite:/abs/path`, `postgres://…`, `mysql://…`), SQLAlchemy URLs translated
    /// by [`crate::store::translate_url`].
    pub database_url: String,
    pub api_listen: SocketAddr,
    /// Most connections the API keeps open (`api_max_connections`).
    pub api_max_connections: usize,
    /// Seconds a client has to send a whole request head (`api_header_timeout`).
    pub api_header_timeout: f64,
    /// Seconds a client has to send a request body (`api_body_timeout`).
    pub api_body_timeout: f64,
    /// Seconds a kept-alive API connection may sit idle (`api_idle_timeout`).
    pub api_idle_timeout: f64,
    pub api_token: Option<Secret>,
    /// Where the daemon writes the token it generated when `api_token` is not set, and where
    /// the CLI reads it (default `$AIRFLOW_HOME/airflow-mesos/api-token`).
    pub api_token_file: PathBuf,
    /// Base URL clients (CLI, Airflow shim) use to reach the daemon; several daemons'
    /// comma-separated (clients try them in turn).
    pub api_url: String,
    /// Base URL Mesos agents use to fetch one-time files from the daemon.
    pub public_url: Option<String>,
    pub registry: RegistryAuth,
    /// Send the registry credentials with each Mesos task (false: the agents have their own,
    /// `--docker_config`).
    pub send_registry_credentials: bool,
    pub force_pull: bool,
    /// Seconds.
    pub kill_grace_period: f64,
    pub launch_retries: u32,
    /// Seconds between implicit reconciliations.
    pub reconciliation_interval: f64,
    /// Seconds an unused offer is declined for.
    pub offer_refuse_seconds: f64,
    /// Seconds a task may stay queued before it fails with the reason it waits (0: for ever).
    pub queued_timeout: f64,
    /// Seconds transient database errors are retried before the daemon gives up and exits
    /// (0: at the first error).
    pub store_outage_limit: f64,
    /// CA certificate (PEM) for `https` masters.
    pub mesos_ca_cert: Option<PathBuf>,
    /// Mount the Docker socket and run privileged only when this is true.
    pub docker_privileged: bool,
    /// Local backend capacity (cpus); detected when unset.
    pub local_cpus: Option<f64>,
    /// Local backend capacity (MB); detected when unset.
    pub local_memory: Option<f64>,
    /// Where the local backend keeps task sandboxes (default `$AIRFLOW_HOME/airflow-mesos/sandboxes`).
    pub sandbox_dir: PathBuf,
    /// Seconds a finished task's local sandbox is kept (default one week; 0 = forever).
    pub sandbox_retention: f64,
    /// Seconds an ended task is kept in the state database after its last change, and
    /// change-feed events are kept (default 30 days; 0 = forever).
    pub task_retention: f64,
    /// Daemons sharing the (PostgreSQL or MySQL) state database elect one leader through a
    /// lease in it (`leader_election`; off for SQLite, which is for one daemon).
    pub leader_election: bool,
    /// Seconds the leader lease lasts without renewal.
    pub leader_lease: f64,
    /// What a task may ask for: `allow_privileged`, `allowed_host_paths`, `allowed_users`,
    /// `allowed_network_modes`, `allowed_images`, `max_task_cpu`, `max_task_memory`,
    /// `max_task_disk`, `allowed_docker_parameters`, as written (see [`Config::task_policy`]
    /// for what is enforced); its `default_*` fields hold `framework_user`,
    /// `docker_network_mode`, `docker_image_slave` and `containerizer`.
    pub policy: Policy,
    /// `allowed_origins`: browser origins (`scheme://host[:port]`) whose requests the `/v1` API
    /// accepts; a request with any other `Origin` header is refused.
    pub allowed_origins: Vec<String>,
}

impl Config {
    /// The policy enforced on tasks: [`Config::policy`] plus what the operator gave every task
    /// with `docker_privileged` (privileged containers, and the `docker_sock` host path).
    pub fn task_policy(&self) -> Policy {
        let mut p = self.policy.clone();
        if self.docker_privileged {
            p.allow_privileged = true;
            p.host_paths.push(PathBuf::from(
                self.docker_sock
                    .as_deref()
                    .unwrap_or(crate::scheduler::config::DOCKER_SOCK_CONTAINER_PATH),
            ));
        }
        p
    }
}
