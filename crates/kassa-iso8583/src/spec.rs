//! Dialects as data: a [`Spec`] says, for every field number, how the field is laid out on the
//! wire. Acquirers differ in exactly these tables, so a new acquirer is a new TOML file, not new
//! code. The default dialect ([`Spec::default_ascii`]) is pyiso8583's `default_ascii`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// Highest data field number: a primary and a secondary bitmap address fields 1..=128.
pub const FIELD_MAX: u8 = 128;

/// The embedded default dialect, field for field pyiso8583 4.0.1's `default_ascii`.
const DEFAULT_ASCII_TOML: &str = include_str!("../specs/default_ascii.toml");

static DEFAULT_ASCII: LazyLock<Spec> = LazyLock::new(|| {
    // The file ships inside the crate and a unit test loads it: this cannot fail at run time.
    Spec::from_toml_str(DEFAULT_ASCII_TOML).expect("the embedded default_ascii spec is valid")
});

/// How a field's length is known: fixed by the spec, or carried in a prefix of 1..=4 digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldFormat {
    Fixed,
    LVar,
    LLVar,
    LLLVar,
    LLLLVar,
}

impl FieldFormat {
    /// Decimal digits of the length prefix; `None` for a fixed field.
    pub fn length_digits(self) -> Option<u32> {
        match self {
            FieldFormat::Fixed => None,
            FieldFormat::LVar => Some(1),
            FieldFormat::LLVar => Some(2),
            FieldFormat::LLLVar => Some(3),
            FieldFormat::LLLLVar => Some(4),
        }
    }
}

/// How a field's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataEncoding {
    /// One byte per character, each below 0x80. Length counts bytes.
    #[default]
    Ascii,
    /// Two decimal digits per byte. The value is given as ASCII digits; length counts digits.
    Bcd,
    /// Raw bytes, taken as they are. Length counts bytes.
    Binary,
}

/// How a variable field's length prefix is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrefixEncoding {
    /// One ASCII digit per length digit (`LLVAR` = 2 bytes, `"19"`).
    #[default]
    Ascii,
    /// Two digits per byte (`LLVAR` = 1 byte `0x19`, `LLLVAR` = 2 bytes `0x01 0x23`).
    Bcd,
    /// A big-endian unsigned integer: 1 byte for `LVAR`/`LLVAR`, 2 for `LLLVAR`/`LLLLVAR`.
    Binary,
}

/// Which side padding goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PadSide {
    Left,
    Right,
}

/// Padding: for ASCII fixed fields, fills a short value up to the fixed length when packing;
/// for BCD data, the nibble that completes an odd number of digits (and that unpacking checks
/// and removes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pad {
    pub side: PadSide,
    /// The fill character: any ASCII character for ASCII data, a hex digit for BCD.
    pub fill: char,
}

/// BCD values of odd length get a leading `0` unless the dialect says otherwise.
const BCD_DEFAULT_PAD: Pad = Pad {
    side: PadSide::Left,
    fill: '0',
};

/// The layout of one data field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub format: FieldFormat,
    /// The exact length of a fixed field, the maximum of a variable one: bytes, or digits for BCD.
    pub max_len: u16,
    #[serde(default)]
    pub data: DataEncoding,
    #[serde(default)]
    pub prefix: PrefixEncoding,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad: Option<Pad>,
    #[serde(default)]
    pub description: String,
}

impl FieldSpec {
    /// Bytes of the length prefix (0 for a fixed field).
    pub fn prefix_len_bytes(&self) -> usize {
        let Some(digits) = self.format.length_digits() else {
            return 0;
        };
        match self.prefix {
            PrefixEncoding::Ascii => digits as usize,
            PrefixEncoding::Bcd => digits.div_ceil(2) as usize,
            PrefixEncoding::Binary if digits <= 2 => 1,
            PrefixEncoding::Binary => 2,
        }
    }

    /// Largest length the prefix can express.
    fn prefix_capacity(&self) -> usize {
        let Some(digits) = self.format.length_digits() else {
            return usize::MAX;
        };
        match self.prefix {
            PrefixEncoding::Ascii | PrefixEncoding::Bcd => 10usize.pow(digits) - 1,
            PrefixEncoding::Binary => (1usize << (8 * self.prefix_len_bytes())) - 1,
        }
    }

