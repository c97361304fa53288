//! A minimal HTTP/1.0 client: one request per connection, read to the end.
//!
//! HTTP/1.0 with `Connection: close` keeps it small: the server closes the
//! connection after its answer, so the answer is everything read until EOF
//! (a chunked body is still decoded, in case a server sends one anyway).
//! Redirects are followed on the same address, as readyz.py's `requests`
//! did, at most [`MAX_REDIRECTS`] times. Every step is bounded by the probe's
//! deadline, and an answer larger than [`MAX_ANSWER`] is refused rather than
//! read into memory.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Deadline;
use super::address::Target;
use super::error::ProbeError;

/// A status answer lists every online app: generous, but bounded.
pub const MAX_ANSWER: u64 = 4 * 1024 * 1024;
pub const MAX_REDIRECTS: usize = 3;

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
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
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

/// Send one request on `stream` and read the whole answer.
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
    let mut raw = Vec::new();
    let io = deadline
        .bound(|| format!("waiting for {url}"), async {
            stream.write_all(request.as_bytes()).await?;
            (&mut *stream)
                .take(MAX_ANSWER + 1)
                .read_to_end(&mut raw)
                .await?;
            Ok::<_, std::io::Error>(())
        })
        .await?;
    if let Err(error) = io {
        return Err(ProbeError::NoAnswer {
            target: url,
            reason: error.to_string(),
        });
    }
    if raw.len() as u64 > MAX_ANSWER {
        return Err(ProbeError::BadAnswer {
            url,
            reason: format!("the answer is larger than {MAX_ANSWER} bytes"),
        });
    }
    parse(&raw, method)
        .map_err(|reason| ProbeError::BadAnswer {
            url: url.clone(),
            reason,
        })
        .map(|(status, headers, body)| Response {
            url,
            status,
            headers,
            body,
        })
}

type Parsed = (u16, Vec<(String, String)>, Vec<u8>);

/// Status, headers and body of a complete HTTP/1.x answer.
fn parse(raw: &[u8], method: Method) -> Result<Parsed, String> {
    if raw.is_empty() {
        return Err("the connection closed without an answer".into());
    }
    let end = find(raw, b"\r\n\r\n").ok_or("the answer ends before its headers do")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "the headers are not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let status = match (words.next(), words.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => code.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        let shown: String = status_line.chars().take(60).collect();
        format!("not an HTTP answer: {shown:?}")
    })?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    let rest = &raw[end + 4..];
    let no_body = method == Method::Head || status < 200 || status == 204 || status == 304;
    let body = if no_body {
        Vec::new()
    } else if header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(length) = header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("Content-Length {length:?} is not a number"))?;
        if rest.len() < length {
            return Err(format!(
                "the body was cut short ({} of {length} bytes)",
                rest.len()
            ));
        }
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, headers, body))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or("a chunk size line is missing")?;
        let size = std::str::from_utf8(&data[..line_end])
            .ok()
            .and_then(|line| line.split(';').next())
            .and_then(|size| usize::from_str_radix(size.trim(), 16).ok())
            .ok_or("a chunk size is not a hex number")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            return Err("a chunk was cut short".into());
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
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

    #[test]
    fn content_length_body() {
        let raw = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}extra";
        let (status, headers, body) = parse(raw, Method::Get).unwrap();
        assert_eq!(status, 200);
        assert_eq!(headers[0].0, "Content-Type");
        assert_eq!(body, b"{}");
    }

    #[test]
    fn body_to_the_end_without_length() {
        let (status, _, body) = parse(b"HTTP/1.1 500 Oops\r\n\r\n<html>", Method::Get).unwrap();
        assert_eq!((status, body.as_slice()), (500, b"<html>".as_slice()));
    }

    #[test]
    fn chunked_body_is_decoded() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(parse(raw, Method::Get).unwrap().2, b"{\"a\":1}");
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc";
        assert!(parse(cut, Method::Get).unwrap_err().contains("cut short"));
    }

    #[test]
    fn head_answers_have_no_body() {
        let raw = b"HTTP/1.0 200 OK\r\nContent-Length: 151\r\n\r\n";
        assert!(parse(raw, Method::Head).unwrap().2.is_empty());
    }

    #[test]
    fn garbage_is_named() {
        assert!(
            parse(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", Method::Get)
                .unwrap_err()
                .contains("not an HTTP answer: \"SSH-2.0")
        );
        assert!(parse(b"", Method::Get).unwrap_err().contains("closed"));
        assert!(
            parse(
                b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\n{}",
                Method::Get
            )
            .unwrap_err()
            .contains("cut short")
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
}
