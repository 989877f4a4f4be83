//! Control groups: where the container's processes are counted, limited,
//! frozen and killed as one.
//!
//! A cgroup is a directory in a special filesystem; a process belongs to it
//! when its pid is written to the directory's `cgroup.procs`, and limits are
//! files next to it (`memory.limit_in_bytes`, `pids.max`...). See cgroups(7).
//!
//! Hosts come in three layouts, and skiff handles all of them:
//!
//! - **unified** (cgroup v2 only): one tree at `/sys/fs/cgroup`, every
//!   controller in it. Most current distributions.
//! - **hybrid**: the v1 controllers each have their own tree
//!   (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/pids`...) and a cgroup2 tree
//!   is mounted at `/sys/fs/cgroup/unified`, usually with no controllers. The
//!   development machines are like this. It is treated as v1, and the
//!   container is also placed in the unified tree so tools that look there
//!   find it.
//! - **legacy** (v1 only): older distributions.
//!
//! The layout is read from /proc/self/mountinfo rather than guessed from
//! paths (the `cgroups-rs` crate assumes v2 lives at `/sys/fs/cgroup`, which
//! is wrong on hybrid hosts; this module is therefore skiff's own code).
//!
//! `linux.cgroupsPath` follows runc's cgroupfs rules: an absolute path is
//! taken from the root of each hierarchy; a relative one, or the container
//! id when the path is empty, is taken below the cgroup the runtime itself
//! runs in. `..` can never climb above those starting points.

pub mod device_filter;
pub mod layout;
pub mod self_join;
pub mod stats;
pub mod v1;
pub mod v2;
pub mod validate;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::LinuxResources;

pub use layout::{detect_mode, hierarchies, Hierarchy, Mode};
use serde::{Deserialize, Serialize};
pub(crate) use validate::check_before_update;
pub use validate::validate;

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file (or `/proc/self/mountinfo`, `/proc/self/cgroup`) cannot be
    /// read.
    #[error("read {path}: {err}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        err: io::Error,
    },
    /// Writing a value to a cgroup file failed (the kernel refused the value,
    /// or the controller is not enabled).
    #[error("write {value:?} to {path}: {err}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The value written.
        value: String,
        /// The underlying error.
        err: io::Error,
    },
    /// A cgroup file cannot be opened for writing.
    #[error("open {path}: {err}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        err: io::Error,
    },
    /// mkdir(2) of a cgroup directory failed.
    #[error("create cgroup {path}: {err}")]
    Create {
        /// The cgroup directory.
        path: PathBuf,
        /// The underlying error.
        err: io::Error,
    },
    /// rmdir(2) of a cgroup directory failed (other than a brief `EBUSY` while
    /// its tasks exit).
    #[error("remove cgroup {path}: {err}")]
    Remove {
        /// The cgroup directory.
        path: PathBuf,
        /// The underlying error.
        err: io::Error,
    },
    /// No cgroup or cgroup2 filesystem in `/proc/self/mountinfo`, or a v2
    /// operation on a container without a cgroup2 directory.
    #[error("no cgroup filesystem is mounted")]
    NoCgroupFs,
    /// `linux.resources` sets a limit whose controller the host does not have
    /// (its name).
    #[error(
        "cgroup controller {0} is not available on this host, but linux.resources asks for it"
    )]
    MissingController(String),
    /// `linux.cgroupsPath` is unusable: systemd syntax, or it names a
    /// hierarchy's root. The path as given, and why.
    #[error("invalid cgroupsPath {0:?}: {1}")]
    InvalidPath(String, String),
    /// `--systemd-cgroup` was given; only cgroupfs is supported.
    #[error("--systemd-cgroup is not supported: skiff manages cgroups through cgroupfs")]
    SystemdUnsupported,
    /// A `linux.resources` value the kernel would reject, caught before
    /// anything is written.
    #[error("invalid resource {field}: {msg}")]
    InvalidResource {
        /// The field, like `memory.swap` or `devices.access`.
        field: &'static str,
        /// What is wrong with its value.
        msg: String,
    },
    /// The cgroup did not reach the frozen (or thawed) state within about a
    /// second.
    #[error("freezing cgroup {path} timed out")]
    FreezeTimeout {
        /// The cgroup directory.
        path: PathBuf,
    },
    /// A real-time process (`SCHED_FIFO` or `SCHED_RR`, say a runtime
    /// started under chrt(1)) cannot join a v1 `cpu` cgroup that grants
    /// real-time tasks no CPU time: a new cgroup's `cpu.rt_runtime_us` is 0,
    /// and the kernel refuses the move with `EINVAL` (sched-rt-group.rst,
    /// "Real-Time group scheduling").
    #[error(
        "write {value:?} to {path}: {err}: a real-time process (SCHED_FIFO or SCHED_RR) \
         can join this cpu cgroup only if it grants real-time runtime: set \
         linux.resources.cpu.realtimeRuntime (for a running container: update \
         --cpu-rt-runtime), or start the runtime with a normal scheduling policy"
    )]
    RealtimeJoin {
        /// The cgroup file written.
        path: PathBuf,
        /// The value written (a pid, or `0` for the writer itself).
        value: String,
        /// The kernel's answer.
        err: io::Error,
    },
}

