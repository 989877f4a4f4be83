//! The cgroup v2 device filter against the real kernel (as root): the eBPF
//! program is loaded and attached to a cgroup made for the test in this
//! host's cgroup2 tree (on hybrid hosts, /sys/fs/cgroup/unified), and a
//! shell inside that cgroup is allowed or refused devices exactly as the
//! rules say.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use skiff_runtime::cgroups::device_filter::{attach, Rule};

fn cgroup2_root() -> Option<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
}

#[test]
fn kernel_enforces_the_generated_program() {
    let root = cgroup2_root().expect("a cgroup2 mount (hybrid or unified host)");
    let dir = root.join(format!("skiff-devfilter-test-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    // Remove the test cgroup whatever happens.
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _guard = Remove(dir.clone());
    let rules = vec![
        Rule::parse("a", false).unwrap(),
        Rule::parse("c 1:3 rw", true).unwrap(), // /dev/null
        Rule::parse("c 1:5 r", true).unwrap(),  // /dev/zero, read only
    ];
    attach(&dir, &rules).unwrap();
    let procs = dir.join("cgroup.procs");
    let mut cmd = Command::new("/bin/sh");
    cmd.args([
        "-c",
        "cat /dev/null && echo null-ok; head -c1 /dev/zero >/dev/null && echo zero-read-ok; \
         (echo x > /dev/zero) 2>/dev/null && echo zero-write-ok; \
         (head -c1 /dev/full) >/dev/null 2>&1 && echo full-ok; echo end",
    ]);
    // SAFETY: only writes to a file between fork and exec.
    unsafe {
        cmd.pre_exec(move || std::fs::write(&procs, std::process::id().to_string()));
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "null-ok\nzero-read-ok\nend\n"
    );
}
