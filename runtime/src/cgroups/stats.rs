//! Resource usage, read back from the cgroup files, in the JSON shape of
//! `runc events --stats` (runc's `types.Stats`), which containerd's runc
//! shim and monitoring tools parse.
//!
//! Where the numbers come from: v1 `cpuacct.usage*` and `cpuacct.stat`,
//! `cpu.stat`, `memory.usage_in_bytes`/`max_usage_in_bytes`/`failcnt`/
//! `limit_in_bytes` and their `memsw`/`kmem` siblings, `memory.stat`,
//! `pids.current`/`pids.max`, `blkio.throttle.io_service*_recursive`,
//! `hugetlb.*`; v2 `cpu.stat`, `memory.current`/`memory.max`/`memory.stat`,
//! `memory.swap.*`, `pids.*`, `io.stat`, `hugetlb.*`. Missing files give
//! zeros, as they do in runc.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::CgroupPaths;

fn read_u64(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            let t = s.trim();
            if t == "max" {
                Some(u64::MAX)
            } else {
                t.parse().ok()
            }
        })
        .unwrap_or(0)
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat...).
fn read_kv(path: &Path) -> BTreeMap<String, u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// `pids.max` as runc reports it: "max" is 0 (no limit).
fn pids_limit(path: &Path) -> u64 {
    match read_u64(path) {
        u64::MAX => 0,
        n => n,
    }
}

/// A cpuset list like `0-2,5` as numbers.
fn parse_list(s: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u16>().ok()),
        }
    }
    out
}

fn cpuset(dir: Option<&Path>, cpus: &str, mems: &str) -> Value {
    let list = |f: &str| {
        dir.and_then(|d| fs::read_to_string(d.join(f)).ok())
            .map(|s| parse_list(&s))
            .unwrap_or_default()
    };
    let flag = |f: &str| dir.map_or(0, |d| read_u64(&d.join(f)));
    let mut m = Map::new();
    let (c, me) = (list(cpus), list(mems));
    if !c.is_empty() {
        m.insert("cpus".into(), json!(c));
    }
    m.insert("cpu_exclusive".into(), flag("cpuset.cpu_exclusive").into());
    if !me.is_empty() {
        m.insert("mems".into(), json!(me));
    }
    for (k, f) in [
        ("mem_hardwall", "cpuset.mem_hardwall"),
        ("mem_exclusive", "cpuset.mem_exclusive"),
        ("memory_migrate", "cpuset.memory_migrate"),
        ("memory_spread_page", "cpuset.memory_spread_page"),
        ("memory_spread_slab", "cpuset.memory_spread_slab"),
        ("memory_pressure", "cpuset.memory_pressure"),
        ("sched_load_balance", "cpuset.sched_load_balance"),
    ] {
        m.insert(k.into(), flag(f).into());
    }
    let relax = dir
        .and_then(|d| fs::read_to_string(d.join("cpuset.sched_relax_domain_level")).ok())
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0);
    m.insert("sched_relax_domain_level".into(), relax.into());
    Value::Object(m)
}

fn memory_entry(limit: u64, usage: u64, max: u64, failcnt: u64) -> Value {
    let mut m = Map::new();
    m.insert("limit".into(), limit.into());
    if usage != 0 {
        m.insert("usage".into(), usage.into());
    }
    if max != 0 {
        m.insert("max".into(), max.into());
    }
    m.insert("failcnt".into(), failcnt.into());
    Value::Object(m)
}

/// Drop zero / empty values the way Go's `omitempty` does.
fn omit_empty(mut m: Map<String, Value>) -> Value {
    m.retain(|_, v| {
        !matches!(v, Value::Number(n) if n.as_u64() == Some(0))
            && !matches!(v, Value::Array(a) if a.is_empty())
    });
    Value::Object(m)
}

/// The `data` of a stats event.
pub fn stats(paths: &CgroupPaths) -> Value {
    if paths.is_v2() {
        stats_v2(paths)
    } else {
        stats_v1(paths)
    }
}

fn hugetlb(dir: Option<&Path>, v2: bool) -> Value {
    let mut out = Map::new();
    let Some(dir) = dir else {
        return Value::Object(out);
    };
    let Ok(rd) = fs::read_dir(dir) else {
        return Value::Object(out);
    };
    let mut sizes: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| {
            n.strip_prefix("hugetlb.")
                .and_then(|r| r.split('.').next())
                .map(str::to_string)
        })
        .collect();
    sizes.sort();
    sizes.dedup();
    for size in sizes {
        let (usage, max, failcnt) = if v2 {
            let events = read_kv(&dir.join(format!("hugetlb.{size}.events")));
            (
                read_u64(&dir.join(format!("hugetlb.{size}.current"))),
                0,
                events.get("max").copied().unwrap_or(0),
            )
        } else {
            (
                read_u64(&dir.join(format!("hugetlb.{size}.usage_in_bytes"))),
                read_u64(&dir.join(format!("hugetlb.{size}.max_usage_in_bytes"))),
                read_u64(&dir.join(format!("hugetlb.{size}.failcnt"))),
            )
        };
        let mut e = Map::new();
        if usage != 0 {
            e.insert("usage".into(), usage.into());
        }
        if max != 0 {
            e.insert("max".into(), max.into());
        }
        e.insert("failcnt".into(), failcnt.into());
        out.insert(size, Value::Object(e));
    }
    Value::Object(out)
}

