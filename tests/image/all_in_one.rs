//! The all-in-one image (images/all-in-one.toml): whole Pulp from one `run` with a volume and
//! one port, its own PostgreSQL under `supervise`. Built once per engine, on the same local
//! bases as the minimal image (tests/tools/image.sh build all-in-one), cached the same way.
//!
//! One test walks a volume's life: the first start makes the database, the secrets and the
//! admin password (read from the log, never echoed: the container's log tail printed on a
//! failure has that line redacted); status through the one port lists the api, the content app
//! and both workers; a file goes in through the API and comes out of /pulp/content/ on the same
//! port; `stop` ends it with 0 in time, PostgreSQL last with a clean shutdown; a second start on
//! the volume finds the same data and password, migrates nothing and recovers nothing; after
//! `kill -s KILL` PostgreSQL recovers and Pulp comes back.

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    Api, BUILD_LIMIT, Body, COMMAND_LIMIT, Engine, Volume, free_port, http, online, preflight,
    root, run, scratch_dir, test_tag, unique, wait_for,
};

const VARIANT: &str = "all-in-one";
/// The line of the first start that holds the generated password.
const PASSWORD_MARK: &str = "admin password: ";
/// Bound on a start until status lists everything (a fresh volume migrates, ~10-50 s).
const START_LIMIT: Duration = Duration::from_secs(300);

/// The all-in-one image, built once per test binary and engine.
fn image(engine: Engine) -> &'static str {
    static PODMAN: OnceLock<Result<String, String>> = OnceLock::new();
    static DOCKER: OnceLock<Result<String, String>> = OnceLock::new();
    let built = match engine {
        Engine::Podman => &PODMAN,
        Engine::Docker => &DOCKER,
    };
    match built.get_or_init(|| build(engine)) {
        Ok(image) => image,
        Err(error) => panic!("{error}"),
    }
}

fn build(engine: Engine) -> Result<String, String> {
    preflight(engine)?;
    let image = test_tag(VARIANT);
    let log = scratch_dir().join(format!("image-build-{VARIANT}-{}.log", engine.name()));
    let started = Instant::now();
    let output = run(
        std::process::Command::new("bash")
            .arg(root().join("tests/tools/image.sh"))
            .args(["--engine", engine.name(), "build", VARIANT, &image]),
        BUILD_LIMIT,
    );
    std::fs::write(&log, format!("{}\n{}", output.stdout, output.stderr)).unwrap();
    if output.code != Some(0) {
        let tail: Vec<&str> = output.stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "building {image} with {} failed (whole log: {}):\n{}",
            engine.name(),
            log.display(),
            tail.join("\n")
        ));
    }
    eprintln!(
        "image: {image} built with {} in {:?}",
        engine.name(),
        started.elapsed()
    );
    Ok(image)
}

/// The all-in-one container: removed when dropped, its log tail printed on a failure with
/// the password line left out.
struct AllInOne {
    engine: Engine,
    name: String,
    port: u16,
}

impl AllInOne {
    /// `run -d -p PORT:8080 -v VOLUME:/var/lib/pulp IMAGE`, nothing else.
    fn run(engine: Engine, volume: &Volume) -> AllInOne {
        AllInOne::run_with(engine, volume, &[])
    }

