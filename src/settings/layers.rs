//! The layers dynaconf stacks for pulpcore: settings files, then `PULP_*`
//! environment variables, each value remembered with where it came from.
//!
//! A top-level assignment in a file replaces the whole value (no deep merge);
//! an environment variable `PULP_A__b__C` sets one leaf inside what is there.
//! Environment values are read as dynaconf reads them: a TOML value when they
//! parse as one (`5432`, `true`, `"x"`, `{a = 1}`), else the raw text;
//! `@int`, `@float`, `@bool`, `@str`, `@json` and `@none` markers are honoured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::SettingsError;
use super::literal::{self, Value};
use crate::environment::Environment;
use crate::sourced::Source;

pub const SETTINGS_ENV: &str = "PULP_SETTINGS";
pub const DEFAULT_SETTINGS_FILE: &str = "/etc/pulp/settings.py";

/// Every top-level setting (upper-case name) with its value, and the source
/// of each path that was set (`["DATABASES", "default", "HOST"]`).
#[derive(Debug, Default)]
pub struct Layered {
    pub values: BTreeMap<String, Value>,
    sources: BTreeMap<Vec<String>, Source>,
    /// Statements the files did not evaluate, by top-level name: path:line and why.
    pub unevaluated: Vec<(Option<String>, String)>,
    pub files: Vec<PathBuf>,
}

impl Layered {
    /// Where the value at `path` came from: the most specific layer that set it.
    pub fn source_of(&self, path: &[&str]) -> Source {
        (1..=path.len())
            .rev()
            .find_map(|len| {
                let key: Vec<String> = path[..len].iter().map(|k| k.to_ascii_uppercase()).collect();
                self.sources.get(&key).cloned()
            })
            .unwrap_or(Source::Default)
    }

    /// The value at `path` (top level case-insensitive, nested keys matched as `Value::get`).
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut value = self.values.get(&first.to_ascii_uppercase())?;
        for key in rest {
            value = value.get(key)?;
        }
        Some(value)
    }

    fn set_source(&mut self, path: &[String], source: Source) {
        let key: Vec<String> = path.iter().map(|k| k.to_ascii_uppercase()).collect();
        // A wholesale replacement hides what deeper layers said before it.
        self.sources
            .retain(|existing, _| !existing.starts_with(&key));
        self.sources.insert(key, source);
    }
}

/// Read the files of `PULP_SETTINGS` and overlay the `PULP_*` variables.
pub fn read(env: &Environment) -> Result<Layered, SettingsError> {
    let mut layered = Layered::default();
    let (list, explicit) = match env.get(SETTINGS_ENV) {
        Some(list) if !list.trim().is_empty() => (list.to_string(), true),
        _ => (DEFAULT_SETTINGS_FILE.to_string(), false),
    };
    for path in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        read_file(Path::new(path), explicit, &mut layered)?;
    }
    overlay_env(env, &mut layered)?;
    Ok(layered)
}

fn read_file(path: &Path, explicit: bool, layered: &mut Layered) -> Result<(), SettingsError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if !explicit && error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(SettingsError::Unreadable {
                path: path.to_path_buf(),
                reason: error.to_string(),
            });
        }
    };
    let text = String::from_utf8(bytes).map_err(|error| SettingsError::Syntax {
        path: path.to_path_buf(),
        line: 1 + error.as_bytes()[..error.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count(),
        reason: "not valid UTF-8".into(),
    })?;
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let top_level: Vec<(String, Value, Option<usize>)> = match extension.as_str() {
        "py" => python_file(path, &text, layered)?,
        "toml" => {
            let table: toml::Table =
                text.parse()
                    .map_err(|error: toml::de::Error| SettingsError::Syntax {
                        path: path.to_path_buf(),
                        line: error
                            .span()
                            .map(|span| 1 + text[..span.start].matches('\n').count())
                            .unwrap_or(1),
                        reason: error.message().to_string(),
                    })?;
            table
                .into_iter()
                .map(|(key, value)| (key, from_toml(value), None))
                .collect()
        }
        "json" => {
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|error| SettingsError::Syntax {
                    path: path.to_path_buf(),
                    line: error.line(),
                    reason: error.to_string(),
                })?;
            let serde_json::Value::Object(map) = value else {
                return Err(SettingsError::Unsupported {
                    path: path.to_path_buf(),
                    reason: "a JSON settings file must hold an object".into(),
                });
            };
            map.into_iter()
                .map(|(key, value)| (key, from_json(value), None))
                .collect()
        }
        "yaml" | "yml" => {
            return Err(SettingsError::Unsupported {
                path: path.to_path_buf(),
                reason: "YAML settings are not read by the entrypoint; convert the file to settings.py, .toml or .json".into(),
            });
        }
        other => {
            return Err(SettingsError::Unsupported {
                path: path.to_path_buf(),
                reason: format!(
                    "unknown settings file type '.{other}': use settings.py, .toml or .json"
                ),
            });
        }
    };
    for (key, value, line) in top_level {
        let key = key.to_ascii_uppercase();
        layered.set_source(
            std::slice::from_ref(&key),
            Source::File {
                path: path.to_path_buf(),
                line,
            },
        );
        layered.values.insert(key, value);
    }
    layered.files.push(path.to_path_buf());
    Ok(())
}

