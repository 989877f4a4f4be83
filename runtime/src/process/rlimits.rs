//! Resource limits (setrlimit(2)): the number of open files, processes,
//! core size... per process. Raising a hard limit above the current one
//! needs CAP_SYS_RESOURCE in the initial user namespace.

use nix::sys::resource::{setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use super::ProcessError;

fn resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// setrlimit(2) each of `process.rlimits`, soft and hard.
pub fn apply(limits: &[PosixRlimit]) -> Result<(), ProcessError> {
    for l in limits {
        crate::explain!(
            "setrlimit(2)",
            "limiting {:?} to soft {} / hard {}",
            l.typ(),
            l.soft(),
            l.hard()
        );
        setrlimit(resource(l.typ()), l.soft(), l.hard()).map_err(|err| {
            let current = nix::sys::resource::getrlimit(resource(l.typ()))
                .map(|(_, hard)| hard)
                .unwrap_or(u64::MAX);
            if err == nix::Error::EPERM && l.hard() > current {
                ProcessError::RlimitDenied {
                    typ: format!("{:?}", l.typ()),
                    hard: l.hard(),
                    current,
                    err,
                }
            } else {
                ProcessError::Rlimit {
                    typ: format!("{:?}", l.typ()),
                    err,
                }
            }
        })?;
    }
    Ok(())
}
