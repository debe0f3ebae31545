//! The bytes of a packed play state: LEB128 varints of zigzagged integers, so that the small
//! numbers a state is made of (periods, amounts, hour and day counts, gaps between bucket
//! starts) take one to four bytes each (ADR 81).

/// Appends integers and bytes to a packed state.
#[derive(Default)]
pub(super) struct Packer {
    bytes: Vec<u8>,
}

impl Packer {
    pub(super) fn byte(&mut self, byte: u8) {
        self.bytes.push(byte);
    }

    /// A count or any other non-negative number.
    pub(super) fn count(&mut self, count: usize) {
        self.unsigned(count as u64);
    }

    /// Any integer; small magnitudes of either sign take few bytes.
    pub(super) fn int(&mut self, value: i64) {
        self.unsigned(((value << 1) ^ (value >> 63)) as u64);
    }

    fn unsigned(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.bytes.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.bytes.push(value as u8);
    }

    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Why packed bytes do not read back.
pub(super) type Unreadable = &'static str;

/// Reads what a [`Packer`] wrote, refusing anything short, overlong or left over.
pub(super) struct Unpacker<'b> {
    bytes: &'b [u8],
}

impl<'b> Unpacker<'b> {
    pub(super) fn new(bytes: &'b [u8]) -> Unpacker<'b> {
        Unpacker { bytes }
    }

    pub(super) fn byte(&mut self) -> Result<u8, Unreadable> {
        let (&first, rest) = self.bytes.split_first().ok_or("the state ends early")?;
        self.bytes = rest;
        Ok(first)
    }

    /// A count no larger than `max` (which bounds what a corrupt count could allocate).
    pub(super) fn count(&mut self, max: usize) -> Result<usize, Unreadable> {
        let count = self.unsigned()?;
        usize::try_from(count)
            .ok()
            .filter(|count| *count <= max)
            .ok_or("a count is out of range")
    }

    pub(super) fn int(&mut self) -> Result<i64, Unreadable> {
        let zigzag = self.unsigned()?;
        Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
    }

    fn unsigned(&mut self) -> Result<u64, Unreadable> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let part = u64::from(byte & 0x7f);
            if shift == 63 && part > 1 {
                return Err("an integer overflows");
            }
            value |= part << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("an integer overflows")
    }

    /// Checks that nothing is left over.
    pub(super) fn finish(self) -> Result<(), Unreadable> {
        match self.bytes.is_empty() {
            true => Ok(()),
            false => Err("bytes are left over"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn integers_and_counts_read_back(values in prop::collection::vec(any::<i64>(), 0..20),
                                         count in 0usize..1_000) {
            let mut packer = Packer::default();
            packer.count(count);
            for value in &values {
                packer.int(*value);
            }
            let bytes = packer.into_bytes();
            let mut unpacker = Unpacker::new(&bytes);
            prop_assert_eq!(unpacker.count(1_000).unwrap(), count);
            for value in &values {
                prop_assert_eq!(unpacker.int().unwrap(), *value);
            }
            prop_assert!(unpacker.finish().is_ok());
        }

        /// Any bytes: an answer or an error, never a panic.
        #[test]
        fn any_bytes_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let mut unpacker = Unpacker::new(&bytes);
            while unpacker.int().is_ok() {}
        }
    }

    #[test]
    fn small_numbers_take_few_bytes() {
        let mut packer = Packer::default();
        packer.int(0);
        packer.int(-1);
        packer.int(63);
        packer.int(5_000_000);
        assert_eq!(packer.into_bytes().len(), 1 + 1 + 1 + 4);
    }

    #[test]
    fn overlong_and_short_integers_are_refused() {
        assert!(Unpacker::new(&[0x80]).int().is_err());
        assert!(Unpacker::new(&[0xff; 11]).int().is_err());
        assert!(Unpacker::new(&[0x05]).count(4).is_err());
        assert!(Unpacker::new(&[1, 2]).finish().is_err());
    }
}