fn python_file(
    path: &Path,
    text: &str,
    layered: &mut Layered,
) -> Result<Vec<(String, Value, Option<usize>)>, SettingsError> {
    let parsed = literal::parse(text).map_err(|error| SettingsError::Syntax {
        path: path.to_path_buf(),
        line: error.line,
        reason: error.reason,
    })?;
    for unevaluated in &parsed.unevaluated {
        layered.unevaluated.push((
            unevaluated.target.as_ref().map(|t| t.to_ascii_uppercase()),
            format!(
                "{}:{}: cannot evaluate {}",
                path.display(),
                unevaluated.line,
                unevaluated.reason
            ),
        ));
    }
    let values = literal::evaluate(&parsed).map_err(|(line, reason)| SettingsError::Syntax {
        path: path.to_path_buf(),
        line,
        reason,
    })?;
    Ok(values
        .into_iter()
        .map(|(key, (value, line))| (key, value, Some(line)))
        .collect())
}

/// The prefix of the variables that are settings, and those that are not.
const PREFIX: &str = "PULP_";
const NOT_SETTINGS: &[&str] = &["PULP_SETTINGS", "PULP_ENTRYPOINT_"];

fn overlay_env(env: &Environment, layered: &mut Layered) -> Result<(), SettingsError> {
    for (name, raw) in env.with_prefix(PREFIX) {
        if NOT_SETTINGS
            .iter()
            .any(|skip| name == *skip || (skip.ends_with('_') && name.starts_with(skip)))
        {
            continue;
        }
        let path: Vec<String> = name[PREFIX.len()..]
            .split("__")
            .map(str::to_string)
            .collect();
        if path.iter().any(String::is_empty) {
            continue;
        }
        let value = match env_value(raw) {
            Ok(value) => value,
            Err(reason) => {
                layered.unevaluated.push((
                    Some(path[0].to_ascii_uppercase()),
                    format!("env {name}: {reason}"),
                ));
                continue;
            }
        };
        let top = path[0].to_ascii_uppercase();
        let slot = layered.values.entry(top).or_insert(Value::None);
        slot.set_path(&path[1..], value)
            .map_err(|reason| SettingsError::Invalid {
                origin: format!("env {name}"),
                reason,
            })?;
        layered.set_source(&path, Source::Env(name.to_string()));
    }
    Ok(())
}

/// An environment value as dynaconf reads it.
fn env_value(raw: &str) -> Result<Value, String> {
    let trimmed = raw.trim();
    if let Some(rest) = trimmed.strip_prefix('@') {
        let (marker, argument) = rest.split_once(' ').unwrap_or((rest, ""));
        let argument = argument.trim();
        return match marker {
            "int" => argument
                .parse()
                .map(Value::Int)
                .map_err(|_| format!("@int '{argument}' is not an integer")),
            "float" => argument
                .parse()
                .map(Value::Float)
                .map_err(|_| format!("@float '{argument}' is not a number")),
            "bool" => Ok(Value::Bool(matches!(
                argument.to_ascii_lowercase().as_str(),
                "true" | "1" | "yes" | "on" | "enabled"
            ))),
            "str" => Ok(Value::Str(argument.to_string())),
            "none" => Ok(Value::None),
            "json" => serde_json::from_str(argument)
                .map(from_json)
                .map_err(|error| format!("@json is not valid JSON: {error}")),
            other => Err(format!(
                "the marker @{other} needs Python and is not evaluated by the entrypoint"
            )),
        };
    }
    if let Ok(table) = format!("value = {trimmed}").parse::<toml::Table>()
        && let Some(value) = table.get("value")
    {
        return Ok(from_toml(value.clone()));
    }
    Ok(Value::Str(raw.to_string()))
}

fn from_toml(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::Str(s),
        toml::Value::Integer(i) => Value::Int(i),
        toml::Value::Float(f) => Value::Float(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::Str(d.to_string()),
        toml::Value::Array(items) => Value::List(items.into_iter().map(from_toml).collect()),
        toml::Value::Table(table) => Value::Dict(
            table
                .into_iter()
                .map(|(k, v)| (Value::Str(k), from_toml(v)))
                .collect(),
        ),
    }
}

fn from_json(value: serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::None,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN))),
        serde_json::Value::String(s) => Value::Str(s),
        serde_json::Value::Array(items) => Value::List(items.into_iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Value::Dict(
            map.into_iter()
                .map(|(k, v)| (Value::Str(k), from_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_read_like_dynaconf() {
        assert_eq!(env_value("5432"), Ok(Value::Int(5432)));
        assert_eq!(env_value("true"), Ok(Value::Bool(true)));
        assert_eq!(env_value("\"quoted\""), Ok(Value::Str("quoted".into())));
        assert_eq!(
            env_value("http://x:24816"),
            Ok(Value::Str("http://x:24816".into()))
        );
        assert_eq!(env_value("@int 7"), Ok(Value::Int(7)));
        assert_eq!(env_value("@str 5432"), Ok(Value::Str("5432".into())));
        assert_eq!(env_value("@none"), Ok(Value::None));
        assert!(matches!(env_value("{a = 1}"), Ok(Value::Dict(_))));
        assert!(matches!(
            env_value("@json {\"a\": [1]}"),
            Ok(Value::Dict(_))
        ));
        assert!(
            env_value("@format {this.X}")
                .unwrap_err()
                .contains("needs Python")
        );
    }
}
