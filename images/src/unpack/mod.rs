//! Unpacking a layer: a tar stream becomes a directory, without ever writing
//! outside it.
//!
//! A layer is a tar archive (gzip- or zstd-compressed, or plain) of the
//! files one build step added, changed or deleted. Its content comes from
//! whoever built the image, so unpacking is a security boundary: runtimes
//! and image tools have had bugs where an entry named `../../etc/cron.d/x`,
//! or a symlink `a -> /etc` followed by a file `a/passwd`, or a hardlink to
//! `/etc/shadow`, wrote to the host. Here:
//!
//! - every path is cleaned first: a `..` component is an error naming the
//!   entry, a leading `/` is dropped (tar paths are relative to the layer);
//! - the directory an entry goes into is opened with openat2(2)
//!   `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: the kernel refuses to leave the
//!   layer or to follow any symlink on the way, so a link planted by an
//!   earlier entry can never redirect a write (the entry is refused);
//! - files are created with `O_EXCL | O_NOFOLLOW` on that directory's
//!   descriptor, symlinks are created but never followed, hardlinks only
//!   to files already in this layer, found the same careful way;
//! - sizes and entry counts are capped, against decompression bombs.
//!
//! Deletions are recorded the way the image spec says (a `.wh.NAME` entry
//! deletes NAME from lower layers, `.wh..wh..opq` hides a whole directory's
//! lower content) and written the way overlayfs reads them: a 0/0
//! character device named NAME, and the `trusted.overlay.opaque=y` extended
//! attribute on the directory. The result is a ready overlayfs lower
//! layer. See the OCI image spec's "layer.md", tar(5), overlayfs docs.

mod fsops;

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

use crate::digest::{Digest, Hasher};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Zstandard (RFC 8878).
    Zstd,
}

impl Compression {
    /// From a layer media type (OCI or Docker).
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        if mt.ends_with("+gzip") || mt.ends_with(".gzip") || mt.ends_with("tar.gzip") {
            Some(Compression::Gzip)
        } else if mt.ends_with("+zstd") {
            Some(Compression::Zstd)
        } else if mt.ends_with(".tar") || mt.ends_with("layer.v1.tar") {
            Some(Compression::None)
        } else {
            None
        }
    }

    /// From the first bytes of the blob (gzip 1f 8b, zstd 28 b5 2f fd).
    pub fn sniff(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// Caps against decompression bombs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Uncompressed bytes of one layer's tar stream.
    pub max_size: u64,
    /// Entries in one layer.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: 32 << 30,
            max_entries: 2_000_000,
        }
    }
}

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry was refused as unsafe or malformed: its path leaves the layer
    /// or goes through a symlink, a bad whiteout or link, an unsupported type.
    #[error("layer entry {entry:?}: {why}")]
    Refused {
        /// The entry's path in the tar stream.
        entry: String,
        /// Why it was refused.
        why: String,
    },
    /// A system call for an entry failed.
    #[error("layer entry {entry:?}: {op}: {err}")]
    Sys {
        /// The entry's path in the tar stream.
        entry: String,
        /// The operation (`"create directory"`, `"replace"`...).
        op: &'static str,
        /// The error it returned.
        err: Errno,
    },
    /// The uncompressed stream is larger than [`Limits::max_size`] (given, in
    /// bytes).
    #[error("layer is larger than the limit of {0} bytes uncompressed (--max-layer-size)")]
    TooLarge(u64),
    /// The layer has more entries than [`Limits::max_entries`] (given).
    #[error("layer has more than {0} entries (--max-entries)")]
    TooManyEntries(u64),
    /// Reading or decompressing the blob failed, or an entry's header is bad.
    #[error("reading layer: {0}")]
    Read(#[source] io::Error),
    /// The destination directory could not be opened.
    #[error("open layer directory {path}: {err}")]
    Dest {
        /// The destination directory.
        path: PathBuf,
        /// The open error.
        err: Errno,
    },
}

/// What unpacking a layer found out.
#[derive(Debug, Clone, PartialEq)]
pub struct Unpacked {
    /// The digest of the uncompressed tar stream (the image config's diff_id).
    pub diff_id: Digest,
    /// Uncompressed size of the tar stream.
    pub size: u64,
    /// How many entries the tar stream had.
    pub entries: u64,
}

