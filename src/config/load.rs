//! [`load`]: sources → a typed, validated [`Config`], the effective value and source of every
//! key (for `config show`), and warnings. Every problem is collected; nothing stops at the
//! first.
//!
//! Per key, the first of these that is present wins (Airflow's order):
//! `AIRFLOW__MESOS__<KEY>` > `AIRFLOW__MESOS__<KEY>_CMD` > `AIRFLOW__MESOS__<KEY>_SECRET` >
//! the file's `<key>` > the file's `<key>_cmd` > the file's `<key>_secret` > the default.
//! The `_cmd`/`_secret` variants are honoured only for the secret keys (and `database_url`).
//! A present but empty value means "not set" (the default), and still hides lower sources,
//! as in Airflow.

use super::error::{ConfigError, ConfigErrors, Location, Source};
use super::expand::expand_env_var;
use super::keys::{self, KeyKind};
use super::master::{parse_master, redact_master, DEFAULT_MASTER, EXPECTED as MASTER_EXPECTED};
use super::parse::{self, IniOption};
use super::pylit::{self, PyValue};
use super::source::{airflow_home, FileInput, Sources, SystemAccess};
use super::{Backend, Config, DefaultVolume, RegistryAuth, Secret};
use crate::store::{redact_url, redact_urls, translate_url, StoreError};
use crate::task::policy::{self, NetworkRule};
use crate::task::spec::MAX_KILL_GRACE_SECS;
use crate::task::{Containerizer, NetworkMode, Policy};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};

/// The effective value of one key, for `config show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// The value as shown: secrets as `***`, passwords inside URLs masked; `None` when unset.
    pub value: Option<String>,
    pub source: Source,
    /// Whether the key is a secret.
    pub secret: bool,
}

/// Whether and where a configuration file was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// No file was involved.
    NotGiven,
    /// Looked for here, not found: defaults and environment only.
    Missing(PathBuf),
    /// Read from here.
    Read(PathBuf),
}

/// A loaded configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    /// Every known key in documentation order.
    pub entries: Vec<Entry>,
    pub warnings: Vec<String>,
    pub file: FileStatus,
}

/// The default `failover_timeout`: one week, so a scheduler restart or failover never loses
/// running tasks (Airflow 1.10 left it unset = 0, which makes Mesos kill every task as soon as
/// the scheduler disconnects).
pub const DEFAULT_FAILOVER_TIMEOUT: f64 = 604_800.0;
/// The default `api_max_connections`.
pub const DEFAULT_API_MAX_CONNECTIONS: usize = 1024;

/// The default `api_listen`.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:11000";

/// Loads and validates the configuration from `src`. Pure apart from what `src.system` does.
pub fn load(src: &Sources) -> Result<Loaded, ConfigErrors> {
    let (path, text, file) = match &src.file {
        FileInput::None => (None, None, FileStatus::NotGiven),
        FileInput::Missing(p) => (None, None, FileStatus::Missing(p.clone())),
        FileInput::Text { path, text } => (
            Some(path.clone()),
            Some(text.as_str()),
            FileStatus::Read(path.clone()),
        ),
    };
    let mut cx = Cx {
        env: &src.env,
        system: src.system,
        path: path.clone(),
        mesos: Vec::new(),
        defaults: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        entries: HashMap::new(),
    };
    if let FileStatus::Missing(p) = &file {
        cx.warnings.push(format!(
            "{}: no configuration file there; using defaults and the environment",
            p.display()
        ));
    }
    if let Some(text) = text {
        cx.read_file(text);
    }
    cx.warn_unknown_env();
    let config = cx.build(path.clone());
    let Cx {
        errors,
        warnings,
        mut entries,
        ..
    } = cx;
    if !errors.is_empty() {
        let mut errors = errors;
        // File problems in line order, then the environment's.
        errors.sort_by_key(error_line);
        return Err(ConfigErrors {
            path,
            errors,
            warnings,
        });
    }
    let entries = keys::KEYS
        .iter()
        .filter_map(|k| entries.remove(k.name))
        .collect();
    Ok(Loaded {
        config,
        entries,
        warnings,
        file,
    })
}

/// A value found for a key, before typing.
struct Raw {
    text: String,
    source: Source,
}

enum Resolved {
    Absent,
    /// Finding the value failed (error already recorded).
    Failed,
    Value(Raw),
}

/// Lower bound of a number.
#[derive(Clone, Copy)]
enum Bound {
    Positive,
    NonNegative,
    /// At least this much (a task resource's minimum).
    AtLeast(f64),
}

struct Cx<'s> {
    env: &'s HashMap<String, String>,
    system: &'s dyn SystemAccess,
    path: Option<PathBuf>,
    mesos: Vec<IniOption>,
    defaults: Vec<IniOption>,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    entries: HashMap<&'static str, Entry>,
}

