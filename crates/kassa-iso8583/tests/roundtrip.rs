//! Property tests: any valid message survives pack → unpack unchanged, in the default dialect
//! and in a binary/BCD one; unpacking any bytes returns, never panics, and what it accepts packs
//! back to a message equal to itself.

use std::sync::LazyLock;

use kassa_iso8583::{pack, unpack, Spec};
use proptest::collection::vec;
use proptest::prelude::*;

#[allow(dead_code)]
mod common {
    pub mod strategies;
}
use common::strategies::message;

static BINARY_SPEC: LazyLock<Spec> = LazyLock::new(|| {
    Spec::from_toml_str(include_str!("../specs/example_binary_bcd.toml")).unwrap()
});

/// Unpacks, and when that works checks that packing gives back an equal message.
fn unpack_never_panics_and_roundtrips(spec: &Spec, bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(message) = unpack(spec, bytes) {
        let packed = pack(spec, &message).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(unpack(spec, &packed).ok(), Some(message));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn default_dialect_roundtrips(message in message(Spec::default_ascii(), 24)) {
        let packed = pack(Spec::default_ascii(), &message).unwrap();
        prop_assert_eq!(unpack(Spec::default_ascii(), &packed).unwrap(), message);
    }

    #[test]
    fn binary_dialect_roundtrips(message in message(&BINARY_SPEC, 15)) {
        let packed = pack(&BINARY_SPEC, &message).unwrap();
        prop_assert_eq!(unpack(&BINARY_SPEC, &packed).unwrap(), message);
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        unpack_never_panics_and_roundtrips(Spec::default_ascii(), &bytes)?;
        unpack_never_panics_and_roundtrips(&BINARY_SPEC, &bytes)?;
    }

    /// A valid message with some bytes changed, so the damage is past the MTI and bitmap.
    #[test]
    fn damaged_messages_never_panic(
        message in message(Spec::default_ascii(), 12),
        damage in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = pack(Spec::default_ascii(), &message).unwrap();
        for (index, byte) in damage {
            let at = index.index(bytes.len());
            bytes[at] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        unpack_never_panics_and_roundtrips(Spec::default_ascii(), &bytes)?;
    }
}
