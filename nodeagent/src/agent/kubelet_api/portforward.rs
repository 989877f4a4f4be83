//! `/portForward/{ns}/{pod}`: TCP connections into a pod's network
//! namespace, over SPDY (`portforward.k8s.io`).
//!
//! `kubectl port-forward` listens locally. For each connection it
//! accepts, it opens two SPDY streams with the same `requestID` and the
//! pod's `port`: first `streamType: error`, then `streamType: data`. When
//! the pair is complete the agent connects to `localhost:PORT` *inside the
//! pod's network namespace* and copies bytes between that connection and
//! the data stream. A failure is written, as text, on the error stream,
//! which is closed when the pair is done: kubectl waits for that. One
//! session carries any number of pairs, until kubectl ends it.
//!
//! Connecting inside the namespace uses setns(2) with `CLONE_NEWNET` on a
//! thread of its own, which only that thread's sockets see; the connected
//! socket keeps its namespace when the thread ends and tokio takes it
//! over.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::response::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{upgrade, ws, Sink};
use crate::agent::Agent;
use crate::spdy::{Session, Stream};

/// The stream protocol served.
pub const PROTOCOLS: [&str; 1] = ["portforward.k8s.io"];

/// The WebSocket subprotocols served (see [`ws`]).
pub const WS_PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"];

/// How long one direction of a connection may go on after the other ended.
const LINGER: Duration = Duration::from_secs(1);

/// How long a pair may wait for its second stream.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// `POST /portForward/{ns}/{pod}`.
pub async fn port_forward(
    State(agent): State<Arc<Agent>>,
    Path((ns, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    handle(agent, ns, pod, None, req).await
}

/// `POST /portForward/{ns}/{pod}/{uid}`.
pub async fn port_forward_uid(
    State(agent): State<Arc<Agent>>,
    Path((ns, pod, uid)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    handle(agent, ns, pod, Some(uid), req).await
}

async fn handle(
    agent: Arc<Agent>,
    ns: String,
    pod: String,
    uid: Option<String>,
    req: Request,
) -> Response {
    let r = match super::find_pod(&agent, &ns, &pod, uid.as_deref()) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let Some(sandbox) = r.sandbox.as_ref().filter(|s| s.complete) else {
        return super::status_error(
            axum::http::StatusCode::BAD_REQUEST,
            format!("pod {pod} has no running sandbox"),
        );
    };
    let target = Target {
        netns: sandbox.netns.clone(),
        uid: r.uid.clone(),
    };
    if upgrade::is_websocket(req.headers()) {
        let ports = match ports(req.uri().query().unwrap_or("")) {
            Ok(p) => p,
            Err(e) => return super::status_error(axum::http::StatusCode::BAD_REQUEST, e),
        };
        let protocol = match ws::negotiate(&req, &WS_PROTOCOLS) {
            Ok(p) => p,
            Err(resp) => return *resp,
        };
        return ws::upgrade(req, protocol, move |ch| serve_ws(ch, target, ports)).await;
    }
    let protocol = match upgrade::negotiate(req.headers(), &PROTOCOLS) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    upgrade::spdy(req, protocol, move |session| serve(session, target))
}

/// Where connections go.
#[derive(Clone)]
struct Target {
    /// The pod's network namespace; `None` for a pod on the host's network.
    netns: Option<PathBuf>,
    uid: String,
}

/// Half a pair, waiting for the other half.
#[derive(Default)]
struct Pending {
    data: Option<Stream>,
    error: Option<Stream>,
    since: Option<Instant>,
}

async fn serve(mut session: Session, target: Target) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let st = tokio::select! {
            st = session.accept() => st,
            _ = tick.tick() => {
                expire(&mut pending).await;
                continue;
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let Some(st) = st else { break };
        let port = st.header("port").and_then(|p| p.parse::<u16>().ok());
        let kind = st.header("streamtype").unwrap_or("").to_string();
        let Some(port) = port.filter(|p| *p > 0) else {
            st.writer.reset().await;
            continue;
        };
        // Old clients send no requestID: kubelet pairs stream n with n - 2.
        let request = st
            .header("requestid")
            .map(str::to_string)
            .unwrap_or_else(|| match kind.as_str() {
                "data" => st.id.saturating_sub(2).to_string(),
                _ => st.id.to_string(),
            });
        let p = pending.entry(request.clone()).or_default();
        p.since.get_or_insert_with(Instant::now);
        let slot = match kind.as_str() {
            "data" => &mut p.data,
            "error" => &mut p.error,
            _ => {
                st.writer.reset().await;
                continue;
            }
        };
        if slot.is_some() {
            if let Some(e) = &p.error {
                let _ = e
                    .writer
                    .write(format!("error processing stream for request {request}: a {kind} stream was already received").as_bytes())
                    .await;
            }
            st.writer.reset().await;
            continue;
        }
        *slot = Some(st);
        if p.data.is_some() && p.error.is_some() {
            if let Some(Pending {
                data: Some(d),
                error: Some(e),
                ..
            }) = pending.remove(&request)
            {
                tasks.spawn(forward(target.clone(), port, d, e));
            }
        }
    }
    tasks.shutdown().await;
    session.close(Duration::from_secs(5)).await;
}

/// Pairs that waited too long get an error and are dropped.
async fn expire(pending: &mut HashMap<String, Pending>) {
    let now = Instant::now();
    let late: Vec<String> = pending
        .iter()
        .filter(|(_, p)| p.since.is_some_and(|t| now - t > PAIR_TIMEOUT))
        .map(|(k, _)| k.clone())
        .collect();
    for k in late {
        if let Some(p) = pending.remove(&k) {
            if let Some(e) = p.error {
                let _ = e.writer.write(b"timed out waiting for streams").await;
                let _ = e.writer.close().await;
            }
            if let Some(d) = p.data {
                d.writer.reset().await;
            }
        }
    }
}

/// One forwarded connection over a SPDY pair.
async fn forward(t: Target, port: u16, data: Stream, error: Stream) {
    let (rx, w) = (data.reader.into_inner(), Sink::Spdy(data.writer));
    copy(&t, port, rx, &w, &Sink::Spdy(error.writer.clone())).await;
    // kubectl waits for the error stream's end, connection by connection.
    let _ = error.writer.close().await;
}

/// Serve port-forwarding over a WebSocket: port i's data on channel 2i,
/// its errors on 2i+1, one connection per port.
async fn serve_ws(ch: ws::Channels, t: Target, ports: Vec<u16>) {
    let ended = ch.ended();
    let out = ch.output;
    // Each channel starts with its port, little endian.
    for (i, p) in ports.iter().enumerate() {
        for c in [2 * i as u8, 2 * i as u8 + 1] {
            let _ = out.send((c, p.to_le_bytes().to_vec())).await;
        }
    }
    let chans: Vec<u8> = (0..ports.len()).map(|i| 2 * i as u8).collect();
    let mut inputs = ws::demux(ch.input, &chans);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, port) in ports.into_iter().enumerate() {
        let c = 2 * i as u8;
        let Some(rx) = inputs.remove(&c) else {
            continue;
        };
        let (data, err) = (Sink::Ws(out.clone(), c), Sink::Ws(out.clone(), c + 1));
        let t = t.clone();
        tasks.spawn(async move { copy(&t, port, rx, &data, &err).await });
    }
    drop(out);
    tokio::select! {
        _ = ended => tasks.shutdown().await,
        _ = async { while tasks.join_next().await.is_some() {} } => {}
    }
}

/// The ports of a WebSocket request: `port=80,8080` (repeatable).
fn ports(query: &str) -> Result<Vec<u16>, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|e| format!("bad query: {e}"))?;
    let mut out = Vec::new();
    for v in pairs.iter().filter(|(k, _)| k == "port").map(|(_, v)| v) {
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => out.push(n),
                _ => return Err(format!("unable to parse \"{p}\" as a port")),
            }
        }
    }
    if out.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    Ok(out)
}

