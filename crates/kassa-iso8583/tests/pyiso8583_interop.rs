//! Kassa's codec against an independent implementation, pyiso8583 4.0.1 with its
//! `default_ascii` spec: what pyiso8583 packs Kassa unpacks field for field (and packs to the
//! same bytes), what Kassa packs pyiso8583 unpacks field for field, and both refuse the same
//! malformed messages. Needs `KASSA_PYISO8583_PYTHON` (see `common/pyiso8583.rs`).

use kassa_iso8583::{pack, unpack, DataEncoding, FieldFormat, Message, PrefixEncoding, Spec};
use serde_json::Value;

#[allow(dead_code)]
mod common {
    pub mod pyiso8583;
    pub mod strategies;
}
use common::pyiso8583::{from_doc, to_doc, Peer};
use common::strategies::sample_messages;

/// Random messages per direction, beyond the hand-written ones.
const RANDOM_MESSAGES: usize = 300;

fn message(mti: &str, fields: &[(u8, &str)]) -> Message {
    let mut message = Message::new(mti.parse().unwrap());
    for (field, value) in fields {
        message.set(*field, value.as_bytes());
    }
    message
}

/// The brief's messages: a purchase, a sign-on, and ones with a secondary bitmap.
fn known_messages() -> Vec<Message> {
    vec![
        message(
            "0200",
            &[
                (2, "4111111111111111"),
                (3, "000000"),
                (4, "000000001000"),
                (7, "1205143015"),
                (11, "000123"),
                (18, "7995"),
                (37, "533912000123"),
                (41, "TERM0001"),
                (42, "KASSA-MERCHANT1"),
                (49, "978"),
            ],
        ),
        message("0800", &[(7, "1205143015"), (11, "000124"), (70, "001")]),
        message(
            "0420",
            &[
                (2, "5500000000000004"),
                (3, "000000"),
                (4, "000000002500"),
                (11, "000125"),
                (39, "68"),
                (90, "020000012312051430150000000000000000000000"),
                (128, "0123456789ABCDEF"),
            ],
        ),
        message("0810", &[(11, "000124"), (39, "00"), (70, "301")]),
    ]
}

fn all_messages() -> Vec<Message> {
    let mut messages = known_messages();
    messages.extend(sample_messages(Spec::default_ascii(), 30, RANDOM_MESSAGES));
    messages
}

/// pyiso8583's `len_type` for an ASCII length prefix is its digit count; 0 is fixed.
fn pyiso8583_len_type(format: FieldFormat) -> u64 {
    format.length_digits().map_or(0, u64::from)
}

#[test]
fn the_default_dialect_is_pyiso8583_default_ascii_field_for_field() {
    let Some(peer) = Peer::find() else { return };
    let theirs = peer.run("spec", &[], &Value::Null);
    let theirs = theirs.as_object().unwrap();
    let spec = Spec::default_ascii();
    for (key, their_field) in theirs {
        let Ok(number @ 2..=128) = key.parse::<u8>() else {
            continue;
        };
        if number == 65 {
            // pyiso8583 reads bit 65 as a tertiary bitmap; Kassa leaves the field out.
            assert!(spec.field(65).is_none());
            continue;
        }
        let ours = spec
            .field(number)
            .unwrap_or_else(|| panic!("field {number} missing"));
        assert_eq!(their_field["data_enc"], "ascii", "field {number}");
        assert_eq!(their_field["len_enc"], "ascii", "field {number}");
        assert_eq!(
            (ours.data, ours.prefix),
            (DataEncoding::Ascii, PrefixEncoding::Ascii)
        );
        assert_eq!(
            their_field["len_type"],
            pyiso8583_len_type(ours.format),
            "field {number}"
        );
        assert_eq!(their_field["max_len"], ours.max_len, "field {number}");
        assert_eq!(
            their_field["desc"],
            ours.description.as_str(),
            "field {number}"
        );
        assert!(ours.pad.is_none(), "field {number}");
    }
    assert_eq!(
        spec.fields().count(),
        theirs.keys().filter(|k| k.parse::<u8>().is_ok()).count() - 2
    );
    assert_eq!(
        (
            theirs["p"]["max_len"].as_u64(),
            theirs["h"]["max_len"].as_u64()
        ),
        (Some(16), Some(0))
    );
}

