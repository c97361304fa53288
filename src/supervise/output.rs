//! Service output: each line of a service's stdout and stderr is written to
//! ours with the service's name in front (or as one JSON object), stdout to
//! stdout and stderr to stderr, so the container log says who said what.
//!
//! # How a line travels
//!
//! One task per pipe (on the runtime) reads until end of file, which comes
//! when the last process holding the write end (the service, or something it
//! left behind) has closed it. It cuts what it read after the last newline
//! and sends the whole lines, as they are, to the [writer](Output) of its
//! stream: a thread of its own per stream that labels them and writes them to
//! our fd 1 or 2, many lines per `write(2)` (up to [`BATCH`] bytes), with the
//! standard library's lock of that stream held (`tracing`'s log lines take
//! it too). Every message holds whole lines of one service, so lines of
//! different services never interleave mid-line; the work per line is done
//! off the thread that runs the event loop.
//!
//! Between the tasks and a writer there is a bounded channel ([`BUFFERED`]
//! messages of at most about [`READ`] bytes: about 1 MiB). When our stdout is
//! read slowly or not at all (a slow log driver, a full journal), the writer
//! blocks in `write(2)`, the channel fills, the tasks wait to send and stop
//! reading, and the services block in their own writes: back-pressure reaches
//! them, while the event loop, which never writes service output itself,
//! goes on handling signals, reaping and deadlines. [`Output::finish`] bounds
//! how long the end of the output may take when stopping.
//!
//! A thread doing blocking writes, not `O_NONBLOCK` and readiness: our stdout
//! is inherited, and its open file description is shared with whoever handed
//! it over (a shell at a terminal, the container runtime's log pipe);
//! `O_NONBLOCK` is a property of that description, so setting it would make
//! their writes fail with `EAGAIN`. Should someone else set it, the writer
//! waits in `poll(2)` instead of spinning. The writer threads block every
//! signal: the handlers run on the other thread, and a write to a terminal
//! from a background process group is let through rather than answered with
//! SIGTTOU.
//!
//! Very long lines are cut into pieces of [`MAX_LINE`] bytes rather than
//! buffered without bound; bytes that are not UTF-8 are replaced. A write
//! error drops that batch (said once); after `EPIPE` nothing more is written,
//! and the lines are still read, and dropped, so that the services do not block.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::warn;

use crate::options::LogFormat;

/// The longest piece written as one line.
pub const MAX_LINE: usize = 16 * 1024;

/// Messages waiting for each writer before the readers wait: the bound of
/// what is buffered per stream (16 reads of at most [`READ`] bytes, plus the
/// pieces of a long line).
const BUFFERED: usize = 16;

/// How much a reading task asks its pipe for at once.
const READ: usize = 64 * 1024;

/// A writer's `write(2)` takes the labelled lines gathered up to this size
/// (or all there are, when no more wait).
const BATCH: usize = 256 * 1024;

/// When stopping, how long the writers get at least, even at or past the
/// stop deadline (a healthy stdout takes microseconds for what is buffered).
const LAST_WORDS: Duration = Duration::from_millis(250);

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

/// The writers of our stdout and stderr, each started with the first service
/// output for it.
#[derive(Debug, Default)]
pub struct Output {
    stdout: Option<Writer>,
    stderr: Option<Writer>,
}

#[derive(Debug)]
struct Writer {
    lines: mpsc::Sender<Lines>,
    /// Resolves when the thread has written everything and ended.
    done: oneshot::Receiver<()>,
}

impl Output {
    pub fn new() -> Output {
        Output::default()
    }

    /// Copy `pipe`'s lines to our `stream`, labelled with `service`, until
    /// end of file, in a task to hand to [`Output::finish`] (the last lines
    /// of a service that just died may still be in the pipe).
    pub fn forward(
        &mut self,
        service: String,
        stream: Stream,
        pipe: OwnedFd,
        labels: Labels,
    ) -> Option<JoinHandle<()>> {
        let lines = match self.writer(stream) {
            Ok(lines) => lines,
            Err(error) => {
                warn!("{service}: cannot copy its {}: {error}", stream.name());
                return None;
            }
        };
        let receiver = match nonblocking(pipe) {
            Ok(receiver) => receiver,
            Err(error) => {
                warn!("{service}: cannot read its {}: {error}", stream.name());
                return None;
            }
        };
        let labeller = Arc::new(Labeller::new(service, stream, labels));
        Some(tokio::spawn(copy_lines(labeller, receiver, lines)))
    }

