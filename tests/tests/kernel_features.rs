//! Namespaces joined by path, sysctls, domainname, oomScoreAdj, cgroup and
//! time namespaces, bind mounts with options, `linux.devices` and
//! `--no-pivot`: each run under skiff and runc on the same bundle (time
//! namespaces under skiff alone: runc 1.1 does not support them).

use std::os::unix::fs::PermissionsExt;

use skiff_tests::*;

#[test]
fn sysctl_domainname_and_oom_score_adj() {
    let both = run_both(|b| {
        b.set_args(&[
            "sh",
            "-c",
            "cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/ip_forward /proc/self/oom_score_adj",
        ]);
        b.edit(|v| {
            v["linux"]["sysctl"] = json!({"kernel.shmmni": "2048", "net.ipv4.ip_forward": "1"});
            v["process"]["oomScoreAdj"] = json!(123);
        });
    });
    assert_eq!(both.same_stdout(), "2048\n1\n123\n");
}

#[test]
fn domainname() {
    // skiff only: runc 1.1.5 ignores `domainname` (added in runtime spec 1.1).
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    b.edit(|v| v["domainname"] = json!("skiff.test"));
    b.set_args(&["cat", "/proc/sys/kernel/domainname"]);
    assert_eq!(rt.run(&b, &unique_id()).ok().stdout, "skiff.test\n");
}

#[test]
fn sysctl_of_a_shared_namespace_is_refused() {
    let (s, r) = on_both(|rt, b| {
        b.set_args(&["true"]);
        b.remove_namespace("network");
        b.edit(|v| v["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"}));
        let id = unique_id();
        let leaks = LeakCheck::new(&[rt], &[b], &[&id]);
        let out = rt.run(b, &id);
        leaks.assert_clean();
        out
    });
    assert_eq!((s.code(), r.code()), (1, 1), "{s}\n{r}");
    assert!(s.stderr.contains("net.ipv4.ip_forward"), "{s}");
}

#[test]
fn joins_pid_ipc_and_uts_namespaces_of_another_container() {
    let (s, r) = on_both(|rt, b| {
        // A first container that holds the namespaces.
        let holder = b.duplicate();
        holder.edit(|v| v["hostname"] = json!("holder"));
        let hid = unique_id();
        let hpid = rt.start_with(&holder, &hid, &["sleep", "300"]);
        for (ty, name) in [("pid", "pid"), ("ipc", "ipc"), ("uts", "uts")] {
            b.set_namespace(
                ty,
                Some(std::path::Path::new(&format!("/proc/{hpid}/ns/{name}"))),
            );
        }
        b.edit(|v| {
            v.as_object_mut()
                .unwrap()
                .remove("hostname")
                .map(drop)
                .unwrap_or(())
        });
        b.set_args(&["sh", "-c", "hostname; ps -o comm | grep -c sleep"]);
        let out = rt.run(b, &unique_id()).ok();
        rt.delete_force(&hid).ok();
        out.stdout
    });
    assert_eq!(s, "holder\n1\n");
    assert_eq!(s, r);
}

#[test]
fn cgroup_namespace_shows_root_cgroups() {
    let both = run_both(|b| {
        b.set_namespace("cgroup", None);
        b.set_args(&["cat", "/proc/self/cgroup"]);
    });
    let lines = both.same_by(|s| s.lines().map(str::to_owned).collect::<Vec<_>>());
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(
            l.ends_with(":/"),
            "every hierarchy shows / inside: {lines:?}"
        );
    }
}

#[test]
fn bind_mount_read_only_nosuid_and_file_bind() {
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("data"), "from the host\n").unwrap();
    std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = host.path().join("data");
    let both = run_both(|b| {
        b.add_mount(json!({
            "destination": "/mnt/ro", "type": "bind", "source": host.path(),
            "options": ["rbind", "ro", "nosuid", "nodev"]
        }));
        b.add_mount(json!({
            "destination": "/etc/hostdata", "type": "bind", "source": file,
            "options": ["bind", "ro"]
        }));
        b.set_args(&[
            "sh",
            "-c",
            "cat /mnt/ro/data /etc/hostdata; touch /mnt/ro/x 2>/dev/null && echo writable || echo read-only; grep -E ' /mnt/ro | /etc/hostdata ' /proc/self/mountinfo | cut -d' ' -f5,6",
        ]);
    });
    assert_eq!(
        both.same_stdout(),
        "from the host\nfrom the host\nread-only\n/mnt/ro ro,nosuid,nodev,relatime\n/etc/hostdata ro,relatime\n"
    );
    assert!(!host.path().join("x").exists());
}

#[test]
fn linux_devices_are_created() {
    let both = run_both(|b| {
        b.edit(|v| {
            v["linux"]["devices"] = json!([
                {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 438, "uid": 7, "gid": 8}
            ]);
        });
        b.set_args(&[
            "sh",
            "-c",
            "stat -c '%t %T %a %u %g' /dev/mynull; echo hi > /dev/mynull && echo writable",
        ]);
    });
    assert_eq!(both.same_stdout(), "1 3 666 7 8\nwritable\n");
}

#[test]
fn no_pivot_still_confines_the_root() {
    let (s, r) = on_both(|rt, b| {
        b.set_args(&[
            "sh",
            "-c",
            "ls / | sort | tr '\\n' ' '; cat /proc/1/cmdline | tr '\\0' ' '",
        ]);
        let id = unique_id();
        rt.call(&["run", "--no-pivot", "--bundle", b.path_str(), &id])
            .ok()
            .stdout
    });
    // Exactly the bundle's rootfs, and the container's own pid 1.
    assert!(s.starts_with("bin dev etc proc root sys tmp sh -c"), "{s}");
    assert_eq!(s, r);
}

#[test]
fn time_namespace_offsets() {
    // skiff only: runc 1.1.5 predates time namespaces in the runtime spec.
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    b.set_namespace("time", None);
    b.edit(|v| {
        v["linux"]["timeOffsets"] = json!({"boottime": {"secs": 86400000, "nanosecs": 0}, "monotonic": {"secs": 1000, "nanosecs": 0}});
    });
    b.set_args(&[
        "sh",
        "-c",
        "cut -d. -f1 /proc/uptime; cat /proc/self/timens_offsets",
    ]);
    let out = rt.run(&b, &unique_id()).ok();
    let mut lines = out.stdout.lines();
    let uptime: u64 = lines.next().unwrap().parse().unwrap();
    assert!(uptime >= 86_400_000, "boottime offset applied: {out}");
    let offsets: Vec<&str> = lines.collect();
    assert!(
        offsets
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["monotonic", "1000", "0"]),
        "{out}"
    );
}