    /// Bytes a value of `len` (in the field's own unit) takes on the wire, without the prefix.
    pub fn data_len_bytes(&self, len: usize) -> usize {
        match self.data {
            DataEncoding::Bcd => len.div_ceil(2),
            DataEncoding::Ascii | DataEncoding::Binary => len,
        }
    }

    /// The pad for BCD nibble alignment: the dialect's, or a leading `0`.
    pub(crate) fn bcd_pad(&self) -> Pad {
        self.pad.unwrap_or(BCD_DEFAULT_PAD)
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_len == 0 {
            return Err("max_len must be at least 1".into());
        }
        if usize::from(self.max_len) > self.prefix_capacity() {
            return Err(format!(
                "max_len {} does not fit a {:?} prefix in {:?}",
                self.max_len, self.format, self.prefix
            ));
        }
        match (self.data, self.pad) {
            (_, None) => Ok(()),
            (DataEncoding::Binary, Some(_)) => Err("binary data takes no pad".into()),
            (DataEncoding::Bcd, Some(pad)) if !pad.fill.is_ascii_hexdigit() => {
                Err("a BCD pad must be a hex digit".into())
            }
            (DataEncoding::Ascii, Some(pad)) if !pad.fill.is_ascii() => {
                Err("an ASCII pad must be an ASCII character".into())
            }
            (DataEncoding::Ascii, Some(_)) if self.format != FieldFormat::Fixed => {
                Err("an ASCII pad only applies to a fixed field".into())
            }
            _ => Ok(()),
        }
    }
}

/// How the MTI is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MtiEncoding {
    /// Four ASCII digits.
    #[default]
    Ascii,
    /// Two BCD bytes.
    Bcd,
}

/// How each 64-bit bitmap is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BitmapEncoding {
    /// 8 raw bytes.
    Binary,
    /// 16 hex characters (packing writes upper case; unpacking takes either case).
    #[default]
    Hex,
}

impl BitmapEncoding {
    /// Bytes one 64-field bitmap takes.
    pub fn len_bytes(self) -> usize {
        match self {
            BitmapEncoding::Binary => 8,
            BitmapEncoding::Hex => 16,
        }
    }
}

/// An ISO 8583 dialect: MTI and bitmap encodings plus a layout per data field 2..=128.
/// Field 1 is always the secondary bitmap, set by packing when any field 65..=128 is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SpecFile", into = "SpecFile")]
pub struct Spec {
    name: String,
    mti: MtiEncoding,
    bitmap: BitmapEncoding,
    /// Indexed by field number; entries 0 and 1 are always `None`.
    fields: Vec<Option<FieldSpec>>,
}

/// The shape of a dialect file: fields keyed by their number as text (TOML keys are text).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    name: String,
    #[serde(default)]
    mti: MtiEncoding,
    #[serde(default)]
    bitmap: BitmapEncoding,
    fields: BTreeMap<String, FieldSpec>,
}

/// A dialect file that does not describe a usable dialect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("dialect file: {0}")]
    Syntax(String),
    #[error("field {key:?}: not a data field number (2..=128)")]
    BadFieldNumber { key: String },
    #[error("field {field}: {reason}")]
    BadField { field: u8, reason: String },
}

impl TryFrom<SpecFile> for Spec {
    type Error = SpecError;

    fn try_from(file: SpecFile) -> Result<Self, SpecError> {
        let mut fields = vec![None; usize::from(FIELD_MAX) + 1];
        for (key, field_spec) in file.fields {
            let field = key
                .parse::<u8>()
                .ok()
                .filter(|n| (2..=FIELD_MAX).contains(n))
                .ok_or_else(|| SpecError::BadFieldNumber { key: key.clone() })?;
            field_spec
                .validate()
                .map_err(|reason| SpecError::BadField { field, reason })?;
            fields[usize::from(field)] = Some(field_spec);
        }
        Ok(Spec {
            name: file.name,
            mti: file.mti,
            bitmap: file.bitmap,
            fields,
        })
    }
}

impl From<Spec> for SpecFile {
    fn from(spec: Spec) -> Self {
        let fields = spec
            .fields
            .into_iter()
            .enumerate()
            .filter_map(|(n, f)| f.map(|f| (n.to_string(), f)))
            .collect();
        SpecFile {
            name: spec.name,
            mti: spec.mti,
            bitmap: spec.bitmap,
            fields,
        }
    }
}