/// Connect to the pod's `port` and copy both ways between the connection
/// and the client's data channel; a failure goes to the error channel.
async fn copy(
    t: &Target,
    port: u16,
    mut input: tokio::sync::mpsc::Receiver<Vec<u8>>,
    data: &Sink,
    error: &Sink,
) {
    match connect(t.netns.clone(), port).await {
        Ok(tcp) => {
            let (mut rd, mut wr) = tcp.into_split();
            let down = async move {
                let mut buf = vec![0u8; 32 << 10];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if data.write(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                data.close().await;
            };
            let up = async move {
                while let Some(b) = input.recv().await {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                let _ = wr.shutdown().await;
            };
            // Once one direction ends, the other gets a second to finish
            // (as containerd's port forwarding does): kubectl closes its
            // side only after the error stream has ended.
            tokio::pin!(down, up);
            tokio::select! {
                _ = &mut down => { let _ = tokio::time::timeout(LINGER, up).await; }
                _ = &mut up => { let _ = tokio::time::timeout(LINGER, down).await; }
            }
        }
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {}, uid : {e}", t.uid);
            tracing::info!("kubelet API: {msg}");
            let _ = error.write(msg.as_bytes()).await;
            data.close().await;
        }
    }
}

/// Connect to `localhost:port` in network namespace `netns` (IPv4, then
/// IPv6, as containerd's port forwarding does).
async fn connect(netns: Option<PathBuf>, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let r = (|| -> std::io::Result<std::net::TcpStream> {
            if let Some(ns) = &netns {
                let f = std::fs::File::open(ns)?;
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    std::io::Error::other(format!("enter network namespace {}: {e}", ns.display()))
                })?;
            }
            let timeout = Duration::from_secs(10);
            let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
            let s = std::net::TcpStream::connect_timeout(&v4, timeout)
                .or_else(|e4| std::net::TcpStream::connect_timeout(&v6, timeout).map_err(|_| e4))
                .map_err(|e| std::io::Error::new(e.kind(), format!("dial tcp4 {v4}: {e}")))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })();
        let _ = tx.send(r);
    });
    let s = rx
        .await
        .map_err(|_| std::io::Error::other("connect thread died"))??;
    tokio::net::TcpStream::from_std(s)
}
