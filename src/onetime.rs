//! Sandbox files that a Mesos agent fetches from the daemon through `CommandInfo.URI`: the
//! task's own files (an Airflow workload JSON), its secret environment, and the
//! `docker.tar.gz` of registry credentials for the Docker containerizer.
//!
//! A file's URL names the attempt, the slot and the file, and carries a MAC of the three under
//! a key kept in the state database (so the URL of a launch survives a restart of the daemon,
//! or a move to another daemon on the same database):
//! `<public_url>/v1/files/<backend task id>/<slot>/<mac>/<name>`. The API serves it only
//! while the attempt is still being launched (its state is `launching`: the agent fetches
//! before the command starts), at most once per daemon process; once the attempt has started,
//! the file is gone for good (its content is blanked in the state database).

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Which of an attempt's files a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// `spec.files[i]`.
    File(usize),
    /// The secret environment, as a shell script of `export` lines.
    SecretEnv,
    /// The registry credentials as `docker.tar.gz` (`.docker/config.json`).
    RegistryConfig,
}

impl Slot {
    fn as_string(self) -> String {
        match self {
            Slot::File(i) => format!("f{i}"),
            Slot::SecretEnv => "env".to_string(),
            Slot::RegistryConfig => "registry".to_string(),
        }
    }

    fn parse(s: &str) -> Option<Slot> {
        match s {
            "env" => Some(Slot::SecretEnv),
            "registry" => Some(Slot::RegistryConfig),
            _ => {
                let digits = s.strip_prefix('f')?;
                // One spelling per index: no sign, no leading zeros.
                (digits == "0" || !digits.starts_with('0'))
                    .then(|| digits.parse().ok().map(Slot::File))
                    .flatten()
            }
        }
    }
}

/// File name in the sandbox of the secret environment (hidden, removed by the task's shell
/// before its command runs).
pub const SECRET_ENV_FILE: &str = ".airflow-mesos-secret-env";

/// The daemon's sandbox files: their URLs, and which were served already.
pub struct OneTimeFiles {
    /// Base URL agents reach the daemon at (`[mesos] public_url`), e.g. `http://10.0.0.5:11000`.
    base_url: Option<String>,
    key: Vec<u8>,
    registry_tar: Option<Bytes>,
    served: Mutex<Served>,
}

/// What this process served, oldest first; bounded (an attempt's files are fetched moments
/// after its launch, and once it has started the store refuses them anyway).
#[derive(Default)]
struct Served {
    set: HashSet<(String, Slot)>,
    order: VecDeque<(String, Slot)>,
}

/// Most files remembered as served.
const SERVED_MEMORY: usize = 65_536;

impl std::fmt::Debug for OneTimeFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneTimeFiles")
            .field("base_url", &self.base_url)
            .field("key", &"***")
            .finish_non_exhaustive()
    }
}

impl OneTimeFiles {
    /// `key` signs the URLs (the same on every daemon of one state database);
    /// `registry_tar` is the `docker.tar.gz` served for [`Slot::RegistryConfig`].
    pub fn new(base_url: Option<String>, key: &[u8], registry_tar: Option<Bytes>) -> OneTimeFiles {
        OneTimeFiles {
            base_url: base_url.map(|u| u.trim_end_matches('/').to_string()),
            key: key.to_vec(),
            registry_tar,
            served: Mutex::new(Served::default()),
        }
    }

    /// The registry credentials served for [`Slot::RegistryConfig`], if configured.
    pub fn registry_tar(&self) -> Option<&Bytes> {
        self.registry_tar.as_ref()
    }

