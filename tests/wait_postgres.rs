//! `postgres::wait_for_postgres` and `postgres::connect` against real
//! PostgreSQL servers started by the tests (see `support::pg`): late
//! servers, refused logins, missing databases, host names, unix sockets,
//! TLS per sslmode, and passwords that never reach an error message.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pulp_entrypoint::postgres::{self, ErrorKind, WaitError, WaitPolicy};
use pulp_entrypoint::settings::{DatabaseSettings, SslMode};
use pulp_entrypoint::sourced::{Secret, Source, Sourced};
use support::pg::{PgCluster, SUPERUSER};

/// A bound on anything that should be quick, generous for a busy machine.
const LIMIT: Duration = Duration::from_secs(60);

fn settings(
    host: &str,
    port: u16,
    database: &str,
    user: &str,
    password: Option<&str>,
) -> DatabaseSettings {
    DatabaseSettings {
        name: Sourced::default(database.to_owned()),
        user: Sourced::default(user.to_owned()),
        password: password.map(|p| {
            Sourced::new(
                Secret::new(p),
                Source::Env("PULP_DATABASES__default__PASSWORD".into()),
            )
        }),
        host: Some(Sourced::default(host.to_owned())),
        port: Sourced::default(port),
        sslmode: Sourced::default(SslMode::Prefer),
        sslrootcert: None,
        connect_timeout: None,
    }
}

/// The superuser over TCP to the `postgres` database.
fn superuser(pg: &PgCluster) -> DatabaseSettings {
    settings(
        "127.0.0.1",
        pg.port(),
        "postgres",
        SUPERUSER,
        Some(pg.superuser_password()),
    )
}

fn policy(timeout: Duration) -> WaitPolicy {
    WaitPolicy {
        timeout,
        missing_database_grace: Duration::from_secs(30),
        log_interval: Duration::from_secs(5),
    }
}

async fn wait(db: &DatabaseSettings, policy: &WaitPolicy) -> Result<(), WaitError> {
    tokio::time::timeout(
        LIMIT + policy.timeout,
        postgres::wait_for_postgres(db, policy),
    )
    .await
    .expect("wait_for_postgres returned within its timeout")
}

/// Poll `condition` (blocking) until it holds; panic after LIMIT.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + LIMIT;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_running_server_is_accepted_at_once() {
    let pg = PgCluster::start();
    wait(&superuser(&pg), &policy(Duration::from_secs(30)))
        .await
        .expect("the login succeeds");
}

