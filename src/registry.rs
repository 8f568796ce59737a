//! Docker registry credentials, from the one place they are configured
//! ([`RegistryAuth`]), in the shapes each consumer needs:
//!
//! - a docker config JSON (`{"auths":{"<registry>":{"auth":"base64(user:pass)"}}}`) for the
//!   Mesos containerizer (`Image.Docker.config`, a `Secret` of type VALUE);
//! - a `docker.tar.gz` holding `.docker/config.json`, which a Docker-containerizer task fetches
//!   into its sandbox (the agent runs `docker pull` with `HOME=<sandbox>`);
//! - a `(user, password)` pair for the Docker engine API (`images push`, the local backend).
//!
//! The password only ever travels inside a [`Secret`]; no error message carries it.

use crate::config::{RegistryAuth, Secret};
use base64::Engine;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The key Docker uses for Docker Hub in `config.json`.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A registry configuration that cannot be used. Never contains the password.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("docker config {path}: cannot read: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("docker config {path}: {message}")]
    BadConfig { path: PathBuf, message: String },
    #[error("registry password is set but docker_registry_username is not")]
    MissingUsername,
    #[error("registry username '{username}' is set but no password is")]
    MissingPassword { username: String },
    #[error("registry password for '{username}' contains a newline")]
    BadPassword { username: String },
    #[error("building docker.tar.gz: {0}")]
    Archive(#[source] std::io::Error),
}

/// The docker config JSON to hand to agents, or `None` when no credentials are configured
/// (or only a pre-made `credentials_uri`).
///
/// With username/password: one `auths` entry for `registry` (Docker Hub's key when unset).
/// With `docker_config`: the `auths` of that file (credential helpers cannot run on agents, so
/// a file without inline `auth` entries is an error). Username/password win when both are set.
pub fn docker_config_json(auth: &RegistryAuth) -> Result<Option<Secret>, RegistryError> {
    if let Some((key, user, pass)) = inline_credentials(auth)? {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", pass.expose()));
        let json = serde_json::json!({ "auths": { key: { "auth": token } } });
        return Ok(Some(Secret::new(json.to_string())));
    }
    if let Some(path) = &auth.docker_config {
        let auths = read_auths(path)?;
        let json = serde_json::json!({ "auths": auths });
        return Ok(Some(Secret::new(json.to_string())));
    }
    Ok(None)
}

/// `(registry key, user, password)` from the username/password keys, if set.
fn inline_credentials(
    auth: &RegistryAuth,
) -> Result<Option<(String, String, Secret)>, RegistryError> {
    match (&auth.username, &auth.password) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(RegistryError::MissingUsername),
        (Some(u), None) => {
            if auth.docker_config.is_some() || auth.credentials_uri.is_some() {
                // The username is just informational next to another credential source.
                Ok(None)
            } else {
                Err(RegistryError::MissingPassword {
                    username: u.clone(),
                })
            }
        }
        (Some(u), Some(p)) => {
            if p.expose().contains('\n') {
                return Err(RegistryError::BadPassword {
                    username: u.clone(),
                });
            }
            let key = auth
                .registry
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| DOCKER_HUB_KEY.to_string());
            Ok(Some((key, u.clone(), p.clone())))
        }
    }
}

fn read_auths(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>, RegistryError> {
    let text = std::fs::read_to_string(path).map_err(|source| RegistryError::ReadConfig {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |message: &str| RegistryError::BadConfig {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    // serde_json's error would quote the offending text, which may be a secret.
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|_| bad("not valid JSON"))?;
    let auths = v
        .get("auths")
        .and_then(|a| a.as_object())
        .ok_or_else(|| bad("has no \"auths\" object"))?;
    let usable: serde_json::Map<String, serde_json::Value> = auths
        .iter()
        .filter(|(_, e)| {
            e.get("auth")
                .and_then(|a| a.as_str())
                .is_some_and(|a| !a.is_empty())
                || (e.get("username").is_some() && e.get("password").is_some())
        })
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect();
    if usable.is_empty() {
        return Err(bad(
            "has no inline credentials in \"auths\" (credential helpers/stores cannot be used by Mesos agents)",
        ));
    }
    Ok(usable)
}

/// The `docker.tar.gz` the daemon serves to Docker-containerizer agents for `auth`: `None`
/// when no credentials are configured, or when they come from a URI of the operator's own
/// (`docker_credentials_uri`).
pub fn served_docker_tar_gz(auth: &RegistryAuth) -> Result<Option<bytes::Bytes>, RegistryError> {
    if auth.credentials_uri.is_some() {
        return Ok(None);
    }
    docker_config_json(auth)?
        .map(|c| docker_tar_gz(&c).map(bytes::Bytes::from))
        .transpose()
}

/// A gzip'd tar holding `.docker/config.json` with `config_json`, for the Docker
/// containerizer (fetched with `extract = true`).
pub fn docker_tar_gz(config_json: &Secret) -> Result<Vec<u8>, RegistryError> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let data = config_json.expose().as_bytes();
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o700);
    dir.set_size(0);
    dir.set_mtime(0);
    tar.append_data(&mut dir, ".docker/", std::io::empty())
        .map_err(RegistryError::Archive)?;
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o600);
    header.set_size(data.len() as u64);
    header.set_mtime(0);
    tar.append_data(&mut header, ".docker/config.json", data)
        .map_err(RegistryError::Archive)?;
    let gz = tar.into_inner().map_err(RegistryError::Archive)?;
    let mut out = gz.finish().map_err(RegistryError::Archive)?;
    out.flush().map_err(RegistryError::Archive)?;
    Ok(out)
}

