//! Whether a service that ended is started again, and after how long.
//!
//! Pure, so the backoff is tested without processes: the supervisor passes
//! how the service ended and how long it ran, and keeps the count of
//! failures in a row that [`decide`] updates.

use std::time::Duration;

use super::config::{Restart, RestartLimits};
use crate::pid1::ChildExit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this delay.
    Restart { after: Duration },
    /// Its restart policy says it is done (never, or on-failure after success).
    Done,
    /// It failed `max_restarts` times in a row: give up.
    GiveUp,
}

/// What to do with a service that ended with `exit` after running `ran_for`.
/// `in_a_row` counts the restarts since the service last ran for at least
/// `stable_after`: a run that long resets it, so a service that crashes once
/// a day restarts after the first delay every time.
pub fn decide(
    policy: Restart,
    exit: ChildExit,
    ran_for: Duration,
    in_a_row: &mut u32,
    limits: &RestartLimits,
) -> Decision {
    let success = exit == ChildExit::Exited { code: 0 };
    match policy {
        Restart::Never => return Decision::Done,
        Restart::OnFailure if success => return Decision::Done,
        _ => {}
    }
    if ran_for >= limits.stable_after {
        *in_a_row = 0;
    }
    if *in_a_row >= limits.max_restarts {
        return Decision::GiveUp;
    }
    *in_a_row += 1;
    let doublings = (*in_a_row - 1).min(31);
    let after = limits
        .first_delay
        .saturating_mul(1u32 << doublings)
        .min(limits.max_delay);
    Decision::Restart { after }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRASH: ChildExit = ChildExit::Exited { code: 1 };
    const SHORT: Duration = Duration::from_millis(100);

    fn limits() -> RestartLimits {
        RestartLimits {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            max_restarts: 4,
            stable_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap_then_the_service_fails() {
        let mut in_a_row = 0;
        let delays: Vec<Decision> = (0..5)
            .map(|_| decide(Restart::Always, CRASH, SHORT, &mut in_a_row, &limits()))
            .collect();
        let secs = |s| Decision::Restart {
            after: Duration::from_secs(s),
        };
        assert_eq!(
            delays,
            [secs(1), secs(2), secs(4), secs(5), Decision::GiveUp]
        );
    }

    #[test]
    fn a_long_run_resets_the_count() {
        let mut in_a_row = 3;
        let decision = decide(
            Restart::Always,
            CRASH,
            Duration::from_secs(61),
            &mut in_a_row,
            &limits(),
        );
        assert_eq!(
            decision,
            Decision::Restart {
                after: Duration::from_secs(1)
            }
        );
        assert_eq!(in_a_row, 1);
    }

    #[test]
    fn policies() {
        let ok = ChildExit::Exited { code: 0 };
        let killed = ChildExit::Killed {
            signal: 9,
            core_dumped: false,
        };
        let mut n = 0;
        assert_eq!(
            decide(Restart::Never, CRASH, SHORT, &mut n, &limits()),
            Decision::Done
        );
        assert_eq!(
            decide(Restart::OnFailure, ok, SHORT, &mut n, &limits()),
            Decision::Done
        );
        assert!(matches!(
            decide(Restart::OnFailure, killed, SHORT, &mut n, &limits()),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            decide(Restart::Always, ok, SHORT, &mut n, &limits()),
            Decision::Restart { .. }
        ));
    }
}
