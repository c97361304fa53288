//! PostgreSQL: connecting as pulpcore would, and waiting until it lets us in.

use std::time::Duration;

use crate::settings::DatabaseSettings;

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

/// Why PostgreSQL could not be reached. `exit_code()` maps each kind to
/// its documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("placeholder")]
    NotImplemented,
}

/// Wait until a real login to the configured database succeeds.
pub async fn wait_for_postgres(
    db: &DatabaseSettings,
    policy: &WaitPolicy,
) -> Result<(), WaitError> {
    let _ = (db, policy);
    Err(WaitError::NotImplemented)
}

impl WaitError {
    pub fn exit_code(&self) -> i32 {
        crate::exit::DATABASE_UNAVAILABLE
    }
}
