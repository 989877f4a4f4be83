//! The API server as a pod source: the pods bound to this node
//! (kubelet's pkg/kubelet/config/apiserver.go).
//!
//! The scheduler binds a pod to a node by setting its `spec.nodeName`; the
//! node learns of it by *listing and watching* the pods whose `nodeName`
//! is its own (a field selector). A list gives every pod and the
//! collection's `resourceVersion`; a watch from that version then streams
//! each change (ADDED, MODIFIED, DELETED), and BOOKMARK events move the
//! version on without a change, so a reconnecting watch need not start
//! over. When the version is too old (the server forgot it: `410 Gone`),
//! the list is made again. All of this is `kube::runtime::watcher`; a
//! dropped connection is retried with back-off.
//!
//! Each list becomes the whole set of pods the source wants
//! ([`PodConfig::set`]): a pod deleted while the agent was down is no
//! longer in it, and is stopped. Each change after it is one pod
//! ([`PodConfig::upsert`], [`PodConfig::forget`]). Mirror pods (the API's
//! copies of this node's static pods, see [`crate::agent::node::mirror`])
//! are not pods to run.

use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::Api;

use super::{DesiredPod, PodConfig, Source};
use crate::agent::node::mirror::{Seen, MIRROR_ANNOTATION};
use crate::agent::node::sink;
use crate::agent::Agent;
use crate::manifest;

/// A pod from the API as the engine wants it: validated like a manifest
/// (a field Skiff does not implement fails the pod, naming its path).
/// Not a pod to run: a mirror pod, or a pod that already ended and that
/// this node does not know (`known`).
pub fn desired(pod: &Pod, known: impl Fn(&str) -> bool) -> Option<DesiredPod> {
    let meta = &pod.metadata;
    if meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
    {
        return None;
    }
    let uid = meta.uid.clone()?;
    let ended = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    if ended && !known(&uid) {
        return None;
    }
    let raw = serde_json::to_value(pod).ok()?;
    let validated = manifest::validate_api(&raw);
    let spec_hash = match &validated {
        Ok(p) => manifest::spec_hash(p),
        Err(e) => format!("invalid-{}", e.len()),
    };
    let deleting = meta
        .deletion_timestamp
        .as_ref()
        .map(|_| meta.deletion_grace_period_seconds.unwrap_or(0).max(0) as u64);
    Some(DesiredPod {
        uid,
        namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
        name: meta.name.clone().unwrap_or_default(),
        source: Source::ApiServer,
        file: Default::default(),
        pod: validated,
        spec_hash,
        deleting,
        rejected: None,
    })
}

/// List and watch the pods bound to `node`, for as long as the agent runs,
/// with `client` (the node's watch client).
pub async fn watch(agent: Arc<Agent>, client: kube::Client, node: String) {
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(pods, config).default_backoff().boxed();
    let mut listing: Vec<Pod> = Vec::new();
    let known = |uid: &str| agent.status.record(uid).is_some();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(p)) => listing.push(p),
            Ok(watcher::Event::InitDone) => {
                tracing::debug!("{} pods bound to {node}", listing.len());
                see_statuses(&agent, |m| {
                    m.clear();
                    m.extend(listing.iter().filter_map(status_seen));
                });
                let mirrors = listing.iter().filter_map(Seen::of).collect();
                see_mirrors(&agent, |m| *m = Some(mirrors));
                let wanted: Vec<DesiredPod> =
                    listing.iter().filter_map(|p| desired(p, known)).collect();
                // Pods being deleted that the node never ran: nothing to
                // stop, only the object to finish.
                for p in listing.drain(..) {
                    finish_unknown(&agent, &p).await;
                }
                PodConfig::set(&agent, Source::ApiServer, wanted);
            }
            Ok(watcher::Event::Apply(p)) => {
                if let Some((key, seen)) = Seen::of(&p) {
                    see_mirrors(&agent, |m| {
                        m.get_or_insert_with(Default::default).insert(key, seen);
                    });
                    continue;
                }
                if let Some((uid, fp)) = status_seen(&p) {
                    see_statuses(&agent, |m| {
                        m.insert(uid, fp);
                    });
                }
                if let Some(d) = desired(&p, known) {
                    PodConfig::upsert(&agent, Source::ApiServer, d);
                }
                finish_unknown(&agent, &p).await;
            }
            Ok(watcher::Event::Delete(p)) => {
                if let Some((key, seen)) = Seen::of(&p) {
                    see_mirrors(&agent, |m| {
                        if let Some(m) = m.as_mut() {
                            if m.get(&key).is_some_and(|s| s.uid == seen.uid) {
                                m.remove(&key);
                            }
                        }
                    });
                    continue;
                }
                if let Some(uid) = &p.metadata.uid {
                    see_statuses(&agent, |m| {
                        m.remove(uid);
                    });
                    PodConfig::forget(&agent, Source::ApiServer, uid);
                }
            }
            Err(e) => tracing::warn!("watch pods bound to {node}: {e}"),
        }
    }
}

/// Change what the mirror pod task knows of the API's mirror pods, and
/// wake it.
fn see_mirrors(
    agent: &Agent,
    f: impl FnOnce(&mut Option<std::collections::HashMap<(String, String), Seen>>),
) {
    if let Some(n) = &agent.node {
        f(&mut n
            .shared
            .api_mirrors
            .lock()
            .unwrap_or_else(|e| e.into_inner()));
        n.shared.mirror_wake.notify_one();
    }
}

/// A pod's uid and the fingerprint of the status the API holds for it.
fn status_seen(p: &Pod) -> Option<(String, u64)> {
    let uid = p.metadata.uid.clone()?;
    Some((uid, sink::fingerprint(p.status.as_ref()?)))
}

/// Change what the status sink knows of the statuses the API holds.
fn see_statuses(agent: &Agent, f: impl FnOnce(&mut std::collections::HashMap<String, u64>)) {
    if let Some(n) = &agent.node {
        f(&mut n
            .shared
            .api_status
            .lock()
            .unwrap_or_else(|e| e.into_inner()));
    }
}

/// A pod whose deletion has begun but that this node has no record of
/// (deleted before it ever started here): delete the object at once.
async fn finish_unknown(agent: &Agent, p: &Pod) {
    let Some(node) = agent.node.as_ref() else {
        return;
    };
    if p.metadata.deletion_timestamp.is_none() {
        return;
    }
    let (Some(uid), Some(ns), Some(name)) = (
        p.metadata.uid.as_deref(),
        p.metadata.namespace.as_deref(),
        p.metadata.name.as_deref(),
    ) else {
        return;
    };
    if agent.status.record(uid).is_none() {
        crate::agent::node::sink::delete_pod(&node.client, ns, name, uid).await;
    }
}
