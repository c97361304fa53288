//! The binary as users meet it: waiting for a real PostgreSQL through the
//! settings pulpcore reads, one-line errors with their documented exit
//! codes, the legacy script names, and `config`.

mod support;

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::command::{Finished, TestCommand, WAIT_LIMIT, wait_until};
use support::pg::{PgCluster, free_port};

/// An entrypoint whose settings.py points at `port` with `password`.
fn with_settings(dir: &Path, port: u16, database: &str, password: &str) -> TestCommand {
    let settings = dir.join("settings.py");
    std::fs::write(
        &settings,
        format!(
            "DATABASES = {{'default': {{'NAME': '{database}', 'USER': 'postgres', 'PASSWORD': '{password}', 'HOST': '127.0.0.1', 'PORT': {port}}}}}\n"
        ),
    )
    .unwrap();
    let config = dir.join("entrypoint.toml");
    std::fs::write(&config, "").unwrap();
    let mut command = TestCommand::new();
    command
        .env("PULP_SETTINGS", &settings)
        .env("PULP_ENTRYPOINT_CONFIG", &config);
    command
}

fn one_line_error(finished: &Finished) -> String {
    let lines: Vec<&str> = finished
        .stderr
        .lines()
        .filter(|line| line.starts_with("pulp-entrypoint: "))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {finished}");
    lines[0].to_string()
}

#[test]
fn wait_postgres_succeeds_against_a_real_server() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    with_settings(dir.path(), pg.port(), "postgres", pg.superuser_password())
        .arg("wait-postgres")
        .run()
        .assert_code(0);
}

#[test]
fn a_wrong_password_fails_at_once_with_77_and_never_prints_it() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let finished = with_settings(dir.path(), pg.port(), "postgres", "Wrong-Secret-42")
        .env("PULP_ENTRYPOINT_POSTGRES_TIMEOUT", "10m")
        .arg("wait-postgres")
        .run();
    finished.assert_code(77);
    let line = one_line_error(&finished);
    assert!(line.contains("28P01"), "{line}");
    assert!(!finished.stderr.contains("Wrong-Secret-42"), "{finished}");
    assert!(!finished.stdout.contains("Wrong-Secret-42"), "{finished}");
}

#[test]
fn a_missing_database_fails_with_65_after_the_grace() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let finished = with_settings(dir.path(), pg.port(), "nosuchdb", pg.superuser_password())
        .env("PULP_ENTRYPOINT_MISSING_DATABASE_GRACE", "1s")
        .arg("wait-postgres")
        .run();
    finished.assert_code(65);
    assert!(one_line_error(&finished).contains("nosuchdb"), "{finished}");
}

#[test]
fn no_server_before_the_timeout_fails_with_69_and_the_legacy_name_with_1() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let finished = with_settings(dir.path(), port, "pulp", "x")
        .env("PULP_ENTRYPOINT_POSTGRES_TIMEOUT", "1s")
        .arg("wait-postgres")
        .run();
    finished.assert_code(69);
    assert!(one_line_error(&finished).contains("refused"), "{finished}");

    let links = tempfile::tempdir().unwrap();
    let legacy = links.path().join("wait_on_postgres.py");
    std::os::unix::fs::symlink(support::command::entrypoint_path(), &legacy).unwrap();
    let mut command = with_settings(dir.path(), port, "pulp", "x");
    command
        .env("PULP_ENTRYPOINT_POSTGRES_TIMEOUT", "1s")
        .via(&legacy);
    command.run().assert_code(1);
}

#[test]
fn sigterm_while_waiting_for_postgres_ends_the_wait_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = with_settings(dir.path(), free_port(), "pulp", "x")
        .env("PULP_ENTRYPOINT_POSTGRES_TIMEOUT", "10m")
        .arg("pulp-api")
        .spawn();
    // Handlers are installed right before the wait begins.
    wait_until("the wait to begin", WAIT_LIMIT, || {
        catches_sigterm(&mut running)
    });
    running.signal(Signal::SIGTERM);
    // Far less than the 10 minute timeout: the signal, not the timeout, ended it.
    let finished = running.wait_at_most(Duration::from_secs(30));
    finished.assert_code(143);
}

/// Whether the entrypoint has its SIGTERM handler (SigCgt in /proc).
fn catches_sigterm(running: &mut support::command::Running) -> bool {
    let pid = running.entrypoint_pid();
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("SigCgt:"))
                .and_then(|line| u64::from_str_radix(line[7..].trim(), 16).ok())
        })
        .is_some_and(|caught| caught & (1 << (Signal::SIGTERM as u64 - 1)) != 0)
}

#[test]
fn config_shows_sources_and_redacts_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let finished = with_settings(dir.path(), 5432, "pulp", "Top-Secret-99")
        .env("PULP_DATABASES__default__HOST", "db.example")
        .env("PULP_ENTRYPOINT_STOP_GRACE", "20s")
        .arg("config")
        .run();
    finished.assert_code(0);
    let out = &finished.stdout;
    assert!(!out.contains("Top-Secret-99"), "{out}");
    assert!(
        out.contains("DATABASES.default.PASSWORD = <redacted>"),
        "{out}"
    );
    assert!(
        out.contains("DATABASES.default.HOST = db.example  # env PULP_DATABASES__default__HOST"),
        "{out}"
    );
    assert!(
        out.contains("stop_grace = 20s  # env PULP_ENTRYPOINT_STOP_GRACE"),
        "{out}"
    );
}

#[test]
fn bad_configuration_is_one_line_with_78() {
    let dir = tempfile::tempdir().unwrap();
    let finished = with_settings(dir.path(), 5432, "pulp", "x")
        .env("PULP_ENTRYPOINT_STOP_GRACE", "soon")
        .arg("pulp-api")
        .run();
    finished.assert_code(78);
    assert!(one_line_error(&finished).contains("PULP_ENTRYPOINT_STOP_GRACE"));

    let finished = with_settings(dir.path(), 5432, "pulp", "x")
        .env("PULP_API_WORKERS", "many")
        .arg("pulp-api")
        .run();
    finished.assert_code(78);
    assert!(one_line_error(&finished).contains("PULP_API_WORKERS"));

    std::fs::write(
        dir.path().join("bad.py"),
        "DATABASES = {'default': {'HOST': 'a'\n",
    )
    .unwrap();
    let finished = TestCommand::new()
        .env("PULP_SETTINGS", dir.path().join("bad.py"))
        .env("PULP_ENTRYPOINT_CONFIG", dir.path().join("entrypoint.toml"))
        .arg("pulp-api")
        .run();
    finished.assert_code(78);
    assert!(one_line_error(&finished).contains("bad.py:1"), "{finished}");
}

#[test]
fn removed_role_and_bad_flags_are_usage_errors() {
    let finished = TestCommand::new().arg("pulp-resource-manager").run();
    finished.assert_code(64);
    assert!(one_line_error(&finished).contains("pulp-worker"));
    let finished = TestCommand::new().args(["--bogus", "pulp-api"]).run();
    finished.assert_code(64);
    one_line_error(&finished);
}
