//! Task metrics and OOM events, from the container's cgroup.
//!
//! containerd's Stats call wants the cgroup numbers in its own protobuf
//! types: `io.containerd.cgroups.v1.Metrics` on a v1 (or hybrid) host,
//! `io.containerd.cgroups.v2.Metrics` on a unified one. skiff's cgroup
//! code already reads every controller's files into runc's statistics
//! layout ([`skiff_runtime::cgroups::stats`]); this module only moves the
//! numbers across. OOM kills are counted by the kernel (`oom_kill` in
//! v1's memory.oom_control or v2's memory.events); a watcher notices the
//! count rise and the shim publishes TaskOOM.

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::MessageField;
use protos_v2::cgroups_v2::metrics as v2;
use serde_json::Value;
use skiff_runtime::cgroups::CgroupPaths;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The container's metrics, as containerd's Stats answer carries them.
pub fn metrics(paths: &CgroupPaths) -> Result<Any, String> {
    let s = skiff_runtime::cgroups::stats::stats(paths);
    let any = if paths.is_v2() {
        containerd_shim::util::convert_to_any(Box::new(v2_metrics(&s)))
    } else {
        containerd_shim::util::convert_to_any(Box::new(v1_metrics(&s)))
    };
    any.map_err(|e| format!("encode metrics: {e}"))
}

