//! The HTTP side of the Mesos v1 scheduler API.
//!
//! - SUBSCRIBE goes out on a dedicated `reqwest::Client` whose connections are never reused,
//!   so the long-lived event stream has its own connection; every other call uses a second
//!   client (keep-alive pool).
//! - Bodies are protobuf by default (`Content-Type` and `Accept` exactly
//!   `application/x-protobuf`), or Mesos JSON when configured.
//! - `Mesos-Stream-Id` comes back from SUBSCRIBE ([`Subscription::stream_id`]) and goes on
//!   every other call ([`MesosClient::call`]).
//! - `307` (and other redirects) are followed with the same method and body: protocol-relative,
//!   absolute and bare `host:port` locations, up to a limit.
//! - HTTP Basic framework authentication on every request when configured; https with an
//!   optional extra CA bundle.
//! - Errors are typed ([`ClientError`]) with the status and the master's message, and
//!   [`ClientError::disposition`] is the one place that decides retry vs give up.
//!
//! The event stream ([`EventStream`]) is RecordIO-decoded with a size limit and turned into
//! protobuf `Event`s; any framing or decoding error ends it.

use super::detect::{resolve_location, DetectError};
use super::json::{CodecError, Encoding};
use super::proto::scheduler;
use super::recordio::{RecordIoDecoder, RecordIoError};
use crate::config::Secret;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncRead;
use tokio_util::codec::FramedRead;
use tokio_util::io::StreamReader;
use url::Url;

/// The scheduler endpoint path (`/master/api/v1/scheduler` is the same route).
pub const SCHEDULER_PATH: &str = "/api/v1/scheduler";

/// The header carrying the stream id.
pub const STREAM_ID_HEADER: &str = "Mesos-Stream-Id";

/// Longest master error message kept (bytes).
const MAX_ERROR_BODY: usize = 4096;

/// HTTP Basic credentials for framework authentication.
#[derive(Clone, PartialEq)]
pub struct Credentials {
    pub principal: String,
    pub secret: Secret,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("principal", &self.principal)
            .field("secret", &self.secret)
            .finish()
    }
}

/// How the client talks to masters.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub encoding: Encoding,
    pub credentials: Option<Credentials>,
    /// Extra trusted CA certificates (PEM bundle) for https masters.
    pub ca_cert_pem: Option<Vec<u8>>,
    pub connect_timeout: Duration,
    /// Limit for a whole non-subscribe call, and for SUBSCRIBE's response headers.
    pub call_timeout: Duration,
    pub max_redirects: u32,
    /// Largest RecordIO record accepted on the event stream.
    pub max_record: usize,
    /// Scheduler endpoint path on a master.
    pub path: String,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            encoding: Encoding::Protobuf,
            credentials: None,
            ca_cert_pem: None,
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(75),
            max_redirects: 5,
            max_record: super::recordio::DEFAULT_MAX_RECORD,
            path: SCHEDULER_PATH.to_string(),
        }
    }
}

/// What kind of request failed (decides whether an error is worth retrying).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Subscribe,
    /// Any call other than SUBSCRIBE.
    Call,
}

/// What to do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient: try again later (with backoff), possibly on another master.
    Retry,
    /// Retrying the same request cannot help (bad request, bad credentials, wrong setup).
    Fatal,
}

