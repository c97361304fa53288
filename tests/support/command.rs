//! Running the built `pulp-entrypoint` binary from tests.
//!
//! [`TestCommand`] builds an invocation (arguments, environment, optionally
//! started by a launcher such as `unshare --pid --fork --mount-proc`, which
//! makes it PID 1 of a new PID namespace and needs root); [`Running`] is a started one that can be
//! signalled; [`Finished`] holds its exit status and output. Output goes to
//! temporary files, not pipes: a grandchild that outlives the entrypoint
//! would hold a pipe open and make reading it hang. Every wait is bounded and
//! panics with the output so far when the bound is hit.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long any single wait in a test may take before it counts as a failure.
/// Generous: the machines are small and shared.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// The binary under test.
pub fn entrypoint_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pulp-entrypoint"))
}

/// Poll `condition` until it holds; panic naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An invocation of the entrypoint, to be started with [`TestCommand::spawn`]
/// or run to completion with [`TestCommand::run`].
#[derive(Debug, Clone)]
pub struct TestCommand {
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    /// A program (and its arguments) that starts the entrypoint as its child.
    launcher: Vec<OsString>,
    /// Run this path instead of the binary (a link with another name).
    program: Option<PathBuf>,
}

impl TestCommand {
    /// `pulp-entrypoint` with no arguments yet.
    pub fn new() -> Self {
        TestCommand {
            args: Vec::new(),
            envs: Vec::new(),
            launcher: Vec::new(),
            program: None,
        }
    }

    /// `pulp-entrypoint run -- PROGRAM ARGS...`.
    pub fn run_child<I, S>(words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = TestCommand::new();
        command.args(["run", "--"]).args(words);
        command
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            self.arg(arg);
        }
        self
    }

    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Run the entrypoint as PID 1 of a new PID namespace (with its own /proc).
    pub fn in_pid_namespace(&mut self) -> &mut Self {
        self.launched_by(["unshare", "--pid", "--fork", "--mount-proc"])
    }

    /// Start the entrypoint through `launcher`, which gets the entrypoint's
    /// path and arguments appended and must exec it or run it as its direct child.
    /// Run `path` (e.g. a link named like a legacy script) instead of the binary itself.
    pub fn via(&mut self, path: impl AsRef<Path>) -> &mut Self {
        self.program = Some(path.as_ref().to_path_buf());
        self
    }

    pub fn launched_by<I, S>(&mut self, launcher: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.launcher = launcher
            .into_iter()
            .map(|word| word.as_ref().to_owned())
            .collect();
        self
    }

    /// Start it, stdin from /dev/null, output to temporary files.
    pub fn spawn(&self) -> Running {
        let binary = self.program.clone().unwrap_or_else(entrypoint_path);
        let mut command = match self.launcher.split_first() {
            Some((launcher, args)) => {
                let mut command = Command::new(launcher);
                command.args(args).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        command.args(&self.args);
        // The caller's PULP_* variables must not leak into the test.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PULP_") {
                command.env_remove(key);
            }
        }
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        let stdout = tempfile::tempfile().expect("temporary file for stdout");
        let stderr = tempfile::tempfile().expect("temporary file for stderr");
        command
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().expect("clone stdout file"))
            .stderr(stderr.try_clone().expect("clone stderr file"));
        let child = command.spawn().unwrap_or_else(|error| {
            panic!(
                "could not start {:?}: {error}{}",
                command.get_program(),
                if self.launcher.first().is_some_and(|l| l == "unshare") {
                    " (unshare from util-linux is needed, and root)"
                } else {
                    ""
                }
            )
        });
        Running {
            child: Some(child),
            stdout,
            stderr,
            launched: !self.launcher.is_empty(),
            binary,
            entrypoint: None,
            description: format!("{:?}", self.args),
        }
    }

    /// Start it and wait (bounded by [`WAIT_LIMIT`]) until it exits.
    pub fn run(&self) -> Finished {
        self.spawn().wait()
    }
}

impl Default for TestCommand {
    fn default() -> Self {
        TestCommand::new()
    }
}

/// A started entrypoint. Dropping it kills whatever is left.
#[derive(Debug)]
pub struct Running {
    child: Option<Child>,
    stdout: File,
    stderr: File,
    launched: bool,
    binary: PathBuf,
    entrypoint: Option<Pid>,
    description: String,
}

