//! `probe ready|live worker`.
//!
//! - live: every pulpcore-worker process of this container is alive (not a
//!   zombie, not stopped by a signal), and there is at least one. Local only:
//!   a database outage must not make Kubernetes restart healthy workers.
//! - ready: every local worker has a fresh heartbeat in the database (see
//!   `heartbeat`), read with one login and one query.

use std::path::Path;

use super::Deadline;
use super::database;
use super::error::ProbeError;
use super::heartbeat::{self, Heartbeat};
use super::process::{self, WorkerProcess};
use crate::settings::DatabaseSettings;

pub fn live(proc_root: &Path) -> Result<(), ProbeError> {
    for worker in local_workers(proc_root)? {
        if let Some(state) = worker.not_alive() {
            return Err(ProbeError::WorkerNotAlive {
                pid: worker.pid,
                state: state.to_string(),
            });
        }
    }
    Ok(())
}

pub async fn ready(
    db: &DatabaseSettings,
    default_template: &str,
    proc_root: &Path,
    deadline: Deadline,
) -> Result<(), ProbeError> {
    // The database first: when it is down, that is the reason to give (3),
    // even if pulpcore-worker has already exited because it could not beat.
    let connected = database::login(db, deadline).await?;
    let checked = async {
        let (workers, patterns) = local_name_patterns(proc_root, default_template)?;
        let beats = deadline
            .bound(
                || "reading the worker heartbeats".to_string(),
                heartbeat::read(&connected.client, &patterns),
            )
            .await?
            .map_err(ProbeError::Query)?;
        judge(&workers, &patterns, &beats)
    }
    .await;
    database::close(connected, deadline).await;
    checked
}

/// The local workers, each with the pattern its heartbeat's name matches.
fn local_name_patterns(
    proc_root: &Path,
    default_template: &str,
) -> Result<(Vec<WorkerProcess>, Vec<String>), ProbeError> {
    let workers = local_workers(proc_root)?;
    let hostname = nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .map_err(|error| ProbeError::Processes(format!("gethostname: {error}")))?;
    // A worker started without --name-template uses pulpcore's WORKER_NAME_TEMPLATE.
    let patterns = workers
        .iter()
        .map(|worker| {
            let template = worker.name_template.as_deref().unwrap_or(default_template);
            heartbeat::name_pattern(template, worker.own_pid, &hostname)
        })
        .collect();
    Ok((workers, patterns))
}

/// Every worker must have a fresh heartbeat; the first that does not is the reason.
fn judge(
    workers: &[WorkerProcess],
    patterns: &[String],
    beats: &[Heartbeat],
) -> Result<(), ProbeError> {
    for ((worker, pattern), beat) in workers.iter().zip(patterns).zip(beats) {
        if !beat.registered {
            return Err(ProbeError::NoHeartbeat {
                pid: worker.pid,
                pattern: pattern.clone(),
            });
        }
        if !beat.fresh {
            return Err(ProbeError::StaleHeartbeat {
                pid: worker.pid,
                age: beat.age,
                ttl: beat.ttl,
            });
        }
    }
    Ok(())
}

fn local_workers(proc_root: &Path) -> Result<Vec<WorkerProcess>, ProbeError> {
    let workers =
        process::workers(proc_root).map_err(|error| ProbeError::Processes(error.to_string()))?;
    if workers.is_empty() {
        return Err(ProbeError::NoWorker);
    }
    Ok(workers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(pid: u32) -> WorkerProcess {
        WorkerProcess {
            pid,
            own_pid: pid,
            state: 'S',
            name_template: None,
        }
    }

    fn beat(registered: bool, fresh: bool) -> Heartbeat {
        Heartbeat {
            registered,
            fresh,
            age: 45.0,
            ttl: 30.0,
        }
    }

    #[test]
    fn every_worker_needs_a_fresh_heartbeat() {
        let workers = [worker(7), worker(9)];
        let patterns = ["7@h".to_string(), "9@h".to_string()];
        assert!(judge(&workers, &patterns, &[beat(true, true), beat(true, true)]).is_ok());
        let stale = judge(&workers, &patterns, &[beat(true, true), beat(true, false)]).unwrap_err();
        assert_eq!(
            stale.to_string(),
            "pulpcore-worker pid 9: last heartbeat 45s ago, older than its TTL of 30s"
        );
        let missing = judge(&workers, &patterns, &[beat(false, false), beat(true, true)]);
        assert!(matches!(
            missing,
            Err(ProbeError::NoHeartbeat { pid: 7, ref pattern }) if pattern == "7@h"
        ));
    }

    #[test]
    fn no_worker_process_is_not_alive() {
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(live(empty.path()), Err(ProbeError::NoWorker)));
    }
}
