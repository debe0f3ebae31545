//! Kassa's own ISO 8583 codec.
//!
//! * [`Spec`]: a dialect as data (per field: fixed or `L`..`LLLL`VAR, maximum length, ASCII,
//!   BCD or binary data, ASCII, BCD or binary length prefix, padding), loaded from TOML or JSON.
//!   [`Spec::default_ascii`] is field for field pyiso8583's `default_ascii`.
//! * [`Message`]: a validated [`Mti`] and field values, with `Debug` that masks card data.
//! * [`pack`] / [`unpack`]: with errors that name the field, the byte offset and the fault;
//!   never a panic, whatever the bytes (fuzzed: `fuzz/fuzz_targets/iso8583_unpack.rs`).
//! * [`framing`]: one message per frame on a TCP stream, as a `tokio_util` codec.
//!
//! The crate's README explains the dialect file format.

mod bitmap;
mod error;
pub mod framing;
mod message;
mod pack;
mod spec;
mod unpack;

pub use error::{Location, PackError, PackErrorKind, UnpackError, UnpackErrorKind};
pub use message::{Message, Mti, MtiError};
pub use pack::{pack, pack_into};
pub use spec::{
    BitmapEncoding, DataEncoding, FieldFormat, FieldSpec, MtiEncoding, Pad, PadSide,
    PrefixEncoding, Spec, SpecError, FIELD_MAX,
};
pub use unpack::unpack;

#[cfg(test)]
mod tests;
