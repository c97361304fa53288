//! The entrypoint's own options, validated once.
//!
//! Each option can be given, from lowest to highest precedence, in the TOML
//! file (`/etc/pulp/entrypoint.toml`, or `--config` / `PULP_ENTRYPOINT_CONFIG`),
//! as an environment variable `PULP_ENTRYPOINT_<KEY>`, or as a flag
//! `--<key>`. A key `stop_grace` is `PULP_ENTRYPOINT_STOP_GRACE` and
//! `--stop-grace`. Everything is parsed here, before anything runs, so a typo
//! is reported at once with where it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration;
use crate::environment::Environment;
use crate::sourced::{Source, Sourced};

pub const DEFAULT_CONFIG_FILE: &str = "/etc/pulp/entrypoint.toml";
pub const CONFIG_ENV: &str = "PULP_ENTRYPOINT_CONFIG";
const ENV_PREFIX: &str = "PULP_ENTRYPOINT_";

/// Tables of the same file that belong to `supervise` (read by `supervise::config`).
pub const SUPERVISE_TABLES: &[&str] = &["supervise", "service"];

/// Every option: TOML key, default shown in `--help` and `config`, what it does.
pub const OPTION_KEYS: &[(&str, &str, &str)] = &[
    (
        "postgres_timeout",
        "5m",
        "give up waiting for PostgreSQL after this long",
    ),
    (
        "missing_database_grace",
        "1m",
        "how long a missing database (3D000) is waited for before failing",
    ),
    (
        "stop_grace",
        "25s",
        "after SIGTERM, kill the child's process group this long after the first signal",
    ),
    (
        "worker_abort_after",
        "10s",
        "pulp-worker: after SIGTERM, send SIGINT this long later so the running task is aborted cleanly",
    ),
    (
        "exec",
        "false",
        "replace the entrypoint with the server instead of supervising it (no PID 1 duties)",
    ),
    ("log_format", "plain", "log line format: plain or json"),
    (
        "name_template",
        "{pid}@{hostname}-<random>",
        "name pulpcore registers for each api/content/worker process; unique per start by default",
    ),
    (
        "migrate",
        "true",
        "run pending migrations (once, under a lock); false: only wait for someone else to apply them",
    ),
    (
        "lock_timeout",
        "1h",
        "give up waiting for another replica's migrations (or for --no-migrate's job) after this long",
    ),
    (
        "admin_password_file",
        "/etc/pulp/pulp-admin-password",
        "a file holding the admin password: applied when it changes",
    ),
    (
        "signing_scripts_dir",
        "/var/lib/pulp/scripts",
        "where collection_sign.sh and container_sign.sh are, for PULP_SIGNING_KEY_FINGERPRINT",
    ),
    (
        "status_file",
        "/tmp/pulp-entrypoint-status.json",
        "supervise: where the state of every service is written for `pulp-entrypoint status`",
    ),
    (
        "signal_target",
        "child",
        "forward signals to the child only (child) or to its whole process group (group)",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Who receives forwarded signals. The final SIGKILL always goes to the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalTarget {
    /// The child only, as tini does by default. Right for Pulp: gunicorn
    /// workers die on a HUP meant for the arbiter, and a TERM meant for
    /// pulpcore-worker would kill the task it is supposed to finish.
    Child,
    /// The child's whole process group (tini -g).
    Group,
}

/// The validated options.
#[derive(Debug, Clone)]
pub struct Options {
    /// The TOML file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// The TOML file consulted, present or not (re-read by `supervise` on SIGHUP).
    pub config_path: PathBuf,
    pub postgres_timeout: Sourced<Duration>,
    pub missing_database_grace: Sourced<Duration>,
    pub stop_grace: Sourced<Duration>,
    pub worker_abort_after: Sourced<Duration>,
    pub exec: Sourced<bool>,
    pub log_format: Sourced<LogFormat>,
    /// `None` means: the default template with a random suffix.
    pub name_template: Sourced<Option<String>>,
    pub signal_target: Sourced<SignalTarget>,
    pub migrate: Sourced<bool>,
    pub lock_timeout: Sourced<Duration>,
    pub admin_password_file: Sourced<PathBuf>,
    pub signing_scripts_dir: Sourced<PathBuf>,
    pub status_file: Sourced<PathBuf>,
    /// `PULP_ENTRYPOINT_*` variables that name no option (probably typos).
    pub unknown_env: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error(
        "configuration file {path} could not be read: {reason}; fix the path in --config or {CONFIG_ENV}"
    )]
    Unreadable { path: PathBuf, reason: String },
    #[error("configuration file {path} is not valid TOML: {reason}")]
    Syntax { path: PathBuf, reason: String },
    #[error("configuration file {path}: unknown key '{key}'; known keys: {known}")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("{origin}: {reason}")]
    Invalid { origin: Source, reason: String },
}

/// Values given as flags, by TOML key.
pub type FlagValues = BTreeMap<&'static str, String>;

impl Options {
    /// Resolve every option from flags, environment and the TOML file.
    /// `config_flag` is the `--config` flag, if given.
    pub fn resolve(
        flags: &FlagValues,
        config_flag: Option<&Path>,
        env: &Environment,
    ) -> Result<Options, OptionsError> {
        let config_path = config_path(config_flag, env);
        let file = read_config_file(config_flag, env)?;
        let layers = Layers {
            flags,
            env,
            file: file.as_ref(),
        };
        let parse_bool = |text: &str| match text {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            other => Err(format!("'{other}' is not true or false")),
        };
        Ok(Options {
            config_file: file.as_ref().map(|f| f.path.clone()),
            config_path,
            postgres_timeout: layers.resolve("postgres_timeout", duration::parse)?,
            missing_database_grace: layers.resolve("missing_database_grace", duration::parse)?,
            stop_grace: layers.resolve("stop_grace", duration::parse)?,
            worker_abort_after: layers.resolve("worker_abort_after", duration::parse)?,
            exec: layers.resolve("exec", parse_bool)?,
            log_format: layers.resolve("log_format", |text| match text {
                "plain" => Ok(LogFormat::Plain),
                "json" => Ok(LogFormat::Json),
                other => Err(format!("'{other}' is not a log format: use plain or json")),
            })?,
            name_template: layers.resolve("name_template", |text| {
                if text.starts_with('{') && text.contains("<random>") {
                    Ok(None)
                } else if text.is_empty() {
                    Err("the name template is empty: use e.g. {pid}@{hostname}".to_string())
                } else {
                    Ok(Some(text.to_string()))
                }
            })?,
            signal_target: layers.resolve("signal_target", |text| match text {
                "child" => Ok(SignalTarget::Child),
                "group" => Ok(SignalTarget::Group),
                other => Err(format!(
                    "'{other}' is not a signal target: use child or group"
                )),
            })?,
            migrate: layers.resolve("migrate", parse_bool)?,
            lock_timeout: layers.resolve("lock_timeout", duration::parse)?,
            admin_password_file: layers
                .resolve("admin_password_file", |text| Ok(PathBuf::from(text)))?,
            signing_scripts_dir: layers.resolve(
                "signing_scripts_dir",
                non_empty_path("the signing scripts directory"),
            )?,
            status_file: layers.resolve("status_file", non_empty_path("the status file path"))?,
            unknown_env: env
                .with_prefix(ENV_PREFIX)
                .map(|(name, _)| name)
                .filter(|name| {
                    *name != CONFIG_ENV
                        && !OPTION_KEYS.iter().any(|(key, _, _)| env_name(key) == *name)
                })
                .map(str::to_string)
                .collect(),
        })
    }

    /// Every option as `(key, value, source)`, for `pulp-entrypoint config`.
    pub fn report(&self) -> Vec<(String, String, Source)> {
        let line =
            |key: &str, value: String, source: &Source| (key.to_string(), value, source.clone());
        let duration = |d: &Sourced<Duration>| duration::display(d.value);
        vec![
            line(
                "postgres_timeout",
                duration(&self.postgres_timeout),
                &self.postgres_timeout.source,
            ),
            line(
                "missing_database_grace",
                duration(&self.missing_database_grace),
                &self.missing_database_grace.source,
            ),
            line(
                "stop_grace",
                duration(&self.stop_grace),
                &self.stop_grace.source,
            ),
            line(
                "worker_abort_after",
                duration(&self.worker_abort_after),
                &self.worker_abort_after.source,
            ),
            line("exec", self.exec.value.to_string(), &self.exec.source),
            line(
                "log_format",
                format!("{:?}", self.log_format.value).to_lowercase(),
                &self.log_format.source,
            ),
            line(
                "name_template",
                self.name_template
                    .value
                    .clone()
                    .unwrap_or_else(|| "{pid}@{hostname}-<random>".to_string()),
                &self.name_template.source,
            ),
            line(
                "migrate",
                self.migrate.value.to_string(),
                &self.migrate.source,
            ),
            line(
                "lock_timeout",
                duration(&self.lock_timeout),
                &self.lock_timeout.source,
            ),
            line(
                "admin_password_file",
                self.admin_password_file.value.display().to_string(),
                &self.admin_password_file.source,
            ),
            line(
                "signing_scripts_dir",
                self.signing_scripts_dir.value.display().to_string(),
                &self.signing_scripts_dir.source,
            ),
            line(
                "status_file",
                self.status_file.value.display().to_string(),
                &self.status_file.source,
            ),
            line(
                "signal_target",
                format!("{:?}", self.signal_target.value).to_lowercase(),
                &self.signal_target.source,
            ),
        ]
    }
}

/// `stop_grace` -> `PULP_ENTRYPOINT_STOP_GRACE`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_uppercase())
}