impl Cx<'_> {
    fn at(&self, source: Source) -> Location {
        Location {
            path: self.path.clone(),
            source,
        }
    }

    fn file_place(&self, line: usize) -> String {
        self.at(Source::File { line }).to_string()
    }

    // ----- reading the file -----

    fn read_file(&mut self, text: &str) {
        let (doc, errs) = parse::parse(text);
        let path = self.path.clone().unwrap_or_default();
        for error in errs {
            self.errors.push(ConfigError::Syntax {
                path: path.clone(),
                error,
            });
        }
        for s in &doc.sections {
            if s.name != "mesos" && s.name.eq_ignore_ascii_case("mesos") {
                self.warnings.push(format!(
                    "{}: section [{}] is ignored: section names are case-sensitive (Airflow reads [mesos])",
                    self.file_place(s.line),
                    s.name
                ));
            }
        }
        self.defaults = doc.defaults.clone();
        if let Some(s) = doc.section("mesos") {
            self.mesos = s.options.clone();
        }
        for opt in self.mesos.clone() {
            let place = self.file_place(opt.line);
            self.warn_key(&opt.key, &place);
        }
    }

    fn warn_unknown_env(&mut self) {
        let mut vars: Vec<&String> = self
            .env
            .keys()
            .filter(|k| k.starts_with("AIRFLOW__MESOS__"))
            .collect();
        vars.sort();
        for var in vars {
            let key = var["AIRFLOW__MESOS__".len()..].to_ascii_lowercase();
            self.warn_key(&key, &format!("environment variable {var}"));
        }
    }

    fn warn_key(&mut self, key: &str, place: &str) {
        match keys::classify(key) {
            KeyKind::Known(_) | KeyKind::Variant { .. } => {}
            KeyKind::VariantNotAllowed { base } => self.warnings.push(format!(
                "{place}: [mesos] {key} is ignored: only the secret keys (default_secret, \
                 api_password, api_token, docker_registry_password) and database_url take \
                 _cmd/_secret variants; set [mesos] {} directly",
                base.name
            )),
            KeyKind::Unknown { suggestion } => self.warnings.push(format!(
                "{place}: [mesos] {key} is not a known key and is ignored{}",
                suggestion.map_or(String::new(), |s| format!(" (did you mean {s}?)"))
            )),
        }
    }

    fn file_opt(&self, key: &str) -> Option<IniOption> {
        self.mesos
            .iter()
            .chain(self.defaults.iter())
            .find(|o| o.key == key)
            .cloned()
    }

    /// A file value with `%%` and `%(name)s` interpolated.
    fn file_value(&mut self, key: &str, opt: &IniOption) -> Option<String> {
        let lookup = |name: &str| self.file_opt(name).map(|o| o.value);
        match parse::interpolate(&opt.value, &lookup) {
            Ok(v) => Some(v),
            Err(e) => {
                let at = self.at(Source::File { line: opt.line });
                self.errors.push(ConfigError::Interpolation {
                    key: key.to_string(),
                    at,
                    problem: e.to_string(),
                });
                None
            }
        }
    }

    // ----- precedence -----

    fn resolve(&mut self, key: &str) -> Resolved {
        let var = format!("AIRFLOW__MESOS__{}", key.to_ascii_uppercase());
        let variants = keys::takes_cmd_and_secret(key);
        if let Some(v) = self.env.get(&var) {
            return Resolved::Value(Raw {
                text: expand_env_var(v, self.env),
                source: Source::Env { var },
            });
        }
        if variants {
            let var_cmd = format!("{var}_CMD");
            if let Some(c) = self.env.get(&var_cmd).filter(|c| !c.trim().is_empty()) {
                let c = c.clone();
                return self.run_cmd(key, &c, Source::Env { var: var_cmd });
            }
            let var_secret = format!("{var}_SECRET");
            if let Some(p) = self.env.get(&var_secret).filter(|p| !p.trim().is_empty()) {
                let p = expand_env_var(p.trim(), self.env);
                return self.read_secret(key, &p, Source::Env { var: var_secret });
            }
        }
        if let Some(opt) = self.file_opt(key) {
            return match self.file_value(key, &opt) {
                Some(v) => Resolved::Value(Raw {
                    text: expand_env_var(&v, self.env),
                    source: Source::File { line: opt.line },
                }),
                None => Resolved::Failed,
            };
        }
        if variants {
            let cmd_key = format!("{key}_cmd");
            if let Some(opt) = self.file_opt(&cmd_key).filter(|o| !o.value.is_empty()) {
                let Some(c) = self.file_value(&cmd_key, &opt) else {
                    return Resolved::Failed;
                };
                return self.run_cmd(key, &c, Source::File { line: opt.line });
            }
            let secret_key = format!("{key}_secret");
            if let Some(opt) = self.file_opt(&secret_key).filter(|o| !o.value.is_empty()) {
                let Some(p) = self.file_value(&secret_key, &opt) else {
                    return Resolved::Failed;
                };
                let p = expand_env_var(&p, self.env);
                return self.read_secret(key, &p, Source::File { line: opt.line });
            }
        }
        Resolved::Absent
    }

    /// Runs a `_cmd` (split like `shlex.split`, no shell). Neither the command nor its output
    /// ever goes into a message.
    fn run_cmd(&mut self, key: &str, command: &str, from: Source) -> Resolved {
        let cmd_key = format!("{key}_cmd");
        let at = self.at(from.clone());
        let fail = |problem: String| ConfigError::Command {
            key: cmd_key.clone(),
            at: at.clone(),
            problem,
        };
        let argv = match shlex::split(command) {
            Some(a) if !a.is_empty() => a,
            _ => {
                self.errors.push(fail(
                    "is not a valid command line (empty, or unbalanced quotes)".into(),
                ));
                return Resolved::Failed;
            }
        };
        let out = match self.system.run_command(&argv) {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                self.errors.push(fail(e.to_string()));
                return Resolved::Failed;
            }
            Err(e) => {
                self.errors
                    .push(fail(format!("could not be started ({})", e.kind())));
                return Resolved::Failed;
            }
        };
        match out.status {
            Some(0) => {}
            Some(n) => {
                self.errors.push(fail(format!("exited with status {n}")));
                return Resolved::Failed;
            }
            None => {
                self.errors.push(fail("was killed by a signal".into()));
                return Resolved::Failed;
            }
        }
        match String::from_utf8(out.stdout) {
            Ok(s) => Resolved::Value(Raw {
                text: trim_newlines(&s).to_string(),
                source: Source::Cmd {
                    from: Box::new(from),
                },
            }),
            Err(_) => {
                self.errors
                    .push(fail("printed output that is not UTF-8".into()));
                Resolved::Failed
            }
        }
    }

    /// Reads a `_secret` file (trailing newlines dropped).
    fn read_secret(&mut self, key: &str, path: &str, from: Source) -> Resolved {
        match self.system.read_file(Path::new(path)) {
            Ok(s) => Resolved::Value(Raw {
                text: trim_newlines(&s).to_string(),
                source: Source::Secret {
                    from: Box::new(from),
                },
            }),
            Err(e) => {
                let at = self.at(from);
                self.errors.push(ConfigError::SecretFile {
                    key: format!("{key}_secret"),
                    at,
                    path: PathBuf::from(path),
                    problem: e.to_string(),
                });
                Resolved::Failed
            }
        }
    }

    // ----- typed getters -----

    /// How a value of `key` may be shown (entries and errors).
    fn shown(key: &str, text: &str) -> Option<String> {
        match key {
            _ if keys::lookup(key).is_some_and(|k| k.secret) => None,
            "master" => Some(redact_urls(&redact_master(text))),
            "database_url" => Some(redact_url(text)),
            // URLs that may carry a password or a token (a pre-signed download, a proxy).
            "api_url"
            | "public_url"
            | "docker_credentials_uri"
            | "mesos_fetch_uri"
            | "allowed_origins"
            | "docker_registry" => Some(redact_urls(text)),
            "docker_environment" => None,
            _ => Some(text.to_string()),
        }
    }

    fn record(&mut self, key: &'static str, value: Option<String>, source: Source) {
        let secret = keys::lookup(key).is_some_and(|k| k.secret);
        self.entries.insert(
            key,
            Entry {
                key: key.to_string(),
                value,
                source,
                secret,
            },
        );
    }

    /// The core getter: resolve, treat empty as unset, parse (`Err` = what was expected),
    /// record the entry and any error. Returns `default` when unset or invalid.
    fn typed<T>(
        &mut self,
        key: &'static str,
        default: Option<T>,
        default_shown: Option<String>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = match self.resolve(key) {
            Resolved::Value(raw) if !raw.text.trim().is_empty() => raw,
            _ => {
                self.record(key, default_shown, Source::Default);
                return default;
            }
        };
        let text = raw.text.trim();
        match parse(text) {
            Ok(v) => {
                let shown = Self::shown(key, text).or_else(|| Some("***".to_string()));
                self.record(key, shown, raw.source);
                Some(v)
            }
            Err(expected) => {
                let shown = Self::shown(key, text);
                let at = self.at(raw.source.clone());
                self.errors.push(ConfigError::Invalid {
                    key: key.to_string(),
                    at,
                    value: shown.clone(),
                    expected,
                });
                self.record(key, shown, raw.source);
                default
            }
        }
    }

    fn text(&mut self, key: &'static str) -> Option<String> {
        self.typed(key, None, None, |t| Ok(t.to_string()))
    }

    /// A text value from which one pair of surrounding double quotes is dropped (older AVENTER
    /// releases removed `"` from these values, so configs may have them).
    fn text_unquoted(&mut self, key: &'static str) -> Option<String> {
        self.typed(key, None, None, |t| {
            let inner = t
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .unwrap_or(t)
                .trim();
            if inner.is_empty() {
                Err("a non-empty value".into())
            } else {
                Ok(inner.to_string())
            }
        })
    }

    fn text_or(&mut self, key: &'static str, default: &str) -> String {
        self.typed(
            key,
            Some(default.to_string()),
            Some(default.to_string()),
            |t| Ok(t.to_string()),
        )
        .unwrap_or_else(|| default.to_string())
    }

    fn boolean(&mut self, key: &'static str, default: bool) -> bool {
        let shown = if default { "True" } else { "False" };
        self.typed(key, Some(default), Some(shown.into()), parse_bool)
            .unwrap_or(default)
    }

    /// A number of seconds from `min` to `max`.
    fn seconds_within(&mut self, key: &'static str, default: f64, min: f64, max: f64) -> f64 {
        self.typed(
            key,
            Some(default),
            Some(fmt_num(default)),
            |t| match parse_number(t, Bound::Positive, "seconds") {
                Ok(v) if (min..=max).contains(&v) => Ok(v),
                _ => Err(format!(
                    "a number of seconds from {} to {}",
                    fmt_num(min),
                    fmt_num(max)
                )),
            },
        )
        .unwrap_or(default)
    }

    fn number(
        &mut self,
        key: &'static str,
        default: Option<f64>,
        bound: Bound,
        unit: &str,
    ) -> Option<f64> {
        let shown = default.map(fmt_num);
        self.typed(key, default, shown, |t| parse_number(t, bound, unit))
    }

    fn secret(&mut self, key: &'static str) -> Option<Secret> {
        match self.resolve(key) {
            Resolved::Value(raw) if !raw.text.trim().is_empty() => {
                self.record(key, Some("***".into()), raw.source);
                Some(Secret::new(raw.text))
            }
            // `key =` (empty) leaves a secret unset; an empty command output or secret file is
            // a mistake (a token that was never written, a command that printed nothing).
            Resolved::Value(raw)
                if matches!(raw.source, Source::Cmd { .. } | Source::Secret { .. }) =>
            {
                let at = self.at(raw.source.clone());
                self.errors.push(ConfigError::Invalid {
                    key: key.to_string(),
                    at,
                    value: None,
                    expected: "a non-empty secret".into(),
                });
                self.record(key, None, raw.source);
                None
            }
            _ => {
                self.record(key, None, Source::Default);
                None
            }
        }
    }

    fn source_of(&self, key: &str) -> Source {
        self.entries
            .get(key)
            .map_or(Source::Default, |e| e.source.clone())
    }

    fn is_set(&self, key: &str) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| e.source != Source::Default)
    }

    fn requires(&mut self, key: &str, problem: String) {
        let at = self.at(self.source_of(key));
        self.errors.push(ConfigError::Requires {
            key: key.to_string(),
            at,
            problem,
        });
    }

    // ----- the whole configuration -----

    fn build(&mut self, path: Option<PathBuf>) -> Config {
        let airflow_home = airflow_home(self.env);

        // Airflow 1.10 keys (mesos_ssl first: bare master hosts depend on it).
        let mesos_ssl = self.boolean("mesos_ssl", false);
        let master = self.typed("master", None, Some(DEFAULT_MASTER.into()), |t| {
            parse_master(t, mesos_ssl).map_err(|why| format!("{MASTER_EXPECTED} — {why}"))
        });
        let master_configured = self.is_set("master");
        let master = master.unwrap_or_else(|| {
            parse_master(DEFAULT_MASTER, mesos_ssl).expect("the default master parses")
        });
        let framework_name = self.text_or("framework_name", "Airflow");
        let task_cpu = self
            .number(
                "task_cpu",
                Some(1.0),
                Bound::AtLeast(crate::task::spec::MIN_CPUS),
                "CPUs (e.g. 1 or 0.5)",
            )
            .unwrap_or(1.0);
        let task_memory = self
            .number(
                "task_memory",
                Some(256.0),
                Bound::AtLeast(crate::task::spec::MIN_MEM_MB),
                "MB (e.g. 256 or 1024.5)",
            )
            .unwrap_or(256.0);
        let checkpoint = self.boolean("checkpoint", false);
        let failover_timeout = self
            .number(
                "failover_timeout",
                Some(DEFAULT_FAILOVER_TIMEOUT),
                Bound::NonNegative,
                "seconds (e.g. 604800 for a week)",
            )
            .unwrap_or(DEFAULT_FAILOVER_TIMEOUT);
        let authenticate = self.boolean("authenticate", false);
        let default_principal = self.text("default_principal");
        let default_secret = self.secret("default_secret");
        let docker_image_slave = self.text_unquoted("docker_image_slave");
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

        // AVENTER provider keys.
        let framework_role = self
            .typed(
                "framework_role",
                Some("*".to_string()),
                Some("*".into()),
                parse_role,
            )
            .unwrap_or_else(|| "*".into());
        let task_disk = self
            .number(
                "task_disk",
                Some(0.0),
                Bound::NonNegative,
                "MB (0 = no disk requested)",
            )
            .unwrap_or(0.0);
        let command_shell = self.boolean("command_shell", true);
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

        // Keys this project adds.
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
        // `sqlite:/abs/path` is sqlx syntax that `translate_url` passes through unchanged, so
        // the default can be copied into a file as shown.
        let default_db = format!("sqlite:{}", airflow_home.join("airflow-mesos.db").display());
        let database_url = self
            .typed(
                "database_url",
                Some(default_db.clone()),
                Some(default_db.clone()),
                parse_database_url,
            )
            .unwrap_or(default_db);
        let default_listen: SocketAddr = DEFAULT_API_LISTEN.parse().expect("valid default");
        let api_listen = self
            .typed(
                "api_listen",
                Some(default_listen),
                Some(DEFAULT_API_LISTEN.into()),
                parse_listen,
            )
            .unwrap_or(default_listen);
        let api_max_connections = self
            .typed(
                "api_max_connections",
                Some(DEFAULT_API_MAX_CONNECTIONS),
                Some(DEFAULT_API_MAX_CONNECTIONS.to_string()),
                |t| match t.parse::<usize>() {
                    Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                    _ => Err("a whole number of connections from 1 to 1000000".to_string()),
                },
            )
            .unwrap_or(DEFAULT_API_MAX_CONNECTIONS);
        let api_header_timeout = self.seconds_within("api_header_timeout", 10.0, 0.1, 3600.0);
        let api_idle_timeout = self.seconds_within("api_idle_timeout", 60.0, 0.1, 86_400.0);
        let api_body_timeout = self.seconds_within("api_body_timeout", 60.0, 0.1, 3600.0);
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
        let default_user = self
            .env
            .get("USER")
            .filter(|u| !u.is_empty())
            .cloned()
            .unwrap_or_else(|| "root".into());
        let framework_user = self.text_or("framework_user", &default_user);
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
        let existing_file = |what: &str, t: &str| -> Result<PathBuf, String> {
            let p = PathBuf::from(t);
            if system.is_file(&p) {
                Ok(p)
            } else {
                Err(format!("the path of an existing {what} file"))
            }
        };
        let docker_config = self.typed("docker_config", None, None, |t| {
            existing_file("docker config.json", t)
        });
        let credentials_uri = self.text("docker_credentials_uri");
        let send_registry_credentials = self.boolean("send_registry_credentials", true);
        let force_pull = self.boolean("force_pull", false);
        let kill_grace_period = self
            .typed(
                "kill_grace_period",
                Some(30.0),
                Some("30".into()),
                |t| match parse_number(t, Bound::NonNegative, "seconds") {
                    Ok(v) if v <= MAX_KILL_GRACE_SECS => Ok(v),
                    _ => Err(format!(
                        "a number of seconds from 0 to {MAX_KILL_GRACE_SECS}"
                    )),
                },
            )
            .unwrap_or(30.0);
        let launch_retries = self
            .typed("launch_retries", Some(3u32), Some("3".into()), |t| {
                t.parse::<u32>()
                    .map_err(|_| "a whole number of retries, 0 or more".to_string())
            })
            .unwrap_or(3);
        let reconciliation_interval = self
            .number(
                "reconciliation_interval",
                Some(900.0),
                Bound::Positive,
                "seconds",
            )
            .unwrap_or(900.0);
        let offer_refuse_seconds = self
            .number(
                "offer_refuse_seconds",
                Some(120.0),
                Bound::NonNegative,
                "seconds",
            )
            .unwrap_or(120.0);
        let queued_timeout = self
            .number("queued_timeout", Some(0.0), Bound::NonNegative, "seconds")
            .unwrap_or(0.0);
        let store_outage_limit = self
            .number(
                "store_outage_limit",
                Some(300.0),
                Bound::NonNegative,
                "seconds",
            )
            .unwrap_or(300.0);
        let mesos_ca_cert = self.typed("mesos_ca_cert", None, None, |t| {
            existing_file("PEM CA certificate", t)
        });
        let docker_privileged = self.boolean("docker_privileged", false);
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
                Some(604_800.0),
                Bound::NonNegative,
                "seconds",
            )
            .unwrap_or(604_800.0);
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
                Some(10.0),
                Some("10".into()),
                |t| match parse_number(t, Bound::Positive, "seconds") {
                    Ok(v) if !(1.0..=3600.0).contains(&v) => {
                        Err("a number of seconds from 1 to 3600".into())
                    }
                    other => other,
                },
            )
            .unwrap_or(10.0);
        let policy = self.policy(
            &framework_user,
            &docker_network_mode,
            docker_image_slave.as_deref(),
            containerizer,
            [
                ("task_cpu", task_cpu),
                ("task_memory", task_memory),
                ("task_disk", task_disk),
            ],
        );
        let allowed_origins = self
            .list("allowed_origins", "", parse_origin)
            .unwrap_or_default();

        Config {
            path,
            airflow_home,
            master,
            framework_name,
            framework_user,
            task_cpu,
            task_memory,
            checkpoint,
            failover_timeout,
            authenticate,
            default_principal,
            default_secret,
            docker_image_slave,
            mesos_ssl,
            framework_role,
            task_disk,
            command_shell,
            docker_network_mode,
            docker_volumes,
            docker_sock,
            docker_user_group_id,
            docker_environment,
            mesos_attributes,
            mesos_fetch_uri,
            mesos_fetch_uri_username,
            api_username,
            api_password,
            backend,
            containerizer,
            database_url,
            api_listen,
            api_max_connections,
            api_header_timeout,
            api_body_timeout,
            api_idle_timeout,
            api_token,
            api_token_file,
            api_url,
            public_url,
            registry: RegistryAuth {
                registry,
                username: registry_username,
                password: registry_password,
                docker_config,
                credentials_uri,
            },
            send_registry_credentials,
            force_pull,
            kill_grace_period,
            launch_retries,
            reconciliation_interval,
            offer_refuse_seconds,
            store_outage_limit,
            queued_timeout,
            mesos_ca_cert,
            docker_privileged,
            local_cpus,
            local_memory,
            sandbox_dir,
            sandbox_retention,
            leader_election,
            leader_lease,
            policy,
            allowed_origins,
        }
    }

    /// A comma-separated list (empty = no items); each item parsed by `item`.
    fn list<T>(
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
    fn list_or_any(
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
    fn policy(
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

/// An `allowed_origins` entry: `scheme://host[:port]`, as browsers send it in `Origin`.
fn parse_origin(t: &str) -> Result<String, String> {
    const EXPECTED: &str = "an origin such as https://airflow.example.com or http://127.0.0.1:8080";
    let u = url::Url::parse(t).map_err(|_| EXPECTED)?;
    if !matches!(u.scheme(), "http" | "https")
        || u.host_str().is_none_or(str::is_empty)
        || u.path() != "/"
        || u.query().is_some()
        || !u.username().is_empty()
    {
        return Err(EXPECTED.into());
    }
    Ok(u.origin().ascii_serialization())
}

/// The file line an error is about (`usize::MAX` when it is not about a file line).
fn error_line(e: &ConfigError) -> usize {
    fn line_of(s: &Source) -> usize {
        match s {
            Source::File { line } => *line,
            Source::Cmd { from } | Source::Secret { from } => line_of(from),
            _ => usize::MAX,
        }
    }
    match e {
        ConfigError::Syntax { error, .. } => error.line(),
        ConfigError::Invalid { at, .. }
        | ConfigError::Interpolation { at, .. }
        | ConfigError::Command { at, .. }
        | ConfigError::SecretFile { at, .. }
        | ConfigError::Requires { at, .. } => line_of(&at.source),
        ConfigError::NotFound { .. } | ConfigError::Read { .. } => 0,
    }
}

/// Drops trailing `\n` / `\r\n` (command output, secret files).
fn trim_newlines(s: &str) -> &str {
    s.trim_end_matches(['\n', '\r'])
}

/// `mesos` / `docker`.
pub fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Mesos => "mesos",
        Backend::Docker => "docker",
    }
}

/// Airflow's `getboolean`: lower-cased, anything after `#` dropped, then `t/true/1` or
/// `f/false/0`.
pub fn parse_bool(t: &str) -> Result<bool, String> {
    let v = t.to_lowercase();
    let v = v.split('#').next().unwrap_or("").trim();
    match v {
        "t" | "true" | "1" => Ok(true),
        "f" | "false" | "0" => Ok(false),
        _ => Err("a boolean: t, true, 1, f, false or 0 (any case)".into()),
    }
}

/// The largest number any key takes (seconds, MB, CPUs): far beyond any real value, small
/// enough that every duration and size made from it is representable.
const MAX_NUMBER: f64 = 1e12;

fn parse_number(t: &str, bound: Bound, unit: &str) -> Result<f64, String> {
    let expected = match bound {
        Bound::Positive => format!("a number greater than 0, in {unit}"),
        Bound::NonNegative => format!("a number, 0 or more, in {unit}"),
        Bound::AtLeast(min) => format!(
            "a number of at least {} (the smallest container), in {unit}",
            fmt_num(min)
        ),
    };
    let v: f64 = t.parse().map_err(|_| expected.clone())?;
    if v.is_finite() && v > MAX_NUMBER {
        return Err(format!("{expected} (at most {MAX_NUMBER:e})"));
    }
    let ok = v.is_finite()
        && match bound {
            Bound::Positive => v > 0.0,
            Bound::NonNegative => v >= 0.0,
            Bound::AtLeast(min) => v >= min,
        };
    if ok {
        Ok(v)
    } else {
        Err(expected)
    }
}

/// A number as Python would print a float default (`1.0` → `1`, `0.5` → `0.5`).
fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

/// A Mesos role name (`*` or a name, possibly hierarchical `a/b`).
fn parse_role(t: &str) -> Result<String, String> {
    const EXPECTED: &str = "a Mesos role: * or a name without whitespace, not . or .., not \
         starting with -, segments separated by single /";
    if t == "*" {
        return Ok(t.into());
    }
    let bad_segment = t
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == ".." || s.starts_with('-') || s == "*");
    if bad_segment || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EXPECTED.into());
    }
    Ok(t.into())
}

