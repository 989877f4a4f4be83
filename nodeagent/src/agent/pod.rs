//! The pod worker: one task per pod that drives it towards its spec.
//!
//! Like kubelet's `SyncPod`, each pass of the loop looks at the record and
//! does the next thing needed: make the sandbox; run the init containers
//! one at a time, each to successful completion; start every app
//! container; restart exited containers as `restartPolicy` says, held back
//! by the CrashLoopBackOff delay ([`crate::backoff`]); and when nothing will
//! run again, take the sandbox down (the pod is Succeeded or Failed). Then
//! it sleeps until a container exits, a probe asks for a restart, a back-off
//! ends, or the pod is stopped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Container;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::container::{self, Launch};
use super::events::Kind as EventKind;
use super::sandbox;
use super::state::{self, CState, Instance, PodRecord, Terminated};
use super::{Agent, Msg};
use crate::monitor::{self, Exited};
use crate::probe::{self, Kind, Outcome, Target, Timing, Tracker};

/// What the worker holds besides the record: probe tasks per instance.
#[derive(Default)]
struct Local {
    probes: HashMap<String, Vec<JoinHandle<()>>>,
    latency_recorded: bool,
}

pub async fn run(
    agent: Arc<Agent>,
    uid: String,
    tx: mpsc::UnboundedSender<Msg>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
) {
    let mut local = Local::default();
    let Some(rec) = agent.record(&uid) else {
        return;
    };
    if let Some(why) = &rec.invalid {
        agent.event(&uid, EventKind::Warning, "FailedCreate", why.clone(), None);
        while let Some(m) = rx.recv().await {
            if matches!(m, Msg::Stop) {
                break;
            }
        }
        finish(&agent, &uid, &tx);
        return;
    }
    adopt(&agent, &uid, &tx, &mut local, &rec);
    check_network(&agent, &uid, &tx, &rec).await;
    loop {
        let wake = if agent.record(&uid).is_some_and(|r| r.terminating) {
            break;
        } else {
            sync(&agent, &uid, &tx, &mut local).await
        };
        let msg = match wake {
            Some(d) => tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep(d) => Some(Msg::Wake),
            },
            None => rx.recv().await,
        };
        let Some(msg) = msg else { break };
        handle(&agent, &uid, &tx, &mut local, msg).await;
        // Take every message already queued before the next pass.
        while let Ok(m) = rx.try_recv() {
            handle(&agent, &uid, &tx, &mut local, m).await;
        }
    }
    teardown(&agent, &uid, &tx, &mut rx, &mut local).await;
    finish(&agent, &uid, &tx);
}

async fn handle(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    local: &mut Local,
    msg: Msg,
) {
    match msg {
        Msg::Exited { id } => exited(agent, uid, tx, local, &id).await,
        Msg::Kill { id, reason, grace } => {
            let Some(rec) = agent.record(uid) else { return };
            let Some(c) = rec
                .containers
                .iter()
                .find(|c| c.current.as_ref().is_some_and(|i| i.id == id))
            else {
                return;
            };
            let field = format!("spec.containers{{{}}}", c.name);
            agent.event(uid, EventKind::Normal, "Killing", reason, Some(&field));
            stop_probes(local, &id);
            let grace = grace.unwrap_or_else(|| grace_period(&rec));
            if let Some(inst) = c.current.clone() {
                stop_instance(agent, &inst, grace).await;
            }
        }
        Msg::Stop => {
            agent.update(uid, |r| {
                r.terminating = true;
                r.deleted_at.get_or_insert_with(Timestamp::now);
            });
        }
        Msg::Wake => {}
    }
}

/// The worker is done: forget the pod (unless a new worker took over).
fn finish(agent: &Arc<Agent>, uid: &str, tx: &mpsc::UnboundedSender<Msg>) {
    let mut g = agent.lock();
    if g.workers.get(uid).is_some_and(|w| w.tx.same_channel(tx)) {
        g.workers.remove(uid);
        g.pods.remove(uid);
    }
    drop(g);
    agent.changed.notify_waiters();
}

/// Pick up what a previous agent left running.
fn adopt(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    local: &mut Local,
    rec: &PodRecord,
) {
    if let Some(sb) = &rec.sandbox {
        watch_sandbox(tx, sb);
    }
    let pod_ip = rec.pod_ip.clone().unwrap_or_default();
    for (init, list) in [(true, &rec.init), (false, &rec.containers)] {
        for c in list {
            let Some(inst) = &c.current else { continue };
            container::watch(
                tx.clone(),
                inst.id.clone(),
                inst.dir.clone(),
                inst.pid,
                inst.monitor_pid,
            );
            if !init {
                if let Some(spec) = container_spec(rec, false, &c.name) {
                    let h = start_probes(agent, uid, tx, &spec, inst, &pod_ip, c.started, c.ready);
                    local.probes.insert(inst.id.clone(), h);
                }
            }
        }
    }
}

