//! The container process as seen from inside: the same bundle runs under
//! skiff and under runc and what it prints must match (after normalising
//! bundle paths and ids), and must also match sane absolute expectations so
//! that two empty outputs cannot pass.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use skiff_tests::*;

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_owned).collect();
    v.sort();
    v
}

#[test]
fn stdout_reaches_caller() {
    let both = run_both(|b| {
        b.set_args(&["echo", "hello", "world"]);
    });
    assert_eq!(both.same_stdout(), "hello world\n");
    assert_eq!(both.same_code(), 0);
}

#[test]
fn environment() {
    let both = run_both(|b| {
        b.set_args(&["env"]);
        b.edit(|v| {
            v["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz", "EMPTY=", "TERM=xterm"])
        });
    });
    let env = both.same_by(sorted_lines);
    for want in ["PATH=/bin", "FOO=bar baz", "EMPTY=", "TERM=xterm"] {
        assert!(env.iter().any(|l| l == want), "{want} missing: {env:?}");
    }
}

#[test]
fn working_directory() {
    let both = run_both(|b| {
        b.set_args(&["pwd"]);
        b.edit(|v| v["process"]["cwd"] = json!("/tmp"));
    });
    assert_eq!(both.same_stdout(), "/tmp\n");

    // a cwd that does not exist in the rootfs is created by runc
    let both = run_both(|b| {
        b.set_args(&["pwd"]);
        b.edit(|v| v["process"]["cwd"] = json!("/work/dir"));
    });
    assert_eq!(both.same_stdout(), "/work/dir\n");
}

