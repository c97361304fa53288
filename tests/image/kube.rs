//! The README's Kubernetes manifests (section "Kubernetes"), played by `podman kube play`
//! against a real PostgreSQL on the host; podman only (Docker has no `kube play`).
//!
//! The manifests are read from README.md, so what is documented is what runs: the
//! PersistentVolumeClaim and the three Deployments of the ```yaml block, and the secrets its
//! `kubectl create secret generic` lines name (their names and keys). What the test changes,
//! and nothing else: the image (the one built for the tests), the database host and port (a
//! forwarder on the pod network's gateway to the throwaway PostgreSQL, which listens on the
//! host's 127.0.0.1 only), and the secrets are made with `podman secret create` instead of
//! `kubectl` (contents below). Each pod gets its own network namespace and address on podman's
//! default bridge network (`--network podman`), as on Kubernetes: no port is bound on the host.
//!
//! Then: every container of every replica runs; the api's status lists an api app, a content
//! app or a worker named after every pod (one worker per worker pod); the admin password from
//! the secret logs in; the probes pass; stopped as a kubelet stops them (SIGTERM,
//! the manifests' grace period), every container ends in time with exit code 0 (pulpcore's
//! code for a SIGTERM stop, passed on by the entrypoint); `podman kube down` removes the pods.
//!
//! What podman 4.3 (Debian 12) does with the manifests, found here and relied on:
//! - Deployments: `replicas` pods named `NAME-pod-I`, containers `NAME-pod-I-CONTAINER`, each
//!   pod with an infra container whose pause image podman builds itself from catatonit
//!   (`localhost/podman-pause:VERSION`; no registry is needed, the `catatonit` package is).
//! - `livenessProbe` becomes the container's healthcheck (`CMD-SHELL` of the exec command,
//!   `periodSeconds` as its interval, restart on failure); without systemd nothing runs it on
//!   a timer, so the test runs it: `podman healthcheck run`, then the inspected state is
//!   `healthy`. `readinessProbe` and `startupProbe` are ignored (nothing in the container's
//!   configuration refers to them): the test runs their exec commands with `podman exec` and
//!   requires exit 0. An `httpGet` probe would become `curl -f http://localhost:PORT/PATH` in
//!   the container (the image has no curl): the README's probes are execs.
//! - `terminationGracePeriodSeconds` is not honoured: containers get podman's default stop
//!   timeout, 10 s; the test stops them with the manifests' grace period, as a kubelet would.
//!   `kube down` kills at once and `pod stop` takes the network away first (see the stop).
//! - `containerPort` is published on the host (a second replica cannot bind it): the README's
//!   manifests have no `ports:` entry.
//! - `secret:` volumes: without `optional` spelled out, 4.3 dereferences a nil pointer and
//!   crashes (podman issue 16636); `subPath` on a secret or configMap volume is ignored (the
//!   whole volume is mounted on the file's path), hence the README's directory mounts. A
//!   secret volume is a podman volume named after the secret, filled from a podman secret that
//!   holds a Kubernetes Secret whose `data` values are the files' contents as they are (4.3 does
//!   not base64-decode them); `secretKeyRef` reads a podman secret holding a JSON map of
//!   base64-encoded values. The test makes each secret in the form its use needs. `emptyDir` is
//!   a podman volume named after the pod's volume (`tmp`, shared by the pods), which `kube
//!   down` removes; the claim's and the secrets' volumes outlive it: the test removes them.
//!
//! The names are the manifests' own (`pulp-api`, `pulp-data`, the secrets): one play at a time
//! on the machine, under a lock file, and leftovers of an interrupted run are removed first.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    Body, COMMAND_LIMIT, Engine, Postgres, http, online, root, run, scratch_dir, wait_for,
};

/// The network every pod joins: podman's default bridge, which always exists.
const NETWORK: &str = "podman";
/// The image the README names, replaced by the test image.
const README_IMAGE: &str = "image: quay.io/example/pulp:3.123";
/// The admin password the test puts in the secret.
const ADMIN_PASSWORD: &str = "kube-play-admin-password";

