//! The command line each Pulp role ends in.
//!
//! Built from the same `PULP_*` variables the Pulp images' scripts read, so
//! existing deployments keep their tuning. Arguments the user appends win:
//! a flag that appears in them is not added by the entrypoint.

use std::ffi::OsString;

use crate::environment::Environment;
use crate::installed::pulpcore::{self, Accepts, Pulpcore};
use crate::installed::{find_in_path, python_env};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Content,
    Worker,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "pulp-api",
            Role::Content => "pulp-content",
            Role::Worker => "pulp-worker",
        }
    }
}

/// A program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
}

impl CommandLine {
    pub fn to_command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.program);
        command.args(&self.args);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }
}

impl std::fmt::Display for CommandLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.program.to_string_lossy())?;
        for arg in &self.args {
            write!(f, " {}", arg.to_string_lossy())?;
        }
        Ok(())
    }
}

/// A `PULP_*` tuning variable that is not what it should be.
#[derive(Debug, thiserror::Error)]
#[error("env {name}: '{value}' is not {expected}; fix or unset it")]
pub struct RoleConfigError {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// What the host offers, looked up once.
#[derive(Debug, Clone)]
pub struct Host {
    pub ipv6: bool,
    pub path: Option<OsString>,
    /// The pulpcore of the `pulpcore-manager` on PATH, when found.
    pub pulpcore: Option<Pulpcore>,
}

impl Host {
    pub fn detect(env: &Environment) -> Host {
        Host {
            // Binding [::] is the real test: /proc/net/if_inet6 can exist while
            // IPv6 is disabled by sysctl.
            ipv6: std::net::TcpListener::bind("[::]:0").is_ok(),
            path: env.get("PATH").map(OsString::from),
            pulpcore: Pulpcore::find(&python_env::package_roots(
                env.get("PATH").map(std::ffi::OsStr::new),
            )),
        }
    }

    /// What `command` accepts of our options. pulpcore not found: what the
    /// newest accepts (the caller says so in the log).
    fn accepts(&self, command: pulpcore::Command) -> Accepts {
        match &self.pulpcore {
            Some(pulpcore) => pulpcore.accepts(command),
            None => Accepts {
                name_template: true,
                no_control_socket: true,
            },
        }
    }

    fn has_program(&self, name: &str) -> bool {
        find_in_path(name, self.path.as_deref()).is_some()
    }
}

/// What the entrypoint's own options say about the servers.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub name_template: String,
    /// SIGKILL comes this long after the first SIGTERM.
    pub stop_grace: std::time::Duration,
}

impl Tuning {
    /// gunicorn's `--graceful-timeout`: its own escalation (workers killed,
    /// arbiter exits 0) ends 5 s before our SIGKILL would (its default, 30 s,
    /// is longer than our 25 s `stop_grace`, so a stuck worker made it 137).
    fn graceful_timeout(&self) -> u64 {
        let grace = self.stop_grace.as_secs();
        if grace > 10 {
            grace - 5
        } else {
            (grace / 2).max(1)
        }
    }
}

