//! A task's standard streams: the named pipes (fifos) containerd created,
//! connected to the container's process.
//!
//! Without a terminal, stdout and stderr fifos are handed to the process
//! directly as its file descriptors 1 and 2 (opened read-write, which never
//! blocks on a fifo; containerd reads the other end), so no byte passes
//! through the shim. stdin goes through a pipe fed by a thread, so that
//! closing it (containerd's CloseIO, or the fifo's writer going away)
//! reaches the process as end-of-file.
//!
//! With a terminal, skiff hands the pty master to a console socket the shim
//! listens on (SCM_RIGHTS, see unix(7)); two threads copy stdin fifo ->
//! master and master -> stdout fifo, and ResizePty sets the window size on
//! the master (TIOCSWINSZ, see ioctl_tty(2)).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

/// The fifo paths containerd gave (empty: not attached).
#[derive(Debug, Clone, Default)]
pub struct Stdio {
    /// The stdin fifo's path.
    pub stdin: String,
    /// The stdout fifo's path.
    pub stdout: String,
    /// The stderr fifo's path (unused with a terminal: the pty merges it into
    /// stdout).
    pub stderr: String,
    /// Whether the process gets a terminal (a pty) instead of separate streams.
    pub terminal: bool,
}

/// What the shim keeps of a process's streams.
#[derive(Default)]
pub struct ProcessIo {
    /// The pipe the stdin thread writes to; dropped by CloseIO.
    pub stdin: Arc<Mutex<Option<File>>>,
    /// The pty master, with a terminal.
    pub console: Option<Arc<File>>,
}

fn open_rw(path: &str) -> std::io::Result<OwnedFd> {
    let f = File::options().read(true).write(true).open(path)?;
    Ok(OwnedFd::from(f))
}

/// Streams for the skiff call that starts the process, and what to keep.
pub struct Prepared {
    /// The descriptors to hand to `skiff create` or `skiff exec` (none with a
    /// terminal).
    pub call: crate::runtime::CallIo,
    /// What the shim keeps for the process once it runs.
    pub keep: ProcessIo,
    /// The socket to pass as `--console-socket`, with a terminal; `None`
    /// otherwise.
    pub console_socket: Option<ConsoleSocket>,
}

/// Set up non-terminal streams, or a console socket for a terminal.
pub fn prepare(stdio: &Stdio) -> std::io::Result<Prepared> {
    let mut call = crate::runtime::CallIo::default();
    let keep = ProcessIo::default();
    if stdio.terminal {
        let sock = ConsoleSocket::new()?;
        return Ok(Prepared {
            call,
            keep,
            console_socket: Some(sock),
        });
    }
    if !stdio.stdout.is_empty() {
        call.stdout = Some(open_rw(&stdio.stdout)?);
    }
    if !stdio.stderr.is_empty() {
        call.stderr = Some(open_rw(&stdio.stderr)?);
    }
    if !stdio.stdin.is_empty() {
        let (r, w) = nix::unistd::pipe().map_err(std::io::Error::from)?;
        call.stdin = Some(r);
        *keep.stdin.lock().unwrap_or_else(|e| e.into_inner()) = Some(File::from(w));
        let writer = keep.stdin.clone();
        let path = stdio.stdin.clone();
        std::thread::spawn(move || copy_stdin(&path, writer));
    }
    Ok(Prepared {
        call,
        keep,
        console_socket: None,
    })
}

/// Copy the stdin fifo into the pipe until end-of-file or CloseIO.
fn copy_stdin(fifo: &str, writer: Arc<Mutex<Option<File>>>) {
    let Ok(mut src) = File::open(fifo) else {
        return;
    };
    let mut buf = [0u8; 32 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
        let written = w.as_mut().is_some_and(|f| f.write_all(&buf[..n]).is_ok());
        if !written {
            break;
        }
    }
    writer.lock().unwrap_or_else(|e| e.into_inner()).take();
}

/// The console socket skiff sends the pty master to (see
/// [`skiff_runtime::terminal::ConsoleSocket`]).
pub use skiff_runtime::terminal::ConsoleSocket;

/// How long skiff may take to hand over the pty master once the process
/// was started.
const CONSOLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Take the pty master skiff sent to `sock` and wire it to the fifos.
pub fn receive_console(
    sock: ConsoleSocket,
    stdio: &Stdio,
    keep: &mut ProcessIo,
) -> std::io::Result<()> {
    let master = Arc::new(File::from(sock.receive(CONSOLE_TIMEOUT)?));
    drop(sock);
    if !stdio.stdin.is_empty() {
        let (m, path) = (master.clone(), stdio.stdin.clone());
        std::thread::spawn(move || {
            if let Ok(mut src) = File::open(&path) {
                let _ = std::io::copy(&mut src, &mut &*m);
            }
        });
    }
    if !stdio.stdout.is_empty() {
        let (m, path) = (master.clone(), stdio.stdout.clone());
        std::thread::spawn(move || {
            if let Ok(mut dst) = File::options().write(true).open(&path) {
                let _ = std::io::copy(&mut &*m, &mut dst);
            }
        });
    }
    keep.console = Some(master);
    Ok(())
}

/// Set the terminal's window size (TIOCSWINSZ).
pub fn resize(master: &File, width: u16, height: u16) -> std::io::Result<()> {
    skiff_runtime::terminal::set_window_size(master, width, height)
}
