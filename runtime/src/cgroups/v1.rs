//! cgroup v1: one tree per controller.
//!
//! Each controller (memory, cpu, pids, devices, freezer...) has its own
//! hierarchy, so the container gets one directory in each. Limits are
//! written to the controller's files; the `devices` controller takes
//! allow/deny rules as lines like `c 1:3 rwm`; the `freezer` controller
//! pauses every task by writing `FROZEN` to `freezer.state`. See the kernel's
//! Documentation/admin-guide/cgroup-v1/.

use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxResources};

use super::{mkdir_all, read, write, CgroupError, CgroupPaths, Result};

/// Create the container's directory in every hierarchy (a new cpuset
/// cgroup gets `cpuset.cpus` and `cpuset.mems` from its parent), then apply
/// `linux.resources` and the device rules, with `devices` the spec's
/// `linux.devices`.
pub fn create(
    paths: &CgroupPaths,
    resources: Option<&LinuxResources>,
    devices: &[LinuxDevice],
) -> Result<()> {
    for (key, dir) in &paths.paths {
        let _s = crate::span!(format!(
            "mkdir {}",
            if key.is_empty() { "cgroup2" } else { key }
        ));
        mkdir_all(dir)?;
        if key.split(',').any(|c| c == "cpuset") {
            inherit_cpuset(dir)?;
        }
    }
    let _s = crate::span!("write limits");
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

/// Apply `linux.resources`. `devices` are the spec's `linux.devices`, which
/// the container may always use. Used by `create` and by `update` (which
/// passes no devices and leaves device rules alone).
pub fn apply(
    paths: &CgroupPaths,
    resources: Option<&LinuxResources>,
    devices: &[LinuxDevice],
) -> Result<()> {
    let empty = LinuxResources::default();
    let r = resources.unwrap_or(&empty);
    super::validate(r)?;
    if let Some(mem) = r.memory() {
        apply_memory(paths, mem)?;
    }
    if let Some(pids) = r.pids() {
        if pids.limit() != 0 {
            let v = if pids.limit() < 0 {
                "max".to_string()
            } else {
                pids.limit().to_string()
            };
            write(&dir_for(paths, "pids")?.join("pids.max"), &v)?;
        }
    }
    if let Some(cpu) = r.cpu() {
        apply_cpu(paths, cpu)?;
    }
    if let Some(b) = r.block_io() {
        apply_blkio(paths, b)?;
    }
    if let Some(h) = r.hugepage_limits() {
        for l in h {
            let (dir, file) = match paths.get("hugetlb") {
                Some(d) => (d, format!("hugetlb.{}.limit_in_bytes", l.page_size())),
                // Hybrid hosts may have hugetlb in the cgroup2 tree only.
                None => match super::unified_with(paths, "hugetlb") {
                    Some(d) => (d, format!("hugetlb.{}.max", l.page_size())),
                    None => return Err(CgroupError::MissingController("hugetlb".into())),
                },
            };
            write(&dir.join(file), &l.limit().to_string())?;
        }
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id() {
            write(
                &dir_for(paths, "net_cls")?.join("net_cls.classid"),
                &id.to_string(),
            )?;
        }
        for p in n.priorities().as_deref().unwrap_or(&[]) {
            write(
                &dir_for(paths, "net_prio")?.join("net_prio.ifpriomap"),
                &format!("{} {}", p.name(), p.priority()),
            )?;
        }
    }
    if let Some(rdma) = r.rdma() {
        for (dev, l) in rdma {
            write(
                &dir_for(paths, "rdma")?.join("rdma.max"),
                &super::rdma_line(dev, l),
            )?;
        }
    }
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(CgroupError::InvalidResource {
            field: "unified",
            msg: "cgroup v2 key/value resources need a cgroup v2 host".into(),
        });
    }
    if resources.is_some_and(|r| r.devices().is_some()) || !devices.is_empty() {
        apply_devices(paths, r.devices().as_deref().unwrap_or(&[]), devices)?;
    }
    Ok(())
}

