//! `GET /metrics`: Prometheus text format, names prefixed `skiff_`: pods by
//! phase, readiness, probe counters and start latencies.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::{pod_json, Shared};
use crate::agent::status::pod_status;

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn metrics(State(agent): State<Shared>, _h: HeaderMap) -> Response {
    let (recs, probes, latencies) = {
        let m = agent.metrics();
        (agent.status.list(), m.probes.clone(), m.pod_starts.clone())
    };
    let mut o = String::new();
    let mut phases = std::collections::BTreeMap::new();
    for p in ["Pending", "Running", "Succeeded", "Failed"] {
        phases.insert(p, 0u64);
    }
    for r in &recs {
        *phases.entry(pod_status::phase(r)).or_default() += 1;
    }
    o.push_str("# HELP skiff_pods Pods known to the agent, by phase.\n# TYPE skiff_pods gauge\n");
    for (p, n) in &phases {
        let _ = writeln!(o, "skiff_pods{{phase=\"{p}\"}} {n}");
    }
    o.push_str("# HELP skiff_pod_ready Whether the pod's Ready condition is true.\n# TYPE skiff_pod_ready gauge\n");
    for r in &recs {
        let p = pod_json(&agent, r);
        let ready = p
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let _ = writeln!(
            o,
            "skiff_pod_ready{{namespace=\"{}\",pod=\"{}\"}} {}",
            esc(&r.namespace),
            esc(&r.name),
            u8::from(ready)
        );
    }
    o.push_str("# HELP skiff_container_state Container state (1 for the current one), with its reason.\n# TYPE skiff_container_state gauge\n");
    let mut restarts = String::new();
    let mut ready = String::new();
    for r in &recs {
        let pod = pod_json(&agent, r);
        let st = pod.status.unwrap_or_default();
        for c in st
            .container_statuses
            .iter()
            .flatten()
            .chain(st.init_container_statuses.iter().flatten())
        {
            let s = c.state.clone().unwrap_or_default();
            let (state, reason) = if let Some(w) = s.waiting {
                ("waiting", w.reason.unwrap_or_default())
            } else if let Some(t) = s.terminated {
                ("terminated", t.reason.unwrap_or_default())
            } else {
                ("running", String::new())
            };
            let labels = format!(
                "namespace=\"{}\",pod=\"{}\",container=\"{}\"",
                esc(&r.namespace),
                esc(&r.name),
                esc(&c.name)
            );
            let _ = writeln!(
                o,
                "skiff_container_state{{{labels},state=\"{state}\",reason=\"{}\"}} 1",
                esc(&reason)
            );
            let _ = writeln!(
                restarts,
                "skiff_container_restarts_total{{{labels}}} {}",
                c.restart_count
            );
            let _ = writeln!(
                ready,
                "skiff_container_ready{{{labels}}} {}",
                u8::from(c.ready)
            );
        }
    }
    o.push_str("# HELP skiff_container_restarts_total Restarts of each container.\n# TYPE skiff_container_restarts_total counter\n");
    o.push_str(&restarts);
    o.push_str("# HELP skiff_container_ready Whether the container is ready.\n# TYPE skiff_container_ready gauge\n");
    o.push_str(&ready);
    o.push_str(
        "# HELP skiff_probe_total Probe attempts by result.\n# TYPE skiff_probe_total counter\n",
    );
    let mut durations: std::collections::BTreeMap<String, (u64, f64)> = Default::default();
    for ((ns, pod, c, kind, result), s) in &probes {
        let labels = format!(
            "namespace=\"{}\",pod=\"{}\",container=\"{}\",probe_type=\"{kind}\"",
            esc(ns),
            esc(pod),
            esc(c)
        );
        let _ = writeln!(
            o,
            "skiff_probe_total{{{labels},result=\"{result}\"}} {}",
            s.total
        );
        let d = durations.entry(labels).or_default();
        d.0 += s.total;
        d.1 += s.seconds_sum;
    }
    o.push_str("# HELP skiff_probe_duration_seconds Time probes took.\n# TYPE skiff_probe_duration_seconds summary\n");
    for (labels, (n, sum)) in &durations {
        let _ = writeln!(o, "skiff_probe_duration_seconds_sum{{{labels}}} {sum}");
        let _ = writeln!(o, "skiff_probe_duration_seconds_count{{{labels}}} {n}");
    }
    o.push_str("# HELP skiff_pod_start_duration_seconds From first seeing a pod to all its containers running.\n# TYPE skiff_pod_start_duration_seconds summary\n");
    let _ = writeln!(
        o,
        "skiff_pod_start_duration_seconds_sum {}",
        latencies.seconds_sum
    );
    let _ = writeln!(
        o,
        "skiff_pod_start_duration_seconds_count {}",
        latencies.total
    );
    ([("content-type", "text/plain; version=0.0.4")], o).into_response()
}
