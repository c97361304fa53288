//! `probe ready|live content`, against pulpcore's content app.
//!
//! - ready: `HEAD {CONTENT_PATH_PREFIX}` (the distribution listing, which
//!   reads the database) answers below 400, as readyz.py required. A 5xx
//!   gets the same database check as the api (exit 3 when PostgreSQL is
//!   unreachable).
//! - live: `HEAD /` gets any HTTP answer at all. No route matches `/`, so
//!   aiohttp answers 404 without touching the database: an answer proves the
//!   server's event loop runs.

use super::Deadline;
use super::address::Target;
use super::database;
use super::error::ProbeError;
use super::http::{self, Method};
use crate::settings::DatabaseSettings;

/// A path no content-app route matches.
pub const LIVE_PATH: &str = "/";

pub async fn ready(
    target: &Target,
    path: &str,
    db: &DatabaseSettings,
    deadline: Deadline,
) -> Result<(), ProbeError> {
    let response = http::fetch(target, Method::Head, path, deadline).await?;
    match response.status {
        100..=399 => Ok(()),
        500..=599 => {
            Err(database::explain_server_error(response.url, response.status, db, deadline).await)
        }
        status => Err(ProbeError::Status {
            url: response.url,
            status,
        }),
    }
}

pub async fn live(target: &Target, path: &str, deadline: Deadline) -> Result<(), ProbeError> {
    http::fetch(target, Method::Head, path, deadline)
        .await
        .map(|_| ())
}