/// An adopted sandbox's network is verified with CNI CHECK; if the
/// plugins find it broken (a veth or address gone while the agent was
/// down), the sandbox is replaced as if its pause process had died.
async fn check_network(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    rec: &PodRecord,
) {
    let (Some(sb), Ok(cni)) = (&rec.sandbox, &agent.cni) else {
        return;
    };
    let (Some(netns), Some(result)) = (&sb.netns, &sb.cni_result) else {
        return;
    };
    let a = sandbox::attachment(rec, netns, &sb.id);
    if let Err(e) = cni.check(&a, result).await {
        agent.event(
            uid,
            EventKind::Warning,
            "FailedCNICheck",
            e.to_string(),
            None,
        );
        let _ = tx.send(Msg::Exited { id: sb.id.clone() });
    }
}

fn watch_sandbox(tx: &mpsc::UnboundedSender<Msg>, sb: &state::Sandbox) {
    container::watch(
        tx.clone(),
        sb.id.clone(),
        sb.dir.join("monitor"),
        sb.pid,
        sb.monitor_pid,
    );
}

fn container_spec(rec: &PodRecord, init: bool, name: &str) -> Option<Container> {
    let spec = rec.pod.as_ref()?.spec.as_ref()?;
    let list = if init {
        spec.init_containers.as_deref().unwrap_or(&[])
    } else {
        &spec.containers[..]
    };
    list.iter().find(|c| c.name == name).cloned()
}

