//! Why one login attempt failed, and whether trying again can help.
//!
//! tokio-postgres reports a server's refusal as a `DbError` with a
//! SQLSTATE, which decides the kind. Everything else (refused or reset
//! connections, timeouts, TLS) is told apart by the error's source chain;
//! tokio-postgres keeps its own error kind private, so the TLS case is
//! recognised by its fixed description ("error performing TLS handshake").
//!
//! Every text kept here is one line and has the password cut out, should
//! any library ever echo it.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// What kind of failure, which decides what the wait does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The host name does not resolve (yet). Retried.
    NameNotResolved,
    /// Nobody answers, or the server is starting, stopping or full
    /// (connection refused/reset, timeouts, 57P01/57P02/57P03, 53300, 08xxx). Retried.
    Unavailable,
    /// The server refused with a SQLSTATE not listed anywhere here. Retried
    /// (and logged at warn), since it may be a passing state.
    Unexpected,
    /// The login was refused: wrong password (28P01), no pg_hba.conf entry or
    /// no such role (28000), no CONNECT privilege (42501), or the server
    /// wants a password and none is set. Not retried.
    AuthRejected,
    /// The database does not exist (3D000). Retried during the grace only.
    MissingDatabase,
    /// TLS is required but the server refused it, or its certificate failed
    /// verification. Not retried.
    Tls,
    /// The settings cannot work (an unreadable sslrootcert). Not retried.
    Settings,
}

impl ErrorKind {
    /// Whether another attempt may succeed without anyone changing anything.
    /// (`MissingDatabase` is retried only during a grace period.)
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::NameNotResolved | ErrorKind::Unavailable | ErrorKind::Unexpected
        )
    }
}

/// One failed login attempt. `Display`: `cannot connect to PostgreSQL at
/// TARGET: REASON`, one line, without the password.
/// (Boxed: it travels inside `Result`s and other errors.)
#[derive(Debug, Clone)]
pub struct ConnectError(Box<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    kind: ErrorKind,
    target: String,
    code: Option<String>,
    reason: String,
}

impl ConnectError {
    pub(crate) fn new(
        kind: ErrorKind,
        target: impl fmt::Display,
        code: Option<String>,
        reason: impl Into<String>,
    ) -> ConnectError {
        ConnectError(Box::new(Inner {
            kind,
            target: target.to_string(),
            code,
            reason: reason.into(),
        }))
    }

    /// Classify what tokio-postgres returned.
    pub(crate) fn from_postgres(
        error: &tokio_postgres::Error,
        target: impl fmt::Display,
        password: Option<&str>,
    ) -> ConnectError {
        let (kind, code, reason) = classify(error);
        let reason = scrub(&one_line(&reason), password);
        ConnectError::new(kind, target, code, reason)
    }

    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The SQLSTATE, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        self.0.code.as_deref()
    }

    /// Where the attempt went: `db:5432`, `/var/run/postgresql/.s.PGSQL.5432`.
    pub fn target(&self) -> &str {
        &self.0.target
    }

    /// What went wrong, without the "cannot connect to" prefix.
    pub fn reason(&self) -> &str {
        &self.0.reason
    }

    /// Replace the password wherever it appears (for texts built by callers).
    pub(crate) fn scrubbed(mut self, password: Option<&str>) -> ConnectError {
        self.0.reason = scrub(&self.0.reason, password);
        self
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot connect to PostgreSQL at {}: {}",
            self.0.target, self.0.reason
        )
    }
}

impl StdError for ConnectError {}

/// The kind for a SQLSTATE sent while logging in.
pub fn kind_of_sqlstate(code: &str) -> ErrorKind {
    match code {
        "28P01" | "28000" | "42501" => ErrorKind::AuthRejected,
        "3D000" => ErrorKind::MissingDatabase,
        "57P01" | "57P02" | "57P03" | "53300" => ErrorKind::Unavailable,
        _ if code.starts_with("08") => ErrorKind::Unavailable,
        _ => ErrorKind::Unexpected,
    }
}

