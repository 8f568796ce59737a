//! Master detection: where to send SUBSCRIBE.
//!
//! - A list of masters (`[mesos] master = host1:5050,host2:5050`): the client tries each in
//!   turn and follows `307` redirects to the leader ([`resolve_location`] handles the
//!   protocol-relative `//host:port/path`, absolute and bare `host:port` forms).
//! - `zk://[user:pass@]host1:2181,host2:2181/path`: the leader is the member with the lowest
//!   sequence number among the `json.info_NNNNNNNNNN` children of `path`; its data is
//!   `MasterInfo` as JSON. [`ZkDetector`] watches the children and reports leader changes.
//! - `file:///path`: the file holds one of the other forms.
//!
//! [`MasterSource`] puts these behind one interface for the subscription loop: a list of
//! candidate base URLs, and a future that resolves when the leader changes.

use super::json;
use super::proto::v1;
use crate::config::{MasterAddr, Secret};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use url::Url;

/// A master address that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("master address '{input}': {message}")]
    BadAddress { input: String, message: String },
    #[error("redirect Location '{location}' is not a usable URL")]
    BadLocation { location: String },
    #[error("master file {path}: {message}")]
    File { path: String, message: String },
    #[error("ZooKeeper {servers}: {message}")]
    Zk { servers: String, message: String },
    #[error("ZooKeeper node {node}: MasterInfo is not valid JSON: {message}")]
    BadMasterInfo { node: String, message: String },
}

/// Base URL (`http(s)://host:port`) of a master given as `host:port`, `master@host:port`,
/// `http://host:port` …; the scheme defaults to https when `ssl`. A missing port is 5050.
pub fn base_url(input: &str, ssl: bool) -> Result<Url, DetectError> {
    let bad = |message: &str| DetectError::BadAddress {
        input: input.to_string(),
        message: message.to_string(),
    };
    let s = input.trim();
    let s = s.strip_prefix("master@").unwrap_or(s);
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let with_scheme = if s.contains("://") {
        s.to_string()
    } else {
        format!("{}://{s}", if ssl { "https" } else { "http" })
    };
    let mut url = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if url.port().is_none() && !s.contains("://") {
        url.set_port(Some(5050))
            .map_err(|_| bad("cannot set port"))?;
    }
    url.set_path("");
    Ok(url)
}

/// Parses a `[mesos] master` value (also what a `file://` master file holds).
pub fn parse_master(input: &str, ssl: bool) -> Result<MasterAddr, DetectError> {
    let s = input.trim();
    let shown = redact_userinfo(s);
    let bad = |message: &str| DetectError::BadAddress {
        input: shown.clone(),
        message: message.to_string(),
    };
    if let Some(rest) = s.strip_prefix("zk://") {
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) if !a.contains('/') => (Some(Secret::new(a)), r),
            _ => (None, rest),
        };
        let (servers, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("zk:// needs a path, e.g. zk://host:2181/mesos"))?;
        let path = format!("/{}", path.trim_end_matches('/'));
        if servers.is_empty() {
            return Err(bad("zk:// needs at least one server"));
        }
        if path == "/" {
            return Err(bad("zk:// path must not be '/'"));
        }
        return Ok(MasterAddr::Zk {
            servers: servers.to_string(),
            path,
            auth,
        });
    }
    if let Some(path) = s.strip_prefix("file://") {
        if path.is_empty() {
            return Err(bad("file:// needs a path"));
        }
        return Ok(MasterAddr::File(path.into()));
    }
    let hosts = s
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| base_url(h, ssl).map(|u| u.as_str().trim_end_matches('/').to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    if hosts.is_empty() {
        return Err(bad("no master given"));
    }
    Ok(MasterAddr::Hosts(hosts))
}

/// `zk://user:pass@hosts/path` with the credentials replaced by `***`, for messages.
fn redact_userinfo(s: &str) -> String {
    match s.strip_prefix("zk://").and_then(|r| r.split_once('@')) {
        Some((_, rest)) => format!("zk://***@{rest}"),
        None => s.to_string(),
    }
}

