//! Pack and unpack under the default dialect and a binary/BCD one, with the exact errors.

use super::*;

fn default_spec() -> &'static Spec {
    Spec::default_ascii()
}

fn message(mti: &str, fields: &[(u8, &str)]) -> Message {
    let mut message = Message::new(mti.parse().unwrap());
    for (field, value) in fields {
        message.set(*field, value.as_bytes());
    }
    message
}

fn unpack_error(spec: &Spec, bytes: &[u8]) -> UnpackError {
    unpack(spec, bytes).unwrap_err()
}

/// A dialect with every encoding the default one lacks.
fn binary_spec() -> Spec {
    Spec::from_toml_str(include_str!("../specs/example_binary_bcd.toml")).unwrap()
}

#[test]
fn pyiso8583_documented_examples() {
    // Both examples are from pyiso8583's own docstrings for default_ascii.
    let decoded = unpack(
        default_spec(),
        b"02004010100000000000161234567890123456123456111",
    )
    .unwrap();
    assert_eq!(
        decoded,
        message(
            "0200",
            &[(2, "1234567890123456"), (12, "123456"), (20, "111")]
        )
    );
    let packed = pack(
        default_spec(),
        &message("0210", &[(3, "111111"), (39, "05")]),
    )
    .unwrap();
    assert_eq!(packed, b"0210200000000200000011111105");
}

#[test]
fn a_field_above_64_sets_field_1_and_the_secondary_bitmap() {
    let sign_on = message("0800", &[(7, "1205120000"), (11, "000001"), (70, "001")]);
    let packed = pack(default_spec(), &sign_on).unwrap();
    let expected = [
        "0800",
        "8220000000000000",
        "0400000000000000",
        "1205120000",
        "000001",
        "001",
    ];
    assert_eq!(packed, expected.concat().as_bytes());
    assert_eq!(unpack(default_spec(), &packed).unwrap(), sign_on);
}

#[test]
fn binary_dialect_roundtrips_with_bcd_padding_and_prefixes() {
    let spec = binary_spec();
    let mut original = message("0100", &[(2, "4111111111111"), (3, "000000"), (14, "251")]);
    original
        .set(35, "41111111111111112512")
        .set(55, vec![0x9f, 0x26, 0x00, 0xff]);
    original.set(43, "KASSA     ").set(70, "301");
    let packed = pack(&spec, &original).unwrap();
    // MTI 2 BCD bytes, two binary bitmaps, PAN: prefix 0x13 then 7 bytes with a leading 0 pad.
    assert_eq!(&packed[..2], &[0x01, 0x00]);
    assert_eq!(
        &packed[18..26],
        &[0x13, 0x04, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11]
    );
    assert_eq!(unpack(&spec, &packed).unwrap(), original);
}

#[test]
fn an_ascii_pad_fills_a_short_fixed_field() {
    let spec = binary_spec();
    let packed = pack(&spec, &message("0100", &[(43, "KASSA")])).unwrap();
    assert_eq!(
        unpack(&spec, &packed).unwrap().get_text(43),
        Some("KASSA     ")
    );
}

#[test]
fn pack_errors_name_the_field_and_the_fault() {
    let spec = default_spec();
    let cases: [(Message, PackError); 5] = [
        (
            message("0200", &[(4, "1000")]),
            PackError {
                field: 4,
                kind: PackErrorKind::WrongLength {
                    len: 4,
                    expected: 12,
                },
            },
        ),
        (
            message("0200", &[(2, "41111111111111111111")]),
            PackError {
                field: 2,
                kind: PackErrorKind::TooLong {
                    len: 20,
                    max_len: 19,
                },
            },
        ),
        (
            message("0200", &[(41, "TERM-é1")]),
            PackError {
                field: 41,
                kind: PackErrorKind::NotAscii { index: 5 },
            },
        ),
        (
            message("0200", &[(65, "0000000000000000")]),
            PackError {
                field: 65,
                kind: PackErrorKind::FieldNotInSpec,
            },
        ),
        (
            message("0200", &[(1, "x")]),
            PackError {
                field: 1,
                kind: PackErrorKind::BadFieldNumber,
            },
        ),
    ];
    for (message, expected) in cases {
        assert_eq!(pack(spec, &message).unwrap_err(), expected);
    }
    let bcd = pack(&binary_spec(), &message("0100", &[(3, "00a000")])).unwrap_err();
    assert_eq!(
        bcd,
        PackError {
            field: 3,
            kind: PackErrorKind::NotNumeric { index: 2 }
        }
    );
}

