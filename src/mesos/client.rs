//! The HTTP side of the Mesos v1 scheduler API.
//!
//! - SUBSCRIBE goes out on a dedicated `reqwest::Client` whose connections are never reused,
//!   so the long-lived event stream has its own connection. Every other call goes on one
//!   persistent connection per session, pipelined ([`super::pipeline`]), as Mesos's own
//!   scheduler library does. A master that closes the connection after every answer gets the
//!   calls one per request instead (a second `reqwest::Client`), and so does a call redirected
//!   elsewhere.
//! - A call the master cannot have taken (the connection closed before it was written, or
//!   after the master announced the close) is sent again; an ACKNOWLEDGE lost with a broken
//!   connection is sent again once (acknowledging twice is harmless); any other lost call is
//!   an error, as it may or may not have been carried out.
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
use super::pipeline::{Answer, Pipe, PipeError, Target};
use super::proto::scheduler;
use super::recordio::{RecordIoDecoder, RecordIoError};
use crate::config::Secret;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    /// A master that is not the leader pointed elsewhere, and the redirect was not followed
    /// (another configured address is tried first).
    #[error("{endpoint}: not the leading master (redirects to {location})")]
    NotLeader { endpoint: String, location: String },
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
    /// True when the call may have reached the master and been carried out although no
    /// answer came (the connection broke after the request was written, or the answer timed
    /// out). Any HTTP answer other than 2xx means the master did not carry it out; a request
    /// known never to have been written is sent again by the client itself.
    pub fn may_have_been_taken(&self) -> bool {
        matches!(self, ClientError::Transport { .. })
    }

    pub fn disposition(&self, kind: CallKind) -> Disposition {
        use Disposition::{Fatal, Retry};
        match self {
            ClientError::Transport { .. }
            | ClientError::Unavailable { .. }
            | ClientError::TooManyRedirects { .. }
            | ClientError::NotLeader { .. }
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

/// A call encoded for the wire ([`MesosClient::encode`]). Not `Debug`: a LAUNCH's body holds
/// the tasks' environment.
pub struct EncodedCall {
    body: Bytes,
    kind: scheduler::call::Type,
}

impl EncodedCall {
    pub fn kind(&self) -> scheduler::call::Type {
        self.kind
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
    /// TLS of the call connection: the web PKI roots (as reqwest's) and `ca_cert_pem`.
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    calls: Arc<CallConnection>,
    cfg: ClientConfig,
}

/// The pipelined connection of the current session, shared by the clones of a client.
#[derive(Debug, Default)]
struct CallConnection {
    /// The session (endpoint, stream id) the connection was opened for, and the connection.
    current: tokio::sync::Mutex<Option<(Url, String, Pipe)>>,
    /// Set once a master closed the connection after its first answer: calls then go one
    /// per request.
    unpipelined: AtomicBool,
}

/// Most times one call is offered to a new connection before it counts as failed.
const MAX_CALL_SENDS: usize = 8;

/// The text of an error answer's body, bounded.
fn error_text(body: &[u8]) -> String {
    let body = &body[..body.len().min(MAX_ERROR_BODY)];
    String::from_utf8_lossy(body).trim().to_string()
}

/// The TLS setup of the call connection: the web PKI roots and the extra bundle.
fn call_tls(
    ca_cert_pem: Option<&[u8]>,
) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, ClientError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in ca_cert_pem
        .map(CertificateDer::pem_slice_iter)
        .into_iter()
        .flatten()
    {
        let cert = cert.map_err(|e| {
            ClientError::Tls(format!(
                "mesos_ca_cert is not a PEM certificate bundle: {e}"
            ))
        })?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(format!("mesos_ca_cert: unusable certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
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
            tls: call_tls(cfg.ca_cert_pem.as_deref())?,
            calls: Arc::default(),
            cfg,
        })
    }

    /// The scheduler endpoint of a master base URL.
    pub fn endpoint(&self, base: &Url) -> Url {
        let mut u = base.clone();
        u.set_path(&self.cfg.path);
        u
    }

    /// POSTs `body`, following redirects (`hops` of them were followed already); returns the
    /// final URL and the first non-redirect response.
    async fn post(
        &self,
        http: &reqwest::Client,
        url: Url,
        hops: u32,
        body: Bytes,
        stream_id: Option<&str>,
    ) -> Result<(Url, reqwest::Response), ClientError> {
        self.post_following(http, url, hops, body, stream_id, true)
            .await
    }

    /// [`post`](Self::post), or, with `follow` false, a redirect answered as
    /// [`ClientError::NotLeader`].
    async fn post_following(
        &self,
        http: &reqwest::Client,
        mut url: Url,
        mut hops: u32,
        body: Bytes,
        stream_id: Option<&str>,
        follow: bool,
    ) -> Result<(Url, reqwest::Response), ClientError> {
        let ct = self.cfg.encoding.content_type();
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
            if !follow {
                return Err(ClientError::NotLeader {
                    endpoint: url.to_string(),
                    location,
                });
            }
            let next = self.redirected(&url, &location)?;
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

    /// Where a redirect from `url` to `location` goes.
    fn redirected(&self, url: &Url, location: &str) -> Result<Url, ClientError> {
        resolve_location(url, location, &self.cfg.path).map_err(|source| ClientError::BadRedirect {
            endpoint: url.to_string(),
            source,
        })
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
        ClientError::from_status(status, endpoint, error_text(&body))
    }

    #[cfg(test)]
    /// SUBSCRIBE at one master (following redirects to the leader).
    pub async fn subscribe_at(
        &self,
        base: &Url,
        call: &scheduler::Call,
    ) -> Result<Subscription, ClientError> {
        self.subscribe_at_following(base, call, true).await
    }

    async fn subscribe_at_following(
        &self,
        base: &Url,
        call: &scheduler::Call,
        follow: bool,
    ) -> Result<Subscription, ClientError> {
        let body = Bytes::from(self.cfg.encoding.encode(call));
        let (url, resp) = self
            .post_following(
                &self.stream_http,
                self.endpoint(base),
                0,
                body,
                None,
                follow,
            )
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
    ///
    /// With several candidates (the operator's list of masters), each is first asked at the
    /// address given, without following a standby's redirect: the leader is usually one of
    /// them, and a redirect names the leader by its advertised hostname, which need not
    /// resolve where the daemon runs. Only when none of them accepts are redirects followed.
    pub async fn subscribe(
        &self,
        candidates: &[Url],
        call: &scheduler::Call,
    ) -> Result<Subscription, ClientError> {
        let mut last = ClientError::NoMaster;
        let passes: &[bool] = if candidates.len() > 1 {
            &[false, true]
        } else {
            &[true]
        };
        for &follow in passes {
            for base in candidates {
                match self.subscribe_at_following(base, call, follow).await {
                    Ok(s) => return Ok(s),
                    Err(e) if e.disposition(CallKind::Subscribe) == Disposition::Fatal => {
                        return Err(e)
                    }
                    Err(e) => {
                        tracing::debug!(master = %base, error = %e, "SUBSCRIBE failed; trying the next master");
                        last = e;
                    }
                }
            }
        }
        Err(last)
    }

    /// Sends a non-subscribe call on the session's master; `Ok` on 202 (or 200).
    pub async fn call(&self, session: &Session, call: &scheduler::Call) -> Result<(), ClientError> {
        self.send(session, self.encode(call)).await
    }

    /// `call` in the encoding the master is spoken to in, ready for [`MesosClient::send`].
    /// A `Call` is large (over a kilobyte, its sub-messages inline): a caller that encodes it
    /// before it awaits the answer keeps its future small (one is allocated per ACKNOWLEDGE).
    pub fn encode(&self, call: &scheduler::Call) -> EncodedCall {
        EncodedCall {
            body: Bytes::from(self.cfg.encoding.encode(call)),
            kind: call.r#type(),
        }
    }

    /// Sends an encoded non-subscribe call on the session's master; `Ok` on 202 (or 200).
    pub async fn send(&self, session: &Session, call: EncodedCall) -> Result<(), ClientError> {
        let EncodedCall { body, kind } = call;
        let once_more = matches!(
            kind,
            scheduler::call::Type::Acknowledge | scheduler::call::Type::AcknowledgeOperationStatus
        );
        let start = match self.call_pipelined(session, &body, once_more).await? {
            None => (session.endpoint.clone(), 0),
            Some(answer) => {
                let url = &session.endpoint;
                match answer.status {
                    200 | 202 => return Ok(()),
                    300..=399 => {
                        let location = answer.location.unwrap_or_default();
                        let next = self.redirected(url, &location)?;
                        tracing::info!(from = %url, to = %next, status = answer.status, "master redirected the call");
                        (next, 1)
                    }
                    status => {
                        let message = error_text(&answer.body);
                        return Err(ClientError::from_status(status, url.to_string(), message));
                    }
                }
            }
        };
        // Boxed, as the pipelined connection's connect: a call one per request is rare, and its
        // future would otherwise make every call's large.
        Box::pin(async move {
            let (url, resp) = self
                .post(
                    &self.call_http,
                    start.0,
                    start.1,
                    body,
                    Some(&session.stream_id),
                )
                .await?;
            match resp.status().as_u16() {
                200 | 202 => Ok(()),
                _ => Err(self.error_from(&url, resp).await),
            }
        })
        .await
    }

    /// Sends a call on the session's pipelined connection: its answer, or `None` when calls
    /// go one per request (the master does not keep connections open). `once_more`: a call
    /// lost with a broken connection is sent again once.
    async fn call_pipelined(
        &self,
        session: &Session,
        body: &Bytes,
        mut once_more: bool,
    ) -> Result<Option<Answer>, ClientError> {
        let endpoint = &session.endpoint;
        for _ in 0..MAX_CALL_SENDS {
            if self.calls.unpipelined.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let pipe = self.pipe_for(session).await?;
            let sent = tokio::time::timeout(self.cfg.call_timeout, pipe.send(body.clone())).await;
            match sent {
                Ok(Ok(answer)) => return Ok(Some(answer)),
                Err(_) => {
                    // Answers come in order: one that never comes holds up all the others.
                    pipe.close();
                    return Err(timed_out(endpoint, self.cfg.call_timeout));
                }
                Ok(Err(PipeError::Unprocessed { announced_after })) => {
                    if announced_after.is_some_and(|n| n <= 1)
                        && !self.calls.unpipelined.swap(true, Ordering::Relaxed)
                    {
                        tracing::info!(master = %endpoint, "the master closes the connection after every answer: calls go one per request from now on");
                    }
                }
                Ok(Err(PipeError::Lost(why))) if once_more => {
                    tracing::debug!(master = %endpoint, error = %why, "call lost with its connection; sending it again");
                    once_more = false;
                }
                Ok(Err(PipeError::Lost(message))) => {
                    return Err(ClientError::Transport {
                        endpoint: endpoint.to_string(),
                        message,
                        timeout: false,
                    })
                }
            }
        }
        Err(ClientError::Transport {
            endpoint: endpoint.to_string(),
            message: format!(
                "the connection closed before the call was taken, {MAX_CALL_SENDS} times"
            ),
            timeout: false,
        })
    }

    /// The pipelined connection of `session`, opened if there is none (or it closed).
    async fn pipe_for(&self, session: &Session) -> Result<Pipe, ClientError> {
        let mut current = self.calls.current.lock().await;
        if let Some((url, stream_id, pipe)) = current.as_ref() {
            if *url == session.endpoint && *stream_id == session.stream_id && !pipe.is_closed() {
                return Ok(pipe.clone());
            }
        }
        let ct = self.cfg.encoding.content_type();
        let mut headers = format!(
            "Content-Type: {ct}\r\nAccept: {ct}\r\n{STREAM_ID_HEADER}: {}\r\n",
            session.stream_id
        );
        if let Some(c) = &self.cfg.credentials {
            use base64::Engine as _;
            let pair = format!("{}:{}", c.principal, c.secret.expose());
            let token = base64::engine::general_purpose::STANDARD.encode(pair);
            headers.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        let target = Target {
            url: session.endpoint.clone(),
            headers,
        };
        // Boxed: connecting is rare, and its (large) future would otherwise be part of every
        // call's, which is allocated per ACKNOWLEDGE.
        let pipe = Box::pin(Pipe::connect(&target, &self.tls, self.cfg.connect_timeout))
            .await
            .map_err(|message| ClientError::Transport {
                endpoint: session.endpoint.to_string(),
                message,
                timeout: false,
            })?;
        *current = Some((
            session.endpoint.clone(),
            session.stream_id.clone(),
            pipe.clone(),
        ));
        Ok(pipe)
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
        let session = Session {
            endpoint: base.join(SCHEDULER_PATH).unwrap(),
            stream_id: "s".into(),
            framework_id: "f".into(),
        };
        let bad_certificate = |err: &ClientError| {
            let msg = err.to_string().to_lowercase();
            matches!(err, ClientError::Transport { .. })
                && (msg.contains("certificate") || msg.contains("issuer"))
        };
        // Without the CA: the handshake fails on the certificate, for SUBSCRIBE (reqwest) and
        // for a call (the pipelined connection).
        let untrusted = MesosClient::new(cfg.clone()).unwrap();
        let err = untrusted.subscribe_at(&base, &call).await.unwrap_err();
        assert!(bad_certificate(&err), "{err}");
        let err = untrusted.call(&session, &call).await.unwrap_err();
        assert!(bad_certificate(&err), "{err}");
        // With it: TLS succeeds (the toy server then speaks no Mesos, which fails later).
        let trusted = MesosClient::new(ClientConfig {
            ca_cert_pem: Some(std::fs::read(d.join("ca.pem")).unwrap()),
            ..cfg
        })
        .unwrap();
        let err = trusted.subscribe_at(&base, &call).await.unwrap_err();
        eprintln!("SUBSCRIBE with the CA: {err}");
        assert!(
            !bad_certificate(&err),
            "the configured CA was not used: {err}"
        );
        let answer = trusted.call(&session, &call).await;
        eprintln!("a call with the CA: {answer:?}");
        if let Err(err) = answer {
            assert!(
                !bad_certificate(&err),
                "the configured CA was not used: {err}"
            );
        }
    }

    /// A scripted master for calls: `answer(n)` is what it does with the n-th request it
    /// reads (counting from 0, over all connections). Returns the endpoint and a counter of
    /// the requests it read.
    async fn scripted_master(
        answer: fn(usize) -> Scripted,
    ) -> (Url, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://{}{SCHEDULER_PATH}",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let count = count.clone();
                tokio::spawn(async move {
                    let mut buf = bytes::BytesMut::new();
                    loop {
                        let mut headers = [httparse::EMPTY_HEADER; 32];
                        let mut req = httparse::Request::new(&mut headers);
                        let whole = match req.parse(&buf) {
                            Ok(httparse::Status::Complete(n)) => {
                                let len: usize = req
                                    .headers
                                    .iter()
                                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                                    .unwrap_or(0);
                                (buf.len() >= n + len).then_some(n + len)
                            }
                            _ => None,
                        };
                        let Some(n) = whole else {
                            match s.read_buf(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) => continue,
                            }
                        };
                        let _ = buf.split_to(n);
                        let i = count.fetch_add(1, Ordering::SeqCst);
                        match answer(i) {
                            Scripted::Accept => {
                                let _ = s.write_all(ACCEPTED).await;
                            }
                            Scripted::AcceptAndClose => {
                                let _ = s
                                    .write_all(b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                                    .await;
                                return;
                            }
                            Scripted::Hang => return,
                        }
                    }
                });
            }
        });
        (url, seen)
    }

    const ACCEPTED: &[u8] = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";

    #[derive(Clone, Copy)]
    enum Scripted {
        Accept,
        /// Answers, announcing the close, and closes (a master that keeps no connection open).
        AcceptAndClose,
        /// Closes without an answer.
        Hang,
    }

    fn session(endpoint: Url) -> Session {
        Session {
            endpoint,
            stream_id: "s".into(),
            framework_id: "f".into(),
        }
    }

    fn typed(t: scheduler::call::Type) -> scheduler::Call {
        scheduler::Call {
            r#type: Some(t as i32),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_master_that_closes_after_every_answer_gets_every_call_once() {
        let (url, seen) = scripted_master(|_| Scripted::AcceptAndClose).await;
        let client = MesosClient::new(ClientConfig::default()).unwrap();
        let s = session(url);
        let ack = typed(scheduler::call::Type::Acknowledge);
        let revive = typed(scheduler::call::Type::Revive);
        let calls = (0..20).map(|i| client.call(&s, if i % 2 == 0 { &ack } else { &revive }));
        for r in futures::future::join_all(calls).await {
            r.unwrap();
        }
        // Each call was carried out once: those the master did not take were sent again.
        assert_eq!(seen.load(Ordering::SeqCst), 20);
        assert!(client.calls.unpipelined.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_lost_acknowledgement_is_sent_again_and_other_lost_calls_fail() {
        // The first request of the run is dropped with its connection.
        let (url, seen) = scripted_master(|i| {
            if i % 2 == 0 {
                Scripted::Hang
            } else {
                Scripted::Accept
            }
        })
        .await;
        let client = MesosClient::new(ClientConfig::default()).unwrap();
        let s = session(url);
        client
            .call(&s, &typed(scheduler::call::Type::Acknowledge))
            .await
            .unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 2, "dropped, then sent again");
        let pipe = client
            .calls
            .current
            .lock()
            .await
            .as_ref()
            .unwrap()
            .2
            .clone();
        let err = client
            .call(&s, &typed(scheduler::call::Type::Revive))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Transport { .. }), "{err}");
        assert_eq!(err.disposition(CallKind::Call), Disposition::Retry);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            3,
            "a lost REVIVE is not sent again"
        );
        assert!(pipe.is_closed());
        assert!(!client.calls.unpipelined.load(Ordering::Relaxed));
        // The next call opens a new connection.
        client
            .call(&s, &typed(scheduler::call::Type::Revive))
            .await
            .unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 4);
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
