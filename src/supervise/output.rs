//! Service output: each line of a service's stdout and stderr is written to
//! ours with the service's name in front (or as one JSON object), stdout to
//! stdout and stderr to stderr, so the container log says who said what.
//!
//! One task per pipe reads until end of file, which comes when the last
//! process holding the write end (the service, or something it left
//! behind) has closed it. A line is written with one `write_all` on a locked
//! handle, so lines of different services never interleave mid-line. Very
//! long lines are cut into pieces of [`MAX_LINE`] bytes rather than
//! buffered without bound; bytes that are not UTF-8 are replaced.

use std::io::Write;
use std::os::fd::OwnedFd;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::options::LogFormat;

/// The longest piece written as one line.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// How lines are labelled.
#[derive(Debug, Clone, Copy)]
pub struct Labels {
    /// Names are padded to this width in plain format.
    pub width: usize,
    pub format: LogFormat,
}

/// Copy `pipe`'s lines to our `stream`, labelled with `service`, until end
/// of file, in a task the caller should await before exiting (the last lines
/// of a service that just died may still be in the pipe).
pub fn forward(
    service: String,
    stream: Stream,
    pipe: OwnedFd,
    labels: Labels,
) -> Option<JoinHandle<()>> {
    let receiver = match nonblocking(pipe) {
        Ok(receiver) => receiver,
        Err(error) => {
            warn!("{service}: cannot read its {}: {error}", stream.name());
            return None;
        }
    };
    Some(tokio::spawn(copy_lines(service, stream, receiver, labels)))
}

fn nonblocking(pipe: OwnedFd) -> std::io::Result<pipe::Receiver> {
    let flags = OFlag::from_bits_truncate(fcntl(&pipe, FcntlArg::F_GETFL)?);
    fcntl(&pipe, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    pipe::Receiver::from_owned_fd(pipe)
}

async fn copy_lines(service: String, stream: Stream, mut pipe: pipe::Receiver, labels: Labels) {
    let mut pending: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 8192];
    loop {
        let read = match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        pending.extend_from_slice(&chunk[..read]);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            emit(&service, stream, &pending[start..start + end], labels);
            start += end + 1;
        }
        pending.drain(..start);
        while pending.len() >= MAX_LINE {
            emit(&service, stream, &pending[..MAX_LINE], labels);
            pending.drain(..MAX_LINE);
        }
    }
    if !pending.is_empty() {
        emit(&service, stream, &pending, labels);
    }
}

fn emit(service: &str, stream: Stream, line: &[u8], labels: Labels) {
    let text = format_line(service, stream, line, labels);
    // A closed stdout (nobody reading the log) must not stop the services.
    let _ = match stream {
        Stream::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
        Stream::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
    };
}

/// `api      | line` or `{"service":"api","stream":"stdout","line":"line"}`.
pub fn format_line(service: &str, stream: Stream, line: &[u8], labels: Labels) -> String {
    let line = String::from_utf8_lossy(line);
    let line = line.strip_suffix('\r').unwrap_or(&line);
    match labels.format {
        LogFormat::Plain => format!("{service:<width$} | {line}\n", width = labels.width),
        LogFormat::Json => {
            let object = serde_json::json!({
                "service": service,
                "stream": stream.name(),
                "line": line,
            });
            format!("{object}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_padded_and_json_lines_are_objects() {
        let plain = Labels {
            width: 8,
            format: LogFormat::Plain,
        };
        assert_eq!(
            format_line("api", Stream::Stdout, b"hello\r", plain),
            "api      | hello\n"
        );
        let json = Labels {
            width: 8,
            format: LogFormat::Json,
        };
        let text = format_line("worker-1", Stream::Stderr, b"a \"b\" \xff", json);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["service"], "worker-1");
        assert_eq!(value["stream"], "stderr");
        assert_eq!(value["line"], "a \"b\" \u{fffd}");
    }
}
