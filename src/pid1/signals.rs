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
//!
//! Two exceptions, SIGTTIN and SIGTTOU ([`TERMINAL`]), stay blocked for good
//! and are read from a signalfd instead. The kernel treats a blocked TTOU
//! like an ignored one: a write to the terminal from outside its foreground
//! group (ours, once the child owns the terminal) simply goes through under
//! `stty tostop`, instead of raising SIGTTOU, whose handler would return
//! into the same write, again and again (a spinning, deaf PID 1), or of
//! failing with EIO when our group is orphaned. tini gets the same by
//! ignoring both; blocked, a TTIN or TTOU someone sends is still forwarded.
//! Their order relative to the other signals is not kept.
//!
//! # Signals before the handlers
//!
//! As PID 1 a signal whose action is the default is dropped by the kernel,
//! so a SIGTERM that came while options and settings are still being read
//! would be lost. [`block_early`], the first thing `main` does, blocks every
//! signal handled here: one that arrives before [`SignalPipe::install`] stays
//! pending and is delivered to its handler the moment install unblocks it.
//! A command that installs no handlers (`config`, `status`, `probe`) calls
//! [`release_early`] instead, which puts the mask back as it was inherited.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::{Arc, OnceLock};

use nix::libc::{self, c_int};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
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

/// Forwarded, but kept blocked and read from a signalfd: blocked, they never
/// stop or spin this process on a terminal (see the module documentation).
pub(super) const TERMINAL: [Signal; 2] = [Signal::SIGTTIN, Signal::SIGTTOU];

/// Forwarded when the system lets us handle them; a failure is only a warning.
fn optional_signals() -> impl Iterator<Item = c_int> {
    std::iter::once(Signal::SIGSYS as c_int).chain(libc::SIGRTMIN()..=libc::SIGRTMAX())
}

/// Every signal this module handles: the forwarded ones, SIGCHLD, the optional ones.
fn handled_signals() -> impl Iterator<Item = c_int> {
    FORWARDED
        .iter()
        .map(|signal| *signal as c_int)
        .chain([libc::SIGCHLD])
        .chain(optional_signals())
}

/// The mask this process inherited, saved by [`block_early`].
static INHERITED_MASK: OnceLock<SigSet> = OnceLock::new();

/// Block every signal PID 1 handles, so that none is lost before
/// [`SignalPipe::install`] (a signal with the default action is dropped for
/// PID 1, a blocked one stays pending). Call first thing in `main`, while it
/// is the only thread: threads inherit the mask.
pub fn block_early() {
    // SAFETY: both sets are valid sigset_t, initialised by sigemptyset;
    // sigaddset ignores a number out of range.
    let (result, inherited) = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut inherited: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigemptyset(&mut inherited);
        for signo in handled_signals() {
            libc::sigaddset(&mut set, signo);
        }
        let result = libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut inherited);
        (result, inherited)
    };
    if result == 0 {
        // SAFETY: pthread_sigmask filled `inherited` with a valid mask.
        let _ = INHERITED_MASK.set(unsafe { SigSet::from_sigset_t_unchecked(inherited) });
    }
}

/// Undo [`block_early`] for a command that installs no handlers: the mask is
/// again the one inherited, so TERM or INT end `config` or `probe` as usual.
pub fn release_early() {
    if let Some(inherited) = INHERITED_MASK.get() {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(inherited), None);
    }
}

/// Whether `signo` was blocked in the mask this process inherited.
fn inherited_blocked(signo: c_int) -> bool {
    INHERITED_MASK.get().is_some_and(|mask| {
        // SAFETY: `mask` is a valid sigset_t; sigismember only reads it.
        unsafe { libc::sigismember(mask.as_ref(), signo) == 1 }
    })
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

/// The receiving end of the self-pipe, the signalfd of [`TERMINAL`], and the
/// numbers read but not yet handled.
#[derive(Debug)]
pub(super) struct SignalPipe {
    reader: UnixStream,
    terminal: AsyncFd<SignalFd>,
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

        // TTIN and TTOU: blocked in this thread, and so in every thread it
        // starts from now on (before, `block_early` blocked them anyway).
        let mut terminal_set = SigSet::empty();
        for signal in TERMINAL {
            terminal_set.add(signal);
        }
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&terminal_set), None)
            .map_err(|errno| setup("signal mask")(errno.into()))?;
        let terminal = SignalFd::with_flags(
            &terminal_set,
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )
        .map_err(|errno| setup("signalfd")(errno.into()))?;
        // SAFETY: the SignalFd owns its descriptor, which stays open and the
        // same until the AsyncFd (its only owner) is dropped.
        let terminal = unsafe { AsyncFd::register_with_interest(terminal, Interest::READABLE) }
            .map_err(|_| Pid1Error::NoRuntime)?;

        let is_terminal = |signo: c_int| TERMINAL.iter().any(|signal| *signal as c_int == signo);
        let required = FORWARDED
            .iter()
            .map(|signal| *signal as c_int)
            .filter(|signo| !is_terminal(*signo))
            .chain([libc::SIGCHLD]);
        let mut handled = Vec::new();
        for signo in required {
            register(signo, &writer).map_err(setup("signal handlers"))?;
            handled.push(signo);
        }
        let mut unhandled = Vec::new();
        for signo in optional_signals() {
            match register(signo, &writer) {
                Ok(()) => handled.push(signo),
                Err(error) => {
                    warn!("{} will not be forwarded: {error}", name(signo));
                    unhandled.push(signo);
                }
            }
        }
        // A mask inherited from whoever started us would hold them back, and
        // `block_early` did; a signal that came meanwhile is handled now.
        // Those without a handler go back to how they were inherited.
        unhandled.retain(|signo| !inherited_blocked(*signo));
        handled.extend(unhandled);
        unblock(&handled).map_err(setup("signal mask"))?;
        Ok(SignalPipe {
            reader,
            terminal,
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
            tokio::select! {
                readable = self.reader.readable() => {
                    readable?;
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
                guard = self.terminal.readable() => {
                    let mut guard = guard?;
                    let read = guard.try_io(|fd| match fd.get_ref().read_signal() {
                        Ok(Some(info)) => Ok(info.ssi_signo as c_int),
                        Ok(None) => Err(io::ErrorKind::WouldBlock.into()),
                        Err(errno) => Err(errno.into()),
                    });
                    match read {
                        Ok(Ok(signo)) => self.queue.push_back(signo),
                        Ok(Err(error)) => return Err(error),
                        // Not readable after all: readiness cleared, wait again.
                        Err(_would_block) => {}
                    }
                }
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

    fn blocked_now(signo: c_int) -> bool {
        let mut current = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, None, Some(&mut current)).unwrap();
        // SAFETY: `current` is a valid sigset_t; sigismember only reads it.
        unsafe { libc::sigismember(current.as_ref(), signo) == 1 }
    }

    #[test]
    fn early_block_holds_every_handled_signal_and_release_restores_the_mask() {
        // The mask is per thread: this test's own thread only.
        std::thread::spawn(|| {
            assert!(!blocked_now(libc::SIGTERM));
            block_early();
            for signo in handled_signals() {
                assert!(blocked_now(signo), "{}", name(signo));
            }
            assert!(
                !blocked_now(libc::SIGSEGV),
                "synchronous faults stay deliverable"
            );
            release_early();
            assert!(!blocked_now(libc::SIGTERM));
            assert!(!blocked_now(libc::SIGTTOU));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn chld_and_pipe_are_not_forwarded() {
        assert!(!FORWARDED.contains(&Signal::SIGCHLD));
        assert!(!FORWARDED.contains(&Signal::SIGPIPE));
    }
}