/// Marker inside the io::Error a [`Limited`] reader returns.
#[derive(Debug)]
struct LimitReached;
impl std::fmt::Display for LimitReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("size limit reached")
    }
}
impl std::error::Error for LimitReached {}

/// A reader that fails once more than `left` bytes went through.
struct Limited<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::other(LimitReached));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn read_err(limits: &Limits) -> impl Fn(io::Error) -> UnpackError + '_ {
    move |e| {
        if e.get_ref().is_some_and(|i| i.is::<LimitReached>()) {
            UnpackError::TooLarge(limits.max_size)
        } else {
            UnpackError::Read(e)
        }
    }
}

/// Unpack the (possibly compressed) layer in `blob` into `dest`, an existing
/// empty directory.
pub fn unpack(
    blob: impl Read,
    compression: Compression,
    dest: &Path,
    limits: &Limits,
) -> Result<Unpacked, UnpackError> {
    let decompressed: Box<dyn Read> = match compression {
        Compression::None => Box::new(blob),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(blob)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(blob).map_err(UnpackError::Read)?)
        }
    };
    let limited = Limited {
        inner: decompressed,
        left: limits.max_size,
    };
    let mut hashed = Hasher::new(limited);
    let root = fsops::open_root(dest).map_err(|err| UnpackError::Dest {
        path: dest.to_path_buf(),
        err,
    })?;
    let mut state = Layer {
        root,
        dir_times: Vec::new(),
        entries: 0,
    };
    {
        let mut archive = tar::Archive::new(&mut hashed);
        let entries = archive.entries().map_err(read_err(limits))?;
        for entry in entries {
            let mut entry = entry.map_err(read_err(limits))?;
            state.entries += 1;
            if state.entries > limits.max_entries {
                return Err(UnpackError::TooManyEntries(limits.max_entries));
            }
            state.apply(&mut entry, limits)?;
        }
    }
    // The diff_id covers the whole stream, padding after the end marker too.
    io::copy(&mut hashed, &mut io::sink()).map_err(read_err(limits))?;
    state.finish_dirs();
    let size = hashed.len();
    let (diff_id, _) = hashed.finish();
    Ok(Unpacked {
        diff_id,
        size,
        entries: state.entries,
    })
}

