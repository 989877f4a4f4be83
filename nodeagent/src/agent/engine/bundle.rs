//! A container's bundle: an overlay snapshot of its image as the root
//! filesystem, plus the OCI `config.json` made from the pod spec
//! ([`super::spec`]); and its removal once the container is gone.

use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Container;

use super::super::state::PodRecord;
use super::super::Agent;
use super::image::ImageReady;
use super::{container, sandbox};

/// Where the container writes its termination message: its
/// `terminationMessagePath`, by default `/dev/termination-log` (the API
/// server's default, which kubelet applies to static pods too).
pub fn termination_message_path(c: &Container) -> &str {
    c.termination_message_path
        .as_deref()
        .unwrap_or("/dev/termination-log")
}

/// The file an instance's `terminationMessagePath` is bound to, in its
/// monitor directory.
pub fn termination_log(monitor_dir: &Path) -> std::path::PathBuf {
    monitor_dir.join("termination-log")
}

/// The bundle: an overlay snapshot of the image plus the spec, with the
/// environment and mounts the pod gives the container.
pub async fn prepare_bundle(
    agent: &Arc<Agent>,
    rec: &PodRecord,
    c: &Container,
    image: &ImageReady,
    bundle: &Path,
    monitor_dir: &Path,
    id: &str,
) -> Result<(), String> {
    let pod = rec.pod.as_ref().ok_or("no pod")?;
    // What may fail for want of an API object comes first, before any
    // snapshot is made.
    let facts = super::env::Facts::of(agent, rec, pod);
    let env = super::env::container_env(agent, rec, c, &facts)
        .await
        .map_err(|e| e.to_string())?;
    let binds = super::volumes::binds(agent, rec, c, &env)?;
    // The termination log: an empty file the container may write, world
    // writable as kubelet makes it (the container's user is unknown here).
    let log = termination_log(monitor_dir);
    let with_log = !termination_message_path(c).is_empty();
    if with_log {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(monitor_dir)
            .and_then(|_| std::fs::write(&log, b""))
            .and_then(|_| std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)))
            .map_err(|e| format!("create termination log {}: {e}", log.display()))?;
    }
    // The pod's data (bundles with their runtime specs, which hold the
    // environment; container layers; emptyDirs) is root's only.
    let data = agent.cfg.layout().pod_data(&rec.uid);
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&data);
        let _ = std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700));
    }
    let store = &agent.store;
    let _gc = store.gc_guard().map_err(|e| e.to_string())?;
    let _ = skiff_images::snapshot::release(bundle);
    let rootfs = skiff_images::snapshot::prepare(store, &image.record, bundle, false)
        .map_err(|e| e.to_string())?;
    let etc = sandbox::etc_dir(agent, &rec.uid);
    let parent = sandbox::cgroup_parent(&rec.uid);
    let hostname = std::fs::read_to_string(etc.join("hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| rec.name.clone());
    let ctx = super::spec::PodContext {
        pod,
        uid: &rec.uid,
        hostname: &hostname,
        sandbox_pid: rec.sandbox.as_ref().map_or(0, |s| s.pid),
        host_network: sandbox::host_network(pod),
        env: &env,
        binds: &binds,
        etc_dir: &etc,
        termination_log: with_log.then_some(log.as_path()),
        cgroup_v2: agent.cgroup_v2,
        cgroup_parent: &parent,
    };
    let written = super::spec::container_spec(&ctx, c, &image.config, &rootfs, id)
        .map_err(|e| e.to_string())
        .and_then(|spec| {
            std::fs::write(
                bundle.join("config.json"),
                serde_json::to_vec_pretty(&spec).unwrap_or_default(),
            )
            .map_err(|e| format!("write config.json: {e}"))
        });
    if written.is_err() {
        let _ = skiff_images::snapshot::release(bundle);
        return written;
    }
    let _ = store.add_bundle_ref(
        &std::path::absolute(bundle).unwrap_or(bundle.to_path_buf()),
        &image.record.chain,
    );
    Ok(())
}

/// Remove an instance's runtime state, bundle and monitor directory.
pub async fn cleanup_instance(agent: &Arc<Agent>, id: &str, bundle: &Path, mon_dir: &Path) {
    container::delete(agent, id).await;
    if let Err(e) = skiff_images::snapshot::release(bundle) {
        // Something (a probe's `skiff exec` being killed) may still hold
        // the rootfs for a moment: detach it instead.
        tracing::debug!("release {}: {e}; detaching", bundle.display());
        let _ = nix::mount::umount2(&bundle.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        let _ = skiff_images::snapshot::release(bundle);
    }
    agent.store.remove_bundle_ref(bundle);
    let _ = std::fs::remove_dir_all(mon_dir);
}
