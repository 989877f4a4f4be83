//! From a Pod's container to an OCI runtime spec, as a CRI runtime does it.
//!
//! The image's configuration gives the starting point (`skiff-images`
//! turns it into a spec with containerd's CRI defaults); the pod then
//! overrides it field by field the way kubelet and containerd do:
//! `command` replaces the image's Entrypoint and `args` its Cmd; the
//! pod's environment ([`super::env`]) is appended; `securityContext` sets
//! the user and groups (`fsGroup` and `supplementalGroups` included),
//! capabilities, read-only root, privilege escalation, seccomp and the
//! pod's sysctls; `resources` become cgroup limits; volumes, the pod's
//! /etc files and the termination log become bind mounts; and the
//! container joins the pod sandbox's network, IPC and UTS namespaces (and
//! its PID namespace with `shareProcessNamespace`) through
//! `/proc/<pause pid>/ns/*`.

use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};

use crate::quantity;

/// Why a container's runtime spec cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The image's config cannot be turned into a spec.
    #[error(transparent)]
    Image(#[from] skiff_images::runtime_spec::SpecError),
    /// The pod's settings cannot apply: no command at all, `runAsNonRoot`
    /// with a root user, a quantity that does not parse...
    #[error("{0}")]
    Config(String),
}

/// Everything besides the container that shapes its spec.
pub struct PodContext<'a> {
    /// The pod the container belongs to.
    pub pod: &'a Pod,
    /// The pod's uid, for the `io.kubernetes.pod.uid` annotation.
    pub uid: &'a str,
    /// The pod's hostname ([`super::etc_files::hostname`]).
    pub hostname: &'a str,
    /// The pause process, whose namespaces the container joins.
    pub sandbox_pid: i32,
    /// The pod uses the node's network (`hostNetwork`): the container joins no
    /// network or UTS namespace of the sandbox.
    pub host_network: bool,
    /// The environment the pod gives the container ([`super::env`]).
    pub env: &'a [(String, String)],
    /// Its volume mounts ([`super::volumes::binds`]).
    pub binds: &'a [super::volumes::Bind],
    /// The pod's /etc/hosts, /etc/hostname and resolv.conf files.
    pub etc_dir: &'a Path,
    /// The file bound at `terminationMessagePath`.
    pub termination_log: Option<&'a Path>,
    /// The node has the cgroup v2 hierarchy: the container gets a cgroup
    /// namespace and v2 limits.
    pub cgroup_v2: bool,
    /// The pod's cgroup (`sandbox::cgroup_parent`), below which the
    /// container's goes.
    pub cgroup_parent: &'a str,
}

fn set_env(env: &mut Vec<Value>, key: &str, value: &str) {
    let prefix = format!("{key}=");
    env.retain(|e| !e.as_str().is_some_and(|s| s.starts_with(&prefix)));
    env.push(json!(format!("{key}={value}")));
}

fn cap_name(c: &str) -> String {
    let c = c.to_uppercase();
    if c.starts_with("CAP_") {
        c
    } else {
        format!("CAP_{c}")
    }
}

