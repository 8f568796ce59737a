//! One persistent HTTP/1.1 connection for the calls to a master, pipelined.
//!
//! Mesos's own scheduler library keeps two connections per master: one for the SUBSCRIBE
//! stream and one for every other call, on which requests are pipelined (the next one goes
//! out before the answer to the previous one is back; HTTP/1.1 answers come back in the order
//! of the requests). A pooled client such as hyper's sends one request per connection at a
//! time, so thousands of ACKNOWLEDGE calls a second cost thousands of request/answer round
//! trips, each with its own trip through the pool. [`Pipe`] does what the Mesos library does.
//!
//! - One task owns the connection and runs two halves side by side, so that a server blocked
//!   on writing answers never deadlocks against us writing requests. The writer takes every
//!   request waiting in the channel, writes them in one go, and queues their reply slots in
//!   order. The reader parses answers ([`parse_answer`]: `httparse` for the head; the body by
//!   `Content-Length`, chunked, or up to the close) and hands each to the oldest slot.
//! - When the connection ends, the requests it left unanswered fail with
//!   [`PipeError::Unprocessed`] when the server cannot have carried them out (they were never
//!   written, or the server had announced `Connection: close`, after which it must not process
//!   more), and with [`PipeError::Lost`] otherwise (they may or may not have been carried
//!   out). The caller ([`super::client::MesosClient::call`]) decides what may be sent again.
//! - Dropping every [`Pipe`] handle lets the connection finish the answers it still owes, then
//!   close.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use url::Url;

/// Longest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Longest answer body accepted (answers to calls are empty or a line of text).
const MAX_BODY: usize = 1024 * 1024;

/// Requests written in one go, at most (bytes; one request is always whole).
const BATCH_BYTES: usize = 256 * 1024;

/// An answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The `Location` header, if any (redirects).
    pub location: Option<String>,
    pub body: Bytes,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipeError {
    /// The server cannot have carried the request out: it was never written, or the server had
    /// announced that it closes the connection. `announced_after`: the server announced the
    /// close after this many answers on the connection (1: it does not keep connections open).
    #[error("the connection to the master closed before the request was taken")]
    Unprocessed { announced_after: Option<usize> },
    /// The connection failed with the request written and unanswered: it may or may not have
    /// been carried out.
    #[error("{0}")]
    Lost(String),
}

/// One parsed answer and what it says about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub answer: Answer,
    /// The server closes the connection after this answer (`Connection: close`, an HTTP/1.0
    /// answer without keep-alive, or a body that runs to the close).
    pub closes: bool,
    /// A 1xx answer: not the answer to a request, another one follows.
    pub interim: bool,
}

/// Parses one answer from the front of `buf`: `Ok(None)` when more bytes are needed, else the
/// answer and how many bytes it took. `eof` says no more bytes will come (a body without a
/// length then ends here). Nothing is consumed, so a parse can always start over.
pub fn parse_answer(buf: &[u8], eof: bool) -> Result<Option<(Parsed, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Response::new(&mut headers);
    let head_len = match head.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(format!("answer head longer than {MAX_HEAD} bytes"))
        }
        Ok(httparse::Status::Partial) if eof && !buf.is_empty() => {
            return Err("the connection closed in the middle of an answer".into())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed answer: {e}")),
    };
    let status = head.code.unwrap_or(0);
    let mut closes = head.version == Some(0);
    let mut length = None;
    let mut chunked = false;
    let mut location = None;
    for h in head.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
            if length.is_some_and(|m| m != n) {
                return Err("conflicting Content-Length headers".into());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    closes = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && head.version == Some(0) {
                    closes = false;
                }
            }
        } else if h.name.eq_ignore_ascii_case("location") {
            location = Some(value.to_string());
        }
    }
    let interim = (100..200).contains(&status);
    let rest = &buf[head_len..];
    let (body, used) = if interim || status == 204 || status == 304 {
        (Bytes::new(), 0)
    } else if chunked {
        match dechunk(rest)? {
            Some(found) => found,
            None if eof => return Err("the connection closed in the middle of an answer".into()),
            None => return Ok(None),
        }
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(format!("answer body of {n} bytes (at most {MAX_BODY})"));
        }
        if rest.len() < n {
            if eof {
                return Err("the connection closed in the middle of an answer".into());
            }
            return Ok(None);
        }
        (Bytes::copy_from_slice(&rest[..n]), n)
    } else if eof {
        closes = true;
        (Bytes::copy_from_slice(rest), rest.len())
    } else if rest.len() > MAX_BODY {
        return Err(format!("answer body over {MAX_BODY} bytes"));
    } else {
        return Ok(None);
    };
    let answer = Answer {
        status,
        location,
        body,
    };
    Ok(Some((
        Parsed {
            answer,
            closes,
            interim,
        },
        head_len + used,
    )))
}

