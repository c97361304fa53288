//! A minimal HTTP/1.0 client: one request per connection, read until the answer is complete.
//!
//! The answer is parsed as it arrives: the status line, headers and chunk
//! sizes by `httparse`, the framing here. Reading stops as soon as the answer
//! is complete, whether or not the server closes the connection: after the
//! headers of a HEAD answer, a 204 or a 304; at the end of a Content-Length
//! body; after the last chunk (and trailers) of a chunked body (decoded even
//! from an HTTP/1.0 server, in case one sends it). Only an answer with
//! neither framing is read until the server closes the connection, as
//! HTTP/1.0 has it. Interim 1xx answers are skipped.
//!
//! Everything is bounded: the headers ([`MAX_HEAD`] bytes, [`MAX_HEADERS`]
//! of them), the body ([`MAX_ANSWER`]: a Content-Length or a chunk size that
//! would pass it is refused before its bytes are read), a chunk size line,
//! and all bytes read; every step by the probe's deadline. An answer that
//! breaks the rules is a [`ProbeError::BadAnswer`] (not ready) naming what is
//! wrong, never a panic. Redirects are followed on the same address, as
//! readyz.py's `requests` did, at most [`MAX_REDIRECTS`] times.

use std::net::SocketAddr;

use httparse::{EMPTY_HEADER, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Deadline;
use super::address::Target;
use super::error::ProbeError;

/// The largest body read: a status answer lists every online app, so
/// generous, but bounded.
pub const MAX_ANSWER: u64 = 4 * 1024 * 1024;
/// The largest status line and headers (interim answers and trailers included).
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields in one answer (or in its trailers).
pub const MAX_HEADERS: usize = 100;
/// The longest chunk size line (the size and any chunk extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// All bytes read for one answer: the body, its headers and its chunk framing.
const MAX_RECEIVED: u64 = 2 * MAX_ANSWER + MAX_HEAD as u64;
pub const MAX_REDIRECTS: usize = 3;
/// One read from the socket.
const READ_SIZE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
        }
    }
}

/// A server's answer.
#[derive(Debug)]
pub struct Response {
    /// The URL that gave this answer (after redirects), for messages.
    pub url: String,
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// `METHOD path` on the first address of `target` that accepts a connection,
/// following redirects.
pub async fn fetch(
    target: &Target,
    method: Method,
    path: &str,
    deadline: Deadline,
) -> Result<Response, ProbeError> {
    let (mut stream, address) = connect(target, deadline).await?;
    let mut path = path.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let response = exchange(&mut stream, address, method, &path, deadline).await?;
        let location = match response.status {
            301 | 302 | 303 | 307 | 308 => response.header("location").map(location_path),
            _ => None,
        };
        match location {
            Some(next) => {
                path = next;
                stream = connect_one(address, deadline).await?;
            }
            None => return Ok(response),
        }
    }
    Err(ProbeError::BadAnswer {
        url: url(address, &path),
        reason: format!("more than {MAX_REDIRECTS} redirects"),
    })
}

/// `http://127.0.0.1:24817/path`.
pub fn url(address: SocketAddr, path: &str) -> String {
    format!("http://{address}{path}")
}

async fn connect(
    target: &Target,
    deadline: Deadline,
) -> Result<(TcpStream, SocketAddr), ProbeError> {
    let mut failures = Vec::new();
    for address in &target.addresses {
        let attempt = deadline
            .bound(
                || format!("connecting to {address}"),
                TcpStream::connect(address),
            )
            .await?;
        match attempt {
            Ok(stream) => return Ok((stream, *address)),
            Err(error) => failures.push(format!("{address}: {error}")),
        }
    }
    Err(ProbeError::NoAnswer {
        target: target.describe(),
        reason: failures.join("; "),
    })
}

async fn connect_one(address: SocketAddr, deadline: Deadline) -> Result<TcpStream, ProbeError> {
    let target = Target {
        addresses: vec![address],
    };
    Ok(connect(&target, deadline).await?.0)
}

