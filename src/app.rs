//! What one start of the entrypoint does, from argv to exit code.
//!
//! `main` prints the one-line error of a failed [`run`] and turns it into the
//! documented exit code; everything else is decided here or in the modules
//! this calls: options and settings are validated first, then the runtime
//! waits for PostgreSQL (a SIGTERM ends the wait at once), then the child is
//! started and supervised (or exec'd).

use std::ffi::OsString;
use std::time::Duration;

use nix::sys::signal::Signal;
use tracing::{info, warn};

use crate::cli::{self, CliError, Command};
use crate::environment::Environment;
use crate::exit;
use crate::migrate::coordinator::PrepareError;
use crate::options::{OPTION_KEYS, Options, OptionsError};
use crate::pid1::{self, Init, Pid1Error, StopPolicy, StopStep};
use crate::postgres::{self, WaitError, WaitPolicy};
use crate::prepare;
use crate::role_policy::{stop_policy, task_grace_interval};
use crate::roles::{self, CommandLine, Host, Role, RoleConfigError};
use crate::settings::{self, PulpSettings, SettingsError};
use crate::supervise::DatabaseGate;

/// How often the PostgreSQL wait says what it is waiting for.
const WAIT_LOG_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cli(#[from] CliError),
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Role(#[from] RoleConfigError),
    #[error(transparent)]
    Postgres(#[from] WaitError),
    #[error(transparent)]
    Pid1(#[from] Pid1Error),
    #[error(transparent)]
    Prepare(PrepareError),
    #[error(transparent)]
    Supervise(#[from] crate::supervise::ConfigError),
    #[error(
        "pulp-resource-manager was removed in pulpcore 3.16 (tasks no longer go through a resource manager): run pulp-worker instead"
    )]
    RemovedRole,
    #[error("could not start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot write to stdout: {0}")]
    Output(std::io::Error),
    #[error("stopped by {} while {doing}", .signal.as_str())]
    Stopped { signal: Signal, doing: &'static str },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Cli(CliError::Info(_)) => exit::SUCCESS,
            Error::Cli(CliError::Usage(_)) | Error::RemovedRole => exit::USAGE,
            Error::Options(_) | Error::Settings(_) | Error::Role(_) | Error::Supervise(_) => {
                exit::CONFIG
            }
            Error::Postgres(error) => error.exit_code(),
            Error::Pid1(error) => error.exit_code(),
            Error::Prepare(error) => match error {
                PrepareError::Setup(setup) if setup.is_configuration() => exit::CONFIG,
                PrepareError::Setup(_) | PrepareError::Marker { .. } => exit::CANNOT_CREATE,
                PrepareError::Connect(_) => exit::DATABASE_UNAVAILABLE,
                PrepareError::Database { .. } => exit::DATABASE_ERROR,
                PrepareError::PasswordFile { .. } | PrepareError::EncryptionKey { .. } => {
                    exit::CONFIG
                }
                PrepareError::Spawn(_) => exit::OS_ERROR,
                PrepareError::StepFailed { .. } | PrepareError::LockTimeout { .. } => {
                    exit::START_PHASE
                }
                PrepareError::Stopped(signal) => exit::SIGNAL_BASE + signal,
            },
            Error::Runtime(_) => exit::OS_ERROR,
            Error::Output(_) => exit::OUTPUT,
            Error::Stopped { signal, .. } => exit::SIGNAL_BASE + *signal as i32,
        }
    }
}

/// When this process started, for the `exec` phase line.
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Run the entrypoint and return the process exit code.
pub fn main(argv: Vec<OsString>) -> i32 {
    STARTED.get_or_init(std::time::Instant::now);
    let parsed = cli::parse(argv);
    // Signals were blocked first thing (pid1::block_early_signals) for the
    // handlers an Init installs; a command without one gets them back now.
    if !parsed
        .as_ref()
        .is_ok_and(|invocation| invocation.cli.command.acts_as_init())
    {
        pid1::release_early_signals();
    }
    let invocation = match parsed {
        Ok(invocation) => invocation,
        Err(CliError::Info(text)) => {
            return match crate::logging::print(&text) {
                Ok(()) => exit::SUCCESS,
                Err(error) => crate::logging::stdout_failed(&error),
            };
        }
        Err(error) => {
            crate::logging::eprint_line(format_args!("pulp-entrypoint: {error}"));
            return Error::from(error).exit_code();
        }
    };
    let legacy = invocation.legacy_exit_codes;
    let code = match run(invocation) {
        Ok(code) => code,
        Err(Error::Stopped { signal, doing }) => {
            info!("stopped by {} while {doing}", signal.as_str());
            exit::SIGNAL_BASE + signal as i32
        }
        Err(Error::Output(error)) => crate::logging::stdout_failed(&error),
        Err(error) => {
            crate::logging::eprint_line(format_args!("pulp-entrypoint: {error}"));
            error.exit_code()
        }
    };
    // The last log lines, which a stalled stderr may still hold back.
    crate::logging::flush(crate::logging::FLUSH_LIMIT);
    match (legacy, code) {
        (true, 0) => 0,
        (true, _) => exit::LEGACY_FAILURE,
        (false, code) => code,
    }
}

fn run(invocation: cli::Invocation) -> Result<i32, Error> {
    let cli = invocation.cli;
    let env = Environment::from_process();
    let options = Options::resolve(&cli.options.values(), cli.config.as_deref(), &env)?;
    crate::logging::init(options.log_format.value);
    for name in &options.unknown_env {
        warn!(
            "{name} is not an option of the entrypoint and is ignored; see pulp-entrypoint --help"
        );
    }

    match cli.command {
        Command::Config => {
            print_config(&options, &env)?;
            Ok(exit::SUCCESS)
        }
        Command::ResourceManager(_) => Err(Error::RemovedRole),
        Command::WaitPostgres => {
            let settings = settings::load(&env)?;
            block_on(async {
                let mut init = Init::new(options.signal_target.value)?;
                wait_for_database(&mut init, &settings, &options).await?;
                Ok(exit::SUCCESS)
            })
        }
        Command::Migrate => {
            start_phase_only(prepare::Steps::migrate_only(&options), &options, &env)
        }
        Command::WaitMigrations => {
            start_phase_only(prepare::Steps::wait_only(&options), &options, &env)
        }
        Command::Init => start_phase_only(prepare::Steps::init_only(&options), &options, &env),
        Command::Prepare => start_phase_only(
            prepare::Steps::for_role(Role::Api, &options),
            &options,
            &env,
        ),
        Command::Supervise => supervise(&options, &env),
        Command::Status { json } => Ok(crate::supervise::show_status(
            &options.status_file.value,
            json,
        )),
        Command::Probe(args) => {
            let settings = settings::load(&env)?;
            block_on(async { Ok(crate::probe::run(&args, &settings).await) })
        }
        Command::Api(args) => start_role(Role::Api, args.args, &options, &env),
        Command::Content(args) => start_role(Role::Content, args.args, &options, &env),
        Command::Worker(args) => start_role(Role::Worker, args.args, &options, &env),
        Command::Run { command } | Command::External(command) => {
            let mut words = command.into_iter();
            let line = CommandLine {
                program: words.next().unwrap_or_default(),
                args: words.collect(),
                env: Vec::new(),
            };
            let stop = StopPolicy {
                steps: vec![StopStep {
                    after: options.stop_grace.value,
                    signal: Signal::SIGKILL,
                }],
            };
            run_child(&line, &stop, &options)
        }
    }
}

fn block_on<T>(future: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?
        .block_on(future)
}

fn start_role(
    role: Role,
    extra: Vec<OsString>,
    options: &Options,
    env: &Environment,
) -> Result<i32, Error> {
    let settings = settings::load(env)?;
    let template = options
        .name_template
        .value
        .clone()
        .unwrap_or_else(roles::unique_name_template);
    let host = Host::detect(env);
    // Built before waiting, so a bad PULP_* variable fails at once.
    let tuning = roles::Tuning {
        name_template: template,
        stop_grace: options.stop_grace.value,
    };
    let mut line = roles::server_command(role, env, &host, &tuning, &extra)?;
    if role == Role::Worker {
        line.env.extend(task_grace_interval(&settings, options));
    }
    let (installed, naming) = roles::installed_notes(role, &host);
    if let Some(warning) = naming {
        warn!("{warning}");
    }
    let what = format!("{} ({installed})", role.name());
    let stop = stop_policy(role, options);
    block_on(async {
        let mut init = Init::new(options.signal_target.value)?;
        wait_for_database(&mut init, &settings, options).await?;
        let steps = prepare::Steps::for_role(role, options);
        start_phase(&mut init, &settings, env, steps, role.name(), options).await?;
        supervise_or_exec(&mut init, &what, &line, &stop, options).await
    })
}

/// `supervise`: the start phase once (when a Pulp role is among the
/// services), then every service.
fn supervise(options: &Options, env: &Environment) -> Result<i32, Error> {
    let settings = settings::load(env)?;
    let plan = crate::supervise::Plan::load(&options.config_path, env)?;
    let template = options
        .name_template
        .value
        .clone()
        .unwrap_or_else(roles::unique_name_template);
    let host = Host::detect(env);
    // Built before waiting, so a bad PULP_* variable fails at once.
    let mut role_lines = std::collections::BTreeMap::new();
    for service in &plan.services {
        if let crate::supervise::Program::Role { role, args } = &service.program {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            let tuning = roles::Tuning {
                name_template: template.clone(),
                stop_grace: options.stop_grace.value,
            };
            let mut line = roles::server_command(*role, env, &host, &tuning, &args)?;
            if *role == Role::Worker {
                line.env.extend(task_grace_interval(&settings, options));
            }
            role_lines.insert(service.name.clone(), line);
        }
    }
    // When the Pulp roles depend on a service of the plan (an embedded
    // PostgreSQL), the start phase runs as a service after it.
    let phase_service = (plan.runs_pulp() && !plan.start_phase_after().is_empty())
        .then(|| start_phase_service(options))
        .transpose()?;
    block_on(async {
        let mut init = Init::new(options.signal_target.value)?;
        if plan.runs_pulp() && phase_service.is_none() {
            wait_for_database(&mut init, &settings, options).await?;
            let role = if plan.services.iter().any(|s| s.role() == Some(Role::Api)) {
                Role::Api
            } else {
                Role::Worker
            };
            let steps = prepare::Steps::for_role(role, options);
            start_phase(&mut init, &settings, env, steps, "supervise", options).await?;
        }
        let gate = plan
            .runs_pulp()
            .then(|| DatabaseGate::new(settings.database.clone(), wait_policy(options)));
        let supervisor = crate::supervise::Supervisor::new(
            &mut init,
            plan,
            options,
            env,
            role_lines,
            gate,
            phase_service,
        );
        Ok(supervisor.run().await)
    })
}

/// `pulp-entrypoint prepare` as a child of `supervise`: this binary, the
/// same configuration file, and the options given as flags passed on as
/// `PULP_ENTRYPOINT_*` variables (the file and the environment it inherits).
fn start_phase_service(options: &Options) -> Result<CommandLine, Error> {
    let program = std::env::current_exe().map_err(|error| {
        Error::Pid1(Pid1Error::Setup {
            what: "the path of this executable",
            source: error,
        })
    })?;
    // A named file must exist; the default one may not.
    let mut env: Vec<(String, String)> = options
        .config_file
        .iter()
        .map(|path| {
            (
                crate::options::CONFIG_ENV.to_string(),
                path.display().to_string(),
            )
        })
        .collect();
    for (key, value, source) in options.report() {
        if matches!(source, crate::sourced::Source::Flag(_)) {
            env.push((format!("PULP_ENTRYPOINT_{}", key.to_uppercase()), value));
        }
    }
    Ok(CommandLine {
        program: program.into_os_string(),
        args: vec!["prepare".into()],
        env,
    })
}

/// `migrate`, `wait-migrations`, `init`: the start phase alone, then exit 0.
fn start_phase_only(
    steps: prepare::Steps,
    options: &Options,
    env: &Environment,
) -> Result<i32, Error> {
    let settings = settings::load(env)?;
    block_on(async {
        let mut init = Init::new(options.signal_target.value)?;
        wait_for_database(&mut init, &settings, options).await?;
        start_phase(&mut init, &settings, env, steps, "pulp-entrypoint", options).await?;
        Ok(exit::SUCCESS)
    })
}

async fn start_phase(
    init: &mut Init,
    settings: &PulpSettings,
    env: &Environment,
    steps: prepare::Steps,
    role: &str,
    options: &Options,
) -> Result<(), Error> {
    let host = nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown-host".into());
    let who = format!("{role} on {host} pid {}", std::process::id());
    match prepare::run(init, settings, env, steps, who, options.stop_grace.value).await {
        Ok(()) => Ok(()),
        Err(PrepareError::Stopped(signo)) => Err(Error::Stopped {
            signal: Signal::try_from(signo).unwrap_or(Signal::SIGTERM),
            doing: "preparing the database",
        }),
        Err(error) => Err(Error::Prepare(error)),
    }
}

fn run_child(line: &CommandLine, stop: &StopPolicy, options: &Options) -> Result<i32, Error> {
    block_on(async {
        let mut init = Init::new(options.signal_target.value)?;
        supervise_or_exec(&mut init, "command", line, stop, options).await
    })
}

async fn supervise_or_exec(
    init: &mut Init,
    what: &str,
    line: &CommandLine,
    stop: &StopPolicy,
    options: &Options,
) -> Result<i32, Error> {
    let since_start = STARTED
        .get()
        .map_or(0, |started| started.elapsed().as_millis() as u64);
    if options.exec.value {
        info!(
            phase = "exec",
            duration_ms = since_start,
            "exec {what}: {line}"
        );
        return Err(pid1::exec(line.to_command()).into());
    }
    info!(
        phase = "exec",
        duration_ms = since_start,
        "starting {what}: {line}"
    );
    let exit = init.supervise(line.to_command(), stop).await?;
    Ok(exit.exit_code())
}

async fn wait_for_database(
    init: &mut Init,
    settings: &PulpSettings,
    options: &Options,
) -> Result<(), Error> {
    let policy = wait_policy(options);
    let started = std::time::Instant::now();
    tokio::select! {
        result = postgres::wait_for_postgres(&settings.database, &policy) => {
            result?;
            info!(
                phase = "wait-postgres",
                duration_ms = started.elapsed().as_millis() as u64,
                "PostgreSQL accepts the login"
            );
            Ok(())
        }
        signal = init.termination_requested() => Err(Error::Stopped {
            signal,
            doing: "waiting for PostgreSQL",
        }),
    }
}

fn wait_policy(options: &Options) -> WaitPolicy {
    WaitPolicy {
        timeout: options.postgres_timeout.value,
        missing_database_grace: options.missing_database_grace.value,
        log_interval: WAIT_LOG_INTERVAL,
    }
}

/// `pulp-entrypoint config`: every effective value and where it came from.
fn print_config(options: &Options, env: &Environment) -> Result<(), Error> {
    let mut out = String::new();
    let file = options
        .config_file
        .as_ref()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|| "none".into());
    out.push_str(&format!("# entrypoint options (file: {file})\n"));
    for (key, value, source) in options.report() {
        let help = OPTION_KEYS
            .iter()
            .find(|(known, _, _)| *known == key)
            .map(|(_, _, help)| *help)
            .unwrap_or("");
        out.push_str(&format!("{key} = {value}  # {source}; {help}\n"));
    }
    let host = Host::detect(env);
    out.push_str(&format!(
        "\n# installed: {}\n",
        roles::installed_notes(Role::Api, &host).0
    ));
    if let Some(pulpcore) = &host.pulpcore {
        out.push_str(&format!("# site-packages: {}\n", pulpcore.root.display()));
    }
    let settings = settings::load(env)?;
    let files: Vec<String> = settings
        .files
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    out.push_str(&format!(
        "\n# pulp settings the entrypoint uses (files: {})\n",
        if files.is_empty() {
            "none".to_string()
        } else {
            files.join(", ")
        }
    ));
    for line in settings.report() {
        out.push_str(&format!(
            "{} = {}  # {}\n",
            line.key, line.value, line.source
        ));
    }
    crate::logging::print(&out).map_err(Error::Output)
}
