//! The checks that a parsed Pod makes sense: names are DNS labels, ports
//! and probes are well formed, volumes that containers mount exist, values
//! that go together agree.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};

use super::fields::FIELD_REFS;
use crate::quantity;

pub(super) fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(super) fn dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns_label)
}

/// Semantic checks the schema cannot express.
pub(super) fn check(pod: &Pod) -> Result<(), String> {
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
        let kinds = [
            v.empty_dir.is_some(),
            v.host_path.is_some(),
            v.secret.is_some(),
            v.config_map.is_some(),
            v.downward_api.is_some(),
            v.projected.is_some(),
        ];
        match kinds.iter().filter(|k| **k).count() {
            0 => return Err(format!("{at}: a volume type is required")),
            1 => {}
            _ => return Err(format!("{at}: only one volume type may be set")),
        }
        if let Some(e) = &v.empty_dir {
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
                quantity::bytes(&q.0).map_err(|err| format!("{at}.emptyDir.sizeLimit: {err}"))?;
            }
        }
        if let Some(h) = &v.host_path {
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
        if let Some(s) = &v.secret {
            if s.secret_name.as_deref().unwrap_or("").is_empty() {
                return Err(format!("{at}.secret.secretName: required"));
            }
        }
        if let Some(c) = &v.config_map {
            if c.name.is_empty() {
                return Err(format!("{at}.configMap.name: required"));
            }
        }
        for (j, item) in v
            .downward_api
            .iter()
            .flat_map(|d| d.items.iter().flatten())
            .enumerate()
        {
            if let Some(f) = &item.field_ref {
                field_ref_ok(
                    &f.field_path,
                    &format!("{at}.downwardAPI.items[{j}].fieldRef.fieldPath"),
                )?;
            }
        }
    }
    let dns = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    if !["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"].contains(&dns) {
        return Err(format!(
            "spec.dnsPolicy: {dns:?} must be ClusterFirst, ClusterFirstWithHostNet, Default or None"
        ));
    }
    if dns == "None"
        && spec
            .dns_config
            .as_ref()
            .is_none_or(|c| c.nameservers.as_ref().is_none_or(|n| n.is_empty()))
    {
        return Err(
            "spec.dnsConfig.nameservers: at least one is required with dnsPolicy None".into(),
        );
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

pub(super) fn check_container(
    c: &Container,
    at: &str,
    volumes: &BTreeSet<String>,
) -> Result<(), String> {
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
            field_ref_ok(
                &f.field_path,
                &format!("{at}.env[{i}].valueFrom.fieldRef.fieldPath"),
            )?;
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
        for (k, s) in [("subPath", &m.sub_path), ("subPathExpr", &m.sub_path_expr)] {
            if let Some(s) = s {
                if s.starts_with('/') || s.split('/').any(|c| c == "..") {
                    return Err(format!(
                        "{at}.volumeMounts[{i}].{k}: must be relative and not contain '..'"
                    ));
                }
            }
        }
        if m.sub_path.as_deref().is_some_and(|s| !s.is_empty())
            && m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty())
        {
            return Err(format!(
                "{at}.volumeMounts[{i}].subPathExpr: subPath and subPathExpr are mutually exclusive"
            ));
        }
    }
    if let Some(p) = c
        .termination_message_policy
        .as_deref()
        .filter(|p| *p != "File" && *p != "FallbackToLogsOnError")
    {
        return Err(format!(
            "{at}.terminationMessagePolicy: {p:?} must be File or FallbackToLogsOnError"
        ));
    }
    if let Some(p) = c
        .termination_message_path
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        if !p.starts_with('/') {
            return Err(format!("{at}.terminationMessagePath: must be absolute"));
        }
    }
    for (k, h) in c
        .lifecycle
        .iter()
        .flat_map(|l| [("postStart", &l.post_start), ("preStop", &l.pre_stop)])
    {
        let Some(h) = h else { continue };
        let n = [
            h.exec.is_some(),
            h.http_get.is_some(),
            h.tcp_socket.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if n != 1 {
            return Err(format!(
                "{at}.lifecycle.{k}: exactly one handler is required (exec, httpGet or tcpSocket)"
            ));
        }
        if h.exec
            .as_ref()
            .is_some_and(|e| e.command.as_ref().is_none_or(|c| c.is_empty()))
        {
            return Err(format!("{at}.lifecycle.{k}.exec.command: required"));
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

/// The first reference of a static pod to an object of the API server (a
/// Secret, a ConfigMap, a service-account token), with its path. A static
/// pod cannot have them: nothing lets the node read objects for a pod the
/// API server does not know (the Node authorizer follows pods bound to the
/// node; NodeRestriction refuses mirror pods that refer to such objects).
pub fn api_reference(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if v.secret.is_some() {
            return Some(format!("spec.volumes[{i}].secret"));
        }
        if v.config_map.is_some() {
            return Some(format!("spec.volumes[{i}].configMap"));
        }
        for (j, src) in v
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .enumerate()
        {
            for (k, used) in [
                ("secret", src.secret.is_some()),
                ("configMap", src.config_map.is_some()),
                ("serviceAccountToken", src.service_account_token.is_some()),
            ] {
                if used {
                    return Some(format!("spec.volumes[{i}].projected.sources[{j}].{k}"));
                }
            }
        }
    }
    if spec
        .image_pull_secrets
        .as_ref()
        .is_some_and(|l| !l.is_empty())
    {
        return Some("spec.imagePullSecrets".into());
    }
    let lists = [
        (
            "spec.initContainers",
            spec.init_containers.as_deref().unwrap_or(&[]),
        ),
        ("spec.containers", &spec.containers[..]),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            for (j, e) in c.env.iter().flatten().enumerate() {
                let from = e.value_from.as_ref();
                if from.is_some_and(|f| f.secret_key_ref.is_some()) {
                    return Some(format!("{list}[{i}].env[{j}].valueFrom.secretKeyRef"));
                }
                if from.is_some_and(|f| f.config_map_key_ref.is_some()) {
                    return Some(format!("{list}[{i}].env[{j}].valueFrom.configMapKeyRef"));
                }
            }
            if c.env_from.as_ref().is_some_and(|l| !l.is_empty()) {
                return Some(format!("{list}[{i}].envFrom"));
            }
        }
    }
    None
}

/// A `fieldRef` path this node can read: one of [`FIELD_REFS`], or one
/// label or annotation (`metadata.labels['app']`).
fn field_ref_ok(path: &str, at: &str) -> Result<(), String> {
    let one_key = ["metadata.labels['", "metadata.annotations['"]
        .iter()
        .any(|p| path.starts_with(p) && path.ends_with("']") && path.len() > p.len() + 2);
    if FIELD_REFS.contains(&path) || one_key {
        Ok(())
    } else {
        Err(format!(
            "{at}: {path:?} is not supported (one of {}, or metadata.labels['KEY'] or metadata.annotations['KEY'])",
            FIELD_REFS.join(", ")
        ))
    }
}

pub(super) fn check_probe(p: &Probe, at: &str, success_is_one: bool) -> Result<(), String> {
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
