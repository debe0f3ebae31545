//! One message per frame on a TCP stream. The header is selectable: a 2-byte big-endian length
//! (the default), 4 ASCII digits, or a 2-byte length followed by a 5-byte TPDU. The length
//! counts the bytes after the length header (TPDU included). A frame announcing more than
//! `max_frame_bytes`, or a header that is not a length, is an error as soon as the header has
//! arrived: the decoder never buffers an oversized frame.
//!
//! [`FrameCodec`] is a `tokio_util::codec` decoder and encoder, so
//! `Framed::new(tcp_stream, FrameCodec::default())` reads and writes whole frames across partial
//! reads.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

/// Default cap on a frame's length (after the header), in bytes.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024;

/// The bytes in front of each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameHeader {
    /// 2-byte big-endian length.
    #[default]
    BinaryLength2,
    /// Length as 4 ASCII digits, `"0123"`.
    AsciiLength4,
    /// 2-byte big-endian length, then a 5-byte TPDU (counted in the length).
    Tpdu,
}

/// A frame header name that is none of `binary_length2`, `ascii_length4`, `tpdu`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown frame header {0:?}: binary_length2, ascii_length4 or tpdu")]
pub struct UnknownFrameHeader(String);

impl std::str::FromStr for FrameHeader {
    type Err = UnknownFrameHeader;

    /// The same names as in config files.
    fn from_str(name: &str) -> Result<FrameHeader, UnknownFrameHeader> {
        match name {
            "binary_length2" => Ok(FrameHeader::BinaryLength2),
            "ascii_length4" => Ok(FrameHeader::AsciiLength4),
            "tpdu" => Ok(FrameHeader::Tpdu),
            _ => Err(UnknownFrameHeader(name.to_string())),
        }
    }
}

impl FrameHeader {
    fn length_len_bytes(self) -> usize {
        match self {
            FrameHeader::BinaryLength2 | FrameHeader::Tpdu => 2,
            FrameHeader::AsciiLength4 => 4,
        }
    }

    /// Largest length the header can express.
    fn length_capacity(self) -> usize {
        match self {
            FrameHeader::BinaryLength2 | FrameHeader::Tpdu => usize::from(u16::MAX),
            FrameHeader::AsciiLength4 => 9999,
        }
    }
}

/// A transport protocol data unit: protocol id, destination address, source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tpdu(pub [u8; TPDU_LEN_BYTES]);

/// Bytes of a TPDU.
pub const TPDU_LEN_BYTES: usize = 5;

impl Tpdu {
    /// The TPDU of an answer: same protocol id, destination and source swapped.
    pub fn reply(self) -> Tpdu {
        let [id, d1, d2, s1, s2] = self.0;
        Tpdu([id, s1, s2, d1, d2])
    }
}

/// One frame: the message bytes, and the TPDU when the header has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub tpdu: Option<Tpdu>,
    pub message: Bytes,
}

impl Frame {
    /// A frame without TPDU.
    pub fn new(message: impl Into<Bytes>) -> Frame {
        Frame {
            tpdu: None,
            message: message.into(),
        }
    }
}

/// A frame that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len_bytes} bytes exceeds the maximum {max_bytes}")]
    TooLarge { len_bytes: usize, max_bytes: usize },
    #[error("length header {header:?} is not 4 ASCII digits")]
    BadLengthHeader { header: [u8; 4] },
    #[error("frame of {len_bytes} bytes is too short for its header (needs at least {min_bytes})")]
    TooShort { len_bytes: usize, min_bytes: usize },
    #[error("the frame header has a TPDU but the frame has none, or the other way round")]
    TpduMismatch,
    #[error("stream ended inside a frame ({buffered_bytes} bytes buffered)")]
    TruncatedAtEnd { buffered_bytes: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Streaming frame decoder and encoder.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    header: FrameHeader,
    max_frame_bytes: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(FrameHeader::default(), DEFAULT_MAX_FRAME_BYTES)
    }
}

impl FrameCodec {
    /// A codec for `header`, refusing frames longer than `max_frame_bytes` (and than the header
    /// can express).
    pub fn new(header: FrameHeader, max_frame_bytes: usize) -> FrameCodec {
        FrameCodec {
            header,
            max_frame_bytes: max_frame_bytes.min(header.length_capacity()),
        }
    }

