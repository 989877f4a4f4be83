//! cgroup v2: one tree for every controller.
//!
//! The container gets a single directory. A controller's files appear there
//! only when the parent lists the controller in `cgroup.subtree_control`, so
//! controllers are enabled top-down first. Freezing is `cgroup.freeze`,
//! killing everything is `cgroup.kill` (Linux 5.14+). See the kernel's
//! Documentation/admin-guide/cgroup-v2.rst.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use super::{mkdir_all, read, write, CgroupError, CgroupPaths, Result};

fn dir(paths: &CgroupPaths) -> Result<&Path> {
    paths.unified().ok_or(CgroupError::NoCgroupFs)
}

/// Create the container's cgroup, enable every available controller in its
/// ancestors' `cgroup.subtree_control`, apply `linux.resources`, and attach
/// the device filter built from the rules and `devices` (the spec's
/// `linux.devices`).
pub fn create(
    paths: &CgroupPaths,
    resources: Option<&LinuxResources>,
    devices: &[oci_spec::runtime::LinuxDevice],
) -> Result<()> {
    let d = dir(paths)?;
    let span = crate::span!("mkdir cgroup2, enable controllers");
    mkdir_all(d)?;
    enable_controllers(d)?;
    drop(span);
    let _s = crate::span!("write limits");
    apply(paths, resources)?;
    if crate::rootless::is_rootless() {
        // Attaching a BPF program needs CAP_SYS_ADMIN in the initial user
        // namespace, which a delegated cgroup does not give; the
        // container's /dev then holds only what is bind-mounted (as runc).
        crate::explain!("cgroups(7)", "no device filter: without root, BPF_PROG_ATTACH is refused; the container can use only the device nodes bind-mounted into its /dev");
        return Ok(());
    }
    let spec_rules = resources
        .and_then(|r| r.devices().as_deref())
        .unwrap_or(&[]);
    super::device_filter::attach(d, &super::device_rules(spec_rules, devices)?)
}

/// Enable every available controller in each ancestor's subtree_control, from
/// the top of the hierarchy down to the container's parent.
fn enable_controllers(d: &Path) -> Result<()> {
    let root = Path::new("/sys/fs/cgroup");
    let mut ancestors: Vec<&Path> = d
        .ancestors()
        .skip(1)
        .take_while(|p| p.starts_with(root))
        .collect();
    ancestors.reverse();
    for a in ancestors {
        let avail = read(&a.join("cgroup.controllers")).unwrap_or_default();
        let want: Vec<String> = avail.split_whitespace().map(|c| format!("+{c}")).collect();
        if !want.is_empty() {
            // Failing to enable is not fatal here: the resource writes that
            // need a controller fail later with an error naming it.
            let _ = write(&a.join("cgroup.subtree_control"), &want.join(" "));
        }
    }
    Ok(())
}

fn need(d: &Path, controller: &str) -> Result<()> {
    let avail = read(&d.join("cgroup.controllers")).unwrap_or_default();
    if avail.split_whitespace().any(|c| c == controller) {
        Ok(())
    } else {
        Err(CgroupError::MissingController(controller.to_string()))
    }
}

/// runc's conversion of v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.saturating_sub(2)) * 9999) / 262142
}

/// runc's conversion of a v1 blkio weight (10..1000) to v2 io.weight (1..10000).
pub fn blkio_weight_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
}

/// v1's `swap` is memory+swap; v2's `memory.swap.max` is swap alone.
fn swap_v2(limit: Option<i64>, swap: Option<i64>) -> Option<String> {
    match (limit, swap) {
        (_, None) => None,
        (_, Some(-1)) => Some("max".into()),
        (Some(l), Some(s)) if l > 0 => Some((s - l).max(0).to_string()),
        (_, Some(s)) => Some(s.to_string()),
    }
}

