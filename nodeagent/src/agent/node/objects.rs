//! The Secrets, ConfigMaps and service-account tokens a node's pods use
//! (kubelet's pkg/kubelet/secret, pkg/kubelet/configmap and
//! pkg/kubelet/token managers).
//!
//! A pod names Secrets and ConfigMaps in its volumes and environment; the
//! node fetches them from the API server, and only those: the Node
//! authorizer lets a node read a Secret or ConfigMap only while a pod
//! bound to it refers to it. Volumes built from them must follow their
//! changes, so kubelet (by default) *watches* each object it uses, one
//! watch per object with a field selector on its name; the watch is
//! dropped when no pod uses the object any more. This module does the
//! same: [`Objects::get`] registers a pod's use of an object, starts its
//! watch on first use, and waits for the first answer; [`Objects::changes`]
//! says when it changes; [`Objects::release`] ends a pod's uses.
//!
//! Service-account tokens come from the TokenRequest API
//! (`POST .../serviceaccounts/NAME/token`): a short-lived JWT for given
//! audiences, *bound* to the pod (`boundObjectRef`), so that it stops
//! being valid when the pod is deleted. The NodeRestriction admission
//! plugin lets a node ask only for tokens bound to its own pods.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::PostParams;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::watch;

/// Which kind of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A `v1` Secret.
    Secret,
    /// A `v1` ConfigMap.
    ConfigMap,
}

impl Kind {
    /// The name kubelet's messages use (`secret "x" not found`).
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::ConfigMap => "configmap",
        }
    }
}

/// An object's keys and values.
pub type Data = BTreeMap<String, Vec<u8>>;

/// What the watch of one object knows.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// No answer yet.
    Unknown,
    /// The API server says there is no such object.
    Missing,
    /// The object exists, with these keys and values.
    Present(Data),
}

type Key = (Kind, String, String);

struct Entry {
    state: watch::Receiver<State>,
    task: tokio::task::JoinHandle<()>,
    users: BTreeSet<String>,
}

/// Errors of fetching what a pod refers to, in kubelet's words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObjectError {
    /// The object does not exist (and the reference is not optional).
    #[error("{} {name:?} not found", kind.noun())]
    NotFound {
        /// Secret or ConfigMap.
        kind: Kind,
        /// The object's name.
        name: String,
    },
    /// The object's watch gave no first answer within 15 s.
    #[error("failed to sync {} cache: timed out waiting for the condition", kind.noun())]
    Timeout {
        /// Secret or ConfigMap.
        kind: Kind,
    },
    /// A static pod refers to an API object (`secret "x"`, as named here),
    /// which only pods from the API server may do.
    #[error("{0} needs node mode (--kubeconfig): a static pod cannot refer to API objects")]
    NotInNodeMode(String),
    /// A TokenRequest for a service-account token failed.
    #[error("request a token for service account {namespace}/{name}: {message}")]
    Token {
        /// The service account's namespace.
        namespace: String,
        /// The service account's name.
        name: String,
        /// The API server's answer.
        message: String,
    },
}

/// The objects in use, with their watches.
pub struct Objects {
    /// For token requests.
    client: kube::Client,
    /// For the watches (see [`super::NodeHandle::watch_client`]).
    watch_client: kube::Client,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// How long a first answer may take before the pod is told to wait.
const FIRST_ANSWER: Duration = Duration::from_secs(15);

impl Objects {
    /// Nothing watched yet: a watch starts when a pod first uses an object.
    pub fn new(client: kube::Client, watch_client: kube::Client) -> Objects {
        Objects {
            client,
            watch_client,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pod `user` uses object `kind` `namespace/name`: its data, or `None`
    /// when it does not exist.
    pub async fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        user: &str,
    ) -> Result<Option<Data>, ObjectError> {
        let mut rx = self.changes(kind, namespace, name, user);
        let first = tokio::time::timeout(FIRST_ANSWER, rx.wait_for(|s| *s != State::Unknown)).await;
        match first {
            Ok(Ok(s)) => Ok(match &*s {
                State::Present(d) => Some(d.clone()),
                _ => None,
            }),
            _ => Err(ObjectError::Timeout { kind }),
        }
    }

    /// Like [`Objects::get`], but a missing object is an error.
    pub async fn require(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        user: &str,
    ) -> Result<Data, ObjectError> {
        self.get(kind, namespace, name, user)
            .await?
            .ok_or_else(|| ObjectError::NotFound {
                kind,
                name: name.to_string(),
            })
    }

    /// The object's state as it changes (its watch started if need be),
    /// registering pod `user`'s use of it.
    pub fn changes(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        user: &str,
    ) -> watch::Receiver<State> {
        let key = (kind, namespace.to_string(), name.to_string());
        let mut entries = self.entries();
        let entry = entries.entry(key).or_insert_with(|| {
            let (tx, rx) = watch::channel(State::Unknown);
            let task = tokio::spawn(watch_one(
                self.watch_client.clone(),
                kind,
                namespace.to_string(),
                name.to_string(),
                tx,
            ));
            Entry {
                state: rx,
                task,
                users: BTreeSet::new(),
            }
        });
        entry.users.insert(user.to_string());
        entry.state.clone()
    }

    /// Pod `user` uses nothing any more; watches nobody needs end.
    pub fn release(&self, user: &str) {
        self.entries().retain(|_, e| {
            e.users.remove(user);
            if e.users.is_empty() {
                e.task.abort();
                false
            } else {
                true
            }
        });
    }

    /// How many objects are watched (for `/metrics` and tests).
    pub fn watched(&self) -> usize {
        self.entries().len()
    }

    /// A token for service account `namespace/name`, for `audiences`,
    /// valid `seconds`, bound to pod `pod_name` (`pod_uid`). Returns the
    /// token and when it expires.
    pub async fn token(
        &self,
        namespace: &str,
        name: &str,
        audiences: Vec<String>,
        seconds: i64,
        pod_name: &str,
        pod_uid: &str,
    ) -> Result<(String, jiff::Timestamp), ObjectError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences,
                expiration_seconds: Some(seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod_name.to_string()),
                    uid: Some(pod_uid.to_string()),
                }),
            },
            ..Default::default()
        };
        let fail = |message: String| ObjectError::Token {
            namespace: namespace.to_string(),
            name: name.to_string(),
            message,
        };
        let got: TokenRequest = api
            .create_subresource("token", name, &PostParams::default(), &req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let st = got
            .status
            .ok_or_else(|| fail("no status in the answer".into()))?;
        Ok((st.token, st.expiration_timestamp.0))
    }
}

