//! Log output: one line per event on stderr, plain or JSON.
//!
//! stdout belongs to the child (and to `config`), so the entrypoint's own
//! lines never mix into a server's access log. `RUST_LOG` filters, default `info`.
//!
//! Nothing written here panics, as `print!` and `eprintln!` do when the write
//! fails: a log line or error line that cannot be written (stderr on a full
//! disk, a pipe nobody reads any more) is lost, the process goes on; and
//! what a command prints on stdout ([`print`]) reports the failure to the
//! caller, which exits with [`exit::OUTPUT`] ([`stdout_failed`]).
//!
//! Log lines never block the thread that logs, which is the one handling
//! signals, reaping and deadlines: [`init`] starts a writer thread of their
//! own behind a bounded queue ([`QUEUED`] bytes). When stderr is read slowly
//! or not at all (a stalled log pipe), lines wait in the queue; when it is
//! full, new lines are dropped and counted, and the count is written once
//! stderr takes lines again. [`flush`] waits, for a bounded time, until what
//! was logged so far is written: before the process hands stderr to a child
//! (spawn of a single server, exec) and before it exits, so that lines are
//! neither lost nor overtaken by the child's.

use std::collections::VecDeque;
use std::fmt::Display;
use std::io::{self, IsTerminal, Write};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

use crate::exit;
use crate::options::LogFormat;

pub fn init(format: LogFormat) {
    start_writer();
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| QuietStderr)
        // Its fallback for a failed write is eprintln!: a panic on the same stderr.
        .log_internal_errors(false)
        .with_target(false)
        // Colour codes only for a person at a terminal, never into container logs.
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests calling run twice) is harmless: keep the first.
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// stderr for the log: a line that cannot be written is dropped, not an
/// error. tracing writes each event with one `write_all`: one whole line.
struct QuietStderr;

impl Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match WRITER.get() {
            Some(writer) => writer.push(buf),
            // Before init (and in unit tests): written here and now.
            None => {
                let _ = io::stderr().write_all(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the queue may hold before new lines are dropped: thousands of lines,
/// far more than the entrypoint logs in a stall of any length it survives.
const QUEUED: usize = 256 * 1024;

static WRITER: OnceLock<&'static LogWriter> = OnceLock::new();

/// How long [`flush`] waits before the process exits or hands stderr on.
pub const FLUSH_LIMIT: Duration = Duration::from_millis(500);

/// The queue between the threads that log and the writer thread.
struct LogWriter {
    queue: Mutex<Queue>,
    /// Signalled when lines are queued (to the writer) and when they are
    /// written (to [`flush`]).
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Lines queued and lines written (or given up on) so far.
    queued: u64,
    written: u64,
    /// Lines dropped since the last report of it.
    dropped: u64,
}

impl LogWriter {
    fn new() -> LogWriter {
        LogWriter {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        }
    }

    fn push(&self, line: &[u8]) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.bytes + line.len() > QUEUED {
            queue.dropped += 1;
            return;
        }
        queue.bytes += line.len();
        queue.queued += 1;
        queue.lines.push_back(line.to_vec());
        self.changed.notify_all();
    }

    /// The writer thread: everything queued, many lines per write, with the
    /// standard library's stderr lock held so that lines of `supervise`'s
    /// output writers never cut into them.
    fn run(&self) {
        // Signals are for the thread that handles them, and a write to a
        // terminal from a background process group goes through.
        let _ = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&nix::sys::signal::SigSet::all()),
            None,
        );
        loop {
            let (batch, count, dropped) = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                while queue.lines.is_empty() {
                    queue = self.changed.wait(queue).unwrap_or_else(|e| e.into_inner());
                }
                let count = queue.lines.len() as u64;
                let batch: Vec<u8> = queue.lines.drain(..).flatten().collect();
                queue.bytes = 0;
                (batch, count, std::mem::take(&mut queue.dropped))
            };
            let mut stderr = io::stderr().lock();
            let _ = stderr.write_all(&batch);
            if dropped > 0 {
                let _ = stderr.write_all(
                    format!("pulp-entrypoint: {dropped} log lines were dropped while stderr was not being read\n").as_bytes(),
                );
            }
            drop(stderr);
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.written += count;
            self.changed.notify_all();
        }
    }
}

fn start_writer() {
    if WRITER.get().is_some() {
        return;
    }
    // Leaked: it lives as long as the process, as its thread does.
    let writer: &'static LogWriter = Box::leak(Box::new(LogWriter::new()));
    let started = std::thread::Builder::new()
        .name("log".into())
        .spawn(move || writer.run());
    // Without the thread, lines are written by whoever logs, as before.
    if started.is_ok() {
        let _ = WRITER.set(writer);
    }
}

/// Wait until every line logged so far is written, or `limit` has passed.
pub fn flush(limit: Duration) {
    let Some(writer) = WRITER.get() else {
        return;
    };
    let deadline = Instant::now() + limit;
    let mut queue = writer.queue.lock().unwrap_or_else(|e| e.into_inner());
    let target = queue.queued;
    while queue.written < target {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        queue = writer
            .changed
            .wait_timeout(queue, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Write `text` to stdout, all of it, and flush: the error says why not.
pub fn print(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// `text` and a newline on stderr, in one write, for the lines outside the
/// log (a failed start's one-line error); lost if stderr cannot take it.
pub fn eprint_line(text: impl Display) {
    // After the log lines before it, not ahead of them.
    flush(FLUSH_LIMIT);
    let line = format!("{text}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

/// The exit code when stdout could not be written ([`exit::OUTPUT`]), after
/// one line on stderr saying why; none for a reader that went away
/// (`pulp-entrypoint config | head`): that is no news to whoever closed it.
pub fn stdout_failed(error: &io::Error) -> i32 {
    if error.kind() != io::ErrorKind::BrokenPipe {
        eprint_line(format_args!(
            "pulp-entrypoint: cannot write to stdout: {error}"
        ));
    }
    exit::OUTPUT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_new_lines_and_counts_them() {
        let writer = LogWriter::new();
        let line = vec![b'x'; 1024];
        for _ in 0..300 {
            writer.push(&line);
        }
        let queue = writer.queue.lock().unwrap();
        assert_eq!(queue.queued, (QUEUED / 1024) as u64);
        assert_eq!(queue.dropped, 300 - (QUEUED / 1024) as u64);
        assert_eq!(queue.bytes, QUEUED);
    }
}