/// Send one request on `stream` and read its answer, up to its end (not
/// necessarily the connection's).
async fn exchange(
    stream: &mut TcpStream,
    address: SocketAddr,
    method: Method,
    path: &str,
    deadline: Deadline,
) -> Result<Response, ProbeError> {
    let url = url(address, path);
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nUser-Agent: pulp-entrypoint-probe\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n",
        method = method.as_str(),
    );
    let sent = deadline
        .bound(
            || format!("waiting for {url}"),
            stream.write_all(request.as_bytes()),
        )
        .await?;
    if let Err(error) = sent {
        return Err(ProbeError::NoAnswer {
            target: url,
            reason: error.to_string(),
        });
    }
    let mut parser = Parser::new(method);
    let mut buffer = vec![0; READ_SIZE];
    let parsed = loop {
        let stage = parser.stage();
        let read = deadline
            .bound(|| stage.describe(&url), stream.read(&mut buffer))
            .await?;
        let step = match read {
            Ok(0) => parser.finish().map(Some),
            Ok(count) => parser.feed(&buffer[..count]),
            Err(error) if parser.received == 0 => {
                return Err(ProbeError::NoAnswer {
                    target: url,
                    reason: error.to_string(),
                });
            }
            Err(error) => Err(format!(
                "the connection failed after {} bytes: {error}",
                parser.received
            )),
        };
        match step {
            Ok(Some(parsed)) => break parsed,
            Ok(None) => {}
            Err(reason) => return Err(ProbeError::BadAnswer { url, reason }),
        }
    };
    Ok(Response {
        url,
        status: parsed.status,
        headers: parsed.headers,
        body: parsed.body,
    })
}

/// A complete answer.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// An answer parsed as its bytes arrive ([`Parser::feed`]), until it is
/// complete or the connection ends ([`Parser::finish`]).
#[derive(Debug)]
struct Parser {
    method: Method,
    /// Bytes received and not consumed yet.
    pending: Vec<u8>,
    /// Every byte received so far.
    received: u64,
    /// Bytes of status lines, headers and trailers consumed so far.
    head_bytes: usize,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Before the final answer's headers end.
    Head,
    Body {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        framing: Framing,
    },
    /// The answer was handed out (or refused): nothing more to parse.
    Over,
}

/// How the end of the body is known.
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// Content-Length (0 for answers that have no body).
    Length {
        total: u64,
        left: u64,
    },
    Chunked(Chunk),
    /// Neither: the body ends when the server closes the connection.
    ToEof,
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Before a chunk size line.
    Size,
    /// In a chunk's data, with this many bytes to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields up to an empty line.
    Trailers,
}

/// How far an answer got, for the message when time runs out.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Nothing,
    Head(u64),
    Length { got: u64, total: u64 },
    Chunked(u64),
    ToEof(u64),
}

impl Stage {
    fn describe(self, url: &str) -> String {
        match self {
            Stage::Nothing => format!("waiting for {url}"),
            Stage::Head(bytes) => {
                format!("reading the headers of {url} ({bytes} bytes so far)")
            }
            Stage::Length { got, total } => {
                format!("reading the body of {url} ({got} of {total} bytes)")
            }
            Stage::Chunked(got) => {
                format!("reading the chunked body of {url} ({got} bytes so far)")
            }
            Stage::ToEof(got) => format!(
                "reading the body of {url} until the server closes the connection ({got} bytes so far)"
            ),
        }
    }
}

impl Parser {
    fn new(method: Method) -> Parser {
        Parser {
            method,
            pending: Vec::new(),
            received: 0,
            head_bytes: 0,
            state: State::Head,
        }
    }

    /// Take `data` in; the answer once it is complete.
    fn feed(&mut self, data: &[u8]) -> Result<Option<Parsed>, String> {
        if matches!(self.state, State::Over) {
            return Err("the answer was already read".into());
        }
        self.received = self.received.saturating_add(data.len() as u64);
        if self.received > MAX_RECEIVED {
            self.state = State::Over;
            return Err(format!("the answer is larger than {MAX_RECEIVED} bytes"));
        }
        let first = self.pending.is_empty() && self.received == data.len() as u64;
        self.pending.extend_from_slice(data);
        // Headers end with a line: until one more line is in, parsing them again
        // (from their start, as httparse does) would find nothing new.
        if matches!(self.state, State::Head) && !first && !data.contains(&b'\n') {
            if self.head_bytes + self.pending.len() > MAX_HEAD {
                self.state = State::Over;
                return Err(format!("the headers are longer than {MAX_HEAD} bytes"));
            }
            return Ok(None);
        }
        let result = self.advance();
        if result.is_err() {
            self.state = State::Over;
        }
        result
    }

