//! The ISO 8583 frame reader on a TCP stream: any bytes, arriving in any chunk sizes, under each
//! header kind and frame limit, give frames or an error, never a panic; no frame exceeds the
//! limit; chunking changes nothing; each frame written back gives the bytes it was read from.
#![no_main]

use bytes::BytesMut;
use kassa_iso8583::framing::{Frame, FrameCodec, FrameHeader};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

/// Decodes `stream` fed in chunks of the given lengths (cycled); frames until the first error.
fn decode(codec: &mut FrameCodec, stream: &[u8], chunk_lens: &[usize]) -> (Vec<Frame>, bool) {
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut chunk_lens = chunk_lens.iter().cycle();
    while !rest.is_empty() {
        let chunk_len = chunk_lens.next().copied().unwrap_or(rest.len()).min(rest.len());
        let (chunk, tail) = rest.split_at(chunk_len);
        rest = tail;
        buffer.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    let failed = codec.decode_eof(&mut buffer).is_err();
    (frames, failed)
}

fuzz_target!(|data: &[u8]| {
    let [header, limit, chunk_seed, stream @ ..] = data else {
        return;
    };
    let header = match header % 3 {
        0 => FrameHeader::BinaryLength2,
        1 => FrameHeader::AsciiLength4,
        _ => FrameHeader::Tpdu,
    };
    let max_frame_bytes = 1 + usize::from(*limit) * 16;
    let mut codec = FrameCodec::new(header, max_frame_bytes);
    // Chunk lengths 1..=16 from the seed's bits, so one input also covers byte-at-a-time reads.
    let chunk_lens: Vec<usize> = (0..4).map(|i| 1 + usize::from((chunk_seed >> (2 * i)) & 3) * 5).collect();

    let (frames, failed) = decode(&mut codec, stream, &chunk_lens);
    let (whole_frames, whole_failed) = decode(&mut codec, stream, &[stream.len().max(1)]);
    assert_eq!((&frames, failed), (&whole_frames, whole_failed), "chunking changed the result");

    let mut rewritten = BytesMut::new();
    for frame in frames {
        let len_bytes = frame.message.len() + frame.tpdu.map_or(0, |t| t.0.len());
        assert!(len_bytes <= codec.max_frame_bytes(), "{len_bytes} > {}", codec.max_frame_bytes());
        codec.encode(frame, &mut rewritten).expect("a frame read can be written");
    }
    assert!(stream.starts_with(&rewritten), "frames written back differ from the stream");
});
