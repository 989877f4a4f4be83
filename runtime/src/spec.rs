//! The bundle's `config.json`: loading it with errors a person can act on,
//! checking what the kernel would otherwise reject half-way through `create`,
//! and writing the default one (`skiff spec`).
//!
//! The types come from the `oci-spec` crate, which follows the OCI runtime
//! specification (config.md, config-linux.md). Unknown fields are ignored,
//! as runc ignores them; a field of the wrong type is an error that names it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

/// Why the bundle's `config.json` (or an `exec --process` file) cannot be
/// used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The bundle directory does not exist.
    #[error("bundle {0}: no such directory")]
    NoBundle(PathBuf),
    /// The bundle has no `config.json`.
    #[error("open {path}: no such file or directory")]
    NoConfig {
        /// The missing file.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("read {path}: {err}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        err: io::Error,
    },
    /// The JSON is malformed, or a field has the wrong type or value.
    #[error("parse {path}: {field}{err}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where in the document, like `linux.resources.devices[0].type: `.
        field: String,
        /// The parser's error.
        err: serde_json::Error,
    },
    /// The config parses but is rejected before anything is created (no
    /// `root`, say).
    #[error("invalid config {path}: {msg}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The rootfs directory (`root.path`, resolved against the bundle) does
    /// not exist or is not a directory.
    #[error("rootfs ({0}) does not exist")]
    NoRootfs(PathBuf),
    /// `skiff spec` would overwrite an existing `config.json` (its name).
    #[error("File {0} exists. Remove it first")]
    ConfigExists(String),
    /// `skiff spec` could not write `config.json`.
    #[error("write {path}: {err}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        err: io::Error,
    },
}

/// The name of the config file in a bundle.
pub const CONFIG_FILE: &str = "config.json";

/// What config.json says that the `oci-spec` types cannot hold.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Extras {
    /// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` in `linux.seccomp.flags`.
    pub seccomp_wait_killable_recv: bool,
}

/// Read and parse `bundle/config.json`.
pub fn load(bundle: &Path) -> Result<(Spec, Extras), SpecError> {
    if !bundle.is_dir() {
        return Err(SpecError::NoBundle(bundle.to_path_buf()));
    }
    let path = bundle.join(CONFIG_FILE);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SpecError::NoConfig { path }),
        Err(err) => return Err(SpecError::Read { path, err }),
    };
    let (spec, extras) = parse_config(&path, &data)?;
    validate(&spec).map_err(|msg| SpecError::Invalid { path, msg })?;
    Ok((spec, extras))
}

/// Parse config.json, first taking out the seccomp flag the `oci-spec`
/// enum does not have (only when the text mentions it: the common path
/// parses once).
fn parse_config(path: &Path, data: &[u8]) -> Result<(Spec, Extras), SpecError> {
    let flag = crate::seccomp::WAIT_KILLABLE_RECV.as_bytes();
    if !data.windows(flag.len()).any(|w| w == flag) {
        return Ok((parse(path, data)?, Extras::default()));
    }
    let mut v: Value = parse(path, data)?;
    let mut extras = Extras::default();
    if let Some(flags) = v
        .pointer_mut("/linux/seccomp/flags")
        .and_then(Value::as_array_mut)
    {
        let before = flags.len();
        flags.retain(|f| f.as_str() != Some(crate::seccomp::WAIT_KILLABLE_RECV));
        extras.seccomp_wait_killable_recv = flags.len() != before;
    }
    let spec = parse(path, v.to_string().as_bytes())?;
    Ok((spec, extras))
}

/// Load a `process.json` as `exec --process` takes it.
pub fn load_process(path: &Path) -> Result<oci_spec::runtime::Process, SpecError> {
    let data = fs::read(path).map_err(|err| SpecError::Read {
        path: path.to_path_buf(),
        err,
    })?;
    parse(path, &data)
}

/// Deserialize JSON, naming the field that is wrong when it fails.
fn parse<T: serde::de::DeserializeOwned>(path: &Path, data: &[u8]) -> Result<T, SpecError> {
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." {
            String::new()
        } else {
            format!("{field}: ")
        };
        SpecError::Parse {
            path: path.to_path_buf(),
            field,
            err: e.into_inner(),
        }
    })
}

/// The absolute rootfs path: `root.path`, relative to the bundle if relative.
pub fn rootfs_path(bundle: &Path, spec: &Spec) -> Result<PathBuf, SpecError> {
    let rel = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    let path = if rel.is_absolute() {
        rel
    } else {
        bundle.join(rel)
    };
    match fs::canonicalize(&path) {
        Ok(p) if p.is_dir() => Ok(p),
        _ => Err(SpecError::NoRootfs(path)),
    }
}

/// Checks that catch bad configs before anything is created.
fn validate(spec: &Spec) -> Result<(), String> {
    if spec.root().is_none() {
        return Err("root must be specified".into());
    }
    if let Some(linux) = spec.linux() {
        let mntns = linux.namespaces().as_ref().is_some_and(|n| {
            n.iter()
                .any(|ns| ns.typ() == oci_spec::runtime::LinuxNamespaceType::Mount)
        });
        let restricts = linux.masked_paths().as_ref().is_some_and(|m| !m.is_empty())
            || linux
                .readonly_paths()
                .as_ref()
                .is_some_and(|r| !r.is_empty());
        if !mntns && restricts {
            return Err("unable to restrict sys entries without a private MNT namespace".into());
        }
    }
    if let Some(process) = spec.process() {
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err("args must not be empty".into());
        }
        let cwd = process.cwd();
        if !cwd.is_absolute() {
            return Err(format!("cwd {:?} is not an absolute path", cwd));
        }
    }
    if let Some(mounts) = spec.mounts() {
        for m in mounts {
            if !m.destination().is_absolute() {
                return Err(format!(
                    "mount destination {} is not absolute",
                    m.destination().display()
                ));
            }
        }
    }
    Ok(())
}