impl CgroupError {
    /// A failed move of process `pid` (0: the caller) into a cgroup, named
    /// for what it is when it is v1's real-time rule: `EINVAL` from a `cpu`
    /// hierarchy's cgroup (one with `cpu.rt_runtime_us`) for a process with
    /// a real-time policy. Any other error is returned as it is.
    pub fn on_join(self, pid: i32) -> CgroupError {
        match self {
            CgroupError::Write { path, value, err }
                if err.raw_os_error() == Some(libc::EINVAL)
                    && path
                        .parent()
                        .is_some_and(|d| d.join("cpu.rt_runtime_us").exists())
                    && is_realtime(pid) =>
            {
                CgroupError::RealtimeJoin { path, value, err }
            }
            e => e,
        }
    }
}

/// Whether process `pid` (0: the caller) has a real-time scheduling policy
/// (sched(7)). The system call itself: musl's sched_getscheduler(3) only
/// fails with ENOSYS, since the kernel's call is per thread and POSIX's is
/// per process.
fn is_realtime(pid: i32) -> bool {
    // SAFETY: sched_getscheduler(2) takes a pid and returns an integer.
    let policy = unsafe { libc::syscall(libc::SYS_sched_getscheduler, pid) } as i32;
    policy >= 0
        && matches!(
            policy & !libc::SCHED_RESET_ON_FORK,
            libc::SCHED_FIFO | libc::SCHED_RR
        )
}

/// The result type of cgroup operations.
pub type Result<T> = std::result::Result<T, CgroupError>;

/// runc's `CleanPath`: lexically clean, and for a relative path, clean it as
/// if it were absolute first so that `..` cannot climb out.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return String::new();
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let joined = parts.join("/");
    if p.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

/// The container's cgroup, one directory per hierarchy. The key is the v1
/// controller list as mounted (e.g. `memory`, `cpu,cpuacct`, `name=systemd`)
/// or `""` for the cgroup2 tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPaths {
    /// The host's layout when the paths were resolved; `None` in an empty
    /// (default) value.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The container's directory in each hierarchy, keyed as above.
    #[serde(default)]
    pub paths: BTreeMap<String, PathBuf>,
}

impl CgroupPaths {
    /// The directory of the hierarchy that holds `controller`.
    pub fn get(&self, controller: &str) -> Option<&Path> {
        self.paths
            .iter()
            .find(|(k, _)| k.split(',').any(|c| c == controller))
            .map(|(_, v)| v.as_path())
    }

    /// The cgroup2 directory, if any.
    pub fn unified(&self) -> Option<&Path> {
        self.paths.get("").map(PathBuf::as_path)
    }

