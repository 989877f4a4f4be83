//! `skiff`: an OCI container runtime with runc's command line.
//!
//! This file only parses the command line (with clap) and maps results to
//! runc's output and exit codes; the work is in the `skiff_runtime` library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};
use skiff_runtime::container::create::CreateOptions;
use skiff_runtime::container::{self, Container};
use skiff_runtime::container::{
    create as container_create, delete as container_delete, events as container_events,
    exec as container_exec, kill as container_kill, list as container_list,
    pause as container_pause, ps as container_ps, run as container_run, start as container_start,
    update as container_update,
};
use skiff_runtime::logging::{self, LogFormat};
use skiff_runtime::{cloned_binary, explain, features, signals, spec};

#[derive(Parser, Debug)]
#[command(name = "skiff", version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: 1.0.2-dev"), about = "skiff: an OCI container runtime (runc-compatible command line)")]
struct Cli {
    /// Root directory for storage of container state (this should be located in tmpfs)
    #[arg(long, global = true, default_value = "/run/skiff")]
    root: PathBuf,
    /// Set the log file to write runtime logs to (default is stderr)
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Set the log format ('text' (default), or 'json')
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// Enable debug logging
    #[arg(long, global = true)]
    debug: bool,
    /// Enable systemd cgroup support (not supported: skiff uses cgroupfs)
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility; skiff detects rootless mode itself
    #[arg(long, hide = true)]
    rootless: Option<String>,
    /// Accepted for runc compatibility; checkpointing is not supported
    #[arg(long, hide = true)]
    criu: Option<String>,
    /// Narrate every step (what, which system call, which man page, why) on stderr
    #[arg(long, global = true)]
    explain: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// Path to the root of the bundle directory
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Path to an AF_UNIX socket which will receive the pty master
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Specify the file to write the process id to
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Do not use pivot_root to jail the process inside the rootfs
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a new session keyring for the container
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N additional file descriptors to the container (stdio + $LISTEN_FDS + N in total)
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: i32,
    /// The container id
    id: String,
}

#[derive(Subcommand, Debug)]
enum Command {
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
struct UpdateArgs {
    /// Path to a file containing the resources to update, or '-' to read from stdin
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Specifies per cgroup weight, range is from 10 to 1000
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    /// CPU CFS period to be used for hardcapping (in usecs)
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    /// CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    /// CPU shares (relative weight vs. other containers)
    #[arg(long = "cpu-share")]
    cpu_share: Option<u64>,
    /// CPU realtime period to be used for hardcapping (in usecs)
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    /// CPU realtime hardcap limit (in usecs)
    #[arg(long = "cpu-rt-runtime")]
    cpu_rt_runtime: Option<i64>,
    /// Set cgroup SCHED_IDLE or not, 0: default behavior, 1: SCHED_IDLE
    #[arg(long = "cpu-idle")]
    cpu_idle: Option<i64>,
    /// CPU(s) to use
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory node(s) to use
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Memory limit (in bytes, or with a k/m/g suffix)
    #[arg(long)]
    memory: Option<String>,
    /// Memory reservation or soft_limit (in bytes)
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    /// Total memory usage (memory + swap); set '-1' to enable unlimited swap
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    /// Maximum number of pids allowed in the container
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// Deprecated kernel memory limits: accepted and ignored, as by runc
    #[arg(long = "kernel-memory", hide = true)]
    kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp", hide = true)]
    kernel_memory_tcp: Option<String>,
    /// Intel RDT schemata: not supported
    #[arg(long = "l3-cache-schema", hide = true)]
    l3_cache_schema: Option<String>,
    #[arg(long = "mem-bw-schema", hide = true)]
    mem_bw_schema: Option<String>,
    id: String,
}

#[derive(clap::Args, Debug)]
struct ExecArgs {
    /// Path to the process.json
    #[arg(short, long)]
    process: Option<PathBuf>,
    #[arg(short, long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables
    #[arg(short, long)]
    env: Vec<String>,
    /// Current working directory in the container
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// UID (format: <uid>[:<gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Additional gids
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Add a capability to the bounding set for the process
    #[arg(short, long)]
    cap: Vec<String>,
    /// Set the no new privileges value for the process
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: i32,
    /// Accepted for runc compatibility (SELinux and AppArmor are not supported)
    #[arg(long = "process-label", hide = true)]
    process_label: Option<String>,
    #[arg(long, hide = true)]
    apparmor: Option<String>,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// How a command failed: the message and runc's exit code for it.
struct Failure {
    err: anyhow::Error,
    code: u8,
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure { err, code: 1 }
    }
}

macro_rules! failure_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(err: $t) -> Self {
                Failure { err: err.into(), code: 1 }
            }
        }
    )*};
}