/// Clean a tar path: drop a leading `/` and `.` components; refuse `..`.
/// `None` for the layer root itself.
pub fn clean_path(raw: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return Err("path has a '..' component".into()),
            Component::Prefix(_) => return Err("path has a prefix".into()),
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

struct Layer {
    root: OwnedFd,
    /// Directory mtimes, applied at the end (writing children changes them).
    dir_times: Vec<(PathBuf, i64)>,
    entries: u64,
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

impl Layer {
    fn apply<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        limits: &Limits,
    ) -> Result<(), UnpackError> {
        let raw = entry
            .path()
            .map_err(|e| UnpackError::Read(io::Error::other(format!("bad entry path: {e}"))))?
            .into_owned();
        let name_for_errors = raw.display().to_string();
        let refuse = |why: String| UnpackError::Refused {
            entry: name_for_errors.clone(),
            why,
        };
        let Some(path) = clean_path(&raw).map_err(refuse)? else {
            return Ok(()); // the layer root's own entry ("./")
        };
        let sys = |op: &'static str| {
            let entry = name_for_errors.clone();
            move |err: Errno| UnpackError::Sys { entry, op, err }
        };
        let parent_path = path.parent().unwrap_or(Path::new(""));
        let name = path
            .file_name()
            .ok_or_else(|| refuse("no file name".into()))?
            .to_os_string();
        let parent =
            fsops::open_dir_beneath(self.root.as_fd(), parent_path, true).map_err(|e| match e {
                Errno::ELOOP => refuse(format!(
                    "its directory {} goes through a symlink: refusing to write through it",
                    parent_path.display()
                )),
                Errno::ENOTDIR => refuse(format!("{} is not a directory", parent_path.display())),
                Errno::EXDEV => refuse("path leaves the layer".into()),
                e => UnpackError::Sys {
                    entry: name_for_errors.clone(),
                    op: "open parent directory",
                    err: e,
                },
            })?;
        let name_str = name.to_string_lossy();
        if name_str == OPAQUE {
            return fsops::set_opaque(parent.as_fd()).map_err(sys("mark directory opaque"));
        }
        if let Some(target) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            if target.is_empty()
                || target == "."
                || target == ".."
                || target.starts_with(WHITEOUT_PREFIX)
            {
                return Err(refuse(format!("whiteout names {target:?}")));
            }
            fsops::remove_any(parent.as_fd(), target.as_ref()).map_err(sys("remove"))?;
            return fsops::whiteout(parent.as_fd(), target.as_ref())
                .map_err(sys("create whiteout"));
        }

        let header = entry.header();
        let kind = header.entry_type();
        let meta = fsops::Meta {
            mode: header.mode().unwrap_or(0o644) & 0o7777,
            uid: header.uid().unwrap_or(0) as u32,
            gid: header.gid().unwrap_or(0) as u32,
            mtime: header.mtime().unwrap_or(0) as i64,
            xattrs: xattrs(entry)?,
        };
        let header = entry.header();
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                fsops::make_dir(parent.as_fd(), &name, &meta).map_err(sys("create directory"))?;
                self.dir_times.push((path.clone(), meta.mtime));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                fsops::remove_any(parent.as_fd(), &name).map_err(sys("replace"))?;
                let size = entry.size();
                if size > limits.max_size {
                    return Err(UnpackError::TooLarge(limits.max_size));
                }
                fsops::write_file(parent.as_fd(), &name, entry, &meta).map_err(|e| match e {
                    fsops::WriteError::Sys(op, err) => UnpackError::Sys {
                        entry: name_for_errors.clone(),
                        op,
                        err,
                    },
                    fsops::WriteError::Read(e) => read_err(limits)(e),
                })?;
            }
            T::Symlink => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| refuse("symlink without a target".into()))?
                    .into_owned();
                fsops::remove_any(parent.as_fd(), &name).map_err(sys("replace"))?;
                fsops::make_symlink(parent.as_fd(), &name, &target, &meta)
                    .map_err(sys("create symlink"))?;
            }
            T::Link => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| refuse("hardlink without a target".into()))?
                    .into_owned();
                let target = clean_path(&target)
                    .map_err(|why| refuse(format!("hardlink target {}: {why}", target.display())))?
                    .ok_or_else(|| refuse("hardlink to the layer root".into()))?;
                let tparent_path = target.parent().unwrap_or(Path::new(""));
                let tparent = fsops::open_dir_beneath(self.root.as_fd(), tparent_path, false).map_err(|e| {
                    refuse(format!(
                        "hardlink target {} is not a file of this layer reachable without symlinks ({e})",
                        target.display()
                    ))
                })?;
                let tname = target.file_name().unwrap_or_default();
                fsops::remove_any(parent.as_fd(), &name).map_err(sys("replace"))?;
                fsops::hardlink(tparent.as_fd(), tname, parent.as_fd(), &name)
                    .map_err(|e| refuse(format!("hardlink to {}: {e}", target.display())))?;
            }
            T::Char | T::Block | T::Fifo => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                fsops::remove_any(parent.as_fd(), &name).map_err(sys("replace"))?;
                fsops::make_node(parent.as_fd(), &name, kind, major, minor, &meta)
                    .map_err(sys("create device node"))?;
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {}
            other => {
                return Err(refuse(format!("unsupported entry type {other:?}")));
            }
        }
        Ok(())
    }

    /// Set directory mtimes, deepest first, now that nothing more is written.
    fn finish_dirs(&mut self) {
        self.dir_times
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, mtime) in &self.dir_times {
            let _ = fsops::set_mtime(self.root.as_fd(), p, *mtime);
        }
    }
}

/// Extended attributes recorded in PAX headers (`SCHILY.xattr.NAME`).
fn xattrs<R: Read>(entry: &mut tar::Entry<R>) -> Result<HashMap<String, Vec<u8>>, UnpackError> {
    let mut out = HashMap::new();
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if let Ok(key) = ext.key() {
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    out.insert(name.to_string(), ext.value_bytes().to_vec());
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
