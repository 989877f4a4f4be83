//! The image a container runs: `imagePullPolicy` applied, the image pulled
//! if it must be, its config read from the store.
//!
//! kubelet's rules (pkg/kubelet/images/image_manager.go): `Always` pulls
//! every time, `IfNotPresent` only when the store lacks it, `Never` never
//! and fails with `ErrImageNeverPull`; without a policy, `:latest` or no
//! tag means `Always`, anything else `IfNotPresent`. Each outcome is also
//! an event (`Pulling`, `Pulled`, `Failed`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Container;

use super::super::events::Kind as EventKind;
use super::super::reasons::WaitingReason;
use super::super::Agent;

/// An image in the store, ready to run.
pub struct ImageReady {
    /// The image's record in the store (name, manifest, config, layers).
    pub record: skiff_images::store::ImageRecord,
    /// Its OCI image config: entrypoint, command, environment, user, working
    /// directory.
    pub config: oci_spec::image::ImageConfiguration,
    /// `registry/repository@digest`, as kubelet reports `imageID`.
    pub image_id: String,
}

/// Why the image is not there: the container's waiting reason, and the
/// message kubelet would give.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ImageError {
    /// The container's waiting reason (`ErrImagePull`, `ErrImageNeverPull`,
    /// `InvalidImageName`...).
    pub reason: WaitingReason,
    /// The waiting message, in kubelet's words.
    pub message: String,
}

fn fail(reason: WaitingReason, message: String) -> ImageError {
    ImageError { reason, message }
}

/// Credentials for `registry` from the pod's `imagePullSecrets` (Secrets
/// of type `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`),
/// the first that has an entry for it. A secret that cannot be read is
/// skipped, as kubelet does (it logs and pulls without it).
async fn pull_secret_creds(
    agent: &Agent,
    uid: &str,
    registry: &str,
) -> Option<skiff_images::registry::auth::Credentials> {
    let rec = agent.status.record(uid)?;
    let node = agent.node.as_ref()?;
    let names: Vec<String> = rec
        .pod
        .as_ref()?
        .spec
        .as_ref()?
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect();
    for name in names {
        let kind = super::super::node::objects::Kind::Secret;
        match node.objects.get(kind, &rec.namespace, &name, uid).await {
            Ok(Some(data)) => {
                for key in [".dockerconfigjson", ".dockercfg"] {
                    let found = data.get(key).and_then(|d| {
                        skiff_images::registry::auth::from_docker_config_bytes(d, registry)
                    });
                    if found.is_some() {
                        return found;
                    }
                }
            }
            Ok(None) => tracing::warn!(
                "pod {}: image pull secret {name:?} not found; pulling without it",
                rec.key()
            ),
            Err(e) => tracing::warn!("pod {}: image pull secret {name:?}: {e}", rec.key()),
        }
    }
    None
}

/// Apply `imagePullPolicy`: find the image or pull it.
pub async fn ensure_image(
    agent: &Arc<Agent>,
    uid: &str,
    c: &Container,
    field: &str,
) -> Result<ImageReady, ImageError> {
    use skiff_images::registry::{pull, ClientOptions};
    let image = c.image.clone().unwrap_or_default();
    let reference = skiff_images::Reference::parse(&image).map_err(|e| {
        fail(
            WaitingReason::InvalidImageName,
            format!("Failed to apply default image tag {image:?}: {e}"),
        )
    })?;
    let latest =
        reference.digest.is_none() && reference.tag.as_deref().is_none_or(|t| t == "latest");
    let policy = c
        .image_pull_policy
        .clone()
        .unwrap_or_else(|| if latest { "Always" } else { "IfNotPresent" }.into());
    let insecure = agent.cfg.insecure_registries.clone();
    let certs_dir = agent.cfg.certs_dir.clone();
    let name = reference.to_string();
    let store = agent.store.clone();
    let present = store.find(&name).ok();
    let need_pull = match policy.as_str() {
        "Never" => {
            if present.is_none() {
                return Err(fail(
                    WaitingReason::ErrImageNeverPull,
                    format!("Container image {image:?} is not present with pull policy of Never"),
                ));
            }
            false
        }
        "IfNotPresent" => present.is_none(),
        _ => true,
    };
    let record = if need_pull {
        agent.event(
            uid,
            EventKind::Normal,
            "Pulling",
            format!("Pulling image {image:?}"),
            Some(field),
        );
        let t0 = std::time::Instant::now();
        let creds = pull_secret_creds(agent, uid, &reference.registry).await;
        let r = reference.clone();
        let pulled = tokio::task::spawn_blocking(move || {
            let opts = pull::PullOptions {
                client: ClientOptions {
                    insecure,
                    hosts_dir: Some(certs_dir),
                    creds,
                    docker_config: None,
                    attempts: 2,
                },
                ingest: skiff_images::ingest::IngestOptions {
                    platform: skiff_images::manifest::Platform::host(),
                    limits: Default::default(),
                },
                progress: pull::Progress::Quiet,
                parallel: 3,
            };
            pull::pull(&store, &r, &opts)
        })
        .await
        .map_err(|e| fail(WaitingReason::ErrImagePull, e.to_string()))?;
        match pulled {
            Ok(rec) => {
                agent.event(
                    uid,
                    EventKind::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {:.3}s",
                        t0.elapsed().as_secs_f64()
                    ),
                    Some(field),
                );
                rec
            }
            Err(e) => {
                return Err(fail(
                    WaitingReason::ErrImagePull,
                    format!("Failed to pull image {image:?}: {e}"),
                ))
            }
        }
    } else {
        agent.event(
            uid,
            EventKind::Normal,
            "Pulled",
            format!("Container image {image:?} already present on machine"),
            Some(field),
        );
        present.expect("present when no pull is needed")
    };
    let config: oci_spec::image::ImageConfiguration = agent
        .store
        .read_blob(&record.config)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            fail(
                WaitingReason::ErrImagePull,
                format!("image {image:?}: unreadable config {}", record.config),
            )
        })?;
    // registry/repository@digest, as kubelet reports imageID (a split at
    // ':' would cut a registry's port).
    let repo = format!("{}/{}", reference.registry, reference.repository);
    Ok(ImageReady {
        image_id: format!("{repo}@{}", record.manifest),
        record,
        config,
    })
}