/// `stop_grace` -> `--stop-grace`.
pub fn flag_name(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// The file `--config` or `PULP_ENTRYPOINT_CONFIG` names, else the default.
/// A parser for a path option that may not be empty; `what` names it in the error.
fn non_empty_path(what: &'static str) -> impl Fn(&str) -> Result<PathBuf, String> {
    move |text| {
        if text.is_empty() {
            Err(format!("{what} is empty"))
        } else {
            Ok(PathBuf::from(text))
        }
    }
}

fn config_path(config_flag: Option<&Path>, env: &Environment) -> PathBuf {
    match (config_flag, env.get(CONFIG_ENV)) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(path)) => PathBuf::from(path),
        (None, None) => PathBuf::from(DEFAULT_CONFIG_FILE),
    }
}

struct ConfigFile {
    path: PathBuf,
    table: toml::Table,
}

/// The file named by `--config` or `PULP_ENTRYPOINT_CONFIG` must exist; the
/// default one may be absent.
fn read_config_file(
    config_flag: Option<&Path>,
    env: &Environment,
) -> Result<Option<ConfigFile>, OptionsError> {
    let path = config_path(config_flag, env);
    let explicit = config_flag.is_some() || env.get(CONFIG_ENV).is_some();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if !explicit && error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(OptionsError::Unreadable {
                path,
                reason: error.to_string(),
            });
        }
    };
    let table: toml::Table =
        text.parse()
            .map_err(|error: toml::de::Error| OptionsError::Syntax {
                path: path.clone(),
                reason: error.message().to_string(),
            })?;
    if let Some(key) = table.keys().find(|key| {
        !OPTION_KEYS.iter().any(|(known, _, _)| known == key)
            && !SUPERVISE_TABLES.contains(&key.as_str())
    }) {
        return Err(OptionsError::UnknownKey {
            path,
            key: key.clone(),
            known: OPTION_KEYS
                .iter()
                .map(|(key, _, _)| *key)
                .chain(SUPERVISE_TABLES.iter().map(|table| match *table {
                    "service" => "[[service]]",
                    _ => "[supervise]",
                }))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(Some(ConfigFile { path, table }))
}

struct Layers<'a> {
    flags: &'a FlagValues,
    env: &'a Environment,
    file: Option<&'a ConfigFile>,
}

impl Layers<'_> {
    /// The highest-precedence text for `key`, with its source.
    fn pick(&self, key: &'static str) -> (String, Source) {
        if let Some(value) = self.flags.get(key) {
            return (value.clone(), Source::Flag(flag_name(key)));
        }
        let env_var = env_name(key);
        if let Some(value) = self.env.get(&env_var) {
            return (value.to_string(), Source::Env(env_var));
        }
        if let Some(file) = self.file
            && let Some(value) = file.table.get(key)
        {
            // TOML strings without their quotes; numbers and booleans as written.
            let text = match value {
                toml::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            return (
                text,
                Source::File {
                    path: file.path.clone(),
                    line: None,
                },
            );
        }
        let default = OPTION_KEYS
            .iter()
            .find(|(known, _, _)| *known == key)
            .map(|(_, default, _)| *default)
            .expect("every resolved key is listed in OPTION_KEYS");
        (default.to_string(), Source::Default)
    }

    fn resolve<T>(
        &self,
        key: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Sourced<T>, OptionsError> {
        let (text, source) = self.pick(key);
        match parse(&text) {
            Ok(value) => Ok(Sourced::new(value, source)),
            Err(reason) => Err(OptionsError::Invalid {
                origin: source,
                reason,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn no_file_env(pairs: &[(&str, &str)]) -> Environment {
        let mut all = vec![(CONFIG_ENV.to_string(), "/nonexistent/never".to_string())];
        all.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Environment::from_pairs(all)
    }

    fn toml_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let env = Environment::from_pairs([("HOME", "/root")]);
        let missing = Path::new("/nonexistent/entrypoint.toml");
        // An explicit missing file is an error, so test the defaults with a real empty file.
        let file = toml_file("");
        let options = Options::resolve(&FlagValues::new(), Some(file.path()), &env).unwrap();
        assert_eq!(options.stop_grace.value, Duration::from_secs(25));
        assert_eq!(options.stop_grace.source, Source::Default);
        assert_eq!(options.postgres_timeout.value, Duration::from_secs(300));
        assert_eq!(options.signal_target.value, SignalTarget::Child);
        assert!(!options.exec.value);
        assert!(options.name_template.value.is_none());
        assert_eq!(
            options.signing_scripts_dir.value,
            Path::new("/var/lib/pulp/scripts")
        );
        assert!(Options::resolve(&FlagValues::new(), Some(missing), &env).is_err());
    }

    #[test]
    fn flag_beats_env_beats_file() {
        let file = toml_file("stop_grace = 5\npostgres_timeout = \"2m\"\nexec = true\n");
        let env = Environment::from_pairs([("PULP_ENTRYPOINT_STOP_GRACE", "7s")]);
        let mut flags = FlagValues::new();
        let from_env = Options::resolve(&flags, Some(file.path()), &env).unwrap();
        assert_eq!(from_env.stop_grace.value, Duration::from_secs(7));
        assert_eq!(
            from_env.stop_grace.source,
            Source::Env("PULP_ENTRYPOINT_STOP_GRACE".into())
        );
        assert_eq!(from_env.postgres_timeout.value, Duration::from_secs(120));
        assert!(matches!(
            from_env.postgres_timeout.source,
            Source::File { .. }
        ));
        assert!(from_env.exec.value);

        flags.insert("stop_grace", "9".into());
        let from_flag = Options::resolve(&flags, Some(file.path()), &env).unwrap();
        assert_eq!(from_flag.stop_grace.value, Duration::from_secs(9));
        assert_eq!(
            from_flag.stop_grace.source,
            Source::Flag("--stop-grace".into())
        );
    }

    #[test]
    fn unknown_toml_key_is_named() {
        let file = toml_file("stop_grace = 5\nstop_grase = 6\n");
        let error = Options::resolve(&FlagValues::new(), Some(file.path()), &no_file_env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown key 'stop_grase'"), "{error}");
        assert!(error.contains("stop_grace"), "{error}");
    }

    #[test]
    fn invalid_values_name_their_source() {
        let file = toml_file("");
        let env = Environment::from_pairs([("PULP_ENTRYPOINT_LOG_FORMAT", "xml")]);
        let error = Options::resolve(&FlagValues::new(), Some(file.path()), &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "env PULP_ENTRYPOINT_LOG_FORMAT: 'xml' is not a log format: use plain or json"
        );
    }

    #[test]
    fn toml_syntax_errors_and_missing_explicit_files_are_reported() {
        let file = toml_file("stop_grace = \n");
        let error = Options::resolve(&FlagValues::new(), Some(file.path()), &no_file_env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not valid TOML"), "{error}");

        let error = Options::resolve(&FlagValues::new(), None, &no_file_env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/never"), "{error}");
        assert!(error.contains(CONFIG_ENV), "{error}");
    }

    #[test]
    fn unknown_entrypoint_env_vars_are_collected() {
        let file = toml_file("");
        let env = Environment::from_pairs([
            ("PULP_ENTRYPOINT_STOP_GRAC", "1"),
            ("PULP_ENTRYPOINT_EXEC", "no"),
        ]);
        let options = Options::resolve(&FlagValues::new(), Some(file.path()), &env).unwrap();
        assert_eq!(options.unknown_env, vec!["PULP_ENTRYPOINT_STOP_GRAC"]);
        assert!(!options.exec.value);
    }
}
