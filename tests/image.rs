//! The image, in real containers, under both engines people use: podman and Docker Engine
//! (both run as root here, as on CI).
//!
//! Every test runs once per engine, as `podman::NAME` and `docker::NAME` (`cargo test --test
//! image docker::` runs one engine's). The first test of an engine to need the image builds it
//! once for the whole binary: local base images made with debootstrap (no registry can be
//! reached), then the root Containerfile through images/build.py, by tests/tools/image.sh
//! (`--engine docker`: BuildKit, the toolchain copied into the builder base; see there). Its
//! caches (the rootfs tarballs, each engine's layer cache, the builder's cargo cache mount) make
//! later runs take seconds. Then:
//! - the binary in the image is static and small, and alone in a `FROM scratch` image it runs;
//! - the image's user, directories and links are what deployments expect, also as an
//!   arbitrary UID in group 0 with a read-only root filesystem;
//! - with an unreachable database it says so in one line and exits 69 after the timeout;
//! - the smoke test: pulp-api, pulp-content and two pulp-worker containers from the one image
//!   on a fresh PostgreSQL, until status lists them all; a file goes in through the API and
//!   comes out of the content app; an orphan is reaped; `stop` ends each in time;
//! - all in one container: `supervise` runs the api, the content app and a worker until status
//!   lists them, `pulp-entrypoint status` shows them, `stop` ends it in time with 0;
//! - the replays of pulp-operator's and pulp-oci-images' specs (below).
//!
//! All of them under both engines: the quick checks cost a second or two each, and the
//! differences that matter to users (a mount over a hard link, what a new volume holds and who
//! owns it, `--user`, `stop`, host networking, PID 1) are in them. What the engines do
//! differently, and how the tests meet it: neither starts an init unless told (`--init`), so the
//! entrypoint is PID 1 under both; `stop` gives 10 s by default under both, and the tests pass
//! their own grace, as the README tells users to; `docker rm --force` kills at once where podman
//! needs `--time 0`; docker looks for a `Dockerfile` unless given `--file`; with `--network
//! host` every container has the host's name under both (Pulp's `{pid}@{hostname}` would
//! collide: the entrypoint's names are unique); docker's containers get the daemon's open-file
//! limit, podman's the 1024 of tests/tools/containers.conf.
//!
//! Missing tools, or a docker that cannot reach its daemon, are a failure that says what to do,
//! never a skip.

use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "image/all_in_one.rs"]
mod all_in_one;
#[path = "image/compose.rs"]
mod compose;
#[path = "image/kube.rs"]
mod kube;

/// The variant the image is built from (images/minimal.toml).
const VARIANT: &str = "minimal";
/// An unprivileged UID the image does not know, as OpenShift assigns.
const ARBITRARY_UID: &str = "123456";
/// Bound on any single container command that is not a build.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);
/// Bound on building the image (first run on a fresh machine: debootstrap, cargo, pip).
const BUILD_LIMIT: Duration = Duration::from_secs(900);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scratch_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// A name no other test process on the machine uses.
fn unique(what: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "pe-test-{}-{}-{what}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The tag of an image the tests build, `localhost/pulp-entrypoint-test:WHAT-CHECKOUT`: each
/// checkout on the machine (worktrees build different sources) has its own, in each engine's
/// store, so that two test runs never replace each other's image.
fn test_tag(what: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    root().hash(&mut hasher);
    format!(
        "localhost/pulp-entrypoint-test:{what}-{:012x}",
        hasher.finish() & 0xffff_ffff_ffff
    )
}

/// The container engine a test runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    Podman,
    Docker,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
        }
    }

    /// The engine's command line; podman with the project's configuration (runc, ulimits).
    fn command(self) -> Command {
        let mut command = Command::new(self.name());
        if self == Engine::Podman {
            command.env(
                "CONTAINERS_CONF",
                root().join("tests/tools/containers.conf"),
            );
        }
        command
    }

    /// `rm --force` without a grace period: podman's waits 10 s unless `--time 0`; docker's
    /// kills at once (and has no `--time`).
    fn remove_at_once(self) -> Command {
        let mut command = self.command();
        command.args(["rm", "--force"]);
        if self == Engine::Podman {
            command.args(["--time", "0"]);
        }
        command
    }

    /// `stop` with a grace period: SIGTERM, SIGKILL after `grace` (`-t` in both CLIs).
    fn stop(self, container: &str, grace: Duration) -> Command {
        let mut command = self.command();
        command
            .args(["stop", "-t"])
            .arg(grace.as_secs().to_string())
            .arg(container);
        command
    }

    /// The image, built once per test binary and engine; every test that needs it fails if
    /// the build did.
    fn image(self) -> &'static str {
        static PODMAN: OnceLock<Result<String, String>> = OnceLock::new();
        static DOCKER: OnceLock<Result<String, String>> = OnceLock::new();
        let built = match self {
            Engine::Podman => &PODMAN,
            Engine::Docker => &DOCKER,
        };
        match built.get_or_init(|| build_image(self)) {
            Ok(image) => image,
            Err(error) => panic!("{error}"),
        }
    }
}

/// What a finished command did.
#[derive(Debug)]
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Output {
    fn ok(self, what: &str) -> Output {
        assert_eq!(self.code, Some(0), "{what} failed:\n{self}");
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Run to completion, output in files (a pipe left open by a grandchild cannot hang us);
/// killed and reported as a failure when it takes longer than `limit`.
fn run(command: &mut Command, limit: Duration) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {limit:?}:\n{}\n{}",
                read_all(&out),
                read_all(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        code: status.code(),
        stdout: read_all(&out),
        stderr: read_all(&err),
        elapsed: started.elapsed(),
    }
}

fn read_all(file: &File) -> String {
    use std::io::{Read, Seek};
    let mut file = file;
    let mut text = String::new();
    file.rewind().unwrap();
    file.read_to_string(&mut text).unwrap();
    text
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// What the image tests need on the host under `engine`, or the reason they cannot run.
fn preflight(engine: Engine) -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(format!(
            "the image tests run {} and debootstrap as root: run tests/run.sh as root (as CI does)",
            engine.name()
        ));
    }
    let engine_tools: &[&str] = match engine {
        Engine::Podman => &["podman", "runc"],
        // rustup: the builder base gets the host's toolchain (tests/tools/image.sh).
        Engine::Docker => &["docker", "rustup"],
    };
    let missing: Vec<&str> = engine_tools
        .iter()
        .copied()
        .chain(["debootstrap", "curl", "ldd", "initdb"])
        .filter(|tool| !on_path(tool))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing {} on PATH: run tests/run.sh, which installs them (tests/tools/deps.sh; \
             Docker Engine comes with the project's machines: Debian's docker.io)",
            missing.join(", ")
        ));
    }
    if engine == Engine::Docker {
        let info = run(
            engine
                .command()
                .args(["info", "--format", "{{.ServerVersion}}"]),
            COMMAND_LIMIT,
        );
        if info.code != Some(0) {
            return Err(format!(
                "docker cannot reach the Docker Engine daemon (start it: `systemctl start docker`, \
                 or `dockerd &` where there is no systemd):\n{info}"
            ));
        }
    }
    Ok(())
}

fn build_image(engine: Engine) -> Result<String, String> {
    preflight(engine)?;
    let image = test_tag(VARIANT);
    let log = scratch_dir().join(format!("image-build-{}.log", engine.name()));
    let started = Instant::now();
    let output = run(
        Command::new("bash")
            .arg(root().join("tests/tools/image.sh"))
            .args(["--engine", engine.name(), "build", VARIANT, &image]),
        BUILD_LIMIT,
    );
    fs::write(&log, format!("{}\n{}", output.stdout, output.stderr)).unwrap();
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

/// The binary as the image holds it, copied out once per engine.
fn binary_from_image(engine: Engine) -> &'static Path {
    static PODMAN: OnceLock<PathBuf> = OnceLock::new();
    static DOCKER: OnceLock<PathBuf> = OnceLock::new();
    let copied = match engine {
        Engine::Podman => &PODMAN,
        Engine::Docker => &DOCKER,
    };
    copied.get_or_init(|| {
        let image = engine.image();
        let path = scratch_dir().join(format!("image-pulp-entrypoint-{}", engine.name()));
        let container = unique("copy");
        run(
            engine
                .command()
                .args(["create", "--name", &container, image]),
            COMMAND_LIMIT,
        )
        .ok("create");
        let copied = run(
            engine
                .command()
                .arg("cp")
                .arg(format!("{container}:/usr/bin/pulp-entrypoint"))
                .arg(&path),
            COMMAND_LIMIT,
        );
        run(engine.command().args(["rm", &container]), COMMAND_LIMIT).ok("rm");
        copied.ok("copying the binary out of the image");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    })
}

/// Whether an ELF file asks for a program interpreter (a dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not a 64-bit ELF file");
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == PT_INTERP
    })
}

fn binary_in_the_image_is_static_and_small(engine: Engine) {
    let binary = binary_from_image(engine);
    let bytes = fs::read(binary).unwrap();
    assert!(
        !has_interpreter(&bytes),
        "the binary asks for a dynamic loader"
    );
    // A plain static executable (not static-pie): no loader, no shared library.
    let ldd = run(Command::new("ldd").arg(binary), COMMAND_LIMIT);
    let said = format!("{}{}", ldd.stdout, ldd.stderr);
    assert!(said.contains("not a dynamic executable"), "ldd: {said}");
    let size = bytes.len();
    eprintln!("image: stripped static binary is {size} bytes");
    assert!(
        size < 5 * 1024 * 1024,
        "the binary is {size} bytes, over 5 MiB"
    );
}

