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

/// The bundle: an overlay snapshot of the image plus the spec.
pub async fn prepare_bundle(
    agent: &Arc<Agent>,
    rec: &PodRecord,
    c: &Container,
    image: &ImageReady,
    bundle: &Path,
    id: &str,
) -> Result<(), String> {
    let store = &agent.store;
    let _gc = store.gc_guard().map_err(|e| e.to_string())?;
    let _ = skiff_images::snapshot::release(bundle);
    let rootfs = skiff_images::snapshot::prepare(store, &image.record, bundle, false)
        .map_err(|e| e.to_string())?;
    let pod = rec.pod.as_ref().ok_or("no pod")?;
    let volumes = sandbox::volume_dirs(agent, rec);
    let etc = sandbox::etc_dir(agent, &rec.uid);
    let parent = sandbox::cgroup_parent(&rec.uid);
    let ctx = super::spec::PodContext {
        pod,
        uid: &rec.uid,
        node_name: &agent.cfg.node_name,
        pod_ip: rec.pod_ip.as_deref().unwrap_or(""),
        host_ip: &agent.host_ip,
        sandbox_pid: rec.sandbox.as_ref().map_or(0, |s| s.pid),
        host_network: sandbox::host_network(pod),
        volumes: &volumes,
        etc_dir: &etc,
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
