//! A SPDY/3.1 server session over an upgraded connection.
//!
//! Two tasks share the connection. The reader decodes frames: it accepts
//! each SYN_STREAM with a SYN_REPLY and hands the new [`Stream`] to
//! [`Session::accept`], routes DATA to the stream's reader (FIN or
//! RST_STREAM ends it), echoes the peer's PINGs and stops accepting on
//! GOAWAY. The writer encodes what the streams write, in order, so a
//! stream's SYN_REPLY always goes out before its first DATA. Kubernetes
//! clients open every stream; the server never does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{rst, Decoder, Encoder, Frame, Headers, FLAG_FIN};

/// What goes to the writer task.
enum Out {
    Frame(Frame),
    /// Flush and close the connection's write side.
    Shutdown,
}

/// A SPDY session whose peer opens the streams.
pub struct Session {
    incoming: mpsc::Receiver<Stream>,
    out: mpsc::Sender<Out>,
    last_accepted: Arc<std::sync::atomic::AtomicU32>,
    ended: tokio::sync::watch::Receiver<bool>,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

/// An accepted stream: its headers, and its two directions.
pub struct Stream {
    /// The stream's id.
    pub id: u32,
    /// The headers of its SYN_STREAM (lowercase names).
    pub headers: Headers,
    /// Bytes from the peer.
    pub reader: StreamReader,
    /// Bytes to the peer.
    pub writer: StreamWriter,
}

impl Stream {
    /// Header `name` of the SYN_STREAM.
    pub fn header(&self, name: &str) -> Option<&str> {
        super::header(&self.headers, name)
    }
}

/// The peer's side of a stream.
pub struct StreamReader {
    rx: mpsc::Receiver<Vec<u8>>,
}

impl StreamReader {
    /// The next bytes, or `None` once the peer half-closed or reset the
    /// stream, or the connection ended.
    pub async fn read(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }

    /// The channel the bytes arrive on.
    pub fn into_inner(self) -> mpsc::Receiver<Vec<u8>> {
        self.rx
    }
}

/// This side of a stream. Clones write to the same stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
    reset: Arc<AtomicBool>,
}

/// The stream cannot be written: the peer reset it or the connection is
/// gone.
#[derive(Debug, thiserror::Error)]
#[error("spdy stream {0} is closed")]
pub struct Closed(pub u32);

impl StreamWriter {
    /// Send `data` (nothing is sent for an empty slice).
    pub async fn write(&self, data: &[u8]) -> Result<(), Closed> {
        if data.is_empty() {
            return Ok(());
        }
        self.send(0, data.to_vec()).await
    }

    /// Half-close: this side writes no more (an empty DATA with FIN).
    pub async fn close(&self) -> Result<(), Closed> {
        self.send(FLAG_FIN, Vec::new()).await
    }

    /// Abandon the stream both ways (RST_STREAM CANCEL).
    pub async fn reset(&self) {
        if !self.reset.swap(true, Ordering::SeqCst) {
            let _ = self
                .out
                .send(Out::Frame(Frame::RstStream {
                    id: self.id,
                    status: rst::CANCEL,
                }))
                .await;
        }
    }

    async fn send(&self, flags: u8, data: Vec<u8>) -> Result<(), Closed> {
        if self.reset.load(Ordering::SeqCst) {
            return Err(Closed(self.id));
        }
        self.out
            .send(Out::Frame(Frame::Data {
                id: self.id,
                flags,
                data,
            }))
            .await
            .map_err(|_| Closed(self.id))
    }
}

/// How many DATA frames may wait for a stream's reader before the
/// connection's reader waits too (backpressure).
const STREAM_QUEUE: usize = 32;

impl Session {
    /// Start serving `io`, whose HTTP upgrade to SPDY/3.1 was answered.
    pub fn new<IO>(io: IO) -> Session
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(64);
        let out_tx2 = out_tx.clone();
        let (in_tx, in_rx) = mpsc::channel(16);
        let last_accepted = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (ended_tx, ended) = tokio::sync::watch::channel(false);
        let ended_tx = Arc::new(ended_tx);
        let e = ended_tx.clone();
        let writer = tokio::spawn(async move {
            write_loop(wr, out_rx).await;
            let _ = e.send(true);
        });
        let accepted = last_accepted.clone();
        let reader = tokio::spawn(async move {
            read_loop(rd, out_tx2, in_tx, accepted).await;
            let _ = ended_tx.send(true);
        });
        Session {
            incoming: in_rx,
            out: out_tx,
            last_accepted,
            ended,
            reader,
            writer,
        }
    }

    /// The next stream the peer opens; `None` once it sent GOAWAY or the
    /// connection ended.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.incoming.recv().await
    }

    /// Resolves once the connection is gone: the peer closed it or
    /// reset it, or a write failed.
    pub fn ended(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.ended.clone();
        async move {
            let _ = rx.wait_for(|e| *e).await;
        }
    }

    /// End the session: GOAWAY, flush what the streams wrote, close the
    /// connection. Waits at most `grace` for the flush.
    pub async fn close(mut self, grace: Duration) {
        let last_good = self.last_accepted.load(Ordering::SeqCst);
        let _ = self
            .out
            .send(Out::Frame(Frame::GoAway {
                last_good,
                status: 0,
            }))
            .await;
        let _ = self.out.send(Out::Shutdown).await;
        if tokio::time::timeout(grace, &mut self.writer).await.is_err() {
            self.writer.abort();
        }
        self.reader.abort();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A session dropped without close (its handler failed): nothing
        // may outlive it.
        self.reader.abort();
        self.writer.abort();
    }
}

