//! `pulp-entrypoint supervise` and `status`: several services in one
//! container. The first tests use small shell services (no Pulp role, so no
//! database); the last runs the real pulpcore api, content app and workers
//! as PID 1 of a PID namespace against a real PostgreSQL.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use support::command::{
    Finished, Running, TestCommand, WAIT_LIMIT, host_pid, proc_stat, wait_until,
};
use support::pg::{PgCluster, pg_program};
use support::pulp::{DatabaseAddress, Site, free_port, online, wait_for_status};
use support::status_file::{pid_of, service, status};

/// A directory with an entrypoint.toml whose status file is inside it.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// `body` is appended to the options that point at the status file.
    fn new(body: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup { dir };
        setup.write_config(body);
        setup
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_config(&self, body: &str) {
        let text = format!(
            "status_file = \"{}\"\n{body}",
            self.path("status.json").display()
        );
        std::fs::write(self.path("entrypoint.toml"), text).unwrap();
    }

    fn command(&self) -> TestCommand {
        let mut command = TestCommand::new();
        command
            .env("PULP_ENTRYPOINT_CONFIG", self.path("entrypoint.toml"))
            .arg("supervise");
        command
    }
}

/// Only shell services: no Pulp role, so no start phase.
const NO_PULP: &str = "[supervise]\napi = false\ncontent = false\nworkers = 0\n";

/// Wait until the status file says `condition` of service `name`, and return that entry.
fn wait_for_service(
    path: &Path,
    name: &str,
    what: &str,
    limit: Duration,
    condition: impl Fn(&Value) -> bool,
) -> Value {
    let mut found = Value::Null;
    wait_until(&format!("{name}: {what}"), limit, || {
        match status(path).as_ref().and_then(|s| service(s, name)) {
            Some(entry) if condition(entry) => {
                found = entry.clone();
                true
            }
            _ => false,
        }
    });
    found
}

fn running(entry: &Value) -> bool {
    entry["state"] == "running"
}

/// A configuration for real Pulp: the status file, the `[supervise]` lines,
/// and the api and content app bound to ports of their own.
fn with_bound_servers(
    status_file: &Path,
    supervise_lines: &str,
    api_port: u16,
    content_port: u16,
) -> String {
    format!(
        r#"status_file = "{status}"

[supervise]
{supervise_lines}

[[service]]
name = "api"
role = "api"
args = ["--bind", "127.0.0.1:{api_port}"]

[[service]]
name = "content"
role = "content"
args = ["--bind", "127.0.0.1:{content_port}"]
"#,
        status = status_file.display()
    )
}

#[test]
fn an_essential_service_that_keeps_failing_ends_the_container_with_its_code() {
    let setup = Setup::new(&format!(
        r#"{NO_PULP}restart_delay = "100ms"
max_restarts = 2

[[service]]
name = "talker"
command = ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exec sleep 1000"]

[[service]]
name = "crasher"
command = ["sh", "-c", "echo attempt; exit 7"]
essential = true
"#
    ));
    let finished = setup.command().in_pid_namespace().spawn().wait();
    finished.assert_code(7);
    // Three runs (two restarts), each line prefixed, stderr kept on stderr.
    assert_eq!(
        finished.stdout.matches("crasher | attempt").count(),
        3,
        "{}",
        finished.stdout
    );
    assert!(
        finished.stdout.contains("talker  | to-stdout"),
        "{}",
        finished.stdout
    );
    assert!(
        finished.stderr.contains("talker  | to-stderr"),
        "{}",
        finished.stderr
    );
    assert!(
        !finished.stdout.contains("to-stderr"),
        "{}",
        finished.stdout
    );
    assert!(
        finished.stderr.contains("restarting in 100ms"),
        "{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("restarting in 200ms"),
        "{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("crasher is essential"),
        "{}",
        finished.stderr
    );
    let last = status(&setup.path("status.json")).expect("a status file");
    let crasher = service(&last, "crasher").unwrap();
    assert_eq!(crasher["state"], "failed");
    assert_eq!(crasher["restarts"], 2);
    assert_eq!(crasher["last_exit"], "exited with code 7");
    assert_eq!(service(&last, "talker").unwrap()["state"], "stopped");
    assert_eq!(last["running"], false);
}