/// `docker_environment`: a Python list of `{"name": .., "value": ..}` dicts (AVENTER), or a
/// plain `{"NAME": "value"}` dict.
fn parse_docker_env(t: &str) -> Result<Vec<(String, String)>, String> {
    const EXPECTED: &str =
        "a Python list of {\"name\": \"VAR\", \"value\": \"text\"} dicts (or a {\"VAR\": \"text\"} dict)";
    let mut v = pylit::parse(t).map_err(|e| format!("{EXPECTED}; {e}"))?;
    if let PyValue::Str(inner) = &v {
        // The AVENTER README quotes the whole list: '[{"name": ..., "value": ...}]'.
        v = pylit::parse(inner).map_err(|e| format!("{EXPECTED}; inside the quotes: {e}"))?;
    }
    let mut out = Vec::new();
    match v {
        PyValue::List(items) => {
            for (i, item) in items.iter().enumerate() {
                let PyValue::Dict(fields) = item else {
                    return Err(format!("{EXPECTED}; item {} is not a dict", i + 1));
                };
                let field = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| *k == PyValue::Str(name.into()))
                        .map(|(_, v)| v)
                };
                let name = match field("name") {
                    Some(PyValue::Str(n)) if !n.is_empty() => n.clone(),
                    _ => return Err(format!("{EXPECTED}; item {} has no \"name\" string", i + 1)),
                };
                let value = field("value").and_then(PyValue::as_text).ok_or_else(|| {
                    format!(
                        "{EXPECTED}; item {} (\"{name}\") has no \"value\" string or number",
                        i + 1
                    )
                })?;
                out.push((name, value));
            }
        }
        PyValue::Dict(fields) => {
            for (k, v) in fields {
                match (k, v.as_text()) {
                    (PyValue::Str(k), Some(v)) if !k.is_empty() => out.push((k, v)),
                    _ => {
                        return Err(format!(
                        "{EXPECTED}; every key must be a string and every value a string or number"
                    ))
                    }
                }
            }
        }
        _ => return Err(EXPECTED.into()),
    }
    Ok(out)
}

