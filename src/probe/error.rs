//! Why a probe failed, and the exit code each reason gives.

use std::time::Duration;

use super::{NO_DATABASE, NO_REDIS, NOT_READY};
use crate::duration;

/// One failed probe. `Display` is the one-line reason printed on stderr.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probe's own arguments are wrong.
    #[error("{0} (see pulp-entrypoint probe --help)")]
    Usage(String),
    /// Nothing accepted a connection.
    #[error("nothing answers on {target}: {reason}")]
    NoAnswer { target: String, reason: String },
    /// The probe ran out of time (`--timeout`).
    #[error("no answer within {} while {doing}", duration::display(*.limit))]
    Timeout { limit: Duration, doing: String },
    /// The server answered with a status that means "not ready".
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    /// The server answered something that is not the expected HTTP or JSON.
    #[error("{url} gave an answer the probe cannot read: {reason}")]
    BadAnswer { url: String, reason: String },
    /// PostgreSQL cannot be reached or refuses the login (readyz.py's 3).
    #[error("database not connected: {0}")]
    Database(String),
    /// CACHE_ENABLED, yet pulpcore cannot reach Redis (readyz.py's 4).
    #[error(
        "Redis not connected: {url} reports redis_connection.connected false, and CACHE_ENABLED is true"
    )]
    Redis { url: String },
    /// `probe ... worker` found no worker process in this container.
    #[error("no pulpcore-worker process runs here")]
    NoWorker,
    /// A worker process exists but is a zombie or stopped by a signal.
    #[error("pulpcore-worker pid {pid} is {state}")]
    WorkerNotAlive { pid: u32, state: String },
    /// A worker process has no row in the status table (not registered yet, or removed).
    #[error(
        "pulpcore-worker pid {pid} has no heartbeat in the database (no core_appstatus row named like {pattern})"
    )]
    NoHeartbeat { pid: u32, pattern: String },
    /// A worker's newest heartbeat is older than its TTL.
    #[error(
        "pulpcore-worker pid {pid}: last heartbeat {age:.0}s ago, older than its TTL of {ttl:.0}s"
    )]
    StaleHeartbeat { pid: u32, age: f64, ttl: f64 },
    /// Logged in, but the heartbeat query failed (e.g. the database is not migrated).
    #[error("reading the worker heartbeats failed: {0}")]
    Query(String),
    /// /proc could not be read.
    #[error("cannot list the processes in /proc: {0}")]
    Processes(String),
}

impl ProbeError {
    /// The exit code (see the module documentation of `probe`).
    pub fn exit_code(&self) -> i32 {
        match self {
            ProbeError::Usage(_) => crate::exit::USAGE,
            ProbeError::Database(_) => NO_DATABASE,
            ProbeError::Redis { .. } => NO_REDIS,
            ProbeError::NoAnswer { .. }
            | ProbeError::Timeout { .. }
            | ProbeError::Status { .. }
            | ProbeError::BadAnswer { .. }
            | ProbeError::NoWorker
            | ProbeError::WorkerNotAlive { .. }
            | ProbeError::NoHeartbeat { .. }
            | ProbeError::StaleHeartbeat { .. }
            | ProbeError::Query(_)
            | ProbeError::Processes(_) => NOT_READY,
        }
    }
}
