//! The status manager: the one owner of every pod's record, and so of its
//! status (kubelet's pkg/kubelet/status/status_manager.go).
//!
//! Pod workers change a record only through [`StatusManager::update`],
//! which hands the change to the sinks:
//!
//! - the state file, `pod.json` under the state directory, written
//!   atomically, so a restarted agent adopts what runs;
//! - the local API ([`super::api`]), which reads records when asked and is
//!   woken for followers (`logs -f`) through [`StatusManager::changed`];
//! - subscribers ([`StatusManager::subscribe`]) that want the `v1`
//!   status itself, only when it changed.
//!
//! The status as Kubernetes shows it is computed from a record by
//! [`pod_status`].

pub mod pod_status;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::sync::mpsc;

use super::sources::Source;
use super::state::{Layout, PodRecord};

/// A pod's status changed (or the pod is gone: `status` is `None`).
#[derive(Debug, Clone)]
pub struct StatusChange {
    /// The pod's uid.
    pub uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The source the pod came from.
    pub source: Source,
    /// The new `v1` status; `None` when the pod is gone.
    pub status: Option<PodStatus>,
    /// The pod is gone because its deletion was asked for through the
    /// API: the object is to be deleted now that its containers are.
    pub delete_object: bool,
}

impl StatusChange {
    fn of(r: &PodRecord, status: Option<PodStatus>) -> StatusChange {
        StatusChange {
            uid: r.uid.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            source: r.source.clone(),
            delete_object: status.is_none()
                && r.source == Source::ApiServer
                && r.deletion_grace.is_some(),
            status,
        }
    }
}

/// The owner of every pod's record, by uid: every change goes through it,
/// and on to the state files and the subscribers.
pub struct StatusManager {
    layout: Layout,
    node_name: String,
    host_ip: String,
    pods: Mutex<BTreeMap<String, PodRecord>>,
    /// The last status each subscriber was told, by uid.
    last: Mutex<HashMap<String, PodStatus>>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<StatusChange>>>,
    /// Woken whenever a record (or a log) may have changed.
    pub changed: tokio::sync::Notify,
}

impl StatusManager {
    /// A manager with no pods yet, saving records under `layout`; `node_name`
    /// and `host_ip` go into the statuses it computes.
    pub fn new(layout: Layout, node_name: String, host_ip: String) -> StatusManager {
        StatusManager {
            layout,
            node_name,
            host_ip,
            pods: Mutex::new(BTreeMap::new()),
            last: Mutex::new(HashMap::new()),
            subscribers: Mutex::new(Vec::new()),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn pods(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PodRecord>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start tracking a pod (a new or adopted worker's record).
    pub fn insert(&self, rec: PodRecord) {
        let uid = rec.uid.clone();
        self.pods().insert(uid.clone(), rec);
        self.publish(&uid);
    }

    /// The pod is gone from the node; returns the record it had.
    pub fn remove(&self, uid: &str) -> Option<PodRecord> {
        let gone = self.pods().remove(uid);
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
        if let Some(r) = &gone {
            self.send(StatusChange::of(r, None));
        }
        self.changed.notify_waiters();
        gone
    }

    /// A copy of pod `uid`'s record, if the node has the pod.
    pub fn record(&self, uid: &str) -> Option<PodRecord> {
        self.pods().get(uid).cloned()
    }

    /// Every record, by uid.
    pub fn list(&self) -> Vec<PodRecord> {
        self.pods().values().cloned().collect()
    }

    /// The pod named `namespace/name`.
    pub fn find(&self, namespace: &str, name: &str) -> Option<PodRecord> {
        self.pods()
            .values()
            .find(|p| p.namespace == namespace && p.name == name)
            .cloned()
    }

    /// Change a pod's record, save it, and tell the sinks.
    pub fn update<R>(&self, uid: &str, f: impl FnOnce(&mut PodRecord) -> R) -> Option<R> {
        let (r, saved) = {
            let mut pods = self.pods();
            let rec = pods.get_mut(uid)?;
            let r = f(rec);
            (r, rec.clone())
        };
        self.save(&saved);
        self.publish(uid);
        Some(r)
    }

    /// Write the record to its state file.
    pub fn save(&self, rec: &PodRecord) {
        if let Err(e) = rec.save(&self.layout) {
            tracing::warn!("save pod {}: {e}", rec.key());
        }
    }

    /// The full `v1` Pod of a record, status included.
    pub fn pod(&self, rec: &PodRecord) -> Pod {
        pod_status::pod(rec, &self.node_name, &self.host_ip)
    }

    /// A stream of status changes (each pod's current status first).
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<StatusChange> {
        let (tx, rx) = mpsc::unbounded_channel();
        for r in self.list() {
            let status = self.pod(&r).status;
            if let Some(s) = &status {
                self.last
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(r.uid.clone(), s.clone());
            }
            let _ = tx.send(StatusChange::of(&r, status));
        }
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    }

    /// Wake followers; tell subscribers if the status really changed.
    fn publish(&self, uid: &str) {
        self.changed.notify_waiters();
        if self
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
        {
            return;
        }
        let Some(rec) = self.record(uid) else { return };
        let Some(status) = self.pod(&rec).status else {
            return;
        };
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.get(uid) == Some(&status) {
                return;
            }
            last.insert(uid.to_string(), status.clone());
        }
        self.send(StatusChange::of(&rec, Some(status)));
    }

    fn send(&self, change: StatusChange) {
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.send(change.clone()).is_ok());
    }

    /// The state directory the records live in.
    pub fn state_dir(&self) -> PathBuf {
        self.layout.state_dir.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::sources::{DesiredPod, Source};

    fn manager(dir: &std::path::Path) -> StatusManager {
        StatusManager::new(
            Layout {
                state_dir: dir.join("state"),
                data_dir: dir.join("data"),
            },
            "node".into(),
            "10.0.0.1".into(),
        )
    }

    fn rec(uid: &str) -> PodRecord {
        DesiredPod {
            uid: uid.into(),
            namespace: "default".into(),
            name: format!("pod-{uid}"),
            source: Source::File,
            file: "/m/a.yaml".into(),
            pod: Ok(serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "x"}]}
            }))
            .unwrap()),
            spec_hash: "abcd".into(),
            deleting: None,
            rejected: None,
        }
        .into_record()
    }

    #[test]
    fn subscribers_hear_of_real_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        m.insert(rec("u1"));
        let mut rx = m.subscribe();
        let first = rx.try_recv().expect("the current status first");
        assert_eq!(first.uid, "u1");
        // A change that does not change the v1 status says nothing...
        m.update("u1", |r| r.sandbox_count += 1);
        assert!(rx.try_recv().is_err(), "no status change, no message");
        // ...one that does is heard once.
        m.update("u1", |r| r.pod_ip = Some("10.1.0.5".into()));
        let c = rx.try_recv().unwrap();
        assert_eq!(c.status.unwrap().pod_ip.as_deref(), Some("10.1.0.5"));
        // The record went to its state file.
        let saved = crate::agent::state::load_all(&m.layout);
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].pod_ip.as_deref(), Some("10.1.0.5"));
        m.remove("u1");
        assert!(rx.try_recv().unwrap().status.is_none(), "gone");
        assert!(m.record("u1").is_none());
    }
}