fn blkio_v1(dir: Option<&Path>) -> Value {
    let mut out = Map::new();
    let Some(dir) = dir else {
        return Value::Object(out);
    };
    for (key, file) in [
        (
            "ioServiceBytesRecursive",
            "blkio.throttle.io_service_bytes_recursive",
        ),
        (
            "ioServicedRecursive",
            "blkio.throttle.io_serviced_recursive",
        ),
    ] {
        let entries: Vec<Value> = fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() != 3 {
                    return None;
                }
                let (maj, min) = f[0].split_once(':')?;
                Some(json!({"major": maj.parse::<u64>().ok()?, "minor": min.parse::<u64>().ok()?, "op": f[1], "value": f[2].parse::<u64>().ok()?}))
            })
            .collect();
        if !entries.is_empty() {
            out.insert(key.into(), Value::Array(entries));
        }
    }
    Value::Object(out)
}

fn stats_v1(paths: &CgroupPaths) -> Value {
    let acct = paths.get("cpuacct");
    let per_cpu = |file: &str| -> Vec<u64> {
        acct.and_then(|d| fs::read_to_string(d.join(file)).ok())
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    // cpuacct.stat is in clock ticks; runc reports nanoseconds.
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let acct_stat = acct
        .map(|d| read_kv(&d.join("cpuacct.stat")))
        .unwrap_or_default();
    let mut usage = Map::new();
    usage.insert(
        "total".into(),
        acct.map_or(0, |d| read_u64(&d.join("cpuacct.usage")))
            .into(),
    );
    usage.insert("percpu".into(), json!(per_cpu("cpuacct.usage_percpu")));
    usage.insert(
        "percpu_kernel".into(),
        json!(per_cpu("cpuacct.usage_percpu_sys")),
    );
    usage.insert(
        "percpu_user".into(),
        json!(per_cpu("cpuacct.usage_percpu_user")),
    );
    let mut usage = match omit_empty(usage) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    usage.insert(
        "kernel".into(),
        (acct_stat.get("system").copied().unwrap_or(0) * 1_000_000_000 / hz).into(),
    );
    usage.insert(
        "user".into(),
        (acct_stat.get("user").copied().unwrap_or(0) * 1_000_000_000 / hz).into(),
    );
    let cpu_stat = paths
        .get("cpu")
        .map(|d| read_kv(&d.join("cpu.stat")))
        .unwrap_or_default();
    let throttling = omit_empty(Map::from_iter([
        (
            "periods".to_string(),
            json!(cpu_stat.get("nr_periods").copied().unwrap_or(0)),
        ),
        (
            "throttledPeriods".to_string(),
            json!(cpu_stat.get("nr_throttled").copied().unwrap_or(0)),
        ),
        (
            "throttledTime".to_string(),
            json!(cpu_stat.get("throttled_time").copied().unwrap_or(0)),
        ),
    ]));

    let mem = paths.get("memory");
    let m = |f: &str| mem.map_or(0, |d| read_u64(&d.join(f)));
    let raw = mem
        .map(|d| read_kv(&d.join("memory.stat")))
        .unwrap_or_default();
    let mut memory = Map::new();
    if let Some(c) = raw
        .get("total_cache")
        .or(raw.get("cache"))
        .filter(|c| **c != 0)
    {
        memory.insert("cache".into(), (*c).into());
    }
    memory.insert(
        "usage".into(),
        memory_entry(
            m("memory.limit_in_bytes"),
            m("memory.usage_in_bytes"),
            m("memory.max_usage_in_bytes"),
            m("memory.failcnt"),
        ),
    );
    memory.insert(
        "swap".into(),
        memory_entry(
            m("memory.memsw.limit_in_bytes"),
            m("memory.memsw.usage_in_bytes"),
            m("memory.memsw.max_usage_in_bytes"),
            m("memory.memsw.failcnt"),
        ),
    );
    memory.insert(
        "kernel".into(),
        memory_entry(
            m("memory.kmem.limit_in_bytes"),
            m("memory.kmem.usage_in_bytes"),
            m("memory.kmem.max_usage_in_bytes"),
            m("memory.kmem.failcnt"),
        ),
    );
    memory.insert(
        "kernelTCP".into(),
        memory_entry(
            m("memory.kmem.tcp.limit_in_bytes"),
            m("memory.kmem.tcp.usage_in_bytes"),
            m("memory.kmem.tcp.max_usage_in_bytes"),
            m("memory.kmem.tcp.failcnt"),
        ),
    );
    if !raw.is_empty() {
        memory.insert("raw".into(), json!(raw));
    }

    let pids = paths.get("pids");
    let pids = omit_empty(Map::from_iter([
        (
            "current".to_string(),
            json!(pids.map_or(0, |d| read_u64(&d.join("pids.current")))),
        ),
        (
            "limit".to_string(),
            json!(pids.map_or(0, |d| pids_limit(&d.join("pids.max")))),
        ),
    ]));
    let hugetlb_dir = paths
        .get("hugetlb")
        .or_else(|| super::unified_with(paths, "hugetlb"));
    json!({
        "cpu": {"usage": usage, "throttling": throttling},
        "cpuset": cpuset(paths.get("cpuset"), "cpuset.cpus", "cpuset.mems"),
        "memory": memory,
        "pids": pids,
        "blkio": blkio_v1(paths.get("blkio")),
        "hugetlb": hugetlb(hugetlb_dir, paths.get("hugetlb").is_none()),
        "intel_rdt": {},
        "network_interfaces": null
    })
}

fn stats_v2(paths: &CgroupPaths) -> Value {
    let Some(d) = paths.unified() else {
        return json!({});
    };
    let cpu_stat = read_kv(&d.join("cpu.stat"));
    let us = |k: &str| cpu_stat.get(k).copied().unwrap_or(0) * 1000;
    let usage =
        json!({"total": us("usage_usec"), "kernel": us("system_usec"), "user": us("user_usec")});
    let throttling = omit_empty(Map::from_iter([
        (
            "periods".to_string(),
            json!(cpu_stat.get("nr_periods").copied().unwrap_or(0)),
        ),
        (
            "throttledPeriods".to_string(),
            json!(cpu_stat.get("nr_throttled").copied().unwrap_or(0)),
        ),
        ("throttledTime".to_string(), json!(us("throttled_usec"))),
    ]));
    let raw = read_kv(&d.join("memory.stat"));
    let events = read_kv(&d.join("memory.events"));
    let mut memory = Map::new();
    if let Some(c) = raw.get("file").filter(|c| **c != 0) {
        memory.insert("cache".into(), (*c).into());
    }
    memory.insert(
        "usage".into(),
        memory_entry(
            read_u64(&d.join("memory.max")),
            read_u64(&d.join("memory.current")),
            read_u64(&d.join("memory.peak")),
            events.get("max").copied().unwrap_or(0),
        ),
    );
    memory.insert(
        "swap".into(),
        memory_entry(
            read_u64(&d.join("memory.swap.max")),
            read_u64(&d.join("memory.swap.current")),
            0,
            0,
        ),
    );
    memory.insert("kernel".into(), memory_entry(0, 0, 0, 0));
    memory.insert("kernelTCP".into(), memory_entry(0, 0, 0, 0));
    if !raw.is_empty() {
        memory.insert("raw".into(), json!(raw));
    }
    let pids = omit_empty(Map::from_iter([
        (
            "current".to_string(),
            json!(read_u64(&d.join("pids.current"))),
        ),
        ("limit".to_string(), json!(pids_limit(&d.join("pids.max")))),
    ]));
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for line in fs::read_to_string(d.join("io.stat"))
        .unwrap_or_default()
        .lines()
    {
        let mut it = line.split_whitespace();
        let Some((maj, min)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(maj), Ok(min)) = (maj.parse::<u64>(), min.parse::<u64>()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(v) = v.parse::<u64>() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                _ => continue,
            };
            list.push(json!({"major": maj, "minor": min, "op": op, "value": v}));
        }
    }
    let mut blkio = Map::new();
    if !bytes.is_empty() {
        blkio.insert("ioServiceBytesRecursive".into(), Value::Array(bytes));
    }
    if !ios.is_empty() {
        blkio.insert("ioServicedRecursive".into(), Value::Array(ios));
    }
    json!({
        "cpu": {"usage": usage, "throttling": throttling},
        "cpuset": cpuset(Some(d), "cpuset.cpus.effective", "cpuset.mems.effective"),
        "memory": memory,
        "pids": pids,
        "blkio": blkio,
        "hugetlb": hugetlb(Some(d), true),
        "intel_rdt": {},
        "network_interfaces": null
    })
}

/// Number of OOM kills so far (v2 `memory.events`, v1 `memory.oom_control`).
pub fn oom_kills(paths: &CgroupPaths) -> u64 {
    if paths.is_v2() {
        paths.unified().map_or(0, |d| {
            read_kv(&d.join("memory.events"))
                .get("oom_kill")
                .copied()
                .unwrap_or(0)
        })
    } else {
        paths.get("memory").map_or(0, |d| {
            read_kv(&d.join("memory.oom_control"))
                .get("oom_kill")
                .copied()
                .unwrap_or(0)
        })
    }
}

/// The most memory the cgroup has used (v2 `memory.peak`, Linux 5.19; v1
/// `memory.max_usage_in_bytes`), if the kernel keeps it.
pub fn memory_peak(paths: &CgroupPaths) -> Option<u64> {
    let file = if paths.is_v2() {
        paths.unified()?.join("memory.peak")
    } else {
        paths.get("memory")?.join("memory.max_usage_in_bytes")
    };
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
