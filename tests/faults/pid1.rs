//! PID 1 faults: a terminal with `tostop`, a SIGTERM before the handlers
//! exist, stdout or stderr that cannot be written.
//!
//! - With `stty tostop`, a write to the terminal from a process outside its
//!   foreground group raises SIGTTOU. The entrypoint hands the foreground to
//!   its child, so its own log lines are such writes: they must go through
//!   (as with tini), never loop on the signal or stop the entrypoint.
//! - As PID 1 a signal without a handler is dropped by the kernel, so a
//!   SIGTERM that arrives while options are still being read must wait,
//!   blocked, until the handlers are there.
//! - A full disk (/dev/full) or a reader that went away (a closed pipe) on
//!   stdout is a documented exit code, not a panic; on stderr it costs the
//!   log lines, not the process.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::support::command::{
    Finished, TestCommand, WAIT_LIMIT, children_of, entrypoint_path, proc_stat, wait_until,
};

/// The exit code for stdout that cannot be written (EX_IOERR).
const OUTPUT_ERROR: i32 = 74;

fn file_text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// CPU time (user + system) `pid` has used so far.
fn cpu_time(pid: Pid) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("the entrypoint's stat");
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

// ---------------------------------------------------------------- tostop

/// SIGKILLs a process when dropped (a failed assertion included), so a test
/// that gives up leaves nothing running; [`Reaper::disarm`] once it is gone.
struct Reaper(Option<Pid>);

impl Reaper {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }
}

/// Starts its arguments (after the mode) on a new pseudo-terminal with
/// `tostop` set, copies what appears on the terminal to stdout as it comes,
/// and exits with their code. Mode `job`: as an interactive shell runs a
/// job, in a process group of its own that is the terminal's foreground
/// group, the shell (the session leader) waiting for it; a background write
/// then raises SIGTTOU. Mode `leader`: as a container's PID 1 on `podman run
/// -t`, the session leader itself; its group is orphaned, so a background
/// write fails with EIO instead.
const TOSTOP_PTY: &str = r#"
import os, pty, signal, sys, termios

mode, argv = sys.argv[1], sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    attrs = termios.tcgetattr(0)
    attrs[3] |= termios.TOSTOP  # stty tostop
    termios.tcsetattr(0, termios.TCSANOW, attrs)
    if mode == "job":
        job = os.fork()
        if job == 0:
            os.setpgid(0, 0)
            signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            os.tcsetpgrp(0, os.getpgrp())
            signal.signal(signal.SIGTTOU, signal.SIG_DFL)
            os.execv(argv[0], argv)
        _, status = os.waitpid(job, 0)
        os._exit(os.waitstatus_to_exitcode(status))
    os.execv(argv[0], argv)
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:  # EIO once nobody holds the terminal any more
        break
    if not chunk:
        break
    sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"#;

/// Leaves an orphan for the entrypoint to reap (it exits after a moment,
/// while this process owns the terminal), reports the entrypoint's pid, its
/// own process group, the terminal's foreground group and the orphan,
/// records each SIGUSR1 and exits 7 on SIGTERM.
const FOREGROUND_CHILD: &str = r#"
import os, signal, sys, time

record = sys.argv[1]
def log(line):
    with open(record, "a") as f:
        f.write(line + "\n")

signal.signal(signal.SIGUSR1, lambda signo, frame: log("usr1"))
signal.signal(signal.SIGTERM, lambda signo, frame: os._exit(7))
r, w = os.pipe()
middle = os.fork()
if middle == 0:
    orphan = os.fork()
    if orphan == 0:
        time.sleep(0.5)
        os._exit(0)
    os.write(w, str(orphan).encode())
    os._exit(0)
os.waitpid(middle, 0)
orphan = int(os.read(r, 32))
log(f"ready {os.getppid()} {os.getpgrp()} {os.tcgetpgrp(0)} {orphan}")
while True:
    signal.pause()
"#;

