//! A pod's volumes: directories the node prepares and binds into its
//! containers (kubelet's volume plugins under pkg/volume, and "Volumes" in
//! the Kubernetes docs).
//!
//! | type | where it lives on the node | made by |
//! |---|---|---|
//! | `emptyDir` | the data directory (or a tmpfs with `medium: Memory`) | [`setup_local`] |
//! | `hostPath` | the host path itself, checked against its `type` | [`setup_local`] |
//! | `secret`, `configMap`, `downwardAPI`, `projected` | the state directory (root only) | [`VolumeTask`] |
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

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, Pod, Volume, VolumeProjection,
};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use tokio::sync::{mpsc, watch};

use super::super::events::Kind as EventKind;
use super::super::node::objects::{Kind, ObjectError};
use super::super::sources::Source;
use super::super::state::PodRecord;
use super::super::Agent;
use super::atomic_writer::{self, File, Payload};
use super::env::{self, Facts};
use super::Msg;
use crate::quantity;

/// Mode of projected files when the volume does not say (0644).
const DEFAULT_MODE: u32 = 0o644;
/// kubelet's service-account token lifetime default.
const TOKEN_SECONDS: i64 = 3600;

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
    pub source: PathBuf,
    pub destination: String,
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

/// Errors of building a projected volume, in kubelet's words.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("configmap references non-existent config key: {0}")]
    NoConfigKey(String),
    #[error("references non-existent secret key: {0}")]
    NoSecretKey(String),
    #[error("{0}")]
    Field(String),
    #[error(transparent)]
    Write(#[from] atomic_writer::WriteError),
}

/// A service-account token held by a volume: its value, and when to ask
/// for a new one.
#[derive(Debug, Clone)]
struct Token {
    value: String,
    refresh_at: jiff::Timestamp,
}

/// What a pod's volume task keeps between passes.
#[derive(Default)]
pub struct Projector {
    /// (volume, path) → token.
    tokens: BTreeMap<(String, String), Token>,
}

/// When a token issued now, expiring at `exp`, is renewed: after 80% of
/// its life or 24 hours, whichever comes first (kubelet's rule).
fn refresh_time(now: jiff::Timestamp, exp: jiff::Timestamp) -> jiff::Timestamp {
    let life = exp.as_second() - now.as_second();
    let after = (life * 8 / 10).clamp(1, 24 * 3600);
    jiff::Timestamp::from_second(now.as_second() + after).unwrap_or(exp)
}

/// The files of `items` (or of every key) of an object's data.
fn key_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: bool,
    missing: impl Fn(String) -> ProjectError,
) -> Result<Payload, ProjectError> {
    let mut out = Payload::new();
    match items {
        None => {
            for (k, v) in data {
                out.insert(
                    k.clone(),
                    File {
                        data: v.clone(),
                        mode,
                    },
                );
            }
        }
        Some(items) => {
            for i in items {
                match data.get(&i.key) {
                    Some(v) => {
                        out.insert(
                            i.path.clone(),
                            File {
                                data: v.clone(),
                                mode: i.mode.map_or(mode, |m| m as u32),
                            },
                        );
                    }
                    None if optional => {}
                    None => return Err(missing(i.key.clone())),
                }
            }
        }
    }
    Ok(out)
}

impl Projector {
    /// An object's data for this pod; `None` when optional and missing.
    async fn object(
        agent: &Agent,
        rec: &PodRecord,
        kind: Kind,
        name: &str,
        optional: bool,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, ProjectError> {
        let Some(node) = agent
            .node
            .as_ref()
            .filter(|_| rec.source == Source::ApiServer)
        else {
            return Err(ObjectError::NotInNodeMode(format!("{} {name:?}", kind.noun())).into());
        };
        match node
            .objects
            .get(kind, &rec.namespace, name, &rec.uid)
            .await?
        {
            Some(d) => Ok(Some(d)),
            None if optional => Ok(None),
            None => Err(ObjectError::NotFound {
                kind,
                name: name.to_string(),
            }
            .into()),
        }
    }

    fn downward(
        facts: &Facts,
        items: &[DownwardAPIVolumeFile],
        mode: u32,
    ) -> Result<Payload, ProjectError> {
        let spec = facts.pod.spec.as_ref();
        let mut out = Payload::new();
        for i in items {
            let value = if let Some(f) = &i.field_ref {
                env::field_value(facts, &f.field_path).map_err(ProjectError::Field)?
            } else if let Some(r) = &i.resource_field_ref {
                let name = r.container_name.as_deref().unwrap_or("");
                let c = spec
                    .and_then(|s| s.containers.iter().find(|c| c.name == name))
                    .ok_or_else(|| ProjectError::Field(format!("no container {name:?}")))?;
                env::resource_value(facts, c, r).map_err(ProjectError::Field)?
            } else {
                continue;
            };
            out.insert(
                i.path.clone(),
                File {
                    data: value.into_bytes(),
                    mode: i.mode.map_or(mode, |m| m as u32),
                },
            );
        }
        Ok(out)
    }

    /// The files of one projected volume, and when its tokens need renewal.
    async fn payload(
        &mut self,
        agent: &Agent,
        rec: &PodRecord,
        facts: &Facts<'_>,
        v: &Volume,
    ) -> Result<Payload, ProjectError> {
        let mode_of = |m: Option<i32>| m.map_or(DEFAULT_MODE, |m| m as u32);
        if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let optional = s.optional.unwrap_or(false);
            let Some(data) = Self::object(agent, rec, Kind::Secret, &name, optional).await? else {
                return Ok(Payload::new());
            };
            return key_files(
                &data,
                s.items.as_deref(),
                mode_of(s.default_mode),
                optional,
                ProjectError::NoSecretKey,
            );
        }
        if let Some(c) = &v.config_map {
            let optional = c.optional.unwrap_or(false);
            let Some(data) = Self::object(agent, rec, Kind::ConfigMap, &c.name, optional).await?
            else {
                return Ok(Payload::new());
            };
            return key_files(
                &data,
                c.items.as_deref(),
                mode_of(c.default_mode),
                optional,
                ProjectError::NoConfigKey,
            );
        }
        if let Some(d) = &v.downward_api {
            return Self::downward(
                facts,
                d.items.as_deref().unwrap_or(&[]),
                mode_of(d.default_mode),
            );
        }
        let Some(p) = &v.projected else {
            return Ok(Payload::new());
        };
        let mode = mode_of(p.default_mode);
        let mut out = Payload::new();
        for src in p.sources.iter().flatten() {
            let part = self.source(agent, rec, facts, &v.name, src, mode).await?;
            out.extend(part);
        }
        Ok(out)
    }

