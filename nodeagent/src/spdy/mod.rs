//! SPDY/3.1 framing: the part of the protocol Kubernetes streams use.
//!
//! `kubectl exec`, `attach`, `port-forward` and `cp` need several byte
//! streams between kubectl and a container at once: stdin, stdout,
//! stderr, an error channel, terminal resizes, one pair per forwarded
//! connection. Kubernetes carries them over one HTTP connection that is
//! *upgraded* to SPDY/3.1 (`Upgrade: SPDY/3.1`, answered with
//! `101 Switching Protocols`), the multiplexing protocol that later became
//! HTTP/2. The API server does not speak it: it passes the upgraded
//! connection through, so kubectl and the node agent speak SPDY to each
//! other (the Go side is `github.com/moby/spdystream`).
//!
//! On the wire every frame starts with 8 bytes (draft-mbelshe-httpbis-spdy-00
//! §2.2, "SPDY Protocol - Draft 3"):
//!
//! ```text
//! control: |1| version = 3 (15 bits) | type (16) | flags (8) | length (24) | payload
//! data:    |0| stream id (31 bits)               | flags (8) | length (24) | payload
//! ```
//!
//! The client opens a stream with SYN_STREAM (odd ids, increasing), whose
//! headers say what it is for (`streamType: stdout`, `port: 8080`); the
//! server accepts it with SYN_REPLY. DATA carries bytes; a DATA frame with
//! the FIN flag half-closes the stream (that side writes no more);
//! RST_STREAM kills it both ways. PING is echoed, GOAWAY ends the session.
//! spdystream has no flow control, so WINDOW_UPDATE and SETTINGS are read
//! and ignored, and this side never sends them.
//!
//! Header blocks are compressed with zlib: each direction is **one** zlib
//! stream for the whole connection, primed with the protocol's preset
//! dictionary ([`DICTIONARY`], spec §2.6.10.1) and sync-flushed at the end
//! of every block. The inflater and the deflater therefore live as long as
//! the connection ([`Decoder`], [`Encoder`]).
//!
//! [`session`] runs a connection: a reader that accepts streams and routes
//! DATA to them, and a writer that sends what the streams write.

pub mod session;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

pub use session::{Session, Stream, StreamReader, StreamWriter};

/// The zlib dictionary of SPDY/3 header blocks (spec §2.6.10.1; its
/// adler32 is `0xe3c6a7c2`).
pub const DICTIONARY: &[u8] = include_bytes!("dictionary.bin");

/// DATA and SYN_STREAM flag: the sender writes no more on this stream.
pub const FLAG_FIN: u8 = 0x01;

/// Control frame types (spec §2.6).
mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// RST_STREAM status codes (spec §2.6.2) this side sends.
pub mod rst {
    /// The frame broke the protocol (an even or reused stream id).
    pub const PROTOCOL_ERROR: u32 = 1;
    /// DATA for a stream that is not open.
    pub const INVALID_STREAM: u32 = 2;
    /// The stream is not wanted (bad headers, the session is ending).
    pub const REFUSED_STREAM: u32 = 3;
    /// The stream is abandoned.
    pub const CANCEL: u32 = 5;
}