/// The server command for `role`.
pub fn server_command(
    role: Role,
    env: &Environment,
    host: &Host,
    tuning: &Tuning,
    extra: &[OsString],
) -> Result<CommandLine, RoleConfigError> {
    let name_template = tuning.name_template.as_str();
    let address = if host.ipv6 { "[::]" } else { "0.0.0.0" };
    let mut flags = Flags::new(extra);
    let program = match role {
        Role::Api | Role::Content => {
            let (port, workers_var, pulpcore_program, wsgi) = match role {
                Role::Api => (
                    24817,
                    "PULP_API_WORKERS",
                    "pulpcore-api",
                    "pulpcore.app.wsgi:application",
                ),
                _ => (
                    24816,
                    "PULP_CONTENT_WORKERS",
                    "pulpcore-content",
                    "pulpcore.content:server",
                ),
            };
            let native = host.has_program(pulpcore_program);
            let program = if native {
                pulpcore_program
            } else {
                // pulpcore before 3.20 has no pulpcore-api/-content: run gunicorn as the old images did.
                flags.positional(wsgi);
                if role == Role::Content {
                    flags.add("--worker-class", Some("aiohttp.GunicornWebWorker".into()));
                }
                flags.add("--name", Some(role.name().into()));
                "gunicorn"
            };
            flags.add("--bind", Some(format!("{address}:{port}")));
            flags.add(
                "--timeout",
                Some(positive(env, "PULP_GUNICORN_TIMEOUT", "90")?),
            );
            flags.add(
                "--graceful-timeout",
                Some(tuning.graceful_timeout().to_string()),
            );
            flags.add("--workers", Some(positive(env, workers_var, "2")?));
            flags.add("--access-logfile", Some("-".into()));
            if let Some(format) = env.get("PULP_GUNICORN_ACCESS_LOGFORMAT") {
                flags.add("--access-logformat", Some(format.into()));
            }
            let (max_requests, jitter) = match role {
                Role::Api => (
                    "PULP_API_WORKERS_MAX_REQUESTS",
                    "PULP_API_WORKERS_MAX_REQUESTS_JITTER",
                ),
                _ => (
                    "PULP_CONTENT_WORKERS_MAX_REQUESTS",
                    "PULP_CONTENT_WORKERS_MAX_REQUESTS_JITTER",
                ),
            };
            if let Some(max) = optional_count(env, max_requests)? {
                flags.add("--max-requests", Some(max));
            }
            if let Some(jitter) = optional_count(env, jitter)? {
                flags.add("--max-requests-jitter", Some(jitter));
            }
            if boolean(env, "PULP_GUNICORN_RELOAD")? {
                flags.add("--reload", None);
            }
            if native {
                let accepts = host.accepts(command_of(role));
                if accepts.name_template {
                    flags.add("--name-template", Some(name_template.into()));
                }
                // gunicorn >= 25.1 opens a control socket under $HOME, which an
                // arbitrary UID cannot write; pulpcore ignores the flag on older gunicorn.
                if accepts.no_control_socket && !flags.user_gave("--control-socket") {
                    flags.add("--no-control-socket", None);
                }
            }
            program
        }
        Role::Worker => {
            if host.accepts(pulpcore::Command::Worker).name_template {
                flags.add("--name-template", Some(name_template.into()));
            }
            "pulpcore-worker"
        }
    };
    Ok(CommandLine {
        program: program.into(),
        args: flags.finish(),
        env: Vec::new(),
    })
}

fn command_of(role: Role) -> pulpcore::Command {
    match role {
        Role::Api => pulpcore::Command::Api,
        Role::Content => pulpcore::Command::Content,
        Role::Worker => pulpcore::Command::Worker,
    }
}

/// What the log should say about the installed pulpcore for `role`: its
/// version, and a warning when the role's command cannot be given a unique
/// name (pulpcore before `--name-template` names apps `{pid}@{hostname}`).
pub fn installed_notes(role: Role, host: &Host) -> (String, Option<String>) {
    let Some(pulpcore) = &host.pulpcore else {
        return (
            "pulpcore not found through pulpcore-manager on PATH".into(),
            None,
        );
    };
    let uses_pulpcore_command = match role {
        Role::Worker => true,
        Role::Api => host.has_program("pulpcore-api"),
        Role::Content => host.has_program("pulpcore-content"),
    };
    let warning = (!uses_pulpcore_command || !pulpcore.accepts(command_of(role)).name_template)
        .then(|| {
            format!(
                "{} cannot be given a unique name (no --name-template): {} registers as {{pid}}@{{hostname}}, so two containers that share a hostname (host network) collide in the status; give each its own hostname",
                pulpcore.describe(),
                role.name()
            )
        });
    (pulpcore.describe(), warning)
}

/// Arguments under construction: a flag the user passed in `extra` is skipped.
struct Flags<'a> {
    extra: &'a [OsString],
    args: Vec<OsString>,
}

impl<'a> Flags<'a> {
    fn new(extra: &'a [OsString]) -> Self {
        Flags {
            extra,
            args: Vec::new(),
        }
    }

    fn user_gave(&self, flag: &str) -> bool {
        self.extra.iter().any(|arg| {
            let arg = arg.to_string_lossy();
            arg == flag || arg.starts_with(&format!("{flag}="))
        })
    }

    fn add(&mut self, flag: &str, value: Option<String>) {
        if self.user_gave(flag) {
            return;
        }
        self.args.push(flag.into());
        if let Some(value) = value {
            self.args.push(value.into());
        }
    }

    fn positional(&mut self, value: &str) {
        self.args.push(value.into());
    }

    fn finish(mut self) -> Vec<OsString> {
        self.args.extend(self.extra.iter().cloned());
        self.args
    }
}

