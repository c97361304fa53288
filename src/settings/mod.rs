//! Pulp's own settings, read without Python.
//!
//! pulpcore reads its settings with dynaconf: the file(s) named by
//! `PULP_SETTINGS` (default `/etc/pulp/settings.py`), then `PULP_*`
//! environment variables (nested with `__`), over pulpcore's defaults.
//! This module reproduces that for the values the entrypoint needs (the
//! database, the directories, the key file) so that it connects to the same
//! database pulpcore will, before any Python starts.

use std::path::PathBuf;

mod extract;
mod layers;
pub mod literal;

use crate::environment::Environment;
use crate::sourced::{Secret, Source, Sourced};

/// How to connect to PostgreSQL, as Django's `DATABASES["default"]` says.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub name: Sourced<String>,
    pub user: Sourced<String>,
    pub password: Option<Sourced<Secret>>,
    /// Host name, IP address, or a directory for a unix socket. `None` or
    /// empty means the default unix socket directory, as libpq does.
    pub host: Option<Sourced<String>>,
    pub port: Sourced<u16>,
    /// `OPTIONS.sslmode` (libpq semantics), `prefer` when absent.
    pub sslmode: Sourced<SslMode>,
    /// `OPTIONS.sslrootcert`, a PEM file of CAs for verify-ca / verify-full.
    pub sslrootcert: Option<Sourced<PathBuf>>,
    /// `OPTIONS.connect_timeout` in seconds, if set.
    pub connect_timeout: Option<Sourced<u64>>,
}

/// libpq's sslmode values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// pulpcore's default storage backend: artifacts are files below MEDIA_ROOT.
pub const FILE_SYSTEM_STORAGE: &str = "pulpcore.app.models.storage.FileSystem";

/// The storage backend artifacts go to.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultStorage {
    /// The setting it came from: `STORAGES.default.BACKEND`, or the older
    /// `DEFAULT_FILE_STORAGE` (read by pulpcore before 3.85).
    pub key: &'static str,
    /// The backend's dotted path; `None` when the settings compute it (the
    /// entrypoint evaluates literals only, and warned).
    pub backend: Option<Sourced<String>>,
}

/// MEDIA_ROOT as the storage backend makes it matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaRoot {
    /// Artifacts are written below this directory.
    Local(PathBuf),
    /// No local directory: object storage keeps the artifacts (with a
    /// django-storages backend, or an empty MEDIA_ROOT and another backend).
    NotUsed,
    /// Empty with file-system storage: Django would store artifacts relative
    /// to each process's current directory, a worker's being a temporary task
    /// directory that is deleted after the task.
    Empty,
}

/// The settings the entrypoint acts on.
#[derive(Debug, Clone)]
pub struct PulpSettings {
    pub database: DatabaseSettings,
    pub media_root: Sourced<MediaRoot>,
    pub default_storage: DefaultStorage,
    pub static_root: Sourced<PathBuf>,
    pub working_directory: Sourced<PathBuf>,
    pub db_encryption_key: Sourced<PathBuf>,
    pub api_root: Sourced<String>,
    /// Where the content app serves distributions (the content readiness probe asks it).
    pub content_path_prefix: Sourced<String>,
    /// How workers name themselves when started without --name-template.
    pub worker_name_template: Sourced<String>,
    pub cache_enabled: Sourced<bool>,
    /// Present when REDIS_URL or REDIS_HOST is set.
    pub redis: Option<RedisSettings>,
    /// TASK_GRACE_INTERVAL when the deployment set it (seconds).
    pub task_grace_interval: Option<Sourced<i64>>,
    /// ENABLED_PLUGINS when set: only these installed plugins are loaded.
    pub enabled_plugins: Option<Sourced<Vec<String>>>,
    /// The first of `INSTALLED_APPS` and `MIGRATION_MODULES` that the
    /// settings set: then only Django knows which migrations exist.
    pub apps_overridden: Option<String>,
    /// The settings files that were read, in order.
    pub files: Vec<PathBuf>,
}

/// Where Redis is, without ever holding its password in printable form.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// REDIS_URL, which may embed a password: kept secret.
    pub url: Option<Sourced<Secret>>,
    pub host: Option<Sourced<String>>,
    pub port: Sourced<u16>,
    pub db: Sourced<i64>,
    pub password: Option<Sourced<Secret>>,
}

/// One line of `pulp-entrypoint config`.
#[derive(Debug, Clone)]
pub struct ReportLine {
    pub key: String,
    pub value: String,
    pub source: Source,
}

/// Why the settings could not be read. Every message names the file (and
/// line) or variable at fault and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings file {path} could not be read: {reason}; check PULP_SETTINGS")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path}:{line}: {reason}")]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{origin}: {reason}")]
    Invalid { origin: String, reason: String },
}

/// Read the settings as pulpcore would, from `PULP_SETTINGS` and `PULP_*`.
pub fn load(env: &Environment) -> Result<PulpSettings, SettingsError> {
    let layered = layers::read(env)?;
    extract::settings(&layered)
}