/// True when `key` (a `config.json` auths key or a configured registry) names `host`.
/// Docker Hub has several spellings.
fn registry_matches(key: &str, host: &str) -> bool {
    fn norm(s: &str) -> String {
        let s = s.trim().to_ascii_lowercase();
        let s = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(&s)
            .to_string();
        let host = s.split('/').next().unwrap_or("").to_string();
        match host.as_str() {
            ""
            | "docker.io"
            | "index.docker.io"
            | "registry-1.docker.io"
            | "registry.hub.docker.com" => "docker.io".to_string(),
            _ => host,
        }
    }
    norm(key) == norm(host)
}

/// The registry host of an image reference (`docker.io` when it has none), as Docker decides:
/// the first path component is a registry when it contains `.` or `:` or is `localhost`.
pub fn image_registry(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

/// True when the configured credentials should go with a task running `image`: always for a
/// docker config file or a pre-made credentials URI (they may cover several registries), and
/// for username/password only when the image comes from the configured registry.
pub fn applies_to(auth: &RegistryAuth, image: &str) -> bool {
    if auth.docker_config.is_some() || auth.credentials_uri.is_some() {
        return true;
    }
    match inline_credentials(auth) {
        Ok(Some((key, _, _))) => registry_matches(&key, &image_registry(image)),
        _ => false,
    }
}

/// Credentials for talking to `registry_host` through the Docker engine (push/pull), or
/// `None` when none are configured for that host.
pub fn credentials_for(
    auth: &RegistryAuth,
    registry_host: &str,
) -> Result<Option<(String, Secret)>, RegistryError> {
    if let Some((key, user, pass)) = inline_credentials(auth)? {
        if registry_matches(&key, registry_host) {
            return Ok(Some((user, pass)));
        }
    }
    let Some(path) = &auth.docker_config else {
        return Ok(None);
    };
    let auths = read_auths(path)?;
    for (key, entry) in &auths {
        if !registry_matches(key, registry_host) {
            continue;
        }
        if let (Some(u), Some(p)) = (
            entry.get("username").and_then(|v| v.as_str()),
            entry.get("password").and_then(|v| v.as_str()),
        ) {
            return Ok(Some((u.to_string(), Secret::new(p))));
        }
        let token = entry.get("auth").and_then(|v| v.as_str()).unwrap_or("");
        let bad = || RegistryError::BadConfig {
            path: path.clone(),
            message: format!("the \"auth\" entry for '{key}' is not base64 of user:password"),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (u, p) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some((u.to_string(), Secret::new(p))));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn auth(user: &str, pass: &str, registry: Option<&str>) -> RegistryAuth {
        RegistryAuth {
            registry: registry.map(str::to_string),
            username: Some(user.into()),
            password: Some(Secret::new(pass)),
            ..Default::default()
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn config_json_from_username_and_password() {
        let c = docker_config_json(&auth("u", "p@ss", Some("reg.example.com:5000")))
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(c.expose()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"auths":{"reg.example.com:5000":{"auth": b64("u:p@ss")}}})
        );
        // Docker Hub when no registry is named.
        let c = docker_config_json(&auth("u", "p", None)).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(c.expose()).unwrap();
        assert!(v["auths"][DOCKER_HUB_KEY]["auth"].is_string());
        // Nothing configured: nothing.
        assert!(docker_config_json(&RegistryAuth::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn config_json_from_an_existing_config_file_keeps_only_usable_auths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            serde_json::json!({
                "auths": {
                    "reg.example.com": {"auth": b64("a:b")},
                    "helper.example.com": {},
                },
                "credsStore": "desktop",
            })
            .to_string(),
        )
        .unwrap();
        let a = RegistryAuth {
            docker_config: Some(path.clone()),
            ..Default::default()
        };
        let c = docker_config_json(&a).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(c.expose()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"auths":{"reg.example.com":{"auth": b64("a:b")}}})
        );
        assert_eq!(
            credentials_for(&a, "reg.example.com")
                .unwrap()
                .map(|(u, p)| (u, p.expose().to_string())),
            Some(("a".to_string(), "b".to_string()))
        );
        assert!(credentials_for(&a, "other.example.com").unwrap().is_none());

        // Only helpers: an error naming the file, not the content.
        std::fs::write(&path, r#"{"auths":{"x":{}},"credsStore":"secretservice"}"#).unwrap();
        let err = docker_config_json(&a).unwrap_err();
        assert!(err.to_string().contains("credential helpers"), "{err}");
        assert!(err.to_string().contains("config.json"), "{err}");
        // Not JSON: the message does not echo the content.
        std::fs::write(&path, "hunter2-not-json").unwrap();
        let err = docker_config_json(&a).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        // Missing file.
        let a = RegistryAuth {
            docker_config: Some(dir.path().join("nope.json")),
            ..Default::default()
        };
        assert!(matches!(
            docker_config_json(&a).unwrap_err(),
            RegistryError::ReadConfig { .. }
        ));
    }

    #[test]
    fn tar_gz_contains_docker_config_json() {
        let secret = docker_config_json(&auth("u", "p", Some("r.example.com")))
            .unwrap()
            .unwrap();
        let bytes = docker_tar_gz(&secret).unwrap();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut found = None;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().to_string();
            if path == ".docker/config.json" {
                assert_eq!(entry.header().mode().unwrap() & 0o777, 0o600);
                let mut s = String::new();
                entry.read_to_string(&mut s).unwrap();
                found = Some(s);
            }
        }
        assert_eq!(found.as_deref(), Some(secret.expose()));
        // It really unpacks (as the Mesos fetcher with extract=true would).
        let dir = tempfile::tempdir().unwrap();
        tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]))
            .unpack(dir.path())
            .unwrap();
        let on_disk = std::fs::read_to_string(dir.path().join(".docker/config.json")).unwrap();
        assert_eq!(on_disk, secret.expose());
    }

    #[test]
    fn credentials_for_matches_the_registry_host() {
        let a = auth("u", "p", Some("reg.example.com:5000"));
        let (u, p) = credentials_for(&a, "reg.example.com:5000")
            .unwrap()
            .unwrap();
        assert_eq!((u.as_str(), p.expose()), ("u", "p"));
        assert!(credentials_for(&a, "reg.example.com").unwrap().is_none());
        assert!(credentials_for(&a, "docker.io").unwrap().is_none());
        // Docker Hub spellings.
        let hub = auth("u", "p", None);
        for host in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert!(credentials_for(&hub, host).unwrap().is_some(), "{host}");
        }
        let hub2 = auth("u", "p", Some("https://index.docker.io/v1/"));
        assert!(credentials_for(&hub2, "docker.io").unwrap().is_some());
    }

    #[test]
    fn half_configured_credentials_are_errors_without_the_password() {
        let a = RegistryAuth {
            password: Some(Secret::new("s3cret")),
            ..Default::default()
        };
        let err = docker_config_json(&a).unwrap_err();
        assert!(matches!(err, RegistryError::MissingUsername));
        assert!(!format!("{err} {err:?}").contains("s3cret"));
        let a = RegistryAuth {
            username: Some("bob".into()),
            ..Default::default()
        };
        assert!(matches!(
            credentials_for(&a, "docker.io").unwrap_err(),
            RegistryError::MissingPassword { .. }
        ));
        let err = docker_config_json(&auth("bob", "a\nb", None)).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("a\nb"));
    }

    #[test]
    fn credentials_go_only_with_images_from_their_registry() {
        let a = auth("u", "p", Some("reg.example.com"));
        assert!(applies_to(&a, "reg.example.com/team/airflow:2"));
        assert!(!applies_to(&a, "apache/airflow:2"));
        assert!(!applies_to(&a, "other.example.com/airflow"));
        assert!(applies_to(&auth("u", "p", None), "apache/airflow:2"));
        let uri = RegistryAuth {
            credentials_uri: Some("http://x/docker.tar.gz".into()),
            ..Default::default()
        };
        assert!(applies_to(&uri, "anything"));
        assert!(!applies_to(&RegistryAuth::default(), "apache/airflow"));
    }

    #[test]
    fn image_registry_follows_dockers_rule() {
        assert_eq!(image_registry("airflow:2"), "docker.io");
        assert_eq!(image_registry("apache/airflow:2"), "docker.io");
        assert_eq!(
            image_registry("reg.example.com/airflow:2"),
            "reg.example.com"
        );
        assert_eq!(image_registry("localhost:5000/a"), "localhost:5000");
        assert_eq!(image_registry("localhost/a"), "localhost");
    }
}
