//! Unit tests of [`super`].

use super::*;
use crate::agent::reasons::{TerminatedReason, WaitingReason};
use crate::agent::sources::{DesiredPod, Source};
use crate::agent::state::{Instance, Sandbox};

fn record(spec: serde_json::Value) -> PodRecord {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "default"},
        "spec": spec
    }))
    .unwrap();
    DesiredPod {
        uid: "0123456789abcdef".into(),
        namespace: "default".into(),
        name: "p".into(),
        source: Source::File,
        file: "/m/p.yaml".into(),
        pod: Ok(pod),
        spec_hash: "abcd".into(),
        deleting: None,
        rejected: None,
    }
    .into_record()
}

fn running(c: &mut ContainerRecord) {
    let now = jiff::Timestamp::now();
    c.state = CState::Running { started_at: now };
    c.started = true;
    c.current = Some(Instance {
        id: format!("k8s_{}", c.name),
        bundle: "/b".into(),
        dir: "/d".into(),
        log: "/l".into(),
        pid: 1,
        monitor_pid: 2,
        started_at: now,
    });
}

fn exited(c: &mut ContainerRecord, code: i32) {
    let t = Terminated {
        exit_code: code,
        signal: None,
        reason: if code == 0 {
            TerminatedReason::Completed
        } else {
            TerminatedReason::Error
        },
        message: None,
        started_at: None,
        finished_at: jiff::Timestamp::now(),
        container_id: Some(format!("skiff://k8s_{}", c.name)),
    };
    c.last_state = Some(t.clone());
    c.state = CState::Terminated(t);
    c.current = None;
}

fn sandbox(r: &mut PodRecord) {
    r.sandbox = Some(Sandbox {
        id: "sb".into(),
        dir: "/sb".into(),
        netns: None,
        pid: 3,
        monitor_pid: 4,
        cni_result: None,
        complete: true,
    });
}

fn cond(p: &Pod, kind: &str) -> String {
    p.status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == kind)
        .unwrap()
        .status
        .clone()
}

#[test]
fn phases_follow_the_containers() {
    let spec = serde_json::json!({
        "initContainers": [{"name": "i", "image": "x"}],
        "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]
    });
    let mut r = record(spec);
    assert_eq!(phase(&r), "Pending", "nothing ran yet");
    exited(&mut r.init[0], 0);
    assert_eq!(phase(&r), "Pending", "app containers not started");
    running(&mut r.containers[0]);
    running(&mut r.containers[1]);
    assert_eq!(phase(&r), "Running");
    exited(&mut r.containers[0], 1);
    assert_eq!(phase(&r), "Running", "one runs, the other will restart");
    exited(&mut r.containers[1], 0);
    r.finished = true;
    assert_eq!(phase(&r), "Failed", "one exited non-zero for good");
    exited(&mut r.containers[0], 0);
    assert_eq!(phase(&r), "Succeeded");
    r.invalid = Some("bad".into());
    assert_eq!(phase(&r), "Failed");
}

#[test]
fn readiness_needs_every_container_and_the_probe() {
    let spec = serde_json::json!({
        "containers": [
            {"name": "a", "image": "x", "readinessProbe": {"exec": {"command": ["true"]}}},
            {"name": "b", "image": "x"}
        ]
    });
    let mut r = record(spec);
    sandbox(&mut r);
    running(&mut r.containers[0]);
    running(&mut r.containers[1]);
    let p = pod(&r, "node", "10.0.0.1");
    assert_eq!(
        cond(&p, "Ready"),
        "False",
        "a's readiness probe has not passed"
    );
    assert_eq!(cond(&p, "PodReadyToStartContainers"), "True");
    assert_eq!(cond(&p, "Initialized"), "True");
    assert_eq!(ready_column(&p), "1/2");
    r.containers[0].ready = true;
    let p = pod(&r, "node", "10.0.0.1");
    assert_eq!(cond(&p, "Ready"), "True");
    assert_eq!(cond(&p, "ContainersReady"), "True");
    assert_eq!(ready_column(&p), "2/2");
    assert_eq!(display_status(&p), "Running");
    assert_eq!(p.spec.as_ref().unwrap().node_name.as_deref(), Some("node"));
    assert_eq!(
        p.status.as_ref().unwrap().qos_class.as_deref(),
        Some("BestEffort")
    );
}

#[test]
fn kubectls_status_column() {
    let spec = serde_json::json!({"containers": [{"name": "a", "image": "x"}]});
    let mut r = record(spec);
    r.containers[0].state =
        CState::waiting(WaitingReason::CrashLoopBackOff, Some("back-off".into()));
    r.containers[0].restart_count = 3;
    let p = pod(&r, "n", "h");
    assert_eq!(display_status(&p), "CrashLoopBackOff");
    assert!(restarts_column(&p).starts_with('3'));
    let spec = serde_json::json!({
        "initContainers": [{"name": "i", "image": "x"}, {"name": "j", "image": "x"}],
        "containers": [{"name": "a", "image": "x"}]
    });
    let mut r = record(spec);
    exited(&mut r.init[0], 0);
    let p = pod(&r, "n", "h");
    assert_eq!(display_status(&p), "Init:1/2");
    exited(&mut r.init[1], 2);
    assert_eq!(display_status(&pod(&r, "n", "h")), "Init:Error");
}

#[test]
fn qos_classes_as_the_api_server_computes_them() {
    let with = |res: serde_json::Value| {
        let r = record(
            serde_json::json!({"containers": [{"name": "a", "image": "x", "resources": res}]}),
        );
        pod(&r, "n", "h").status.unwrap().qos_class.unwrap()
    };
    assert_eq!(
        with(serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}})),
        "Guaranteed"
    );
    assert_eq!(
        with(serde_json::json!({"requests": {"cpu": "1"}})),
        "Burstable"
    );
    assert_eq!(with(serde_json::json!({})), "BestEffort");
}
