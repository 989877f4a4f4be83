//! The process's last steps before execve(2), shared by `create`'s init
//! and `exec`: resource limits, `no_new_privs`, capabilities, the user and
//! the working directory, in the order that lets each still be done, and
//! the environment the program gets. See [`finalize_process`] for why the
//! seccomp filter comes last (seccomp(2), capabilities(7), prctl(2)).

use oci_spec::runtime::Process;

use super::ProcessError;
use crate::sync::{Channel, Msg};
use crate::Result;

/// The environment of the user's program: `process.env`, plus `HOME` from
/// the container's /etc/passwd when the config does not set it.
pub fn process_env(process: &Process) -> Vec<String> {
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            super::user::home_dir(process.user().uid())
        ));
    }
    env
}

/// Rlimits, no_new_privs, capabilities, user and working directory: the
/// last changes before the program is looked up, shared by `create` and
/// `exec`. Returns what is left for the moment before execve(2): loading
/// the seccomp filter, and dropping CAP_SYS_ADMIN if it was held for that.
///
/// ## Where the seccomp filter goes
///
/// The filter is written for the container's program, not for the runtime:
/// a profile may well forbid `close_range`, `getcwd`, `umask` or `capset`,
/// which runtimes use. So every step here happens before the filter is
/// loaded, and so do the program lookup, the "ready" report, the wait on
/// exec.fifo, the `startContainer` hooks and the closing of the runtime's
/// descriptors ([`super::exec::exec`]). After the filter, the init makes
/// only these system calls:
///
/// - with `noNewPrivileges`: execve(2) alone;
/// - without it: one capset(2), then execve(2). Loading a filter without
///   `no_new_privs` needs CAP_SYS_ADMIN, so the capabilities set here keep
///   it (in effective and permitted) until the filter is in, and the last
///   capset drops it. runc makes its capset and setresuid calls after its
///   filter in this case; skiff makes fewer;
/// - a filter that notifies a supervisor (`SCMP_ACT_NOTIFY`) is the
///   exception: its descriptor must reach the listener (through the
///   runtime) before the container is ready, so it is loaded first thing
///   here, and everything below follows it, as in runc.
pub fn finalize_process<'f>(
    process: &Process,
    in_userns: bool,
    seccomp: Option<&'f crate::seccomp::Filter>,
    chan: &Channel,
) -> Result<super::exec::LastSteps<'f>> {
    if let Some(rl) = process.rlimits() {
        super::rlimits::apply(rl)?;
    }
    let nnp = process.no_new_privileges().unwrap_or(false);
    if nnp {
        crate::explain!("prctl(2)", "setting no_new_privs: exec can never grant more privileges (setuid bits and file capabilities are ignored)");
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(ProcessError::Sys {
                op: "set no_new_privs".into(),
                err: nix::Error::last(),
            }
            .into());
        }
    }
    if let Some(f) = seccomp.filter(|f| f.notifies()) {
        if let Some(fd) = f.load()? {
            chan.send(&Msg::SeccompFd)?;
            chan.send_fd(std::os::fd::AsFd::as_fd(&fd))?;
            chan.expect(
                Msg::Continue,
                "continue (listener has the seccomp descriptor)",
            )?;
        }
    }
    let late_filter = seccomp.filter(|f| !f.notifies());
    let cwd = process.cwd();
    let chdir_early = nix::unistd::chdir(cwd.as_path());
    let caps = process.capabilities().clone().unwrap_or_default();
    super::capabilities::apply_bounding(&caps)?;
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    super::user::apply(process.user(), setgroups_allowed(in_userns))?;
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    let caps_after_filter = super::capabilities::apply_sets(&caps, late_filter.is_some() && !nnp)?;
    if chdir_early.is_err() {
        nix::unistd::chdir(cwd.as_path()).map_err(|err| ProcessError::Cwd {
            cwd: cwd.clone(),
            err,
        })?;
    }
    // A cwd reached through a leaked host descriptor shows as "(unreachable)".
    let here = nix::unistd::getcwd().map_err(|err| ProcessError::Cwd {
        cwd: cwd.clone(),
        err,
    })?;
    if !here.starts_with("/") {
        return Err(ProcessError::CwdOutside.into());
    }
    Ok(super::exec::LastSteps {
        filter: late_filter,
        caps: caps_after_filter,
    })
}

fn setgroups_allowed(in_userns: bool) -> bool {
    !in_userns
        || std::fs::read_to_string("/proc/self/setgroups")
            .map(|s| s.trim() != "deny")
            .unwrap_or(true)
}
