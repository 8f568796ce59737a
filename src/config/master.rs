//! `[mesos] master`: every form Airflow 1.10, the AVENTER provider and libmesos accept.
//!
//! * `host:port` or `host` (port 5050), and comma lists of them → `http://…` base URLs
//!   (`https://` when `mesos_ssl` is true);
//! * `http://host:port` / `https://host:port` (also in comma lists);
//! * `zk://[user:pass@]host1:2181,host2:2181/path` (a path other than `/` is required);
//! * `file:///absolute/path` (the file holds one of the other forms; read at startup by the
//!   Mesos layer, so only the path is kept here);
//! * `master@host:port` (libmesos PID form), tolerated.

use super::{MasterAddr, Secret};
use std::path::PathBuf;

/// The default master (`localhost:5050`).
pub const DEFAULT_MASTER: &str = "localhost:5050";

const DEFAULT_PORT: u16 = 5050;

/// What a valid value looks like (for error messages).
pub const EXPECTED: &str = "host:port, a comma list of host:port, http(s)://host:port, \
     zk://[user:pass@]host:2181[,host:2181]/path or file:///path";

/// Parses a master value. `ssl` makes bare `host:port` entries `https`.
pub fn parse_master(value: &str, ssl: bool) -> Result<MasterAddr, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err("the value is empty".into());
    }
    let lower = v.to_ascii_lowercase();
    if lower.starts_with("zk://") {
        return parse_zk(&v[5..]);
    }
    if lower.starts_with("file://") {
        let path = &v[7..];
        if !path.starts_with('/') || path.len() < 2 {
            return Err("file:// needs an absolute path, e.g. file:///etc/mesos/master".into());
        }
        return Ok(MasterAddr::File(PathBuf::from(path)));
    }
    let mut hosts = Vec::new();
    for part in v.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err("an entry of the comma list is empty".into());
        }
        hosts.push(parse_host(part, ssl)?);
    }
    Ok(MasterAddr::Hosts(hosts))
}

/// One entry of a host list → a base URL without a trailing `/`.
fn parse_host(part: &str, ssl: bool) -> Result<String, String> {
    let lower = part.to_ascii_lowercase();
    let with_scheme = if lower.starts_with("http://") || lower.starts_with("https://") {
        part.to_string()
    } else if lower.contains("://") {
        return Err(format!(
            "{:?} has an unsupported scheme (use http://, https://, zk:// or file://)",
            shown(part)
        ));
    } else {
        let bare = part.strip_prefix("master@").unwrap_or(part);
        let scheme = if ssl { "https" } else { "http" };
        format!("{scheme}://{bare}")
    };
    let url = url::Url::parse(&with_scheme)
        .map_err(|e| format!("{:?} is not a valid address ({e})", shown(part)))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{:?} has no host", shown(part)))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in a master URL are not supported; use default_principal and default_secret".into());
    }
    if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
        return Err(format!(
            "{:?}: a master address has no path or query",
            shown(part)
        ));
    }
    // `url` forgets an explicit default port (`http://m:80`), so look at the text.
    let authority = with_scheme
        .split_once("://")
        .map_or("", |(_, r)| r.split('/').next().unwrap_or(""));
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let explicit_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let port = if explicit_port {
        url.port_or_known_default().unwrap_or(DEFAULT_PORT)
    } else {
        DEFAULT_PORT
    };
    Ok(format!("{}://{}:{}", url.scheme(), host, port))
}

fn parse_zk(rest: &str) -> Result<MasterAddr, String> {
    let (auth, rest) = match rest.rfind('@') {
        Some(at) if !rest[..at].contains('/') => (Some(&rest[..at]), &rest[at + 1..]),
        _ => (None, rest),
    };
    let Some(slash) = rest.find('/') else {
        return Err("zk:// needs a znode path after the servers, e.g. zk://host:2181/mesos".into());
    };
    let (servers, path) = rest.split_at(slash);
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Err("zk:// needs a znode path other than /, e.g. zk://host:2181/mesos".into());
    }
    if servers.is_empty() {
        return Err("zk:// needs at least one ZooKeeper server, e.g. zk://host:2181/mesos".into());
    }
    for s in servers.split(',') {
        let s = s.trim();
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if host.is_empty() {
            return Err(format!("zk:// server entry {s:?} has no host"));
        }
        if let Some(p) = port {
            if p.parse::<u16>().is_err() {
                return Err(format!("zk:// server {s:?} has an invalid port"));
            }
        }
    }
    let auth = match auth {
        Some(a) if !a.contains(':') => {
            return Err("zk:// credentials must be user:password".into());
        }
        Some(a) => Some(Secret::new(a)),
        None => None,
    };
    Ok(MasterAddr::Zk {
        servers: servers.to_string(),
        path: path.to_string(),
        auth,
    })
}