failure_from!(
    skiff_runtime::Error,
    skiff_runtime::cloned_binary::ClonedBinaryError,
    skiff_runtime::container::ContainerError,
    skiff_runtime::spec::SpecError
);

/// The subcommand, found without a full parse: the global flags that take a
/// value are skipped with their value.
fn subcommand(args: &[std::ffi::OsString]) -> Option<String> {
    // Lossy, not filtered: a non-UTF-8 flag value must still be skipped.
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        match a.as_ref() {
            "--root" | "--log" | "--log-format" | "--rootless" | "--criu" => {
                it.next();
            }
            a if a.starts_with('-') => {}
            a => return Some(a.to_string()),
        }
    }
    None
}

fn main() -> ExitCode {
    // The commands that start container processes re-execute from a
    // read-only copy of the binary first (CVE-2019-5736), before any other
    // work, so that work is not done twice.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if matches!(
        subcommand(&args).as_deref(),
        Some("create" | "run" | "exec")
    ) {
        explain::set_enabled(args.iter().any(|a| a == "--explain"));
        if let Err(e) = cloned_binary::ensure_cloned() {
            print_error(LogFormat::Text, &e.to_string());
            return ExitCode::from(1);
        }
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                ErrorKind::InvalidSubcommand => 3,
                _ => 1,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    explain::set_enabled(cli.explain);
    let format: LogFormat = match cli.log_format.parse() {
        Ok(f) => f,
        Err(e) => {
            print_error(LogFormat::Text, &e);
            return ExitCode::from(1);
        }
    };
    let to_file = match logging::init(cli.log.as_deref(), format, cli.debug) {
        Ok(f) => f,
        Err(e) => {
            print_error(
                format,
                &format!(
                    "open {}: {}",
                    cli.log
                        .as_deref()
                        .unwrap_or(std::path::Path::new(""))
                        .display(),
                    e
                ),
            );
            return ExitCode::from(1);
        }
    };
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            let prefix = match &cli.command {
                Command::Create(_) => "skiff create failed: ",
                Command::Run { .. } => "skiff run failed: ",
                Command::Exec(_) => "exec failed: ",
                _ => "",
            };
            let msg = format!("{prefix}{:#}", f.err);
            if to_file {
                tracing::error!("{msg}");
                eprintln!("{msg}");
            } else {
                print_error(format, &msg);
            }
            ExitCode::from(f.code)
        }
    }
}

/// An error line on stderr in the chosen log format (runc prints logrus lines).
fn print_error(format: LogFormat, msg: &str) {
    eprint!("{}", logging::format_line(format, "error", msg));
}

fn load(cli: &Cli, id: &str) -> Result<Container> {
    container::ensure_root(&cli.root)?;
    Ok(Container::load(&cli.root, id)?)
}

/// A command-line path made absolute against the caller's working directory.
fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn create_options(cli: &Cli, a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        root: absolute(&cli.root),
        id: a.id.clone(),
        bundle: absolute(&a.bundle),
        pid_file: a.pid_file.as_deref().map(absolute),
        console_socket: a.console_socket.as_deref().map(absolute),
        new_keyring: !a.no_new_keyring,
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds + listen_fds(),
        foreground: false,
    }
}

