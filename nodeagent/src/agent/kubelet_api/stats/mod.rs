//! `/stats/summary` and `/metrics/resource`: what the node and its pods
//! use, for metrics-server and `kubectl top`.
//!
//! The Summary API (`k8s.io/kubelet/pkg/apis/stats/v1alpha1`) gives, for
//! the node, each pod and each container: CPU (`usageCoreNanoSeconds`, the
//! cumulative CPU time, and `usageNanoCores`, its rate), memory
//! (`usageBytes`, `workingSetBytes` = usage minus inactive file pages,
//! which is what the kernel cannot reclaim easily and what eviction and
//! `kubectl top` use, `rssBytes`, page faults), network (the pod's
//! `eth0`, read from `/proc/PID/net/dev` of a process inside the pod's
//! network namespace) and file systems (`statvfs(3)` of the data
//! directory, the size of the container's log files).
//!
//! Pods and containers are read from their cgroups (see
//! [`skiff_runtime::cgroups::stats`]): the pod's cgroup holds its
//! containers' cgroups, so its counters are their sums. The node's
//! numbers come from `/proc/stat` and `/proc/meminfo`, as the root
//! cgroup's would. Rates need two samples: the agent remembers the last
//! CPU reading of each cgroup and reports `usageNanoCores` from the
//! second request on.
//!
//! `/metrics/resource` is the same data in Prometheus' text format, with
//! kubelet's metric names (`node_cpu_usage_seconds_total`,
//! `container_memory_working_set_bytes`, ...).

mod prometheus;
mod summary;

pub use prometheus::prometheus;
pub use summary::*;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::Timestamp;

use crate::agent::state::PodRecord;
use crate::agent::Agent;

/// The last CPU reading of each cgroup, for rates.
#[derive(Default)]
pub struct Samples(Mutex<HashMap<String, (Timestamp, u64)>>);

impl Samples {
    /// Record `usage` of `key` at `t`; the rate since the last reading.
    fn rate(&self, key: &str, t: Timestamp, usage: u64) -> Option<u64> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let prev = m.insert(key.to_string(), (t, usage));
        let (t0, u0) = prev?;
        let dt = t.duration_since(t0).as_nanos();
        if dt <= 0 || usage < u0 {
            return None;
        }
        Some(((usage - u0) as u128 * 1_000_000_000 / dt as u128) as u64)
    }

    fn keep(&self, live: &std::collections::HashSet<String>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|k, _| live.contains(k));
    }
}

/// CPU and memory of the cgroup at `path` (as the runtime places it).
fn cgroup(
    path: &str,
    samples: &Samples,
    live: &mut std::collections::HashSet<String>,
) -> Option<(CpuStats, MemoryStats, u64)> {
    let paths = skiff_runtime::cgroups::resolve_paths(Some(Path::new(path)), "stats").ok()?;
    let s = skiff_runtime::cgroups::stats::stats(&paths);
    let time = Timestamp::now();
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let usage = n(&s["cpu"]["usage"]["total"]);
    live.insert(path.to_string());
    let raw = &s["memory"]["raw"];
    let mem = n(&s["memory"]["usage"]["usage"]);
    let v2 = paths.is_v2();
    let inactive = if v2 {
        n(&raw["inactive_file"])
    } else {
        n(&raw["total_inactive_file"])
    };
    let limit = n(&s["memory"]["usage"]["limit"]);
    let memory = MemoryStats {
        time,
        // No limit reads as a huge number (v1: LONG_MAX rounded to pages;
        // v2: "max"): then there is no "available" either.
        available_bytes: (limit > 0 && limit < 1 << 62)
            .then(|| limit.saturating_sub(mem.saturating_sub(inactive))),
        usage_bytes: mem,
        working_set_bytes: mem.saturating_sub(inactive),
        rss_bytes: if v2 {
            n(&raw["anon"])
        } else {
            n(&raw["total_rss"])
        },
        page_faults: if v2 {
            n(&raw["pgfault"])
        } else {
            n(&raw["total_pgfault"])
        },
        major_page_faults: if v2 {
            n(&raw["pgmajfault"])
        } else {
            n(&raw["total_pgmajfault"])
        },
    };
    let cpu = CpuStats {
        time,
        usage_nano_cores: samples.rate(path, time, usage),
        usage_core_nano_seconds: usage,
    };
    // Processes of the cgroup and those below it (the pod's: all its
    // containers').
    let procs = skiff_runtime::cgroups::pids(&paths).map_or(0, |p| p.len() as u64);
    Some((cpu, memory, procs))
}