    /// The connection ended: the answer if it is complete by now.
    fn finish(&mut self) -> Result<Parsed, String> {
        match std::mem::replace(&mut self.state, State::Over) {
            State::Head if self.received == 0 => {
                Err("the connection closed without an answer".into())
            }
            State::Head => Err("the answer ends before its headers do".into()),
            State::Body {
                status,
                headers,
                body,
                framing,
            } => match framing {
                Framing::ToEof => Ok(Parsed {
                    status,
                    headers,
                    body,
                }),
                Framing::Length { total, .. } => Err(format!(
                    "the body was cut short ({} of {total} bytes)",
                    body.len()
                )),
                Framing::Chunked(_) => Err(format!(
                    "the chunked body was cut short (after {} bytes of chunk data)",
                    body.len()
                )),
            },
            State::Over => Err("the answer was already read".into()),
        }
    }

    fn stage(&self) -> Stage {
        match &self.state {
            State::Head if self.received == 0 => Stage::Nothing,
            State::Head | State::Over => Stage::Head(self.received),
            State::Body { body, framing, .. } => {
                let got = body.len() as u64;
                match framing {
                    Framing::Length { total, .. } => Stage::Length { got, total: *total },
                    Framing::Chunked(_) => Stage::Chunked(got),
                    Framing::ToEof => Stage::ToEof(got),
                }
            }
        }
    }

    /// Consume what `pending` holds, as far as it goes.
    fn advance(&mut self) -> Result<Option<Parsed>, String> {
        loop {
            let complete = match &mut self.state {
                State::Head => match self.head()? {
                    Some(next) => {
                        self.state = next;
                        continue;
                    }
                    None => return Ok(None),
                },
                State::Body { body, framing, .. } => match framing {
                    Framing::Length { left, .. } => {
                        let take = (*left).min(self.pending.len() as u64) as usize;
                        body.extend_from_slice(&self.pending[..take]);
                        self.pending.drain(..take);
                        *left -= take as u64;
                        *left == 0
                    }
                    Framing::ToEof => {
                        if body.len() as u64 + self.pending.len() as u64 > MAX_ANSWER {
                            return Err(format!("the body is larger than {MAX_ANSWER} bytes"));
                        }
                        body.append(&mut self.pending);
                        false
                    }
                    Framing::Chunked(chunk) => {
                        dechunk(&mut self.pending, chunk, body, &mut self.head_bytes)?
                    }
                },
                State::Over => return Err("the answer was already read".into()),
            };
            if !complete {
                return Ok(None);
            }
            return match std::mem::replace(&mut self.state, State::Over) {
                State::Body {
                    status,
                    headers,
                    body,
                    ..
                } => Ok(Some(Parsed {
                    status,
                    headers,
                    body,
                })),
                _ => Err("the answer was already read".into()),
            };
        }
    }

    /// Parse a status line and headers from `pending`: the next state once
    /// they are complete (`Head` again after an interim 1xx answer).
    fn head(&mut self) -> Result<Option<State>, String> {
        let mut fields = [EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut fields);
        let used = match response.parse(&self.pending) {
            Ok(Status::Complete(used)) => used,
            Ok(Status::Partial) => {
                if self.head_bytes + self.pending.len() > MAX_HEAD {
                    return Err(format!("the headers are longer than {MAX_HEAD} bytes"));
                }
                return Ok(None);
            }
            Err(httparse::Error::Version | httparse::Error::Status) => {
                return Err(format!(
                    "not an HTTP answer: {:?}",
                    first_line(&self.pending)
                ));
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(format!("more than {MAX_HEADERS} header fields"));
            }
            Err(error) => return Err(format!("malformed headers ({error})")),
        };
        self.head_bytes += used;
        if self.head_bytes > MAX_HEAD {
            return Err(format!("the headers are longer than {MAX_HEAD} bytes"));
        }
        let status = response.code.ok_or("an answer without a status code")?;
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|field| {
                let value = String::from_utf8_lossy(field.value);
                (field.name.to_string(), value.trim().to_string())
            })
            .collect();
        self.pending.drain(..used);
        if (100..200).contains(&status) {
            // Interim (100 Continue, 103 Early Hints): the real answer follows.
            return Ok(Some(State::Head));
        }
        let framing = framing(self.method, status, &headers)?;
        Ok(Some(State::Body {
            status,
            headers,
            body: Vec::new(),
            framing,
        }))
    }
}