/// The README's "### Kubernetes" section, up to the next heading of its level or above.
fn kubernetes_section() -> String {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("\n### Kubernetes\n")
        .expect("README.md has a \"### Kubernetes\" section");
    let rest = &readme[start + 1..];
    let end = rest[4..]
        .find("\n## ")
        .into_iter()
        .chain(rest[4..].find("\n### "))
        .min()
        .map(|end| end + 4)
        .unwrap_or(rest.len());
    rest[..end].to_string()
}

/// The fenced code blocks of `text` whose opening fence is exactly "```" + `info`.
fn code_blocks(text: &str, info: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    // The info string of the open block, and its lines.
    let mut current: Option<(&str, Vec<&str>)> = None;
    for line in text.lines() {
        match current.as_mut() {
            None => current = line.trim_end().strip_prefix("```").map(|i| (i, Vec::new())),
            Some(_) if line.trim_end() == "```" => {
                let (block_info, lines) = current.take().unwrap();
                if block_info == info {
                    blocks.push(lines.join("\n") + "\n");
                }
            }
            Some((_, lines)) => lines.push(line),
        }
    }
    assert!(current.is_none(), "an unclosed code block in:\n{text}");
    blocks
}

/// A secret as the README's `kubectl create secret generic NAME --from-file=KEY
/// --from-literal=KEY=...` line makes it: its name and keys.
#[derive(Debug)]
struct SecretSpec {
    name: String,
    keys: Vec<String>,
}

fn secret_specs(commands: &str) -> Vec<SecretSpec> {
    commands
        .lines()
        .filter_map(|line| line.trim().strip_prefix("kubectl create secret generic "))
        .map(|rest| {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap().to_string();
            let keys = words
                .map(|word| {
                    let value = word
                        .strip_prefix("--from-file=")
                        .or_else(|| word.strip_prefix("--from-literal="))
                        .unwrap_or_else(|| panic!("unexpected {word:?} in {rest:?}"));
                    value.split('=').next().unwrap().to_string()
                })
                .collect();
            SecretSpec { name, keys }
        })
        .collect()
}

/// What the test needs to know of one Deployment of the manifests.
#[derive(Debug)]
struct Deployment {
    name: String,
    replicas: usize,
    container: String,
    /// The role its container runs (`args: ["pulp-api"]` -> `api`).
    role: String,
    /// Exec commands of its probes: "livenessProbe", "readinessProbe", "startupProbe".
    probes: BTreeMap<String, Vec<String>>,
}

impl Deployment {
    fn pods(&self) -> Vec<String> {
        (0..self.replicas)
            .map(|i| format!("{}-pod-{i}", self.name))
            .collect()
    }

    fn containers(&self) -> Vec<String> {
        self.pods()
            .iter()
            .map(|pod| format!("{pod}-{}", self.container))
            .collect()
    }
}

/// The value after `key:` on a line (flow or block style), without quotes or a comment.
fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let line = line.trim().trim_start_matches("- ");
    let value = line.strip_prefix(key)?.strip_prefix(':')?;
    let value = value.split(" #").next().unwrap();
    Some(value.trim().trim_matches('"'))
}

