//! A pod's volumes: directories the node prepares and binds into its
//! containers (kubelet's volume plugins under pkg/volume, and "Volumes" in
//! the Kubernetes docs).
//!
//! | type | where it lives on the node | made by |
//! |---|---|---|
//! | `emptyDir` | the data directory (or a tmpfs with `medium: Memory`) | [`setup_local`] |
//! | `hostPath` | the host path itself, checked against its `type` | [`setup_local`] |
//! | `secret`, `configMap`, `downwardAPI`, `projected` | the state directory (root only) | [`super::projected::VolumeTask`] |
//!
//! The last four are *projected* from somewhere else: the API server's
//! Secrets and ConfigMaps, the pod's own fields, service-account tokens.
//! A task per pod writes them before the containers start, and again
//! whenever what they come from changes (a watched object, a token about
//! to expire), each time through [`super::atomic_writer`] so a container
//! sees one version or the next, never a mix. They are bound read-only.
//! With `securityContext.fsGroup`, their files and the pod's emptyDirs
//! belong to that group (and every container gets it as a supplementary
//! group), so a non-root container can read them.
//!
//! `subPath` binds one path inside a volume instead of the whole; it is
//! resolved inside the volume without following a symbolic link out of it
//! (CVE-2017-1002101). `subPathExpr` is the same with `$(VAR)` expanded
//! from the container's environment.

use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::super::state::PodRecord;
use super::super::Agent;
use super::env::{self};
use crate::quantity;

/// Where a volume lives on the node.
pub fn dir(agent: &Agent, uid: &str, v: &Volume) -> PathBuf {
    let layout = agent.cfg.layout();
    if let Some(h) = &v.host_path {
        PathBuf::from(&h.path)
    } else if projected_kind(v) {
        layout.pod_dir(uid).join("volumes").join(&v.name)
    } else {
        layout.volumes_dir(uid).join(&v.name)
    }
}

/// Is it one of the volumes written from elsewhere (read-only in
/// containers, kept under the state directory)?
pub fn projected_kind(v: &Volume) -> bool {
    v.secret.is_some()
        || v.config_map.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// The pod's `fsGroup`.
pub fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()?
        .security_context
        .as_ref()?
        .fs_group
        .map(|g| g as u32)
}

/// Make emptyDir volumes and check hostPath ones.
pub fn setup_local(agent: &Agent, rec: &PodRecord) -> Result<(), String> {
    let pod = rec.pod.as_ref().ok_or("no pod")?;
    let spec = pod.spec.as_ref().ok_or("no spec")?;
    let gid = fs_group(pod);
    for v in spec.volumes.iter().flatten() {
        if let Some(e) = &v.empty_dir {
            let dir = dir(agent, &rec.uid, v);
            std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            if e.medium.as_deref() == Some("Memory") && !is_mount(&dir) {
                let mut opts = "mode=1777".to_string();
                if let Some(q) = &e.size_limit {
                    let bytes = quantity::bytes(&q.0).map_err(|e| e.to_string())?;
                    opts.push_str(&format!(",size={bytes}"));
                }
                mount(
                    Some("tmpfs"),
                    &dir,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(opts.as_str()),
                )
                .map_err(|e| format!("mount tmpfs for volume {:?}: {e}", v.name))?;
            }
            use std::os::unix::fs::PermissionsExt;
            let mode = if gid.is_some() { 0o2777 } else { 0o777 };
            if let Some(g) = gid {
                let _ = std::os::unix::fs::chown(&dir, None, Some(g));
            }
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
        }
        if let Some(h) = &v.host_path {
            host_path(
                &v.name,
                Path::new(&h.path),
                h.type_.as_deref().unwrap_or(""),
            )?;
        }
    }
    Ok(())
}

/// kubelet's hostPath `type` checks.
fn host_path(name: &str, p: &Path, t: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(p);
    let fail = |what: &str| Err(format!("volume {name:?}: hostPath {} {what}", p.display()));
    let is = |ok: bool, what: &str| if ok { Ok(()) } else { fail(what) };
    match t {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_err() => std::fs::create_dir_all(p)
            .map_err(|e| format!("volume {name:?}: create {}: {e}", p.display())),
        "DirectoryOrCreate" | "Directory" => {
            is(meta.is_ok_and(|m| m.is_dir()), "is not a directory")
        }
        "FileOrCreate" if meta.is_err() => std::fs::write(p, b"")
            .map_err(|e| format!("volume {name:?}: create {}: {e}", p.display())),
        "FileOrCreate" | "File" => is(meta.is_ok_and(|m| m.is_file()), "is not a file"),
        "Socket" => is(
            meta.is_ok_and(|m| m.file_type().is_socket()),
            "is not a socket",
        ),
        "CharDevice" => is(
            meta.is_ok_and(|m| m.file_type().is_char_device()),
            "is not a character device",
        ),
        "BlockDevice" => is(
            meta.is_ok_and(|m| m.file_type().is_block_device()),
            "is not a block device",
        ),
        _ => fail("has an unknown type"),
    }
}

