//! Terminals: when `process.terminal` is true the container's stdio is a
//! pseudo-terminal (pty(7)) instead of the caller's pipes.
//!
//! The init opens `/dev/ptmx` inside the container (its own devpts
//! instance), which yields a master/slave pair. The slave becomes the
//! process's stdin, stdout, stderr and controlling terminal, and is
//! bind-mounted at `/dev/console`. The master goes to whoever drives the
//! terminal: it is sent over the unix socket given with `--console-socket`
//! as an `SCM_RIGHTS` message (unix(7)), the protocol runc documents in
//! docs/terminals.md and containerd implements.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{mount as sys_mount, MsFlags};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};

/// Why the container's terminal could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    /// The `--console-socket` cannot be connected to.
    #[error("dial unix {path}: connect: {err}")]
    Connect {
        /// The socket's path.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// A pty or socket system call failed.
    #[error("{op}: {err}")]
    Sys {
        /// What was being done (`"grantpt"`, `"open pty slave"`...).
        op: &'static str,
        /// The error.
        err: nix::Error,
    },
    /// The pty master could not be sent over the console socket, or received
    /// from it.
    #[error("send console master: {0}")]
    Send(#[from] crate::sync::SyncError),
    /// `/dev/console` cannot be bind-mounted to the pty slave.
    #[error("bind mount /dev/console: {0}")]
    Console(String),
}

/// Connect to the `--console-socket` path (done by the runtime, which can
/// still see the host's filesystem).
pub fn connect(path: &Path) -> Result<OwnedFd, TerminalError> {
    let s = UnixStream::connect(path).map_err(|err| TerminalError::Connect {
        path: path.to_path_buf(),
        err,
    })?;
    Ok(OwnedFd::from(s))
}

nix::ioctl_write_ptr_bad!(
    /// `TIOCSWINSZ` (ioctl_tty(2)): set the window size of the terminal `fd`.
    ///
    /// # Safety
    ///
    /// `data` must point at a valid `winsize`.
    tiocswinsz,
    libc::TIOCSWINSZ,
    libc::winsize
);

/// In the init (after pivot_root): make the pty, hand out the master, and
/// make the slave our stdio and controlling terminal.
pub fn setup(
    socket: RawFd,
    size: Option<(u16, u16)>,
    mount_console: bool,
) -> Result<(), TerminalError> {
    crate::explain!("pty(7)", "opening /dev/ptmx in the container: the slave end becomes stdio, the master goes to the console socket");
    let master =
        posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(|err| {
            TerminalError::Sys {
                op: "open /dev/ptmx",
                err,
            }
        })?;
    grantpt(&master).map_err(|err| TerminalError::Sys { op: "grantpt", err })?;
    unlockpt(&master).map_err(|err| TerminalError::Sys {
        op: "unlockpt",
        err,
    })?;
    let slave_path = ptsname_r(&master).map_err(|err| TerminalError::Sys { op: "ptsname", err })?;
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the call.
        unsafe { tiocswinsz(master.as_raw_fd(), &ws) }.map_err(|err| TerminalError::Sys {
            op: "set console size",
            err,
        })?;
    }
    let slave = open_peer(&master, &slave_path)?;
    if mount_console {
        mount_dev_console(&slave)?;
    }
    // SAFETY: `master` is a valid open descriptor we own for this call.
    let master_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(master.as_raw_fd()) };
    crate::sync::send_fd(socket, master_fd)?;
    drop(master);
    // New session, then the slave becomes its controlling terminal.
    let _ = nix::unistd::setsid();
    // SAFETY: TIOCSCTTY takes an integer argument, no memory.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(TerminalError::Sys {
            op: "set controlling terminal",
            err: nix::Error::last(),
        });
    }
    for target in 0..3 {
        // SAFETY: dup2 onto 0, 1 and 2, which this process owns as its stdio.
        let fd = unsafe { nix::unistd::dup2_raw(slave.as_fd(), target) }.map_err(|err| {
            TerminalError::Sys {
                op: "dup2 pty slave",
                err,
            }
        })?;
        std::mem::forget(fd);
    }
    Ok(())
}