    fn writer(&mut self, stream: Stream) -> std::io::Result<mpsc::Sender<Lines>> {
        let slot = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        if slot.is_none() {
            *slot = Some(Writer::start(stream)?);
        }
        Ok(slot.as_ref().expect("started above").lines.clone())
    }

    /// When stopping: let `copying` read its pipes to the end (at most
    /// `read_limit`), and the writers write what they hold, never past
    /// `until` (but for [`LAST_WORDS`]). What cannot be written by then is
    /// given up, said in one line on stderr when stderr still works.
    pub async fn finish(
        &mut self,
        copying: Vec<JoinHandle<()>>,
        read_limit: Duration,
        until: Instant,
    ) {
        let until = until.max(Instant::now() + LAST_WORDS);
        let read_until = until.min(Instant::now() + read_limit);
        let aborts: Vec<_> = copying.iter().map(JoinHandle::abort_handle).collect();
        let copying = futures_util::future::join_all(copying);
        let all_read = tokio::time::timeout_at(read_until, copying).await.is_ok();
        // A task still waiting for its pipe's end (something the service
        // left holds it) or for room in the channel (stdout is stalled) stops here.
        for abort in aborts {
            abort.abort();
        }
        let written = |writer: Option<Writer>| async move {
            match writer {
                Some(Writer { lines, done }) => {
                    // The thread ends once every sender is gone and it wrote the rest.
                    drop(lines);
                    tokio::time::timeout_at(until, done).await.is_ok()
                }
                None => true,
            }
        };
        let (stdout_written, stderr_written) =
            tokio::join!(written(self.stdout.take()), written(self.stderr.take()));
        if !stderr_written {
            // Our stderr does not take what we write: say nothing.
        } else if !stdout_written {
            warn!(
                "stdout is not being read: the services' last lines are given up at the stop deadline"
            );
        } else if !all_read {
            warn!("the output of some service could not be copied to the end");
        }
    }
}

impl Writer {
    fn start(stream: Stream) -> std::io::Result<Writer> {
        let (lines, receiver) = mpsc::channel(BUFFERED);
        let (finished, done) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("{} writer", stream.name()))
            .spawn(move || {
                // Signals are for the event loop's thread; a blocked SIGTTOU
                // also lets a write to the terminal through (see above).
                let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None);
                write_lines(stream, receiver);
                let _ = finished.send(());
            })?;
        Ok(Writer { lines, done })
    }
}

/// What a reading task sends its writer: whole lines of one service, each
/// ending with a newline (a piece of a long line is given one).
#[derive(Debug)]
struct Lines {
    labeller: Arc<Labeller>,
    text: Vec<u8>,
}

/// The writer thread: lines in arrival order, labelled into batches.
fn write_lines(stream: Stream, mut receiver: mpsc::Receiver<Lines>) {
    let mut sink = Sink {
        stream,
        closed: false,
        failed: false,
    };
    let mut out = Buffer::new(BATCH + MAX_LINE + 256);
    fn write(out: &mut Buffer, sink: &mut Sink) {
        if out.filled > 0 {
            sink.write(out.as_slice());
            out.filled = 0;
        }
    }
    while let Some(lines) = receiver.blocking_recv() {
        let mut next = Some(lines);
        while let Some(lines) = next.take() {
            if sink.closed {
                // Read and dropped, so that the services do not block.
                break;
            }
            lines
                .labeller
                .label(&lines.text, &mut out, |out| write(out, &mut sink));
            next = receiver.try_recv().ok();
        }
        // Nothing more waits: out with it.
        write(&mut out, &mut sink);
    }
}