async fn write_loop<W: AsyncWrite>(wr: W, mut rx: mpsc::Receiver<Out>) {
    let mut wr = std::pin::pin!(wr);
    let mut enc = Encoder::default();
    let mut buf = Vec::new();
    while let Some(first) = rx.recv().await {
        // Batch what is queued into one write.
        let mut next = Some(first);
        let mut shutdown = false;
        while let Some(o) = next.take() {
            match o {
                Out::Frame(f) => {
                    if let Err(e) = enc.encode(&f, &mut buf) {
                        tracing::debug!("spdy: {e}");
                        return;
                    }
                }
                Out::Shutdown => {
                    shutdown = true;
                    break;
                }
            }
            if buf.len() < 256 << 10 {
                next = rx.try_recv().ok();
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
        buf.clear();
        if shutdown {
            let _ = wr.shutdown().await;
            return;
        }
    }
}

struct Open {
    data: mpsc::Sender<Vec<u8>>,
    reset: Arc<AtomicBool>,
}

async fn read_loop<R: AsyncRead>(
    rd: R,
    out: mpsc::Sender<Out>,
    incoming: mpsc::Sender<Stream>,
    last_accepted: Arc<std::sync::atomic::AtomicU32>,
) {
    let mut rd = std::pin::pin!(rd);
    let mut dec = Decoder::default();
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut open: std::collections::HashMap<u32, Open> = Default::default();
    let mut incoming = Some(incoming);
    let mut last_id = 0u32;
    let send = |f: Frame| {
        let out = out.clone();
        async move {
            let _ = out.send(Out::Frame(f)).await;
        }
    };
    loop {
        let (frame, used) = match dec.decode(&buf) {
            Ok(Some(x)) => x,
            Ok(None) => {
                let mut chunk = [0u8; 32 << 10];
                match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                continue;
            }
            Err(e) => {
                tracing::debug!("spdy: {e}");
                send(Frame::GoAway {
                    last_good: last_id,
                    status: 1,
                })
                .await;
                break;
            }
        };
        buf.drain(..used);
        match frame {
            Frame::SynStream { id, flags, headers } => {
                // Client streams are odd and increasing (spec §2.3.2).
                if id % 2 == 0 || id <= last_id {
                    send(Frame::RstStream {
                        id,
                        status: rst::PROTOCOL_ERROR,
                    })
                    .await;
                    continue;
                }
                last_id = id;
                let Some(accept) = &incoming else {
                    send(Frame::RstStream {
                        id,
                        status: rst::REFUSED_STREAM,
                    })
                    .await;
                    continue;
                };
                let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                let reset = Arc::new(AtomicBool::new(false));
                if flags & FLAG_FIN == 0 {
                    open.insert(
                        id,
                        Open {
                            data: tx,
                            reset: reset.clone(),
                        },
                    );
                }
                send(Frame::SynReply {
                    id,
                    flags: 0,
                    headers: Vec::new(),
                })
                .await;
                last_accepted.store(id, Ordering::SeqCst);
                let s = Stream {
                    id,
                    headers,
                    reader: StreamReader { rx },
                    writer: StreamWriter {
                        id,
                        out: out.clone(),
                        reset,
                    },
                };
                if accept.send(s).await.is_err() {
                    // Nobody accepts streams any more.
                    open.remove(&id);
                    send(Frame::RstStream {
                        id,
                        status: rst::REFUSED_STREAM,
                    })
                    .await;
                }
            }
            Frame::Data { id, flags, data } => {
                let Some(s) = open.get(&id) else {
                    if id % 2 == 1 && id > last_id {
                        send(Frame::RstStream {
                            id,
                            status: rst::INVALID_STREAM,
                        })
                        .await;
                    }
                    continue;
                };
                // A reader that went away just drops what comes.
                if !data.is_empty() {
                    let _ = s.data.send(data).await;
                }
                if flags & FLAG_FIN != 0 {
                    open.remove(&id);
                }
            }
            Frame::RstStream { id, .. } => {
                if let Some(s) = open.remove(&id) {
                    s.reset.store(true, Ordering::SeqCst);
                }
            }
            // Pings the peer started have odd ids; echo them.
            Frame::Ping(id) if id % 2 == 1 => send(Frame::Ping(id)).await,
            Frame::GoAway { .. } => incoming = None,
            Frame::SynReply { .. }
            | Frame::Ping(_)
            | Frame::Settings
            | Frame::Headers { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown(_) => {}
        }
    }
    // The connection ended: every stream's reader sees its end, and
    // writers fail from now on.
    for (_, s) in open.drain() {
        s.reset.store(true, Ordering::SeqCst);
    }
}