/// Bind-mount the pty slave at /dev/console (created inside the root if missing).
/// The slave end of `master`, obtained from the master itself with
/// `TIOCGPTPEER` (ioctl_tty(2)) rather than by path, so a symlink planted
/// in the rootfs's /dev/pts cannot substitute another file; checked to be a
/// pty slave (major 136..=143). Kernels before 4.13 fall back to the path.
fn open_peer(master: &nix::pty::PtyMaster, path: &str) -> Result<OwnedFd, TerminalError> {
    use std::os::fd::FromRawFd;
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), TIOCGPTPEER as _, flags) };
    let slave = if fd >= 0 {
        // SAFETY: the kernel just returned this descriptor to us.
        unsafe { OwnedFd::from_raw_fd(fd) }
    } else {
        nix::fcntl::open(
            path,
            OFlag::from_bits_truncate(flags),
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|err| TerminalError::Sys {
            op: "open pty slave",
            err,
        })?
    };
    let st = nix::sys::stat::fstat(&slave).map_err(|err| TerminalError::Sys {
        op: "stat pty slave",
        err,
    })?;
    let major = nix::sys::stat::major(st.st_rdev);
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || !(136..=143).contains(&major) {
        return Err(TerminalError::Console(format!("{path} is not a pty slave")));
    }
    Ok(slave)
}

fn mount_dev_console(slave: &OwnedFd) -> Result<(), TerminalError> {
    let root = std::fs::File::open("/").map_err(|e| TerminalError::Console(e.to_string()))?;
    let target =
        crate::rootfs::resolve::create_own_file_in_root(root.as_fd(), Path::new("/dev/console"))
            .map_err(|e| match e {
                nix::errno::Errno::ELOOP => TerminalError::Console(
                    "/dev/console is a symlink: refusing to mount the console through it".into(),
                ),
                e => TerminalError::Console(format!("/dev/console: {e}")),
            })?;
    sys_mount(
        Some(crate::rootfs::resolve::proc_fd_path(slave).as_str()),
        crate::rootfs::resolve::proc_fd_path(&target).as_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| TerminalError::Console(e.to_string()))
}

/// A terminal for a foreground `run` or `exec` without `--console-socket`:
/// skiff itself receives the pty master and copies bytes between it and its
/// own stdin/stdout, with its own terminal in raw mode while it does.
pub struct ForegroundConsole {
    ours: OwnedFd,
    /// The end handed to the init as its console socket.
    pub theirs: OwnedFd,
}

impl ForegroundConsole {
    /// A connected socket pair: one end for us, one for the init.
    pub fn new() -> Result<Self, TerminalError> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|err| TerminalError::Sys {
            op: "socketpair",
            err,
        })?;
        Ok(ForegroundConsole { ours: a, theirs: b })
    }

    /// Receive the master and start copying in background threads. The
    /// returned proxy restores the caller's terminal when dropped.
    pub fn start_proxy(self) -> Result<Proxy, TerminalError> {
        drop(self.theirs);
        let master = crate::sync::recv_fd(self.ours.as_raw_fd())?;
        let stdin = std::io::stdin();
        let mut saved = None;
        if nix::unistd::isatty(stdin.as_fd()).unwrap_or(false) {
            if let Ok(t) = nix::sys::termios::tcgetattr(stdin.as_fd()) {
                let mut raw = t.clone();
                nix::sys::termios::cfmakeraw(&mut raw);
                let _ = nix::sys::termios::tcsetattr(
                    stdin.as_fd(),
                    nix::sys::termios::SetArg::TCSANOW,
                    &raw,
                );
                saved = Some(t);
            }
        }
        let dup = |m: &OwnedFd| {
            m.try_clone()
                .map_err(|e| TerminalError::Console(e.to_string()))
        };
        let mut m_in = File::from(dup(&master)?);
        let mut m_out = File::from(dup(&master)?);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut m_in);
        });
        let (done, drained) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut out = std::io::stdout();
            // Ends with EIO once every slave descriptor is closed.
            let _ = std::io::copy(&mut m_out, &mut out);
            let _ = std::io::Write::flush(&mut out);
            drop(done);
        });
        let proxy = Proxy {
            saved,
            master,
            drained,
        };
        proxy.resize();
        Ok(proxy)
    }
}

/// A running terminal proxy (see [`ForegroundConsole::start_proxy`]).
pub struct Proxy {
    saved: Option<nix::sys::termios::Termios>,
    master: OwnedFd,
    /// Disconnected when the output copier has finished.
    drained: std::sync::mpsc::Receiver<()>,
}

