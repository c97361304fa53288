//! PID 1 duties of the real binary: `pulp-entrypoint run -- CMD ARGS...`.
//!
//! Each behaviour is checked twice where it matters: as PID 1 of a new PID
//! namespace (`unshare`, as in a container) and as a child subreaper (no
//! namespace, as under another init); signal handling also when whoever
//! started the entrypoint left every signal ignored and blocked. Children are small sh or python3
//! programs that report what they saw; every wait is on a condition with a
//! generous bound, never a fixed sleep.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use support::command::{Finished, Running, TestCommand, WAIT_LIMIT, proc_stat, wait_until};

/// How the entrypoint is started.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// PID 1 of a new PID namespace.
    Pid1,
    /// A child subreaper, started normally.
    Subreaper,
    /// A child subreaper started with every signal ignored and blocked (as
    /// by nohup or a careless supervisor), which exec preserves.
    Hostile,
}

/// Ignores and blocks every signal it can, then execs its arguments.
const HOSTILE_LAUNCHER: &str = r#"
import os, signal, sys

for signo in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:
    signal.signal(signo, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
os.execv(sys.argv[1], sys.argv[1:])
"#;

fn entrypoint<S: AsRef<std::ffi::OsStr>>(mode: Mode, words: &[S]) -> TestCommand {
    let mut command = TestCommand::run_child(words);
    match mode {
        Mode::Pid1 => {
            command.in_pid_namespace();
        }
        Mode::Subreaper => {}
        Mode::Hostile => {
            command.launched_by(["python3", "-c", HOSTILE_LAUNCHER]);
        }
    }
    command
}

fn file_text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Wait (bounded) until the child wrote `ready` into `path`: its traps are set,
/// and so are the entrypoint's handlers, installed before the child started.
fn wait_ready(running: &mut Running, path: &Path) {
    wait_until("the child to report ready", WAIT_LIMIT, || {
        file_text(path).lines().any(|line| line == "ready")
    });
    running.entrypoint_pid();
}

// ---------------------------------------------------------------- zombies

/// Makes 100 grandchildren by double fork, so they are orphans adopted by the
/// entrypoint, checks they were adopted, lets them all exit, then waits until
/// no zombie is left and reports what it counted.
const ZOMBIE_MAKER: &str = r#"
import os, sys, time

N = 100
init = os.getppid()  # the entrypoint
gate_r, gate_w = os.pipe()  # grandchildren exit at EOF, when every write end is closed
pids_r, pids_w = os.pipe()
grandchildren = []
for _ in range(N):
    middle = os.fork()
    if middle == 0:
        grandchild = os.fork()
        if grandchild == 0:
            os.close(gate_w)
            os.read(gate_r, 1)
            os._exit(0)
        os.write(pids_w, grandchild.to_bytes(4, "little"))
        os._exit(0)
    os.waitpid(middle, 0)
    grandchildren.append(int.from_bytes(os.read(pids_r, 4), "little"))

def stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = text[text.rindex(")") + 2:].split()[:2]
    return state, int(ppid)

adopted = sum(1 for pid in grandchildren if (s := stat(pid)) and s[1] == init and s[0] != "Z")
os.close(gate_w)  # release them all: they exit while this process lives on

def zombies():
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit() and (s := stat(name)) and s[0] == "Z":
            if int(name) in grandchildren or s[1] == init:
                count += 1
    return count

def left():
    return sum(1 for pid in grandchildren if stat(pid) is not None)

deadline = time.monotonic() + 30
while (left() or zombies()) and time.monotonic() < deadline:
    time.sleep(0.01)
print(f"adopted={adopted} zombies={zombies()} left={left()}", flush=True)
"#;

fn orphaned_zombies_are_reaped(mode: Mode) {
    let finished = entrypoint(mode, &["python3", "-c", ZOMBIE_MAKER]).run();
    finished.assert_code(0);
    assert!(
        finished
            .stdout
            .lines()
            .any(|line| line == "adopted=100 zombies=0 left=0"),
        "zombies were not reaped: {finished}"
    );
}

#[test]
fn orphaned_zombies_are_reaped_as_pid_1() {
    orphaned_zombies_are_reaped(Mode::Pid1);
}

#[test]
fn orphaned_zombies_are_reaped_as_subreaper() {
    orphaned_zombies_are_reaped(Mode::Subreaper);
}

// ---------------------------------------------------------------- signals

/// Traps every signal number given and appends it to the file, one per
/// line; exits 0 after SIGTERM.
const SIGNAL_RECORDER: &str = r#"
import os, signal, sys

out = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

def record(signo, frame):
    os.write(out, f"{signo}\n".encode())
    if signo == signal.SIGTERM:
        os._exit(0)

for signo in sys.argv[2:]:
    signal.signal(int(signo), record)
os.write(out, b"ready\n")
while True:
    signal.pause()
"#;

/// Every signal the entrypoint forwards, TERM/INT/QUIT last (TERM ends the child).
fn forwarded_signals() -> Vec<i32> {
    let mut signals: Vec<i32> = [
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
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
        Signal::SIGSYS,
    ]
    .iter()
    .map(|signal| *signal as i32)
    .collect();
    signals.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    signals.extend([
        Signal::SIGINT as i32,
        Signal::SIGQUIT as i32,
        Signal::SIGTERM as i32,
    ]);
    signals
}

fn every_signal_is_forwarded_unchanged(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("signals");
    let signals = forwarded_signals();
    let mut words = vec![
        "python3".to_string(),
        "-c".into(),
        SIGNAL_RECORDER.into(),
        record.display().to_string(),
    ];
    words.extend(signals.iter().map(i32::to_string));
    let mut command = entrypoint(mode, &words);
    // INT and QUIT start the stop clock: keep SIGKILL out of the way.
    command.env("PULP_ENTRYPOINT_STOP_GRACE", "600");
    let mut running = command.spawn();
    wait_ready(&mut running, &record);

    let mut expected = vec!["ready".to_string()];
    for signo in &signals {
        running.signal_raw(*signo);
        expected.push(signo.to_string());
        let what = format!("signal {signo} to reach the child");
        wait_until(&what, WAIT_LIMIT, || {
            file_text(&record).lines().count() >= expected.len()
        });
    }
    let finished = running.wait();
    finished.assert_code(0);
    let received: Vec<String> = file_text(&record).lines().map(str::to_string).collect();
    assert_eq!(
        received, expected,
        "each signal must arrive once, unchanged and in order: {finished}"
    );
}

#[test]
fn every_signal_is_forwarded_unchanged_as_pid_1() {
    every_signal_is_forwarded_unchanged(Mode::Pid1);
}

#[test]
fn every_signal_is_forwarded_unchanged_as_subreaper() {
    every_signal_is_forwarded_unchanged(Mode::Subreaper);
}

#[test]
fn every_signal_is_forwarded_unchanged_when_started_with_signals_ignored_and_blocked() {
    every_signal_is_forwarded_unchanged(Mode::Hostile);
}

/// The child's blocked and ignored signal sets, as the kernel reports them.
fn child_signal_state(mode: Mode, exec: bool) -> Vec<String> {
    let mut command = entrypoint(mode, &["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"]);
    if exec {
        command.env("PULP_ENTRYPOINT_EXEC", "true");
    }
    let finished = command.run();
    finished.assert_code(0);
    finished.stdout.lines().map(str::to_string).collect()
}

#[test]
fn the_child_starts_with_no_signal_blocked_or_ignored() {
    let clean = ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"];
    for mode in [Mode::Pid1, Mode::Subreaper, Mode::Hostile] {
        assert_eq!(
            child_signal_state(mode, false),
            clean,
            "supervised, {mode:?}"
        );
    }
    // With the exec option the program replaces the entrypoint, and still starts clean.
    assert_eq!(child_signal_state(Mode::Hostile, true), clean, "exec'd");
}

// ---------------------------------------------------------------- exit codes

#[test]
fn every_exit_code_is_passed_on() {
    for code in 0..=255 {
        let script = format!("exit {code}");
        TestCommand::run_child(["sh", "-c", &script])
            .run()
            .assert_code(code);
    }
}

#[test]
fn exit_codes_are_passed_on_as_pid_1() {
    for code in [0, 1, 3, 64, 126, 127, 255] {
        let script = format!("exit {code}");
        entrypoint(Mode::Pid1, &["sh", "-c", &script])
            .run()
            .assert_code(code);
    }
}

#[test]
fn a_child_killed_by_a_signal_gives_128_plus_the_signal() {
    TestCommand::run_child(["sh", "-c", "kill -USR1 $$"])
        .run()
        .assert_code(128 + libc::SIGUSR1);
    TestCommand::run_child(["sh", "-c", "kill -KILL $$"])
        .run()
        .assert_code(137);
    entrypoint(Mode::Pid1, &["sh", "-c", "kill -TERM $$"])
        .run()
        .assert_code(143);
    // A real-time signal, which not every wait-status decoder can represent.
    let rt = libc::SIGRTMIN() + 2;
    let script = format!("import os; os.kill(os.getpid(), {rt})");
    TestCommand::run_child(["python3", "-c", &script])
        .run()
        .assert_code(128 + rt);
}

// ---------------------------------------------------------------- stopping

fn a_child_ignoring_term_is_killed_after_the_grace(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    // The ignored disposition is inherited by sleep through exec.
    let script = format!(
        "trap '' TERM; echo ready > '{}'; exec sleep 600",
        ready.display()
    );
    let mut command = entrypoint(mode, &["sh", "-c", &script]);
    command.env("PULP_ENTRYPOINT_STOP_GRACE", "1");
    let mut running = command.spawn();
    wait_ready(&mut running, &ready);
    let sent = Instant::now();
    running.signal(Signal::SIGTERM);
    let finished = running.wait();
    finished.assert_code(128 + libc::SIGKILL);
    // The KILL is due one second after the entrypoint received TERM, which
    // was after we sent it: a lower bound that cannot be flaky.
    assert!(
        sent.elapsed() >= Duration::from_secs(1),
        "killed before the stop grace: {:?}",
        sent.elapsed()
    );
}

#[test]
fn a_child_ignoring_term_is_killed_after_the_grace_as_pid_1() {
    a_child_ignoring_term_is_killed_after_the_grace(Mode::Pid1);
}

#[test]
fn a_child_ignoring_term_is_killed_after_the_grace_as_subreaper() {
    a_child_ignoring_term_is_killed_after_the_grace(Mode::Subreaper);
}

#[test]
fn a_child_that_handles_term_exits_with_its_own_code() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let script = format!(
        "trap 'exit 0' TERM; echo ready > '{}'; while :; do sleep 600 & wait $!; done",
        ready.display()
    );
    // A long grace: the exit must come from the forwarded TERM, not from KILL.
    let mut command = entrypoint(Mode::Pid1, &["sh", "-c", &script]);
    command.env("PULP_ENTRYPOINT_STOP_GRACE", "600");
    let mut running = command.spawn();
    wait_ready(&mut running, &ready);
    running.signal(Signal::SIGTERM);
    running.wait().assert_code(0);
}