/// The default `config.json`, equal in content to `runc spec` (and
/// `runc spec --rootless`): a busybox-style `sh` with a small set of
/// capabilities, a read-only root and the usual pseudo-filesystems.
pub fn default_spec(rootless: bool) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let masked = json!([
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi"
    ]);
    let readonly = json!([
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger"
    ]);
    let mut devpts_opts = vec![
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ];
    if !rootless {
        devpts_opts.push("gid=5");
    }
    let sys = if rootless {
        json!({"destination": "/sys", "type": "none", "source": "/sys",
               "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
    } else {
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]})
    };
    let mut spec = json!({
        "ociVersion": crate::container::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": devpts_opts},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            sys,
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": masked,
            "readonlyPaths": readonly
        }
    });
    // On a cgroup v2 host the container gets a cgroup namespace too, as
    // with runc: it then sees its own cgroup as the root of the tree.
    if unified_cgroups() {
        if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
            ns.push(json!({"type": "cgroup"}));
        }
    }
    if rootless {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let linux = &mut spec["linux"];
        linux.as_object_mut().map(|o| o.remove("resources"));
        linux["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        linux["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        if let Some(ns) = linux["namespaces"].as_array_mut() {
            ns.retain(|n| n["type"] != "network");
            ns.push(json!({"type": "user"}));
        }
        // Keep runc's field order (that of the spec's Linux struct).
        if let Some(obj) = linux.as_object_mut() {
            let order = [
                "uidMappings",
                "gidMappings",
                "resources",
                "namespaces",
                "maskedPaths",
                "readonlyPaths",
            ];
            let mut sorted = serde_json::Map::new();
            for k in order {
                if let Some(v) = obj.remove(k) {
                    sorted.insert(k.to_string(), v);
                }
            }
            sorted.append(obj);
            *obj = sorted;
        }
    }
    spec
}

/// Is `/sys/fs/cgroup` a cgroup v2 mount (statfs(2) `CGROUP2_SUPER_MAGIC`)?
fn unified_cgroups() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// Render JSON the way runc writes `config.json`: tab-indented.
pub fn to_tab_indented(value: &Value) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(value, &mut ser).expect("serializing a JSON value cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Add the default seccomp profile (computed for the spec's bounding
/// capabilities) as `linux.seccomp`, where the runtime spec's field order
/// puts it: after `namespaces` (and `devices`), before `maskedPaths`.
pub fn with_default_seccomp(mut spec: Value) -> Value {
    let profile = crate::seccomp::default_profile::for_spec(&spec);
    if let Some(linux) = spec["linux"].as_object_mut() {
        let mut ordered = serde_json::Map::new();
        let mut pending = Some(profile);
        for (k, v) in std::mem::take(linux) {
            if matches!(
                k.as_str(),
                "rootfsPropagation" | "maskedPaths" | "readonlyPaths"
            ) {
                if let Some(p) = pending.take() {
                    ordered.insert("seccomp".into(), p);
                }
            }
            ordered.insert(k, v);
        }
        if let Some(p) = pending {
            ordered.insert("seccomp".into(), p);
        }
        *linux = ordered;
    }
    spec
}

/// `skiff spec`: write the default config.json into `bundle`, refusing to
/// overwrite one that exists; with `seccomp`, include the default profile.
pub fn write_default(bundle: &Path, rootless: bool, seccomp: bool) -> Result<(), SpecError> {
    let path = bundle.join(CONFIG_FILE);
    if path.exists() {
        return Err(SpecError::ConfigExists(CONFIG_FILE.to_string()));
    }
    let mut spec = default_spec(rootless);
    if seccomp {
        spec = with_default_seccomp(spec);
    }
    let text = to_tab_indented(&spec);
    fs::write(&path, text).map_err(|err| SpecError::Write { path, err })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_parses_as_oci_spec() {
        for rootless in [false, true] {
            let v = default_spec(rootless);
            let s: Spec = serde_json::from_value(v).unwrap();
            assert!(validate(&s).is_ok());
        }
    }

    #[test]
    fn default_profile_lands_before_the_masked_paths() {
        for rootless in [false, true] {
            let v = with_default_seccomp(default_spec(rootless));
            let keys: Vec<_> = v["linux"].as_object().unwrap().keys().cloned().collect();
            let at = |k: &str| keys.iter().position(|x| x == k).unwrap();
            assert_eq!(at("seccomp") + 1, at("maskedPaths"), "{keys:?}");
            assert!(at("namespaces") < at("seccomp"));
            let s: Spec = serde_json::from_value(v).unwrap();
            assert!(s.linux().as_ref().unwrap().seccomp().is_some());
        }
    }

    #[test]
    fn wrong_type_is_an_error_naming_the_field() {
        let err = serde_json::from_str::<Spec>(
            r#"{"ociVersion":"1.0.2","process":{"args":"sh","cwd":"/"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("invalid type"), "{err}");
    }
}