impl Proxy {
    /// Copy our terminal's size to the container's: the kernel then sends
    /// SIGWINCH to the container's foreground processes itself.
    pub fn resize(&self) {
        if let Ok((rows, cols)) = terminal_size() {
            let ws = libc::winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the call.
            let _ = unsafe { tiocswinsz(self.master.as_raw_fd(), &ws) };
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The container's last output may still sit in the pty when its
        // process has exited: let the copier drain it. It ends when every
        // slave is closed; a background process may hold one open, hence
        // the bound.
        let _ = self.drained.recv_timeout(std::time::Duration::from_secs(1));
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

use std::fs::File;

fn terminal_size() -> Result<(u16, u16), nix::Error> {
    nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize struct we own.
    unsafe { tiocgwinsz(0, &mut ws) }?;
    Ok((ws.ws_row, ws.ws_col))
}

/// The receiving end of a console socket, for a program that drives the
/// terminal of a process `skiff` starts (`--console-socket PATH`): the
/// containerd shim, and the node agent's `kubectl exec -t`.
pub struct ConsoleSocket {
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    /// Listen in a fresh directory only root can enter (mkdtemp(3):
    /// unique, mode 0700) under the temporary directory, so nobody can swap
    /// the socket or connect first; the path is short, as `sun_path` holds
    /// 108 bytes.
    pub fn new() -> std::io::Result<ConsoleSocket> {
        let dir = nix::unistd::mkdtemp(&std::env::temp_dir().join("skiff-console-XXXXXX"))
            .map_err(std::io::Error::from)?;
        let path = dir.join("console.sock");
        match std::os::unix::net::UnixListener::bind(&path) {
            Ok(listener) => Ok(ConsoleSocket { path, listener }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// The path to pass as `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept the runtime's connection and take the pty master it sends
    /// (`SCM_RIGHTS`), waiting at most `timeout` for the connection.
    ///
    /// A signal handled by the calling process (a SIGCHLD, in a program
    /// that runs children) interrupts the wait: poll(2) is never restarted
    /// after a handler, whatever `SA_RESTART` says (signal(7)). It then
    /// waits again for what is left of `timeout`.
    pub fn receive(&self, timeout: std::time::Duration) -> std::io::Result<OwnedFd> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let ms = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, ms) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no pty master on {} in time", self.path.display()),
                    ))
                }
                Ok(_) => break,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let (conn, _) = self.listener.accept()?;
        crate::sync::recv_fd(conn.as_raw_fd()).map_err(std::io::Error::other)
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Set the window size of the terminal whose master (or slave) is `fd`
/// (TIOCSWINSZ, see ioctl_tty(2)); the kernel sends SIGWINCH to its
/// foreground process group.
pub fn set_window_size(fd: &impl AsFd, cols: u16, rows: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the call.
    unsafe { tiocswinsz(fd.as_fd().as_raw_fd(), &ws) }.map_err(std::io::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    extern "C" fn ignore(_: libc::c_int) {}

    #[test]
    fn a_signal_during_the_wait_for_the_master_does_not_end_it() {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        // A handled signal, with SA_RESTART as tokio's SIGCHLD handler has:
        // poll(2) is interrupted all the same.
        let act = SigAction::new(
            SigHandler::Handler(ignore),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        unsafe { sigaction(Signal::SIGUSR2, &act) }.unwrap();
        let console = ConsoleSocket::new().unwrap();
        let path = console.path().to_path_buf();
        // SAFETY: pthread_self has no preconditions.
        let receiver = unsafe { libc::pthread_self() };
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            // SAFETY: the receiving thread is alive: it waits for this
            // thread's connection below.
            unsafe { libc::pthread_kill(receiver, libc::SIGUSR2) };
            std::thread::sleep(std::time::Duration::from_millis(50));
            let conn = connect(&path).unwrap();
            let file = std::fs::File::open("/dev/null").unwrap();
            crate::sync::send_fd(conn.as_raw_fd(), file.as_fd()).unwrap();
        });
        let got = console.receive(std::time::Duration::from_secs(10));
        sender.join().unwrap();
        assert!(got.is_ok(), "{got:?}");
    }
}
