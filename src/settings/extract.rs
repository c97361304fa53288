//! From the layered values to typed settings: pulpcore's defaults for what
//! is missing, a clear error (naming where the value came from) for what has
//! the wrong type, and a report of every value for `pulp-entrypoint config`.

use std::path::PathBuf;

use tracing::warn;

use super::layers::Layered;
use super::literal::Value;
use super::{
    DatabaseSettings, DefaultStorage, FILE_SYSTEM_STORAGE, MediaRoot, PulpSettings, RedisSettings,
    ReportLine, SettingsError, SslMode,
};
use crate::sourced::{Secret, Source, Sourced};

/// The top-level settings the entrypoint reads: a statement it cannot
/// evaluate that assigns one of these is an error, any other only a warning.
const READ: &[&str] = &[
    "DATABASES",
    "MEDIA_ROOT",
    "STATIC_ROOT",
    "WORKING_DIRECTORY",
    "DB_ENCRYPTION_KEY",
    "API_ROOT",
    "CONTENT_PATH_PREFIX",
    "WORKER_NAME_TEMPLATE",
    "CACHE_ENABLED",
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_DB",
    "REDIS_PASSWORD",
    "TASK_GRACE_INTERVAL",
    "ENABLED_PLUGINS",
];

/// Settings that name the storage backend. Object storage settings often
/// compute credentials, so a statement the entrypoint cannot evaluate here
/// is only a warning: the backend is then unknown.
const STORAGE_KEYS: &[&str] = &["STORAGES", "DEFAULT_FILE_STORAGE"];

/// Backends that keep artifacts as files below MEDIA_ROOT.
const FILE_SYSTEM_BACKENDS: &[&str] = &[
    FILE_SYSTEM_STORAGE,
    "django.core.files.storage.FileSystemStorage",
    "django.core.files.storage.filesystem.FileSystemStorage",
];

/// django-storages' backends: object storage, nothing written locally.
const REMOTE_BACKEND_PREFIX: &str = "storages.backends.";

pub fn settings(layered: &Layered) -> Result<PulpSettings, SettingsError> {
    for (target, text) in &layered.unevaluated {
        match target {
            Some(name) if STORAGE_KEYS.contains(&name.as_str()) => {
                warn!(
                    "{text}; the entrypoint cannot tell the storage backend, so it prepares MEDIA_ROOT only when MEDIA_ROOT is not empty"
                );
            }
            Some(name) if !READ.contains(&name.as_str()) => {
                warn!("{text}; ignored, the entrypoint does not read {name}");
            }
            _ => {
                return Err(SettingsError::Invalid {
                    origin: text.clone(),
                    reason:
                        "use a literal, or set the value with a PULP_<NAME> environment variable"
                            .into(),
                });
            }
        }
    }
    let read = Reader { layered };
    let default_storage = read.default_storage()?;
    Ok(PulpSettings {
        database: read.database()?,
        media_root: read.media_root(&default_storage)?,
        default_storage,
        static_root: read.path("STATIC_ROOT", "/var/lib/pulp/assets/")?,
        working_directory: read.path("WORKING_DIRECTORY", "/var/lib/pulp/tmp")?,
        db_encryption_key: read.path(
            "DB_ENCRYPTION_KEY",
            "/etc/pulp/certs/database_fields.symmetric.key",
        )?,
        api_root: read
            .string(&["API_ROOT"])?
            .unwrap_or_else(|| Sourced::default("/pulp/".into())),
        content_path_prefix: read
            .string(&["CONTENT_PATH_PREFIX"])?
            .unwrap_or_else(|| Sourced::default("/pulp/content/".into())),
        worker_name_template: read
            .string(&["WORKER_NAME_TEMPLATE"])?
            .unwrap_or_else(|| Sourced::default("{pid}@{hostname}".into())),
        cache_enabled: read
            .boolean(&["CACHE_ENABLED"])?
            .unwrap_or_else(|| Sourced::default(false)),
        redis: read.redis()?,
        task_grace_interval: read.integer(&["TASK_GRACE_INTERVAL"])?,
        enabled_plugins: read.string_list(&["ENABLED_PLUGINS"])?,
        apps_overridden: apps_overridden(layered),
        files: layered.files.clone(),
    })
}

