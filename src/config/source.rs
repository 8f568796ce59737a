//! The inputs of [`load`](super::load()): the file (path and text), the environment (a map),
//! and the system access that `<key>_cmd` and `<key>_secret` need (run a command, read a
//! file) — abstract, so tests fake them. Also where the file is looked for ([`locate`]) and the
//! one impure entry point, [`load_from_process`].

use super::error::{ConfigError, ConfigErrors};
use super::expand::expand_env_var;
use super::load::{load, Loaded};
use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a `<key>_cmd` command produced. Its stderr is never captured (nor shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit status; `None` when killed by a signal.
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
}

/// What loading needs from the outside world besides the file text and the environment.
pub trait SystemAccess {
    /// Runs `argv` (already split, no shell) and returns its exit status and stdout.
    fn run_command(&self, argv: &[String]) -> io::Result<CommandOutput>;
    /// Reads a `<key>_secret` file.
    fn read_file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
    /// Whether `path` is an existing file (`docker_config`, `mesos_ca_cert`).
    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }
}

/// Any `Fn(&[String]) -> io::Result<CommandOutput>` runs commands (files are the real ones).
impl<F> SystemAccess for F
where
    F: Fn(&[String]) -> io::Result<CommandOutput>,
{
    fn run_command(&self, argv: &[String]) -> io::Result<CommandOutput> {
        self(argv)
    }
}

/// The real system: runs commands as child processes (stdin closed, stderr discarded, no
/// shell), reads real files. A command that does not finish within `command_timeout` is
/// killed and reported (Airflow would wait forever).
#[derive(Debug, Clone, Copy)]
pub struct RealSystem {
    pub command_timeout: Duration,
}

/// How long a `<key>_cmd` command may run by default.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for RealSystem {
    fn default() -> RealSystem {
        RealSystem {
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }
}

impl SystemAccess for RealSystem {
    fn run_command(&self, argv: &[String]) -> io::Result<CommandOutput> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            stdout.read_to_end(&mut buf).map(|_| buf)
        });
        // std has no wait-with-timeout; poll the child (this runs once, at startup).
        let deadline = Instant::now() + self.command_timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "did not finish within {} s and was killed",
                        self.command_timeout.as_secs_f64()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = reader
            .join()
            .map_err(|_| io::Error::other("reading the command's output failed"))??;
        Ok(CommandOutput {
            status: status.code(),
            stdout,
        })
    }
}

/// No system access: every command fails to start, every secret file is missing. For loading
/// from the environment alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSystem;

impl SystemAccess for NoSystem {
    fn run_command(&self, _argv: &[String]) -> io::Result<CommandOutput> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "running commands is not available here",
        ))
    }
    fn read_file(&self, _path: &Path) -> io::Result<String> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "reading files is not available here",
        ))
    }
    fn is_file(&self, _path: &Path) -> bool {
        false
    }
}

/// The configuration file, as far as loading is concerned. `Debug` shows the path and the
/// size of the text, never the text (it may hold secrets).
#[derive(Clone, PartialEq, Eq, Default)]
pub enum FileInput {
    /// No file (e.g. tests that configure through the environment only).
    #[default]
    None,
    /// Looked for at the default location and not found: all defaults (said in `config show`).
    Missing(PathBuf),
    /// The file's path (for messages) and its text.
    Text { path: PathBuf, text: String },
}

impl std::fmt::Debug for FileInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileInput::None => f.write_str("None"),
            FileInput::Missing(p) => f.debug_tuple("Missing").field(p).finish(),
            FileInput::Text { path, text } => f
                .debug_struct("Text")
                .field("path", path)
                .field("bytes", &text.len())
                .finish(),
        }
    }
}

/// Everything [`load`](super::load()) reads from.
pub struct Sources<'a> {
    pub file: FileInput,
    /// The process environment (`AIRFLOW__MESOS__*`, `AIRFLOW_HOME`, `HOME`, `USER`, and any
    /// variable a value refers to with `$NAME`).
    pub env: HashMap<String, String>,
    pub system: &'a dyn SystemAccess,
}

impl<'a> Sources<'a> {
    /// Sources with no file.
    pub fn new(env: HashMap<String, String>, system: &'a dyn SystemAccess) -> Sources<'a> {
        Sources {
            file: FileInput::None,
            env,
            system,
        }
    }

    /// The same sources with a file read from `path`.
    pub fn with_file(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Sources<'a> {
        self.file = FileInput::Text {
            path: path.into(),
            text: text.into(),
        };
        self
    }
}

/// How the configuration file was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationOrigin {
    /// `--config PATH`: must exist.
    Explicit,
    /// `$AIRFLOW_CONFIG`.
    AirflowConfigEnv,
    /// `$AIRFLOW_HOME/airflow.cfg` (`AIRFLOW_HOME` defaulting to `~/airflow`).
    AirflowHome,
}

/// Where the configuration file is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLocation {
    pub path: PathBuf,
    pub origin: LocationOrigin,
}

impl ConfigLocation {
    /// A missing file is an error only when it was given explicitly with `--config`; Airflow
    /// itself would create a missing `$AIRFLOW_CONFIG` or `$AIRFLOW_HOME/airflow.cfg`.
    pub fn must_exist(&self) -> bool {
        self.origin == LocationOrigin::Explicit
    }
}

