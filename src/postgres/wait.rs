//! Waiting until PostgreSQL lets us in, and saying clearly when it never will.
//!
//! Each round is a real login (see `connect`), so "up" means what pulpcore
//! needs: the name resolves, the server accepts, the password, pg_hba.conf,
//! CONNECT privilege and database all work. Failures that can pass (no
//! answer, starting up, too many connections, a name not in DNS yet) are
//! retried with a capped exponential backoff (50 ms doubling to 1 s, so a
//! late server is noticed within a second); refusals that will not pass
//! (password, pg_hba.conf, privilege, TLS) end the wait at once, however
//! long the timeout. A missing database is retried for the grace period,
//! counted from the first time the server said so, for deployments where
//! another job creates it.
//!
//! While waiting it logs one line at most every `log_interval` (the first
//! at the first failure) naming the target and the last error; never the
//! password (`ConnectError` texts have it cut out).
//!
//! Cancellation: drop the future. An attempt in flight only owns a socket
//! (and a DNS query), which dropping closes; nothing is spawned before a
//! login succeeds, and the session of a successful one is closed before
//! this returns.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::WaitPolicy;
use super::connect::Connector;
use super::error::{ConnectError, ErrorKind};
use crate::exit;
use crate::settings::DatabaseSettings;
use crate::sourced::Source;

/// What `pg_stat_activity` shows for the wait's sessions.
pub const APPLICATION_NAME: &str = "pulp-entrypoint (waiting for PostgreSQL)";

const FIRST_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(1);
/// Even with the deadline (almost) reached, an attempt gets this long.
const MIN_ATTEMPT: Duration = Duration::from_secs(1);

/// Why PostgreSQL could not be reached. Each `Display` is one line naming
/// the problem and the fix; `exit_code()` maps it to its documented code.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// Retryable failures until the timeout.
    #[error(
        "PostgreSQL at {target} did not let user {user} into database {database} within {} ({attempts} attempts); last error: {}: check that the server runs and is reachable from here, or raise --postgres-timeout",
        crate::duration::display(whole_seconds(*.waited)),
        .last_error.reason()
    )]
    Timeout {
        target: String,
        database: String,
        user: String,
        waited: Duration,
        attempts: u32,
        last_error: ConnectError,
    },
    /// Wrong password, no pg_hba.conf entry or role, no CONNECT privilege.
    #[error("PostgreSQL at {target} refused the login of user {user}: {}: {fix}", .error.reason())]
    AuthRejected {
        target: String,
        user: String,
        error: ConnectError,
        fix: String,
    },
    /// The database did not appear within the grace period.
    #[error(
        "database {database} does not exist on PostgreSQL at {target} (3D000), still missing after {}: {fix}",
        crate::duration::display(*.grace)
    )]
    MissingDatabase {
        target: String,
        database: String,
        grace: Duration,
        error: ConnectError,
        fix: String,
    },
    /// TLS refused or a certificate rejected, or settings that cannot work.
    #[error("PostgreSQL at {target}: {}{fix}", .error.reason())]
    Permanent {
        target: String,
        error: ConnectError,
        /// Empty, or ": what to do" when the reason does not say it already.
        fix: String,
    },
}

impl WaitError {
    pub fn exit_code(&self) -> i32 {
        match self {
            WaitError::Timeout { .. } => exit::DATABASE_UNAVAILABLE,
            WaitError::AuthRejected { .. } => exit::DATABASE_AUTH,
            WaitError::MissingDatabase { .. } => exit::DATABASE_ERROR,
            WaitError::Permanent { error, .. } if error.kind() == ErrorKind::Settings => {
                exit::CONFIG
            }
            WaitError::Permanent { .. } => exit::DATABASE_ERROR,
        }
    }

    /// The last attempt's error (for every variant).
    pub fn connect_error(&self) -> &ConnectError {
        match self {
            WaitError::Timeout { last_error, .. } => last_error,
            WaitError::AuthRejected { error, .. }
            | WaitError::MissingDatabase { error, .. }
            | WaitError::Permanent { error, .. } => error,
        }
    }
}