/// Resolves a `Location` header against the URL that answered 307: protocol-relative
/// (`//host:port/path`, what Mesos sends), absolute (`http://…`), or bare `host:port[/path]`
/// (old docs). The current scheme is kept unless the location names one; a location without
/// a path gets `default_path`.
pub fn resolve_location(
    current: &Url,
    location: &str,
    default_path: &str,
) -> Result<Url, DetectError> {
    let loc = location.trim();
    let bad = || DetectError::BadLocation {
        location: loc.to_string(),
    };
    let text = if let Some(rest) = loc.strip_prefix("//") {
        format!("{}://{rest}", current.scheme())
    } else if loc.contains("://") {
        loc.to_string()
    } else if loc.starts_with('/') {
        // A plain path on the same host.
        return current.join(loc).map_err(|_| bad());
    } else if !loc.is_empty() {
        format!("{}://{loc}", current.scheme())
    } else {
        return Err(bad());
    };
    let mut url = Url::parse(&text).map_err(|_| bad())?;
    if url.host_str().is_none_or(str::is_empty) || !matches!(url.scheme(), "http" | "https") {
        return Err(bad());
    }
    if url.path().is_empty() || url.path() == "/" {
        url.set_path(default_path);
    }
    Ok(url)
}

/// The leader's node among the children of the Mesos ZooKeeper path: the lowest sequence
/// number among `json.info_NNNNNNNNNN` (legacy `info_` and unlabeled members, and other
/// children such as `log_replicas`, are ignored).
pub fn leader_node(children: &[String]) -> Option<&str> {
    children
        .iter()
        .filter_map(|c| {
            let seq = c.strip_prefix("json.info_")?;
            (!seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()))
                .then(|| (seq.parse::<u64>().ok(), c.as_str()))
        })
        .filter_map(|(n, c)| Some((n?, c)))
        .min_by_key(|(n, _)| *n)
        .map(|(_, c)| c)
}

/// `ip:port` of the master described by a `json.info_*` node's data (its hostname only when
/// the node holds no IP: see [`master_connect_addr`](super::convert::master_connect_addr)).
pub fn master_from_json(node: &str, data: &[u8]) -> Result<String, DetectError> {
    let info: v1::MasterInfo = json::decode(data).map_err(|e| DetectError::BadMasterInfo {
        node: node.to_string(),
        message: e.to_string(),
    })?;
    Ok(super::convert::master_connect_addr(&info))
}

/// Watches the leading master in ZooKeeper.
#[derive(Debug, Clone)]
pub struct ZkDetector {
    servers: String,
    path: String,
    auth: Option<Secret>,
    session_timeout: Duration,
}

impl ZkDetector {
    pub fn new(servers: &str, path: &str, auth: Option<Secret>) -> ZkDetector {
        ZkDetector {
            servers: servers.to_string(),
            path: path.to_string(),
            auth,
            session_timeout: Duration::from_secs(10),
        }
    }

    fn zk_err(&self, e: impl std::fmt::Display) -> DetectError {
        DetectError::Zk {
            servers: self.servers.clone(),
            message: e.to_string(),
        }
    }

    async fn connect(&self) -> Result<zookeeper_client::Client, DetectError> {
        let mut connector = zookeeper_client::Client::connector()
            .with_session_timeout(self.session_timeout)
            .with_connection_timeout(self.session_timeout);
        if let Some(a) = &self.auth {
            connector = connector.with_auth("digest", a.expose().as_bytes());
        }
        connector
            .connect(&self.servers)
            .await
            .map_err(|e| self.zk_err(e))
    }