/// `$AIRFLOW_HOME` expanded, defaulting to `~/airflow` (Airflow's `get_airflow_home`).
pub fn airflow_home(env: &HashMap<String, String>) -> PathBuf {
    let raw = env
        .get("AIRFLOW_HOME")
        .filter(|v| !v.is_empty())
        .map_or("~/airflow", String::as_str);
    PathBuf::from(expand_env_var(raw, env))
}

/// Finds the configuration file like Airflow: `--config PATH`, else `$AIRFLOW_CONFIG`, else
/// `$AIRFLOW_HOME/airflow.cfg`.
pub fn locate(explicit: Option<&Path>, env: &HashMap<String, String>) -> ConfigLocation {
    if let Some(p) = explicit {
        return ConfigLocation {
            path: p.to_path_buf(),
            origin: LocationOrigin::Explicit,
        };
    }
    if let Some(p) = env.get("AIRFLOW_CONFIG").filter(|v| !v.is_empty()) {
        return ConfigLocation {
            path: PathBuf::from(expand_env_var(p, env)),
            origin: LocationOrigin::AirflowConfigEnv,
        };
    }
    ConfigLocation {
        path: airflow_home(env).join("airflow.cfg"),
        origin: LocationOrigin::AirflowHome,
    }
}

/// Reads the file at `loc` into a [`FileInput`]: a missing file is [`FileInput::Missing`]
/// unless it had to exist.
pub fn read_location(loc: &ConfigLocation) -> Result<FileInput, ConfigError> {
    match std::fs::read_to_string(&loc.path) {
        Ok(text) => Ok(FileInput::Text {
            path: loc.path.clone(),
            text,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !loc.must_exist() => {
            Ok(FileInput::Missing(loc.path.clone()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ConfigError::NotFound {
            path: loc.path.clone(),
        }),
        Err(e) => Err(ConfigError::Read {
            path: loc.path.clone(),
            message: e.to_string(),
        }),
    }
}

/// Loads the configuration from the real process environment, the real file (see
/// [`locate`]) and real commands.
pub fn load_from_process(explicit: Option<&Path>) -> Result<Loaded, ConfigErrors> {
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let loc = locate(explicit, &env);
    let file = read_location(&loc).map_err(|e| ConfigErrors {
        path: Some(loc.path.clone()),
        errors: vec![e],
        warnings: Vec::new(),
    })?;
    let system = RealSystem::default();
    load(&Sources {
        file,
        env,
        system: &system,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn location_order() {
        let e = env(&[
            ("HOME", "/h"),
            ("AIRFLOW_CONFIG", "$HOME/c.cfg"),
            ("AIRFLOW_HOME", "/af"),
        ]);
        let l = locate(Some(Path::new("/x.cfg")), &e);
        assert_eq!(
            (l.path.as_path(), l.must_exist()),
            (Path::new("/x.cfg"), true)
        );
        let l = locate(None, &e);
        assert_eq!(l.path, PathBuf::from("/h/c.cfg"));
        assert_eq!(l.origin, LocationOrigin::AirflowConfigEnv);
        assert!(!l.must_exist());
        let l = locate(None, &env(&[("HOME", "/h"), ("AIRFLOW_HOME", "/af")]));
        assert_eq!(l.path, PathBuf::from("/af/airflow.cfg"));
        let l = locate(None, &env(&[("HOME", "/h")]));
        assert_eq!(l.path, PathBuf::from("/h/airflow/airflow.cfg"));
        assert_eq!(l.origin, LocationOrigin::AirflowHome);
    }

    #[test]
    fn missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.cfg");
        let default = ConfigLocation {
            path: p.clone(),
            origin: LocationOrigin::AirflowHome,
        };
        assert_eq!(
            read_location(&default).unwrap(),
            FileInput::Missing(p.clone())
        );
        let explicit = ConfigLocation {
            path: p.clone(),
            origin: LocationOrigin::Explicit,
        };
        let e = read_location(&explicit).unwrap_err();
        assert!(e.to_string().contains("nope.cfg"), "{e}");
        std::fs::write(&p, "[mesos]\n").unwrap();
        assert_eq!(
            read_location(&explicit).unwrap(),
            FileInput::Text {
                path: p,
                text: "[mesos]\n".into()
            }
        );
    }

    #[test]
    fn file_input_debug_hides_the_text() {
        let f = FileInput::Text {
            path: "/a.cfg".into(),
            text: "[mesos]\ndefault_secret = hunter2\n".into(),
        };
        assert_eq!(format!("{f:?}"), "Text { path: \"/a.cfg\", bytes: 33 }");
    }

    #[test]
    fn real_commands_report_status_and_stdout_only() {
        let sys = RealSystem::default();
        let out = sys
            .run_command(&[
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ])
            .unwrap();
        assert_eq!(out.status, Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert!(sys.run_command(&["/nonexistent/program".into()]).is_err());
    }

    #[test]
    fn hanging_commands_are_killed_after_the_timeout() {
        let sys = RealSystem {
            command_timeout: Duration::from_millis(200),
        };
        let started = Instant::now();
        let e = sys.run_command(&["sleep".into(), "30".into()]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(e.to_string(), "did not finish within 0.2 s and was killed");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
