//! The WebSocket form of the streaming requests (apiserver's `wsstream`).
//!
//! Clients other than kubectl 1.20 (browsers, client libraries, newer
//! kubectl) ask for a WebSocket (`GET` with `Upgrade: websocket`, RFC
//! 6455) instead of SPDY. One WebSocket carries every stream as numbered
//! *channels*: each message starts with its channel number. For exec and
//! attach: 0 stdin, 1 stdout, 2 stderr, 3 error (the status at the end),
//! 4 resize. For port-forward: 2i carries port i's data and 2i+1 its
//! errors; the first message on each is the port number (2 bytes, little
//! endian).
//!
//! The `Sec-WebSocket-Protocol` the client offers selects the framing:
//! `channel.k8s.io` and `v4.channel.k8s.io` send binary messages
//! (`[channel, data...]`); the `base64.` variants send text messages
//! (`'0' + channel`, then the data in base64), for clients that cannot
//! handle binary. The `v4.` ones end an exec with a JSON Status on the
//! error channel, like SPDY's v4. The first offered protocol the server
//! knows wins; offering only unknown ones is refused with 403, so that a
//! client that can fall back to SPDY does.

use std::collections::HashMap;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::sync::{mpsc, watch};

/// The protocol to speak, from the client's offer: `Ok(None)` when it
/// offered none (plain binary channels).
pub fn negotiate(
    req: &Request,
    supported: &[&'static str],
) -> Result<Option<&'static str>, Box<Response>> {
    let offered = super::upgrade::offered(req.headers(), "sec-websocket-protocol");
    if offered.is_empty() {
        return Ok(None);
    }
    if let Some(p) = super::upgrade::first_supported(&offered, supported) {
        return Ok(Some(p));
    }
    Err(Box::new(
        (
            StatusCode::FORBIDDEN,
            format!(
                "requested protocol(s) {offered:?} are not supported: want one of {supported:?}"
            ),
        )
            .into_response(),
    ))
}

/// One side of an upgraded WebSocket, as channels.
pub struct Channels {
    /// Messages from the client: (channel, data).
    pub input: mpsc::Receiver<(u8, Vec<u8>)>,
    /// Messages to the client; the connection closes once every sender is
    /// dropped.
    pub output: mpsc::Sender<(u8, Vec<u8>)>,
    ended: watch::Receiver<bool>,
}

impl Channels {
    /// Resolves when the client is gone.
    pub fn ended(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.ended.clone();
        async move {
            let _ = rx.wait_for(|e| *e).await;
        }
    }
}

/// Answer `req` with the WebSocket handshake (`101`), speaking `protocol`;
/// `serve` gets the connection's channels.
pub async fn upgrade<F, Fut>(req: Request, protocol: Option<&'static str>, serve: F) -> Response
where
    F: FnOnce(Channels) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (mut parts, _) = req.into_parts();
    let mut ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    if let Some(p) = protocol {
        ws.set_selected_protocol(axum::http::HeaderValue::from_static(p));
    }
    let base64 = protocol.is_some_and(|p| p.contains("base64"));
    ws.on_upgrade(move |socket| async move {
        let (in_tx, in_rx) = mpsc::channel(32);
        let (out_tx, out_rx) = mpsc::channel(32);
        let (ended_tx, ended) = watch::channel(false);
        let driver = tokio::spawn(drive(socket, base64, in_tx, out_rx, ended_tx));
        serve(Channels {
            input: in_rx,
            output: out_tx,
            ended,
        })
        .await;
        let _ = driver.await;
    })
}

/// Move messages between the socket and the channels until either side
/// ends.
async fn drive(
    mut socket: WebSocket,
    base64: bool,
    input: mpsc::Sender<(u8, Vec<u8>)>,
    mut output: mpsc::Receiver<(u8, Vec<u8>)>,
    ended: watch::Sender<bool>,
) {
    let b64 = base64::engine::general_purpose::STANDARD;
    loop {
        tokio::select! {
            m = socket.recv() => {
                let data = match m {
                    Some(Ok(Message::Binary(b))) if !base64 => b.to_vec(),
                    Some(Ok(Message::Text(t))) if base64 => {
                        let t = t.as_str().as_bytes();
                        let Some((&c, rest)) = t.split_first() else { continue };
                        let Ok(mut d) = b64.decode(rest) else { continue };
                        d.insert(0, c.wrapping_sub(b'0'));
                        d
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                if let Some((&ch, rest)) = data.split_first() {
                    if !rest.is_empty() && input.send((ch, rest.to_vec())).await.is_err() {
                        // Nobody reads input any more; keep serving output.
                    }
                }
            }
            o = output.recv() => {
                let Some((ch, data)) = o else {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                };
                let msg = if base64 {
                    let mut t = String::with_capacity(1 + data.len() * 4 / 3 + 4);
                    t.push((b'0' + ch) as char);
                    b64.encode_string(&data, &mut t);
                    Message::Text(t.into())
                } else {
                    let mut b = Vec::with_capacity(1 + data.len());
                    b.push(ch);
                    b.extend_from_slice(&data);
                    Message::Binary(b.into())
                };
                if socket.send(msg).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = ended.send(true);
}

/// Split the input channels by number: each gets a receiver of its own.
pub fn demux(
    mut input: mpsc::Receiver<(u8, Vec<u8>)>,
    channels: &[u8],
) -> HashMap<u8, mpsc::Receiver<Vec<u8>>> {
    let mut txs = HashMap::new();
    let mut rxs = HashMap::new();
    for c in channels {
        let (tx, rx) = mpsc::channel(32);
        txs.insert(*c, tx);
        rxs.insert(*c, rx);
    }
    tokio::spawn(async move {
        while let Some((c, d)) = input.recv().await {
            if let Some(tx) = txs.get(&c) {
                let _ = tx.send(d).await;
            }
        }
    });
    rxs
}
