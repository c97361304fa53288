//! Which services `supervise` runs, from the `[supervise]` table and the
//! `[[service]]` entries of the entrypoint's TOML file, validated once.
//!
//! Without any entry, the services are the Pulp roles: `api`, `content` and
//! `worker` (with `workers` instances). A `[[service]]` named like one of
//! them replaces it; any other name adds a service, e.g. a reverse proxy:
//!
//! ```toml
//! [supervise]
//! workers = 4            # wins over PULP_WORKERS, so SIGHUP can change it
//!
//! [[service]]
//! name = "nginx"
//! command = ["nginx", "-g", "daemon off;"]
//! depends_on = ["api", "content"]
//! stop_signal = "QUIT"
//! ```
//!
//! The worker count is the one value the file beats the environment for:
//! a running container's environment cannot change, so the file is the only
//! place a new count can come from when `supervise` re-reads it on SIGHUP.

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;

use crate::duration;
use crate::environment::Environment;
use crate::roles::Role;

/// `PULP_WORKERS` when neither it nor the file say.
pub const DEFAULT_WORKERS: u32 = 2;
/// The name of the start phase when it runs as a service (see
/// [`Plan::start_phase_after`]); no `[[service]]` may take it.
pub const START_PHASE: &str = "start-phase";
/// More workers than this in one container is surely a typo.
const MAX_WORKERS: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("supervise configuration {path} could not be read: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("supervise configuration {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("PULP_WORKERS={value:?} is not a number of workers from 0 to {MAX_WORKERS}")]
    Workers { value: String },
}

/// When a service that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}

/// What a service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A Pulp role, its command built like `pulp-entrypoint <role> ARGS` builds it.
    Role { role: Role, args: Vec<String> },
    /// Any command line.
    Command(Vec<String>),
}

/// One service, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub program: Program,
    pub restart: Restart,
    /// Sent first when the service is stopped (its stop sequence follows).
    pub stop_signal: Signal,
    /// Kill the service this long after its stop began; `None`: `stop_grace`.
    pub stop_grace: Option<Duration>,
    pub depends_on: Vec<String>,
    /// When it ends for good, the container stops with its exit code.
    pub essential: bool,
}

impl ServiceSpec {
    pub fn role(&self) -> Option<Role> {
        match self.program {
            Program::Role { role, .. } => Some(role),
            Program::Command(_) => None,
        }
    }

    /// How many instances run: `workers` for the worker role, else one.
    pub fn instances(&self, workers: u32) -> u32 {
        match self.program {
            Program::Role {
                role: Role::Worker, ..
            } => workers,
            _ => 1,
        }
    }
}

/// Restart backoff: `first_delay`, doubling up to `max_delay`; a service
/// is failed after `max_restarts` restarts in a row that each ran less than
/// `stable_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartLimits {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub max_restarts: u32,
    pub stable_after: Duration,
}

impl Default for RestartLimits {
    fn default() -> Self {
        RestartLimits {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_restarts: 5,
            stable_after: Duration::from_secs(60),
        }
    }
}

/// Everything `supervise` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// In start order: every service after those it depends on.
    pub services: Vec<ServiceSpec>,
    pub workers: u32,
    /// Where `workers` came from, for the log.
    pub workers_source: String,
    /// Prefix each output line with the service name.
    pub prefix: bool,
    pub limits: RestartLimits,
}

