//! Bytes → message under a dialect. Every read is bounds-checked: any input yields a message
//! or an [`UnpackError`] naming the part, the byte offset and the fault, never a panic.

use crate::bitmap::{read_half, Bitmap};
use crate::error::{Location, UnpackError, UnpackErrorKind};
use crate::message::{Message, Mti};
use crate::spec::{DataEncoding, FieldSpec, MtiEncoding, PadSide, PrefixEncoding, Spec};

/// Unpacks one whole message; bytes left after the last field are an error.
pub fn unpack(spec: &Spec, bytes: &[u8]) -> Result<Message, UnpackError> {
    let mut reader = Reader { bytes, offset: 0 };
    let mti = read_mti(spec.mti_encoding(), &mut reader)?;
    let bitmap = read_bitmap(spec, &mut reader)?;
    let mut message = Message::new(mti);
    for field in bitmap.fields() {
        let location = Location::Field(field);
        let Some(field_spec) = spec.field(field) else {
            return Err(reader.error_here(location, UnpackErrorKind::FieldNotInSpec));
        };
        let value = read_field(field_spec, location, &mut reader)?;
        message.set(field, value);
    }
    let count = reader.remaining();
    if count > 0 {
        return Err(reader.error_here(Location::End, UnpackErrorKind::TrailingBytes { count }));
    }
    Ok(message)
}

/// A cursor over the message that only hands out bytes that exist.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    fn error_here(&self, location: Location, kind: UnpackErrorKind) -> UnpackError {
        self.error_at(self.offset, location, kind)
    }

    fn error_at(&self, offset: usize, location: Location, kind: UnpackErrorKind) -> UnpackError {
        UnpackError {
            location,
            offset,
            kind,
        }
    }

    /// Takes the next `len` bytes, returning them with their starting offset.
    fn take(&mut self, len: usize, location: Location) -> Result<(usize, &'a [u8]), UnpackError> {
        let start = self.offset;
        let slice = start
            .checked_add(len)
            .and_then(|end| self.bytes.get(start..end))
            .ok_or_else(|| {
                let available_bytes = self.remaining();
                let kind = UnpackErrorKind::Truncated {
                    needed_bytes: len,
                    available_bytes,
                };
                self.error_here(location, kind)
            })?;
        self.offset = start + len;
        Ok((start, slice))
    }
}

fn read_mti(encoding: MtiEncoding, reader: &mut Reader<'_>) -> Result<Mti, UnpackError> {
    let (start, digits) = match encoding {
        MtiEncoding::Ascii => {
            let (start, bytes) = reader.take(4, Location::Mti)?;
            (start, bytes.try_into().ok())
        }
        MtiEncoding::Bcd => {
            let (start, bytes) = reader.take(2, Location::Mti)?;
            let digits = match bytes {
                [a, b] => Some([a >> 4, a & 0x0f, b >> 4, b & 0x0f].map(|n| n.wrapping_add(b'0'))),
                _ => None,
            };
            (start, digits)
        }
    };
    digits
        .and_then(|d| Mti::from_digits(d).ok())
        .ok_or_else(|| reader.error_at(start, Location::Mti, UnpackErrorKind::BadMti))
}

fn read_bitmap(spec: &Spec, reader: &mut Reader<'_>) -> Result<Bitmap, UnpackError> {
    let encoding = spec.bitmap_encoding();
    let mut read = |location| {
        let (start, bytes) = reader.take(encoding.len_bytes(), location)?;
        read_half(encoding, bytes).ok_or(UnpackError {
            location,
            offset: start,
            kind: UnpackErrorKind::BadBitmapHex,
        })
    };
    let primary = read(Location::PrimaryBitmap)?;
    let has_secondary = primary & (1 << 63) != 0;
    let secondary = if has_secondary {
        read(Location::SecondaryBitmap)?
    } else {
        0
    };
    Ok(Bitmap::from_halves(primary, secondary))
}

/// Reads one field (prefix and data) and returns its value as [`Message`] holds it.
fn read_field(
    spec: &FieldSpec,
    location: Location,
    reader: &mut Reader<'_>,
) -> Result<Vec<u8>, UnpackError> {
    let len = match spec.format.length_digits() {
        None => usize::from(spec.max_len),
        Some(_) => read_prefix(spec, location, reader)?,
    };
    let (start, data) = reader.take(spec.data_len_bytes(len), location)?;
    let at = |index: usize, kind| reader.error_at(start + index, location, kind);
    match spec.data {
        DataEncoding::Binary => Ok(data.to_vec()),
        DataEncoding::Ascii => match data.iter().position(|b| !b.is_ascii()) {
            Some(index) => Err(at(index, UnpackErrorKind::NotAscii)),
            None => Ok(data.to_vec()),
        },
        DataEncoding::Bcd => read_bcd_digits(spec, data, len).map_err(|(i, kind)| at(i, kind)),
    }
}

/// Reads the length prefix and checks it against the field's maximum.
fn read_prefix(
    spec: &FieldSpec,
    location: Location,
    reader: &mut Reader<'_>,
) -> Result<usize, UnpackError> {
    let (start, bytes) = reader.take(spec.prefix_len_bytes(), location)?;
    let len = match spec.prefix {
        PrefixEncoding::Ascii => decimal(bytes.iter().map(|b| b.wrapping_sub(b'0'))),
        PrefixEncoding::Bcd => decimal(bytes.iter().flat_map(|b| [b >> 4, b & 0x0f])),
        PrefixEncoding::Binary => Some(bytes.iter().fold(0, |acc, &b| acc << 8 | usize::from(b))),
    };
    let len =
        len.ok_or_else(|| reader.error_at(start, location, UnpackErrorKind::LengthNotNumeric))?;
    let max_len = usize::from(spec.max_len);
    if len > max_len {
        let kind = UnpackErrorKind::LengthTooLarge { len, max_len };
        return Err(reader.error_at(start, location, kind));
    }
    Ok(len)
}

/// Digits (0..=9 each) to a number; `None` if any is not a decimal digit. At most 4 digits.
fn decimal(mut digits: impl Iterator<Item = u8>) -> Option<usize> {
    digits.try_fold(0usize, |acc, d| (d <= 9).then(|| acc * 10 + usize::from(d)))
}

/// BCD bytes to `len` ASCII digits, checking and dropping the pad nibble of an odd length.
/// Errors carry the index of the offending byte within `data`.
fn read_bcd_digits(
    spec: &FieldSpec,
    data: &[u8],
    len: usize,
) -> Result<Vec<u8>, (usize, UnpackErrorKind)> {
    let nibbles = data
        .iter()
        .enumerate()
        .flat_map(|(i, b)| [(i, b >> 4), (i, b & 0x0f)]);
    let padded = len % 2 == 1;
    let pad = spec.bcd_pad();
    let pad_index = match pad.side {
        PadSide::Left => 0,
        PadSide::Right => len,
    };
    let mut digits = Vec::with_capacity(len);
    for (nibble_index, (byte_index, nibble)) in nibbles.enumerate() {
        if padded && nibble_index == pad_index {
            let expected = pad.fill.to_digit(16).and_then(|d| u8::try_from(d).ok());
            if expected != Some(nibble) {
                return Err((byte_index, UnpackErrorKind::BadPadding));
            }
            continue;
        }
        if nibble > 9 {
            return Err((byte_index, UnpackErrorKind::NotNumeric));
        }
        digits.push(b'0' + nibble);
    }
    Ok(digits)
}
