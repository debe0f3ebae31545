//! Message → bytes under a dialect.

use crate::bitmap::Bitmap;
use crate::error::{PackError, PackErrorKind};
use crate::message::{Message, Mti};
use crate::spec::{
    DataEncoding, FieldFormat, FieldSpec, MtiEncoding, PadSide, PrefixEncoding, Spec, FIELD_MAX,
};

/// Packs `message` under `spec`: MTI, bitmap(s) (the secondary one only when a field 65..=128
/// is present), then each field in number order.
pub fn pack(spec: &Spec, message: &Message) -> Result<Vec<u8>, PackError> {
    let mut out = Vec::with_capacity(256);
    pack_into(spec, message, &mut out)?;
    Ok(out)
}

/// Like [`pack`], appending to `out` (which keeps what it held if packing fails midway).
pub fn pack_into(spec: &Spec, message: &Message, out: &mut Vec<u8>) -> Result<(), PackError> {
    let mut bitmap = Bitmap::default();
    for (field, _) in message.fields() {
        if !(2..=FIELD_MAX).contains(&field) {
            return Err(error(field, PackErrorKind::BadFieldNumber));
        }
        bitmap.set(field);
    }
    let start = out.len();
    write_mti(spec.mti_encoding(), message.mti(), out);
    bitmap.write(spec.bitmap_encoding(), out);
    for (field, value) in message.fields() {
        let Some(field_spec) = spec.field(field) else {
            out.truncate(start);
            return Err(error(field, PackErrorKind::FieldNotInSpec));
        };
        if let Err(kind) = write_field(field_spec, value, out) {
            out.truncate(start);
            return Err(error(field, kind));
        }
    }
    Ok(())
}

fn error(field: u8, kind: PackErrorKind) -> PackError {
    PackError { field, kind }
}

fn write_mti(encoding: MtiEncoding, mti: Mti, out: &mut Vec<u8>) {
    let [a, b, c, d] = mti.digits().map(|digit| digit - b'0');
    match encoding {
        MtiEncoding::Ascii => out.extend_from_slice(&mti.digits()),
        MtiEncoding::Bcd => out.extend_from_slice(&[a << 4 | b, c << 4 | d]),
    }
}

/// Writes one field: the length prefix for a variable field, then the data.
fn write_field(spec: &FieldSpec, value: &[u8], out: &mut Vec<u8>) -> Result<(), PackErrorKind> {
    let max_len = usize::from(spec.max_len);
    check_content(spec.data, value)?;
    match spec.format {
        FieldFormat::Fixed => {
            let padded = pad_fixed_ascii(spec, value);
            let value = padded.as_deref().unwrap_or(value);
            if value.len() != max_len {
                return Err(PackErrorKind::WrongLength {
                    len: value.len(),
                    expected: max_len,
                });
            }
            write_data(spec, value, out);
        }
        _ => {
            if value.len() > max_len {
                return Err(PackErrorKind::TooLong {
                    len: value.len(),
                    max_len,
                });
            }
            write_prefix(spec, value.len(), out);
            write_data(spec, value, out);
        }
    }
    Ok(())
}

/// Rejects content the encoding cannot carry.
fn check_content(data: DataEncoding, value: &[u8]) -> Result<(), PackErrorKind> {
    let bad = |ok: fn(&u8) -> bool| value.iter().position(|b| !ok(b));
    match data {
        DataEncoding::Ascii => match bad(u8::is_ascii) {
            Some(index) => Err(PackErrorKind::NotAscii { index }),
            None => Ok(()),
        },
        DataEncoding::Bcd => match bad(u8::is_ascii_digit) {
            Some(index) => Err(PackErrorKind::NotNumeric { index }),
            None => Ok(()),
        },
        DataEncoding::Binary => Ok(()),
    }
}

/// A short value of an ASCII fixed field with a pad, filled up to the fixed length.
fn pad_fixed_ascii(spec: &FieldSpec, value: &[u8]) -> Option<Vec<u8>> {
    let pad = spec.pad.filter(|_| spec.data == DataEncoding::Ascii)?;
    let missing = usize::from(spec.max_len).checked_sub(value.len())?;
    // The spec checked that the fill is ASCII, so it is one byte.
    let fill = std::iter::repeat_n(pad.fill as u8, missing);
    Some(match pad.side {
        PadSide::Left => fill.chain(value.iter().copied()).collect(),
        PadSide::Right => value.iter().copied().chain(fill).collect(),
    })
}

/// Writes the length prefix; the spec guarantees `len <= max_len` fits it.
fn write_prefix(spec: &FieldSpec, len: usize, out: &mut Vec<u8>) {
    let width = spec.prefix_len_bytes();
    match spec.prefix {
        PrefixEncoding::Ascii => out.extend_from_slice(format!("{len:0width$}").as_bytes()),
        PrefixEncoding::Bcd => {
            let digits = format!("{len:0w$}", w = width * 2);
            push_bcd_digits(digits.as_bytes(), out);
        }
        PrefixEncoding::Binary => {
            let bytes = (len as u64).to_be_bytes();
            out.extend_from_slice(&bytes[bytes.len() - width..]);
        }
    }
}

fn write_data(spec: &FieldSpec, value: &[u8], out: &mut Vec<u8>) {
    match spec.data {
        DataEncoding::Ascii | DataEncoding::Binary => out.extend_from_slice(value),
        DataEncoding::Bcd if value.len() & 1 == 0 => push_bcd_digits(value, out),
        DataEncoding::Bcd => {
            let pad = spec.bcd_pad();
            // The spec checked that the fill is a hex digit, so it is one byte.
            let fill = pad.fill as u8;
            let padded: Vec<u8> = match pad.side {
                PadSide::Left => std::iter::once(fill).chain(value.iter().copied()).collect(),
                PadSide::Right => value.iter().copied().chain(std::iter::once(fill)).collect(),
            };
            push_bcd_digits(&padded, out);
        }
    }
}

/// Packs an even number of hex-digit characters two per byte.
fn push_bcd_digits(digits: &[u8], out: &mut Vec<u8>) {
    for pair in digits.chunks_exact(2) {
        if let [high, low] = pair {
            out.push(nibble(*high) << 4 | nibble(*low));
        }
    }
}

fn nibble(hex_digit: u8) -> u8 {
    match hex_digit {
        b'0'..=b'9' => hex_digit - b'0',
        b'a'..=b'f' => hex_digit - b'a' + 10,
        b'A'..=b'F' => hex_digit - b'A' + 10,
        _ => 0,
    }
}
