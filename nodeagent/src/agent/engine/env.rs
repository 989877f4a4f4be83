//! A container's environment, as kubelet builds it
//! (`makeEnvironmentVariables` in pkg/kubelet/kubelet_pods.go, and "Define
//! environment variables for a container" in the Kubernetes docs).
//!
//! In order, later ones winning:
//! 1. the service variables ([`crate::agent::node::services`]): the
//!    `kubernetes` service's always, every service of the pod's namespace
//!    with `enableServiceLinks` (the default);
//! 2. `envFrom`: every key of a ConfigMap or Secret, with an optional
//!    prefix (keys that are not valid variable names are skipped);
//! 3. `env`, one by one: a `value` (in which `$(NAME)` expands to a
//!    variable defined before it, `$$` escapes), or a `valueFrom`: a field
//!    of the pod (`fieldRef`), a resource of a container (`resourceFieldRef`),
//!    or one key of a ConfigMap or Secret.
//!
//! The image's own environment comes first of all, in the runtime spec.
//! A reference to a ConfigMap, Secret or key that does not exist keeps the
//! container from starting (`CreateContainerConfigError`) unless it is
//! `optional`.

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};

use super::super::node::objects::{Kind, ObjectError};
use super::super::node::services;
use super::super::state::PodRecord;
use super::super::Agent;
use crate::quantity;

/// Why an environment cannot be made, in kubelet's words.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A ConfigMap or Secret the container refers to could not be had.
    #[error("couldn't get {what} {namespace}/{name}: {source}")]
    Get {
        /// `configMap` or `secret`, as kubelet's message says.
        what: &'static str,
        /// The object's namespace (the pod's).
        namespace: String,
        /// The object's name.
        name: String,
        /// Why not: not found, a static pod, no answer in time.
        #[source]
        source: ObjectError,
    },
    /// The object exists, but lacks the key a `configMapKeyRef` or
    /// `secretKeyRef` names (and the reference is not optional).
    #[error("couldn't find key {key} in {what} {namespace}/{name}")]
    NoKey {
        /// `ConfigMap` or `Secret`.
        what: &'static str,
        /// The missing key.
        key: String,
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
    },
    /// A `fieldRef` or `resourceFieldRef` that cannot be read (an unsupported
    /// path, an unknown container...).
    #[error("{0}")]
    Field(String),
}

/// What a fieldRef or resourceFieldRef reads, besides the pod itself.
pub struct Facts<'a> {
    /// The pod, for the `metadata.*` and `spec.*` paths.
    pub pod: &'a Pod,
    /// The pod's uid (`metadata.uid`), which a static pod's manifest need not
    /// carry.
    pub uid: &'a str,
    /// The node's name (`spec.nodeName`).
    pub node_name: &'a str,
    /// The pod's IP (`status.podIP`); empty while the pod has none.
    pub pod_ip: &'a str,
    /// The node's address (`status.hostIP`).
    pub host_ip: &'a str,
    /// The node's allocatable cpu (millicores) and memory (bytes): the
    /// value of a limit the container does not set.
    pub node_cpu_milli: u64,
    /// The node's allocatable memory, in bytes (see `node_cpu_milli`).
    pub node_memory: u64,
}

impl<'a> Facts<'a> {
    /// The facts of pod `pod` (recorded as `rec`) on this node, with the
    /// node's allocatable cpu and memory read now.
    pub fn of(
        agent: &'a crate::agent::Agent,
        rec: &'a crate::agent::state::PodRecord,
        pod: &'a Pod,
    ) -> Facts<'a> {
        let cap = crate::agent::node::register::Capacity::read(agent, 110).allocatable();
        Facts {
            pod,
            uid: &rec.uid,
            node_name: &agent.cfg.node_name,
            pod_ip: rec.pod_ip.as_deref().unwrap_or(""),
            host_ip: &agent.host_ip,
            node_cpu_milli: cap.cpus * 1000,
            node_memory: cap.memory,
        }
    }
}

/// `metadata.labels['k']` and `metadata.annotations['k']`: the map and key.
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (map, rest) = path.split_once("['")?;
    Some((map, rest.strip_suffix("']")?))
}