/// The Deployments of a multi-document YAML written as the README writes it: one container
/// each, exec probes as `exec: {command: [JSON strings]}` on the line after the probe's key.
fn deployments(yaml: &str) -> Vec<Deployment> {
    yaml.split("\n---\n")
        .filter(|document| document.contains("\nkind: Deployment\n"))
        .map(|document| {
            let lines: Vec<&str> = document.lines().collect();
            let metadata = lines.iter().position(|line| *line == "metadata:").unwrap();
            let name = value_of(lines[metadata + 1], "name").unwrap().to_string();
            let replicas = lines
                .iter()
                .find_map(|line| value_of(line, "replicas"))
                .map(|value| value.parse().unwrap())
                .unwrap_or(1);
            let containers: Vec<&str> = lines
                .iter()
                .skip_while(|line| line.trim() != "containers:")
                .filter_map(|line| line.trim().strip_prefix("- name: "))
                .take(1)
                .collect();
            let args = lines
                .iter()
                .find_map(|line| value_of(line, "args"))
                .unwrap_or_else(|| panic!("{name}: no args"));
            let args: Vec<String> = serde_json::from_str(args).unwrap();
            let mut probes = BTreeMap::new();
            for (i, line) in lines.iter().enumerate() {
                let Some((key, rest)) = line.trim().split_once(':') else {
                    continue;
                };
                let rest = rest.trim();
                if !["livenessProbe", "readinessProbe", "startupProbe"].contains(&key)
                    || !(rest.is_empty() || rest.starts_with('#'))
                {
                    continue;
                }
                let exec = lines[i + 1]
                    .trim()
                    .strip_prefix("exec: {command: ")
                    .and_then(|rest| rest.strip_suffix('}'))
                    .unwrap_or_else(|| panic!("{name}: {key} is not an exec probe"));
                probes.insert(key.to_string(), serde_json::from_str(exec).unwrap());
            }
            Deployment {
                role: args[0].strip_prefix("pulp-").unwrap().to_string(),
                name,
                replicas,
                container: containers[0].to_string(),
                probes,
            }
        })
        .collect()
}

/// `text` with `from` replaced by `to`, which must occur exactly `times` times.
fn substitute(text: &str, from: &str, to: &str, times: usize) -> String {
    assert_eq!(
        text.matches(from).count(),
        times,
        "the README's manifests should hold {from:?} {times} times"
    );
    text.replace(from, to)
}

/// A TCP forwarder from `listen` to `target` (one thread per connection), until dropped.
struct Forwarder {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Forwarder {
    /// None while `listen` cannot be bound (the bridge's address exists once a pod runs).
    fn start(listen: SocketAddr, target: SocketAddr) -> Option<Forwarder> {
        let listener = TcpListener::bind(listen).ok()?;
        let address = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buffer) {
                            if n == 0 || to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Some(Forwarder { address, stop })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.address);
    }
}

fn podman() -> std::process::Command {
    Engine::Podman.command()
}

/// Output of a podman command that must succeed.
fn podman_ok(args: &[&str], what: &str) -> String {
    run(podman().args(args), COMMAND_LIMIT).ok(what).stdout
}

/// Everything a play leaves on the machine, removed on drop (also after a failure, with the
/// last lines of every container's log printed then).
struct Play {
    manifests: PathBuf,
    containers: Vec<String>,
    volumes: Vec<String>,
    secrets: Vec<String>,
}

impl Play {
    fn remove(&self) {
        let quiet = |args: &[&str]| {
            let _ = podman()
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        let manifests = self.manifests.display().to_string();
        quiet(&["kube", "down", &manifests]);
        for volume in &self.volumes {
            quiet(&["volume", "rm", volume]);
        }
        for secret in &self.secrets {
            quiet(&["secret", "rm", secret]);
        }
    }
}

impl Drop for Play {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for container in &self.containers {
                let logs = run(podman().args(["logs", container]), COMMAND_LIMIT);
                let text = format!("{}{}", logs.stdout, logs.stderr);
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                eprintln!("--- last lines of {container}:\n{}", tail.join("\n"));
            }
        }
        self.remove();
    }
}

/// One `kube play` at a time on the machine: the manifests' names are global to podman.
fn machine_lock() -> fs::File {
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("pulp-entrypoint-kube-play.lock"))
        .unwrap();
    lock.lock().unwrap();
    lock
}

/// A file only root can read, with `text`.
fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut file = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
    path
}

/// The IPv4 address of a pod on `NETWORK` (its infra container's).
fn pod_address(pod: &str) -> String {
    let infra = podman_ok(
        &["pod", "inspect", pod, "--format", "{{.InfraContainerID}}"],
        "pod inspect",
    );
    let format = format!("{{{{.NetworkSettings.Networks.{NETWORK}.IPAddress}}}}");
    podman_ok(
        &["inspect", infra.trim(), "--format", &format],
        "infra inspect",
    )
    .trim()
    .to_string()
}

fn inspect(container: &str, format: &str) -> String {
    podman_ok(&["inspect", container, "--format", format], "inspect")
        .trim()
        .to_string()
}

