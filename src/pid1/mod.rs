//! PID 1 duties: spawn the child, forward signals, reap zombies, pass on exit codes.
//!
//! # Theory of operation
//!
//! A container's first process is its init. The kernel gives PID 1 no
//! default signal actions (a SIGTERM without a handler does nothing) and
//! makes it the parent of every orphan in the container, which stays a
//! zombie until PID 1 waits for it. Pulp's servers do neither job for the
//! whole container, so the entrypoint does it, the way tini does:
//!
//! 0. [`block_early_signals`], the first line of `main` (before argv is
//!    read), blocks every signal handled below, so that one arriving while
//!    options and settings are read stays pending instead of being dropped
//!    (PID 1 has no default actions); [`Init::new`] then unblocks them and
//!    it is handled at once. Commands that never create an `Init` (`config`,
//!    `status`, `probe`) call [`release_early_signals`] after parsing argv.
//! 1. [`Init::new`] (once, first thing, inside the current-thread tokio
//!    runtime) makes this process a child subreaper when it is not PID 1
//!    (then orphans below it come to it instead of the host's init), and
//!    installs a handler for every forwardable signal (the real-time ones
//!    included) and SIGCHLD, unblocking them in case whoever started us left
//!    them blocked. Handlers write the signal number into a self-pipe read
//!    on the runtime (`signals`), so nothing runs in signal context but one
//!    send(2), and signals are handled in the order they arrived. SIGTTIN
//!    and SIGTTOU instead stay blocked (read from a signalfd, and forwarded
//!    all the same): with the child in the terminal's foreground and `stty
//!    tostop`, our own log lines are background writes, which the kernel
//!    lets through for a process that blocks (or, as tini does, ignores)
//!    SIGTTOU, rather than stopping it or raising the signal again and again.
//! 2. While the entrypoint has no child (waiting for PostgreSQL), the caller
//!    selects its work against [`Init::termination_requested`], which reaps
//!    zombies meanwhile and resolves on the first TERM, INT or QUIT. Other
//!    signals are dropped: there is nobody to forward them to.
//! 3. [`Init::supervise`] starts the child with `std::process::Command`
//!    (not tokio's, whose own reaper would race our `waitpid(-1)`) in a
//!    process group of its own, with a clean signal mask (nothing blocked,
//!    TTIN and TTOU included) and default dispositions, owning the terminal
//!    if we did (`spawn`). Then it waits
//!    on two kinds of events, never polling:
//!    - a signal: SIGCHLD reaps every dead process (`reap`); any other
//!      signal is sent unchanged to the child (or, with
//!      [`SignalTarget::Group`], to its process group: not the default,
//!      because gunicorn's workers die of a SIGHUP meant for the arbiter and
//!      a SIGTERM meant for pulpcore-worker kills the task it should finish).
//!      The first
//!      TERM/INT/QUIT also starts the [`StopPolicy`] clock.
//!    - a stop step comes due: its signal goes the same way, SIGKILL always
//!      to the whole group (`stop`), e.g.
//!      SIGINT 10 s after the first SIGTERM for a worker, SIGKILL after 25 s.
//!
//!    It returns the child's [`ChildExit`] as soon as the child itself has
//!    been reaped (after reaping whatever else was already dead): a
//!    grandchild that lives on does not hold the entrypoint. As PID 1 the
//!    kernel kills such leftovers when the entrypoint exits; as a subreaper
//!    they are passed on to the next subreaper above.
//! 4. [`exec`] is the alternative to supervising: replace the entrypoint with
//!    the program (no reaping, no forwarding; the program is then PID 1).
//!
//! Termination is sticky: once TERM/INT/QUIT has arrived, later calls to
//! `termination_requested` resolve at once, and `supervise` refuses to start
//! another child ([`Pid1Error::Stopped`], exit 128+N), so a stop that came
//! between `migrate` and the server does not start the server.
//!
//! Exit codes: [`ChildExit::exit_code`] is the child's code, or 128+N when
//! signal N killed it; [`Pid1Error::exit_code`] is 127 (not found), 126 (not
//! executable), 71 (other OS errors), 70 (internal), 128+N (stopped).
//!
//! Nothing else in the process may wait for children while an `Init` is
//! being polled: `waitpid(-1)` would take their status (std's
//! `Command::output`/`status` would then fail with ECHILD).

mod error;
mod reap;
mod signals;
mod spawn;
mod stop;

use std::process::Command;
use std::time::Duration;

use nix::libc::c_int;
use nix::sys::signal::Signal;
use nix::unistd::{self, Pid};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

pub use crate::options::SignalTarget;
pub use error::Pid1Error;
pub use reap::ChildExit;
pub use stop::{Schedule, StopPolicy, StopStep};

