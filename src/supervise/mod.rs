//! `pulp-entrypoint supervise`: the api, the content app and N workers (and
//! any `[[service]]` of the configuration) in one container, replacing the
//! s6-overlay setup of Pulp's all-in-one image.
//!
//! # Theory of operation
//!
//! 1. Before anything runs, [`Plan::load`] reads the `[supervise]` table and
//!    the `[[service]]` entries (`config`), and the caller builds each Pulp
//!    role's command line, so every mistake is reported at once (exit 78).
//! 2. When a Pulp role is among the services, the start phase runs once for
//!    all of them, as for a single role: wait for PostgreSQL, migrations,
//!    collectstatic, first-run setup.
//! 3. The [`supervisor`](Supervisor) starts every service, in an order where
//!    each comes after what it `depends_on`, each in a process group of its
//!    own, its output piped and re-emitted line by line with its name
//!    (`output`). PID 1 duties are the same as for one child: the entrypoint
//!    reaps every process that dies (orphans too) through `pid1`.
//! 4. A service that ends is started again after a backoff that doubles up
//!    to a cap (`restart`). After `max_restarts` quick failures in a row it is
//!    marked failed; when it is essential (the Pulp roles are, by default)
//!    the container then stops, exiting with that service's code. A Pulp
//!    role is started again only once PostgreSQL lets us in
//!    (`database_gate`): pulpcore ends its processes during a database
//!    outage, and the outage must not use up their restarts.
//! 5. SIGTERM, SIGINT or SIGQUIT stops everything: each service that no
//!    running service depends on gets its stop signal at once (servers and
//!    workers in parallel, the worker's TERM-then-INT sequence included),
//!    the others when their dependents have ended; at `stop_grace` after the
//!    request whatever is left is killed. A second request kills at once.
//! 6. SIGHUP re-reads the file and starts or retires workers to match the new
//!    count, leaving every other process alone. Any other signal is forwarded
//!    to every service.
//! 7. After each event the state of every service is written to the status
//!    file that `pulp-entrypoint status` prints (`status`).

mod config;
mod database_gate;
mod output;
mod restart;
mod status;
mod supervisor;

use std::path::Path;

pub use config::{ConfigError, Plan, Program};
pub use database_gate::DatabaseGate;
pub use supervisor::Supervisor;

/// `pulp-entrypoint status`: print what the running `supervise` reported.
pub fn show_status(status_file: &Path, json: bool) -> i32 {
    status::show(status_file, json)
}
