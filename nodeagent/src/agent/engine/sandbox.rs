//! The pod sandbox: what all of a pod's containers share.
//!
//! As in the CRI (containerd's `RunPodSandbox`), a sandbox is made in this
//! order and taken down in reverse:
//! 1. a network namespace, pinned to a file ([`crate::netns`]);
//! 2. CNI ADD on it, which gives the pod its IP ([`crate::cni`]);
//! 3. the pause container, joining that network namespace and making the
//!    IPC and UTS namespaces the app containers will join;
//! 4. the pod's volumes (`emptyDir` directories or tmpfs, `hostPath`
//!    checks) and its `/etc/hosts` and `/etc/hostname`.
//!
//! A `hostNetwork` pod skips 1 and 2 and shares the agent's network and
//! UTS namespaces.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::super::state::{PodRecord, Sandbox};
use super::super::Agent;
use super::container::{self, Launch};
use crate::cni::Attachment;
use crate::quantity;

pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The pod's cgroup parent, below which every container's cgroup goes.
pub fn cgroup_parent(uid: &str) -> String {
    format!("/skiff-agent/pod{uid}")
}

pub fn sandbox_id(rec: &PodRecord) -> String {
    format!(
        "k8s_POD_{}_{}_{}{}_{}",
        rec.name,
        rec.namespace,
        &rec.uid[..8],
        &rec.spec_hash[..4],
        rec.sandbox_count
    )
}

pub fn attachment(rec: &PodRecord, netns: &Path, id: &str) -> Attachment {
    Attachment {
        container_id: id.to_string(),
        netns: netns.to_path_buf(),
        pod_namespace: rec.namespace.clone(),
        pod_name: rec.name.clone(),
        pod_uid: rec.uid.clone(),
    }
}

/// Host directories of the pod's volumes, by name.
pub fn volume_dirs(agent: &Agent, rec: &PodRecord) -> Vec<(String, PathBuf)> {
    let Some(spec) = rec.pod.as_ref().and_then(|p| p.spec.as_ref()) else {
        return Vec::new();
    };
    spec.volumes
        .iter()
        .flatten()
        .map(|v| {
            let dir = match &v.host_path {
                Some(h) => PathBuf::from(&h.path),
                None => volumes_root(agent, &rec.uid).join(&v.name),
            };
            (v.name.clone(), dir)
        })
        .collect()
}

fn volumes_root(agent: &Agent, uid: &str) -> PathBuf {
    agent.cfg.layout().volumes_dir(uid)
}

pub fn etc_dir(agent: &Agent, uid: &str) -> PathBuf {
    agent.cfg.layout().etc_dir(uid)
}

/// The sandbox about to be made for `rec` (its `sandbox_count` already
/// counts it): its id and paths, nothing made yet. It is recorded before
/// [`create`] starts, see [`Sandbox::complete`].
pub fn plan(agent: &Agent, rec: &PodRecord) -> Sandbox {
    let layout = agent.cfg.layout();
    let host = rec.pod.as_ref().is_some_and(host_network);
    Sandbox {
        id: sandbox_id(rec),
        dir: layout.sandbox_dir(&rec.uid),
        netns: (!host).then(|| layout.netns(&rec.uid)),
        pid: 0,
        monitor_pid: 0,
        cni_result: None,
        complete: false,
    }
}

/// Make the planned sandbox; on failure everything made so far is undone.
pub async fn create(agent: &Arc<Agent>, rec: &PodRecord, plan: Sandbox) -> Result<Sandbox, String> {
    rec.pod.as_ref().ok_or("no pod")?;
    let mut sb = plan;
    let id = sb.id.clone();
    let dir = sb.dir.clone();
    let made = async {
        if let Some(path) = sb.netns.clone() {
            let cni = agent
                .cni
                .as_ref()
                .map_err(|e| format!("network not ready: {e}"))?;
            crate::netns::create(&path).map_err(|e| e.to_string())?;
            let result = cni
                .add(&attachment(rec, &path, &id))
                .await
                .map_err(|e| format!("failed to set up pod network: {e}"))?;
            sb.cni_result = Some(result);
        }
        let ip = match &sb.cni_result {
            Some(r) => crate::cni::pod_ip(r).unwrap_or_default(),
            None => agent.host_ip.clone(),
        };
        setup_volumes(agent, rec, &ip)?;
        write_bundle(agent, &dir, &rec.name, sb.netns.as_deref(), &id, &rec.uid)?;
        let (started, monitor_pid) = container::launch(
            agent,
            Launch {
                id: &id,
                bundle: &dir,
                dir: &dir.join("monitor"),
                log: None,
            },
        )
        .await
        .map_err(|e| format!("start pause container: {e}"))?;
        sb.pid = started.pid;
        sb.monitor_pid = monitor_pid;
        sb.complete = true;
        Ok::<(), String>(())
    }
    .await;
    match made {
        Ok(()) => Ok(sb),
        Err(e) => {
            remove(agent, rec, &sb).await;
            Err(e)
        }
    }
}

fn write_bundle(
    agent: &Agent,
    dir: &Path,
    hostname: &str,
    netns: Option<&Path>,
    id: &str,
    uid: &str,
) -> Result<(), String> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| format!("{p}: {e}")
    };
    let rootfs = dir.join("rootfs");
    for d in ["proc", "dev"] {
        std::fs::create_dir_all(rootfs.join(d)).map_err(io(&rootfs))?;
    }
    std::fs::write(rootfs.join("pause"), b"").map_err(io(&rootfs))?;
    let spec = super::spec::sandbox_spec(
        &agent.cfg.exe,
        hostname,
        netns,
        &format!("{}/{id}", cgroup_parent(uid)),
    );
    let cfg = dir.join("config.json");
    std::fs::write(&cfg, serde_json::to_vec_pretty(&spec).unwrap_or_default()).map_err(io(&cfg))
}