// ---------------------------------------------------------------- start errors

fn assert_one_line_error(finished: &Finished, line: &str) {
    assert!(
        finished.stderr.lines().any(|l| l == line),
        "expected the line {line:?} on stderr: {finished}"
    );
}

#[test]
fn a_missing_command_gives_127_and_one_line() {
    let finished = TestCommand::run_child(["pulp-no-such-command"]).run();
    finished.assert_code(127);
    assert_one_line_error(
        &finished,
        "pulp-entrypoint: command not found: pulp-no-such-command (check PATH)",
    );
}

#[test]
fn a_file_that_is_not_executable_gives_126() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script");
    fs::write(&script, "#!/bin/sh\necho should not run\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    let path = script.display().to_string();
    let finished = TestCommand::run_child([path.as_str()]).run();
    finished.assert_code(126);
    assert_one_line_error(
        &finished,
        &format!(
            "pulp-entrypoint: cannot execute {path}: permission denied (it must be a regular file with execute permission)"
        ),
    );
    assert!(!finished.stdout.contains("should not run"), "{finished}");
}

// ---------------------------------------------------------------- terminal

/// Runs its arguments on a new pseudo-terminal (as their controlling terminal
/// and stdin), copies what they print to stdout, and exits with their code.
const PTY_LAUNCHER: &str = r#"
import os, pty, sys

pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out = b""
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:  # EIO once nobody holds the terminal any more
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode())
sys.exit(os.waitstatus_to_exitcode(status))
"#;

#[test]
fn the_child_gets_the_terminal_foreground() {
    let report = "import os; print('groups', os.getpgrp(), os.tcgetpgrp(0), os.getppid())";
    let mut command = TestCommand::run_child(["python3", "-c", report]);
    command.launched_by(["python3", "-c", PTY_LAUNCHER]);
    let finished = command.run();
    finished.assert_code(0);
    let line = finished
        .stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("groups "))
        .unwrap_or_else(|| panic!("no report from the child: {finished}"));
    let numbers: Vec<i32> = line
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let [group, foreground, entrypoint] = numbers[..] else {
        panic!("bad report {line:?}");
    };
    assert_ne!(group, entrypoint, "the child needs its own process group");
    assert_eq!(
        foreground, group,
        "the child's group must be the terminal's foreground group"
    );
}

// ---------------------------------------------------------------- leftovers

fn a_grandchild_outliving_the_child_does_not_hold_the_exit(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild");
    let script = format!("sleep 600 & echo $! > '{}'; exit 7", pid_file.display());
    let finished = entrypoint(mode, &["sh", "-c", &script]).run();
    finished.assert_code(7);
    let grandchild: i32 = file_text(&pid_file).trim().parse().expect("grandchild pid");
    if let Mode::Subreaper = mode {
        // Still running on the host, passed on to the next subreaper: clean up.
        let pid = Pid::from_raw(grandchild);
        assert!(proc_stat(pid).is_some(), "the grandchild should live on");
        kill(pid, Signal::SIGKILL).unwrap();
    }
}

