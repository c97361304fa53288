//! Stalled log pipes under `supervise`: its stdout is a pipe (a FIFO here)
//! that nobody reads, or that its reader stops reading for a while, as a slow
//! log driver or a full journal does. Service output must then wait (the
//! services block in their writes), never the supervisor: it still answers
//! signals, and stops within its stop grace. Lines stay whole and in order.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::libc;
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::command::{Running, TestCommand, WAIT_LIMIT, wait_until};

/// Only shell services: no Pulp role, so no database and no start phase.
const NO_PULP: &str = "[supervise]\napi = false\ncontent = false\nworkers = 0\n";

/// A directory with an entrypoint.toml and a FIFO for supervise's stdout.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// `body` comes after the line naming the status file.
    fn new(body: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("status.json");
        let text = format!("status_file = \"{}\"\n{body}", status.display());
        std::fs::write(dir.path().join("entrypoint.toml"), text).unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("stdout"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The read end of the FIFO, opened before supervise so that its open for
    /// writing does not wait; non-blocking, so that opening does not either.
    fn reader(&self) -> File {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(self.path("stdout"))
            .unwrap()
    }

    /// `supervise`, its stdout the FIFO (stderr stays a file).
    fn spawn(&self) -> Running {
        self.spawn_into_fifo(r#"exec "$@" > "$0""#)
    }

    /// `supervise`, its stderr (where its own log lines go) the FIFO.
    fn spawn_with_stderr_into_fifo(&self) -> Running {
        self.spawn_into_fifo(r#"exec "$@" 2> "$0""#)
    }

    fn spawn_into_fifo(&self, script: &str) -> Running {
        let fifo = self.path("stdout");
        let mut command = TestCommand::new();
        command
            .env("PULP_ENTRYPOINT_CONFIG", self.path("entrypoint.toml"))
            .arg("supervise")
            .launched_by([
                OsStr::new("sh"),
                OsStr::new("-c"),
                OsStr::new(script),
                fifo.as_os_str(),
            ]);
        command.spawn()
    }
}

/// Bytes written to the FIFO and not read yet.
fn unread(reader: &File) -> usize {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let result = unsafe { libc::ioctl(reader.as_raw_fd(), libc::FIONREAD, &mut unread) };
    assert_eq!(result, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    unread as usize
}

/// Wait until the FIFO is full, that is until what it holds stops growing
/// (how full a pipe can be depends on the sizes of the writes into it): from
/// then on supervise's writes block.
fn wait_until_full(reader: &File) {
    let mut last = (0, Instant::now());
    wait_until("supervise's stdout to fill up", WAIT_LIMIT, || {
        let now = unread(reader);
        if now != last.0 {
            last = (now, Instant::now());
        }
        now > 0 && last.1.elapsed() > Duration::from_millis(500)
    });
}

fn service_state(status_file: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(status_file).ok()?;
    let status: Value = serde_json::from_str(&text).ok()?;
    let entry = status["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)?;
    Some(entry["state"].as_str()?.to_string())
}

#[test]
fn a_stalled_stdout_does_not_keep_supervise_from_stopping_within_its_grace() {
    let setup = Setup::new(&format!(
        r#"stop_grace = "3s"
{NO_PULP}
[[service]]
name = "chatty"
command = ["yes", "hello from a chatty service"]
"#
    ));
    let reader = setup.reader();
    let mut supervise = setup.spawn();
    wait_until_full(&reader);
    wait_until("chatty to run", WAIT_LIMIT, || {
        service_state(&setup.path("status.json"), "chatty").as_deref() == Some("running")
    });
    // Time for everything behind the pipe to fill up too.
    std::thread::sleep(Duration::from_millis(500));

    let signalled = Instant::now();
    supervise.signal(Signal::SIGTERM);
    // stop_grace and a little: never waiting on the pipe past the stop deadline.
    let finished = supervise.wait_at_most(Duration::from_secs(5));
    let took = signalled.elapsed();
    // `yes` ended on its stop signal: a clean stop.
    finished.assert_code(0);
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} after SIGTERM: {finished}"
    );
    assert!(
        finished.stderr.contains("SIGTERM: stopping every service"),
        "{finished}"
    );
    // Given up in one line, on stderr, which still works.
    assert_eq!(
        finished.stderr.matches("stdout is not being read").count(),
        1,
        "{finished}"
    );
    drop(reader);
}

#[test]
fn a_stalled_stderr_does_not_keep_supervise_from_stopping_within_its_grace() {
    // The service fills stderr, so the entrypoint's own log lines (SIGTERM,
    // every service stopping) find it full: they must not hold up the stop.
    let setup = Setup::new(&format!(
        r#"stop_grace = "3s"
{NO_PULP}
[[service]]
name = "chatty"
command = ["sh", "-c", "exec yes 'hello on stderr' >&2"]
"#
    ));
    let reader = setup.reader();
    let mut supervise = setup.spawn_with_stderr_into_fifo();
    wait_until_full(&reader);
    wait_until("chatty to run", WAIT_LIMIT, || {
        service_state(&setup.path("status.json"), "chatty").as_deref() == Some("running")
    });
    std::thread::sleep(Duration::from_millis(500));

    let signalled = Instant::now();
    supervise.signal(Signal::SIGTERM);
    let finished = supervise.wait_at_most(Duration::from_secs(5));
    let took = signalled.elapsed();
    finished.assert_code(0);
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} after SIGTERM: {finished}"
    );
    drop(reader);
}

/// A service printing `WORD N PAD` for N from 1 to `count` with `seq`.
struct Talker {
    name: &'static str,
    word: &'static str,
    count: usize,
    pad: usize,
}

impl Talker {
    /// Its line `number` (`%.0f` in seq's format) without the label.
    fn line(&self, number: &str) -> String {
        let mut line = format!("{} {number}", self.word);
        if self.pad > 0 {
            line.push(' ');
            line.push_str(&"x".repeat(self.pad));
        }
        line
    }

    fn service(&self) -> String {
        format!(
            "[[service]]\nname = \"{}\"\ncommand = [\"seq\", \"-f\", \"{}\", \"1\", \"{}\"]\nrestart = \"never\"\n",
            self.name,
            self.line("%.0f"),
            self.count
        )
    }

    /// Its line `number` as supervise writes it.
    fn labelled(&self, number: usize) -> String {
        format!("{:<5} | {}", self.name, self.line(&number.to_string()))
    }
}

#[test]
fn lines_stay_whole_and_in_order_and_supervise_answers_while_its_reader_stalls() {
    // 4 MB of short lines and 9 MB of lines longer than a pipe's atomic write,
    // far more than supervise buffers.
    let talkers = [
        Talker {
            name: "short",
            word: "s",
            count: 300_000,
            pad: 0,
        },
        Talker {
            name: "long",
            word: "l",
            count: 3_000,
            pad: 3_000,
        },
    ];
    let services: String = talkers.iter().map(Talker::service).collect();
    let setup = Setup::new(&format!("{NO_PULP}\n{services}"));
    let status_file = setup.path("status.json");
    let reader = setup.reader();
    let mut supervise = setup.spawn();

    // The reader stalls: the pipe fills, then what supervise buffers, then
    // the services' own pipes, and the services wait.
    wait_until_full(&reader);
    std::thread::sleep(Duration::from_millis(500));
    supervise.signal(Signal::SIGHUP);
    wait_until(
        "supervise to answer SIGHUP while its stdout is full",
        Duration::from_secs(10),
        || {
            supervise
                .output_so_far()
                .1
                .contains("SIGHUP: still 0 workers")
        },
    );
    for talker in &talkers {
        assert_eq!(
            service_state(&status_file, talker.name).as_deref(),
            Some("running"),
            "{} waits for its output to be read, not dropped or buffered without bound",
            talker.name
        );
    }

    // Now read: everything arrives.
    fcntl(&reader, FcntlArg::F_SETFL(OFlag::empty())).unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let reading = {
        let received = received.clone();
        let mut reader = reader;
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            // Ends when supervise, the only writer, has exited.
            while let Ok(read @ 1..) = reader.read(&mut buffer) {
                received.lock().unwrap().extend_from_slice(&buffer[..read]);
            }
        })
    };
    for talker in &talkers {
        wait_until(&format!("{} to finish", talker.name), WAIT_LIMIT, || {
            service_state(&status_file, talker.name).as_deref() == Some("exited")
        });
    }
    supervise.signal(Signal::SIGTERM);
    let finished = supervise.wait();
    finished.assert_code(0);
    reading.join().unwrap();

    let received = received.lock().unwrap();
    let text = String::from_utf8_lossy(&received);
    let mut next = [1usize; 2];
    for (number, line) in text.lines().enumerate() {
        let found = talkers.iter().enumerate().find(|(_, talker)| {
            line.starts_with(&format!("{:<5} | {} ", talker.name, talker.word))
        });
        let Some((index, talker)) = found else {
            panic!("line {number} is not a whole line of a service: {line:.200}");
        };
        let expected = talker.labelled(next[index]);
        assert!(
            line == expected,
            "line {number}: expected {expected:.100}, found {line:.100}"
        );
        next[index] += 1;
    }
    for (index, talker) in talkers.iter().enumerate() {
        assert_eq!(next[index] - 1, talker.count, "lines of {}", talker.name);
    }
}