/// Descriptors passed with systemd socket activation ($LISTEN_FDS) are kept.
fn listen_fds() -> i32 {
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn dispatch(cli: &Cli) -> Result<u8, Failure> {
    if cli.systemd_cgroup {
        return Err(skiff_runtime::Error::from(
            skiff_runtime::cgroups::CgroupError::SystemdUnsupported,
        )
        .into());
    }
    match &cli.command {
        Command::Create(a) => {
            container_create::create(&create_options(cli, a))?;
            Ok(0)
        }
        Command::Run {
            create,
            detach,
            keep,
        } => {
            let code = container_run::run(create_options(cli, create), *detach, *keep)?;
            Ok(code.clamp(0, 255) as u8)
        }
        Command::Start { id } => {
            let mut c = load(cli, id)?;
            container_start::start(&mut c)?;
            Ok(0)
        }
        Command::State { id } => {
            let mut c = load(cli, id)?;
            c.refresh();
            let out = serde_json::to_string_pretty(&c.oci_state()).context("encode state")?;
            print!("{out}");
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let sig = signals::parse(signal).map_err(skiff_runtime::Error::from)?;
            let mut c = load(cli, id)?;
            container_kill::kill(&mut c, sig, *all)?;
            Ok(0)
        }
        Command::Delete { force, id } => {
            let mut c = match load(cli, id) {
                Ok(c) => c,
                Err(e) => {
                    // A directory without a readable state (a create killed
                    // half-way) is removed, so the id can be used again.
                    if container_delete::delete_stale(&cli.root, id)? || *force {
                        return Ok(0);
                    }
                    return Err(e.into());
                }
            };
            container_delete::delete(&mut c, *force)?;
            Ok(0)
        }
        Command::Exec(a) => exec(cli, a).map_err(|mut f| {
            f.code = 255;
            f
        }),
        Command::Ps {
            format,
            id,
            ps_args,
        } => {
            let c = load(cli, id)?;
            print!("{}", container_ps::ps(&c, format, ps_args)?);
            Ok(0)
        }
        Command::List { format, quiet } => {
            container::ensure_root(&cli.root)?;
            let mut all = Container::list(&cli.root)?;
            print!(
                "{}",
                container_list::render(&mut all, format, *quiet).map_err(|e| anyhow!(e))?
            );
            Ok(0)
        }
        Command::Pause { id } => {
            container_pause::pause(&mut load(cli, id)?)?;
            Ok(0)
        }
        Command::Resume { id } => {
            container_pause::resume(&mut load(cli, id)?)?;
            Ok(0)
        }
        Command::Spec {
            bundle,
            rootless,
            profile,
        } => {
            if !bundle.is_dir() {
                return Err(
                    anyhow!("chdir {}: no such file or directory", bundle.display()).into(),
                );
            }
            spec::write_default(bundle, *rootless, profile.is_some())?;
            Ok(0)
        }
        Command::Update(a) => {
            let mut c = load(cli, &a.id)?;
            container_update::update(
                &mut c,
                &container_update::overlay_from_flags(&update_flags(a))?,
            )?;
            Ok(0)
        }
        Command::Events {
            stats,
            interval,
            id,
        } => {
            let every = humantime::parse_duration(interval)
                .map_err(|e| anyhow!("invalid --interval {interval:?}: {e}"))?;
            if every.is_zero() {
                return Err(anyhow!("duration interval must be greater than 0").into());
            }
            let mut c = load(cli, id)?;
            container_events::events(&mut c, *stats, every, &mut std::io::stdout().lock())?;
            Ok(0)
        }
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&features::features()).context("encode features")?
            );
            Ok(0)
        }
    }
}

/// `update`'s flags, for the library.
fn update_flags(a: &UpdateArgs) -> container_update::UpdateFlags {
    // --kernel-memory and --kernel-memory-tcp are accepted and ignored, as
    // cgroup v2 and recent runc do.
    let _ = (&a.kernel_memory, &a.kernel_memory_tcp);
    container_update::UpdateFlags {
        resources: a.resources.clone(),
        blkio_weight: a.blkio_weight,
        cpu_period: a.cpu_period,
        cpu_quota: a.cpu_quota,
        cpu_share: a.cpu_share,
        cpu_rt_period: a.cpu_rt_period,
        cpu_rt_runtime: a.cpu_rt_runtime,
        cpu_idle: a.cpu_idle,
        cpuset_cpus: a.cpuset_cpus.clone(),
        cpuset_mems: a.cpuset_mems.clone(),
        memory: a.memory.clone(),
        memory_reservation: a.memory_reservation.clone(),
        memory_swap: a.memory_swap.clone(),
        pids_limit: a.pids_limit,
        l3_cache_schema: a.l3_cache_schema.clone(),
        mem_bw_schema: a.mem_bw_schema.clone(),
    }
}

fn exec(cli: &Cli, a: &ExecArgs) -> Result<u8, Failure> {
    let mut c = load(cli, &a.id)?;
    let process = match &a.process {
        Some(p) => spec::load_process(p)?,
        None => container_exec::process_from_flags(
            &c.state.config.process().clone().unwrap_or_default(),
            &container_exec::ExecFlags {
                args: a.command.clone(),
                tty: a.tty,
                env: a.env.clone(),
                cwd: a.cwd.clone(),
                user: a.user.clone(),
                additional_gids: a.additional_gids.clone(),
                no_new_privs: a.no_new_privs,
                caps: a.cap.clone(),
            },
        )?,
    };
    let opts = container_exec::ExecOptions {
        process,
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds + listen_fds(),
    };
    let (_pid, code) = container_exec::exec(&mut c, &opts)?;
    Ok(code.unwrap_or(0).clamp(0, 255) as u8)
}