/// The value a `fieldRef` names (env and downward API volumes).
pub fn field_value(f: &Facts, path: &str) -> Result<String, String> {
    let m = &f.pod.metadata;
    let spec = f.pod.spec.as_ref();
    let kv = |map: Option<&std::collections::BTreeMap<String, String>>| -> String {
        // kubelet's format: sorted key="value" lines, values quoted.
        map.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", go_quote(v)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => f.uid.to_string(),
        "metadata.labels" => kv(m.labels.as_ref()),
        "metadata.annotations" => kv(m.annotations.as_ref()),
        "spec.nodeName" => f.node_name.to_string(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => f.pod_ip.to_string(),
        "status.hostIP" => f.host_ip.to_string(),
        p => match subscript(p) {
            Some(("metadata.labels", k)) => m
                .labels
                .as_ref()
                .and_then(|l| l.get(k).cloned())
                .unwrap_or_default(),
            Some(("metadata.annotations", k)) => m
                .annotations
                .as_ref()
                .and_then(|l| l.get(k).cloned())
                .unwrap_or_default(),
            _ => return Err(format!("unsupported fieldPath: {p}")),
        },
    })
}

/// A string quoted as Go's `%q` does (for the labels file).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value a `resourceFieldRef` names: the container's request or limit
/// (a limit it does not set is the node's allocatable), divided by the
/// divisor and rounded up.
pub fn resource_value(
    f: &Facts,
    c: &Container,
    r: &ResourceFieldSelector,
) -> Result<String, String> {
    let (kind, res) = r
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource: {}", r.resource))?;
    let q = c.resources.as_ref().and_then(|rs| {
        let m = if kind == "limits" {
            rs.limits.as_ref()
        } else {
            rs.requests.as_ref()
        };
        m.and_then(|m| m.get(res)).map(|q| q.0.clone())
    });
    let divisor = r.divisor.as_ref().map(|d| d.0.clone());
    let bad = |e: quantity::QuantityError| e.to_string();
    match res {
        "cpu" => {
            let v = match q {
                Some(q) => quantity::millicores(&q).map_err(bad)?,
                None if kind == "limits" => f.node_cpu_milli,
                None => 0,
            };
            let d = quantity::millicores(divisor.as_deref().unwrap_or("1"))
                .map_err(bad)?
                .max(1);
            Ok(v.div_ceil(d).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let v = match q {
                Some(q) => quantity::bytes(&q).map_err(bad)?,
                None if kind == "limits" && res == "memory" => f.node_memory,
                None => 0,
            };
            let d = quantity::bytes(divisor.as_deref().unwrap_or("1"))
                .map_err(bad)?
                .max(1);
            Ok(v.div_ceil(d).to_string())
        }
        _ => Err(format!("unsupported container resource: {}", r.resource)),
    }
}

/// `$(VAR)` references to the variables in `env` (`$$` escapes; unknown
/// references stay as written).
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let lookup = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(j) => {
                    let name = &inner[..j];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(&format!("$({name})")),
                    }
                    rest = &inner[j + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A C identifier-ish name, as envFrom requires of keys.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Set `k` in `env`, replacing an earlier value.
fn set(env: &mut Vec<(String, String)>, k: String, v: String) {
    env.retain(|(n, _)| *n != k);
    env.push((k, v));
}

/// One key of a ConfigMap or Secret the pod refers to.
async fn object(
    agent: &Agent,
    rec: &PodRecord,
    kind: Kind,
    name: &str,
    optional: bool,
) -> Result<Option<super::super::node::objects::Data>, EnvError> {
    let what = match kind {
        Kind::Secret => "secret",
        Kind::ConfigMap => "configMap",
    };
    let fail = |source| EnvError::Get {
        what,
        namespace: rec.namespace.clone(),
        name: name.to_string(),
        source,
    };
    super::super::node::objects::for_pod(agent, rec, kind, name, optional)
        .await
        .map_err(fail)
}

/// The variables the pod gives container `c` (after the image's).
pub async fn container_env(
    agent: &Agent,
    rec: &PodRecord,
    c: &Container,
    facts: &Facts<'_>,
) -> Result<Vec<(String, String)>, EnvError> {
    let pod = facts.pod;
    let spec = pod.spec.as_ref();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut service_env = Vec::new();
    if let Some(node) = &agent.node {
        let links = spec.and_then(|s| s.enable_service_links).unwrap_or(true);
        let svcs = node.services.for_pod(&rec.namespace, links).await;
        service_env = services::variables(&svcs);
    }
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = if let Some(r) = &from.config_map_ref {
            (Kind::ConfigMap, r.name.clone(), r.optional.unwrap_or(false))
        } else if let Some(r) = &from.secret_ref {
            (Kind::Secret, r.name.clone(), r.optional.unwrap_or(false))
        } else {
            continue;
        };
        let Some(data) = object(agent, rec, kind, &name, optional).await? else {
            continue;
        };
        for (k, v) in &data {
            let key = format!("{prefix}{k}");
            if valid_name(&key) {
                set(&mut env, key, String::from_utf8_lossy(v).into_owned());
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = match &e.value_from {
            None => {
                let mut scope = service_env.clone();
                scope.extend(env.iter().cloned());
                expand(e.value.as_deref().unwrap_or(""), &scope)
            }
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    field_value(facts, &f.field_path).map_err(EnvError::Field)?
                } else if let Some(r) = &from.resource_field_ref {
                    let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                        Some(n) => spec
                            .and_then(|s| s.containers.iter().find(|x| x.name == n))
                            .ok_or_else(|| EnvError::Field(format!("no container {n:?}")))?,
                        None => c,
                    };
                    resource_value(facts, target, r).map_err(EnvError::Field)?
                } else if let Some(r) = &from.config_map_key_ref {
                    key_of(agent, rec, Kind::ConfigMap, &r.name, &r.key, r.optional)
                        .await?
                        .unwrap_or_default()
                } else if let Some(r) = &from.secret_key_ref {
                    match key_of(agent, rec, Kind::Secret, &r.name, &r.key, r.optional).await? {
                        Some(v) => v,
                        // An optional key that is not there: no variable.
                        None => continue,
                    }
                } else {
                    String::new()
                }
            }
        };
        set(&mut env, e.name.clone(), value);
    }
    let mut all = service_env;
    for (k, v) in env {
        set(&mut all, k, v);
    }
    Ok(all)
}

