//! A message as Kassa handles it: a validated MTI and the values of its data fields.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A message type indicator: four decimal digits (version, class, function, origin), e.g. `0200`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mti([u8; 4]);

/// Text that is not four ASCII digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an MTI is four decimal digits")]
pub struct MtiError;

impl Mti {
    /// Takes four ASCII digits.
    pub fn from_digits(digits: [u8; 4]) -> Result<Mti, MtiError> {
        if digits.iter().all(u8::is_ascii_digit) {
            Ok(Mti(digits))
        } else {
            Err(MtiError)
        }
    }

    /// The four ASCII digits.
    pub fn digits(&self) -> [u8; 4] {
        self.0
    }

    /// The MTI as text, e.g. `"0200"`.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("????")
    }

    /// The message class (second digit): `1` authorization, `2` financial, `4` reversal,
    /// `8` network management...
    pub fn class(&self) -> u8 {
        self.0[1] - b'0'
    }

    /// The message function (third digit): `0` request, `1` request response, `2` advice,
    /// `3` advice response...
    pub fn function(&self) -> u8 {
        self.0[2] - b'0'
    }

    /// Whether this is a request or an advice (function 0 or 2), i.e. something to answer.
    pub fn expects_response(&self) -> bool {
        self.function() & 1 == 0
    }

    /// The answer's MTI: `0200` → `0210`, `0420`/`0421` → `0430`. `None` for a message that is
    /// itself a response.
    pub fn response(&self) -> Option<Mti> {
        if !self.expects_response() {
            return None;
        }
        let [version, class, function, _origin] = self.0;
        // Repeats (origin 1) are answered like the original; the answer comes from the other side.
        Some(Mti([version, class, function + 1, b'0']))
    }
}

impl FromStr for Mti {
    type Err = MtiError;

    fn from_str(text: &str) -> Result<Mti, MtiError> {
        let digits: [u8; 4] = text.as_bytes().try_into().map_err(|_| MtiError)?;
        Mti::from_digits(digits)
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mti({})", self.as_str())
    }
}

/// Fields whose value `Debug` never prints: card data, tracks, private data (where Kassa's
/// dialect carries the 3-D Secure authentication value, ADR 68), PIN block.
const SECRET_FIELDS: [u8; 8] = [2, 14, 34, 35, 36, 45, 48, 52];

/// A message: MTI plus field values by number (2..=128; the bitmaps are derived when packing).
///
/// Values are the field's content as the application sees it: text bytes for ASCII fields,
/// ASCII digits for BCD fields (packing turns them into nibbles), raw bytes for binary fields.
/// `Debug` masks card data, so a message can be logged without leaking a PAN.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    mti: Mti,
    fields: BTreeMap<u8, Vec<u8>>,
}

impl Message {
    /// An empty message of type `mti`.
    pub fn new(mti: Mti) -> Message {
        Message {
            mti,
            fields: BTreeMap::new(),
        }
    }

    /// The message type.
    pub fn mti(&self) -> Mti {
        self.mti
    }

    /// Changes the message type (e.g. when turning a request into its answer).
    pub fn set_mti(&mut self, mti: Mti) -> &mut Self {
        self.mti = mti;
        self
    }

    /// Sets field `field` (checked against the dialect when packing).
    pub fn set(&mut self, field: u8, value: impl Into<Vec<u8>>) -> &mut Self {
        self.fields.insert(field, value.into());
        self
    }

    /// Removes field `field`, returning its value.
    pub fn remove(&mut self, field: u8) -> Option<Vec<u8>> {
        self.fields.remove(&field)
    }

    /// The raw value of field `field`.
    pub fn get(&self, field: u8) -> Option<&[u8]> {
        self.fields.get(&field).map(Vec::as_slice)
    }

    /// The value of field `field` as text; `None` if absent or not UTF-8.
    pub fn get_text(&self, field: u8) -> Option<&str> {
        self.get(field).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether field `field` is present.
    pub fn has(&self, field: u8) -> bool {
        self.fields.contains_key(&field)
    }

    /// Present fields in number order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.fields.iter().map(|(n, v)| (*n, v.as_slice()))
    }

    /// Number of present fields.
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }
}

/// `412345******1234` for a PAN long enough to keep 6 + 4 digits, `****` otherwise.
fn masked_pan(pan: &[u8]) -> String {
    match (
        pan.get(..6),
        pan.len().checked_sub(4).and_then(|at| pan.get(at..)),
    ) {
        (Some(first), Some(last)) if pan.len() >= 13 => format!(
            "{}{}{}",
            String::from_utf8_lossy(first),
            "*".repeat(pan.len() - 10),
            String::from_utf8_lossy(last)
        ),
        _ => "****".to_string(),
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        map.entry(&"mti", &self.mti.as_str());
        for (field, value) in &self.fields {
            let shown = match *field {
                2 => masked_pan(value),
                n if SECRET_FIELDS.contains(&n) => format!("<{} bytes hidden>", value.len()),
                _ => String::from_utf8_lossy(value).into_owned(),
            };
            map.entry(field, &shown);
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mti_takes_only_four_digits() {
        assert_eq!("0200".parse::<Mti>().unwrap().as_str(), "0200");
        for bad in ["020", "02000", "02a0", "", "０２００"] {
            assert_eq!(bad.parse::<Mti>(), Err(MtiError), "{bad:?}");
        }
    }

    #[test]
    fn mti_response_flips_request_to_answer() {
        let answer = |text: &str| {
            text.parse::<Mti>()
                .unwrap()
                .response()
                .map(|m| m.to_string())
        };
        assert_eq!(answer("0200").as_deref(), Some("0210"));
        assert_eq!(answer("0800").as_deref(), Some("0810"));
        assert_eq!(answer("0420").as_deref(), Some("0430"));
        assert_eq!(answer("0421").as_deref(), Some("0430"));
        assert_eq!(answer("0210"), None);
    }

    #[test]
    fn debug_never_shows_card_data() {
        let mut message = Message::new("0200".parse().unwrap());
        message
            .set(2, "4111111111111111")
            .set(35, "4111111111111111=2512")
            .set(4, "000000001000");
        let shown = format!("{message:?}");
        assert!(!shown.contains("4111111111111111"), "{shown}");
        assert!(shown.contains("411111******1111"), "{shown}");
        assert!(shown.contains("000000001000"), "{shown}");
        message.set(2, "12345");
        assert!(!format!("{message:?}").contains("12345"));
    }
}