/// An entry for an error message, any `user:pass@` replaced by `***@`.
fn shown(part: &str) -> String {
    match part.rfind('@') {
        Some(at) => match part.find("://") {
            Some(s) if s < at => format!("{}***@{}", &part[..s + 3], &part[at + 1..]),
            _ => format!("***@{}", &part[at + 1..]),
        },
        None => part.to_string(),
    }
}

/// A printable form of a master value with any ZooKeeper password replaced by `***`.
pub fn redact_master(value: &str) -> String {
    let v = value.trim();
    if v.to_ascii_lowercase().starts_with("zk://") {
        let rest = &v[5..];
        if let Some(at) = rest.rfind('@').filter(|at| !rest[..*at].contains('/')) {
            let user = rest[..at].split(':').next().unwrap_or("");
            return format!("zk://{user}:***@{}", &rest[at + 1..]);
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(v: &[&str]) -> MasterAddr {
        MasterAddr::Hosts(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn host_forms() {
        assert_eq!(
            parse_master("localhost:5050", false).unwrap(),
            hosts(&["http://localhost:5050"])
        );
        assert_eq!(
            parse_master("m1", true).unwrap(),
            hosts(&["https://m1:5050"])
        );
        assert_eq!(
            parse_master("m1:5050, m2:5051,http://m3:80/", false).unwrap(),
            hosts(&["http://m1:5050", "http://m2:5051", "http://m3:80"])
        );
        assert_eq!(
            parse_master("https://m:5050", false).unwrap(),
            hosts(&["https://m:5050"])
        );
        assert_eq!(
            parse_master("master@10.0.0.1:5050", false).unwrap(),
            hosts(&["http://10.0.0.1:5050"])
        );
        assert_eq!(
            parse_master("[::1]:5050", false).unwrap(),
            hosts(&["http://[::1]:5050"])
        );
    }

    #[test]
    fn zk_and_file_forms() {
        assert_eq!(
            parse_master("zk://u:p@z1:2181,z2:2181/mesos", false).unwrap(),
            MasterAddr::Zk {
                servers: "z1:2181,z2:2181".into(),
                path: "/mesos".into(),
                auth: Some(Secret::new("u:p"))
            }
        );
        assert_eq!(
            parse_master("zk://z1:2181/a/b/", false).unwrap(),
            MasterAddr::Zk {
                servers: "z1:2181".into(),
                path: "/a/b".into(),
                auth: None
            }
        );
        assert_eq!(
            parse_master("file:///etc/mesos/zk", false).unwrap(),
            MasterAddr::File("/etc/mesos/zk".into())
        );
    }

    #[test]
    fn bad_forms() {
        for (v, needle) in [
            ("zk://host", "znode path"),
            ("zk://host:2181/", "other than /"),
            ("zk:///mesos", "at least one"),
            ("zk://h:x/mesos", "invalid port"),
            ("zk://user@h:2181/m", "user:password"),
            ("file://relative", "absolute"),
            ("a:5050,,b:5050", "empty"),
            ("ftp://m:21", "unsupported scheme"),
            ("m:notaport", "not a valid address"),
            ("http://u:p@m:5050", "credentials"),
            ("http://m:5050/api", "no path"),
            ("", "empty"),
            ("http://u:hunter2@m:x", "***@m:x"),
        ] {
            let e = parse_master(v, false).unwrap_err();
            assert!(e.contains(needle), "{v:?}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn redaction() {
        assert_eq!(redact_master("zk://jo:pw@z:2181/m"), "zk://jo:***@z:2181/m");
        assert_eq!(redact_master("zk://z:2181/m"), "zk://z:2181/m");
        assert_eq!(redact_master("m:5050"), "m:5050");
    }
}
