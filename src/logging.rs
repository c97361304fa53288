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

use std::fmt::Display;
use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;

use crate::exit;
use crate::options::LogFormat;

pub fn init(format: LogFormat) {
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

/// stderr for the log: a line that cannot be written is dropped, not an error.
struct QuietStderr;

impl Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
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