#[tokio::test]
async fn a_server_that_starts_late_is_noticed() {
    let pg = Arc::new(PgCluster::init_only());
    let db = superuser(&pg);
    let waiting = tokio::spawn(async move { wait(&db, &policy(LIMIT)).await });
    // Nothing listens yet: the wait can neither succeed nor give up now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "the wait ended before the server existed: {:?}",
        waiting.await
    );
    let server = pg.clone();
    tokio::task::spawn_blocking(move || server.start_now())
        .await
        .unwrap();
    waiting.await.unwrap().expect("the late server is accepted");
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_retrying() {
    let pg = PgCluster::start();
    let mut db = superuser(&pg);
    db.password = Some(Sourced::new(
        Secret::new("not-the-password"),
        Source::File {
            path: "/etc/pulp/settings.py".into(),
            line: Some(7),
        },
    ));
    // With 60 s to go, only a refusal taken as final returns AuthRejected.
    let error = wait(&db, &policy(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert!(matches!(error, WaitError::AuthRejected { .. }), "{error:?}");
    assert_eq!(error.exit_code(), 77);
    assert_eq!(error.connect_error().code(), Some("28P01"));
    let message = error.to_string();
    assert!(message.contains("28P01"), "{message}");
    assert!(
        message.contains("DATABASES.default.PASSWORD (set by /etc/pulp/settings.py:7)"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
}

#[tokio::test]
async fn an_unknown_role_is_refused_without_retrying() {
    let pg = PgCluster::start();
    let db = settings(
        "127.0.0.1",
        pg.port(),
        "postgres",
        "nobody",
        Some("whatever"),
    );
    let error = wait(&db, &policy(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert!(matches!(error, WaitError::AuthRejected { .. }), "{error:?}");
    assert_eq!(error.exit_code(), 77);
}

#[tokio::test]
async fn a_missing_database_fails_after_the_grace() {
    let pg = PgCluster::start();
    let db = settings(
        "127.0.0.1",
        pg.port(),
        "not_there",
        SUPERUSER,
        Some(pg.superuser_password()),
    );
    let policy = WaitPolicy {
        missing_database_grace: Duration::from_secs(1),
        ..policy(Duration::from_secs(60))
    };
    let error = wait(&db, &policy).await.unwrap_err();
    assert!(
        matches!(error, WaitError::MissingDatabase { .. }),
        "{error:?}"
    );
    assert_eq!(error.exit_code(), 65);
    let message = error.to_string();
    assert!(message.contains("not_there"), "{message}");
    assert!(message.contains("CREATE DATABASE"), "{message}");
    assert!(
        message.contains("PULP_DATABASES__default__NAME"),
        "{message}"
    );
}

#[tokio::test]
async fn a_database_created_during_the_grace_is_accepted() {
    let pg = Arc::new(PgCluster::start());
    let db = settings(
        "127.0.0.1",
        pg.port(),
        "late",
        SUPERUSER,
        Some(pg.superuser_password()),
    );
    let policy = WaitPolicy {
        missing_database_grace: LIMIT,
        ..policy(LIMIT)
    };
    let waiting = tokio::spawn(async move { wait(&db, &policy).await });
    let server = pg.clone();
    tokio::task::spawn_blocking(move || {
        // Create it only once the wait has been told it is missing.
        wait_until("the server to refuse the missing database", || {
            server.log().contains("database \"late\" does not exist")
        });
        server.create_database("late");
    })
    .await
    .unwrap();
    waiting
        .await
        .unwrap()
        .expect("the database appeared within the grace");
}

#[tokio::test]
async fn an_unresolvable_host_times_out_naming_the_name() {
    let db = settings("no-such-host.invalid", 5432, "pulp", "pulp", Some("secret"));
    let error = wait(&db, &policy(Duration::from_secs(2)))
        .await
        .unwrap_err();
    let WaitError::Timeout { last_error, .. } = &error else {
        panic!("expected a timeout, got {error:?}");
    };
    assert_eq!(last_error.kind(), ErrorKind::NameNotResolved);
    assert_eq!(error.exit_code(), 69);
    let message = error.to_string();
    assert!(
        message.contains("no-such-host.invalid could not be resolved"),
        "{message}"
    );
    assert!(message.contains("--postgres-timeout"), "{message}");
}

#[tokio::test]
async fn a_port_nobody_listens_on_times_out_as_unavailable() {
    let port = support::pg::free_port();
    let db = settings("127.0.0.1", port, "pulp", "pulp", Some("secret"));
    let error = wait(&db, &policy(Duration::from_secs(1)))
        .await
        .unwrap_err();
    let WaitError::Timeout { last_error, .. } = &error else {
        panic!("expected a timeout, got {error:?}");
    };
    assert_eq!(last_error.kind(), ErrorKind::Unavailable);
    assert!(error.to_string().contains("connection refused"), "{error}");
}

#[tokio::test]
async fn localhost_is_resolved_from_etc_hosts() {
    let pg = PgCluster::start();
    let mut db = superuser(&pg);
    db.host = Some(Sourced::default("localhost".into()));
    wait(&db, &policy(Duration::from_secs(30)))
        .await
        .expect("localhost resolves and the login succeeds");
}

#[tokio::test]
async fn a_unix_socket_directory_is_used() {
    let pg = PgCluster::start();
    let mut db = superuser(&pg);
    db.host = Some(Sourced::default(pg.socket_dir().display().to_string()));
    // libpq ignores sslmode on a unix socket; so must we.
    db.sslmode = Sourced::default(SslMode::Require);
    let connected = postgres::connect(&db, "test")
        .await
        .expect("login over the unix socket");
    let row = connected
        .client
        .query_one("SELECT inet_client_addr() IS NULL", &[])
        .await
        .unwrap();
    assert!(
        row.get::<_, bool>(0),
        "the session is not a unix socket one"
    );
}

#[tokio::test]
async fn sslmode_require_against_a_server_without_tls_is_a_clear_permanent_error() {
    let pg = PgCluster::start();
    let mut db = superuser(&pg);
    db.sslmode = Sourced::default(SslMode::Require);
    let error = wait(&db, &policy(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert!(matches!(error, WaitError::Permanent { .. }), "{error:?}");
    assert_eq!(error.connect_error().kind(), ErrorKind::Tls);
    assert_eq!(error.exit_code(), 65);
    let message = error.to_string();
    assert!(message.contains("does not offer TLS"), "{message}");
    assert!(message.contains("sslmode"), "{message}");
}

#[tokio::test]
async fn the_password_never_appears_in_an_error() {
    const PASSWORD: &str = "Leaky-Pa55word-zq";
    let pg = PgCluster::start();
    let at = |host: &str, port: u16, database: &str| {
        settings(host, port, database, SUPERUSER, Some(PASSWORD))
    };
    let mut tls_refused = at("127.0.0.1", pg.port(), "postgres");
    tls_refused.sslmode = Sourced::default(SslMode::Require);
    let mut missing = superuser(&pg);
    missing.name = Sourced::default("missing".into());
    missing.password = Some(Sourced::default(Secret::new(PASSWORD)));
    let cases = [
        at("127.0.0.1", pg.port(), "postgres"),
        at("127.0.0.1", support::pg::free_port(), "postgres"),
        at("no-such-host.invalid", 5432, "postgres"),
        tls_refused,
    ];
    let policy = WaitPolicy {
        missing_database_grace: Duration::ZERO,
        ..policy(Duration::from_secs(1))
    };
    for db in cases.iter().chain([&missing]) {
        let error = wait(db, &policy).await.unwrap_err();
        for text in [
            error.to_string(),
            format!("{error:?}"),
            error.connect_error().to_string(),
            format!("{:?}", error.connect_error()),
        ] {
            assert!(!text.contains(PASSWORD), "the password leaked: {text}");
        }
        let connect_error = postgres::connect(db, "test").await.err().unwrap();
        assert!(!format!("{connect_error} {connect_error:?}").contains(PASSWORD));
    }
    assert!(!format!("{missing:?}").contains(PASSWORD));
}

#[tokio::test]
async fn a_session_receives_its_notifications() {
    let pg = PgCluster::start();
    let mut connected = postgres::connect(&superuser(&pg), "test")
        .await
        .expect("login");
    connected
        .client
        .batch_execute("LISTEN pulp_test; NOTIFY pulp_test, 'hello'")
        .await
        .unwrap();
    let notification = tokio::time::timeout(LIMIT, connected.notifications.recv())
        .await
        .expect("a notification within the limit")
        .expect("the channel is open");
    assert_eq!(notification.channel(), "pulp_test");
    assert_eq!(notification.payload(), "hello");
    // The channel ends with the connection.
    drop(connected.client);
    let end = tokio::time::timeout(LIMIT, connected.notifications.recv())
        .await
        .expect("the channel closes within the limit");
    assert!(end.is_none());
}

/// A CA, a server certificate it signed for `localhost`, and an unrelated CA.
struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    fn new() -> Certificates {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let output = std::process::Command::new("openssl")
                .current_dir(dir.path())
                .args(args)
                .output()
                .unwrap_or_else(|error| {
                    panic!(
                        "openssl is needed for the TLS tests ({error}): install it \
                         (apt-get install openssl) and rerun"
                    )
                });
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        for ca in ["ca", "other-ca"] {
            let key = format!("{ca}.key");
            let pem = format!("{ca}.pem");
            let subject = format!("/CN=test {ca}");
            let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &pem, "-subj", &subject]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            openssl(&args);
        }
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let mut args = vec!["req", "-nodes"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&args);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        Certificates { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn start_with_tls(certificates: &Certificates) -> PgCluster {
    let pg = PgCluster::init_only();
    let read = |name: &str| std::fs::read(certificates.path(name)).unwrap();
    pg.write_private_file("server.crt", &read("server.pem"));
    pg.write_private_file("server.key", &read("server.key"));
    pg.configure("ssl = on");
    pg.start_now();
    pg
}

fn with_tls(pg: &PgCluster, host: &str, mode: SslMode, root: Option<&Path>) -> DatabaseSettings {
    let mut db = superuser(pg);
    db.host = Some(Sourced::default(host.into()));
    db.sslmode = Sourced::default(mode);
    db.sslrootcert = root.map(|path| Sourced::default(path.to_path_buf()));
    db
}

async fn uses_tls(db: &DatabaseSettings) -> bool {
    let connected = postgres::connect(db, "test")
        .await
        .unwrap_or_else(|error| panic!("{:?}: {error}", db.sslmode.value));
    connected
        .client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn sslmodes_against_a_server_with_tls() {
    let certificates = Certificates::new();
    let pg = start_with_tls(&certificates);
    let ca = certificates.path("ca.pem");
    let other_ca = certificates.path("other-ca.pem");
    let ip = "127.0.0.1";

    // No verification: a certificate from an unknown CA is fine, TLS is used.
    assert!(!uses_tls(&with_tls(&pg, ip, SslMode::Disable, None)).await);
    assert!(uses_tls(&with_tls(&pg, ip, SslMode::Prefer, None)).await);
    assert!(uses_tls(&with_tls(&pg, ip, SslMode::Require, None)).await);
    // verify-ca checks the chain only: 127.0.0.1 is not in the certificate.
    assert!(uses_tls(&with_tls(&pg, ip, SslMode::VerifyCa, Some(&ca))).await);
    // verify-full checks the name too.
    assert!(uses_tls(&with_tls(&pg, "localhost", SslMode::VerifyFull, Some(&ca))).await);

    let quick = policy(Duration::from_secs(60));
    for db in [
        with_tls(&pg, ip, SslMode::VerifyFull, Some(&ca)),
        with_tls(&pg, ip, SslMode::VerifyCa, Some(&other_ca)),
        with_tls(&pg, "localhost", SslMode::VerifyFull, Some(&other_ca)),
    ] {
        let error = wait(&db, &quick).await.unwrap_err();
        assert!(matches!(error, WaitError::Permanent { .. }), "{error:?}");
        assert_eq!(error.connect_error().kind(), ErrorKind::Tls, "{error}");
        assert_eq!(error.exit_code(), 65);
        assert!(error.to_string().contains("sslrootcert"), "{error}");
    }

    let unreadable = certificates.path("no-such-ca.pem");
    let error = wait(
        &with_tls(&pg, ip, SslMode::VerifyCa, Some(&unreadable)),
        &quick,
    )
    .await
    .unwrap_err();
    assert_eq!(error.connect_error().kind(), ErrorKind::Settings, "{error}");
    assert_eq!(error.exit_code(), 78);
    assert!(error.to_string().contains("no-such-ca.pem"), "{error}");
}

/// A TCP server that accepts connections and never says a word.
fn silent_server() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[tokio::test]
async fn a_silent_server_costs_one_connect_timeout_per_attempt() {
    let (_listener, port) = silent_server();
    let mut db = settings("127.0.0.1", port, "pulp", "pulp", Some("secret"));
    db.connect_timeout = Some(Sourced::default(2));
    let error = wait(&db, &policy(Duration::from_secs(3)))
        .await
        .unwrap_err();
    let WaitError::Timeout { last_error, .. } = &error else {
        panic!("expected a timeout, got {error:?}");
    };
    assert_eq!(last_error.kind(), ErrorKind::Unavailable);
    assert!(last_error.reason().contains("no answer within"), "{error}");
}

#[tokio::test]
async fn dropping_the_wait_closes_its_connection() {
    use std::io::Read;
    let (listener, port) = silent_server();
    let db = settings("127.0.0.1", port, "pulp", "pulp", Some("secret"));
    let waiting = tokio::spawn(async move { wait(&db, &policy(LIMIT)).await });
    let accepted = tokio::task::spawn_blocking(move || listener.accept().unwrap().0)
        .await
        .unwrap();
    // The wait is now inside a login attempt on that connection: cancel it.
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    let closed = tokio::task::spawn_blocking(move || {
        let mut socket = accepted;
        socket.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buffer = [0u8; 1024];
        // The startup (or TLS) request may come first; then the end of the stream.
        loop {
            match socket.read(&mut buffer) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap();
    assert!(
        closed,
        "the connection stayed open after the wait was dropped"
    );
}