use signals::SignalPipe;

/// This process acting as init: signal handlers installed, orphans adopted.
#[derive(Debug)]
pub struct Init {
    signals: SignalPipe,
    /// Who receives forwarded signals; SIGKILL always goes to the whole group.
    target: SignalTarget,
    /// The first termination signal and when it arrived.
    stopping: Option<(Signal, Instant)>,
}

impl Init {
    /// Become a child subreaper unless PID 1, and install the signal handlers.
    ///
    /// Call once, inside a tokio runtime with I/O and time enabled, before
    /// anything that waits: from here on TERM/INT/QUIT no longer kill this
    /// process but are reported by [`Init::termination_requested`] or
    /// forwarded by [`Init::supervise`]. The handlers stay installed for the
    /// life of the process.
    pub fn new(target: SignalTarget) -> Result<Self, Pid1Error> {
        if unistd::getpid().as_raw() != 1 {
            nix::sys::prctl::set_child_subreaper(true).map_err(|errno| Pid1Error::Setup {
                what: "child subreaper",
                source: errno.into(),
            })?;
        }
        Ok(Init {
            signals: SignalPipe::install()?,
            target,
            stopping: None,
        })
    }

    /// Resolves with the first TERM, INT or QUIT received (at once if one
    /// already was), reaping zombies while it waits. Cancel safe, so it can
    /// be raced against other work in `tokio::select!`.
    pub async fn termination_requested(&mut self) -> Signal {
        loop {
            if let Some((signal, _)) = self.stopping {
                return signal;
            }
            let signo = match self.signals.next().await {
                Ok(signo) => signo,
                Err(failure) => {
                    // A local socket pair does not fail; if it did, signals
                    // are lost and waiting forever is all that is left.
                    error!("cannot receive signals any more: {failure}");
                    return std::future::pending().await;
                }
            };
            if signo == nix::libc::SIGCHLD {
                if let Err(failure) = reap::reap_all(None) {
                    warn!("could not reap child processes: {failure}");
                }
            } else if let Some(signal) = signals::termination(signo) {
                self.stopping = Some((signal, Instant::now()));
            } else {
                debug!(
                    "{} ignored: no child to forward it to",
                    signals::name(signo)
                );
            }
        }
    }

    /// Start `command` and act as its init until it exits: forward signals
    /// to its process group, apply `stop` after the first TERM/INT/QUIT, reap
    /// every zombie. Returns how the child ended.
    pub async fn supervise(
        &mut self,
        command: Command,
        stop: &StopPolicy,
    ) -> Result<ChildExit, Pid1Error> {
        let program = spawn::program_name(&command);
        if let Some((signal, _)) = self.stopping {
            return Err(Pid1Error::Stopped { signal, program });
        }
        let took_terminal = spawn::should_take_terminal();
        // The child writes to our stderr directly: our lines go first.
        crate::logging::flush(crate::logging::FLUSH_LIMIT);
        let child = spawn::spawn(command, took_terminal)?;
        let pid = Pid::from_raw(child.id() as i32);
        // Never waited on through `child`: reaping goes through waitpid(-1).
        drop(child);
        debug!("started {program} as pid {pid}");

        let result = self.watch(&program, pid, stop).await;
        if took_terminal {
            spawn::take_back_terminal();
        }
        if let Ok(exit) = &result {
            debug!("{program} {exit}");
        }
        result
    }

    /// The event loop of [`Init::supervise`] for the child `pid`.
    async fn watch(
        &mut self,
        program: &str,
        pid: Pid,
        stop: &StopPolicy,
    ) -> Result<ChildExit, Pid1Error> {
        let mut schedule: Option<Schedule> = None;
        loop {
            // Checked on every event, and first of all in case the child died
            // before its SIGCHLD handler could matter.
            let reaped = reap::reap_all(Some(pid.as_raw())).map_err(Pid1Error::Wait)?;
            if let Some(exit) = reaped.main {
                return Ok(exit);
            }
            if reaped.none_left {
                return Err(Pid1Error::LostChild {
                    program: program.to_string(),
                    pid: pid.as_raw(),
                });
            }

            let deadline = schedule.as_ref().and_then(Schedule::next_deadline);
            tokio::select! {
                received = self.signals.next() => {
                    let signo = received.map_err(|source| Pid1Error::Setup {
                        what: "signal socket",
                        source,
                    })?;
                    if signo == nix::libc::SIGCHLD {
                        continue;
                    }
                    forward(pid, signo, self.target);
                    if let Some(signal) = signals::termination(signo) {
                        let (_, since) = *self.stopping.get_or_insert((signal, Instant::now()));
                        if schedule.is_none() {
                            schedule = Some(Schedule::new(since, stop));
                        }
                    }
                }
                () = sleep_until(deadline) => {
                    if let Some(schedule) = schedule.as_mut() {
                        for step in schedule.take_due(Instant::now()) {
                            info!(
                                "{program} still running {:?} after {}: sending {}",
                                step.after,
                                self.stopping.map_or("the stop request", |(s, _)| s.as_str()),
                                step.signal.as_str()
                            );
                            forward(pid, step.signal as c_int, self.target);
                        }
                    }
                }
            }
        }
    }
}

