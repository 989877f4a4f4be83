//! Starting one container of a pod, as a short sequence of named steps:
//!
//! 1. [`crash_loop_gate`]: after an exit, the restart back-off may hold the
//!    container (`CrashLoopBackOff`, 10 s doubling to 5 min);
//! 2. [`image_gate`]: after failed pulls, the image back-off may hold it
//!    (`ErrImagePull`, then `ImagePullBackOff`);
//! 3. the image ([`super::image`]), and the bundle ([`super::bundle`]);
//! 4. [`launch`]: a monitor runs `skiff create` and `start`; the attempt is
//!    counted, the instance recorded and watched, its probes started.
//!
//! Each step that stops the start says how long until it is worth trying
//! again ([`Due::Later`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Container;
use tokio::sync::mpsc;

use super::super::events::Kind as EventKind;
use super::super::reasons::{TerminatedReason, WaitingReason};
use super::super::state::{self, CState, ContainerRecord, Instance, PodRecord, Terminated};
use super::super::Agent;
use super::container::{self, Launch};
use super::image::{ImageError, ImageReady};
use super::{bundle, container_spec, probes, Local, Msg};

/// What [`start_if_due`] did.
pub enum Due {
    /// The container runs (though a failed postStart hook may already have
    /// had it killed).
    Started,
    /// The runtime could not start it: it is recorded as terminated with
    /// `StartError`; look again at once.
    Failed,
    /// Held back (a back-off, the image, its configuration) or not found;
    /// worth another look after this long.
    Later(Duration),
}

/// The `fieldPath` of a container in events: `spec.containers{name}`.
pub fn field_path(init: bool, name: &str) -> String {
    format!(
        "spec.{}{{{name}}}",
        if init { "initContainers" } else { "containers" }
    )
}

/// Start the container unless something holds it back.
pub async fn start_if_due(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    local: &mut Local,
    init: bool,
    name: &str,
    now: Timestamp,
) -> Due {
    let Some(rec) = agent.status.record(uid) else {
        return Due::Later(Duration::from_secs(1));
    };
    let list = if init { &rec.init } else { &rec.containers };
    let Some(c) = list.iter().find(|c| c.name == name).cloned() else {
        return Due::Later(Duration::from_secs(1));
    };
    let field = field_path(init, name);
    if let Some(wait) = crash_loop_gate(agent, &rec, &c, init, &field, now) {
        return Due::Later(wait);
    }
    if let Some(wait) = image_gate(agent, uid, &c, init, &field, now) {
        return Due::Later(wait);
    }
    let Some(spec) = container_spec(&rec, init, name) else {
        return Due::Later(Duration::from_secs(1));
    };
    // A pod-start trace covers each container's first run, not restarts.
    let first_run = c.restart_count == 0 && c.last_state.is_none();
    let trace = first_run.then(|| agent.traces.get(uid)).flatten();
    let image = {
        let _s = crate::agent::trace::start(
            trace.as_ref(),
            format!("image {}", spec.image.as_deref().unwrap_or("")),
        );
        super::image::ensure_image(agent, uid, &spec, &field).await
    };
    let image = match image {
        Ok(i) => i,
        Err(e) => return Due::Later(image_failed(agent, uid, init, name, &field, e)),
    };
    let attempt = Attempt::new(agent, &rec, name, &c);
    let intent = attempt.intent(&image.image_id);
    agent.status.update(uid, |r| {
        if let Some(c) = r.container_mut(init, name) {
            c.launching = Some(intent);
        }
    });
    let prepared = {
        let _s = crate::agent::trace::start(trace.as_ref(), format!("container {name}: bundle"));
        bundle::prepare_bundle(
            agent,
            &rec,
            &spec,
            &image,
            &attempt.bundle,
            &attempt.monitor_dir,
            &attempt.id,
        )
        .await
    };
    if let Err(msg) = prepared {
        return Due::Later(config_failed(agent, uid, init, name, &field, msg));
    }
    launch(agent, tx, local, &rec, &spec, &image, attempt, init, &field).await
}