impl Plan {
    /// Read the `[supervise]` and `[[service]]` tables of `path` (absent:
    /// the defaults) and `PULP_WORKERS`.
    pub fn load(path: &Path, env: &Environment) -> Result<Plan, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => {
                return Err(ConfigError::Unreadable {
                    path: path.display().to_string(),
                    reason: error.to_string(),
                });
            }
        };
        Plan::parse(&text, env).map_err(|reason| ConfigError::Invalid {
            path: path.display().to_string(),
            reason,
        })?
    }

    /// The plan from the file's text. The outer error is the file's, the
    /// inner one `PULP_WORKERS`'.
    fn parse(text: &str, env: &Environment) -> Result<Result<Plan, ConfigError>, String> {
        let file = File::parse(text)?;
        let table = file.supervise.unwrap_or_default();
        let limits = table.limits()?;
        let services = order(services(file.service, &table)?)?;
        let workers = match (table.workers, env.get("PULP_WORKERS")) {
            (Some(count), _) if count <= MAX_WORKERS => (count, "[supervise] workers".to_string()),
            (Some(count), _) => {
                return Err(format!(
                    "[supervise] workers = {count} is more than {MAX_WORKERS}"
                ));
            }
            (None, Some(text)) => match text.trim().parse::<u32>() {
                Ok(count) if count <= MAX_WORKERS => (count, "PULP_WORKERS".to_string()),
                _ => {
                    return Ok(Err(ConfigError::Workers {
                        value: text.to_string(),
                    }));
                }
            },
            (None, None) => (DEFAULT_WORKERS, "default".to_string()),
        };
        if services
            .iter()
            .all(|service| service.instances(workers.0) == 0)
        {
            return Err(
                "nothing to run: leave api or content on, set workers, or add a [[service]]".into(),
            );
        }
        Ok(Ok(Plan {
            services,
            workers: workers.0,
            workers_source: workers.1,
            prefix: table.prefix.unwrap_or(true),
            limits,
        }))
    }

    /// Whether any service is a Pulp role (then the database start phase runs first).
    pub fn runs_pulp(&self) -> bool {
        self.services
            .iter()
            .any(|service| service.role().is_some() && service.instances(self.workers) > 0)
    }

    /// The services (not Pulp roles) that a Pulp role depends on, directly
    /// or through other services, e.g. an embedded PostgreSQL. When there
    /// are any, the start phase cannot run before the services start: it
    /// runs as the [`START_PHASE`] service once these are started, and the
    /// Pulp roles start when it has ended.
    pub fn start_phase_after(&self) -> Vec<String> {
        let mut wanted: Vec<String> = Vec::new();
        let mut queue: Vec<&str> = self
            .services
            .iter()
            .filter(|s| s.role().is_some() && s.instances(self.workers) > 0)
            .flat_map(|s| s.depends_on.iter().map(String::as_str))
            .collect();
        while let Some(name) = queue.pop() {
            let Some(service) = self.services.iter().find(|s| s.name == name) else {
                continue;
            };
            if service.role().is_some() || wanted.iter().any(|w| w == name) {
                continue;
            }
            wanted.push(name.to_string());
            queue.extend(service.depends_on.iter().map(String::as_str));
        }
        // In start order.
        self.services
            .iter()
            .filter(|s| wanted.contains(&s.name))
            .map(|s| s.name.clone())
            .collect()
    }

    /// The plan with another worker count, to compare what else changed.
    pub fn with_workers(&self, workers: u32) -> Plan {
        Plan {
            workers,
            workers_source: self.workers_source.clone(),
            ..self.clone()
        }
    }
}

/// The two tables of the file that are ours; the options of `options.rs`
/// share the file and are checked there.
struct File {
    supervise: Option<SuperviseTable>,
    service: Vec<ServiceTable>,
}

impl File {
    fn parse(text: &str) -> Result<File, String> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|error: toml::de::Error| error.message().to_string())?;
        let supervise =
            match table.remove("supervise") {
                Some(value) => Some(value.try_into().map_err(|error: toml::de::Error| {
                    format!("[supervise]: {}", error.message())
                })?),
                None => None,
            };
        let service = match table.remove("service") {
            Some(value) => value
                .try_into()
                .map_err(|error: toml::de::Error| format!("[[service]]: {}", error.message()))?,
            None => Vec::new(),
        };
        Ok(File { supervise, service })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuperviseTable {
    workers: Option<u32>,
    api: Option<bool>,
    content: Option<bool>,
    prefix: Option<bool>,
    restart_delay: Option<toml::Value>,
    restart_delay_max: Option<toml::Value>,
    max_restarts: Option<u32>,
    stable_after: Option<toml::Value>,
}