/// Settings that change which apps and migrations Django sees, evaluated or not.
fn apps_overridden(layered: &Layered) -> Option<String> {
    ["INSTALLED_APPS", "MIGRATION_MODULES"]
        .into_iter()
        .find(|name| {
            layered.get(&[name]).is_some()
                || layered
                    .unevaluated
                    .iter()
                    .any(|(target, _)| target.as_deref() == Some(*name))
        })
        .map(str::to_string)
}

struct Reader<'a> {
    layered: &'a Layered,
}

impl Reader<'_> {
    fn origin(&self, path: &[&str]) -> String {
        let source = self.layered.source_of(path);
        format!("{} ({source})", path.join("."))
    }

    fn invalid(&self, path: &[&str], reason: String) -> SettingsError {
        SettingsError::Invalid {
            origin: self.origin(path),
            reason,
        }
    }

    fn sourced<T>(&self, path: &[&str], value: T) -> Sourced<T> {
        Sourced::new(value, self.layered.source_of(path))
    }

    /// A string, `None` when absent or None.
    fn string(&self, path: &[&str]) -> Result<Option<Sourced<String>>, SettingsError> {
        match self.layered.get(path) {
            None | Some(Value::None) => Ok(None),
            Some(Value::Str(text)) => Ok(Some(self.sourced(path, text.clone()))),
            Some(other) => {
                Err(self.invalid(path, format!("is {}, expected a string", other.type_name())))
            }
        }
    }

    /// A list of strings, `None` when absent or None.
    fn string_list(&self, path: &[&str]) -> Result<Option<Sourced<Vec<String>>>, SettingsError> {
        let items = match self.layered.get(path) {
            None | Some(Value::None) => return Ok(None),
            Some(Value::List(items)) => items,
            Some(other) => {
                return Err(self.invalid(
                    path,
                    format!("is {}, expected a list of strings", other.type_name()),
                ));
            }
        };
        let strings = items
            .iter()
            .map(|item| match item {
                Value::Str(text) => Ok(text.clone()),
                other => Err(self.invalid(
                    path,
                    format!("has {}, expected only strings", other.type_name()),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(self.sourced(path, strings)))
    }

    fn path(&self, key: &str, default: &str) -> Result<Sourced<PathBuf>, SettingsError> {
        Ok(match self.string(&[key])? {
            Some(text) if !text.value.is_empty() => Sourced::new(text.value.into(), text.source),
            _ => Sourced::default(default.into()),
        })
    }

    /// `STORAGES.default.BACKEND`, else the older `DEFAULT_FILE_STORAGE`,
    /// else pulpcore's FileSystem. A backend set by a statement that could not
    /// be evaluated is unknown.
    fn default_storage(&self) -> Result<DefaultStorage, SettingsError> {
        let candidates: [(&'static str, &[&str]); 2] = [
            (
                "STORAGES.default.BACKEND",
                &["STORAGES", "default", "BACKEND"],
            ),
            ("DEFAULT_FILE_STORAGE", &["DEFAULT_FILE_STORAGE"]),
        ];
        for (key, path) in candidates {
            if let Some(backend) = self.string(path)?.filter(|b| !b.value.is_empty()) {
                return Ok(DefaultStorage {
                    key,
                    backend: Some(backend),
                });
            }
            if self.unevaluated(path[0]) {
                return Ok(DefaultStorage { key, backend: None });
            }
        }
        Ok(DefaultStorage {
            key: candidates[0].0,
            backend: Some(Sourced::default(FILE_SYSTEM_STORAGE.into())),
        })
    }

    fn unevaluated(&self, name: &str) -> bool {
        self.layered
            .unevaluated
            .iter()
            .any(|(target, _)| target.as_deref() == Some(name))
    }

    /// MEDIA_ROOT, pulpcore's default when unset; see [`media_root_for`].
    fn media_root(&self, storage: &DefaultStorage) -> Result<Sourced<MediaRoot>, SettingsError> {
        let set = self.string(&["MEDIA_ROOT"])?;
        let source = set.as_ref().map_or(Source::Default, |s| s.source.clone());
        let text = set.map_or_else(|| "/var/lib/pulp/media".to_string(), |s| s.value);
        Ok(Sourced::new(media_root_for(storage, &text), source))
    }

    fn boolean(&self, path: &[&str]) -> Result<Option<Sourced<bool>>, SettingsError> {
        match self.layered.get(path) {
            None | Some(Value::None) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(self.sourced(path, *b))),
            Some(other) => Err(self.invalid(
                path,
                format!("is {}, expected True or False", other.type_name()),
            )),
        }
    }

    /// An integer, or a string of digits (Django accepts PORT "5432").
    fn integer(&self, path: &[&str]) -> Result<Option<Sourced<i64>>, SettingsError> {
        match self.layered.get(path) {
            None | Some(Value::None) => Ok(None),
            Some(Value::Int(n)) => Ok(Some(self.sourced(path, *n))),
            Some(Value::Str(text)) if text.trim().is_empty() => Ok(None),
            Some(Value::Str(text)) => text
                .trim()
                .parse()
                .map(|n| Some(self.sourced(path, n)))
                .map_err(|_| self.invalid(path, format!("'{text}' is not a whole number"))),
            Some(other) => Err(self.invalid(
                path,
                format!("is {}, expected a whole number", other.type_name()),
            )),
        }
    }

    fn port(&self, path: &[&str], default: u16) -> Result<Sourced<u16>, SettingsError> {
        match self.integer(path)? {
            None => Ok(Sourced::default(default)),
            Some(port) => match u16::try_from(port.value) {
                Ok(number) if number > 0 => Ok(Sourced::new(number, port.source)),
                _ => Err(self.invalid(
                    path,
                    format!("{} is not a port number (1-65535)", port.value),
                )),
            },
        }
    }

    fn database(&self) -> Result<DatabaseSettings, SettingsError> {
        for path in [&["DATABASES"][..], &["DATABASES", "default"]] {
            if let Some(value) = self.layered.get(path)
                && !matches!(value, Value::Dict(_) | Value::None)
            {
                return Err(
                    self.invalid(path, format!("is {}, expected a dict", value.type_name()))
                );
            }
        }
        let at = |key: &'static str| ["DATABASES", "default", key];
        let name_or_default = |key: &'static str| -> Result<Sourced<String>, SettingsError> {
            Ok(match self.string(&at(key))? {
                Some(text) if !text.value.is_empty() => text,
                _ => Sourced::default("pulp".into()),
            })
        };
        let options = ["DATABASES", "default", "OPTIONS"];
        let option = |key: &'static str| [options[0], options[1], options[2], key];
        let sslmode = match self.string(&option("sslmode"))? {
            None => Sourced::default(SslMode::Prefer),
            Some(text) => match SslMode::parse(&text.value) {
                Some(mode) => Sourced::new(mode, text.source),
                None => {
                    return Err(self.invalid(
                        &option("sslmode"),
                        format!(
                            "'{}' is not an sslmode: use disable, allow, prefer, require, verify-ca or verify-full",
                            text.value
                        ),
                    ));
                }
            },
        };
        let connect_timeout = match self.integer(&option("connect_timeout"))? {
            Some(seconds) if seconds.value < 0 => {
                return Err(self.invalid(&option("connect_timeout"), "must not be negative".into()));
            }
            other => other.map(|s| Sourced::new(s.value as u64, s.source)),
        };
        Ok(DatabaseSettings {
            name: name_or_default("NAME")?,
            user: name_or_default("USER")?,
            password: self
                .string(&at("PASSWORD"))?
                .map(|p| Sourced::new(Secret::new(p.value), p.source)),
            host: self.string(&at("HOST"))?.filter(|h| !h.value.is_empty()),
            port: self.port(&at("PORT"), 5432)?,
            sslmode,
            sslrootcert: self
                .string(&option("sslrootcert"))?
                .map(|p| Sourced::new(p.value.into(), p.source)),
            connect_timeout,
        })
    }

    fn redis(&self) -> Result<Option<RedisSettings>, SettingsError> {
        let url = self.string(&["REDIS_URL"])?.filter(|u| !u.value.is_empty());
        let host = self
            .string(&["REDIS_HOST"])?
            .filter(|h| !h.value.is_empty());
        if url.is_none() && host.is_none() {
            return Ok(None);
        }
        Ok(Some(RedisSettings {
            url: url.map(|u| Sourced::new(Secret::new(u.value), u.source)),
            host,
            port: self.port(&["REDIS_PORT"], 6379)?,
            db: self
                .integer(&["REDIS_DB"])?
                .unwrap_or_else(|| Sourced::default(0)),
            password: self
                .string(&["REDIS_PASSWORD"])?
                .map(|p| Sourced::new(Secret::new(p.value), p.source)),
        }))
    }
}

/// Object storage writes nothing below MEDIA_ROOT, whatever it says; an
/// empty MEDIA_ROOT means none, except with file-system storage, where it
/// is a mistake that `setup` refuses.
fn media_root_for(storage: &DefaultStorage, text: &str) -> MediaRoot {
    let backend = storage.backend.as_ref().map(|b| b.value.as_str());
    match backend {
        Some(b) if b.starts_with(REMOTE_BACKEND_PREFIX) => MediaRoot::NotUsed,
        Some(b) if text.is_empty() && FILE_SYSTEM_BACKENDS.contains(&b) => MediaRoot::Empty,
        _ if text.is_empty() => MediaRoot::NotUsed,
        _ => MediaRoot::Local(text.into()),
    }
}

impl PulpSettings {
    /// MEDIA_ROOT for `config`: the directory, or why there is none.
    fn media_root_text(&self) -> String {
        let backend = self.default_storage.backend.as_ref().map(|b| &b.value);
        match (&self.media_root.value, backend) {
            (MediaRoot::Local(path), _) => path.display().to_string(),
            (MediaRoot::NotUsed, Some(backend)) => format!("(not used: artifacts go to {backend})"),
            (MediaRoot::NotUsed, None) => {
                "(not used: empty, and the storage backend is computed by the settings)".into()
            }
            (MediaRoot::Empty, backend) => format!(
                "\"\" (invalid with {}: set a directory)",
                backend.map_or("file-system storage", String::as_str)
            ),
        }
    }

    /// Every value the entrypoint uses, with its source; secrets redacted.
    pub fn report(&self) -> Vec<ReportLine> {
        let mut lines = Vec::new();
        let mut line = |key: &str, value: String, source: &Source| {
            lines.push(ReportLine {
                key: key.to_string(),
                value,
                source: source.clone(),
            });
        };
        let db = &self.database;
        line(
            "DATABASES.default.NAME",
            db.name.value.clone(),
            &db.name.source,
        );
        line(
            "DATABASES.default.USER",
            db.user.value.clone(),
            &db.user.source,
        );
        match &db.password {
            Some(p) => line("DATABASES.default.PASSWORD", p.value.to_string(), &p.source),
            None => line(
                "DATABASES.default.PASSWORD",
                "(none)".into(),
                &Source::Default,
            ),
        }
        match &db.host {
            Some(h) => line("DATABASES.default.HOST", h.value.clone(), &h.source),
            None => line(
                "DATABASES.default.HOST",
                "(unix socket /var/run/postgresql)".into(),
                &Source::Default,
            ),
        }
        line(
            "DATABASES.default.PORT",
            db.port.value.to_string(),
            &db.port.source,
        );
        line(
            "DATABASES.default.OPTIONS.sslmode",
            db.sslmode.value.as_str().into(),
            &db.sslmode.source,
        );
        if let Some(cert) = &db.sslrootcert {
            line(
                "DATABASES.default.OPTIONS.sslrootcert",
                cert.value.display().to_string(),
                &cert.source,
            );
        }
        if let Some(timeout) = &db.connect_timeout {
            line(
                "DATABASES.default.OPTIONS.connect_timeout",
                timeout.value.to_string(),
                &timeout.source,
            );
        }
        line(
            "MEDIA_ROOT",
            self.media_root_text(),
            &self.media_root.source,
        );
        if let Some(backend) = &self.default_storage.backend {
            line(
                self.default_storage.key,
                backend.value.clone(),
                &backend.source,
            );
        }
        for (key, path) in [
            ("STATIC_ROOT", &self.static_root),
            ("WORKING_DIRECTORY", &self.working_directory),
            ("DB_ENCRYPTION_KEY", &self.db_encryption_key),
        ] {
            line(key, path.value.display().to_string(), &path.source);
        }
        for (key, text) in [
            ("API_ROOT", &self.api_root),
            ("CONTENT_PATH_PREFIX", &self.content_path_prefix),
            ("WORKER_NAME_TEMPLATE", &self.worker_name_template),
        ] {
            line(key, text.value.clone(), &text.source);
        }
        line(
            "CACHE_ENABLED",
            self.cache_enabled.value.to_string(),
            &self.cache_enabled.source,
        );
        if let Some(redis) = &self.redis {
            if let Some(url) = &redis.url {
                line("REDIS_URL", url.value.to_string(), &url.source);
            }
            if let Some(host) = &redis.host {
                line("REDIS_HOST", host.value.clone(), &host.source);
            }
            line(
                "REDIS_PORT",
                redis.port.value.to_string(),
                &redis.port.source,
            );
            line("REDIS_DB", redis.db.value.to_string(), &redis.db.source);
            if let Some(password) = &redis.password {
                line(
                    "REDIS_PASSWORD",
                    password.value.to_string(),
                    &password.source,
                );
            }
        }
        if let Some(grace) = &self.task_grace_interval {
            line(
                "TASK_GRACE_INTERVAL",
                grace.value.to_string(),
                &grace.source,
            );
        }
        if let Some(plugins) = &self.enabled_plugins {
            line("ENABLED_PLUGINS", plugins.value.join(","), &plugins.source);
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::load;
    use super::*;
    use crate::environment::Environment;

    fn file(extension: &str, text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new()
            .suffix(extension)
            .tempfile()
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn env(settings: &Path, extra: &[(&str, &str)]) -> Environment {
        let mut pairs = vec![("PULP_SETTINGS".to_string(), settings.display().to_string())];
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Environment::from_pairs(pairs)
    }

    use std::path::Path;

    const CONTRACT: &str = r#"
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "pulp", "USER": "pulp",
  "PASSWORD": "hunter2", "HOST": "db", "PORT": 5432, "CONN_MAX_AGE": 0, "OPTIONS": {"sslmode": "require"}}}
STATIC_ROOT = "/var/lib/operator/static/"
DB_ENCRYPTION_KEY = "/etc/pulp/keys/database_fields.symmetric.key"
CONTENT_ORIGIN = "http://pulp.example"
CACHE_ENABLED = True
REDIS_HOST = "redis"
"#;

    #[test]
    fn the_contract_settings_file() {
        let f = file(".py", CONTRACT);
        let s = load(&env(f.path(), &[])).unwrap();
        assert_eq!(s.database.host.as_ref().unwrap().value, "db");
        assert_eq!(s.database.port.value, 5432);
        assert_eq!(s.database.sslmode.value, SslMode::Require);
        assert_eq!(
            s.database.password.as_ref().unwrap().value.expose(),
            "hunter2"
        );
        assert_eq!(
            s.database.host.as_ref().unwrap().source,
            Source::File {
                path: f.path().to_path_buf(),
                line: Some(2)
            }
        );
        assert_eq!(
            s.static_root.value,
            PathBuf::from("/var/lib/operator/static/")
        );
        assert_eq!(
            s.media_root.value,
            MediaRoot::Local("/var/lib/pulp/media".into())
        );
        assert_eq!(s.media_root.source, Source::Default);
        assert!(s.cache_enabled.value);
        assert_eq!(s.redis.as_ref().unwrap().port.value, 6379);
    }

    #[test]
    fn env_overrides_the_file_and_nests() {
        let f = file(".py", CONTRACT);
        let s = load(&env(
            f.path(),
            &[
                ("PULP_DATABASES__default__HOST", "db2"),
                ("PULP_DATABASES__DEFAULT__PORT", "6543"),
                ("PULP_MEDIA_ROOT", "/data/media"),
                ("PULP_ENTRYPOINT_STOP_GRACE", "5"),
            ],
        ))
        .unwrap();
        assert_eq!(s.database.host.as_ref().unwrap().value, "db2");
        assert_eq!(
            s.database.host.as_ref().unwrap().source,
            Source::Env("PULP_DATABASES__default__HOST".into())
        );
        assert_eq!(s.database.port.value, 6543);
        assert_eq!(
            s.database.name.value, "pulp",
            "the rest of the file's dict stays"
        );
        assert_eq!(s.media_root.value, MediaRoot::Local("/data/media".into()));
    }

    #[test]
    fn defaults_without_any_file() {
        let s = load(&Environment::from_pairs([("PULP_SETTINGS_UNRELATED", "x")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.database.name.value, "pulp");
        assert_eq!(s.database.user.value, "pulp");
        assert!(s.database.host.is_none());
        assert_eq!(s.database.port.value, 5432);
        assert_eq!(s.api_root.value, "/pulp/");
        assert_eq!(s.content_path_prefix.value, "/pulp/content/");
        assert_eq!(s.worker_name_template.value, "{pid}@{hostname}");
    }

    #[test]
    fn an_explicit_missing_file_is_an_error() {
        let error = load(&Environment::from_pairs([(
            "PULP_SETTINGS",
            "/nonexistent/s.py",
        )]))
        .unwrap_err()
        .to_string();
        assert!(error.contains("/nonexistent/s.py"), "{error}");
        assert!(error.contains("PULP_SETTINGS"), "{error}");
    }

    #[test]
    fn code_in_a_setting_we_read_is_an_error_naming_the_line() {
        let f = file(
            ".py",
            "import os\nX = os.getenv('X')\nDATABASES = {'default': {'HOST': os.environ['H']}}\n",
        );
        let error = load(&env(f.path(), &[])).unwrap_err().to_string();
        assert!(error.contains(":3: cannot evaluate"), "{error}");
        assert!(error.contains("PULP_<NAME>"), "{error}");
    }

    #[test]
    fn wrong_types_name_their_origin() {
        let f = file(".py", "DATABASES = {'default': {'PORT': 'five'}}\n");
        let error = load(&env(f.path(), &[])).unwrap_err().to_string();
        assert!(error.starts_with("DATABASES.default.PORT ("), "{error}");
        assert!(error.contains("'five' is not a whole number"), "{error}");
        let f = file(".py", "DATABASES = {'default': {'PORT': 70000}}\n");
        let error = load(&env(f.path(), &[])).unwrap_err().to_string();
        assert!(error.contains("70000 is not a port number"), "{error}");
        let f = file(
            ".py",
            "DATABASES = {'default': {'OPTIONS': {'sslmode': 'maybe'}}}\n",
        );
        let error = load(&env(f.path(), &[])).unwrap_err().to_string();
        assert!(error.contains("not an sslmode"), "{error}");
        let clean = file(".py", "");
        let error = load(&env(clean.path(), &[("PULP_MEDIA_ROOT", "[1]")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("env PULP_MEDIA_ROOT"), "{error}");
    }

    #[test]
    fn toml_and_json_files_and_yaml_refused() {
        let t = file(
            ".toml",
            "[DATABASES.default]\nHOST = \"tomlhost\"\nPORT = \"5433\"\n",
        );
        let s = load(&env(t.path(), &[])).unwrap();
        assert_eq!(s.database.host.unwrap().value, "tomlhost");
        assert_eq!(s.database.port.value, 5433);
        let j = file(
            ".json",
            r#"{"databases": {"default": {"HOST": "jsonhost"}}}"#,
        );
        let s = load(&env(j.path(), &[])).unwrap();
        assert_eq!(s.database.host.unwrap().value, "jsonhost");
        let y = file(".yaml", "DATABASES: {}\n");
        let error = load(&env(y.path(), &[])).unwrap_err().to_string();
        assert!(error.contains("convert the file"), "{error}");
    }

    #[test]
    fn enabled_plugins_is_a_list_of_names() {
        let f = file(".py", "ENABLED_PLUGINS = ['pulp_file', 'pulp_container']\n");
        let s = load(&env(f.path(), &[])).unwrap();
        assert_eq!(
            s.enabled_plugins.unwrap().value,
            ["pulp_file", "pulp_container"]
        );
        let s = load(&env(f.path(), &[("PULP_ENABLED_PLUGINS", "['pulp_file']")])).unwrap();
        assert_eq!(s.enabled_plugins.unwrap().value, ["pulp_file"]);
        let unset = file(".py", "");
        assert!(
            load(&env(unset.path(), &[]))
                .unwrap()
                .enabled_plugins
                .is_none()
        );
        let wrong = load(&env(unset.path(), &[("PULP_ENABLED_PLUGINS", "[1]")]))
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("ENABLED_PLUGINS"), "{wrong}");
        assert!(wrong.contains("expected only strings"), "{wrong}");
    }

    #[test]
    fn later_files_win() {
        let a = file(
            ".py",
            "DATABASES = {'default': {'HOST': 'a'}}\nMEDIA_ROOT = '/a'\n",
        );
        let b = file(".py", "DATABASES = {'default': {'HOST': 'b'}}\n");
        let list = format!("{},{}", a.path().display(), b.path().display());
        let s = load(&Environment::from_pairs([("PULP_SETTINGS", list)])).unwrap();
        assert_eq!(s.database.host.unwrap().value, "b");
        assert_eq!(s.media_root.value, MediaRoot::Local("/a".into()));
        assert_eq!(s.files.len(), 2);
    }

    /// The report's value and source for `key`.
    fn reported(s: &PulpSettings, key: &str) -> (String, String) {
        let line = s.report().into_iter().find(|l| l.key == key).unwrap();
        (line.value, line.source.to_string())
    }

    const S3: &str = "STORAGES = {'default': {'BACKEND': 'storages.backends.s3boto3.S3Boto3Storage', 'OPTIONS': {'bucket_name': 'pulp'}}, 'staticfiles': {'BACKEND': 'django.contrib.staticfiles.storage.StaticFilesStorage'}}";

    #[test]
    fn operator_object_storage_has_no_media_root() {
        let f = file(".py", &format!("MEDIA_ROOT = \"\"\n{S3}\n"));
        let s = load(&env(f.path(), &[])).unwrap();
        assert_eq!(s.media_root.value, MediaRoot::NotUsed);
        assert_eq!(s.default_storage.key, "STORAGES.default.BACKEND");
        let at = |line| format!("{}:{line}", f.path().display());
        assert_eq!(
            reported(&s, "MEDIA_ROOT"),
            (
                "(not used: artifacts go to storages.backends.s3boto3.S3Boto3Storage)".into(),
                at(1)
            )
        );
        assert_eq!(
            reported(&s, "STORAGES.default.BACKEND"),
            ("storages.backends.s3boto3.S3Boto3Storage".into(), at(2))
        );
    }

    #[test]
    fn the_older_default_file_storage_counts_when_storages_does_not_say() {
        let f = file(
            ".py",
            "MEDIA_ROOT = ''\nDEFAULT_FILE_STORAGE = 'storages.backends.s3boto3.S3Boto3Storage'\n",
        );
        let s = load(&env(f.path(), &[])).unwrap();
        assert_eq!(s.media_root.value, MediaRoot::NotUsed);
        assert_eq!(s.default_storage.key, "DEFAULT_FILE_STORAGE");
        let both = file(
            ".py",
            &format!("MEDIA_ROOT = ''\nDEFAULT_FILE_STORAGE = 'x.Other'\n{S3}\n"),
        );
        let s = load(&env(both.path(), &[])).unwrap();
        assert_eq!(s.default_storage.key, "STORAGES.default.BACKEND");
    }

    #[test]
    fn the_storage_backend_from_the_environment() {
        let f = file(".py", "MEDIA_ROOT = ''\n");
        let s = load(&env(
            f.path(),
            &[(
                "PULP_STORAGES__default__BACKEND",
                "storages.backends.gcloud.GoogleCloudStorage",
            )],
        ))
        .unwrap();
        assert_eq!(s.media_root.value, MediaRoot::NotUsed);
        assert_eq!(
            reported(&s, "STORAGES.default.BACKEND").1,
            "env PULP_STORAGES__default__BACKEND"
        );
    }

    #[test]
    fn empty_media_root_with_file_system_storage_is_empty_not_the_default() {
        let f = file(".py", "MEDIA_ROOT = ''\n");
        let s = load(&env(f.path(), &[])).unwrap();
        assert_eq!(s.media_root.value, MediaRoot::Empty);
        assert_eq!(
            reported(&s, "MEDIA_ROOT").0,
            "\"\" (invalid with pulpcore.app.models.storage.FileSystem: set a directory)"
        );
        assert_eq!(
            reported(&s, "STORAGES.default.BACKEND"),
            (FILE_SYSTEM_STORAGE.into(), "default".into())
        );
    }

    #[test]
    fn other_backends_keep_a_media_root_that_is_set() {
        let f = file(
            ".py",
            "MEDIA_ROOT = '/srv/media'\nSTORAGES = {'default': {'BACKEND': 'mysite.storage.Local'}}\n",
        );
        let s = load(&env(f.path(), &[])).unwrap();
        assert_eq!(s.media_root.value, MediaRoot::Local("/srv/media".into()));
    }

    #[test]
    fn computed_storages_is_a_warning_and_an_unknown_backend() {
        let f = file(
            ".py",
            "import os\nMEDIA_ROOT = ''\nSTORAGES = {'default': {'BACKEND': 'storages.backends.s3boto3.S3Boto3Storage', 'OPTIONS': {'secret_key': os.environ['S3_KEY']}}}\n",
        );
        let s = load(&env(f.path(), &[])).unwrap();
        assert_eq!(s.default_storage.backend, None);
        assert_eq!(s.media_root.value, MediaRoot::NotUsed);
        assert!(
            reported(&s, "MEDIA_ROOT")
                .0
                .contains("computed by the settings")
        );
        assert!(
            !s.report()
                .iter()
                .any(|l| l.key == "STORAGES.default.BACKEND")
        );
        let set = file(
            ".py",
            "import os\nMEDIA_ROOT = '/srv/media'\nSTORAGES = {'default': {'BACKEND': os.environ['B']}}\n",
        );
        let s = load(&env(set.path(), &[])).unwrap();
        assert_eq!(s.media_root.value, MediaRoot::Local("/srv/media".into()));
    }

    #[test]
    fn the_report_never_shows_secrets() {
        let f = file(".py", CONTRACT);
        let s = load(&env(
            f.path(),
            &[
                ("PULP_REDIS_PASSWORD", "redispw"),
                ("PULP_REDIS_URL", "redis://:urlpw@r"),
            ],
        ))
        .unwrap();
        let report = format!("{:?} {:?}", s.report(), s);
        for secret in ["hunter2", "redispw", "urlpw"] {
            assert!(!report.contains(secret), "{secret} leaked: {report}");
        }
        assert!(report.contains("<redacted>"));
    }
}
