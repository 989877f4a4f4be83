//! cgroup v1: one tree per controller.
//!
//! Each controller (memory, cpu, pids, devices, freezer...) has its own
//! hierarchy, so the container gets one directory in each. Limits are
//! written to the controller's files; the `devices` controller takes
//! allow/deny rules as lines like `c 1:3 rwm`; the `freezer` controller
//! pauses every task by writing `FROZEN` to `freezer.state`. See the kernel's
//! Documentation/admin-guide/cgroup-v1/.

use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::{mkdir_all, read, write, CgroupError, CgroupPaths, Result};

/// Device rules every container gets, after the spec's own (runc's list):
/// mknod of anything, the standard character devices, ptys and tun.
const DEFAULT_ALLOWED: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:8 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:5 rwm",
    "c 1:9 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
];

pub fn create(
    paths: &CgroupPaths,
    resources: Option<&LinuxResources>,
    devices: &[LinuxDevice],
) -> Result<()> {
    for (key, dir) in &paths.paths {
        mkdir_all(dir)?;
        if key.split(',').any(|c| c == "cpuset") {
            inherit_cpuset(dir)?;
        }
    }
    apply(paths, resources, devices)
}

/// A new cpuset cgroup starts with empty `cpuset.cpus` and `cpuset.mems`, and
/// a task cannot join it until both are set: copy them from the nearest
/// ancestor that has them, top-down.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    if !parent.join("cpuset.cpus").exists() {
        return Ok(());
    }
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if read(&dir.join(file))?.is_empty() {
            if read(&parent.join(file))?.is_empty() {
                inherit_cpuset(parent)?;
            }
            let v = read(&parent.join(file))?;
            write(&dir.join(file), &v)?;
        }
    }
    Ok(())
}

fn dir_for<'a>(paths: &'a CgroupPaths, controller: &str) -> Result<&'a Path> {
    paths
        .get(controller)
        .ok_or_else(|| CgroupError::MissingController(controller.to_string()))
}

/// Apply `linux.resources` (the subset handled here; see the cgroups issue
/// for the rest).
pub fn apply(
    paths: &CgroupPaths,
    resources: Option<&LinuxResources>,
    devices: &[LinuxDevice],
) -> Result<()> {
    let empty = LinuxResources::default();
    let r = resources.unwrap_or(&empty);
    if let Some(mem) = r.memory() {
        if let Some(limit) = mem.limit() {
            let d = dir_for(paths, "memory")?;
            write(&d.join("memory.limit_in_bytes"), &limit.to_string())?;
        }
        if let Some(res) = mem.reservation() {
            let d = dir_for(paths, "memory")?;
            write(&d.join("memory.soft_limit_in_bytes"), &res.to_string())?;
        }
        if let Some(swap) = mem.swap() {
            let d = dir_for(paths, "memory")?;
            write(&d.join("memory.memsw.limit_in_bytes"), &swap.to_string())?;
        }
    }
    if let Some(pids) = r.pids() {
        let d = dir_for(paths, "pids")?;
        let v = if pids.limit() <= 0 {
            "max".to_string()
        } else {
            pids.limit().to_string()
        };
        write(&d.join("pids.max"), &v)?;
    }
    if let Some(cpu) = r.cpu() {
        if let Some(shares) = cpu.shares() {
            write(
                &dir_for(paths, "cpu")?.join("cpu.shares"),
                &shares.to_string(),
            )?;
        }
        if let Some(period) = cpu.period() {
            write(
                &dir_for(paths, "cpu")?.join("cpu.cfs_period_us"),
                &period.to_string(),
            )?;
        }
        if let Some(quota) = cpu.quota() {
            write(
                &dir_for(paths, "cpu")?.join("cpu.cfs_quota_us"),
                &quota.to_string(),
            )?;
        }
        if let Some(cpus) = cpu.cpus() {
            write(&dir_for(paths, "cpuset")?.join("cpuset.cpus"), cpus)?;
        }
        if let Some(mems) = cpu.mems() {
            write(&dir_for(paths, "cpuset")?.join("cpuset.mems"), mems)?;
        }
    }
    apply_devices(paths, r.devices().as_deref().unwrap_or(&[]), devices)
}

/// Render one device rule as the devices controller wants it: `TYPE MAJOR:MINOR ACCESS`.
pub fn device_rule(rule: &LinuxDeviceCgroup) -> String {
    let typ = match rule.typ() {
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => "c",
        Some(LinuxDeviceType::B) => "b",
        Some(LinuxDeviceType::P) => "p",
        Some(LinuxDeviceType::A) | None => "a",
    };
    let num = |n: Option<i64>| {
        n.filter(|&n| n >= 0)
            .map_or("*".to_string(), |n| n.to_string())
    };
    let access = rule.access().clone().unwrap_or_else(|| "rwm".into());
    if typ == "a" {
        return "a".into();
    }
    format!("{typ} {}:{} {access}", num(rule.major()), num(rule.minor()))
}

fn apply_devices(
    paths: &CgroupPaths,
    rules: &[LinuxDeviceCgroup],
    devices: &[LinuxDevice],
) -> Result<()> {
    let Some(dir) = paths.get("devices") else {
        // runc treats a missing devices controller as fatal: without it the
        // container could open any device node it can create.
        return Err(CgroupError::MissingController("devices".into()));
    };
    crate::explain!(
        "cgroups(7)",
        "writing device rules to {}: the container may only open the device nodes it is allowed",
        dir.display()
    );
    for rule in rules {
        let line = device_rule(rule);
        let file = if rule.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        write(&dir.join(file), &line)?;
    }
    for d in devices {
        let typ = match d.typ() {
            LinuxDeviceType::B => "b",
            LinuxDeviceType::P => "p",
            _ => "c",
        };
        write(
            &dir.join("devices.allow"),
            &format!("{typ} {}:{} rwm", d.major(), d.minor()),
        )?;
    }
    for line in DEFAULT_ALLOWED {
        write(&dir.join("devices.allow"), line)?;
    }
    Ok(())
}

pub fn set_frozen(paths: &CgroupPaths, frozen: bool) -> Result<()> {
    let dir = dir_for(paths, "freezer")?;
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let file = dir.join("freezer.state");
    // Writing FROZEN starts freezing; the state reads FREEZING until every
    // task has stopped. Keep asking, as runc does.
    for _ in 0..1000 {
        write(&file, want)?;
        if read(&file)? == want {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(CgroupError::FreezeTimeout {
        path: dir.to_path_buf(),
    })
}

pub fn is_frozen(paths: &CgroupPaths) -> bool {
    paths
        .get("freezer")
        .and_then(|d| read(&d.join("freezer.state")).ok())
        .is_some_and(|s| s == "FROZEN" || s == "FREEZING")
}
