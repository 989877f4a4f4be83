//! `/metrics/resource`: the summary in Prometheus' text exposition
//! format, with kubelet's metric names.

use jiff::Timestamp;

use super::{ContainerStats, PodStats, Summary};

/// The summary in Prometheus' text exposition format, as kubelet's
/// resource metrics: one family per metric, one sample per container,
/// pod or node, each with its value and the time it was read.
pub fn prometheus(s: &Summary) -> String {
    use std::fmt::Write;
    /// (labels, value, time)
    type Sample = (String, String, Timestamp);
    let secs = |ns: u64| (ns as f64 / 1e9).to_string();
    let containers = |f: &dyn Fn(&ContainerStats) -> (String, Timestamp)| -> Vec<Sample> {
        s.pods
            .iter()
            .flat_map(|p| {
                p.containers.iter().map(move |c| {
                    let (v, t) = f(c);
                    let labels = format!(
                        "{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}}",
                        c.name, p.pod_ref.namespace, p.pod_ref.name
                    );
                    (labels, v, t)
                })
            })
            .collect()
    };
    let pods = |f: &dyn Fn(&PodStats) -> (String, Timestamp)| -> Vec<Sample> {
        s.pods
            .iter()
            .map(|p| {
                let (v, t) = f(p);
                let labels = format!(
                    "{{namespace=\"{}\",pod=\"{}\"}}",
                    p.pod_ref.namespace, p.pod_ref.name
                );
                (labels, v, t)
            })
            .collect()
    };
    let n = &s.node;
    let families: [(&str, &str, &str, Vec<Sample>); 6] = [
        (
            "container_cpu_usage_seconds_total",
            "Cumulative cpu time consumed by the container in core-seconds",
            "counter",
            containers(&|c| (secs(c.cpu.usage_core_nano_seconds), c.cpu.time)),
        ),
        (
            "container_memory_working_set_bytes",
            "Current working set of the container in bytes",
            "gauge",
            containers(&|c| (c.memory.working_set_bytes.to_string(), c.memory.time)),
        ),
        (
            "node_cpu_usage_seconds_total",
            "Cumulative cpu time consumed by the node in core-seconds",
            "counter",
            vec![(
                String::new(),
                secs(n.cpu.usage_core_nano_seconds),
                n.cpu.time,
            )],
        ),
        (
            "node_memory_working_set_bytes",
            "Current working set of the node in bytes",
            "gauge",
            vec![(
                String::new(),
                n.memory.working_set_bytes.to_string(),
                n.memory.time,
            )],
        ),
        (
            "pod_cpu_usage_seconds_total",
            "Cumulative cpu time consumed by the pod in core-seconds",
            "counter",
            pods(&|p| (secs(p.cpu.usage_core_nano_seconds), p.cpu.time)),
        ),
        (
            "pod_memory_working_set_bytes",
            "Current working set of the pod in bytes",
            "gauge",
            pods(&|p| (p.memory.working_set_bytes.to_string(), p.memory.time)),
        ),
    ];
    let mut o = String::new();
    for (name, help, kind, samples) in families {
        let _ = writeln!(o, "# HELP {name} [ALPHA] {help}\n# TYPE {name} {kind}");
        for (labels, value, t) in samples {
            let _ = writeln!(o, "{name}{labels} {value} {}", t.as_millisecond());
        }
    }
    o.push_str("# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise\n");
    o.push_str("# TYPE scrape_error gauge\nscrape_error 0\n");
    o
}