#[test]
fn a_killed_service_comes_back_after_its_backoff_and_status_shows_it() {
    let setup = Setup::new(&format!(
        r#"{NO_PULP}restart_delay = "1s"

[[service]]
name = "sleeper"
command = ["sleep", "1000"]
"#
    ));
    let mut supervise = setup.command().spawn();
    let status_file = setup.path("status.json");
    let first = wait_for_service(&status_file, "sleeper", "running", WAIT_LIMIT, running);
    let old = Pid::from_raw(pid_of(&first));

    let mut status_command = TestCommand::new();
    status_command
        .env("PULP_ENTRYPOINT_STATUS_FILE", &status_file)
        .arg("status");
    let shown = status_command.run();
    shown.assert_code(0);
    assert!(
        shown
            .stdout
            .contains(&format!("sleeper  {old}  running  0")),
        "{}",
        shown.stdout
    );

    kill(old, Signal::SIGKILL).unwrap();
    let back = wait_for_service(&status_file, "sleeper", "running again", WAIT_LIMIT, |s| {
        running(s) && s["restarts"] == 1
    });
    assert_ne!(pid_of(&back), old.as_raw());
    assert_eq!(back["last_exit"], "killed by SIGKILL");
    // Reaped, not left a zombie.
    wait_until("the killed service to be reaped", WAIT_LIMIT, || {
        proc_stat(old).is_none()
    });

    supervise.signal(Signal::SIGTERM);
    let finished = supervise.wait();
    finished.assert_code(0);
    assert!(
        finished.stderr.contains("sleeper killed by SIGKILL after"),
        "{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("restarting in 1s"),
        "{}",
        finished.stderr
    );
    // Once supervise is gone, status says so.
    status_command.run().assert_code(69);
}

#[test]
fn sigterm_stops_dependents_first_kills_at_the_grace_and_leaves_nothing_behind() {
    let setup = Setup::new("");
    let order = setup.path("order.log");
    let leftover = setup.path("leftover.pid");
    setup.write_config(&format!(
        r#"stop_grace = "3s"
{NO_PULP}
[[service]]
name = "backend"
command = ["sh", "-c", "trap 'echo backend-term >> {order}' TERM; sleep 1000 & echo $! > {leftover}; while :; do wait; done"]

[[service]]
name = "front"
command = ["sh", "-c", "trap 'echo front-term >> {order}; exit 0' TERM; while :; do sleep 0.1; done"]
depends_on = ["backend"]
"#,
        order = order.display(),
        leftover = leftover.display(),
    ));
    let mut supervise = setup.command().spawn();
    let status_file = setup.path("status.json");
    for name in ["backend", "front"] {
        wait_for_service(&status_file, name, "running", WAIT_LIMIT, running);
    }
    wait_until("the backend's child", WAIT_LIMIT, || leftover.exists());
    let child = Pid::from_raw(
        std::fs::read_to_string(&leftover)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    );

    supervise.signal(Signal::SIGTERM);
    let finished = supervise.wait();
    // The backend ignores TERM: killed at the grace period, which is its code.
    finished.assert_code(137);
    let order = std::fs::read_to_string(&order).unwrap();
    assert_eq!(
        order, "front-term\nbackend-term\n",
        "front depends on backend"
    );
    assert!(
        finished.stderr.contains("killing what is left"),
        "{}",
        finished.stderr
    );
    assert!(
        !finished
            .stderr
            .contains("some processes the services started"),
        "{}",
        finished.stderr
    );
    // The backend's own child went with it.
    assert!(proc_stat(child).is_none(), "{child} outlived supervise");
}

#[test]
fn a_second_sigterm_kills_at_once() {
    let setup = Setup::new(&format!(
        r#"stop_grace = "5m"
{NO_PULP}
[[service]]
name = "deaf"
command = ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]
"#
    ));
    let mut supervise = setup.command().in_pid_namespace().spawn();
    let status_file = setup.path("status.json");
    wait_for_service(&status_file, "deaf", "running", WAIT_LIMIT, running);
    supervise.signal(Signal::SIGTERM);
    wait_for_service(&status_file, "deaf", "stopping", WAIT_LIMIT, |s| {
        s["state"] == "stopping"
    });
    supervise.signal(Signal::SIGTERM);
    // Well within the five minutes the first one would have waited.
    let finished = supervise.wait();
    finished.assert_code(137);
    assert!(
        finished.stderr.contains("second stop request"),
        "{}",
        finished.stderr
    );
}

#[test]
fn configuration_mistakes_are_one_line_and_exit_78() {
    for (body, needle) in [
        ("[[service]]\nname = \"x\"\n", "either command"),
        ("[supervise]\nworkerz = 1\n", "workerz"),
    ] {
        let setup = Setup::new(body);
        let finished = setup.command().run();
        finished.assert_code(78);
        assert!(finished.stderr.contains(needle), "{}", finished.stderr);
        assert_eq!(
            finished.stderr.trim().lines().count(),
            1,
            "{}",
            finished.stderr
        );
    }
    let setup = Setup::new("");
    let finished = setup.command().env("PULP_WORKERS", "lots").run();
    finished.assert_code(78);
    assert!(
        finished.stderr.contains("PULP_WORKERS"),
        "{}",
        finished.stderr
    );
}