/// Decodes a chunked body from the front of `data`: the body and the bytes it took (trailers
/// included), or `None` when more bytes are needed.
fn dechunk(data: &[u8]) -> Result<Option<(Bytes, usize)>, String> {
    let line = |from: usize| data[from..].windows(2).position(|w| w == b"\r\n");
    let mut body = BytesMut::new();
    let mut pos = 0;
    loop {
        let Some(end) = line(pos) else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&data[pos..pos + end]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        pos += end + 2;
        if size == 0 {
            // Trailer lines up to an empty one.
            loop {
                let Some(end) = line(pos) else {
                    return Ok(None);
                };
                pos += end + 2;
                if end == 0 {
                    return Ok(Some((body.freeze(), pos)));
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(format!("answer body over {MAX_BODY} bytes"));
        }
        if data.len() < pos + size + 2 {
            return Ok(None);
        }
        if &data[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        body.extend_from_slice(&data[pos..pos + size]);
        pos += size + 2;
    }
}

type Reply = oneshot::Sender<Result<Answer, PipeError>>;

struct Request {
    body: Bytes,
    reply: Reply,
}

/// Where a pipe connects, and the head every request on it carries.
pub struct Target {
    /// The scheduler endpoint (`http` or `https`).
    pub url: Url,
    /// Header lines after the request line, each ending in CRLF, without `Host` and
    /// `Content-Length` (both added here). May hold credentials: never printed.
    pub headers: String,
}

/// A handle on one pipelined connection. Cheap to clone; the connection lives while a handle
/// does (and until the answers it owes are in).
#[derive(Clone)]
pub struct Pipe {
    requests: mpsc::UnboundedSender<Request>,
    closed: CancellationToken,
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe")
            .field("closed", &self.closed.is_cancelled())
            .finish_non_exhaustive()
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

impl Pipe {
    /// Opens the connection (TCP, then TLS for `https` with `tls`), within `connect_timeout`.
    pub async fn connect(
        target: &Target,
        tls: &Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
    ) -> Result<Pipe, String> {
        let url = &target.url;
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(format!("{url} has no host")),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{url} has no port"))?;
        let io = tokio::time::timeout(connect_timeout, async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            if url.scheme() != "https" {
                return Ok::<Box<dyn Io>, String>(Box::new(tcp));
            }
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
            Ok(Box::new(tls))
        })
        .await
        .map_err(|_| {
            format!("connecting to {host}:{port}: no connection within {connect_timeout:?}")
        })??;

        let mut head = format!("POST {}", url.path());
        if let Some(q) = url.query() {
            let _ = write!(head, "?{q}");
        }
        let _ = write!(head, " HTTP/1.1\r\nHost: {}", url.host_str().unwrap_or(""));
        if let Some(p) = url.port() {
            let _ = write!(head, ":{p}");
        }
        head.push_str("\r\n");
        head.push_str(&target.headers);
        let (tx, rx) = mpsc::unbounded_channel();
        let closed = CancellationToken::new();
        tokio::spawn(run(io, Bytes::from(head), rx, closed.clone()));
        Ok(Pipe {
            requests: tx,
            closed,
        })
    }

    /// Sends one request with `body`; resolves with its answer.
    pub async fn send(&self, body: Bytes) -> Result<Answer, PipeError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { body, reply })
            .map_err(|_| PipeError::Unprocessed {
                announced_after: None,
            })?;
        answer
            .await
            .unwrap_or_else(|_| Err(PipeError::Lost("the connection task ended".into())))
    }

    /// Whether the connection is gone (a new one is needed).
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled() || self.requests.is_closed()
    }

    /// Closes the connection now; unanswered requests fail with [`PipeError::Lost`].
    pub fn close(&self) {
        self.closed.cancel();
    }
}

