//! The calls that change the mount table, behind one narrow trait.
//!
//! Building a root filesystem is a sequence of mount(2) calls, then
//! pivot_root(2) and umount2(2): the order matters (a bind mount needs a
//! remount for `ro`, `/dev` must be a tmpfs before its nodes are bound in,
//! the cgroup tree comes after `/sys`...). [`Kernel`] makes the real calls;
//! a test can pass a recorder instead and check the order a spec produces
//! without root, without touching the mount table. Everything else the
//! setup does (opening paths inside the rootfs, making mount points)
//! happens for real either way.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

/// mount(2), pivot_root(2) and umount2(2).
pub trait MountOps {
    /// mount(2), arguments as the kernel takes them.
    fn mount_raw(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;

    /// pivot_root(2).
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()>;

    /// umount2(2).
    fn umount(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
}

impl dyn MountOps + '_ {
    /// mount(2), with the argument types `nix::mount::mount` takes.
    pub fn mount<S, T, F, D>(
        &self,
        source: Option<&S>,
        target: &T,
        fstype: Option<&F>,
        flags: MsFlags,
        data: Option<&D>,
    ) -> nix::Result<()>
    where
        S: AsRef<Path> + ?Sized,
        T: AsRef<Path> + ?Sized,
        F: AsRef<str> + ?Sized,
        D: AsRef<str> + ?Sized,
    {
        self.mount_raw(
            source.map(|s| s.as_ref()),
            target.as_ref(),
            fstype.map(|f| f.as_ref()),
            flags,
            data.map(|d| d.as_ref()),
        )
    }
}

/// The real system calls.
pub struct Kernel;

impl MountOps for Kernel {
    fn mount_raw(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }
}

/// Records the calls instead of making them, as readable lines, with
/// `/proc/self/fd/N` targets resolved to the paths they name.
#[cfg(test)]
#[derive(Default)]
pub struct Recorder {
    /// Every call made, in order.
    pub calls: std::cell::RefCell<Vec<String>>,
}

#[cfg(test)]
impl Recorder {
    fn name(p: &Path) -> String {
        let s = p.display().to_string();
        if s.starts_with("/proc/self/fd/") {
            if let Ok(real) = std::fs::read_link(p) {
                return real.display().to_string();
            }
        }
        s
    }
}

#[cfg(test)]
impl MountOps for Recorder {
    fn mount_raw(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.calls.borrow_mut().push(format!(
            "mount {} {} {} {:?}{}",
            fstype.unwrap_or("-"),
            source.map_or("-".to_string(), |s| s.display().to_string()),
            Recorder::name(target),
            flags,
            data.map_or(String::new(), |d| format!(" {d}"))
        ));
        Ok(())
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        self.calls.borrow_mut().push(format!(
            "pivot_root {} {}",
            new_root.display(),
            put_old.display()
        ));
        Ok(())
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        self.calls
            .borrow_mut()
            .push(format!("umount {} {flags:?}", target.display()));
        Ok(())
    }
}