/// One key of an object, `None` when optional and absent.
async fn key_of(
    agent: &Agent,
    rec: &PodRecord,
    kind: Kind,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, EnvError> {
    let optional = optional.unwrap_or(false);
    let Some(data) = object(agent, rec, kind, name, optional).await? else {
        return Ok(None);
    };
    match data.get(key) {
        Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
        None if optional => Ok(None),
        None => Err(EnvError::NoKey {
            what: match kind {
                Kind::Secret => "Secret",
                Kind::ConfigMap => "ConfigMap",
            },
            key: key.to_string(),
            namespace: rec.namespace.clone(),
            name: name.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pod: &Pod) -> Facts<'_> {
        Facts {
            pod,
            uid: "u-1",
            node_name: "n1",
            pod_ip: "10.1.0.5",
            host_ip: "10.0.0.2",
            node_cpu_milli: 2000,
            node_memory: 4 << 30,
        }
    }

    #[test]
    fn fields_and_resources() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"b": "2", "a": "x\"y"}},
            "spec": {"serviceAccountName": "sa", "containers": [{"name": "c",
                "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}]}
        }))
        .unwrap();
        let f = facts(&pod);
        assert_eq!(field_value(&f, "metadata.namespace").unwrap(), "ns");
        assert_eq!(field_value(&f, "metadata.labels['b']").unwrap(), "2");
        assert_eq!(
            field_value(&f, "metadata.labels").unwrap(),
            "a=\"x\\\"y\"\nb=\"2\""
        );
        assert_eq!(field_value(&f, "spec.serviceAccountName").unwrap(), "sa");
        assert!(field_value(&f, "spec.bogus").is_err());
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let r = |res: &str, div: Option<&str>| ResourceFieldSelector {
            container_name: None,
            resource: res.into(),
            divisor: div.map(|d| k8s_openapi::apimachinery::pkg::api::resource::Quantity(d.into())),
        };
        assert_eq!(
            resource_value(&f, c, &r("limits.memory", Some("1Mi"))).unwrap(),
            "64"
        );
        assert_eq!(
            resource_value(&f, c, &r("requests.cpu", Some("1m"))).unwrap(),
            "250"
        );
        assert_eq!(
            resource_value(&f, c, &r("requests.cpu", None)).unwrap(),
            "1"
        );
        assert_eq!(
            resource_value(&f, c, &r("limits.cpu", None)).unwrap(),
            "2",
            "node's"
        );
    }

    #[test]
    fn expansion() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".into(), "two".into()),
        ];
        assert_eq!(expand("x$(A)-$(B)-$(C)-$$(A)", &env), "x1-two-$(C)-$(A)");
        assert_eq!(expand("cost $5", &env), "cost $5");
        assert!(valid_name("MY_VAR.x-1") && !valid_name("1X") && !valid_name("a b"));
    }
}
