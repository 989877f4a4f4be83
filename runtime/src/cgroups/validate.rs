//! Resource values checked before any cgroup file is written.
//!
//! The kernel refuses some values (a swap limit below the memory limit, a
//! weight out of range, a malformed device rule) only when its file is
//! written, by which time other limits are already in place. Like runc's
//! `cgroups.Manager.Set` validation, every value of `linux.resources`
//! (runtime-spec config-linux.md) is checked first, and the first bad one
//! is named by its field.

use oci_spec::runtime::LinuxResources;

use std::path::Path;

use super::{read, CgroupError, Result};

/// Reject values the kernel would refuse half-way through, with the field
/// named, before anything is written.
pub fn validate(r: &LinuxResources) -> Result<()> {
    let bad = |field: &'static str, msg: String| Err(CgroupError::InvalidResource { field, msg });
    if let Some(m) = r.memory() {
        for (field, v) in [
            ("memory.limit", m.limit()),
            ("memory.reservation", m.reservation()),
            ("memory.swap", m.swap()),
        ] {
            if let Some(v) = v.filter(|v| *v < -1) {
                return bad(field, format!("{v} is negative (use -1 for unlimited)"));
            }
        }
        if let Some(s) = m.swappiness().filter(|s| *s > 100) {
            return bad("memory.swappiness", format!("{s} is above 100"));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0 && !(2..=262_144).contains(s)) {
            return bad("cpu.shares", format!("{s} is outside 2..262144"));
        }
        if let Some(q) = c.quota().filter(|q| *q != 0 && *q != -1 && *q < 1000) {
            return bad(
                "cpu.quota",
                format!("{q} is below 1000 microseconds (use -1 for unlimited)"),
            );
        }
        if let Some(p) = c
            .period()
            .filter(|p| *p != 0 && !(1000..=1_000_000).contains(p))
        {
            return bad(
                "cpu.period",
                format!("{p} is outside 1000..1000000 microseconds"),
            );
        }
        for (field, v) in [("cpu.cpus", c.cpus()), ("cpu.mems", c.mems())] {
            if let Some(v) = v.as_deref().filter(|v| {
                !v.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'-' || b == b',')
            }) {
                return bad(field, format!("{v:?} is not a list like 0-3,5"));
            }
        }
    }
    if let Some(b) = r.block_io() {
        if let Some(w) = b.weight().filter(|w| *w != 0 && !(10..=1000).contains(w)) {
            return bad("blockIO.weight", format!("{w} is outside 10..1000"));
        }
    }
    if let Some(p) = r.pids() {
        if p.limit() < -1 {
            return bad(
                "pids.limit",
                format!("{} is negative (use -1 for unlimited)", p.limit()),
            );
        }
    }
    Ok(())
}

/// `memory.checkBeforeUpdate`: refuse a new limit that is not above what the
/// container already uses (read from `usage_file`: v1 `memory.usage_in_bytes`,
/// v2 `memory.current`).
pub(crate) fn check_before_update(
    mem: &oci_spec::runtime::LinuxMemory,
    usage_file: &Path,
) -> Result<()> {
    if !mem.check_before_update().unwrap_or(false) {
        return Ok(());
    }
    if let Some(limit) = mem.limit().filter(|l| *l > 0) {
        let usage: i64 = read(usage_file)?.parse().unwrap_or(0);
        if usage >= limit {
            return Err(CgroupError::InvalidResource {
                field: "memory.limit",
                msg: format!("new limit {limit} is not above current usage {usage}"),
            });
        }
    }
    Ok(())
}