/// Step 1: the restart back-off. `Some(wait)` while it holds.
fn crash_loop_gate(
    agent: &Arc<Agent>,
    rec: &PodRecord,
    c: &ContainerRecord,
    init: bool,
    field: &str,
    now: Timestamp,
) -> Option<Duration> {
    let t = c.last_state.as_ref()?;
    let until = c
        .backoff
        .hold_until(&agent.cfg.restart_backoff, t.finished_at, now)?;
    let msg = format!(
        "back-off {} restarting failed container={} pod={}_{}({})",
        human(c.backoff.delay()),
        c.name,
        rec.name,
        rec.namespace,
        rec.uid
    );
    let first = !matches!(
        &c.state,
        CState::Waiting {
            reason: WaitingReason::CrashLoopBackOff,
            ..
        }
    );
    agent.status.update(&rec.uid, |r| {
        if let Some(c) = r.container_mut(init, &c.name) {
            c.state = CState::waiting(WaitingReason::CrashLoopBackOff, Some(msg.clone()));
        }
    });
    if first {
        agent.event(
            &rec.uid,
            EventKind::Warning,
            "BackOff",
            "Back-off restarting failed container".into(),
            Some(field),
        );
    }
    Some(dur_until(until, now))
}

/// Step 2: the image back-off after a failed pull. `Some(wait)` while it
/// holds; the first time, `ErrImagePull` becomes `ImagePullBackOff`.
fn image_gate(
    agent: &Arc<Agent>,
    uid: &str,
    c: &ContainerRecord,
    init: bool,
    field: &str,
    now: Timestamp,
) -> Option<Duration> {
    let CState::Waiting { reason, .. } = &c.state else {
        return None;
    };
    if !matches!(
        reason,
        WaitingReason::ErrImagePull | WaitingReason::ImagePullBackOff
    ) {
        return None;
    }
    let until = c
        .image_backoff
        .last_update
        .map(|u| u + c.image_backoff.delay())
        .filter(|until| now < *until)?;
    if *reason == WaitingReason::ErrImagePull {
        agent.status.update(uid, |r| {
            if let Some(c) = r.container_mut(init, &c.name) {
                if let CState::Waiting { message, .. } = &c.state {
                    let message = Some(format!(
                        "Back-off pulling image {:?}: {}",
                        c.image,
                        message.clone().unwrap_or_default()
                    ));
                    c.state = CState::waiting(WaitingReason::ImagePullBackOff, message);
                }
            }
        });
        agent.event(
            uid,
            EventKind::Normal,
            "BackOff",
            format!("Back-off pulling image {:?}", c.image),
            Some(field),
        );
    }
    Some(dur_until(until, now))
}

/// The image could not be had: record why, move the image back-off on,
/// and say when to look again.
fn image_failed(
    agent: &Arc<Agent>,
    uid: &str,
    init: bool,
    name: &str,
    field: &str,
    e: ImageError,
) -> Duration {
    let pull = e.reason == WaitingReason::ErrImagePull;
    agent.event(
        uid,
        EventKind::Warning,
        "Failed",
        e.message.clone(),
        Some(field),
    );
    if pull {
        agent.event(
            uid,
            EventKind::Warning,
            "Failed",
            "Error: ErrImagePull".into(),
            Some(field),
        );
    }
    let backoff = agent.cfg.image_backoff;
    let held = e.reason.is_image_backoff();
    agent.status.update(uid, |r| {
        if let Some(c) = r.container_mut(init, name) {
            c.state = CState::waiting(e.reason, Some(e.message.clone()));
            if held {
                let now = Timestamp::now();
                c.image_backoff.next(&backoff, now, now);
            }
        }
    });
    if held {
        backoff
            .initial
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(1))
    } else {
        Duration::from_secs(5)
    }
}

/// The bundle could not be made (`CreateContainerConfigError`).
fn config_failed(
    agent: &Arc<Agent>,
    uid: &str,
    init: bool,
    name: &str,
    field: &str,
    msg: String,
) -> Duration {
    agent.event(
        uid,
        EventKind::Warning,
        "Failed",
        format!("Error: {msg}"),
        Some(field),
    );
    agent.status.update(uid, |r| {
        if let Some(c) = r.container_mut(init, name) {
            c.state = CState::waiting(WaitingReason::CreateContainerConfigError, Some(msg.clone()));
            c.launching = None;
        }
    });
    Duration::from_secs(5).min(agent.cfg.restart_backoff.initial)
}

