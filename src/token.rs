//! The API token when none is configured.
//!
//! The API has no unauthenticated write route: when `[mesos] api_token` (or its `_cmd` /
//! `_secret` forms) is not set, the daemon uses a random token kept in the state database (so
//! every daemon on one database uses the same one) and writes it to `[mesos] api_token_file`
//! (default `$AIRFLOW_HOME/airflow-mesos/api-token`), readable by the daemon's user only. The
//! CLI and the Airflow executor read that file when they have no `api_token` of their own.

use crate::config::Config;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The `daemon_keys` entry the generated token is derived from.
pub const STORE_KEY: &str = "api-token";

/// The token text made from the stored key (64 hex digits).
pub fn from_key(key: &[u8]) -> String {
    hex::encode(key)
}

/// Writes `token` to `path` with mode 0600 (the directory is created, mode 0700, if missing).
/// The file is replaced atomically, so a reader never sees half a token; an existing file with
/// the same token and mode is left alone.
pub fn write_file(path: &Path, token: &str) -> std::io::Result<()> {
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 == 0
            && std::fs::read_to_string(path).is_ok_and(|t| t.trim() == token)
        {
            return Ok(());
        }
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // The mode given at creation is masked by the umask; 0600 needs no bit a umask adds.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(format!("{token}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// What a client (CLI, executor) authenticates with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientToken {
    /// `[mesos] api_token` (or `_cmd` / `_secret`).
    Configured(String),
    /// Read from `[mesos] api_token_file`.
    File(String),
    /// Neither: the file does not exist (yet).
    Missing(PathBuf),
}

impl ClientToken {
    pub fn token(&self) -> Option<&str> {
        match self {
            ClientToken::Configured(t) | ClientToken::File(t) => Some(t),
            ClientToken::Missing(_) => None,
        }
    }

    /// What to add to a 401 answer's message.
    pub fn hint(&self) -> String {
        match self {
            ClientToken::Configured(_) => {
                "the token is [mesos] api_token; it does not match the daemon's".into()
            }
            ClientToken::File(_) => {
                "the token was read from [mesos] api_token_file; a daemon with \
                 another database or its own [mesos] api_token does not take it"
                    .into()
            }
            ClientToken::Missing(p) => format!(
                "no token: [mesos] api_token is not set and {} does not exist (the daemon writes \
                 it at its first start; use the daemon's AIRFLOW_HOME or set api_token)",
                p.display()
            ),
        }
    }
}

/// The token a client sends: the configured one, else the daemon's file.
pub fn for_client(cfg: &Config) -> anyhow::Result<ClientToken> {
    if let Some(t) = &cfg.api_token {
        return Ok(ClientToken::Configured(t.expose().to_string()));
    }
    let path = &cfg.api_token_file;
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(ClientToken::File(t.trim().to_string())),
        Ok(_) => anyhow::bail!(
            "the API token file {} ([mesos] api_token_file) is empty",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(ClientToken::Missing(path.clone()))
        }
        Err(e) => anyhow::bail!(
            "cannot read the API token file {} ([mesos] api_token_file): {e} (it is readable \
             by the daemon's user only: run as that user, or set [mesos] api_token)",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_private_replaced_whole_and_left_alone_when_current() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("api-token");
        write_file(&path, "abc").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abc\n");
        // A file others may read is rewritten private.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_file(&path, "abc").unwrap();
        assert_eq!(mode(&path), 0o600);
        write_file(&path, "def").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "def\n");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("api-token")]);
    }

    #[test]
    fn a_token_is_the_hex_of_its_key() {
        assert_eq!(from_key(&[0xab, 0x01]), "ab01");
    }
}
