//! The pod sandbox: what all of a pod's containers share.
//!
//! As in the CRI (containerd's `RunPodSandbox`), a sandbox is made of
//! these parts, and taken down in reverse:
//! 1. a network namespace, pinned to a file ([`crate::netns`]);
//! 2. CNI ADD on it, which gives the pod its IP ([`crate::cni`]);
//! 3. the pod's local volumes (`emptyDir` directories or tmpfs, `hostPath`
//!    checks, [`super::volumes`]) and the pause container, joining that
//!    network namespace and making the IPC and UTS namespaces the app
//!    containers will join. Unlike the app containers it has no monitor:
//!    it writes nothing and its exit status means nothing, so the agent
//!    watches it itself;
//! 4. its `/etc/hosts` (which names the pod's IP), `/etc/hostname` and
//!    `/etc/resolv.conf` ([`super::etc_files`]).
//!
//! 2 and 3 need only the namespace's path, so they run at the same time:
//! CNI's plugins are programs of their own, and the pause container's
//! start is mostly the runtime's work, so neither waits for the other.
//!
//! A `hostNetwork` pod skips 1 and 2 and shares the agent's network and
//! UTS namespaces.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::super::state::{PodRecord, Sandbox};
use super::super::Agent;
use super::container;
use crate::agent::trace;
use crate::cni::Attachment;

/// Whether the pod runs in the node's network namespace
/// (`spec.hostNetwork`): then it gets no network namespace and no CNI.
pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The pod's cgroup parent, below which every container's cgroup goes.
pub fn cgroup_parent(uid: &str) -> String {
    format!("/skiff-agent/pod{uid}")
}

/// The pause container's id:
/// `k8s_POD_<name>_<namespace>_<uid[..8]><hash[..4]>_<n>`, where `n` counts
/// the pod's sandboxes (dockershim's naming, shortened).
pub fn sandbox_id(rec: &PodRecord) -> String {
    format!(
        "k8s_POD_{}_{}_{}{}_{}",
        rec.name,
        rec.namespace,
        &rec.uid[..8],
        &rec.spec_hash[..4],
        rec.sandbox_count
    )
}

/// What CNI is told of sandbox `id` of the pod, pinned at `netns`:
/// `CNI_CONTAINERID`, `CNI_NETNS` and the `K8S_POD_*` arguments.
pub fn attachment(rec: &PodRecord, netns: &Path, id: &str) -> Attachment {
    Attachment {
        container_id: id.to_string(),
        netns: netns.to_path_buf(),
        pod_namespace: rec.namespace.clone(),
        pod_name: rec.name.clone(),
        pod_uid: rec.uid.clone(),
    }
}

/// The directory of the pod's shared hosts, hostname and resolv.conf.
pub fn etc_dir(agent: &Agent, uid: &str) -> PathBuf {
    agent.cfg.layout().etc_dir(uid)
}

/// The sandbox about to be made for `rec` (its `sandbox_count` already
/// counts it): its id and paths, nothing made yet. It is recorded before
/// [`create`] starts, see [`Sandbox::complete`].
pub fn plan(agent: &Agent, rec: &PodRecord) -> Sandbox {
    let layout = agent.cfg.layout();
    let host = rec.pod.as_ref().is_some_and(host_network);
    Sandbox {
        id: sandbox_id(rec),
        dir: layout.sandbox_dir(&rec.uid),
        netns: (!host).then(|| layout.netns(&rec.uid)),
        pid: 0,
        monitor_pid: 0,
        cni_result: None,
        complete: false,
    }
}

/// Make the planned sandbox; on failure everything made so far is undone.
pub async fn create(agent: &Arc<Agent>, rec: &PodRecord, plan: Sandbox) -> Result<Sandbox, String> {
    rec.pod.as_ref().ok_or("no pod")?;
    let mut sb = plan;
    let id = sb.id.clone();
    let dir = sb.dir.clone();
    let trace = agent.traces.get(&rec.uid);
    let trace = trace.as_ref();
    let _sandbox = trace::start(trace, "sandbox");
    let made = async {
        // No network configuration: fail before making anything.
        let cni = match (&sb.netns, &agent.cni) {
            (Some(_), Err(e)) => return Err(format!("network not ready: {e}")),
            (Some(_), Ok(cni)) => Some(cni),
            (None, _) => None,
        };
        if let Some(path) = &sb.netns {
            let _s = trace::start(trace, "network namespace");
            crate::netns::create(path).map_err(|e| e.to_string())?;
        }
        // The pod's network (CNI) and its pause container are independent
        // once the namespace exists: the pause only joins it by its path.
        // So they are made at once; each records what it made, so that a
        // failure of either undoes both.
        let network = async {
            let (Some(path), Some(cni)) = (&sb.netns, cni) else {
                return Ok(None);
            };
            cni.add(&attachment(rec, path, &id), trace)
                .await
                .map(Some)
                .map_err(|e| format!("failed to set up pod network: {e}"))
        };
        let pod = rec.pod.as_ref().ok_or("no pod")?;
        let hostname = super::etc_files::hostname(pod, &node_hostname());
        let pause = async {
            super::volumes::setup_local(agent, rec)?;
            write_bundle(agent, &dir, &hostname, sb.netns.as_deref(), &id, &rec.uid)?;
            let _pause = trace::start(trace, "pause container");
            run_pause(agent, &id, &dir, trace.map(|t| t.path()))
                .await
                .map_err(|e| format!("start pause container: {e}"))
        };
        let (network, pause) = tokio::join!(network, pause);
        // Record both before looking at either's error.
        if let Ok(Some(result)) = &network {
            sb.cni_result = Some(result.clone());
        }
        if let Ok(pid) = &pause {
            sb.pid = *pid;
        }
        network?;
        pause?;
        let ip = match &sb.cni_result {
            Some(r) => crate::cni::pod_ip(r).unwrap_or_default(),
            None => agent.host_ip.clone(),
        };
        write_etc_files(agent, rec, pod, &ip, &hostname)?;
        sb.complete = true;
        Ok::<(), String>(())
    }
    .await;
    match made {
        Ok(()) => Ok(sb),
        Err(e) => {
            remove(agent, rec, &sb).await;
            Err(e)
        }
    }
}