    /// One source of a projected volume.
    async fn source(
        &mut self,
        agent: &Agent,
        rec: &PodRecord,
        facts: &Facts<'_>,
        volume: &str,
        src: &VolumeProjection,
        mode: u32,
    ) -> Result<Payload, ProjectError> {
        if let Some(s) = &src.secret {
            let optional = s.optional.unwrap_or(false);
            let Some(data) = Self::object(agent, rec, Kind::Secret, &s.name, optional).await?
            else {
                return Ok(Payload::new());
            };
            return key_files(
                &data,
                s.items.as_deref(),
                mode,
                optional,
                ProjectError::NoSecretKey,
            );
        }
        if let Some(c) = &src.config_map {
            let optional = c.optional.unwrap_or(false);
            let Some(data) = Self::object(agent, rec, Kind::ConfigMap, &c.name, optional).await?
            else {
                return Ok(Payload::new());
            };
            return key_files(
                &data,
                c.items.as_deref(),
                mode,
                optional,
                ProjectError::NoConfigKey,
            );
        }
        if let Some(d) = &src.downward_api {
            return Self::downward(facts, d.items.as_deref().unwrap_or(&[]), mode);
        }
        let Some(t) = &src.service_account_token else {
            return Ok(Payload::new());
        };
        let key = (volume.to_string(), t.path.clone());
        let now = jiff::Timestamp::now();
        let current = self
            .tokens
            .get(&key)
            .filter(|tok| tok.refresh_at > now)
            .cloned();
        let token = match current {
            Some(tok) => tok,
            None => {
                let Some(node) = agent
                    .node
                    .as_ref()
                    .filter(|_| rec.source == Source::ApiServer)
                else {
                    return Err(ObjectError::NotInNodeMode("a service account token".into()).into());
                };
                let sa = facts
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .unwrap_or_else(|| "default".into());
                let (value, exp) = node
                    .objects
                    .token(
                        &rec.namespace,
                        &sa,
                        t.audience.iter().cloned().collect(),
                        t.expiration_seconds.unwrap_or(TOKEN_SECONDS),
                        &rec.name,
                        &rec.uid,
                    )
                    .await?;
                let tok = Token {
                    value,
                    refresh_at: refresh_time(now, exp),
                };
                self.tokens.insert(key, tok.clone());
                tok
            }
        };
        Ok(Payload::from([(
            t.path.clone(),
            File {
                data: token.value.into_bytes(),
                mode,
            },
        )]))
    }

    /// Write every projected volume of the pod; returns when the next
    /// token renewal is due, if any.
    pub async fn project(
        &mut self,
        agent: &Agent,
        rec: &PodRecord,
    ) -> Result<Option<jiff::Timestamp>, (String, ProjectError)> {
        let Some(pod) = rec.pod.as_ref() else {
            return Ok(None);
        };
        let cap = super::super::node::register::Capacity::read(agent, 110).allocatable();
        let facts = Facts {
            pod,
            uid: &rec.uid,
            node_name: &agent.cfg.node_name,
            pod_ip: rec.pod_ip.as_deref().unwrap_or(""),
            host_ip: &agent.host_ip,
            node_cpu_milli: cap.cpus * 1000,
            node_memory: cap.memory,
        };
        let gid = fs_group(pod);
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            if !projected_kind(v) {
                continue;
            }
            let files = self
                .payload(agent, rec, &facts, v)
                .await
                .map_err(|e| (v.name.clone(), e))?;
            let target = dir(agent, &rec.uid, v);
            if let Some(parent) = target.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            atomic_writer::write(&target, &files, gid).map_err(|e| (v.name.clone(), e.into()))?;
        }
        Ok(self.tokens.values().map(|t| t.refresh_at).min())
    }
}

