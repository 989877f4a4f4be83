//! Sysctls: kernel parameters under /proc/sys, set for the container.
//!
//! `linux.sysctl` in the config (runtime-spec config-linux.md, "Sysctl")
//! maps names like `net.ipv4.ip_forward` to values; the init writes each
//! to its file, `/proc/sys/net/ipv4/ip_forward` (sysctl(8), proc(5)).
//! Only parameters that belong to a namespace the container has of its own
//! may be set: the IPC ones with an IPC namespace, `net.*` with a network
//! namespace, the host and domain names with a UTS namespace. Any other
//! would change the host, and is refused, as runc refuses it.

use std::os::fd::AsFd;
use std::path::PathBuf;

use oci_spec::runtime::LinuxNamespaceType;

use crate::namespaces::Plan;

/// A sysctl refused or not written.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// A sysctl that belongs to no namespace (so would change the host).
    #[error("sysctl {0:?} is not in a separate kernel namespace")]
    NoNamespace(String),
    /// A namespaced sysctl whose namespace the container shares with the host.
    #[error("sysctl {key:?} is not allowed in the hosts {namespace} namespace")]
    HostNamespace {
        /// The sysctl, like `net.ipv4.ip_forward`.
        key: String,
        /// Its namespace (`"ipc"`, `"network"`, `"uts"`).
        namespace: &'static str,
    },
    /// `/proc` cannot be opened or is not a procfs, so sysctls are not written.
    #[error("refusing to write sysctls")]
    Proc(#[source] std::io::Error),
    /// A sysctl name with `..` or `/`.
    #[error("invalid sysctl name {0:?}")]
    Name(String),
    /// Opening or writing a sysctl's file under `/proc/sys` failed.
    #[error("{op} sysctl {key}")]
    Write {
        /// The step that failed (`"open"`, `"write"`).
        op: &'static str,
        /// The sysctl.
        key: String,
        /// Why.
        #[source]
        source: nix::Error,
    },
}

/// Which namespace a sysctl belongs to; runc refuses a sysctl whose
/// namespace the container shares with the host.
fn check(key: &str, plan: &Plan) -> Result<(), SysctlError> {
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let (needs, name) = if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        (LinuxNamespaceType::Ipc, "ipc")
    } else if key.starts_with("net.") {
        (LinuxNamespaceType::Network, "network")
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        (LinuxNamespaceType::Uts, "uts")
    } else {
        return Err(SysctlError::NoNamespace(key.to_string()));
    };
    if !plan.has(needs) {
        return Err(SysctlError::HostNamespace {
            key: key.to_string(),
            namespace: name,
        });
    }
    Ok(())
}

/// Write sysctls through a verified procfs: `/proc` must really be procfs
/// (fstatfs(2) `PROC_SUPER_MAGIC`), and each file is opened below it with
/// openat2(2) refusing symlinks and mount crossings, so a rootfs cannot
/// redirect the write (runc CVE-2019-16884 and relatives).
pub fn write(
    sysctl: &std::collections::HashMap<String, String>,
    plan: &Plan,
) -> Result<(), SysctlError> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let proc = crate::rootfs::proc_guard::open_verified_proc().map_err(SysctlError::Proc)?;
    for (k, v) in sysctl {
        check(k, plan)?;
        if k.contains("..") || k.contains('/') {
            return Err(SysctlError::Name(k.clone()));
        }
        let rel = PathBuf::from("sys").join(k.replace('.', "/"));
        crate::explain!("sysctl(8)", "writing {v} to /proc/{}", rel.display());
        let how = OpenHow::new()
            .flags(OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(
                ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_XDEV
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        let fd =
            openat2(proc.as_fd(), rel.as_path(), how).map_err(|source| SysctlError::Write {
                op: "open",
                key: k.clone(),
                source,
            })?;
        nix::unistd::write(&fd, v.as_bytes()).map_err(|source| SysctlError::Write {
            op: "write",
            key: k.clone(),
            source,
        })?;
    }
    Ok(())
}
