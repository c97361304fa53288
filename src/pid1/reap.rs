//! Reaping: collect every dead child, orphans included, and decode statuses.
//!
//! As PID 1 (or a child subreaper) this process inherits every orphan below
//! it; each one that dies stays a zombie until someone waits for it. On each
//! SIGCHLD, [`reap_all`] calls `waitpid(-1, WNOHANG)` until nothing more is
//! dead, since several deaths can share one SIGCHLD. It calls libc directly:
//! nix's `WaitStatus` cannot represent a death by a real-time signal and
//! would lose that status after the zombie is already gone.

use std::fmt;
use std::io;

use nix::libc::{self, c_int, pid_t};
use tracing::debug;

use super::signals;
use crate::exit;

/// How the supervised child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    /// It called exit with this code (0..=255).
    Exited { code: i32 },
    /// A signal killed it.
    Killed { signal: i32, core_dumped: bool },
}

impl ChildExit {
    /// Decode a raw status from waitpid.
    pub(super) fn from_raw(status: c_int) -> Self {
        if libc::WIFSIGNALED(status) {
            ChildExit::Killed {
                signal: libc::WTERMSIG(status),
                core_dumped: libc::WCOREDUMP(status),
            }
        } else {
            // Without WUNTRACED/WCONTINUED waitpid reports only deaths.
            ChildExit::Exited {
                code: libc::WEXITSTATUS(status),
            }
        }
    }

    /// The exit code to pass on: the child's own, or 128+N for signal N, as a shell does.
    pub fn exit_code(&self) -> i32 {
        match self {
            ChildExit::Exited { code } => *code,
            ChildExit::Killed { signal, .. } => exit::SIGNAL_BASE + signal,
        }
    }
}

impl fmt::Display for ChildExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildExit::Exited { code } => write!(f, "exited with code {code}"),
            ChildExit::Killed {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by {}", signals::name(*signal))?;
                if *core_dumped {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// What one reaping pass found.
#[derive(Debug, Default)]
pub(super) struct Reaped {
    /// The status of `main`, when it was among the dead.
    pub(super) main: Option<ChildExit>,
    /// waitpid said there are no children left at all.
    pub(super) none_left: bool,
}

/// Reap every child that is already dead, without blocking, and return each
/// pid with its status; the flag says no child at all is left.
pub(super) fn reap_each() -> io::Result<(Vec<(pid_t, ChildExit)>, bool)> {
    let mut dead = Vec::new();
    loop {
        let mut status: c_int = 0;
        // SAFETY: status is a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => return Ok((dead, false)),
            -1 => {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::ECHILD) => return Ok((dead, true)),
                    Some(libc::EINTR) => continue,
                    _ => return Err(error),
                }
            }
            pid => dead.push((pid, ChildExit::from_raw(status))),
        }
    }
}

/// Reap every child that is already dead, without blocking.
pub(super) fn reap_all(main: Option<pid_t>) -> io::Result<Reaped> {
    let mut reaped = Reaped::default();
    loop {
        let mut status: c_int = 0;
        // SAFETY: status is a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => return Ok(reaped),
            -1 => {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::ECHILD) => {
                        reaped.none_left = true;
                        return Ok(reaped);
                    }
                    Some(libc::EINTR) => continue,
                    _ => return Err(error),
                }
            }
            pid => {
                let exit = ChildExit::from_raw(status);
                if Some(pid) == main {
                    reaped.main = Some(exit);
                } else {
                    debug!("reaped orphan process {pid}: {exit}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_through_and_signals_add_128() {
        // Raw statuses as the kernel encodes them: code << 8, or the signal number.
        assert_eq!(ChildExit::from_raw(0), ChildExit::Exited { code: 0 });
        assert_eq!(ChildExit::from_raw(3 << 8).exit_code(), 3);
        assert_eq!(ChildExit::from_raw(255 << 8).exit_code(), 255);
        assert_eq!(ChildExit::from_raw(libc::SIGKILL).exit_code(), 137);
        let rt = libc::SIGRTMIN() + 1;
        assert_eq!(
            ChildExit::from_raw(rt),
            ChildExit::Killed {
                signal: rt,
                core_dumped: false
            }
        );
        assert_eq!(
            ChildExit::from_raw(libc::SIGABRT | 0x80),
            ChildExit::Killed {
                signal: libc::SIGABRT,
                core_dumped: true
            }
        );
    }

    #[test]
    fn display_names_the_signal() {
        assert_eq!(
            ChildExit::Exited { code: 2 }.to_string(),
            "exited with code 2"
        );
        assert_eq!(
            ChildExit::Killed {
                signal: libc::SIGSEGV,
                core_dumped: true
            }
            .to_string(),
            "killed by SIGSEGV (core dumped)"
        );
    }
}