    async fn read_leader(
        &self,
        client: &zookeeper_client::Client,
    ) -> Result<(Option<String>, Option<zookeeper_client::OneshotWatcher>), DetectError> {
        let (children, watcher) = match client.list_and_watch_children(&self.path).await {
            Ok(x) => x,
            Err(zookeeper_client::Error::NoNode) => {
                // Not created yet: watch for its creation.
                let (_, w) = client
                    .check_and_watch_stat(&self.path)
                    .await
                    .map_err(|e| self.zk_err(e))?;
                return Ok((None, Some(w)));
            }
            Err(e) => return Err(self.zk_err(e)),
        };
        let Some(node) = leader_node(&children) else {
            return Ok((None, Some(watcher)));
        };
        let full = format!("{}/{node}", self.path.trim_end_matches('/'));
        match client.get_data(&full).await {
            Ok((data, _)) => Ok((Some(master_from_json(&full, &data)?), Some(watcher))),
            // The leader vanished between the two reads: the children watch fires next.
            Err(zookeeper_client::Error::NoNode) => Ok((None, Some(watcher))),
            Err(e) => Err(self.zk_err(e)),
        }
    }

    /// Starts watching: the receiver holds the current leader (`host:port`) and changes when
    /// it does. The task reconnects to ZooKeeper on errors (every `retry`) and ends when
    /// `shutdown` is cancelled or every receiver is dropped.
    pub fn watch(
        self,
        retry: Duration,
        shutdown: CancellationToken,
    ) -> watch::Receiver<Option<String>> {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            loop {
                let session = async {
                    let client = self.connect().await?;
                    loop {
                        let (leader, watcher) = self.read_leader(&client).await?;
                        tx.send_if_modified(|cur| {
                            if *cur != leader {
                                tracing::info!(leader = ?leader, path = %self.path, "ZooKeeper: leading master");
                                *cur = leader;
                                true
                            } else {
                                false
                            }
                        });
                        match watcher {
                            Some(w) => {
                                let ev = w.changed().await;
                                if ev.session_state.is_terminated() {
                                    return Err::<(), _>(self.zk_err(format!(
                                        "session ended ({:?})",
                                        ev.session_state
                                    )));
                                }
                            }
                            None => return Err(self.zk_err("no watcher")),
                        }
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    r = session => {
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "ZooKeeper master detection failed; retrying");
                        }
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        });
        rx
    }
}

/// Where the subscription loop finds masters.
#[derive(Debug)]
pub enum MasterSource {
    /// Fixed base URLs, tried in turn.
    Static(Vec<Url>),
    /// The ZooKeeper leader (`host:port`), as seen by a [`ZkDetector`].
    Zk {
        leader: watch::Receiver<Option<String>>,
        ssl: bool,
    },
}

impl MasterSource {
    /// Builds the source for `addr` (a `file://` address is read once, now). ZooKeeper
    /// watching starts here and stops with `shutdown`.
    pub fn start(
        addr: &MasterAddr,
        ssl: bool,
        zk_retry: Duration,
        shutdown: &CancellationToken,
    ) -> Result<MasterSource, DetectError> {
        match addr {
            MasterAddr::Hosts(hosts) => Ok(MasterSource::Static(
                hosts
                    .iter()
                    .map(|h| base_url(h, ssl))
                    .collect::<Result<Vec<_>, _>>()?,
            )),
            MasterAddr::Zk {
                servers,
                path,
                auth,
            } => {
                let rx = ZkDetector::new(servers, path, auth.clone())
                    .watch(zk_retry, shutdown.child_token());
                Ok(MasterSource::Zk { leader: rx, ssl })
            }
            MasterAddr::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| DetectError::File {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                match parse_master(&text, ssl)? {
                    MasterAddr::File(_) => Err(DetectError::File {
                        path: path.display().to_string(),
                        message: "points to another file://".into(),
                    }),
                    other => MasterSource::start(&other, ssl, zk_retry, shutdown),
                }
            }
        }
    }

    /// The base URLs to try now, in order (empty while ZooKeeper knows no leader).
    pub fn candidates(&self) -> Vec<Url> {
        match self {
            MasterSource::Static(urls) => urls.clone(),
            MasterSource::Zk { leader, ssl } => leader
                .borrow()
                .as_deref()
                .and_then(|hp| base_url(hp, *ssl).ok())
                .into_iter()
                .collect(),
        }
    }

