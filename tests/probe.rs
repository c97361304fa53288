//! `pulp-entrypoint probe` against real servers, run as Kubernetes runs an
//! exec probe: inside the container.
//!
//! The "container" is the real pulpcore api, content app and one worker under
//! `supervise`, PID 1 of its own PID, mount and network namespaces, reaching
//! PostgreSQL through its unix socket (the network namespace has only its own
//! loopback). Each probe enters those namespaces with nsenter, so it sees the
//! container's /proc and asks the default addresses and ports, as it would in
//! a pod. The first test needs no Pulp: answers that need no server.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use support::command::{Finished, Running, TestCommand, WAIT_LIMIT, host_pid};
use support::pg::PgCluster;
use support::pulp::{DatabaseAddress, Site, free_port};
use support::status_file::{pid_of, service, status};

/// A probe run outside any container, with pulpcore's default settings.
fn bare_probe(words: &[&str]) -> Finished {
    let settings = tempfile::NamedTempFile::with_suffix(".py").unwrap();
    let mut command = TestCommand::new();
    command
        .env("PULP_SETTINGS", settings.path())
        .arg("probe")
        .args(words);
    command.run()
}

fn assert_one_line(finished: &Finished, contains: &str) {
    let stderr = finished.stderr.trim_end();
    assert_eq!(stderr.lines().count(), 1, "{finished}");
    assert!(stderr.contains(contains), "wanted {contains:?}: {finished}");
}

#[test]
fn answers_that_need_no_server() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let nothing = bare_probe(&["ready", "api", "--address", &address]);
    nothing.assert_code(1);
    assert_one_line(&nothing, &format!("nothing answers on {address}"));

    // No worker process in a fresh PID namespace: not alive.
    let mut alone = TestCommand::new();
    let settings = tempfile::NamedTempFile::with_suffix(".py").unwrap();
    alone
        .env("PULP_SETTINGS", settings.path())
        .args(["probe", "live", "worker"])
        .in_pid_namespace();
    let alone = alone.run();
    alone.assert_code(1);
    assert_one_line(&alone, "no pulpcore-worker process runs here");

    for words in [
        &["ready", "api", "--path", "pulp/api/v3/status/"][..],
        &["ready", "worker", "--address", "127.0.0.1:1"],
        &["sideways", "api"],
        &["ready", "database"],
    ] {
        let finished = bare_probe(words);
        finished.assert_code(64);
        assert!(!finished.stderr.contains("panicked"), "{finished}");
    }
}

/// Pulp in its own namespaces, and probes run inside them.
struct Container {
    site: Site,
    /// Held for its Drop, which kills the container's PID 1 and so all of it.
    _supervise: Running,
    init: Pid,
}

/// Brings up the namespace's loopback, then execs the entrypoint as PID 1.
const LAUNCHER: &[&str] = &[
    "unshare",
    "--pid",
    "--fork",
    "--mount-proc",
    "--net",
    "--",
    "sh",
    "-c",
    "ip link set lo up && exec \"$0\" \"$@\"",
];

impl Container {
    fn start(pg: &PgCluster) -> Container {
        pg.create_database("probed");
        let site = Site::new(&DatabaseAddress {
            host: &pg.socket_dir().display().to_string(),
            port: pg.port(),
            name: "probed",
            user: "postgres",
            password: pg.superuser_password(),
        });
        std::fs::write(
            site.root().join("entrypoint.toml"),
            format!(
                "status_file = \"{}\"\n[supervise]\nworkers = 1\n",
                site.root().join("status.json").display()
            ),
        )
        .unwrap();
        let mut supervise = site
            .entrypoint()
            // Heartbeats every 2 s, stale after 6: the stale case is seen quickly.
            .env("PULP_WORKER_TTL", "6")
            // pulpcore's api and content app exit when a heartbeat cannot be written
            // (every API_APP_TTL/3 and CONTENT_APP_TTL/4 s: 40 and 7 by default). Beats
            // minutes apart keep them up while PostgreSQL is stopped, so what is tested
            // there is the probes, not where pulpcore's timers happen to be.
            .env("PULP_API_APP_TTL", "900")
            .env("PULP_CONTENT_APP_TTL", "900")
            .arg("supervise")
            .launched_by(LAUNCHER)
            .spawn();
        let init = supervise.entrypoint_pid();
        Container {
            site,
            _supervise: supervise,
            init,
        }
    }

    /// The entrypoint with the site's environment, run inside the container.
    fn inside(&self) -> TestCommand {
        let target = self.init.to_string();
        let mut command = self.site.entrypoint();
        command.launched_by([
            "nsenter", "--target", &target, "--pid", "--mount", "--net", "--",
        ]);
        command
    }

    /// `pulp-entrypoint probe WORDS` inside the container, with `env` added.
    fn probe_with(&self, words: &[&str], env: &[(&str, &str)]) -> Finished {
        let mut command = self.inside();
        for (key, value) in env {
            command.env(key, value);
        }
        command.arg("probe").args(words);
        command.run()
    }

