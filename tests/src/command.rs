//! Running host commands under a timeout, with their output captured.

use super::*;

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// What one command did.  `stdout`/`stderr` are captured through unlinked
/// temporary files, not pipes, so a container that inherits them (create,
/// `run --detach`, `exec --detach`) cannot make us wait for EOF.
#[derive(Clone)]
pub struct Output {
    /// The command line, for messages.
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Exit code; `128 + signal` when the command was killed by a signal.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panic (showing everything) unless the command exited 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.success(), "command failed:\n{self}");
        self
    }

    /// Panic (showing everything) if the command exited 0.
    #[track_caller]
    pub fn fail(self) -> Self {
        assert!(!self.success(), "command unexpectedly succeeded:\n{self}");
        self
    }

    /// Parse stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }

    /// Replace every occurrence of each `(from, to)` pair in stdout and
    /// stderr (used to hide bundle paths and ids before comparing).
    pub fn normalised(mut self, pairs: &[(&str, &str)]) -> Self {
        for (from, to) in pairs {
            if from.is_empty() {
                continue;
            }
            self.stdout = self.stdout.replace(from, to);
            self.stderr = self.stderr.replace(from, to);
        }
        self
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$ {}\n  exit: {}\n  stdout: {:?}\n  stderr: {:?}",
            self.cmdline,
            self.code(),
            self.stdout,
            self.stderr
        )
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn cmdline_of(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Wait for `child`, killing its whole process group after `timeout`.
pub fn wait_or_kill(child: Child, timeout: Duration, cmdline: &str) -> ExitStatus {
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let mut child = child;
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => {
            // SAFETY: kill(2) takes integers only. The child is not reaped
            // yet, so its pid (= its process group, see `process_group(0)`)
            // cannot have been reused.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = rx.recv();
            let _ = waiter.join();
            panic!("command hung for more than {timeout:?} and was killed: {cmdline}");
        }
    };
    let _ = waiter.join();
    status.unwrap_or_else(|e| panic!("wait for {cmdline}: {e}"))
}

/// Read a capture file from its start with pread(2), never through the file
/// offset: that offset is shared with every process still holding the file
/// (a created container's init narrates after `create` has returned), so a
/// seek followed by a read could skip whatever such a process wrote between
/// the two, and lose as many bytes from the start.
fn read_back(f: fs::File) -> String {
    use std::os::unix::fs::FileExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match f.read_at(&mut chunk, buf.len() as u64) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read captured output: {e}"),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Run `cmd` with stdin from /dev/null, stdout and stderr captured, under the
/// [`command_timeout`] guard.  The command gets its own process group so a
/// timeout kills everything it started.
pub fn output(mut cmd: Command) -> Output {
    let _g = shared();
    let cmdline = cmdline_of(&cmd);
    let out = tempfile::tempfile().expect("tempfile");
    let err = tempfile::tempfile().expect("tempfile");
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .process_group(0);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmdline}: {e}"));
    drop(cmd); // close our copies of the child's stdio
    let status = wait_or_kill(child, command_timeout(), &cmdline);
    Output {
        cmdline,
        status,
        stdout: read_back(out),
        stderr: read_back(err),
    }
}

/// Shorthand: run `prog args...` (any host program) under the timeout guard.
pub fn sh_output(prog: &str, args: &[&str]) -> Output {
    let mut c = Command::new(prog);
    c.args(args);
    output(c)
}