    fn mac(&self, attempt: &str, slot: Slot, name: &str) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key size");
        for part in [attempt, &slot.as_string(), name] {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part.as_bytes());
        }
        m
    }

    /// The URL an agent fetches `name` of `slot` of `attempt` (a backend task id) from, or
    /// `None` when no public URL is configured.
    pub fn url(&self, attempt: &str, slot: Slot, name: &str) -> Option<String> {
        let base = self.base_url.as_ref()?;
        let tag = hex::encode(self.mac(attempt, slot, name).finalize().into_bytes());
        Some(format!(
            "{base}/v1/files/{attempt}/{}/{tag}/{name}",
            slot.as_string()
        ))
    }

    /// The slot named by a fetched URL's parts, when its MAC is right.
    pub fn verify(&self, attempt: &str, slot: &str, tag: &str, name: &str) -> Option<Slot> {
        let slot = Slot::parse(slot)?;
        let tag = hex::decode(tag).ok()?;
        self.mac(attempt, slot, name)
            .verify_slice(&tag)
            .ok()
            .map(|()| slot)
    }

    /// True the first time `slot` of `attempt` is served by this process.
    pub fn first_serving(&self, attempt: &str, slot: Slot) -> bool {
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        let key = (attempt.to_string(), slot);
        if !served.set.insert(key.clone()) {
            return false;
        }
        served.order.push_back(key);
        while served.order.len() > SERVED_MEMORY {
            if let Some(old) = served.order.pop_front() {
                served.set.remove(&old);
            }
        }
        true
    }

    /// Forgets what was served for an attempt that no longer needs it.
    pub fn forget(&self, attempt: &str) {
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        served.set.retain(|(a, _)| a != attempt);
        served.order.retain(|(a, _)| a != attempt);
    }
}

/// The secret environment as a POSIX shell script: one `export NAME='value'` line each.
pub fn secret_env_script<'a>(vars: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let mut out = String::new();
    for (k, v) in vars {
        out.push_str("export ");
        out.push_str(k);
        out.push('=');
        out.push_str(&shell_quote(v));
        out.push('\n');
    }
    out
}

/// `s` in single quotes for a POSIX shell (any byte but NUL survives).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> Vec<String> {
        url.split('/').map(str::to_string).collect()
    }

    #[test]
    fn a_url_verifies_only_for_its_attempt_slot_and_name() {
        let files = OneTimeFiles::new(Some("http://d:11000/".into()), b"k1", None);
        let url = files.url("t-1.2", Slot::File(0), "workload.json").unwrap();
        assert!(
            url.starts_with("http://d:11000/v1/files/t-1.2/f0/"),
            "{url}"
        );
        let p = parts(&url);
        let (attempt, slot, tag, name) = (&p[5], &p[6], &p[7], &p[8]);
        assert_eq!(files.verify(attempt, slot, tag, name), Some(Slot::File(0)));
        assert_eq!(files.verify("t-1.3", slot, tag, name), None);
        assert_eq!(files.verify(attempt, "f1", tag, name), None);
        assert_eq!(files.verify(attempt, "f00", tag, name), None);
        assert_eq!(files.verify(attempt, slot, tag, "other.json"), None);
        assert_eq!(files.verify(attempt, slot, "00", name), None);
        assert_eq!(files.verify(attempt, slot, "not hex", name), None);
        // Another key (another state database) does not accept it; the same key does, in
        // another process.
        let other = OneTimeFiles::new(Some("http://d:11000".into()), b"k2", None);
        assert_eq!(other.verify(attempt, slot, tag, name), None);
        let again = OneTimeFiles::new(Some("http://e:1".into()), b"k1", None);
        assert_eq!(again.verify(attempt, slot, tag, name), Some(Slot::File(0)));
        // No public URL, no URL.
        assert!(OneTimeFiles::new(None, b"k1", None)
            .url("t-1.2", Slot::SecretEnv, SECRET_ENV_FILE)
            .is_none());
    }

    #[test]
    fn each_slot_is_served_once_per_process() {
        let files = OneTimeFiles::new(None, b"k", None);
        assert!(files.first_serving("t.1", Slot::RegistryConfig));
        assert!(!files.first_serving("t.1", Slot::RegistryConfig));
        assert!(files.first_serving("t.1", Slot::SecretEnv));
        assert!(files.first_serving("t.2", Slot::RegistryConfig));
        files.forget("t.1");
        assert!(files.first_serving("t.1", Slot::RegistryConfig));
    }

    #[test]
    fn secret_env_is_a_script_that_survives_any_value() {
        let vars = [
            ("A".to_string(), "it's $HOME `x` \"q\"\nline2".to_string()),
            ("B".to_string(), String::new()),
        ];
        let script = secret_env_script(vars.iter().map(|(k, v)| (k, v)));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{script}printf '%s|%s' \"$A\" \"$B\""))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "it's $HOME `x` \"q\"\nline2|"
        );
    }
}
