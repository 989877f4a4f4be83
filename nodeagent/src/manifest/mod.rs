//! Reading Pod manifests the way kubelet reads static pods.
//!
//! kubelet's `--pod-manifest-path` (see "Create static Pods" in the
//! Kubernetes docs) watches a directory of YAML or JSON files, each holding
//! one or more `v1` Pod objects. Skiff does the same, with one difference
//! kubelet cannot afford: every field it does not implement is rejected with
//! its path (`spec.volumes[0].persistentVolumeClaim: not supported`) instead
//! of being dropped, so a manifest never runs with half its meaning.
//!
//! Three checks run on each document:
//! 1. it parses as a `v1` Pod (`k8s-openapi` types, errors with their path);
//! 2. nothing in it is unknown to the Pod schema (the typed Pod is written
//!    back out and compared with the input: a key that did not survive the
//!    round trip was not a field);
//! 3. every field present is one Skiff implements ([`SUPPORTED`]), and the
//!    values make sense together (names, probes, volume references...).

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

mod checks;
mod fields;

use checks::check;
use fields::{leaves, supported, unknown_fields};

/// Why a manifest document is not a pod Skiff will run.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ManifestError {
    /// The file is not YAML or JSON.
    #[error("{file}: {msg}")]
    Syntax {
        /// The manifest file.
        file: String,
        /// The parser's error.
        msg: String,
    },
    /// The document is not a valid `v1` Pod, has fields unknown or not
    /// implemented, or values that do not fit together; the message gives the
    /// path.
    #[error("{0}")]
    Invalid(String),
}

/// One document of a manifest file: a valid pod, or why it is not one.
#[derive(Debug, Clone)]
pub struct Doc {
    /// `metadata.namespace`; `default` when absent.
    pub namespace: String,
    /// `metadata.name`; without one, derived from the file's name (with
    /// `-<index>` when the file holds several documents).
    pub name: String,
    /// The validated pod, or why it is not one.
    pub pod: Result<Pod, ManifestError>,
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
    for v in &mut values {
        octal_modes(v);
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
                pod: validate(&v)
                    .and_then(|p| match checks::api_reference(&p) {
                        Some(at) => Err(format!(
                            "{at}: a static pod cannot use secrets, config maps or service account tokens (only pods from the API server can)"
                        )),
                        None => Ok(p),
                    })
                    .map_err(ManifestError::Invalid),
            }
        })
        .collect()
}

/// File modes written the YAML 1.1 way (`defaultMode: 0644`), as kubectl
/// and kubelet read them: octal. YAML 1.2 (this parser) reads `0644` as a
/// string; in a `mode` or `defaultMode` field it is made the number it
/// means.
fn octal_modes(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k == "mode" || k == "defaultMode" {
                    if let Some(s) = v.as_str() {
                        let digits = s.strip_prefix("0o").or_else(|| s.strip_prefix('0'));
                        if let Some(n) = digits.and_then(|d| u32::from_str_radix(d, 8).ok()) {
                            *v = Value::from(n);
                        }
                    }
                }
                octal_modes(v);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(octal_modes),
        _ => {}
    }
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

/// What the API server keeps in a Pod's metadata for itself (versions,
/// times, owners, field managers): not part of what to run.
const SERVER_METADATA: &[&str] = &[
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generation",
    "generateName",
    "ownerReferences",
    "finalizers",
    "clusterName",
];

/// Check a Pod from the API server like a manifest: the same fields are
/// supported, once what the server keeps for itself (its status and the
/// metadata of [`SERVER_METADATA`]) is set aside.
pub fn validate_api(raw: &Value) -> Result<Pod, String> {
    let mut raw = raw.clone();
    if let Some(o) = raw.as_object_mut() {
        o.remove("status");
        o.insert("apiVersion".into(), "v1".into());
        o.insert("kind".into(), "Pod".into());
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in SERVER_METADATA {
                m.remove(*k);
            }
        }
    }
    validate(&raw)
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
        let y =
            format!("{BASE}    lifecycle:\n      preStop:\n        sleep:\n          seconds: 1\n");
        assert_eq!(
            err(&y),
            "spec.containers[0].lifecycle.preStop.sleep.seconds: not supported"
        );
        let y = format!(
            "{BASE}  volumes:\n  - name: c\n    persistentVolumeClaim:\n      claimName: x\n"
        );
        assert_eq!(
            err(&y),
            "spec.volumes[0].persistentVolumeClaim.claimName: not supported"
        );
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
        assert!(one(&y).is_ok(), "hooks are supported");
        let y = format!("{BASE}    resizePolicy: []\n");
        assert_eq!(err(&y), "spec.containers[0].resizePolicy: not supported");
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
    fn static_pods_cannot_use_api_objects() {
        let y = format!("{BASE}  volumes:\n  - name: v\n    configMap: {{name: x}}\n");
        assert!(err(&y).starts_with("spec.volumes[0].configMap: a static pod cannot use"));
        let y = format!("{BASE}    envFrom: [{{secretRef: {{name: s}}}}]\n");
        assert!(err(&y).starts_with("spec.containers[0].envFrom: a static pod"));
        // From the API server they are fine.
        let v: Value = serde_norway::from_str(&y).unwrap();
        assert!(validate_api(&v).is_ok());
    }

    #[test]
    fn modes_are_octal_as_in_yaml_1_1() {
        let y = format!("{BASE}  volumes:\n  - name: v\n    downwardAPI: {{defaultMode: 0400, items: [{{path: p, mode: 0644, fieldRef: {{fieldPath: metadata.name}}}}]}}\n");
        let p = one(&y).unwrap();
        let d = p.spec.unwrap().volumes.unwrap()[0]
            .downward_api
            .clone()
            .unwrap();
        assert_eq!(d.default_mode, Some(0o400));
        assert_eq!(d.items.unwrap()[0].mode, Some(0o644));
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