    /// The same `run` with `options` before the image.
    fn run_with(engine: Engine, volume: &Volume, options: &[&str]) -> AllInOne {
        let name = unique("all-in-one");
        // From the kernel, below 32768 on these machines' default ephemeral range too.
        let port = free_port();
        run(
            engine
                .command()
                .args(["run", "--detach", "--name", &name, "--publish"])
                .arg(format!("{port}:8080"))
                .arg("--volume")
                .arg(volume.mount("/var/lib/pulp"))
                .args(options)
                .arg(image(engine)),
            COMMAND_LIMIT,
        )
        .ok("starting the all-in-one container");
        AllInOne { engine, name, port }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn logs(&self) -> String {
        let output = run(
            self.engine.command().args(["logs", &self.name]),
            COMMAND_LIMIT,
        );
        format!("{}{}", output.stdout, output.stderr)
    }

    fn engine_says(&self, words: &[&str]) {
        run(
            self.engine.command().args(words).arg(&self.name),
            COMMAND_LIMIT,
        )
        .ok(&words.join(" "));
    }

    fn state(&self) -> String {
        run(
            self.engine.command().args([
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.ExitCode}}",
                &self.name,
            ]),
            COMMAND_LIMIT,
        )
        .ok("inspect")
        .stdout
        .trim()
        .to_string()
    }

    /// Status through the one port, until it lists the api, the content app and two workers.
    fn wait_until_whole(&self, limit: Duration) -> Value {
        let url = format!("{}/pulp/api/v3/status/", self.origin());
        wait_for(
            "status on the one port to list the api, the content app and two workers",
            limit,
            || {
                let (code, body) = http("GET", &url, None, Body::Empty);
                let status: Value = serde_json::from_slice(&body).ok().filter(|_| code == 200)?;
                // After a kill the apps of the last run stay listed until their heartbeats
                // expire: the content app must answer through the port as well.
                let content = format!("{}/pulp/content/", self.origin());
                if http("GET", &content, None, Body::Empty).0 != 200 {
                    return None;
                }
                // Each gunicorn worker registers (PULP_API_WORKERS, PULP_CONTENT_WORKERS: 2).
                (!online(&status, "online_api_apps").is_empty()
                    && !online(&status, "online_content_apps").is_empty()
                    && online(&status, "online_workers").len() == 2)
                    .then_some(status)
            },
        )
    }

    /// `stop -t 30`, as the README tells users (the image's stop_grace is the default 25 s):
    /// it must end with 0 before it.
    fn stop_in_time(&self) {
        let grace = Duration::from_secs(30);
        let stop = run(
            &mut self.engine.stop(&self.name, grace),
            grace + COMMAND_LIMIT,
        )
        .ok("stop");
        assert!(
            stop.elapsed < grace,
            "the all-in-one took {:?} to stop",
            stop.elapsed
        );
        assert_eq!(self.state(), "exited 0", "{}", redacted(&self.logs()));
    }
}

