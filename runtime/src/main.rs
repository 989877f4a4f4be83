//! `skiff`: an OCI container runtime with runc's command line.
//!
//! This file only parses the command line (with clap) and maps results to
//! runc's output and exit codes; the work is in the `skiff_runtime` library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::Parser;
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

mod cli;
use cli::{Cli, Command, CreateArgs, ExecArgs, UpdateArgs};

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
    // With a trace, the time of the re-exec below is drawn too: the first
    // image passes on when it started.
    if std::env::var_os(skiff_runtime::trace::ENV_T0).is_none()
        && (std::env::var_os(skiff_runtime::trace::ENV).is_some()
            || args.iter().any(|a| a == "--trace"))
    {
        std::env::set_var(
            skiff_runtime::trace::ENV_T0,
            skiff_runtime::trace::now_us().to_string(),
        );
    }
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
    let _trace = start_trace(&cli);
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

/// `--trace FILE` or `$SKIFF_TRACE`: open the timeline, label this process,
/// draw the re-exec that led here, and open the command's own span.
fn start_trace(cli: &Cli) -> Option<skiff_runtime::trace::Span> {
    use skiff_runtime::trace;
    let path = cli
        .trace
        .clone()
        .or_else(|| std::env::var_os(trace::ENV).map(PathBuf::from))?;
    trace::init(&path);
    let t0 = std::env::var(trace::ENV_T0)
        .ok()
        .and_then(|t| t.parse::<f64>().ok());
    std::env::remove_var(trace::ENV_T0);
    if !trace::enabled() {
        return None;
    }
    let verb = command_name(&cli.command);
    trace::process_name(&format!("skiff {verb}"));
    if let Some(t0) = t0 {
        trace::since("start and re-exec from a sealed copy", t0);
    }
    Some(trace::Span::open(verb))
}

/// The subcommand's name, as typed.
fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Create(_) => "create",
        Command::Run { .. } => "run",
        Command::Start { .. } => "start",
        Command::State { .. } => "state",
        Command::Kill { .. } => "kill",
        Command::Delete { .. } => "delete",
        Command::Exec(_) => "exec",
        Command::Ps { .. } => "ps",
        Command::List { .. } => "list",
        Command::Pause { .. } => "pause",
        Command::Resume { .. } => "resume",
        Command::Spec { .. } => "spec",
        Command::Update(_) => "update",
        Command::Events { .. } => "events",
        Command::Features => "features",
    }
}

/// An error line on stderr in the chosen log format (runc prints logrus lines).
fn print_error(format: LogFormat, msg: &str) {
    eprint!("{}", logging::format_line(format, "error", msg));
}

fn load(cli: &Cli, id: &str) -> Result<Container> {
    let root = state_root(cli)?;
    container::ensure_root(&root)?;
    Ok(Container::load(&root, id)?)
}

/// `--root`, or the default: `/run/skiff` for root, `$XDG_RUNTIME_DIR/skiff`
/// without (see `skiff_runtime::rootless`).
fn state_root(cli: &Cli) -> Result<PathBuf> {
    match &cli.root {
        Some(r) => Ok(absolute(r)),
        None => Ok(skiff_runtime::rootless::default_root()?),
    }
}

/// A command-line path made absolute against the caller's working directory.
fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn create_options(cli: &Cli, a: &CreateArgs) -> Result<CreateOptions> {
    Ok(CreateOptions {
        root: state_root(cli)?,
        id: a.id.clone(),
        bundle: absolute(&a.bundle),
        pid_file: a.pid_file.as_deref().map(absolute),
        console_socket: a.console_socket.as_deref().map(absolute),
        new_keyring: !a.no_new_keyring,
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds + listen_fds(),
        foreground: false,
    })
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
            container_create::create(&create_options(cli, a)?)?;
            Ok(0)
        }
        Command::Run {
            create,
            detach,
            keep,
        } => {
            let code = container_run::run(create_options(cli, create)?, *detach, *keep)?;
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
                    if container_delete::delete_stale(&state_root(cli)?, id)? || *force {
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
            let root = state_root(cli)?;
            container::ensure_root(&root)?;
            let mut all = Container::list(&root)?;
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
