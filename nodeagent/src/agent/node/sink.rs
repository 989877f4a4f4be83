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
//! When a pod whose deletion was asked for through the API has no
//! container left, the node finishes the deletion: it deletes the object
//! with a grace period of 0 and a uid precondition. Until then the object
//! stays, showing `Terminating`, as with kubelet.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
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
    loop {
        if pending.is_empty() {
            tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => { pending.insert(c.uid.clone(), c); }
                    None => return,
                },
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
}