/// Our fd 1 or 2, as the writer thread sees it.
struct Sink {
    stream: Stream,
    /// `EPIPE`: nobody will ever read it.
    closed: bool,
    /// A write failed (said once).
    failed: bool,
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) {
        if self.closed {
            return;
        }
        // std's lock of the stream: other writers in this process (tracing's
        // log lines on stderr) write whole lines between our batches.
        let result = match self.stream {
            Stream::Stdout => {
                let lock = std::io::stdout().lock();
                write_all(lock.as_fd(), bytes)
            }
            Stream::Stderr => {
                let lock = std::io::stderr().lock();
                write_all(lock.as_fd(), bytes)
            }
        };
        let Err(errno) = result else {
            return;
        };
        self.closed = errno == Errno::EPIPE;
        // Said on stderr: pointless about stderr itself.
        if !self.failed && self.stream == Stream::Stdout {
            self.failed = true;
            let what = if self.closed {
                "service output to it is dropped from now on"
            } else {
                "some service output to it was dropped"
            };
            warn!("cannot write to {}: {errno}; {what}", self.stream.name());
        }
    }
}

/// `write(2)` until all is written: restarted when interrupted, and waiting
/// in `poll(2)` when the descriptor was made non-blocking by someone else.
fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(Errno::EIO),
            Ok(written) => bytes = &bytes[written..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(errno) => return Err(errno),
                }
            }
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

fn nonblocking(pipe: OwnedFd) -> std::io::Result<pipe::Receiver> {
    // Our own end of a pipe we made: no one else shares its description.
    let flags = OFlag::from_bits_truncate(fcntl(&pipe, FcntlArg::F_GETFL)?);
    fcntl(&pipe, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    pipe::Receiver::from_owned_fd(pipe)
}

async fn copy_lines(labeller: Arc<Labeller>, mut pipe: pipe::Receiver, lines: mpsc::Sender<Lines>) {
    let mut pending: Vec<u8> = Vec::with_capacity(READ);
    loop {
        pending.reserve(READ);
        let scanned = pending.len();
        match (&mut pipe).take(READ as u64).read_buf(&mut pending).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // Copied into a message of their size: a copy costs less than a
        // fresh read buffer each time (the allocator would return its pages).
        let mut text = match pending[scanned..].iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                let text = pending[..=scanned + last].to_vec();
                pending.drain(..=scanned + last);
                text
            }
            None => Vec::new(),
        };
        // A line whose end has not come yet is sent in pieces of MAX_LINE.
        let mut start = 0;
        while pending.len() - start > MAX_LINE {
            text.extend_from_slice(&pending[start..start + MAX_LINE]);
            text.push(b'\n');
            start += MAX_LINE;
        }
        pending.drain(..start);
        if !text.is_empty() {
            let message = Lines {
                labeller: labeller.clone(),
                text,
            };
            if lines.send(message).await.is_err() {
                // The writer is gone (it never ends first).
                return;
            }
        }
    }
    if !pending.is_empty() {
        pending.push(b'\n');
        let _ = lines
            .send(Lines {
                labeller,
                text: pending,
            })
            .await;
    }
}