impl Running {
    /// The entrypoint's pid as seen from the test: the spawned process, once
    /// it runs the binary (a launcher may exec it), or the launcher's child
    /// that does.
    pub fn entrypoint_pid(&mut self) -> Pid {
        if let Some(pid) = self.entrypoint {
            return pid;
        }
        let spawned = self.spawned_pid();
        let pid = if self.launched {
            let mut found = None;
            let binary = self.binary.clone();
            wait_until("the launcher to start the entrypoint", WAIT_LIMIT, || {
                found = std::iter::once(spawned)
                    .chain(children_of(spawned))
                    .find(|pid| runs_binary(*pid, &binary));
                found.is_some()
            });
            found.expect("found above")
        } else {
            spawned
        };
        self.entrypoint = Some(pid);
        pid
    }

    /// Send `signal` to the entrypoint.
    pub fn signal(&mut self, signal: Signal) {
        self.signal_raw(signal as i32);
    }

    /// Send signal number `signo` (real-time signals included) to the entrypoint.
    pub fn signal_raw(&mut self, signo: i32) {
        let pid = self.entrypoint_pid();
        // SAFETY: kill(2) has no memory-safety preconditions.
        let result = unsafe { nix::libc::kill(pid.as_raw(), signo) };
        assert_eq!(
            result,
            0,
            "could not send signal {signo} to the entrypoint {pid}: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Whether it has not exited yet.
    pub fn is_running(&mut self) -> bool {
        let child = self.child.as_mut().expect("not waited for yet");
        child
            .try_wait()
            .expect("try_wait on the entrypoint")
            .is_none()
    }

    /// What it has printed so far (stdout, stderr), read without moving the
    /// file offset it writes at, so it is safe while it still runs.
    pub fn output_so_far(&self) -> (String, String) {
        (read_at_start(&self.stdout), read_at_start(&self.stderr))
    }

    /// Wait until it exits, at most [`WAIT_LIMIT`].
    pub fn wait(self) -> Finished {
        self.wait_at_most(WAIT_LIMIT)
    }

    /// Wait until it exits, at most `limit`; on timeout kill it and panic with its output.
    pub fn wait_at_most(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        let mut child = self.child.take().expect("waited once");
        let status = loop {
            match child.try_wait().expect("try_wait on the entrypoint") {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let (stdout, stderr) = self.output();
                    panic!(
                        "the entrypoint {} did not exit within {limit:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                        self.description
                    );
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let (stdout, stderr) = self.output();
        Finished {
            status,
            stdout,
            stderr,
        }
    }

    fn spawned_pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("still running").id() as i32)
    }

    fn output(&mut self) -> (String, String) {
        (read_all(&mut self.stdout), read_all(&mut self.stderr))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Killing a namespace's PID 1 kills everything in the namespace.
            if let Some(pid) = self.entrypoint {
                let _ = kill(pid, Signal::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How a run ended and what it printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The exit code; panics (with the output) if a signal killed the process.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("the entrypoint was killed: {self}"))
    }

    /// Assert the exit code, showing the output when it differs.
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(self.code(), expected, "unexpected exit code: {self}");
        self
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn read_all(file: &mut File) -> String {
    let mut text = String::new();
    file.rewind().expect("rewind output file");
    file.read_to_string(&mut text).expect("read output file");
    text
}

/// All of `file` from its start, with pread: the offset it shares with the
/// writing child stays where it is.
fn read_at_start(file: &File) -> String {
    use std::os::unix::fs::FileExt;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while let Ok(read @ 1..) = file.read_at(&mut chunk, bytes.len() as u64) {
        bytes.extend_from_slice(&chunk[..read]);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The processes whose parent is `parent`, from /proc.
pub fn children_of(parent: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| proc_stat(Pid::from_raw(*pid)).is_some_and(|(_, ppid)| ppid == parent))
        .map(Pid::from_raw)
        .collect()
}

/// State letter and parent pid of `pid`, or `None` once it is gone.
pub fn proc_stat(pid: Pid) -> Option<(char, Pid)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, Pid::from_raw(ppid)))
}

fn runs_binary(pid: Pid, binary: &Path) -> bool {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let binary = binary.canonicalize().unwrap_or_else(|_| binary.to_owned());
    exe == binary
}

/// The host's pid of the process that is `ns_pid` in `init`'s PID namespace.
pub fn host_pid(init: Pid, ns_pid: i32) -> Pid {
    let namespace = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let wanted = namespace(&init.to_string());
    let found = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.chars().all(|c| c.is_ascii_digit()))
        .find(|pid| {
            namespace(pid) == wanted
                && std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|text| {
                        let line = text.lines().find(|l| l.starts_with("NSpid:"))?;
                        line.split_whitespace().last()?.parse::<i32>().ok()
                    })
                    == Some(ns_pid)
        });
    Pid::from_raw(
        found
            .expect("the process in the namespace")
            .parse()
            .unwrap(),
    )
}
