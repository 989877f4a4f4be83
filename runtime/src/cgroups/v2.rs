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

pub fn create(paths: &CgroupPaths, resources: Option<&LinuxResources>) -> Result<()> {
    let d = dir(paths)?;
    mkdir_all(d)?;
    enable_controllers(d)?;
    apply(paths, resources)
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

pub fn apply(paths: &CgroupPaths, resources: Option<&LinuxResources>) -> Result<()> {
    let d = dir(paths)?;
    let Some(r) = resources else { return Ok(()) };
    if let Some(mem) = r.memory() {
        if let Some(limit) = mem.limit() {
            need(d, "memory")?;
            let v = if limit < 0 {
                "max".to_string()
            } else {
                limit.to_string()
            };
            write(&d.join("memory.max"), &v)?;
        }
        if let Some(res) = mem.reservation() {
            need(d, "memory")?;
            write(&d.join("memory.low"), &res.to_string())?;
        }
    }
    if let Some(pids) = r.pids() {
        need(d, "pids")?;
        let v = if pids.limit() <= 0 {
            "max".to_string()
        } else {
            pids.limit().to_string()
        };
        write(&d.join("pids.max"), &v)?;
    }
    if let Some(cpu) = r.cpu() {
        if let Some(shares) = cpu.shares() {
            need(d, "cpu")?;
            write(&d.join("cpu.weight"), &shares_to_weight(shares).to_string())?;
        }
        if cpu.quota().is_some() || cpu.period().is_some() {
            need(d, "cpu")?;
            let quota = cpu
                .quota()
                .filter(|&q| q > 0)
                .map_or("max".to_string(), |q| q.to_string());
            let period = cpu.period().unwrap_or(100_000);
            write(&d.join("cpu.max"), &format!("{quota} {period}"))?;
        }
        if let Some(cpus) = cpu.cpus() {
            need(d, "cpuset")?;
            write(&d.join("cpuset.cpus"), cpus)?;
        }
        if let Some(mems) = cpu.mems() {
            need(d, "cpuset")?;
            write(&d.join("cpuset.mems"), mems)?;
        }
    }
    if let Some(unified) = r.unified() {
        for (k, v) in unified {
            if k.contains('/') || k.starts_with('.') {
                return Err(CgroupError::InvalidResource {
                    field: "unified",
                    msg: format!("bad key {k:?}"),
                });
            }
            write(&d.join(k), v)?;
        }
    }
    Ok(())
}

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
}
