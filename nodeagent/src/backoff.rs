//! kubelet's restart back-off (CrashLoopBackOff and ImagePullBackOff).
//!
//! kubelet keeps one back-off entry per container. When a container has
//! exited and should restart, it is held back while less than the current
//! delay has passed since it finished; when it restarts, the delay doubles
//! (10 s, 20 s, 40 s ... capped at 300 s). The first restart after a clean
//! history is immediate. An entry not touched for twice the cap (10
//! minutes) starts again from the initial delay, which is what "reset after
//! 10 minutes of running" means in the Kubernetes docs.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A back-off's delays: the first one, and the cap it doubles up to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// The first delay (10 s).
    pub initial: Duration,
    /// The longest delay (300 s).
    pub max: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

/// One container's back-off entry (kubelet keeps one per container),
/// saved in its record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    /// The current delay; zero when there is no entry.
    pub delay_ms: u64,
    /// When the delay was last moved on (the last restart).
    pub last_update: Option<Timestamp>,
}

impl Backoff {
    /// The container ran for more than twice the cap since the last restart.
    fn expired(&self, p: &Policy, finished: Timestamp) -> bool {
        self.last_update
            .is_none_or(|t| dur(finished, t) > p.max * 2)
    }

    /// When a container that finished at `finished` may restart: `None` now,
    /// or the time to wait for.
    pub fn hold_until(&self, p: &Policy, finished: Timestamp, now: Timestamp) -> Option<Timestamp> {
        if self.delay_ms == 0 || self.expired(p, finished) {
            return None;
        }
        let until = finished + Duration::from_millis(self.delay_ms);
        (now < until).then_some(until)
    }

    /// Record a restart, now, of a container that finished at `finished`
    /// (kubelet's `backOff.Next`).
    pub fn next(&mut self, p: &Policy, finished: Timestamp, now: Timestamp) {
        let d = if self.delay_ms == 0 || self.expired(p, finished) {
            p.initial
        } else {
            (Duration::from_millis(self.delay_ms) * 2).min(p.max)
        };
        self.delay_ms = d.as_millis() as u64;
        self.last_update = Some(now);
    }

    /// The current delay.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }
}

fn dur(a: Timestamp, b: Timestamp) -> Duration {
    let ms = a.as_millisecond() - b.as_millisecond();
    Duration::from_millis(ms.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn doubles_caps_and_resets() {
        let p = Policy::default();
        let mut b = Backoff::default();
        // First exit: restart at once.
        assert_eq!(b.hold_until(&p, at(0), at(0)), None);
        b.next(&p, at(0), at(0));
        assert_eq!(b.delay(), Duration::from_secs(10));
        // Second exit at t=1: held until 11.
        assert_eq!(b.hold_until(&p, at(1), at(2)), Some(at(11)));
        assert_eq!(b.hold_until(&p, at(1), at(11)), None);
        let mut delays = vec![];
        for i in 0..8 {
            b.next(&p, at(12 + i), at(12 + i));
            delays.push(b.delay().as_secs());
        }
        assert_eq!(delays, [20, 40, 80, 160, 300, 300, 300, 300]);
        // Ran for more than 10 minutes since the last restart: from the
        // start again.
        assert_eq!(b.hold_until(&p, at(700), at(701)), None);
        b.next(&p, at(700), at(701));
        assert_eq!(b.delay(), Duration::from_secs(10));
    }
}