/// The counters of `/proc/PID/net/dev` (the network namespace of PID).
fn network(pid: Option<i32>) -> Option<NetworkStats> {
    let file = match pid {
        Some(p) => format!("/proc/{p}/net/dev"),
        None => "/proc/self/net/dev".into(),
    };
    let text = std::fs::read_to_string(file).ok()?;
    let mut interfaces: Vec<InterfaceStats> = text
        .lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() >= 11).then(|| InterfaceStats {
                name: name.trim().to_string(),
                rx_bytes: f[0],
                rx_errors: f[2],
                tx_bytes: f[8],
                tx_errors: f[10],
            })
        })
        .filter(|i| i.name != "lo")
        .collect();
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    let default = interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .or(interfaces.first())
        .cloned()?;
    Some(NetworkStats {
        time: Timestamp::now(),
        default,
        interfaces,
    })
}

/// `statvfs(3)` of the file system holding `path`.
fn fs(path: &Path) -> FsStats {
    let time = Timestamp::now();
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let f = s.fragment_size();
            FsStats {
                time,
                available_bytes: Some(s.blocks_available() * f),
                capacity_bytes: Some(s.blocks() * f),
                used_bytes: Some((s.blocks() - s.blocks_free()) * f),
                inodes_free: Some(s.files_free()),
                inodes: Some(s.files()),
                inodes_used: Some(s.files() - s.files_free()),
            }
        }
        Err(_) => FsStats {
            time,
            ..Default::default()
        },
    }
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// The node's CPU, memory and boot time from `/proc`.
fn node_stats(agent: &Agent, samples: &Samples) -> NodeStats {
    let time = Timestamp::now();
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut busy = 0u64;
    let mut boot = 0i64;
    for l in stat.lines() {
        let mut f = l.split_whitespace();
        match f.next() {
            // user nice system idle iowait irq softirq steal: all but idle
            // and iowait are time spent working.
            Some("cpu") => {
                let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
                busy = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| v.get(*i)).sum();
            }
            Some("btime") => boot = f.next().and_then(|x| x.parse().ok()).unwrap_or(0),
            _ => {}
        }
    }
    let usage = busy * (1_000_000_000 / clock_ticks());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let used = kb("MemTotal").saturating_sub(kb("MemFree"));
    let vmstat = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    let vm = |key: &str| {
        vmstat
            .lines()
            .find_map(|l| {
                l.strip_prefix(key)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    let working = used.saturating_sub(kb("Inactive(file)"));
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let curproc = loadavg
        .split_whitespace()
        .nth(3)
        .and_then(|x| x.split_once('/'))
        .and_then(|(_, t)| t.parse().ok())
        .unwrap_or(0);
    let data = fs(&agent.cfg.data_dir);
    NodeStats {
        node_name: agent.cfg.node_name.clone(),
        start_time: Timestamp::from_second(boot).unwrap_or(time),
        cpu: CpuStats {
            time,
            usage_nano_cores: samples.rate("node", time, usage),
            usage_core_nano_seconds: usage,
        },
        memory: MemoryStats {
            time,
            available_bytes: Some(kb("MemAvailable")),
            usage_bytes: used,
            working_set_bytes: working,
            rss_bytes: kb("AnonPages"),
            page_faults: vm("pgfault"),
            major_page_faults: vm("pgmajfault"),
        },
        network: network(None),
        fs: data.clone(),
        runtime: RuntimeStats { image_fs: data },
        rlimit: RlimitStats {
            time,
            maxpid: std::fs::read_to_string("/proc/sys/kernel/pid_max")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            curproc,
        },
    }
}

fn pod_stats(
    agent: &Agent,
    r: &PodRecord,
    samples: &Samples,
    live: &mut std::collections::HashSet<String>,
) -> Option<PodStats> {
    let sandbox = r.sandbox.as_ref()?;
    let parent = crate::agent::engine::sandbox::cgroup_parent(&r.uid);
    let (cpu, memory, procs) = cgroup(&parent, samples, live)?;
    let data = fs(&agent.cfg.data_dir);
    let containers = r
        .containers
        .iter()
        .filter_map(|c| {
            let inst = c.current.as_ref()?;
            let (cpu, memory, _) = cgroup(&format!("{parent}/{}", inst.id), samples, live)?;
            let log_bytes: u64 = crate::cri_log::files(&inst.log)
                .iter()
                .filter_map(|f| std::fs::metadata(f).ok())
                .map(|m| m.len())
                .sum();
            Some(ContainerStats {
                name: c.name.clone(),
                start_time: inst.started_at,
                cpu,
                memory,
                rootfs: FsStats {
                    used_bytes: None,
                    ..data.clone()
                },
                logs: FsStats {
                    used_bytes: Some(log_bytes),
                    ..data.clone()
                },
            })
        })
        .collect();
    Some(PodStats {
        pod_ref: PodRef {
            name: r.name.clone(),
            namespace: r.namespace.clone(),
            uid: r.uid.clone(),
        },
        start_time: r.start_time.unwrap_or(r.created_at),
        containers,
        cpu,
        memory,
        network: sandbox
            .netns
            .as_ref()
            .and_then(|_| network(Some(sandbox.pid))),
        process_stats: ProcessStats {
            process_count: procs,
        },
    })
}

/// The summary of the node and its pods.
pub fn summary(agent: &Agent) -> Summary {
    let samples = &agent.stats_samples;
    let mut live = std::collections::HashSet::from(["node".to_string()]);
    let node = node_stats(agent, samples);
    let mut pods: Vec<PodStats> = agent
        .status
        .list()
        .iter()
        .filter_map(|r| pod_stats(agent, r, samples, &mut live))
        .collect();
    pods.sort_by(|a, b| {
        (&a.pod_ref.namespace, &a.pod_ref.name).cmp(&(&b.pod_ref.namespace, &b.pod_ref.name))
    });
    samples.keep(&live);
    Summary { node, pods }
}

/// `GET /stats/summary`.
pub async fn stats_summary(State(agent): State<Arc<Agent>>) -> Response {
    let s = tokio::task::spawn_blocking(move || summary(&agent)).await;
    match s {
        Ok(s) => Json(s).into_response(),
        Err(e) => super::status_error(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /metrics/resource`.
pub async fn metrics_resource(State(agent): State<Arc<Agent>>) -> Response {
    let Ok(s) = tokio::task::spawn_blocking(move || summary(&agent)).await else {
        return super::status_error(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "stats");
    };
    (
        [("content-type", "text/plain; version=0.0.4")],
        prometheus(&s),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_two_readings() {
        let s = Samples::default();
        let t0 = Timestamp::from_second(1000).unwrap();
        assert_eq!(s.rate("a", t0, 1_000), None);
        let t1 = t0 + jiff::SignedDuration::from_millis(500);
        // 0.25 s of CPU in 0.5 s: half a core.
        assert_eq!(s.rate("a", t1, 250_001_000), Some(500_000_000));
        s.keep(&Default::default());
        assert_eq!(s.rate("a", t1, 0), None, "forgotten");
    }

    #[test]
    fn the_node_and_this_process_network_read() {
        let n = network(None);
        // A test may run in a namespace with loopback only.
        if let Some(n) = n {
            assert!(!n.interfaces.is_empty());
        }
        let f = fs(Path::new("/"));
        assert!(f.capacity_bytes.unwrap() > 0);
    }

    #[test]
    fn prometheus_text_names_kubelets_metrics() {
        let s = Summary {
            node: NodeStats {
                cpu: CpuStats {
                    usage_core_nano_seconds: 1_500_000_000,
                    ..Default::default()
                },
                ..Default::default()
            },
            pods: vec![PodStats {
                pod_ref: PodRef {
                    name: "p".into(),
                    namespace: "n".into(),
                    uid: "u".into(),
                },
                containers: vec![ContainerStats {
                    name: "c".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let t = prometheus(&s);
        assert!(t.contains("\nnode_cpu_usage_seconds_total 1.5 "), "{t}");
        assert!(t.contains(
            "container_memory_working_set_bytes{container=\"c\",namespace=\"n\",pod=\"p\"} 0 "
        ));
        assert!(t.ends_with("scrape_error 0\n"));
    }
}
