//! The start phase of a role: local setup, then the database steps of
//! `migrate::coordinator`, wired to the real database and to
//! `pulpcore-manager` run under the PID 1 duties.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::environment::Environment;
use crate::installed::{self, python_env};
use crate::migrate::coordinator::{self, Connect, Manager, Plan, PrepareError, Session};
use crate::migrate::{setup, signing, static_root};
use crate::options::Options;
use crate::pid1::{Init, StopPolicy, StopStep};
use crate::postgres;
use crate::roles::Role;
use crate::settings::{DatabaseSettings, PulpSettings};
use crate::sourced::Secret;

/// What the caller asks of the start phase.
#[derive(Debug, Clone)]
pub struct Steps {
    /// Directories and the encryption key.
    pub local_setup: bool,
    /// Which directories local setup prepares besides those every role writes.
    pub directories: setup::Directories,
    /// Apply migrations (false: wait until someone else did).
    pub migrate: bool,
    pub collectstatic: bool,
    pub admin_password: bool,
    /// Signing services when `PULP_SIGNING_KEY_FINGERPRINT` is set.
    pub signing_services: bool,
    pub lock_timeout: Duration,
    pub admin_password_file: PathBuf,
    pub signing_scripts_dir: PathBuf,
}

impl Steps {
    /// A server role: everything; collectstatic only for the API, which serves the files.
    pub fn for_role(role: Role, options: &Options) -> Steps {
        Steps {
            local_setup: true,
            // Only collectstatic writes STATIC_ROOT.
            directories: setup::Directories {
                static_root: role == Role::Api,
            },
            migrate: options.migrate.value,
            collectstatic: role == Role::Api,
            admin_password: true,
            signing_services: true,
            lock_timeout: options.lock_timeout.value,
            admin_password_file: options.admin_password_file.value.clone(),
            signing_scripts_dir: options.signing_scripts_dir.value.clone(),
        }
    }

    /// `pulp-entrypoint migrate`: migrations only (the job deployments run).
    pub fn migrate_only(options: &Options) -> Steps {
        Steps {
            local_setup: false,
            directories: setup::Directories::default(),
            migrate: true,
            collectstatic: false,
            admin_password: false,
            signing_services: false,
            lock_timeout: options.lock_timeout.value,
            admin_password_file: options.admin_password_file.value.clone(),
            signing_scripts_dir: options.signing_scripts_dir.value.clone(),
        }
    }

    /// `wait-migrations`: wait until every migration is applied, change nothing.
    pub fn wait_only(options: &Options) -> Steps {
        Steps {
            migrate: false,
            ..Steps::migrate_only(options)
        }
    }

    /// `init`: local setup, the admin password and signing services, once
    /// migrations are applied. It stands for any role, the api included, so
    /// it also tries STATIC_ROOT (never an error: the api decides).
    pub fn init_only(options: &Options) -> Steps {
        Steps {
            local_setup: true,
            directories: setup::Directories { static_root: true },
            admin_password: true,
            signing_services: true,
            ..Steps::wait_only(options)
        }
    }
}

/// STATIC_ROOT cannot be written, so no collectstatic: say once what that
/// means. The api starts either way, as only the browsable API's styles and
/// scripts depend on those files.
fn without_collectstatic(
    error: &setup::SetupError,
    collectstatic: bool,
    settings: &PulpSettings,
    package_roots: &[PathBuf],
    apps: &installed::migrations::InstalledApps,
) {
    let dir = settings.static_root.value.display();
    let reason = error.reason();
    if !collectstatic {
        info!(
            "STATIC_ROOT {dir} cannot be written ({reason}): left to the api, whose collectstatic is the only writer"
        );
        return;
    }
    match static_root::contents(&settings.static_root.value, package_roots, apps.scope()) {
        static_root::Contents::Files { files } => info!(
            "STATIC_ROOT {dir} cannot be written ({reason}) but holds this code's {files} static files: collectstatic skipped"
        ),
        static_root::Contents::Marker => info!(
            "STATIC_ROOT {dir} cannot be written ({reason}) but was collected for this code: collectstatic skipped"
        ),
        static_root::Contents::Missing { example } => warn!(
            "STATIC_ROOT {dir} cannot be written ({reason}) and lacks this code's static files{}: starting without them, so the browsable API has no styles or scripts; make {dir} writable by this UID (group 0, mode 2775) or run `pulpcore-manager collectstatic` into it when building the image",
            example
                .map(|file| format!(" ({file} is missing or differs)"))
                .unwrap_or_default()
        ),
    }
}

/// Connections for the coordinator, with an application name that
/// `pg_stat_activity` shows to the replicas waiting on this one.
struct Database<'a> {
    settings: &'a DatabaseSettings,
    application_name: String,
}

impl Connect for Database<'_> {
    async fn open(&self, purpose: &str) -> Result<Session, PrepareError> {
        let name = format!("{} ({purpose})", self.application_name);
        let connected = postgres::connect(self.settings, &name)
            .await
            .map_err(|error| PrepareError::Connect(error.to_string()))?;
        Ok(Session {
            client: connected.client,
            notifications: connected.notifications,
        })
    }
}

/// `pulpcore-manager` as a supervised child: a SIGTERM during a migration
/// reaches Django, and its output goes to the container log.
struct SupervisedManager<'a> {
    init: &'a mut Init,
    stop: StopPolicy,
}

