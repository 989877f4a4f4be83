use std::time::Duration;

use super::*;

fn h(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn roundtrip(frames: &[Frame]) -> Vec<Frame> {
    let mut enc = Encoder::default();
    let mut wire = Vec::new();
    for f in frames {
        enc.encode(f, &mut wire).unwrap();
    }
    let mut dec = Decoder::default();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((f, n)) = dec.decode(&wire[at..]).unwrap() {
        out.push(f);
        at += n;
    }
    assert_eq!(at, wire.len());
    out
}

#[test]
fn dictionary_is_the_specs() {
    assert_eq!(DICTIONARY.len(), 1423);
    // adler32 as zlib's FDICT field carries it.
    let (mut a, mut b) = (1u32, 0u32);
    for x in DICTIONARY {
        a = (a + *x as u32) % 65521;
        b = (b + a) % 65521;
    }
    assert_eq!((b << 16) | a, 0xe3c6_a7c2);
}

#[test]
fn frames_survive_a_round_trip_with_one_zlib_stream_per_direction() {
    let frames = vec![
        Frame::SynStream {
            id: 1,
            flags: 0,
            headers: h(&[("streamtype", "error")]),
        },
        Frame::SynStream {
            id: 3,
            flags: FLAG_FIN,
            headers: h(&[("streamtype", "stdin"), ("port", "80")]),
        },
        Frame::SynReply {
            id: 3,
            flags: 0,
            headers: vec![],
        },
        Frame::Data {
            id: 3,
            flags: 0,
            data: b"hello".to_vec(),
        },
        Frame::Data {
            id: 3,
            flags: FLAG_FIN,
            data: vec![],
        },
        Frame::RstStream { id: 5, status: 5 },
        Frame::Ping(7),
        Frame::WindowUpdate { id: 1, delta: 99 },
        Frame::GoAway {
            last_good: 3,
            status: 0,
        },
    ];
    assert_eq!(roundtrip(&frames), frames);
}

#[test]
fn the_first_header_block_names_the_dictionary() {
    let mut enc = Encoder::default();
    let mut wire = Vec::new();
    enc.encode(
        &Frame::SynReply {
            id: 1,
            flags: 0,
            headers: vec![],
        },
        &mut wire,
    )
    .unwrap();
    // 8-byte frame header, 4-byte stream id, then zlib: CMF/FLG with FDICT
    // set (0x78 0xf9) and the dictionary's adler32.
    assert_eq!(&wire[..4], &[0x80, 3, 0, 2]);
    assert_eq!(&wire[12..18], &[0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2]);
    // Every block ends with a sync flush.
    assert_eq!(&wire[wire.len() - 4..], &[0, 0, 0xff, 0xff]);
}

#[test]
fn an_incomplete_frame_waits_for_more_bytes() {
    let mut enc = Encoder::default();
    let mut wire = Vec::new();
    enc.encode(
        &Frame::Data {
            id: 1,
            flags: 0,
            data: vec![1; 100],
        },
        &mut wire,
    )
    .unwrap();
    let mut dec = Decoder::default();
    assert!(dec.decode(&wire[..7]).unwrap().is_none());
    assert!(dec.decode(&wire[..50]).unwrap().is_none());
    assert!(dec.decode(&wire).unwrap().is_some());
}

#[test]
fn bad_frames_are_errors_not_panics() {
    let mut dec = Decoder::default();
    // Version 2.
    assert!(matches!(
        dec.decode(&[0x80, 2, 0, 1, 0, 0, 0, 0]),
        Err(SpdyError::Version(2))
    ));
    // A RST_STREAM of 2 bytes.
    assert!(matches!(
        dec.decode(&[0x80, 3, 0, 3, 0, 0, 0, 2, 0, 0]),
        Err(SpdyError::Short { .. })
    ));
    // A SYN_STREAM whose header block is not zlib.
    let mut f = vec![0x80, 3, 0, 1, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    f.extend_from_slice(b"junk");
    assert!(matches!(
        Decoder::default().decode(&f),
        Err(SpdyError::Zlib(_))
    ));
    // A header block that claims more headers than it has.
    let mut lying = Encoder::default();
    let mut raw = 5u32.to_be_bytes().to_vec();
    raw.extend_from_slice(&[0, 0, 0, 1, b'a', 0, 0, 0, 1, b'b']);
    let mut input = raw.as_slice();
    let mut z = Vec::with_capacity(256);
    while !input.is_empty() {
        let before = lying.zlib.total_in();
        lying
            .zlib
            .compress_vec(input, &mut z, FlushCompress::Sync)
            .unwrap();
        input = &input[(lying.zlib.total_in() - before) as usize..];
    }
    let mut f = vec![0x80, 3, 0, 2, 0];
    f.extend_from_slice(&((4 + z.len()) as u32).to_be_bytes()[1..]);
    f.extend_from_slice(&1u32.to_be_bytes());
    f.extend_from_slice(&z);
    assert!(matches!(
        Decoder::default().decode(&f),
        Err(SpdyError::Headers("truncated"))
    ));
}

#[test]
fn a_large_write_is_split_into_frames_the_length_field_can_hold() {
    let big = vec![7u8; 0xff_ffff + 10];
    let got = roundtrip(&[Frame::Data {
        id: 1,
        flags: FLAG_FIN,
        data: big,
    }]);
    assert_eq!(got.len(), 2);
    assert!(matches!(&got[0], Frame::Data { flags: 0, data, .. } if data.len() == 0xff_ffff));
    assert!(matches!(&got[1], Frame::Data { flags: FLAG_FIN, data, .. } if data.len() == 10));
}

/// The peer's end of a session, driven frame by frame.
struct Peer {
    io: tokio::io::DuplexStream,
    enc: Encoder,
    dec: Decoder,
    buf: Vec<u8>,
}

impl Peer {
    async fn send(&mut self, f: Frame) {
        use tokio::io::AsyncWriteExt;
        let mut w = Vec::new();
        self.enc.encode(&f, &mut w).unwrap();
        self.io.write_all(&w).await.unwrap();
    }

    async fn recv(&mut self) -> Option<Frame> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some((f, n)) = self.dec.decode(&self.buf).unwrap() {
                self.buf.drain(..n);
                return Some(f);
            }
            let mut b = [0u8; 4096];
            let n = self.io.read(&mut b).await.unwrap();
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&b[..n]);
        }
    }
}