/// Create and start the pause container of bundle `dir` as `id`, with no
/// monitor: it writes nothing and its exit status means nothing (any end of
/// it is the sandbox's end), so a monitor would only hold ~150 KiB per pod
/// to wait for it. The runtime's debug log and pid file go into `dir`.
/// Returns the pause's pid.
///
/// The agent, a child subreaper, inherits the pause once `skiff create` has
/// exited; [`super::adopt::watch_sandbox`] waits for it through a pidfd.
/// Its own process group keeps a terminal's ^C to the agent from reaching
/// it (the runtime's init then makes it a session of its own).
async fn run_pause(
    agent: &Agent,
    id: &str,
    dir: &Path,
    trace: Option<&Path>,
) -> Result<i32, String> {
    let log = dir.join(PAUSE_LOG);
    let pid_file = dir.join("pause.pid");
    let runtime = |verb: &str| {
        let mut c = container::skiff(agent);
        c.arg("--log")
            .arg(&log)
            .args(["--log-format", "json", verb]);
        c.process_group(0);
        if let Some(t) = trace {
            c.env(skiff_runtime::trace::ENV, t);
        }
        c
    };
    let failed = |verb: &str, status: std::process::ExitStatus, stderr: &[u8]| {
        let stderr = String::from_utf8_lossy(stderr).trim().to_string();
        skiff_runtime::logging::last_error(&log).unwrap_or(if stderr.is_empty() {
            format!("skiff {verb}: {status}")
        } else {
            stderr
        })
    };
    let spawn_error = |e: std::io::Error| format!("run {}: {e}", agent.cfg.runtime.display());
    // The pause inherits create's stdio, so it gets nothing of the agent's:
    // a pipe would stay open for as long as the pause lives (and `output()`
    // would wait for its end). Errors are in the runtime's log.
    let mut create = runtime("create")
        .stderr(std::process::Stdio::null())
        .arg("--bundle")
        .arg(dir)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(id)
        .spawn()
        .map_err(spawn_error)?;
    // Should the agent be killed now, `create` runs on, and the next agent
    // must let it finish before it can remove what it made.
    if let Some(pid) = create.id() {
        let _ = std::fs::write(dir.join(CREATE_PID), pid.to_string());
    }
    let status = create.wait().await.map_err(spawn_error)?;
    if !status.success() {
        return Err(failed("create", status, b""));
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("read {}", pid_file.display()))?;
    let out = runtime("start")
        .arg(id)
        .output()
        .await
        .map_err(spawn_error)?;
    if !out.status.success() {
        // The caller's clean-up deletes the container.
        return Err(failed("start", out.status, &out.stderr));
    }
    Ok(pid)
}

/// The runtime's debug log of the pause container, in the sandbox's
/// directory.
const PAUSE_LOG: &str = "skiff.log";

/// The pid of the pause's `skiff create`, in the sandbox's directory.
const CREATE_PID: &str = "create.pid";

/// A `skiff create` of the pause that a killed agent left running: wait
/// (up to 20 s) until it has finished, so that what it makes can be
/// removed. It is checked to be that very command (pids are reused).
async fn settle_create(sb: &Sandbox) {
    let Some(pid) = std::fs::read_to_string(sb.dir.join(CREATE_PID))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    let ours = || {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            c.split(|b| *b == 0).any(|arg| arg == b"create")
                && c.split(|b| *b == 0).any(|arg| arg == sb.id.as_bytes())
        })
    };
    for _ in 0..2000 {
        if !container::alive(pid) || !ours() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tracing::warn!("sandbox {}: its skiff create {pid} is still running", sb.id);
}

