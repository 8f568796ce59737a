//! One-time files: content (a workload JSON, a `docker.tar.gz` of registry credentials) that a
//! Mesos agent fetches into a task's sandbox through `CommandInfo.URI`. Each file gets an
//! unguessable token; the first fetch takes it, any later fetch or a wrong token gets nothing,
//! and unfetched files expire.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A file waiting to be fetched once.
#[derive(Debug, Clone)]
pub struct OneTimeFile {
    /// File name in the sandbox (the URI's last path segment).
    pub name: String,
    pub content: Bytes,
    pub expires_at: Instant,
}

/// The registry of one-time files. Shared by the backend (registers) and the HTTP API
/// (serves `GET /v1/files/{token}/{name}`).
#[derive(Debug)]
pub struct OneTimeFiles {
    /// Base URL agents reach the daemon at (`[mesos] public_url`), e.g. `http://10.0.0.5:11000`.
    base_url: Option<String>,
    files: Mutex<HashMap<String, OneTimeFile>>,
}

impl OneTimeFiles {
    pub fn new(base_url: Option<String>) -> OneTimeFiles {
        OneTimeFiles {
            base_url: base_url.map(|u| u.trim_end_matches('/').to_string()),
            files: Mutex::new(HashMap::new()),
        }
    }

    /// The base URL, if agents can reach the daemon at all.
    pub fn base_url(&self) -> Option<&str> {
        self.base_url.as_deref()
    }

    /// Registers `content` under a fresh token and returns the URL an agent fetches it from
    /// (`<base>/v1/files/<token>/<name>`), or `None` when no base URL is configured.
    pub fn register(
        &self,
        name: &str,
        content: Bytes,
        ttl: Duration,
        now: Instant,
    ) -> Option<String> {
        let base = self.base_url.as_ref()?;
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.retain(|_, f| f.expires_at > now);
        files.insert(
            token.clone(),
            OneTimeFile {
                name: name.to_string(),
                content,
                expires_at: now + ttl,
            },
        );
        Some(format!("{base}/v1/files/{token}/{name}"))
    }

    /// Takes the file for `token` (and `name`); a second call, an expired or unknown token, or
    /// a wrong name gets `None`.
    pub fn take(&self, token: &str, name: &str, now: Instant) -> Option<OneTimeFile> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        match files.get(token) {
            Some(f) if f.name == name && f.expires_at > now => files.remove(token),
            _ => None,
        }
    }

    /// Number of files waiting.
    pub fn pending(&self) -> usize {
        self.files.lock().map(|f| f.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_served_once_and_only_with_its_token() {
        let reg = OneTimeFiles::new(Some("http://d:11000/".into()));
        let now = Instant::now();
        let url = reg
            .register(
                "docker.tar.gz",
                Bytes::from_static(b"x"),
                Duration::from_secs(60),
                now,
            )
            .unwrap();
        assert!(url.starts_with("http://d:11000/v1/files/"), "{url}");
        let token = url.split('/').nth(5).unwrap().to_string();
        assert!(reg.take("wrong", "docker.tar.gz", now).is_none());
        assert!(reg.take(&token, "other", now).is_none());
        assert_eq!(
            &reg.take(&token, "docker.tar.gz", now).unwrap().content[..],
            b"x"
        );
        assert!(reg.take(&token, "docker.tar.gz", now).is_none());
    }

    #[test]
    fn files_expire() {
        let reg = OneTimeFiles::new(Some("http://d".into()));
        let now = Instant::now();
        let url = reg
            .register("f", Bytes::new(), Duration::from_secs(1), now)
            .unwrap();
        let token = url.split('/').nth(5).unwrap().to_string();
        assert!(reg
            .take(&token, "f", now + Duration::from_secs(2))
            .is_none());
        assert!(OneTimeFiles::new(None)
            .register("f", Bytes::new(), Duration::from_secs(1), now)
            .is_none());
    }
}