fn restart_policy(rec: &PodRecord) -> &str {
    rec.pod
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn grace_period(rec: &PodRecord) -> Duration {
    let s = rec
        .pod
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(s.max(0) as u64)
}

/// One pass; returns how long to sleep at most before the next.
async fn sync(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    local: &mut Local,
) -> Option<Duration> {
    let rec = agent.record(uid)?;
    if rec.finished {
        return None;
    }
    if rec.sandbox.is_none() {
        let rec = agent
            .update(uid, |r| {
                r.sandbox_count += 1;
                r.clone()
            })
            .unwrap_or(rec);
        match sandbox::create(agent, &rec).await {
            Ok(sb) => {
                let ip = match &sb.cni_result {
                    Some(r) => crate::cni::pod_ip(r),
                    None => Some(agent.host_ip.clone()),
                };
                watch_sandbox(tx, &sb);
                agent.update(uid, |r| {
                    r.sandbox = Some(sb);
                    r.pod_ip = ip;
                    r.sandbox_error = None;
                    r.start_time.get_or_insert_with(Timestamp::now);
                    r.set_condition("PodReadyToStartContainers", true, None);
                });
            }
            Err(e) => {
                agent.event(
                    uid,
                    EventKind::Warning,
                    "FailedCreatePodSandBox",
                    e.clone(),
                    None,
                );
                agent.update(uid, |r| {
                    r.sandbox_error = Some(e);
                    r.set_condition("PodReadyToStartContainers", false, None);
                });
                return Some(Duration::from_secs(5));
            }
        }
    }
    let rec = agent.record(uid)?;
    let policy = restart_policy(&rec).to_string();
    let now = Timestamp::now();
    let mut wake: Option<Duration> = None;
    let mut soonest = |d: Duration| {
        wake = Some(wake.map_or(d, |w: Duration| w.min(d)));
    };

    // Init containers, in order, each to success.
    for c in &rec.init {
        if c.current.is_some() {
            return wake;
        }
        if let Some(t) = &c.last_state {
            if t.exit_code == 0 && c.terminated().is_some() {
                continue;
            }
            if policy == "Never" {
                // A failed init container fails the pod.
                return finish_pod(agent, uid, local).await;
            }
        }
        match start_if_due(agent, uid, tx, local, true, &c.name, now).await {
            Due::Started | Due::Failed => return Some(Duration::ZERO),
            Due::Later(d) => soonest(d),
        }
        return wake;
    }
    if !rec.conditions.get("Initialized").is_some_and(|c| c.status) {
        agent.update(uid, |r| r.set_condition("Initialized", true, None));
    }

    // App containers.
    let mut all_done = true;
    for c in &rec.containers {
        if c.current.is_some() {
            all_done = false;
            continue;
        }
        let restart = match &c.last_state {
            None => true,
            Some(t) => match policy.as_str() {
                "Always" => true,
                "OnFailure" => t.exit_code != 0,
                _ => false,
            },
        };
        if !restart {
            continue;
        }
        all_done = false;
        match start_if_due(agent, uid, tx, local, false, &c.name, now).await {
            Due::Started => {}
            Due::Failed => soonest(Duration::ZERO),
            Due::Later(d) => soonest(d),
        }
    }
    if all_done {
        return finish_pod(agent, uid, local).await;
    }
    if !local.latency_recorded {
        if let Some(r) = agent.record(uid) {
            if r.containers.iter().all(|c| c.running()) {
                local.latency_recorded = true;
                let secs = (Timestamp::now().as_millisecond() - r.created_at.as_millisecond())
                    as f64
                    / 1000.0;
                agent.lock().start_latencies.push(secs);
            }
        }
    }
    wake
}

/// Every container is done for good: take the sandbox down.
async fn finish_pod(agent: &Arc<Agent>, uid: &str, local: &mut Local) -> Option<Duration> {
    let rec = agent.record(uid)?;
    for (id, hs) in local.probes.drain() {
        let _ = id;
        hs.iter().for_each(|h| h.abort());
    }
    if let Some(sb) = &rec.sandbox {
        sandbox::remove(agent, &rec, sb).await;
    }
    agent.update(uid, |r| {
        r.sandbox = None;
        r.finished = true;
        r.set_condition("PodReadyToStartContainers", false, None);
    });
    None
}

enum Due {
    Started,
    Failed,
    Later(Duration),
}

/// Start the container unless its back-off holds it.
async fn start_if_due(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    local: &mut Local,
    init: bool,
    name: &str,
    now: Timestamp,
) -> Due {
    let Some(rec) = agent.record(uid) else {
        return Due::Later(Duration::from_secs(1));
    };
    let Some(c) = (if init { &rec.init } else { &rec.containers })
        .iter()
        .find(|c| c.name == name)
        .cloned()
    else {
        return Due::Later(Duration::from_secs(1));
    };
    let field = format!(
        "spec.{}{{{name}}}",
        if init { "initContainers" } else { "containers" }
    );
    if let Some(t) = &c.last_state {
        if let Some(until) = c
            .backoff
            .hold_until(&agent.cfg.restart_backoff, t.finished_at, now)
        {
            let msg = format!(
                "back-off {} restarting failed container={name} pod={}_{}({uid})",
                human(c.backoff.delay()),
                rec.name,
                rec.namespace
            );
            let first =
                !matches!(&c.state, CState::Waiting { reason, .. } if reason == "CrashLoopBackOff");
            agent.update(uid, |r| {
                if let Some(c) = r.container_mut(init, name) {
                    c.state = CState::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: Some(msg.clone()),
                    };
                }
            });
            if first {
                agent.event(
                    uid,
                    EventKind::Warning,
                    "BackOff",
                    "Back-off restarting failed container".into(),
                    Some(&field),
                );
            }
            return Due::Later(dur_until(until, now));
        }
    }
    // Image pull back-off.
    if let CState::Waiting { reason, .. } = &c.state {
        if reason == "ErrImagePull" || reason == "ImagePullBackOff" {
            if let Some(until) = c.image_backoff.last_update.and_then(|u| {
                let until = u + c.image_backoff.delay();
                (now < until).then_some(until)
            }) {
                if reason == "ErrImagePull" {
                    agent.update(uid, |r| {
                        if let Some(c) = r.container_mut(init, name) {
                            if let CState::Waiting { message, .. } = &c.state {
                                let message = Some(format!(
                                    "Back-off pulling image {:?}: {}",
                                    c.image,
                                    message.clone().unwrap_or_default()
                                ));
                                c.state = CState::Waiting {
                                    reason: "ImagePullBackOff".into(),
                                    message,
                                };
                            }
                        }
                    });
                    agent.event(
                        uid,
                        EventKind::Normal,
                        "BackOff",
                        format!("Back-off pulling image {:?}", c.image),
                        Some(&field),
                    );
                }
                return Due::Later(dur_until(until, now));
            }
        }
    }
    let Some(spec) = container_spec(&rec, init, name) else {
        return Due::Later(Duration::from_secs(1));
    };
    // The image.
    let image = match ensure_image(agent, uid, &spec, &field).await {
        Ok(i) => i,
        Err((reason, msg)) => {
            let pull = reason == "ErrImagePull";
            agent.event(uid, EventKind::Warning, "Failed", msg.clone(), Some(&field));
            if pull {
                agent.event(
                    uid,
                    EventKind::Warning,
                    "Failed",
                    "Error: ErrImagePull".into(),
                    Some(&field),
                );
            }
            let backoff = agent.cfg.image_backoff;
            agent.update(uid, |r| {
                if let Some(c) = r.container_mut(init, name) {
                    c.state = CState::Waiting {
                        reason: reason.clone(),
                        message: Some(msg.clone()),
                    };
                    if pull || reason == "ErrImageNeverPull" {
                        let now = Timestamp::now();
                        c.image_backoff.next(&backoff, now, now);
                    }
                }
            });
            return Due::Later(if reason == "ErrImageNeverPull" || pull {
                agent
                    .cfg
                    .image_backoff
                    .initial
                    .min(Duration::from_secs(1))
                    .max(Duration::from_millis(1))
            } else {
                Duration::from_secs(5)
            });
        }
    };
    let restart = c.restart_count + u32::from(c.last_state.is_some());
    let id = format!(
        "k8s_{name}_{}_{}_{}{}_{restart}",
        rec.name,
        rec.namespace,
        &uid[..8],
        &rec.spec_hash[..4]
    );
    let pod_dir = state::pod_dir(&agent.cfg.state_dir, uid);
    let mon_dir = pod_dir.join("containers").join(&id);
    let bundle = agent
        .cfg
        .data_dir
        .join("pods")
        .join(uid)
        .join("containers")
        .join(&id);
    let log = agent
        .cfg
        .log_dir()
        .join(format!("{}_{}_{uid}", rec.namespace, rec.name))
        .join(name)
        .join(format!("{restart}.log"));
    let prepared = prepare_bundle(agent, &rec, &spec, &image, &bundle, &id).await;
    if let Err(msg) = prepared {
        agent.event(
            uid,
            EventKind::Warning,
            "Failed",
            format!("Error: {msg}"),
            Some(&field),
        );
        agent.update(uid, |r| {
            if let Some(c) = r.container_mut(init, name) {
                c.state = CState::Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: Some(msg.clone()),
                };
            }
        });
        return Due::Later(Duration::from_secs(5).min(agent.cfg.restart_backoff.initial));
    }
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let launched = container::launch(
        agent,
        Launch {
            id: &id,
            bundle: &bundle,
            dir: &mon_dir,
            log: Some(&log),
        },
    )
    .await;
    let backoff = agent.cfg.restart_backoff;
    let now = Timestamp::now();
    match launched {
        Ok((started, monitor_pid)) => {
            let inst = Instance {
                id: id.clone(),
                bundle,
                dir: mon_dir.clone(),
                log: log.clone(),
                pid: started.pid,
                monitor_pid,
                started_at: started.started_at,
            };
            let has_startup = spec.startup_probe.is_some();
            agent.update(uid, |r| {
                if let Some(c) = r.container_mut(init, name) {
                    count_attempt(c, &backoff, now, &image.image_id, restart, &log);
                    c.state = CState::Running {
                        started_at: started.started_at,
                    };
                    c.current = Some(inst.clone());
                    c.started = !has_startup;
                    c.ready = false;
                }
            });
            agent.event(
                uid,
                EventKind::Normal,
                "Created",
                format!("Created container {name}"),
                Some(&field),
            );
            agent.event(
                uid,
                EventKind::Normal,
                "Started",
                format!("Started container {name}"),
                Some(&field),
            );
            container::watch(tx.clone(), id.clone(), mon_dir, started.pid, monitor_pid);
            if !init {
                let ip = rec.pod_ip.clone().unwrap_or_default();
                let h = start_probes(agent, uid, tx, &spec, &inst, &ip, !has_startup, false);
                local.probes.insert(id, h);
            }
            Due::Started
        }
        Err(msg) => {
            // kubelet: the container is recorded as terminated with
            // StartError (exit code 128), then restarts with back-off.
            agent.event(
                uid,
                EventKind::Warning,
                "Failed",
                format!("Error: {msg}"),
                Some(&field),
            );
            cleanup_instance(agent, &id, &bundle, &mon_dir).await;
            let term = Terminated {
                exit_code: 128,
                signal: None,
                reason: "StartError".into(),
                message: Some(msg),
                started_at: None,
                finished_at: now,
                container_id: Some(format!("skiff://{id}")),
            };
            agent.update(uid, |r| {
                if let Some(c) = r.container_mut(init, name) {
                    count_attempt(c, &backoff, now, &image.image_id, restart, &log);
                    c.previous = c.last_state.take();
                    c.last_state = Some(term.clone());
                    c.state = CState::Terminated(term);
                }
            });
            Due::Failed
        }
    }
}

