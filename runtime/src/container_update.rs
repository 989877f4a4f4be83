//! `skiff update`: change a running container's resource limits.
//!
//! The new values (from `--resources FILE|-`, a `linux.resources` JSON
//! object, or from runc's individual flags) are written to the container's
//! cgroup files, and merged into the config kept in `state.json` so later
//! commands see them.

use oci_spec::runtime::LinuxResources;
use serde_json::Value;

use crate::container::{Container, Status};
use crate::{cgroups, Error, Result};

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
        return Err(Error::Other(format!("container {} is not running", c.id())));
    }
    let changes: LinuxResources = serde_json::from_value(overlay.clone())
        .map_err(|e| Error::Other(format!("invalid resources: {e}")))?;
    let mut config =
        serde_json::to_value(&c.state.config).map_err(|e| Error::Other(e.to_string()))?;
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
        let merged: LinuxResources = serde_json::from_value(resources.clone())
            .map_err(|e| Error::Other(format!("invalid resources: {e}")))?;
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
    c.state.config =
        serde_json::from_value(config).map_err(|e| Error::Other(format!("update config: {e}")))?;
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
}
