//! The image, in real containers (podman, run as root).
//!
//! The first test to need it builds the image once for the whole binary: local base images
//! made with debootstrap (no registry can be reached), then the root Containerfile through
//! images/build.py, by tests/tools/image.sh. Its caches (the rootfs tarballs, podman's layer
//! cache, the builder's cargo cache mount) make later runs take seconds. Then:
//! - the binary in the image is static and small, and alone in a `FROM scratch` image it runs;
//! - the image's user, directories and links are what deployments expect, also as an
//!   arbitrary UID in group 0 with a read-only root filesystem;
//! - with an unreachable database it says so in one line and exits 69 after the timeout;
//! - the smoke test: pulp-api, pulp-content and two pulp-worker containers from the one image
//!   on a fresh PostgreSQL, until status lists them all; a file goes in through the API and
//!   comes out of the content app; an orphan is reaped; `podman stop` ends each in time.
//!
//! Missing tools are a failure that says to run tests/run.sh, never a skip.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The image the tests build and run.
const IMAGE: &str = "localhost/pulp-entrypoint-test:minimal";
/// The variant it is built from (images/minimal.toml).
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

fn podman() -> Command {
    let mut command = Command::new("podman");
    command.env(
        "CONTAINERS_CONF",
        root().join("tests/tools/containers.conf"),
    );
    command
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

/// What the image tests need on the host, or the reason they cannot run.
fn preflight() -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(
            "the image tests run podman and debootstrap as root: run tests/run.sh as root (as CI does)"
                .into(),
        );
    }
    let missing: Vec<&str> = ["podman", "runc", "debootstrap", "curl", "ldd", "initdb"]
        .into_iter()
        .filter(|tool| !on_path(tool))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing {} on PATH: run tests/run.sh, which installs them (tests/tools/deps.sh)",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// The image, built once per test binary; every test that needs it fails if the build did.
fn image() -> &'static str {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    match BUILT.get_or_init(build_image) {
        Ok(()) => IMAGE,
        Err(error) => panic!("{error}"),
    }
}

fn build_image() -> Result<(), String> {
    preflight()?;
    let log = scratch_dir().join("image-build.log");
    let started = Instant::now();
    let output = run(
        Command::new("bash")
            .arg(root().join("tests/tools/image.sh"))
            .args(["build", VARIANT, IMAGE]),
        BUILD_LIMIT,
    );
    fs::write(&log, format!("{}\n{}", output.stdout, output.stderr)).unwrap();
    if output.code != Some(0) {
        let tail: Vec<&str> = output.stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "building {IMAGE} failed (whole log: {}):\n{}",
            log.display(),
            tail.join("\n")
        ));
    }
    eprintln!("image: {IMAGE} built in {:?}", started.elapsed());
    Ok(())
}

/// The binary as the image holds it, copied out once.
fn binary_from_image() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let image = image();
        let path = scratch_dir().join("image-pulp-entrypoint");
        let container = unique("copy");
        run(
            podman().args(["create", "--name", &container, image]),
            COMMAND_LIMIT,
        )
        .ok("podman create");
        let copied = run(
            podman()
                .arg("cp")
                .arg(format!("{container}:/usr/bin/pulp-entrypoint"))
                .arg(&path),
            COMMAND_LIMIT,
        );
        run(podman().args(["rm", &container]), COMMAND_LIMIT).ok("podman rm");
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

#[test]
fn binary_in_the_image_is_static_and_small() {
    let binary = binary_from_image();
    let bytes = fs::read(binary).unwrap();
    assert!(
        !has_interpreter(&bytes),
        "the binary asks for a dynamic loader"
    );
    // static-pie (kept for ASLR): ldd says "statically linked"; plain static: "not a dynamic
    // executable". Either way no shared library is named.
    let ldd = run(Command::new("ldd").arg(binary), COMMAND_LIMIT);
    let said = format!("{}{}", ldd.stdout, ldd.stderr);
    assert!(
        said.contains("statically linked") || said.contains("not a dynamic executable"),
        "ldd: {said}"
    );
    assert!(!said.contains(".so"), "ldd names a shared library: {said}");
    let size = bytes.len();
    eprintln!("image: stripped static binary is {size} bytes");
    assert!(
        size < 5 * 1024 * 1024,
        "the binary is {size} bytes, over 5 MiB"
    );
}

#[test]
fn binary_runs_alone_in_a_scratch_image() {
    let binary = binary_from_image();
    let context = tempfile::tempdir().unwrap();
    fs::copy(binary, context.path().join("pulp-entrypoint")).unwrap();
    fs::write(
        context.path().join("Containerfile"),
        "FROM scratch\nCOPY pulp-entrypoint /pulp-entrypoint\nENTRYPOINT [\"/pulp-entrypoint\"]\n",
    )
    .unwrap();
    let tag = "localhost/pulp-entrypoint-test:scratch";
    run(
        podman()
            .args(["build", "--quiet", "--tag", tag])
            .arg(context.path()),
        COMMAND_LIMIT,
    )
    .ok("building the scratch image");
    let version = run(
        podman().args(["run", "--rm", tag, "--version"]),
        COMMAND_LIMIT,
    )
    .ok("--version in a scratch image");
    assert!(version.stdout.starts_with("pulp-entrypoint "), "{version}");
    // The PID 1 duties need nothing from the image either: the entrypoint runs itself as
    // the child and passes its exit code on.
    let child = run(
        podman().args([
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
}

/// A podman volume, removed when dropped.
struct Volume(String);

impl Volume {
    fn new() -> Volume {
        let name = unique("vol");
        run(podman().args(["volume", "create", &name]), COMMAND_LIMIT).ok("volume create");
        Volume(name)
    }

    fn mount(&self, at: &str) -> String {
        format!("{}:{at}", self.0)
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = podman()
            .args(["volume", "rm", "--force", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn image_config_user_and_directories() {
    let image = image();
    let inspect = run(
        podman().args([
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
        podman().args([
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

#[test]
fn arbitrary_uid_in_group_0_with_a_read_only_root() {
    let image = image();
    let volume = Volume::new();
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
        podman()
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

#[test]
fn links_cover_every_name_the_binary_answers_to() {
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

    let image = image();
    let check = format!(
        "for link in {}; do echo \"$link -> $(readlink \"$link\")\"; done",
        links.join(" ")
    );
    let output = run(
        podman().args([
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
    let expected: Vec<String> = links
        .iter()
        .map(|link| format!("{link} -> /usr/bin/pulp-entrypoint"))
        .collect();
    assert_eq!(output.stdout.lines().collect::<Vec<_>>(), expected);

    // A link acts as its name: the removed role says what to run instead.
    let removed = run(
        podman().args([
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
