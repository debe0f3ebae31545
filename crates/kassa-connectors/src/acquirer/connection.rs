//! The TCP connection of an acquirer session: frames read through the codec, and frames
//! written from a buffer of their own that is wiped once sent.
//!
//! `tokio_util`'s `Framed` keeps one write buffer for the connection's life and reuses its
//! space without clearing it, so every `0200` sent (the card number in field 2) would stay
//! in memory behind the write position until later frames happened to overwrite it. A card
//! number must exist only while its message is built and sent (issue 20; ADR 71), so each
//! frame is encoded into its own buffer, written, and zeroed. The read side is wiped by the
//! codec itself ([`FrameCodec`]'s decoder zeroes each frame it consumes).

use bytes::BytesMut;
use futures::StreamExt;
use kassa_iso8583::framing::{Frame, FrameCodec, FrameError};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder, FramedRead};

/// A connection to the host, signed on or about to be.
pub(super) struct Connection {
    reader: FramedRead<OwnedReadHalf, FrameCodec>,
    writer: OwnedWriteHalf,
    codec: FrameCodec,
}

impl Connection {
    /// Frames `stream` with `codec`.
    pub(super) fn new(stream: TcpStream, codec: FrameCodec) -> Connection {
        let (read, writer) = stream.into_split();
        Connection {
            reader: FramedRead::new(read, codec),
            writer,
            codec,
        }
    }

    /// The next frame from the host; `None` once it closed the connection. Cancel-safe.
    pub(super) async fn next(&mut self) -> Option<Result<Frame, FrameError>> {
        self.reader.next().await
    }

    /// Writes one frame, then zeroes the bytes it was written from.
    pub(super) async fn send(&mut self, frame: Frame) -> Result<(), FrameError> {
        let mut encoded = BytesMut::new();
        self.codec.encode(frame, &mut encoded)?;
        let written = self.writer.write_all(&encoded).await;
        encoded.fill(0);
        // Observed, so the zeroes are not dropped as stores into a buffer about to be freed.
        std::hint::black_box(&encoded);
        Ok(written?)
    }

    /// Shuts the write side down (the host sees the end of the stream).
    pub(super) async fn close(&mut self) {
        let _ = self.writer.shutdown().await;
    }
}