    fn probe(&self, words: &[&str]) -> Finished {
        self.probe_with(words, &[])
    }

    /// The old script's name, a link to the binary, run inside the container.
    fn readyz(&self, path: &str) -> Finished {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("readyz.py");
        std::os::unix::fs::symlink(support::command::entrypoint_path(), &link).unwrap();
        self.inside().via(&link).arg(path).run()
    }

    /// Probe until it exits `code`; panic with the last answer after `limit`.
    fn wait_for(&self, words: &[&str], code: i32, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        loop {
            let finished = self.probe(words);
            if finished.code() == code {
                return finished;
            }
            if Instant::now() > deadline {
                panic!(
                    "probe {words:?} did not exit {code} within {limit:?}; last: {finished}\nsupervise so far: {:?}",
                    std::fs::read_to_string(self.site.root().join("status.json"))
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The host pid of the container's only worker.
    fn worker(&self) -> Pid {
        self.service("worker-1")
    }

    /// The host pid of a service (the leader of its process group).
    fn service(&self, name: &str) -> Pid {
        let status = status(&self.site.root().join("status.json")).expect("the status file");
        let entry =
            service(&status, name).unwrap_or_else(|| panic!("{name} in the status file: {status}"));
        host_pid(self.init, pid_of(entry))
    }
}

#[test]
fn real_pulp_ready_live_stale_and_without_its_database() {
    let pg = PgCluster::start();
    let pulp = Container::start(&pg);

    // Migrations first: the api may take minutes on a small machine.
    let ready = pulp.wait_for(&["ready", "api"], 0, Duration::from_secs(300));
    // Success prints nothing (Kubernetes shows a failed probe's output in the pod's events).
    assert_eq!((ready.stdout.as_str(), ready.stderr.as_str()), ("", ""));
    pulp.probe(&["live", "api"]).assert_code(0);
    pulp.wait_for(&["ready", "content"], 0, WAIT_LIMIT);
    pulp.probe(&["live", "content"]).assert_code(0);
    pulp.wait_for(&["ready", "worker"], 0, Duration::from_secs(120));
    pulp.probe(&["live", "worker"]).assert_code(0);

    // The old script's link: the api for an api path, the content app for a content path.
    pulp.readyz("/pulp/api/v3/status/").assert_code(0);
    pulp.readyz("/pulp/content/").assert_code(0);
    // The api does not serve the content path: asked directly, it is not ready.
    let wrong = pulp.probe(&["ready", "api", "--path", "/pulp/content/"]);
    wrong.assert_code(1);
    assert_one_line(&wrong, "answered HTTP 404");

    // A hung api (every gunicorn process frozen; the kernel still accepts connections):
    // the probe gives up at its --timeout and says what it was waiting for.
    let api = pulp.service("api");
    killpg(api, Signal::SIGSTOP).unwrap();
    let hung = pulp.probe(&["ready", "api", "--timeout", "1s"]);
    killpg(api, Signal::SIGCONT).unwrap();
    hung.assert_code(1);
    assert_one_line(
        &hung,
        "no answer within 1s while waiting for http://127.0.0.1:24817/pulp/api/v3/status/",
    );
    pulp.probe(&["ready", "api"]).assert_code(0);

    // CACHE_ENABLED where pulpcore has no Redis: readyz.py's 4.
    let no_redis = pulp.probe_with(&["ready", "api"], &[("PULP_CACHE_ENABLED", "true")]);
    no_redis.assert_code(4);
    assert_one_line(&no_redis, "Redis not connected");

    // A frozen worker: not alive at once, not ready once its heartbeat is older than its TTL.
    let worker = pulp.worker();
    kill(worker, Signal::SIGSTOP).unwrap();
    let frozen = pulp.probe(&["live", "worker"]);
    frozen.assert_code(1);
    assert_one_line(&frozen, "stopped by a signal");
    let stale = pulp.wait_for(&["ready", "worker"], 1, WAIT_LIMIT);
    assert_one_line(&stale, "older than its TTL of 6s");
    kill(worker, Signal::SIGCONT).unwrap();
    pulp.wait_for(&["ready", "worker"], 0, WAIT_LIMIT);

    // PostgreSQL stopped: not ready (3), yet alive as far as the probes go. The
    // worker may already be exiting (its heartbeat failed): the database is still
    // the reason given.
    pg.stop();
    let api = pulp.probe(&["ready", "api"]);
    api.assert_code(3);
    assert_one_line(&api, "database not connected");
    pulp.probe(&["live", "api"]).assert_code(0);
    let worker_ready = pulp.probe(&["ready", "worker"]);
    worker_ready.assert_code(3);
    assert_one_line(&worker_ready, "database not connected");
    pulp.probe(&["live", "content"]).assert_code(0);
    pulp.readyz("/pulp/api/v3/status/").assert_code(3);
    // The content app answers 500 without its database; the probe says why.
    let content = pulp.probe(&["ready", "content"]);
    content.assert_code(3);
    assert_one_line(
        &content,
        "answered HTTP 500, and cannot connect to PostgreSQL",
    );
}
