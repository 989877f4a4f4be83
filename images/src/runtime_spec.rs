//! From an image config to an OCI runtime spec (`config.json`).
//!
//! The image says what to run (`Entrypoint` + `Cmd`), with which
//! environment, in which directory, as which user; the runtime spec says
//! that and everything around it: namespaces, mounts, capabilities, masked
//! paths. The surroundings here are the defaults containerd's CRI plugin
//! gives a Kubernetes container, so an image behaves the same under Skiff
//! as under a kubelet: its default capability set, `/dev`, `/proc`, `/sys`
//! and the cgroup tree mounted the usual way, the usual masked and
//! read-only `/proc` paths, a fresh pid/ipc/uts/mount/network namespace
//! (and cgroup namespace on a cgroup v2 host).
//!
//! The user is resolved the way containerd does it: `name`, `uid`,
//! `name:group`, `uid:gid`... looked up in the image's own `/etc/passwd`
//! and `/etc/group`, read inside the rootfs (openat2(2) `RESOLVE_IN_ROOT`,
//! so an image whose /etc/passwd is a symlink to the host's reads its own).
//! The groups listing the user become its additional groups.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use oci_spec::image::ImageConfiguration;
use serde_json::{json, Value};

/// The `PATH` a process gets when the image's environment sets none (the
/// same as containerd's).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capabilities containerd's CRI plugin gives a container by default.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Annotations recording what the image declares but a runtime spec has no
/// field for.
pub const EXPOSED_PORTS_ANNOTATION: &str = "io.github.skiff.image.exposed-ports";
/// Records the image's `Volumes` (comma-separated, sorted).
pub const VOLUMES_ANNOTATION: &str = "io.github.skiff.image.volumes";
/// Records the image's name, from [`SpecOptions::image_name`].
pub const IMAGE_ANNOTATION: &str = "io.github.skiff.image.name";

/// Why an image config cannot become a runtime spec.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    /// Neither `Entrypoint` nor `Cmd` is set, and no arguments were given.
    #[error("image has no command: neither Entrypoint nor Cmd is set (give one with --)")]
    NoCommand,
    /// The user name is not in the image's `/etc/passwd`.
    #[error("user {user:?}: no such user in the image's /etc/passwd")]
    NoUser {
        /// The image's `User`, as given.
        user: String,
    },
    /// The group name is not in the image's `/etc/group`.
    #[error("user {user:?}: no such group {group:?} in the image's /etc/group")]
    NoGroup {
        /// The image's `User`, as given.
        user: String,
        /// The group name not found.
        group: String,
    },
    /// A `User` with an empty user or group part (`:g`, `u:`), or whose
    /// `/etc/passwd` entry has a uid that is not a number.
    #[error("invalid user {0:?}")]
    BadUser(String),
}

/// What the caller decides rather than the image.
#[derive(Debug, Default, Clone)]
pub struct SpecOptions {
    /// Replace Cmd (Entrypoint stays), like `docker run IMAGE ARGS...`.
    pub args: Option<Vec<String>>,
    /// The container's hostname: `hostname` in the spec and `HOSTNAME` in the
    /// environment; `None` sets neither.
    pub hostname: Option<String>,
    /// The host uses the unified cgroup hierarchy: add a cgroup namespace.
    pub cgroup_v2: bool,
    /// Give the process a terminal (`process.terminal`); `TERM=xterm` is added
    /// unless the image sets `TERM`.
    pub terminal: bool,
    /// The image's name, recorded as an annotation.
    pub image_name: Option<String>,
}

/// The user's uid, gid and additional gids.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedUser {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// The supplementary group ids, the primary one first.
    pub additional_gids: Vec<u32>,
}

/// Read `path` inside `rootfs` without leaving it (missing: empty).
fn read_in_root(rootfs: &Path, path: &str) -> String {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let Ok(root) = std::fs::File::open(rootfs) else {
        return String::new();
    };
    // O_NONBLOCK: a fifo planted as /etc/passwd must not hang the caller;
    // only a regular file is read.
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let Ok(fd) = openat2(root.as_fd(), path.trim_start_matches('/'), how) else {
        return String::new();
    };
    if !nix::sys::stat::fstat(&fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG) {
        return String::new();
    }
    let mut s = String::new();
    let _ = std::fs::File::from(fd).take(4 << 20).read_to_string(&mut s);
    s
}

