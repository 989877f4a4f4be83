//! Smoke test for the VM test bed: asserts a pure cgroup v2 host and that a
//! delegated child cgroup with memory/pids/cpu limits works. Dependency-free:
//! `rustc -O cgv2_check.rs`.
use std::fs;
use std::process::exit;

fn check(ok: bool, what: &str, failed: &mut u32, passed: &mut u32) {
    println!("{} {}", if ok { "ok  " } else { "FAIL" }, what);
    if ok { *passed += 1 } else { *failed += 1 }
}

fn main() {
    let (mut failed, mut passed) = (0u32, 0u32);
    let me = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    check(me.lines().count() == 1 && me.starts_with("0::/"), "/proc/self/cgroup has only the v2 line", &mut failed, &mut passed);
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let cg: Vec<&str> = mounts.lines().filter(|l| l.contains("cgroup")).collect();
    check(cg.len() == 1 && cg[0].split(' ').nth(2) == Some("cgroup2"), "only cgroup2 is mounted", &mut failed, &mut passed);
    let root = "/sys/fs/cgroup";
    let ctl = fs::read_to_string(format!("{root}/cgroup.subtree_control")).unwrap_or_default();
    for c in ["cpu", "memory", "pids", "io", "cpuset"] {
        check(ctl.split_whitespace().any(|x| x == c), &format!("controller {c} enabled for children"), &mut failed, &mut passed);
    }
    let dir = format!("{root}/cgv2-check-{}", std::process::id());
    check(fs::create_dir(&dir).is_ok(), "create a child cgroup", &mut failed, &mut passed);
    check(fs::write(format!("{dir}/memory.max"), "67108864").is_ok(), "write memory.max", &mut failed, &mut passed);
    check(fs::write(format!("{dir}/pids.max"), "42").is_ok(), "write pids.max", &mut failed, &mut passed);
    check(fs::write(format!("{dir}/cpu.max"), "50000 100000").is_ok(), "write cpu.max", &mut failed, &mut passed);
    let mm = fs::read_to_string(format!("{dir}/memory.max")).unwrap_or_default();
    check(mm.trim() == "67108864", "memory.max reads back 67108864", &mut failed, &mut passed);
    check(fs::write(format!("{dir}/cgroup.procs"), std::process::id().to_string()).is_ok(), "move self into it", &mut failed, &mut passed);
    let me = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    check(me.trim() == format!("0::/cgv2-check-{}", std::process::id()), "now in the child cgroup", &mut failed, &mut passed);
    let _ = fs::write(format!("{root}/cgroup.procs"), std::process::id().to_string());
    check(fs::remove_dir(&dir).is_ok(), "remove the child cgroup", &mut failed, &mut passed);
    println!("{passed} passed, {failed} failed");
    exit(if failed == 0 { 0 } else { 1 });
}
