//! The cluster's Services, for the environment variables kubelet gives
//! every container (kubelet's service lister, and "Discovering services"
//! in the Kubernetes docs).
//!
//! Before cluster DNS was common, a container found a service through
//! variables: for a service `redis-primary` with cluster IP 10.0.0.11 and
//! port 6379, `REDIS_PRIMARY_SERVICE_HOST=10.0.0.11`,
//! `REDIS_PRIMARY_SERVICE_PORT=6379`, and the Docker-links style
//! `REDIS_PRIMARY_PORT=tcp://10.0.0.11:6379` with its parts. Every pod
//! still gets them for the `kubernetes` service of the `default`
//! namespace (that is how in-cluster clients find the API server), and,
//! unless `enableServiceLinks: false`, for every service of its own
//! namespace that existed when the container started.
//!
//! The node keeps one watch on all Services (the Node authorizer allows
//! it) and computes the variables from what it holds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::watch;

/// A service as its variables need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Svc {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name, which names its variables (`MY_SVC_SERVICE_HOST`
    /// for `my-svc`).
    pub name: String,
    /// Its `spec.clusterIP`.
    pub cluster_ip: String,
    /// (name, port, protocol), in order.
    pub ports: Vec<(Option<String>, i32, String)>,
}

impl Svc {
    /// A Service with a cluster IP (headless ones have no variables).
    pub fn of(s: &Service) -> Option<Svc> {
        let spec = s.spec.as_ref()?;
        let ip = spec
            .cluster_ip
            .clone()
            .filter(|ip| !ip.is_empty() && ip != "None")?;
        Some(Svc {
            namespace: s.metadata.namespace.clone()?,
            name: s.metadata.name.clone()?,
            cluster_ip: ip,
            ports: spec
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    (
                        p.name.clone().filter(|n| !n.is_empty()),
                        p.port,
                        p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    )
                })
                .collect(),
        })
    }
}

/// The services the watch has seen, by (namespace, name).
#[derive(Default)]
pub struct Services {
    map: Mutex<BTreeMap<(String, String), Svc>>,
    synced: Mutex<Option<watch::Receiver<bool>>>,
}

impl Services {
    /// Start watching every Service.
    pub fn start(self: &Arc<Self>, client: kube::Client) {
        let (tx, rx) = watch::channel(false);
        *self.synced.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
        let me = self.clone();
        tokio::spawn(async move {
            let api: Api<Service> = Api::all(client);
            let mut stream =
                std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
            let mut listing = BTreeMap::new();
            while let Some(ev) = stream.next().await {
                let mut map = me.map.lock().unwrap_or_else(|e| e.into_inner());
                match ev {
                    Ok(watcher::Event::Init) => listing.clear(),
                    Ok(watcher::Event::InitApply(s)) => {
                        if let Some(v) = Svc::of(&s) {
                            listing.insert((v.namespace.clone(), v.name.clone()), v);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        *map = std::mem::take(&mut listing);
                        let _ = tx.send(true);
                    }
                    Ok(watcher::Event::Apply(s)) => {
                        let key = (
                            s.metadata.namespace.clone().unwrap_or_default(),
                            s.metadata.name.clone().unwrap_or_default(),
                        );
                        match Svc::of(&s) {
                            Some(v) => map.insert(key, v),
                            None => map.remove(&key),
                        };
                    }
                    Ok(watcher::Event::Delete(s)) => {
                        map.remove(&(
                            s.metadata.namespace.clone().unwrap_or_default(),
                            s.metadata.name.clone().unwrap_or_default(),
                        ));
                    }
                    Err(e) => tracing::debug!("watch services: {e}"),
                }
            }
        });
    }

    /// The services a container in `namespace` gets variables for, once
    /// the first list is in (or after a few seconds without it).
    pub async fn for_pod(&self, namespace: &str, links: bool) -> Vec<Svc> {
        let rx = self
            .synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(mut rx) = rx {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), rx.wait_for(|s| *s)).await;
        }
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        select(map.values(), namespace, links)
    }
}

