//! The stop sequence: which signals follow the first termination signal, and when.
//!
//! A [`StopPolicy`] is a list of offsets from the moment the *first* TERM,
//! INT or QUIT arrived (that signal itself is forwarded at once like any
//! other). [`Schedule`] turns the policy into deadlines; it is pure, so the
//! supervisor only asks it for the next deadline and for the steps now due.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

/// One step of the stop sequence: send `signal` to the child's process group
/// `after` the first termination signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopStep {
    pub after: Duration,
    pub signal: Signal,
}

/// What to do after the first termination signal, besides forwarding it.
///
/// Steps may be given in any order; they run in order of `after` (steps
/// with equal offsets in the order given). An empty policy only forwards
/// signals and waits for the child, however long it takes, so a policy
/// should end with SIGKILL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopPolicy {
    pub steps: Vec<StopStep>,
}

impl StopPolicy {
    /// The usual policy: SIGKILL `grace` after the first termination signal.
    pub fn kill_after(grace: Duration) -> Self {
        StopPolicy {
            steps: vec![StopStep {
                after: grace,
                signal: Signal::SIGKILL,
            }],
        }
    }
}

/// The policy's steps as deadlines, counted from when stopping started.
#[derive(Debug)]
pub struct Schedule {
    started: Instant,
    steps: Vec<StopStep>,
    next: usize,
}

impl Schedule {
    pub fn new(started: Instant, policy: &StopPolicy) -> Self {
        let mut steps = policy.steps.clone();
        // Stable: equal offsets keep the order the caller gave.
        steps.sort_by_key(|step| step.after);
        Schedule {
            started,
            steps,
            next: 0,
        }
    }

    /// When the next step is due, or `None` when every step has been taken.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.steps
            .get(self.next)
            .map(|step| self.started + step.after)
    }

    /// The steps due at `now`, in order; each is returned only once.
    pub fn take_due(&mut self, now: Instant) -> Vec<StopStep> {
        let mut due = Vec::new();
        while let Some(step) = self.steps.get(self.next) {
            if self.started + step.after > now {
                break;
            }
            due.push(*step);
            self.next += 1;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(secs: u64, signal: Signal) -> StopStep {
        StopStep {
            after: Duration::from_secs(secs),
            signal,
        }
    }

    #[test]
    fn steps_come_due_in_order_of_their_offsets() {
        let start = Instant::now();
        let policy = StopPolicy {
            steps: vec![step(25, Signal::SIGKILL), step(10, Signal::SIGINT)],
        };
        let mut schedule = Schedule::new(start, &policy);
        assert_eq!(
            schedule.next_deadline(),
            Some(start + Duration::from_secs(10))
        );
        assert!(schedule.take_due(start + Duration::from_secs(9)).is_empty());
        assert_eq!(
            schedule.take_due(start + Duration::from_secs(10)),
            vec![step(10, Signal::SIGINT)]
        );
        // Taken once only.
        assert!(
            schedule
                .take_due(start + Duration::from_secs(11))
                .is_empty()
        );
        assert_eq!(
            schedule.next_deadline(),
            Some(start + Duration::from_secs(25))
        );
        assert_eq!(
            schedule.take_due(start + Duration::from_secs(60)),
            vec![step(25, Signal::SIGKILL)]
        );
        assert_eq!(schedule.next_deadline(), None);
    }

    #[test]
    fn a_late_wakeup_takes_every_overdue_step_in_order() {
        let start = Instant::now();
        let policy = StopPolicy {
            steps: vec![
                step(1, Signal::SIGINT),
                step(1, Signal::SIGUSR1),
                step(2, Signal::SIGKILL),
            ],
        };
        let mut schedule = Schedule::new(start, &policy);
        let due = schedule.take_due(start + Duration::from_secs(5));
        let signals: Vec<Signal> = due.iter().map(|step| step.signal).collect();
        assert_eq!(
            signals,
            vec![Signal::SIGINT, Signal::SIGUSR1, Signal::SIGKILL]
        );
    }

    #[test]
    fn an_empty_policy_has_no_deadline() {
        let schedule = Schedule::new(Instant::now(), &StopPolicy::default());
        assert_eq!(schedule.next_deadline(), None);
    }

    #[test]
    fn kill_after_is_a_single_kill_step() {
        assert_eq!(
            StopPolicy::kill_after(Duration::from_secs(25)).steps,
            vec![step(25, Signal::SIGKILL)]
        );
    }
}
