//! The pulpcore version matrix: the releases users run, not only the newest.
//! For each one (tests/tools/requirements*.txt, installed by tests/tools/deps.sh
//! into the venv its variable names) the entrypoint starts `pulp-api`,
//! `pulp-content` and `pulp-worker` as three processes on a fresh database of
//! a throwaway PostgreSQL; all three must show up in Pulp's status, which must
//! name the pinned pulpcore, and each must stop on SIGTERM with exit code 0
//! within its stop grace.
//!
//! pulpcore's servers accepted different options over time (`--name-template`
//! from 3.94, backported to 3.73.18 and 3.85.2; the control-socket option
//! after 3.116): the old releases catch an entrypoint that passes a flag the
//! installed pulpcore does not know.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use support::command::{Running, wait_until};
use support::pg::PgCluster;
use support::pulp::{Site, free_port, http_get, online};

/// From start to all three online. Migrating an empty database takes 10 s
/// (3.123) to 35 s (3.49) on a 2-core machine, more while other tests run.
const START_LIMIT: Duration = Duration::from_secs(240);

/// The entrypoint's stop grace, set explicitly: SIGKILL to a server still
/// running this long after the SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(25);

const STATUS: &str = "/pulp/api/v3/status/";

/// A pulpcore release of the matrix.
struct Release {
    /// The requirements file under tests/tools/ that pins it.
    requirements: &'static str,
    /// That file's text, read at compile time.
    text: &'static str,
    /// The variable tests/tools/deps.sh exports with the venv it installed.
    venv_var: &'static str,
}

#[test]
fn current_pulpcore_serves_api_content_and_worker() {
    serves_api_content_and_worker(&Release {
        requirements: "requirements.txt",
        text: include_str!("tools/requirements.txt"),
        venv_var: "PULP_VENV",
    });
}

#[test]
fn pulpcore_3_85_serves_api_content_and_worker() {
    serves_api_content_and_worker(&Release {
        requirements: "requirements-3.85.txt",
        text: include_str!("tools/requirements-3.85.txt"),
        venv_var: "PULP_VENV_3_85",
    });
}

#[test]
fn pulpcore_3_49_serves_api_content_and_worker() {
    serves_api_content_and_worker(&Release {
        requirements: "requirements-3.49.txt",
        text: include_str!("tools/requirements-3.49.txt"),
        venv_var: "PULP_VENV_3_49",
    });
}

fn serves_api_content_and_worker(release: &Release) {
    let began = Instant::now();
    let version = pinned_pulpcore(release);
    let venv = release_venv(release, &version);
    let pg = PgCluster::start();
    let site = Site::on_fresh_database_with_venv(
        &pg,
        &format!("matrix_{}", version.replace('.', "_")),
        venv,
    );
    let api_port = free_port();
    let content_port = free_port();
    let start = |args: &[&str]| {
        site.entrypoint()
            .env(
                "PULP_ENTRYPOINT_STOP_GRACE",
                format!("{}s", STOP_GRACE.as_secs()),
            )
            .args(args)
            .spawn()
    };
    let mut servers = Servers {
        version: version.clone(),
        running: vec![
            (
                "pulp-api",
                start(&["pulp-api", "--bind", &format!("127.0.0.1:{api_port}")]),
            ),
            (
                "pulp-content",
                start(&[
                    "pulp-content",
                    "--bind",
                    &format!("127.0.0.1:{content_port}"),
                ]),
            ),
            ("pulp-worker", start(&["pulp-worker"])),
        ],
    };

    // Poll until all three are online or one of the entrypoints has ended.
    // Every release of the matrix lists api apps (3.49 has them already).
    let mut status = Value::Null;
    let mut exited = None;
    let mut shown = String::new();
    let mut asked = Instant::now() - Duration::from_secs(1);
    wait_until(
        &format!("pulpcore {version}: an api app, a content app and a worker online in {STATUS}"),
        START_LIMIT,
        || {
            if let Some(index) = servers
                .running
                .iter_mut()
                .position(|(_, r)| !r.is_running())
            {
                exited = Some(index);
                return true;
            }
            if asked.elapsed() < Duration::from_millis(250) {
                return false;
            }
            asked = Instant::now();
            let Some((200, body)) = http_get(api_port, STATUS) else {
                return false;
            };
            let Ok(answer) = serde_json::from_str::<Value>(&body) else {
                return false;
            };
            let summary = summary(&answer);
            if summary != shown {
                eprintln!("pulpcore {version}: {:.1?}: {summary}", began.elapsed());
                shown = summary;
            }
            let done = ["online_api_apps", "online_content_apps", "online_workers"]
                .iter()
                .all(|key| !online(&answer, key).is_empty());
            if done {
                status = answer;
            }
            done
        },
    );
    if let Some(index) = exited {
        let (name, running) = servers.running.remove(index);
        let finished = running.wait();
        panic!(
            "pulpcore {version}: `pulp-entrypoint {name}` ended before all three were online \
             ({}); the calls the site's shims saw:\n{}\n{}",
            finished.status,
            site.calls().join("\n"),
            output(&finished.stdout, &finished.stderr)
        );
    }
    let online_after = began.elapsed();

    let versions = status["versions"].as_array().cloned().unwrap_or_default();
    let component = |name: &str| {
        versions
            .iter()
            .find(|entry| entry["component"] == name)
            .and_then(|entry| entry["version"].as_str())
            .map(str::to_string)
    };
    assert_eq!(
        component("core").as_deref(),
        Some(version.as_str()),
        "the status names another pulpcore than tests/tools/{} pins ({version}); versions: {}",
        release.requirements,
        status["versions"]
    );
    assert!(
        component("file").is_some(),
        "pulp_file is not among the versions: {}",
        status["versions"]
    );
    assert_eq!(status["database_connection"]["connected"], true, "{status}");

    let mut running = std::mem::take(&mut servers.running);
    for (_, server) in running.iter_mut() {
        server.signal(Signal::SIGTERM);
    }
    let signalled = Instant::now();
    for (name, server) in running {
        let finished = server.wait_at_most(STOP_GRACE + Duration::from_secs(15));
        let took = signalled.elapsed();
        assert_eq!(
            finished.code(),
            0,
            "pulpcore {version}: `pulp-entrypoint {name}` after SIGTERM: {}\n{}",
            finished.status,
            output(&finished.stdout, &finished.stderr)
        );
        assert!(
            took < STOP_GRACE,
            "pulpcore {version}: `pulp-entrypoint {name}` took {took:?} to stop, \
             more than its stop grace of {STOP_GRACE:?}:\n{}",
            output(&finished.stdout, &finished.stderr)
        );
    }
    eprintln!(
        "pulpcore {version}: all three online after {online_after:.1?}, stopped {:.1?} after \
         SIGTERM, {:.1?} in all",
        signalled.elapsed(),
        began.elapsed()
    );
}