/// Whether pulpcore lists, as online, a worker started as `pid` in the namespace.
fn worker_online(status: &Value, pid: i32) -> bool {
    online(status, "online_workers")
        .iter()
        .any(|name| name.starts_with(&format!("{pid}@")))
}

fn stop(mut supervise: Running) -> Finished {
    supervise.signal(Signal::SIGTERM);
    // stop_grace (25 s) plus room for a slow machine.
    supervise.wait_at_most(Duration::from_secs(45))
}

#[test]
fn real_pulp_under_supervise_restarts_scales_and_stops() {
    let pg = PgCluster::start();
    let site = Site::on_fresh_database(&pg, "supervised");
    let (api_port, content_port) = (free_port(), free_port());
    let config = site.root().join("entrypoint.toml");
    let status_file = site.root().join("status.json");
    let write_config = |workers: u32| {
        std::fs::write(
            &config,
            with_bound_servers(
                &status_file,
                &format!("workers = {workers}"),
                api_port,
                content_port,
            ),
        )
        .unwrap();
    };
    write_config(2);
    let mut supervise = site
        .entrypoint()
        .arg("supervise")
        .in_pid_namespace()
        .spawn();
    let init = supervise.entrypoint_pid();

    let workers: Vec<i32> = ["worker-1", "worker-2"]
        .iter()
        .map(|name| {
            pid_of(&wait_for_service(
                &status_file,
                name,
                "running",
                Duration::from_secs(240),
                running,
            ))
        })
        .collect();
    let api = pid_of(&wait_for_service(
        &status_file,
        "api",
        "running",
        WAIT_LIMIT,
        running,
    ));
    wait_for_status(
        api_port,
        Duration::from_secs(180),
        "api, content and both workers",
        |s| {
            online(s, "online_api_apps").len() == 1
                && online(s, "online_content_apps").len() == 1
                && workers.iter().all(|pid| worker_online(s, *pid))
        },
    );

    // kill -9 a worker: it comes back after the first backoff delay.
    let killed = host_pid(init, workers[0]);
    kill(killed, Signal::SIGKILL).unwrap();
    let back = wait_for_service(&status_file, "worker-1", "restarted", WAIT_LIMIT, |s| {
        running(s) && s["restarts"] == 1
    });
    assert_eq!(back["last_exit"], "killed by SIGKILL");
    wait_until("the killed worker to be reaped", WAIT_LIMIT, || {
        proc_stat(killed).is_none()
    });
    let restarted = pid_of(&back);
    wait_for_status(
        api_port,
        Duration::from_secs(120),
        "the restarted worker",
        |s| worker_online(s, restarted),
    );

    // Three workers and SIGHUP: a third joins, nothing else is touched.
    write_config(3);
    supervise.signal(Signal::SIGHUP);
    let third = pid_of(&wait_for_service(
        &status_file,
        "worker-3",
        "running",
        WAIT_LIMIT,
        running,
    ));
    wait_for_status(
        api_port,
        Duration::from_secs(120),
        "the third worker",
        |s| worker_online(s, third),
    );
    let now = status(&status_file).unwrap();
    assert_eq!(pid_of(service(&now, "api").unwrap()), api);
    assert_eq!(pid_of(service(&now, "worker-2").unwrap()), workers[1]);
    assert_eq!(pid_of(service(&now, "worker-1").unwrap()), restarted);

    // Down to one: the newest two are stopped and removed, worker-1 stays.
    write_config(1);
    supervise.signal(Signal::SIGHUP);
    wait_until("workers 2 and 3 to be retired", WAIT_LIMIT, || {
        status(&status_file)
            .is_some_and(|s| service(&s, "worker-2").is_none() && service(&s, "worker-3").is_none())
    });
    let now = status(&status_file).unwrap();
    assert_eq!(pid_of(service(&now, "worker-1").unwrap()), restarted);
    assert_eq!(pid_of(service(&now, "api").unwrap()), api);

    let finished = stop(supervise);
    finished.assert_code(0);
    assert!(
        finished.stderr.contains("worker-1 killed by SIGKILL"),
        "{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("restarting in 1s"),
        "{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("3 workers instead of 2"),
        "{}",
        finished.stderr
    );
    assert!(
        !finished.stderr.contains("killing what is left"),
        "{}",
        finished.stderr
    );
    assert!(
        !finished
            .stderr
            .contains("some processes the services started"),
        "{}",
        finished.stderr
    );
    let last = status(&status_file).unwrap();
    assert!(
        last["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "stopped"),
        "{last:#}"
    );
}

#[test]
fn real_pulp_waits_out_a_database_outage_without_using_up_its_restarts() {
    let pg = PgCluster::start();
    let site = Site::on_fresh_database(&pg, "outage");
    let (api_port, content_port) = (free_port(), free_port());
    let status_file = site.root().join("status.json");
    // One restart in a row allowed: without the wait, the second failure into
    // the outage would give up on the api and stop the container.
    std::fs::write(
        site.root().join("entrypoint.toml"),
        with_bound_servers(
            &status_file,
            "workers = 1\nmax_restarts = 1",
            api_port,
            content_port,
        ),
    )
    .unwrap();
    let mut supervise = site
        .entrypoint()
        // Heartbeats every second, so pulpcore ends each process soon after
        // PostgreSQL stops (API_APP_TTL/3, CONTENT_APP_TTL/4, WORKER_TTL/3).
        .env("PULP_API_APP_TTL", "3")
        .env("PULP_CONTENT_APP_TTL", "4")
        .env("PULP_WORKER_TTL", "3")
        .arg("supervise")
        .in_pid_namespace()
        .spawn();
    let names = ["api", "content", "worker-1"];
    for name in names {
        wait_for_service(
            &status_file,
            name,
            "running",
            Duration::from_secs(240),
            running,
        );
    }
    let all_online = |s: &Value| {
        online(s, "online_api_apps").len() == 1
            && online(s, "online_content_apps").len() == 1
            && online(s, "online_workers").len() == 1
    };
    wait_for_status(
        api_port,
        Duration::from_secs(180),
        "api, content and worker",
        all_online,
    );

    pg.stop();
    for name in names {
        let waiting = wait_for_service(&status_file, name, "waiting-for-db", WAIT_LIMIT, |s| {
            s["state"] == "waiting-for-db"
        });
        assert_eq!(waiting["pid"], Value::Null, "{waiting}");
    }
    assert!(supervise.is_running(), "supervise ended during the outage");

    pg.start_now();
    for name in names {
        let back = wait_for_service(&status_file, name, "running again", WAIT_LIMIT, running);
        assert_eq!(back["restarts"], 1, "{back}");
    }
    wait_for_status(
        api_port,
        Duration::from_secs(180),
        "api, content and worker after the outage",
        all_online,
    );

    let finished = stop(supervise);
    finished.assert_code(0);
    assert_eq!(
        finished
            .stderr
            .matches("PostgreSQL does not let us in")
            .count(),
        1,
        "one warning for the outage: {}",
        finished.stderr
    );
    let reopened = finished
        .stderr
        .lines()
        .find(|line| line.contains("PostgreSQL lets us in again after"))
        .unwrap_or_else(|| panic!("no line for the end of the outage: {}", finished.stderr));
    for name in names {
        assert!(reopened.contains(name), "{name} in {reopened:?}");
    }
    assert!(
        !finished.stderr.contains("giving up"),
        "{}",
        finished.stderr
    );
}

#[test]
fn real_pulp_stops_the_container_when_the_database_stays_away_past_the_timeout() {
    let pg = PgCluster::start();
    let site = Site::on_fresh_database(&pg, "gone");
    let status_file = site.root().join("status.json");
    std::fs::write(
        site.root().join("entrypoint.toml"),
        format!(
            "status_file = \"{}\"\npostgres_timeout = \"3s\"\n\
             [supervise]\napi = false\ncontent = false\nworkers = 1\n",
            status_file.display()
        ),
    )
    .unwrap();
    let supervise = site
        .entrypoint()
        .env("PULP_WORKER_TTL", "3")
        .arg("supervise")
        .in_pid_namespace()
        .spawn();
    wait_for_service(
        &status_file,
        "worker-1",
        "running",
        Duration::from_secs(240),
        running,
    );

    pg.stop();
    let finished = supervise.wait_at_most(Duration::from_secs(90));
    // 69: PostgreSQL not reachable before postgres_timeout, as at the start.
    finished.assert_code(69);
    let gave_up = finished
        .stderr
        .lines()
        .find(|line| line.contains("giving up on worker-1"))
        .unwrap_or_else(|| panic!("no line giving up: {}", finished.stderr));
    assert!(
        gave_up.contains("did not let user postgres into database gone within 3s"),
        "{gave_up}"
    );
    let last = status(&status_file).unwrap();
    assert_eq!(
        service(&last, "worker-1").unwrap()["state"],
        "failed",
        "{last:#}"
    );
}

/// The configuration of an all-in-one: PostgreSQL as a `[[service]]` that
/// every Pulp role depends on, so the start phase runs once it is started
/// and it is stopped after every Pulp service ended.
fn with_embedded_postgres(site: &Site, pg: &PgCluster, api_port: u16, content_port: u16) -> String {
    let status_file = site.root().join("status.json");
    let mut config = with_bound_servers(&status_file, "workers = 1", api_port, content_port);
    config = config.replace(
        "role = \"api\"\n",
        "role = \"api\"\ndepends_on = [\"postgres\"]\n",
    );
    config = config.replace(
        "role = \"content\"\n",
        "role = \"content\"\ndepends_on = [\"postgres\"]\n",
    );
    // setpriv execs (runuser would stay as a parent between us and PostgreSQL).
    let user = if nix::unistd::geteuid().is_root() {
        "\"setpriv\", \"--reuid=postgres\", \"--regid=postgres\", \"--init-groups\", \"--\", "
    } else {
        ""
    };
    config.push_str(&format!(
        r#"
[[service]]
name = "worker"
role = "worker"
depends_on = ["postgres"]

[[service]]
name = "postgres"
command = [{user}"{postgres}", "-D", "{data}", "-p", "{port}", "-k", "{socket}", "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
stop_signal = "INT"
essential = true
"#,
        postgres = pg_program("postgres").display(),
        data = pg.data_dir().display(),
        port = pg.port(),
        socket = pg.socket_dir().display(),
    ));
    config
}

#[test]
fn an_embedded_postgres_starts_first_and_stops_last_with_a_clean_shutdown() {
    let pg = PgCluster::init_only();
    let site = Site::new(&DatabaseAddress {
        host: "127.0.0.1",
        port: pg.port(),
        name: "postgres",
        user: "postgres",
        password: pg.superuser_password(),
    });
    let (api_port, content_port) = (free_port(), free_port());
    let status_file = site.root().join("status.json");
    std::fs::write(
        site.root().join("entrypoint.toml"),
        with_embedded_postgres(&site, &pg, api_port, content_port),
    )
    .unwrap();
    let start = || {
        site.entrypoint()
            .arg("supervise")
            .in_pid_namespace()
            .spawn()
    };

    // First start: nothing listens on the port until `postgres` runs, so
    // the start phase (a migration on an empty database) can only pass if it
    // ran after the service started.
    let supervise = start();
    wait_for_status(
        api_port,
        Duration::from_secs(240),
        "api, content and the worker",
        |s| {
            online(s, "online_api_apps").len() == 1
                && online(s, "online_content_apps").len() == 1
                && online(s, "online_workers").len() == 1
        },
    );
    let now = status(&status_file).unwrap();
    assert!(running(service(&now, "postgres").unwrap()), "{now:#}");
    assert!(
        service(&now, "start-phase").is_none(),
        "the start phase is gone once done: {now:#}"
    );
    let finished = stop(supervise);
    finished.assert_code(0);
    let log = &finished.stderr;
    assert!(log.contains("start phase done"), "{log}");
    let migrations = || {
        site.calls()
            .iter()
            .filter(|call| call.contains("pulpcore-manager migrate"))
            .count()
    };
    assert_eq!(migrations(), 1, "the first start migrates once");
    // Stopped last: its fast shutdown comes after every Pulp service ended.
    let shutdown_request = log
        .find("received fast shutdown request")
        .unwrap_or_else(|| panic!("PostgreSQL got no fast shutdown request: {log}"));
    for pulp in ["api exited", "content exited", "worker-1 exited"] {
        let ended = log
            .find(pulp)
            .unwrap_or_else(|| panic!("no '{pulp}' line: {log}"));
        assert!(
            ended < shutdown_request,
            "{pulp} after PostgreSQL's stop: {log}"
        );
    }
    assert!(log.contains("database system is shut down"), "{log}");
    assert!(!log.contains("killing what is left"), "{log}");

    // Second start on the same data: no crash recovery, no migration.
    let supervise = start();
    wait_for_status(
        api_port,
        Duration::from_secs(120),
        "api, content and the worker again",
        |s| online(s, "online_api_apps").len() == 1 && online(s, "online_workers").len() == 1,
    );
    let finished = stop(supervise);
    finished.assert_code(0);
    let log = &finished.stderr;
    assert!(!log.contains("was interrupted"), "{log}");
    assert!(!log.contains("automatic recovery"), "{log}");
    assert_eq!(migrations(), 1, "the second start migrates nothing");
    assert!(log.contains("database system is shut down"), "{log}");
}