impl Drop for AllInOne {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = redacted(&self.logs());
            let tail: Vec<&str> = logs.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!("--- last lines of {}:\n{}", self.name, tail.join("\n"));
        }
        let _ = self
            .engine
            .remove_at_once()
            .arg(&self.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The log without the line that holds the admin password.
fn redacted(logs: &str) -> String {
    logs.lines()
        .map(|line| match line.find(PASSWORD_MARK) {
            Some(at) => format!("{}{PASSWORD_MARK}<redacted>", &line[..at]),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The password the first start printed; panics (without it) when there is not exactly one.
fn admin_password(logs: &str) -> String {
    let found: Vec<&str> = logs
        .lines()
        .filter_map(|line| line.split_once(PASSWORD_MARK).map(|(_, rest)| rest.trim()))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "the admin password is printed exactly once:\n{}",
        redacted(logs)
    );
    assert!(found[0].len() >= 16, "a generated password is long");
    found[0].to_string()
}

/// A file in through the API, published and distributed as `name`; its URL on the one port
/// and its bytes.
fn upload(api: &Api, name: &str) -> (String, String) {
    let repository = api.call(
        "POST",
        "/pulp/api/v3/repositories/file/file/",
        Body::Json(json!({"name": name})),
    );
    let repository_href = repository["pulp_href"].as_str().unwrap().to_string();
    let file = tempfile::NamedTempFile::new().unwrap();
    let payload = format!("all in one {name} {}\n", std::process::id());
    std::fs::write(file.path(), &payload).unwrap();
    api.task(api.call(
        "POST",
        "/pulp/api/v3/content/file/files/",
        Body::Form(&[
            ("file", format!("@{}", file.path().display())),
            ("relative_path", "hello.txt".into()),
            ("repository", repository_href.clone()),
        ]),
    ));
    let publication = api.task(api.call(
        "POST",
        "/pulp/api/v3/publications/file/file/",
        Body::Json(json!({"repository": repository_href})),
    ));
    let distribution = api.task(api.call(
        "POST",
        "/pulp/api/v3/distributions/file/file/",
        Body::Json(json!({"name": name, "base_path": name, "publication": publication[0]})),
    ));
    let base_url = api.call("GET", &distribution[0], Body::Empty)["base_url"]
        .as_str()
        .unwrap()
        .to_string();
    // No CONTENT_ORIGIN in the image: the URL is relative to whatever port reached it.
    assert!(base_url.starts_with("/pulp/content/"), "{base_url}");
    let url = format!("{}{}hello.txt", api.origin, base_url);
    (url, payload)
}

fn fetch(url: &str) -> String {
    let (code, body) = http("GET", url, None, Body::Empty);
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(code, 200, "GET {url}: {body}");
    body
}

/// The admin can log in (an authenticated list), and a wrong password cannot.
fn logs_in(origin: &str, password: &str) -> bool {
    let url = format!("{origin}/pulp/api/v3/users/?username=admin");
    let (code, _) = http("GET", &url, Some(&format!("admin:{password}")), Body::Empty);
    code == 200
}

/// What the container's log says since `from` (the log of every start accumulates).
fn since(logs: &str, from: usize) -> &str {
    logs.get(from..).unwrap_or("")
}

pub(super) fn a_volumes_life_first_start_stop_restart_and_kill(engine: Engine) {
    image(engine);
    let started = Instant::now();
    let volume = Volume::new(engine);

    // First start: everything is made in the volume.
    let first = AllInOne::run(engine, &volume);
    first.wait_until_whole(START_LIMIT);
    let fresh = Instant::now() - started;
    let logs = first.logs();
    let password = admin_password(&logs);
    assert!(
        logs.contains("creating the PostgreSQL cluster"),
        "{}",
        redacted(&logs)
    );
    assert!(logs.contains("start phase done"), "{}", redacted(&logs));
    assert!(
        logs_in(&first.origin(), &password),
        "the admin cannot log in"
    );
    assert!(
        !logs_in(&first.origin(), "not-the-password"),
        "a wrong password logs in"
    );
    let api = Api {
        origin: first.origin(),
        auth: format!("admin:{password}"),
    };
    let (url, payload) = upload(&api, "aio");
    assert_eq!(fetch(&url), payload);
    // The secrets stay in the volume, readable by the image's user alone.
    let modes = run(
        engine.command().args([
            "exec",
            &first.name,
            "sh",
            "-c",
            "cd /var/lib/pulp/all-in-one && stat -c '%a %n' secret-key \
             database_fields.symmetric.key db-password admin-password settings.py",
        ]),
        COMMAND_LIMIT,
    )
    .ok("stat the secrets");
    for line in modes.stdout.lines() {
        assert!(line.starts_with("600 "), "{}", modes.stdout);
    }
    assert_eq!(modes.stdout.lines().count(), 5, "{}", modes.stdout);

    // stop: Pulp first, PostgreSQL last with a clean shutdown, exit 0 in time.
    first.stop_in_time();
    let logs = first.logs();
    let shut_down = logs
        .find("database system is shut down")
        .unwrap_or_else(|| panic!("no clean PostgreSQL shutdown:\n{}", redacted(&logs)));
    for pulp in [
        "api exited",
        "content exited",
        "worker-1 exited",
        "worker-2 exited",
    ] {
        let at = logs
            .find(pulp)
            .unwrap_or_else(|| panic!("no '{pulp}':\n{}", redacted(&logs)));
        assert!(at < shut_down, "{pulp} after PostgreSQL ended");
    }
    let first_log_length = logs.len();

    // Second start on the same volume: same data, same password, nothing migrated or recovered.
    let restarted = Instant::now();
    first.engine_says(&["start"]);
    first.wait_until_whole(START_LIMIT);
    let restart = restarted.elapsed();
    let all = first.logs();
    let logs = since(&all, first_log_length);
    assert!(
        !logs.contains("was interrupted") && !logs.contains("automatic recovery"),
        "crash recovery after a clean stop:\n{}",
        redacted(logs)
    );
    assert!(
        !logs.contains(PASSWORD_MARK),
        "the password is printed again"
    );
    assert!(
        !logs.contains("Applying "),
        "a migration ran on the second start:\n{}",
        redacted(logs)
    );
    assert!(
        !logs.contains("creating the PostgreSQL cluster"),
        "{}",
        redacted(logs)
    );
    assert!(logs_in(&first.origin(), &password), "the password changed");
    assert_eq!(fetch(&url), payload);

    // kill -s KILL: the next start recovers PostgreSQL and Pulp comes back.
    first.engine_says(&["kill", "--signal", "KILL"]);
    wait_for("the killed container to be exited", COMMAND_LIMIT, || {
        first.state().starts_with("exited").then_some(())
    });
    let killed_log_length = first.logs().len();
    first.engine_says(&["start"]);
    first.wait_until_whole(START_LIMIT);
    let all = first.logs();
    let logs = since(&all, killed_log_length);
    assert!(
        logs.contains("was interrupted") || logs.contains("automatic recovery"),
        "PostgreSQL did not recover after the kill:\n{}",
        redacted(logs)
    );
    assert!(logs_in(&first.origin(), &password), "the password changed");
    assert_eq!(fetch(&url), payload);
    first.stop_in_time();
    eprintln!(
        "image: all-in-one under {}: fresh volume to whole status {fresh:?}, restart {restart:?}, \
         the whole life {:?}",
        engine.name(),
        started.elapsed()
    );
}

/// As root (it hands the volume to the image's user: PostgreSQL refuses root) and as an
/// arbitrary UID in group 0 with a read-only root and a tmpfs /tmp (nss_wrapper gives initdb
/// a user name), each on a fresh volume: whole, logged in, stopped with 0.
pub(super) fn as_root_and_as_an_arbitrary_uid_with_a_read_only_root(engine: Engine) {
    image(engine);
    let arbitrary = format!("{}:0", super::ARBITRARY_UID);
    for (what, options) in [
        ("root", vec!["--user", "0:0"]),
        (
            "an arbitrary UID",
            vec![
                "--user",
                arbitrary.as_str(),
                "--read-only",
                "--tmpfs",
                "/tmp",
            ],
        ),
    ] {
        let volume = Volume::new(engine);
        let pulp = AllInOne::run_with(engine, &volume, &options);
        pulp.wait_until_whole(START_LIMIT);
        let password = admin_password(&pulp.logs());
        assert!(logs_in(&pulp.origin(), &password), "{what}: no login");
        let owner = run(
            engine.command().args([
                "exec",
                &pulp.name,
                "stat",
                "-c",
                "%u",
                "/var/lib/pulp/pgsql/data",
            ]),
            COMMAND_LIMIT,
        )
        .ok("stat the cluster");
        let expected = if what == "root" {
            "700"
        } else {
            super::ARBITRARY_UID
        };
        assert_eq!(owner.stdout.trim(), expected, "{what}: the cluster's owner");
        pulp.stop_in_time();
    }
}

/// An external database setting turns the embedded PostgreSQL off: no cluster is made, and
/// `supervise` waits for that database (here one that is not there: exit 69 after the timeout).
pub(super) fn an_external_database_turns_the_embedded_postgres_off(engine: Engine) {
    image(engine);
    let volume = Volume::new(engine);
    let output = run(
        engine
            .command()
            .args(["run", "--rm", "--volume"])
            .arg(volume.mount("/var/lib/pulp"))
            .args([
                "--env",
                "PULP_DATABASES__default__HOST=192.0.2.1",
                "--env",
                "PULP_ENTRYPOINT_POSTGRES_TIMEOUT=3s",
                image(engine),
            ]),
        COMMAND_LIMIT,
    );
    let logs = redacted(&format!("{}{}", output.stdout, output.stderr));
    assert_eq!(output.code, Some(69), "{logs}");
    assert!(logs.contains("the embedded PostgreSQL is off"), "{logs}");
    assert!(logs.contains("192.0.2.1"), "{logs}");
    assert!(!logs.contains("creating the PostgreSQL cluster"), "{logs}");
    let listed = run(
        engine
            .command()
            .args(["run", "--rm", "--entrypoint", "ls", "--volume"])
            .arg(volume.mount("/var/lib/pulp"))
            .args([image(engine), "/var/lib/pulp"]),
        COMMAND_LIMIT,
    )
    .ok("ls the volume");
    assert!(!listed.stdout.contains("pgsql"), "{}", listed.stdout);
}

mod podman {
    #[test]
    fn a_volumes_life_first_start_stop_restart_and_kill() {
        super::a_volumes_life_first_start_stop_restart_and_kill(super::Engine::Podman)
    }

    #[test]
    fn as_root_and_as_an_arbitrary_uid_with_a_read_only_root() {
        super::as_root_and_as_an_arbitrary_uid_with_a_read_only_root(super::Engine::Podman)
    }

    #[test]
    fn an_external_database_turns_the_embedded_postgres_off() {
        super::an_external_database_turns_the_embedded_postgres_off(super::Engine::Podman)
    }
}

mod docker {
    #[test]
    fn a_volumes_life_first_start_stop_restart_and_kill() {
        super::a_volumes_life_first_start_stop_restart_and_kill(super::Engine::Docker)
    }

    #[test]
    fn as_root_and_as_an_arbitrary_uid_with_a_read_only_root() {
        super::as_root_and_as_an_arbitrary_uid_with_a_read_only_root(super::Engine::Docker)
    }

    #[test]
    fn an_external_database_turns_the_embedded_postgres_off() {
        super::an_external_database_turns_the_embedded_postgres_off(super::Engine::Docker)
    }
}
