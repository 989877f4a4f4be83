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
//! | [`rootfs`] | the container's own root filesystem | mount(2), pivot_root(2) |
//! | [`process`] | who the process runs as, with what privileges | capabilities(7), setresuid(2), setrlimit(2) |
//! | [`terminal`] | pseudo-terminals and the console socket | pty(7), unix(7) |
//! | [`hooks`] | the runtime spec's lifecycle hooks | |
//! | [`cloned_binary`] | running from a sealed copy of ourselves | memfd_create(2) |
//! | [`init`] | the container's first process, from fork to execve | fork(2), execve(2) |
//! | [`container_create`], [`container_start`], ... | one module per lifecycle verb | |
//!
//! The lifecycle follows the OCI runtime specification: `create` builds the
//! container and leaves its first process waiting, `start` lets that process
//! run the user's program, `delete` removes what `create` made.
//!
//! Every step can be narrated with `skiff --explain` (see [`explain`]).

pub mod cgroups;
pub mod cloned_binary;
pub mod container;
pub mod container_create;
pub mod container_delete;
pub mod container_events;
pub mod container_exec;
pub mod container_kill;
pub mod container_list;
pub mod container_pause;
pub mod container_ps;
pub mod container_run;
pub mod container_start;
pub mod container_update;
pub mod explain;
pub mod features;
pub mod hooks;
pub mod init;
pub mod logging;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod signals;
pub mod spec;
pub mod sync;
pub mod terminal;
pub mod utils;

pub use container::{Container, Status};

/// Everything that can go wrong in the runtime library, one variant per module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Container(#[from] container::ContainerError),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Cgroups(#[from] cgroups::CgroupError),
    #[error(transparent)]
    Namespaces(#[from] namespaces::NamespaceError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error(transparent)]
    Hooks(#[from] hooks::HookError),
    #[error(transparent)]
    Terminal(#[from] terminal::TerminalError),
    #[error(transparent)]
    Sync(#[from] sync::SyncError),
    #[error(transparent)]
    Signals(#[from] signals::SignalError),
    #[error(transparent)]
    ClonedBinary(#[from] cloned_binary::ClonedBinaryError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;
