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
pub fn apply_sets(c: &LinuxCapabilities) -> Result<(), ProcessError> {
    let eff = convert(c.effective().as_ref())?;
    let perm = convert(c.permitted().as_ref())?;
    let inh = convert(c.inheritable().as_ref())?;
    let amb = convert(c.ambient().as_ref())?;
    crate::explain!(
        "capset(2)",
        "setting permitted, inheritable and effective capabilities, then ambient ones"
    );
    let err = |what: &str| {
        let what = what.to_string();
        move |e: caps::errors::CapsError| ProcessError::Caps(format!("{what}: {e}"))
    };
    // Each capset(2) call must leave effective within permitted, so shrink
    // effective before permitted; inheritable goes first, while the old
    // permitted set still allows anything in it.
    caps::set(None, CapSet::Inheritable, &inh).map_err(err("set inheritable"))?;
    caps::set(None, CapSet::Effective, &eff).map_err(err("set effective"))?;
    caps::set(None, CapSet::Permitted, &perm).map_err(err("set permitted"))?;
    caps::clear(None, CapSet::Ambient).map_err(err("clear ambient"))?;
    for cap in amb {
        // Like runc, an ambient capability that cannot be raised (because it
        // is not both permitted and inheritable) is skipped, not fatal.
        if perm.contains(&cap) && inh.contains(&cap) {
            caps::raise(None, CapSet::Ambient, cap).map_err(err("raise ambient"))?;
        }
    }
    Ok(())
}