fn readme_manifests_run_under_podman_kube_play() {
    let image = Engine::Podman.image();
    let _lock = machine_lock();
    let started = Instant::now();

    let section = kubernetes_section();
    let yaml = code_blocks(&section, "yaml");
    assert_eq!(yaml.len(), 1, "one ```yaml block in the Kubernetes section");
    let yaml = &yaml[0];
    let commands = code_blocks(&section, "");
    let secrets = secret_specs(&commands.concat());
    assert_eq!(
        secrets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["pulp-settings", "pulp-db-encryption-key", "pulp-db"],
        "the secrets the README creates"
    );
    let deployments = deployments(yaml);
    assert_eq!(
        deployments
            .iter()
            .map(|d| d.role.as_str())
            .collect::<Vec<_>>(),
        ["api", "content", "worker"],
        "{deployments:?}"
    );
    for deployment in &deployments {
        assert_eq!(
            deployment.probes.keys().collect::<Vec<_>>(),
            ["livenessProbe", "readinessProbe", "startupProbe"],
            "{}: every probe is written",
            deployment.name
        );
    }
    // Volumes podman makes for the play: PersistentVolumeClaims, the emptyDir (named as the
    // pod's volume) and one per secret volume (named as the secret).
    let mut volumes: Vec<String> = yaml
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let claim = line.strip_prefix("persistentVolumeClaim: {claimName: ");
            let secret = line.strip_prefix("secret: {secretName: ");
            claim
                .or(secret)
                .map(|rest| rest.split([',', '}']).next().unwrap().trim().to_string())
        })
        .collect();
    let lines: Vec<&str> = yaml.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == "emptyDir: {}" {
            volumes.push(value_of(lines[i - 1], "name").unwrap().to_string());
        }
    }
    for claim in yaml
        .split("\n---\n")
        .filter(|document| document.contains("\nkind: PersistentVolumeClaim\n"))
    {
        let name = claim
            .lines()
            .find_map(|line| value_of(line, "name"))
            .unwrap();
        volumes.push(name.to_string());
    }
    volumes.sort();
    volumes.dedup();

    // The database, reached from the pods through the bridge's gateway on the host.
    let pg = Postgres::start();
    let gateway: Ipv4Addr = podman_ok(
        &[
            "network",
            "inspect",
            NETWORK,
            "--format",
            "{{range .Subnets}}{{.Gateway}}{{end}}",
        ],
        "network inspect",
    )
    .trim()
    .parse()
    .unwrap();
    // Bound once the pods run (below); until then the entrypoints wait for PostgreSQL.
    let forward_to = SocketAddr::from((gateway, super::free_port()));

    // The manifests, with the one image, host and port of the test.
    let played = substitute(yaml, README_IMAGE, &format!("image: {image}"), 3);
    let played = substitute(
        &played,
        "{name: PULP_DATABASES__default__HOST, value: postgres}",
        &format!("{{name: PULP_DATABASES__default__HOST, value: \"{gateway}\"}}"),
        3,
    );
    let played = substitute(
        &played,
        "{name: PULP_DATABASES__default__PORT, value: \"5432\"}",
        &format!(
            "{{name: PULP_DATABASES__default__PORT, value: \"{}\"}}",
            forward_to.port()
        ),
        3,
    );
    let dir = tempfile::tempdir_in(scratch_dir()).unwrap();
    let manifests = dir.path().join("pulp.yaml");
    fs::write(&manifests, &played).unwrap();

    let play = Play {
        manifests: manifests.clone(),
        containers: deployments.iter().flat_map(|d| d.containers()).collect(),
        volumes,
        secrets: secrets.iter().map(|s| s.name.clone()).collect(),
    };
    // Leftovers of an interrupted run would be played again (or refused): gone first.
    play.remove();

    // The secrets' contents, in the forms podman 4.3 reads (module doc).
    use base64::Engine as _;
    let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(31) ^ 0xa5);
    let mut files: BTreeMap<&str, String> = BTreeMap::new();
    files.insert(
        "settings.py",
        "SECRET_KEY = \"kube-play-test-secret-key\"\nCONTENT_ORIGIN = \"http://pulp-content:24816\"\n"
            .into(),
    );
    files.insert(
        "database_fields.symmetric.key",
        base64::engine::general_purpose::URL_SAFE.encode(key),
    );
    files.insert("password", pg.password.clone());
    files.insert("admin-password", ADMIN_PASSWORD.into());
    for secret in &secrets {
        let as_volume = played.contains(&format!("secretName: {},", secret.name))
            || played.contains(&format!("secretName: {}}}", secret.name));
        let as_env = played.contains(&format!("secretKeyRef: {{name: {},", secret.name));
        assert!(
            as_volume != as_env,
            "{}: used as a volume or by secretKeyRef, one of them",
            secret.name
        );
        let value = |key: &String| {
            files
                .get(key.as_str())
                .unwrap_or_else(|| panic!("no content for {key}"))
                .clone()
        };
        let content = if as_volume {
            let data: serde_json::Map<String, Value> = secret
                .keys
                .iter()
                .map(|key| (key.clone(), Value::String(value(key))))
                .collect();
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": secret.name}, "data": data})
        } else {
            let data: serde_json::Map<String, Value> = secret
                .keys
                .iter()
                .map(|key| {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(value(key));
                    (key.clone(), Value::String(encoded))
                })
                .collect();
            Value::Object(data)
        };
        let file = private_file(dir.path(), &secret.name, &content.to_string());
        podman_ok(
            &[
                "secret",
                "create",
                &secret.name,
                &file.display().to_string(),
            ],
            "secret create",
        );
    }

    let output = run(
        podman()
            .args(["kube", "play", "--network", NETWORK])
            .arg(&manifests),
        COMMAND_LIMIT,
    );
    assert_eq!(output.code, Some(0), "kube play:\n{output}");
    eprintln!("kube: played {:?} after start", started.elapsed());
    let forwarder = wait_for(
        &format!("{forward_to} to be bound, for PostgreSQL"),
        Duration::from_secs(30),
        || Forwarder::start(forward_to, SocketAddr::from(([127, 0, 0, 1], pg.port))),
    );

    // Every container of every replica runs (none ended waiting for the database, say).
    wait_for(
        "every container of the play to run",
        Duration::from_secs(60),
        || {
            play.containers
                .iter()
                .all(|container| inspect(container, "{{.State.Status}}") == "running")
                .then_some(())
        },
    );

    // Status, from the first api pod: every replica's apps online. pulpcore names an app
    // `{pid}@{hostname}` (the entrypoint adds a suffix), and a pod's hostname is its name.
    let origin = format!("http://{}:24817", pod_address(&deployments[0].pods()[0]));
    let status_url = format!("{origin}/pulp/api/v3/status/");
    let kinds = [
        ("api", "online_api_apps"),
        ("content", "online_content_apps"),
        ("worker", "online_workers"),
    ];
    let every_replica_online = |status: &Value| {
        kinds.iter().all(|(role, kind)| {
            let names = online(status, kind);
            let deployment = deployments.iter().find(|d| d.role == *role).unwrap();
            deployment
                .pods()
                .iter()
                .all(|pod| names.iter().any(|name| name.contains(&format!("@{pod}"))))
        })
    };
    let status = wait_for(
        "status to list the api app, content app and worker of every replica",
        Duration::from_secs(240),
        || {
            let (code, body) = http("GET", &status_url, None, Body::Empty);
            let status: Value = serde_json::from_slice(&body).ok().filter(|_| code == 200)?;
            every_replica_online(&status).then_some(status)
        },
    );
    eprintln!(
        "kube: status lists every app {:?} after start: api {:?}, content {:?}, workers {:?}",
        started.elapsed(),
        online(&status, "online_api_apps"),
        online(&status, "online_content_apps"),
        online(&status, "online_workers"),
    );
    // One pulpcore-worker per worker pod.
    let workers = deployments.iter().find(|d| d.role == "worker").unwrap();
    assert_eq!(
        online(&status, "online_workers").len(),
        workers.replicas,
        "{status}"
    );
    assert_eq!(status["database_connection"]["connected"], true, "{status}");

    // The admin password of the secret (secretKeyRef) was applied.
    let (code, body) = http(
        "GET",
        &format!("{origin}/pulp/api/v3/users/?username=admin"),
        Some(&format!("admin:{ADMIN_PASSWORD}")),
        Body::Empty,
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let users: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(users["count"], 1, "{users}");

    // The probes. Liveness is podman's healthcheck; readiness and startup probes podman 4.3
    // ignores, so their commands are run in the container as a kubelet would.
    for deployment in &deployments {
        let liveness = &deployment.probes["livenessProbe"];
        for container in deployment.containers() {
            let healthcheck = inspect(&container, "{{json .Config.Healthcheck.Test}}");
            let healthcheck: Vec<String> = serde_json::from_str(&healthcheck).unwrap();
            assert_eq!(
                healthcheck[1..=liveness.len()],
                liveness[..],
                "{container}: the liveness probe is the healthcheck: {healthcheck:?}"
            );
            let check = run(
                podman().args(["healthcheck", "run", &container]),
                COMMAND_LIMIT,
            );
            assert_eq!(check.code, Some(0), "{container}: liveness probe:\n{check}");
            assert_eq!(
                inspect(&container, "{{.State.Health.Status}}"),
                "healthy",
                "{container}"
            );
            for probe in ["readinessProbe", "startupProbe"] {
                let command = &deployment.probes[probe];
                let exec = run(
                    podman().args(["exec", &container]).args(command),
                    COMMAND_LIMIT,
                );
                assert_eq!(
                    exec.code,
                    Some(0),
                    "{container}: {probe} {command:?}:\n{exec}"
                );
            }
        }
    }
    eprintln!(
        "kube: every probe passed {:?} after start",
        started.elapsed()
    );

    // The stop. podman 4.3's `kube down` SIGKILLs every container at once, whatever its stop
    // signal and timeout (podman issue 22397, fixed in 5.x; seen here: 137 within a second),
    // and its `pod stop` takes the pod's network down while the containers are still ending
    // (seen here: "Network is unreachable" half a second after SIGTERM, so pulpcore cannot
    // say goodbye to PostgreSQL and the api outlived the timeout). As a kubelet does, the
    // containers are stopped first, in the running pods, with the manifests' grace period
    // (which podman does not take from them), then `kube down` removes the rest. Each
    // container must end on its own before the SIGKILL, with exit code 0 (137 otherwise).
    let grace: Vec<&str> = yaml
        .lines()
        .filter_map(|line| value_of(line, "terminationGracePeriodSeconds"))
        .collect();
    assert_eq!(
        grace.len(),
        deployments.len(),
        "a grace period in every Deployment"
    );
    let grace: u64 = grace
        .iter()
        .map(|g| g.parse::<u64>().unwrap())
        .min()
        .unwrap();
    let grace = Duration::from_secs(grace);
    let stop = run(
        podman()
            .args(["stop", "--time", &grace.as_secs().to_string()])
            .args(&play.containers),
        grace + COMMAND_LIMIT,
    );
    assert_eq!(stop.code, Some(0), "stop:\n{stop}");
    for container in &play.containers {
        assert_eq!(
            inspect(container, "{{.State.Status}} {{.State.ExitCode}}"),
            "exited 0",
            "{container} at stop"
        );
    }
    assert!(stop.elapsed < grace, "stop took {:?}", stop.elapsed);
    let down = run(
        podman().args(["kube", "down"]).arg(&manifests),
        COMMAND_LIMIT,
    );
    assert_eq!(down.code, Some(0), "kube down:\n{down}");
    eprintln!(
        "kube: stop ended every container with 0 in {:?}; whole test {:?}",
        stop.elapsed,
        started.elapsed()
    );
    drop(play);
    drop(forwarder);
}

/// Named as the other image tests are, `podman::NAME` (`cargo test --test image podman::` runs
/// it with the rest of podman's).
mod podman {
    #[test]
    fn readme_manifests_run_under_kube_play() {
        super::readme_manifests_run_under_podman_kube_play()
    }
}