/// Make emptyDir volumes and check hostPath ones, and write the pod's
/// /etc/hosts and /etc/hostname.
fn setup_volumes(agent: &Agent, rec: &PodRecord, ip: &str) -> Result<(), String> {
    let spec = rec
        .pod
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .ok_or("no spec")?;
    let root = volumes_root(agent, &rec.uid);
    for v in spec.volumes.iter().flatten() {
        if let Some(e) = &v.empty_dir {
            let dir = root.join(&v.name);
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
            } else {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
            }
        }
        if let Some(h) = &v.host_path {
            host_path(
                &v.name,
                Path::new(&h.path),
                h.type_.as_deref().unwrap_or(""),
            )?;
        }
    }
    let etc = etc_dir(agent, &rec.uid);
    std::fs::create_dir_all(&etc).map_err(|e| format!("create {}: {e}", etc.display()))?;
    let mut hosts = String::from(
        "# Kubernetes-managed hosts file (skiff-agent).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    if !ip.is_empty() {
        hosts.push_str(&format!("{ip}\t{}\n", rec.name));
    }
    std::fs::write(etc.join("hosts"), hosts).map_err(|e| format!("write hosts: {e}"))?;
    std::fs::write(etc.join("hostname"), format!("{}\n", rec.name))
        .map_err(|e| format!("write hostname: {e}"))?;
    Ok(())
}

/// kubelet's hostPath `type` checks.
fn host_path(name: &str, p: &Path, t: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(p);
    let fail = |what: &str| Err(format!("volume {name:?}: hostPath {} {what}", p.display()));
    match t {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(p)
                    .map_err(|e| format!("volume {name:?}: create {}: {e}", p.display()))?;
                return Ok(());
            }
            if meta.as_ref().is_ok_and(|m| m.is_dir()) {
                Ok(())
            } else {
                fail("is not a directory")
            }
        }
        "Directory" => {
            if meta.is_ok_and(|m| m.is_dir()) {
                Ok(())
            } else {
                fail("is not a directory")
            }
        }
        "FileOrCreate" => {
            if meta.is_err() {
                std::fs::write(p, b"")
                    .map_err(|e| format!("volume {name:?}: create {}: {e}", p.display()))?;
                return Ok(());
            }
            if meta.as_ref().is_ok_and(|m| m.is_file()) {
                Ok(())
            } else {
                fail("is not a file")
            }
        }
        "File" => {
            if meta.is_ok_and(|m| m.is_file()) {
                Ok(())
            } else {
                fail("is not a file")
            }
        }
        "Socket" => {
            if meta.is_ok_and(|m| m.file_type().is_socket()) {
                Ok(())
            } else {
                fail("is not a socket")
            }
        }
        "CharDevice" => {
            if meta.is_ok_and(|m| m.file_type().is_char_device()) {
                Ok(())
            } else {
                fail("is not a character device")
            }
        }
        "BlockDevice" => {
            if meta.is_ok_and(|m| m.file_type().is_block_device()) {
                Ok(())
            } else {
                fail("is not a block device")
            }
        }
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

/// Stop the pause container and take down network and volumes. Safe to
/// repeat; every step tolerates what is already gone.
pub async fn remove(agent: &Arc<Agent>, rec: &PodRecord, sb: &Sandbox) {
    // An incomplete sandbox may have a pause container whose pids were
    // never recorded: its monitor wrote its own.
    let monitor_pid = if sb.monitor_pid > 0 {
        sb.monitor_pid
    } else {
        crate::monitor::read_pid(&sb.dir.join("monitor")).unwrap_or(0)
    };
    if sb.pid > 0 || monitor_pid > 0 || !sb.complete {
        container::signal(agent, &sb.id, "KILL").await;
        for _ in 0..200 {
            if monitor_pid <= 0
                || nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor_pid), None).is_err()
            {
                break;
            }
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(monitor_pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    container::delete(agent, &sb.id).await;
    if let Some(ns) = &sb.netns {
        if let Ok(cni) = &agent.cni {
            if let Err(e) = cni
                .del(&attachment(rec, ns, &sb.id), sb.cni_result.as_ref())
                .await
            {
                tracing::warn!("pod {}: CNI DEL: {e}", rec.key());
                agent.event(
                    &rec.uid,
                    super::super::events::Kind::Warning,
                    "FailedKillPod",
                    format!("CNI DEL: {e}"),
                    None,
                );
            }
        }
        if let Err(e) = crate::netns::remove(ns) {
            tracing::warn!("pod {}: {e}", rec.key());
        }
    }
    let _ = std::fs::remove_dir_all(&sb.dir);
}

/// Remove the pod's volumes and cgroup parent (after every container).
pub fn remove_volumes(agent: &Agent, rec: &PodRecord) {
    let root = volumes_root(agent, &rec.uid);
    if let Ok(rd) = std::fs::read_dir(&root) {
        for e in rd.flatten() {
            let p = e.path();
            if is_mount(&p) {
                let _ = umount2(&p, MntFlags::MNT_DETACH);
            }
        }
    }
    let _ = std::fs::remove_dir_all(agent.cfg.data_dir.join("pods").join(&rec.uid));
    if let Ok(paths) =
        skiff_runtime::cgroups::resolve_paths(Some(Path::new(&cgroup_parent(&rec.uid))), "pod")
    {
        let _ = skiff_runtime::cgroups::remove(&paths);
    }
}
