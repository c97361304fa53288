//! The command line: flags parsed once into an [`Invocation`].
//!
//! The binary answers to several names (busybox style): invoked through a link
//! named `pulp-api`, `wait_on_postgres.py`, ... it behaves as
//! `pulp-entrypoint pulp-api ...`, and every argument after the name goes to
//! the role, not to the entrypoint.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::options::FlagValues;

const AFTER_HELP: &str = "\
ROLES
  pulp-api [ARGS]        wait for PostgreSQL, then run pulpcore-api (gunicorn) on port 24817
  pulp-content [ARGS]    wait for PostgreSQL, then run pulpcore-content on port 24816
  pulp-worker [ARGS]     wait for PostgreSQL, then run pulpcore-worker
  Each role first applies pending migrations (and the api role collectstatic) exactly once
  however many replicas start together, and sets the admin password on first run.
  ARGS are appended to the server's command line; a flag given there replaces the entrypoint's.
  Any other command (pulpcore-manager migrate, bash) runs as it is, under the PID 1 duties.

ENVIRONMENT (read as the Pulp images do)
  PULP_SETTINGS                    settings file(s), default /etc/pulp/settings.py
  PULP_<SETTING>, PULP_A__b__C     pulpcore settings, e.g. PULP_DATABASES__default__HOST
  PULP_API_WORKERS (2), PULP_CONTENT_WORKERS (2), PULP_GUNICORN_TIMEOUT (90),
  PULP_API_WORKERS_MAX_REQUESTS, PULP_API_WORKERS_MAX_REQUESTS_JITTER,
  PULP_GUNICORN_ACCESS_LOGFORMAT, PULP_GUNICORN_RELOAD (true/false)
  PULP_ENTRYPOINT_CONFIG           the entrypoint's TOML file, default /etc/pulp/entrypoint.toml
  PULP_ENTRYPOINT_<OPTION>         any option below, e.g. PULP_ENTRYPOINT_STOP_GRACE=20s
  Precedence: flag > PULP_ENTRYPOINT_* > entrypoint.toml > default.

EXIT CODES
  0-255     the child's own exit code; 128+N when it was killed by signal N
  64        bad command line, or a removed role (pulp-resource-manager)
  65        PostgreSQL error that will not fix itself (database missing after the grace period)
  69        PostgreSQL not reachable before --postgres-timeout
  70        internal error
  71        operating system error (fork, signals)
  74        stdout could not be written (a closed pipe: quietly; a full disk: one line)
  77        PostgreSQL refused the login (password, pg_hba.conf, CONNECT privilege)
  78        invalid configuration (settings file, entrypoint.toml, environment variable)
  126, 127  the command could not be executed / was not found
  143       stopped by SIGTERM while waiting (128+15)
  wait_on_postgres.py and wait_on_database_migrations.sh exit 0 or 1 only, as the scripts
  they replace. probe (and readyz.py): 0 ready, 1 not ready, 3 database not connected,
  4 Redis expected but not connected. status: 0 all running, 1 not, 69 no supervise.";

/// Start Pulp in a container: wait for PostgreSQL, then run and supervise a Pulp server as PID 1.
#[derive(Debug, Parser)]
#[command(name = "pulp-entrypoint", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The entrypoint's TOML file [default: /etc/pulp/entrypoint.toml; env PULP_ENTRYPOINT_CONFIG]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub options: OptionFlags,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags for the options of `options.rs`. Kept as text here: all parsing
/// and validation happens in one place, with every layer.
#[derive(Debug, Args)]
pub struct OptionFlags {
    /// Give up waiting for PostgreSQL after this long [default: 5m]
    #[arg(long, value_name = "DURATION")]
    pub postgres_timeout: Option<String>,
    /// Keep waiting this long for a database that does not exist yet [default: 1m]
    #[arg(long, value_name = "DURATION")]
    pub missing_database_grace: Option<String>,
    /// After SIGTERM, SIGKILL the child's process group this much later [default: 25s]
    #[arg(long, value_name = "DURATION")]
    pub stop_grace: Option<String>,
    /// pulp-worker: after SIGTERM, send SIGINT this much later to abort the running task [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub worker_abort_after: Option<String>,
    /// Replace the entrypoint with the server (no PID 1 duties)
    #[arg(long)]
    pub exec: bool,
    /// Log format: plain or json [default: plain]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Name pulpcore registers for each process [default: {pid}@{hostname}-<random>]
    #[arg(long, value_name = "TEMPLATE")]
    pub name_template: Option<String>,
    /// Do not run migrations: wait until someone else (a job) applied them
    #[arg(long)]
    pub no_migrate: bool,
    /// Give up waiting for another replica's migrations after this long [default: 1h]
    #[arg(long, value_name = "DURATION")]
    pub lock_timeout: Option<String>,
    /// A file holding the admin password, applied when it changes [default: /etc/pulp/pulp-admin-password]
    #[arg(long, value_name = "PATH")]
    pub admin_password_file: Option<String>,
    /// Directory of collection_sign.sh and container_sign.sh, used with PULP_SIGNING_KEY_FINGERPRINT [default: /var/lib/pulp/scripts]
    #[arg(long, value_name = "PATH")]
    pub signing_scripts_dir: Option<String>,
    /// Forward signals to the child or to its process group [default: child]
    #[arg(long, value_name = "child|group")]
    pub signal_target: Option<String>,
}

