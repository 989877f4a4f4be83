//! Which fields of a Pod Skiff implements, and finding the ones a manifest
//! has that are unknown to the schema or not implemented (each refused with
//! its path).

use serde_json::Value;

/// Field paths Skiff implements; `[]` stands for any list index, `*` for
/// any map key, and a final `**` for anything below.
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
    "spec.activeDeadlineSeconds",
    "spec.hostNetwork",
    "spec.nodeName",
    "spec.hostname",
    "spec.subdomain",
    "spec.shareProcessNamespace",
    "spec.enableServiceLinks",
    "spec.dnsPolicy",
    "spec.dnsConfig.nameservers[]",
    "spec.dnsConfig.searches[]",
    "spec.dnsConfig.options[].name",
    "spec.dnsConfig.options[].value",
    "spec.hostAliases[].ip",
    "spec.hostAliases[].hostnames[]",
    // Where the pod may go is the scheduler's business; the node runs
    // what it was given.
    "spec.schedulerName",
    "spec.priority",
    "spec.priorityClassName",
    "spec.preemptionPolicy",
    "spec.nodeSelector.*",
    "spec.tolerations[].key",
    "spec.tolerations[].operator",
    "spec.tolerations[].value",
    "spec.tolerations[].effect",
    "spec.tolerations[].tolerationSeconds",
    "spec.affinity.**",
    "spec.topologySpreadConstraints.**",
    // The service account is used through the token volume its admission
    // plugin adds; pull secrets by the image puller.
    "spec.serviceAccountName",
    "spec.serviceAccount",
    "spec.automountServiceAccountToken",
    "spec.imagePullSecrets[].name",
    "spec.securityContext.runAsUser",
    "spec.securityContext.runAsGroup",
    "spec.securityContext.runAsNonRoot",
    "spec.securityContext.supplementalGroups[]",
    "spec.securityContext.fsGroup",
    "spec.securityContext.sysctls[].name",
    "spec.securityContext.sysctls[].value",
    "spec.securityContext.seccompProfile.type",
    "spec.volumes[].name",
    "spec.volumes[].emptyDir.medium",
    "spec.volumes[].emptyDir.sizeLimit",
    "spec.volumes[].hostPath.path",
    "spec.volumes[].hostPath.type",
    "spec.volumes[].secret.secretName",
    "spec.volumes[].secret.defaultMode",
    "spec.volumes[].secret.optional",
    "spec.volumes[].secret.items[].key",
    "spec.volumes[].secret.items[].path",
    "spec.volumes[].secret.items[].mode",
    "spec.volumes[].configMap.name",
    "spec.volumes[].configMap.defaultMode",
    "spec.volumes[].configMap.optional",
    "spec.volumes[].configMap.items[].key",
    "spec.volumes[].configMap.items[].path",
    "spec.volumes[].configMap.items[].mode",
    "spec.volumes[].downwardAPI.defaultMode",
    "spec.volumes[].downwardAPI.items[].path",
    "spec.volumes[].downwardAPI.items[].mode",
    "spec.volumes[].downwardAPI.items[].fieldRef.fieldPath",
    "spec.volumes[].downwardAPI.items[].fieldRef.apiVersion",
    "spec.volumes[].downwardAPI.items[].resourceFieldRef.containerName",
    "spec.volumes[].downwardAPI.items[].resourceFieldRef.resource",
    "spec.volumes[].downwardAPI.items[].resourceFieldRef.divisor",
    "spec.volumes[].projected.defaultMode",
    "spec.volumes[].projected.sources[].secret.name",
    "spec.volumes[].projected.sources[].secret.optional",
    "spec.volumes[].projected.sources[].secret.items[].key",
    "spec.volumes[].projected.sources[].secret.items[].path",
    "spec.volumes[].projected.sources[].secret.items[].mode",
    "spec.volumes[].projected.sources[].configMap.name",
    "spec.volumes[].projected.sources[].configMap.optional",
    "spec.volumes[].projected.sources[].configMap.items[].key",
    "spec.volumes[].projected.sources[].configMap.items[].path",
    "spec.volumes[].projected.sources[].configMap.items[].mode",
    "spec.volumes[].projected.sources[].downwardAPI.items[].path",
    "spec.volumes[].projected.sources[].downwardAPI.items[].mode",
    "spec.volumes[].projected.sources[].downwardAPI.items[].fieldRef.fieldPath",
    "spec.volumes[].projected.sources[].downwardAPI.items[].fieldRef.apiVersion",
    "spec.volumes[].projected.sources[].downwardAPI.items[].resourceFieldRef.containerName",
    "spec.volumes[].projected.sources[].downwardAPI.items[].resourceFieldRef.resource",
    "spec.volumes[].projected.sources[].downwardAPI.items[].resourceFieldRef.divisor",
    "spec.volumes[].projected.sources[].serviceAccountToken.audience",
    "spec.volumes[].projected.sources[].serviceAccountToken.expirationSeconds",
    "spec.volumes[].projected.sources[].serviceAccountToken.path",
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
    "env[].valueFrom.resourceFieldRef.containerName",
    "env[].valueFrom.resourceFieldRef.resource",
    "env[].valueFrom.resourceFieldRef.divisor",
    "env[].valueFrom.secretKeyRef.name",
    "env[].valueFrom.secretKeyRef.key",
    "env[].valueFrom.secretKeyRef.optional",
    "env[].valueFrom.configMapKeyRef.name",
    "env[].valueFrom.configMapKeyRef.key",
    "env[].valueFrom.configMapKeyRef.optional",
    "envFrom[].prefix",
    "envFrom[].configMapRef.name",
    "envFrom[].configMapRef.optional",
    "envFrom[].secretRef.name",
    "envFrom[].secretRef.optional",
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
    "volumeMounts[].subPathExpr",
    "terminationMessagePath",
    "terminationMessagePolicy",
];

