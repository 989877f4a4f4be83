//! Pod sources: where the pods the node should run come from.
//!
//! kubelet has three (pkg/kubelet/config): a directory of manifests (static
//! pods), a URL, and the API server. Each says, in its own terms, which pods
//! it wants; kubelet's `PodConfig` merges them into one stream of add,
//! update and remove operations for the pod workers. Skiff does the same:
//!
//! - a source reports the whole set of pods it wants, each time it looks
//!   ([`PodConfig::set`]); the manifest directory does so on every change
//!   and every 10 s ([`file`]); the API server's watch, after each list,
//!   then one pod at a time ([`PodConfig::upsert`], [`PodConfig::forget`])
//!   ([`apiserver`]);
//! - [`PodConfig`] remembers each source's last set and turns the
//!   difference into [`PodUpdate`]s for the engine ([`super::engine`]).
//!
//! A pod belongs to one source. Its uid is the source's: derived from the
//! file and the pod's name for a static pod, as kubelet derives it; the
//! API object's for a pod from the API server. A pod whose deletion has
//! begun (`deletionTimestamp`) is no longer wanted: it is stopped within
//! the grace period the deletion gave.

pub mod apiserver;
pub mod file;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use super::reasons::{PodFailureReason, WaitingReason};
use super::state::{self, PodRecord};
use super::Agent;

/// Which source a pod came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A manifest file in `--manifests` (a static pod).
    #[default]
    File,
    /// Bound to this node in the API server (node mode).
    #[serde(rename = "api")]
    ApiServer,
}

/// A pod as a source wants it.
#[derive(Debug, Clone)]
pub struct DesiredPod {
    /// The pod's uid: the API object's, or for a static pod derived from its
    /// file and name (`manifest::pod_uid`).
    pub uid: String,
    /// The pod's namespace (`default` when the manifest gives none).
    pub namespace: String,
    /// The pod's name (for a manifest without one, derived from its file's
    /// name).
    pub name: String,
    /// The source that wants it.
    pub source: Source,
    /// The manifest file, for a static pod.
    pub file: PathBuf,
    /// The validated pod, or why it was refused.
    pub pod: Result<Pod, String>,
    /// A digest of the spec: a change means a new pod.
    pub spec_hash: String,
    /// Its deletion has begun, with this grace period (seconds).
    pub deleting: Option<u64>,
    /// Why the node refuses it, when `pod` is an error and the reason is
    /// not the manifest's (admission: `OutOfcpu`...).
    pub rejected: Option<PodFailureReason>,
}

impl DesiredPod {
    /// The record a new worker starts from: every container waiting.
    pub fn into_record(self) -> PodRecord {
        let containers = |pod: &Pod, init: bool| -> Vec<state::ContainerRecord> {
            let Some(spec) = pod.spec.as_ref() else {
                return Vec::new();
            };
            let list = if init {
                spec.init_containers.clone().unwrap_or_default()
            } else {
                spec.containers.clone()
            };
            // kubelet's default waiting reason, for init and app containers
            // alike: PodInitializing while a pod has init containers.
            let has_init = spec.init_containers.as_ref().is_some_and(|l| !l.is_empty());
            let reason = if has_init {
                WaitingReason::PodInitializing
            } else {
                WaitingReason::ContainerCreating
            };
            list.iter()
                .map(|c| {
                    state::ContainerRecord::new(&c.name, c.image.as_deref().unwrap_or(""), reason)
                })
                .collect()
        };
        let (pod, invalid) = match self.pod {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        };
        PodRecord {
            init: pod
                .as_ref()
                .map(|p| containers(p, true))
                .unwrap_or_default(),
            containers: pod
                .as_ref()
                .map(|p| containers(p, false))
                .unwrap_or_default(),
            uid: self.uid,
            namespace: self.namespace,
            name: self.name,
            source: self.source,
            file: self.file,
            spec_hash: self.spec_hash,
            pod,
            invalid,
            rejected: self.rejected,
            created_at: jiff::Timestamp::now(),
            start_time: None,
            sandbox: None,
            pod_ip: None,
            conditions: BTreeMap::new(),
            terminating: false,
            deleted_at: None,
            deletion_grace: None,
            failure: None,
            sandbox_error: None,
            finished: false,
            sandbox_count: 0,
        }
    }
}

/// One change for the engine.
#[derive(Debug)]
pub enum PodUpdate {
    /// A pod that was not in its source's last set.
    Add(DesiredPod),
    /// The pod's spec (or file) changed: it is recreated.
    Update(DesiredPod),
    /// The source no longer wants the pod: it is gone from the source's set,
    /// or its deletion has begun.
    Remove {
        /// The pod's uid.
        uid: String,
        /// The grace period the deletion gave, over the spec's.
        grace: Option<std::time::Duration>,
    },
}

/// A source's last set: uid → (spec hash, manifest file).
type Set = BTreeMap<String, (String, PathBuf)>;

/// Every source's last set of pods, to turn sets into changes.
#[derive(Default)]
pub struct PodConfig {
    sets: Mutex<BTreeMap<Source, Set>>,
}

impl PodConfig {
    /// Source `source` now wants exactly `pods`: hand the differences to
    /// the engine. Pods adopted from a previous run count as the source's
    /// until its first word says otherwise.
    pub fn set(agent: &Arc<Agent>, source: Source, pods: Vec<DesiredPod>) {
        let updates = agent.config.change(agent, &source, |last| diff(last, pods));
        for u in updates {
            super::engine::Engine::apply(agent, u);
        }
    }