    /// Whether this container is managed as v2 (unified mode).
    pub fn is_v2(&self) -> bool {
        self.mode == Some(Mode::Unified)
    }
}

/// The runtime's own cgroup in each hierarchy, from /proc/self/cgroup.
fn own_cgroups() -> Result<BTreeMap<String, String>> {
    let path = Path::new("/proc/self/cgroup");
    let text = fs::read_to_string(path).map_err(|err| CgroupError::Read {
        path: path.into(),
        err,
    })?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (_, ctrls, p) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or("/"));
        out.insert(ctrls.to_string(), p.to_string());
    }
    Ok(out)
}

/// The hierarchies a container uses, each with its key (see
/// [`CgroupPaths`]): in unified mode only cgroup2; and only the canonical
/// mount of each, not bind mounts of its subdirectories elsewhere.
fn canonical(hs: &[Hierarchy], mode: Mode) -> Vec<(String, &Hierarchy)> {
    let mut out: Vec<(String, &Hierarchy)> = Vec::new();
    for h in hs {
        let key = if h.v2 {
            String::new()
        } else {
            h.controllers.join(",")
        };
        if !h.v2 && (mode == Mode::Unified || key.is_empty()) {
            continue;
        }
        if out.iter().any(|(k, _)| *k == key) || !h.mount_point.starts_with("/sys/fs/cgroup") {
            continue;
        }
        out.push((key, h));
    }
    out
}

/// The calling process's own cgroups, as [`CgroupPaths`]: what a container
/// that gets no cgroup of its own (rootless, without delegation) lives in,
/// and so what its `/sys/fs/cgroup` shows.
pub fn own_paths() -> Result<CgroupPaths> {
    let hs = hierarchies()?;
    let mode = detect_mode(&hs)?;
    let own = own_cgroups()?;
    let mut paths = BTreeMap::new();
    for (key, h) in canonical(&hs, mode) {
        let own_path = own.get(&key).map_or("/", String::as_str);
        let rel = own_path.strip_prefix(h.root.as_str()).unwrap_or(own_path);
        paths.insert(key, h.mount_point.join(rel.trim_start_matches('/')));
    }
    Ok(CgroupPaths {
        mode: Some(mode),
        paths,
    })
}

/// Compute where the container's cgroup goes in every hierarchy.
pub fn resolve_paths(cgroups_path: Option<&Path>, id: &str) -> Result<CgroupPaths> {
    let hs = hierarchies()?;
    let mode = detect_mode(&hs)?;
    let raw = cgroups_path
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if raw.contains(':') && !raw.starts_with('/') {
        // "slice:prefix:name" is the systemd driver's syntax.
        return Err(CgroupError::InvalidPath(
            raw,
            "systemd cgroup paths need --systemd-cgroup".into(),
        ));
    }
    let inner = if raw.is_empty() {
        clean_path(id)
    } else {
        clean_path(&raw)
    };
    if inner.is_empty() || inner == "/" {
        return Err(CgroupError::InvalidPath(
            raw,
            "the container cannot use a hierarchy's root cgroup".into(),
        ));
    }
    let own = own_cgroups()?;
    let mut paths = BTreeMap::new();
    for (key, h) in canonical(&hs, mode) {
        let rel = if inner.starts_with('/') {
            inner.trim_start_matches('/').to_string()
        } else {
            let own_path = own.get(&key).cloned().unwrap_or_else(|| "/".into());
            let mut base = own_path
                .strip_prefix(h.root.as_str())
                .unwrap_or(&own_path)
                .to_string();
            // On v2 a cgroup with processes cannot give controllers to
            // children, and a systemd scope always has processes (ours): like
            // runc, start one level up from a `.scope`.
            if mode == Mode::Unified && base.ends_with(".scope") {
                base = Path::new(&base)
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
            }
            format!("{}/{}", base.trim_matches('/'), inner)
        };
        let rel = clean_path(&format!("/{rel}"));
        paths.insert(key, h.mount_point.join(rel.trim_start_matches('/')));
    }
    Ok(CgroupPaths {
        mode: Some(mode),
        paths,
    })
}

