//! Mirror pods: static pods made visible in the API
//! (kubelet's pkg/kubelet/pod/mirror_client.go).
//!
//! A static pod comes from a file on the node, not from the API server,
//! so the cluster does not know it exists. kubelet therefore creates a
//! *mirror pod* for each: a Pod object with the same namespace, name and
//! spec, bound to the node, marked with the annotation
//! `kubernetes.io/config.mirror` (holding the static pod's hash) and owned
//! by the Node. `kubectl get pods -A` then lists it, and the node reports
//! the static pod's status onto it ([`super::sink`]). The mirror is only a
//! picture: deleting it does not stop the static pod (the node makes it
//! again), and changing it changes nothing. The NodeRestriction admission
//! plugin lets a node create pods only of this kind, bound to itself,
//! owned by its Node, and referring to no secret, config map or service
//! account.
//!
//! The task keeps one mirror pod per static pod, with the static pod's
//! current hash: a missing one is created, one with an old hash is
//! replaced, and one whose static pod is gone is deleted. It learns which
//! mirror pods exist from the pod watch of
//! [`crate::agent::sources::apiserver`], so it costs no reads of its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::Api;

use crate::agent::sources::Source;
use crate::agent::state::PodRecord;
use crate::agent::Agent;

/// The annotation that marks a mirror pod (kubelet's `ConfigMirrorAnnotationKey`).
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// A mirror pod as the watch saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// The mirror pod's uid.
    pub uid: String,
    /// Its `kubernetes.io/config.mirror` value: the static pod's hash.
    pub hash: String,
    /// Its deletion has begun (`deletionTimestamp` is set).
    pub deleting: bool,
}

impl Seen {
    /// The mirror pod `pod` is, if it is one.
    pub fn of(pod: &Pod) -> Option<((String, String), Seen)> {
        let m = &pod.metadata;
        let hash = m.annotations.as_ref()?.get(MIRROR_ANNOTATION)?.clone();
        Some((
            (m.namespace.clone()?, m.name.clone()?),
            Seen {
                uid: m.uid.clone()?,
                hash,
                deleting: m.deletion_timestamp.is_some(),
            },
        ))
    }
}

/// The mirror pod of static pod `rec`, owned by Node `node` (`node_uid`).
pub fn mirror_pod(rec: &PodRecord, node: &str, node_uid: &str) -> Option<Pod> {
    let mut pod = rec.pod.clone()?;
    let mut annotations = pod.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(MIRROR_ANNOTATION.into(), rec.spec_hash.clone());
    annotations.insert("kubernetes.io/config.hash".into(), rec.spec_hash.clone());
    annotations.insert("kubernetes.io/config.source".into(), "file".into());
    pod.metadata = ObjectMeta {
        name: Some(rec.name.clone()),
        namespace: Some(rec.namespace.clone()),
        labels: pod.metadata.labels.clone(),
        annotations: Some(annotations),
        owner_references: Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: node.to_string(),
            uid: node_uid.to_string(),
            controller: Some(true),
            block_owner_deletion: None,
        }]),
        ..Default::default()
    };
    if let Some(s) = pod.spec.as_mut() {
        s.node_name = Some(node.to_string());
    }
    pod.status = None;
    Some(pod)
}

/// What to do about mirror pods: create these static pods' mirrors, delete
/// these mirrors (namespace, name, uid).
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Uids of the static pods whose mirror pod is to be created.
    pub create: Vec<String>,
    /// The mirror pods to delete, as (namespace, name, uid).
    pub delete: Vec<(String, String, String)>,
}

/// Compare the static pods with the mirror pods the API has. A mirror
/// whose deletion began (someone deleted it) is deleted at once, as kubelet
/// does, and made again once it is gone; so is one of an old hash. One
/// without a static pod goes.
pub fn plan(statics: &[PodRecord], seen: &HashMap<(String, String), Seen>) -> Plan {
    let mut plan = Plan::default();
    let mut wanted: BTreeMap<(String, String), &PodRecord> = BTreeMap::new();
    for r in statics.iter().filter(|r| r.pod.is_some() && !r.terminating) {
        wanted.insert((r.namespace.clone(), r.name.clone()), r);
    }
    for (key, m) in seen {
        let current = wanted.get(key).is_some_and(|r| r.spec_hash == m.hash);
        if m.deleting || !current {
            plan.delete
                .push((key.0.clone(), key.1.clone(), m.uid.clone()));
        }
    }
    plan.delete.sort();
    for (key, r) in &wanted {
        if !seen.contains_key(key) {
            plan.create.push(r.uid.clone());
        }
    }
    plan
}