    /// The effective maximum frame length (after the header), in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// The smallest frame length: a TPDU plus at least one byte, or one byte.
    fn min_frame_bytes(&self) -> usize {
        match self.header {
            FrameHeader::Tpdu => TPDU_LEN_BYTES + 1,
            _ => 1,
        }
    }

    /// A frame length (after the header) within the limits, in both directions.
    fn check_length(&self, len_bytes: usize) -> Result<(), FrameError> {
        let (max_bytes, min_bytes) = (self.max_frame_bytes, self.min_frame_bytes());
        if len_bytes > max_bytes {
            Err(FrameError::TooLarge {
                len_bytes,
                max_bytes,
            })
        } else if len_bytes < min_bytes {
            Err(FrameError::TooShort {
                len_bytes,
                min_bytes,
            })
        } else {
            Ok(())
        }
    }

    /// Reads the length header at the start of `src`, if it has arrived, and checks it.
    fn peek_length(&self, src: &[u8]) -> Result<Option<usize>, FrameError> {
        let len_bytes = match self.header {
            FrameHeader::BinaryLength2 | FrameHeader::Tpdu => match src {
                [high, low, ..] => usize::from(u16::from_be_bytes([*high, *low])),
                _ => return Ok(None),
            },
            FrameHeader::AsciiLength4 => match src {
                [a, b, c, d, ..] => ascii_length([*a, *b, *c, *d])?,
                _ => return Ok(None),
            },
        };
        self.check_length(len_bytes)?;
        Ok(Some(len_bytes))
    }

    /// A frame of its body (TPDU included), copied out of the read buffer.
    fn frame_of(&self, body: &[u8]) -> Frame {
        match self.header {
            FrameHeader::Tpdu => {
                let (tpdu, message) = body.split_at(TPDU_LEN_BYTES);
                Frame {
                    tpdu: Some(Tpdu(tpdu.try_into().expect("a TPDU-sized slice"))),
                    message: Bytes::copy_from_slice(message),
                }
            }
            _ => Frame {
                tpdu: None,
                message: Bytes::copy_from_slice(body),
            },
        }
    }

    fn write_length(&self, len_bytes: usize, dst: &mut BytesMut) {
        match self.header {
            // Checked against the capacity by the caller.
            FrameHeader::BinaryLength2 | FrameHeader::Tpdu => dst.put_u16(len_bytes as u16),
            FrameHeader::AsciiLength4 => dst.put_slice(format!("{len_bytes:04}").as_bytes()),
        }
    }
}

fn ascii_length(header: [u8; 4]) -> Result<usize, FrameError> {
    header.iter().try_fold(0usize, |acc, &c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + usize::from(c - b'0'))
        } else {
            Err(FrameError::BadLengthHeader { header })
        }
    })
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(len_bytes) = self.peek_length(src)? else {
            return Ok(None);
        };
        let header_bytes = self.header.length_len_bytes();
        let total_bytes = header_bytes + len_bytes;
        if src.len() < total_bytes {
            src.reserve(total_bytes - src.len());
            return Ok(None);
        }
        let frame = self.frame_of(&src[header_bytes..total_bytes]);
        // The read buffer lives as long as the connection and its space is reused, not
        // cleared: wipe the frame (a card number in field 2) rather than leave it behind the
        // read position until later frames happen to overwrite it (ADR 71).
        src[..total_bytes].fill(0);
        src.advance(total_bytes);
        Ok(Some(frame))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::TruncatedAtEnd {
                buffered_bytes: src.len(),
            }),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let tpdu_bytes = match (self.header, frame.tpdu) {
            (FrameHeader::Tpdu, Some(tpdu)) => Some(tpdu.0),
            (FrameHeader::Tpdu, None) | (_, Some(_)) => return Err(FrameError::TpduMismatch),
            _ => None,
        };
        let len_bytes = frame.message.len() + tpdu_bytes.map_or(0, |t| t.len());
        self.check_length(len_bytes)?;
        dst.reserve(self.header.length_len_bytes() + len_bytes);
        self.write_length(len_bytes, dst);
        if let Some(tpdu) = tpdu_bytes {
            dst.put_slice(&tpdu);
        }
        dst.put_slice(&frame.message);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