/// How the reading half ended.
enum End {
    /// Every handle is gone and every answer is in.
    Done,
    /// The server announced the close, after `served` answers.
    Announced { served: usize },
    /// Anything else: EOF, an I/O or protocol error, [`Pipe::close`].
    Failed(String),
}

type Pending = Mutex<VecDeque<Reply>>;

/// Owns the connection until it ends, then fails what is left unanswered.
async fn run(
    io: Box<dyn Io>,
    head: Bytes,
    mut requests: mpsc::UnboundedReceiver<Request>,
    closed: CancellationToken,
) {
    let pending: Pending = Mutex::new(VecDeque::new());
    let drained = CancellationToken::new();
    let (r, w) = tokio::io::split(io);
    let reader = async {
        let end = read_answers(r, &pending, &closed, &drained).await;
        closed.cancel();
        end
    };
    let writer = async {
        let written = write_requests(w, &head, &mut requests, &pending, &closed).await;
        match written {
            // The connection is broken: so is every answer still owed.
            Err(_) => closed.cancel(),
            // No more requests will be written: the reader stops once the owed answers are in.
            Ok(()) => drained.cancel(),
        }
        written
    };
    let end = match tokio::join!(reader, writer) {
        (End::Failed(_), Err(e)) => End::Failed(format!("writing to the master: {e}")),
        (end, _) => end,
    };
    let unanswered = match end {
        End::Done => PipeError::Unprocessed {
            announced_after: None,
        },
        End::Announced { served } => PipeError::Unprocessed {
            announced_after: Some(served),
        },
        End::Failed(why) => {
            tracing::debug!(error = %why, "call connection ended");
            PipeError::Lost(why)
        }
    };
    let waiting: Vec<Reply> = pending.lock().expect("pending lock").drain(..).collect();
    for reply in waiting {
        let _ = reply.send(Err(unanswered.clone()));
    }
    // Requests never written were never seen by the server.
    let never_written = match unanswered {
        PipeError::Unprocessed { .. } => unanswered,
        PipeError::Lost(_) => PipeError::Unprocessed {
            announced_after: None,
        },
    };
    requests.close();
    while let Ok(req) = requests.try_recv() {
        let _ = req.reply.send(Err(never_written.clone()));
    }
}

async fn write_requests<W: AsyncWrite + Unpin>(
    mut w: W,
    head: &[u8],
    requests: &mut mpsc::UnboundedReceiver<Request>,
    pending: &Pending,
    closed: &CancellationToken,
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        let first = tokio::select! {
            _ = closed.cancelled() => return Ok(()),
            r = requests.recv() => match r {
                Some(r) => r,
                None => return Ok(()),
            },
        };
        out.clear();
        let mut next = Some(first);
        while let Some(req) = next.take() {
            out.extend_from_slice(head);
            let _ = write!(out, "Content-Length: {}\r\n\r\n", req.body.len());
            out.extend_from_slice(&req.body);
            pending.lock().expect("pending lock").push_back(req.reply);
            if out.len() < BATCH_BYTES {
                next = requests.try_recv().ok();
            }
        }
        tokio::select! {
            _ = closed.cancelled() => return Ok(()),
            r = async {
                w.write_all(&out).await?;
                w.flush().await
            } => r?,
        }
    }
}

