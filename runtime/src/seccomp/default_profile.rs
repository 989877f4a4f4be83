//! The default seccomp profile: the allow-list Docker and containerd put on
//! every container unless told otherwise.
//!
//! A container running as root with a handful of capabilities can still make
//! any system call the kernel offers, and a few of them are how container
//! escapes begin: `unshare(CLONE_NEWUSER)` gives back a full set of
//! capabilities inside a fresh user namespace, `keyctl` reaches the
//! kernel's keyrings (not namespaced), `bpf` and `perf_event_open` expose
//! large attack surfaces. The default profile therefore inverts the rule:
//! every system call fails with `EPERM` unless it is on the list below.
//!
//! The list has three parts, and the profile is computed from the container's
//! bounding capability set, as containerd's generator does:
//! - calls any process needs (file I/O, memory, signals, sockets, time...);
//! - calls whose only use is an operation a capability already gates
//!   (`mount` with CAP_SYS_ADMIN, `reboot` with CAP_SYS_BOOT...): allowed only
//!   when the container holds that capability, so the filter adds no
//!   friction there and removes the syscall surface everywhere else;
//! - argument-filtered rules: `clone` is allowed only without namespace flags
//!   (`SCMP_CMP_MASKED_EQ` on the flags), `clone3` fails with `ENOSYS` so the C
//!   library falls back to `clone` (its flags live in memory a filter cannot
//!   read), and `personality` only with the harmless personas.
//!
//! See seccomp(2), `docs/06-security.md`, and `skiff spec --profile default`.

use std::collections::BTreeSet;

use serde_json::{json, Value};

/// System calls every container may make.
#[rustfmt::skip]
const ALWAYS: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk",
    "cachestat", "capget", "capset", "chdir", "chmod", "chown", "chown32",
    "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
    "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
    "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2",
    "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir",
    "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat",
    "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock",
    "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64",
    "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex",
    "futex_requeue", "futex_time64", "futex_wait", "futex_waitv",
    "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64",
    "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
    "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid",
    "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
    "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list",
    "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area",
    "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
    "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup",
    "io_submit", "ipc", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32",
    "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr",
    "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64",
    "madvise", "map_shadow_stack", "membarrier", "memfd_create",
    "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat",
    "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64",
    "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync",
    "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep",
    "newfstatat", "_newselect", "open", "openat", "openat2", "pause",
    "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc",
    "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl",
    "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease",
    "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read",
    "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom",
    "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages",
    "removexattr", "rename", "renameat", "renameat2", "restart_syscall",
    "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity",
    "sched_getattr", "sched_getparam", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp",
    "select", "semctl", "semget", "semop", "semtimedop",
    "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg",
    "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
    "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid",
    "setpriority", "setregid", "setregid32", "setresgid", "setresgid32",
    "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit",
    "set_robust_list", "setsid", "setsockopt", "set_thread_area",
    "set_tid_address", "setuid", "setuid32", "setxattr", "shmat", "shmctl",
    "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4",
    "sigprocmask", "sigreturn", "socket", "socketcall", "socketpair",
    "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink",
    "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee",
    "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate",
    "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat",
    "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice",
    "wait4", "waitid", "waitpid", "write", "writev",
];

/// Calls allowed only with a capability in the bounding set: each gates
/// what the call does anyway, so the filter only narrows the surface.
#[rustfmt::skip]
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount",
            "fsopen", "fspick", "lookup_dcookie", "mount", "mount_setattr",
            "move_mount", "open_tree", "perf_event_open", "quotactl",
            "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog",
            "umount", "umount2", "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    ("CAP_SYS_MODULE", &["delete_module", "init_module", "finit_module"]),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
            "process_vm_writev", "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Calls that exist only on some architectures (Rust's `target_arch` names).
#[rustfmt::skip]
const BY_ARCH: &[(&[&str], &[&str])] = &[
    (&["x86_64"], &["arch_prctl", "modify_ldt", "uretprobe"]),
    (&["x86"], &["modify_ldt"]),
    (
        &["arm", "aarch64"],
        &[
            "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2",
            "breakpoint", "cacheflush", "set_tls",
        ],
    ),
    (&["powerpc64"], &["sync_file_range2", "swapcontext"]),
    (
        &["s390x"],
        &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
    ),
];

