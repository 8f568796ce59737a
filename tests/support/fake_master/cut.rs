//! Connection cuts: the fake master closes the connection that carried a scheduler call, with
//! no answer, either before it carries the call out (as when the master dies or the network
//! drops the request) or right after (the master took it, the answer is lost). The client
//! cannot tell the two apart; the tests of unconfirmed launches need both.
//!
//! Every connection is accepted through [`CutListener`], whose streams can be cut: once cut,
//! the next read or write fails, so hyper drops the connection without writing the answer the
//! handler returned, and the socket closes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// When a cut happens, relative to the call it is set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The call is read, not carried out, and the connection closes without an answer.
    BeforeCall,
    /// The call is carried out, and the connection closes without an answer.
    AfterCall,
}

/// One accepted connection, as a handler sees it (`ConnectInfo<Conn>`).
#[derive(Debug, Clone, Default)]
pub struct Conn(Arc<AtomicBool>);

impl Conn {
    /// Closes the connection at its next read or write.
    pub fn cut(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_cut(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A TCP listener whose connections can be cut.
pub struct CutListener(pub TcpListener);

impl Listener for CutListener {
    type Io = CutStream;
    type Addr = Conn;

    async fn accept(&mut self) -> (CutStream, Conn) {
        loop {
            match self.0.accept().await {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    let conn = Conn::default();
                    return (
                        CutStream {
                            tcp,
                            conn: conn.clone(),
                        },
                        conn,
                    );
                }
                // Out of file descriptors and the like: wait a little, as axum does.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Conn> {
        Ok(Conn::default())
    }
}

impl Connected<IncomingStream<'_, CutListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, CutListener>) -> Conn {
        stream.remote_addr().clone()
    }
}

/// A TCP stream that fails every read and write once its [`Conn`] is cut.
pub struct CutStream {
    tcp: TcpStream,
    conn: Conn,
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "cut by the fake master")
}

impl AsyncRead for CutStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.conn.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for CutStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.conn.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.conn.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