fn limit_str(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

/// Apply `linux.resources`; v1-style values are converted as runc converts them.
pub fn apply(paths: &CgroupPaths, resources: Option<&LinuxResources>) -> Result<()> {
    let d = dir(paths)?;
    let Some(r) = resources else { return Ok(()) };
    super::validate(r)?;
    if let Some(mem) = r.memory() {
        if mem.limit().is_some() || mem.swap().is_some() || mem.reservation().is_some() {
            need(d, "memory")?;
        }
        super::check_before_update(mem, &d.join("memory.current"))?;
        if let Some(v) = swap_v2(mem.limit(), mem.swap()) {
            write(&d.join("memory.swap.max"), &v)?;
        }
        if let Some(limit) = mem.limit() {
            write(&d.join("memory.max"), &limit_str(limit))?;
        }
        if let Some(res) = mem.reservation() {
            write(&d.join("memory.low"), &res.to_string())?;
        }
        if mem.swappiness().is_some_and(|s| s != 60) {
            return Err(CgroupError::InvalidResource {
                field: "memory.swappiness",
                msg: "not supported on cgroup v2".into(),
            });
        }
        if mem.disable_oom_killer() == Some(true) {
            return Err(CgroupError::InvalidResource {
                field: "memory.disableOOMKiller",
                msg: "not supported on cgroup v2".into(),
            });
        }
    }
    if let Some(pids) = r.pids() {
        if pids.limit() != 0 {
            need(d, "pids")?;
            write(&d.join("pids.max"), &limit_str(pids.limit()))?;
        }
    }
    if let Some(cpu) = r.cpu() {
        if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
            need(d, "cpu")?;
            write(&d.join("cpu.weight"), &shares_to_weight(shares).to_string())?;
        }
        if cpu.quota().is_some_and(|q| q != 0) || cpu.period().is_some_and(|p| p != 0) {
            need(d, "cpu")?;
            let quota = cpu
                .quota()
                .filter(|&q| q > 0)
                .map_or("max".to_string(), |q| q.to_string());
            let period = cpu.period().filter(|p| *p != 0).unwrap_or(100_000);
            write(&d.join("cpu.max"), &format!("{quota} {period}"))?;
        }
        if let Some(b) = cpu.burst() {
            need(d, "cpu")?;
            write(&d.join("cpu.max.burst"), &b.to_string())?;
        }
        if let Some(idle) = cpu.idle() {
            need(d, "cpu")?;
            write(&d.join("cpu.idle"), &idle.to_string())?;
        }
        if cpu.realtime_runtime().is_some_and(|v| v != 0)
            || cpu.realtime_period().is_some_and(|v| v != 0)
        {
            return Err(CgroupError::InvalidResource {
                field: "cpu.realtimeRuntime",
                msg: "realtime scheduling is not supported on cgroup v2".into(),
            });
        }
        if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
            need(d, "cpuset")?;
            write(&d.join("cpuset.cpus"), cpus)?;
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
            need(d, "cpuset")?;
            write(&d.join("cpuset.mems"), mems)?;
        }
    }
    if let Some(b) = r.block_io() {
        need(d, "io")?;
        let weight_file = if d.join("io.bfq.weight").exists() {
            "io.bfq.weight"
        } else {
            "io.weight"
        };
        if let Some(w) = b.weight().filter(|w| *w != 0) {
            write(
                &d.join(weight_file),
                &format!("default {}", blkio_weight_to_io_weight(w)),
            )?;
        }
        for wd in b.weight_device().as_deref().unwrap_or(&[]) {
            if let Some(w) = wd.weight() {
                write(
                    &d.join(weight_file),
                    &format!(
                        "{}:{} {}",
                        wd.major(),
                        wd.minor(),
                        blkio_weight_to_io_weight(w)
                    ),
                )?;
            }
        }
        let throttles = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, list) in throttles {
            for t in list.as_deref().unwrap_or(&[]) {
                let v = if t.rate() == 0 {
                    "max".to_string()
                } else {
                    t.rate().to_string()
                };
                write(
                    &d.join("io.max"),
                    &format!("{}:{} {key}={v}", t.major(), t.minor()),
                )?;
            }
        }
    }
    for l in r.hugepage_limits().as_deref().unwrap_or(&[]) {
        need(d, "hugetlb")?;
        write(
            &d.join(format!("hugetlb.{}.max", l.page_size())),
            &l.limit().to_string(),
        )?;
    }
    for (dev, l) in r.rdma().iter().flatten() {
        need(d, "rdma")?;
        write(&d.join("rdma.max"), &super::rdma_line(dev, l))?;
    }
    if r.network().as_ref().is_some_and(|n| {
        n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty())
    }) {
        return Err(CgroupError::InvalidResource {
            field: "network",
            msg: "net_cls and net_prio do not exist on cgroup v2".into(),
        });
    }
    if let Some(unified) = r.unified() {
        for (k, v) in unified {
            if k.contains('/') || k.starts_with('.') || k.starts_with("cgroup.") {
                return Err(CgroupError::InvalidResource {
                    field: "unified",
                    msg: format!("key {k:?} is not a controller file"),
                });
            }
            write(&d.join(k), v)?;
        }
    }
    Ok(())
}

/// Freeze or thaw the container through `cgroup.freeze`, waiting until
/// `cgroup.events` reports the new state.
pub fn set_frozen(paths: &CgroupPaths, frozen: bool) -> Result<()> {
    let d = dir(paths)?;
    write(&d.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    for _ in 0..1000 {
        if read(&d.join("cgroup.events"))?.lines().any(|l| l == want) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(CgroupError::FreezeTimeout {
        path: d.to_path_buf(),
    })
}

/// Whether `cgroup.freeze` reads `1`.
pub fn is_frozen(paths: &CgroupPaths) -> bool {
    paths
        .unified()
        .and_then(|d| read(&d.join("cgroup.freeze")).ok())
        .is_some_and(|s| s == "1")
}

/// Kill everything with `cgroup.kill`; `Ok(false)` when the kernel lacks it.
pub fn kill(paths: &CgroupPaths) -> Result<bool> {
    let f = dir(paths)?.join("cgroup.kill");
    if !f.exists() {
        return Ok(false);
    }
    write(&f, "1")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_convert_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(shares_to_weight(1024), 39);
    }

    #[test]
    fn blkio_weight_and_swap_convert_like_runc() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10000);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(swap_v2(Some(100), Some(300)).as_deref(), Some("200"));
        assert_eq!(swap_v2(Some(100), Some(-1)).as_deref(), Some("max"));
        assert_eq!(swap_v2(None, None), None);
    }
}
