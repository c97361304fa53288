//! Migrations, collectstatic and the admin password run exactly once, with
//! real pulpcore on real PostgreSQL, and cost no Python when there is
//! nothing to do. The PATH shims of `support::pulp` record every Pulp
//! command each replica ran.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::command::{Running, WAIT_LIMIT, wait_until};
use support::pg::PgCluster;
use support::pulp::{Overlay, Site, free_port, http_get, online, wait_for_status};

const START_LIMIT: Duration = Duration::from_secs(180);

fn site(pg: &PgCluster, name: &str) -> Site {
    site_with_venv(pg, name, support::pulp::venv())
}

fn site_with_venv(pg: &PgCluster, name: &str, venv: std::path::PathBuf) -> Site {
    Site::on_fresh_database_with_venv(pg, name, venv)
}

fn count_calls(site: &Site, needle: &str) -> usize {
    site.calls()
        .iter()
        .filter(|call| call.contains(needle))
        .count()
}

/// `pulpcore-manager migrate --check` exits 0 only when nothing is left to apply.
fn fully_migrated(site: &Site) -> bool {
    site.manager(&["migrate", "--check"]).status.success()
}

fn stop_all(replicas: Vec<Running>) {
    let mut replicas = replicas;
    for replica in &mut replicas {
        replica.signal(Signal::SIGTERM);
    }
    for replica in replicas {
        replica.wait_at_most(Duration::from_secs(40));
    }
}

#[test]
fn five_replicas_on_a_fresh_database_migrate_exactly_once() {
    let pg = PgCluster::start();
    let site = site(&pg, "five");
    let api_ports = [free_port(), free_port()];
    let mut replicas = Vec::new();
    for (replica, port) in api_ports.iter().enumerate() {
        let mut command = site.entrypoint();
        command.env("REPLICA", replica.to_string()).args([
            "pulp-api",
            "--bind",
            &format!("127.0.0.1:{port}"),
        ]);
        replicas.push(command);
    }
    for replica in 2..4 {
        let mut command = site.entrypoint();
        command.env("REPLICA", replica.to_string()).args([
            "pulp-content",
            "--bind",
            &format!("127.0.0.1:{}", free_port()),
        ]);
        replicas.push(command);
    }
    let mut worker = site.entrypoint();
    worker.env("REPLICA", "4").arg("pulp-worker");
    replicas.push(worker);
    // Start all five at once.
    let running: Vec<Running> = replicas.iter().map(|command| command.spawn()).collect();

    let status = wait_for_status(api_ports[0], START_LIMIT, "every replica online", |s| {
        online(s, "online_api_apps").len() == 2
            && online(s, "online_content_apps").len() == 2
            && !online(s, "online_workers").is_empty()
    });
    assert_eq!(status["database_connection"]["connected"], true);
    assert!(http_get(api_ports[1], "/pulp/api/v3/status/").is_some_and(|(code, _)| code == 200));
    assert_eq!(
        count_calls(&site, "pulpcore-manager migrate --noinput"),
        1,
        "{:#?}",
        site.calls()
    );
    assert!(fully_migrated(&site));
    stop_all(running);
}

#[test]
fn a_migrated_database_starts_without_python_and_a_new_migration_is_detected() {
    let pg = PgCluster::start();
    let overlay = Overlay::new();
    let site = site_with_venv(&pg, "migrated", overlay.path());
    site.entrypoint().arg("migrate").run().assert_code(0);
    assert_eq!(count_calls(&site, "pulpcore-manager migrate"), 1);

    // Nothing to do: the server is the first Pulp command this start runs.
    let before = site.calls().len();
    let worker = site
        .entrypoint()
        .env("REPLICA", "w")
        .arg("pulp-worker")
        .spawn();
    wait_until("the worker to start", WAIT_LIMIT, || {
        site.calls().len() > before
    });
    let calls = site.calls()[before..].to_vec();
    assert!(
        calls[0].starts_with("w pulpcore-worker"),
        "a Python command ran before the server: {calls:#?}"
    );
    stop_all(vec![worker]);

    // A second start of `migrate` also finds nothing to do.
    site.entrypoint().arg("migrate").run().assert_code(0);
    assert_eq!(count_calls(&site, "pulpcore-manager migrate"), 1);

    // One new migration file in one installed app: detected and applied.
    let name = overlay.add_migration();
    assert!(!fully_migrated(&site), "Django must see {name} as pending");
    site.entrypoint().arg("migrate").run().assert_code(0);
    assert_eq!(count_calls(&site, "pulpcore-manager migrate"), 2);
    assert!(fully_migrated(&site), "{name} must be applied");
}