/// One start attempt: its number (the restart count it will have), the
/// container id, and where its bundle, monitor and log go.
pub struct Attempt {
    /// The attempt's number: the restart count the container will have (0
    /// for its first run).
    pub restart: u32,
    /// The instance's container id:
    /// `k8s_<container>_<pod>_<namespace>_<uid[..8]><hash[..4]>_<restart>`.
    pub id: String,
    /// Where its bundle goes, on disk.
    pub bundle: PathBuf,
    /// Its monitor's directory, in the state directory.
    pub monitor_dir: PathBuf,
    /// Its CRI log file, `<restart>.log`.
    pub log: PathBuf,
}

impl Attempt {
    /// What is recorded while the attempt is under way.
    fn intent(&self, image_id: &str) -> state::Launching {
        state::Launching {
            id: self.id.clone(),
            restart: self.restart,
            image_id: image_id.to_string(),
            bundle: self.bundle.clone(),
            monitor_dir: self.monitor_dir.clone(),
            log: self.log.clone(),
        }
    }

    /// The next attempt of container `c` of pod `rec`: a restart if it has
    /// run before.
    pub fn new(agent: &Agent, rec: &PodRecord, name: &str, c: &ContainerRecord) -> Attempt {
        let restart = c.restart_count + u32::from(c.last_state.is_some());
        let id = format!(
            "k8s_{name}_{}_{}_{}{}_{restart}",
            rec.name,
            rec.namespace,
            &rec.uid[..8],
            &rec.spec_hash[..4]
        );
        let layout = agent.cfg.layout();
        Attempt {
            bundle: layout.bundle_dir(&rec.uid, &id),
            monitor_dir: layout.monitor_dir(&rec.uid, &id),
            log: layout.log_file(rec, name, restart),
            restart,
            id,
        }
    }
}

/// Step 4: run the container under its monitor and record the outcome.
#[allow(clippy::too_many_arguments)]
async fn launch(
    agent: &Arc<Agent>,
    tx: &mpsc::UnboundedSender<Msg>,
    local: &mut Local,
    rec: &PodRecord,
    spec: &Container,
    image: &ImageReady,
    a: Attempt,
    init: bool,
    field: &str,
) -> Due {
    let uid = &rec.uid;
    let name = &spec.name;
    if let Some(dir) = a.log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let trace = (a.restart == 0).then(|| agent.traces.get(uid)).flatten();
    let launched = {
        let _s = crate::agent::trace::start(
            trace.as_ref(),
            format!("container {name}: create and start"),
        );
        container::launch(
            agent,
            Launch {
                id: &a.id,
                bundle: &a.bundle,
                dir: &a.monitor_dir,
                log: Some(&a.log),
                trace: trace.as_ref().map(|t| t.path()),
            },
        )
        .await
    };
    let backoff = agent.cfg.restart_backoff;
    let now = Timestamp::now();
    match launched {
        Ok((started, monitor_pid)) => {
            let inst = Instance {
                id: a.id.clone(),
                bundle: a.bundle.clone(),
                dir: a.monitor_dir.clone(),
                log: a.log.clone(),
                pid: started.pid,
                monitor_pid,
                started_at: started.started_at,
            };
            let has_startup = spec.startup_probe.is_some();
            agent.status.update(uid, |r| {
                if let Some(c) = r.container_mut(init, name) {
                    become_current(
                        c,
                        &backoff,
                        now,
                        &image.image_id,
                        a.restart,
                        inst.clone(),
                        has_startup,
                    );
                }
            });
            for (reason, what) in [("Created", "Created"), ("Started", "Started")] {
                agent.event(
                    uid,
                    EventKind::Normal,
                    reason,
                    format!("{what} container {name}"),
                    Some(field),
                );
            }
            container::watch(
                agent,
                tx.clone(),
                a.id.clone(),
                a.monitor_dir,
                started.pid,
                monitor_pid,
                Some(a.log.clone()),
            );
            if super::hooks::post_start(agent, rec, spec, &a.id, field)
                .await
                .is_err()
            {
                // kubelet kills a container whose postStart hook failed;
                // its exit then goes the usual way (restart policy).
                let grace = super::grace_period(rec);
                super::stop::stop_instance(agent, &inst, grace, None).await;
                return Due::Started;
            }
            if !init {
                let ip = rec.pod_ip.clone().unwrap_or_default();
                let h = probes::start_probes(
                    agent,
                    uid,
                    tx,
                    spec,
                    &inst,
                    &ip,
                    !has_startup,
                    false,
                    trace.is_some(),
                );
                local.probes.insert(a.id, h);
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
                Some(field),
            );
            bundle::cleanup_instance(agent, &a.id, &a.bundle, &a.monitor_dir).await;
            let term = Terminated {
                exit_code: 128,
                signal: None,
                reason: TerminatedReason::StartError,
                message: Some(msg),
                started_at: None,
                finished_at: now,
                container_id: Some(format!("skiff://{}", a.id)),
            };
            agent.status.update(uid, |r| {
                if let Some(c) = r.container_mut(init, name) {
                    count_attempt(c, &backoff, now, &image.image_id, a.restart, &a.log);
                    c.previous = c.last_state.take();
                    c.last_state = Some(term.clone());
                    c.state = CState::Terminated(term);
                    c.launching = None;
                }
            });
            Due::Failed
        }
    }
}