/// The largest decompressed header block accepted; a peer's zlib bomb
/// ends the session instead of the agent's memory.
const MAX_HEADER_BLOCK: usize = 256 << 10;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// A control frame of another SPDY version.
    #[error("spdy: unsupported version {0}")]
    Version(u16),
    /// A frame shorter than its type needs.
    #[error("spdy: {what} frame of {len} bytes is too short")]
    Short {
        /// The frame type.
        what: &'static str,
        /// Its payload length.
        len: usize,
    },
    /// A header block that does not parse.
    #[error("spdy: bad header block: {0}")]
    Headers(&'static str),
    /// The zlib stream of the header blocks is broken.
    #[error("spdy: header compression: {0}")]
    Zlib(String),
    /// The connection failed.
    #[error("spdy: {0}")]
    Io(#[from] std::io::Error),
}

/// A header block: names are lowercase; a value may hold several values
/// separated by NUL bytes.
pub type Headers = Vec<(String, String)>;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Open a stream.
    SynStream {
        /// The new stream's id (odd from a client).
        id: u32,
        /// FIN: the opener writes nothing on it; 0x02 UNIDIRECTIONAL.
        flags: u8,
        /// What the stream is for.
        headers: Headers,
    },
    /// Accept a stream.
    SynReply {
        /// The stream.
        id: u32,
        /// FIN: the acceptor writes nothing on it.
        flags: u8,
        /// Reply headers (Kubernetes sends none).
        headers: Headers,
    },
    /// End a stream both ways.
    RstStream {
        /// The stream.
        id: u32,
        /// Why ([`rst`]).
        status: u32,
    },
    /// Connection settings (ignored).
    Settings,
    /// A ping: echoed when the peer sent it (odd ids from a client).
    Ping(u32),
    /// The sender opens and accepts no more streams.
    GoAway {
        /// The last stream the sender accepted.
        last_good: u32,
        /// 0 OK, 1 protocol error, 2 internal error.
        status: u32,
    },
    /// More headers for a stream (ignored).
    Headers {
        /// The stream.
        id: u32,
    },
    /// A flow-control window update (ignored: spdystream has no flow
    /// control).
    WindowUpdate {
        /// The stream.
        id: u32,
        /// Bytes added to its window.
        delta: u32,
    },
    /// A control frame type this side does not know (ignored, as the
    /// spec asks).
    Unknown(u16),
    /// Bytes on a stream.
    Data {
        /// The stream.
        id: u32,
        /// FIN: the last frame the sender writes on it.
        flags: u8,
        /// The bytes.
        data: Vec<u8>,
    },
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads frames: one per connection, as it keeps the peer's zlib stream.
pub struct Decoder {
    zlib: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            zlib: Decompress::new(true),
        }
    }
}

impl Decoder {
    /// The frame at the start of `buf` and how many bytes it took, or
    /// `None` if `buf` does not hold a whole frame yet.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let flags = buf[4];
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let p = &buf[8..8 + len];
        let short = |what, need: usize| {
            if len < need {
                Err(SpdyError::Short { what, len })
            } else {
                Ok(())
            }
        };
        let frame = if buf[0] & 0x80 == 0 {
            Frame::Data {
                id: be32(buf) & 0x7fff_ffff,
                flags,
                data: p.to_vec(),
            }
        } else {
            let version = u16::from_be_bytes([buf[0] & 0x7f, buf[1]]);
            if version != 3 {
                return Err(SpdyError::Version(version));
            }
            match u16::from_be_bytes([buf[2], buf[3]]) {
                kind::SYN_STREAM => {
                    short("SYN_STREAM", 10)?;
                    Frame::SynStream {
                        id: be32(p) & 0x7fff_ffff,
                        flags,
                        headers: self.headers(&p[10..])?,
                    }
                }
                kind::SYN_REPLY => {
                    short("SYN_REPLY", 4)?;
                    Frame::SynReply {
                        id: be32(p) & 0x7fff_ffff,
                        flags,
                        headers: self.headers(&p[4..])?,
                    }
                }
                kind::RST_STREAM => {
                    short("RST_STREAM", 8)?;
                    Frame::RstStream {
                        id: be32(p) & 0x7fff_ffff,
                        status: be32(&p[4..]),
                    }
                }
                kind::SETTINGS => Frame::Settings,
                kind::PING => {
                    short("PING", 4)?;
                    Frame::Ping(be32(p))
                }
                kind::GOAWAY => {
                    short("GOAWAY", 4)?;
                    Frame::GoAway {
                        last_good: be32(p) & 0x7fff_ffff,
                        status: if len >= 8 { be32(&p[4..]) } else { 0 },
                    }
                }
                kind::HEADERS => {
                    short("HEADERS", 4)?;
                    // Inflated all the same: the zlib stream must stay in step.
                    self.headers(&p[4..])?;
                    Frame::Headers {
                        id: be32(p) & 0x7fff_ffff,
                    }
                }
                kind::WINDOW_UPDATE => {
                    short("WINDOW_UPDATE", 8)?;
                    Frame::WindowUpdate {
                        id: be32(p) & 0x7fff_ffff,
                        delta: be32(&p[4..]) & 0x7fff_ffff,
                    }
                }
                other => Frame::Unknown(other),
            }
        };
        Ok(Some((frame, 8 + len)))
    }

    /// Inflate and parse one header block (spec §2.6.10): a count, then
    /// length-prefixed names and values.
    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let block = self.inflate(compressed)?;
        let mut rest = block.as_slice();
        let mut take = |n: usize| -> Result<&[u8], SpdyError> {
            if rest.len() < n {
                return Err(SpdyError::Headers("truncated"));
            }
            let (a, b) = rest.split_at(n);
            rest = b;
            Ok(a)
        };
        let count = be32(take(4)?);
        let mut out = Vec::new();
        for _ in 0..count {
            let n = be32(take(4)?) as usize;
            let name = String::from_utf8_lossy(take(n)?).to_lowercase();
            let n = be32(take(4)?) as usize;
            let value = String::from_utf8_lossy(take(n)?).into_owned();
            if name.is_empty() {
                return Err(SpdyError::Headers("empty header name"));
            }
            out.push((name, value));
        }
        Ok(out)
    }

    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let zerr = |e: flate2::DecompressError| SpdyError::Zlib(e.to_string());
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(4096);
            }
            let before = self.zlib.total_in();
            let r = self
                .zlib
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.zlib.total_in() - before) as usize..];
            match r {
                Ok(flate2::Status::StreamEnd) => return Ok(out),
                Ok(_) if input.is_empty() && out.capacity() > out.len() => return Ok(out),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib.set_dictionary(DICTIONARY).map_err(zerr)?;
                }
                Err(e) => return Err(zerr(e)),
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::Headers("header block too large"));
            }
        }
    }
}

