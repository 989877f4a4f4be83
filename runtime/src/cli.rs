//! The command line of the `skiff` binary (`main.rs`): runc's global flags,
//! commands and their flags, declared with clap's derive API. Names,
//! defaults and hidden flags follow runc 1.1's `runc --help` and its man
//! pages (runc(8), runc-create(8), runc-exec(8), runc-update(8)...), so
//! that containerd, podman and scripts written for runc call skiff alike.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "skiff", version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: 1.0.2-dev"), about = "skiff: an OCI container runtime (runc-compatible command line)")]
pub(crate) struct Cli {
    /// Root directory for storage of container state (this should be located in tmpfs) [default: /run/skiff, or $XDG_RUNTIME_DIR/skiff without root]
    #[arg(long, global = true)]
    pub(crate) root: Option<PathBuf>,
    /// Set the log file to write runtime logs to (default is stderr)
    #[arg(long, global = true)]
    pub(crate) log: Option<PathBuf>,
    /// Set the log format ('text' (default), or 'json')
    #[arg(long = "log-format", global = true, default_value = "text")]
    pub(crate) log_format: String,
    /// Enable debug logging
    #[arg(long, global = true)]
    pub(crate) debug: bool,
    /// Enable systemd cgroup support (not supported: skiff uses cgroupfs)
    #[arg(long = "systemd-cgroup", global = true)]
    pub(crate) systemd_cgroup: bool,
    /// Accepted for runc compatibility; skiff detects rootless mode itself
    #[arg(long, hide = true)]
    pub(crate) rootless: Option<String>,
    /// Accepted for runc compatibility; checkpointing is not supported
    #[arg(long, hide = true)]
    pub(crate) criu: Option<String>,
    /// Narrate every step (what, which system call, which man page, why) on stderr
    #[arg(long, global = true)]
    pub(crate) explain: bool,
    /// Write a timeline of every step to FILE (Chrome trace-event JSON, for Perfetto); also $SKIFF_TRACE
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) trace: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(clap::Args, Debug)]
pub(crate) struct CreateArgs {
    /// Path to the root of the bundle directory
    #[arg(short, long, default_value = ".")]
    pub(crate) bundle: PathBuf,
    /// Path to an AF_UNIX socket which will receive the pty master
    #[arg(long = "console-socket")]
    pub(crate) console_socket: Option<PathBuf>,
    /// Specify the file to write the process id to
    #[arg(long = "pid-file")]
    pub(crate) pid_file: Option<PathBuf>,
    /// Do not use pivot_root to jail the process inside the rootfs
    #[arg(long = "no-pivot")]
    pub(crate) no_pivot: bool,
    /// Do not create a new session keyring for the container
    #[arg(long = "no-new-keyring")]
    pub(crate) no_new_keyring: bool,
    /// Pass N additional file descriptors to the container (stdio + $LISTEN_FDS + N in total)
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub(crate) preserve_fds: i32,
    /// The container id
    pub(crate) id: String,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Create a container
    Create(CreateArgs),
    /// Execute the user defined process in a created container
    Start { id: String },
    /// Output the state of a container
    State { id: String },
    /// Kill sends the specified signal (default: SIGTERM) to the container's init process
    Kill {
        /// Send the signal to all processes in the container
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete any resources held by the container
    Delete {
        /// Forcibly delete the container if it is still running (uses SIGKILL)
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and run a container
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Detach from the container's process
        #[arg(short, long)]
        detach: bool,
        /// Do not delete the container after it exits
        #[arg(long)]
        keep: bool,
    },
    /// Execute new process inside the container
    Exec(ExecArgs),
    /// Display the processes running inside a container
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        /// Options passed to ps(1)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Lists containers started by skiff with the given root
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Display only container IDs
        #[arg(short, long)]
        quiet: bool,
    },
    /// Pause suspends all processes inside the container
    Pause { id: String },
    /// Resumes all processes that have been previously paused
    Resume { id: String },
    /// Create a new specification file
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Generate a configuration for a rootless container
        #[arg(long)]
        rootless: bool,
        /// Also fill in linux.seccomp with a profile: `default` is the
        /// allow-list Docker and containerd apply (a skiff extension)
        #[arg(long, value_parser = ["default"])]
        profile: Option<String>,
    },
    /// Show the enabled features
    Features,
    /// Update container resource constraints
    Update(UpdateArgs),
    /// Display container events such as OOM notifications and resource usage statistics
    Events {
        /// Display the container's stats then exit
        #[arg(long)]
        stats: bool,
        /// Set the stats collection interval
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct UpdateArgs {
    /// Path to a file containing the resources to update, or '-' to read from stdin
    #[arg(short, long)]
    pub(crate) resources: Option<PathBuf>,
    /// Specifies per cgroup weight, range is from 10 to 1000
    #[arg(long = "blkio-weight")]
    pub(crate) blkio_weight: Option<u16>,
    /// CPU CFS period to be used for hardcapping (in usecs)
    #[arg(long = "cpu-period")]
    pub(crate) cpu_period: Option<u64>,
    /// CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period
    #[arg(long = "cpu-quota")]
    pub(crate) cpu_quota: Option<i64>,
    /// CPU shares (relative weight vs. other containers)
    #[arg(long = "cpu-share")]
    pub(crate) cpu_share: Option<u64>,
    /// CPU realtime period to be used for hardcapping (in usecs)
    #[arg(long = "cpu-rt-period")]
    pub(crate) cpu_rt_period: Option<u64>,
    /// CPU realtime hardcap limit (in usecs)
    #[arg(long = "cpu-rt-runtime")]
    pub(crate) cpu_rt_runtime: Option<i64>,
    /// Set cgroup SCHED_IDLE or not, 0: default behavior, 1: SCHED_IDLE
    #[arg(long = "cpu-idle")]
    pub(crate) cpu_idle: Option<i64>,
    /// CPU(s) to use
    #[arg(long = "cpuset-cpus")]
    pub(crate) cpuset_cpus: Option<String>,
    /// Memory node(s) to use
    #[arg(long = "cpuset-mems")]
    pub(crate) cpuset_mems: Option<String>,
    /// Memory limit (in bytes, or with a k/m/g suffix)
    #[arg(long)]
    pub(crate) memory: Option<String>,
    /// Memory reservation or soft_limit (in bytes)
    #[arg(long = "memory-reservation")]
    pub(crate) memory_reservation: Option<String>,
    /// Total memory usage (memory + swap); set '-1' to enable unlimited swap
    #[arg(long = "memory-swap")]
    pub(crate) memory_swap: Option<String>,
    /// Maximum number of pids allowed in the container
    #[arg(long = "pids-limit")]
    pub(crate) pids_limit: Option<i64>,
    /// Deprecated kernel memory limits: accepted and ignored, as by runc
    #[arg(long = "kernel-memory", hide = true)]
    pub(crate) kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp", hide = true)]
    pub(crate) kernel_memory_tcp: Option<String>,
    /// Intel RDT schemata: not supported
    #[arg(long = "l3-cache-schema", hide = true)]
    pub(crate) l3_cache_schema: Option<String>,
    #[arg(long = "mem-bw-schema", hide = true)]
    pub(crate) mem_bw_schema: Option<String>,
    pub(crate) id: String,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ExecArgs {
    /// Path to the process.json
    #[arg(short, long)]
    pub(crate) process: Option<PathBuf>,
    #[arg(short, long)]
    pub(crate) detach: bool,
    #[arg(long = "pid-file")]
    pub(crate) pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub(crate) console_socket: Option<PathBuf>,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub(crate) tty: bool,
    /// Set environment variables
    #[arg(short, long)]
    pub(crate) env: Vec<String>,
    /// Current working directory in the container
    #[arg(long)]
    pub(crate) cwd: Option<PathBuf>,
    /// UID (format: <uid>[:<gid>])
    #[arg(short, long)]
    pub(crate) user: Option<String>,
    /// Additional gids
    #[arg(short = 'g', long = "additional-gids")]
    pub(crate) additional_gids: Vec<u32>,
    /// Add a capability to the bounding set for the process
    #[arg(short, long)]
    pub(crate) cap: Vec<String>,
    /// Set the no new privileges value for the process
    #[arg(long = "no-new-privs")]
    pub(crate) no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub(crate) preserve_fds: i32,
    /// Accepted for runc compatibility (SELinux and AppArmor are not supported)
    #[arg(long = "process-label", hide = true)]
    pub(crate) process_label: Option<String>,
    #[arg(long, hide = true)]
    pub(crate) apparmor: Option<String>,
    pub(crate) id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) command: Vec<String>,
}
