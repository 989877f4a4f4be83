//! Probe workers: one task per probe of a running app container, as in
//! kubelet's prober (pkg/kubelet/prober/worker.go).
//!
//! A worker waits for the startup probe to succeed (it gates the others),
//! then for `initialDelaySeconds` counted from the container's start, then
//! probes every `periodSeconds`. [`crate::probe::Tracker`] turns attempts
//! into results with the thresholds; a result is acted on: startup
//! success lets the others run, readiness sets the container's `ready`,
//! a liveness (or startup) failure asks the pod worker to kill and restart
//! the container.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Container;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::super::events::Kind as EventKind;
use super::super::state::{self, Instance};
use super::super::Agent;
use super::Msg;
use crate::probe::{self, Kind, Outcome, Target, Timing, Tracker};

/// The probe tasks of one app container instance.
#[allow(clippy::too_many_arguments)]
pub fn start_probes(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    c: &Container,
    inst: &Instance,
    pod_ip: &str,
    started: bool,
    ready: bool,
    traced: bool,
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
            traced,
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
    /// This instance's start is on a pod-start trace (`--trace-dir`): the
    /// first success goes on it too.
    traced: bool,
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
            tokio::time::sleep(super::start::dur_until(first, now)).await;
        }
        let field = format!("spec.containers{{{}}}", self.container);
        let (ns, pod) = self
            .agent
            .status
            .record(&self.uid)
            .map(|r| (r.namespace, r.name))
            .unwrap_or_default();
        let mut next = tokio::time::Instant::now();
        let mut first_success = true;
        loop {
            tokio::time::sleep_until(next).await;
            next += t.period;
            let t0 = std::time::Instant::now();
            let outcome = probe::attempt(&self.probe, &self.target, &self.agent.http).await;
            let secs = t0.elapsed().as_secs_f64();
            let ok = outcome == Outcome::Success;
            if ok && self.traced && std::mem::take(&mut first_success) {
                self.trace_first_success();
            }
            {
                let mut g = self.agent.metrics();
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

    /// On the pod-start trace, if one is written: a span from the
    /// container's start to this probe's first success.
    fn trace_first_success(&self) {
        let Some(t) = self.agent.traces.get(&self.uid) else {
            return;
        };
        let ago = Timestamp::now()
            .duration_since(self.started_at)
            .as_secs_f64()
            .max(0.0);
        t.span(
            &format!(
                "container {}: started, until the first {} probe success",
                self.container,
                self.kind.as_str().to_lowercase()
            ),
            crate::agent::trace::now() - ago * 1e6,
            0,
        );
    }

    fn set(&self, f: impl FnOnce(&mut state::ContainerRecord)) {
        let id = self.inst_id.clone();
        self.agent.status.update(&self.uid, |r| {
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
