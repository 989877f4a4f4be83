//! `activeDeadlineSeconds`: how long a pod may be active on the node
//! (kubelet's pkg/kubelet/active_deadline.go).
//!
//! Counted from the pod's `startTime` (when the node began to run it).
//! Past it, kubelet fails the whole pod: every container is killed, the
//! phase becomes `Failed` with the reason `DeadlineExceeded` and the
//! message "Pod was active on the node longer than the specified
//! deadline", and nothing restarts. Jobs use it as a time limit.

use std::sync::Arc;
use std::time::Duration;

use super::super::events::Kind as EventKind;
use super::super::reasons::PodFailureReason;
use super::super::state::{PodFailure, PodRecord};
use super::super::Agent;
use super::{grace_period, stop, worker, Local};

/// kubelet's message.
pub const MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// Where the pod stands with its deadline.
pub enum Deadline {
    /// None, or not reached: look again after this long, if set.
    Ahead(Option<Duration>),
    /// Reached: the pod was failed; the pass ends with this wake-up.
    Exceeded(Option<Duration>),
}

/// How long is left, if the pod has a deadline and a start time.
pub fn left(rec: &PodRecord, now: jiff::Timestamp) -> Option<Duration> {
    let secs = rec.pod.as_ref()?.spec.as_ref()?.active_deadline_seconds?;
    let start = rec.start_time?;
    let end = start.as_millisecond() + secs.max(0) * 1000;
    Some(Duration::from_millis(
        (end - now.as_millisecond()).max(0) as u64
    ))
}

/// Check the pod's deadline; past it, kill everything and fail the pod.
pub async fn check(agent: &Arc<Agent>, uid: &str, local: &mut Local) -> Deadline {
    let Some(rec) = agent.status.record(uid) else {
        return Deadline::Ahead(None);
    };
    match left(&rec, jiff::Timestamp::now()) {
        None => return Deadline::Ahead(None),
        Some(d) if !d.is_zero() => return Deadline::Ahead(Some(d)),
        Some(_) => {}
    }
    agent.event(
        uid,
        EventKind::Normal,
        PodFailureReason::DeadlineExceeded.as_str(),
        MESSAGE.into(),
        None,
    );
    agent.status.update(uid, |r| {
        r.failure = Some(PodFailure {
            reason: PodFailureReason::DeadlineExceeded,
            message: MESSAGE.into(),
        });
    });
    let grace = grace_period(&rec);
    for c in rec.init.iter().chain(&rec.containers) {
        if let Some(inst) = &c.current {
            stop::stop_probes(local, &inst.id);
            let hook = stop::pre_stop_of(agent, &rec, inst);
            stop::stop_instance(agent, inst, grace, hook).await;
        }
    }
    Deadline::Exceeded(worker::finish_pod(agent, uid, local).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::sources::{DesiredPod, Source};

    #[test]
    fn the_deadline_counts_from_the_start_time() {
        let mut r = DesiredPod {
            uid: "u".into(),
            namespace: "d".into(),
            name: "p".into(),
            source: Source::File,
            file: Default::default(),
            pod: Ok(serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p"},
                "spec": {"activeDeadlineSeconds": 30, "containers": [{"name": "c"}]}
            }))
            .unwrap()),
            spec_hash: "h".into(),
            deleting: None,
            rejected: None,
        }
        .into_record();
        let now = jiff::Timestamp::from_second(1000).unwrap();
        assert_eq!(left(&r, now), None, "not started");
        r.start_time = Some(jiff::Timestamp::from_second(990).unwrap());
        assert_eq!(left(&r, now), Some(Duration::from_secs(20)));
        r.start_time = Some(jiff::Timestamp::from_second(900).unwrap());
        assert_eq!(left(&r, now), Some(Duration::ZERO));
    }
}
