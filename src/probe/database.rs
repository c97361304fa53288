//! The probe's own PostgreSQL login, made only when the answer depends on it:
//! the worker's heartbeat, or telling "the database is down" from any other
//! server error when the api or content app answers 5xx (pulpcore's status
//! endpoint answers 500, not `connected: false`, when PostgreSQL is down).

use crate::postgres::{Connected, Connector};
use crate::settings::DatabaseSettings;

use super::Deadline;
use super::error::ProbeError;

/// Shown in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "pulp-entrypoint probe";

/// Log in once, within what is left of the probe's time; a failure is
/// [`ProbeError::Database`] (exit 3).
pub async fn login(db: &DatabaseSettings, deadline: Deadline) -> Result<Connected, ProbeError> {
    let connector = Connector::new(db).map_err(|error| ProbeError::Database(error.to_string()))?;
    let limit = deadline.remaining().min(connector.attempt_timeout());
    connector
        .attempt(APPLICATION_NAME, limit)
        .await
        .map_err(|error| ProbeError::Database(error.to_string()))
}

/// Close the session properly (a Terminate message, not a dropped socket that
/// the server logs as "unexpected EOF" every probe period).
pub async fn close(connected: Connected, deadline: Deadline) {
    let Connected {
        client,
        mut notifications,
    } = connected;
    drop(client);
    // The connection task ends, dropping the sender, once the socket is closed.
    let _ = deadline
        .bound(String::new, async {
            while notifications.recv().await.is_some() {}
        })
        .await;
}

/// A server answered `status` (5xx) at `url`: when PostgreSQL cannot be
/// reached either, that is the reason (exit 3); otherwise the status is.
pub async fn explain_server_error(
    url: String,
    status: u16,
    db: &DatabaseSettings,
    deadline: Deadline,
) -> ProbeError {
    match login(db, deadline).await {
        Ok(connected) => {
            close(connected, deadline).await;
            ProbeError::Status { url, status }
        }
        Err(ProbeError::Database(reason)) => {
            ProbeError::Database(format!("{url} answered HTTP {status}, and {reason}"))
        }
        Err(other) => other,
    }
}
