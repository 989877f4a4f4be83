//! Reading Pod manifests the way kubelet reads static pods.
//!
//! kubelet's `--pod-manifest-path` (see "Create static Pods" in the
//! Kubernetes docs) watches a directory of YAML or JSON files, each holding
//! one or more `v1` Pod objects. Skiff does the same, with one difference
//! kubelet cannot afford: every field it does not implement is rejected with
//! its path (`spec.containers[1].lifecycle.preStop: not supported`) instead
//! of being dropped, so a manifest never runs with half its meaning.
//!
//! Three checks run on each document:
//! 1. it parses as a `v1` Pod (`k8s-openapi` types, errors with their path);
//! 2. nothing in it is unknown to the Pod schema (the typed Pod is written
//!    back out and compared with the input: a key that did not survive the
//!    round trip was not a field);
//! 3. every field present is one Skiff implements ([`SUPPORTED`]), and the
//!    values make sense together (names, probes, volume references...).

use std::collections::BTreeSet;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::quantity;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ManifestError {
    #[error("{file}: {msg}")]
    Syntax { file: String, msg: String },
    #[error("{0}")]
    Invalid(String),
}

/// One document of a manifest file: a valid pod, or why it is not one.
#[derive(Debug, Clone)]
pub struct Doc {
    pub namespace: String,
    pub name: String,
    pub pod: Result<Pod, ManifestError>,
}

/// Field paths Skiff implements; `[]` stands for any list index and `*`
/// for any map key.
const SUPPORTED: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels.*",
    "metadata.annotations.*",
    "spec.restartPolicy",
    "spec.terminationGracePeriodSeconds",
    "spec.hostNetwork",
    "spec.nodeName",
    "spec.securityContext.runAsUser",
    "spec.securityContext.runAsGroup",
    "spec.securityContext.runAsNonRoot",
    "spec.securityContext.supplementalGroups[]",
    "spec.securityContext.seccompProfile.type",
    "spec.volumes[].name",
    "spec.volumes[].emptyDir.medium",
    "spec.volumes[].emptyDir.sizeLimit",
    "spec.volumes[].hostPath.path",
    "spec.volumes[].hostPath.type",
];

/// Container fields (below `spec.containers[]` and `spec.initContainers[]`).
const CONTAINER: &[&str] = &[
    "name",
    "image",
    "imagePullPolicy",
    "command[]",
    "args[]",
    "workingDir",
    "env[].name",
    "env[].value",
    "env[].valueFrom.fieldRef.fieldPath",
    "env[].valueFrom.fieldRef.apiVersion",
    "ports[].name",
    "ports[].containerPort",
    "ports[].protocol",
    "resources.limits.cpu",
    "resources.limits.memory",
    "resources.requests.cpu",
    "resources.requests.memory",
    "securityContext.runAsUser",
    "securityContext.runAsGroup",
    "securityContext.runAsNonRoot",
    "securityContext.readOnlyRootFilesystem",
    "securityContext.privileged",
    "securityContext.allowPrivilegeEscalation",
    "securityContext.capabilities.add[]",
    "securityContext.capabilities.drop[]",
    "securityContext.seccompProfile.type",
    "volumeMounts[].name",
    "volumeMounts[].mountPath",
    "volumeMounts[].readOnly",
    "volumeMounts[].subPath",
];

/// Probe fields (below each of the three probes; app containers only).
const PROBE: &[&str] = &[
    "exec.command[]",
    "httpGet.scheme",
    "httpGet.host",
    "httpGet.path",
    "httpGet.port",
    "httpGet.httpHeaders[].name",
    "httpGet.httpHeaders[].value",
    "tcpSocket.host",
    "tcpSocket.port",
    "grpc.port",
    "grpc.service",
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "successThreshold",
    "failureThreshold",
    "terminationGracePeriodSeconds",
];

/// The environment values `valueFrom.fieldRef` may name.
pub const FIELD_REFS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "status.podIP",
    "status.hostIP",
];

