//! The primary and secondary bitmaps as one 128-bit set: field `n` is bit `128 - n`, so field 1
//! (the secondary bitmap's presence) is the most significant bit, as on the wire.

use crate::spec::BitmapEncoding;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bitmap(u128);

const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

impl Bitmap {
    /// Marks field `field` (1..=128) present; a field above 64 also marks field 1.
    pub(crate) fn set(&mut self, field: u8) {
        if (1..=128).contains(&field) {
            self.0 |= 1u128 << (128 - u32::from(field));
            if field > 64 {
                self.0 |= 1u128 << 127;
            }
        }
    }

    pub(crate) fn has(&self, field: u8) -> bool {
        (1..=128).contains(&field) && self.0 & (1u128 << (128 - u32::from(field))) != 0
    }

    /// Present data fields (2..=128) in order.
    pub(crate) fn fields(self) -> impl Iterator<Item = u8> {
        (2..=128u8).filter(move |&n| self.has(n))
    }

    pub(crate) fn primary(self) -> u64 {
        (self.0 >> 64) as u64
    }

    pub(crate) fn secondary(self) -> u64 {
        self.0 as u64
    }

    pub(crate) fn from_halves(primary: u64, secondary: u64) -> Bitmap {
        Bitmap(u128::from(primary) << 64 | u128::from(secondary))
    }

    /// Writes the primary bitmap, and the secondary one when field 1 is set.
    pub(crate) fn write(self, encoding: BitmapEncoding, out: &mut Vec<u8>) {
        write_half(self.primary(), encoding, out);
        if self.has(1) {
            write_half(self.secondary(), encoding, out);
        }
    }
}

fn write_half(half: u64, encoding: BitmapEncoding, out: &mut Vec<u8>) {
    let bytes = half.to_be_bytes();
    match encoding {
        BitmapEncoding::Binary => out.extend_from_slice(&bytes),
        BitmapEncoding::Hex => {
            for byte in bytes {
                out.push(HEX_DIGITS[usize::from(byte >> 4)]);
                out.push(HEX_DIGITS[usize::from(byte & 0x0f)]);
            }
        }
    }
}

/// Reads one 64-bit bitmap from exactly `encoding.len_bytes()` bytes; `None` if hex text is
/// not hex.
pub(crate) fn read_half(encoding: BitmapEncoding, bytes: &[u8]) -> Option<u64> {
    match encoding {
        BitmapEncoding::Binary => bytes.try_into().ok().map(u64::from_be_bytes),
        BitmapEncoding::Hex => {
            if bytes.len() != 16 {
                return None;
            }
            bytes.iter().try_fold(0u64, |acc, &c| {
                let digit = char::from(c).to_digit(16)?;
                Some(acc << 4 | u64::from(digit))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_above_64_bring_the_secondary_bitmap() {
        let mut bitmap = Bitmap::default();
        bitmap.set(2);
        bitmap.set(70);
        let mut out = Vec::new();
        bitmap.write(BitmapEncoding::Hex, &mut out);
        assert_eq!(out, b"C0000000000000000400000000000000");
        assert_eq!(bitmap.fields().collect::<Vec<_>>(), vec![2, 70]);
    }

    #[test]
    fn primary_only_when_no_field_above_64() {
        let mut bitmap = Bitmap::default();
        for field in [3, 4, 11, 64] {
            bitmap.set(field);
        }
        let mut out = Vec::new();
        bitmap.write(BitmapEncoding::Binary, &mut out);
        assert_eq!(out, [0x30, 0x20, 0, 0, 0, 0, 0, 0x01]);
    }

    #[test]
    fn hex_reading_takes_either_case_and_refuses_the_rest() {
        assert_eq!(
            read_half(BitmapEncoding::Hex, b"00000000000000fF"),
            Some(0xff)
        );
        assert_eq!(read_half(BitmapEncoding::Hex, b"00000000000000+F"), None);
        assert_eq!(read_half(BitmapEncoding::Hex, b"0000"), None);
    }
}
