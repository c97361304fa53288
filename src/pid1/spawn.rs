//! Starting the child: own process group, clean signal state, the terminal.
//!
//! The child runs in a process group of its own so that a forwarded signal
//! reaches everything it started (gunicorn's workers, a shell's pipeline)
//! with one kill(-pgid). It must start as if no init were in between:
//! [`clean_signal_state`] (run between fork and exec) puts every signal back
//! to its default action, since ignored signals (SIG_IGN) would otherwise be
//! inherited across exec, and then clears the signal mask, which std leaves
//! as the parent's. It calls rt_sigaction directly: the C library refuses to
//! touch the real-time signals it reserves for itself, which an ignoring
//! parent can still have set to SIG_IGN. Clearing the mask matters: this
//! process keeps SIGTTIN and SIGTTOU blocked for good (and blocked every
//! handled signal early in `main`), and a mask is inherited across exec.
//!
//! While std forks, this thread blocks every signal, so the forked copy
//! cannot run our handler (which would write into our self-pipe) before its
//! dispositions are reset; signals that arrive meanwhile stay pending for us
//! and are forwarded once spawn has returned, i.e. after the exec.
//!
//! When stdin is a terminal and this process is in its foreground group, the
//! child's group is made the foreground group (as tini does), so an
//! interactive `podman run -it IMAGE bash` gets ^C and job control; the
//! terminal is taken back when the child is gone.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::libc::{self, c_int};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::unistd::{self, Pid};

use super::Pid1Error;

/// The program's name for messages.
pub(super) fn program_name(command: &Command) -> String {
    command.get_program().to_string_lossy().into_owned()
}

/// Start `command` in its own process group; `take_terminal` makes that group
/// the terminal's foreground group.
pub(super) fn spawn(mut command: Command, take_terminal: bool) -> Result<Child, Pid1Error> {
    let program = program_name(&command);
    let max = libc::SIGRTMAX();
    command.process_group(0);
    // SAFETY: the closure only makes async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || {
            if take_terminal {
                // Ignored, SIGTTOU does not stop a background group calling tcsetpgrp.
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp());
            }
            clean_signal_state(max, Reset::Every);
            Ok(())
        });
    }
    let blocked = SigSet::all();
    let mut previous = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut previous)).map_err(
        |errno| Pid1Error::Setup {
            what: "signal mask",
            source: errno.into(),
        },
    )?;
    let spawned = command.spawn();
    // Restoring the mask we just read cannot fail.
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    spawned.map_err(|error| Pid1Error::from_start(program, error))
}

/// Replace this process with `command`; returns only the reason it failed.
pub(super) fn exec(mut command: Command) -> Pid1Error {
    let program = program_name(&command);
    // The exec'd program is not an init: orphans should go past it to the real one.
    let _ = nix::sys::prctl::set_child_subreaper(false);
    let max = libc::SIGRTMAX();
    // SAFETY: the closure only makes async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || {
            // This process's own handlers go away with exec; the C library's
            // internal ones must stay in case exec fails.
            clean_signal_state(max, Reset::Ignored);
            Ok(())
        });
    }
    Pid1Error::from_start(program, command.exec())
}

/// Which dispositions [`clean_signal_state`] resets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reset {
    /// Every signal: in a forked child, so our handlers cannot run there.
    Every,
    /// Only ignored signals: before exec in this very process.
    Ignored,
}

/// Signals back to SIG_DFL, then nothing blocked. Runs between fork and
/// exec, so it makes system calls only. Errors are ignored: KILL and STOP
/// refuse, and already are as they must be. Dispositions go first: while
/// signals are still blocked our handler cannot run in a forked copy.
fn clean_signal_state(max: c_int, reset: Reset) {
    // The kernel's struct sigaction starts with the handler; SIG_DFL is 0
    // and so are the flags and mask, so an all-zero buffer large enough for
    // any architecture's layout means "default".
    let default = [0u64; 4];
    let sigset_size: libc::size_t = 8;
    for signo in 1..=max {
        if reset == Reset::Ignored {
            let mut current = [0u64; 4];
            // SAFETY: rt_sigaction reads nothing and writes at most the
            // kernel's struct sigaction into `current`, which is larger.
            let found = unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signo,
                    std::ptr::null::<u64>(),
                    current.as_mut_ptr(),
                    sigset_size,
                )
            };
            if found != 0 || current[0] != libc::SIG_IGN as u64 {
                continue;
            }
        }
        // SAFETY: rt_sigaction is async-signal-safe; `default` outlives the call.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signo,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                sigset_size,
            );
        }
    }
    // SAFETY: sigemptyset(3) and sigprocmask(2) are async-signal-safe; `set`
    // is a valid sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Whether the child should get the terminal: stdin is one and we own its foreground.
pub(super) fn should_take_terminal() -> bool {
    let stdin = std::io::stdin();
    unistd::isatty(&stdin).unwrap_or(false)
        && unistd::tcgetpgrp(&stdin).is_ok_and(|group| group == unistd::getpgrp())
}

/// Make our group the foreground group again after the child is gone.
pub(super) fn take_back_terminal() {
    // A background group calling tcsetpgrp gets SIGTTOU unless it blocks it.
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut previous = SigSet::empty();
    if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut previous)).is_err() {
        return;
    }
    let _ = unistd::tcsetpgrp(std::io::stdin(), unistd::getpgrp());
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
}

/// Send `signo` to the process group `group`. A group that is already gone
/// (ESRCH) is not an error: the child died while the signal was on its way.
pub(super) fn signal(child: Pid, signo: c_int, whole_group: bool) -> std::io::Result<()> {
    // The child leads its own group, so -pid addresses the group.
    let target = if whole_group {
        -child.as_raw()
    } else {
        child.as_raw()
    };
    // SAFETY: kill(2) takes any pid and signal number; errors come back as -1.
    let result = unsafe { libc::kill(target, signo) };
    if result == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ESRCH) => Ok(()),
        _ => Err(error),
    }
}
