//! `/exec` and `/attach`: a process's standard streams over SPDY.
//!
//! The request names the container and, in its query, what to connect:
//! `command=` (repeated, one per argument, exec only), `input=1`,
//! `output=1`, `error=1` and `tty=1`. After the upgrade (see
//! [`super::upgrade`]) the client opens one SPDY stream per channel, each
//! with a `streamType` header (client-go's `remotecommand` package): `error`
//! first, then `stdin`, `stdout`, `stderr` as asked, and `resize` with a
//! terminal. The server waits for all of them (at most 30 s), runs the
//! command, and copies bytes between the streams and the process.
//!
//! With a terminal there is no stderr: the process gets a pseudo-terminal
//! ([`skiff_runtime::terminal::ConsoleSocket`] receives its master), and
//! the resize stream carries the client's window size as JSON lines,
//! `{"Width":80,"Height":24}`, set with TIOCSWINSZ.
//!
//! The end is reported on the error stream. In `v4.channel.k8s.io` that
//! is always a `metav1.Status`: `Success`, or `Failure` with reason
//! `NonZeroExitCode` and the exit code as a cause (which kubectl turns
//! into its own exit status). Older protocols write an error text only on
//! failure. If the client goes away first, the process is killed: nothing
//! outlives the connection that started it.

use std::path::PathBuf;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{status_error, upgrade, ws, Sink};

mod attach;
mod exec;

use crate::agent::Agent;
use crate::spdy::{Session, Stream};
use attach::run_attach;
use exec::run_exec;

/// The stream protocols served, newest first.
pub const PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// The WebSocket subprotocols served (see [`ws`]).
pub const WS_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

/// How long the client has to open its streams (kubelet's default
/// `streamCreationTimeout`).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the query asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// The command and its arguments (exec).
    pub command: Vec<String>,
    /// Connect stdin.
    pub stdin: bool,
    /// Connect stdout.
    pub stdout: bool,
    /// Connect stderr (never with a terminal).
    pub stderr: bool,
    /// Give the process a terminal.
    pub tty: bool,
}

impl Options {
    /// Parse and check a query string.
    pub fn parse(query: &str, exec: bool) -> Result<Options, String> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| format!("bad query: {e}"))?;
        let flag = |name: &str| {
            pairs
                .iter()
                .any(|(k, v)| k == name && matches!(v.as_str(), "1" | "true" | "True"))
        };
        let mut o = Options {
            command: pairs
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect(),
            stdin: flag("input") || flag("stdin"),
            stdout: flag("output") || flag("stdout"),
            stderr: flag("error") || flag("stderr"),
            tty: flag("tty"),
        };
        if o.tty {
            o.stderr = false;
        }
        if !(o.stdin || o.stdout || o.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        if exec && o.command.is_empty() {
            return Err("you must specify at least one command for the container".into());
        }
        Ok(o)
    }
}

/// `POST /exec/{ns}/{pod}/{container}`.
pub async fn exec(
    State(agent): State<Arc<Agent>>,
    Path((ns, pod, container)): super::PodPath,
    req: Request,
) -> Response {
    handle(agent, (ns, pod, None, container), true, req).await
}

/// `POST /exec/{ns}/{pod}/{uid}/{container}`.
pub async fn exec_uid(
    State(agent): State<Arc<Agent>>,
    Path((ns, pod, uid, container)): Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    handle(agent, (ns, pod, Some(uid), container), true, req).await
}

/// `POST /attach/{ns}/{pod}/{container}`.
pub async fn attach(
    State(agent): State<Arc<Agent>>,
    Path((ns, pod, container)): super::PodPath,
    req: Request,
) -> Response {
    handle(agent, (ns, pod, None, container), false, req).await
}

/// `POST /attach/{ns}/{pod}/{uid}/{container}`.
pub async fn attach_uid(
    State(agent): State<Arc<Agent>>,
    Path((ns, pod, uid, container)): Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    handle(agent, (ns, pod, Some(uid), container), false, req).await
}

/// The container instance a request is for.
#[derive(Clone)]
pub(crate) struct Target {
    agent: Arc<Agent>,
    /// The runtime's id of the running instance.
    id: String,
    /// Its CRI log (attach reads the output from it).
    log: PathBuf,
    /// When the request arrived.
    received: std::time::Instant,
}