fn is_mount(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let d = dir.display().to_string();
    text.lines()
        .any(|l| l.split(' ').nth(4) == Some(d.as_str()))
}

/// Remove the pod's volumes (after every container): tmpfs emptyDirs
/// unmounted, the data and state directories of its volumes deleted.
pub fn remove(agent: &Agent, uid: &str) {
    let layout = agent.cfg.layout();
    for root in [layout.volumes_dir(uid), layout.pod_dir(uid).join("volumes")] {
        if let Ok(rd) = std::fs::read_dir(&root) {
            for e in rd.flatten() {
                if is_mount(&e.path()) {
                    let _ = umount2(&e.path(), MntFlags::MNT_DETACH);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// One bind mount of a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Bind {
    /// The host directory: the volume's, or a `subPath` in it.
    pub source: PathBuf,
    /// Where it appears in the container (`mountPath`).
    pub destination: String,
    /// Mounted read-only: the mount says `readOnly`, or the volume is a
    /// Secret, ConfigMap, downward API or projected one.
    pub read_only: bool,
}

/// Resolve `sub` inside volume directory `root`: relative, no `..`, and
/// no symbolic link that leads out of the volume. Missing directories are
/// made.
pub fn sub_path(root: &Path, sub: &str) -> Result<PathBuf, String> {
    let p = Path::new(sub);
    if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!(
            "subPath {sub:?} must be a relative path without '..'"
        ));
    }
    let root = root
        .canonicalize()
        .map_err(|e| format!("volume {}: {e}", root.display()))?;
    let mut at = root.clone();
    let mut comps = p.components().peekable();
    while let Some(c) = comps.next() {
        let next = at.join(c);
        match std::fs::symlink_metadata(&next) {
            Ok(_) => {
                let real = next
                    .canonicalize()
                    .map_err(|e| format!("subPath {sub:?}: {e}"))?;
                if !real.starts_with(&root) {
                    return Err(format!(
                        "subPath {sub:?} resolves outside the volume ({})",
                        real.display()
                    ));
                }
                at = real;
            }
            Err(_) => {
                // What is missing is made: new directories (or, for the
                // last part of a file volume, nothing links anywhere).
                let _ = comps.peek();
                std::fs::create_dir(&next).map_err(|e| format!("subPath {sub:?}: {e}"))?;
                at = next;
            }
        }
    }
    Ok(at)
}

/// The bind mounts of container `c`, with `env` for `subPathExpr`.
pub fn binds(
    agent: &Agent,
    rec: &PodRecord,
    c: &Container,
    env: &[(String, String)],
) -> Result<Vec<Bind>, String> {
    let pod = rec.pod.as_ref().ok_or("no pod")?;
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = volumes
            .iter()
            .find(|v| v.name == m.name)
            .ok_or_else(|| format!("no volume {:?}", m.name))?;
        let root = dir(agent, &rec.uid, v);
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => Some(env::expand(e, env)),
            _ => None,
        };
        let source = match sub {
            Some(s) => sub_path(&root, &s)?,
            None => root,
        };
        out.push(Bind {
            source,
            destination: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false) || projected_kind(v),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_stay_inside_the_volume() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("vol");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        std::os::unix::fs::symlink("a", root.join("in")).unwrap();
        let ok = sub_path(&root, "a/new/deeper").unwrap();
        assert!(ok.ends_with("vol/a/new/deeper") && ok.is_dir());
        assert!(sub_path(&root, "in").unwrap().ends_with("vol/a"));
        assert!(sub_path(&root, "out")
            .unwrap_err()
            .contains("outside the volume"));
        assert!(sub_path(&root, "out/x").is_err());
        assert!(sub_path(&root, "../x").is_err());
        assert!(sub_path(&root, "/etc").is_err());
    }
}