/// Lifecycle hook handler fields (below `lifecycle.postStart` and
/// `lifecycle.preStop`).
const HANDLER: &[&str] = &[
    "exec.command[]",
    "httpGet.scheme",
    "httpGet.host",
    "httpGet.path",
    "httpGet.port",
    "httpGet.httpHeaders[].name",
    "httpGet.httpHeaders[].value",
    "tcpSocket.host",
    "tcpSocket.port",
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
pub(super) const FIELD_REFS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.podIP",
    "status.podIPs",
    "status.hostIP",
];

pub(super) fn supported(path: &str) -> bool {
    // An empty object or list is fine where a supported field lies below.
    if let Some(field) = path.strip_suffix("{}") {
        let below =
            |p: &str| p.starts_with(&format!("{field}.")) || p.starts_with(&format!("{field}[]"));
        return SUPPORTED
            .iter()
            .any(|p| below(p) || p.strip_suffix(".**").is_some_and(|q| field.starts_with(q)))
            || ["spec.containers[].", "spec.initContainers[]."]
                .iter()
                .any(|l| {
                    CONTAINER.iter().chain(PROBE).any(|c| {
                        below(&format!("{l}{c}"))
                            || ["livenessProbe.", "readinessProbe.", "startupProbe."]
                                .iter()
                                .any(|pr| below(&format!("{l}{pr}{c}")))
                    }) || HANDLER.iter().any(|h| {
                        ["lifecycle.postStart.", "lifecycle.preStop."]
                            .iter()
                            .any(|k| below(&format!("{l}{k}{h}")))
                    })
                });
    }
    let matches = |pat: &str, p: &str| {
        if let Some(prefix) = pat.strip_suffix(".**") {
            p.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        } else if let Some(prefix) = pat.strip_suffix(".*") {
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
        for hook in ["lifecycle.postStart.", "lifecycle.preStop."] {
            if rest
                .strip_prefix(hook)
                .is_some_and(|r| HANDLER.contains(&r))
            {
                return true;
            }
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
pub(super) fn leaves(v: &Value, path: &str, pattern: &str, out: &mut Vec<(String, String)>) {
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
pub(super) fn unknown_fields(raw: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
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
