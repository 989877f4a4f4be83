//! The channel between the runtime and the container's init while it is
//! being built.
//!
//! Building a container takes two processes that must take turns: the
//! runtime (outside, still able to write cgroup files, uid maps and the state
//! directory) and the container's init (inside the new namespaces). They talk
//! over a `socketpair(2)` of type `SOCK_SEQPACKET`: each `send` is one whole
//! message, and when one side dies the other reads end-of-file instead of
//! waiting forever. Messages are small JSON documents.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{
    recv, recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

/// Why the channel between the runtime and the init failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// socketpair(2) failed.
    #[error("create sync socket pair: {0}")]
    SocketPair(nix::Error),
    /// sendmsg(2) or send(2) failed.
    #[error("send {what} over sync socket: {err}")]
    Send {
        /// `"message"` or `"file descriptor"`.
        what: &'static str,
        /// The error.
        err: nix::Error,
    },
    /// recv(2) or recvmsg(2) failed.
    #[error("receive from sync socket: {0}")]
    Recv(nix::Error),
    /// The other side closed its end (its process died), or sent no
    /// descriptor where one was expected.
    #[error("container init exited before it was ready")]
    Eof,
    /// A message is not valid JSON for [`Msg`].
    #[error("malformed message on sync socket: {0}")]
    Malformed(String),
    /// A valid message, but not the one this step waits for.
    #[error("unexpected message on sync socket: expected {expected}, got {got:?}")]
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// What came.
        got: Msg,
    },
    /// The other side failed, and said why (its error chain, as text: it
    /// crossed a process boundary).
    #[error("{0}")]
    Reported(String),
}

/// One message between the runtime and the init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// init -> runtime: I have made a user namespace; write my uid/gid maps.
    MapIds,
    /// init -> runtime: this is the container init's pid, as the runtime sees it.
    Pid(i32),
    /// init -> runtime: the mounts are done; run prestart and createRuntime hooks.
    CreateRuntimeHooks,
    /// init -> runtime: everything is applied; I now wait for `start`.
    Ready,
    /// init -> runtime: the seccomp notification descriptor follows (as
    /// SCM_RIGHTS); pass it to the listener.
    SeccompFd,
    /// init -> runtime: setup failed with this message.
    Error(String),
    /// runtime -> init, and back: go on (after `Ready`, the runtime has
    /// recorded the container: the init stops dying with the runtime and
    /// acknowledges).
    Continue,
    /// runtime -> init: go on; this is your pid as the host sees it.
    HostPid(i32),
}

/// One end of the channel.
pub struct Channel {
    fd: OwnedFd,
}

/// Make the two ends: `(runtime_end, init_end)`. Both are close-on-exec.
pub fn pair() -> Result<(Channel, Channel), SyncError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(SyncError::SocketPair)?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// Send one message; `EINTR` is retried.
    pub fn send(&self, msg: &Msg) -> Result<(), SyncError> {
        let data = serde_json::to_vec(msg).map_err(|e| SyncError::Malformed(e.to_string()))?;
        loop {
            match send(self.fd.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL) {
                Err(nix::Error::EINTR) => continue,
                Err(err) => {
                    return Err(SyncError::Send {
                        what: "message",
                        err,
                    })
                }
                Ok(_) => return Ok(()),
            }
        }
    }

    /// Receive one message; end-of-file becomes [`SyncError::Eof`], and so
    /// does ECONNRESET: a peer that died with our last message still unread
    /// in its queue resets the connection instead of closing it.
    pub fn recv(&self) -> Result<Msg, SyncError> {
        self.recv_with(MsgFlags::empty())
    }

    /// A message already waiting, if there is one (never blocks).
    pub fn try_recv(&self) -> Option<Msg> {
        self.recv_with(MsgFlags::MSG_DONTWAIT).ok()
    }

    fn recv_with(&self, flags: MsgFlags) -> Result<Msg, SyncError> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = loop {
            match recv(self.fd.as_raw_fd(), &mut buf, flags) {
                Err(nix::Error::EINTR) => continue,
                Err(nix::Error::ECONNRESET) => return Err(SyncError::Eof),
                Err(e) => return Err(SyncError::Recv(e)),
                Ok(n) => break n,
            }
        };
        if n == 0 {
            return Err(SyncError::Eof);
        }
        serde_json::from_slice(&buf[..n]).map_err(|e| SyncError::Malformed(e.to_string()))
    }

    /// Receive a message, turning an `Error` message into `Err`.
    pub fn expect(&self, expected: Msg, name: &'static str) -> Result<(), SyncError> {
        match self.recv()? {
            m if m == expected => Ok(()),
            Msg::Error(e) => Err(SyncError::Reported(e)),
            got => Err(SyncError::Unexpected {
                expected: name,
                got,
            }),
        }
    }

    /// Send a file descriptor with `SCM_RIGHTS` (see unix(7)).
    pub fn send_fd(&self, fd: BorrowedFd<'_>) -> Result<(), SyncError> {
        send_fd(self.fd.as_raw_fd(), fd)
    }

    /// Receive a file descriptor sent with [`Channel::send_fd`].
    pub fn recv_fd(&self) -> Result<OwnedFd, SyncError> {
        recv_fd(self.fd.as_raw_fd())
    }

    /// The socket's descriptor number.
    pub fn as_raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Has the other end gone (its process died, or closed it)? Never
    /// blocks: poll(2) with no timeout, looking for a hang-up.
    pub fn peer_gone(&self) -> bool {
        // POLLRDHUP (the peer shut down) is Linux's own, unknown to nix.
        let mut fd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLRDHUP | libc::POLLHUP,
            revents: 0,
        };
        // SAFETY: one pollfd, alive for the call; timeout 0 never blocks.
        let n = unsafe { libc::poll(&mut fd, 1, 0) };
        n > 0 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }
}

/// Send `fd` over the unix socket `sock` with one byte of payload.
pub fn send_fd(sock: i32, fd: BorrowedFd<'_>) -> Result<(), SyncError> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(b"\0")];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None).map_err(|err| {
        SyncError::Send {
            what: "file descriptor",
            err,
        }
    })?;
    Ok(())
}

/// Receive one file descriptor sent with [`send_fd`].
pub fn recv_fd(sock: i32) -> Result<OwnedFd, SyncError> {
    use std::os::fd::FromRawFd;
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([i32; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(SyncError::Recv)?;
    for c in msg.cmsgs().map_err(SyncError::Recv)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us; we own it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(SyncError::Eof)
}