/// Writes frames: one per connection, as it keeps this side's zlib stream.
pub struct Encoder {
    zlib: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        let mut zlib = Compress::new(Compression::best(), true);
        // Only fails once bytes went through; none have.
        let _ = zlib.set_dictionary(DICTIONARY);
        Encoder { zlib }
    }
}

impl Encoder {
    /// Append `f`'s bytes to `out`.
    pub fn encode(&mut self, f: &Frame, out: &mut Vec<u8>) -> Result<(), SpdyError> {
        let control = |out: &mut Vec<u8>, t: u16, flags: u8, payload: &[u8]| {
            out.extend_from_slice(&[0x80, 3]);
            out.extend_from_slice(&t.to_be_bytes());
            out.push(flags);
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(payload);
        };
        match f {
            Frame::Data { id, flags, data } => {
                // A DATA frame holds at most 2^24 - 1 bytes: split larger writes.
                let mut chunks = data.chunks(0xff_ffff).peekable();
                if data.is_empty() {
                    out.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
                    out.extend_from_slice(&[*flags, 0, 0, 0]);
                }
                while let Some(c) = chunks.next() {
                    out.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
                    out.push(if chunks.peek().is_none() { *flags } else { 0 });
                    out.extend_from_slice(&(c.len() as u32).to_be_bytes()[1..]);
                    out.extend_from_slice(c);
                }
            }
            Frame::SynStream { id, flags, headers } => {
                let mut p = Vec::new();
                p.extend_from_slice(&id.to_be_bytes());
                p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
                p.extend(self.headers(headers)?);
                control(out, kind::SYN_STREAM, *flags, &p);
            }
            Frame::SynReply { id, flags, headers } => {
                let mut p = id.to_be_bytes().to_vec();
                p.extend(self.headers(headers)?);
                control(out, kind::SYN_REPLY, *flags, &p);
            }
            Frame::RstStream { id, status } => {
                let mut p = id.to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(out, kind::RST_STREAM, 0, &p);
            }
            Frame::Ping(id) => control(out, kind::PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                let mut p = last_good.to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(out, kind::GOAWAY, 0, &p);
            }
            Frame::WindowUpdate { id, delta } => {
                let mut p = id.to_be_bytes().to_vec();
                p.extend_from_slice(&delta.to_be_bytes());
                control(out, kind::WINDOW_UPDATE, 0, &p);
            }
            Frame::Settings | Frame::Headers { .. } | Frame::Unknown(_) => {}
        }
        Ok(())
    }

    fn headers(&mut self, h: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut block = (h.len() as u32).to_be_bytes().to_vec();
        for (k, v) in h {
            for s in [k.to_lowercase().as_bytes(), v.as_bytes()] {
                block.extend_from_slice(&(s.len() as u32).to_be_bytes());
                block.extend_from_slice(s);
            }
        }
        let mut input = block.as_slice();
        let mut out = Vec::with_capacity(block.len() + 64);
        loop {
            let before = self.zlib.total_in();
            self.zlib
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Zlib(e.to_string()))?;
            input = &input[(self.zlib.total_in() - before) as usize..];
            if input.is_empty() && out.capacity() > out.len() {
                return Ok(out);
            }
            out.reserve(1024);
        }
    }
}

/// The value of header `name` (lowercase) in `h`.
pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
#[path = "spdy_tests.rs"]
mod tests;