fn tostop_log_writes_neither_spin_nor_stop_the_entrypoint(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    let mut command =
        TestCommand::run_child(["python3", "-c", FOREGROUND_CHILD, record.to_str().unwrap()]);
    // Debug lines ("started", "reaped orphan", "forwarding") are written
    // while the child owns the terminal.
    command
        .env("RUST_LOG", "debug")
        .env("PULP_ENTRYPOINT_STOP_GRACE", "600")
        .launched_by(["python3", "-c", TOSTOP_PTY, mode]);
    let mut running = command.spawn();
    wait_until("the child to report ready", WAIT_LIMIT, || {
        file_text(&record).starts_with("ready ") || !running.is_running()
    });
    let report = file_text(&record);
    let Some(line) = report.lines().next() else {
        let (stdout, _) = running.output_so_far();
        panic!("{mode}: the entrypoint ended before the child was ready:\n{stdout}");
    };
    let words: Vec<i32> = line["ready ".len()..]
        .split_whitespace()
        .map(|word| word.parse().unwrap())
        .collect();
    let [entrypoint, group, foreground, orphan] = words[..] else {
        panic!("bad report {report:?}");
    };
    let entrypoint = Pid::from_raw(entrypoint);
    let reaper = Reaper(Some(entrypoint));
    assert_eq!(
        group, foreground,
        "{mode}: the child must own the terminal for this test to mean anything"
    );
    let signal = |signal| nix::sys::signal::kill(entrypoint, signal).unwrap();

    // Forwarding logs a line each time; the entrypoint must keep up.
    let before = cpu_time(entrypoint);
    let window = Instant::now();
    for sent in 1..=3 {
        signal(Signal::SIGUSR1);
        wait_until(
            &format!("{mode}: the child to get the forwarded SIGUSR1"),
            Duration::from_secs(10),
            || file_text(&record).matches("usr1").count() >= sent,
        );
    }
    std::thread::sleep(Duration::from_secs(1).saturating_sub(window.elapsed()));
    let used = cpu_time(entrypoint) - before;
    assert!(
        used < Duration::from_millis(300),
        "{mode}: the entrypoint used {used:?} of CPU in {:?}: it spins",
        window.elapsed()
    );

    // The orphan died while the child owned the terminal: reaped, no zombie.
    let orphan = Pid::from_raw(orphan);
    wait_until(
        &format!("{mode}: the orphan to be reaped"),
        Duration::from_secs(10),
        || proc_stat(orphan).is_none(),
    );
    let zombies: Vec<Pid> = children_of(entrypoint)
        .into_iter()
        .filter(|pid| proc_stat(*pid).is_some_and(|(state, _)| state == 'Z'))
        .collect();
    assert!(zombies.is_empty(), "{mode}: zombies left: {zombies:?}");

    signal(Signal::SIGTERM);
    let finished = running.wait_at_most(Duration::from_secs(10));
    reaper.disarm();
    finished.assert_code(7);
    assert!(!finished.stdout.contains("panicked"), "{mode}: {finished}");
    assert!(
        finished.stdout.contains("forwarding SIGUSR1"),
        "{mode}: the log lines written in the background reach the terminal: {finished}"
    );
}

#[test]
fn tostop_log_writes_neither_spin_nor_stop_the_entrypoint_in_a_job() {
    tostop_log_writes_neither_spin_nor_stop_the_entrypoint("job");
}

#[test]
fn tostop_log_writes_neither_fail_nor_stop_the_entrypoint_as_session_leader() {
    tostop_log_writes_neither_spin_nor_stop_the_entrypoint("leader");
}

// ---------------------------------------------------------------- early SIGTERM