impl Spec {
    /// The default dialect: pyiso8583 4.0.1's `default_ascii` (all ASCII, hex bitmaps).
    pub fn default_ascii() -> &'static Spec {
        &DEFAULT_ASCII
    }

    /// Loads a dialect from TOML text (the format of `specs/default_ascii.toml`).
    pub fn from_toml_str(text: &str) -> Result<Spec, SpecError> {
        toml::from_str(text).map_err(|error| SpecError::Syntax(error.to_string()))
    }

    /// The dialect's name, for errors and logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How the MTI is written.
    pub fn mti_encoding(&self) -> MtiEncoding {
        self.mti
    }

    /// How each bitmap is written.
    pub fn bitmap_encoding(&self) -> BitmapEncoding {
        self.bitmap
    }

    /// The layout of data field `field`, if the dialect has it.
    pub fn field(&self, field: u8) -> Option<&FieldSpec> {
        self.fields.get(usize::from(field)).and_then(Option::as_ref)
    }

    /// Every field the dialect defines, in field-number order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &FieldSpec)> {
        (2..=FIELD_MAX).filter_map(|n| self.field(n).map(|f| (n, f)))
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ascii_matches_pyiso8583_on_sample_fields() {
        let spec = Spec::default_ascii();
        assert_eq!(spec.name(), "default_ascii");
        assert_eq!(spec.bitmap_encoding(), BitmapEncoding::Hex);
        assert_eq!(spec.fields().count(), 126, "2..=128 without 65");
        let pan = spec.field(2).unwrap();
        assert_eq!((pan.format, pan.max_len), (FieldFormat::LLVar, 19));
        let icc = spec.field(55).unwrap();
        assert_eq!((icc.format, icc.max_len), (FieldFormat::LLLVar, 510));
        let original_data = spec.field(90).unwrap();
        assert_eq!(
            (original_data.format, original_data.max_len),
            (FieldFormat::Fixed, 42)
        );
        assert_eq!(spec.field(128).unwrap().max_len, 16);
        assert!(spec.field(65).is_none() && spec.field(1).is_none());
    }

    #[test]
    fn a_dialect_loads_from_toml_with_binary_bitmaps_and_bcd() {
        let spec = Spec::from_toml_str(
            r#"
            name = "acquirer-x"
            mti = "bcd"
            bitmap = "binary"
            [fields]
            2 = { format = "llvar", max_len = 19, data = "bcd", prefix = "bcd" }
            4 = { format = "fixed", max_len = 12, data = "bcd" }
            35 = { format = "llvar", max_len = 37, data = "bcd", prefix = "binary", pad = { side = "right", fill = "F" } }
            43 = { format = "fixed", max_len = 40, pad = { side = "right", fill = " " }, description = "Name" }
            55 = { format = "lllvar", max_len = 255, data = "binary", prefix = "binary" }
            "#,
        )
        .unwrap();
        assert_eq!(spec.mti_encoding(), MtiEncoding::Bcd);
        assert_eq!(spec.bitmap_encoding(), BitmapEncoding::Binary);
        assert_eq!(spec.field(2).unwrap().prefix_len_bytes(), 1);
        assert_eq!(spec.field(55).unwrap().prefix_len_bytes(), 2);
        assert_eq!(spec.field(35).unwrap().bcd_pad().fill, 'F');
        assert_eq!(spec.field(43).unwrap().description, "Name");
    }

    #[test]
    fn a_spec_survives_a_json_roundtrip() {
        let spec = Spec::default_ascii();
        let json = serde_json::to_string(spec).unwrap();
        let back: Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, spec);
    }

    #[test]
    fn impossible_dialects_are_refused_with_the_field() {
        let cases = [
            ("1 = { format = \"fixed\", max_len = 8 }", "\"1\""),
            ("129 = { format = \"fixed\", max_len = 8 }", "\"129\""),
            ("2 = { format = \"llvar\", max_len = 100 }", "field 2: max_len 100"),
            ("2 = { format = \"llvar\", max_len = 300, prefix = \"binary\" }", "field 2: max_len 300"),
            ("3 = { format = \"fixed\", max_len = 0 }", "field 3: max_len must"),
            ("4 = { format = \"fixed\", max_len = 2, data = \"bcd\", pad = { side = \"left\", fill = \"x\" } }", "hex digit"),
            ("5 = { format = \"fixed\", max_len = 2, colour = \"red\" }", "colour"),
        ];
        for (field_line, expected) in cases {
            let text = format!("name = \"x\"\n[fields]\n{field_line}\n");
            let error = Spec::from_toml_str(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{field_line}: {error}");
        }
    }
}