/// Wait until a real login to the configured database succeeds.
pub async fn wait_for_postgres(
    db: &DatabaseSettings,
    policy: &WaitPolicy,
) -> Result<(), WaitError> {
    let started = Instant::now();
    let deadline = started + policy.timeout;
    let connector = match Connector::new(db) {
        Ok(connector) => connector,
        Err(error) => return Err(give_up(db, error)),
    };
    let target = connector.endpoint().to_string();
    let what = format!(
        "PostgreSQL at {target} (database {}, user {}, sslmode {})",
        db.name.value,
        db.user.value,
        db.sslmode.value.as_str()
    );
    let mut delay = FIRST_DELAY;
    let mut attempts: u32 = 0;
    let mut next_log = started;
    let mut missing_since: Option<Instant> = None;
    let mut warned_codes = HashSet::new();
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let limit = connector.attempt_timeout().min(remaining.max(MIN_ATTEMPT));
        let error = match connector.attempt(APPLICATION_NAME, limit).await {
            Ok(session) => {
                drop(session);
                info!(
                    "{what} accepted the login after {:.1}s (attempt {attempts})",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Err(error) => error,
        };
        let now = Instant::now();
        match error.kind() {
            ErrorKind::MissingDatabase => {
                let since = *missing_since.get_or_insert(now);
                if now.duration_since(since) >= policy.missing_database_grace || now >= deadline {
                    return Err(missing_database(db, error, policy.missing_database_grace));
                }
            }
            kind if !kind.is_retryable() => return Err(give_up(db, error)),
            ErrorKind::Unexpected => {
                let code = error.code().unwrap_or("?").to_owned();
                if warned_codes.insert(code) {
                    warn!(
                        "{what}: unexpected server error, retrying until the timeout: {}",
                        error.reason()
                    );
                }
            }
            _ => {}
        }
        if now >= deadline {
            return Err(WaitError::Timeout {
                target,
                database: db.name.value.clone(),
                user: db.user.value.clone(),
                waited: now.duration_since(started),
                attempts,
                last_error: error,
            });
        }
        if now >= next_log {
            info!(
                "waiting for {what}: {} (attempt {attempts}, {:.1}s so far)",
                error.reason(),
                now.duration_since(started).as_secs_f64()
            );
            next_log = now + policy.log_interval;
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
}

fn whole_seconds(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs_f64().round() as u64)
}

/// A refusal that will not pass: the variant and fix for its kind.
fn give_up(db: &DatabaseSettings, error: ConnectError) -> WaitError {
    let target = error.target().to_owned();
    match error.kind() {
        ErrorKind::AuthRejected => WaitError::AuthRejected {
            fix: auth_fix(db, &error),
            user: db.user.value.clone(),
            target,
            error,
        },
        ErrorKind::MissingDatabase => missing_database(db, error, Duration::ZERO),
        _ => WaitError::Permanent {
            fix: permanent_fix(db, &error),
            target,
            error,
        },
    }
}

fn missing_database(db: &DatabaseSettings, error: ConnectError, grace: Duration) -> WaitError {
    let (name, user) = (&db.name.value, &db.user.value);
    WaitError::MissingDatabase {
        target: error.target().to_owned(),
        database: name.clone(),
        grace,
        fix: format!(
            "create it (CREATE DATABASE \"{name}\" OWNER \"{user}\") or fix {}",
            setting("NAME", &db.name.source)
        ),
        error,
    }
}

fn auth_fix(db: &DatabaseSettings, error: &ConnectError) -> String {
    let (name, user) = (&db.name.value, &db.user.value);
    match (error.code(), &db.password) {
        (Some("28P01"), Some(password)) => {
            format!("check {}", setting("PASSWORD", &password.source))
        }
        (Some("28P01") | None, None) => {
            format!("set {}", setting("PASSWORD", &Source::Default))
        }
        (Some("28000"), _) => format!(
            "the server has no pg_hba.conf entry for this client, user and database, or no role {user}: \
             add the entry or create the role, or fix {}",
            setting("USER", &db.user.source)
        ),
        (Some("42501"), _) => format!(
            "GRANT CONNECT ON DATABASE \"{name}\" TO \"{user}\", or fix {}",
            setting("USER", &db.user.source)
        ),
        _ => format!(
            "check the authentication method pg_hba.conf sets for this client, and {}",
            setting("USER", &db.user.source)
        ),
    }
}

fn permanent_fix(db: &DatabaseSettings, error: &ConnectError) -> String {
    let sslmode = setting_value(
        "OPTIONS.sslmode",
        db.sslmode.value.as_str(),
        &db.sslmode.source,
    );
    match error.kind() {
        ErrorKind::Settings => String::new(),
        ErrorKind::Tls if error.reason().contains("does not offer TLS") => {
            format!(": enable ssl on the server, or lower {sslmode} to prefer or disable")
        }
        ErrorKind::Tls => format!(": check the server's certificate and sslrootcert, or {sslmode}"),
        _ => String::new(),
    }
}

/// `DATABASES.default.NAME (set by env PULP_DATABASES__default__NAME)`, or
/// both spellings when the value is pulpcore's default.
fn setting(key: &str, source: &Source) -> String {
    match source {
        Source::Default => format!("DATABASES.default.{key} / PULP_DATABASES__default__{key}"),
        source => format!("DATABASES.default.{key} (set by {source})"),
    }
}

fn setting_value(key: &str, value: &str, source: &Source) -> String {
    match source {
        Source::Default => format!("DATABASES.default.{key} (default {value})"),
        source => format!("DATABASES.default.{key} ({value}, set by {source})"),
    }
}
