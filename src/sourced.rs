//! Values that remember where they came from, and secrets that never print.
//!
//! `pulp-entrypoint config` shows every effective value with its origin, so
//! the settings and options loaders keep the origin next to each value.

use std::fmt;
use std::path::PathBuf;

/// Where an effective value came from, lowest precedence first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built into pulpcore or the entrypoint.
    Default,
    /// A settings or configuration file, with the line when known.
    File { path: PathBuf, line: Option<usize> },
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, by name (`--postgres-timeout`).
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File {
                path,
                line: Some(line),
            } => write!(f, "{}:{line}", path.display()),
            Source::File { path, line: None } => write!(f, "{}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// A value and its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Sourced<T> {
    pub fn new(value: T, source: Source) -> Self {
        Sourced { value, source }
    }

    pub fn default(value: T) -> Self {
        Sourced {
            value,
            source: Source::Default,
        }
    }
}

/// A password or key. `Debug` and `Display` print `<redacted>`, so a secret
/// can never leak through a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself: call this only where it is handed to a peer
    /// (the PostgreSQL login, a child's stdin), never to format a message.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn sources_display_where_they_came_from() {
        let file = Source::File {
            path: "/etc/pulp/settings.py".into(),
            line: Some(3),
        };
        assert_eq!(file.to_string(), "/etc/pulp/settings.py:3");
        assert_eq!(Source::Env("PULP_X".into()).to_string(), "env PULP_X");
    }
}
