//! Which cgroup layout the host has, read from /proc/self/mountinfo
//! (proc(5)): every mount of type `cgroup` is a v1 hierarchy with the
//! controllers named in its super options, and a mount of type `cgroup2`
//! is the unified tree. Unified, hybrid or legacy follows from which are
//! there (see the parent module and cgroups(7), "CGROUPS VERSION 1" and
//! "CGROUPS VERSION 2").

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CgroupError, Result};

/// The cgroup layout of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// cgroup v2 only, mounted at `/sys/fs/cgroup`.
    Unified,
    /// v1 controllers plus a cgroup2 tree (usually `/sys/fs/cgroup/unified`);
    /// managed as v1.
    Hybrid,
    /// cgroup v1 only.
    Legacy,
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// The cgroup the mount shows as its root (usually `/`).
    pub root: String,
    /// v1 controllers (and `name=...` for named hierarchies); empty for cgroup2.
    pub controllers: Vec<String>,
    /// Whether this is a cgroup2 mount.
    pub v2: bool,
}

/// The hierarchies of this host, read from /proc/self/mountinfo.
pub fn hierarchies() -> Result<Vec<Hierarchy>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(|err| CgroupError::Read {
        path: path.into(),
        err,
    })?;
    Ok(parse_mountinfo(&text))
}

fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let fstype = post[0];
        let mount_point = PathBuf::from(unescape_mount(pre[4]));
        let root = unescape_mount(pre[3]);
        match fstype {
            "cgroup2" => out.push(Hierarchy {
                mount_point,
                root,
                controllers: vec![],
                v2: true,
            }),
            "cgroup" => {
                let known = [
                    "cpuset",
                    "cpu",
                    "cpuacct",
                    "memory",
                    "devices",
                    "freezer",
                    "net_cls",
                    "blkio",
                    "perf_event",
                    "net_prio",
                    "hugetlb",
                    "pids",
                    "rdma",
                    "misc",
                ];
                let controllers = post[2]
                    .split(',')
                    .filter(|o| known.contains(o) || o.starts_with("name="))
                    .map(str::to_string)
                    .collect();
                out.push(Hierarchy {
                    mount_point,
                    root,
                    controllers,
                    v2: false,
                })
            }
            _ => {}
        }
    }
    out
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Work out the host's layout.
pub fn detect_mode(hs: &[Hierarchy]) -> Result<Mode> {
    let has_v1 = hs.iter().any(|h| !h.v2);
    let v2_at_root = hs
        .iter()
        .any(|h| h.v2 && h.mount_point == Path::new("/sys/fs/cgroup"));
    match (has_v1, hs.iter().any(|h| h.v2)) {
        _ if v2_at_root && !has_v1 => Ok(Mode::Unified),
        (true, true) => Ok(Mode::Hybrid),
        (true, false) => Ok(Mode::Legacy),
        (false, true) => Ok(Mode::Unified),
        (false, false) => Err(CgroupError::NoCgroupFs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_layout_is_detected() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n\
32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n\
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let hs = parse_mountinfo(mi);
        assert_eq!(hs.len(), 4);
        assert_eq!(hs[2].controllers, vec!["name=systemd"]);
        assert_eq!(detect_mode(&hs).unwrap(), Mode::Hybrid);
        let unified = "41 23 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            detect_mode(&parse_mountinfo(unified)).unwrap(),
            Mode::Unified
        );
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }
}
