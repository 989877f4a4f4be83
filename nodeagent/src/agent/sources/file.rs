//! The manifest directory: static pods, as kubelet's file source
//! (pkg/kubelet/config/file.go) reads them.
//!
//! Every regular file not starting with a dot holds Pod manifests (YAML or
//! JSON, several documents). The directory is watched with inotify(7) and
//! read again every 10 s anyway, as kubelet does; a file whose mtime, size
//! and inode have not changed is not parsed again. Each pass reports the
//! whole set of pods to [`super::PodConfig`]. A manifest that does not
//! validate is still a pod: it fails with the reason, so the user sees why.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{DesiredPod, PodConfig, Source};
use crate::agent::Agent;
use crate::manifest;

type Stamp = (std::time::SystemTime, u64, u64);

/// Parsed manifest files by path, with the (mtime, size, inode) they were
/// parsed at.
#[derive(Default)]
pub struct Cache {
    files: Mutex<HashMap<PathBuf, (Stamp, Vec<manifest::Doc>)>>,
}

/// The manifest files kubelet would read: regular files not starting with
/// a dot, in name order.
fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// Read the directory and say what it wants, now.
pub fn rescan(agent: &Arc<Agent>) {
    // A node of a cluster names its static pods after itself, as kubelet
    // does (`web` on node `n1` is `web-n1`), so that the mirror pods of
    // two nodes never clash.
    let suffix = agent.node.as_ref().map(|_| agent.cfg.node_name.as_str());
    let pods = scan(&agent.cfg.manifests, &agent.file_cache, suffix);
    PodConfig::set(agent, Source::File, pods);
}

/// Every pod the directory's files define (the first definition of a
/// namespace/name wins, as in kubelet).
fn scan(dir: &Path, cache: &Cache, suffix: Option<&str>) -> Vec<DesiredPod> {
    let files = manifest_files(dir);
    let mut cache = cache.files.lock().unwrap_or_else(|e| e.into_inner());
    cache.retain(|f, _| files.contains(f));
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut out = Vec::new();
    for file in files {
        use std::os::unix::fs::MetadataExt;
        let stamp: Option<Stamp> = std::fs::metadata(&file)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len(), m.ino())));
        let docs = match (stamp, cache.get(&file)) {
            (Some(s), Some((cached, docs))) if *cached == s => docs.clone(),
            _ => {
                let text = match std::fs::read_to_string(&file) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!("read {}: {e}", file.display());
                        continue;
                    }
                };
                let docs = manifest::parse_file(&file, &text);
                if let Some(s) = stamp {
                    cache.insert(file.clone(), (s, docs.clone()));
                }
                docs
            }
        };
        for mut doc in docs {
            if let Some(node) = suffix {
                doc.name = format!("{}-{node}", doc.name);
                if let Ok(p) = doc.pod.as_mut() {
                    p.metadata.name = Some(doc.name.clone());
                }
            }
            let key = format!("{}/{}", doc.namespace, doc.name);
            if let Some(other) = seen.insert(key.clone(), file.clone()) {
                tracing::warn!(
                    "{}: pod {key} is already defined in {}; ignored",
                    file.display(),
                    other.display()
                );
                continue;
            }
            out.push(desired(&file, doc));
        }
    }
    out
}

fn desired(file: &Path, doc: manifest::Doc) -> DesiredPod {
    let pod = doc.pod.map_err(|e| e.to_string());
    let uid = match &pod {
        Ok(p) => manifest::pod_uid(p, file),
        Err(_) => {
            let mut p = k8s_openapi::api::core::v1::Pod::default();
            p.metadata.name = Some(doc.name.clone());
            p.metadata.namespace = Some(doc.namespace.clone());
            manifest::pod_uid(&p, file)
        }
    };
    let spec_hash = match &pod {
        Ok(p) => manifest::spec_hash(p),
        Err(e) => format!("invalid-{}", e.len()),
    };
    DesiredPod {
        uid,
        namespace: doc.namespace,
        name: doc.name,
        source: Source::File,
        file: file.to_path_buf(),
        pod,
        spec_hash,
        deleting: None,
        rejected: None,
    }
}

/// Watch the manifest directory (inotify, plus a rescan every 10 s) and
/// report every change.
pub async fn watch(agent: Arc<Agent>) {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use std::os::fd::AsFd;
    let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .ok()
        .filter(|i| {
            i.add_watch(
                &agent.cfg.manifests,
                AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_MOVED_FROM
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_MODIFY,
            )
            .is_ok()
        });
    // Readiness is watched on a duplicate of the inotify fd (same open
    // file), events are read through `ino`.
    let afd = ino.as_ref().and_then(|i| {
        let fd = i.as_fd().try_clone_to_owned().ok()?;
        // SAFETY: the AsyncFd owns this duplicate for as long as it lives.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }
        .ok()
    });
    let drain = || {
        if let Some(i) = &ino {
            while i.read_events().is_ok_and(|e| !e.is_empty()) {}
        }
    };
    loop {
        rescan(&agent);
        match &afd {
            Some(afd) => {
                tokio::select! {
                    r = afd.readable() => {
                        if let Ok(mut g) = r {
                            drain();
                            g.clear_ready();
                        }
                        // Let a burst of writes settle.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        drain();
                    }
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
            }
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_becomes_a_set_of_pods() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: one}\nspec:\n  containers: [{name: c, image: busybox}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: two}\nspec:\n  containers: [{name: c, image: busybox}]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: one}\nspec:\n  containers: [{name: c, image: busybox}]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "not: read").unwrap();
        let cache = Cache::default();
        let pods = scan(dir.path(), &cache, None);
        let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["one", "two"], "b.yaml's `one` is a duplicate");
        assert!(pods.iter().all(|p| p.pod.is_ok()));
        // Unchanged files come from the cache: same uids and hashes.
        let again = scan(dir.path(), &cache, None);
        assert_eq!(
            again.iter().map(|p| &p.uid).collect::<Vec<_>>(),
            pods.iter().map(|p| &p.uid).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_refused_manifest_is_still_a_pod() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers: [{name: c, image: busybox, volumeDevices: [{name: x, devicePath: /dev/x}]}]\n",
        )
        .unwrap();
        let pods = scan(dir.path(), &Cache::default(), None);
        assert_eq!(pods.len(), 1);
        assert!(pods[0].pod.is_err());
        assert!(pods[0].spec_hash.starts_with("invalid-"));
    }
}