impl OptionFlags {
    pub fn values(&self) -> FlagValues {
        let mut values = FlagValues::new();
        let mut put = |key: &'static str, value: &Option<String>| {
            if let Some(value) = value {
                values.insert(key, value.clone());
            }
        };
        put("postgres_timeout", &self.postgres_timeout);
        put("missing_database_grace", &self.missing_database_grace);
        put("stop_grace", &self.stop_grace);
        put("worker_abort_after", &self.worker_abort_after);
        put("log_format", &self.log_format);
        put("name_template", &self.name_template);
        put("signal_target", &self.signal_target);
        put("lock_timeout", &self.lock_timeout);
        put("admin_password_file", &self.admin_password_file);
        put("signing_scripts_dir", &self.signing_scripts_dir);
        if self.exec {
            values.insert("exec", "true".into());
        }
        if self.no_migrate {
            values.insert("migrate", "false".into());
        }
        values
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Pulp API server (pulpcore-api)
    #[command(name = "pulp-api")]
    Api(RoleArgs),
    /// Run the Pulp content app (pulpcore-content)
    #[command(name = "pulp-content")]
    Content(RoleArgs),
    /// Run a Pulp tasking worker (pulpcore-worker)
    #[command(name = "pulp-worker")]
    Worker(RoleArgs),
    /// Removed in pulpcore 3.16: use pulp-worker
    #[command(name = "pulp-resource-manager", hide = true)]
    ResourceManager(RoleArgs),
    /// Wait until PostgreSQL accepts the login Pulp will use, then exit 0
    WaitPostgres,
    /// Wait for PostgreSQL, apply pending migrations (once, under a lock), then exit
    Migrate,
    /// Wait for PostgreSQL and until every migration is applied, without applying any
    WaitMigrations,
    /// First-run setup: directories, encryption key, admin password; then exit
    Init,
    /// The whole start phase of the api role (wait for PostgreSQL, migrations once,
    /// collectstatic, first-run setup), then exit; what `supervise` runs first when
    /// its Pulp services depend on a [[service]] such as PostgreSQL
    Prepare,
    /// Run the api, the content app and PULP_WORKERS workers (and [[service]]s) in one container
    Supervise,
    /// Show the services of a running `supervise` (exit 0 all running, 1 not, 69 no supervise)
    Status {
        /// Print the status file as it is (JSON)
        #[arg(long)]
        json: bool,
    },
    /// Readiness or liveness check for a role (replaces readyz.py): exit 0 ready, 1 not,
    /// 3 database not connected, 4 Redis expected but not connected
    Probe(crate::probe::ProbeArgs),
    /// Print the effective configuration and where each value comes from (secrets redacted)
    Config,
    /// Run any command with only the PID 1 duties (signals, zombies, exit code)
    Run {
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

impl Command {
    /// Whether this command acts as init (signal handlers, reaping): every
    /// one that waits, runs or supervises; not `config`, `status`, `probe`.
    pub fn acts_as_init(&self) -> bool {
        match self {
            Command::Api(_)
            | Command::Content(_)
            | Command::Worker(_)
            | Command::WaitPostgres
            | Command::Migrate
            | Command::WaitMigrations
            | Command::Init
            | Command::Prepare
            | Command::Supervise
            | Command::Run { .. }
            | Command::External(_) => true,
            Command::ResourceManager(_)
            | Command::Status { .. }
            | Command::Probe(_)
            | Command::Config => false,
        }
    }
}

#[derive(Debug, Args)]
pub struct RoleArgs {
    /// Extra arguments for the server
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

/// What one start of the binary is asked to do.
#[derive(Debug)]
pub struct Invocation {
    pub cli: Cli,
    /// Invoked as `wait_on_postgres.py`: exit 0 or 1 only.
    pub legacy_exit_codes: bool,
}

/// A command-line problem, with clap's message reduced to one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `--help` or `--version`: print it and exit 0.
    #[error("{0}")]
    Info(String),
    #[error("{0} (see pulp-entrypoint --help)")]
    Usage(String),
}

/// Names the binary answers to when invoked through a link, and the
/// subcommand each stands for.
pub const LINK_NAMES: &[(&str, &str)] = &[
    ("pulp-api", "pulp-api"),
    ("pulp-content", "pulp-content"),
    ("pulp-worker", "pulp-worker"),
    ("pulp-resource-manager", "pulp-resource-manager"),
    ("wait_on_postgres.py", "wait-postgres"),
    ("wait_on_database_migrations.sh", "wait-migrations"),
    ("readyz.py", "probe"),
    // The compose file's one-shot services: wait for migrations, then the admin password
    // and the signing services, as `init` (the scripts of the pulp-oci-images).
    ("set_init_password.sh", "init"),
    ("add_signing_service.sh", "init"),
];

pub fn parse(argv: Vec<OsString>) -> Result<Invocation, CliError> {
    let mut argv = argv.into_iter();
    let argv0 = argv.next().unwrap_or_else(|| "pulp-entrypoint".into());
    let rest: Vec<OsString> = argv.collect();
    let name = Path::new(&argv0)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();

    let link = LINK_NAMES.iter().find(|(link, _)| *link == name);
    let full: Vec<OsString> = match link {
        // readyz.py PATH: readiness of the api, or of the content app for a content
        // PATH (the old script's argument).
        Some((_, "probe")) => {
            let mut full: Vec<OsString> = [
                "pulp-entrypoint",
                "probe",
                "ready",
                "api",
                "--legacy-readyz",
            ]
            .map(OsString::from)
            .into();
            if let Some(path) = rest.into_iter().next() {
                full.push("--path".into());
                full.push(path);
            }
            full
        }
        Some((_, subcommand)) => {
            let mut full: Vec<OsString> = vec!["pulp-entrypoint".into(), (*subcommand).into()];
            if !rest.is_empty() {
                // Everything after a link name belongs to the role.
                full.push("--".into());
                full.extend(rest);
            }
            full
        }
        None => std::iter::once(argv0).chain(rest).collect(),
    };
    let cli = Cli::try_parse_from(full).map_err(|error| {
        use clap::error::ErrorKind;
        match error.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                CliError::Info(error.render().to_string())
            }
            _ => {
                let text = error.render().to_string();
                let first = text.lines().next().unwrap_or("invalid command line");
                CliError::Usage(first.trim_start_matches("error: ").to_string())
            }
        }
    })?;
    Ok(Invocation {
        cli,
        legacy_exit_codes: matches!(
            name.as_str(),
            "wait_on_postgres.py" | "wait_on_database_migrations.sh"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &[&str]) -> Result<Invocation, CliError> {
        parse(words.iter().map(OsString::from).collect())
    }

    #[test]
    fn role_through_a_link_takes_every_argument() {
        let invocation = parse_words(&["/usr/bin/pulp-api", "--workers", "4", "--help"]).unwrap();
        match invocation.cli.command {
            Command::Api(role) => assert_eq!(role.args, ["--workers", "4", "--help"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn role_as_subcommand_with_flags_before_it() {
        let invocation = parse_words(&[
            "pulp-entrypoint",
            "--stop-grace",
            "5",
            "pulp-worker",
            "--burst",
        ])
        .unwrap();
        assert_eq!(invocation.cli.options.stop_grace.as_deref(), Some("5"));
        assert!(matches!(invocation.cli.command, Command::Worker(ref r) if r.args == ["--burst"]));
    }

    #[test]
    fn unknown_first_word_is_a_command() {
        let invocation = parse_words(&["pulp-entrypoint", "pulpcore-manager", "migrate"]).unwrap();
        match invocation.cli.command {
            Command::External(words) => assert_eq!(words, ["pulpcore-manager", "migrate"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn legacy_wait_script_name() {
        let invocation = parse_words(&["/usr/bin/wait_on_postgres.py"]).unwrap();
        assert!(invocation.legacy_exit_codes);
        assert!(matches!(invocation.cli.command, Command::WaitPostgres));
    }

    #[test]
    fn legacy_readyz_is_the_api_readiness_probe() {
        let invocation = parse_words(&["/usr/bin/readyz.py", "/pulp/api/v3/status/"]).unwrap();
        match invocation.cli.command {
            Command::Probe(args) => {
                assert_eq!((args.kind.as_str(), args.role.as_str()), ("ready", "api"));
                assert_eq!(args.path.as_deref(), Some("/pulp/api/v3/status/"));
                assert!(args.legacy_readyz);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn usage_errors_are_one_line() {
        let error = parse_words(&["pulp-entrypoint", "--bogus", "pulp-api"]).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, CliError::Usage(_)));
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("--bogus"), "{text}");
    }

    #[test]
    fn run_needs_a_command() {
        assert!(matches!(
            parse_words(&["pulp-entrypoint", "run"]),
            Err(CliError::Usage(_))
        ));
        let invocation =
            parse_words(&["pulp-entrypoint", "run", "--", "sh", "-c", "exit 3"]).unwrap();
        assert!(
            matches!(invocation.cli.command, Command::Run { ref command } if command.len() == 3)
        );
    }
}