/// `database_url`: translated to sqlx syntax by the store's [`translate_url`].
fn parse_database_url(t: &str) -> Result<String, String> {
    translate_url(t).map_err(|e| {
        let why = match e {
            StoreError::InvalidUrl { reason, .. } => reason,
            StoreError::UnsupportedScheme { scheme, .. } => {
                format!("unsupported database `{scheme}`")
            }
            other => other.to_string(),
        };
        format!(
            "a database URL: sqlite:/abs/path.db, sqlite:////abs/path.db, \
             postgresql[+driver]://user@host/db or mysql[+driver]://user@host/db ({why})"
        )
    })
}

/// `mesos_attributes`: a Python list of constraint strings (`"name:value"`).
fn parse_attributes(t: &str) -> Result<Vec<String>, String> {
    const EXPECTED: &str = "a Python list of strings like [\"airflow:true\", \"zone:a?:zone:b\"]";
    match pylit::parse(t).map_err(|e| format!("{EXPECTED}; {e}"))? {
        PyValue::List(items) => items
            .into_iter()
            .map(|i| match i {
                PyValue::Str(s) if s.contains(':') => Ok(s),
                PyValue::Str(s) => Err(format!("{EXPECTED}; {s:?} has no name:value form")),
                _ => Err(format!("{EXPECTED}; every item must be a string")),
            })
            .collect(),
        _ => Err(EXPECTED.into()),
    }
}

