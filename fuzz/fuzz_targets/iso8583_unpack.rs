//! ISO 8583 messages from an acquirer's host or anyone else on the socket: any bytes are
//! unpacked or refused, never panic, under the default dialect (pyiso8583's default_ascii) and
//! under a binary/BCD one; what is accepted packs, and unpacks back to the same message.
#![no_main]

use std::sync::LazyLock;

use kassa_iso8583::{pack, unpack, Spec};
use libfuzzer_sys::fuzz_target;

static BINARY_SPEC: LazyLock<Spec> = LazyLock::new(|| {
    let text = include_str!("../../crates/kassa-iso8583/specs/example_binary_bcd.toml");
    Spec::from_toml_str(text).expect("the example dialect is valid")
});

fn check(spec: &Spec, data: &[u8]) {
    let Ok(message) = unpack(spec, data) else {
        return;
    };
    let packed = pack(spec, &message)
        .unwrap_or_else(|e| panic!("{spec}: unpacked {message:?} does not pack: {e}"));
    assert_eq!(unpack(spec, &packed).as_ref(), Ok(&message), "{spec}");
}

fuzz_target!(|data: &[u8]| {
    check(Spec::default_ascii(), data);
    check(&BINARY_SPEC, data);
});