fn binary_runs_alone_in_a_scratch_image(engine: Engine) {
    let binary = binary_from_image(engine);
    let context = tempfile::tempdir().unwrap();
    fs::copy(binary, context.path().join("pulp-entrypoint")).unwrap();
    fs::write(
        context.path().join("Containerfile"),
        "FROM scratch\nCOPY pulp-entrypoint /pulp-entrypoint\nENTRYPOINT [\"/pulp-entrypoint\"]\n",
    )
    .unwrap();
    let tag = &test_tag("scratch");
    run(
        engine
            .command()
            .args(["build", "--quiet", "--tag", tag, "--file"])
            // docker looks for a Dockerfile unless told.
            .arg(context.path().join("Containerfile"))
            .arg(context.path()),
        COMMAND_LIMIT,
    )
    .ok("building the scratch image");
    let version = run(
        engine.command().args(["run", "--rm", tag, "--version"]),
        COMMAND_LIMIT,
    )
    .ok("--version in a scratch image");
    assert!(version.stdout.starts_with("pulp-entrypoint "), "{version}");
    // The PID 1 duties need nothing from the image either: the entrypoint runs itself as
    // the child and passes its exit code on.
    let child = run(
        engine.command().args([
            "run",
            "--rm",
            tag,
            "run",
            "--",
            "/pulp-entrypoint",
            "--bogus",
        ]),
        COMMAND_LIMIT,
    );
    assert_eq!(child.code, Some(64), "{child}");

    // A host name from /etc/hosts, with no libc resolver, NSS module or nsswitch.conf in the
    // image: the entrypoint resolves it itself and logs in to a real PostgreSQL.
    let pg = Postgres::start();
    let site = Site::new(&pg, "http://127.0.0.1:24816");
    let wait = run(
        engine
            .command()
            .args(["run", "--rm", "--network", "host"])
            .args(["--add-host", "pulp-db.image-test:127.0.0.1"])
            .args(site.mounts())
            .args(["--env", "PULP_DATABASES__default__HOST=pulp-db.image-test"])
            .args(["--env", "PULP_ENTRYPOINT_POSTGRES_TIMEOUT=20s"])
            .args([tag, "wait-postgres"]),
        COMMAND_LIMIT,
    );
    assert_eq!(wait.code, Some(0), "{wait}");
    assert!(wait.stderr.contains("pulp-db.image-test"), "{wait}");
}

/// A named volume of the engine, removed when dropped.
struct Volume {
    engine: Engine,
    name: String,
}

impl Volume {
    fn new(engine: Engine) -> Volume {
        let name = unique("vol");
        run(
            engine.command().args(["volume", "create", &name]),
            COMMAND_LIMIT,
        )
        .ok("volume create");
        Volume { engine, name }
    }

    fn mount(&self, at: &str) -> String {
        format!("{}:{at}", self.name)
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = self
            .engine
            .command()
            .args(["volume", "rm", "--force", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn image_config_user_and_directories(engine: Engine) {
    let image = engine.image();
    let inspect = run(
        engine.command().args([
            "image",
            "inspect",
            "--format",
            "{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Config.User}}",
            image,
        ]),
        COMMAND_LIMIT,
    )
    .ok("image inspect");
    assert_eq!(
        inspect.stdout.trim(),
        r#"["/usr/bin/pulp-entrypoint"] ["pulp-api"] 700:0"#
    );
    let layout = run(
        engine.command().args([
            "run",
            "--rm",
            image,
            "run",
            "--",
            "sh",
            "-c",
            "id -u; id -g; echo $HOME; stat -c '%n %u:%g %a' /var/lib/pulp/media /var/lib/pulp/tmp /var/lib/pulp/assets; for c in pulpcore-api pulpcore-content pulpcore-worker pulpcore-manager; do command -v $c; done",
        ]),
        COMMAND_LIMIT,
    )
    .ok("the default user's view");
    let lines: Vec<&str> = layout.stdout.lines().collect();
    assert_eq!(
        lines[..6],
        [
            "700",
            "0",
            "/var/lib/pulp",
            "/var/lib/pulp/media 700:0 2775",
            "/var/lib/pulp/tmp 700:0 2775",
            "/var/lib/pulp/assets 700:0 2775",
        ],
        "{layout}"
    );
    assert_eq!(
        lines.len(),
        10,
        "a pulpcore command is not on PATH: {layout}"
    );
}

fn arbitrary_uid_in_group_0_with_a_read_only_root(engine: Engine) {
    let image = engine.image();
    let volume = Volume::new(engine);
    // Writes go to the volume (files stay in group 0: setgid directories) and to /tmp,
    // nowhere else; the script's exit code comes back through the entrypoint.
    let script = r#"
        set -e
        echo "$(id -u):$(id -g)"
        for dir in /var/lib/pulp/media /var/lib/pulp/tmp /var/lib/pulp/assets /tmp; do
            echo probe > "$dir/probe"
        done
        stat -c '%g' /var/lib/pulp/media/probe
        if echo x > /etc/pulp/probe 2>/dev/null || echo x > /usr/bin/probe 2>/dev/null; then
            echo "root filesystem is writable"; exit 1
        fi
        exit 7
    "#;
    let output = run(
        engine
            .command()
            .args(["run", "--rm", "--read-only", "--user"])
            .arg(format!("{ARBITRARY_UID}:0"))
            .args(["--volume", &volume.mount("/var/lib/pulp")])
            .args(["--tmpfs", "/tmp", image, "run", "--", "sh", "-c", script]),
        COMMAND_LIMIT,
    );
    assert_eq!(output.code, Some(7), "{output}");
    assert_eq!(
        output.stdout.lines().collect::<Vec<_>>(),
        [format!("{ARBITRARY_UID}:0").as_str(), "0"],
        "{output}"
    );
}

/// The paths of container-assets/links.txt.
fn links() -> Vec<String> {
    fs::read_to_string(root().join("container-assets/links.txt"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn links_cover_every_name_the_binary_answers_to(engine: Engine) {
    let links = links();
    let names: Vec<&str> = links
        .iter()
        .map(|link| link.rsplit('/').next().unwrap())
        .collect();
    for (name, _) in pulp_entrypoint::cli::LINK_NAMES {
        assert!(names.contains(name), "links.txt lacks {name}");
    }
    // The legacy readiness probe path of the contract, whether or not the binary knows it yet.
    assert!(names.contains(&"readyz.py"), "links.txt lacks readyz.py");

    // Hard links to the binary (the same inode), not symbolic links: a subPath mount over
    // one of these paths must replace that path, not the binary (see
    // `a_subpath_mount_over_a_legacy_path_leaves_the_binary_alone`).
    let image = engine.image();
    let check = format!(
        "for link in /usr/bin/pulp-entrypoint {}; do \
         if [ -L \"$link\" ]; then echo \"$link symlink\"; else stat -c '%n %i %h' \"$link\"; fi; done",
        links.join(" ")
    );
    let output = run(
        engine.command().args([
            "run",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            &check,
        ]),
        COMMAND_LIMIT,
    )
    .ok("reading the links");
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), links.len() + 1, "{output}");
    let binary_inode = lines[0].split_whitespace().nth(1).unwrap().to_string();
    let expected: Vec<String> = std::iter::once("/usr/bin/pulp-entrypoint".to_string())
        .chain(links.iter().cloned())
        .map(|path| format!("{path} {binary_inode} {}", links.len() + 1))
        .collect();
    assert_eq!(lines, expected, "not all hard links to the binary");

    // A link acts as its name: the removed role says what to run instead.
    let removed = run(
        engine.command().args([
            "run",
            "--rm",
            "--entrypoint",
            "/usr/bin/pulp-resource-manager",
            image,
        ]),
        COMMAND_LIMIT,
    );
    assert_eq!(removed.code, Some(64), "{removed}");
    assert!(removed.stderr.contains("pulp-worker"), "{removed}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A throwaway PostgreSQL on the host (tests/tools/throwaway.sh: role and database `pulp`,
/// password login on 127.0.0.1), which containers reach with `--network host`.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    password: String,
}

impl Postgres {
    fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        // PostgreSQL runs as the postgres user, who must reach its data directory.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port();
        run(
            Command::new("bash")
                .args(["-c", r#"set -e; source "$0"; throwaway_postgres "$1" "$2""#])
                .arg(root().join("tests/tools/throwaway.sh"))
                .arg(dir.path())
                .arg(port.to_string()),
            COMMAND_LIMIT,
        )
        .ok("starting a throwaway PostgreSQL");
        let password = fs::read_to_string(dir.path().join("pg.pw"))
            .unwrap()
            .trim()
            .to_string();
        Postgres {
            dir,
            port,
            password,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args(["-c", r#"source "$0"; throwaway_stop "$1""#])
            .arg(root().join("tests/tools/throwaway.sh"))
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// What deployments mount into the containers: a settings.py of literal assignments and the
/// database field encryption key, readable by any UID.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(pg: &Postgres, content_origin: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let settings = format!(
            r#"DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "pulp",
        "USER": "pulp",
        "PASSWORD": "{password}",
        "HOST": "127.0.0.1",
        "PORT": {port},
    }}
}}
SECRET_KEY = "image-smoke-test-secret-key"
CONTENT_ORIGIN = "{content_origin}"
"#,
            password = pg.password,
            port = pg.port,
        );
        fs::write(dir.path().join("settings.py"), settings).unwrap();
        // 32 bytes, url-safe base64, as `head -c 32 /dev/urandom | base64 | tr '+/' '-_'`.
        use base64::Engine;
        let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(97) ^ 0x5a);
        fs::write(
            dir.path().join("key"),
            base64::engine::general_purpose::URL_SAFE.encode(key),
        )
        .unwrap();
        for file in ["settings.py", "key"] {
            fs::set_permissions(dir.path().join(file), fs::Permissions::from_mode(0o644)).unwrap();
        }
        Site { dir }
    }

    fn mounts(&self) -> Vec<String> {
        let path = |file: &str| self.dir.path().join(file).display().to_string();
        vec![
            "--volume".into(),
            format!("{}:/etc/pulp/settings.py:ro", path("settings.py")),
            "--volume".into(),
            format!(
                "{}:/etc/pulp/certs/database_fields.symmetric.key:ro",
                path("key")
            ),
        ]
    }
}

/// A detached container, removed when dropped; its log is printed when a test fails.
struct Container {
    engine: Engine,
    name: String,
}

impl Container {
    fn start(engine: Engine, role: &str, run_args: &[String], image_args: &[String]) -> Container {
        let mut args = run_args.to_vec();
        args.push(engine.image().into());
        args.extend_from_slice(image_args);
        Container::start_args(engine, role, &args)
    }

    /// A detached `run` with every argument given: options, the image, its command.
    fn start_args(engine: Engine, what: &str, args: &[String]) -> Container {
        let name = unique(what);
        run(
            engine
                .command()
                .args(["run", "--detach", "--name", &name])
                .args(args),
            COMMAND_LIMIT,
        )
        .ok(&format!("starting {what}"));
        Container { engine, name }
    }

    fn logs(&self) -> String {
        let output = run(
            self.engine.command().args(["logs", &self.name]),
            COMMAND_LIMIT,
        );
        format!("{}{}", output.stdout, output.stderr)
    }

    fn exec(&self, script: &str) -> Output {
        run(
            self.engine
                .command()
                .args(["exec", &self.name, "sh", "-c", script]),
            COMMAND_LIMIT,
        )
    }

    fn inspect(&self, format: &str) -> String {
        run(
            self.engine
                .command()
                .args(["inspect", "--format", format, &self.name]),
            COMMAND_LIMIT,
        )
        .ok("inspect")
        .stdout
        .trim()
        .to_string()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(40).collect();
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

/// Poll `probe` until it returns `Some`; panic naming `what` after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A request body for [`http`].
enum Body<'a> {
    Empty,
    Json(Value),
    Form(&'a [(&'a str, String)]),
}

/// One HTTP request with curl: the status code and the body.
fn http(method: &str, url: &str, auth: Option<&str>, body: Body) -> (u16, Vec<u8>) {
    let response = tempfile::NamedTempFile::new().unwrap();
    let mut curl = Command::new("curl");
    curl.args([
        "--silent",
        "--show-error",
        "--max-time",
        "60",
        "--request",
        method,
    ])
    .arg("--output")
    .arg(response.path())
    .args(["--write-out", "%{http_code}"]);
    if let Some(auth) = auth {
        curl.args(["--user", auth]);
    }
    match body {
        Body::Empty => {}
        Body::Json(value) => {
            curl.args(["--header", "Content-Type: application/json", "--data"])
                .arg(value.to_string());
        }
        Body::Form(fields) => {
            for (key, value) in fields {
                curl.arg("--form").arg(format!("{key}={value}"));
            }
        }
    }
    let output = run(curl.arg(url), COMMAND_LIMIT);
    // 000: nothing answered (yet).
    let code = output.stdout.trim().parse().unwrap_or(0);
    (code, fs::read(response.path()).unwrap_or_default())
}

/// The Pulp REST API as the admin user.
struct Api {
    origin: String,
    auth: String,
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Body) -> Value {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.origin)
        };
        let (code, bytes) = http(method, &url, Some(&self.auth), body);
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            (200..300).contains(&code),
            "{method} {url} answered {code}: {text}"
        );
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|error| panic!("{method} {url}: not JSON ({error}): {text}"))
    }

    /// Wait for the task an asynchronous call started; its created resources.
    fn task(&self, started: Value) -> Vec<String> {
        let href = started["task"]
            .as_str()
            .unwrap_or_else(|| panic!("no task in {started}"))
            .to_string();
        let task = wait_for(&format!("task {href}"), COMMAND_LIMIT, || {
            let task = self.call("GET", &href, Body::Empty);
            let state = task["state"].as_str().unwrap_or_default().to_string();
            ["completed", "failed", "canceled"]
                .contains(&state.as_str())
                .then_some(task)
        });
        assert_eq!(task["state"], "completed", "task {href}: {task}");
        task["created_resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|href| href.as_str().unwrap().to_string())
            .collect()
    }
}