/// `api_listen`: `IP:port`, `localhost:port`, or `*:port` / `:port` (all interfaces).
fn parse_listen(t: &str) -> Result<SocketAddr, String> {
    const EXPECTED: &str =
        "host:port with an IP address (or localhost), e.g. 127.0.0.1:11000 or 0.0.0.0:11000";
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = t.rsplit_once(':').ok_or(EXPECTED)?;
    let port: u16 = port.parse().map_err(|_| EXPECTED)?;
    let ip = match host.to_ascii_lowercase().as_str() {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => return Err(EXPECTED.into()),
    };
    Ok(SocketAddr::new(ip, port))
}

/// The URL clients use when `api_url` is unset: `api_listen`, with a wildcard address replaced
/// by loopback.
pub fn api_url_for(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// An `http(s)://host[:port][/path]` URL, without a trailing `/`.
fn parse_http_url(t: &str) -> Result<String, String> {
    const EXPECTED: &str = "an http:// or https:// URL, e.g. http://10.0.0.5:11000";
    let u = url::Url::parse(t).map_err(|_| EXPECTED)?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
        return Err(EXPECTED.into());
    }
    Ok(t.trim_end_matches('/').to_string())
}

/// `api_url`: one URL, or several daemons' comma-separated (clients try them in turn).
fn parse_http_urls(t: &str) -> Result<String, String> {
    let urls = t
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(parse_http_url)
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err("one or more http:// URLs, comma-separated".into());
    }
    Ok(urls.join(","))
}

