//! The node's heartbeat: a Lease renewed every 10 s
//! (kubelet's pkg/kubelet/nodelease, and "Node heartbeats" in the
//! Kubernetes docs).
//!
//! Writing the whole Node status every few seconds is expensive for the
//! API server and etcd (a Node object carries its image list). Since
//! Kubernetes 1.14 a node proves it is alive with a much smaller object: a
//! `coordination.k8s.io/v1` Lease named after the node in the
//! `kube-node-lease` namespace, whose `spec.renewTime` it moves forward
//! every 10 s. `spec.leaseDurationSeconds` (40) says how long the promise
//! holds. The controller-manager's node lifecycle controller watches the
//! leases: one not renewed within its grace period makes the node's Ready
//! condition `Unknown` (NotReady), taints the node, and eventually evicts
//! its pods.
//!
//! A renewal is one request: an update of the lease last seen, whose
//! `resourceVersion` doubles as an optimistic lock. Only when that fails
//! (someone else wrote it, or the API server was away) is the lease read
//! again, or created. The Lease is owned by the Node (an owner reference),
//! so deleting the Node deletes it too.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::Api;

use super::Backoff;
use crate::agent::Agent;

/// The namespace of node leases.
pub const NAMESPACE: &str = "kube-node-lease";
/// How long one renewal holds (kubelet's `nodeLeaseDurationSeconds`).
pub const DURATION_SECONDS: i32 = 40;
/// How often it is renewed: a quarter of the duration, as kubelet does.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(10);

/// The lease as this node wants it now.
fn desired(name: &str, node_uid: Option<&str>, base: Option<Lease>) -> Lease {
    let mut lease = base.unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(NAMESPACE.to_string()),
            ..Default::default()
        },
        spec: None,
    });
    if let Some(uid) = node_uid {
        if lease
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|o| o.is_empty())
        {
            lease.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: name.to_string(),
                uid: uid.to_string(),
                ..Default::default()
            }]);
        }
    }
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(name.to_string());
    spec.lease_duration_seconds = Some(DURATION_SECONDS);
    spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
    lease
}

/// Renew the lease for as long as the agent runs.
pub async fn run(agent: Arc<Agent>) {
    let Some(node) = agent.node.as_ref() else {
        return;
    };
    let name = agent.cfg.node_name.clone();
    // A client of its own, as kubelet's heartbeat client is: the lease's
    // requests never wait behind, or on a connection of, the engine's.
    let own = node
        .fresh_client()
        .await
        .unwrap_or_else(|| node.client.clone());
    let mut leases: Api<Lease> = Api::namespaced(own, NAMESPACE);
    let mut last: Option<Lease> = None;
    let mut backoff = Backoff::default();
    // The lease is owned by the Node: wait until registration gives its uid.
    while node.shared.node_uid.get().is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    loop {
        let uid = node.shared.node_uid.get().map(String::as_str);
        let attempt = async {
            match last.take() {
                // The usual case: one update of the lease we wrote last.
                Some(l) => {
                    leases
                        .replace(&name, &PostParams::default(), &desired(&name, uid, Some(l)))
                        .await
                }
                // First time, or after a failure: read it (or create it).
                None => match leases.get_opt(&name).await {
                    Ok(Some(l)) => {
                        leases
                            .replace(&name, &PostParams::default(), &desired(&name, uid, Some(l)))
                            .await
                    }
                    Ok(None) => {
                        leases
                            .create(&PostParams::default(), &desired(&name, uid, None))
                            .await
                    }
                    Err(e) => Err(e),
                },
            }
        };
        // kubelet's heartbeat client gives up on a request after 10 s: a
        // connection that stopped answering must not stop the heartbeat.
        // Dropping the request drops its connection; the next attempt
        // reads the lease afresh on a new one.
        match tokio::time::timeout(super::HEARTBEAT_TIMEOUT, attempt).await {
            Ok(Ok(l)) => {
                last = Some(l);
                backoff.reset();
                tokio::time::sleep(RENEW_INTERVAL).await;
            }
            Ok(Err(e)) => {
                tracing::warn!("renew lease {NAMESPACE}/{name}: {e}");
                backoff.wait().await;
            }
            Err(_) => {
                tracing::warn!(
                    "renew lease {NAMESPACE}/{name}: no answer within {:?}; retrying on new connections",
                    super::HEARTBEAT_TIMEOUT
                );
                if let Some(c) = node.fresh_client().await {
                    leases = Api::namespaced(c, NAMESPACE);
                }
                backoff.wait().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_moves_the_time_and_keeps_the_owner() {
        let first = desired("n1", None, None);
        let spec = first.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert!(first.metadata.owner_references.is_none());
        let t1 = spec.renew_time.clone().unwrap().0;
        std::thread::sleep(Duration::from_millis(2));
        let second = desired("n1", Some("uid-1"), Some(first));
        assert!(second.spec.as_ref().unwrap().renew_time.clone().unwrap().0 > t1);
        let owner = &second.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Node", "uid-1"));
        assert_eq!(second.metadata.namespace.as_deref(), Some(NAMESPACE));
    }
}