fn supported(path: &str) -> bool {
    // An empty object or list is fine where a supported field lies below.
    if let Some(field) = path.strip_suffix("{}") {
        let below =
            |p: &str| p.starts_with(&format!("{field}.")) || p.starts_with(&format!("{field}[]"));
        return SUPPORTED.iter().any(|p| below(p))
            || ["spec.containers[].", "spec.initContainers[]."]
                .iter()
                .any(|l| {
                    CONTAINER.iter().chain(PROBE).any(|c| {
                        below(&format!("{l}{c}"))
                            || ["livenessProbe.", "readinessProbe.", "startupProbe."]
                                .iter()
                                .any(|pr| below(&format!("{l}{pr}{c}")))
                    })
                });
    }
    let matches = |pat: &str, p: &str| {
        if let Some(prefix) = pat.strip_suffix(".*") {
            p.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|k| !k.is_empty())
        } else {
            pat == p
        }
    };
    if SUPPORTED.iter().any(|pat| matches(pat, path)) {
        return true;
    }
    for list in ["spec.containers[].", "spec.initContainers[]."] {
        let Some(rest) = path.strip_prefix(list) else {
            continue;
        };
        if CONTAINER.contains(&rest) {
            return true;
        }
        if list.starts_with("spec.containers") {
            for probe in ["livenessProbe.", "readinessProbe.", "startupProbe."] {
                if rest.strip_prefix(probe).is_some_and(|r| PROBE.contains(&r)) {
                    return true;
                }
            }
        }
    }
    false
}

/// Every leaf of `v` as (real path, pattern path), skipping nulls.
fn leaves(v: &Value, path: &str, pattern: &str, out: &mut Vec<(String, String)>) {
    let join = |a: &str, k: &str| {
        if a.is_empty() {
            k.to_string()
        } else {
            format!("{a}.{k}")
        }
    };
    match v {
        Value::Null => {}
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                // Label and annotation keys are free; resource names are
                // checked like fields.
                let pk = if pattern == "metadata.labels" || pattern == "metadata.annotations" {
                    "*"
                } else {
                    k.as_str()
                };
                leaves(v, &join(path, k), &join(pattern, pk), out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, v) in a.iter().enumerate() {
                leaves(v, &format!("{path}[{i}]"), &format!("{pattern}[]"), out);
            }
        }
        // An empty object or list (`emptyDir: {}`) stands for its field.
        Value::Object(_) | Value::Array(_) => {
            out.push((path.to_string(), format!("{pattern}{{}}")))
        }
        _ => out.push((path.to_string(), pattern.to_string())),
    }
}