/// Start `run -- sleep 600` as PID 1 of a new namespace while its options
/// file is a FIFO, so the entrypoint is held inside option loading (before
/// any handler exists) until the test writes the file; SIGTERM it there.
fn sigterm_while_reading_options(dir: &Path, attempt: usize) -> Finished {
    let fifo = dir.join(format!("entrypoint-{attempt}.toml"));
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut command = TestCommand::run_child(["sleep", "600"]);
    command
        .env("PULP_ENTRYPOINT_CONFIG", &fifo)
        .in_pid_namespace();
    let mut running = command.spawn();
    // Opening the write end succeeds once the entrypoint has opened the
    // read end: it is past the first line of main, reading its options.
    let mut writer: Option<File> = None;
    wait_until(
        "the entrypoint to open its options file",
        WAIT_LIMIT,
        || {
            writer = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
                .ok();
            writer.is_some()
        },
    );
    let reaper = Reaper(Some(running.entrypoint_pid()));
    running.signal(Signal::SIGTERM);
    // Then let it go on: an empty file, every option at its default.
    drop(writer);
    let finished = running.wait_at_most(Duration::from_secs(10));
    reaper.disarm();
    finished
}

#[test]
fn a_sigterm_before_the_handlers_exist_is_kept_and_handled_as_pid_1() {
    let dir = tempfile::tempdir().unwrap();
    for attempt in 0..20 {
        let finished = sigterm_while_reading_options(dir.path(), attempt);
        // 143 either way: stopped before the child started, or the child
        // killed by the forwarded SIGTERM.
        assert_eq!(
            finished.code(),
            128 + libc::SIGTERM,
            "attempt {attempt}: {finished}"
        );
    }
}

/// Whether `pid` blocks or catches SIGTERM, from /proc: the first sign that
/// its own code runs (an init blocks signals first thing, or installs its
/// handlers). Before that (exec, the dynamic loader: milliseconds for a debug
/// build) a SIGTERM to a PID 1 is lost whatever the program does, tini's too.
fn guards_sigterm(pid: Pid) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let bit = 1u64 << (libc::SIGTERM - 1);
    status.lines().any(|line| {
        ["SigBlk:", "SigCgt:"].iter().any(|field| {
            line.strip_prefix(field)
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
                .is_some_and(|mask| mask & bit != 0)
        })
    })
}

/// SIGTERM at a random early moment: as soon as the entrypoint runs at all,
/// while it reads argv, options and builds its runtime. (On the old code the
/// first sign was the handlers themselves, so this passes there too; the
/// FIFO test above is the one that holds the entrypoint in the gap.)
#[test]
fn a_sigterm_as_soon_as_pid_1_runs_ends_it_with_143() {
    for attempt in 0..20 {
        let mut command = TestCommand::run_child(["sleep", "600"]);
        command.in_pid_namespace();
        let mut running = command.spawn();
        let entrypoint = running.entrypoint_pid();
        let reaper = Reaper(Some(entrypoint));
        let deadline = Instant::now() + WAIT_LIMIT;
        while !guards_sigterm(entrypoint) {
            assert!(
                Instant::now() < deadline,
                "attempt {attempt}: never started"
            );
            std::hint::spin_loop();
        }
        running.signal(Signal::SIGTERM);
        let finished = running.wait_at_most(Duration::from_secs(10));
        reaper.disarm();
        assert_eq!(
            finished.code(),
            128 + libc::SIGTERM,
            "attempt {attempt}: {finished}"
        );
    }
}

// ---------------------------------------------------------------- stdout, stderr

/// Where the output goes.
#[derive(Debug, Clone, Copy)]
enum Sink {
    /// /dev/full: every write fails with ENOSPC.
    Full,
    /// A pipe whose reader is gone: every write fails with EPIPE.
    ClosedPipe,
}

impl Sink {
    fn open(self) -> Stdio {
        match self {
            Sink::Full => OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap()
                .into(),
            Sink::ClosedPipe => {
                let (reader, writer) = std::io::pipe().unwrap();
                drop(reader);
                writer.into()
            }
        }
    }
}

/// Environment variables for [`run_into`].
type Envs<'a> = &'a [(&'a str, &'a Path)];

