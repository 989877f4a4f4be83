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

fn captured(bytes: &[u8]) -> Vec<Frame> {
    let mut dec = Decoder::default();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((f, n)) = dec.decode(&bytes[at..]).unwrap() {
        out.push(f);
        at += n;
    }
    assert_eq!(at, bytes.len(), "whole frames only");
    out
}

fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/src/spdy/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn stream_types(frames: &[Frame]) -> Vec<(u32, String)> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::SynStream { id, headers, .. } => {
                Some((*id, header(headers, "streamtype").unwrap_or("").to_string()))
            }
            _ => None,
        })
        .collect()
}

// The testdata files are what kubectl 1.20 sent to the agent (through the
// API server's upgrade proxy), byte for byte, in three sessions.

#[test]
fn kubectl_exec_with_stdin() {
    // echo hi | kubectl exec -i POD -- sh -c 'cat; exit 3'
    let f = captured(&testdata("kubectl-exec-stdin.bin"));
    assert_eq!(
        stream_types(&f),
        [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "stderr")].map(|(i, t)| (i, t.to_string()))
    );
    assert_eq!(
        &f[4..],
        [
            Frame::Data {
                id: 3,
                flags: 0,
                data: b"hi\n".to_vec()
            },
            Frame::Data {
                id: 3,
                flags: FLAG_FIN,
                data: vec![]
            }
        ]
    );
}

#[test]
fn kubectl_exec_with_a_terminal() {
    // kubectl exec -it POD -- sh (a 120x40 terminal, resized to 132x50)
    let f = captured(&testdata("kubectl-exec-tty.bin"));
    assert_eq!(
        stream_types(&f),
        [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "resize")].map(|(i, t)| (i, t.to_string()))
    );
    let on = |id: u32| -> Vec<u8> {
        f.iter()
            .filter_map(|x| match x {
                Frame::Data { id: i, data, .. } if *i == id => Some(data.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    };
    assert_eq!(
        String::from_utf8(on(7)).unwrap(),
        "{\"Width\":120,\"Height\":40}\n{\"Width\":132,\"Height\":50}\n"
    );
    assert_eq!(on(3), b"abc\rdef\r");
}

#[test]
fn kubectl_port_forward_opens_an_error_and_a_data_stream_per_connection() {
    let f = captured(&testdata("kubectl-port-forward.bin"));
    let Frame::SynStream { id: 1, headers, .. } = &f[0] else {
        panic!("{:?}", f[0]);
    };
    assert_eq!(header(headers, "streamType"), Some("error"));
    assert_eq!(header(headers, "port"), Some("8080"));
    assert_eq!(header(headers, "requestID"), Some("0"));
    // kubectl writes nothing on the error stream: FIN at once.
    assert_eq!(
        f[1],
        Frame::Data {
            id: 1,
            flags: FLAG_FIN,
            data: vec![]
        }
    );
    let Frame::SynStream { id: 3, headers, .. } = &f[2] else {
        panic!("{:?}", f[2]);
    };
    assert_eq!(header(headers, "streamtype"), Some("data"));
    assert_eq!(header(headers, "requestid"), Some("0"));
    assert!(
        matches!(&f[3], Frame::Data { id: 3, data, .. } if data.starts_with(b"GET / HTTP/1.1\r\n"))
    );
    assert!(matches!(
        &f[4],
        Frame::Data {
            id: 3,
            flags: FLAG_FIN,
            ..
        }
    ));
}

#[tokio::test]
async fn a_session_serves_kubectls_bytes() {
    use tokio::io::AsyncWriteExt;
    let (a, mut b) = tokio::io::duplex(1 << 16);
    let mut s = Session::new(a);
    b.write_all(&testdata("kubectl-exec-stdin.bin"))
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        let st = s.accept().await.unwrap();
        got.push(st);
    }
    let types: Vec<_> = got
        .iter()
        .map(|s| s.header("streamtype").unwrap().to_string())
        .collect();
    assert_eq!(types, ["error", "stdin", "stdout", "stderr"]);
    assert_eq!(got[1].reader.read().await, Some(b"hi\n".to_vec()));
    assert_eq!(got[1].reader.read().await, None);
    // Our replies decode as kubectl's decoder (the zlib stream with the
    // dictionary) would read them.
    let mut peer = Peer {
        io: b,
        enc: Encoder::default(),
        dec: Decoder::default(),
        buf: vec![],
    };
    for id in [1, 3, 5, 7] {
        assert_eq!(
            peer.recv().await,
            Some(Frame::SynReply {
                id,
                flags: 0,
                headers: vec![]
            })
        );
    }
}
