//! `skiff update`: change a running container's resource limits.
//!
//! The new values (from `--resources FILE|-`, a `linux.resources` JSON
//! object, or from runc's individual flags) are written to the container's
//! cgroup files, and merged into the config kept in `state.json` so later
//! commands see them.

use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;
use serde_json::{json, Value};

use crate::container::{Container, Status};
use crate::{cgroups, Result};

/// What can stop `update`.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The container has stopped (its id).
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The container has no cgroup to change (rootless, not delegated).
    #[error("cannot update container {0}: it has no cgroup of its own (run without root and without a delegated cgroup), and limits live in one")]
    NoCgroup(String),
    /// The changes, or the config merged with them, are not a valid
    /// `linux.resources`.
    #[error("invalid resources")]
    Invalid(#[source] serde_json::Error),
    /// The stored config cannot be converted to JSON and back.
    #[error("update config")]
    Config(#[source] serde_json::Error),
    /// An Intel RDT flag was given (`--l3-cache-schema`, `--mem-bw-schema`).
    #[error("Intel RDT is not supported by skiff")]
    IntelRdt,
    /// The `--resources` file (or stdin) cannot be read.
    #[error("read resources from {from}")]
    Read {
        /// The file, or `stdin`.
        from: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The `--resources` text is not JSON.
    #[error("parse resources from {from}")]
    Parse {
        /// The file, or `stdin`.
        from: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A memory flag whose value is not a size.
    #[error("invalid size: {0:?}")]
    Size(String),
}

/// runc's `update` flags, each a `linux.resources` field.
#[derive(Debug, Default, Clone)]
pub struct UpdateFlags {
    /// `--resources FILE`, or `-` for stdin: a `linux.resources` object.
    pub resources: Option<PathBuf>,
    /// `--blkio-weight`: `blockIO.weight`, 10 to 1000.
    pub blkio_weight: Option<u16>,
    /// `--cpu-period`: `cpu.period`, the CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// `--cpu-quota`: `cpu.quota`, CPU time allowed per period, in
    /// microseconds.
    pub cpu_quota: Option<i64>,
    /// `--cpu-share`: `cpu.shares`, the weight against other cgroups.
    pub cpu_share: Option<u64>,
    /// `--cpu-rt-period`: `cpu.realtimePeriod`, in microseconds.
    pub cpu_rt_period: Option<u64>,
    /// `--cpu-rt-runtime`: `cpu.realtimeRuntime`, in microseconds.
    pub cpu_rt_runtime: Option<i64>,
    /// `--cpu-idle`: `cpu.idle`; 1 makes the cgroup `SCHED_IDLE`.
    pub cpu_idle: Option<i64>,
    /// `--cpuset-cpus`: `cpu.cpus`, the CPUs to use (`0-3,6`).
    pub cpuset_cpus: Option<String>,
    /// `--cpuset-mems`: `cpu.mems`, the memory nodes to use.
    pub cpuset_mems: Option<String>,
    /// Sizes as runc takes them (`512m`, `1G`, `-1`).
    pub memory: Option<String>,
    /// `--memory-reservation`: `memory.reservation`, the soft limit.
    pub memory_reservation: Option<String>,
    /// `--memory-swap`: `memory.swap`, memory plus swap; `-1` for unlimited
    /// swap.
    pub memory_swap: Option<String>,
    /// `--pids-limit`: `pids.limit`, the most processes the container may
    /// have.
    pub pids_limit: Option<i64>,
    /// Intel RDT schemas: refused.
    pub l3_cache_schema: Option<String>,
    /// `--mem-bw-schema` (Intel RDT): refused.
    pub mem_bw_schema: Option<String>,
}

/// The `linux.resources` changes an `update` command line asks for: the
/// `--resources` object, with each flag set over it.
pub fn overlay_from_flags(f: &UpdateFlags) -> Result<Value> {
    if f.l3_cache_schema.is_some() || f.mem_bw_schema.is_some() {
        return Err(UpdateError::IntelRdt.into());
    }
    let mut v = match &f.resources {
        Some(p) => {
            let from = if p.as_os_str() == "-" {
                "stdin".to_string()
            } else {
                p.display().to_string()
            };
            let text = if p.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map(|_| s)
            } else {
                std::fs::read_to_string(p)
            }
            .map_err(|source| UpdateError::Read {
                from: from.clone(),
                source,
            })?;
            serde_json::from_str(&text).map_err(|source| UpdateError::Parse { from, source })?
        }
        None => json!({}),
    };
    let size = |s: &Option<String>| -> Result<Option<i64>> {
        s.as_deref()
            .map(|s| parse_size(s).map_err(|_| UpdateError::Size(s.to_string()).into()))
            .transpose()
    };
    let mut set = |path: &[&str], val: Value| {
        let mut cur = &mut v;
        for k in &path[..path.len() - 1] {
            if !cur.get(*k).is_some_and(|x| x.is_object()) {
                cur[*k] = json!({});
            }
            cur = &mut cur[*k];
        }
        cur[path[path.len() - 1]] = val;
    };
    if let Some(w) = f.blkio_weight {
        set(&["blockIO", "weight"], json!(w));
    }
    for (key, val) in [
        ("period", f.cpu_period.map(|x| json!(x))),
        ("quota", f.cpu_quota.map(|x| json!(x))),
        ("shares", f.cpu_share.map(|x| json!(x))),
        ("realtimePeriod", f.cpu_rt_period.map(|x| json!(x))),
        ("realtimeRuntime", f.cpu_rt_runtime.map(|x| json!(x))),
        ("idle", f.cpu_idle.map(|x| json!(x))),
        ("cpus", f.cpuset_cpus.as_ref().map(|x| json!(x))),
        ("mems", f.cpuset_mems.as_ref().map(|x| json!(x))),
    ] {
        if let Some(val) = val {
            set(&["cpu", key], val);
        }
    }
    for (key, val) in [
        ("limit", size(&f.memory)?),
        ("reservation", size(&f.memory_reservation)?),
        ("swap", size(&f.memory_swap)?),
    ] {
        if let Some(val) = val {
            set(&["memory", key], json!(val));
        }
    }
    if let Some(p) = f.pids_limit {
        set(&["pids", "limit"], json!(p));
    }
    Ok(v)
}

/// Merge `overlay` into `base`: objects key by key, anything else replaced.
pub fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    continue;
                }
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Apply `overlay` (a `linux.resources` object) to the container.
pub fn update(c: &mut Container, overlay: &Value) -> Result<()> {
    if c.refresh() == Status::Stopped {
        return Err(UpdateError::NotRunning(c.id().to_string()).into());
    }
    if !super::processes::has_cgroup(c) {
        return Err(UpdateError::NoCgroup(c.id().to_string()).into());
    }
    let changes: LinuxResources =
        serde_json::from_value(overlay.clone()).map_err(UpdateError::Invalid)?;
    let mut config = serde_json::to_value(&c.state.config).map_err(UpdateError::Config)?;
    if config.get("linux").is_none() {
        config["linux"] = Value::Object(Default::default());
    }
    let mut resources = config["linux"]
        .get("resources")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    merge(&mut resources, overlay);
    // Memory limit and swap are written together (their order matters on v1).
    let mut to_apply = changes.clone();
    if changes.memory().is_some() {
        let merged: LinuxResources =
            serde_json::from_value(resources.clone()).map_err(UpdateError::Invalid)?;
        to_apply.set_memory(*merged.memory());
    }
    crate::explain!(
        "cgroups(7)",
        "writing new limits to the container's cgroup files"
    );
    let paths = &c.state.cgroup_paths;
    if paths.is_v2() {
        cgroups::v2::apply(paths, Some(&to_apply))?;
    } else {
        cgroups::v1::apply(paths, Some(&to_apply), &[])?;
    }
    config["linux"]["resources"] = resources;
    c.state.config = serde_json::from_value(config).map_err(UpdateError::Config)?;
    c.save()?;
    Ok(())
}

/// Parse a size with an optional binary suffix, as runc's flags take them
/// (`512m`, `1G`, `-1`).
pub fn parse_size(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let lower = t.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits_end);
    let n: f64 = num.parse().map_err(|_| format!("invalid size: {s:?}"))?;
    let mult: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        _ => return Err(format!("invalid size: {s:?}")),
    };
    Ok((n * mult) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_merge() {
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert!(parse_size("lots").is_err());
        let mut base = serde_json::json!({"memory": {"limit": 1, "swap": 2}, "pids": {"limit": 5}});
        merge(&mut base, &serde_json::json!({"memory": {"limit": 10}}));
        assert_eq!(
            base,
            serde_json::json!({"memory": {"limit": 10, "swap": 2}, "pids": {"limit": 5}})
        );
    }

    #[test]
    fn flags_become_a_resources_object() {
        let f = UpdateFlags {
            memory: Some("64m".into()),
            cpu_quota: Some(50000),
            pids_limit: Some(10),
            ..Default::default()
        };
        assert_eq!(
            overlay_from_flags(&f).unwrap(),
            json!({"memory": {"limit": 64 << 20}, "cpu": {"quota": 50000}, "pids": {"limit": 10}})
        );
        let rdt = UpdateFlags {
            l3_cache_schema: Some("L3:0=f".into()),
            ..Default::default()
        };
        assert!(overlay_from_flags(&rdt).is_err());
        let bad = UpdateFlags {
            memory: Some("lots".into()),
            ..Default::default()
        };
        assert!(overlay_from_flags(&bad)
            .unwrap_err()
            .to_string()
            .contains("lots"));
    }
}