/// The start of an answer, as far as a message shows it.
fn first_line(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let line = String::from_utf8_lossy(&data[..end]);
    line.trim_end_matches('\r').chars().take(60).collect()
}

/// How the body of an answer with these headers ends (RFC 9112, 6.3).
fn framing(method: Method, status: u16, headers: &[(String, String)]) -> Result<Framing, String> {
    if method == Method::Head || status == 204 || status == 304 {
        return Ok(Framing::Length { total: 0, left: 0 });
    }
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(','))
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    // Transfer-Encoding wins over Content-Length; a last coding other than
    // chunked leaves only the end of the connection to end the body.
    if let Some(last) = values("transfer-encoding").next_back() {
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::ToEof
        });
    }
    let mut length = None;
    for value in values("content-length") {
        let parsed = Some(value)
            .filter(|value| value.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|value| value.parse::<u64>().ok())
            .ok_or_else(|| format!("Content-Length {value:?} is not a number"))?;
        if length.is_some_and(|length| length != parsed) {
            return Err("the answer has conflicting Content-Length values".into());
        }
        length = Some(parsed);
    }
    match length {
        Some(total) if total > MAX_ANSWER => Err(format!(
            "Content-Length {total} is larger than the {MAX_ANSWER} bytes the probe reads"
        )),
        Some(total) => Ok(Framing::Length { total, left: total }),
        None => Ok(Framing::ToEof),
    }
}

/// Decode as much of a chunked body as `pending` holds; true once the last
/// chunk and the trailers have been read.
fn dechunk(
    pending: &mut Vec<u8>,
    chunk: &mut Chunk,
    body: &mut Vec<u8>,
    head_bytes: &mut usize,
) -> Result<bool, String> {
    loop {
        match *chunk {
            Chunk::Size => {
                let Some(&first) = pending.first() else {
                    return Ok(false);
                };
                let size = match httparse::parse_chunk_size(pending) {
                    Ok(Status::Complete((used, size))) if first.is_ascii_hexdigit() => {
                        pending.drain(..used);
                        size
                    }
                    Ok(Status::Partial) if first.is_ascii_hexdigit() => {
                        if pending.len() > MAX_CHUNK_LINE {
                            return Err(format!(
                                "a chunk size line is longer than {MAX_CHUNK_LINE} bytes"
                            ));
                        }
                        return Ok(false);
                    }
                    _ => {
                        return Err(format!(
                            "a chunk size is not a hex number of at most 16 digits: {:?}",
                            first_line(pending)
                        ));
                    }
                };
                if size == 0 {
                    *chunk = Chunk::Trailers;
                } else if size > MAX_ANSWER - body.len() as u64 {
                    return Err(format!(
                        "a chunk of {size} bytes makes the body larger than {MAX_ANSWER} bytes"
                    ));
                } else {
                    *chunk = Chunk::Data(size);
                }
            }
            Chunk::Data(left) => {
                if pending.is_empty() {
                    return Ok(false);
                }
                let take = left.min(pending.len() as u64) as usize;
                body.extend_from_slice(&pending[..take]);
                pending.drain(..take);
                *chunk = match left - take as u64 {
                    0 => Chunk::DataEnd,
                    left => Chunk::Data(left),
                };
            }
            Chunk::DataEnd => {
                if pending.len() < 2 {
                    if pending.first().is_some_and(|&b| b != b'\r') {
                        return Err("a chunk is longer than its size says".into());
                    }
                    return Ok(false);
                }
                if pending[..2] != *b"\r\n" {
                    return Err("a chunk is longer than its size says".into());
                }
                pending.drain(..2);
                *chunk = Chunk::Size;
            }
            Chunk::Trailers => {
                let mut fields = [EMPTY_HEADER; MAX_HEADERS];
                return match httparse::parse_headers(pending, &mut fields) {
                    Ok(Status::Complete((used, _))) => {
                        *head_bytes += used;
                        if *head_bytes > MAX_HEAD {
                            return Err(format!("the headers are longer than {MAX_HEAD} bytes"));
                        }
                        pending.drain(..used);
                        Ok(true)
                    }
                    Ok(Status::Partial) => {
                        if *head_bytes + pending.len() > MAX_HEAD {
                            return Err(format!("the headers are longer than {MAX_HEAD} bytes"));
                        }
                        Ok(false)
                    }
                    Err(httparse::Error::TooManyHeaders) => Err(format!(
                        "more than {MAX_HEADERS} trailer fields after the last chunk"
                    )),
                    Err(error) => Err(format!("malformed trailers after the last chunk ({error})")),
                };
            }
        }
    }
}