/// A failed request to a master.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{endpoint}: 400 Bad Request: {message}")]
    BadRequest { endpoint: String, message: String },
    #[error(
        "{endpoint}: 401 Unauthorized: the master refused the framework credentials \
         (check [mesos] authenticate, default_principal, default_secret): {message}"
    )]
    Unauthorized { endpoint: String, message: String },
    #[error("{endpoint}: 403 Forbidden: {message}")]
    Forbidden { endpoint: String, message: String },
    #[error("{endpoint}: 404 Not Found (is this a Mesos master?): {message}")]
    NotFound { endpoint: String, message: String },
    #[error("{endpoint}: 405 Method Not Allowed: {message}")]
    MethodNotAllowed { endpoint: String, message: String },
    #[error("{endpoint}: 406 Not Acceptable: {message}")]
    NotAcceptable { endpoint: String, message: String },
    #[error("{endpoint}: 409 Conflict: {message}")]
    Conflict { endpoint: String, message: String },
    #[error("{endpoint}: 415 Unsupported Media Type: {message}")]
    UnsupportedMediaType { endpoint: String, message: String },
    #[error("{endpoint}: 503 Service Unavailable: {message}")]
    Unavailable { endpoint: String, message: String },
    #[error("{endpoint}: unexpected HTTP {status}: {message}")]
    UnexpectedStatus {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("{endpoint}: redirect with an unusable Location: {source}")]
    BadRedirect {
        endpoint: String,
        #[source]
        source: DetectError,
    },
    #[error("{endpoint}: gave up after {count} redirects")]
    TooManyRedirects { endpoint: String, count: u32 },
    #[error("{endpoint}: {message}")]
    Transport {
        endpoint: String,
        message: String,
        timeout: bool,
    },
    #[error("{endpoint}: SUBSCRIBE answered 200 without a Mesos-Stream-Id header")]
    MissingStreamId { endpoint: String },
    #[error("{endpoint}: event stream has Content-Type {got:?}, expected {expected}")]
    ContentType {
        endpoint: String,
        got: String,
        expected: &'static str,
    },
    #[error("no master to connect to (none configured, or ZooKeeper knows no leader yet)")]
    NoMaster,
    #[error("TLS setup: {0}")]
    Tls(String),
}

impl ClientError {
    /// The error for an HTTP `status` answered by `endpoint` with body `message`.
    pub fn from_status(status: u16, endpoint: String, message: String) -> ClientError {
        match status {
            400 => ClientError::BadRequest { endpoint, message },
            401 => ClientError::Unauthorized { endpoint, message },
            403 => ClientError::Forbidden { endpoint, message },
            404 => ClientError::NotFound { endpoint, message },
            405 => ClientError::MethodNotAllowed { endpoint, message },
            406 => ClientError::NotAcceptable { endpoint, message },
            409 => ClientError::Conflict { endpoint, message },
            415 => ClientError::UnsupportedMediaType { endpoint, message },
            503 => ClientError::Unavailable { endpoint, message },
            _ => ClientError::UnexpectedStatus {
                endpoint,
                status,
                message,
            },
        }
    }

    /// The HTTP status the master answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            ClientError::BadRequest { .. } => 400,
            ClientError::Unauthorized { .. } => 401,
            ClientError::Forbidden { .. } => 403,
            ClientError::NotFound { .. } => 404,
            ClientError::MethodNotAllowed { .. } => 405,
            ClientError::NotAcceptable { .. } => 406,
            ClientError::Conflict { .. } => 409,
            ClientError::UnsupportedMediaType { .. } => 415,
            ClientError::Unavailable { .. } => 503,
            ClientError::UnexpectedStatus { status, .. } => *status,
            _ => return None,
        })
    }

    /// The master's own message (the plain-text body of its error answer), if any.
    pub fn master_message(&self) -> Option<&str> {
        match self {
            ClientError::BadRequest { message, .. }
            | ClientError::Unauthorized { message, .. }
            | ClientError::Forbidden { message, .. }
            | ClientError::NotFound { message, .. }
            | ClientError::MethodNotAllowed { message, .. }
            | ClientError::NotAcceptable { message, .. }
            | ClientError::Conflict { message, .. }
            | ClientError::UnsupportedMediaType { message, .. }
            | ClientError::Unavailable { message, .. }
            | ClientError::UnexpectedStatus { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The one place that decides whether an error is worth retrying.
    ///
    /// Transport failures, timeouts, 503 and other 5xx, and redirect trouble are transient.
    /// 4xx answers are fatal, with one exception: a non-subscribe call answered 403 ("Framework
    /// is not subscribed") works again once the subscription is back.
    pub fn disposition(&self, kind: CallKind) -> Disposition {
        use Disposition::{Fatal, Retry};
        match self {
            ClientError::Transport { .. }
            | ClientError::Unavailable { .. }
            | ClientError::TooManyRedirects { .. }
            | ClientError::BadRedirect { .. }
            | ClientError::MissingStreamId { .. }
            | ClientError::NoMaster => Retry,
            ClientError::UnexpectedStatus { status, .. } if *status >= 500 => Retry,
            ClientError::Forbidden { .. } if kind == CallKind::Call => Retry,
            ClientError::BadRequest { .. }
            | ClientError::Unauthorized { .. }
            | ClientError::Forbidden { .. }
            | ClientError::NotFound { .. }
            | ClientError::MethodNotAllowed { .. }
            | ClientError::NotAcceptable { .. }
            | ClientError::Conflict { .. }
            | ClientError::UnsupportedMediaType { .. }
            | ClientError::UnexpectedStatus { .. }
            | ClientError::ContentType { .. }
            | ClientError::Tls(_) => Fatal,
        }
    }
}

/// Where calls go after a successful SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The scheduler endpoint of the master that accepted SUBSCRIBE (after redirects).
    pub endpoint: Url,
    pub stream_id: String,
    pub framework_id: String,
}

/// A live SUBSCRIBE response.
pub struct Subscription {
    /// The scheduler endpoint that answered (after redirects).
    pub endpoint: Url,
    pub stream_id: String,
    pub events: EventStream,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("endpoint", &self.endpoint.as_str())
            .field("stream_id", &self.stream_id)
            .finish_non_exhaustive()
    }
}