#[test]
fn user_group_and_additional_gids() {
    let both = run_both(|b| {
        b.set_args(&["id"]);
        b.edit(|v| {
            v["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20]})
        });
    });
    // groups are exactly additionalGids: the primary gid is not added
    assert_eq!(both.same_stdout(), "uid=1000 gid=1001 groups=10,20\n");

    let both = run_both(|b| {
        b.set_args(&["id"]);
    });
    assert!(both.same_stdout().starts_with("uid=0(root) gid=0(root)"));
}

#[test]
fn umask() {
    let both = run_both(|b| {
        b.set_args(&["sh", "-c", "umask"]);
        b.edit(|v| v["process"]["user"]["umask"] = json!(0o027));
    });
    assert_eq!(both.same_stdout(), "0027\n");

    // runc's default umask is 0022
    let both = run_both(|b| {
        b.set_args(&["sh", "-c", "umask"]);
    });
    assert_eq!(both.same_stdout(), "0022\n");
}

/// `Max open files 1000 2000 files` style lines of /proc/self/limits.
fn limits(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn rlimits() {
    // NOTE: this machine lacks CAP_SYS_RESOURCE: never raise NOFILE above
    // the host's hard limit (keep it well below 20000).
    let both = run_both(|b| {
        b.set_args(&["cat", "/proc/self/limits"]);
        b.edit(|v| {
            v["process"]["rlimits"] = json!([
                {"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000},
                {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
                {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                {"type": "RLIMIT_STACK", "soft": 4194304, "hard": 8388608}
            ])
        });
    });
    let l = both.same_by(limits);
    for want in [
        "Max open files 1000 2000 files",
        "Max processes 300 400 processes",
        "Max core file size 0 0 bytes",
        "Max stack size 4194304 8388608 bytes",
    ] {
        assert!(l.iter().any(|x| x == want), "{want} missing: {l:?}");
    }

    // and the shell builtin agrees
    let both = run_both(|b| {
        b.set_args(&["sh", "-c", "ulimit -n; ulimit -Hn"]);
    });
    assert_eq!(both.same_stdout(), "1024\n1024\n");
}

fn status_lines(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn capabilities_and_no_new_privs_as_root() {
    let both = run_both(|b| {
        b.set_args(&["cat", "/proc/self/status"]);
    });
    let caps = both.same_by(status_lines);
    // runc spec: AUDIT_WRITE(29), KILL(5), NET_BIND_SERVICE(10) in every set
    // except inheritable.  The ambient set ends up EMPTY: the kernel only
    // raises ambient caps that are also inheritable, and runc ignores the
    // failure (PR_CAP_AMBIENT_RAISE -> EPERM) silently.
    let set = "0000000020000420";
    for want in [
        "CapInh: 0000000000000000".to_string(),
        format!("CapPrm: {set}"),
        format!("CapEff: {set}"),
        format!("CapBnd: {set}"),
        "CapAmb: 0000000000000000".to_string(),
        "NoNewPrivs: 1".to_string(),
    ] {
        assert!(caps.contains(&want), "{want} missing: {caps:?}");
    }
}

#[test]
fn capabilities_as_non_root_with_custom_sets() {
    let both = run_both(|b| {
        b.set_args(&["cat", "/proc/self/status"]);
        b.edit(|v| {
            let p = &mut v["process"];
            p["user"] = json!({"uid": 1000, "gid": 1000});
            p["noNewPrivileges"] = json!(false);
            p["capabilities"] = json!({
                "bounding": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SETUID"],
                "effective": ["CAP_CHOWN"],
                "permitted": ["CAP_CHOWN", "CAP_NET_RAW"],
                "inheritable": ["CAP_CHOWN", "CAP_NET_RAW"],
                "ambient": ["CAP_NET_RAW"]
            });
        });
    });
    let caps = both.same_by(status_lines);
    for want in [
        "CapBnd: 0000000000002081",
        "CapInh: 0000000000002001",
        "CapAmb: 0000000000002000",
        "NoNewPrivs: 0",
    ] {
        assert!(caps.iter().any(|c| c == want), "{want} missing: {caps:?}");
    }
}

#[test]
fn mounts_inside() {
    let both = run_both(|b| {
        b.set_args(&["cat", "/proc/self/mountinfo"]);
    });
    let m = both.same_by(normalise_mountinfo);
    let points: Vec<&str> = m.iter().map(|l| l.split(' ').next().unwrap()).collect();
    for want in [
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
        "/proc/keys",
        "/sys/firmware",
    ] {
        assert!(points.contains(&want), "{want} not mounted: {m:#?}");
    }
    let root = m.iter().find(|l| l.starts_with("/ ")).unwrap();
    assert!(root.contains(" ro,") || root.contains(" ro "), "{root}");
}

#[test]
fn readonly_root() {
    let both = run_both(|b| {
        b.set_args(&["touch", "/x"]);
    });
    assert_ne!(both.same_code(), 0);
    assert!(
        both.skiff.stderr.contains("Read-only file system"),
        "{}",
        both.skiff
    );

    // ... while /tmp of a writable root is writable
    let both = run_both(|b| {
        b.set_args(&["sh", "-c", "touch /tmp/x && echo ok"]);
        b.edit(|v| v["root"]["readonly"] = json!(false));
    });
    assert_eq!(both.same_stdout(), "ok\n");
}

#[test]
fn masked_and_readonly_paths() {
    let script = "stat -c '%n %F %s' /proc/keys /proc/timer_list; \
                  echo firmware: $(ls -A /sys/firmware | wc -l); \
                  echo acpi: $(ls -A /proc/acpi | wc -l); \
                  cat /proc/keys | wc -c; \
                  test -e /proc/kcore && stat -c '%n %F' /proc/kcore; \
                  echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-writable || echo sys-ro";
    let both = run_both(|b| {
        b.set_args(&["sh", "-c", script]);
    });
    let out = both.same_stdout();
    assert!(out.contains("/proc/keys character special file 0"), "{out}");
    assert!(out.contains("firmware: 0\n"), "{out}");
    assert!(out.contains("acpi: 0\n"), "{out}");
    assert!(out.contains("sys-ro"), "{out}");
}

#[test]
fn hostname() {
    let both = run_both(|b| {
        b.set_args(&["hostname"]);
        b.edit(|v| v["hostname"] = json!("skiffy"));
    });
    assert_eq!(both.same_stdout(), "skiffy\n");
}

/// A named network namespace made with `ip netns add`, removed on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn new() -> NetNs {
        let name = unique_id();
        sh_output("ip", &["netns", "add", &name]).ok();
        NetNs { name }
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
    fn inode(&self) -> u64 {
        std::fs::metadata(self.path()).expect("netns file").ino()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = sh_output("ip", &["netns", "del", &self.name]);
    }
}

#[test]
fn joins_network_namespace_by_path() {
    let ns = NetNs::new();
    let want = format!("net:[{}]\n", ns.inode());
    let both = run_both(|b| {
        b.set_args(&["readlink", "/proc/self/ns/net"]);
        b.set_namespace("network", Some(Path::new(&ns.path())));
    });
    assert_eq!(both.same_stdout(), want);

    // and without a path the container gets a namespace of its own
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    let both = run_both(|b| {
        b.set_args(&["readlink", "/proc/self/ns/net"]);
    });
    let (s, r) = (both.skiff.stdout.trim(), both.runc.stdout.trim());
    assert!(s.starts_with("net:[") && r.starts_with("net:["), "{s} {r}");
    assert_ne!(s, host.to_str().unwrap());
    assert_ne!(s, want.trim());
}

#[test]
fn user_namespace_mappings() {
    let both = run_both(|b| {
        // container root is host uid 100000: it must be able to reach and
        // own its rootfs
        std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for e in walk(&b.rootfs()) {
            std::os::unix::fs::lchown(&e, Some(100000), Some(100000)).unwrap();
        }
        b.set_args(&[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u /bin/busybox",
        ]);
        b.set_namespace("user", None);
        b.edit(|v| {
            v["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            v["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        });
    });
    let out = both.same_by(|s| {
        s.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    });
    assert_eq!(
        out,
        ["0 100000 65536", "0 100000 65536", "0", "0"].map(String::from)
    );
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut v = vec![p.to_owned()];
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            v.extend(walk(&e.path()));
        }
    }
    v
}
