//! `probe ready|live api`, against pulpcore's REST API.
//!
//! - ready: `GET {API_ROOT}api/v3/status/` answers 2xx with
//!   `database_connection.connected` true (else exit 3) and, when
//!   `CACHE_ENABLED` (the only case pulpcore checks Redis), with
//!   `redis_connection.connected` true (else exit 4). pulpcore answers 500 when
//!   PostgreSQL is down: then the probe tries PostgreSQL itself to tell that
//!   case (exit 3) from any other server error (exit 1).
//! - live: `GET {API_ROOT}api/v3/livez/` answers 200; pulpcore does not touch
//!   the database there, so an outage does not get the api restarted.

use serde::Deserialize;

use super::Deadline;
use super::address::Target;
use super::database;
use super::error::ProbeError;
use super::http::{self, Method};
use crate::settings::DatabaseSettings;

/// The part of pulpcore's status the probe reads.
#[derive(Debug, Deserialize)]
struct Status {
    database_connection: Connection,
    redis_connection: Option<Connection>,
}

#[derive(Debug, Deserialize)]
struct Connection {
    connected: bool,
}

pub async fn ready(
    target: &Target,
    path: &str,
    redis_expected: bool,
    db: &DatabaseSettings,
    deadline: Deadline,
) -> Result<(), ProbeError> {
    let response = http::fetch(target, Method::Get, path, deadline).await?;
    match response.status {
        200..=299 => {}
        500..=599 => {
            return Err(database::explain_server_error(
                response.url,
                response.status,
                db,
                deadline,
            )
            .await);
        }
        status => {
            return Err(ProbeError::Status {
                url: response.url,
                status,
            });
        }
    }
    judge(&response.body, redis_expected, response.url)
}

pub async fn live(target: &Target, path: &str, deadline: Deadline) -> Result<(), ProbeError> {
    let response = http::fetch(target, Method::Get, path, deadline).await?;
    match response.status {
        200 => Ok(()),
        status => Err(ProbeError::Status {
            url: response.url,
            status,
        }),
    }
}

/// readyz.py's checks on the status body: the database first (3), then Redis (4).
fn judge(body: &[u8], redis_expected: bool, url: String) -> Result<(), ProbeError> {
    let status: Status = serde_json::from_slice(body).map_err(|error| ProbeError::BadAnswer {
        url: url.clone(),
        reason: format!("not pulpcore's status JSON ({error})"),
    })?;
    if !status.database_connection.connected {
        return Err(ProbeError::Database(format!(
            "{url} reports database_connection.connected false"
        )));
    }
    let redis_connected = status.redis_connection.is_some_and(|redis| redis.connected);
    if redis_expected && !redis_connected {
        return Err(ProbeError::Redis { url });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:24817/pulp/api/v3/status/";

    fn judged(body: &str, redis_expected: bool) -> Result<(), ProbeError> {
        judge(body.as_bytes(), redis_expected, URL.to_string())
    }

    #[test]
    fn readyz_exit_codes() {
        let up = r#"{"database_connection":{"connected":true},"redis_connection":{"connected":false},"online_workers":[]}"#;
        assert!(judged(up, false).is_ok());
        assert_eq!(judged(up, true).unwrap_err().exit_code(), 4);
        let db_down =
            r#"{"database_connection":{"connected":false},"redis_connection":{"connected":false}}"#;
        assert_eq!(judged(db_down, true).unwrap_err().exit_code(), 3);
        let all_up =
            r#"{"database_connection":{"connected":true},"redis_connection":{"connected":true}}"#;
        assert!(judged(all_up, true).is_ok());
    }

    #[test]
    fn not_a_status_is_named() {
        let error = judged("<html>Server Error</html>", false).unwrap_err();
        assert_eq!(error.exit_code(), 1);
        assert!(
            error.to_string().contains("not pulpcore's status JSON"),
            "{error}"
        );
    }
}