/// Device rules every container gets after the spec's own (runc's list):
/// mknod of anything, the standard character devices, ptys and tun.
const DEFAULT_DEVICE_RULES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:8 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:5 rwm",
    "c 1:9 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
];

/// The container's device rules in order: `linux.resources.devices`, then
/// every node of `linux.devices` (the container may always use what it was
/// given), then the defaults. Later rules override earlier ones.
pub fn device_rules(
    spec_rules: &[oci_spec::runtime::LinuxDeviceCgroup],
    devices: &[oci_spec::runtime::LinuxDevice],
) -> Result<Vec<device_filter::Rule>> {
    use oci_spec::runtime::LinuxDeviceType as T;
    let mut out = Vec::new();
    for r in spec_rules {
        let kind = match r.typ() {
            None | Some(T::A) => 'a',
            Some(T::B) => 'b',
            Some(T::C) | Some(T::U) => 'c',
            Some(T::P) => {
                return Err(CgroupError::InvalidResource {
                    field: "devices.type",
                    msg: "\"p\" is not a device cgroup type (a, b or c)".into(),
                })
            }
        };
        let num = |n: Option<i64>| n.filter(|n| *n >= 0).map(|n| n as u32);
        let access = r.access().clone().unwrap_or_else(|| "rwm".into());
        if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
            return Err(CgroupError::InvalidResource {
                field: "devices.access",
                msg: format!("{access:?} is not a combination of r, w and m"),
            });
        }
        out.push(device_filter::Rule {
            kind,
            major: num(r.major()),
            minor: num(r.minor()),
            access,
            allow: r.allow(),
        });
    }
    for d in devices {
        let kind = if d.typ() == T::B { 'b' } else { 'c' };
        out.push(device_filter::Rule {
            kind,
            major: Some(d.major() as u32),
            minor: Some(d.minor() as u32),
            access: "rwm".into(),
            allow: true,
        });
    }
    out.extend(
        DEFAULT_DEVICE_RULES
            .iter()
            .filter_map(|l| device_filter::Rule::parse(l, true)),
    );
    Ok(out)
}

/// The container's cgroup2 directory, if the `controller` is available there
/// (on hybrid hosts a few controllers, such as hugetlb, may live in the
/// cgroup2 tree rather than in a v1 hierarchy).
pub fn unified_with<'a>(paths: &'a CgroupPaths, controller: &str) -> Option<&'a Path> {
    let dir = paths.unified()?;
    let avail = fs::read_to_string(dir.join("cgroup.controllers")).ok()?;
    avail
        .split_whitespace()
        .any(|c| c == controller)
        .then_some(dir)
}

/// One line of `rdma.max`: `DEVICE hca_handle=N hca_object=M`.
pub fn rdma_line(dev: &str, l: &oci_spec::runtime::LinuxRdma) -> String {
    let mut s = dev.to_string();
    if let Some(h) = l.hca_handles() {
        s.push_str(&format!(" hca_handle={h}"));
    }
    if let Some(o) = l.hca_objects() {
        s.push_str(&format!(" hca_object={o}"));
    }
    s
}

/// The host mount point of the hierarchy that `dir` (a container cgroup
/// directory under /sys/fs/cgroup) belongs to, e.g. `/sys/fs/cgroup/memory`.
pub fn hierarchy_mount_point(dir: &Path, key: &str) -> Option<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if key.is_empty() && dir.starts_with(base) && !base.join("unified").exists() {
        return Some(base.to_path_buf());
    }
    let first = dir.strip_prefix(base).ok()?.components().next()?;
    Some(base.join(first.as_os_str()))
}

