//! Cgroup resources on whatever host this runs on (hybrid v1 on the
//! development machines, pure v2 in the VM test bed): the values land in the
//! container's cgroup files, the same files runc writes on this host, and the
//! kernel enforces them.

use std::time::Duration;

use skiff_tests::*;

/// The directory of `pid`'s cgroup in the hierarchy that has `controller`
/// (ignored on v2: there is one hierarchy).
fn cgroup_dir(pid: i32, controller: &str) -> std::path::PathBuf {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cg.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        if unified_host() && ctrls.is_empty() {
            return std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        }
        if ctrls.split(',').any(|c| c == controller) {
            // The v1 hierarchy of the controller; its mount root is "/" on these hosts.
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            let mp = mounts
                .lines()
                .find(|l| {
                    l.contains(" - cgroup ")
                        && l.rsplit(' ')
                            .next()
                            .unwrap()
                            .split(',')
                            .any(|o| o == controller)
                })
                .and_then(|l| l.split(' ').nth(4))
                .unwrap();
            return std::path::Path::new(mp).join(path.trim_start_matches('/'));
        }
    }
    panic!("no {controller} cgroup for pid {pid}: {cg}");
}

fn read(pid: i32, controller: &str, file: &str) -> String {
    let p = cgroup_dir(pid, controller).join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The resource files and the values to expect, for this host's layout.
/// A block device of this machine, for I/O throttles (none in some VMs).
fn block_device() -> Option<(u32, u32)> {
    std::fs::read_to_string("/proc/partitions")
        .ok()?
        .lines()
        .skip(2)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?))
        })
}

fn resource_files() -> Vec<(&'static str, &'static str, String)> {
    let mut v: Vec<(&'static str, &'static str, String)> = if unified_host() {
        vec![
            ("memory", "memory.max", "67108864".into()),
            ("memory", "memory.low", "33554432".into()),
            ("memory", "memory.swap.max", "33554432".into()),
            ("pids", "pids.max", "42".into()),
            ("cpu", "cpu.weight", "20".into()),
            ("cpu", "cpu.max", "50000 100000".into()),
            ("cpuset", "cpuset.cpus", "0".into()),
        ]
    } else {
        vec![
            ("memory", "memory.limit_in_bytes", "67108864".into()),
            ("memory", "memory.soft_limit_in_bytes", "33554432".into()),
            ("memory", "memory.memsw.limit_in_bytes", "100663296".into()),
            ("memory", "memory.swappiness", "30".into()),
            ("pids", "pids.max", "42".into()),
            ("cpu", "cpu.shares", "512".into()),
            ("cpu", "cpu.cfs_quota_us", "50000".into()),
            ("cpu", "cpu.cfs_period_us", "100000".into()),
            ("cpu", "cpu.rt_period_us", "1000000".into()),
            ("cpu", "cpu.rt_runtime_us", "10000".into()),
            ("cpuset", "cpuset.cpus", "0".into()),
        ]
    };
    if let Some((maj, min)) = block_device() {
        if unified_host() {
            v.push((
                "io",
                "io.max",
                format!("{maj}:{min} rbps=1048576 wbps=max riops=max wiops=max"),
            ));
        } else {
            v.push((
                "blkio",
                "blkio.throttle.read_bps_device",
                format!("{maj}:{min} 1048576"),
            ));
        }
    }
    v
}

fn with_resources(b: &Bundle) {
    b.edit(|v| {
        let mut mem = json!({"limit": 67108864, "reservation": 33554432, "swap": 100663296});
        let mut cpu = json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"});
        if !unified_host() {
            mem["swappiness"] = json!(30);
            cpu["realtimePeriod"] = json!(1000000);
            cpu["realtimeRuntime"] = json!(10000);
        }
        v["linux"]["resources"]["memory"] = mem;
        v["linux"]["resources"]["pids"] = json!({"limit": 42});
        v["linux"]["resources"]["cpu"] = cpu;
        if let Some((maj, min)) = block_device() {
            v["linux"]["resources"]["blockIO"] =
                json!({"throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": 1048576}]});
        }
    });
}

