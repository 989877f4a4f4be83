//! Pod status back to the API server: the `pods/status` subresource
//! (kubelet's status manager, pkg/kubelet/status/status_manager.go).
//!
//! A Pod object has two owners. Its `spec` is the user's (and the
//! scheduler's, which sets `spec.nodeName`); its `status` is the node's.
//! The split is enforced by subresources: writes to `/pods/NAME` ignore
//! `status`, and writes to `/pods/NAME/status` ignore everything else, so
//! the node cannot change what it was asked to run, and the user cannot
//! forge what the node reports. The Node authorizer lets a node write the
//! status of the pods bound to it only.
//!
//! This sink subscribes to the status manager, which says when a pod's
//! `v1` status really changed; each change becomes one merge patch of
//! `pods/status` carrying `metadata.uid`: a pod deleted and created again
//! under the same name has a new uid, and the API server refuses a patch
//! for the old one instead of writing one pod's status onto another.
//! Changes that arrive while a patch is in flight are folded (only the
//! newest status of a pod is sent), and failures are retried with
//! back-off. A static pod's status goes to its mirror pod
//! ([`super::mirror`]), and again to a new mirror pod when it is replaced.
//!
//! Every 10 s the sink also *reconciles*, as kubelet's status manager does
//! (`syncBatch` and `needsReconcile`): the status the API holds for each
//! pod (from the pod watch) is compared with the last status sent, and a
//! pod whose API status differs is sent again. That repairs a write that
//! was lost, or a status someone else overwrote. Only the node's own part
//! is compared: the fields the node writes, conditions of its own only (not
//! the scheduler's or a readiness gate's), container statuses in name
//! order; fields a newer API server fills in (`hostIPs`) do not count. The
//! same difference must be seen on two ticks in a row (the watch may lag a
//! patch), and each difference is answered once only, so a field the API
//! server spells differently can never make the node patch in a loop.
//!
//! When a pod whose deletion was asked for through the API has no
//! container left, the node finishes the deletion: it deletes the object
//! with a grace period of 0 and a uid precondition. Until then the object
//! stays, showing `Terminating`, as with kubelet.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;

use super::Backoff;
use crate::agent::sources::Source;
use crate::agent::status::StatusChange;
use crate::agent::Agent;

/// What became of one change.
enum Outcome {
    /// Sent (to the object of this uid), or nothing to send.
    Done(String),
    /// A static pod whose mirror pod does not exist yet: kept until it does.
    NoMirror,
}

/// Report status changes for as long as the agent runs.
pub async fn run(agent: Arc<Agent>) {
    let Some(node) = agent.node.as_ref() else {
        return;
    };
    let mut rx = agent.status.subscribe();
    // By uid: the newest change not yet sent.
    let mut pending: BTreeMap<String, StatusChange> = BTreeMap::new();
    // By uid: the last change sent, and the object (uid) it went to. A
    // static pod's status goes again when its mirror pod is replaced.
    let mut sent: BTreeMap<String, (StatusChange, String)> = BTreeMap::new();
    let mut backoff = Backoff::default();
    let mut reconcile = tokio::time::interval(RECONCILE_PERIOD);
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drift = Drift::default();
    loop {
        if pending.is_empty() {
            tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => { pending.insert(c.uid.clone(), c); }
                    None => return,
                },
                _ = reconcile.tick() => {
                    let api = node.shared.api_status.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    for uid in drift.check(&sent, &api) {
                        if let Some((c, _)) = sent.get(&uid) {
                            tracing::info!(
                                "status of pod {}/{} in the API differs from the node's: sending it again",
                                c.namespace, c.name
                            );
                            pending.insert(uid, c.clone());
                        }
                    }
                }
                _ = node.shared.sink_wake.notified() => {
                    for (uid, (c, to)) in &sent {
                        if c.source == Source::File
                            && node.shared.mirror(uid).is_some_and(|m| m != *to)
                        {
                            pending.entry(uid.clone()).or_insert_with(|| c.clone());
                        }
                    }
                }
            }
        }
        while let Ok(c) = rx.try_recv() {
            pending.insert(c.uid.clone(), c);
        }
        let mut failed = false;
        for (uid, c) in std::mem::take(&mut pending) {
            match deliver(&agent, &node.client, &c).await {
                Ok(Outcome::Done(to)) => {
                    if c.status.is_some() {
                        sent.insert(uid, (c, to));
                    } else {
                        sent.remove(&uid);
                    }
                }
                // Sent when its mirror pod appears (the wake above).
                Ok(Outcome::NoMirror) => {
                    sent.insert(uid, (c, String::new()));
                }
                Err(e) => {
                    tracing::warn!("report status of pod {}/{}: {e}", c.namespace, c.name);
                    failed = true;
                    // A newer change may already be waiting; it wins.
                    pending.entry(uid).or_insert(c);
                }
            }
        }
        if failed {
            backoff.wait().await;
        } else {
            backoff.reset();
        }
    }
}

