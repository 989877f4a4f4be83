//! Projected volumes: `secret`, `configMap`, `downwardAPI` and `projected`
//! (kubelet's pkg/volume/{secret,configmap,downwardapi,projected}, and
//! "Projected Volumes" in the Kubernetes docs).
//!
//! Their files come from somewhere else: the API server's Secrets and
//! ConfigMaps, the pod's own fields, service-account tokens from the
//! TokenRequest API. A [`VolumeTask`] per pod writes them before its
//! containers start, and again whenever a source changes (a watched
//! object, a token at 80% of its life), each time through
//! [`super::atomic_writer`], so a container sees one version or the next,
//! never a mix.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, Volume, VolumeProjection};
use tokio::sync::{mpsc, watch};

use super::super::events::Kind as EventKind;
use super::super::node::objects::{self, Kind, ObjectError};
use super::super::sources::Source;
use super::super::state::PodRecord;
use super::super::Agent;
use super::atomic_writer::{self, File, Payload};
use super::env::{self, Facts};
use super::Msg;

/// Mode of projected files when the volume does not say (0644).
const DEFAULT_MODE: u32 = 0o644;
/// kubelet's service-account token lifetime default.
const TOKEN_SECONDS: i64 = 3600;
use super::volumes::{dir, fs_group, projected_kind};

/// Errors of building a projected volume, in kubelet's words.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// A Secret or ConfigMap could not be had, or a service-account token
    /// requested.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// An `items` entry names a key the ConfigMap lacks; holds the key.
    #[error("configmap references non-existent config key: {0}")]
    NoConfigKey(String),
    /// An `items` entry names a key the Secret lacks; holds the key.
    #[error("references non-existent secret key: {0}")]
    NoSecretKey(String),
    /// A downward API `fieldRef` or `resourceFieldRef` that cannot be read.
    #[error("{0}")]
    Field(String),
    /// The files could not be written into the volume.
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
        Ok(objects::for_pod(agent, rec, kind, name, optional).await?)
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
        let facts = Facts::of(agent, rec, pod);
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
                // Boxed, as the pod worker's steps are: the token request's
                // state is needed only while it runs, not for the minutes
                // this task then waits.
                let next = match Box::pin(projector.project(&agent, &rec)).await {
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
                        drop(rec);
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(Duration::from_secs(30));
                        continue;
                    }
                };
                // The pod's record is read afresh each pass, not kept while
                // waiting.
                drop(rec);
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
