//! Events posted to the API server, so `kubectl describe pod` and
//! `kubectl get events` show what the node did (kubelet's event recorder,
//! client-go's tools/record).
//!
//! An Event is an object of its own in the pod's namespace: the object it
//! is about (`involvedObject`: kind, namespace, name, uid, and the
//! container as a `fieldPath` such as `spec.containers{web}`), a type
//! (Normal or Warning), a machine-readable `reason` (`Pulling`, `Pulled`,
//! `Created`, `Started`, `Killing`, `Unhealthy`, `BackOff`, `Failed`),
//! a human message, and who reported it (`source.component: kubelet`,
//! `source.host`). A repeat of the same event is not a new object: the
//! recorder patches the first one's `count` and `lastTimestamp`, which is
//! how `kubectl describe` shows "x12 over 3m".
//!
//! Events are best effort, as in kubelet: a post that fails is retried a
//! few times, then dropped; nothing else waits for them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use tokio::sync::mpsc;

use crate::agent::events::{Event as Local, Kind};
use crate::agent::Agent;

/// Events remembered for folding repeats (then forgotten, oldest first).
const REMEMBER: usize = 4096;
/// Attempts per event before it is dropped.
const ATTEMPTS: u32 = 5;

/// The Event object for the first occurrence of `e`.
pub fn event_object(e: &Local, name: &str, node: &str) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(e.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(e.namespace.clone()),
            name: Some(e.pod.clone()),
            uid: Some(e.uid.clone()),
            field_path: e.field_path.clone(),
            ..Default::default()
        },
        reason: Some(e.reason.clone()),
        message: Some(e.message.clone()),
        type_: Some(
            match e.kind {
                Kind::Normal => "Normal",
                Kind::Warning => "Warning",
            }
            .into(),
        ),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(node.to_string()),
        }),
        count: Some(e.count as i32),
        first_timestamp: Some(Time(e.first_timestamp)),
        last_timestamp: Some(Time(e.last_timestamp)),
        ..Default::default()
    }
}

/// The object name client-go gives an event: the object's name and the
/// time in nanoseconds, in hex.
fn event_name(e: &Local) -> String {
    format!("{}.{:x}", e.pod, e.first_timestamp.as_nanosecond())
}

/// Post the agent's events for as long as it runs.
pub async fn run(agent: Arc<Agent>, mut rx: mpsc::UnboundedReceiver<Local>) {
    let Some(node) = agent.node.as_ref() else {
        return;
    };
    let host = agent.cfg.node_name.clone();
    // (uid, reason, message, field) → the Event object's name.
    let mut posted: HashMap<(String, String, String, Option<String>), String> = HashMap::new();
    while let Some(e) = rx.recv().await {
        if e.namespace.is_empty() || e.pod.is_empty() {
            continue;
        }
        let key = (
            e.uid.clone(),
            e.reason.clone(),
            e.message.clone(),
            e.field_path.clone(),
        );
        let api: Api<Event> = Api::namespaced(node.client.clone(), &e.namespace);
        let existing = posted.get(&key).cloned();
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            let result = match &existing {
                Some(name) if e.count > 1 => {
                    let patch = serde_json::json!({
                        "count": e.count,
                        "lastTimestamp": Time(e.last_timestamp),
                    });
                    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(|_| name.clone())
                }
                _ => {
                    let name = event_name(&e);
                    api.create(&PostParams::default(), &event_object(&e, &name, &host))
                        .await
                        .map(|_| name)
                }
            };
            match result {
                Ok(name) => {
                    if posted.len() >= REMEMBER {
                        posted.clear();
                    }
                    posted.insert(key, name);
                    break;
                }
                // The namespace is being deleted, or a repeat of an event
                // that is gone: nothing to retry.
                Err(kube::Error::Api(a)) if a.code == 403 || a.code == 404 || a.code == 409 => {
                    if existing.is_some() {
                        posted.remove(&key);
                    }
                    break;
                }
                Err(err) => {
                    if attempt == ATTEMPTS {
                        tracing::debug!("event {} on {}: dropped: {err}", e.reason, e.pod);
                    } else {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_look_like_kubelets() {
        let mut list = crate::agent::events::Events::default();
        let e = list.push(
            "ns",
            "web",
            "u1",
            Kind::Warning,
            "BackOff",
            "Back-off restarting failed container".into(),
            Some("spec.containers{c}"),
        );
        let name = event_name(&e);
        assert!(name.starts_with("web."));
        let o = event_object(&e, &name, "node-1");
        assert_eq!(o.type_.as_deref(), Some("Warning"));
        assert_eq!(o.involved_object.kind.as_deref(), Some("Pod"));
        assert_eq!(
            o.involved_object.field_path.as_deref(),
            Some("spec.containers{c}")
        );
        assert_eq!(o.source.unwrap().component.as_deref(), Some("kubelet"));
        let again = list.push(
            "ns",
            "web",
            "u1",
            Kind::Warning,
            "BackOff",
            "Back-off restarting failed container".into(),
            Some("spec.containers{c}"),
        );
        assert_eq!(again.count, 2);
        assert_eq!(event_name(&again), name, "a repeat names the same object");
    }
}
