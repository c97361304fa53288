//! What can go wrong while starting or supervising the child, and the exit code for each.
//!
//! Start failures follow the shell's convention (127 not found, 126 found
//! but not executable) so `podman run IMAGE typo` reads like a shell error.

use std::io;

use nix::sys::signal::Signal;

use crate::exit;

#[derive(Debug, thiserror::Error)]
pub enum Pid1Error {
    /// No such program (execvp gave ENOENT).
    #[error("command not found: {program} ({hint})")]
    NotFound { program: String, hint: &'static str },
    /// The program exists but the kernel refused to run it.
    #[error("cannot execute {program}: {reason}")]
    NotExecutable {
        program: String,
        reason: &'static str,
    },
    /// Any other failure to start the program (fork, out of memory, ...).
    #[error("could not start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    /// Becoming a subreaper or installing the signal handlers failed.
    #[error("could not set up PID 1 duties ({what}): {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// `Init::new` was called outside a tokio runtime with I/O enabled.
    #[error("internal error: PID 1 duties need a tokio runtime with I/O enabled")]
    NoRuntime,
    /// waitpid failed in a way it never should.
    #[error("could not wait for child processes: {0}")]
    Wait(#[source] io::Error),
    /// Someone else reaped the child (something in this process called wait on it).
    #[error("internal error: the child {program} (pid {pid}) was reaped by someone else")]
    LostChild { program: String, pid: i32 },
    /// A termination signal arrived before the child could be started.
    #[error("stopped by {} before {program} was started", .signal.as_str())]
    Stopped { signal: Signal, program: String },
}

impl Pid1Error {
    /// The process exit code for this error (see `crate::exit`).
    pub fn exit_code(&self) -> i32 {
        match self {
            Pid1Error::NotFound { .. } => exit::NOT_FOUND,
            Pid1Error::NotExecutable { .. } => exit::NOT_EXECUTABLE,
            Pid1Error::Spawn { .. } | Pid1Error::Setup { .. } | Pid1Error::Wait(_) => {
                exit::OS_ERROR
            }
            Pid1Error::NoRuntime | Pid1Error::LostChild { .. } => exit::INTERNAL,
            Pid1Error::Stopped { signal, .. } => exit::SIGNAL_BASE + *signal as i32,
        }
    }

    /// Classify the error of a failed spawn or exec of `program`.
    pub(super) fn from_start(program: String, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(nix::libc::ENOENT) => {
                // With a slash the program was not searched in PATH: the file
                // itself, or the interpreter named by its #! line, is missing.
                let hint = if program.contains('/') {
                    "no such file, or its #! interpreter is missing"
                } else {
                    "check PATH"
                };
                Pid1Error::NotFound { program, hint }
            }
            Some(nix::libc::EACCES) | Some(nix::libc::EPERM) => Pid1Error::NotExecutable {
                program,
                reason: "permission denied (it must be a regular file with execute permission)",
            },
            Some(nix::libc::ENOEXEC) => Pid1Error::NotExecutable {
                program,
                reason: "not an executable format (a script needs a #! line)",
            },
            Some(nix::libc::EISDIR) => Pid1Error::NotExecutable {
                program,
                reason: "it is a directory",
            },
            _ => Pid1Error::Spawn { program, source },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_error(program: &str, errno: i32) -> Pid1Error {
        Pid1Error::from_start(program.into(), io::Error::from_raw_os_error(errno))
    }

    #[test]
    fn start_errors_map_to_shell_exit_codes_and_one_line_messages() {
        let missing = start_error("pulpcore-apii", nix::libc::ENOENT);
        assert_eq!(missing.exit_code(), 127);
        assert_eq!(
            missing.to_string(),
            "command not found: pulpcore-apii (check PATH)"
        );
        let missing_path = start_error("/opt/x", nix::libc::ENOENT);
        assert_eq!(missing_path.exit_code(), 127);
        assert!(!missing_path.to_string().contains("PATH"));
        for errno in [
            nix::libc::EACCES,
            nix::libc::EPERM,
            nix::libc::ENOEXEC,
            nix::libc::EISDIR,
        ] {
            let error = start_error("./x", errno);
            assert_eq!(error.exit_code(), 126, "{error}");
            assert!(error.to_string().starts_with("cannot execute ./x: "));
            assert!(!error.to_string().contains('\n'));
        }
        assert_eq!(start_error("x", nix::libc::ENOMEM).exit_code(), 71);
    }

    #[test]
    fn stopped_before_start_exits_like_the_signal() {
        let error = Pid1Error::Stopped {
            signal: Signal::SIGTERM,
            program: "pulpcore-api".into(),
        };
        assert_eq!(error.exit_code(), 143);
        assert_eq!(
            error.to_string(),
            "stopped by SIGTERM before pulpcore-api was started"
        );
    }
}