/// The path of a `Location` header: absolute URLs keep only their path, since
/// the probe stays on the address it connected to.
fn location_path(location: &str) -> String {
    let without_scheme = location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"));
    match without_scheme {
        Some(rest) => match rest.find('/') {
            Some(slash) => rest[slash..].to_string(),
            None => "/".to_string(),
        },
        None if location.starts_with('/') => location.to_string(),
        None => format!("/{location}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// All of `raw`, then the end of the connection if the answer is not complete by then.
    fn parse(raw: &[u8], method: Method) -> Result<Parsed, String> {
        let mut parser = Parser::new(method);
        match parser.feed(raw)? {
            Some(parsed) => Ok(parsed),
            None => parser.finish(),
        }
    }

    /// `raw` without the end of the connection: complete, waiting for more, or refused.
    fn fed(raw: &[u8]) -> Result<Option<Parsed>, String> {
        Parser::new(Method::Get).feed(raw)
    }

    #[test]
    fn content_length_body() {
        let raw = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}extra";
        let parsed = parse(raw, Method::Get).unwrap();
        assert_eq!(parsed.status, 200);
        assert_eq!(parsed.headers[0].0, "Content-Type");
        assert_eq!(parsed.body, b"{}");
    }

    #[test]
    fn a_complete_answer_needs_no_end_of_connection() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let mut parser = Parser::new(Method::Get);
        assert_eq!(parser.feed(&raw[..raw.len() - 1]).unwrap(), None);
        assert_eq!(
            parser.feed(&raw[raw.len() - 1..]).unwrap().unwrap().body,
            b"{}"
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(fed(chunked).unwrap().unwrap().body, b"{}");
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 151\r\n\r\n";
        let parsed = Parser::new(Method::Head).feed(head).unwrap().unwrap();
        assert!(parsed.body.is_empty());
        for status in ["204 No Content", "304 Not Modified"] {
            let raw = format!("HTTP/1.1 {status}\r\n\r\n");
            assert!(fed(raw.as_bytes()).unwrap().unwrap().body.is_empty());
        }
    }

    #[test]
    fn body_to_the_end_without_length() {
        let raw = b"HTTP/1.1 500 Oops\r\n\r\n<html>";
        assert_eq!(fed(raw).unwrap(), None);
        let parsed = parse(raw, Method::Get).unwrap();
        assert_eq!(
            (parsed.status, parsed.body.as_slice()),
            (500, b"<html>".as_slice())
        );
        // A last coding other than chunked: the connection's end ends the body.
        let gzip = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 1\r\n\r\nabc";
        assert_eq!(parse(gzip, Method::Get).unwrap().body, b"abc");
        let cap = MAX_ANSWER as usize;
        let mut big = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
        big.resize(big.len() + cap + 1, b'x');
        assert!(
            parse(&big, Method::Get)
                .unwrap_err()
                .contains("larger than")
        );
    }

    #[test]
    fn chunked_body_is_decoded() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(parse(raw, Method::Get).unwrap().body, b"{\"a\":1}");
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc";
        assert_eq!(fed(cut).unwrap(), None);
        assert!(parse(cut, Method::Get).unwrap_err().contains("cut short"));
        // HTTP/1.0 has no chunked coding, but a server that sends it anyway is understood.
        let old = b"HTTP/1.0 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\na\r\n0\r\n\r\n";
        assert_eq!(fed(old).unwrap().unwrap().body, b"a");
    }

    #[test]
    fn hostile_chunk_sizes_are_refused_without_a_panic() {
        let answer =
            |chunks: &str| format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}");
        let refused = |chunks: &str| fed(answer(chunks).as_bytes()).unwrap_err();
        let huge = refused("ffffffffffffffff\r\nabc");
        assert!(
            huge.contains("a chunk of 18446744073709551615 bytes makes the body larger"),
            "{huge}"
        );
        assert!(refused("10000000000000000\r\n").contains("not a hex number"));
        assert!(refused("400001\r\n").contains("larger than 4194304"));
        assert!(refused("zz\r\n").ends_with("not a hex number of at most 16 digits: \"zz\""));
        assert!(refused("\r\n").contains("not a hex number"));
        assert!(refused("-1\r\n").contains("not a hex number"));
        assert!(refused("2\r\nabc\r\n").contains("longer than its size"));
        let long_extension = format!("1;{}", "x".repeat(MAX_CHUNK_LINE));
        assert!(refused(&long_extension).contains("chunk size line is longer"));
        // The body's bound counts every chunk, not each alone.
        let two = format!(
            "{:x}\r\n{}\r\n{:x}\r\n",
            MAX_ANSWER - 1,
            "y".repeat(MAX_ANSWER as usize - 1),
            2
        );
        assert!(refused(&two).contains("makes the body larger"));
        // Tiny chunks with long extensions: the bytes read are bounded too.
        let padded = format!("1;{}\r\nz\r\n", "e".repeat(MAX_CHUNK_LINE - 10));
        let mut parser = Parser::new(Method::Get);
        parser.feed(answer("").as_bytes()).unwrap();
        let error = loop {
            match parser.feed(padded.as_bytes()) {
                Ok(None) => continue,
                Ok(Some(_)) => panic!("an endless answer completed"),
                Err(error) => break error,
            }
        };
        assert!(error.contains("the answer is larger than"), "{error}");
        assert!(parser.received <= MAX_RECEIVED + padded.len() as u64);
    }

    #[test]
    fn content_lengths_are_checked() {
        let answer = |lengths: &str| format!("HTTP/1.1 200 OK\r\n{lengths}\r\n0123456789");
        let parsed = |lengths: &str| parse(answer(lengths).as_bytes(), Method::Get);
        assert_eq!(
            parsed("Content-Length: 3, 3\r\nContent-Length: 3\r\n")
                .unwrap()
                .body,
            b"012"
        );
        assert!(
            parsed("Content-Length: 3\r\nContent-Length: 4\r\n")
                .unwrap_err()
                .contains("conflicting")
        );
        for bad in ["-1", "+3", "0x3", "3 3", "99999999999999999999999"] {
            let error = parsed(&format!("Content-Length: {bad}\r\n")).unwrap_err();
            assert!(error.contains("is not a number"), "{bad}: {error}");
        }
        // Refused before any of the body arrives: no waiting for bytes that will not be read.
        let huge = fed(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n{}").unwrap_err();
        assert!(
            huge.contains("Content-Length 99999999999 is larger than"),
            "{huge}"
        );
        let short = parse(
            b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\n{}",
            Method::Get,
        );
        assert_eq!(short.unwrap_err(), "the body was cut short (2 of 9 bytes)");
        // Transfer-Encoding wins over Content-Length.
        let both = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n";
        assert_eq!(fed(both).unwrap().unwrap().body, b"ab");
    }

    #[test]
    fn headers_are_bounded() {
        let mut flood = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            flood.extend_from_slice(format!("X-Flood-{i}: y\r\n").as_bytes());
        }
        assert!(
            fed(&flood)
                .unwrap_err()
                .contains("more than 100 header fields")
        );
        let mut long = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
        long.resize(MAX_HEAD + 1, b'a');
        assert!(
            fed(&long)
                .unwrap_err()
                .contains("the headers are longer than 65536 bytes")
        );
        let trailers = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{}",
            "X-T: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(
            fed(trailers.as_bytes())
                .unwrap_err()
                .contains("trailer fields")
        );
        let folded = fed(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n").unwrap_err();
        assert!(folded.contains("malformed headers"), "{folded}");
    }

    #[test]
    fn interim_answers_are_skipped() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
        let parsed = fed(raw).unwrap().unwrap();
        assert_eq!(
            (parsed.status, parsed.body.as_slice()),
            (200, b"x".as_slice())
        );
        assert!(
            parse(b"HTTP/1.1 100 Continue\r\n\r\n", Method::Get)
                .unwrap_err()
                .contains("ends before its headers")
        );
    }

    #[test]
    fn head_answers_have_no_body() {
        let raw = b"HTTP/1.0 200 OK\r\nContent-Length: 151\r\n\r\n";
        assert!(parse(raw, Method::Head).unwrap().body.is_empty());
    }

    #[test]
    fn garbage_is_named() {
        // Known at its first bytes: no waiting for more.
        assert!(
            fed(b"SSH-2.0-OpenSSH_9.2\r\n")
                .unwrap_err()
                .contains("not an HTTP answer: \"SSH-2.0")
        );
        for garbage in [
            &b"HTTP/1.1 abc OK\r\n"[..],
            b"HTTP/2 200\r\n",
            b"\x16\x03\x01\x02\x00",
        ] {
            let error = fed(garbage).unwrap_err();
            assert!(error.contains("not an HTTP answer"), "{garbage:?}: {error}");
        }
        assert_eq!(
            parse(b"", Method::Get).unwrap_err(),
            "the connection closed without an answer"
        );
        assert!(
            parse(b"HTTP/1.1 200 OK\r\n", Method::Get)
                .unwrap_err()
                .contains("ends before its headers")
        );
        // No reason phrase is fine.
        assert_eq!(
            fed(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .unwrap()
                .status,
            200
        );
    }

    #[test]
    fn a_timeout_says_how_far_the_answer_got() {
        let url = "http://127.0.0.1:1/x";
        let mut parser = Parser::new(Method::Get);
        assert_eq!(
            parser.stage().describe(url),
            "waiting for http://127.0.0.1:1/x"
        );
        parser.feed(b"HTTP/1.1 200 OK\r\n").unwrap();
        assert!(
            parser
                .stage()
                .describe(url)
                .contains("headers of http://127.0.0.1:1/x (17 bytes so far)")
        );
        parser.feed(b"Content-Length: 100\r\n\r\n{}").unwrap();
        assert!(
            parser
                .stage()
                .describe(url)
                .ends_with("body of http://127.0.0.1:1/x (2 of 100 bytes)")
        );
    }

    #[test]
    fn redirect_locations_stay_on_the_address() {
        assert_eq!(
            location_path("http://example.com:8080/pulp/api/v3/status/"),
            "/pulp/api/v3/status/"
        );
        assert_eq!(location_path("https://example.com"), "/");
        assert_eq!(location_path("/pulp/x/"), "/pulp/x/");
    }

    /// A valid answer, and what parsing it must give.
    #[derive(Debug)]
    struct Valid {
        method: Method,
        bytes: Vec<u8>,
        expected: Parsed,
        /// Complete at its last byte (else only at the end of the connection).
        delimited: bool,
    }

    fn field() -> impl Strategy<Value = (String, String)> {
        ("X-[A-Za-z0-9-]{1,12}", "([!-~]([ -~]{0,30}[!-~])?)?")
    }

    prop_compose! {
        fn valid()(
            head in any::<bool>(),
            version in prop::sample::select(vec!["HTTP/1.0", "HTTP/1.1"]),
            status in prop_oneof![
                prop::sample::select(vec![200u16, 204, 301, 304, 404, 500, 503]),
                200u16..600,
            ],
            reason in "([A-Za-z][A-Za-z ]{0,15})?",
            interim in 0usize..3,
            fields in prop::collection::vec(field(), 0..8),
            body in prop::collection::vec(any::<u8>(), 0..3000),
            framing in 0u8..3,
            sizes in prop::collection::vec(1usize..700, 1..8),
            extension in any::<bool>(),
            trailers in prop::collection::vec(field(), 0..3),
        ) -> Valid {
            let method = if head { Method::Head } else { Method::Get };
            let mut bytes = Vec::new();
            for _ in 0..interim {
                bytes.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            let sp = if reason.is_empty() { "" } else { " " };
            bytes.extend_from_slice(format!("{version} {status}{sp}{reason}\r\n").as_bytes());
            let mut headers = fields.clone();
            match framing {
                0 => headers.push(("Content-Length".into(), body.len().to_string())),
                1 => headers.push(("Transfer-Encoding".into(), "chunked".into())),
                _ => {}
            }
            for (name, value) in &headers {
                bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            bytes.extend_from_slice(b"\r\n");
            let has_body = !head && status != 204 && status != 304;
            if has_body {
                if framing == 1 {
                    let mut rest = body.as_slice();
                    for size in sizes.iter().cycle() {
                        if rest.is_empty() {
                            break;
                        }
                        let (chunk, after) = rest.split_at((*size).min(rest.len()));
                        let ext = if extension { ";name=\"v a l\"" } else { "" };
                        bytes.extend_from_slice(format!("{:X}{ext}\r\n", chunk.len()).as_bytes());
                        bytes.extend_from_slice(chunk);
                        bytes.extend_from_slice(b"\r\n");
                        rest = after;
                    }
                    bytes.extend_from_slice(b"0\r\n");
                    for (name, value) in &trailers {
                        bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                    }
                    bytes.extend_from_slice(b"\r\n");
                } else {
                    bytes.extend_from_slice(&body);
                }
            }
            Valid {
                method,
                bytes,
                expected: Parsed {
                    status,
                    headers,
                    body: if has_body { body } else { Vec::new() },
                },
                delimited: framing != 2 || !has_body,
            }
        }
    }

    /// `bytes` cut at `cuts` (any numbers: taken modulo the length).
    fn pieces(bytes: &[u8], cuts: &[usize]) -> Vec<std::ops::Range<usize>> {
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
        cuts.extend([0, bytes.len()]);
        cuts.sort_unstable();
        cuts.dedup();
        cuts.windows(2).map(|pair| pair[0]..pair[1]).collect()
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// However the bytes arrive, a valid answer parses to what was sent, and
        /// a delimited one is complete exactly at its last byte (bytes after it,
        /// which a kept-open connection may bring, are not read).
        #[test]
        fn valid_answers_parse_whatever_the_split(
            valid in valid(),
            extra in prop::collection::vec(any::<u8>(), 0..16),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut bytes = valid.bytes.clone();
            if valid.delimited {
                bytes.extend_from_slice(&extra);
            }
            let end = valid.bytes.len();
            let mut parser = Parser::new(valid.method);
            let mut result = None;
            for piece in pieces(&bytes, &cuts) {
                let step = parser.feed(&bytes[piece.clone()]);
                let step = step.map_err(|error| TestCaseError::fail(format!("{error}: {valid:?}")))?;
                if let Some(parsed) = step {
                    prop_assert!(valid.delimited && piece.contains(&(end - 1)), "complete too early: {valid:?}");
                    result = Some(parsed);
                    break;
                }
                prop_assert!(!(valid.delimited && piece.contains(&(end - 1))), "not complete at its end: {valid:?}");
            }
            let parsed = match result {
                Some(parsed) => parsed,
                None => parser.finish().map_err(TestCaseError::fail)?,
            };
            prop_assert_eq!(parsed, valid.expected);
        }

        /// A valid answer cut short, or with a byte changed, added or removed:
        /// never a panic, and a delimited answer cut short is never taken as complete.
        #[test]
        fn damaged_answers_never_panic(
            valid in valid(),
            at in any::<usize>(),
            byte in any::<u8>(),
            damage in 0u8..4,
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut bytes = valid.bytes.clone();
            let at = at % bytes.len();
            match damage {
                0 => bytes.truncate(at),
                1 => bytes[at] = byte,
                2 => bytes.insert(at, byte),
                _ => { bytes.remove(at); }
            }
            let mut parser = Parser::new(valid.method);
            let mut result = Ok(None);
            for piece in pieces(&bytes, &cuts) {
                result = parser.feed(&bytes[piece]);
                if !matches!(result, Ok(None)) {
                    break;
                }
            }
            let result = match result {
                Ok(None) => parser.finish().map(Some),
                other => other,
            };
            if damage == 0 && valid.delimited {
                prop_assert!(result.is_err(), "a cut answer was complete: {result:?} {valid:?}");
            }
            if let Ok(Some(parsed)) = result {
                prop_assert!(parsed.body.len() as u64 <= MAX_ANSWER);
            }
        }

        /// Random bytes, plain or after a plausible status line: an answer or a
        /// reason, never a panic, whatever the split.
        #[test]
        fn random_bytes_never_panic(
            prefix in prop::sample::select(vec![
                "",
                "HTTP/1.1 200 OK\r\n",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n",
            ]),
            noise in prop::collection::vec(any::<u8>(), 0..600),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
            head in any::<bool>(),
        ) {
            let mut bytes = prefix.as_bytes().to_vec();
            bytes.extend_from_slice(&noise);
            let method = if head { Method::Head } else { Method::Get };
            let mut parser = Parser::new(method);
            for piece in pieces(&bytes, &cuts) {
                match parser.feed(&bytes[piece]) {
                    Ok(None) => {}
                    Ok(Some(parsed)) => {
                        prop_assert!(parsed.body.len() as u64 <= MAX_ANSWER);
                        return Ok(());
                    }
                    Err(reason) => {
                        prop_assert!(!reason.is_empty() && !reason.contains('\n'));
                        return Ok(());
                    }
                }
            }
            let _ = parser.finish();
        }
    }
}
