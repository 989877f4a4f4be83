//! `skiff features`: what this runtime supports, in the JSON shape of the
//! runtime spec's features.md (the same document `runc features` prints),
//! so that higher layers can check before they ask.

use serde_json::{json, Value};

/// The features document `skiff features` prints (features.md): spec
/// versions, hooks, mount options, namespaces, capabilities, cgroup and
/// seccomp support.
pub fn features() -> Value {
    let caps = crate::process::capabilities::all_names();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::container::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand",
            "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime",
            "nosuid", "private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared",
            "rslave", "runbindable", "rw", "shared", "slave", "strictatime", "suid", "sync",
            "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
                "supportedFlags": seccomp_flags()
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {
            "io.github.skiff.version": env!("CARGO_PKG_VERSION")
        }
    })
}

/// The seccomp filter flags this kernel accepts:
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` arrived in Linux 5.19.
fn seccomp_flags() -> Vec<&'static str> {
    let mut flags = vec![
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_TSYNC",
    ];
    if crate::utils::kernel_version() >= (5, 19) {
        flags.push(crate::seccomp::WAIT_KILLABLE_RECV);
    }
    flags
}