/// `personality(2)` values a program may legitimately set: the default,
/// `PER_LINUX32`, `UNAME26` (with and without 32-bit), and the query
/// `0xffffffff` that only reads the current persona.
const PERSONAS: &[u64] = &[0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// Every namespace flag `clone(2)` accepts; a plain `clone` must have none.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

const EPERM: u64 = libc::EPERM as u64;
const ENOSYS: u64 = libc::ENOSYS as u64;

/// The seccomp architectures a process on `arch` may use: the native one
/// plus the compat ABIs the kernel also accepts there.
fn architectures(arch: &str) -> Vec<&'static str> {
    match arch {
        "x86_64" => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "x86" => vec!["SCMP_ARCH_X86"],
        "aarch64" => vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "arm" => vec!["SCMP_ARCH_ARM"],
        "s390x" => vec!["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
        "powerpc64" => vec!["SCMP_ARCH_PPC64LE"],
        "riscv64" => vec!["SCMP_ARCH_RISCV64"],
        _ => vec![],
    }
}

fn allow(names: &[&str]) -> Value {
    json!({"names": names, "action": "SCMP_ACT_ALLOW"})
}

/// The default profile for a container whose bounding set is `caps`, on
/// machine architecture `arch` (as `std::env::consts::ARCH`), running on a
/// kernel of version `kernel` (major, minor). The result is the JSON of the
/// runtime spec's `linux.seccomp`.
pub fn for_container(caps: &BTreeSet<String>, arch: &str, kernel: (u32, u32)) -> Value {
    let has = |c: &str| caps.contains(c);
    let mut rules = vec![allow(ALWAYS)];
    // Since 4.8 seccomp runs after ptrace decisions, so a tracer can no
    // longer rewrite a checked call: ptrace is then safe to allow.
    if kernel >= (4, 8) {
        rules.push(allow(&["process_vm_readv", "process_vm_writev", "ptrace"]));
    }
    for v in PERSONAS {
        rules.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]}));
    }
    for (arches, names) in BY_ARCH {
        if arches.contains(&arch) {
            rules.push(allow(names));
        }
    }
    for (cap, names) in BY_CAPABILITY {
        if has(cap) {
            rules.push(allow(names));
        }
    }
    if !has("CAP_SYS_ADMIN") {
        // s390 passes clone's flags second.
        let index = if arch == "s390x" { 1 } else { 0 };
        rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": index, "value": CLONE_NAMESPACE_FLAGS,
                                    "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
        rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": ENOSYS}));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": architectures(arch),
        "syscalls": rules
    })
}

/// The profile for the bounding capabilities in `spec` (a config.json
/// value) on this machine.
pub fn for_spec(spec: &Value) -> Value {
    let caps = spec["process"]["capabilities"]["bounding"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for_container(
        &caps,
        std::env::consts::ARCH,
        crate::utils::kernel_version(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxSeccomp;

    fn caps(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|c| c.to_string()).collect()
    }

    fn allowed_unconditionally(p: &Value) -> BTreeSet<String> {
        p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW" && r.get("args").is_none())
            .flat_map(|r| r["names"].as_array().unwrap().clone())
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn parses_as_the_runtime_spec_type() {
        let p = for_container(&caps(&["CAP_SYS_ADMIN"]), "x86_64", (6, 1));
        let s: LinuxSeccomp = serde_json::from_value(p).unwrap();
        assert_eq!(s.architectures().as_ref().unwrap().len(), 3);
    }

    #[test]
    fn namespace_and_admin_calls_need_cap_sys_admin() {
        let plain = for_container(&caps(&["CAP_KILL"]), "x86_64", (6, 1));
        let allowed = allowed_unconditionally(&plain);
        for call in [
            "unshare", "setns", "mount", "clone", "clone3", "keyctl", "bpf",
        ] {
            assert!(!allowed.contains(call), "{call} must not be allowed");
        }
        let admin =
            allowed_unconditionally(&for_container(&caps(&["CAP_SYS_ADMIN"]), "x86_64", (6, 1)));
        for call in ["unshare", "setns", "mount", "clone", "clone3"] {
            assert!(
                admin.contains(call),
                "{call} must be allowed with CAP_SYS_ADMIN"
            );
        }
        // Without CAP_SYS_ADMIN: clone only without namespace flags, clone3 ENOSYS.
        let rules = plain["syscalls"].as_array().unwrap();
        let clone = rules.iter().find(|r| r["names"][0] == "clone").unwrap();
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone["args"][0]["value"], CLONE_NAMESPACE_FLAGS);
        let clone3 = rules.iter().find(|r| r["names"][0] == "clone3").unwrap();
        assert_eq!(clone3["errnoRet"], 38);
    }

    #[test]
    fn arch_specific_calls_follow_the_architecture() {
        let x86 = allowed_unconditionally(&for_container(&caps(&[]), "x86_64", (6, 1)));
        assert!(x86.contains("arch_prctl"));
        let arm = for_container(&caps(&[]), "aarch64", (6, 1));
        assert!(allowed_unconditionally(&arm).contains("set_tls"));
        assert!(!allowed_unconditionally(&arm).contains("arch_prctl"));
        assert_eq!(
            arm["architectures"],
            json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
        );
        let s390 = for_container(&caps(&[]), "s390x", (6, 1));
        let clone = s390["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["names"][0] == "clone")
            .unwrap()
            .clone();
        assert_eq!(clone["args"][0]["index"], 1);
    }

    #[test]
    fn ptrace_only_on_kernels_where_seccomp_sees_it_last() {
        assert!(
            !allowed_unconditionally(&for_container(&caps(&[]), "x86_64", (4, 4)))
                .contains("ptrace")
        );
        assert!(
            allowed_unconditionally(&for_container(&caps(&[]), "x86_64", (4, 8)))
                .contains("ptrace")
        );
    }

    #[test]
    fn no_name_is_listed_twice_in_the_base_list() {
        let set: BTreeSet<_> = ALWAYS.iter().collect();
        assert_eq!(set.len(), ALWAYS.len());
    }
}
