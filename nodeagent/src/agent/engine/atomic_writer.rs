//! Writing a volume's files so a running container never sees half an
//! update (kubelet's pkg/volume/util/atomic_writer.go).
//!
//! Secret, ConfigMap, downward API and projected volumes are directories
//! of files the node writes and rewrites while containers read them. A
//! container that reads `tls.crt` and then `tls.key` during an update must
//! not get the new certificate with the old key. kubelet's answer, copied
//! here, is one level of indirection:
//!
//! ```text
//! VOLUME/
//!   ..2026_12_03_10_00_00.123456789/   every file of one version
//!       tls.crt  tls.key
//!   ..data -> ..2026_12_03_10_00_00.123456789
//!   tls.crt -> ..data/tls.crt          what users see
//!   tls.key -> ..data/tls.key
//! ```
//!
//! An update writes a whole new version directory, points a new symbolic
//! link `..data_tmp` at it, and renames that over `..data`. rename(2)
//! replaces the link atomically, so a path resolved through `..data`
//! gives either every old file or every new one. Then the user-visible
//! links are added or removed and the old version deleted. A payload equal
//! to what is there writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// One file of a payload: its bytes and permission bits.
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    /// The file's content.
    pub data: Vec<u8>,
    /// Its permission bits (`0o644`...).
    pub mode: u32,
}

/// A volume's files by relative path.
pub type Payload = BTreeMap<String, File>;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Errors of writing a payload.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A payload path that is not allowed (see `check_path`).
    #[error("invalid path {path:?} in volume payload: {why}")]
    Path {
        /// The path.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Writing into the volume's directory failed.
    #[error("write volume {dir}: {source}")]
    Io {
        /// The volume's directory.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// A payload path must be relative, stay below the volume, and not use
/// the `..` names the writer keeps for itself.
pub fn check_path(p: &str) -> Result<(), WriteError> {
    let bad = |why| {
        Err(WriteError::Path {
            path: p.to_string(),
            why,
        })
    };
    if p.is_empty() {
        return bad("empty");
    }
    if p.len() > 4096 {
        return bad("too long");
    }
    let path = Path::new(p);
    if path.is_absolute() {
        return bad("must be relative");
    }
    for c in path.components() {
        match c {
            Component::Normal(s) if s.to_string_lossy().starts_with("..") => {
                return bad("must not start with '..'")
            }
            Component::Normal(_) => {}
            _ => return bad("must not contain '..' or '.'"),
        }
    }
    Ok(())
}

/// The first component of a payload path: what gets a link in the volume.
fn top(p: &str) -> &str {
    p.split('/').next().unwrap_or(p)
}

/// A file's mode on disk: its own, and with a group owner (`fsGroup`) also
/// readable by the group, as kubelet's `SetVolumeOwnership` makes the
/// files of read-only volumes.
fn file_mode(f: &File, gid: Option<u32>) -> u32 {
    if gid.is_some() {
        f.mode | 0o440
    } else {
        f.mode
    }
}

/// Does the version directory `dir` hold exactly `payload`?
fn same(dir: &Path, payload: &Payload, gid: Option<u32>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mut found = BTreeSet::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(dir.join(&rel)) else {
            return false;
        };
        for e in rd.flatten() {
            let r = rel.join(e.file_name());
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(r),
                Ok(_) => {
                    found.insert(r.to_string_lossy().into_owned());
                }
                Err(_) => return false,
            }
        }
    }
    if found.len() != payload.len() {
        return false;
    }
    payload.iter().all(|(p, f)| {
        let full = dir.join(p);
        std::fs::symlink_metadata(&full).is_ok_and(|m| {
            m.is_file() && m.mode() & 0o7777 == f.mode && gid.is_none_or(|g| m.gid() == g)
        }) && std::fs::read(&full).is_ok_and(|d| d == f.data)
    })
}

/// Write `payload` into volume directory `dir` atomically; files get
/// group `gid` when given (the pod's `fsGroup`). Returns whether anything
/// changed.
pub fn write(dir: &Path, payload: &Payload, gid: Option<u32>) -> Result<bool, WriteError> {
    for p in payload.keys() {
        check_path(p)?;
    }
    let io = |source| WriteError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let old = std::fs::read_link(dir.join(DATA)).ok();
    if let Some(o) = &old {
        if same(&dir.join(o), payload, gid) {
            return Ok(false);
        }
    }
    // 1. The new version, in a directory of its own.
    let stamp = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let name = format!(
        "..{}.{:09}",
        stamp.strftime("%Y_%m_%d_%H_%M_%S"),
        stamp.subsec_nanosecond()
    );
    let version = dir.join(&name);
    std::fs::create_dir(&version).map_err(io)?;
    let written = (|| -> io::Result<()> {
        for (p, f) in payload {
            let full = version.join(p);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&full, &f.data)?;
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(file_mode(f, gid)))?;
            if let Some(g) = gid {
                std::os::unix::fs::chown(&full, None, Some(g))?;
            }
        }
        if let Some(g) = gid {
            chown_dirs(&version, g)?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&version);
        return Err(io(e));
    }
    // 2. Point ..data at it, in one rename.
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    symlink(&name, &tmp).map_err(io)?;
    std::fs::rename(&tmp, dir.join(DATA)).map_err(io)?;
    // 3. The links users see: new ones added, stale ones removed.
    let tops: BTreeSet<&str> = payload.keys().map(|p| top(p)).collect();
    for t in &tops {
        let link = dir.join(t);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(t), &link).map_err(io)?;
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with("..") && !tops.contains(n.as_str()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    // 4. The old version goes.
    if let Some(o) = old {
        if o.to_string_lossy().starts_with("..") && !o.to_string_lossy().contains('/') {
            let _ = std::fs::remove_dir_all(dir.join(o));
        }
    }
    Ok(true)
}

/// Directories below a version get group `gid` and the set-group-id bit.
fn chown_dirs(dir: &Path, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(dir, None, Some(gid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2755))?;
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_type()?.is_dir() {
            chown_dirs(&e.path(), gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(items: &[(&str, &str)]) -> Payload {
        items
            .iter()
            .map(|(p, d)| {
                (
                    p.to_string(),
                    File {
                        data: d.as_bytes().to_vec(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn updates_swap_the_data_link() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("vol");
        assert!(write(&dir, &payload(&[("a", "1"), ("sub/b", "2")]), None).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            Path::new("..data/a")
        );
        let first = std::fs::read_link(dir.join(DATA)).unwrap();
        // The same payload again: nothing written.
        assert!(!write(&dir, &payload(&[("a", "1"), ("sub/b", "2")]), None).unwrap());
        assert_eq!(std::fs::read_link(dir.join(DATA)).unwrap(), first);
        // A new payload: a new version, stale links and the old version gone.
        assert!(write(&dir, &payload(&[("a", "9"), ("c", "3")]), None).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "9");
        assert_eq!(std::fs::read_to_string(dir.join("c")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(!dir.join(&first).exists());
        let versions = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_dir())
            .count();
        assert_eq!(versions, 1);
    }

    #[test]
    fn modes_are_kept_and_bad_paths_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut p = payload(&[("k", "v")]);
        p.get_mut("k").unwrap().mode = 0o400;
        write(t.path(), &p, None).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(t.path().join("k")).unwrap().mode() & 0o777,
            0o400
        );
        for bad in ["../x", "/etc/passwd", "a/../../b", "..data", "a/..b", ""] {
            assert!(check_path(bad).is_err(), "{bad} accepted");
        }
        assert!(check_path("a/b.c").is_ok());
    }
}