fn apply_memory(paths: &CgroupPaths, mem: &oci_spec::runtime::LinuxMemory) -> Result<()> {
    let d = dir_for(paths, "memory")?;
    let limit_file = d.join("memory.limit_in_bytes");
    let swap_file = d.join("memory.memsw.limit_in_bytes");
    super::check_before_update(mem, &d.join("memory.usage_in_bytes"))?;
    // v1's "swap" limits memory+swap and must stay >= the memory limit, so
    // the order of the two writes depends on whether the limits grow.
    match (mem.limit(), mem.swap()) {
        (Some(limit), Some(swap)) => {
            let cur: i64 = read(&swap_file)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1);
            if swap == -1 || (cur != -1 && swap > cur) {
                write(&swap_file, &swap.to_string())?;
                write(&limit_file, &limit.to_string())?;
            } else {
                write(&limit_file, &limit.to_string())?;
                write(&swap_file, &swap.to_string())?;
            }
        }
        (Some(limit), None) => write(&limit_file, &limit.to_string())?,
        (None, Some(swap)) => write(&swap_file, &swap.to_string())?,
        (None, None) => {}
    }
    if let Some(res) = mem.reservation() {
        write(&d.join("memory.soft_limit_in_bytes"), &res.to_string())?;
    }
    if let Some(sw) = mem.swappiness() {
        write(&d.join("memory.swappiness"), &sw.to_string())?;
    }
    if mem.disable_oom_killer() == Some(true) {
        write(&d.join("memory.oom_control"), "1")?;
    }
    Ok(())
}

fn apply_cpu(paths: &CgroupPaths, cpu: &oci_spec::runtime::LinuxCpu) -> Result<()> {
    let cpu_dir = || dir_for(paths, "cpu");
    if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
        write(&cpu_dir()?.join("cpu.shares"), &shares.to_string())?;
    }
    // A new period must be set before a quota that depends on it, and burst last.
    if let Some(period) = cpu.period().filter(|p| *p != 0) {
        write(&cpu_dir()?.join("cpu.cfs_period_us"), &period.to_string())?;
    }
    if let Some(quota) = cpu.quota().filter(|q| *q != 0) {
        write(&cpu_dir()?.join("cpu.cfs_quota_us"), &quota.to_string())?;
    }
    if let Some(burst) = cpu.burst() {
        write(&cpu_dir()?.join("cpu.cfs_burst_us"), &burst.to_string())?;
    }
    if let Some(p) = cpu.realtime_period().filter(|p| *p != 0) {
        write(&cpu_dir()?.join("cpu.rt_period_us"), &p.to_string())?;
    }
    if let Some(rt) = cpu.realtime_runtime().filter(|r| *r != 0) {
        write(&cpu_dir()?.join("cpu.rt_runtime_us"), &rt.to_string())?;
    }
    if let Some(idle) = cpu.idle() {
        write(&cpu_dir()?.join("cpu.idle"), &idle.to_string())?;
    }
    if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        write(&dir_for(paths, "cpuset")?.join("cpuset.cpus"), cpus)?;
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        write(&dir_for(paths, "cpuset")?.join("cpuset.mems"), mems)?;
    }
    Ok(())
}

fn apply_blkio(paths: &CgroupPaths, b: &oci_spec::runtime::LinuxBlockIo) -> Result<()> {
    let d = dir_for(paths, "blkio")?;
    // The proportional weight lives in blkio.weight (CFQ) or blkio.bfq.weight (BFQ).
    let weight_file = |name: &str| -> Result<std::path::PathBuf> {
        for f in [format!("blkio.{name}"), format!("blkio.bfq.{name}")] {
            if d.join(&f).exists() {
                return Ok(d.join(f));
            }
        }
        Err(CgroupError::MissingController(format!(
            "blkio ({name}: no CFQ or BFQ I/O scheduler)"
        )))
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        write(&weight_file("weight")?, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        write(&weight_file("leaf_weight")?, &w.to_string())?;
    }
    for wd in b.weight_device().as_deref().unwrap_or(&[]) {
        if let Some(w) = wd.weight() {
            write(
                &weight_file("weight_device")?,
                &format!("{}:{} {w}", wd.major(), wd.minor()),
            )?;
        }
        if let Some(w) = wd.leaf_weight() {
            write(
                &weight_file("leaf_weight_device")?,
                &format!("{}:{} {w}", wd.major(), wd.minor()),
            )?;
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    for (file, list) in throttles {
        for t in list.as_deref().unwrap_or(&[]) {
            write(
                &d.join(file),
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
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
    for rule in super::device_rules(rules, devices)? {
        let file = if rule.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        write(&dir.join(file), &rule.line())?;
    }
    Ok(())
}

/// Freeze (`FROZEN`) or thaw (`THAWED`) the container through
/// `freezer.state`, waiting until the kernel reports that state.
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

/// Whether `freezer.state` reads `FROZEN` or `FREEZING`.
pub fn is_frozen(paths: &CgroupPaths) -> bool {
    paths
        .get("freezer")
        .and_then(|d| read(&d.join("freezer.state")).ok())
        .is_some_and(|s| s == "FROZEN" || s == "FREEZING")
}
