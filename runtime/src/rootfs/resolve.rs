//! Resolving paths inside the container's root filesystem without ever
//! leaving it.
//!
//! The rootfs belongs to whoever built the image, so any path in it may be a
//! symlink planted to point at the host (`/etc -> /proc/1/root/etc`). If the
//! runtime followed such a link while mounting, a bind mount would land on
//! the host (runc CVE-2021-30465 and relatives). Here every lookup uses
//! openat2(2) with `RESOLVE_IN_ROOT`: the kernel treats the rootfs directory
//! as `/` for the whole walk, so absolute symlinks and `..` stay inside it,
//! exactly as they will once the container runs. The result is a file
//! descriptor, and mounts are made on `/proc/self/fd/N`, so what was checked
//! is what gets mounted on.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};

/// Open `path` (absolute or relative: either way taken from `root`) inside
/// `root` with `flags`, never leaving `root`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let rel = relative(path);
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    loop {
        match openat2(root, rel.as_path(), how) {
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// `path` with the leading `/` removed (`.` for the root itself).
pub fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// `mkdir -p` inside `root`: every component is resolved in root, created if
/// missing. Returns an `O_PATH` descriptor of the final directory.
pub fn mkdir_all_in_root(root: BorrowedFd<'_>, path: &Path, mode: Mode) -> nix::Result<OwnedFd> {
    mkdir_all_depth(root, path, mode, 0)
}

/// Symlinks followed while creating directories, at most (like the kernel's 40).
const MAX_LINKS: u32 = 40;

fn mkdir_all_depth(
    root: BorrowedFd<'_>,
    path: &Path,
    mode: Mode,
    depth: u32,
) -> nix::Result<OwnedFd> {
    if depth > MAX_LINKS {
        return Err(Errno::ELOOP);
    }
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let mut cur = PathBuf::new();
    let mut parent = open_in_root(root, Path::new("."), dir_flags)?;
    for comp in relative(path).components() {
        let Component::Normal(name) = comp else {
            // ".." inside the path: resolve as the kernel would, within root.
            cur.push(comp.as_os_str());
            parent = open_in_root(root, &cur, dir_flags)?;
            continue;
        };
        cur.push(name);
        parent = match open_in_root(root, &cur, dir_flags) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match mkdirat(parent.as_fd(), name, mode) {
                    Ok(()) => {}
                    // A dangling symlink: create what it points to, inside root.
                    Err(Errno::EEXIST) => {
                        follow_dangling(root, parent.as_fd(), name, &cur, mode, depth)?
                    }
                    Err(e) => return Err(e),
                }
                open_in_root(root, &cur, dir_flags)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(parent)
}

/// `name` in `parent` is a symlink whose target does not exist: create the
/// target as a directory, the way the kernel would resolve the link with
/// `root` as `/` (so an absolute target lands inside root too).
fn follow_dangling(
    root: BorrowedFd<'_>,
    parent: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    cur: &Path,
    mode: Mode,
    depth: u32,
) -> nix::Result<()> {
    let target = nix::fcntl::readlinkat(parent, name)?;
    let target = Path::new(&target);
    let resolved = if target.is_absolute() {
        target.to_path_buf()
    } else {
        cur.parent().unwrap_or(Path::new("")).join(target)
    };
    mkdir_all_depth(root, &resolved, mode, depth + 1).map(drop)
}

/// Make sure a regular file exists at `path` inside `root` (creating parent
/// directories), for bind-mounting a file onto it. Returns an `O_PATH` fd.
pub fn create_file_in_root(root: BorrowedFd<'_>, path: &Path) -> nix::Result<OwnedFd> {
    if let Some(parent) = path.parent() {
        mkdir_all_in_root(root, parent, Mode::from_bits_truncate(0o755))?;
    }
    match open_in_root(root, path, OFlag::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let how = OpenHow::new()
        .flags(OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .mode(Mode::from_bits_truncate(0o755))
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    drop(openat2(root, relative(path).as_path(), how)?);
    open_in_root(root, path, OFlag::O_PATH)
}

/// Like [`create_file_in_root`], for files the runtime itself puts in place
/// (`/dev/console`, device nodes in a user namespace): the last component is
/// never followed. A symlink there fails with `ELOOP` and a directory with
/// `EISDIR`, so a link planted in the rootfs cannot steer the mount onto
/// another file of the container, such as one under /proc (the 2025 runc
/// advisories on /dev/console and masked paths).
pub fn create_own_file_in_root(root: BorrowedFd<'_>, path: &Path) -> nix::Result<OwnedFd> {
    let parent_path = path.parent().unwrap_or(Path::new("/"));
    let parent = mkdir_all_in_root(root, parent_path, Mode::from_bits_truncate(0o755))?;
    let name = path.file_name().ok_or(Errno::EINVAL)?;
    let how = OpenHow::new()
        .flags(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC)
        .mode(Mode::from_bits_truncate(0o644))
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    match openat2(parent.as_fd(), Path::new(name), how) {
        Ok(fd) => drop(fd),
        Err(Errno::EEXIST) => {}
        Err(e) => return Err(e),
    }
    let fd = nix::fcntl::openat(
        parent.as_fd(),
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let st = nix::sys::stat::fstat(&fd)?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFLNK => Err(Errno::ELOOP),
        libc::S_IFDIR => Err(Errno::EISDIR),
        _ => Ok(fd),
    }
}

/// The path through which the kernel reaches exactly the file `fd` refers to.
pub fn proc_fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn real(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(proc_fd_path(fd)).unwrap()
    }

    #[test]
    fn lookups_never_leave_the_root() {
        let host = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        let root = std::fs::File::open(root_dir.path()).unwrap();
        std::fs::create_dir(root_dir.path().join("etc")).unwrap();
        // An absolute symlink and a climbing one, both meant for the host.
        std::os::unix::fs::symlink(host.path(), root_dir.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../..", root_dir.path().join("up")).unwrap();
        let mode = Mode::from_bits_truncate(0o755);
        let made = mkdir_all_in_root(root.as_fd(), Path::new("/abs/x"), mode).unwrap();
        assert!(
            real(&made).starts_with(root_dir.path()),
            "{:?}",
            real(&made)
        );
        assert!(!host.path().join("x").exists(), "made on the host");
        let up = mkdir_all_in_root(root.as_fd(), Path::new("/up/y"), mode).unwrap();
        assert_eq!(
            real(&up),
            root_dir.path().join("y"),
            "`..` stops at the root"
        );
        let dots = open_in_root(root.as_fd(), Path::new("/../../etc"), OFlag::O_PATH).unwrap();
        assert_eq!(real(&dots), root_dir.path().join("etc"));
        let file = create_file_in_root(root.as_fd(), Path::new("/etc/new")).unwrap();
        assert_eq!(real(&file), root_dir.path().join("etc/new"));
    }

    #[test]
    fn relative_drops_the_leading_slashes() {
        assert_eq!(relative(Path::new("/a/b")), PathBuf::from("a/b"));
        assert_eq!(relative(Path::new("a")), PathBuf::from("a"));
    }
}