/// The first newline in `bytes`, eight bytes at a time.
// Inlined even in the size-optimized release build: it runs once per line.
#[inline(always)]
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes")) ^ NEWLINES;
        // The lowest byte flagged is the first zero byte, that is newline.
        let zero = word.wrapping_sub(ONES) & !word & HIGHS;
        if zero != 0 {
            return Some(offset + zero.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    let rest = words.remainder();
    rest.iter().position(|&b| b == b'\n').map(|at| offset + at)
}

/// A zeroed buffer filled from its start: copying into it costs less per
/// short line than growing a `Vec` does in the size-optimized build.
struct Buffer {
    bytes: Vec<u8>,
    filled: usize,
}

impl Buffer {
    fn new(room: usize) -> Buffer {
        Buffer {
            bytes: vec![0; room],
            filled: 0,
        }
    }

    // Inlined even in the size-optimized release build: it runs once per line.
    #[inline(always)]
    fn put(&mut self, part: &[u8]) {
        let end = self.filled + part.len();
        if end > self.bytes.len() {
            // A long service name, or JSON escapes.
            self.bytes.resize(end.max(2 * self.bytes.len()), 0);
        }
        self.bytes[self.filled..end].copy_from_slice(part);
        self.filled = end;
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.filled]
    }
}

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.put(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Who said it, and how its lines are labelled.
#[derive(Debug)]
struct Labeller {
    service: String,
    stream: Stream,
    format: LogFormat,
    /// The plain format's `api      | `.
    prefix: Vec<u8>,
}

impl Labeller {
    fn new(service: String, stream: Stream, labels: Labels) -> Labeller {
        let prefix = format!("{service:<width$} | ", width = labels.width);
        Labeller {
            service,
            stream,
            format: labels.format,
            prefix: prefix.into_bytes(),
        }
    }

    /// Label each line of `text` (whole lines, each ending with a newline)
    /// into `out`, handing it to `full` whenever it holds [`BATCH`] bytes.
    fn label(&self, text: &[u8], out: &mut Buffer, mut full: impl FnMut(&mut Buffer)) {
        // UTF-8 checked at once: a newline never splits a character.
        let utf8 = std::str::from_utf8(text).is_ok();
        let mut start = 0;
        while let Some(end) = find_newline(&text[start..]) {
            let end = start + end;
            let mut from = start;
            while end - from > MAX_LINE {
                // A cut may split a character.
                self.push(out, &text[from..from + MAX_LINE], false);
                from += MAX_LINE;
                if out.filled >= BATCH {
                    full(out);
                }
            }
            self.push_terminated(out, &text[from..=end], utf8 && from == start);
            start = end + 1;
            if out.filled >= BATCH {
                full(out);
            }
        }
        if start < text.len() {
            self.push(out, &text[start..], false);
        }
    }

    /// [`Labeller::push`] for a line that ends with its newline: the common
    /// case (plain, valid UTF-8, no carriage return) is two copies.
    // Inlined even in the size-optimized release build: it runs once per line.
    #[inline(always)]
    fn push_terminated(&self, out: &mut Buffer, line: &[u8], utf8: bool) {
        let carriage_return = line.len() >= 2 && line[line.len() - 2] == b'\r';
        if utf8 && !carriage_return && matches!(self.format, LogFormat::Plain) {
            out.put(&self.prefix);
            out.put(line);
        } else {
            self.push(out, &line[..line.len() - 1], utf8);
        }
    }

    /// Append `line` (without its newline; `utf8` when known to be valid)
    /// as it is written: `api      | line`, or
    /// `{"line":"line","service":"api","stream":"stdout"}`, and a newline.
    fn push(&self, out: &mut Buffer, line: &[u8], utf8: bool) {
        let line = match line {
            [rest @ .., b'\r'] => rest,
            _ => line,
        };
        match self.format {
            LogFormat::Plain if utf8 => {
                out.put(&self.prefix);
                out.put(line);
            }
            LogFormat::Plain => {
                out.put(&self.prefix);
                out.put(String::from_utf8_lossy(line).as_bytes());
            }
            LogFormat::Json => {
                // Keys in the order serde_json's map has always written them.
                #[derive(Serialize)]
                struct JsonLine<'a> {
                    line: &'a str,
                    service: &'a str,
                    stream: &'a str,
                }
                let object = JsonLine {
                    line: &String::from_utf8_lossy(line),
                    service: &self.service,
                    stream: self.stream.name(),
                };
                serde_json::to_writer(&mut *out, &object).expect("a buffer takes any JSON");
            }
        }
        out.put(b"\n");
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const PLAIN: Labels = Labels {
        width: 3,
        format: LogFormat::Plain,
    };

    /// `api      | line` or `{"line":"line","service":"api","stream":"stdout"}`.
    fn format_line(service: &str, stream: Stream, line: &[u8], labels: Labels) -> String {
        let labeller = Labeller::new(service.to_string(), stream, labels);
        let mut out = Buffer::new(0);
        labeller.push(&mut out, line, false);
        String::from_utf8(out.as_slice().to_vec()).expect("labelled lines are UTF-8")
    }

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
        assert_eq!(
            text,
            "{\"line\":\"a \\\"b\\\" \u{fffd}\",\"service\":\"worker-1\",\"stream\":\"stderr\"}\n"
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["service"], "worker-1");
        assert_eq!(value["stream"], "stderr");
        assert_eq!(value["line"], "a \"b\" \u{fffd}");
    }

    #[test]
    fn newlines_are_found_in_every_position() {
        for len in 0..40 {
            for at in 0..len {
                let mut bytes = vec![b'x'; len];
                bytes[at] = b'\n';
                if at + 1 < len {
                    bytes[len - 1] = b'\n';
                }
                assert_eq!(find_newline(&bytes), Some(at), "{len} {at}");
            }
            assert_eq!(find_newline(&vec![b'x'; len]), None);
        }
        // Bytes just above and below '\n', and high bytes, are not newlines.
        assert_eq!(find_newline(b"\x09\x0b\x8a\xff\x0a"), Some(4));
    }

    /// What `copy_lines` sends for `input` written to its pipe in `pieces`
    /// bytes at a time, and the same labelled as its writer would.
    fn copied(input: Vec<u8>, pieces: usize, labels: Labels) -> (Vec<Vec<u8>>, String) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sent = runtime.block_on(async move {
            let (read, write) = nix::unistd::pipe().unwrap();
            let feeder = std::thread::spawn(move || {
                let mut file = std::fs::File::from(write);
                for piece in input.chunks(pieces) {
                    file.write_all(piece).unwrap();
                    if pieces < input.len() {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            });
            let (lines, mut receiver) = mpsc::channel(BUFFERED);
            let labeller = Arc::new(Labeller::new("svc".to_string(), Stream::Stdout, labels));
            let task = tokio::spawn(copy_lines(labeller, nonblocking(read).unwrap(), lines));
            let mut sent = Vec::new();
            while let Some(lines) = receiver.recv().await {
                sent.push(lines);
            }
            task.await.unwrap();
            feeder.join().unwrap();
            sent
        });
        let mut labelled = Vec::new();
        let mut out = Buffer::new(16);
        let mut take = |out: &mut Buffer| {
            labelled.extend_from_slice(out.as_slice());
            out.filled = 0;
        };
        for lines in &sent {
            lines.labeller.label(&lines.text, &mut out, &mut take);
        }
        take(&mut out);
        let labelled = String::from_utf8(labelled).unwrap();
        (sent.into_iter().map(|lines| lines.text).collect(), labelled)
    }

    #[test]
    fn whole_lines_are_sent_bounded_and_labelled_with_long_lines_cut() {
        let mut input = Vec::new();
        let mut expected = String::new();
        for i in 0..100_000 {
            input.extend_from_slice(format!("line {i}\r\n").as_bytes());
            expected.push_str(&format!("svc | line {i}\n"));
        }
        input.extend_from_slice(&[b'x'; MAX_LINE + 10]);
        input.extend_from_slice(b"\n\xff\xfe\n\nno newline at the end");
        expected.push_str(&format!("svc | {}\n", "x".repeat(MAX_LINE)));
        expected.push_str("svc | xxxxxxxxxx\nsvc | \u{fffd}\u{fffd}\nsvc | \n");
        expected.push_str("svc | no newline at the end\n");

        let (sent, labelled) = copied(input, usize::MAX, PLAIN);
        assert!(sent.len() > 1, "several messages");
        for text in &sent {
            assert!(text.ends_with(b"\n"), "a message ends with a whole line");
            assert!(text.len() <= READ + MAX_LINE + 1, "{}", text.len());
        }
        assert_same(&labelled, &expected);
    }

    /// `assert_eq!` without printing megabytes.
    fn assert_same(found: &str, expected: &str) {
        let at = found
            .bytes()
            .zip(expected.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(found.len().min(expected.len()));
        let around = |text: &str| {
            text.get(at.saturating_sub(40)..(at + 40).min(text.len()))
                .map(str::to_string)
        };
        assert!(
            found == expected,
            "differ at byte {at} of {} and {}: found {:?}, expected {:?}",
            found.len(),
            expected.len(),
            around(found),
            around(expected)
        );
    }

    #[test]
    fn a_long_line_arriving_slowly_is_sent_in_pieces_that_keep_characters_whole_when_they_can() {
        // 3.5 pieces of 'é' (two bytes each), then a short line.
        let long = "é".repeat(MAX_LINE * 7 / 4);
        let input = format!("{long}\nend\n").into_bytes();
        let (sent, labelled) = copied(input, 1000, PLAIN);
        assert!(sent.len() > 3, "sent as it came: {}", sent.len());
        let lines: Vec<&str> = labelled.lines().collect();
        assert_eq!(
            lines.len(),
            5,
            "{:?}",
            lines.iter().map(|l| l.len()).collect::<Vec<_>>()
        );
        for piece in &lines[..3] {
            // MAX_LINE is even: each cut falls between characters.
            assert_eq!(*piece, format!("svc | {}", "é".repeat(MAX_LINE / 2)));
        }
        assert_eq!(lines[3], format!("svc | {}", "é".repeat(MAX_LINE / 4)));
        assert_eq!(lines[4], "svc | end");
    }
}
