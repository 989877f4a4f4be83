//! The file-system calls behind [`super::unpack`], each made relative to a
//! directory descriptor that was opened without following symlinks.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmodat, fstatat, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

/// Ownership, permissions, time and extended attributes of one entry.
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub xattrs: HashMap<String, Vec<u8>>,
}

pub enum WriteError {
    Sys(&'static str, Errno),
    Read(io::Error),
}

fn no_symlinks() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_XDEV
}

pub fn open_root(dest: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        dest,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
}

fn open_dir_step(dir: BorrowedFd<'_>, rel: &Path) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(no_symlinks());
    loop {
        match openat2(dir, rel, how) {
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// Open directory `rel` below `root` without leaving it or following any
/// symlink (ELOOP if one is in the way); with `create`, make missing
/// directories (mode 0755), as tar archives may omit them.
pub fn open_dir_beneath(root: BorrowedFd<'_>, rel: &Path, create: bool) -> nix::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    match open_dir_step(root, rel) {
        Err(Errno::ENOENT) if create => {}
        other => return other,
    }
    let mut cur = open_dir_step(root, Path::new("."))?;
    for comp in rel.components() {
        let name = comp.as_os_str();
        cur = match open_dir_step(cur.as_fd(), Path::new(name)) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match mkdirat(cur.as_fd(), name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                open_dir_step(cur.as_fd(), Path::new(name))?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(cur)
}

use std::os::fd::AsFd;

fn cstr(s: &str) -> nix::Result<CString> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}

fn set_xattrs(fd: &impl AsRawFd, xattrs: &HashMap<String, Vec<u8>>) -> nix::Result<()> {
    for (name, value) in xattrs {
        let n = cstr(name)?;
        // SAFETY: valid descriptor, NUL-terminated name, value pointer and
        // length from a live Vec.
        let r = unsafe {
            libc::fsetxattr(
                fd.as_raw_fd(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if r != 0 {
            match Errno::last() {
                // A file system without this namespace: keep going, as tar does.
                Errno::ENOTSUP => tracing::debug!("xattr {name} not supported here"),
                e => return Err(e),
            }
        }
    }
    Ok(())
}

/// Mark a directory opaque for overlayfs: lower layers' content is hidden.
pub fn set_opaque(dir: BorrowedFd<'_>) -> nix::Result<()> {
    let fd = openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut x = HashMap::new();
    x.insert("trusted.overlay.opaque".to_string(), b"y".to_vec());
    set_xattrs(&fd, &x)
}

/// An overlayfs whiteout: a character device 0/0 named like the deleted file.
pub fn whiteout(parent: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
    mknodat(parent, name, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
}

/// Remove whatever is at `name` (recursively for a directory, never
/// following a symlink); nothing there is fine.
pub fn remove_any(parent: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
    let st = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return unlinkat(parent, name, UnlinkatFlags::NoRemoveDir);
    }
    let dirfd = openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut dir = nix::dir::Dir::from_fd(dirfd)?;
    let names: Vec<Vec<u8>> = dir
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    for n in names {
        remove_any(dir.as_fd(), OsStr::from_bytes(&n))?;
    }
    unlinkat(parent, name, UnlinkatFlags::RemoveDir)
}

/// Set the owner of `name` itself (a symlink is not followed).
fn chown_nofollow(parent: BorrowedFd<'_>, name: &OsStr, meta: &Meta) -> nix::Result<()> {
    fchownat(
        parent,
        name,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

fn apply_owner_mode(parent: BorrowedFd<'_>, name: &OsStr, meta: &Meta) -> nix::Result<()> {
    chown_nofollow(parent, name, meta)?;
    // After chown, which clears setuid/setgid bits.
    fchmodat(
        parent,
        name,
        Mode::from_bits_truncate(meta.mode),
        FchmodatFlags::FollowSymlink,
    )
}

fn times(mtime: i64) -> (TimeSpec, TimeSpec) {
    let t = TimeSpec::new(mtime, 0);
    (t, t)
}

pub fn make_dir(parent: BorrowedFd<'_>, name: &OsStr, meta: &Meta) -> nix::Result<()> {
    match mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
        Ok(()) => {}
        Err(Errno::EEXIST) => {
            let st = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                remove_any(parent, name)?;
                mkdirat(parent, name, Mode::from_bits_truncate(0o700))?;
            }
        }
        Err(e) => return Err(e),
    }
    apply_owner_mode(parent, name, meta)?;
    if !meta.xattrs.is_empty() {
        let fd = openat(
            parent,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        set_xattrs(&fd, &meta.xattrs)?;
    }
    Ok(())
}

/// Create a new regular file with `data`'s content. Runs of zero bytes are
/// skipped with lseek, so sparse files stay sparse.
pub fn write_file(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    mut data: impl Read,
    meta: &Meta,
) -> Result<(), WriteError> {
    let fd = openat(
        parent,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| WriteError::Sys("create file", e))?;
    let mut f = File::from(fd);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = data.read(&mut buf).map_err(WriteError::Read)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let io = if chunk.iter().all(|b| *b == 0) {
            f.seek(SeekFrom::Current(n as i64)).map(drop)
        } else {
            f.write_all(chunk)
        };
        io.map_err(|e| {
            WriteError::Sys(
                "write file",
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
        total += n as u64;
    }
    f.set_len(total).map_err(|e| {
        WriteError::Sys(
            "truncate file",
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    let sys = |op| move |e| WriteError::Sys(op, e);
    nix::unistd::fchown(
        &f,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
    )
    .map_err(sys("chown"))?;
    nix::sys::stat::fchmod(&f, Mode::from_bits_truncate(meta.mode)).map_err(sys("chmod"))?;
    set_xattrs(&f, &meta.xattrs).map_err(sys("set xattr"))?;
    let (a, m) = times(meta.mtime);
    nix::sys::stat::futimens(&f, &a, &m).map_err(sys("set times"))
}

pub fn make_symlink(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    target: &Path,
    meta: &Meta,
) -> nix::Result<()> {
    symlinkat(target, parent, name)?;
    chown_nofollow(parent, name, meta)?;
    let (a, m) = times(meta.mtime);
    utimensat(parent, name, &a, &m, UtimensatFlags::NoFollowSymlink)
}

/// A hardlink `name` in `parent` to `tname` in `tparent`; never follows a
/// symlink target (linkat(2) without `AT_SYMLINK_FOLLOW`).
pub fn hardlink(
    tparent: BorrowedFd<'_>,
    tname: &OsStr,
    parent: BorrowedFd<'_>,
    name: &OsStr,
) -> nix::Result<()> {
    linkat(tparent, tname, parent, name, AtFlags::empty())
}

pub fn make_node(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    kind: tar::EntryType,
    major: u32,
    minor: u32,
    meta: &Meta,
) -> nix::Result<()> {
    let sflag = match kind {
        tar::EntryType::Char => SFlag::S_IFCHR,
        tar::EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    mknodat(
        parent,
        name,
        sflag,
        Mode::from_bits_truncate(meta.mode),
        makedev(major as u64, minor as u64),
    )?;
    apply_owner_mode(parent, name, meta)?;
    let (a, m) = times(meta.mtime);
    utimensat(parent, name, &a, &m, UtimensatFlags::NoFollowSymlink)
}

/// Set a directory's mtime (after its children were written).
pub fn set_mtime(root: BorrowedFd<'_>, path: &Path, mtime: i64) -> nix::Result<()> {
    let parent = open_dir_beneath(root, path.parent().unwrap_or(Path::new("")), false)?;
    let name = path.file_name().ok_or(Errno::EINVAL)?;
    let (a, m) = times(mtime);
    utimensat(
        parent.as_fd(),
        name,
        &a,
        &m,
        UtimensatFlags::NoFollowSymlink,
    )
}
