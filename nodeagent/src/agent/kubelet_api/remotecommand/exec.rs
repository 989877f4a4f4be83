//! Exec: `skiff exec` in the container, its standard streams (pipes, or
//! a pseudo-terminal whose master arrives on a console socket) copied to
//! and from the client, resizes applied, and the process killed if the
//! client goes away.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Ended, Io, Options, Target};
use crate::agent::kubelet_api::Sink;
use crate::agent::Agent;

/// A unique path for an exec's pid file, in the agent's private state
/// directory.
fn pid_file(agent: &Agent) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    agent.cfg.state_dir.join(format!(
        "exec-{}-{}.pid",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Copy the client's bytes into `w` until it closes its side.
async fn pump_in(
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    mut w: impl tokio::io::AsyncWrite + Unpin,
) {
    while let Some(b) = rx.recv().await {
        if w.write_all(&b).await.is_err() {
            break;
        }
        let _ = w.flush().await;
    }
}

/// Copy what `r` yields to the client until its end.
async fn pump_out(mut r: impl tokio::io::AsyncRead + Unpin, w: Option<Sink>) {
    let mut buf = vec![0u8; 32 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Some(w) = &w {
                    if w.write(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// A terminal size as the resize stream carries it (Go's
/// `remotecommand.TerminalSize`, one JSON object per line).
#[derive(serde::Deserialize, Clone, Copy)]
struct Size {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

/// The whole sizes at the front of `buf`, which loses them; a partial
/// one stays for the next bytes.
fn take_sizes(buf: &mut Vec<u8>) -> Vec<Size> {
    let mut de = serde_json::Deserializer::from_slice(buf).into_iter::<Size>();
    let mut used = 0;
    let mut sizes = Vec::new();
    while let Some(Ok(sz)) = de.next() {
        used = de.byte_offset();
        sizes.push(sz);
    }
    buf.drain(..used);
    sizes
}

/// The client's first window size, which kubectl sends as soon as the
/// streams are up. The process must start with it: a program that asks
/// for its size at once (`stty size`, a shell's line editor) would
/// otherwise see 0x0. Waits at most `limit`; a client that sends none
/// gets the runtime's default.
async fn first_size(
    rx: &mut tokio::sync::mpsc::Receiver<Vec<u8>>,
    buf: &mut Vec<u8>,
    limit: Duration,
) -> Option<Size> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let b = tokio::time::timeout_at(deadline, rx.recv()).await.ok()??;
        buf.extend_from_slice(&b);
        if let Some(last) = take_sizes(buf).pop() {
            return Some(last);
        }
    }
}

/// Apply the window sizes the resize stream sends.
async fn pump_resize(
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    mut buf: Vec<u8>,
    master: Arc<OwnedFd>,
) {
    while let Some(b) = rx.recv().await {
        buf.extend_from_slice(&b);
        for sz in take_sizes(&mut buf) {
            let r = skiff_runtime::terminal::set_window_size(&*master, sz.width, sz.height);
            tracing::debug!("kubelet API: resize to {}x{}: {r:?}", sz.width, sz.height);
        }
    }
}

/// The `process.json` of a terminal exec that starts at `size`: the
/// container's own process changed as `skiff exec ID CMD...` would
/// change it, plus `consoleSize`, which the runtime applies to the
/// terminal before the program runs (runc's flags have no size).
fn tty_process(
    agent: &Agent,
    id: &str,
    command: &[String],
    size: Size,
    path: &std::path::Path,
) -> Result<(), String> {
    use skiff_runtime::container::exec::{process_from_flags, ExecFlags};
    let c =
        skiff_runtime::Container::load(&agent.cfg.runtime_root(), id).map_err(|e| e.to_string())?;
    let base = c.state.config.process().clone().unwrap_or_default();
    let flags = ExecFlags {
        args: command.to_vec(),
        tty: true,
        env: Vec::new(),
        cwd: None,
        user: None,
        additional_gids: Vec::new(),
        no_new_privs: false,
        caps: Vec::new(),
    };
    let mut p = process_from_flags(&base, &flags).map_err(|e| e.to_string())?;
    let b = oci_spec::runtime::BoxBuilder::default()
        .height(size.height)
        .width(size.width)
        .build()
        .map_err(|e| e.to_string())?;
    p.set_console_size(Some(b));
    let json = serde_json::to_vec(&p).map_err(|e| e.to_string())?;
    // Root's alone: the environment may hold a secret's value. A file left
    // by a killed agent whose pid came back goes first.
    let _ = std::fs::remove_file(path);
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(&json))
        .map_err(|e| format!("write {}: {e}", path.display()))
}

pub(super) async fn run_exec(io: Io, o: &Options, t: &Target) -> Ended {
    let Io {
        stdin,
        mut resize,
        stdout,
        stderr,
        ended,
    } = io;
    use std::process::Stdio;
    let agent = &t.agent;
    let pidf = pid_file(agent);
    let mut ended = ended;
    let mut resize_buf = Vec::new();
    let size = match (&mut resize, o.tty) {
        (Some(r), true) => tokio::select! {
            s = first_size(r, &mut resize_buf, Duration::from_secs(1)) => s,
            _ = &mut ended => return Ended::Gone,
        },
        _ => None,
    };
    // The process, with its starting size, as a file beside the pid file:
    // removed once the runtime has read it (when the terminal's master
    // arrives), or however the exec ends. Without it (no size came, or the
    // container's state cannot be read here) the exec goes on as
    // `skiff exec ID CMD`, at the runtime's size.
    struct RemoveOnDrop(Option<PathBuf>);
    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            if let Some(p) = self.0.take() {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let mut procf = RemoveOnDrop(None);
    if let Some(sz) = size {
        let f = pidf.with_extension("json");
        let (a, id, command, path) = (agent.clone(), t.id.clone(), o.command.clone(), f.clone());
        let made =
            tokio::task::spawn_blocking(move || tty_process(&a, &id, &command, sz, &path)).await;
        match made {
            Ok(Ok(())) => procf.0 = Some(f),
            Ok(Err(e)) => {
                tracing::debug!("kubelet API: exec in {} without a starting size: {e}", t.id);
                let _ = std::fs::remove_file(&f);
            }
            Err(e) => tracing::debug!("kubelet API: exec in {}: {e}", t.id),
        }
    }
    let mut cmd = tokio::process::Command::new(&agent.cfg.runtime);
    cmd.arg("--root")
        .arg(agent.cfg.runtime_root())
        .arg("exec")
        .arg("--pid-file")
        .arg(&pidf);
    let console = if o.tty {
        match skiff_runtime::terminal::ConsoleSocket::new() {
            Ok(c) => {
                cmd.arg("--tty").arg("--console-socket").arg(c.path());
                Some(c)
            }
            Err(e) => return Ended::Failed(format!("console socket: {e}")),
        }
    } else {
        None
    };
    match &procf.0 {
        Some(f) => cmd.arg("--process").arg(f).arg(&t.id),
        None => cmd.arg(&t.id).args(&o.command),
    };
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    cmd.stdin(piped(o.stdin && !o.tty))
        .stdout(piped(o.stdout && !o.tty))
        // skiff's own errors come here too: piped even when not asked for.
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let spawned = std::time::Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Ended::Failed(format!("run {}: {e}", agent.cfg.runtime.display())),
    };
    let mut outputs = Vec::new();
    let mut inputs = Vec::new();
    // skiff's stderr: the process's when asked for, else only kept as the
    // failure's message.
    let (err_tx, mut err_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    if let Some(e) = child.stderr.take() {
        let w = stderr.clone();
        outputs.push(tokio::spawn(async move {
            if w.is_some() {
                pump_out(e, w).await;
            } else {
                let mut e = e;
                let mut v = Vec::new();
                let _ = (&mut e).take(4096).read_to_end(&mut v).await;
                let _ = err_tx.send(v).await;
                pump_out(e, None).await;
            }
        }));
    }
    if let Some(out) = child.stdout.take() {
        outputs.push(tokio::spawn(pump_out(out, stdout.clone())));
    }
    let mut stdin = stdin;
    if let Some(i) = child.stdin.take() {
        if let Some(s) = stdin.take() {
            inputs.push(tokio::spawn(pump_in(s, i)));
        }
    }
    if let Some(c) = console {
        // The process's terminal: skiff sends its master once it runs.
        let mut recv = tokio::task::spawn_blocking(move || c.receive(Duration::from_secs(10)));
        let master = tokio::select! {
            m = &mut recv => m.ok().and_then(|r| r.ok()),
            _ = child.wait() => {
                // A short program may have run and ended already, and skiff
                // with it: its master was sent before it ran, and waits in
                // the socket for a receiver that was not scheduled yet.
                tokio::time::timeout(Duration::from_secs(1), &mut recv)
                    .await
                    .ok()
                    .and_then(|m| m.ok())
                    .and_then(|r| r.ok())
            }
        };
        let Some(master) = master else {
            kill_exec(&pidf);
            let _ = child.wait().await;
            let _ = std::fs::remove_file(&pidf);
            let msg = match tokio::time::timeout(Duration::from_secs(1), err_rx.recv()).await {
                Ok(Some(v)) => String::from_utf8_lossy(&v).trim().to_string(),
                _ => String::new(),
            };
            return Ended::Failed(format!("OCI runtime exec failed: {msg}"));
        };
        let master = Arc::new(master);
        drop(RemoveOnDrop(procf.0.take()));
        let file = |m: &OwnedFd| {
            m.try_clone()
                .map(|fd| tokio::fs::File::from_std(std::fs::File::from(fd)))
        };
        if let Ok(rd) = file(&master) {
            outputs.push(tokio::spawn(pump_out(rd, stdout.clone())));
        }
        if let (Some(s), Ok(wr)) = (stdin.take(), file(&master)) {
            inputs.push(tokio::spawn(pump_in(s, wr)));
        }
        if let Some(r) = resize {
            inputs.push(tokio::spawn(pump_resize(r, resize_buf, master.clone())));
        }
    }
    let code = tokio::select! {
        st = child.wait() => st.ok().and_then(|s| s.code()).unwrap_or(-1),
        _ = &mut ended => {
            kill_exec(&pidf);
            let _ = child.wait().await;
            let _ = std::fs::remove_file(&pidf);
            for h in inputs.iter().chain(&outputs) {
                h.abort();
            }
            return Ended::Gone;
        }
    };
    let _ = std::fs::remove_file(&pidf);
    tracing::debug!(
        "kubelet API: skiff exec in {} ran {:.2} ms",
        t.id,
        spawned.elapsed().as_secs_f64() * 1e3
    );
    // The output is complete once every writer closed the pipes; a
    // process left in the background may hold them open, so the wait is
    // bounded.
    for h in outputs {
        let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
    }
    for h in inputs {
        h.abort();
    }
    if code == 255 {
        if let Ok(v) = err_rx.try_recv() {
            let msg = String::from_utf8_lossy(&v).trim().to_string();
            if !msg.is_empty() {
                return Ended::Failed(format!("OCI runtime exec failed: {msg}"));
            }
        }
    }
    Ended::Exited(code)
}

/// Kill what an exec started (its pid file names it on the host).
fn kill_exec(pidf: &std::path::Path) {
    if let Some(pid) = std::fs::read_to_string(pidf)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