/// A start attempt, successful or not: a restart (after an earlier run)
/// counts and moves the back-off on; the image and log file are recorded.
fn count_attempt(
    c: &mut state::ContainerRecord,
    backoff: &crate::backoff::Policy,
    now: Timestamp,
    image_id: &str,
    restart: u32,
    log: &std::path::Path,
) {
    if let Some(t) = &c.last_state {
        c.backoff.next(backoff, t.finished_at, now);
        c.restart_count += 1;
    }
    c.image_id = Some(image_id.to_string());
    c.logs.insert(restart, log.to_path_buf());
}

fn dur_until(until: Timestamp, now: Timestamp) -> Duration {
    Duration::from_millis((until.as_millisecond() - now.as_millisecond()).max(1) as u64)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else if s > 0 {
        format!("{s}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// An image in the store, ready to run.
struct ImageReady {
    record: skiff_images::store::ImageRecord,
    config: oci_spec::image::ImageConfiguration,
    image_id: String,
}

/// Apply `imagePullPolicy`: find the image or pull it.
async fn ensure_image(
    agent: &Arc<Agent>,
    uid: &str,
    c: &Container,
    field: &str,
) -> Result<ImageReady, (String, String)> {
    use skiff_images::registry::{pull, ClientOptions};
    let image = c.image.clone().unwrap_or_default();
    let reference = skiff_images::Reference::parse(&image).map_err(|e| {
        (
            "InvalidImageName".to_string(),
            format!("Failed to apply default image tag {image:?}: {e}"),
        )
    })?;
    let latest =
        reference.digest.is_none() && reference.tag.as_deref().is_none_or(|t| t == "latest");
    let policy = c
        .image_pull_policy
        .clone()
        .unwrap_or_else(|| if latest { "Always" } else { "IfNotPresent" }.into());
    let insecure = agent.cfg.insecure_registries.clone();
    let name = reference.to_string();
    let store = agent.store.clone();
    let present = store.find(&name).ok();
    let need_pull = match policy.as_str() {
        "Never" => {
            if present.is_none() {
                return Err((
                    "ErrImageNeverPull".into(),
                    format!("Container image {image:?} is not present with pull policy of Never"),
                ));
            }
            false
        }
        "IfNotPresent" => present.is_none(),
        _ => true,
    };
    let record = if need_pull {
        agent.event(
            uid,
            EventKind::Normal,
            "Pulling",
            format!("Pulling image {image:?}"),
            Some(field),
        );
        let t0 = std::time::Instant::now();
        let r = reference.clone();
        let pulled = tokio::task::spawn_blocking(move || {
            let opts = pull::PullOptions {
                client: ClientOptions {
                    insecure,
                    hosts_dir: Some(PathBuf::from("/etc/skiff/certs.d")),
                    creds: None,
                    docker_config: None,
                    attempts: 2,
                },
                ingest: skiff_images::ingest::IngestOptions {
                    platform: skiff_images::manifest::Platform::host(),
                    limits: Default::default(),
                },
                progress: pull::Progress::Quiet,
                parallel: 3,
            };
            pull::pull(&store, &r, &opts)
        })
        .await
        .map_err(|e| ("ErrImagePull".to_string(), e.to_string()))?;
        match pulled {
            Ok(rec) => {
                agent.event(
                    uid,
                    EventKind::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {:.3}s",
                        t0.elapsed().as_secs_f64()
                    ),
                    Some(field),
                );
                rec
            }
            Err(e) => {
                return Err((
                    "ErrImagePull".into(),
                    format!("Failed to pull image {image:?}: {e}"),
                ))
            }
        }
    } else {
        agent.event(
            uid,
            EventKind::Normal,
            "Pulled",
            format!("Container image {image:?} already present on machine"),
            Some(field),
        );
        present.expect("present when no pull is needed")
    };
    let config: oci_spec::image::ImageConfiguration = agent
        .store
        .read_blob(&record.config)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            (
                "ErrImagePull".to_string(),
                format!("image {image:?}: unreadable config {}", record.config),
            )
        })?;
    // registry/repository@digest, as kubelet reports imageID (a split at
    // ':' would cut a registry's port).
    let repo = format!("{}/{}", reference.registry, reference.repository);
    Ok(ImageReady {
        image_id: format!("{repo}@{}", record.manifest),
        record,
        config,
    })
}