/// kubelet's choice: the `kubernetes` service of `default` always, and
/// with service links every service of the pod's namespace (a service of
/// the pod's own namespace wins over the master service of that name).
pub fn select<'a>(all: impl Iterator<Item = &'a Svc>, namespace: &str, links: bool) -> Vec<Svc> {
    let mut chosen: BTreeMap<String, Svc> = BTreeMap::new();
    for s in all {
        if s.namespace == "default" && s.name == "kubernetes" {
            chosen.entry(s.name.clone()).or_insert_with(|| s.clone());
        } else if links && s.namespace == namespace {
            chosen.insert(s.name.clone(), s.clone());
        }
    }
    chosen.into_values().collect()
}

/// The variables of `services`, in kubelet's order and spelling
/// (pkg/kubelet/envvars).
pub fn variables(services: &[Svc]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let up = |s: &str| s.to_uppercase().replace('-', "_");
    for s in services {
        let Some(first) = s.ports.first() else {
            continue;
        };
        let name = up(&s.name);
        out.push((format!("{name}_SERVICE_HOST"), s.cluster_ip.clone()));
        out.push((format!("{name}_SERVICE_PORT"), first.1.to_string()));
        for (pname, port, _) in &s.ports {
            if let Some(p) = pname {
                out.push((format!("{name}_SERVICE_PORT_{}", up(p)), port.to_string()));
            }
        }
        let url =
            |proto: &str, port: i32| format!("{}://{}:{port}", proto.to_lowercase(), s.cluster_ip);
        out.push((format!("{name}_PORT"), url(&first.2, first.1)));
        for (_, port, proto) in &s.ports {
            let p = format!("{name}_PORT_{port}_{}", proto.to_uppercase());
            out.push((p.clone(), url(proto, *port)));
            out.push((format!("{p}_PROTO"), proto.to_lowercase()));
            out.push((format!("{p}_PORT"), port.to_string()));
            out.push((format!("{p}_ADDR"), s.cluster_ip.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str, ports: &[(Option<&str>, i32)]) -> Svc {
        Svc {
            namespace: ns.into(),
            name: name.into(),
            cluster_ip: "10.0.0.11".into(),
            ports: ports
                .iter()
                .map(|(n, p)| (n.map(str::to_string), *p, "TCP".to_string()))
                .collect(),
        }
    }

    #[test]
    fn variables_are_kubelets() {
        let vars = variables(&[svc("a", "redis-primary", &[(Some("db"), 6379), (None, 80)])]);
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("REDIS_PRIMARY_SERVICE_HOST"), Some("10.0.0.11"));
        assert_eq!(get("REDIS_PRIMARY_SERVICE_PORT"), Some("6379"));
        assert_eq!(get("REDIS_PRIMARY_SERVICE_PORT_DB"), Some("6379"));
        assert_eq!(get("REDIS_PRIMARY_PORT"), Some("tcp://10.0.0.11:6379"));
        assert_eq!(get("REDIS_PRIMARY_PORT_80_TCP"), Some("tcp://10.0.0.11:80"));
        assert_eq!(get("REDIS_PRIMARY_PORT_80_TCP_PROTO"), Some("tcp"));
        assert_eq!(get("REDIS_PRIMARY_PORT_80_TCP_ADDR"), Some("10.0.0.11"));
    }

    #[test]
    fn the_master_service_always_others_with_links() {
        let all = [
            svc("default", "kubernetes", &[(Some("https"), 443)]),
            svc("mine", "web", &[(None, 80)]),
            svc("other", "db", &[(None, 5432)]),
        ];
        let names = |v: Vec<Svc>| v.into_iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(
            names(select(all.iter(), "mine", true)),
            ["kubernetes", "web"]
        );
        assert_eq!(names(select(all.iter(), "mine", false)), ["kubernetes"]);
    }
}