/// `docker_registry`: `host[:port]` (a scheme and path are dropped).
fn parse_registry(t: &str) -> Result<String, String> {
    let rest = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
        .unwrap_or(t);
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err("a registry host[:port], e.g. registry.example.com:5000".into());
    }
    Ok(host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_follow_airflow() {
        for t in ["t", "TRUE", "True", "1", "true # yes", "  T  "] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for t in ["f", "False", "0", "FALSE#x"] {
            assert_eq!(parse_bool(t), Ok(false), "{t}");
        }
        for t in [
            "yes",
            "no",
            "on",
            "off",
            "yes-please",
            "2",
            "# only comment",
        ] {
            let e = parse_bool(t).unwrap_err();
            assert!(e.contains("t, true, 1, f, false or 0"), "{t}: {e}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0.5", Bound::Positive, "CPUs"), Ok(0.5));
        assert_eq!(parse_number("0", Bound::NonNegative, "s"), Ok(0.0));
        for bad in ["0", "-1", "abc", "inf", "NaN", ""] {
            assert!(parse_number(bad, Bound::Positive, "CPUs").is_err(), "{bad}");
        }
        assert!(parse_number("-0.1", Bound::NonNegative, "s").is_err());
        assert_eq!(fmt_num(604800.0), "604800");
        assert_eq!(fmt_num(0.1), "0.1");
    }

    #[test]
    fn roles() {
        for ok in ["*", "airflow", "eng/airflow", "a.b"] {
            assert_eq!(parse_role(ok), Ok(ok.to_string()));
        }
        for bad in [".", "..", "-x", "a b", "a//b", "/a", "a/", "a/*"] {
            assert!(parse_role(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn docker_environment_forms() {
        assert_eq!(
            parse_docker_env(r#"[{"name": "A", "value": "1"}, {'name': 'B', 'value': 2}]"#)
                .unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        assert_eq!(
            parse_docker_env("{'A': 'x'}").unwrap(),
            vec![("A".into(), "x".into())]
        );
        assert_eq!(parse_docker_env("[]").unwrap(), vec![]);
        // Forms from the AVENTER READMEs: the list in quotes, and a bare tuple.
        assert_eq!(
            parse_docker_env(r#"'[{ "name":"A", "value":"1" }]'"#).unwrap(),
            vec![("A".into(), "1".into())]
        );
        assert_eq!(
            parse_docker_env(r#"{ "name":"A", "value":"1" }, { "name":"B", "value":"2" },"#)
                .unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        for bad in [
            "[{'value': 'x'}]",
            "[{'name': 'A'}]",
            "['A=1']",
            "'A=1'",
            "[{'name': 'A', 'value': None}]",
            "os.environ",
        ] {
            assert!(parse_docker_env(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn attributes() {
        assert_eq!(
            parse_attributes("['airflow:true', \"zone:a?:zone:b\"]").unwrap(),
            vec!["airflow:true".to_string(), "zone:a?:zone:b".into()]
        );
        assert!(parse_attributes("['nocolon']").is_err());
        assert!(parse_attributes("[1]").is_err());
        assert!(parse_attributes("'a:b'").is_err());
    }

    #[test]
    fn listen_and_urls() {
        assert_eq!(
            parse_listen("0.0.0.0:8080").unwrap(),
            "0.0.0.0:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen("localhost:1").unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
        assert_eq!(
            parse_listen(":11000").unwrap(),
            "0.0.0.0:11000".parse().unwrap()
        );
        assert_eq!(parse_listen("[::]:5").unwrap(), "[::]:5".parse().unwrap());
        for bad in ["11000", "example.com:1", "1.2.3.4:99999", "1.2.3.4"] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
        assert_eq!(
            api_url_for("0.0.0.0:11000".parse().unwrap()),
            "http://127.0.0.1:11000"
        );
        assert_eq!(
            api_url_for("[::]:11000".parse().unwrap()),
            "http://[::1]:11000"
        );
        assert_eq!(
            api_url_for("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80"
        );
        assert_eq!(parse_http_url("https://x:1/a/").unwrap(), "https://x:1/a");
        assert!(parse_http_url("ftp://x").is_err());
        assert!(parse_http_url("x:1").is_err());
    }

    #[test]
    fn registries() {
        assert_eq!(
            parse_registry("reg.example.com:5000").unwrap(),
            "reg.example.com:5000"
        );
        assert_eq!(
            parse_registry("https://index.docker.io/v1/").unwrap(),
            "index.docker.io"
        );
        assert!(parse_registry("a b").is_err());
    }
}