/// The bundle: an overlay snapshot of the image plus the spec.
async fn prepare_bundle(
    agent: &Arc<Agent>,
    rec: &PodRecord,
    c: &Container,
    image: &ImageReady,
    bundle: &std::path::Path,
    id: &str,
) -> Result<(), String> {
    let store = &agent.store;
    let _gc = store.gc_guard().map_err(|e| e.to_string())?;
    let _ = skiff_images::snapshot::release(bundle);
    let rootfs = skiff_images::snapshot::prepare(store, &image.record, bundle, false)
        .map_err(|e| e.to_string())?;
    let pod = rec.pod.as_ref().ok_or("no pod")?;
    let volumes = sandbox::volume_dirs(agent, rec);
    let etc = sandbox::etc_dir(agent, &rec.uid);
    let parent = sandbox::cgroup_parent(&rec.uid);
    let ctx = super::spec::PodContext {
        pod,
        uid: &rec.uid,
        node_name: &agent.cfg.node_name,
        pod_ip: rec.pod_ip.as_deref().unwrap_or(""),
        host_ip: &agent.host_ip,
        sandbox_pid: rec.sandbox.as_ref().map_or(0, |s| s.pid),
        host_network: sandbox::host_network(pod),
        volumes: &volumes,
        etc_dir: &etc,
        cgroup_v2: agent.cgroup_v2,
        cgroup_parent: &parent,
    };
    let written = super::spec::container_spec(&ctx, c, &image.config, &rootfs, id)
        .map_err(|e| e.to_string())
        .and_then(|spec| {
            std::fs::write(
                bundle.join("config.json"),
                serde_json::to_vec_pretty(&spec).unwrap_or_default(),
            )
            .map_err(|e| format!("write config.json: {e}"))
        });
    if written.is_err() {
        let _ = skiff_images::snapshot::release(bundle);
        return written;
    }
    let _ = store.add_bundle_ref(
        &std::path::absolute(bundle).unwrap_or(bundle.to_path_buf()),
        &image.record.chain,
    );
    Ok(())
}