#[test]
fn a_replica_killed_mid_migration_is_taken_over() {
    let pg = PgCluster::start();
    let site = site(&pg, "killed");
    let api_ports = [free_port(), free_port()];
    let mut replicas: Vec<Running> = Vec::new();
    for (replica, port) in api_ports.iter().enumerate() {
        replicas.push(
            site.entrypoint()
                .env("REPLICA", replica.to_string())
                .args(["pulp-api", "--bind", &format!("127.0.0.1:{port}")])
                .in_pid_namespace()
                .spawn(),
        );
    }
    replicas.push(
        site.entrypoint()
            .env("REPLICA", "2")
            .arg("pulp-worker")
            .in_pid_namespace()
            .spawn(),
    );

    // Wait until one replica is half way through the migrations.
    let mut migrating = None;
    wait_until("a replica to be mid-migration", START_LIMIT, || {
        migrating = site
            .calls()
            .iter()
            .find(|call| call.contains("pulpcore-manager migrate"))
            .and_then(|call| call.split(' ').next()?.parse::<usize>().ok());
        migrating.is_some()
            && pg
                .psql_in(
                    "killed",
                    // Tables created so far: a measure of progress that exists from the start.
                    "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
                )
                .trim()
                .parse::<u32>()
                .is_ok_and(|tables| tables >= 40)
    });
    let victim = migrating.expect("found above");
    // SIGKILL to PID 1 of its namespace: the whole "container" dies, as on node loss.
    let mut killed = replicas.remove(victim);
    killed.signal(Signal::SIGKILL);
    killed.wait();

    let survivor_api = api_ports[if victim == 0 { 1 } else { 0 }];
    let status = wait_for_status(survivor_api, START_LIMIT, "the survivors online", |s| {
        !online(s, "online_api_apps").is_empty()
            && (victim == 2 || !online(s, "online_workers").is_empty())
    });
    assert_eq!(status["database_connection"]["connected"], true);
    assert_eq!(
        count_calls(&site, "pulpcore-manager migrate --noinput"),
        2,
        "the killed run and one that finished it: {:#?}",
        site.calls()
    );
    assert!(fully_migrated(&site), "nothing may be left half-migrated");
    stop_all(replicas);
}