/// The `linux.resources` settings that need a cgroup to take effect, as
/// spec paths (`linux.resources.memory`, ...), or `None` when there are
/// none. The device list is not among them: containerd and podman always
/// send one, and without a cgroup the container simply has no device
/// controller (its `/dev` holds only what is bind-mounted).
pub fn requested(r: &LinuxResources) -> Option<String> {
    let mut set = Vec::new();
    let mut note = |on: bool, name: &str| {
        if on {
            set.push(format!("linux.resources.{name}"));
        }
    };
    note(r.memory().is_some(), "memory");
    note(r.cpu().is_some(), "cpu");
    note(r.pids().is_some(), "pids");
    note(r.block_io().is_some(), "blockIO");
    note(
        r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()),
        "hugepageLimits",
    );
    note(r.network().is_some(), "network");
    note(r.rdma().as_ref().is_some_and(|h| !h.is_empty()), "rdma");
    note(
        r.unified().as_ref().is_some_and(|h| !h.is_empty()),
        "unified",
    );
    if set.is_empty() {
        None
    } else {
        Some(set.join(", "))
    }
}

/// Create the cgroup directories, apply `linux.resources`, ready for a pid.
pub fn create(
    paths: &CgroupPaths,
    resources: Option<&LinuxResources>,
    devices: &[oci_spec::runtime::LinuxDevice],
) -> Result<()> {
    if paths.paths.is_empty() {
        // No cgroup of its own (rootless without delegation).
        return Ok(());
    }
    crate::explain!(
        "cgroups(7)",
        "creating the container's cgroup in {} hierarchies: a directory per hierarchy whose files hold its limits",
        paths.paths.len()
    );
    if paths.is_v2() {
        v2::create(paths, resources, devices)
    } else {
        v1::create(paths, resources, devices)
    }
}

/// Put process `pid` into the container's cgroup in every hierarchy.
pub fn add_pid(paths: &CgroupPaths, pid: i32) -> Result<()> {
    if paths.paths.is_empty() {
        return Ok(());
    }
    let _s = crate::span!("join: write the pid to cgroup.procs");
    crate::explain!("cgroups(7)", "writing pid {pid} to cgroup.procs: the process and all it forks now count against the container's limits");
    for dir in paths.paths.values() {
        write(&dir.join("cgroup.procs"), &pid.to_string()).map_err(|e| e.on_join(pid))?;
    }
    Ok(())
}

/// Pids in the container's cgroup (and its nested cgroups).
pub fn pids(paths: &CgroupPaths) -> Result<Vec<i32>> {
    let dir = if paths.is_v2() {
        paths.unified()
    } else {
        paths
            .get("pids")
            .or_else(|| paths.get("freezer"))
            .or_else(|| paths.paths.values().next().map(PathBuf::as_path))
    };
    let mut out = Vec::new();
    if let Some(d) = dir {
        collect_pids(d, &mut out)?;
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    match fs::read_to_string(&procs) {
        Ok(t) => out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(CgroupError::Read { path: procs, err }),
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

/// Freeze (pause) or thaw (resume) every process of the container.
pub fn set_frozen(paths: &CgroupPaths, frozen: bool) -> Result<()> {
    if paths.is_v2() {
        v2::set_frozen(paths, frozen)
    } else {
        v1::set_frozen(paths, frozen)
    }
}

/// Whether the container's cgroup is frozen.
pub fn is_frozen(paths: &CgroupPaths) -> bool {
    if paths.is_v2() {
        v2::is_frozen(paths)
    } else {
        v1::is_frozen(paths)
    }
}

/// Send `sig` to every process in the container's cgroup.
pub fn signal_all(paths: &CgroupPaths, sig: nix::sys::signal::Signal) -> Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    if sig == Signal::SIGKILL && paths.is_v2() && v2::kill(paths)? {
        return Ok(());
    }
    // Freeze first so that nothing can fork between reading the list and
    // signalling it, then thaw so the signals are delivered.
    let freezable = !is_frozen(paths);
    if freezable {
        let _ = set_frozen(paths, true);
    }
    for pid in pids(paths)? {
        let _ = kill(Pid::from_raw(pid), sig);
    }
    if freezable {
        let _ = set_frozen(paths, false);
    }
    Ok(())
}

/// Remove the container's cgroups, nested ones first, retrying while the
/// kernel still reports them busy (processes that are exiting).
pub fn remove(paths: &CgroupPaths) -> Result<()> {
    if paths.paths.is_empty() {
        return Ok(());
    }
    crate::explain!("rmdir(2)", "removing the container's cgroup directories");
    let mut first_err = None;
    for dir in paths.paths.values() {
        if let Err(e) = remove_tree(dir) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// rmdir(2) of a cgroup and of any child cgroups below it. A cgroup is
/// busy (EBUSY) while it has children or tasks: children are removed first;
/// tasks that have exited may take a moment to leave.
fn remove_tree(dir: &Path) -> Result<()> {
    let mut delay = std::time::Duration::from_millis(1);
    for attempt in 0..12 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 11 => {
                // The common case, a leaf, needs no directory listing.
                let mut children = 0;
                for e in fs::read_dir(dir).into_iter().flatten().flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        remove_tree(&e.path())?;
                        children += 1;
                    }
                }
                if children == 0 {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(std::time::Duration::from_millis(100));
                }
            }
            Err(err) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    err,
                })
            }
        }
    }
    Ok(())
}

