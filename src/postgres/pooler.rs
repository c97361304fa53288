//! Whether a connection goes through a pooler (PgBouncer, or any proxy that
//! keeps its own sessions with the clients).
//!
//! At login the server announces the process id of the backend that serves
//! the session (BackendKeyData, used to cancel a query). Connected directly,
//! that backend is the one `pg_backend_pid()` names. A pooler answers the
//! login itself with a key of its own (PgBouncer's is random), so the two
//! differ. That is proof, not a guess: no address is compared (NAT and
//! docker-proxy rewrite those).
//!
//! tokio-postgres keeps the announced id private, but its cancel token
//! writes a cancel request (length, code, process id, secret key) to any
//! stream it is given: here an in-memory pipe, whose other end reads the id.
//! Nothing is sent to the server, and the secret key is not kept.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio_postgres::Client;
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

/// What proves that a connection goes through a pooler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooler {
    /// The process id the login announced (the pooler's key).
    pub announced_pid: i32,
    /// The backend that ran `pg_backend_pid()`.
    pub backend_pid: i32,
}

/// How a connection reaches PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The login was answered by the backend that serves the queries.
    Direct,
    Pooler(Pooler),
    /// The announced process id could not be read (not expected: it is read
    /// from memory); why.
    Unknown(String),
}

/// How the connection of `client` reaches PostgreSQL; an error is the
/// failed `SELECT pg_backend_pid()`.
pub async fn detect_route(client: &Client) -> Result<Route, tokio_postgres::Error> {
    let backend_pid: i32 = client
        .query_typed_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    Ok(match announced_pid(client).await {
        Ok(announced_pid) if announced_pid == backend_pid => Route::Direct,
        Ok(announced_pid) => Route::Pooler(Pooler {
            announced_pid,
            backend_pid,
        }),
        Err(error) => Route::Unknown(format!(
            "the process id announced at login could not be read: {error}"
        )),
    })
}

/// The CancelRequest code (protocol 3: 1234 << 16 | 5678).
const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// The SSLRequest code (1234 << 16 | 5679).
const SSL_REQUEST_CODE: i32 = 80_877_103;

/// The process id the server (or pooler) announced when `client` logged in.
pub async fn announced_pid(client: &Client) -> io::Result<i32> {
    let token = client.cancel_token();
    let (ours, mut theirs) = tokio::io::duplex(64);
    let write = async {
        token
            .cancel_query_raw(Plain(ours), Passthrough)
            .await
            .map_err(io::Error::other)
    };
    let read = async {
        let mut first = [0u8; 8];
        theirs.read_exact(&mut first).await?;
        let mut request = [0u8; 16];
        if code(&first) == SSL_REQUEST_CODE {
            // sslmode prefer or require: "yes", then the plain stream below.
            theirs.write_all(b"S").await?;
            theirs.read_exact(&mut request).await?;
        } else {
            request[..8].copy_from_slice(&first);
            theirs.read_exact(&mut request[8..]).await?;
        }
        if code(&request) != CANCEL_REQUEST_CODE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a cancel request",
            ));
        }
        Ok(i32::from_be_bytes([
            request[8],
            request[9],
            request[10],
            request[11],
        ]))
    };
    let (written, pid) = tokio::join!(write, read);
    written?;
    pid
}

/// The request code: the second big-endian int32 of a startup-type message.
fn code(message: &[u8]) -> i32 {
    i32::from_be_bytes([message[4], message[5], message[6], message[7]])
}

/// A "TLS" layer that is none: the token's cancel request, which follows
/// the SSLRequest when sslmode asks for TLS, stays readable.
struct Passthrough;

impl TlsConnect<Plain> for Passthrough {
    type Stream = Plain;
    type Error = io::Error;
    type Future = std::future::Ready<io::Result<Plain>>;

    fn connect(self, stream: Plain) -> Self::Future {
        std::future::ready(Ok(stream))
    }
}

struct Plain(DuplexStream);

impl TlsStream for Plain {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for Plain {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Plain {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