/// How often the sink compares the API's statuses with its own (kubelet's
/// status manager: `syncPeriod`, 10 s).
const RECONCILE_PERIOD: Duration = Duration::from_secs(10);

/// A fingerprint of the node's part of a pod status, the same for the
/// status the node sent and the one the API holds when they agree: the
/// conditions the node owns (sorted by type), and the container statuses
/// sorted by name; timestamps compare at the API's one-second precision
/// because both are serialized. kubelet's `isPodStatusByKubeletEqual` and
/// `normalizeStatus` do the same.
pub fn fingerprint(status: &PodStatus) -> u64 {
    const NODE_OWNED: [&str; 5] = [
        "PodScheduled",
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    ];
    // Only the fields the node writes: a newer API server fills in others
    // (`hostIPs` from `hostIP`, since 1.29) that must not count as drift.
    let mut st = PodStatus {
        phase: status.phase.clone(),
        conditions: status.conditions.clone(),
        message: status.message.clone(),
        reason: status.reason.clone(),
        host_ip: status.host_ip.clone(),
        pod_ip: status.pod_ip.clone(),
        pod_ips: status.pod_ips.clone(),
        start_time: status.start_time.clone(),
        qos_class: status.qos_class.clone(),
        container_statuses: status.container_statuses.clone(),
        init_container_statuses: status.init_container_statuses.clone(),
        ephemeral_container_statuses: status.ephemeral_container_statuses.clone(),
        ..Default::default()
    };
    if let Some(conds) = st.conditions.as_mut() {
        conds.retain(|c| NODE_OWNED.contains(&c.type_.as_str()));
        conds.sort_by(|a, b| a.type_.cmp(&b.type_));
        // The scheduler's PodScheduled carries no times the node sets.
        for c in conds.iter_mut() {
            if c.type_ == "PodScheduled" {
                c.last_probe_time = None;
                c.last_transition_time = None;
            }
        }
    }
    for list in [
        st.container_statuses.as_mut(),
        st.init_container_statuses.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let text = serde_json::to_string(&st).unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// The reconcile's memory, by pod uid, as pairs of fingerprints (the
/// status sent, the API's): which pods differed at the last tick, and which
/// difference each pod was last sent again for.
#[derive(Default)]
struct Drift {
    suspect: HashMap<String, (u64, u64)>,
    answered: HashMap<String, (u64, u64)>,
}

impl Drift {
    /// The pods (uids) to send again: pods from the API whose API status
    /// differs from the last one sent, the same way on this tick and the one
    /// before (a watch that lags a patch shows a passing difference), and
    /// not already answered for that very difference.
    fn check(
        &mut self,
        sent: &BTreeMap<String, (StatusChange, String)>,
        api: &HashMap<String, u64>,
    ) -> Vec<String> {
        let mut now = HashMap::new();
        let mut resend = Vec::new();
        for (uid, (c, _)) in sent {
            let (Source::ApiServer, Some(status)) = (&c.source, &c.status) else {
                continue;
            };
            let Some(&theirs) = api.get(uid) else {
                continue;
            };
            let ours = fingerprint(status);
            if theirs == ours {
                self.answered.remove(uid);
                continue;
            }
            let pair = (ours, theirs);
            now.insert(uid.clone(), pair);
            if self.suspect.get(uid) == Some(&pair) && self.answered.get(uid) != Some(&pair) {
                self.answered.insert(uid.clone(), pair);
                resend.push(uid.clone());
            }
        }
        self.answered.retain(|uid, _| sent.contains_key(uid));
        self.suspect = now;
        resend
    }
}

/// The status as a merge patch: the uid as a precondition, and fields the
/// node may have set before and no longer does cleared explicitly (a merge
/// patch leaves out what it does not name).
pub fn status_patch(
    uid: &str,
    status: &k8s_openapi::api::core::v1::PodStatus,
) -> serde_json::Value {
    let mut st = serde_json::to_value(status).unwrap_or_default();
    if let Some(o) = st.as_object_mut() {
        for k in [
            "reason",
            "message",
            "podIP",
            "podIPs",
            "initContainerStatuses",
        ] {
            o.entry(k).or_insert(serde_json::Value::Null);
        }
    }
    serde_json::json!({"metadata": {"uid": uid}, "status": st})
}

async fn deliver(
    agent: &Agent,
    client: &kube::Client,
    c: &StatusChange,
) -> Result<Outcome, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &c.namespace);
    let Some(status) = &c.status else {
        if c.delete_object {
            delete_pod(client, &c.namespace, &c.name, &c.uid).await;
        }
        return Ok(Outcome::Done(String::new()));
    };
    let uid = match c.source {
        Source::ApiServer => c.uid.clone(),
        Source::File => match agent.node.as_ref().and_then(|n| n.shared.mirror(&c.uid)) {
            Some(m) => m,
            None => return Ok(Outcome::NoMirror),
        },
    };
    let patch = status_patch(&uid, status);
    match api
        .patch_status(&c.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(Outcome::Done(uid)),
        // Gone, or another pod of that name now: nothing to report to.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(Outcome::Done(uid)),
        Err(e) => Err(e),
    }
}

