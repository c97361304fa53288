//! PostgreSQL: connecting as pulpcore would, and waiting until it lets us in.
//!
//! - `endpoint`: Django's HOST read as libpq reads it (socket dir, address, name);
//! - `resolve`: host names to addresses in Rust (the static binary has no NSS);
//! - `tls`: what a TLS handshake accepts for each sslmode;
//! - `error`: one failed attempt, classified (retry, give up, grace);
//! - `connect`: one login, with a task forwarding LISTEN/NOTIFY notifications;
//! - `pooler`: whether a connection goes through a pooler such as PgBouncer;
//! - `wait`: the retry loop with backoff, timeout and one-line errors.

mod connect;
mod endpoint;
mod error;
mod pooler;
mod resolve;
mod tls;
mod wait;

use std::time::Duration;

pub use connect::{Connected, Connector, DEFAULT_ATTEMPT_TIMEOUT, connect};
pub use endpoint::{DEFAULT_SOCKET_DIR, Endpoint};
pub use error::{ConnectError, ErrorKind, describe_query_error, kind_of_sqlstate};
pub use pooler::{Pooler, Route, detect_route};
pub use wait::{APPLICATION_NAME, WaitError, wait_for_postgres};

/// How long and how to wait.
#[derive(Debug, Clone)]
pub struct WaitPolicy {
    /// Give up after this long in all.
    pub timeout: Duration,
    /// Keep retrying "database does not exist" (3D000) this long, for
    /// deployments where another job creates the database.
    pub missing_database_grace: Duration,
    /// Log what we are waiting for at most this often.
    pub log_interval: Duration,
}