#[test]
fn resources_land_in_the_cgroup_files_like_runc() {
    let (s, r) = on_both(|rt, b| {
        with_resources(b);
        let id = unique_id();
        let pid = rt.start_with(b, &id, &["sleep", "300"]);
        let got: Vec<String> = resource_files()
            .iter()
            .map(|(c, f, _)| format!("{f}={}", read(pid, c, f)))
            .collect();
        rt.delete_force(&id).ok();
        got
    });
    let want: Vec<String> = resource_files()
        .iter()
        .map(|(_, f, v)| format!("{f}={v}"))
        .collect();
    assert_eq!(s, want);
    // runc on a v2 host writes cpu.weight from shares with the same formula.
    assert_eq!(s, r, "(left skiff, right runc)");
}

#[test]
fn update_changes_live_values_and_events_stats_match() {
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    let id = unique_id();
    let pid = rt.start_with(&b, &id, &["sleep", "300"]);
    rt.call(&[
        "update",
        "--memory",
        "96m",
        "--pids-limit",
        "17",
        "--cpu-quota",
        "30000",
        "--cpu-period",
        "100000",
        &id,
    ])
    .ok();
    let (mem_file, cpu_file, cpu_want) = if unified_host() {
        ("memory.max", "cpu.max", "30000 100000")
    } else {
        ("memory.limit_in_bytes", "cpu.cfs_quota_us", "30000")
    };
    assert_eq!(read(pid, "memory", mem_file), (96 << 20).to_string());
    assert_eq!(read(pid, "pids", "pids.max"), "17");
    assert_eq!(read(pid, "cpu", cpu_file), cpu_want);
    // --resources from stdin, as containerd sends it.
    let mut cmd = rt.cmd(&["update", "--resources", "-", &id]);
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"pids": {"limit": 23}}"#)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(read(pid, "pids", "pids.max"), "23");
    // The config kept in state follows, so a later update merges with it.
    let stats = rt.call(&["events", "--stats", &id]).ok().json();
    assert_eq!(stats["type"], "stats");
    assert_eq!(stats["id"], json!(id));
    let data = &stats["data"];
    assert_eq!(data["pids"]["limit"], json!(23));
    assert_eq!(
        data["pids"]["current"].as_u64(),
        Some(read(pid, "pids", "pids.current").parse().unwrap())
    );
    assert_eq!(data["memory"]["usage"]["limit"], json!(96u64 << 20));
    let usage_file = if unified_host() {
        "memory.current"
    } else {
        "memory.usage_in_bytes"
    };
    let file_usage: u64 = read(pid, "memory", usage_file).parse().unwrap();
    let reported = data["memory"]["usage"]["usage"].as_u64().unwrap();
    assert!(
        reported.abs_diff(file_usage) < 1 << 20,
        "{reported} vs {file_usage}"
    );
    rt.delete_force(&id).ok();
}

