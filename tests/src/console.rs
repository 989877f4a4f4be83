//! The receiving end of `--console-socket`, and reading a pty.

use super::*;

// ---------------------------------------------------------------------------
// Console socket
// ---------------------------------------------------------------------------

/// The receiving end of `--console-socket`: a listening unix socket in a
/// private temp dir.  The runtime connects and sends the pty master with
/// SCM_RIGHTS; [`ConsoleSocket::receive`] accepts and returns it.
pub struct ConsoleSocket {
    _dir: TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl Default for ConsoleSocket {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleSocket {
    pub fn new() -> ConsoleSocket {
        let _g = shared();
        let dir = tempfile::Builder::new()
            .prefix("skiff-console-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).expect("bind console socket");
        listener.set_nonblocking(true).expect("nonblocking");
        ConsoleSocket {
            _dir: dir,
            path,
            listener,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("utf-8")
    }

    /// Accept one connection (10 s deadline) and receive one fd from it.
    pub fn receive(&self) -> OwnedFd {
        self.receive_timeout(Duration::from_secs(10))
            .expect("a console socket connection within 10 s")
    }

    /// Like [`ConsoleSocket::receive`], but `None` when no runtime
    /// connects within `timeout` (it failed before making a terminal).
    pub fn receive_timeout(&self, timeout: Duration) -> Option<OwnedFd> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let deadline = Instant::now() + timeout;
        let conn = loop {
            if let Ok((conn, _)) = self.listener.accept() {
                break conn;
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        };
        conn.set_nonblocking(false).expect("blocking");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg on console socket");
        let mut fds = vec![];
        for c in msg.cmsgs().expect("cmsgs") {
            if let ControlMessageOwned::ScmRights(v) = c {
                fds.extend(v);
            }
        }
        assert_eq!(
            fds.len(),
            1,
            "expected exactly one fd over the console socket"
        );
        // SAFETY: the fd was just received and is owned by nobody else.
        Some(unsafe { OwnedFd::from_raw_fd(fds[0]) })
    }
}

/// Read from a pty master until `done(text so far)` holds, EOF/EIO (all
/// slaves closed), or `timeout`.  `\r\n` is turned into `\n`.
pub fn read_pty(master: &impl AsFd, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let fd = master.as_fd().as_raw_fd();
    let deadline = Instant::now() + timeout;
    let mut acc = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&acc).replace("\r\n", "\n");
        let left = deadline.saturating_duration_since(Instant::now());
        if done(&text) || left.is_zero() {
            return text;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd that lives on this stack for the call.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
        if r <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: read(2) writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            // EIO once the last slave fd is closed: that is EOF for a pty.
            return String::from_utf8_lossy(&acc).replace("\r\n", "\n");
        }
        acc.extend_from_slice(&buf[..n as usize]);
    }
}