/// Write a cgroup file, with an error naming the file and value.
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    crate::utils::write_file(path, value).map_err(|err| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        err,
    })
}

pub(crate) fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|err| CgroupError::Read {
            path: path.to_path_buf(),
            err,
        })
}

/// mkdir -p, remembering nothing: cgroup dirs are removed by [`remove`].
pub(crate) fn mkdir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|err| CgroupError::Create {
        path: path.to_path_buf(),
        err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `on_join` names the real-time rule only when all three hold: EINVAL,
    /// a `cpu` hierarchy's cgroup, and a real-time process.
    #[test]
    fn on_join_names_the_real_time_rule_only_when_it_applies() {
        let cpu = tempfile::tempdir().unwrap();
        std::fs::write(cpu.path().join("cpu.rt_runtime_us"), "0").unwrap();
        let other = tempfile::tempdir().unwrap();
        let write = |dir: &Path, errno: i32| CgroupError::Write {
            path: dir.join("tasks"),
            value: "0".into(),
            err: io::Error::from_raw_os_error(errno),
        };
        let is_rt = |e: &CgroupError| matches!(e, CgroupError::RealtimeJoin { .. });
        // This test's own thread has a normal policy.
        assert!(!is_rt(&write(cpu.path(), libc::EINVAL).on_join(0)));
        // A real-time process, where chrt(1) may make one (root).
        let Ok(mut child) = std::process::Command::new("chrt")
            .args(["-f", "1", "sleep", "10"])
            .spawn()
        else {
            return;
        };
        let pid = child.id() as i32;
        // Until chrt has set the policy and exec'd sleep; without root it
        // cannot, and exits.
        while std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() != "sleep")
        {
            if child.try_wait().is_ok_and(|s| s.is_some()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if is_realtime(pid) {
            let e = write(cpu.path(), libc::EINVAL).on_join(pid);
            assert!(is_rt(&e), "{e}");
            assert!(e.to_string().contains("realtimeRuntime"), "{e}");
            assert!(!is_rt(&write(other.path(), libc::EINVAL).on_join(pid)));
            assert!(!is_rt(&write(cpu.path(), libc::EBUSY).on_join(pid)));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn clean_path_like_runc() {
        assert_eq!(clean_path("/a/b/../c"), "/a/c");
        assert_eq!(clean_path("../../x"), "x");
        assert_eq!(clean_path("a/./b/"), "a/b");
        assert_eq!(clean_path("/../.."), "/");
        assert_eq!(clean_path(""), "");
    }
}
