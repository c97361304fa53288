//! Start and stop each role again and again with the CPU busy: every stop
//! after SIGTERM must end with 0. gunicorn's own graceful timeout is fitted
//! inside `stop_grace`, so a gunicorn worker that ignores TERM is killed by
//! its arbiter (which then exits 0), not by our SIGKILL (137).
//!
//! A test binary of its own: the `yes` loops would starve the bounded waits
//! of any test running beside it.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use support::command::{Running, children_of, wait_until};
use support::pg::PgCluster;
use support::pulp::{Site, free_port, http_get};

const CYCLES: usize = 4;
const START_LIMIT: Duration = Duration::from_secs(120);

/// Two `yes` loops, one per core of the project's machines; killed on drop.
struct CpuLoad(Vec<Child>);

impl CpuLoad {
    fn start() -> CpuLoad {
        CpuLoad(
            (0..2)
                .map(|_| {
                    Command::new("yes")
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("run yes")
                })
                .collect(),
        )
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGTERM, then the exit code (within stop_grace and a margin).
fn stop(mut running: Running) -> (i32, String) {
    running.signal(Signal::SIGTERM);
    let finished = running.wait_at_most(Duration::from_secs(25));
    (finished.code(), finished.stderr)
}

#[test]
fn every_role_stops_with_0_after_sigterm_under_cpu_load() {
    let pg = PgCluster::start();
    let site = Site::on_fresh_database(&pg, "load");
    site.entrypoint().arg("migrate").run().assert_code(0);
    let _load = CpuLoad::start();
    let start = |args: &[&str]| {
        site.entrypoint()
            .env("PULP_ENTRYPOINT_STOP_GRACE", "10s")
            // The images' default: the hang was seen with two gunicorn workers.
            .env("PULP_API_WORKERS", "2")
            .env("PULP_CONTENT_WORKERS", "2")
            .args(args)
            .spawn()
    };
    let mut results: Vec<(String, i32, String)> = Vec::new();
    for cycle in 0..CYCLES {
        let port = free_port();
        let api = start(&["pulp-api", "--bind", &format!("127.0.0.1:{port}")]);
        // A request served: the gunicorn worker that answered is the one seen to hang on TERM.
        wait_until("the api to answer", START_LIMIT, || {
            http_get(port, "/pulp/api/v3/status/").is_some_and(|(code, _)| code == 200)
        });
        let (code, stderr) = stop(api);
        results.push((format!("api #{cycle}"), code, stderr));

        let port = free_port();
        let content = start(&["pulp-content", "--bind", &format!("127.0.0.1:{port}")]);
        wait_until("the content app to answer", START_LIMIT, || {
            http_get(port, "/pulp/content/").is_some()
        });
        let (code, stderr) = stop(content);
        results.push((format!("content #{cycle}"), code, stderr));

        let before = online_workers(&pg);
        let mut worker = start(&["pulp-worker"]);
        wait_until("the worker's heartbeat", START_LIMIT, || {
            online_workers(&pg) > before
        });
        // pulpcore-worker registers its heartbeat before it installs its
        // SIGTERM handler (PulpcoreWorker.__init__, then run()): a TERM in
        // between kills it by the default action, 143, which is pulpcore's
        // race, not the stop sequence's. Wait until the handler is there.
        let entrypoint = worker.entrypoint_pid();
        wait_until("pulpcore-worker's SIGTERM handler", START_LIMIT, || {
            children_of(entrypoint).into_iter().any(handles_sigterm)
        });
        let (code, stderr) = stop(worker);
        results.push((format!("worker #{cycle}"), code, stderr));
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, code, _)| *code != 0)
        .map(|(name, code, stderr)| format!("{name}: exit {code}\n{stderr}"))
        .collect();
    let codes: Vec<String> = results
        .iter()
        .map(|(name, code, _)| format!("{name}={code}"))
        .collect();
    assert!(
        failed.is_empty(),
        "exit codes {codes:?}; failures:\n{}",
        failed.join("\n")
    );
}

/// Workers whose heartbeat is current.
fn online_workers(pg: &PgCluster) -> u32 {
    pg.psql_in(
        "load",
        "SELECT count(*) FROM core_appstatus WHERE app_type = 'worker' AND last_heartbeat >= now() - ttl",
    )
    .trim()
    .parse()
    .unwrap_or(0)
}

/// Whether `pid` has a handler for SIGTERM (`SigCgt` in /proc/PID/status).
fn handles_sigterm(pid: nix::unistd::Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .is_some_and(|mask| mask & (1 << (libc_sigterm() - 1)) != 0)
}

fn libc_sigterm() -> u64 {
    Signal::SIGTERM as u64
}
