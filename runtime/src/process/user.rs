//! Becoming the container's user: supplementary groups, then gid, then uid
//! (in that order: after setuid(2) to a non-root uid, changing groups is no
//! longer allowed). See credentials(7).

use std::path::Path;

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::User;

use super::{sys, ProcessError};

/// Apply `process.user`. `setgroups_allowed` is false in a user namespace
/// whose `setgroups` file says `deny`.
pub fn apply(user: &User, setgroups_allowed: bool) -> Result<(), ProcessError> {
    let gids: Vec<Gid> = user
        .additional_gids()
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    crate::explain!(
        "setresuid(2)",
        "becoming uid {} gid {} with groups {:?}",
        user.uid(),
        user.gid(),
        user.additional_gids().as_deref().unwrap_or(&[])
    );
    if setgroups_allowed {
        setgroups(&gids).map_err(sys("setgroups"))?;
    } else if !gids.is_empty() {
        return Err(ProcessError::GroupsDenied(
            gids.iter().map(|g| g.as_raw()).collect(),
        ));
    }
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).map_err(sys(format!("setresgid {}", user.gid())))?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).map_err(sys(format!("setresuid {}", user.uid())))?;
    set_umask(user.umask().unwrap_or(0o022))
}

/// umask(2) cannot fail, so its libc wrapper has no error return; but a
/// seccomp filter (of the runtime's own caller, say) can still refuse the
/// system call, and the "old mask" returned is then -EPERM. That is
/// reported, never trusted as a mask.
pub fn set_umask(mask: u32) -> Result<(), ProcessError> {
    // SAFETY: umask takes and returns plain integers.
    let old = unsafe { libc::umask((mask & 0o777) as libc::mode_t) };
    if old as u32 > 0o777 {
        return Err(ProcessError::Sys {
            op: format!("set umask {mask:04o}"),
            err: nix::Error::from_raw((old as i32).wrapping_neg()),
        });
    }
    Ok(())
}

/// The home directory of `uid` from the container's /etc/passwd, or `/`.
pub fn home_dir(uid: u32) -> String {
    let Ok(text) = std::fs::read_to_string(Path::new("/etc/passwd")) else {
        return "/".into();
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid) {
            return f[5].to_string();
        }
    }
    "/".into()
}