/// Whether Django accepts `password` for admin (the test's own check; the
/// password in this argv is the test's, not the entrypoint's).
fn admin_login_works(site: &Site, password: &str) -> bool {
    let script = format!(
        "from django.contrib.auth import authenticate; print(authenticate(username='admin', password={password:?}) is not None)"
    );
    let output = site.manager(&["shell", "-c", &script]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim() == "True"
}

#[test]
fn the_admin_password_is_set_once_and_never_through_argv() {
    let pg = PgCluster::start();
    let site = site(&pg, "admin");
    site.entrypoint().arg("migrate").run().assert_code(0);
    let file = site.root().join("pulp-admin-password");

    let first = "first-Pa55word";
    site.entrypoint()
        .env("PULP_DEFAULT_ADMIN_PASSWORD", first)
        .env("PULP_ENTRYPOINT_ADMIN_PASSWORD_FILE", &file)
        .arg("init")
        .run()
        .assert_code(0);
    assert!(admin_login_works(&site, first));
    // Every Pulp command's argv went through the shims' log: no password there.
    assert!(
        count_calls(&site, "pulpcore-manager shell") == 1,
        "{:#?}",
        site.calls()
    );
    assert!(!site.calls().iter().any(|call| call.contains(first)));

    // A changed PULP_DEFAULT_ADMIN_PASSWORD does not touch an existing admin.
    let calls = site.calls().len();
    site.entrypoint()
        .env("PULP_DEFAULT_ADMIN_PASSWORD", "second-Pa55word")
        .env("PULP_ENTRYPOINT_ADMIN_PASSWORD_FILE", &file)
        .arg("init")
        .run()
        .assert_code(0);
    assert_eq!(site.calls().len(), calls, "nothing to do, no Python");
    assert!(admin_login_works(&site, first));

    // The password file wins, and is applied again only when it changes.
    std::fs::write(&file, "third-Pa55word\n").unwrap();
    for _ in 0..2 {
        site.entrypoint()
            .env("PULP_ENTRYPOINT_ADMIN_PASSWORD_FILE", &file)
            .arg("init")
            .run()
            .assert_code(0);
    }
    assert!(admin_login_works(&site, "third-Pa55word"));
    // What is recorded cannot be brute-forced faster than Django's own hash:
    // an HMAC keyed with the field encryption key, not a bare SHA-256.
    let recorded = pg.psql_in(
        "admin",
        "SELECT value FROM pulp_entrypoint_state WHERE key = 'admin-password-file'",
    );
    let bare: String = sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        "third-Pa55word\n",
    ))
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect();
    assert!(
        recorded.trim().starts_with("hmac-sha256:") && !recorded.contains(&bare),
        "{recorded}"
    );
    assert_eq!(
        count_calls(&site, "pulpcore-manager shell"),
        2,
        "{:#?}",
        site.calls()
    );
    assert!(
        !site
            .calls()
            .iter()
            .any(|call| call.contains("third-Pa55word"))
    );

    // set_init_password.sh's order: PULP_DEFAULT_ADMIN_PASSWORD hides the file...
    std::fs::write(&file, "fourth-Pa55word\n\n").unwrap();
    site.entrypoint()
        .env("PULP_DEFAULT_ADMIN_PASSWORD", "ignored-Pa55word")
        .env("PULP_ENTRYPOINT_ADMIN_PASSWORD_FILE", &file)
        .arg("init")
        .run()
        .assert_code(0);
    assert!(admin_login_works(&site, "third-Pa55word"));
    // ...without it the file applies, trailing newlines dropped as `$(cat)` does...
    site.entrypoint()
        .env("PULP_ENTRYPOINT_ADMIN_PASSWORD_FILE", &file)
        .arg("init")
        .run()
        .assert_code(0);
    assert!(admin_login_works(&site, "fourth-Pa55word"));
    // ...and without the file PULP_ADMIN_PASSWORD, once per value.
    std::fs::remove_file(&file).unwrap();
    for _ in 0..2 {
        site.entrypoint()
            .env("PULP_ADMIN_PASSWORD", "fifth-Pa55word")
            .env("PULP_ENTRYPOINT_ADMIN_PASSWORD_FILE", &file)
            .arg("init")
            .run()
            .assert_code(0);
    }
    assert!(admin_login_works(&site, "fifth-Pa55word"));
    assert_eq!(
        count_calls(&site, "pulpcore-manager shell"),
        4,
        "{:#?}",
        site.calls()
    );
}

/// A throwaway GnuPG home with one signing key; its gpg-agent is stopped on drop.
struct GpgHome {
    dir: tempfile::TempDir,
    fingerprint: String,
}