async fn handle(
    agent: Arc<Agent>,
    (ns, pod, uid, container): (String, String, Option<String>, String),
    exec: bool,
    req: Request,
) -> Response {
    let opts = match Options::parse(req.uri().query().unwrap_or(""), exec) {
        Ok(o) => o,
        Err(e) => return status_error(StatusCode::BAD_REQUEST, e),
    };
    let r = match super::find_pod(&agent, &ns, &pod, uid.as_deref()) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let Some(c) = r
        .init
        .iter()
        .chain(&r.containers)
        .find(|c| c.name == container)
    else {
        return status_error(
            StatusCode::NOT_FOUND,
            format!("container {container} is not valid for pod {pod}"),
        );
    };
    let Some(inst) = &c.current else {
        return status_error(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not running"),
        );
    };
    let target = Target {
        agent,
        id: inst.id.clone(),
        log: inst.log.clone(),
        received: std::time::Instant::now(),
    };
    if upgrade::is_websocket(req.headers()) {
        let protocol = match ws::negotiate(&req, &WS_PROTOCOLS) {
            Ok(p) => p,
            Err(resp) => return *resp,
        };
        return ws::upgrade(req, protocol, move |ch| {
            serve_ws(ch, protocol.unwrap_or("channel.k8s.io"), opts, target, exec)
        })
        .await;
    }
    let protocol = match upgrade::negotiate(req.headers(), &PROTOCOLS) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    upgrade::spdy(req, protocol, move |session| {
        serve(session, protocol, opts, target, exec)
    })
}

/// The streams of one request, by type.
#[derive(Default)]
struct Streams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

/// Wait for the client's streams: all that `o` and the protocol call for.
async fn streams(session: &mut Session, protocol: &str, o: &Options) -> Option<Streams> {
    let resize = o.tty && matches!(protocol, "v4.channel.k8s.io" | "v3.channel.k8s.io");
    let want = 1 + o.stdin as usize + o.stdout as usize + o.stderr as usize + resize as usize;
    let mut s = Streams::default();
    let mut got = 0;
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while got < want {
        let st = tokio::select! {
            st = session.accept() => st?,
            _ = &mut deadline => {
                tracing::info!("kubelet API: timed out waiting for client streams");
                return None;
            }
        };
        let slot = match st.header("streamtype").unwrap_or("") {
            "error" => &mut s.error,
            "stdin" => &mut s.stdin,
            "stdout" => &mut s.stdout,
            "stderr" => &mut s.stderr,
            "resize" => &mut s.resize,
            other => {
                tracing::debug!("kubelet API: ignoring stream of type {other:?}");
                continue;
            }
        };
        if slot.is_none() {
            got += 1;
        }
        *slot = Some(st);
    }
    Some(s)
}

async fn serve(mut session: Session, protocol: &'static str, o: Options, t: Target, exec: bool) {
    let upgraded = std::time::Instant::now();
    let Some(s) = streams(&mut session, protocol, &o).await else {
        session.close(Duration::from_secs(1)).await;
        return;
    };
    let waited = upgraded.elapsed();
    let sink = |s: &Option<Stream>| s.as_ref().map(|s| Sink::Spdy(s.writer.clone()));
    let io = Io {
        stdin: s.stdin.map(|s| s.reader.into_inner()),
        resize: s.resize.map(|s| s.reader.into_inner()),
        stdout: sink(&s.stdout),
        stderr: sink(&s.stderr),
        ended: Box::pin(session.ended()),
    };
    let result = run(io, &o, &t, exec).await;
    for w in [&s.stdout, &s.stderr].into_iter().flatten() {
        let _ = w.writer.close().await;
    }
    if let Some(e) = &s.error {
        if let Some(text) = status(protocol, &o.command, &result) {
            let _ = e.writer.write(text.as_bytes()).await;
        }
        let _ = e.writer.close().await;
    }
    session.close(Duration::from_secs(5)).await;
    // The agent's own share of the request: all of it but the wait for
    // the client to open its streams (a network round trip away).
    let total = t.received.elapsed();
    tracing::debug!(
        "kubelet API: {} {}: {:.2} ms in the agent ({:.2} ms more waiting for the client's streams)",
        if exec { "exec" } else { "attach" },
        t.id,
        (total - waited).as_secs_f64() * 1e3,
        waited.as_secs_f64() * 1e3,
    );
}

