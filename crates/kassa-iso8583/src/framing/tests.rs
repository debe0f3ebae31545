use super::*;

fn encode(codec: &mut FrameCodec, frame: Frame) -> BytesMut {
    let mut out = BytesMut::new();
    codec.encode(frame, &mut out).unwrap();
    out
}

/// Feeds `bytes` in chunks of `chunk_len`, collecting every frame until an error.
fn decode_chunked(
    codec: &mut FrameCodec,
    bytes: &[u8],
    chunk_len: usize,
) -> (Vec<Frame>, Option<FrameError>) {
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in bytes.chunks(chunk_len) {
        buffer.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => return (frames, Some(error)),
            }
        }
    }
    (frames, codec.decode_eof(&mut buffer).err())
}

#[test]
fn each_header_writes_what_it_says() {
    let message = Bytes::from_static(b"0800822000000000000004000000000000001205120000000001301");
    let n = message.len();
    let mut binary = FrameCodec::default();
    let out = encode(&mut binary, Frame::new(message.clone()));
    assert_eq!(&out[..2], &(n as u16).to_be_bytes());
    let mut ascii = FrameCodec::new(FrameHeader::AsciiLength4, 9999);
    let out = encode(&mut ascii, Frame::new(message.clone()));
    assert_eq!(&out[..4], format!("{n:04}").as_bytes());
    let mut tpdu = FrameCodec::new(FrameHeader::Tpdu, DEFAULT_MAX_FRAME_BYTES);
    let frame = Frame {
        tpdu: Some(Tpdu([0x60, 0x00, 0x01, 0x00, 0x02])),
        message: message.clone(),
    };
    let out = encode(&mut tpdu, frame);
    assert_eq!(&out[..7], &[0, (n + 5) as u8, 0x60, 0x00, 0x01, 0x00, 0x02]);
    assert_eq!(&out[7..], &message[..]);
}

#[test]
fn frames_survive_any_split_of_the_stream() {
    for header in [
        FrameHeader::BinaryLength2,
        FrameHeader::AsciiLength4,
        FrameHeader::Tpdu,
    ] {
        let mut codec = FrameCodec::new(header, 4096);
        let tpdu = (header == FrameHeader::Tpdu).then_some(Tpdu([0x60, 0, 1, 0, 2]));
        let sent: Vec<Frame> = (1..=5)
            .map(|i| Frame {
                tpdu,
                message: Bytes::from(vec![b'0' + i as u8; i * 37]),
            })
            .collect();
        let mut stream = BytesMut::new();
        for frame in &sent {
            codec.encode(frame.clone(), &mut stream).unwrap();
        }
        for chunk_len in [1, 2, 3, 7, 64, stream.len()] {
            let (frames, error) = decode_chunked(&mut codec, &stream, chunk_len);
            assert!(error.is_none(), "{header:?}/{chunk_len}: {error:?}");
            assert_eq!(frames, sent, "{header:?} in chunks of {chunk_len}");
        }
    }
}

#[test]
fn an_oversized_frame_is_refused_at_its_header() {
    let mut codec = FrameCodec::new(FrameHeader::BinaryLength2, 100);
    let mut buffer = BytesMut::from(&[0x00, 101][..]);
    match codec.decode(&mut buffer) {
        Err(FrameError::TooLarge {
            len_bytes: 101,
            max_bytes: 100,
        }) => {}
        other => panic!("{other:?}"),
    }
    let error = codec
        .encode(Frame::new(vec![b'x'; 101]), &mut BytesMut::new())
        .unwrap_err();
    assert!(matches!(error, FrameError::TooLarge { .. }), "{error:?}");
}

#[test]
fn the_maximum_is_capped_by_what_the_header_can_say() {
    assert_eq!(
        FrameCodec::new(FrameHeader::AsciiLength4, 1 << 20).max_frame_bytes(),
        9999
    );
    assert_eq!(
        FrameCodec::new(FrameHeader::Tpdu, 1 << 20).max_frame_bytes(),
        65535
    );
}