/// `name:x:uid:gid:...` lines (passwd) or `name:x:gid:members` (group).
fn entries(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
}

/// Resolve an image `User` against the rootfs's /etc/passwd and /etc/group.
pub fn resolve_user(user: &str, rootfs: &Path) -> Result<ResolvedUser, SpecError> {
    let user = user.trim();
    if user.is_empty() {
        return resolve_user("0", rootfs);
    }
    let passwd = read_in_root(rootfs, "/etc/passwd");
    let group = read_in_root(rootfs, "/etc/group");
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if u.is_empty() || g == Some("") {
        return Err(SpecError::BadUser(user.to_string()));
    }
    let pw = entries(&passwd).find(|f| f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u));
    let (uid, name, mut gid) = match (u.parse::<u32>(), pw) {
        (Ok(uid), Some(f)) => (uid, Some(f[0].to_string()), f[3].parse().unwrap_or(0)),
        (Ok(uid), None) => (uid, None, 0),
        (Err(_), Some(f)) => (
            f[2].parse()
                .map_err(|_| SpecError::BadUser(user.to_string()))?,
            Some(f[0].to_string()),
            f[3].parse().unwrap_or(0),
        ),
        (Err(_), None) => {
            return Err(SpecError::NoUser {
                user: user.to_string(),
            })
        }
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => entries(&group)
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| SpecError::NoGroup {
                    user: user.to_string(),
                    group: g.to_string(),
                })?,
        };
    }
    // The primary group always comes first (containerd adds it, so that
    // dropping supplementary groups can never leave the process in a group
    // the image did not grant); with an explicit group, only that one.
    let mut additional = vec![gid];
    if g.is_none() {
        if let Some(name) = &name {
            for f in entries(&group) {
                if f[3].split(',').any(|m| m.trim() == name) {
                    if let Ok(n) = f[2].parse::<u32>() {
                        if n != gid && !additional.contains(&n) {
                            additional.push(n);
                        }
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
    })
}

/// The runtime spec for running `image` with its root at `rootfs` (the
/// bundle's `rootfs` directory, already assembled).
pub fn from_image(
    image: &ImageConfiguration,
    rootfs: &Path,
    opts: &SpecOptions,
) -> Result<Value, SpecError> {
    let cfg = image.config().clone().unwrap_or_default();
    let mut args: Vec<String> = cfg.entrypoint().clone().unwrap_or_default();
    match &opts.args {
        Some(a) => args.extend(a.iter().cloned()),
        None => args.extend(cfg.cmd().clone().unwrap_or_default()),
    }
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let mut env: Vec<String> = cfg.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    if let Some(h) = &opts.hostname {
        env.push(format!("HOSTNAME={h}"));
    }
    if opts.terminal && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let user = resolve_user(cfg.user().as_deref().unwrap_or(""), rootfs)?;
    let user_json =
        json!({"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids});
    let cwd = cfg
        .working_dir()
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string());
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "network"}),
    ];
    if opts.cgroup_v2 {
        namespaces.push(json!({"type": "cgroup"}));
    }
    let mut annotations = serde_json::Map::new();
    if let Some(p) = cfg.exposed_ports().as_ref().filter(|p| !p.is_empty()) {
        let mut p = p.clone();
        p.sort();
        annotations.insert(EXPOSED_PORTS_ANNOTATION.into(), json!(p.join(",")));
    }
    if let Some(v) = cfg.volumes().as_ref().filter(|v| !v.is_empty()) {
        let mut v = v.clone();
        v.sort();
        annotations.insert(VOLUMES_ANNOTATION.into(), json!(v.join(",")));
    }
    if let Some(n) = &opts.image_name {
        annotations.insert(IMAGE_ANNOTATION.into(), json!(n));
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": opts.terminal,
            "user": user_json,
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": DEFAULT_CAPS,
                "effective": DEFAULT_CAPS,
                "permitted": DEFAULT_CAPS
            },
            "noNewPrivileges": false
        },
        "root": {"path": "rootfs", "readonly": false},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY
        }
    });
    if let Some(h) = &opts.hostname {
        spec["hostname"] = json!(h);
    }
    if !annotations.is_empty() {
        spec["annotations"] = Value::Object(annotations);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nweb:x:33:33::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nstaff:x:50:app,web\naudio:x:29:app\nwww:x:33:\n",
        )
        .unwrap();
        d
    }

    fn user(u: &str, r: &Path) -> Result<(u32, u32, Vec<u32>), SpecError> {
        resolve_user(u, r).map(|x| (x.uid, x.gid, x.additional_gids))
    }

    #[test]
    fn users_resolve_like_containerd() {
        let r = rootfs();
        let r = r.path();
        assert_eq!(user("", r).unwrap(), (0, 0, vec![0]));
        assert_eq!(user("app", r).unwrap(), (1000, 1000, vec![1000, 50, 29]));
        assert_eq!(user("1000", r).unwrap(), (1000, 1000, vec![1000, 50, 29]));
        assert_eq!(user("app:www", r).unwrap(), (1000, 33, vec![33]));
        assert_eq!(user("app:7", r).unwrap(), (1000, 7, vec![7]));
        assert_eq!(user("4242", r).unwrap(), (4242, 0, vec![0]));
        assert_eq!(user("4242:4343", r).unwrap(), (4242, 4343, vec![4343]));
        assert_eq!(
            user("nobody", r),
            Err(SpecError::NoUser {
                user: "nobody".into()
            })
        );
        assert!(matches!(
            user("app:nogroup", r),
            Err(SpecError::NoGroup { .. })
        ));
    }

    #[test]
    fn a_fifo_as_passwd_does_not_hang() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        nix::unistd::mkfifo(
            &d.path().join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        assert!(matches!(
            user("app", d.path()),
            Err(SpecError::NoUser { .. })
        ));
    }

    #[test]
    fn passwd_symlinked_to_the_host_reads_the_image_own() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        // Absolute link: inside the root it points at the image's own
        // (missing) /host-passwd, never at the host's /etc/passwd.
        std::os::unix::fs::symlink("/host-passwd", d.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            user("root", d.path()),
            Err(SpecError::NoUser { .. })
        ));
    }

    fn image(config: Value) -> ImageConfiguration {
        serde_json::from_value(json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": config
        }))
        .unwrap()
    }

    #[test]
    fn command_env_and_cwd() {
        let r = rootfs();
        let img = image(json!({
            "Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["A=1"],
            "WorkingDir": "/srv", "User": "app",
            "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Volumes": {"/data": {}}
        }));
        let s = from_image(&img, r.path(), &SpecOptions::default()).unwrap();
        assert_eq!(s["process"]["args"], json!(["/bin/app", "--serve"]));
        assert_eq!(s["process"]["env"], json!([DEFAULT_PATH, "A=1"]));
        assert_eq!(s["process"]["cwd"], "/srv");
        assert_eq!(
            s["process"]["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [1000, 50, 29]})
        );
        assert_eq!(s["annotations"][EXPOSED_PORTS_ANNOTATION], "53/udp,80/tcp");
        assert_eq!(s["annotations"][VOLUMES_ANNOTATION], "/data");
        let parsed: oci_spec::runtime::Spec = serde_json::from_value(s).unwrap();
        assert_eq!(parsed.root().as_ref().unwrap().path(), Path::new("rootfs"));
        let o = SpecOptions {
            args: Some(vec!["--check".into()]),
            ..Default::default()
        };
        let s = from_image(&img, r.path(), &o).unwrap();
        assert_eq!(s["process"]["args"], json!(["/bin/app", "--check"]));
        assert_eq!(
            from_image(&image(json!({})), r.path(), &SpecOptions::default()),
            Err(SpecError::NoCommand)
        );
    }
}