/// Delete pod `namespace/name` at once, if it is still the pod `uid`.
/// Failures are logged: the next list finds a pod still there and asks
/// again.
pub async fn delete_pod(client: &kube::Client, namespace: &str, name: &str, uid: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => tracing::info!("deleted pod {namespace}/{name}"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!("delete pod {namespace}/{name}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_names_the_uid_and_clears_what_is_gone() {
        let st = k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        };
        let p = status_patch("u-1", &st);
        assert_eq!(p["metadata"]["uid"], "u-1");
        assert_eq!(p["status"]["phase"], "Running");
        assert!(p["status"].as_object().unwrap()["message"].is_null());
    }

    fn status(phase: &str, conds: &[(&str, &str)]) -> PodStatus {
        use k8s_openapi::api::core::v1::PodCondition;
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(
                conds
                    .iter()
                    .map(|(t, s)| PodCondition {
                        type_: t.to_string(),
                        status: s.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn sent(uid: &str, st: PodStatus) -> BTreeMap<String, (StatusChange, String)> {
        let c = StatusChange {
            uid: uid.into(),
            namespace: "ns".into(),
            name: "p".into(),
            source: Source::ApiServer,
            status: Some(st),
            delete_object: false,
        };
        BTreeMap::from([(uid.to_string(), (c, uid.to_string()))])
    }

    #[test]
    fn the_fingerprint_sees_only_the_nodes_part() {
        let ours = status("Running", &[("Ready", "True"), ("Initialized", "True")]);
        // Another owner's condition and another order: the same.
        let theirs = status(
            "Running",
            &[
                ("Initialized", "True"),
                ("example.com/gate", "False"),
                ("Ready", "True"),
            ],
        );
        assert_eq!(fingerprint(&ours), fingerprint(&theirs));
        assert_ne!(
            fingerprint(&ours),
            fingerprint(&status(
                "Running",
                &[("Ready", "False"), ("Initialized", "True")]
            ))
        );
        assert_ne!(fingerprint(&ours), fingerprint(&status("Pending", &[])));
    }

    #[test]
    fn a_difference_seen_twice_is_sent_again_once_per_api_status() {
        let ours = status("Running", &[("Ready", "True")]);
        let sent = sent("u", ours.clone());
        let mut d = Drift::default();
        let api = |st: &PodStatus| HashMap::from([("u".to_string(), fingerprint(st))]);
        // Agreeing: nothing.
        assert!(d.check(&sent, &api(&ours)).is_empty());
        // Overwritten: first seen, then sent again.
        let other = status("Running", &[("Ready", "False")]);
        assert!(d.check(&sent, &api(&other)).is_empty());
        assert_eq!(d.check(&sent, &api(&other)), ["u"]);
        // The same API status again (the patch changed nothing there): not
        // answered a second time, however long it stays.
        assert!(d.check(&sent, &api(&other)).is_empty());
        assert!(d.check(&sent, &api(&other)).is_empty());
        // Repaired, then overwritten again: answered again.
        assert!(d.check(&sent, &api(&ours)).is_empty());
        assert!(d.check(&sent, &api(&other)).is_empty());
        assert_eq!(d.check(&sent, &api(&other)), ["u"]);
        // A pod the watch does not show is left alone.
        assert!(d.check(&sent, &HashMap::new()).is_empty());
    }

    #[test]
    fn a_difference_that_changes_between_ticks_waits() {
        let ours = status("Running", &[("Ready", "True")]);
        let sent = sent("u", ours);
        let mut d = Drift::default();
        let api = |st: &PodStatus| HashMap::from([("u".to_string(), fingerprint(st))]);
        // The API shows a different status on each tick (a watch still
        // catching up): nothing is sent until one difference holds.
        assert!(d.check(&sent, &api(&status("Pending", &[]))).is_empty());
        assert!(d
            .check(&sent, &api(&status("Running", &[("Ready", "False")])))
            .is_empty());
        assert_eq!(
            d.check(&sent, &api(&status("Running", &[("Ready", "False")]))),
            ["u"]
        );
    }

    #[test]
    fn fields_a_newer_api_server_fills_in_are_no_drift() {
        let ours = status("Running", &[("Ready", "True")]);
        let mut theirs = ours.clone();
        theirs.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: "10.0.0.1".into(),
        }]);
        assert_eq!(fingerprint(&ours), fingerprint(&theirs));
    }
}