/// Paths present in `raw` but gone from `typed` (unknown to the schema).
fn unknown_fields(raw: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (raw, typed) {
        (Value::Object(r), Value::Object(t)) => {
            for (k, v) in r {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match t.get(k) {
                    Some(tv) => unknown_fields(v, tv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(r), Value::Array(t)) => {
            for (i, (a, b)) in r.iter().zip(t).enumerate() {
                unknown_fields(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Read one manifest file: every document in it, in order. A file that is
/// not YAML at all gives one failed document named after the file.
pub fn parse_file(path: &Path, text: &str) -> Vec<Doc> {
    let file = path.display().to_string();
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut values = Vec::new();
    let mut failure = None;
    for de in serde_norway::Deserializer::from_str(text) {
        match Value::deserialize(de) {
            Ok(Value::Null) => {}
            Ok(v) => values.push(v),
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    if let Some(msg) = failure {
        return vec![Doc {
            namespace: "default".into(),
            name: dns_name(&stem),
            pod: Err(ManifestError::Syntax {
                file,
                msg: format!("invalid YAML or JSON: {msg}"),
            }),
        }];
    }
    let many = values.len() > 1;
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let meta = |k: &str| {
                v.pointer(&format!("/metadata/{k}"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let fallback = if many {
                format!("{}-{i}", dns_name(&stem))
            } else {
                dns_name(&stem)
            };
            Doc {
                namespace: meta("namespace").unwrap_or_else(|| "default".into()),
                name: meta("name").unwrap_or(fallback),
                pod: validate(&v).map_err(ManifestError::Invalid),
            }
        })
        .collect()
}

/// A file name made into something `get pods` can show.
fn dns_name(s: &str) -> String {
    let n: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let n = n.trim_matches('-').to_string();
    if n.is_empty() {
        "manifest".into()
    } else {
        n
    }
}

/// Parse and check one document; the error is a message naming the field.
pub fn validate(raw: &Value) -> Result<Pod, String> {
    match raw.get("apiVersion").and_then(Value::as_str) {
        Some("v1") => {}
        Some(other) => return Err(format!("apiVersion: {other:?} is not supported, only v1")),
        None => return Err("apiVersion: required".into()),
    }
    match raw.get("kind").and_then(Value::as_str) {
        Some("Pod") => {}
        Some(other) => return Err(format!("kind: {other:?} is not supported, only Pod")),
        None => return Err("kind: required".into()),
    }
    let pod: Pod = serde_path_to_error::deserialize(raw.clone())
        .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    let typed = serde_json::to_value(&pod).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    unknown_fields(raw, &typed, "", &mut unknown);
    if let Some(p) = unknown.first() {
        return Err(format!("{p}: unknown field"));
    }
    let mut all = Vec::new();
    leaves(raw, "", "", &mut all);
    if let Some((p, _)) = all.iter().find(|(_, pat)| !supported(pat)) {
        return Err(format!("{p}: not supported"));
    }
    check(&pod)?;
    Ok(pod)
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns_label)
}

/// Semantic checks the schema cannot express.
fn check(pod: &Pod) -> Result<(), String> {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    if !dns_subdomain(name) {
        return Err(format!(
            "metadata.name: {name:?} must be a lowercase RFC 1123 subdomain"
        ));
    }
    if let Some(ns) = &pod.metadata.namespace {
        if !dns_label(ns) {
            return Err(format!(
                "metadata.namespace: {ns:?} must be a lowercase RFC 1123 label"
            ));
        }
    }
    let spec = pod.spec.as_ref().ok_or("spec: required")?;
    if spec.containers.is_empty() {
        return Err("spec.containers: at least one container is required".into());
    }
    if let Some(p) = &spec.restart_policy {
        if !["Always", "OnFailure", "Never"].contains(&p.as_str()) {
            return Err(format!(
                "spec.restartPolicy: {p:?} must be Always, OnFailure or Never"
            ));
        }
    }
    if spec.termination_grace_period_seconds.is_some_and(|s| s < 0) {
        return Err("spec.terminationGracePeriodSeconds: must not be negative".into());
    }
    let mut volumes = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let at = format!("spec.volumes[{i}]");
        if !dns_label(&v.name) {
            return Err(format!("{at}.name: {:?} is not a valid name", v.name));
        }
        if !volumes.insert(v.name.clone()) {
            return Err(format!("{at}.name: duplicate volume {:?}", v.name));
        }
        match (&v.empty_dir, &v.host_path) {
            (Some(e), None) => {
                if let Some(m) = e
                    .medium
                    .as_deref()
                    .filter(|m| !m.is_empty() && *m != "Memory")
                {
                    return Err(format!(
                        "{at}.emptyDir.medium: {m:?} must be \"\" or \"Memory\""
                    ));
                }
                if let Some(q) = &e.size_limit {
                    quantity::bytes(&q.0)
                        .map_err(|err| format!("{at}.emptyDir.sizeLimit: {err}"))?;
                }
            }
            (None, Some(h)) => {
                if !h.path.starts_with('/') {
                    return Err(format!("{at}.hostPath.path: must be an absolute path"));
                }
                let types = [
                    "",
                    "DirectoryOrCreate",
                    "Directory",
                    "FileOrCreate",
                    "File",
                    "Socket",
                    "CharDevice",
                    "BlockDevice",
                ];
                if let Some(t) = h.type_.as_deref().filter(|t| !types.contains(t)) {
                    return Err(format!("{at}.hostPath.type: {t:?} is not a hostPath type"));
                }
            }
            (None, None) => return Err(format!("{at}: a volume type is required")),
            (Some(_), Some(_)) => return Err(format!("{at}: only one volume type may be set")),
        }
    }
    let seccomp_ok = |t: &str, at: &str| {
        if ["RuntimeDefault", "Unconfined"].contains(&t) {
            Ok(())
        } else {
            Err(format!(
                "{at}.seccompProfile.type: {t:?} is not supported (RuntimeDefault or Unconfined)"
            ))
        }
    };
    if let Some(t) = spec
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
    {
        seccomp_ok(&t.type_, "spec.securityContext")?;
    }
    let mut names = BTreeSet::new();
    let lists = [
        (
            "spec.initContainers",
            spec.init_containers.as_deref().unwrap_or(&[]),
        ),
        ("spec.containers", &spec.containers[..]),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let at = format!("{list}[{i}]");
            if !dns_label(&c.name) {
                return Err(format!("{at}.name: {:?} is not a valid name", c.name));
            }
            if !names.insert(c.name.clone()) {
                return Err(format!("{at}.name: duplicate container name {:?}", c.name));
            }
            check_container(c, &at, &volumes)?;
            if let Some(t) = c
                .security_context
                .as_ref()
                .and_then(|s| s.seccomp_profile.as_ref())
            {
                seccomp_ok(&t.type_, &format!("{at}.securityContext"))?;
            }
        }
    }
    Ok(())
}

fn check_container(c: &Container, at: &str, volumes: &BTreeSet<String>) -> Result<(), String> {
    if c.image.as_deref().unwrap_or("").is_empty() {
        return Err(format!("{at}.image: required"));
    }
    if let Some(p) = &c.image_pull_policy {
        if !["Always", "IfNotPresent", "Never"].contains(&p.as_str()) {
            return Err(format!(
                "{at}.imagePullPolicy: {p:?} must be Always, IfNotPresent or Never"
            ));
        }
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        if e.name.is_empty() || e.name.contains('=') {
            return Err(format!("{at}.env[{i}].name: {:?} is not valid", e.name));
        }
        if let Some(f) = e.value_from.as_ref().and_then(|v| v.field_ref.as_ref()) {
            if !FIELD_REFS.contains(&f.field_path.as_str()) {
                return Err(format!(
                    "{at}.env[{i}].valueFrom.fieldRef.fieldPath: {:?} is not supported (one of {})",
                    f.field_path,
                    FIELD_REFS.join(", ")
                ));
            }
        }
    }
    let mut port_names = BTreeSet::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        if !(1..=65535).contains(&p.container_port) {
            return Err(format!("{at}.ports[{i}].containerPort: must be 1-65535"));
        }
        if let Some(n) = &p.name {
            if n.is_empty() || n.len() > 15 || !port_names.insert(n.clone()) {
                return Err(format!(
                    "{at}.ports[{i}].name: {n:?} is empty, too long or repeated"
                ));
            }
        }
        if let Some(proto) = p.protocol.as_deref().filter(|p| *p != "TCP" && *p != "UDP") {
            return Err(format!(
                "{at}.ports[{i}].protocol: {proto:?} is not supported"
            ));
        }
    }
    if let Some(r) = &c.resources {
        for (kind, m) in [("limits", &r.limits), ("requests", &r.requests)] {
            for (k, q) in m.iter().flatten() {
                let parsed = if k == "cpu" {
                    quantity::millicores(&q.0).map(|_| ())
                } else {
                    quantity::bytes(&q.0).map(|_| ())
                };
                parsed.map_err(|e| format!("{at}.resources.{kind}.{k}: {e}"))?;
            }
        }
    }
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        if !volumes.contains(&m.name) {
            return Err(format!(
                "{at}.volumeMounts[{i}].name: no volume named {:?}",
                m.name
            ));
        }
        if !m.mount_path.starts_with('/') {
            return Err(format!(
                "{at}.volumeMounts[{i}].mountPath: must be absolute"
            ));
        }
        if let Some(s) = &m.sub_path {
            if s.starts_with('/') || s.split('/').any(|c| c == "..") {
                return Err(format!(
                    "{at}.volumeMounts[{i}].subPath: must be relative and not contain '..'"
                ));
            }
        }
    }
    for (field, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        if let Some(p) = probe {
            check_probe(p, &format!("{at}.{field}"), field != "readinessProbe")?;
        }
    }
    Ok(())
}

fn check_probe(p: &Probe, at: &str, success_is_one: bool) -> Result<(), String> {
    let handlers = [
        p.exec.is_some(),
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.grpc.is_some(),
    ];
    match handlers.iter().filter(|h| **h).count() {
        1 => {}
        0 => {
            return Err(format!(
                "{at}: one handler is required (exec, httpGet, tcpSocket or grpc)"
            ))
        }
        _ => return Err(format!("{at}: only one handler may be set")),
    }
    if let Some(e) = &p.exec {
        if e.command.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(format!("{at}.exec.command: required"));
        }
    }
    if let Some(h) = &p.http_get {
        if let Some(s) = h
            .scheme
            .as_deref()
            .filter(|s| *s != "HTTP" && *s != "HTTPS")
        {
            return Err(format!("{at}.httpGet.scheme: {s:?} must be HTTP or HTTPS"));
        }
    }
    if p.grpc
        .as_ref()
        .is_some_and(|g| !(1..=65535).contains(&g.port))
    {
        return Err(format!("{at}.grpc.port: must be 1-65535"));
    }
    for (k, v, min) in [
        ("initialDelaySeconds", p.initial_delay_seconds, 0),
        ("periodSeconds", p.period_seconds, 1),
        ("timeoutSeconds", p.timeout_seconds, 1),
        ("successThreshold", p.success_threshold, 1),
        ("failureThreshold", p.failure_threshold, 1),
    ] {
        if v.is_some_and(|v| v < min) {
            return Err(format!("{at}.{k}: must be at least {min}"));
        }
    }
    if success_is_one && p.success_threshold.is_some_and(|s| s != 1) {
        return Err(format!("{at}.successThreshold: must be 1"));
    }
    Ok(())
}

/// The pod's UID: `metadata.uid` if given, otherwise a UUID-shaped hash of
/// the manifest file, namespace and name, so it is the same every time the
/// agent reads the same manifest (kubelet hashes static pods similarly).
pub fn pod_uid(pod: &Pod, file: &Path) -> String {
    if let Some(u) = pod.metadata.uid.as_deref().filter(|u| !u.is_empty()) {
        return u.to_string();
    }
    let mut h = Sha256::new();
    h.update(file.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(pod.metadata.namespace.as_deref().unwrap_or("default"));
    h.update([0]);
    h.update(pod.metadata.name.as_deref().unwrap_or(""));
    let d = h.finalize();
    let x: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// A hash of the pod's spec: when it changes the pod is recreated.
pub fn spec_hash(pod: &Pod) -> String {
    let v = serde_json::to_vec(&pod.spec).unwrap_or_default();
    let d = Sha256::digest(&v);
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(yaml: &str) -> Result<Pod, ManifestError> {
        let mut docs = parse_file(Path::new("/m/web.yaml"), yaml);
        assert_eq!(docs.len(), 1);
        docs.remove(0).pod
    }

    fn err(yaml: &str) -> String {
        one(yaml).unwrap_err().to_string()
    }

    const BASE: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: a\n    image: busybox\n";

    #[test]
    fn accepts_a_plain_pod() {
        let p = one(BASE).unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("web"));
    }

    #[test]
    fn several_documents_and_json() {
        let text = format!("{BASE}---\n{}", BASE.replace("name: web", "name: two"));
        let docs = parse_file(Path::new("/m/x.yaml"), &text);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].name, "two");
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#;
        assert!(one(json).is_ok());
    }

    #[test]
    fn unsupported_fields_are_named() {
        let y = format!(
            "{BASE}    lifecycle:\n      preStop:\n        exec:\n          command: [x]\n"
        );
        assert_eq!(
            err(&y),
            "spec.containers[0].lifecycle.preStop.exec.command[0]: not supported"
        );
        let y = format!("{BASE}  volumes:\n  - name: c\n    configMap:\n      name: x\n");
        assert_eq!(err(&y), "spec.volumes[0].configMap.name: not supported");
    }

    #[test]
    fn unknown_and_mistyped_fields() {
        let y = format!("{BASE}    imagePulPolicy: Always\n");
        assert_eq!(err(&y), "spec.containers[0].imagePulPolicy: unknown field");
        let y = BASE.replace("name: a", "name: [a]");
        assert!(
            err(&y).starts_with("spec.containers[0].name: invalid type"),
            "{}",
            err(&y)
        );
    }

    #[test]
    fn malformed_yaml_names_the_file() {
        let docs = parse_file(Path::new("/m/Bad_File.yaml"), "a: [b\n");
        assert_eq!(docs[0].name, "bad-file");
        assert!(docs[0]
            .pod
            .as_ref()
            .unwrap_err()
            .to_string()
            .starts_with("/m/Bad_File.yaml: invalid YAML"));
    }

    #[test]
    fn empty_objects_stand_for_their_field() {
        let y = format!(
            "{BASE}    securityContext: {{}}\n  volumes:\n  - name: v\n    emptyDir: {{}}\n"
        );
        assert!(one(&y).is_ok(), "{:?}", one(&y));
        let y = format!("{BASE}    lifecycle: {{}}\n");
        assert_eq!(err(&y), "spec.containers[0].lifecycle: not supported");
    }

    #[test]
    fn semantic_checks() {
        let y = format!("{BASE}  - name: a\n    image: x\n");
        assert!(err(&y).contains("duplicate container name"));
        let y = format!("{BASE}    livenessProbe:\n      periodSeconds: 1\n");
        assert!(err(&y).contains("one handler is required"));
        let y = format!("{BASE}    volumeMounts:\n    - name: v\n      mountPath: /v\n");
        assert!(err(&y).contains("no volume named \"v\""));
        let y = format!("{BASE}    resources:\n      limits:\n        memory: 12Q\n");
        assert!(err(&y).starts_with("spec.containers[0].resources.limits.memory:"));
        let y = format!("{BASE}    resources:\n      limits:\n        nvidia.com/gpu: 1\n");
        assert_eq!(
            err(&y),
            "spec.containers[0].resources.limits.nvidia.com/gpu: not supported"
        );
    }

    #[test]
    fn uid_is_stable_per_manifest() {
        let p = one(BASE).unwrap();
        let a = pod_uid(&p, Path::new("/m/web.yaml"));
        assert_eq!(a, pod_uid(&p, Path::new("/m/web.yaml")));
        assert_ne!(a, pod_uid(&p, Path::new("/m/other.yaml")));
        assert_eq!(a.len(), 36);
    }
}