/// Does the pod have volumes a [`VolumeTask`] writes?
pub fn has_projected(rec: &PodRecord) -> bool {
    rec.pod
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .is_some_and(|s| s.volumes.iter().flatten().any(projected_kind))
}

/// The objects the pod's volumes read, to follow their changes.
fn sources_of(pod: &Pod) -> Vec<(Kind, String)> {
    let mut out = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(s) = &v.secret {
            out.push((Kind::Secret, s.secret_name.clone().unwrap_or_default()));
        }
        if let Some(c) = &v.config_map {
            out.push((Kind::ConfigMap, c.name.clone()));
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &src.secret {
                out.push((Kind::Secret, s.name.clone()));
            }
            if let Some(c) = &src.config_map {
                out.push((Kind::ConfigMap, c.name.clone()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The task that keeps a pod's projected volumes current.
pub struct VolumeTask {
    handle: tokio::task::JoinHandle<()>,
    /// True once every volume was written once.
    pub ready: watch::Receiver<bool>,
}

impl Drop for VolumeTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl VolumeTask {
    /// Start it: write the volumes (retrying, with a `FailedMount` event
    /// per failure, as kubelet does), tell the worker once they are there,
    /// then rewrite them whenever a source changes or a token is due.
    pub fn start(agent: &Arc<Agent>, uid: &str, tx: mpsc::UnboundedSender<Msg>) -> VolumeTask {
        let (ready_tx, ready) = watch::channel(false);
        let agent = agent.clone();
        let uid = uid.to_string();
        let handle = tokio::spawn(async move {
            let mut projector = Projector::default();
            let mut retry = Duration::from_millis(500);
            loop {
                let Some(rec) = agent.status.record(&uid) else {
                    return;
                };
                // Follow the objects first, so no change is missed.
                let mut changes: Vec<watch::Receiver<_>> = match (&agent.node, &rec.pod) {
                    (Some(n), Some(pod)) if rec.source == Source::ApiServer => sources_of(pod)
                        .into_iter()
                        .map(|(k, name)| n.objects.changes(k, &rec.namespace, &name, &uid))
                        .collect(),
                    _ => Vec::new(),
                };
                for c in &mut changes {
                    c.mark_unchanged();
                }
                let next = match projector.project(&agent, &rec).await {
                    Ok(next) => {
                        retry = Duration::from_millis(500);
                        if !*ready_tx.borrow() {
                            let _ = ready_tx.send(true);
                            let _ = tx.send(Msg::Wake);
                        }
                        next
                    }
                    Err((volume, e)) => {
                        agent.event(
                            &uid,
                            EventKind::Warning,
                            "FailedMount",
                            format!("MountVolume.SetUp failed for volume {volume:?} : {e}"),
                            None,
                        );
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(Duration::from_secs(30));
                        continue;
                    }
                };
                let wait = next.map_or(Duration::from_secs(60), |t| {
                    let ms = t.as_millisecond() - jiff::Timestamp::now().as_millisecond();
                    Duration::from_millis(ms.clamp(1000, 60_000) as u64)
                });
                if changes.is_empty() {
                    tokio::time::sleep(wait).await;
                } else {
                    let any = futures_util::future::select_all(
                        changes.iter_mut().map(|c| Box::pin(c.changed())),
                    );
                    let _ = tokio::time::timeout(wait, any).await;
                }
            }
        });
        VolumeTask { handle, ready }
    }
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

    #[test]
    fn key_files_follow_items_and_modes() {
        let data = BTreeMap::from([
            ("a".to_string(), b"1".to_vec()),
            ("b".into(), b"2".to_vec()),
        ]);
        let all = key_files(&data, None, 0o644, false, ProjectError::NoSecretKey).unwrap();
        assert_eq!(all.len(), 2);
        let items = vec![KeyToPath {
            key: "b".into(),
            path: "dir/b.txt".into(),
            mode: Some(0o400),
        }];
        let some = key_files(&data, Some(&items), 0o644, false, ProjectError::NoSecretKey).unwrap();
        assert_eq!(some["dir/b.txt"].mode, 0o400);
        let missing = vec![KeyToPath {
            key: "zz".into(),
            path: "z".into(),
            mode: None,
        }];
        let e = key_files(
            &data,
            Some(&missing),
            0o644,
            false,
            ProjectError::NoConfigKey,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "configmap references non-existent config key: zz"
        );
        assert!(key_files(
            &data,
            Some(&missing),
            0o644,
            true,
            ProjectError::NoConfigKey
        )
        .unwrap()
        .is_empty());
    }

    #[test]
    fn tokens_renew_at_eighty_percent_or_a_day() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let exp = jiff::Timestamp::from_second(1_000_000 + 3600).unwrap();
        assert_eq!(refresh_time(now, exp).as_second(), 1_000_000 + 2880);
        let year = jiff::Timestamp::from_second(1_000_000 + 365 * 86400).unwrap();
        assert_eq!(refresh_time(now, year).as_second(), 1_000_000 + 86400);
    }
}
