//! Configuration errors. Each names `[mesos] <key>`, where the value came from (file and
//! line, environment variable, command, secret file), the bad value — never for secrets — and
//! what was expected. [`ConfigErrors`] carries every problem found, not just the first.

use super::parse::IniError;
use std::fmt;
use std::path::PathBuf;
use thiserror::Error;

/// Exit code for a bad configuration (`EX_USAGE`-like `EX_CONFIG` = 64 by this project's
/// convention), used by the binary.
pub const EXIT_CONFIG: i32 = 64;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default (possibly derived from other values).
    Default,
    /// The `[mesos]` section (or `[DEFAULT]`) of the file, at this 1-based line.
    File { line: usize },
    /// An `AIRFLOW__MESOS__<KEY>` environment variable.
    Env { var: String },
    /// The stdout of a `<key>_cmd` command given at `from`.
    Cmd { from: Box<Source> },
    /// The content of the file named by a `<key>_secret` setting given at `from`.
    Secret { from: Box<Source> },
}

impl Source {
    /// The short kind: `default`, `file`, `env`, `cmd` or `secret`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File { .. } => "file",
            Source::Env { .. } => "env",
            Source::Cmd { .. } => "cmd",
            Source::Secret { .. } => "secret",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { line } => write!(f, "file:{line}"),
            Source::Env { var } => write!(f, "env {var}"),
            Source::Cmd { from } => write!(f, "cmd ({from})"),
            Source::Secret { from } => write!(f, "secret ({from})"),
        }
    }
}

/// A [`Source`] with the file path, for messages: `/etc/airflow.cfg:12`,
/// `environment variable AIRFLOW__MESOS__TASK_CPU`, …
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: Option<PathBuf>,
    pub source: Source,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn go(path: &Option<PathBuf>, s: &Source, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match s {
                Source::Default => f.write_str("built-in default"),
                Source::File { line } => match path {
                    Some(p) => write!(f, "{}:{line}", p.display()),
                    None => write!(f, "line {line}"),
                },
                Source::Env { var } => write!(f, "environment variable {var}"),
                Source::Cmd { from } => {
                    f.write_str("output of the command at ")?;
                    go(path, from, f)
                }
                Source::Secret { from } => {
                    f.write_str("secret file named at ")?;
                    go(path, from, f)
                }
            }
        }
        go(&self.path, &self.source, f)
    }
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `--config PATH` names a file that does not exist.
    #[error("{}: the configuration file given with --config does not exist", path.display())]
    NotFound { path: PathBuf },
    /// The file exists but could not be read.
    #[error("{}: cannot read the configuration file: {message}", path.display())]
    Read { path: PathBuf, message: String },
    /// The file is not valid `airflow.cfg` syntax.
    #[error("{}: {error}", path.display())]
    Syntax { path: PathBuf, error: IniError },
    /// A value that does not fit its key. `value` is `None` for secrets (and for values that
    /// may embed them, like `docker_environment`).
    #[error("{at}: [mesos] {key}{}: expected {expected}", shown_value(value))]
    Invalid {
        key: String,
        at: Location,
        value: Option<String>,
        expected: String,
    },
    /// A `%` in a file value that configparser could not interpolate.
    #[error("{at}: [mesos] {key}: {problem}")]
    Interpolation {
        key: String,
        at: Location,
        problem: String,
    },
    /// A `<key>_cmd` command that could not be run or failed. Never carries its output.
    #[error("{at}: command for [mesos] {key} {problem}")]
    Command {
        /// The `_cmd` key, e.g. `default_secret_cmd`.
        key: String,
        at: Location,
        problem: String,
    },
    /// A `<key>_secret` file that could not be read.
    #[error("{at}: [mesos] {key}: cannot read secret file {}: {problem}", path.display())]
    SecretFile {
        /// The `_secret` key, e.g. `api_token_secret`.
        key: String,
        at: Location,
        path: PathBuf,
        problem: String,
    },
    /// Keys that must be given together (e.g. `authenticate = True` needs the principal and
    /// the secret).
    #[error("{at}: [mesos] {key} {problem}")]
    Requires {
        key: String,
        at: Location,
        problem: String,
    },
}

fn shown_value(value: &Option<String>) -> String {
    match value {
        Some(v) => format!(" = {v:?}"),
        None => " (value not shown)".to_string(),
    }
}

impl ConfigError {
    /// The `[mesos]` key the problem is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. }
            | ConfigError::Interpolation { key, .. }
            | ConfigError::Command { key, .. }
            | ConfigError::SecretFile { key, .. }
            | ConfigError::Requires { key, .. } => Some(key),
            ConfigError::Syntax {
                error: IniError::DuplicateOption { key, .. },
                ..
            } => Some(key),
            _ => None,
        }
    }
}

/// Every problem found while loading, plus the warnings gathered on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The configuration file, if one was read.
    pub path: Option<PathBuf>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_key_place_value_and_expectation() {
        let e = ConfigError::Invalid {
            key: "task_cpu".into(),
            at: Location {
                path: Some("/af/airflow.cfg".into()),
                source: Source::File { line: 7 },
            },
            value: Some("abc".into()),
            expected: "a number".into(),
        };
        assert_eq!(
            e.to_string(),
            "/af/airflow.cfg:7: [mesos] task_cpu = \"abc\": expected a number"
        );
        let e = ConfigError::Invalid {
            key: "api_token".into(),
            at: Location {
                path: None,
                source: Source::Cmd {
                    from: Box::new(Source::Env {
                        var: "AIRFLOW__MESOS__API_TOKEN_CMD".into(),
                    }),
                },
            },
            value: None,
            expected: "a non-empty token".into(),
        };
        assert_eq!(
            e.to_string(),
            "output of the command at environment variable AIRFLOW__MESOS__API_TOKEN_CMD: \
             [mesos] api_token (value not shown): expected a non-empty token"
        );
    }

    #[test]
    fn source_display() {
        assert_eq!(Source::File { line: 3 }.to_string(), "file:3");
        assert_eq!(
            Source::Secret {
                from: Box::new(Source::File { line: 9 })
            }
            .to_string(),
            "secret (file:9)"
        );
    }
}