/// An error that ends an event stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Framing(#[from] RecordIoError),
    #[error("undecodable event: {0}")]
    Decode(#[from] CodecError),
}

type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Mesos events from a RecordIO byte stream.
pub struct EventStream {
    frames: FramedRead<Pin<Box<dyn AsyncRead + Send>>, RecordIoDecoder>,
    encoding: Encoding,
}

impl EventStream {
    /// Events from any byte source (an HTTP body, a test buffer).
    pub fn new<R: AsyncRead + Send + 'static>(
        reader: R,
        encoding: Encoding,
        max_record: usize,
    ) -> EventStream {
        EventStream {
            frames: FramedRead::new(Box::pin(reader), RecordIoDecoder::new(max_record)),
            encoding,
        }
    }

    fn from_bytes_stream(stream: ByteStream, encoding: Encoding, max_record: usize) -> EventStream {
        EventStream::new(StreamReader::new(stream), encoding, max_record)
    }

    /// The next event; `None` when the master closed the stream cleanly (between records).
    pub async fn next(&mut self) -> Option<Result<scheduler::Event, StreamError>> {
        let record = match self.frames.next().await? {
            Ok(r) => r,
            Err(e) => return Some(Err(e.into())),
        };
        Some(
            self.encoding
                .decode::<scheduler::Event>(&record)
                .map_err(Into::into),
        )
    }
}

/// The scheduler API client.
#[derive(Debug, Clone)]
pub struct MesosClient {
    stream_http: reqwest::Client,
    call_http: reqwest::Client,
    cfg: ClientConfig,
}

/// An error with its sources ("error sending request: connection refused"): the chain
/// carries the useful part.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        src = s.source();
    }
    message
}

fn transport(endpoint: &Url, e: &reqwest::Error) -> ClientError {
    ClientError::Transport {
        endpoint: endpoint.to_string(),
        message: with_sources(e),
        timeout: e.is_timeout(),
    }
}

fn timed_out(endpoint: &Url, after: Duration) -> ClientError {
    ClientError::Transport {
        endpoint: endpoint.to_string(),
        message: format!("no response within {after:?}"),
        timeout: true,
    }
}

