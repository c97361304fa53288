//! Starting the child: own process group, clean signal state, the terminal.
//!
//! The child runs in a process group of its own so that a forwarded signal
//! reaches everything it started (gunicorn's workers, a shell's pipeline)
//! with one kill(-pgid). It must start as if no init were in between:
//! [`clean_signal_state`] (run between fork and exec) puts every signal back
//! to its default action, since ignored signals (SIG_IGN) would otherwise be
//! inherited across exec, and then clears the signal mask, which std leaves
//! as the parent's.
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
            clean_signal_state(max);
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
            clean_signal_state(max);
            Ok(())
        });
    }
    Pid1Error::from_start(program, command.exec())
}

/// Every signal back to SIG_DFL, then nothing blocked. Runs between fork and
/// exec, so it makes system calls only. Errors are ignored: KILL, STOP and
/// the C library's reserved real-time signals refuse, and already are as
/// they must be. Dispositions go first: while signals are still blocked our
/// handler cannot run in this copy of the process.
fn clean_signal_state(max: c_int) {
    // SAFETY: signal(2), sigemptyset(3) and sigprocmask(2) are
    // async-signal-safe; `set` is a valid sigset_t.
    unsafe {
        for signo in 1..=max {
            libc::signal(signo, libc::SIG_DFL);
        }
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
pub(super) fn signal_group(group: Pid, signo: c_int) -> std::io::Result<()> {
    // SAFETY: kill(2) with a negative pid addresses the process group.
    let result = unsafe { libc::kill(-group.as_raw(), signo) };
    if result == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ESRCH) => Ok(()),
        _ => Err(error),
    }
}
