//! The known `[mesos]` keys, in the order `config show` lists them: Airflow 1.10's keys first,
//! then the AVENTER provider's, then the ones this project adds. Used to spot unknown keys
//! (with a did-you-mean) and to decide which keys take `_cmd` / `_secret` variants.

/// Where a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Airflow 1.10 `MesosExecutor`.
    Airflow110,
    /// The AVENTER provider (`avmesos-airflow-provider`).
    Aventer,
    /// Added by airflow-mesos.
    New,
}

/// One known key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    pub name: &'static str,
    pub origin: Origin,
    /// Never printed; may be given as `<key>_cmd` / `<key>_secret`.
    pub secret: bool,
    /// Accepted for compatibility, has no effect.
    pub ignored: bool,
}

const fn key(name: &'static str, origin: Origin) -> KeySpec {
    KeySpec {
        name,
        origin,
        secret: false,
        ignored: false,
    }
}

const fn secret(name: &'static str, origin: Origin) -> KeySpec {
    KeySpec {
        name,
        origin,
        secret: true,
        ignored: false,
    }
}

use Origin::{Airflow110 as A, Aventer as V, New as N};

/// Every key of the `[mesos]` section.
pub const KEYS: &[KeySpec] = &[
    key("master", A),
    key("framework_name", A),
    key("task_cpu", A),
    key("task_memory", A),
    key("checkpoint", A),
    key("failover_timeout", A),
    key("authenticate", A),
    key("default_principal", A),
    secret("default_secret", A),
    key("docker_image_slave", A),
    key("mesos_ssl", V),
    key("framework_role", V),
    key("task_disk", V),
    key("command_shell", V),
    key("docker_network_mode", V),
    key("docker_volume_driver", V),
    key("docker_volume_dag_name", V),
    key("docker_volume_dag_container_path", V),
    key("docker_volume_logs_name", V),
    key("docker_volume_logs_container_path", V),
    key("docker_sock", V),
    key("docker_user_group_id", V),
    key("docker_environment", V),
    key("mesos_attributes", V),
    key("mesos_fetch_uri", V),
    key("mesos_fetch_uri_username", V),
    key("api_username", V),
    secret("api_password", V),
    KeySpec {
        name: "operator_api_url",
        origin: V,
        secret: false,
        ignored: true,
    },
    key("backend", N),
    key("containerizer", N),
    // Not a secret as a whole, but it may embed a password: it takes `_cmd`/`_secret` like
    // Airflow's `sql_alchemy_conn`, and its password is masked wherever it is shown.
    KeySpec {
        name: "database_url",
        origin: N,
        secret: false,
        ignored: false,
    },
    key("api_listen", N),
    key("api_max_connections", N),
    key("api_header_timeout", N),
    key("api_body_timeout", N),
    key("api_idle_timeout", N),
    secret("api_token", N),
    key("api_token_file", N),
    key("api_url", N),
    key("public_url", N),
    key("framework_user", N),
    key("docker_registry", N),
    key("docker_registry_username", N),
    secret("docker_registry_password", N),
    key("docker_config", N),
    key("docker_credentials_uri", N),
    key("send_registry_credentials", N),
    key("force_pull", N),
    key("kill_grace_period", N),
    key("launch_retries", N),
    key("reconciliation_interval", N),
    key("offer_refuse_seconds", N),
    key("store_outage_limit", N),
    key("queued_timeout", N),
    key("mesos_ca_cert", N),
    key("docker_privileged", N),
    key("local_cpus", N),
    key("local_memory", N),
    key("sandbox_dir", N),
    key("sandbox_retention", N),
    key("task_retention", N),
    key("leader_election", N),
    key("leader_lease", N),
    key("allow_privileged", N),
    key("allowed_host_paths", N),
    key("allowed_users", N),
    key("allowed_network_modes", N),
    key("allowed_images", N),
    key("max_task_cpu", N),
    key("max_task_memory", N),
    key("max_task_disk", N),
    key("allowed_docker_parameters", N),
    key("allowed_origins", N),
];

/// The spec of `name` (lower-case), if known.
pub fn lookup(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == name)
}

/// Whether `name` may be given as `<name>_cmd` / `<name>_secret`.
pub fn takes_cmd_and_secret(name: &str) -> bool {
    lookup(name).is_some_and(|k| k.secret) || name == "database_url"
}

/// How a key written in the file or environment relates to the known keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// A known key.
    Known(&'static KeySpec),
    /// `<base>_cmd` or `<base>_secret` of a key that takes them.
    Variant {
        base: &'static KeySpec,
        variant: Variant,
    },
    /// `<base>_cmd` / `<base>_secret` of a known key that does not take them (ignored, as
    /// Airflow ignores them for non-sensitive options).
    VariantNotAllowed { base: &'static KeySpec },
    /// Not a key we know; a near miss, if any.
    Unknown { suggestion: Option<&'static str> },
}

/// `_cmd` or `_secret`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Cmd,
    Secret,
}

/// Classifies a (lower-case) key.
pub fn classify(name: &str) -> KeyKind {
    if let Some(k) = lookup(name) {
        return KeyKind::Known(k);
    }
    for (suffix, variant) in [("_cmd", Variant::Cmd), ("_secret", Variant::Secret)] {
        if let Some(base) = name.strip_suffix(suffix).and_then(lookup) {
            return if takes_cmd_and_secret(base.name) {
                KeyKind::Variant { base, variant }
            } else {
                KeyKind::VariantNotAllowed { base }
            };
        }
    }
    KeyKind::Unknown {
        suggestion: did_you_mean(name),
    }
}

/// The known key closest to `name`, when it is a plausible typo.
pub fn did_you_mean(name: &str) -> Option<&'static str> {
    let mut best: Option<(usize, &'static str)> = None;
    for k in KEYS {
        let d = edit_distance(name, k.name);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k.name));
        }
    }
    let (d, k) = best?;
    let limit = (name.chars().count() / 4).clamp(1, 3);
    (d <= limit).then_some(k)
}

/// Levenshtein distance (characters).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lower_case() {
        for (i, k) in KEYS.iter().enumerate() {
            assert_eq!(k.name, k.name.to_lowercase());
            assert!(
                !KEYS[..i].iter().any(|o| o.name == k.name),
                "{} twice",
                k.name
            );
        }
    }

    #[test]
    fn classification() {
        assert!(matches!(classify("task_cpu"), KeyKind::Known(k) if k.name == "task_cpu"));
        assert!(matches!(
            classify("default_secret_cmd"),
            KeyKind::Variant { base, variant: Variant::Cmd } if base.name == "default_secret"
        ));
        assert!(matches!(
            classify("api_token_secret"),
            KeyKind::Variant { base, variant: Variant::Secret } if base.name == "api_token"
        ));
        assert!(
            matches!(classify("master_cmd"), KeyKind::VariantNotAllowed { base } if base.name == "master")
        );
        assert_eq!(
            classify("task_cpus"),
            KeyKind::Unknown {
                suggestion: Some("task_cpu")
            }
        );
        assert_eq!(
            classify("framwork_nmae"),
            KeyKind::Unknown {
                suggestion: Some("framework_name")
            }
        );
        assert_eq!(classify("colour"), KeyKind::Unknown { suggestion: None });
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