/// Keep the mirror pods right for as long as the agent runs.
pub async fn run(agent: Arc<Agent>) {
    let Some(node) = agent.node.as_ref() else {
        return;
    };
    let name = agent.cfg.node_name.clone();
    loop {
        let node_uid = node.shared.node_uid.get().cloned();
        let seen = node
            .shared
            .api_mirrors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let (Some(node_uid), Some(seen)) = (node_uid, seen) {
            let statics: Vec<PodRecord> = agent
                .status
                .list()
                .into_iter()
                .filter(|r| r.source == Source::File)
                .collect();
            // What already has a current mirror.
            let mut mirrors = HashMap::new();
            for r in &statics {
                if let Some(m) = seen.get(&(r.namespace.clone(), r.name.clone())) {
                    if m.hash == r.spec_hash && !m.deleting {
                        mirrors.insert(r.uid.clone(), m.uid.clone());
                    }
                }
            }
            let todo = plan(&statics, &seen);
            for (ns, pod, uid) in &todo.delete {
                super::sink::delete_pod(&node.client, ns, pod, uid).await;
            }
            for uid in &todo.create {
                let Some(r) = statics.iter().find(|r| &r.uid == uid) else {
                    continue;
                };
                let Some(m) = mirror_pod(r, &name, &node_uid) else {
                    continue;
                };
                let api: Api<Pod> = Api::namespaced(node.client.clone(), &r.namespace);
                match api.create(&PostParams::default(), &m).await {
                    Ok(p) => {
                        if let Some(u) = p.metadata.uid {
                            mirrors.insert(r.uid.clone(), u);
                        }
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => tracing::warn!("create mirror pod {}: {e}", r.key()),
                }
            }
            let changed = {
                let mut m = node
                    .shared
                    .mirrors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let changed = *m != mirrors;
                *m = mirrors;
                changed
            };
            if changed {
                node.shared.sink_wake.notify_one();
            }
        }
        tokio::select! {
            _ = node.shared.mirror_wake.notified() => {}
            _ = agent.status.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        // Let a burst of changes settle into one pass.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::sources::DesiredPod;

    fn static_pod(name: &str, hash: &str) -> PodRecord {
        DesiredPod {
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            name: name.into(),
            source: Source::File,
            file: "/m/a.yaml".into(),
            pod: Ok(serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": {"app": "x"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            }))
            .unwrap()),
            spec_hash: hash.into(),
            deleting: None,
            rejected: None,
        }
        .into_record()
    }

    fn seen(uid: &str, hash: &str, deleting: bool) -> Seen {
        Seen {
            uid: uid.into(),
            hash: hash.into(),
            deleting,
        }
    }

    #[test]
    fn mirrors_are_created_replaced_and_removed() {
        let statics = vec![
            static_pod("a", "h1"),
            static_pod("b", "h2"),
            static_pod("c", "h3"),
        ];
        let mut api = HashMap::new();
        api.insert(
            ("default".to_string(), "a".to_string()),
            seen("m-a", "h1", false),
        );
        api.insert(
            ("default".to_string(), "b".to_string()),
            seen("m-b", "old", false),
        );
        api.insert(
            ("default".to_string(), "gone".to_string()),
            seen("m-g", "h9", false),
        );
        let p = plan(&statics, &api);
        assert_eq!(
            p.create,
            ["uid-c"],
            "b is made again once its old mirror is gone"
        );
        let del: Vec<&str> = p.delete.iter().map(|d| d.2.as_str()).collect();
        assert_eq!(del, ["m-b", "m-g"]);
        // A current mirror someone deleted: its deletion is finished.
        let a = ("default".to_string(), "a".to_string());
        api.insert(a.clone(), seen("m-a", "h1", true));
        let p = plan(&statics, &api);
        assert!(p.delete.iter().any(|d| d.2 == "m-a"));
        api.remove(&a);
        assert!(plan(&statics, &api).create.contains(&"uid-a".to_string()));
    }

    #[test]
    fn a_mirror_pod_is_owned_by_the_node_and_marked() {
        let r = static_pod("a", "h1");
        let m = mirror_pod(&r, "node-1", "nu").unwrap();
        let ann = m.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[MIRROR_ANNOTATION], "h1");
        let o = &m.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.name.as_str(), o.uid.as_str()),
            ("Node", "node-1", "nu")
        );
        assert_eq!(o.controller, Some(true));
        assert_eq!(m.spec.unwrap().node_name.as_deref(), Some("node-1"));
        assert_eq!(m.metadata.labels.unwrap()["app"], "x");
    }
}