fn pair() -> (Session, Peer) {
    let (a, b) = tokio::io::duplex(1 << 16);
    (
        Session::new(a),
        Peer {
            io: b,
            enc: Encoder::default(),
            dec: Decoder::default(),
            buf: vec![],
        },
    )
}

#[tokio::test]
async fn a_session_accepts_streams_carries_data_and_says_goodbye() {
    let (mut s, mut p) = pair();
    p.send(Frame::SynStream {
        id: 1,
        flags: 0,
        headers: h(&[("streamType", "stdin")]),
    })
    .await;
    let mut st = s.accept().await.unwrap();
    assert_eq!(st.header("streamtype"), Some("stdin"));
    assert_eq!(
        p.recv().await,
        Some(Frame::SynReply {
            id: 1,
            flags: 0,
            headers: vec![]
        })
    );
    p.send(Frame::Data {
        id: 1,
        flags: 0,
        data: b"abc".to_vec(),
    })
    .await;
    p.send(Frame::Ping(1)).await;
    p.send(Frame::Data {
        id: 1,
        flags: FLAG_FIN,
        data: vec![],
    })
    .await;
    assert_eq!(st.reader.read().await, Some(b"abc".to_vec()));
    assert_eq!(st.reader.read().await, None);
    assert_eq!(p.recv().await, Some(Frame::Ping(1)));
    // Even ids are the server's: refused.
    p.send(Frame::SynStream {
        id: 2,
        flags: 0,
        headers: vec![],
    })
    .await;
    assert_eq!(
        p.recv().await,
        Some(Frame::RstStream {
            id: 2,
            status: rst::PROTOCOL_ERROR
        })
    );
    st.writer.write(b"out").await.unwrap();
    st.writer.close().await.unwrap();
    let ended = s.ended();
    s.close(Duration::from_secs(5)).await;
    let mut got = vec![];
    while let Some(f) = p.recv().await {
        got.push(f);
    }
    assert_eq!(
        got,
        vec![
            Frame::Data {
                id: 1,
                flags: 0,
                data: b"out".to_vec()
            },
            Frame::Data {
                id: 1,
                flags: FLAG_FIN,
                data: vec![]
            },
            Frame::GoAway {
                last_good: 1,
                status: 0
            },
        ]
    );
    ended.await;
}

#[tokio::test]
async fn a_reset_stream_refuses_writes_and_a_dropped_peer_ends_the_session() {
    let (mut s, mut p) = pair();
    p.send(Frame::SynStream {
        id: 1,
        flags: 0,
        headers: vec![],
    })
    .await;
    let mut st = s.accept().await.unwrap();
    p.recv().await;
    p.send(Frame::RstStream { id: 1, status: 5 }).await;
    assert_eq!(st.reader.read().await, None);
    assert!(st.writer.write(b"x").await.is_err());
    let ended = s.ended();
    drop(p);
    tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .expect("the session sees its peer go");
    assert!(s.accept().await.is_none());
}