/// Names of the online apps of one kind in a status document.
fn online(status: &Value, kind: &str) -> Vec<String> {
    status[kind]
        .as_array()
        .map(|apps| {
            apps.iter()
                .map(|app| app["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A file in through the API (repository, upload, publication, distribution named `name`),
/// out of the content app at `content_origin`.
fn upload_and_serve(api_client: &Api, content_origin: &str, name: &str) {
    let repository = api_client.call(
        "POST",
        "/pulp/api/v3/repositories/file/file/",
        Body::Json(json!({"name": name})),
    );
    let repository_href = repository["pulp_href"].as_str().unwrap().to_string();
    let upload = tempfile::NamedTempFile::new().unwrap();
    let payload = format!("hello from the image test {name} {}\n", std::process::id());
    fs::write(upload.path(), &payload).unwrap();
    api_client.task(api_client.call(
        "POST",
        "/pulp/api/v3/content/file/files/",
        Body::Form(&[
            ("file", format!("@{}", upload.path().display())),
            ("relative_path", "hello.txt".into()),
            ("repository", repository_href.clone()),
        ]),
    ));
    let publication = api_client.task(api_client.call(
        "POST",
        "/pulp/api/v3/publications/file/file/",
        Body::Json(json!({"repository": repository_href})),
    ));
    let distribution = api_client.task(api_client.call(
        "POST",
        "/pulp/api/v3/distributions/file/file/",
        Body::Json(json!({"name": name, "base_path": name, "publication": publication[0]})),
    ));
    let base_url = api_client.call("GET", &distribution[0], Body::Empty)["base_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(base_url.starts_with(content_origin), "{base_url}");
    let (code, body) = http(
        "GET",
        &format!("{}/hello.txt", base_url.trim_end_matches('/')),
        None,
        Body::Empty,
    );
    assert_eq!(code, 200, "content app: {}", String::from_utf8_lossy(&body));
    assert_eq!(String::from_utf8_lossy(&body), payload);
}

fn smoke_api_content_and_two_workers_on_a_fresh_database(engine: Engine) {
    engine.image();
    let started = Instant::now();
    let pg = Postgres::start();
    let (api_port, content_port) = (free_port(), free_port());
    let origin = format!("http://127.0.0.1:{api_port}");
    let content_origin = format!("http://127.0.0.1:{content_port}");
    let site = Site::new(&pg, &content_origin);
    let volume = Volume::new(engine);
    let admin_password = "image-smoke-admin-password";
    // As OpenShift runs images: an arbitrary UID in group 0, read-only root, writable
    // volumes for /var/lib/pulp (shared by all, as file storage is) and /tmp only.
    let mut common: Vec<String> = [
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--user",
        &format!("{ARBITRARY_UID}:0"),
        "--volume",
        &volume.mount("/var/lib/pulp"),
        "--env",
        "PULP_API_WORKERS=1",
        "--env",
        "PULP_CONTENT_WORKERS=1",
        "--env",
        &format!("PULP_DEFAULT_ADMIN_PASSWORD={admin_password}"),
        "--env",
        "PULP_ENTRYPOINT_STOP_GRACE=15s",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    common.extend(site.mounts());

    let api = Container::start(
        engine,
        "api",
        &common,
        &[
            "pulp-api".into(),
            "--bind".into(),
            format!("127.0.0.1:{api_port}"),
        ],
    );
    let content = Container::start(
        engine,
        "content",
        &common,
        &[
            "pulp-content".into(),
            "--bind".into(),
            format!("127.0.0.1:{content_port}"),
        ],
    );
    let workers = [
        Container::start(engine, "worker1", &common, &["pulp-worker".into()]),
        Container::start(engine, "worker2", &common, &["pulp-worker".into()]),
    ];

    let status_url = format!("{origin}/pulp/api/v3/status/");
    let status = wait_for(
        "status to list 1 api app, 1 content app and 2 workers",
        Duration::from_secs(300),
        || {
            let (code, body) = http("GET", &status_url, None, Body::Empty);
            let status: Value = serde_json::from_slice(&body).ok().filter(|_| code == 200)?;
            (online(&status, "online_api_apps").len() == 1
                && online(&status, "online_content_apps").len() == 1
                && online(&status, "online_workers").len() == 2)
                .then_some(status)
        },
    );
    let workers_online = online(&status, "online_workers");
    assert_ne!(workers_online[0], workers_online[1]);
    eprintln!(
        "image: status lists every app {:?} after start ({workers_online:?})",
        started.elapsed()
    );

    // A file in through the API, out of the content app.
    let api_client = Api {
        origin: origin.clone(),
        auth: format!("admin:{admin_password}"),
    };
    upload_and_serve(&api_client, &content_origin, "smoke");
    eprintln!(
        "image: file served by the content app {:?} after start",
        started.elapsed()
    );

    // An orphan (its parent exits at once) is adopted by the entrypoint, PID 1, and reaped.
    let orphan = api
        .exec("sleep 2 >/dev/null 2>&1 & echo $!")
        .ok("starting an orphan");
    let orphan = orphan.stdout.trim().to_string();
    let status_file = format!("/proc/{orphan}/status");
    let parent = api
        .exec(&format!("grep '^PPid:' {status_file}"))
        .ok("orphan's parent");
    assert_eq!(
        parent.stdout.split_whitespace().nth(1),
        Some("1"),
        "the orphan was not adopted by PID 1: {parent}"
    );
    wait_for("the orphan to be reaped", Duration::from_secs(30), || {
        let gone = api.exec(&format!("test ! -e {status_file}"));
        (gone.code == Some(0)).then_some(())
    });
    for container in [&api, &content, &workers[0], &workers[1]] {
        let zombies = container
            .exec("grep -l '^State:[[:space:]]*Z' /proc/[0-9]*/status 2>/dev/null || true");
        assert_eq!(zombies.stdout.trim(), "", "zombies in {}", container.name);
    }

    // `stop`: SIGTERM, SIGKILL after the grace period. Each must end on its own before that,
    // with pulpcore's own code for a SIGTERM stop (0), passed on by the entrypoint.
    let grace = Duration::from_secs(30);
    for container in [&workers[0], &workers[1], &content, &api] {
        let stop = run(
            &mut engine.stop(&container.name, grace),
            grace + COMMAND_LIMIT,
        )
        .ok("stop");
        assert!(
            stop.elapsed < grace,
            "{} took {:?} to stop",
            container.name,
            stop.elapsed
        );
        let state = container.inspect("{{.State.Status}} {{.State.ExitCode}} {{.State.Pid}}");
        assert_eq!(
            state,
            "exited 0 0",
            "{}:\n{}",
            container.name,
            container.logs()
        );
        eprintln!("image: {} stopped in {:?}", container.name, stop.elapsed);
    }
    eprintln!("image: smoke test took {:?}", started.elapsed());
}

fn unreachable_database_is_one_line_and_exit_69_after_the_timeout(engine: Engine) {
    let image = engine.image();
    let port = free_port(); // nothing listens there
    let timeout = Duration::from_secs(4);
    let output = run(
        engine
            .command()
            .args(["run", "--rm", "--network", "host"])
            .args(["--env", "PULP_DATABASES__default__HOST=127.0.0.1"])
            .arg("--env")
            .arg(format!("PULP_DATABASES__default__PORT={port}"))
            .args([
                "--env",
                "PULP_DATABASES__default__PASSWORD=image-test-secret",
            ])
            .arg("--env")
            .arg(format!(
                "PULP_ENTRYPOINT_POSTGRES_TIMEOUT={}s",
                timeout.as_secs()
            ))
            .args([image, "pulp-api"]),
        COMMAND_LIMIT,
    );
    assert_eq!(output.code, Some(69), "{output}");
    // It waited the timeout, and not much more (starting a container takes a second or two).
    assert!(output.elapsed >= timeout, "{output}");
    assert!(
        output.elapsed < timeout + Duration::from_secs(30),
        "{output}"
    );
    assert!(!output.stderr.contains("image-test-secret"), "{output}");
    let errors: Vec<&str> = output
        .stderr
        .lines()
        .filter(|line| line.starts_with("pulp-entrypoint:") || line.contains("ERROR"))
        .collect();
    assert_eq!(errors.len(), 1, "not one error line: {output}");
    let error = errors[0];
    assert!(
        error.contains("PostgreSQL") && error.contains(&port.to_string()),
        "the error line does not say what it waited for: {error}"
    );
}

fn all_in_one_container_under_supervise(engine: Engine) {
    engine.image();
    let started = Instant::now();
    let pg = Postgres::start();
    let (api_port, content_port) = (free_port(), free_port());
    let site = Site::new(&pg, &format!("http://127.0.0.1:{content_port}"));
    // The defaults bind 24817/24816, which other tests' containers on the host network may hold.
    // The default stop_grace (25 s, gunicorn's graceful timeout 20 s): a tighter one left a
    // starved machine (load 7 on 2 cores) too little time for gunicorn's own escalation.
    let config = format!(
        r#"[supervise]
workers = 1

[[service]]
name = "api"
role = "api"
args = ["--bind", "127.0.0.1:{api_port}"]

[[service]]
name = "content"
role = "content"
args = ["--bind", "127.0.0.1:{content_port}"]
"#
    );
    let config_path = site.dir.path().join("entrypoint.toml");
    fs::write(&config_path, config).unwrap();
    fs::set_permissions(&config_path, fs::Permissions::from_mode(0o644)).unwrap();
    let volume = Volume::new(engine);
    let mut args: Vec<String> = [
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--user",
        &format!("{ARBITRARY_UID}:0"),
        "--volume",
        &volume.mount("/var/lib/pulp"),
        "--volume",
        &format!("{}:/etc/pulp/entrypoint.toml:ro", config_path.display()),
        "--env",
        "PULP_API_WORKERS=1",
        "--env",
        "PULP_CONTENT_WORKERS=1",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.extend(site.mounts());
    let pulp = Container::start(engine, "all-in-one", &args, &["supervise".into()]);

    let status_url = format!("http://127.0.0.1:{api_port}/pulp/api/v3/status/");
    wait_for(
        "status to list the api, the content app and the worker",
        Duration::from_secs(300),
        || {
            let (code, body) = http("GET", &status_url, None, Body::Empty);
            let status: Value = serde_json::from_slice(&body).ok().filter(|_| code == 200)?;
            (online(&status, "online_api_apps").len() == 1
                && online(&status, "online_content_apps").len() == 1
                && online(&status, "online_workers").len() == 1)
                .then_some(())
        },
    );
    let shown = pulp.exec("pulp-entrypoint status");
    assert_eq!(shown.code, Some(0), "{shown}");
    for name in ["api ", "content ", "worker-1 "] {
        assert!(shown.stdout.contains(name), "{shown}");
    }
    let logs = pulp.logs();
    assert!(logs.contains("api      | "), "output is prefixed: {logs}");
    // The static binary's probes inside the image, each role as Kubernetes would exec it.
    let probes = pulp.exec(&format!(
        "set -e; pulp-entrypoint probe ready api --address 127.0.0.1:{api_port}; \
         pulp-entrypoint probe live api --address 127.0.0.1:{api_port}; \
         pulp-entrypoint probe ready content --address 127.0.0.1:{content_port}; \
         pulp-entrypoint probe ready worker; pulp-entrypoint probe live worker; echo all-ready"
    ));
    assert_eq!(probes.code, Some(0), "{probes}");
    assert_eq!(probes.stdout.trim(), "all-ready", "{probes}");

    let grace = Duration::from_secs(40);
    let stop = run(&mut engine.stop(&pulp.name, grace), grace + COMMAND_LIMIT).ok("stop");
    assert!(
        stop.elapsed < grace,
        "supervise took {:?} to stop",
        stop.elapsed
    );
    let state = pulp.inspect("{{.State.Status}} {{.State.ExitCode}}");
    assert_eq!(state, "exited 0", "{}", pulp.logs());
    eprintln!(
        "image: all-in-one container ran and stopped in {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Drop-in for pulp-minimal: the specs of today's deployments, replayed unchanged.
//
// The commands, scripts, mounts, environment and security contexts below are built from the
// sources of the two deployments in use, read at these versions:
// - pulp-operator 7db462eba9c6 (2026-08-21): controllers/deployment.go (pods, init containers,
//   probes, the gpg init container), controllers/repo_manager/job.go (migration,
//   admin-password and signing Jobs), controllers/repo_manager/secret.go and
//   controllers/settings/secrets.go (settings.py), controllers/utils.go (security context);
// - pulp-oci-images 981069caf06f (2024-12-10): images/compose/compose.yml, images/compose/test.sh,
//   images/compose/assets/settings.py, images/assets/* (the scripts' contracts).
// Kubernetes and compose are played by the engine (podman, docker): a Job or an init container
// is a `run` that must exit 0, a pod's container a detached `run` with the same command, an
// exec probe an `exec`. What is not replayed is said where it is left out.

/// The replays bind the ports the specs name (24817, 24816) on the host network: one at a
/// time in this process, and on the machine (a lock file), since test runs of other checkouts
/// (worktrees, a CI run) may share it.
static FIXED_PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held while a test uses the fixed ports.
struct FixedPorts {
    _machine: nix::fcntl::Flock<File>,
    _process: std::sync::MutexGuard<'static, ()>,
}

fn fixed_ports() -> FixedPorts {
    let process = FIXED_PORTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("pulp-entrypoint-image-tests-fixed-ports.lock"))
        .unwrap();
    let machine = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, error)| panic!("locking the fixed ports: {error}"));
    FixedPorts {
        _machine: machine,
        _process: process,
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| word.to_string()).collect()
}

/// A host file at `path` with `text`, readable (and executable) by any UID.
fn write_file(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// `wait`: the exit code of a container that must end by itself within `limit`.
fn exit_code(container: &Container, limit: Duration) -> i32 {
    let waited = run(
        container.engine.command().args(["wait", &container.name]),
        limit,
    )
    .ok("wait");
    waited.stdout.trim().parse().unwrap_or(-1)
}

fn shell_tools_and_legacy_paths_of_the_upstream_images(engine: Engine) {
    let image = engine.image();
    // /bin/sh runs the operator's bash (arrays, [[ ]], brace expansion, which); the pulpcore
    // scripts are at /usr/local/bin, where the Jobs exec them; static files are collected
    // into the operator's STATIC_ROOT.
    let script = r#"
        mkdir -p /tmp/d/{media,assets,tmp} && ls /tmp/d | tr '\n' ' '; echo
        A=("x" "y z"); [[ "${A[1]}" == "y z" ]] && echo arrays
        which pulpcore-api >/dev/null && echo which
        for c in pulpcore-manager pulpcore-api pulpcore-content pulpcore-worker django-admin gunicorn; do
            [ -x "/usr/local/bin/$c" ] && [ "$(readlink -f /usr/local/bin/$c)" = "/usr/local/lib/pulp/bin/$c" ] \
                && echo "/usr/local/bin/$c"
        done
        [ -f /var/lib/operator/static/rest_framework/css/bootstrap.min.css ] && echo static
    "#;
    let output = run(
        engine.command().args([
            "run",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            script,
        ]),
        COMMAND_LIMIT,
    )
    .ok("the operator's shell features");
    assert_eq!(
        output.stdout.lines().collect::<Vec<_>>(),
        [
            "assets media tmp ",
            "arrays",
            "which",
            "/usr/local/bin/pulpcore-manager",
            "/usr/local/bin/pulpcore-api",
            "/usr/local/bin/pulpcore-content",
            "/usr/local/bin/pulpcore-worker",
            "/usr/local/bin/django-admin",
            "/usr/local/bin/gunicorn",
            "static",
        ],
        "{output}"
    );
}

fn a_subpath_mount_over_a_legacy_path_leaves_the_binary_alone(engine: Engine) {
    // The operator mounts its own wait_on_postgres.py (a ConfigMap, subPath) at
    // /usr/bin/wait_on_postgres.py in worker pods when IPv6 is disabled. A runtime follows a
    // symbolic link there and mounts over its target, the binary; a hard link is replaced alone.
    let image = engine.image();
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let probe = dir.path().join("wait_on_postgres.py");
    write_file(&probe, "#!/bin/sh\necho mounted-probe\n", 0o755);
    let output = run(
        engine.command()
            .arg("run")
            .arg("--rm")
            .arg("--volume")
            .arg(format!("{}:/usr/bin/wait_on_postgres.py:ro", probe.display()))
            .args(["--entrypoint", "/bin/sh", image, "-c"])
            .arg("/usr/bin/wait_on_postgres.py; /usr/bin/pulp-entrypoint --version; /usr/bin/pulp-resource-manager; echo \"link: $?\""),
        COMMAND_LIMIT,
    )
    .ok("a subPath mount over wait_on_postgres.py");
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{output}");
    assert_eq!(lines[0], "mounted-probe", "{output}");
    assert!(
        lines[1].starts_with("pulp-entrypoint "),
        "the binary was replaced: {output}"
    );
    // Another link still acts as its name (the removed role: exit 64).
    assert_eq!(lines[2], "link: 64", "{output}");
}

fn gpg_as_the_operators_signing_init_container_runs_it(engine: Engine) {
    let image = engine.image();
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    // A signing key, made in the image (nothing on the host is needed).
    let made = run(
        engine.command()
            .args(["run", "--rm", "--env", "HOME=/tmp", "--volume"])
            .arg(format!("{}:/out", dir.path().display()))
            .args(["--entrypoint", "/bin/sh", image, "-c"])
            .arg(
                "set -e; gpg --batch --quiet --passphrase '' --quick-gen-key 'Pulp Test <signing@example.test>' ed25519 sign never; \
                 gpg --batch --armor --export-secret-keys > /out/signing_service.gpg; \
                 gpg --with-colons --list-keys | awk -F: '/^fpr/ {print $10; exit}'",
            ),
        COMMAND_LIMIT,
    )
    .ok("making a signing key with the image's gpg");
    let fingerprint = made.stdout.trim().to_string();
    assert_eq!(fingerprint.len(), 40, "{made}");
    let volume = Volume::new(engine);
    // setGpgInitContainer: HOME=/var/lib/pulp, the key by subPath, the file-storage volume,
    // UID 700 with fsGroup 700, every capability dropped, no privilege escalation.
    let init = "gpg --batch --import /etc/pulp/keys/signing_service.gpg\n\
                echo \"${PULP_SIGNING_KEY_FINGERPRINT}:6\" | gpg --import-ownertrust\n";
    let mut args = operator_security();
    args.extend(strings(&["--env", "HOME=/var/lib/pulp", "--env"]));
    args.push(format!("PULP_SIGNING_KEY_FINGERPRINT={fingerprint}"));
    args.push("--volume".into());
    args.push(format!(
        "{}/signing_service.gpg:/etc/pulp/keys/signing_service.gpg:ro",
        dir.path().display()
    ));
    args.push("--volume".into());
    args.push(volume.mount("/var/lib/pulp"));
    let imported = run(
        engine.command().args(["run", "--rm"]).args(&args).args([
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            init,
        ]),
        COMMAND_LIMIT,
    );
    assert_eq!(imported.code, Some(0), "{imported}");
    let listed = run(
        engine
            .command()
            .args(["run", "--rm"])
            .args(&args)
            .args(["--entrypoint", "/bin/sh", image, "-c"])
            .arg("gpg --with-colons --list-secret-keys; gpg --export-ownertrust"),
        COMMAND_LIMIT,
    )
    .ok("listing the imported key");
    assert!(
        listed
            .stdout
            .contains(&format!("fpr:::::::::{fingerprint}:")),
        "{listed}"
    );
    assert!(
        listed.stdout.contains(&format!("{fingerprint}:6:")),
        "{listed}"
    );
}

fn route_paths_prints_the_plugins_paths_as_the_operator_reads_them(engine: Engine) {
    let image = engine.image();
    // A plugin package with a webserver snippet, on PYTHONPATH: what route_paths.py reads of
    // pulp_container, pulp_python, ... (the minimal image's pulp_file has no snippet).
    let dir = tempfile::tempdir().unwrap();
    let snippets = dir.path().join("pulp_routetest/app/webserver_snippets");
    fs::create_dir_all(&snippets).unwrap();
    for sub in [
        "",
        "pulp_routetest",
        "pulp_routetest/app",
        "pulp_routetest/app/webserver_snippets",
    ] {
        fs::set_permissions(dir.path().join(sub), fs::Permissions::from_mode(0o755)).unwrap();
    }
    write_file(&dir.path().join("pulp_routetest/__init__.py"), "", 0o644);
    write_file(
        &snippets.join("nginx.conf"),
        r#"# served by the api
location /v2/ {
    proxy_set_header Host $http_host;  # a comment
    proxy_pass http://pulp-api;
    client_max_body_size 0;
}

location pulp/routetest_files/ {
    rewrite ^/pulp/routetest_files/(.*)$ "/pulp/content/$1" break;
    proxy_pass http://pulp-content;
}
"#,
        0o644,
    );
    let listed = run(
        engine
            .command()
            .args([
                "run",
                "--rm",
                "--env",
                "PYTHONPATH=/opt/plugins",
                "--volume",
            ])
            .arg(format!("{}:/opt/plugins:ro", dir.path().display()))
            .args(["--entrypoint", "/usr/bin/route_paths.py", image, "example"]),
        COMMAND_LIMIT,
    )
    .ok("route_paths.py");
    let routes: Value = serde_json::from_str(&listed.stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {listed}"));
    assert_eq!(
        routes,
        json!([
            {"name": "example-routetest-v2", "path": "/v2/", "targetPort": "api-24817",
             "serviceName": "example-api-svc"},
            {"name": "example-routetest-pulp-routetest-files2", "path": "/pulp/routetest_files",
             "targetPort": "content-24816", "serviceName": "example-content-svc",
             "rewrite": "/pulp/content/$1"},
            {"name": "example-routetest-pulp-routetest-files", "path": "/pulp/routetest_files/",
             "targetPort": "content-24816", "serviceName": "example-content-svc",
             "rewrite": "/pulp/content/$1"},
        ]),
        "{listed}"
    );
    // The image itself: no plugin with a snippet, an empty list.
    let own = run(
        engine.command().args([
            "run",
            "--rm",
            "--entrypoint",
            "/usr/bin/route_paths.py",
            image,
            "example",
        ]),
        COMMAND_LIMIT,
    )
    .ok("route_paths.py in the image as it is");
    assert_eq!(own.stdout.trim(), "[]", "{own}");
}

/// controllers/utils.go SetDefaultSecurityContext with the pods' runAsUser 700 and fsGroup
/// 700 (the primary group then comes from the image's /etc/passwd: 0).
fn operator_security() -> Vec<String> {
    strings(&[
        "--user",
        "700",
        "--group-add",
        "700",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ])
}

/// The settings.py the operator writes (pulpServerSecret: the default settings sorted, then
/// DATABASES as databaseSettings writes it, with single quotes and PORT as a string, then
/// TOKEN_SERVER and SECRET_KEY), for a Pulp named `example` without cache or object storage.
fn operator_settings(pg: &Postgres, root_url: &str) -> String {
    format!(
        r#"# This file is managed by Pulp operator.
# Any changes will be overwritten.
ANSIBLE_API_HOSTNAME = "{root_url}"
ANSIBLE_CERTS_DIR = "/etc/pulp/keys/"
CONTENT_ORIGIN = "{root_url}"
DB_ENCRYPTION_KEY = "/etc/pulp/keys/database_fields.symmetric.key"
PRIVATE_KEY_PATH = "/etc/pulp/keys/container_auth_private_key.pem"
PUBLIC_KEY_PATH = "/etc/pulp/keys/container_auth_public_key.pem"
STATIC_ROOT = "/var/lib/operator/static/"
TOKEN_AUTH_DISABLED = False
TOKEN_SIGNATURE_ALGORITHM = "ES256"
DATABASES = {{
  'default': {{
    'HOST': '127.0.0.1',
    'ENGINE': 'django.db.backends.postgresql_psycopg2',
    'NAME': 'pulp',
    'USER': 'pulp',
    'PASSWORD': '{password}',
    'PORT': '{port}',
    'CONN_MAX_AGE': 0,
    'OPTIONS': {{ 'sslmode': 'prefer' }},
  }}
}}
TOKEN_SERVER = "http://example-api-svc.pulp.svc.cluster.local:24817/token/"
SECRET_KEY = "operator-replay-secret-key"
"#,
        password = pg.password,
        port = pg.port,
    )
}

/// The two scripts the api and content containers run (`command: ["/bin/sh"]`, args `-c`
/// SCRIPT) from pulpcoreApiContainerArgs/pulpcoreContentContainerArgs, with `bind`.
fn operator_server_script(api: bool, bind: &str) -> String {
    let (server, fallback, workers) = if api {
        (
            "pulpcore-api",
            r#"("gunicorn" "pulpcore.app.wsgi:application" "--name" "pulp-api")"#,
            "PULP_API_WORKERS",
        )
    } else {
        (
            "pulpcore-content",
            r#"("gunicorn" "pulpcore.content:server" "--worker-class" "aiohttp.GunicornWebWorker" "--name" "pulp-content")"#,
            "PULP_CONTENT_WORKERS",
        )
    };
    let var = if api {
        "PULP_API_ENTRYPOINT"
    } else {
        "PULP_CONTENT_ENTRYPOINT"
    };
    format!(
        "if which {server}\nthen\n  {var}=(\"{server}\")\nelse\n  {var}={fallback}\nfi\n\
         exec \"${{{var}[@]}}\" \\\n--bind \"{bind}\" \\\n--timeout \"${{PULP_GUNICORN_TIMEOUT}}\" \\\n\
         --workers \"${{{workers}}}\" \\\n--access-logformat \"${{PULP_GUNICORN_ACCESS_LOGFORMAT}}\" \\\n\
         --access-logfile -"
    )
}

/// The operator's next image, for the upgrade: the tested image plus a plugin release with a
/// migration the database has not seen (tests/tools/upgrade-plugin), built once per engine.
fn upgrade_image(engine: Engine) -> &'static str {
    static PODMAN: OnceLock<String> = OnceLock::new();
    static DOCKER: OnceLock<String> = OnceLock::new();
    let built = match engine {
        Engine::Podman => &PODMAN,
        Engine::Docker => &DOCKER,
    };
    built.get_or_init(|| {
        let base = engine.image();
        let image = test_tag("upgrade");
        let context = root().join("tests/tools/upgrade-plugin");
        let mut build = engine.command();
        // A FROM, a COPY and a RUN: the classic builder is enough, and a docker CLI without
        // buildx has no other.
        build.env("DOCKER_BUILDKIT", "0");
        build
            .args(["build", "--build-arg"])
            .arg(format!("BASE={base}"))
            .args(["--tag", &image, "--file"])
            .arg(context.join("Containerfile"))
            .arg(&context);
        run(&mut build, Duration::from_secs(300)).ok("building the upgrade image");
        image
    })
}

/// pulp-operator's pods and Jobs for a Pulp named `example` (replayed from its sources at
/// 7db462e, see pulp_operator_jobs_and_pods_run_unchanged): everything but the image, which
/// each step is given, since an upgrade runs the same specs with the next image.
struct OperatorSpecs {
    engine: Engine,
    /// Every pod and Job: host network (the Services), the security context, settings.py and
    /// the key by subPath, the PostgreSQL service variables.
    base: Vec<String>,
    /// `base` with the file-storage volume: the pods.
    pods: Vec<String>,
    admin_password_file: String,
    wait_on_postgres_file: String,
}

impl OperatorSpecs {
    fn shell(image: &str, script: &str) -> Vec<String> {
        strings(&["--entrypoint", "/bin/sh", image, "-c", script])
    }

    /// The init containers of the api, content and worker pods (setInitContainers).
    fn start_inits(&self, image: &str) -> [Container; 3] {
        let api_init = "mkdir -p /var/lib/pulp/{media,assets,tmp}\n/usr/bin/wait_on_postgres.py\n/usr/bin/wait_on_database_migrations.sh";
        let other_init = "/usr/bin/wait_on_postgres.py\n/usr/bin/wait_on_database_migrations.sh";
        let start = |what: &str, script: &str| {
            Container::start_args(
                self.engine,
                what,
                &[self.pods.clone(), Self::shell(image, script)].concat(),
            )
        };
        [
            start("api-init", api_init),
            start("content-init", other_init),
            start("worker-init", other_init),
        ]
    }

    /// The migration Job (migrationContainer): no file storage, settings and key only.
    fn migration_job(&self, image: &str) -> Output {
        run(
            self.engine
                .command()
                .args(["run", "--rm"])
                .args(&self.base)
                .args(Self::shell(
                    image,
                    "/usr/bin/wait_on_postgres.py\n/usr/local/bin/pulpcore-manager migrate --noinput",
                )),
            Duration::from_secs(300),
        )
    }

    /// The admin-password Job (resetAdminPasswordContainer): the password file by subPath.
    fn admin_password_job(&self, image: &str) -> Output {
        let mut args = self.base.clone();
        args.push("--volume".into());
        args.push(format!(
            "{}:/etc/pulp/pulp-admin-password:ro",
            self.admin_password_file
        ));
        run(
            self.engine
                .command()
                .args(["run", "--rm"])
                .args(&args)
                .args(Self::shell(
                    image,
                    "/usr/bin/wait_on_postgres.py\n\
                     /usr/bin/wait_on_database_migrations.sh\n\
                     ADMIN_PASSWORD_FILE=/etc/pulp/pulp-admin-password\n\
                     if [[ -f \"$ADMIN_PASSWORD_FILE\" ]]; then\n\
                       echo \"pulp admin can be initialized.\"\n\
                       PULP_ADMIN_PASSWORD=$(cat $ADMIN_PASSWORD_FILE)\n\
                     fi\n\
                     if [ -n \"${PULP_ADMIN_PASSWORD}\" ]; then\n\
                       /usr/local/bin/pulpcore-manager reset-admin-password --password \"${PULP_ADMIN_PASSWORD}\"\n\
                     fi",
                )),
            COMMAND_LIMIT,
        )
    }

    /// The pods' containers (setContainers), ipv6_disabled: 0.0.0.0 binds and the worker's
    /// wait_on_postgres.py by subPath; `[api, content, worker]`.
    fn start_pods(&self, image: &str) -> [Container; 3] {
        let gunicorn_env = |workers: &str, format: &str| -> Vec<String> {
            strings(&[
                "--env",
                "PULP_GUNICORN_TIMEOUT=90",
                "--env",
                workers,
                "--env",
                &format!("PULP_GUNICORN_ACCESS_LOGFORMAT={format}"),
            ])
        };
        let mut api_args = self.pods.clone();
        api_args.extend(gunicorn_env(
            "PULP_API_WORKERS=1",
            r#"pulp [%({correlation-id}o)s]: %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#,
        ));
        api_args.extend([
            "--volume".to_string(),
            format!(
                "{}:/etc/pulp/pulp-admin-password:ro",
                self.admin_password_file
            ),
        ]);
        api_args.extend(Self::shell(
            image,
            &operator_server_script(true, "0.0.0.0:24817"),
        ));
        let api = Container::start_args(self.engine, "operator-api", &api_args);
        let mut content_args = self.pods.clone();
        content_args.extend(gunicorn_env(
            "PULP_CONTENT_WORKERS=1",
            r#"%a %t "%r" %s %b "%{Referer}i" "%{User-Agent}i""#,
        ));
        content_args.extend(Self::shell(
            image,
            &operator_server_script(false, "0.0.0.0:24816"),
        ));
        let content = Container::start_args(self.engine, "operator-content", &content_args);
        let mut worker_args = self.pods.clone();
        worker_args.extend([
            "--volume".to_string(),
            format!(
                "{}:/usr/bin/wait_on_postgres.py:ro",
                self.wait_on_postgres_file
            ),
            "--entrypoint".into(),
            "/usr/bin/pulp-worker".into(),
            image.into(),
        ]);
        let worker = Container::start_args(self.engine, "operator-worker", &worker_args);
        [api, content, worker]
    }

    /// Readiness (exec) and liveness (HTTP) probes as setReadinessProbe/setLivenessProbe,
    /// until they pass; every container must keep running meanwhile.
    fn wait_for_probes(&self, [api, content, worker]: &[Container; 3], origin: &str) {
        for (container, command) in [
            (api, &["/usr/bin/readyz.py", "/pulp/api/v3/status/"][..]),
            (content, &["/usr/bin/readyz.py", "/pulp/content/"][..]),
            (worker, &["/usr/bin/wait_on_postgres.py"][..]),
        ] {
            wait_for(
                &format!("the readiness probe of {}", container.name),
                Duration::from_secs(180),
                || {
                    let state = container.inspect("{{.State.Status}}");
                    assert_eq!(
                        state,
                        "running",
                        "{} ended:\n{}",
                        container.name,
                        container.logs()
                    );
                    let probe = run(
                        self.engine
                            .command()
                            .args(["exec", &container.name])
                            .args(command),
                        COMMAND_LIMIT,
                    );
                    (probe.code == Some(0)).then_some(())
                },
            );
        }
        let (code, _) = http(
            "GET",
            &format!("{origin}/pulp/api/v3/status/"),
            None,
            Body::Empty,
        );
        assert_eq!(code, 200, "the api's liveness probe");
    }
}

/// Status from `origin` once `ready` says it shows what the test waits for.
fn wait_for_status(origin: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, COMMAND_LIMIT, || {
        let (code, body) = http(
            "GET",
            &format!("{origin}/pulp/api/v3/status/"),
            None,
            Body::Empty,
        );
        let status: Value = serde_json::from_slice(&body).ok().filter(|_| code == 200)?;
        ready(&status).then_some(status)
    })
}

/// The components status reports, `name version`.
fn versions(status: &Value) -> Vec<String> {
    status["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|component| {
            format!(
                "{} {}",
                component["component"].as_str().unwrap_or("?"),
                component["version"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn pulp_operator_jobs_and_pods_run_unchanged(engine: Engine) {
    let image = engine.image();
    let _ports = fixed_ports();
    let started = Instant::now();
    let pg = Postgres::start();
    let root_url = "http://127.0.0.1:24816";
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    write_file(
        &dir.path().join("settings.py"),
        &operator_settings(&pg, root_url),
        0o644,
    );
    {
        use base64::Engine;
        let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(31) ^ 0xa5);
        let key = base64::engine::general_purpose::URL_SAFE.encode(key);
        write_file(&dir.path().join("key"), &key, 0o644);
    }
    let admin_password = "operator-replay-admin-password";
    write_file(&dir.path().join("admin-password"), admin_password, 0o644);
    // The worker probe the operator mounts when ipv6_disabled is set (this replay sets it, so
    // that the subPath mount is part of it): a stand-in with its contract, a TCP connect to
    // POSTGRES_SERVICE_HOST:POSTGRES_SERVICE_PORT, exit 0 or 1.
    write_file(
        &dir.path().join("wait_on_postgres.py"),
        "#!/usr/bin/env python3\nimport os, socket, sys\n\
         address = (os.environ['POSTGRES_SERVICE_HOST'], int(os.environ.get('POSTGRES_SERVICE_PORT', '5432')))\n\
         try:\n    socket.create_connection(address, timeout=5).close()\nexcept OSError:\n    sys.exit(1)\n\
         print('Postgres started!')\n",
        0o755,
    );
    let file = |name: &str| dir.path().join(name).display().to_string();
    // A PersistentVolumeClaim starts empty, and the kubelet gives it to the fsGroup (700) with
    // the setgid bit: `nocopy`, then that ownership.
    let volume = Volume::new(engine);
    let storage = format!("{}:nocopy", volume.mount("/var/lib/pulp"));
    run(
        engine
            .command()
            .args(["run", "--rm", "--user", "0", "--volume", &storage])
            .args(["--entrypoint", "/bin/sh", image, "-c"])
            .arg("chown 0:700 /var/lib/pulp && chmod 2775 /var/lib/pulp"),
        COMMAND_LIMIT,
    )
    .ok("preparing the file-storage volume as the kubelet does");

    let mut base = strings(&["--network", "host"]);
    base.extend(operator_security());
    base.extend(strings(&[
        "--env",
        "POSTGRES_SERVICE_HOST=127.0.0.1",
        "--env",
    ]));
    base.push(format!("POSTGRES_SERVICE_PORT={}", pg.port));
    base.extend(strings(&["--volume"]));
    base.push(format!("{}:/etc/pulp/settings.py:ro", file("settings.py")));
    base.push("--volume".into());
    base.push(format!(
        "{}:/etc/pulp/keys/database_fields.symmetric.key:ro",
        file("key")
    ));
    let mut pods = base.clone();
    pods.extend(["--volume".to_string(), storage.clone()]);
    let specs = OperatorSpecs {
        engine,
        base,
        pods,
        admin_password_file: file("admin-password"),
        wait_on_postgres_file: file("wait_on_postgres.py"),
    };

    // The init containers, started before the migration Job: they wait for it, as they
    // usually do.
    let inits = specs.start_inits(image);
    let migration = specs.migration_job(image);
    assert_eq!(migration.code, Some(0), "the migration Job: {migration}");
    for init in &inits {
        assert_eq!(
            exit_code(init, COMMAND_LIMIT),
            0,
            "{}:\n{}",
            init.name,
            init.logs()
        );
    }
    let listed = run(
        engine
            .command()
            .args(["run", "--rm"])
            .args(&specs.pods)
            .args(["--entrypoint", "/bin/ls", image, "/var/lib/pulp"]),
        COMMAND_LIMIT,
    )
    .ok("listing the file storage");
    assert_eq!(
        listed.stdout.split_whitespace().collect::<Vec<_>>(),
        ["assets", "media", "tmp"],
        "the api init container's mkdir: {listed}"
    );
    let admin = specs.admin_password_job(image);
    assert_eq!(admin.code, Some(0), "the admin-password Job: {admin}");
    assert!(
        admin.stdout.contains("pulp admin can be initialized."),
        "{admin}"
    );
    eprintln!(
        "image: operator Jobs and init containers done {:?} after start",
        started.elapsed()
    );

    let origin = "http://127.0.0.1:24817";
    let pods = specs.start_pods(image);
    specs.wait_for_probes(&pods, origin);
    wait_for_status(
        origin,
        "status to list the api, the content app and the worker",
        |status| {
            online(status, "online_api_apps").len() == 1
                && online(status, "online_content_apps").len() == 1
                && online(status, "online_workers").len() == 1
        },
    );
    // The admin password the Job set; a file in through the API, out of the content app.
    let api_client = Api {
        origin: origin.into(),
        auth: format!("admin:{admin_password}"),
    };
    upload_and_serve(&api_client, root_url, "operator");
    eprintln!(
        "image: operator replay served a file {:?} after start",
        started.elapsed()
    );

    // The upgrade: the Pulp resource names the next image, which brings a plugin release
    // with a migration. The operator's reconcile runs the migration Job with it and rolls the
    // Deployments, whose new pods' init containers wait for that Job. Host networking leaves
    // no room for old and new servers side by side, so the old pods stop first (a Recreate
    // rollout); the new init containers start before the Job, and must see what is pending.
    let upgraded = upgrade_image(engine);
    let new_inits = specs.start_inits(upgraded);
    for init in &new_inits {
        wait_for(
            &format!("{} to wait for the plugin's migration", init.name),
            COMMAND_LIMIT,
            || {
                assert_eq!(
                    init.inspect("{{.State.Status}}"),
                    "running",
                    "{} did not wait for the pending migration:\n{}",
                    init.name,
                    init.logs()
                );
                init.logs()
                    .contains("upgrade_probe.0001_initial")
                    .then_some(())
            },
        );
    }
    let [old_api, old_content, old_worker] = pods;
    let stop = run(
        &mut engine.stop(&old_worker.name, Duration::from_secs(30)),
        COMMAND_LIMIT,
    );
    stop.ok("stopping the old worker");
    assert_eq!(
        old_worker.inspect("{{.State.ExitCode}}"),
        "0",
        "the old worker after SIGTERM:\n{}",
        old_worker.logs()
    );
    drop((old_api, old_content));
    let migration = specs.migration_job(upgraded);
    assert_eq!(
        migration.code,
        Some(0),
        "the migration Job of the upgrade: {migration}"
    );
    assert!(
        migration.stdout.contains("upgrade_probe.0001_initial"),
        "the Job applied the plugin's migration: {migration}"
    );
    // No stall: the waiters notice the Job's migrations (every 250 ms) and end by themselves.
    for init in &new_inits {
        assert_eq!(
            exit_code(init, COMMAND_LIMIT),
            0,
            "{}:\n{}",
            init.name,
            init.logs()
        );
    }
    let pods = specs.start_pods(upgraded);
    specs.wait_for_probes(&pods, origin);
    let status = wait_for_status(
        origin,
        "status from the upgraded api with the plugin, the content app and the worker",
        |status| {
            versions(status).contains(&"upgrade_probe 1.0.0".to_string())
                && !online(status, "online_content_apps").is_empty()
                && !online(status, "online_workers").is_empty()
        },
    );
    eprintln!(
        "image: operator upgrade done {:?} after start: {}",
        started.elapsed(),
        versions(&status).join(", ")
    );
    // The data from before the upgrade is still served, and new content goes in.
    let (code, _) = http(
        "GET",
        &format!("{root_url}/pulp/content/operator/hello.txt"),
        None,
        Body::Empty,
    );
    assert_eq!(code, 200, "the file uploaded before the upgrade");
    upload_and_serve(&api_client, root_url, "operator-upgraded");
}

fn pulp_oci_images_compose_services_run_unchanged(engine: Engine) {
    engine.image();
    let _ports = fixed_ports();
    let started = Instant::now();
    let pg = Postgres::start();
    // images/compose/assets/settings.py, the database pointed at the throwaway PostgreSQL
    // (compose's postgres service). Not replayed here: Redis (CACHE_ENABLED is False here) and
    // pulp-web's nginx (status is read from the api directly); replicas: one api and one
    // content app (on the host network two would share a port), two workers. The compose
    // module runs compose.yml itself, with Redis, pulp-web and the replicas (image/compose.rs).
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let certs = dir.path().join("certs");
    fs::create_dir(&certs).unwrap();
    fs::set_permissions(&certs, fs::Permissions::from_mode(0o755)).unwrap();
    write_file(
        &dir.path().join("settings.py"),
        &format!(
            r#"SECRET_KEY = "aabbcc"
CONTENT_ORIGIN = "http://pulp_content:24816"
DATABASES = {{"default": {{"HOST": "127.0.0.1", "ENGINE": "django.db.backends.postgresql", "NAME": "pulp", "USER": "pulp", "PASSWORD": "{password}", "PORT": "{port}", "CONN_MAX_AGE": 0, "OPTIONS": {{"sslmode": "prefer"}}}}}}
CACHE_ENABLED = False
REDIS_HOST = "redis"
REDIS_PORT = 6379
REDIS_PASSWORD = ""
ANSIBLE_API_HOSTNAME = "http://pulp_api:24817"
ANSIBLE_CONTENT_HOSTNAME = "http://pulp_content:24816/pulp/content"
ALLOWED_IMPORT_PATHS = ["/tmp"]
ALLOWED_EXPORT_PATHS = ["/tmp"]
TOKEN_SERVER = "http://pulp_api:24817/token/"
TOKEN_AUTH_DISABLED = False
TOKEN_SIGNATURE_ALGORITHM = "ES256"
PUBLIC_KEY_PATH = "/etc/pulp/keys/container_auth_public_key.pem"
PRIVATE_KEY_PATH = "/etc/pulp/keys/container_auth_private_key.pem"
ANALYTICS = False
STATIC_ROOT = "/var/lib/operator/static/"
"#,
            password = pg.password,
            port = pg.port,
        ),
        0o644,
    );
    {
        use base64::Engine;
        let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(13) ^ 0x3c);
        let key = base64::engine::general_purpose::URL_SAFE.encode(key);
        write_file(&certs.join("database_fields.symmetric.key"), &key, 0o644);
    }
    let volume = Volume::new(engine);
    // Every Pulp service: settings.py, the certs directory, the pulp volume.
    let mut service = strings(&["--network", "host", "--volume"]);
    service.push(format!(
        "{}:/etc/pulp/settings.py",
        dir.path().join("settings.py").display()
    ));
    service.push("--volume".into());
    service.push(format!("{}:/etc/pulp/certs", certs.display()));
    service.push("--volume".into());
    service.push(volume.mount("/var/lib/pulp"));
    let with = |extra: &[&str], command: &[&str]| -> Vec<String> {
        let mut all = service.clone();
        all.extend(strings(extra));
        all.push(engine.image().into());
        all.extend(strings(command));
        all
    };

    // set_init_password_service depends on postgres only: it runs while the migration does.
    let init_password = Container::start_args(
        engine,
        "set-init-password",
        &with(
            &["--env", "PULP_DEFAULT_ADMIN_PASSWORD=password"],
            &["set_init_password.sh"],
        ),
    );
    let migration = run(
        engine
            .command()
            .args(["run", "--rm"])
            .args(with(&[], &["pulpcore-manager", "migrate", "--noinput"])),
        Duration::from_secs(300),
    );
    assert_eq!(migration.code, Some(0), "migration_service: {migration}");
    let signing = run(
        engine
            .command()
            .args(["run", "--rm"])
            .args(with(&[], &["sh", "-c", "add_signing_service.sh"])),
        COMMAND_LIMIT,
    );
    assert_eq!(signing.code, Some(0), "signing_key_service: {signing}");
    assert_eq!(
        exit_code(&init_password, COMMAND_LIMIT),
        0,
        "set_init_password_service:\n{}",
        init_password.logs()
    );

    let api = Container::start_args(
        engine,
        "compose-api",
        &with(&["--user", "pulp"], &["pulp-api"]),
    );
    let content = Container::start_args(
        engine,
        "compose-content",
        &with(&["--user", "pulp"], &["pulp-content"]),
    );
    let workers = [
        Container::start_args(
            engine,
            "compose-worker1",
            &with(&["--user", "pulp"], &["pulp-worker"]),
        ),
        Container::start_args(
            engine,
            "compose-worker2",
            &with(&["--user", "pulp"], &["pulp-worker"]),
        ),
    ];
    // The healthchecks.
    for (container, path) in [(&api, "/pulp/api/v3/status/"), (&content, "/pulp/content/")] {
        wait_for(
            &format!("the healthcheck of {}", container.name),
            Duration::from_secs(180),
            || {
                let state = container.inspect("{{.State.Status}}");
                assert_eq!(
                    state,
                    "running",
                    "{} ended:\n{}",
                    container.name,
                    container.logs()
                );
                let check = run(
                    engine
                        .command()
                        .args(["exec", &container.name, "readyz.py", path]),
                    COMMAND_LIMIT,
                );
                (check.code == Some(0)).then_some(())
            },
        );
    }
    // test.sh's checks: migrations applied as seen from the api container, then status.
    run(
        engine
            .command()
            .args(["exec", &api.name, "/usr/bin/wait_on_database_migrations.sh"]),
        COMMAND_LIMIT,
    )
    .ok("test.sh: wait_on_database_migrations.sh in the api container");
    let origin = "http://127.0.0.1:24817";
    wait_for(
        "status to list the api, the content app and two workers",
        COMMAND_LIMIT,
        || {
            let (code, body) = http(
                "GET",
                &format!("{origin}/pulp/api/v3/status/"),
                None,
                Body::Empty,
            );
            let status: Value = serde_json::from_slice(&body).ok().filter(|_| code == 200)?;
            // Each gunicorn process of the api and the content app is an app of its own
            // (compose leaves PULP_API_WORKERS and PULP_CONTENT_WORKERS at 2).
            (!online(&status, "online_api_apps").is_empty()
                && !online(&status, "online_content_apps").is_empty()
                && online(&status, "online_workers").len() == 2)
                .then_some(())
        },
    );
    // The password set_init_password_service set.
    let api_client = Api {
        origin: origin.into(),
        auth: "admin:password".into(),
    };
    let users = api_client.call("GET", "/pulp/api/v3/users/?username=admin", Body::Empty);
    assert_eq!(users["count"], 1, "{users}");
    drop(workers);
    eprintln!(
        "image: compose replay done {:?} after start",
        started.elapsed()
    );
}

/// Every test above, once per engine: `podman::NAME`, `docker::NAME`.
macro_rules! under_both_engines {
    ($($test:ident),* $(,)?) => {
        mod podman {
            $(#[test]
            fn $test() {
                super::$test(super::Engine::Podman)
            })*
        }
        mod docker {
            $(#[test]
            fn $test() {
                super::$test(super::Engine::Docker)
            })*
        }
    };
}

under_both_engines!(
    binary_in_the_image_is_static_and_small,
    binary_runs_alone_in_a_scratch_image,
    image_config_user_and_directories,
    arbitrary_uid_in_group_0_with_a_read_only_root,
    links_cover_every_name_the_binary_answers_to,
    smoke_api_content_and_two_workers_on_a_fresh_database,
    unreachable_database_is_one_line_and_exit_69_after_the_timeout,
    all_in_one_container_under_supervise,
    shell_tools_and_legacy_paths_of_the_upstream_images,
    a_subpath_mount_over_a_legacy_path_leaves_the_binary_alone,
    gpg_as_the_operators_signing_init_container_runs_it,
    route_paths_prints_the_plugins_paths_as_the_operator_reads_them,
    pulp_operator_jobs_and_pods_run_unchanged,
    pulp_oci_images_compose_services_run_unchanged,
);
