//! The pulpcore-worker processes of this container, read from /proc.
//!
//! A probe runs inside the container (Kubernetes execs it there), so /proc
//! lists exactly the container's processes. A worker is a process whose
//! command is `pulpcore-worker`, directly or as the script of a Python
//! interpreter (`python3 /venv/bin/pulpcore-worker ...`, which is what a
//! shebang gives). Tasks run in forks of their worker with the same command
//! line: a match whose parent is also a match is such a fork and is skipped.
//! Nothing here looks at PID 1 to guess a role; the role is the probe's argument.

use std::collections::HashSet;
use std::path::Path;

/// One worker process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerProcess {
    /// The pid as the probe sees it.
    pub pid: u32,
    /// The pid as the worker sees itself (the last `NSpid` entry): the one
    /// pulpcore puts in its name. The same as `pid` unless the probe runs in
    /// an outer PID namespace.
    pub own_pid: u32,
    /// The state letter of /proc/PID/stat (R, S, D, T, Z, ...).
    pub state: char,
    /// The worker's `--name-template`, when its command line has one.
    pub name_template: Option<String>,
}

impl WorkerProcess {
    /// `None` when the process runs (or sleeps); otherwise what it is instead.
    pub fn not_alive(&self) -> Option<&'static str> {
        match self.state {
            'Z' => Some("a zombie (it exited and was not reaped)"),
            'X' => Some("dead"),
            // Stopped by SIGSTOP/SIGTSTP: frozen, it would never heartbeat again.
            // ('t', stopped by a debugger, is left alone.)
            'T' => Some("stopped by a signal"),
            _ => None,
        }
    }
}

/// The worker processes under `proc_root` (normally `/proc`), in pid order.
pub fn workers(proc_root: &Path) -> std::io::Result<Vec<WorkerProcess>> {
    struct Candidate {
        pid: u32,
        ppid: u32,
        state: char,
        argv: Vec<String>,
    }
    let mut candidates = Vec::new();
    for entry in std::fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A process may end while we look: whatever cannot be read is skipped.
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv = split_cmdline(&cmdline);
        if !is_worker_command(&argv) {
            continue;
        }
        let Some((state, ppid)) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| parse_stat(&stat))
        else {
            continue;
        };
        candidates.push(Candidate {
            pid,
            ppid,
            state,
            argv,
        });
    }
    let pids: HashSet<u32> = candidates.iter().map(|c| c.pid).collect();
    let mut workers: Vec<WorkerProcess> = candidates
        .into_iter()
        .filter(|c| !pids.contains(&c.ppid))
        .map(|c| WorkerProcess {
            pid: c.pid,
            own_pid: std::fs::read_to_string(proc_root.join(c.pid.to_string()).join("status"))
                .ok()
                .and_then(|status| innermost_pid(&status))
                .unwrap_or(c.pid),
            state: c.state,
            name_template: name_template_flag(&c.argv),
        })
        .collect();
    workers.sort_by_key(|w| w.pid);
    Ok(workers)
}

fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        // Kernel threads and zombies have no command line.
        return Vec::new();
    }
    raw.split(|byte| *byte == 0)
        .map(|word| String::from_utf8_lossy(word).into_owned())
        .collect()
}

fn file_name(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// `pulpcore-worker ...`, or a Python interpreter (with options) running it.
fn is_worker_command(argv: &[String]) -> bool {
    let Some(first) = argv.first() else {
        return false;
    };
    if file_name(first) == "pulpcore-worker" {
        return true;
    }
    if !file_name(first).starts_with("python") {
        return false;
    }
    let mut words = argv[1..].iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            // The program is the option's argument, not a script file.
            "-c" | "-m" => return false,
            // Options whose argument is the next word.
            "-W" | "-X" => {
                words.next();
            }
            option if option.starts_with('-') => {}
            script => return file_name(script) == "pulpcore-worker",
        }
    }
    false
}

/// The value of `--name-template X` or `--name-template=X`.
fn name_template_flag(argv: &[String]) -> Option<String> {
    let mut words = argv.iter();
    while let Some(word) = words.next() {
        if word == "--name-template" {
            return words.next().cloned();
        }
        if let Some(value) = word.strip_prefix("--name-template=") {
            return Some(value.to_string());
        }
    }
    None
}