#[test]
fn pack_into_leaves_the_buffer_as_it_was_on_error() {
    let mut out = b"kept".to_vec();
    let bad = message("0200", &[(3, "000000"), (4, "1")]);
    assert!(pack_into(default_spec(), &bad, &mut out).is_err());
    assert_eq!(out, b"kept");
}

#[test]
fn unpack_errors_name_location_offset_and_fault() {
    use Location::*;
    use UnpackErrorKind::*;
    let spec = default_spec();
    let at = |location, offset, kind| UnpackError {
        location,
        offset,
        kind,
    };
    let cases: Vec<(&[u8], UnpackError)> = vec![
        (
            b"02",
            at(
                Mti,
                0,
                Truncated {
                    needed_bytes: 4,
                    available_bytes: 2,
                },
            ),
        ),
        (b"02x0", at(Mti, 0, BadMti)),
        (
            b"0200400000000000000",
            at(
                PrimaryBitmap,
                4,
                Truncated {
                    needed_bytes: 16,
                    available_bytes: 15,
                },
            ),
        ),
        (b"0200G000000000000000", at(PrimaryBitmap, 4, BadBitmapHex)),
        (
            b"02008000000000000000000000000000000",
            at(
                SecondaryBitmap,
                20,
                Truncated {
                    needed_bytes: 16,
                    available_bytes: 15,
                },
            ),
        ),
        (
            b"02004000000000000000A91234",
            at(Field(2), 20, LengthNotNumeric),
        ),
        (
            b"0200400000000000000020123456789012345678901",
            at(
                Field(2),
                20,
                LengthTooLarge {
                    len: 20,
                    max_len: 19,
                },
            ),
        ),
        (
            b"0200400000000000000016123456",
            at(
                Field(2),
                22,
                Truncated {
                    needed_bytes: 16,
                    available_bytes: 6,
                },
            ),
        ),
        (b"020020000000000000000012\xff4", at(Field(3), 24, NotAscii)),
        (
            b"02002000000000000000000000xyz",
            at(End, 26, TrailingBytes { count: 3 }),
        ),
        (
            b"020080000000000000008000000000000000000000000000",
            at(Field(65), 36, FieldNotInSpec),
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            unpack_error(spec, bytes),
            expected,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn unpack_errors_in_binary_dialects() {
    use UnpackErrorKind::*;
    let spec = binary_spec();
    // MTI 0100, primary bitmap with field 3, proc code with a nibble above 9 in its 2nd byte.
    let bad_bcd = [
        &[0x01, 0x00][..],
        &[0x20, 0, 0, 0, 0, 0, 0, 0],
        &[0x00, 0x0A, 0x00],
    ]
    .concat();
    let error = unpack_error(&spec, &bad_bcd);
    assert_eq!(
        (error.location, error.offset, error.kind),
        (Location::Field(3), 11, NotNumeric)
    );
    // Field 14, three digits right-padded with F: a pad nibble of 0 is refused.
    let bad_pad = [
        &[0x01, 0x00][..],
        &[0x00, 0x04, 0, 0, 0, 0, 0, 0],
        &[0x25, 0x10],
    ]
    .concat();
    let error = unpack_error(&spec, &bad_pad);
    assert_eq!(
        (error.location, error.offset, error.kind),
        (Location::Field(14), 11, BadPadding)
    );
    let bad_mti = [&[0x0A, 0x00][..], &[0u8; 8]].concat();
    assert_eq!(unpack_error(&spec, &bad_mti).kind, BadMti);
    let bad_prefix = [&[0x01, 0x00][..], &[0x40, 0, 0, 0, 0, 0, 0, 0], &[0x1A]].concat();
    assert_eq!(unpack_error(&spec, &bad_prefix).kind, LengthNotNumeric);
}

#[test]
fn errors_read_as_sentences() {
    let error = unpack_error(default_spec(), b"0200400000000000000016123456");
    assert_eq!(
        error.to_string(),
        "field 2 at byte 22: truncated: needs 16 bytes, 6 left"
    );
    let error = pack(default_spec(), &message("0200", &[(4, "1000")])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "field 4: length 4, the field is fixed at 12"
    );
}