/// Watch one object by name, publishing what it holds.
async fn watch_one(
    client: kube::Client,
    kind: Kind,
    namespace: String,
    name: String,
    tx: watch::Sender<State>,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    match kind {
        Kind::Secret => {
            let api: Api<Secret> = Api::namespaced(client, &namespace);
            follow(watcher(api, config), &tx, secret_data).await
        }
        Kind::ConfigMap => {
            let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
            follow(watcher(api, config), &tx, configmap_data).await
        }
    }
}

async fn follow<K, S>(stream: S, tx: &watch::Sender<State>, data: fn(&K) -> Data)
where
    S: futures_util::Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
{
    let mut stream = std::pin::pin!(stream.default_backoff());
    let mut listed: Option<Data> = None;
    while let Some(ev) = stream.next().await {
        let state = match ev {
            Ok(watcher::Event::Init) => {
                listed = None;
                continue;
            }
            Ok(watcher::Event::InitApply(o)) => {
                listed = Some(data(&o));
                continue;
            }
            Ok(watcher::Event::InitDone) => match listed.take() {
                Some(d) => State::Present(d),
                None => State::Missing,
            },
            Ok(watcher::Event::Apply(o)) => State::Present(data(&o)),
            Ok(watcher::Event::Delete(_)) => State::Missing,
            Err(e) => {
                tracing::debug!("watch: {e}");
                continue;
            }
        };
        tx.send_if_modified(|s| {
            if *s == state {
                false
            } else {
                *s = state;
                true
            }
        });
    }
}

/// A Secret's keys and (decoded) values.
pub fn secret_data(s: &Secret) -> Data {
    let mut d: Data = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        d.insert(k.clone(), v.clone().into_bytes());
    }
    d
}

/// A ConfigMap's keys and values, text and binary.
pub fn configmap_data(c: &ConfigMap) -> Data {
    let mut d: Data = c
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in c.binary_data.iter().flatten() {
        d.insert(k.clone(), v.0.clone());
    }
    d
}

/// Object `name` of `kind` in the namespace of pod `rec`, as the pod sees
/// it: fetched (and then watched) for pods from the API server only; `None`
/// when it is missing and the pod's reference is `optional`. Shared by env
/// (`secretKeyRef`, `envFrom`) and projected volumes.
pub async fn for_pod(
    agent: &crate::agent::Agent,
    rec: &crate::agent::state::PodRecord,
    kind: Kind,
    name: &str,
    optional: bool,
) -> Result<Option<Data>, ObjectError> {
    let Some(node) = agent
        .node
        .as_ref()
        .filter(|_| rec.source == crate::agent::sources::Source::ApiServer)
    else {
        return Err(ObjectError::NotInNodeMode(format!(
            "{} {name:?}",
            kind.noun()
        )));
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
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn data_of_secrets_and_config_maps() {
        let s = Secret {
            data: Some(BTreeMap::from([("a".into(), ByteString(b"1".to_vec()))])),
            ..Default::default()
        };
        assert_eq!(secret_data(&s)["a"], b"1");
        let c = ConfigMap {
            data: Some(BTreeMap::from([("t".into(), "x".into())])),
            binary_data: Some(BTreeMap::from([("b".into(), ByteString(vec![0, 1]))])),
            ..Default::default()
        };
        let d = configmap_data(&c);
        assert_eq!(
            (d["t"].as_slice(), d["b"].as_slice()),
            (&b"x"[..], &[0u8, 1][..])
        );
        assert_eq!(
            ObjectError::NotFound {
                kind: Kind::Secret,
                name: "db".into()
            }
            .to_string(),
            "secret \"db\" not found"
        );
    }
}