#[test]
fn garbage_headers_are_errors() {
    let mut ascii = FrameCodec::new(FrameHeader::AsciiLength4, 9999);
    let error = ascii
        .decode(&mut BytesMut::from(&b"12a4rest"[..]))
        .unwrap_err();
    assert!(matches!(error, FrameError::BadLengthHeader { header } if &header == b"12a4"));
    let mut binary = FrameCodec::default();
    let error = binary
        .decode(&mut BytesMut::from(&[0u8, 0][..]))
        .unwrap_err();
    assert!(
        matches!(error, FrameError::TooShort { len_bytes: 0, .. }),
        "{error:?}"
    );
    let mut tpdu = FrameCodec::new(FrameHeader::Tpdu, 4096);
    let error = tpdu
        .decode(&mut BytesMut::from(&[0u8, 5, 0x60, 0, 0, 0, 0][..]))
        .unwrap_err();
    assert!(
        matches!(
            error,
            FrameError::TooShort {
                len_bytes: 5,
                min_bytes: 6
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_stream_ending_inside_a_frame_is_an_error() {
    let (frames, error) = decode_chunked(&mut FrameCodec::default(), &[0, 10, b'0', b'2'], 1);
    assert!(frames.is_empty());
    assert!(
        matches!(
            error,
            Some(FrameError::TruncatedAtEnd { buffered_bytes: 4 })
        ),
        "{error:?}"
    );
}

#[test]
fn a_tpdu_goes_with_a_tpdu_header_only() {
    let with_tpdu = Frame {
        tpdu: Some(Tpdu([0x60, 0, 1, 0, 2])),
        message: Bytes::from_static(b"0800"),
    };
    let error = FrameCodec::default()
        .encode(with_tpdu, &mut BytesMut::new())
        .unwrap_err();
    assert!(matches!(error, FrameError::TpduMismatch));
    let mut tpdu_codec = FrameCodec::new(FrameHeader::Tpdu, 4096);
    let error = tpdu_codec
        .encode(Frame::new(&b"0800"[..]), &mut BytesMut::new())
        .unwrap_err();
    assert!(matches!(error, FrameError::TpduMismatch));
    assert_eq!(Tpdu([0x60, 0, 1, 0, 2]).reply(), Tpdu([0x60, 0, 2, 0, 1]));
}

#[tokio::test]
async fn framed_over_a_socket_pair_with_partial_writes() {
    use futures::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::{FramedRead, FramedWrite};

    let (client, server) = tokio::io::duplex(64);
    let (_, mut client_write) = tokio::io::split(client);
    let mut reader = FramedRead::new(server, FrameCodec::default());
    let mut encoded = BytesMut::new();
    let messages: Vec<Bytes> = (0..3).map(|i| Bytes::from(vec![b'a' + i; 300])).collect();
    for message in &messages {
        FrameCodec::default()
            .encode(Frame::new(message.clone()), &mut encoded)
            .unwrap();
    }
    let writer = tokio::spawn(async move {
        for piece in encoded.chunks(5) {
            client_write.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    for message in &messages {
        let frame = reader.next().await.unwrap().unwrap();
        assert_eq!(&frame.message, message);
    }
    writer.await.unwrap();

    let (a, b) = tokio::io::duplex(64);
    let mut sink = FramedWrite::new(a, FrameCodec::default());
    let mut stream = FramedRead::new(b, FrameCodec::default());
    sink.send(Frame::new(&b"0800"[..])).await.unwrap();
    assert_eq!(&stream.next().await.unwrap().unwrap().message[..], b"0800");
}

#[test]
fn header_names_parse_as_in_config_files() {
    for header in [
        FrameHeader::BinaryLength2,
        FrameHeader::AsciiLength4,
        FrameHeader::Tpdu,
    ] {
        let name = serde_json::to_value(header).unwrap();
        assert_eq!(name.as_str().unwrap().parse::<FrameHeader>(), Ok(header));
    }
    assert!("binary".parse::<FrameHeader>().is_err());
}