/// What [`Init::next_event`] saw, for a supervisor of several children.
#[derive(Debug)]
pub enum Event {
    /// A signal other than SIGCHLD arrived (not forwarded: the caller decides).
    Signal(c_int),
    /// These processes died and were reaped (orphans included).
    Exited(Vec<(Pid, ChildExit)>),
}

impl Init {
    /// Start `command` in a process group of its own, never with the
    /// terminal, for a caller that runs several children (`supervise`). The
    /// returned handle is only for its pipes: its status is collected by
    /// [`Init::next_event`], so never wait on it.
    pub fn spawn(&mut self, command: Command) -> Result<std::process::Child, Pid1Error> {
        spawn::spawn(command, false)
    }

    /// The next signal, or the processes that died since the last call.
    /// Cancel safe. Reaps before waiting, so a child that died before its
    /// SIGCHLD was read is reported too.
    pub async fn next_event(&mut self) -> Result<Event, Pid1Error> {
        loop {
            let (dead, _) = reap::reap_each().map_err(Pid1Error::Wait)?;
            if !dead.is_empty() {
                return Ok(Event::Exited(
                    dead.into_iter()
                        .map(|(pid, exit)| (Pid::from_raw(pid), exit))
                        .collect(),
                ));
            }
            let signo = self
                .signals
                .next()
                .await
                .map_err(|source| Pid1Error::Setup {
                    what: "signal socket",
                    source,
                })?;
            if signo != nix::libc::SIGCHLD {
                return Ok(Event::Signal(signo));
            }
        }
    }

    /// Reap until no child is left, for at most `limit`: the last processes
    /// of killed services die within moments, and should not be left as
    /// zombies for whoever inherits them. Returns whether none is left.
    pub async fn reap_remaining(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match reap::reap_each() {
                Ok((_, true)) => return true,
                Ok((dead, false)) => {
                    for (pid, exit) in dead {
                        debug!("reaped leftover process {pid}: {exit}");
                    }
                }
                Err(_) => return false,
            }
            tokio::select! {
                _ = self.signals.next() => {}
                () = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// Who receives forwarded signals.
    pub fn signal_target(&self) -> SignalTarget {
        self.target
    }
}

/// Send `signo` to `pid` as [`Init::supervise`] forwards it: to the process,
/// or to its group with [`SignalTarget::Group`] and always for SIGKILL.
pub fn send(pid: Pid, signo: c_int, target: SignalTarget) {
    forward(pid, signo, target);
}

/// A signal's name for messages: SIGTERM, SIGRTMIN+3.
pub fn signal_name(signo: c_int) -> String {
    signals::name(signo)
}

/// TERM, INT and QUIT ask PID 1 to stop.
pub fn termination_signal(signo: c_int) -> Option<Signal> {
    signals::termination(signo)
}

/// Block every signal PID 1 handles until [`Init::new`] installs the
/// handlers, so none that arrives meanwhile is lost. Call first thing in
/// `main`, before any thread exists.
pub fn block_early_signals() {
    signals::block_early();
}

/// Undo [`block_early_signals`] in a process that will not create an
/// [`Init`]: the signal mask is again the inherited one.
pub fn release_early_signals() {
    signals::release_early();
}

/// Replace this process with `command` (execvp). Returns only on failure.
pub fn exec(command: Command) -> Pid1Error {
    // Queued log lines would go with this process image.
    crate::logging::flush(crate::logging::FLUSH_LIMIT);
    spawn::exec(command)
}

/// Send `signo` to the child, or to its process group: with
/// [`SignalTarget::Group`], and always for SIGKILL, so that nothing the child
/// started outlives the stop.
fn forward(child: Pid, signo: c_int, target: SignalTarget) {
    let whole_group = target == SignalTarget::Group || signo == nix::libc::SIGKILL;
    let to = if whole_group {
        "process group"
    } else {
        "process"
    };
    debug!("forwarding {} to {to} {child}", signals::name(signo));
    if let Err(failure) = spawn::signal(child, signo, whole_group) {
        warn!(
            "could not send {} to {to} {child}: {failure}",
            signals::name(signo)
        );
    }
}

/// Sleep until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
