//! Image references and registry credentials.
//!
//! [`ImageRef`] splits `host[:port]/repo[:tag]` the way the Docker CLI does (the first path
//! component is a registry host when it has a `.` or `:` or is `localhost`; otherwise the
//! image is on Docker Hub). [`credentials_for`] picks the credentials of the `[mesos]` block
//! (`docker_registry*` keys, or a docker `config.json`'s `auths`) for one registry host; they
//! are sent only to the registry they were configured for.
//!
//! Credential helpers (`credsStore`, `credHelpers` in `config.json`) are not run.

use crate::config::RegistryAuth;
use base64::Engine as _;
use bollard::auth::DockerCredentials;
use std::path::{Path, PathBuf};

/// The canonical name of Docker Hub in this module.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host[:port] (`docker.io` for Docker Hub).
    pub registry: String,
    /// The reference without tag or digest, as given (e.g. `127.0.0.1:5000/am/x`).
    pub repository: String,
    /// The tag (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// `sha256:...` when the reference pins a digest.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `[host[:port]/]path[:tag][@digest]`.
    pub fn parse(reference: &str) -> ImageRef {
        let (rest, digest) = match reference.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (reference, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (repository, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                rest[..last_slash + i].to_string(),
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest.to_string(), None),
        };
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        let registry = match repository.split_once('/') {
            Some((first, _))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                normalize_host(first)
            }
            _ => DOCKER_HUB.to_string(),
        };
        ImageRef {
            registry,
            repository,
            tag,
            digest,
        }
    }

    /// `repository:tag` or `repository@digest`, as the engine is asked for it.
    pub fn full(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("{}@{d}", self.repository),
            (None, Some(t)) => format!("{}:{t}", self.repository),
            (None, None) => self.repository.clone(),
        }
    }
}

/// Normalises a registry address as written in configs (`https://host:5000/v1/`,
/// `index.docker.io`) to `host[:port]`, with all Docker Hub spellings as [`DOCKER_HUB`].
pub fn normalize_host(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        ""
        | "docker.io"
        | "index.docker.io"
        | "registry-1.docker.io"
        | "registry.hub.docker.com" => DOCKER_HUB.to_string(),
        _ => host,
    }
}

/// Credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the docker config {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the docker config {path} is not valid JSON: {message}")]
    ParseConfig { path: PathBuf, message: String },
    #[error("the docker config {path}: `auths.{registry}.auth` is not base64 of `user:password`")]
    BadAuthField { path: PathBuf, registry: String },
    #[error(transparent)]
    Configured(#[from] crate::registry::RegistryError),
}

/// The credentials to send to `registry_host` (as given by [`ImageRef::registry`]), if any are
/// configured for it ([`crate::registry::credentials_for`]: the `docker_registry_username` /
/// `_password` pair when `docker_registry` names that host, else the matching `auths` entry
/// of the configured docker `config.json`), else the matching entry of `fallback_config` (the
/// user's own `~/.docker/config.json`, when the caller wants it).
pub fn credentials_for(
    auth: &RegistryAuth,
    registry_host: &str,
    fallback_config: Option<&Path>,
) -> Result<Option<DockerCredentials>, AuthError> {
    // The configured credentials are resolved in one place for every consumer.
    if let Some((user, pass)) = crate::registry::credentials_for(auth, registry_host)? {
        return Ok(Some(DockerCredentials {
            username: Some(user),
            password: Some(pass.expose().to_string()),
            serveraddress: Some(server_address(&normalize_host(registry_host))),
            ..Default::default()
        }));
    }
    if let Some(path) = fallback_config {
        if path.exists() {
            return from_docker_config(path, registry_host);
        }
    }
    Ok(None)
}

/// The user's docker config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
pub fn default_docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

fn server_address(host: &str) -> String {
    if host == DOCKER_HUB {
        "https://index.docker.io/v1/".to_string()
    } else {
        host.to_string()
    }
}