/// The spec for `c` in the pod, starting from the image's.
pub fn container_spec(
    ctx: &PodContext,
    c: &Container,
    image: &oci_spec::image::ImageConfiguration,
    rootfs: &Path,
    container_id: &str,
) -> Result<Value, SpecError> {
    let opts = skiff_images::runtime_spec::SpecOptions {
        args: None,
        hostname: None,
        cgroup_v2: ctx.cgroup_v2,
        terminal: false,
        image_name: Some(c.image.clone().unwrap_or_default()),
    };
    let mut spec = skiff_images::runtime_spec::from_image(image, rootfs, &opts).or_else(|e| {
        // An image without Entrypoint or Cmd is fine when the pod gives one.
        if c.command.is_some() {
            let mut opts = opts.clone();
            opts.args = Some(vec!["true".into()]);
            skiff_images::runtime_spec::from_image(image, rootfs, &opts)
        } else {
            Err(e)
        }
    })?;
    let cfg = image.config().clone().unwrap_or_default();
    // command replaces Entrypoint, args replaces Cmd.
    let entrypoint = c
        .command
        .clone()
        .unwrap_or_else(|| cfg.entrypoint().clone().unwrap_or_default());
    let cmd = match (&c.command, &c.args) {
        (_, Some(a)) => a.clone(),
        (Some(_), None) => Vec::new(),
        (None, None) => cfg.cmd().clone().unwrap_or_default(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(SpecError::Config("no command specified".into()));
    }
    spec["process"]["args"] = json!(args);
    let mut env: Vec<Value> = spec["process"]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    set_env(&mut env, "HOSTNAME", ctx.hostname);
    for (k, v) in ctx.env {
        set_env(&mut env, k, v);
    }
    spec["process"]["env"] = json!(env);
    if let Some(w) = c.working_dir.as_deref().filter(|w| !w.is_empty()) {
        spec["process"]["cwd"] = json!(w);
    }

    // Security context: the container's fields win over the pod's.
    let psc = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref());
    let csc = c.security_context.as_ref();
    let run_as_user = csc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user));
    let run_as_group = csc
        .and_then(|s| s.run_as_group)
        .or(psc.and_then(|s| s.run_as_group));
    let non_root = csc
        .and_then(|s| s.run_as_non_root)
        .or(psc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if run_as_user.is_some() || run_as_group.is_some() {
        let user = match (run_as_user, run_as_group) {
            (Some(u), Some(g)) => format!("{u}:{g}"),
            (Some(u), None) => u.to_string(),
            (None, Some(g)) => format!(
                "{}:{g}",
                spec["process"]["user"]["uid"].as_u64().unwrap_or(0)
            ),
            (None, None) => unreachable!(),
        };
        let u = skiff_images::runtime_spec::resolve_user(&user, rootfs)?;
        spec["process"]["user"] =
            json!({"uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids});
    }
    // supplementalGroups, and fsGroup (which owns the volumes), join the
    // groups the image's /etc/group gives the user.
    let extra: Vec<i64> = psc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .chain(psc.and_then(|s| s.fs_group))
        .collect();
    if !extra.is_empty() {
        let mut gids: Vec<Value> = spec["process"]["user"]["additionalGids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for g in extra {
            if !gids.contains(&json!(g)) {
                gids.push(json!(g));
            }
        }
        spec["process"]["user"]["additionalGids"] = json!(gids);
    }
    if non_root && spec["process"]["user"]["uid"].as_u64() == Some(0) {
        return Err(SpecError::Config(
            "container has runAsNonRoot and image will run as root".into(),
        ));
    }
    let privileged = csc.and_then(|s| s.privileged).unwrap_or(false);
    if csc
        .and_then(|s| s.read_only_root_filesystem)
        .unwrap_or(false)
    {
        spec["root"]["readonly"] = json!(true);
    }
    spec["process"]["noNewPrivileges"] =
        json!(csc.and_then(|s| s.allow_privilege_escalation) == Some(false) && !privileged);
    let mut caps: Vec<String> = if privileged {
        skiff_runtime::process::capabilities::bounding_names()
    } else {
        spec["process"]["capabilities"]["bounding"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(cs) = csc.and_then(|s| s.capabilities.as_ref()) {
        let drop: Vec<String> = cs.drop.iter().flatten().map(|d| cap_name(d)).collect();
        if drop.iter().any(|d| d == "CAP_ALL") {
            caps.clear();
        }
        caps.retain(|c| !drop.contains(c));
        for a in cs.add.iter().flatten() {
            let a = cap_name(a);
            if a == "CAP_ALL" {
                caps = skiff_runtime::process::capabilities::bounding_names();
            } else if !caps.contains(&a) {
                caps.push(a);
            }
        }
    }
    spec["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps});
    if privileged {
        if let Some(l) = spec["linux"].as_object_mut() {
            l.remove("maskedPaths");
            l.remove("readonlyPaths");
        }
        for m in spec["mounts"].as_array_mut().into_iter().flatten() {
            if m["destination"] == "/sys" || m["destination"] == "/sys/fs/cgroup" {
                if let Some(o) = m["options"].as_array_mut() {
                    o.retain(|v| v != "ro");
                    o.push(json!("rw"));
                }
            }
        }
    }
    let seccomp = csc
        .and_then(|s| s.seccomp_profile.as_ref())
        .or(psc.and_then(|s| s.seccomp_profile.as_ref()))
        .map(|p| p.type_.as_str());
    if seccomp == Some("RuntimeDefault") && !privileged {
        spec = skiff_runtime::spec::with_default_seccomp(spec);
    }

    // Namespaces: the sandbox's network, IPC and UTS; own mount; own PID
    // unless the pod shares one (`shareProcessNamespace`: the pause
    // process is then PID 1 of every container).
    let ns = |t: &str| format!("/proc/{}/ns/{t}", ctx.sandbox_pid);
    let shared_pid = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.share_process_namespace)
        .unwrap_or(false);
    let mut namespaces = vec![
        if shared_pid {
            json!({"type": "pid", "path": ns("pid")})
        } else {
            json!({"type": "pid"})
        },
        json!({"type": "mount"}),
        json!({"type": "ipc", "path": ns("ipc")}),
    ];
    if !ctx.host_network {
        namespaces.push(json!({"type": "uts", "path": ns("uts")}));
        namespaces.push(json!({"type": "network", "path": ns("net")}));
    }
    if ctx.cgroup_v2 {
        namespaces.push(json!({"type": "cgroup"}));
    }
    spec["linux"]["namespaces"] = json!(namespaces);
    // The pod's sysctls (checked as safe and namespaced at admission).
    if let Some(sysctls) = psc
        .and_then(|s| s.sysctls.as_ref())
        .filter(|s| !s.is_empty())
    {
        let map: serde_json::Map<String, Value> = sysctls
            .iter()
            .map(|s| (s.name.clone(), json!(s.value)))
            .collect();
        spec["linux"]["sysctl"] = Value::Object(map);
    }
    spec["linux"]["cgroupsPath"] = json!(format!("{}/{container_id}", ctx.cgroup_parent));
    resources(&mut spec, c)?;

    // Volumes and the files kubelet manages.
    let mut mounts: Vec<Value> = spec["mounts"].as_array().cloned().unwrap_or_default();
    for (file, dest) in [
        ("hosts", "/etc/hosts"),
        ("hostname", "/etc/hostname"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        mounts.push(json!({"destination": dest, "type": "bind",
            "source": ctx.etc_dir.join(file), "options": ["rbind", "rprivate", "rw"]}));
    }
    if let Some(log) = ctx.termination_log {
        let path = super::bundle::termination_message_path(c);
        mounts.push(json!({"destination": path, "type": "bind",
            "source": log, "options": ["rbind", "rprivate", "rw"]}));
    }
    for b in ctx.binds {
        let ro = if b.read_only { "ro" } else { "rw" };
        mounts.push(json!({"destination": b.destination, "type": "bind",
            "source": b.source, "options": ["rbind", "rprivate", ro]}));
    }
    spec["mounts"] = json!(mounts);
    let ann = spec["annotations"].as_object().cloned().unwrap_or_default();
    let mut ann = ann;
    ann.insert(
        "io.kubernetes.pod.name".into(),
        json!(ctx.pod.metadata.name.as_deref().unwrap_or("")),
    );
    ann.insert(
        "io.kubernetes.pod.namespace".into(),
        json!(ctx.pod.metadata.namespace.as_deref().unwrap_or("default")),
    );
    ann.insert("io.kubernetes.pod.uid".into(), json!(ctx.uid));
    ann.insert("io.kubernetes.container.name".into(), json!(c.name));
    spec["annotations"] = Value::Object(ann);
    Ok(spec)
}

/// `resources` into `linux.resources`, as kubelet computes them.
fn resources(spec: &mut Value, c: &Container) -> Result<(), SpecError> {
    let get = |kind: &str, k: &str| -> Option<String> {
        let r = c.resources.as_ref()?;
        let m = if kind == "limits" {
            r.limits.as_ref()
        } else {
            r.requests.as_ref()
        }?;
        m.get(k).map(|q| q.0.clone())
    };
    let bad = |e: quantity::QuantityError| SpecError::Config(e.to_string());
    let mut res = spec["linux"]["resources"].clone();
    if let Some(m) = get("limits", "memory") {
        res["memory"] = json!({"limit": quantity::bytes(&m).map_err(bad)?});
    }
    // A limit without a request requests the limit (API defaulting).
    let cpu_req = get("requests", "cpu").or(get("limits", "cpu"));
    let shares = match cpu_req {
        Some(q) => (quantity::millicores(&q).map_err(bad)? * 1024 / 1000).max(2),
        None => 2,
    };
    res["cpu"] = json!({"shares": shares});
    if let Some(l) = get("limits", "cpu") {
        let m = quantity::millicores(&l).map_err(bad)?;
        res["cpu"]["quota"] = json!((m * 100).max(1000));
        res["cpu"]["period"] = json!(100000);
    }
    spec["linux"]["resources"] = res;
    Ok(())
}

/// The pause container's spec: an empty read-only root with the pause
/// program ([`crate::pause`]) at /pause, new PID, IPC, UTS and mount
/// namespaces, and the pod's pinned network namespace (the host's with
/// hostNetwork).
pub fn sandbox_spec(
    pause: &Path,
    hostname: &str,
    netns: Option<&Path>,
    cgroups_path: &str,
) -> Value {
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "mount"}),
    ];
    if let Some(n) = netns {
        namespaces.push(json!({"type": "uts"}));
        namespaces.push(json!({"type": "network", "path": n}));
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 65535, "gid": 65535},
            "args": ["/pause"],
            "env": ["PATH=/"],
            "cwd": "/",
            "capabilities": {"bounding": [], "effective": [], "permitted": []},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=64k"]},
            {"destination": "/pause", "type": "bind", "source": pause,
             "options": ["rbind", "ro", "nosuid", "nodev"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}], "cpu": {"shares": 2}},
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path,
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    if netns.is_some() {
        spec["hostname"] = json!(hostname);
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_become_cgroup_values() {
        let c: Container = serde_json::from_value(json!({"name": "c",
            "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}}))
        .unwrap();
        let mut spec = json!({"linux": {"resources": {}}});
        resources(&mut spec, &c).unwrap();
        let r = &spec["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["cpu"]["quota"], 50000);
        assert_eq!(r["cpu"]["shares"], 512);
    }
}