#[test]
fn memory_limit_oom_kills_and_events_report_it() {
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    b.edit(|v| {
        v["root"]["readonly"] = json!(false);
        v["linux"]["resources"]["memory"] = json!({"limit": 33554432, "swap": 33554432});
    });
    // A shell that waits for a go signal, then eats memory forever.
    let id = unique_id();
    let _pid = rt.start_with(
        &b,
        &id,
        &[
            "sh",
            "-c",
            "while [ ! -e /tmp/go ]; do sleep 0.05; done; tail /dev/zero",
        ],
    );
    let mut events = rt.cmd(&["events", "--interval", "1h", &id]);
    events
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut ev = events.spawn().unwrap();
    let rx = line_channel(ev.stdout.take().unwrap());
    // `events` prints the stats once it has read the starting OOM count:
    // only an OOM after that is an event.
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("events printed its first stats");
    rt.exec(&id, &["touch", "/tmp/go"]).ok();
    rt.wait_status(&id, "stopped");
    let status = wait_or_kill(ev, Duration::from_secs(20), "events");
    let lines: String = std::iter::once(first)
        .chain(rx.iter())
        .map(|l| l + "\n")
        .collect();
    assert!(
        status.success(),
        "events exits when the container stops: {lines}"
    );
    assert!(
        lines
            .lines()
            .any(|l| l == format!(r#"{{"type":"oom","id":"{id}"}}"#)),
        "{lines}"
    );
    rt.delete(&id).ok();
}

#[test]
fn pids_limit_makes_fork_fail_inside() {
    let both = run_both(|b| {
        b.edit(|v| v["linux"]["resources"]["pids"] = json!({"limit": 4}));
        b.set_args(&[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6; do sleep 1 & done; echo done",
        ]);
    });
    // busybox sh gives up (exit 2) at the first fork the pids limit refuses.
    assert_eq!(both.same_code(), 2);
    for out in [&both.skiff, &both.runc] {
        assert!(out.stderr.contains("can't fork"), "{out}");
    }
}

#[test]
fn cpu_quota_caps_a_busy_loop() {
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    b.edit(|v| v["linux"]["resources"]["cpu"] = json!({"quota": 20000, "period": 100000}));
    let id = unique_id();
    let _pid = rt.start_with(&b, &id, &["sh", "-c", "while :; do :; done"]);
    let usage = |rt: &Runtime| {
        rt.call(&["events", "--stats", &id]).ok().json()["data"]["cpu"]["usage"]["total"]
            .as_u64()
            .unwrap()
    };
    let t0 = std::time::Instant::now();
    let before = usage(&rt);
    std::thread::sleep(Duration::from_secs(2));
    let used = usage(&rt) - before;
    let window = t0.elapsed().as_nanos() as u64;
    rt.delete_force(&id).ok();
    // 20% of one CPU over the window measured (a little over 2 s, more on a
    // slow machine); allow generous margins.
    let share = used as f64 / window as f64;
    assert!(
        share > 0.05 && share < 0.35,
        "cpu used: {used} ns in {window} ns ({share:.2} of a cpu)"
    );
}

#[test]
fn device_rules_deny_and_allow() {
    let (s, r) = on_both(|rt, b| {
        b.add_mount(json!({"destination": "/dev/fuse", "type": "bind", "source": "/dev/fuse", "options": ["bind"]}));
        b.set_args(&[
            "sh",
            "-c",
            "(exec 3<>/dev/fuse) 2>/dev/null && echo opened || echo denied",
        ]);
        let denied = rt.run(b, &unique_id()).ok().stdout;
        b.edit(|v| {
            v["linux"]["resources"]["devices"]
                .as_array_mut()
                .unwrap()
                .push(
                    json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}),
                )
        });
        let allowed = rt.run(b, &unique_id()).ok().stdout;
        (denied, allowed)
    });
    assert_eq!(s, ("denied\n".to_string(), "opened\n".to_string()));
    assert_eq!(s, r);
}

#[test]
fn bad_resources_are_refused_naming_the_field_and_leave_nothing() {
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (json!({"memory": {"limit": -5}}), "memory.limit"),
        (json!({"cpu": {"quota": 10}}), "cpu.quota"),
        (json!({"cpu": {"shares": 1}}), "cpu.shares"),
        (json!({"cpu": {"cpus": "zero"}}), "cpu.cpus"),
        (json!({"pids": {"limit": -7}}), "pids.limit"),
        (
            json!({"devices": [{"allow": true, "type": "x", "access": "rwm"}]}),
            "linux.resources.devices[0].type",
        ),
    ];
    let rt = Runtime::skiff();
    for (res, field) in cases {
        let b = Bundle::busybox();
        b.set_args(&["true"]);
        b.edit(|v| {
            for (k, val) in res.as_object().unwrap() {
                v["linux"]["resources"][k] = val.clone();
            }
        });
        let id = unique_id();
        let leaks = LeakCheck::new(&[&rt], &[&b], &[&id]);
        let out = rt.run(&b, &id).fail();
        assert!(out.stderr.contains(field), "{field}: {out}");
        leaks.assert_clean();
    }
    if !unified_host() {
        // A controller this host does not have (net_cls is not mounted here).
        let b = Bundle::busybox();
        b.set_args(&["true"]);
        b.edit(|v| v["linux"]["resources"]["network"] = json!({"classID": 1048577}));
        let id = unique_id();
        let leaks = LeakCheck::new(&[&rt], &[&b], &[&id]);
        let out = rt.run(&b, &id).fail();
        assert!(out.stderr.contains("net_cls"), "{out}");
        leaks.assert_clean();
    }
}

#[test]
fn cgroups_path_cannot_escape_its_hierarchy() {
    // runc's rule: the path is cleaned as if absolute, so `..` stops at the root.
    let (s, r) = on_both(|rt, b| {
        let name = format!("skiff-escape-{}", unique_id());
        b.edit(|v| v["linux"]["cgroupsPath"] = json!(format!("/../../../{name}")));
        let id = unique_id();
        let pid = rt.start_with(b, &id, &["sleep", "300"]);
        let dir = cgroup_dir(pid, "pids");
        rt.delete_force(&id).ok();
        dir.strip_prefix("/sys/fs/cgroup")
            .unwrap()
            .to_string_lossy()
            .replace(&name, "NAME")
    });
    assert!(s.ends_with("/NAME") || s == "NAME", "{s}");
    assert_eq!(s, r);
}