/// The three entrypoints; when the test fails while they run, their output
/// so far goes to the test's output before they are killed.
struct Servers {
    version: String,
    running: Vec<(&'static str, Running)>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (name, running) in &mut self.running {
            let state = if running.is_running() {
                "running"
            } else {
                "ended"
            };
            let (stdout, stderr) = running.output_so_far();
            eprintln!(
                "--- pulpcore {}: `pulp-entrypoint {name}` ({state})\n{}",
                self.version,
                output(&stdout, &stderr)
            );
        }
    }
}

/// An entrypoint's output for a failure message: the end of stdout (where
/// `migrate` prints every migration) and of stderr (the entrypoint's log and
/// the server's errors).
fn output(stdout: &str, stderr: &str) -> String {
    let tail = |text: &str, count: usize| {
        let lines: Vec<&str> = text.lines().collect();
        let skipped = lines.len().saturating_sub(count);
        let shown = lines[skipped..].join("\n");
        if skipped > 0 {
            format!("({skipped} lines before)\n{shown}")
        } else {
            shown
        }
    };
    format!(
        "stdout:\n{}\nstderr:\n{}",
        tail(stdout, 5),
        tail(stderr, 60)
    )
}

/// "api [..] content [..] workers [..]": who is online, for the progress log.
fn summary(status: &Value) -> String {
    format!(
        "api {:?} content {:?} workers {:?}",
        online(status, "online_api_apps"),
        online(status, "online_content_apps"),
        online(status, "online_workers")
    )
}

/// The version `pulpcore==X` in the release's requirements file.
fn pinned_pulpcore(release: &Release) -> String {
    release
        .text
        .lines()
        .find_map(|line| line.trim().strip_prefix("pulpcore=="))
        .map(|version| version.trim().to_string())
        .unwrap_or_else(|| {
            panic!(
                "tests/tools/{} has no `pulpcore==VERSION` line",
                release.requirements
            )
        })
}

/// The venv the release's variable names; panics (never skips) when it is
/// not set or does not hold that pulpcore.
fn release_venv(release: &Release, version: &str) -> PathBuf {
    let fix = format!(
        "source tests/tools/deps.sh (tests/run.sh does), which installs pulpcore {version} \
         from tests/tools/{} and exports {}",
        release.requirements, release.venv_var
    );
    let venv = std::env::var_os(release.venv_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{} is not set: {fix}", release.venv_var));
    assert!(
        venv.join("bin/pulpcore-manager").is_file(),
        "{}={} has no bin/pulpcore-manager: {fix}",
        release.venv_var,
        venv.display()
    );
    let installed = installed_pulpcore(&venv);
    assert_eq!(
        installed.as_deref(),
        Some(version),
        "{}={} holds another pulpcore than tests/tools/{} pins: {fix}",
        release.venv_var,
        venv.display(),
        release.requirements
    );
    venv
}

/// The pulpcore version installed in `venv`, from its `pulpcore-X.dist-info`.
fn installed_pulpcore(venv: &Path) -> Option<String> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    lib.flatten()
        .map(|python| python.path().join("site-packages"))
        .filter_map(|site| std::fs::read_dir(site).ok())
        .flatten()
        .flatten()
        .find_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name.strip_prefix("pulpcore-")?.strip_suffix(".dist-info")?;
            Some(version.to_string())
        })
}