/// Serve a command over a WebSocket's channels: 0 stdin, 1 stdout,
/// 2 stderr, 3 the status, 4 resize.
async fn serve_ws(ch: ws::Channels, protocol: &'static str, o: Options, t: Target, exec: bool) {
    let ended = ch.ended();
    let out = ch.output;
    // "Ready": one empty message on the first channel the client reads.
    let first = if o.stdout {
        1
    } else if o.stderr {
        2
    } else {
        3
    };
    let _ = out.send((first, Vec::new())).await;
    let mut inputs = ws::demux(ch.input, &[0, 4]);
    let io = Io {
        stdin: inputs.remove(&0).filter(|_| o.stdin),
        resize: inputs.remove(&4).filter(|_| o.tty),
        stdout: o.stdout.then(|| Sink::Ws(out.clone(), 1)),
        stderr: o.stderr.then(|| Sink::Ws(out.clone(), 2)),
        ended: Box::pin(ended),
    };
    let result = run(io, &o, &t, exec).await;
    if let Some(text) = status(protocol, &o.command, &result) {
        let _ = out.send((3, text.into_bytes())).await;
    }
}

/// The client's side of a command, whatever carries it.
pub(crate) struct Io {
    /// Bytes for the process's stdin (ends when the client closes it).
    pub stdin: Option<tokio::sync::mpsc::Receiver<Vec<u8>>>,
    /// Terminal sizes, JSON lines.
    pub resize: Option<tokio::sync::mpsc::Receiver<Vec<u8>>>,
    /// The process's stdout (with a terminal, all its output).
    pub stdout: Option<Sink>,
    /// Its stderr.
    pub stderr: Option<Sink>,
    /// Resolves when the client is gone.
    pub ended: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

/// Run the command (exec) or follow the container (attach).
pub(crate) async fn run(io: Io, o: &Options, t: &Target, exec: bool) -> Ended {
    if exec {
        run_exec(io, o, t).await
    } else {
        run_attach(io, t).await
    }
}

/// How a command ended, for the error stream.
pub(crate) enum Ended {
    /// With this exit code.
    Exited(i32),
    /// It could not be run.
    Failed(String),
    /// The client went away; nothing to report.
    Gone,
}

/// The error stream's text for `result`, in `protocol`'s form.
pub(crate) fn status(protocol: &str, command: &[String], result: &Ended) -> Option<String> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};
    let failure = match result {
        Ended::Gone => return None,
        Ended::Exited(0) => None,
        Ended::Exited(code) => Some(Status {
            status: Some("Failure".into()),
            message: Some(format!(
                "command terminated with non-zero exit code: command '{}' exited with {code}",
                command.join(" ")
            )),
            reason: Some("NonZeroExitCode".into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some(code.to_string()),
                    field: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        Ended::Failed(msg) => Some(Status {
            status: Some("Failure".into()),
            message: Some(msg.clone()),
            reason: Some("InternalError".into()),
            code: Some(500),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    message: Some(msg.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    if protocol.starts_with("v4.") {
        let st = failure.unwrap_or_else(|| Status {
            status: Some("Success".into()),
            ..Default::default()
        });
        // kubelet writes the bare object, without apiVersion and kind.
        let mut v = serde_json::to_value(&st).ok()?;
        if let Some(m) = v.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
        }
        return serde_json::to_string(&v).ok();
    }
    failure.and_then(|f| f.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_as_kubectl_sends_them() {
        let o = Options::parse(
            "command=sh&command=-c&command=exit+3&input=1&output=1&error=1",
            true,
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "exit 3"]);
        assert!(o.stdin && o.stdout && o.stderr && !o.tty);
        let t = Options::parse("command=sh&output=1&error=1&tty=1", true).unwrap();
        assert!(t.tty && !t.stderr, "a terminal has no stderr");
        assert!(Options::parse("command=sh", true)
            .unwrap_err()
            .contains("at least 1 of"));
        assert!(Options::parse("output=1", true)
            .unwrap_err()
            .contains("command"));
        assert!(Options::parse("output=1", false).is_ok());
    }

    #[test]
    fn the_error_stream_in_each_protocol() {
        let cmd = vec!["sh".to_string()];
        let v4 = |r| status("v4.channel.k8s.io", &cmd, &r).unwrap();
        let ok: serde_json::Value = serde_json::from_str(&v4(Ended::Exited(0))).unwrap();
        assert_eq!(ok, serde_json::json!({"metadata": {}, "status": "Success"}));
        let f: serde_json::Value = serde_json::from_str(&v4(Ended::Exited(3))).unwrap();
        assert_eq!(f["reason"], "NonZeroExitCode");
        assert_eq!(f["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(f["details"]["causes"][0]["message"], "3");
        assert_eq!(status("v2.channel.k8s.io", &cmd, &Ended::Exited(0)), None);
        assert!(status("channel.k8s.io", &cmd, &Ended::Exited(1))
            .unwrap()
            .contains("exited with 1"));
        assert_eq!(status("v4.channel.k8s.io", &cmd, &Ended::Gone), None);
    }
}
