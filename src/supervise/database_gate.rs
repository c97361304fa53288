//! PostgreSQL must let us in before a Pulp role is started again.
//!
//! pulpcore's api, content app and workers exit when they cannot write
//! their heartbeat, so a database outage ends them all within seconds.
//! Restarted into the outage, each would fail again at once and use up its
//! `max_restarts`, and the container would stop over a database restart.
//! So a Pulp role due to start waits at this gate: one login, and when that
//! fails the start phase's wait (same timeout, same one-line errors) runs
//! in a task while the supervisor goes on handling signals and other
//! services. When PostgreSQL is back, the waiting services start, their
//! failures in a row forgotten: the outage was the cause, not them.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::warn;

use crate::postgres::{self, WaitError, WaitPolicy};
use crate::settings::DatabaseSettings;

/// How a check ended.
#[derive(Debug)]
pub enum Verdict {
    /// The first login passed.
    Open,
    /// PostgreSQL let us in again after this long.
    Reopened { after: Duration },
    /// It did not within the wait's timeout, or refused for good.
    Closed(WaitError),
}

pub struct DatabaseGate {
    database: DatabaseSettings,
    policy: WaitPolicy,
    check: Option<JoinHandle<Verdict>>,
}

impl DatabaseGate {
    pub fn new(database: DatabaseSettings, policy: WaitPolicy) -> DatabaseGate {
        DatabaseGate {
            database,
            policy,
            check: None,
        }
    }

    /// Start a check unless one is under way.
    pub fn check(&mut self) {
        if self.check.is_some() {
            return;
        }
        let database = self.database.clone();
        let policy = self.policy.clone();
        self.check = Some(tokio::spawn(async move {
            let error = match postgres::connect(&database, postgres::APPLICATION_NAME).await {
                Ok(session) => {
                    drop(session);
                    return Verdict::Open;
                }
                Err(error) => error,
            };
            warn!(
                "PostgreSQL does not let us in ({}): Pulp services wait for it before they start again",
                error.reason()
            );
            let started = Instant::now();
            match postgres::wait_for_postgres(&database, &policy).await {
                Ok(()) => Verdict::Reopened {
                    after: started.elapsed(),
                },
                Err(error) => Verdict::Closed(error),
            }
        }));
    }

    /// The verdict of the check under way; pending forever when there is none.
    pub async fn verdict(&mut self) -> Verdict {
        let Some(check) = self.check.as_mut() else {
            return std::future::pending().await;
        };
        let verdict = match check.await {
            Ok(verdict) => verdict,
            // Only a bug ends the task otherwise: start the services, and
            // their own backoff applies.
            Err(failure) => {
                warn!("the PostgreSQL check ended abnormally: {failure}");
                Verdict::Open
            }
        };
        self.check = None;
        verdict
    }

    /// Stop checking (shutdown).
    pub fn abandon(&mut self) {
        if let Some(check) = self.check.take() {
            check.abort();
        }
    }
}
