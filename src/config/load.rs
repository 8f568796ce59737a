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

use super::defaults;
use super::error::{ConfigError, ConfigErrors, Location, Source};
use super::expand::expand_env_var;
use super::keys::{self, KeyKind};
use super::master::{parse_master, redact_master, DEFAULT_MASTER, EXPECTED as MASTER_EXPECTED};
use super::parse::{self, IniOption};
use super::pylit::{self, PyValue};
use super::source::{airflow_home, FileInput, Sources, SystemAccess};
use super::{Backend, Config, DefaultVolume, MasterAddr, RegistryAuth, Secret};
use crate::store::{redact_url, redact_urls, translate_url, StoreError};
use crate::task::policy::{self, NetworkRule};
use crate::task::spec::MAX_KILL_GRACE_SECS;
use crate::task::{Containerizer, NetworkMode, Policy};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};

mod build;
mod values;

use values::*;
pub use values::{api_url_for, backend_name, parse_bool};

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