/// Run the entrypoint with `args` and `envs`, stdout (and stderr when
/// `stderr_too`) into `sink`; returns its exit code and what it wrote on
/// stderr (when that is a file).
fn run_into(sink: Sink, stderr_too: bool, args: &[&str], envs: Envs) -> (i32, String) {
    let stderr_file = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new(entrypoint_path());
    command.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PULP_") {
            command.env_remove(key);
        }
    }
    command.envs(envs.iter().copied());
    command.stdin(Stdio::null()).stdout(sink.open());
    if stderr_too {
        command.stderr(sink.open());
    } else {
        command.stderr(stderr_file.reopen().unwrap());
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + WAIT_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} into {sink:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = file_text(stderr_file.path());
    let code = status
        .code()
        .unwrap_or_else(|| panic!("{args:?} into {sink:?} was killed: {status}\n{stderr}"));
    (code, stderr)
}

/// A status file as a live `supervise` writes it (this test process is the
/// "supervisor", so it counts as running).
fn status_file(dir: &Path) -> PathBuf {
    let path = dir.join("status.json");
    let report = serde_json::json!({
        "supervisor_pid": std::process::id(),
        "running": true,
        "services": [{
            "name": "api", "service": "api", "pid": 1, "state": "running",
            "restarts": 0, "since": 0.0, "last_exit": null
        }],
    });
    fs::write(&path, report.to_string()).unwrap();
    path
}

#[test]
fn stdout_that_cannot_be_written_is_exit_74_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let status = status_file(dir.path());
    let settings_file = dir.path().join("settings.py");
    fs::write(&settings_file, "").unwrap();
    let settings: Envs = &[("PULP_SETTINGS", &settings_file)];
    let with_status: Envs = &[("PULP_ENTRYPOINT_STATUS_FILE", &status)];
    let cases: [(&[&str], Envs); 5] = [
        (&["config"], settings),
        (&["--help"], &[]),
        (&["--version"], &[]),
        (&["status"], with_status),
        (&["status", "--json"], with_status),
    ];
    for (args, envs) in cases {
        // The command works with a normal stdout.
        let (code, stderr) = run_into_file(args, envs);
        assert_eq!(code, 0, "{args:?} with a normal stdout: {stderr}");
        for sink in [Sink::Full, Sink::ClosedPipe] {
            let (code, stderr) = run_into(sink, false, args, envs);
            assert_eq!(code, OUTPUT_ERROR, "{args:?} into {sink:?}: {stderr}");
            assert!(
                !stderr.contains("panicked"),
                "{args:?} into {sink:?}: {stderr}"
            );
            // A full disk is said in one line; a reader that left is no news.
            let expected = match sink {
                Sink::Full => {
                    "pulp-entrypoint: cannot write to stdout: No space left on device (os error 28)\n"
                }
                Sink::ClosedPipe => "",
            };
            assert_eq!(stderr, expected, "{args:?} into {sink:?}");
            // With stderr gone as well, the same code, still no panic (101/134).
            let (code, _) = run_into(sink, true, args, envs);
            assert_eq!(code, OUTPUT_ERROR, "{args:?} into {sink:?}, stderr too");
        }
    }
}

/// Run with stdout into a temporary file: the exit code and stderr.
fn run_into_file(args: &[&str], envs: Envs) -> (i32, String) {
    let mut command = TestCommand::new();
    command.args(args);
    for (key, value) in envs {
        command.env(key, value);
    }
    let finished = command.run();
    (finished.code(), finished.stderr)
}

#[test]
fn stderr_that_cannot_be_written_costs_log_lines_not_the_process() {
    for sink in [Sink::Full, Sink::ClosedPipe] {
        // Logs (starting ...), then the child's own code.
        let (code, _) = run_into(sink, true, &["run", "--", "sh", "-c", "exit 3"], &[]);
        assert_eq!(code, 3, "run into {sink:?}");
        // A one-line error (command not found), then its code.
        let (code, _) = run_into(sink, true, &["run", "--", "pulp-no-such-command"], &[]);
        assert_eq!(code, 127, "not found into {sink:?}");
        // A usage error.
        let (code, _) = run_into(sink, true, &["--bogus"], &[]);
        assert_eq!(code, 64, "usage error into {sink:?}");
    }
}