impl GpgHome {
    fn new() -> GpgHome {
        let dir = tempfile::tempdir().expect("GnuPG home");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut home = GpgHome {
            dir,
            fingerprint: String::new(),
        };
        home.gpg(&[
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Pulp Test <test@example.com>",
            "default",
            "default",
            "never",
        ]);
        let listed = home.gpg(&["--with-colons", "--list-keys"]);
        home.fingerprint = listed
            .lines()
            .find(|line| line.starts_with("fpr:"))
            .and_then(|line| line.split(':').nth(9))
            .unwrap_or_else(|| panic!("no fingerprint in gpg's listing:\n{listed}"))
            .to_string();
        home
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn gpg(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("gpg")
            .env("GNUPGHOME", self.path())
            .args(args)
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run gpg ({error}): run tests/run.sh, which installs gnupg")
            });
        assert!(
            output.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = std::process::Command::new("gpgconf")
            .env("GNUPGHOME", self.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// A signing script as pulpcore's docs describe it: a detached ASCII-armored
/// signature next to the file, and JSON naming both.
const COLLECTION_SIGN: &str = r#"#!/bin/sh
set -e
gpg --quiet --batch --yes --detach-sign --armor --default-key "$PULP_SIGNING_KEY_FINGERPRINT" --output "$1.asc" "$1"
printf '{"file": "%s", "signature": "%s.asc"}\n' "$1" "$1"
"#;

#[test]
fn signing_services_are_added_once_when_their_scripts_exist() {
    let pg = PgCluster::start();
    let site = site(&pg, "signing");
    site.entrypoint().arg("migrate").run().assert_code(0);
    let gpg = GpgHome::new();
    let scripts = site.root().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let start = |args: &[&str]| {
        let mut command = site.entrypoint();
        command
            .env("GNUPGHOME", gpg.path())
            .env("PULP_SIGNING_KEY_FINGERPRINT", &gpg.fingerprint)
            .env("PULP_ENTRYPOINT_SIGNING_SCRIPTS_DIR", &scripts)
            .args(args);
        command
    };
    let services = || {
        pg.psql_in(
            "signing",
            "SELECT name, pubkey_fingerprint FROM core_signingservice",
        )
    };

    // No script: one warning naming it, no Python, and the start goes on.
    let calls = site.calls().len();
    let finished = start(&["init"]).run();
    finished.assert_code(0);
    let collection_script = scripts.join("collection_sign.sh");
    assert!(
        finished.stderr.contains(&format!(
            "its script {} does not exist",
            collection_script.display()
        )),
        "{finished}"
    );
    // pulp_container is not in the test venv.
    assert!(
        finished
            .stderr
            .contains("'container-default' not added: pulp_container is not installed"),
        "{finished}"
    );
    assert_eq!(site.calls().len(), calls, "{:#?}", site.calls());
    assert_eq!(services(), "");

    // With the script, a role adds the service before its server starts.
    std::fs::write(&collection_script, COLLECTION_SIGN).unwrap();
    std::fs::set_permissions(&collection_script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let worker = start(&["pulp-worker"]).env("REPLICA", "w").spawn();
    wait_until("the worker to start", WAIT_LIMIT, || {
        count_calls(&site, "w pulpcore-worker") == 1
    });
    stop_all(vec![worker]);
    let calls = site.calls()[calls..].to_vec();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert!(
        calls[0].starts_with(&format!(
            "w pulpcore-manager add-signing-service ansible-default {} {}",
            collection_script.display(),
            gpg.fingerprint
        )),
        "{calls:#?}"
    );
    assert_eq!(
        services().trim(),
        format!("ansible-default|{}", gpg.fingerprint)
    );

    // A second start finds it: no Python at all.
    let calls = site.calls().len();
    start(&["init"]).run().assert_code(0);
    assert_eq!(site.calls().len(), calls, "{:#?}", site.calls());

    // Another key for the existing name: kept, with a warning, still no Python.
    let other = "0123456789ABCDEF0123456789ABCDEF01234567";
    let finished = start(&["init"])
        .env("PULP_SIGNING_KEY_FINGERPRINT", other)
        .run();
    finished.assert_code(0);
    assert!(
        finished.stderr.contains(&format!(
            "'ansible-default' exists for key {}",
            gpg.fingerprint
        )),
        "{finished}"
    );
    assert_eq!(site.calls().len(), calls, "{:#?}", site.calls());

    // A key gpg does not have: add-signing-service fails, and so does the start.
    let finished = start(&["init"])
        .env("PULP_SIGNING_KEY_FINGERPRINT", other)
        .env("COLLECTION_SIGNING_SERVICE", "galaxy")
        .run();
    finished.assert_code(75);
    assert!(
        finished
            .stderr
            .contains("`pulpcore-manager add-signing-service galaxy"),
        "{finished}"
    );
    assert_eq!(count_calls(&site, "add-signing-service"), 2);
    assert_eq!(
        services().trim(),
        format!("ansible-default|{}", gpg.fingerprint)
    );
}

/// What pulp-operator's migration Job and the compose `migration_service`
/// run: plain `pulpcore-manager migrate`, not the entrypoint. Waiters
/// (`wait-migrations`, the legacy script's name) must notice it, and a role
/// started afterwards must not migrate again.
#[test]
fn migrations_applied_by_someone_else_are_noticed() {
    let pg = PgCluster::start();
    let site = site(&pg, "external");
    let legacy = site.root().join("wait_on_database_migrations.sh");
    std::os::unix::fs::symlink(support::command::entrypoint_path(), &legacy).unwrap();
    // A lock timeout far beyond the bound below: a waiter that does not
    // notice would fail the bound, not time out.
    let waiter = site
        .entrypoint()
        .args(["--lock-timeout", "10m", "wait-migrations"])
        .spawn();
    let legacy_waiter = site
        .entrypoint()
        .env("PULP_ENTRYPOINT_LOCK_TIMEOUT", "10m")
        .via(&legacy)
        .spawn();
    let migrated = site.manager(&["migrate", "--noinput"]);
    assert!(
        migrated.status.success(),
        "plain migrate failed: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let finished = waiter.wait_at_most(Duration::from_secs(20));
    finished.assert_code(0);
    assert!(
        finished.stderr.contains("migrations applied"),
        "{}",
        finished.stderr
    );
    legacy_waiter
        .wait_at_most(Duration::from_secs(20))
        .assert_code(0);
    assert_eq!(
        count_calls(&site, "pulpcore-manager"),
        0,
        "the waiters need no Python: {:#?}",
        site.calls()
    );

    // A role started now proves the migrations from the rows and records it.
    let before = site.calls().len();
    let worker = site.entrypoint().arg("pulp-worker").spawn();
    wait_until("the worker to start", WAIT_LIMIT, || {
        site.calls().len() > before
    });
    let calls = site.calls()[before..].to_vec();
    assert!(
        calls[0].contains("pulpcore-worker"),
        "a Pulp command ran before the worker: {calls:#?}"
    );
    stop_all(vec![worker]);
    assert_eq!(
        pg.psql_in(
            "external",
            "SELECT count(*) FROM pulp_entrypoint_state WHERE key = 'migrations'"
        )
        .trim(),
        "1"
    );
}

/// When only Django can tell (the settings change MIGRATION_MODULES), it
/// is asked without its system checks: a missing upload directory is a
/// check failure, not a pending migration.
#[test]
fn a_failing_system_check_is_not_a_pending_migration() {
    let pg = PgCluster::start();
    let site = site(&pg, "checks");
    // Migrated by plain Django: no record of the entrypoint's to go by.
    let migrated = site.manager(&["migrate", "--noinput"]);
    assert!(migrated.status.success(), "plain migrate failed");
    std::fs::remove_dir_all(site.root().join("tmp")).unwrap();
    let broken = site.manager(&["migrate", "--check"]);
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("files.E001"),
        "the test needs Django's check to fail: {}",
        String::from_utf8_lossy(&broken.stderr)
    );
    let finished = site
        .entrypoint()
        .env("PULP_MIGRATION_MODULES", "{}")
        .args(["--lock-timeout", "10m", "wait-migrations"])
        .spawn()
        .wait_at_most(Duration::from_secs(60));
    finished.assert_code(0);
    assert_eq!(
        count_calls(&site, "pulpcore-manager migrate --check --skip-checks"),
        1,
        "{:#?}",
        site.calls()
    );
}