fn v1_metrics(s: &Value) -> v1::Metrics {
    let (cpu, mem, pids) = (&s["cpu"], &s["memory"], &s["pids"]);
    let entry = |e: &Value| {
        MessageField::some(v1::MemoryEntry {
            limit: u(&e["limit"]),
            usage: u(&e["usage"]),
            max: u(&e["max"]),
            failcnt: u(&e["failcnt"]),
            ..Default::default()
        })
    };
    let raw = &mem["raw"];
    v1::Metrics {
        pids: MessageField::some(v1::PidsStat {
            current: u(&pids["current"]),
            limit: u(&pids["limit"]),
            ..Default::default()
        }),
        cpu: MessageField::some(v1::CPUStat {
            usage: MessageField::some(v1::CPUUsage {
                total: u(&cpu["usage"]["total"]),
                kernel: u(&cpu["usage"]["kernel"]),
                user: u(&cpu["usage"]["user"]),
                per_cpu: cpu["usage"]["percpu"]
                    .as_array()
                    .map(|a| a.iter().map(u).collect())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            throttling: MessageField::some(v1::Throttle {
                periods: u(&cpu["throttling"]["periods"]),
                throttled_periods: u(&cpu["throttling"]["throttledPeriods"]),
                throttled_time: u(&cpu["throttling"]["throttledTime"]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(v1::MemoryStat {
            cache: u(&raw["cache"]),
            rss: u(&raw["rss"]),
            rss_huge: u(&raw["rss_huge"]),
            mapped_file: u(&raw["mapped_file"]),
            dirty: u(&raw["dirty"]),
            writeback: u(&raw["writeback"]),
            pg_fault: u(&raw["pgfault"]),
            pg_maj_fault: u(&raw["pgmajfault"]),
            inactive_anon: u(&raw["inactive_anon"]),
            active_anon: u(&raw["active_anon"]),
            inactive_file: u(&raw["inactive_file"]),
            active_file: u(&raw["active_file"]),
            unevictable: u(&raw["unevictable"]),
            hierarchical_memory_limit: u(&raw["hierarchical_memory_limit"]),
            total_cache: u(&raw["total_cache"]),
            total_rss: u(&raw["total_rss"]),
            usage: entry(&mem["usage"]),
            swap: entry(&mem["swap"]),
            kernel: entry(&mem["kernel"]),
            kernel_tcp: entry(&mem["kernelTCP"]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn v2_metrics(s: &Value) -> v2::Metrics {
    let (cpu, mem, pids) = (&s["cpu"], &s["memory"], &s["pids"]);
    let raw = &mem["raw"];
    v2::Metrics {
        pids: MessageField::some(v2::PidsStat {
            current: u(&pids["current"]),
            limit: u(&pids["limit"]),
            ..Default::default()
        }),
        cpu: MessageField::some(v2::CPUStat {
            usage_usec: u(&cpu["usage"]["total"]) / 1000,
            user_usec: u(&cpu["usage"]["user"]) / 1000,
            system_usec: u(&cpu["usage"]["kernel"]) / 1000,
            nr_periods: u(&cpu["throttling"]["periods"]),
            nr_throttled: u(&cpu["throttling"]["throttledPeriods"]),
            throttled_usec: u(&cpu["throttling"]["throttledTime"]) / 1000,
            ..Default::default()
        }),
        memory: MessageField::some(v2::MemoryStat {
            anon: u(&raw["anon"]),
            file: u(&raw["file"]),
            kernel_stack: u(&raw["kernel_stack"]),
            slab: u(&raw["slab"]),
            sock: u(&raw["sock"]),
            shmem: u(&raw["shmem"]),
            file_mapped: u(&raw["file_mapped"]),
            file_dirty: u(&raw["file_dirty"]),
            inactive_anon: u(&raw["inactive_anon"]),
            active_anon: u(&raw["active_anon"]),
            inactive_file: u(&raw["inactive_file"]),
            active_file: u(&raw["active_file"]),
            pgfault: u(&raw["pgfault"]),
            pgmajfault: u(&raw["pgmajfault"]),
            usage: u(&mem["usage"]["usage"]),
            usage_limit: u(&mem["usage"]["limit"]),
            swap_usage: u(&mem["swap"]["usage"]),
            swap_limit: u(&mem["swap"]["limit"]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// OOM kills the shim has reported for one container.
#[derive(Default)]
pub struct OomCount(std::sync::atomic::AtomicU64);

impl OomCount {
    /// Has the kernel's count risen since last asked? (Records the new count.)
    pub fn rose(&self, paths: &CgroupPaths) -> bool {
        use std::sync::atomic::Ordering;
        let n = skiff_runtime::cgroups::stats::oom_kills(paths);
        self.0.fetch_max(n, Ordering::SeqCst) < n
    }
}

/// Watch for OOM kills while `alive()` holds, calling `on_oom` for each
/// rise of the kernel's count (polled every 200 ms). An OOM that kills the
/// init itself is caught at its exit instead, before the cgroup goes: see
/// the exit watcher in [`crate::service`].
pub fn watch_oom(
    paths: CgroupPaths,
    count: std::sync::Arc<OomCount>,
    alive: impl Fn() -> bool + Send + 'static,
    on_oom: impl Fn() + Send + 'static,
) {
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if !alive() {
            return;
        }
        if count.rose(&paths) {
            on_oom();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What `skiff_runtime::cgroups::stats` gives (runc's `events --stats`
    /// shape, camelCase keys), as containerd's metrics types.
    fn sample() -> Value {
        json!({
            "cpu": {
                "usage": {"total": 3_000_000, "kernel": 1_000_000, "user": 2_000_000, "percpu": [1, 2]},
                "throttling": {"periods": 10, "throttledPeriods": 4, "throttledTime": 5_000}
            },
            "memory": {
                "usage": {"limit": 1024, "usage": 512, "max": 600, "failcnt": 1},
                "swap": {"limit": 2048, "usage": 0, "failcnt": 0},
                "kernel": {"limit": 0, "failcnt": 0},
                "kernelTCP": {"limit": 0, "failcnt": 0},
                "raw": {"cache": 7, "rss": 8, "anon": 9, "file": 10, "pgfault": 11}
            },
            "pids": {"current": 3, "limit": 100}
        })
    }

    #[test]
    fn v1_metrics_carry_every_field() {
        let m = v1_metrics(&sample());
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.pids.limit, 100);
        assert_eq!(m.cpu.usage.total, 3_000_000);
        assert_eq!(m.cpu.usage.per_cpu, vec![1, 2]);
        assert_eq!(m.cpu.throttling.throttled_periods, 4);
        assert_eq!(m.cpu.throttling.throttled_time, 5_000);
        assert_eq!(m.memory.usage.usage, 512);
        assert_eq!(m.memory.usage.max, 600);
        assert_eq!(m.memory.cache, 7);
        assert_eq!(m.memory.rss, 8);
        assert_eq!(m.memory.pg_fault, 11);
    }

    #[test]
    fn v2_metrics_are_in_microseconds() {
        let m = v2_metrics(&sample());
        assert_eq!(m.cpu.usage_usec, 3_000);
        assert_eq!(m.cpu.user_usec, 2_000);
        assert_eq!(m.cpu.system_usec, 1_000);
        assert_eq!(m.cpu.nr_throttled, 4);
        assert_eq!(m.cpu.throttled_usec, 5);
        assert_eq!(m.memory.usage, 512);
        assert_eq!(m.memory.usage_limit, 1024);
        assert_eq!(m.memory.anon, 9);
        assert_eq!(m.memory.file, 10);
        assert_eq!(m.pids.limit, 100);
    }

    #[test]
    fn missing_values_are_zero() {
        let m = v2_metrics(&json!({}));
        assert_eq!(m.cpu.usage_usec, 0);
        assert_eq!(m.memory.usage, 0);
    }
}
