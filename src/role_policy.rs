//! How a Pulp role is stopped: the stop sequence after SIGTERM, and the task
//! grace interval a worker is given so that it fits in that sequence.

use nix::sys::signal::Signal;

use crate::options::Options;
use crate::pid1::{StopPolicy, StopStep};
use crate::roles::Role;
use crate::settings::PulpSettings;

/// pulpcore-worker aborts its task `TASK_GRACE_INTERVAL` (600 s by default)
/// after SIGINT. Unless the deployment chose a value, make it short enough for
/// the abort to happen before the stop sequence's SIGKILL, with 2 s to spare.
pub fn task_grace_interval(settings: &PulpSettings, options: &Options) -> Option<(String, String)> {
    if settings.task_grace_interval.is_some() {
        return None;
    }
    let left = options
        .stop_grace
        .value
        .checked_sub(options.worker_abort_after.value)?
        .as_secs();
    Some((
        "PULP_TASK_GRACE_INTERVAL".into(),
        left.saturating_sub(2).max(1).to_string(),
    ))
}

/// The stop sequence after the first SIGTERM (which is forwarded at once).
/// The worker gets SIGINT before the end so pulpcore aborts its task and
/// marks it failed itself, instead of dying mid-task on SIGKILL.
pub fn stop_policy(role: Role, options: &Options) -> StopPolicy {
    let kill = StopStep {
        after: options.stop_grace.value,
        signal: Signal::SIGKILL,
    };
    let steps = match role {
        Role::Worker if options.worker_abort_after.value < options.stop_grace.value => vec![
            StopStep {
                after: options.worker_abort_after.value,
                signal: Signal::SIGINT,
            },
            kill,
        ],
        _ => vec![kill],
    };
    StopPolicy { steps }
}
