//! Random messages valid under a dialect, for property and interop tests.

use kassa_iso8583::{DataEncoding, FieldFormat, FieldSpec, Message, Mti, Spec};
use proptest::collection::vec;
use proptest::prelude::*;

fn mti() -> impl Strategy<Value = Mti> {
    proptest::array::uniform4(b'0'..=b'9').prop_map(|digits| Mti::from_digits(digits).unwrap())
}

/// A value the field accepts: the exact length if fixed, any length up to the maximum if not.
fn field_value(spec: &FieldSpec) -> BoxedStrategy<Vec<u8>> {
    let max_len = usize::from(spec.max_len);
    let len = match spec.format {
        FieldFormat::Fixed => max_len..=max_len,
        _ => 0..=max_len,
    };
    match spec.data {
        DataEncoding::Ascii => vec(0u8..=0x7f, len).boxed(),
        DataEncoding::Bcd => vec(b'0'..=b'9', len).boxed(),
        DataEncoding::Binary => vec(any::<u8>(), len).boxed(),
    }
}

/// Messages with a random subset of the dialect's fields (at most `fields_max`).
pub fn message(spec: &'static Spec, fields_max: usize) -> impl Strategy<Value = Message> {
    let numbers: Vec<u8> = spec.fields().map(|(n, _)| n).collect();
    let chosen = proptest::sample::subsequence(numbers, 0..=fields_max);
    (mti(), chosen)
        .prop_flat_map(move |(mti, fields)| {
            let values: Vec<_> = fields
                .iter()
                .filter_map(|&n| {
                    spec.field(n)
                        .map(|f| field_value(f).prop_map(move |v| (n, v)))
                })
                .collect();
            (Just(mti), values)
        })
        .prop_map(|(mti, fields)| {
            let mut message = Message::new(mti);
            for (n, value) in fields {
                message.set(n, value);
            }
            message
        })
}

/// `count` messages from a fixed seed, the same on every run.
pub fn sample_messages(spec: &'static Spec, fields_max: usize, count: usize) -> Vec<Message> {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = message(spec, fields_max);
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}