impl SuperviseTable {
    fn limits(&self) -> Result<RestartLimits, String> {
        let default = RestartLimits::default();
        let limits = RestartLimits {
            first_delay: duration_of("restart_delay", &self.restart_delay)?
                .unwrap_or(default.first_delay),
            max_delay: duration_of("restart_delay_max", &self.restart_delay_max)?
                .unwrap_or(default.max_delay),
            max_restarts: self.max_restarts.unwrap_or(default.max_restarts),
            stable_after: duration_of("stable_after", &self.stable_after)?
                .unwrap_or(default.stable_after),
        };
        if limits.first_delay.is_zero() || limits.max_delay < limits.first_delay {
            return Err(
                "restart_delay must be more than 0 and not more than restart_delay_max".into(),
            );
        }
        Ok(limits)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceTable {
    name: String,
    command: Option<Vec<String>>,
    role: Option<String>,
    restart: Option<String>,
    stop_signal: Option<String>,
    stop_grace: Option<toml::Value>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    depends_on: Vec<String>,
    essential: Option<bool>,
}

/// A duration written as "1m30s" or as a number of seconds.
fn duration_of(key: &str, value: &Option<toml::Value>) -> Result<Option<Duration>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    let text = match value {
        toml::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    duration::parse(&text)
        .map(Some)
        .map_err(|reason| format!("{key}: {reason}"))
}

fn builtin(name: &str, role: Role) -> ServiceSpec {
    ServiceSpec {
        name: name.to_string(),
        program: Program::Role {
            role,
            args: Vec::new(),
        },
        restart: Restart::Always,
        stop_signal: Signal::SIGTERM,
        stop_grace: None,
        depends_on: Vec::new(),
        essential: true,
    }
}

/// The built-in roles (unless disabled or replaced), then the file's services.
fn services(tables: Vec<ServiceTable>, table: &SuperviseTable) -> Result<Vec<ServiceSpec>, String> {
    let mut specs = Vec::new();
    let builtins = [
        ("api", Role::Api, table.api.unwrap_or(true)),
        ("content", Role::Content, table.content.unwrap_or(true)),
        ("worker", Role::Worker, true),
    ];
    for (name, role, enabled) in builtins {
        if enabled && !tables.iter().any(|service| service.name == name) {
            specs.push(builtin(name, role));
        }
    }
    for service in tables {
        let spec = service_spec(service)?;
        if specs.iter().any(|known| known.name == spec.name) {
            return Err(format!("two services are named '{}'", spec.name));
        }
        specs.push(spec);
    }
    Ok(specs)
}

fn service_spec(table: ServiceTable) -> Result<ServiceSpec, String> {
    let name = table.name;
    let valid_name = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name {
        return Err(format!(
            "service name {name:?} must be 1 to 32 letters, digits, - or _"
        ));
    }
    if name == START_PHASE {
        return Err(format!(
            "service name '{START_PHASE}' is reserved for the start phase of the Pulp services"
        ));
    }
    let program = match (table.command, table.role) {
        (Some(_), None) if !table.args.is_empty() => {
            return Err(format!(
                "service '{name}': args go with role; put a command's arguments in command"
            ));
        }
        (Some(command), None) if command.first().is_some_and(|p| !p.is_empty()) => {
            Program::Command(command)
        }
        (Some(_), None) => return Err(format!("service '{name}': command is empty")),
        (None, Some(role)) => Program::Role {
            role: match role.as_str() {
                "api" | "pulp-api" => Role::Api,
                "content" | "pulp-content" => Role::Content,
                "worker" | "pulp-worker" => Role::Worker,
                other => {
                    return Err(format!(
                        "service '{name}': role '{other}' is not api, content or worker"
                    ));
                }
            },
            args: table.args,
        },
        _ => {
            return Err(format!(
                "service '{name}': give either command = [...] or role = \"api\"|\"content\"|\"worker\""
            ));
        }
    };
    let restart = match table.restart.as_deref().unwrap_or("always") {
        "always" => Restart::Always,
        "on-failure" => Restart::OnFailure,
        "never" => Restart::Never,
        other => {
            return Err(format!(
                "service '{name}': restart '{other}' is not always, on-failure or never"
            ));
        }
    };
    let stop_signal = match table.stop_signal.as_deref() {
        None => Signal::SIGTERM,
        Some(text) => parse_signal(text).ok_or_else(|| {
            format!("service '{name}': stop_signal '{text}' is not a signal name like TERM or QUIT")
        })?,
    };
    let stop_grace = duration_of("stop_grace", &table.stop_grace)
        .map_err(|reason| format!("service '{name}': {reason}"))?;
    let essential = table
        .essential
        .unwrap_or(matches!(program, Program::Role { .. }));
    Ok(ServiceSpec {
        name,
        program,
        restart,
        stop_signal,
        stop_grace,
        depends_on: table.depends_on,
        essential,
    })
}

/// "TERM", "SIGTERM" or "term".
fn parse_signal(text: &str) -> Option<Signal> {
    let upper = text.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full)
        .ok()
        .filter(|signal| !matches!(signal, Signal::SIGKILL | Signal::SIGSTOP))
}

/// Services in an order where each comes after what it depends on, keeping
/// the given order otherwise; unknown names and cycles are errors.
fn order(mut pending: Vec<ServiceSpec>) -> Result<Vec<ServiceSpec>, String> {
    let names: BTreeSet<String> = pending.iter().map(|s| s.name.clone()).collect();
    for service in &pending {
        if let Some(unknown) = service.depends_on.iter().find(|d| !names.contains(*d)) {
            return Err(format!(
                "service '{}' depends on '{unknown}', which is not a service here",
                service.name
            ));
        }
    }
    let mut ordered: Vec<ServiceSpec> = Vec::new();
    while !pending.is_empty() {
        let ready = pending.iter().position(|service| {
            service
                .depends_on
                .iter()
                .all(|dependency| ordered.iter().any(|done| &done.name == dependency))
        });
        match ready {
            Some(index) => ordered.push(pending.remove(index)),
            None => {
                let names: Vec<&str> = pending.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "depends_on makes a cycle among {}",
                    names.join(", ")
                ));
            }
        }
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str, env: &[(&str, &str)]) -> Result<Plan, String> {
        match Plan::parse(text, &Environment::from_pairs(env.iter().copied())) {
            Ok(Ok(plan)) => Ok(plan),
            Ok(Err(error)) => Err(error.to_string()),
            Err(reason) => Err(reason),
        }
    }

    fn names(plan: &Plan) -> Vec<&str> {
        plan.services.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn defaults_are_the_three_roles_with_two_workers() {
        let plan = plan("stop_grace = \"10s\"\n", &[]).unwrap();
        assert_eq!(names(&plan), ["api", "content", "worker"]);
        assert_eq!(plan.workers, 2);
        assert!(plan.prefix && plan.runs_pulp());
        assert!(
            plan.services
                .iter()
                .all(|s| s.essential && s.restart == Restart::Always)
        );
        assert_eq!(plan.services[2].instances(plan.workers), 2);
        assert_eq!(plan.services[0].instances(plan.workers), 1);
    }

    #[test]
    fn the_file_count_beats_pulp_workers() {
        assert_eq!(plan("", &[("PULP_WORKERS", "5")]).unwrap().workers, 5);
        let both = plan("[supervise]\nworkers = 3\n", &[("PULP_WORKERS", "5")]).unwrap();
        assert_eq!(
            (both.workers, both.workers_source.as_str()),
            (3, "[supervise] workers")
        );
        let error = plan("", &[("PULP_WORKERS", "many")]).unwrap_err();
        assert!(error.contains("PULP_WORKERS=\"many\""), "{error}");
        assert!(plan("[supervise]\nworkers = 100000\n", &[]).is_err());
    }

    #[test]
    fn services_are_added_replaced_and_ordered_by_dependencies() {
        let text = r#"
[supervise]
content = false

[[service]]
name = "nginx"
command = ["nginx", "-g", "daemon off;"]
depends_on = ["api"]
stop_signal = "QUIT"
stop_grace = 5

[[service]]
name = "api"
role = "api"
args = ["--bind", "127.0.0.1:8000"]
restart = "on-failure"
depends_on = ["redis"]

[[service]]
name = "redis"
command = ["redis-server"]
essential = true
"#;
        let plan = plan(text, &[]).unwrap();
        assert_eq!(names(&plan), ["worker", "redis", "api", "nginx"]);
        let nginx = &plan.services[3];
        assert_eq!(nginx.stop_signal, Signal::SIGQUIT);
        assert_eq!(nginx.stop_grace, Some(Duration::from_secs(5)));
        assert!(!nginx.essential, "commands are not essential unless said");
        assert_eq!(plan.services[2].restart, Restart::OnFailure);
        assert_eq!(
            plan.services[2].program,
            Program::Role {
                role: Role::Api,
                args: vec!["--bind".into(), "127.0.0.1:8000".into()]
            }
        );
        assert!(plan.services[1].essential);
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            ("[supervise]\nworkerz = 3\n", "workerz"),
            ("[[service]]\nname = \"x\"\n", "either command"),
            (
                "[[service]]\nname = \"x\"\ncommand = []\n",
                "command is empty",
            ),
            ("[[service]]\nname = \"x\"\nrole = \"db\"\n", "role 'db'"),
            (
                "[[service]]\nname = \"x\"\ncommand = [\"a\"]\nrestart = \"sometimes\"\n",
                "restart 'sometimes'",
            ),
            (
                "[[service]]\nname = \"x\"\ncommand = [\"a\"]\nstop_signal = \"KILL\"\n",
                "stop_signal",
            ),
            (
                "[[service]]\nname = \"x\"\ncommand = [\"a\"]\ndepends_on = [\"y\"]\n",
                "depends on 'y'",
            ),
            (
                "[[service]]\nname = \"a b\"\ncommand = [\"a\"]\n",
                "service name",
            ),
            (
                "[[service]]\nname = \"x\"\ncommand = [\"a\"]\ncolour = 1\n",
                "colour",
            ),
            (
                "[[service]]\nname = \"x\"\ncommand = [\"a\"]\ndepends_on = [\"y\"]\n[[service]]\nname = \"y\"\ncommand = [\"b\"]\ndepends_on = [\"x\"]\n",
                "cycle",
            ),
            (
                "[[service]]\nname = \"x\"\ncommand = [\"a\"]\n[[service]]\nname = \"x\"\ncommand = [\"b\"]\n",
                "two services",
            ),
            ("[supervise]\nrestart_delay = \"0s\"\n", "restart_delay"),
            (
                "[supervise]\napi = false\ncontent = false\nworkers = 0\n",
                "nothing to run",
            ),
            (
                "[[service]]\nname = \"start-phase\"\ncommand = [\"a\"]\n",
                "reserved",
            ),
        ] {
            let error = plan(text, &[]).unwrap_err();
            assert!(error.contains(needle), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_start_phase_comes_after_what_pulp_roles_depend_on() {
        let text = r#"
[[service]]
name = "api"
role = "api"
depends_on = ["postgres"]

[[service]]
name = "postgres"
command = ["postgres"]
depends_on = ["secrets"]

[[service]]
name = "secrets"
command = ["true"]

[[service]]
name = "nginx"
command = ["nginx"]
depends_on = ["api"]
"#;
        let aio = plan(text, &[]).unwrap();
        assert_eq!(aio.start_phase_after(), ["secrets", "postgres"]);
        assert!(plan("", &[]).unwrap().start_phase_after().is_empty());
        let roles_only =
            "[[service]]\nname = \"web\"\nrole = \"api\"\ndepends_on = [\"content\"]\n";
        assert!(
            plan(roles_only, &[])
                .unwrap()
                .start_phase_after()
                .is_empty()
        );
    }

    #[test]
    fn signal_names_parse_in_any_spelling() {
        assert_eq!(parse_signal("term"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGQUIT"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("STOP"), None);
        assert_eq!(parse_signal("NOPE"), None);
    }
}
