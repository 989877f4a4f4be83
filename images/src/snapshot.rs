//! A container's root filesystem from an image's layers: overlayfs.
//!
//! overlayfs (see the kernel's Documentation/filesystems/overlayfs.rst)
//! stacks read-only *lower* directories, the image's layers top first, under
//! one writable *upper* directory; `workdir` is its scratch space on the
//! same file system. Reads fall through to the highest layer that has the
//! file; a 0/0 character device in a layer hides the file below (a
//! whiteout), `trusted.overlay.opaque=y` hides a whole directory below. The
//! layers are shared by every container of the image and never written;
//! what a container changes lands in its own upper directory.
//!
//! A bundle made here is `DIR/rootfs` (the overlay mount, or a plain copy
//! with `copy`), `DIR/upper` and `DIR/work`.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::store::{ImageRecord, Store};

/// Why making or releasing a container's root filesystem failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Creating, reading or removing a file or directory failed (or `cp` could
    /// not be run).
    #[error("{path}: {err}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        err: io::Error,
    },
    /// Mounting the overlay failed, or unmounting it on release.
    #[error("mount overlay at {path}: {err}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The mount(2) or umount2(2) error.
        err: nix::Error,
    },
    /// The bundle directory already has content.
    #[error("{0} exists and is not empty")]
    NotEmpty(PathBuf),
    /// A layer of the image (by chain id) is not in the store.
    #[error("layer {0} is missing from the store: pull or import the image again")]
    MissingLayer(String),
    /// Copying the merged tree (`copy`) with `cp -a` failed.
    #[error("copy the image's files to {path}: {why}")]
    Copy {
        /// The destination `rootfs`.
        path: PathBuf,
        /// What `cp` printed on stderr.
        why: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |err| SnapshotError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// Mount `rec`'s layers at `target` with `upper`/`work` (absolute paths).
/// Lower directories are given relative to the store's `layers/`, entered
/// with a chdir around the call: mount options are limited to one page,
/// which absolute paths of a 40-layer image would overflow.
fn mount_overlay(
    store: &Store,
    rec: &ImageRecord,
    target: &Path,
    upper: &Path,
    work: &Path,
) -> Result<(), SnapshotError> {
    let layers = store.root().join("layers");
    let mut lower: Vec<String> = Vec::new();
    for c in rec.chain.iter().rev() {
        if !store.has_layer(c) {
            return Err(SnapshotError::MissingLayer(c.to_string()));
        }
        lower.push(c.hex().to_string());
    }
    if lower.is_empty() {
        // An image without layers: an empty directory as the only lower.
        let empty = store.root().join("layers/empty");
        std::fs::create_dir_all(&empty).map_err(io_err(&empty))?;
        lower.push("empty".into());
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    let cwd = std::env::current_dir().map_err(io_err(Path::new(".")))?;
    std::env::set_current_dir(&layers).map_err(io_err(&layers))?;
    let r = mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    );
    let _ = std::env::set_current_dir(cwd);
    r.map_err(|err| SnapshotError::Mount {
        path: target.to_path_buf(),
        err,
    })
}

fn ensure_empty_dir(dir: &Path) -> Result<(), SnapshotError> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(SnapshotError::NotEmpty(dir.to_path_buf()));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io_err(dir))
        }
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Make `dir/rootfs` from `rec`: an overlay mount, or with `copy` a plain
/// copy of the merged tree (made through a short-lived overlay mount).
pub fn prepare(
    store: &Store,
    rec: &ImageRecord,
    dir: &Path,
    copy: bool,
) -> Result<PathBuf, SnapshotError> {
    ensure_empty_dir(dir)?;
    let rootfs = dir.join("rootfs");
    let result = (|| {
        std::fs::create_dir(&rootfs).map_err(io_err(&rootfs))?;
        if !copy {
            for d in ["upper", "work"] {
                let p = dir.join(d);
                std::fs::create_dir(&p).map_err(io_err(&p))?;
            }
            return mount_overlay(store, rec, &rootfs, &dir.join("upper"), &dir.join("work"));
        }
        let scratch = store
            .root()
            .join("tmp")
            .join(format!("copy-{}", std::process::id()));
        let (merged, upper, work) = (
            scratch.join("merged"),
            scratch.join("upper"),
            scratch.join("work"),
        );
        for p in [&merged, &upper, &work] {
            std::fs::create_dir_all(p).map_err(io_err(p))?;
        }
        let copied = mount_overlay(store, rec, &merged, &upper, &work).and_then(|()| {
            let out = std::process::Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", merged.display()))
                .arg(&rootfs)
                .output()
                .map_err(io_err(Path::new("cp")))?;
            let _ = umount2(&merged, MntFlags::MNT_DETACH);
            if out.status.success() {
                Ok(())
            } else {
                Err(SnapshotError::Copy {
                    path: rootfs.clone(),
                    why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                })
            }
        });
        let _ = std::fs::remove_dir_all(&scratch);
        copied
    })();
    if result.is_err() {
        let _ = release(dir);
    }
    result.map(|()| rootfs)
}

/// Undo [`prepare`]: unmount `dir/rootfs` if mounted and remove what it made.
pub fn release(dir: &Path) -> Result<(), SnapshotError> {
    let rootfs = dir.join("rootfs");
    match umount2(&rootfs, MntFlags::empty()) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(err) => return Err(SnapshotError::Mount { path: rootfs, err }),
    }
    for d in ["rootfs", "upper", "work", "config.json"] {
        let p = dir.join(d);
        let r = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
            Ok(_) => std::fs::remove_file(&p),
            Err(_) => Ok(()),
        };
        r.map_err(io_err(&p))?;
    }
    let _ = std::fs::remove_dir(dir);
    Ok(())
}