/// A started instance becomes the container's current one: the attempt
/// counts, the state is running (started only without a startup probe).
pub fn become_current(
    c: &mut ContainerRecord,
    backoff: &crate::backoff::Policy,
    now: Timestamp,
    image_id: &str,
    restart: u32,
    inst: Instance,
    has_startup: bool,
) {
    count_attempt(c, backoff, now, image_id, restart, &inst.log);
    c.state = CState::Running {
        started_at: inst.started_at,
    };
    c.current = Some(inst);
    c.started = !has_startup;
    c.ready = false;
    c.launching = None;
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

/// From `now` until `until`, at least a millisecond.
pub fn dur_until(until: Timestamp, now: Timestamp) -> Duration {
    Duration::from_millis((until.as_millisecond() - now.as_millisecond()).max(1) as u64)
}

/// A back-off delay as kubelet writes it: `10s`, `2m40s`, `500ms`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_delays_read_like_kubelets() {
        assert_eq!(human(Duration::from_secs(10)), "10s");
        assert_eq!(human(Duration::from_secs(160)), "2m40s");
        assert_eq!(human(Duration::from_millis(500)), "500ms");
        assert_eq!(human(Duration::from_secs(300)), "5m0s");
    }

    #[test]
    fn durations_until_are_never_zero() {
        let now = Timestamp::now();
        assert_eq!(dur_until(now, now), Duration::from_millis(1));
        let later = now + Duration::from_secs(3);
        assert_eq!(dur_until(later, now), Duration::from_secs(3));
    }

    #[test]
    fn a_restart_counts_and_moves_the_back_off() {
        let policy = crate::backoff::Policy::default();
        let now = Timestamp::now();
        let mut c = ContainerRecord::new("app", "img", WaitingReason::ContainerCreating);
        count_attempt(
            &mut c,
            &policy,
            now,
            "img@sha256:1",
            0,
            std::path::Path::new("/l/0.log"),
        );
        assert_eq!(c.restart_count, 0, "a first start is no restart");
        c.last_state = Some(Terminated {
            exit_code: 1,
            signal: None,
            reason: TerminatedReason::Error,
            message: None,
            started_at: None,
            finished_at: now,
            container_id: None,
        });
        count_attempt(
            &mut c,
            &policy,
            now,
            "img@sha256:1",
            1,
            std::path::Path::new("/l/1.log"),
        );
        assert_eq!(c.restart_count, 1);
        assert_eq!(c.logs.len(), 2);
        assert_eq!(c.image_id.as_deref(), Some("img@sha256:1"));
    }
}