/// The node's host name (a hostNetwork pod's).
fn node_hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The pod's /etc/hosts, /etc/hostname and /etc/resolv.conf
/// ([`super::etc_files`]).
fn write_etc_files(
    agent: &Agent,
    rec: &PodRecord,
    pod: &Pod,
    ip: &str,
    hostname: &str,
) -> Result<(), String> {
    let etc = etc_dir(agent, &rec.uid);
    std::fs::create_dir_all(&etc).map_err(|e| format!("create {}: {e}", etc.display()))?;
    let dns = &agent.cfg.dns;
    let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let hosts = super::etc_files::hosts(pod, ip, &node_hosts, &dns.cluster_domain);
    let settings = super::etc_files::DnsSettings {
        host_resolv: std::fs::read_to_string(&dns.resolv_conf).unwrap_or_default(),
        ..dns.settings()
    };
    let (resolv, fell_back) = super::etc_files::resolv_conf(pod, &settings);
    if fell_back {
        agent.event(
            &rec.uid,
            super::super::events::Kind::Warning,
            "MissingClusterDNS",
            format!(
                "pod: {:?}. {}",
                format!("{}_{}({})", rec.name, rec.namespace, rec.uid),
                super::etc_files::MISSING_CLUSTER_DNS
            ),
            None,
        );
    }
    for (name, text) in [
        ("hosts", hosts),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", resolv),
    ] {
        std::fs::write(etc.join(name), text).map_err(|e| format!("write {name}: {e}"))?;
    }
    Ok(())
}

fn write_bundle(
    agent: &Agent,
    dir: &Path,
    hostname: &str,
    netns: Option<&Path>,
    id: &str,
    uid: &str,
) -> Result<(), String> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| format!("{p}: {e}")
    };
    let rootfs = dir.join("rootfs");
    for d in ["proc", "dev"] {
        std::fs::create_dir_all(rootfs.join(d)).map_err(io(&rootfs))?;
    }
    std::fs::write(rootfs.join("pause"), b"").map_err(io(&rootfs))?;
    let spec = super::spec::sandbox_spec(
        &crate::pause::path(&agent.cfg.data_dir),
        hostname,
        netns,
        &format!("{}/{id}", cgroup_parent(uid)),
    );
    let cfg = dir.join("config.json");
    std::fs::write(&cfg, serde_json::to_vec_pretty(&spec).unwrap_or_default()).map_err(io(&cfg))
}

/// Stop the pause container and take down network and volumes. Safe to
/// repeat; every step tolerates what is already gone.
pub async fn remove(agent: &Arc<Agent>, rec: &PodRecord, sb: &Sandbox) {
    if !sb.complete && sb.pid == 0 && sb.monitor_pid == 0 {
        settle_create(sb).await;
    }
    // What to wait for once the pause is killed: the pause itself, or the
    // monitor of a pause that an older agent started under one. An
    // incomplete sandbox may have a pause whose pid was never recorded:
    // the runtime wrote its pid file (a monitor, its own).
    let waited = if sb.monitor_pid > 0 {
        sb.monitor_pid
    } else if sb.pid > 0 {
        sb.pid
    } else {
        std::fs::read_to_string(sb.dir.join("pause.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .or_else(|| crate::monitor::read_pid(&sb.dir.join("monitor")))
            .unwrap_or(0)
    };
    if sb.pid > 0 || waited > 0 || !sb.complete {
        container::signal(agent, &sb.id, "KILL").await;
        for _ in 0..200 {
            if waited <= 0
                || nix::sys::signal::kill(nix::unistd::Pid::from_raw(waited), None).is_err()
            {
                break;
            }
            // A child of ours (the agent inherits the pause) is reaped
            // here; anyone else's goes when its parent reaps it.
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(waited),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    container::delete(agent, &sb.id).await;
    if let Some(ns) = &sb.netns {
        if let Ok(cni) = &agent.cni {
            if let Err(e) = cni
                .del(&attachment(rec, ns, &sb.id), sb.cni_result.as_ref())
                .await
            {
                tracing::warn!("pod {}: CNI DEL: {e}", rec.key());
                agent.event(
                    &rec.uid,
                    super::super::events::Kind::Warning,
                    "FailedKillPod",
                    format!("CNI DEL: {e}"),
                    None,
                );
            }
        }
        if let Err(e) = crate::netns::remove(ns) {
            tracing::warn!("pod {}: {e}", rec.key());
        }
    }
    let _ = std::fs::remove_dir_all(&sb.dir);
}

/// Remove the pod's volumes, data and cgroup parent (after every
/// container).
pub fn remove_volumes(agent: &Agent, rec: &PodRecord) {
    super::volumes::remove(agent, &rec.uid);
    let _ = std::fs::remove_dir_all(agent.cfg.data_dir.join("pods").join(&rec.uid));
    if let Ok(paths) =
        skiff_runtime::cgroups::resolve_paths(Some(Path::new(&cgroup_parent(&rec.uid))), "pod")
    {
        let _ = skiff_runtime::cgroups::remove(&paths);
    }
}