impl MesosClient {
    pub fn new(cfg: ClientConfig) -> Result<MesosClient, ClientError> {
        let mut certs = Vec::new();
        if let Some(pem) = &cfg.ca_cert_pem {
            certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                ClientError::Tls(format!(
                    "mesos_ca_cert is not a PEM certificate bundle: {e}"
                ))
            })?;
            if certs.is_empty() {
                return Err(ClientError::Tls(
                    "mesos_ca_cert holds no certificate".into(),
                ));
            }
        }
        let builder = |stream: bool| {
            let mut b = reqwest::Client::builder()
                .use_rustls_tls()
                .http1_only()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(cfg.connect_timeout)
                .tcp_nodelay(true)
                .tcp_keepalive(Some(Duration::from_secs(30)));
            for c in &certs {
                b = b.add_root_certificate(c.clone());
            }
            if stream {
                // Every SUBSCRIBE gets a fresh connection of its own.
                b = b.pool_max_idle_per_host(0);
            } else {
                b = b.timeout(cfg.call_timeout);
            }
            b.build()
                .map_err(|e| ClientError::Tls(format!("building the HTTP client: {e}")))
        };
        Ok(MesosClient {
            stream_http: builder(true)?,
            call_http: builder(false)?,
            cfg,
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The scheduler endpoint of a master base URL.
    pub fn endpoint(&self, base: &Url) -> Url {
        let mut u = base.clone();
        u.set_path(&self.cfg.path);
        u
    }

    /// POSTs `body`, following redirects; returns the final URL and the first non-redirect
    /// response.
    async fn post(
        &self,
        http: &reqwest::Client,
        mut url: Url,
        body: Bytes,
        stream_id: Option<&str>,
    ) -> Result<(Url, reqwest::Response), ClientError> {
        let ct = self.cfg.encoding.content_type();
        let mut hops = 0;
        loop {
            let mut req = http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, ct)
                .header(reqwest::header::ACCEPT, ct)
                .body(body.clone());
            if let Some(id) = stream_id {
                req = req.header(STREAM_ID_HEADER, id);
            }
            if let Some(c) = &self.cfg.credentials {
                req = req.basic_auth(&c.principal, Some(c.secret.expose()));
            }
            let resp = tokio::time::timeout(self.cfg.call_timeout, req.send())
                .await
                .map_err(|_| timed_out(&url, self.cfg.call_timeout))?
                .map_err(|e| transport(&url, &e))?;
            if !resp.status().is_redirection() {
                return Ok((url, resp));
            }
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let next = resolve_location(&url, &location, &self.cfg.path).map_err(|source| {
                ClientError::BadRedirect {
                    endpoint: url.to_string(),
                    source,
                }
            })?;
            hops += 1;
            if hops > self.cfg.max_redirects {
                return Err(ClientError::TooManyRedirects {
                    endpoint: url.to_string(),
                    count: hops - 1,
                });
            }
            tracing::info!(from = %url, to = %next, status = resp.status().as_u16(), "master redirected the request");
            url = next;
        }
    }

    /// Turns an error answer into a typed error with the master's message.
    async fn error_from(&self, url: &Url, resp: reqwest::Response) -> ClientError {
        let status = resp.status().as_u16();
        let endpoint = url.to_string();
        let mut body = Vec::new();
        let mut chunks = resp.bytes_stream();
        let read = async {
            while let Some(Ok(chunk)) = chunks.next().await {
                body.extend_from_slice(&chunk);
                if body.len() >= MAX_ERROR_BODY {
                    body.truncate(MAX_ERROR_BODY);
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(self.cfg.call_timeout, read).await;
        let message = String::from_utf8_lossy(&body).trim().to_string();
        ClientError::from_status(status, endpoint, message)
    }

    /// SUBSCRIBE at one master (following redirects to the leader).
    pub async fn subscribe_at(
        &self,
        base: &Url,
        call: &scheduler::Call,
    ) -> Result<Subscription, ClientError> {
        let body = Bytes::from(self.cfg.encoding.encode(call));
        let (url, resp) = self
            .post(&self.stream_http, self.endpoint(base), body, None)
            .await?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(self.error_from(&url, resp).await);
        }
        let stream_id = resp
            .headers()
            .get(STREAM_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| ClientError::MissingStreamId {
                endpoint: url.to_string(),
            })?;
        let expected = self.cfg.encoding.content_type();
        let got = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        // Tolerate parameters (`; charset=…`), insist on the media type.
        if got.split(';').next().map(str::trim) != Some(expected) {
            return Err(ClientError::ContentType {
                endpoint: url.to_string(),
                got,
                expected,
            });
        }
        let bytes: ByteStream = Box::pin(
            resp.bytes_stream()
                .map_err(|e| std::io::Error::other(with_sources(&e))),
        );
        Ok(Subscription {
            endpoint: url,
            stream_id,
            events: EventStream::from_bytes_stream(bytes, self.cfg.encoding, self.cfg.max_record),
        })
    }

    /// SUBSCRIBE trying `candidates` in turn: the first success wins; a fatal error stops at
    /// once; if every master fails transiently, the last error is returned.
    pub async fn subscribe(
        &self,
        candidates: &[Url],
        call: &scheduler::Call,
    ) -> Result<Subscription, ClientError> {
        let mut last = ClientError::NoMaster;
        for base in candidates {
            match self.subscribe_at(base, call).await {
                Ok(s) => return Ok(s),
                Err(e) if e.disposition(CallKind::Subscribe) == Disposition::Fatal => {
                    return Err(e)
                }
                Err(e) => {
                    tracing::warn!(master = %base, error = %e, "SUBSCRIBE failed; trying the next master");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Sends a non-subscribe call on the session's master; `Ok` on 202 (or 200).
    pub async fn call(&self, session: &Session, call: &scheduler::Call) -> Result<(), ClientError> {
        let body = Bytes::from(self.cfg.encoding.encode(call));
        let (url, resp) = self
            .post(
                &self.call_http,
                session.endpoint.clone(),
                body,
                Some(&session.stream_id),
            )
            .await?;
        match resp.status().as_u16() {
            200 | 202 => Ok(()),
            _ => Err(self.error_from(&url, resp).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesos::recordio::encode_record;
    use prost::Message;

    fn err(status: u16) -> ClientError {
        ClientError::from_status(
            status,
            "http://m:5050/api/v1/scheduler".to_string(),
            "why".to_string(),
        )
    }

    #[test]
    fn retry_versus_fatal_is_decided_in_one_place() {
        use CallKind::*;
        use Disposition::*;
        for s in [400, 401, 404, 405, 406, 409, 415, 418] {
            assert_eq!(err(s).disposition(Subscribe), Fatal, "{s}");
            assert_eq!(err(s).disposition(Call), Fatal, "{s}");
            assert_eq!(err(s).status(), Some(s));
            assert_eq!(err(s).master_message(), Some("why"));
        }
        for s in [503, 500, 502] {
            assert_eq!(err(s).disposition(Subscribe), Retry, "{s}");
            assert_eq!(err(s).disposition(Call), Retry, "{s}");
        }
        assert_eq!(err(403).disposition(Subscribe), Fatal);
        assert_eq!(err(403).disposition(Call), Retry, "not subscribed (yet)");
        let t = ClientError::Transport {
            endpoint: "x".into(),
            message: "refused".into(),
            timeout: false,
        };
        assert_eq!(t.disposition(Subscribe), Retry);
        assert_eq!(t.status(), None);
        assert_eq!(ClientError::NoMaster.disposition(Subscribe), Retry);
        assert_eq!(ClientError::Tls("x".into()).disposition(Subscribe), Fatal);
    }

    #[test]
    fn unauthorized_says_what_to_check() {
        let msg = err(401).to_string();
        assert!(msg.contains("401"), "{msg}");
        assert!(msg.contains("default_principal"), "{msg}");
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let c = Credentials {
            principal: "p".into(),
            secret: Secret::new("s3cret"),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn bad_ca_bundles_are_refused_clearly() {
        let cfg = ClientConfig {
            ca_cert_pem: Some(b"not a certificate".to_vec()),
            ..Default::default()
        };
        let e = MesosClient::new(cfg).unwrap_err();
        assert!(e.to_string().contains("mesos_ca_cert"), "{e}");
        assert!(MesosClient::new(ClientConfig::default()).is_ok());
    }

    #[test]
    fn endpoint_uses_the_configured_path() {
        let c = MesosClient::new(ClientConfig::default()).unwrap();
        let base = Url::parse("http://m1:5050/").unwrap();
        assert_eq!(
            c.endpoint(&base).as_str(),
            "http://m1:5050/api/v1/scheduler"
        );
    }

    /// Runs `openssl` with `args` in `dir`; `None` (skip) when openssl is not installed
    /// outside CI.
    fn openssl(dir: &std::path::Path, args: &[&str]) -> Option<()> {
        match std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
        {
            Ok(s) => {
                assert!(s.success(), "openssl {args:?} failed");
                Some(())
            }
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("openssl is needed for the TLS test in CI: {e}")
            }
            Err(e) => {
                eprintln!("skipping: openssl not available: {e}");
                None
            }
        }
    }

    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test]
    async fn https_masters_are_trusted_only_with_the_configured_ca() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=airflow-mesos test CA",
        ];
        if openssl(d, &ca).is_none() {
            return;
        }
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "srv.key",
                "-out",
                "srv.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "srv.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "srv.pem",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let _server = KillOnDrop(
            std::process::Command::new("openssl")
                .args([
                    "s_server", "-quiet", "-www", "-cert", "srv.pem", "-key", "srv.key", "-accept",
                ])
                .arg(format!("127.0.0.1:{port}"))
                .current_dir(d)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let base = Url::parse(&format!("https://127.0.0.1:{port}/")).unwrap();
        let call = scheduler::Call::default();
        let cfg = ClientConfig {
            call_timeout: Duration::from_secs(3),
            ..Default::default()
        };
        // Without the CA: the handshake fails on the certificate.
        let err = MesosClient::new(cfg.clone())
            .unwrap()
            .subscribe_at(&base, &call)
            .await
            .unwrap_err();
        let msg = err.to_string().to_lowercase();
        assert!(matches!(err, ClientError::Transport { .. }), "{err}");
        assert!(
            msg.contains("certificate") || msg.contains("issuer"),
            "{msg}"
        );
        // With it: TLS succeeds (the toy server then speaks no Mesos, which fails later).
        let trusted = ClientConfig {
            ca_cert_pem: Some(std::fs::read(d.join("ca.pem")).unwrap()),
            ..cfg
        };
        let err = MesosClient::new(trusted)
            .unwrap()
            .subscribe_at(&base, &call)
            .await
            .unwrap_err();
        let msg = err.to_string().to_lowercase();
        eprintln!("with the CA: {msg}");
        assert!(
            !msg.contains("certificate") && !msg.contains("issuer"),
            "the configured CA was not used: {msg}"
        );
    }

    fn heartbeat() -> scheduler::Event {
        scheduler::Event {
            r#type: Some(scheduler::event::Type::Heartbeat as i32),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn event_stream_decodes_protobuf_and_json_records() {
        let mut data = encode_record(&heartbeat().encode_to_vec()).to_vec();
        data.extend_from_slice(&encode_record(&heartbeat().encode_to_vec()));
        let mut s = EventStream::new(std::io::Cursor::new(data), Encoding::Protobuf, 1024);
        assert_eq!(s.next().await.unwrap().unwrap(), heartbeat());
        assert_eq!(s.next().await.unwrap().unwrap(), heartbeat());
        assert!(s.next().await.is_none());

        let data = encode_record(br#"{"type":"HEARTBEAT"}"#).to_vec();
        let mut s = EventStream::new(std::io::Cursor::new(data), Encoding::Json, 1024);
        assert_eq!(s.next().await.unwrap().unwrap(), heartbeat());
    }

    #[tokio::test]
    async fn hostile_streams_end_with_an_error() {
        // Garbage length.
        let mut s = EventStream::new(
            std::io::Cursor::new(b"xyz\n".to_vec()),
            Encoding::Protobuf,
            1024,
        );
        assert!(matches!(s.next().await, Some(Err(StreamError::Framing(_)))));
        // Huge length: refused before buffering.
        let mut s = EventStream::new(
            std::io::Cursor::new(b"99999999999\n".to_vec()),
            Encoding::Protobuf,
            1024,
        );
        assert!(matches!(
            s.next().await,
            Some(Err(StreamError::Framing(RecordIoError::TooLarge { .. })))
        ));
        // Bad protobuf inside a well-framed record.
        let mut s = EventStream::new(
            std::io::Cursor::new(encode_record(&[0xff, 0xff, 0xff]).to_vec()),
            Encoding::Protobuf,
            1024,
        );
        assert!(matches!(s.next().await, Some(Err(StreamError::Decode(_)))));
        // Closed in the middle of a record.
        let mut s = EventStream::new(
            std::io::Cursor::new(b"10\nabc".to_vec()),
            Encoding::Protobuf,
            1024,
        );
        assert!(matches!(
            s.next().await,
            Some(Err(StreamError::Framing(
                RecordIoError::TruncatedRecord { .. }
            )))
        ));
    }
}