fn positive(
    env: &Environment,
    name: &'static str,
    default: &str,
) -> Result<String, RoleConfigError> {
    let value = env.get(name).unwrap_or(default).trim();
    match value.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n.to_string()),
        _ => Err(RoleConfigError {
            name,
            value: value.to_string(),
            expected: "a whole number above 0",
        }),
    }
}

fn optional_count(
    env: &Environment,
    name: &'static str,
) -> Result<Option<String>, RoleConfigError> {
    match env.get(name).map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => value
            .parse::<u32>()
            .map(|n| Some(n.to_string()))
            .map_err(|_| RoleConfigError {
                name,
                value: value.to_string(),
                expected: "a whole number",
            }),
    }
}

fn boolean(env: &Environment, name: &'static str) -> Result<bool, RoleConfigError> {
    match env
        .get(name)
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("false") | Some("0") | Some("no") => Ok(false),
        Some("true") | Some("1") | Some("yes") => Ok(true),
        Some(other) => Err(RoleConfigError {
            name,
            value: other.to_string(),
            expected: "true or false",
        }),
    }
}

/// The default name template: pulpcore's `{pid}@{hostname}` plus a random
/// suffix, because containers on one host network share the hostname and
/// their servers often get the same small pid, and two apps with one name collide.
pub fn unique_name_template() -> String {
    let mut bytes = [0u8; 4];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut bytes))
        .map(|_| u32::from_le_bytes(bytes))
        .unwrap_or_else(|_| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            now ^ std::process::id()
        });
    format!("{{pid}}@{{hostname}}-{random:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning(name_template: &str) -> Tuning {
        Tuning {
            name_template: name_template.into(),
            stop_grace: std::time::Duration::from_secs(25),
        }
    }

    fn words(line: &CommandLine) -> Vec<String> {
        line.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn host_with(programs: &[&str], ipv6: bool) -> (tempfile::TempDir, Host) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for program in programs {
            let path = dir.path().join(program);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let host = Host {
            ipv6,
            path: Some(dir.path().as_os_str().to_owned()),
            pulpcore: None,
        };
        (dir, host)
    }

    #[test]
    fn api_uses_pulpcore_api_with_the_images_variables() {
        let (_dir, host) = host_with(&["pulpcore-api"], true);
        let env = Environment::from_pairs([
            ("PULP_API_WORKERS", "4"),
            ("PULP_GUNICORN_TIMEOUT", "120"),
            ("PULP_API_WORKERS_MAX_REQUESTS", "1000"),
            ("PULP_API_WORKERS_MAX_REQUESTS_JITTER", "50"),
        ]);
        let line = server_command(Role::Api, &env, &host, &tuning("T"), &[]).unwrap();
        assert_eq!(line.program, "pulpcore-api");
        assert_eq!(
            words(&line),
            [
                "--bind",
                "[::]:24817",
                "--timeout",
                "120",
                "--graceful-timeout",
                "20",
                "--workers",
                "4",
                "--access-logfile",
                "-",
                "--max-requests",
                "1000",
                "--max-requests-jitter",
                "50",
                "--name-template",
                "T",
                "--no-control-socket"
            ]
        );
    }

    #[test]
    fn content_falls_back_to_gunicorn_without_ipv6() {
        let (_dir, host) = host_with(&["gunicorn"], false);
        let line = server_command(
            Role::Content,
            &Environment::default(),
            &host,
            &tuning("T"),
            &[],
        )
        .unwrap();
        assert_eq!(line.program, "gunicorn");
        assert_eq!(
            words(&line),
            [
                "pulpcore.content:server",
                "--worker-class",
                "aiohttp.GunicornWebWorker",
                "--name",
                "pulp-content",
                "--bind",
                "0.0.0.0:24816",
                "--timeout",
                "90",
                "--graceful-timeout",
                "20",
                "--workers",
                "2",
                "--access-logfile",
                "-"
            ]
        );
    }

    #[test]
    fn user_arguments_replace_ours_and_come_last() {
        let (_dir, host) = host_with(&["pulpcore-api"], true);
        let extra: Vec<OsString> = vec![
            "--bind=127.0.0.1:9000".into(),
            "--workers".into(),
            "1".into(),
        ];
        let line = server_command(
            Role::Api,
            &Environment::default(),
            &host,
            &tuning("T"),
            &extra,
        )
        .unwrap();
        let args = words(&line);
        assert!(!args.contains(&"[::]:24817".to_string()), "{args:?}");
        assert_eq!(args.iter().filter(|a| a.as_str() == "--workers").count(), 1);
        assert_eq!(
            &args[args.len() - 3..],
            ["--bind=127.0.0.1:9000", "--workers", "1"]
        );
    }

    #[test]
    fn worker_gets_a_name_template() {
        let (_dir, host) = host_with(&[], true);
        let line = server_command(
            Role::Worker,
            &Environment::default(),
            &host,
            &tuning("N"),
            &[],
        )
        .unwrap();
        assert_eq!(line.program, "pulpcore-worker");
        assert_eq!(words(&line), ["--name-template", "N"]);
    }

    #[test]
    fn bad_tuning_variables_are_named() {
        let (_dir, host) = host_with(&["pulpcore-api"], true);
        for (name, value) in [
            ("PULP_API_WORKERS", "0"),
            ("PULP_GUNICORN_TIMEOUT", "ninety"),
            ("PULP_GUNICORN_RELOAD", "maybe"),
            ("PULP_API_WORKERS_MAX_REQUESTS", "-1"),
        ] {
            let env = Environment::from_pairs([(name, value)]);
            let error = server_command(Role::Api, &env, &host, &tuning("T"), &[]).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("env {name}: '{value}'")),
                "{error}"
            );
        }
    }

    /// A host whose pulpcore is `version`, with these lines in each command's source.
    fn host_with_pulpcore(version: &str, source: &str) -> (tempfile::TempDir, Host) {
        let (dir, mut host) = host_with(&["pulpcore-api", "pulpcore-content"], true);
        let site = dir.path().join("site");
        for file in [
            "pulpcore/app/entrypoint.py",
            "pulpcore/content/entrypoint.py",
            "pulpcore/tasking/entrypoint.py",
        ] {
            std::fs::create_dir_all(site.join(file).parent().unwrap()).unwrap();
            std::fs::write(site.join(file), source).unwrap();
        }
        let metadata = site.join(format!("pulpcore-{version}.dist-info/METADATA"));
        std::fs::create_dir_all(metadata.parent().unwrap()).unwrap();
        std::fs::write(metadata, format!("Name: pulpcore\nVersion: {version}\n")).unwrap();
        host.pulpcore = Pulpcore::find(&[site]);
        (dir, host)
    }

    #[test]
    fn flags_follow_what_the_installed_pulpcore_accepts() {
        let (_dir, old) = host_with_pulpcore("3.49.72", "@click.option(\"--bind\")\n");
        let env = Environment::from_pairs([
            ("PULP_CONTENT_WORKERS_MAX_REQUESTS", "500"),
            ("PULP_CONTENT_WORKERS_MAX_REQUESTS_JITTER", "5"),
        ]);
        let content = words(&server_command(Role::Content, &env, &old, &tuning("T"), &[]).unwrap());
        assert!(
            !content.contains(&"--name-template".to_string()),
            "{content:?}"
        );
        assert!(
            !content.contains(&"--no-control-socket".to_string()),
            "{content:?}"
        );
        assert!(
            content.windows(2).any(|w| w == ["--max-requests", "500"])
                && content
                    .windows(2)
                    .any(|w| w == ["--max-requests-jitter", "5"]),
            "{content:?}"
        );
        let worker = server_command(Role::Worker, &env, &old, &tuning("T"), &[]).unwrap();
        assert!(worker.args.is_empty(), "{worker:?}");
        let (describe, warning) = installed_notes(Role::Worker, &old);
        assert_eq!(describe, "pulpcore 3.49.72");
        assert!(warning.unwrap().contains("{pid}@{hostname}"));

        let (_dir, backport) =
            host_with_pulpcore("3.85.2", "@click.option(\n    \"--name-template\",\n)\n");
        let api = words(&server_command(Role::Api, &env, &backport, &tuning("T"), &[]).unwrap());
        assert!(
            api.windows(2).any(|w| w == ["--name-template", "T"]),
            "{api:?}"
        );
        assert!(!api.contains(&"--no-control-socket".to_string()), "{api:?}");
        assert_eq!(installed_notes(Role::Api, &backport).1, None);
    }

    #[test]
    fn unique_templates_differ() {
        let a = unique_name_template();
        assert!(a.starts_with("{pid}@{hostname}-"), "{a}");
        assert_ne!(a, unique_name_template());
    }
}