/// Looks `host` up in the `auths` of a docker `config.json`.
pub fn from_docker_config(path: &Path, host: &str) -> Result<Option<DockerCredentials>, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::ReadConfig {
        path: path.to_path_buf(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| AuthError::ParseConfig {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let host = normalize_host(host);
    for (key, entry) in auths {
        if normalize_host(key) != host {
            continue;
        }
        let text_field = |k: &str| entry.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let mut creds = DockerCredentials {
            serveraddress: Some(key.clone()),
            identitytoken: text_field("identitytoken"),
            username: text_field("username"),
            password: text_field("password"),
            ..Default::default()
        };
        if let Some(encoded) = text_field("auth").filter(|s| !s.is_empty()) {
            let bad = || AuthError::BadAuthField {
                path: path.to_path_buf(),
                registry: key.clone(),
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (u, p) = decoded.split_once(':').ok_or_else(bad)?;
            creds.username = Some(u.to_string());
            creds.password = Some(p.to_string());
        }
        return Ok(Some(creds));
    }
    Ok(None)
}

/// Replaces every occurrence of the configured password in `text` by `***` (a registry or
/// engine message should never echo it, but a message is shown to users and logged).
pub fn redact(text: &str, creds: Option<&DockerCredentials>) -> String {
    let mut out = text.to_string();
    if let Some(c) = creds {
        for secret in [&c.password, &c.identitytoken, &c.registrytoken, &c.auth]
            .into_iter()
            .flatten()
        {
            if secret.len() >= 3 {
                out = out.replace(secret.as_str(), "***");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn image_references() {
        let r = ImageRef::parse("busybox");
        assert_eq!(
            (r.registry.as_str(), r.full().as_str()),
            ("docker.io", "busybox:latest")
        );
        let r = ImageRef::parse("127.0.0.1:5000/am/x:1.2");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "127.0.0.1:5000/am/x");
        assert_eq!(r.tag.as_deref(), Some("1.2"));
        let r = ImageRef::parse("localhost:5000/x");
        assert_eq!(
            (r.registry.as_str(), r.tag.as_deref()),
            ("localhost:5000", Some("latest"))
        );
        let r = ImageRef::parse("apache/airflow:3.1.0");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "apache/airflow")
        );
        let r = ImageRef::parse("reg.example.com/a/b@sha256:abc");
        assert_eq!(r.registry, "reg.example.com");
        assert_eq!((r.tag, r.digest.as_deref()), (None, Some("sha256:abc")));
        assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(
            normalize_host("http://Reg.Example.com:5000/"),
            "reg.example.com:5000"
        );
    }

    fn auth(registry: Option<&str>) -> RegistryAuth {
        RegistryAuth {
            registry: registry.map(str::to_string),
            username: Some("u".into()),
            password: Some(Secret::new("p4ss")),
            ..Default::default()
        }
    }

    #[test]
    fn username_password_go_only_to_their_registry() {
        let a = auth(Some("127.0.0.1:5000"));
        let c = credentials_for(&a, "127.0.0.1:5000", None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("u"), Some("p4ss"))
        );
        assert!(credentials_for(&a, "docker.io", None).unwrap().is_none());
        let hub = auth(None);
        assert!(credentials_for(&hub, "docker.io", None).unwrap().is_some());
        assert!(credentials_for(&hub, "evil.example.com", None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn docker_config_auths_are_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let b64 = base64::engine::general_purpose::STANDARD.encode("cfguser:cfg:pw");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"https://reg.example.com:5000":{{"auth":"{b64}"}},"x.io":{{"auth":"!!"}}}}}}"#),
        )
        .unwrap();
        let a = RegistryAuth {
            docker_config: Some(path.clone()),
            ..Default::default()
        };
        let c = credentials_for(&a, "reg.example.com:5000", None)
            .unwrap()
            .unwrap();
        assert_eq!(c.username.as_deref(), Some("cfguser"));
        assert_eq!(
            c.password.as_deref(),
            Some("cfg:pw"),
            "split at the first colon"
        );
        assert!(credentials_for(&a, "other.io", None).unwrap().is_none());
        let e = credentials_for(&a, "x.io", None).unwrap_err();
        assert!(
            e.to_string().contains("x.io") && e.to_string().contains("auth"),
            "{e}"
        );
        assert!(!e.to_string().contains("!!"));
        // The fallback config is used when nothing is configured.
        let none = RegistryAuth::default();
        assert!(credentials_for(&none, "reg.example.com:5000", Some(&path))
            .unwrap()
            .is_some());
        assert!(credentials_for(&none, "reg.example.com:5000", None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn redact_hides_the_password() {
        let c = DockerCredentials {
            password: Some("hunter22".into()),
            ..Default::default()
        };
        assert_eq!(
            redact("bad login hunter22 at x", Some(&c)),
            "bad login *** at x"
        );
    }
}
