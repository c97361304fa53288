//! From the layered values to typed settings: pulpcore's defaults for what
//! is missing, a clear error (naming where the value came from) for what has
//! the wrong type, and a report of every value for `pulp-entrypoint config`.

use std::path::PathBuf;

use tracing::warn;

use super::layers::Layered;
use super::literal::Value;
use super::{DatabaseSettings, PulpSettings, RedisSettings, ReportLine, SettingsError, SslMode};
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

pub fn settings(layered: &Layered) -> Result<PulpSettings, SettingsError> {
    for (target, text) in &layered.unevaluated {
        match target {
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
    Ok(PulpSettings {
        database: read.database()?,
        media_root: read.path("MEDIA_ROOT", "/var/lib/pulp/media")?,
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
        files: layered.files.clone(),
    })
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

impl PulpSettings {
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
        for (key, path) in [
            ("MEDIA_ROOT", &self.media_root),
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
        assert_eq!(s.media_root.value, PathBuf::from("/var/lib/pulp/media"));
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
        assert_eq!(s.media_root.value, PathBuf::from("/data/media"));
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
        assert_eq!(s.media_root.value, PathBuf::from("/a"));
        assert_eq!(s.files.len(), 2);
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