async fn read_answers<R: AsyncRead + Unpin>(
    mut r: R,
    pending: &Pending,
    closed: &CancellationToken,
    drained: &CancellationToken,
) -> End {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut served = 0;
    let mut draining = false;
    let mut eof = false;
    loop {
        loop {
            let (parsed, used) = match parse_answer(&buf, eof) {
                Ok(Some(found)) => found,
                Ok(None) if eof => return End::Failed("the master closed the connection".into()),
                Ok(None) => break,
                Err(e) => return End::Failed(e),
            };
            buf.advance(used);
            if parsed.interim {
                continue;
            }
            let Some(reply) = pending.lock().expect("pending lock").pop_front() else {
                return End::Failed(format!(
                    "the master sent an answer (HTTP {}) to no request",
                    parsed.answer.status
                ));
            };
            served += 1;
            let _ = reply.send(Ok(parsed.answer));
            if parsed.closes {
                return End::Announced { served };
            }
        }
        if draining && pending.lock().expect("pending lock").is_empty() {
            return End::Done;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        tokio::select! {
            biased;
            _ = closed.cancelled() => return End::Failed("the call connection was closed".into()),
            _ = drained.cancelled(), if !draining => draining = true,
            n = r.read_buf(&mut buf) => match n {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) => return End::Failed(format!("reading from the master: {e}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn parse(text: &str, eof: bool) -> Result<Option<(Parsed, usize)>, String> {
        parse_answer(text.as_bytes(), eof)
    }

    #[test]
    fn answers_are_parsed_whole_or_not_at_all() {
        let a = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
        let (p, n) = parse(a, false).unwrap().unwrap();
        assert_eq!(
            (p.answer.status, n, p.closes, p.interim),
            (202, a.len(), false, false)
        );
        // Every prefix needs more bytes; two answers in a row are taken one at a time.
        for cut in 0..a.len() {
            assert_eq!(parse(&a[..cut], false).unwrap(), None, "{cut}");
        }
        let two = format!("{a}HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nwhy");
        let (_, n) = parse(&two, false).unwrap().unwrap();
        let (p, m) = parse(&two[n..], false).unwrap().unwrap();
        assert_eq!(
            (p.answer.status, &p.answer.body[..], n + m),
            (400, &b"why"[..], two.len())
        );
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers() {
        let a = "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n\
                 4;ext=1\r\nnot \r\n6\r\nhere!!\r\n0\r\nX-Trailer: y\r\n\r\nHTTP/1.1";
        let (p, n) = parse(a, false).unwrap().unwrap();
        assert_eq!(&p.answer.body[..], b"not here!!");
        assert_eq!(&a[n..], "HTTP/1.1");
        for cut in 0..a.len() - 8 {
            assert_eq!(parse(&a[..cut], false).unwrap(), None, "{cut}");
        }
        assert!(parse(&a[..a.len() - 20], true).is_err(), "cut by EOF");
        let bad = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(parse(bad, false).unwrap_err().contains("chunk size"));
    }

    #[test]
    fn closing_answers_are_recognised() {
        let cases = [
            ("HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", false),
            (
                "HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                true,
            ),
            ("HTTP/1.0 202 Accepted\r\nContent-Length: 0\r\n\r\n", true),
            (
                "HTTP/1.0 202 Accepted\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
        ];
        for (text, closes) in cases {
            assert_eq!(
                parse(text, false).unwrap().unwrap().0.closes,
                closes,
                "{text}"
            );
        }
        // No length: the body runs to the close.
        let to_close = "HTTP/1.1 503 Service Unavailable\r\n\r\nNo leader elected";
        assert_eq!(parse(to_close, false).unwrap(), None);
        let (p, _) = parse(to_close, true).unwrap().unwrap();
        assert!(p.closes);
        assert_eq!(&p.answer.body[..], b"No leader elected");
    }

    #[test]
    fn interim_redirect_and_bad_answers() {
        let (p, n) = parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 ...", false)
            .unwrap()
            .unwrap();
        assert!(p.interim);
        assert_eq!(n, 25);
        let r = "HTTP/1.1 307 Temporary Redirect\r\nLocation: //m2:5050/api/v1/scheduler\r\nContent-Length: 0\r\n\r\n";
        let (p, _) = parse(r, false).unwrap().unwrap();
        assert_eq!(
            p.answer.location.as_deref(),
            Some("//m2:5050/api/v1/scheduler")
        );
        assert!(parse("SMTP ready\r\n\r\n", false)
            .unwrap_err()
            .contains("malformed"));
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false)
            .unwrap_err()
            .contains("Content-Length"));
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(parse(&huge, false).is_err());
        assert!(parse("HTTP/1.1 202 Accep", true)
            .unwrap_err()
            .contains("middle"));
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", true).is_err());
    }

    /// A scripted server: reads `expect` whole requests, then writes `answer` for each (all at
    /// once), then does `after`. Returns what it read.
    async fn server(
        expect: usize,
        answer: &'static str,
        close_after: bool,
    ) -> (Url, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://{}/api/v1/scheduler",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = BytesMut::new();
            let mut seen = Vec::new();
            while seen.len() < expect {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut req = httparse::Request::new(&mut headers);
                if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                    let len: usize = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                        .unwrap();
                    if buf.len() >= n + len {
                        seen.push(String::from_utf8_lossy(&buf[..n + len]).into_owned());
                        buf.advance(n + len);
                        continue;
                    }
                }
                if s.read_buf(&mut buf).await.unwrap() == 0 {
                    break;
                }
            }
            let all: String = (0..seen.len()).map(|_| answer).collect();
            s.write_all(all.as_bytes()).await.unwrap();
            if !close_after {
                // Hold the connection until the client closes it.
                let _ = s.read_buf(&mut buf).await;
            }
            seen
        });
        (url, task)
    }

    fn tls() -> Arc<rustls::ClientConfig> {
        let roots = rustls::RootCertStore::empty();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    }

    async fn pipe(url: Url) -> Pipe {
        let target = Target {
            url,
            headers: "Content-Type: application/x-protobuf\r\nMesos-Stream-Id: s1\r\n".into(),
        };
        Pipe::connect(&target, &tls(), Duration::from_secs(5))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn requests_go_out_before_earlier_answers_are_back() {
        // The server answers nothing until it has read all three requests: a client that
        // waits for each answer before the next request would hang here.
        let (url, server) = server(
            3,
            "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .await;
        let p = pipe(url.clone()).await;
        let sends = (0..3).map(|i| p.send(Bytes::from(format!("body-{i}"))));
        let answers =
            tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(sends))
                .await
                .expect("answered");
        assert!(answers.iter().all(|a| a.as_ref().unwrap().status == 202));
        drop(p);
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 3);
        let host = format!("Host: {}\r\n", url.host_str().unwrap());
        for (i, req) in seen.iter().enumerate() {
            assert!(
                req.starts_with("POST /api/v1/scheduler HTTP/1.1\r\n"),
                "{req}"
            );
            assert!(req.contains(&host[..host.len() - 2]), "{req}");
            assert!(req.contains("Mesos-Stream-Id: s1\r\n"), "{req}");
            assert!(
                req.ends_with(&format!("Content-Length: 6\r\n\r\nbody-{i}")),
                "{req}"
            );
        }
    }

    #[tokio::test]
    async fn an_announced_close_leaves_the_rest_unprocessed() {
        // HTTP/1.0 style: one answer, then the server closes.
        let (url, server) = server(
            1,
            "HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            true,
        )
        .await;
        let p = pipe(url).await;
        let (a, b) = tokio::join!(
            p.send(Bytes::from_static(b"a")),
            p.send(Bytes::from_static(b"b"))
        );
        assert_eq!(a.unwrap().status, 202);
        assert_eq!(
            b.unwrap_err(),
            PipeError::Unprocessed {
                announced_after: Some(1)
            }
        );
        server.await.unwrap();
        assert!(p.is_closed());
        assert_eq!(
            p.send(Bytes::new()).await.unwrap_err(),
            PipeError::Unprocessed {
                announced_after: None
            }
        );
    }

    #[tokio::test]
    async fn a_connection_cut_without_answers_loses_what_was_written() {
        let (url, server) = server(2, "", true).await;
        let p = pipe(url).await;
        let (a, b) = tokio::join!(
            p.send(Bytes::from_static(b"a")),
            p.send(Bytes::from_static(b"b"))
        );
        server.await.unwrap();
        for r in [a, b] {
            assert!(
                matches!(r, Err(PipeError::Lost(ref m)) if m.contains("closed")),
                "{r:?}"
            );
        }
    }

    #[tokio::test]
    async fn dropping_the_handle_waits_for_owed_answers_then_closes() {
        let (url, server) = server(
            1,
            "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .await;
        let p = pipe(url).await;
        let answer = p.send(Bytes::from_static(b"x"));
        let watch = p.closed.clone();
        let got = answer.await.unwrap();
        assert_eq!(got.status, 202);
        drop(p);
        // The server sees the close (its read returns), so its task ends.
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.cancelled())
            .await
            .unwrap();
    }
}