fn classify(error: &tokio_postgres::Error) -> (ErrorKind, Option<String>, String) {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code().to_owned();
        let reason = format!("{} ({code})", db.message());
        return (kind_of_sqlstate(&code), Some(code), reason);
    }
    let description = chain(error);
    // tokio-postgres' descriptions of its private error kinds.
    if description.starts_with("error performing TLS handshake") {
        if description.contains("server does not support TLS") {
            let reason = "the server does not offer TLS, which this sslmode requires";
            return (ErrorKind::Tls, None, reason.into());
        }
        return (tls_kind(error), None, description);
    }
    if description.starts_with("authentication error") {
        return (ErrorKind::AuthRejected, None, description);
    }
    if description.contains("password missing") {
        return (
            ErrorKind::AuthRejected,
            None,
            "the server asks for a password and none is set".into(),
        );
    }
    if let Some(io) = find_io(error) {
        return (ErrorKind::Unavailable, None, describe_io(io));
    }
    // Timeouts, a connection closed during the startup, an unexpected
    // message: the server is not in a state to log us in.
    (ErrorKind::Unavailable, None, description)
}

/// A failed handshake: a rejected certificate is for good; a connection
/// dropped mid-handshake is the server going away, which may pass.
fn tls_kind(error: &tokio_postgres::Error) -> ErrorKind {
    let mut cause = error.source();
    while let Some(current) = cause {
        if current.downcast_ref::<rustls::Error>().is_some() {
            return ErrorKind::Tls;
        }
        if let Some(io) = current.downcast_ref::<io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return ErrorKind::Tls;
            }
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::TimedOut
            ) {
                return ErrorKind::Unavailable;
            }
        }
        cause = current.source();
    }
    ErrorKind::Tls
}

fn find_io(error: &tokio_postgres::Error) -> Option<&io::Error> {
    let mut cause = error.source();
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cause = current.source();
    }
    None
}

fn describe_io(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused (is the server running?)".into(),
        io::ErrorKind::NotFound => "no socket there (is the server running?)".into(),
        _ => error.to_string(),
    }
}

/// A failed query in one line: the server's message and SQLSTATE, or what
/// went wrong on the way ("connection closed").
pub fn describe_query_error(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => one_line(&format!("{} (SQLSTATE {})", db.message(), db.code().code())),
        None => one_line(&chain(error)),
    }
}

/// The error and its causes, joined with ": ", skipping a cause whose text
/// is already included (io::Error repeats its inner error's text).
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        let part = current.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = current.source();
    }
    text
}

pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Passwords shorter than this are not cut out: a short one matches
/// ordinary words, and the gap it leaves would give it away.
const SCRUB_MIN_LEN: usize = 8;

/// `text` with every occurrence of the password replaced. A safety net:
/// no library used here puts the password into an error.
pub(crate) fn scrub(text: &str, password: Option<&str>) -> String {
    match password {
        Some(password) if password.len() >= SCRUB_MIN_LEN => text.replace(password, "<redacted>"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_decide_the_kind() {
        assert_eq!(kind_of_sqlstate("28P01"), ErrorKind::AuthRejected);
        assert_eq!(kind_of_sqlstate("28000"), ErrorKind::AuthRejected);
        assert_eq!(kind_of_sqlstate("42501"), ErrorKind::AuthRejected);
        assert_eq!(kind_of_sqlstate("3D000"), ErrorKind::MissingDatabase);
        assert_eq!(kind_of_sqlstate("57P03"), ErrorKind::Unavailable);
        assert_eq!(kind_of_sqlstate("57P01"), ErrorKind::Unavailable);
        assert_eq!(kind_of_sqlstate("53300"), ErrorKind::Unavailable);
        assert_eq!(kind_of_sqlstate("08006"), ErrorKind::Unavailable);
        assert_eq!(kind_of_sqlstate("XX000"), ErrorKind::Unexpected);
        assert!(ErrorKind::Unexpected.is_retryable());
        assert!(!ErrorKind::AuthRejected.is_retryable());
        assert!(!ErrorKind::MissingDatabase.is_retryable());
    }

    #[test]
    fn the_password_is_cut_out() {
        assert_eq!(
            scrub("bad s3cret-pw here", Some("s3cret-pw")),
            "bad <redacted> here"
        );
        assert_eq!(scrub("example.com", Some("x")), "example.com");
        assert_eq!(one_line("a\n  DETAIL: b"), "a DETAIL: b");
    }
}