impl Manager for SupervisedManager<'_> {
    async fn run(
        &mut self,
        args: &[&str],
        stdin: Option<std::fs::File>,
    ) -> Result<i32, PrepareError> {
        let mut command = std::process::Command::new("pulpcore-manager");
        command.args(args);
        if let Some(file) = stdin {
            command.stdin(file);
        }
        let exit = self
            .init
            .supervise(command, &self.stop)
            .await
            .map_err(|error| PrepareError::Spawn(error.to_string()))?;
        // A stop forwarded to pulpcore-manager is a stop, not a failed step.
        if let Some(signal) =
            futures_util::FutureExt::now_or_never(self.init.termination_requested())
        {
            return Err(PrepareError::Stopped(signal as i32));
        }
        Ok(exit.exit_code())
    }

    async fn terminated(&mut self) -> i32 {
        self.init.termination_requested().await as i32
    }
}

/// Run the start phase. `who` names this process in the records and in
/// `pg_stat_activity` ("pulp-api on host-1").
pub async fn run(
    init: &mut Init,
    settings: &PulpSettings,
    env: &Environment,
    steps: Steps,
    who: String,
    stop_grace: Duration,
) -> Result<(), PrepareError> {
    let mut static_root_unwritable = None;
    if steps.local_setup {
        let started = Instant::now();
        let report = setup::prepare_local(settings, steps.directories)?;
        for dir in &report.created_directories {
            info!("created {}", dir.display());
        }
        if let Some(key) = &report.created_key {
            warn!(
                "created the database field encryption key {}: every Pulp process of this installation must use this same file (mount it from a Secret), or encrypted fields become unreadable",
                key.display()
            );
        }
        info!(
            phase = "init",
            duration_ms = started.elapsed().as_millis() as u64,
            "directories and key ready"
        );
        static_root_unwritable = report.static_root_unwritable;
    }
    let package_roots = python_env::package_roots(env.get("PATH").map(std::ffi::OsStr::new));
    let apps = installed::migrations::InstalledApps::find(
        &package_roots,
        &installed::migrations::AppSettings {
            enabled_plugins: settings
                .enabled_plugins
                .as_ref()
                .map(|p| p.value.as_slice()),
            overridden: settings.apps_overridden.as_deref(),
        },
    );
    let collectstatic = match &static_root_unwritable {
        None => steps.collectstatic,
        Some(error) => {
            without_collectstatic(error, steps.collectstatic, settings, &package_roots, &apps);
            false
        }
    };
    let signing = if steps.signing_services {
        let (signing, skipped) = signing::wanted(
            env,
            &steps.signing_scripts_dir,
            signing::container_plugin(
                &package_roots,
                settings
                    .enabled_plugins
                    .as_ref()
                    .map(|p| p.value.as_slice()),
            ),
        );
        for skip in &skipped {
            match skip {
                signing::Skipped::NoScript { .. } => warn!("{skip}"),
                signing::Skipped::NoContainerApp { .. }
                | signing::Skipped::ContainerNotEnabled { .. } => info!("{skip}"),
            }
        }
        signing
    } else {
        None
    };
    let plan = Plan {
        migrate: steps.migrate,
        collectstatic,
        admin_password: steps.admin_password,
        lock_timeout: steps.lock_timeout,
        who: who.clone(),
        apps,
        package_roots,
        static_root: settings.static_root.value.clone(),
        default_admin_password: env
            .get("PULP_DEFAULT_ADMIN_PASSWORD")
            .filter(|p| !p.is_empty())
            .map(Secret::new),
        admin_password_file: steps.admin_password_file.clone(),
        db_encryption_key: settings.db_encryption_key.value.clone(),
        env_admin_password: env
            .get("PULP_ADMIN_PASSWORD")
            .filter(|p| !p.is_empty())
            .map(Secret::new),
        signing,
    };
    let database = Database {
        settings: &settings.database,
        application_name: format!("pulp-entrypoint {who}"),
    };
    let mut manager = SupervisedManager {
        init,
        stop: StopPolicy {
            steps: vec![StopStep {
                after: stop_grace,
                signal: nix::sys::signal::Signal::SIGKILL,
            }],
        },
    };
    coordinator::prepare(&database, &mut manager, &plan).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::FlagValues;

    #[test]
    fn signing_services_go_with_the_admin_password() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let options = Options::resolve(
            &FlagValues::new(),
            Some(file.path()),
            &Environment::default(),
        )
        .unwrap();
        for role in [Role::Api, Role::Content, Role::Worker] {
            assert!(Steps::for_role(role, &options).signing_services);
        }
        assert!(Steps::init_only(&options).signing_services);
        assert!(!Steps::migrate_only(&options).signing_services);
        assert!(!Steps::wait_only(&options).signing_services);
    }

    #[test]
    fn only_the_api_and_init_prepare_static_root() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let options = Options::resolve(
            &FlagValues::new(),
            Some(file.path()),
            &Environment::default(),
        )
        .unwrap();
        let static_root = |steps: Steps| (steps.local_setup, steps.directories.static_root);
        assert_eq!(
            static_root(Steps::for_role(Role::Api, &options)),
            (true, true)
        );
        for role in [Role::Content, Role::Worker] {
            assert_eq!(static_root(Steps::for_role(role, &options)), (true, false));
        }
        assert_eq!(static_root(Steps::init_only(&options)), (true, true));
        assert!(!Steps::migrate_only(&options).local_setup);
    }
}