    /// Source `source` wants `pod` (new, changed, or being deleted), the
    /// others as before.
    pub fn upsert(agent: &Arc<Agent>, source: Source, pod: DesiredPod) {
        let updates = agent.config.change(agent, &source, |last| {
            diff_one(last, pod).into_iter().collect()
        });
        for u in updates {
            super::engine::Engine::apply(agent, u);
        }
    }

    /// Source `source` no longer has the pod `uid` (its object is gone).
    pub fn forget(agent: &Arc<Agent>, source: Source, uid: &str) {
        let updates = agent.config.change(agent, &source, |last| {
            if last.contains_key(uid) {
                vec![PodUpdate::Remove {
                    uid: uid.to_string(),
                    grace: None,
                }]
            } else {
                Vec::new()
            }
        });
        for u in updates {
            super::engine::Engine::apply(agent, u);
        }
    }

    /// Work out the changes against the source's last set and record them.
    fn change(
        &self,
        agent: &Agent,
        source: &Source,
        f: impl FnOnce(&Set) -> Vec<PodUpdate>,
    ) -> Vec<PodUpdate> {
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        let last = sets.entry(source.clone()).or_insert_with(|| {
            // First word from this source: what the engine adopted.
            agent
                .status
                .list()
                .into_iter()
                .filter(|r| &r.source == source)
                .map(|r| (r.uid, (r.spec_hash, r.file)))
                .collect()
        });
        let changes = f(last);
        for c in &changes {
            match c {
                PodUpdate::Add(p) | PodUpdate::Update(p) => {
                    last.insert(p.uid.clone(), (p.spec_hash.clone(), p.file.clone()));
                }
                PodUpdate::Remove { uid, .. } => {
                    last.remove(uid);
                }
            }
        }
        changes
    }
}

/// The change one pod makes to `last`: a pod whose deletion has begun is a
/// removal (with its grace period), a new one an addition, a changed one an
/// update.
fn diff_one(last: &Set, p: DesiredPod) -> Option<PodUpdate> {
    if let Some(g) = p.deleting {
        return last.contains_key(&p.uid).then(|| PodUpdate::Remove {
            uid: p.uid,
            grace: Some(std::time::Duration::from_secs(g)),
        });
    }
    match last.get(&p.uid) {
        None => Some(PodUpdate::Add(p)),
        Some((hash, file)) if *hash != p.spec_hash || *file != p.file => Some(PodUpdate::Update(p)),
        Some(_) => None,
    }
}

/// The changes from `last` to `now`.
fn diff(last: &Set, now: Vec<DesiredPod>) -> Vec<PodUpdate> {
    let there: BTreeSet<String> = now.iter().map(|p| p.uid.clone()).collect();
    let mut out: Vec<PodUpdate> = last
        .keys()
        .filter(|u| !there.contains(*u))
        .map(|u| PodUpdate::Remove {
            uid: u.clone(),
            grace: None,
        })
        .collect();
    out.extend(now.into_iter().filter_map(|p| diff_one(last, p)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, hash: &str) -> DesiredPod {
        DesiredPod {
            uid: uid.into(),
            namespace: "default".into(),
            name: uid.into(),
            source: Source::File,
            file: PathBuf::from("/m/a.yaml"),
            pod: Err("not needed".into()),
            spec_hash: hash.into(),
            deleting: None,
            rejected: None,
        }
    }

    #[test]
    fn sets_become_adds_updates_and_removes() {
        let mut last = BTreeMap::new();
        last.insert(
            "a".to_string(),
            ("h1".to_string(), PathBuf::from("/m/a.yaml")),
        );
        last.insert(
            "b".to_string(),
            ("h1".to_string(), PathBuf::from("/m/a.yaml")),
        );
        let changes = diff(&last, vec![pod("a", "h1"), pod("b", "h2"), pod("c", "h1")]);
        let kinds: Vec<String> = changes
            .iter()
            .map(|c| match c {
                PodUpdate::Add(p) => format!("add {}", p.uid),
                PodUpdate::Update(p) => format!("update {}", p.uid),
                PodUpdate::Remove { uid, .. } => format!("remove {uid}"),
            })
            .collect();
        assert_eq!(kinds, ["update b", "add c"]);
        let gone = diff(&last, vec![pod("a", "h1")]);
        assert!(matches!(&gone[..], [PodUpdate::Remove { uid, .. }] if uid == "b"));
        let deleting = DesiredPod {
            deleting: Some(5),
            rejected: None,
            ..pod("a", "h1")
        };
        let graceful = diff(&last, vec![deleting, pod("b", "h1")]);
        assert!(matches!(
            &graceful[..],
            [PodUpdate::Remove { uid, grace: Some(g) }] if uid == "a" && g.as_secs() == 5
        ));
    }

    #[test]
    fn a_pod_moved_to_another_file_is_recreated() {
        let mut last = BTreeMap::new();
        last.insert(
            "a".to_string(),
            ("h1".to_string(), PathBuf::from("/m/old.yaml")),
        );
        let changes = diff(&last, vec![pod("a", "h1")]);
        assert!(matches!(&changes[..], [PodUpdate::Update(_)]));
    }

    #[test]
    fn a_new_record_waits_for_its_containers() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "i", "image": "busybox"}],
                "containers": [{"name": "c", "image": "busybox"}]
            }
        }))
        .unwrap();
        let rec = DesiredPod {
            pod: Ok(p),
            ..pod("u", "h")
        }
        .into_record();
        assert_eq!(rec.init.len(), 1);
        assert!(matches!(
            &rec.containers[0].state,
            state::CState::Waiting {
                reason: WaitingReason::PodInitializing,
                ..
            }
        ));
        let refused = pod("v", "h").into_record();
        assert_eq!(refused.invalid.as_deref(), Some("not needed"));
        assert!(refused.containers.is_empty());
    }
}
