//! # skiff-runtime: how a container is made
//!
//! This crate is the library behind the `skiff` binary, an OCI runtime with
//! runc's command line. A "container" is not a kernel object: it is an
//! ordinary process that the runtime starts with a particular view of the
//! system. Each module of this crate wraps one kernel feature that builds
//! that view, or one verb of the container lifecycle:
//!
//! | module | what it does | man pages |
//! |---|---|---|
//! | [`namespaces`] | private views of pids, mounts, network, hostname... | namespaces(7), unshare(2), setns(2) |
//! | [`cgroups`] | resource accounting and limits, freezing | cgroups(7) |
//! | [`clone_into_cgroup`] | an init born in its cgroup (v2) | clone3(2) |
//! | [`rootfs`] | the container's own root filesystem | mount(2), pivot_root(2) |
//! | [`rootless`] | containers without root: id maps, subordinate ids, delegated cgroups | user_namespaces(7), subuid(5), newuidmap(1) |
//! | [`process`] | who the process runs as, with what privileges | capabilities(7), setresuid(2), setrlimit(2) |
//! | [`terminal`] | pseudo-terminals and the console socket | pty(7), unix(7) |
//! | [`hooks`] | the runtime spec's lifecycle hooks | |
//! | [`cloned_binary`] | running from a sealed copy of ourselves | memfd_create(2) |
//! | [`init`] | the container's first process, from fork to execve | fork(2), execve(2) |
//! | [`pidfd`] | handles on processes that outlive pid reuse | pidfd_open(2) |
//! | [`signals`] | signal names, forwarding in the foreground | signal(7), signalfd(2) |
//! | [`container`] | the container's state on disk, and one module per lifecycle verb: [`container::create`], [`container::start`], ... | |
//!
//! The lifecycle follows the OCI runtime specification: `create` builds the
//! container and leaves its first process waiting, `start` lets that process
//! run the user's program, `delete` removes what `create` made.
//!
//! Every step can be narrated with `skiff --explain` (see [`explain`]), and
//! timed with `skiff --trace FILE` (see [`trace`]).

#![warn(missing_docs)]

pub mod cgroups;
pub mod clone_into_cgroup;
pub mod cloned_binary;
pub mod container;
pub mod exec_fifo;
pub mod explain;
pub mod features;
pub mod hooks;
pub mod init;
pub mod logging;
pub mod namespaces;
pub mod pidfd;
pub mod process;
pub mod rootfs;
pub mod rootless;
pub mod seccomp;
pub mod signals;
pub mod spec;
pub mod sync;
pub mod sysctl;
pub mod terminal;
pub mod trace;
pub mod utils;

pub use container::{Container, Status};

/// Everything that can go wrong in the runtime library, one variant per module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading, writing or finding a container's state.
    #[error(transparent)]
    Container(#[from] container::ContainerError),
    /// The bundle's `config.json` cannot be loaded or is invalid.
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    /// Setting up, changing or removing the container's cgroups.
    #[error(transparent)]
    Cgroups(#[from] cgroups::CgroupError),
    /// Creating or joining namespaces, or writing id maps.
    #[error(transparent)]
    Namespaces(#[from] namespaces::NamespaceError),
    /// Running without root: the state directory, id maps, cgroups.
    #[error(transparent)]
    Rootless(#[from] rootless::RootlessError),
    /// Preparing the container's root filesystem: mounts, devices, pivot_root.
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    /// Setting up the process's identity and privileges, or exec'ing it.
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    /// A lifecycle hook failed or timed out.
    #[error(transparent)]
    Hooks(#[from] hooks::HookError),
    /// The pty or the console socket.
    #[error(transparent)]
    Terminal(#[from] terminal::TerminalError),
    /// The messages between the runtime and the container's init.
    #[error(transparent)]
    Sync(#[from] sync::SyncError),
    /// A signal name or number that does not parse.
    #[error(transparent)]
    Signals(#[from] signals::SignalError),
    /// Making the sealed copy of the runtime's binary.
    #[error(transparent)]
    ClonedBinary(#[from] cloned_binary::ClonedBinaryError),
    /// Building or loading the seccomp filter.
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    /// The container's init, between fork and execve.
    #[error(transparent)]
    Init(#[from] init::InitError),
    /// `exec.fifo`, between `create` and `start`.
    #[error(transparent)]
    ExecFifo(#[from] exec_fifo::ExecFifoError),
    /// A sysctl refused or not written.
    #[error(transparent)]
    Sysctl(#[from] sysctl::SysctlError),
    /// `create` failed.
    #[error(transparent)]
    Create(#[from] container::create::CreateError),
    /// `start` failed.
    #[error(transparent)]
    Start(#[from] container::start::StartError),
    /// `delete` failed.
    #[error(transparent)]
    Delete(#[from] container::delete::DeleteError),
    /// `exec` failed.
    #[error(transparent)]
    Exec(#[from] container::exec::ExecError),
    /// `kill` failed.
    #[error(transparent)]
    Kill(#[from] container::kill::KillError),
    /// `pause` or `resume` failed.
    #[error(transparent)]
    Pause(#[from] container::pause::PauseError),
    /// `ps` failed.
    #[error(transparent)]
    Ps(#[from] container::ps::PsError),
    /// `update` failed.
    #[error(transparent)]
    Update(#[from] container::update::UpdateError),
    /// `events` failed.
    #[error(transparent)]
    Events(#[from] container::events::EventsError),
}

/// The runtime library's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// An error and its causes on one line, "a: b: c", each cause said once (a
/// cause whose text its parent already includes is not repeated). This is
/// how an error crosses to another process: the init's report to
/// `create`, the monitor's and the shim's replies.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_chain_says_each_cause_once() {
        let io = std::io::Error::other("disk on fire");
        let e = crate::container::create::CreateError::StateDir {
            path: "/run/x".into(),
            source: io,
        };
        assert_eq!(super::error_chain(&e), "open /run/x: disk on fire");
        let wrapped = crate::container::create::CreateError::StartProcess(Box::new(
            crate::sync::SyncError::Reported("exec: \"nope\": not found".into()).into(),
        ));
        assert_eq!(
            super::error_chain(&wrapped),
            "unable to start container process: exec: \"nope\": not found"
        );
    }
}