    /// Resolves when the leader changes (never for a static list).
    pub async fn changed(&mut self) {
        match self {
            MasterSource::Static(_) => std::future::pending().await,
            MasterSource::Zk { leader, .. } => {
                if leader.changed().await.is_err() {
                    // The detector stopped (shutdown): nothing will change any more.
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_from_the_usual_forms() {
        assert_eq!(
            base_url("m1:5050", false).unwrap().as_str(),
            "http://m1:5050/"
        );
        assert_eq!(
            base_url("master@10.0.0.1:5050", false).unwrap().as_str(),
            "http://10.0.0.1:5050/"
        );
        assert_eq!(base_url("m1", true).unwrap().as_str(), "https://m1:5050/");
        assert_eq!(
            base_url("https://m1:8443/x", false).unwrap().as_str(),
            "https://m1:8443/"
        );
        assert!(base_url("ftp://m1", false).is_err());
        assert!(base_url("", false).is_err());
    }

    #[test]
    fn parse_master_forms() {
        assert_eq!(
            parse_master("m1:5050, m2:5050", false).unwrap(),
            MasterAddr::Hosts(vec!["http://m1:5050".into(), "http://m2:5050".into()])
        );
        match parse_master("zk://u:p@z1:2181,z2:2181/mesos/", false).unwrap() {
            MasterAddr::Zk {
                servers,
                path,
                auth,
            } => {
                assert_eq!(servers, "z1:2181,z2:2181");
                assert_eq!(path, "/mesos");
                assert_eq!(auth.unwrap().expose(), "u:p");
            }
            other => panic!("{other:?}"),
        }
        match parse_master("zk://z1:2181/mesos", false).unwrap() {
            MasterAddr::Zk { auth, .. } => assert!(auth.is_none()),
            other => panic!("{other:?}"),
        }
        assert!(parse_master("zk://z1:2181", false).is_err());
        assert!(parse_master("zk://z1:2181/", false).is_err());
        assert_eq!(
            parse_master("file:///etc/mesos/master", false).unwrap(),
            MasterAddr::File("/etc/mesos/master".into())
        );
        // The zk password never shows in errors or Debug.
        let err = parse_master("zk://u:hunter2@z1:2181", false).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("zk://***@z1:2181"), "{err}");
        let dbg = format!(
            "{:?}",
            parse_master("zk://u:hunter2@z1:2181/m", false).unwrap()
        );
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }

    #[test]
    fn locations_in_all_three_forms() {
        let cur = Url::parse("http://10.0.0.2:5050/api/v1/scheduler").unwrap();
        let p = "/api/v1/scheduler";
        // What a real master sends (fixture 60).
        assert_eq!(
            resolve_location(&cur, "//127.0.0.1:5050/master/api/v1/scheduler", p)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:5050/master/api/v1/scheduler"
        );
        // /master/redirect's answer has no path (fixture 58).
        assert_eq!(
            resolve_location(&cur, "//127.0.0.1:5050", p)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:5050/api/v1/scheduler"
        );
        assert_eq!(
            resolve_location(&cur, "https://m3:5050/api/v1/scheduler", p)
                .unwrap()
                .as_str(),
            "https://m3:5050/api/v1/scheduler"
        );
        assert_eq!(
            resolve_location(&cur, "masterhost2:5050", p)
                .unwrap()
                .as_str(),
            "http://masterhost2:5050/api/v1/scheduler"
        );
        let tls = Url::parse("https://a:5050/api/v1/scheduler").unwrap();
        assert_eq!(
            resolve_location(&tls, "//b:5050/api/v1/scheduler", p)
                .unwrap()
                .as_str(),
            "https://b:5050/api/v1/scheduler"
        );
        assert_eq!(
            resolve_location(&cur, "/master/api/v1/scheduler", p)
                .unwrap()
                .as_str(),
            "http://10.0.0.2:5050/master/api/v1/scheduler"
        );
        assert!(resolve_location(&cur, "", p).is_err());
        assert!(resolve_location(&cur, "ftp://x/y", p).is_err());
    }

    #[test]
    fn leader_is_the_lowest_json_info_sequence() {
        let c = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // As ZooKeeper returned them in the fixture (unordered).
        assert_eq!(
            leader_node(&c(&["json.info_0000000001", "json.info_0000000000"])),
            Some("json.info_0000000000")
        );
        assert_eq!(
            leader_node(&c(&[
                "log_replicas",
                "info_0000000000",
                "json.info_0000000012",
                "json.info_0000000009"
            ])),
            Some("json.info_0000000009")
        );
        assert_eq!(leader_node(&c(&["log_replicas", "json.info_x"])), None);
        assert_eq!(leader_node(&[]), None);
    }

    #[test]
    fn master_info_from_the_recorded_znode() {
        let Some(data) = crate::mesos::fixture("57-zk-json-info-0000000000.json") else {
            return;
        };
        assert_eq!(
            master_from_json("/mesos/json.info_0000000000", &data).unwrap(),
            "127.0.0.1:5050"
        );
        let err = master_from_json("/mesos/json.info_1", b"not json").unwrap_err();
        assert!(err.to_string().contains("json.info_1"), "{err}");
    }

    #[test]
    fn a_leader_is_reached_by_its_ip_not_its_advertised_hostname() {
        // A master started with --hostname that only resolves on its own network.
        let node = br#"{"address":{"hostname":"mesos-m1.internal","ip":"10.0.0.7","port":5050},
            "hostname":"mesos-m1.internal","id":"x","ip":117440522,"port":5050}"#;
        assert_eq!(
            master_from_json("/m/json.info_1", node).unwrap(),
            "10.0.0.7:5050"
        );
        // Only the deprecated packed IPv4 (network byte order: 10.0.0.7).
        let node = br#"{"hostname":"mesos-m1.internal","id":"x","ip":117440522,"port":5051}"#;
        assert_eq!(
            master_from_json("/m/json.info_1", node).unwrap(),
            "10.0.0.7:5051"
        );
        // IPv6 in brackets, so that it makes a URL.
        let node = br#"{"address":{"hostname":"m","ip":"fd00::7","port":5050},"id":"x","ip":0,"port":5050}"#;
        let hp = master_from_json("/m/json.info_1", node).unwrap();
        assert_eq!(hp, "[fd00::7]:5050");
        assert!(base_url(&hp, false).is_ok());
        // No IP at all: the hostname is all there is.
        let node = br#"{"hostname":"m1.internal","id":"x","ip":0,"port":5050}"#;
        assert_eq!(
            master_from_json("/m/json.info_1", node).unwrap(),
            "m1.internal:5050"
        );
    }

    #[test]
    fn a_master_file_holds_another_form() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("master");
        std::fs::write(&f, "  m1:5050,m2:5051\n").unwrap();
        let token = CancellationToken::new();
        let src = MasterSource::start(
            &MasterAddr::File(f.clone()),
            false,
            Duration::from_secs(1),
            &token,
        )
        .unwrap();
        let c: Vec<String> = src.candidates().iter().map(|u| u.to_string()).collect();
        assert_eq!(c, vec!["http://m1:5050/", "http://m2:5051/"]);
        std::fs::write(&f, format!("file://{}", f.display())).unwrap();
        assert!(
            MasterSource::start(&MasterAddr::File(f), false, Duration::from_secs(1), &token)
                .is_err()
        );
        let missing = MasterSource::start(
            &MasterAddr::File(dir.path().join("nope")),
            false,
            Duration::from_secs(1),
            &token,
        )
        .unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }

    #[tokio::test]
    async fn zk_source_follows_the_watch_channel() {
        let (tx, rx) = watch::channel(None);
        let mut src = MasterSource::Zk {
            leader: rx,
            ssl: false,
        };
        assert!(src.candidates().is_empty());
        tx.send(Some("127.0.0.1:5060".into())).unwrap();
        src.changed().await;
        assert_eq!(src.candidates()[0].as_str(), "http://127.0.0.1:5060/");
    }
}