#[test]
fn pyiso8583_packs_and_kassa_unpacks_field_for_field() {
    let Some(peer) = Peer::find() else { return };
    let messages = all_messages();
    let docs: Vec<Value> = messages.iter().map(to_doc).collect();
    let packed = peer.run("pack", &[], &Value::from(docs));
    let packed = packed.as_array().unwrap();
    assert_eq!(packed.len(), messages.len());
    for (expected, hex) in messages.iter().zip(packed) {
        let bytes = hex::decode(hex.as_str().expect("pyiso8583 packed it")).unwrap();
        let unpacked = unpack(Spec::default_ascii(), &bytes)
            .unwrap_or_else(|e| panic!("{e} in {:?}", String::from_utf8_lossy(&bytes)));
        assert_eq!(&unpacked, expected);
        assert_eq!(
            pack(Spec::default_ascii(), expected).unwrap(),
            bytes,
            "same bytes"
        );
    }
}

#[test]
fn kassa_packs_and_pyiso8583_unpacks_field_for_field() {
    let Some(peer) = Peer::find() else { return };
    let messages = all_messages();
    let hex: Vec<Value> = messages
        .iter()
        .map(|m| hex::encode(pack(Spec::default_ascii(), m).unwrap()).into())
        .collect();
    let decoded = peer.run("unpack", &[], &Value::from(hex));
    let decoded = decoded.as_array().unwrap();
    assert_eq!(decoded.len(), messages.len());
    for (expected, doc) in messages.iter().zip(decoded) {
        assert_eq!(&from_doc(doc), expected);
        let has_secondary = expected.fields().any(|(n, _)| n > 64);
        assert_eq!(
            doc.get("1").is_some(),
            has_secondary,
            "secondary bitmap in {doc}"
        );
    }
}

#[test]
fn both_refuse_the_same_malformed_messages() {
    let Some(peer) = Peer::find() else { return };
    let malformed: [&[u8]; 8] = [
        b"02",                                          // truncated MTI
        b"0200400000000000000",                         // truncated bitmap
        b"0200G000000000000000",                        // bitmap not hex
        b"02004000000000000000A91234",                  // PAN length not digits
        b"0200400000000000000020123456789012345678901", // PAN longer than 19
        b"0200400000000000000016123456",                // PAN shorter than its length
        b"02002000000000000000000000xyz",               // bytes after the last field
        b"020020000000000000000012\xff4",               // not ASCII
    ];
    let hex: Vec<Value> = malformed.iter().map(|m| hex::encode(m).into()).collect();
    let decoded = peer.run("unpack", &[], &Value::from(hex));
    for (bytes, doc) in malformed.iter().zip(decoded.as_array().unwrap()) {
        let ours = unpack(Spec::default_ascii(), bytes).map(|_| ());
        assert_both_refused(doc, ours, &String::from_utf8_lossy(bytes));
    }
}

#[test]
fn both_refuse_to_pack_values_that_do_not_fit() {
    let Some(peer) = Peer::find() else { return };
    let unfit = [
        message("0200", &[(2, "41111111111111111111")]), // PAN over 19
        message("0200", &[(4, "1000")]),                 // fixed field too short
        message("0200", &[(41, "TERM-é01")]),            // not ASCII
    ];
    let docs: Vec<Value> = unfit.iter().map(to_doc).collect();
    let packed = peer.run("pack", &[], &Value::from(docs));
    for (message, result) in unfit.iter().zip(packed.as_array().unwrap()) {
        let ours = pack(Spec::default_ascii(), message).map(|_| ());
        assert_both_refused(result, ours, &format!("{message:?}"));
    }
}

fn assert_both_refused<E: std::fmt::Debug>(theirs: &Value, ours: Result<(), E>, what: &str) {
    assert!(
        theirs.get("error").is_some(),
        "pyiso8583 took {what}: {theirs}"
    );
    assert!(ours.is_err(), "Kassa took {what}");
}
