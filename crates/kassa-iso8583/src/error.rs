//! Precise errors: which part of the message, which byte, and what was wrong with it.

use std::fmt;

/// The part of a message an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Mti,
    PrimaryBitmap,
    SecondaryBitmap,
    /// A data field, by number.
    Field(u8),
    /// After the last field.
    End,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Mti => f.write_str("MTI"),
            Location::PrimaryBitmap => f.write_str("primary bitmap"),
            Location::SecondaryBitmap => f.write_str("secondary bitmap"),
            Location::Field(n) => write!(f, "field {n}"),
            Location::End => f.write_str("end of message"),
        }
    }
}

/// What was wrong with the bytes being unpacked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnpackErrorKind {
    #[error("truncated: needs {needed_bytes} bytes, {available_bytes} left")]
    Truncated {
        needed_bytes: usize,
        available_bytes: usize,
    },
    #[error("not four decimal digits")]
    BadMti,
    #[error("bitmap is not hex text")]
    BadBitmapHex,
    #[error("present in the bitmap but not defined by the dialect")]
    FieldNotInSpec,
    #[error("length prefix is not decimal digits")]
    LengthNotNumeric,
    #[error("length {len} exceeds the field's maximum {max_len}")]
    LengthTooLarge { len: usize, max_len: usize },
    #[error("BCD nibble is not a decimal digit")]
    NotNumeric,
    #[error("byte is not ASCII")]
    NotAscii,
    #[error("pad nibble is not the dialect's pad")]
    BadPadding,
    #[error("{count} bytes after the last field")]
    TrailingBytes { count: usize },
}

/// Unpacking failed at `offset` (counted from the first byte of the message) in `location`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location} at byte {offset}: {kind}")]
pub struct UnpackError {
    pub location: Location,
    pub offset: usize,
    pub kind: UnpackErrorKind,
}

/// What was wrong with a message being packed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackErrorKind {
    #[error("not a data field number (2..=128; field 1 is the secondary bitmap)")]
    BadFieldNumber,
    #[error("not defined by the dialect")]
    FieldNotInSpec,
    #[error("length {len}, the field is fixed at {expected}")]
    WrongLength { len: usize, expected: usize },
    #[error("length {len} exceeds the field's maximum {max_len}")]
    TooLong { len: usize, max_len: usize },
    #[error("character {index} is not a decimal digit, as BCD needs")]
    NotNumeric { index: usize },
    #[error("byte {index} is not ASCII")]
    NotAscii { index: usize },
}

/// Packing field `field` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {kind}")]
pub struct PackError {
    pub field: u8,
    pub kind: PackErrorKind,
}