/// State letter and parent pid from /proc/PID/stat. The command name is in
/// parentheses and may hold spaces or parentheses: read after the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The last pid of the `NSpid:` line of /proc/PID/status.
fn innermost_pid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn worker_commands() {
        for yes in [
            "pulpcore-worker",
            "/venv/bin/pulpcore-worker --name-template x",
            "/venv/bin/python3 /venv/bin/pulpcore-worker --name-template {pid}@{hostname}-1",
            "/usr/bin/python3.11 -s -E /usr/local/bin/pulpcore-worker",
            "python3 -X dev -W ignore /venv/bin/pulpcore-worker",
        ] {
            assert!(is_worker_command(&words(yes)), "{yes}");
        }
        for no in [
            "",
            "/venv/bin/pulpcore-api --bind [::]:24817",
            "python3 -c pulpcore-worker",
            "python3 -m pulpcore-worker",
            "python3 -X pulpcore-worker /venv/bin/pulpcore-api",
            "/bin/sh /shims/pulpcore-worker-wrapper",
            "grep pulpcore-worker",
            "pulp-entrypoint pulp-worker",
        ] {
            assert!(!is_worker_command(&words(no)), "{no}");
        }
    }

    #[test]
    fn name_template_in_either_spelling() {
        assert_eq!(
            name_template_flag(&words(
                "pulpcore-worker --name-template {pid}@{hostname}-ab"
            )),
            Some("{pid}@{hostname}-ab".into())
        );
        assert_eq!(
            name_template_flag(&words("pulpcore-worker --name-template=w-{pid}")),
            Some("w-{pid}".into())
        );
        assert_eq!(name_template_flag(&words("pulpcore-worker --burst")), None);
    }

    #[test]
    fn stat_with_a_strange_command_name() {
        assert_eq!(parse_stat("42 (a) b (c) S 7 42 42 0 -1"), Some(('S', 7)));
        assert_eq!(parse_stat("42 (x"), None);
    }

    #[test]
    fn nspid_gives_the_innermost_pid() {
        assert_eq!(
            innermost_pid("Name:\tx\nNSpid:\t5120\t7\nNStgid:\t1\n"),
            Some(7)
        );
        assert_eq!(innermost_pid("NSpid:\t88\n"), Some(88));
        assert_eq!(innermost_pid("Name:\tx\n"), None);
    }

    #[test]
    fn cmdline_bytes() {
        assert_eq!(split_cmdline(b"a\0b c\0"), ["a", "b c"]);
        assert!(split_cmdline(b"").is_empty());
    }

    /// Real processes in the real /proc: a "worker" (argv[0] set to
    /// pulpcore-worker) and a fork of it (a task) with the same command line;
    /// only the first counts.
    #[test]
    fn finds_a_worker_and_skips_its_forks() {
        use std::os::unix::process::CommandExt;
        let script =
            "exec -a pulpcore-worker bash -c 'sleep 30; :' x --name-template T & sleep 30; :";
        let mut worker = std::process::Command::new("bash")
            .arg0("pulpcore-worker")
            .args(["-c", script, "x", "--name-template", "T"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = worker.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let found = loop {
            let fork_started = children_of(pid).iter().any(|child| {
                std::fs::read(format!("/proc/{child}/cmdline"))
                    .is_ok_and(|c| c.starts_with(b"pulpcore-worker\0"))
            });
            // Taken while both processes run, so that the fork would be listed if it counted.
            let found: Vec<WorkerProcess> = workers(Path::new("/proc"))
                .unwrap()
                .into_iter()
                .filter(|w| w.pid == pid || parent_of(w.pid) == Some(pid))
                .collect();
            if fork_started {
                break found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the fork did not start: {found:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = worker.wait();
        let ours = &found;
        assert_eq!(ours.len(), 1, "{found:?}");
        assert_eq!(ours[0].pid, pid);
        assert_eq!(ours[0].own_pid, pid);
        assert_eq!(ours[0].name_template.as_deref(), Some("T"));
        assert_eq!(ours[0].not_alive(), None);
    }

    fn parent_of(pid: u32) -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&stat).map(|(_, ppid)| ppid)
    }

    fn children_of(parent: u32) -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| parent_of(*pid) == Some(parent))
            .collect()
    }
}
