//! Capabilities: root's power, split into ~40 pieces (capabilities(7)).
//!
//! A process has five sets. *Bounding* caps what it can ever gain;
//! *permitted* is what it may use; *effective* is what the kernel checks
//! right now; *inheritable* and *ambient* decide what survives execve(2).
//! They must be set in an order that lets each stick:
//!
//! 1. drop from the bounding set what is not listed (needs CAP_SETPCAP, which
//!    we still have as root);
//! 2. keep capabilities across the uid change (`PR_SET_KEEPCAPS`), then
//!    become the container user (see [`super::user`]);
//! 3. set effective, permitted and inheritable with capset(2);
//! 4. raise each ambient capability (it must be permitted and inheritable).
//!
//! When a seccomp filter must still be loaded without `no_new_privs`, step
//! 3 keeps CAP_SYS_ADMIN a little longer, and one last capset(2) drops it
//! right after the filter is loaded (see [`apply_sets`]).

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::LinuxCapabilities;

use super::ProcessError;

/// Every capability this build knows, by name (`CAP_CHOWN`...), sorted:
/// what `features` lists and what a privileged container gets.
pub fn all_names() -> Vec<String> {
    caps::all()
        .iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The capabilities this process may still hand on (its bounding set),
/// by name, sorted: what a privileged container can really get. A
/// machine may hold some back from root itself (a container host, a
/// sandbox); asking for those fails with EPERM, so containerd gives
/// privileged containers exactly this set.
pub fn bounding_names() -> Vec<String> {
    caps::read(None, CapSet::Bounding)
        .map(|set| {
            set.iter()
                .map(|c| c.to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        })
        .unwrap_or_else(|_| all_names())
}

/// Convert the spec's names to the `caps` crate's type.
pub fn convert(set: Option<&oci_spec::runtime::Capabilities>) -> Result<CapsHashSet, ProcessError> {
    let mut out = HashSet::new();
    for c in set.into_iter().flatten() {
        let name = format!("CAP_{c}");
        let cap = Capability::from_str(&name)
            .map_err(|_| ProcessError::UnknownCapability(name.clone()))?;
        out.insert(cap);
    }
    Ok(out)
}

/// Step 1: drop every capability not in the bounding set.
pub fn apply_bounding(c: &LinuxCapabilities) -> Result<(), ProcessError> {
    let keep = convert(c.bounding().as_ref())?;
    crate::explain!(
        "prctl(2)",
        "dropping capabilities from the bounding set: the container can never gain them back"
    );
    // Only the capabilities this kernel knows can be dropped.
    for cap in caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| ProcessError::Caps(format!("drop {cap} from bounding set: {e}")))?;
        }
    }
    Ok(())
}

/// Steps 3 and 4: effective, permitted, inheritable, then ambient.
/// Effective, permitted and inheritable: the three sets one capset(2)
/// writes together, as bit masks (bit N is capability N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sets {
    /// The effective set.
    pub effective: u64,
    /// The permitted set.
    pub permitted: u64,
    /// The inheritable set.
    pub inheritable: u64,
}

fn mask(set: &CapsHashSet) -> u64 {
    set.iter().fold(0, |m, c| m | c.bitmask())
}

/// Steps 3 and 4: the sets of the config, then its ambient capabilities.
///
/// `hold_sys_admin` keeps CAP_SYS_ADMIN effective and permitted beyond the
/// config's sets, for a seccomp filter that must be loaded later without
/// `no_new_privs` (the kernel then wants CAP_SYS_ADMIN). The sets the
/// config asks for are returned: the caller writes them with [`set`] right
/// after loading the filter, and that capset(2) and the execve(2) are then
/// the only system calls the filter sees from the runtime. Without it,
/// `None` is returned and the sets are final.
pub fn apply_sets(
    c: &LinuxCapabilities,
    hold_sys_admin: bool,
) -> Result<Option<Sets>, ProcessError> {
    let eff = convert(c.effective().as_ref())?;
    let perm = convert(c.permitted().as_ref())?;
    let inh = convert(c.inheritable().as_ref())?;
    let amb = convert(c.ambient().as_ref())?;
    let wanted = Sets {
        effective: mask(&eff),
        permitted: mask(&perm),
        inheritable: mask(&inh),
    };
    let admin = Capability::CAP_SYS_ADMIN.bitmask();
    let now = if hold_sys_admin {
        Sets {
            effective: wanted.effective | admin,
            permitted: wanted.permitted | admin,
            ..wanted
        }
    } else {
        wanted
    };
    crate::explain!(
        "capset(2)",
        "setting permitted, inheritable and effective capabilities, then ambient ones"
    );
    set(now)?;
    // An ambient capability must be permitted and inheritable when raised;
    // the later capset keeps it, since the config's sets still hold it.
    caps::clear(None, CapSet::Ambient)
        .map_err(|e| ProcessError::Caps(format!("clear ambient: {e}")))?;
    for cap in amb {
        if perm.contains(&cap) && inh.contains(&cap) {
            caps::raise(None, CapSet::Ambient, cap)
                .map_err(|e| ProcessError::Caps(format!("raise ambient: {e}")))?;
        }
    }
    Ok((now != wanted).then_some(wanted))
}

/// capset(2) of the three sets at once: one system call, no allocation
/// (so it may run after a seccomp filter is loaded).
pub fn set(s: Sets) -> Result<(), ProcessError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |shift: u32| Data {
        effective: (s.effective >> shift) as u32,
        permitted: (s.permitted >> shift) as u32,
        inheritable: (s.inheritable >> shift) as u32,
    };
    let data = [half(0), half(32)];
    // SAFETY: the header and the two data structs are laid out as
    // capset(2) reads them (version 3: two 32-bit halves), and live for
    // the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(ProcessError::Caps(format!(
            "capset: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}