#[test]
fn delete_removes_nested_cgroups() {
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    let id = unique_id();
    let pid = rt.start_with(&b, &id, &["sleep", "300"]);
    // What a container manager inside (systemd, a nested runtime) would make,
    // with a process in it.
    let dir = cgroup_dir(pid, "pids");
    let nested = dir.join("nested/deeper");
    std::fs::create_dir_all(&nested).unwrap();
    let exec_pid_file = b.path().join("exec.pid");
    rt.call(&[
        "exec",
        "--detach",
        "--pid-file",
        exec_pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "300",
    ])
    .ok();
    let exec_pid = std::fs::read_to_string(&exec_pid_file).unwrap();
    std::fs::write(nested.join("cgroup.procs"), exec_pid.trim()).unwrap();
    rt.delete_force(&id).ok();
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn hugetlb_and_unified_resources() {
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    b.edit(|v| {
        v["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4194304}]);
    });
    if unified_host() {
        b.edit(|v| v["linux"]["resources"]["unified"] = json!({"memory.high": "50331648"}));
        let id = unique_id();
        let pid = rt.start_with(&b, &id, &["sleep", "300"]);
        assert_eq!(read(pid, "hugetlb", "hugetlb.2MB.max"), "4194304");
        assert_eq!(read(pid, "memory", "memory.high"), "50331648");
        rt.delete_force(&id).ok();
    } else {
        // Hybrid hosts: unified key/values need cgroup v2, and hugetlb lives in
        // a cgroup2 tree that gives its children no controllers here: both
        // are refused naming what is missing, and nothing is left behind.
        let id = unique_id();
        let leaks = LeakCheck::new(&[&rt], &[&b], &[&id]);
        b.set_args(&["true"]);
        let out = rt.run(&b, &id).fail();
        assert!(out.stderr.contains("hugetlb"), "{out}");
        leaks.assert_clean();
        b.edit(|v| {
            v["linux"]["resources"]
                .as_object_mut()
                .unwrap()
                .remove("hugepageLimits");
            v["linux"]["resources"]["unified"] = json!({"memory.high": "50331648"});
        });
        let id = unique_id();
        let out = rt.run(&b, &id).fail();
        assert!(out.stderr.contains("unified"), "{out}");
    }
}

#[test]
fn check_before_update_refuses_a_limit_below_usage() {
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    let id = unique_id();
    let pid = rt.start_with(&b, &id, &["sleep", "300"]);
    let file = if unified_host() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    let before = read(pid, "memory", file);
    let res = b.write_file(
        "tiny.json",
        r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#,
    );
    let out = rt
        .call(&["update", "--resources", res.to_str().unwrap(), &id])
        .fail();
    assert!(
        out.stderr.contains("memory.limit") && out.stderr.contains("current usage"),
        "{out}"
    );
    assert_eq!(read(pid, "memory", file), before, "nothing written");
    let res = b.write_file(
        "fine.json",
        r#"{"memory": {"limit": 268435456, "checkBeforeUpdate": true}}"#,
    );
    rt.call(&["update", "--resources", res.to_str().unwrap(), &id])
        .ok();
    assert_eq!(read(pid, "memory", file), "268435456");
    rt.delete_force(&id).ok();
}

/// How the init gets into its cgroup. On pure cgroup v2 it is born there
/// (clone3 `CLONE_INTO_CGROUP`): nothing writes `cgroup.procs`, so no RCU
/// grace period is waited for, and the limits hold from its first page.
/// On a hybrid host it is born in its cgroup2 directory and then moves its
/// one thread into each v1 hierarchy itself (`tasks`), which takes no
/// global lock either; the runtime moves nothing. Either way the program
/// runs in the container's cgroup, in every hierarchy, under its limits.
#[test]
fn the_init_is_born_in_its_cgroup_on_v2_and_moves_itself_on_hybrid() {
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    b.edit(|v| v["linux"]["resources"]["pids"] = json!({"limit": 5}));
    b.set_args(&["sh", "-c", "cat /proc/self/cgroup; cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"]);
    let id = unique_id();
    let out = rt.call(&["--explain", "run", "--bundle", b.path_str(), &id]);
    assert_eq!(out.code(), 0, "{out}");
    let born = out.stderr.contains("CLONE_INTO_CGROUP");
    let moved = out.stderr.contains("writing pid");
    let moves_itself = out.stderr.contains("the init moves itself");
    if unified_host() {
        assert!(
            born && !moved && !moves_itself,
            "born in its cgroup on v2: {out}"
        );
    } else {
        assert!(
            moves_itself && !moved,
            "moves itself on a hybrid host: {out}"
        );
    }
    // Its own cgroup in every hierarchy, seen from the host (inside, a
    // cgroup namespace would show "/" wherever it stands).
    let id2 = unique_id();
    let pid = rt.start_with(&b, &id2, &["sleep", "300"]);
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let lines: Vec<&str> = cg.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(
            l.contains(&id2),
            "the init is in the container's cgroup in every hierarchy ({l}):\n{cg}"
        );
    }
    rt.delete_force(&id2).ok();
    assert!(
        out.stdout.lines().any(|l| l.trim() == "5"),
        "under its limits: {out}"
    );
}

/// v1's real-time rule: a process with a real-time policy (here the runtime
/// started under `chrt -f 1`, whose policy its children inherit) may join a
/// `cpu` cgroup only if that cgroup grants real-time runtime, and a new one
/// grants none (`cpu.rt_runtime_us` 0). The kernel refuses the move with
/// EINVAL. This is also the one way to make the init's own move into its
/// cgroups fail on purpose: `create` must report the kernel's reason, say
/// what to set, and leave nothing behind; the same holds for `exec`. With
/// the runtime granted (in the spec, or by `update`), both work. runc fails
/// the same way, with the bare EINVAL.
#[test]
fn a_real_time_caller_is_told_to_grant_real_time_runtime_and_nothing_leaks() {
    if unified_host() || !std::path::Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists() {
        eprintln!("skipped: needs a v1 cpu hierarchy with real-time group scheduling");
        return;
    }
    let rt = Runtime::skiff();
    let chrt = |args: &[&str]| {
        let mut c = std::process::Command::new("chrt");
        c.args(["-f", "1"])
            .arg(skiff_bin())
            .arg("--root")
            .arg(rt.root_path())
            .args(args);
        output(c)
    };
    let hint = |out: &Output, file: &str| {
        assert!(
            out.stderr.contains(&format!("/{file}: Invalid argument"))
                && out.stderr.contains("real-time process")
                && out.stderr.contains("realtimeRuntime"),
            "{out}"
        );
    };

    // create: the init's own write of 0 to `tasks` is what fails.
    let b = Bundle::busybox();
    b.set_args(&["true"]);
    let id = unique_id();
    let leaks = LeakCheck::new(&[&rt], &[&b], &[&id]);
    let out = chrt(&["run", "--bundle", b.path_str(), &id]).fail();
    hint(&out, "tasks");
    assert!(out.stderr.contains("/cpu"), "{out}");
    leaks.assert_clean();

    // exec into a running container: the exec'd process writes its pid to
    // `cgroup.procs`. The container is untouched, and once `update` grants
    // real-time runtime the same exec works.
    let id = unique_id();
    let leaks = LeakCheck::new(&[&rt], &[&b], &[&id]);
    let pid = rt.start_with(&b, &id, &["sleep", "300"]);
    let out = chrt(&["exec", &id, "true"]).fail();
    hint(&out, "cgroup.procs");
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    assert_eq!(rt.pid(&id), pid);
    rt.call(&["update", "--cpu-rt-runtime", "10000", &id]).ok();
    chrt(&["exec", &id, "true"]).ok();
    rt.delete_force(&id).ok();
    leaks.assert_clean();

    // The spec grants it: the real-time caller's container runs.
    b.set_args(&["true"]);
    b.edit(|v| {
        v["linux"]["resources"]["cpu"] =
            json!({"realtimeRuntime": 10000, "realtimePeriod": 1000000})
    });
    let id = unique_id();
    let leaks = LeakCheck::new(&[&rt], &[&b], &[&id]);
    chrt(&["run", "--bundle", b.path_str(), &id]).ok();
    leaks.assert_clean();
}