/// Remove an instance's runtime state, bundle and monitor directory.
async fn cleanup_instance(
    agent: &Arc<Agent>,
    id: &str,
    bundle: &std::path::Path,
    mon_dir: &std::path::Path,
) {
    container::delete(agent, id).await;
    if let Err(e) = skiff_images::snapshot::release(bundle) {
        // Something (a probe's `skiff exec` being killed) may still hold
        // the rootfs for a moment: detach it instead.
        tracing::debug!("release {}: {e}; detaching", bundle.display());
        let _ = nix::mount::umount2(&bundle.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        let _ = skiff_images::snapshot::release(bundle);
    }
    agent.store.remove_bundle_ref(bundle);
    let _ = std::fs::remove_dir_all(mon_dir);
}

/// An instance ended: record how, clean up, and let `sync` decide.
async fn exited(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    local: &mut Local,
    id: &str,
) {
    let Some(rec) = agent.record(uid) else { return };
    if rec.sandbox.as_ref().is_some_and(|s| s.id == id) {
        if rec.terminating || rec.finished {
            return;
        }
        // The pause process died: kubelet makes a new sandbox, which means
        // new containers too.
        agent.event(
            uid,
            EventKind::Normal,
            "SandboxChanged",
            "Pod sandbox changed, it will be killed and re-created.".into(),
            None,
        );
        let grace = Duration::ZERO;
        for c in rec.init.iter().chain(&rec.containers) {
            if let Some(inst) = &c.current {
                stop_probes(local, &inst.id);
                stop_instance(agent, inst, grace).await;
            }
        }
        if let Some(sb) = &rec.sandbox {
            sandbox::remove(agent, &rec, sb).await;
        }
        agent.update(uid, |r| r.sandbox = None);
        // Do not spin if the sandbox keeps dying.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = tx.send(Msg::Wake);
        return;
    }
    let found = rec
        .init
        .iter()
        .map(|c| (true, c))
        .chain(rec.containers.iter().map(|c| (false, c)))
        .find(|(_, c)| c.current.as_ref().is_some_and(|i| i.id == id));
    let Some((init, c)) = found else {
        tracing::debug!("pod {}: exit of unknown instance {id}", rec.key());
        return;
    };
    let inst = c.current.clone().expect("found by its instance");
    tracing::debug!("pod {}: container {} ({id}) exited", rec.key(), c.name);
    stop_probes(local, id);
    let exit: Exited = monitor::read_json(&inst.dir.join("exit.json")).unwrap_or(Exited {
        exit_code: 255,
        signal: None,
        started_at: Some(inst.started_at),
        finished_at: Timestamp::now(),
        error: Some("exit status lost".into()),
    });
    let oom = container::oom_killed(&format!("{}/{id}", sandbox::cgroup_parent(uid)), id);
    let reason = if oom {
        "OOMKilled"
    } else if exit.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let term = Terminated {
        exit_code: exit.exit_code,
        signal: exit.signal,
        reason: reason.into(),
        message: exit.error.clone(),
        started_at: exit.started_at.or(Some(inst.started_at)),
        finished_at: exit.finished_at,
        container_id: Some(format!("skiff://{id}")),
    };
    cleanup_instance(agent, id, &inst.bundle, &inst.dir).await;
    agent.update(uid, |r| {
        if let Some(c) = r.container_mut(init, &c.name) {
            c.previous = c.last_state.take();
            c.last_state = Some(term.clone());
            c.state = CState::Terminated(term);
            c.current = None;
            c.ready = false;
            c.started = false;
        }
    });
}

fn stop_probes(local: &mut Local, id: &str) {
    if let Some(hs) = local.probes.remove(id) {
        hs.iter().for_each(|h| h.abort());
    }
}

/// SIGTERM, up to `grace` for the exit, then SIGKILL; returns once the
/// instance's exit is recorded (by its monitor or the watcher).
async fn stop_instance(agent: &Arc<Agent>, inst: &Instance, grace: Duration) {
    let exit_file = inst.dir.join("exit.json");
    let gone = || exit_file.exists();
    if !gone() {
        container::signal(agent, &inst.id, "TERM").await;
        let deadline = tokio::time::Instant::now() + grace;
        while !gone() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if !gone() {
        container::signal(agent, &inst.id, "KILL").await;
        for _ in 0..500 {
            if gone() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Stop everything the pod has, within its grace period.
async fn teardown(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
    local: &mut Local,
) {
    let Some(rec) = agent.record(uid) else { return };
    for (_, hs) in local.probes.drain() {
        hs.iter().for_each(|h| h.abort());
    }
    let grace = grace_period(&rec);
    let mut stops = Vec::new();
    for (init, c) in rec
        .init
        .iter()
        .map(|c| (true, c))
        .chain(rec.containers.iter().map(|c| (false, c)))
    {
        if let Some(inst) = c.current.clone() {
            let field = format!(
                "spec.{}{{{}}}",
                if init { "initContainers" } else { "containers" },
                c.name
            );
            agent.event(
                uid,
                EventKind::Normal,
                "Killing",
                format!("Stopping container {}", c.name),
                Some(&field),
            );
            let agent = agent.clone();
            stops.push(tokio::spawn(async move {
                stop_instance(&agent, &inst, grace).await
            }));
        }
    }
    for s in stops {
        let _ = s.await;
    }
    // Record the exits (the watchers report them).
    let running = |r: &PodRecord| {
        r.init
            .iter()
            .chain(&r.containers)
            .filter(|c| c.current.is_some())
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while agent.record(uid).is_some_and(|r| running(&r) > 0)
        && tokio::time::Instant::now() < deadline
    {
        match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            Ok(Some(Msg::Exited { id })) => exited(agent, uid, tx, local, &id).await,
            Ok(None) => break,
            _ => {}
        }
    }
    let Some(rec) = agent.record(uid) else { return };
    for c in rec.init.iter().chain(&rec.containers) {
        if let Some(inst) = &c.current {
            tracing::warn!(
                "pod {}: container {} ({}) did not stop; cleaning up",
                rec.key(),
                c.name,
                inst.id
            );
            cleanup_instance(agent, &inst.id, &inst.bundle, &inst.dir).await;
        }
    }
    if let Some(sb) = &rec.sandbox {
        sandbox::remove(agent, &rec, sb).await;
    }
    sandbox::remove_volumes(agent, &rec);
    let _ = std::fs::remove_dir_all(
        agent
            .cfg
            .log_dir()
            .join(format!("{}_{}_{uid}", rec.namespace, rec.name)),
    );
    let _ = std::fs::remove_dir_all(state::pod_dir(&agent.cfg.state_dir, uid));
}

/// The probe tasks of one app container instance.
#[allow(clippy::too_many_arguments)]
fn start_probes(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    c: &Container,
    inst: &Instance,
    pod_ip: &str,
    started: bool,
    ready: bool,
) -> Vec<JoinHandle<()>> {
    let target = Target {
        pod_ip: pod_ip.to_string(),
        ports: c.ports.clone().unwrap_or_default(),
        skiff: agent.cfg.runtime.clone(),
        root: agent.cfg.runtime_root(),
        container_id: inst.id.clone(),
    };
    let (started_tx, started_rx) = watch::channel(started || c.startup_probe.is_none());
    let mut handles = Vec::new();
    let probes = [
        (Kind::Startup, &c.startup_probe),
        (Kind::Liveness, &c.liveness_probe),
        (Kind::Readiness, &c.readiness_probe),
    ];
    let started_tx = Arc::new(started_tx);
    for (kind, p) in probes {
        let Some(p) = p.clone() else { continue };
        if kind == Kind::Startup && started {
            continue;
        }
        let w = ProbeWorker {
            agent: agent.clone(),
            uid: uid.to_string(),
            tx: tx.clone(),
            container: c.name.clone(),
            inst_id: inst.id.clone(),
            started_at: inst.started_at,
            kind,
            probe: p,
            target: target.clone(),
            started_tx: started_tx.clone(),
            started_rx: started_rx.clone(),
            initially_ready: ready,
        };
        handles.push(tokio::spawn(w.run()));
    }
    handles
}

struct ProbeWorker {
    agent: Arc<Agent>,
    uid: String,
    tx: mpsc::UnboundedSender<Msg>,
    container: String,
    inst_id: String,
    started_at: Timestamp,
    kind: Kind,
    probe: k8s_openapi::api::core::v1::Probe,
    target: Target,
    started_tx: Arc<watch::Sender<bool>>,
    started_rx: watch::Receiver<bool>,
    initially_ready: bool,
}

impl ProbeWorker {
    async fn run(mut self) {
        let t = Timing::of(&self.probe);
        let mut tracker = Tracker::new(self.kind);
        if self.kind == Kind::Readiness && self.initially_ready {
            tracker.result = Some(true);
        }
        // Startup gates the others.
        if self.kind != Kind::Startup {
            let _ = self.started_rx.wait_for(|s| *s).await;
        }
        // The first attempt waits initialDelaySeconds from the start.
        let first = self.started_at + t.initial_delay;
        let now = Timestamp::now();
        if first > now {
            tokio::time::sleep(dur_until(first, now)).await;
        }
        let field = format!("spec.containers{{{}}}", self.container);
        let (ns, pod) = self
            .agent
            .record(&self.uid)
            .map(|r| (r.namespace, r.name))
            .unwrap_or_default();
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::time::sleep_until(next).await;
            next += t.period;
            let t0 = std::time::Instant::now();
            let outcome = probe::attempt(&self.probe, &self.target, &self.agent.http).await;
            let secs = t0.elapsed().as_secs_f64();
            let ok = outcome == Outcome::Success;
            {
                let mut g = self.agent.lock();
                let s = g
                    .probes
                    .entry((
                        ns.clone(),
                        pod.clone(),
                        self.container.clone(),
                        self.kind.as_str(),
                        if ok { "successful" } else { "failed" },
                    ))
                    .or_default();
                s.total += 1;
                s.seconds_sum += secs;
            }
            if let Outcome::Failure(msg) = &outcome {
                self.agent.event(
                    &self.uid,
                    EventKind::Warning,
                    "Unhealthy",
                    format!("{} probe failed: {msg}", self.kind.as_str()),
                    Some(&field),
                );
            }
            let Some(result) = tracker.observe(ok, &t) else {
                continue;
            };
            match (self.kind, result) {
                (Kind::Startup, true) => {
                    self.set(|c| c.started = true);
                    let _ = self.started_tx.send(true);
                    return;
                }
                (Kind::Readiness, r) => self.set(|c| c.ready = r),
                (Kind::Liveness | Kind::Startup, false) => {
                    let _ = self.tx.send(Msg::Kill {
                        id: self.inst_id.clone(),
                        grace: self
                            .probe
                            .termination_grace_period_seconds
                            .map(|s| Duration::from_secs(s.max(0) as u64)),
                        reason: format!(
                            "Container {} failed {} probe, will be restarted",
                            self.container,
                            self.kind.as_str().to_lowercase()
                        ),
                    });
                    return;
                }
                _ => {}
            }
        }
    }

    fn set(&self, f: impl FnOnce(&mut state::ContainerRecord)) {
        let id = self.inst_id.clone();
        self.agent.update(&self.uid, |r| {
            if let Some(c) = r
                .containers
                .iter_mut()
                .find(|c| c.current.as_ref().is_some_and(|i| i.id == id))
            {
                f(c);
            }
        });
        let _ = self.tx.send(Msg::Wake);
    }
}
