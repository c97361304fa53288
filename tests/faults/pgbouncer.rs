//! A connection pooler between the entrypoint and PostgreSQL: a real
//! PgBouncer (Debian's package) in transaction pooling mode, as many Pulp
//! installations run it, and in statement mode, which cannot work.
//!
//! In transaction mode a server connection serves a client only for one
//! transaction: a session-level advisory lock stays behind on whichever
//! server connection took it (an unlock from another one fails, the lock
//! leaks), LISTEN is lost, and a named prepared statement may be executed
//! on a connection that never prepared it. The migrate-once coordination
//! must work anyway: one `migrate` for two replicas started together, no
//! lock left behind, a dead holder taken over; and the start says in one
//! line that it goes through a pooler.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::command::{Finished, Running, WAIT_LIMIT, wait_until};
use crate::support::pg::PgCluster;
use crate::support::pulp::{DatabaseAddress, Site};

/// A real migrate through the pooler, on a shared 2-core machine.
const MIGRATE_LIMIT: Duration = Duration::from_secs(240);
/// What the entrypoint says when the connection goes through a pooler.
const POOLER_LINE: &str = "PostgreSQL is reached through a connection pooler";

/// A PgBouncer of its own: configuration, auth file and log in a temporary
/// directory, listening on a free port of 127.0.0.1, every database going
/// to `pg`. Runs as an unprivileged user (the `postgres` user when the
/// tests run as root: PgBouncer refuses root). Drop stops it.
struct PgBouncer {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl PgBouncer {
    fn start(pg: &PgCluster, pool_mode: &str) -> PgBouncer {
        let dir = tempfile::Builder::new()
            .prefix("pgbouncer-")
            .tempdir()
            .expect("a directory for PgBouncer");
        let owner = unprivileged_user();
        // A port from the kernel is free now; another test may take it before
        // PgBouncer binds it, so a few ports are tried.
        let mut last_log = String::new();
        for _ in 0..4 {
            let port = crate::support::pg::free_port();
            let ini = dir.path().join("pgbouncer.ini");
            let auth = dir.path().join("userlist.txt");
            let log = dir.path().join("pgbouncer.log");
            std::fs::write(
                &auth,
                format!(
                    "\"{}\" \"{}\"\n",
                    crate::support::pg::SUPERUSER,
                    pg.superuser_password()
                ),
            )
            .unwrap();
            std::fs::write(
                &ini,
                format!(
                    "[databases]\n\
                     * = host=127.0.0.1 port={pg_port}\n\
                     [pgbouncer]\n\
                     listen_addr = 127.0.0.1\n\
                     listen_port = {port}\n\
                     unix_socket_dir =\n\
                     auth_type = scram-sha-256\n\
                     auth_file = {auth}\n\
                     pool_mode = {pool_mode}\n\
                     default_pool_size = 5\n\
                     logfile = {log}\n",
                    pg_port = pg.port(),
                    auth = auth.display(),
                    log = log.display(),
                ),
            )
            .unwrap();
            let _ = std::fs::remove_file(&log);
            if let Some((uid, gid)) = owner {
                for path in [dir.path(), &ini, &auth] {
                    nix::unistd::chown(path, Some(uid), Some(gid)).unwrap();
                }
            }
            let mut command = Command::new(pgbouncer_program());
            command
                .arg(&ini)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some((uid, gid)) = owner {
                command.gid(gid.as_raw()).uid(uid.as_raw());
            }
            let mut child = command.spawn().expect("start pgbouncer");
            // Ready once it accepts connections; gone when the port was taken.
            let deadline = Instant::now() + WAIT_LIMIT;
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return PgBouncer { dir, port, child };
                }
                if child.try_wait().expect("try_wait on pgbouncer").is_some() {
                    last_log = std::fs::read_to_string(&log).unwrap_or_default();
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "PgBouncer did not listen on port {port} within {WAIT_LIMIT:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("PgBouncer did not start; its log:\n{last_log}");
    }

    /// A Pulp site whose database `name` (on the cluster behind) is reached through this PgBouncer.
    fn site(&self, pg: &PgCluster, name: &str) -> Site {
        pg.create_database(name);
        Site::new(&DatabaseAddress {
            host: "127.0.0.1",
            port: self.port,
            name,
            user: crate::support::pg::SUPERUSER,
            password: pg.superuser_password(),
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // Our own child, by its pid.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// Debian's pgbouncer is in /usr/sbin, which a user's PATH may lack.
fn pgbouncer_program() -> PathBuf {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "pgbouncer is not installed: run `. tests/tools/deps.sh` (installs Debian's pgbouncer) and rerun the tests"
            )
        })
}

/// The user to run PgBouncer as when we are root (it refuses root).
fn unprivileged_user() -> Option<(nix::unistd::Uid, nix::unistd::Gid)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name(crate::support::pg::SUPERUSER)
        .expect("look up the postgres user")
        .expect("a postgres user (the postgresql package creates it)");
    Some((user.uid, user.gid))
}

/// Advisory locks held in database `name`, asked of PostgreSQL directly.
fn advisory_locks(pg: &PgCluster, name: &str) -> Vec<String> {
    pg.psql(&format!(
        "SELECT l.pid || ' ' || a.state || ' ' || a.application_name
         FROM pg_locks l JOIN pg_stat_activity a USING (pid)
         WHERE l.locktype = 'advisory'
           AND l.database = (SELECT oid FROM pg_database WHERE datname = '{name}')"
    ))
    .lines()
    .map(str::to_string)
    .collect()
}

fn count_calls(site: &Site, needle: &str) -> usize {
    site.calls()
        .iter()
        .filter(|call| call.contains(needle))
        .count()
}

fn describe(replicas: &[Finished], bouncer: &PgBouncer) -> String {
    let mut text = String::new();
    for (i, replica) in replicas.iter().enumerate() {
        text.push_str(&format!("--- replica {i}: {replica}\n"));
    }
    text.push_str(&format!("--- pgbouncer log:\n{}", bouncer.log()));
    text
}

#[test]
fn two_replicas_through_pgbouncer_in_transaction_mode_migrate_once() {
    let pg = PgCluster::start();
    let bouncer = PgBouncer::start(&pg, "transaction");
    let site = bouncer.site(&pg, "bounced");

    // Two replicas at once, each PID 1 of its own namespace as in a container.
    let running: Vec<Running> = (0..2)
        .map(|replica| {
            site.entrypoint()
                .env("REPLICA", replica.to_string())
                .arg("migrate")
                .in_pid_namespace()
                .spawn()
        })
        .collect();
    let finished: Vec<Finished> = running
        .into_iter()
        .map(|replica| replica.wait_at_most(MIGRATE_LIMIT))
        .collect();
    let report = describe(&finished, &bouncer);
    for replica in &finished {
        assert_eq!(replica.code(), 0, "every replica proceeds:\n{report}");
        let lines: Vec<&str> = replica
            .stderr
            .lines()
            .filter(|line| line.contains(POOLER_LINE))
            .collect();
        assert_eq!(lines.len(), 1, "one line about the pooler:\n{report}");
        assert!(
            lines[0].contains("transaction pooling"),
            "the line says what is done about it: {}",
            lines[0]
        );
    }
    assert_eq!(
        count_calls(&site, "pulpcore-manager migrate --noinput"),
        1,
        "migrate runs once: {:#?}\n{report}",
        site.calls()
    );
    assert!(
        site.manager(&["migrate", "--check"]).status.success(),
        "every migration is applied"
    );
    assert_eq!(
        advisory_locks(&pg, "bounced"),
        Vec::<String>::new(),
        "no lock is left behind on a pooled server connection:\n{report}"
    );

    // A third start that needs the lock (the admin password, as no admin
    // exists) takes it at once: nothing leaked holds it.
    let third = site
        .entrypoint()
        .env("REPLICA", "2")
        .env("PULP_DEFAULT_ADMIN_PASSWORD", "bounced-admin-pw")
        .env("PULP_ENTRYPOINT_LOCK_TIMEOUT", "20s")
        .arg("init")
        .run();
    assert_eq!(third.code(), 0, "{third}");
    assert!(third.stderr.contains("holding the setup lock"), "{third}");
    assert!(
        !third.stderr.contains("waiting for the setup lock"),
        "{third}"
    );
    assert_eq!(count_calls(&site, "pulpcore-manager shell"), 1);
    assert!(
        !third.stderr.contains("bounced-admin-pw"),
        "no password in the log"
    );
    assert_eq!(advisory_locks(&pg, "bounced"), Vec::<String>::new());

    // The same database reached directly, over TCP (sslmode prefer: the
    // announced id is read after an SSLRequest) and over the unix socket
    // (no TLS): no pooler, and no doubt about it.
    let socket_dir = pg.socket_dir().display().to_string();
    for host in ["127.0.0.1", socket_dir.as_str()] {
        let direct = Site::new(&DatabaseAddress {
            host,
            port: pg.port(),
            name: "bounced",
            user: crate::support::pg::SUPERUSER,
            password: pg.superuser_password(),
        });
        let waited = direct.entrypoint().arg("wait-migrations").run();
        assert_eq!(waited.code(), 0, "{waited}");
        assert!(!waited.stderr.contains(POOLER_LINE), "{host}: {waited}");
        assert!(
            !waited.stderr.contains("could not tell"),
            "{host}: {waited}"
        );
    }
}

#[test]
fn a_holder_killed_behind_pgbouncer_is_taken_over() {
    let pg = PgCluster::start();
    let bouncer = PgBouncer::start(&pg, "transaction");
    let site = bouncer.site(&pg, "killed_bounced");
    let mut replicas: Vec<Running> = (0..2)
        .map(|replica| {
            site.entrypoint()
                .env("REPLICA", replica.to_string())
                .arg("migrate")
                .in_pid_namespace()
                .spawn()
        })
        .collect();

    // One replica is half way through the migrations.
    let mut migrating = None;
    wait_until("a replica to be mid-migration", MIGRATE_LIMIT, || {
        migrating = site
            .calls()
            .iter()
            .find(|call| call.contains("pulpcore-manager migrate"))
            .and_then(|call| call.split(' ').next()?.parse::<usize>().ok());
        migrating.is_some()
            && pg
                .psql_in(
                    "killed_bounced",
                    "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
                )
                .trim()
                .parse::<u32>()
                .is_ok_and(|tables| tables >= 40)
    });
    let victim = migrating.expect("found above");
    // SIGKILL to PID 1 of its namespace: the container and its migrate die.
    // PgBouncer closes the server connection of the lock's open
    // transaction, which frees the lock.
    let mut killed = replicas.remove(victim);
    killed.signal(Signal::SIGKILL);
    killed.wait();

    let survivor = replicas.remove(0).wait_at_most(MIGRATE_LIMIT);
    assert_eq!(
        survivor.code(),
        0,
        "{}",
        describe(std::slice::from_ref(&survivor), &bouncer)
    );
    assert_eq!(
        count_calls(&site, "pulpcore-manager migrate --noinput"),
        2,
        "the killed run and the one that finished it: {:#?}",
        site.calls()
    );
    assert!(
        site.manager(&["migrate", "--check"]).status.success(),
        "nothing may be left half-migrated"
    );
    assert_eq!(advisory_locks(&pg, "killed_bounced"), Vec::<String>::new());
}

#[test]
fn statement_pooling_is_refused_in_one_line_with_the_fix() {
    let pg = PgCluster::start();
    let bouncer = PgBouncer::start(&pg, "statement");
    let site = bouncer.site(&pg, "statement_mode");
    let finished = site.entrypoint().arg("migrate").run();
    // DATABASE_ERROR: a query the database (here its pooler) refused.
    assert_eq!(finished.code(), 65, "{finished}");
    let last = finished.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("transaction blocks not allowed in statement pooling mode")
            && last.contains("transaction or session mode"),
        "one line with the cause and the fix: {finished}"
    );
    assert!(
        site.calls().is_empty(),
        "nothing ran without the lock: {:#?}",
        site.calls()
    );
    assert_eq!(
        advisory_locks(&pg, "statement_mode"),
        Vec::<String>::new(),
        "{}",
        bouncer.log()
    );
}