#[test]
fn a_grandchild_outliving_the_child_does_not_hold_the_exit_as_pid_1() {
    a_grandchild_outliving_the_child_does_not_hold_the_exit(Mode::Pid1);
}

#[test]
fn a_grandchild_outliving_the_child_does_not_hold_the_exit_as_subreaper() {
    a_grandchild_outliving_the_child_does_not_hold_the_exit(Mode::Subreaper);
}

// ------------------------------------------------------------ signal target

/// The child starts a grandchild in its group; both record HUP. On HUP the
/// child sends USR1 to the grandchild, which records it. Standard signals are
/// delivered lowest number first, so a HUP sent to the whole group always
/// shows in the grandchild's record before its USR1.
const GROUP_PROBE: &str = r#"
record=$1
sh -c 'trap "echo grandchild HUP >> $0" HUP; trap "echo grandchild USR1 >> $0; exit 0" USR1; echo ready >> $0; while :; do sleep 0.05; done' "$record" &
grandchild=$!
while ! grep -q ready "$record" 2>/dev/null; do sleep 0.01; done
trap 'echo child HUP >> "$record"; kill -USR1 $grandchild' HUP
echo child ready >> "$record"
# A trapped signal interrupts wait: wait again until the grandchild is gone.
while kill -0 $grandchild 2>/dev/null; do wait $grandchild; done
exit 0
"#;

fn grandchild_record(target: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    let mut command = entrypoint(
        Mode::Subreaper,
        &["sh", "-c", GROUP_PROBE, "probe", record.to_str().unwrap()],
    );
    command.env("PULP_ENTRYPOINT_SIGNAL_TARGET", target);
    let mut running = command.spawn();
    wait_until("the child to be ready", WAIT_LIMIT, || {
        file_text(&record).contains("child ready")
    });
    running.signal(Signal::SIGHUP);
    wait_until("the grandchild to get USR1", WAIT_LIMIT, || {
        file_text(&record).contains("grandchild USR1")
    });
    running.wait().assert_code(0);
    file_text(&record)
        .lines()
        .filter(|line| line.starts_with("grandchild ") || line == &"child HUP")
        .map(str::to_string)
        .collect()
}

#[test]
fn signals_go_to_the_child_only_by_default() {
    assert_eq!(grandchild_record("child"), ["child HUP", "grandchild USR1"]);
}

#[test]
fn signal_target_group_reaches_the_whole_process_group() {
    let record = grandchild_record("group");
    assert!(
        record.contains(&"grandchild HUP".to_string()),
        "the grandchild must get the HUP too: {record:?}"
    );
    let hup = record.iter().position(|l| l == "grandchild HUP");
    let usr1 = record.iter().position(|l| l == "grandchild USR1");
    assert!(hup < usr1, "{record:?}");
}
