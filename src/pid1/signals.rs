//! Receiving signals: one self-pipe for every signal PID 1 handles.
//!
//! Each handled signal gets a signal-hook action that writes the signal's
//! number as one byte into a non-blocking socket pair; the supervisor reads
//! the other end on the tokio runtime. One ordered stream of numbers, unlike
//! one tokio stream per signal, keeps the order in which signals arrived and
//! covers every real-time signal (tokio's table stops one short of SIGRTMAX).
//! Standard signals coalesce in the kernel while pending, so a byte is "at
//! least one since the last byte", which is all forwarding and reaping need.
//! If the socket is ever full the byte is dropped: the same coalescing.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;

use nix::libc::{self, c_int};
use nix::sys::signal::Signal;
use tokio::net::UnixStream;
use tracing::warn;

use super::Pid1Error;

/// Signals forwarded unchanged to the child's process group. Not CHLD (it is
/// ours), not PIPE (ours would be spurious), not KILL/STOP (cannot be caught),
/// not the synchronous faults (ILL, FPE, SEGV, BUS, TRAP, ABRT): they concern
/// this process's own code. The real-time signals are added at run time.
pub(super) const FORWARDED: [Signal; 19] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTERM,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGWINCH,
    Signal::SIGALRM,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGURG,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGIO,
    Signal::SIGPWR,
];

/// Forwarded when the system lets us handle them; a failure is only a warning.
fn optional_signals() -> impl Iterator<Item = c_int> {
    std::iter::once(Signal::SIGSYS as c_int).chain(libc::SIGRTMIN()..=libc::SIGRTMAX())
}

/// The signals that ask PID 1 to stop; the first one starts the stop policy.
pub(super) fn termination(signo: c_int) -> Option<Signal> {
    match Signal::try_from(signo) {
        Ok(signal @ (Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT)) => Some(signal),
        _ => None,
    }
}

/// A signal's name for messages: SIGTERM, SIGRTMIN+3, or its number.
pub(super) fn name(signo: c_int) -> String {
    if let Ok(signal) = Signal::try_from(signo) {
        return signal.as_str().to_string();
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if (min..=max).contains(&signo) {
        return format!("SIGRTMIN+{}", signo - min);
    }
    format!("signal {signo}")
}

/// The receiving end of the self-pipe, with the numbers read but not yet handled.
#[derive(Debug)]
pub(super) struct SignalPipe {
    reader: UnixStream,
    queue: VecDeque<c_int>,
}

impl SignalPipe {
    /// Install the handlers. Must run inside a tokio runtime with I/O enabled.
    /// The handlers stay installed for the life of the process.
    pub(super) fn install() -> Result<Self, Pid1Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Pid1Error::NoRuntime);
        }
        let setup = |what| move |source| Pid1Error::Setup { what, source };
        let (reader, writer) = StdUnixStream::pair().map_err(setup("signal socket"))?;
        reader
            .set_nonblocking(true)
            .map_err(setup("signal socket"))?;
        writer
            .set_nonblocking(true)
            .map_err(setup("signal socket"))?;
        let reader = UnixStream::from_std(reader).map_err(|_| Pid1Error::NoRuntime)?;
        // The actions own the write end: it lives as long as they can run.
        let writer = Arc::new(OwnedFd::from(writer));

        let required = FORWARDED
            .iter()
            .map(|signal| *signal as c_int)
            .chain([libc::SIGCHLD]);
        let mut handled = Vec::new();
        for signo in required {
            register(signo, &writer).map_err(setup("signal handlers"))?;
            handled.push(signo);
        }
        for signo in optional_signals() {
            match register(signo, &writer) {
                Ok(()) => handled.push(signo),
                Err(error) => warn!("{} will not be forwarded: {error}", name(signo)),
            }
        }
        // A mask inherited from whoever started us would hold them back.
        unblock(&handled).map_err(setup("signal mask"))?;
        Ok(SignalPipe {
            reader,
            queue: VecDeque::new(),
        })
    }

    /// The next signal received. Cancel safe: a number leaves the queue only
    /// in the poll that returns it.
    pub(super) async fn next(&mut self) -> io::Result<c_int> {
        let mut buf = [0u8; 64];
        loop {
            if let Some(signo) = self.queue.pop_front() {
                return Ok(signo);
            }
            self.reader.readable().await?;
            match self.reader.try_read(&mut buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the signal socket was closed",
                    ));
                }
                Ok(n) => self.queue.extend(buf[..n].iter().map(|&b| c_int::from(b))),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
    }
}

/// Unblock `signals` in this thread (and so in threads it starts later).
fn unblock(signals: &[c_int]) -> io::Result<()> {
    // SAFETY: `set` is a valid sigset_t, initialised by sigemptyset.
    let result = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signo in signals {
            libc::sigaddset(&mut set, *signo);
        }
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut())
    };
    match result {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

fn register(signo: c_int, writer: &Arc<OwnedFd>) -> io::Result<()> {
    let writer = Arc::clone(writer);
    // Signal numbers on Linux are at most 64, so one byte holds any of them.
    let byte = [signo as u8];
    let action = move || {
        // Async-signal-safe: one send(2), never blocking, never raising SIGPIPE.
        // SAFETY: the fd is open while `writer` lives; the buffer is valid.
        unsafe {
            libc::send(
                writer.as_raw_fd(),
                byte.as_ptr().cast(),
                1,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            );
        }
    };
    // SAFETY: the action only calls send(2), which is async-signal-safe,
    // and touches no lock or allocation.
    unsafe { signal_hook::low_level::register(signo, action) }.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_standard_and_real_time_signals() {
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        assert_eq!(name(libc::SIGRTMIN()), "SIGRTMIN+0");
        assert_eq!(
            name(libc::SIGRTMAX()),
            format!("SIGRTMIN+{}", libc::SIGRTMAX() - libc::SIGRTMIN())
        );
    }

    #[test]
    fn only_term_int_and_quit_ask_to_stop() {
        assert_eq!(termination(libc::SIGTERM), Some(Signal::SIGTERM));
        assert_eq!(termination(libc::SIGINT), Some(Signal::SIGINT));
        assert_eq!(termination(libc::SIGQUIT), Some(Signal::SIGQUIT));
        for signal in FORWARDED {
            if !matches!(signal, Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT) {
                assert_eq!(termination(signal as c_int), None, "{signal}");
            }
        }
        assert_eq!(termination(libc::SIGRTMIN()), None);
    }

    #[test]
    fn chld_and_pipe_are_not_forwarded() {
        assert!(!FORWARDED.contains(&Signal::SIGCHLD));
        assert!(!FORWARDED.contains(&Signal::SIGPIPE));
    }
}
