//! The acquirer's messages, pure: what Kassa sends (built from the operation, the terminal
//! and the trace numbers) and what the host's answers mean. No I/O and no clock of its own,
//! so every message is tested byte for byte.

use kassa_core::Currency;
use kassa_iso8583::{Message, Mti};
use time::OffsetDateTime;

use super::advice::{AdviceAnswer, ReversalAdvice};
use super::numbers::TraceNumber;
use crate::card::CardDetails;
use crate::provider::ProviderError;
use crate::threeds::CardAuthentication;
use secrecy::ExposeSecret;

/// Merchant category code of betting and casino gambling (field 18).
pub const MCC_GAMBLING: &str = "7995";
/// Field 22: PAN keyed in, card not present.
const POS_ENTRY_KEYED: &str = "010";
/// Field 25: electronic commerce.
const POS_CONDITION_ECOMMERCE: &str = "59";
/// Field 39 of an approval.
pub const APPROVED: &str = "00";
/// Field 39 when the host does not know the original of a reversal.
const ORIGINAL_NOT_FOUND: &str = "25";

/// Network management codes (field 70).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// `001`, after every connect.
    SignOn,
    /// `002`, before a planned disconnect.
    SignOff,
    /// `301`, the keep-alive.
    Echo,
}

impl Network {
    fn code(self) -> &'static str {
        match self {
            Network::SignOn => "001",
            Network::SignOff => "002",
            Network::Echo => "301",
        }
    }
}

/// A financial request and its processing code (field 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Financial {
    /// `0200`, `000000`: the purchase that takes a deposit.
    Purchase,
    /// `0200`, `200000`: money back to the card of an earlier purchase.
    Refund,
    /// `0200`, `260000`: an original credit transaction, a payout to a card.
    OriginalCredit,
    /// `0100`, `000000`: an authorization, completed later by a `0220` advice (an account
    /// with `capture = "authorize_then_complete"`, ADR 69).
    Authorization,
}

impl Financial {
    /// The request's MTI.
    pub fn mti(self) -> &'static str {
        match self {
            Financial::Authorization => "0100",
            Financial::Purchase | Financial::Refund | Financial::OriginalCredit => "0200",
        }
    }

    /// Field 3.
    pub fn processing_code(self) -> &'static str {
        match self {
            Financial::Purchase | Financial::Authorization => "000000",
            Financial::Refund => "200000",
            Financial::OriginalCredit => "260000",
        }
    }
}

/// The terminal Kassa acts as at the acquirer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminal {
    /// Field 41, eight characters (padded with spaces).
    pub terminal_id: String,
    /// Field 42, fifteen characters (padded with spaces).
    pub card_acceptor_id: String,
}

/// Field 41 and 42 lengths in every dialect Kassa knows.
pub const TERMINAL_ID_LEN: usize = 8;
/// See [`TERMINAL_ID_LEN`].
pub const CARD_ACCEPTOR_ID_LEN: usize = 15;

impl Terminal {
    /// Pads the ids to their fixed widths; `None` if one is empty, too long or not ASCII
    /// printable.
    pub fn new(terminal_id: &str, card_acceptor_id: &str) -> Option<Terminal> {
        let pad = |text: &str, len: usize| {
            let fits = !text.is_empty()
                && text.len() <= len
                && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
            fits.then(|| format!("{text:<len$}"))
        };
        Some(Terminal {
            terminal_id: pad(terminal_id, TERMINAL_ID_LEN)?,
            card_acceptor_id: pad(card_acceptor_id, CARD_ACCEPTOR_ID_LEN)?,
        })
    }
}

/// The numbers and the instant of one message.
#[derive(Clone, Debug)]
pub struct Stamp {
    /// STAN and RRN.
    pub numbers: TraceNumber,
    /// When it is sent (UTC).
    pub now: OffsetDateTime,
}

impl Stamp {
    /// Field 7, `MMDDhhmmss`.
    pub fn transmitted(&self) -> String {
        let n = self.now;
        format!(
            "{:02}{:02}{:02}{:02}{:02}",
            u8::from(n.month()),
            n.day(),
            n.hour(),
            n.minute(),
            n.second()
        )
    }

    fn set_common(&self, message: &mut Message, terminal: &Terminal) {
        let transmitted = self.transmitted();
        message
            .set(7, transmitted.as_str())
            .set(11, self.numbers.stan.as_str())
            .set(12, &transmitted[4..])
            .set(13, &transmitted[..4])
            .set(41, terminal.terminal_id.as_str());
    }
}

fn mti(text: &'static str) -> Mti {
    // Only called with the literals below, four digits each.
    text.parse()
        .unwrap_or_else(|_| unreachable!("{text} is an MTI"))
}

/// A `0800` network management request.
pub fn network(kind: Network, terminal: &Terminal, stamp: &Stamp) -> Message {
    let mut message = Message::new(mti("0800"));
    let transmitted = stamp.transmitted();
    message
        .set(7, transmitted.as_str())
        .set(11, stamp.numbers.stan.as_str())
        .set(41, terminal.terminal_id.as_str())
        .set(70, kind.code());
    message
}

/// The amount as field 4, twelve digits; a negative or too large amount is refused.
pub fn amount_field(amount_minor: i64) -> Result<String, ProviderError> {
    if !(1..=999_999_999_999).contains(&amount_minor) {
        return Err(ProviderError::Rejected {
            code: "invalid_amount".into(),
            message: "the amount does not fit field 4".into(),
        });
    }
    Ok(format!("{amount_minor:012}"))
}

/// Field 49 of the currencies an acquirer account may take (ISO 4217 numeric codes).
pub fn currency_numeric(currency: Currency) -> Option<&'static str> {
    const NUMERIC: &[(&str, &str)] = &[
        ("AUD", "036"),
        ("BRL", "986"),
        ("CAD", "124"),
        ("CHF", "756"),
        ("CZK", "203"),
        ("DKK", "208"),
        ("EUR", "978"),
        ("GBP", "826"),
        ("HUF", "348"),
        ("JPY", "392"),
        ("MXN", "484"),
        ("NOK", "578"),
        ("NZD", "554"),
        ("PLN", "985"),
        ("RON", "946"),
        ("SEK", "752"),
        ("TRY", "949"),
        ("USD", "840"),
        ("ZAR", "710"),
    ];
    NUMERIC
        .iter()
        .find(|(code, _)| *code == currency.code())
        .map(|(_, numeric)| *numeric)
}

/// The original a refund refers to, as Kassa keeps it in the payment's provider reference:
/// `terminal:stan:transmitted:rrn`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginalRef {
    /// Field 41 of the original, unpadded.
    pub terminal_id: String,
    /// Field 11 of the original.
    pub stan: String,
    /// Field 7 of the original.
    pub transmitted: String,
    /// Field 37 of the original.
    pub rrn: String,
}

impl OriginalRef {
    /// The provider reference of a message sent with `stamp` from `terminal`.
    pub fn of(terminal: &Terminal, stamp: &Stamp) -> OriginalRef {
        OriginalRef {
            terminal_id: terminal.terminal_id.trim_end().to_string(),
            stan: stamp.numbers.stan.clone(),
            transmitted: stamp.transmitted(),
            rrn: stamp.numbers.rrn.clone(),
        }
    }

    /// Parses a provider reference; `None` if it is not one of ours.
    pub fn parse(reference: &str) -> Option<OriginalRef> {
        let mut parts = reference.split(':');
        let (terminal_id, stan, transmitted, rrn) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let digits =
            |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_digit());
        let well_formed = parts.next().is_none()
            && !terminal_id.is_empty()
            && terminal_id.len() <= TERMINAL_ID_LEN
            && digits(stan, 6)
            && digits(transmitted, 10)
            && digits(rrn, 12);
        well_formed.then(|| OriginalRef {
            terminal_id: terminal_id.into(),
            stan: stan.into(),
            transmitted: transmitted.into(),
            rrn: rrn.into(),
        })
    }

    /// Field 90: original MTI, STAN, transmission date and time, and two institution ids
    /// left zero.
    pub fn original_data(&self, original_mti: &str) -> String {
        format!(
            "{original_mti}{}{}{}",
            self.stan,
            self.transmitted,
            "0".repeat(22)
        )
    }
}

impl std::fmt::Display for OriginalRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.terminal_id, self.stan, self.transmitted, self.rrn
        )
    }
}

/// What a financial request carries besides the terminal and stamp.
#[derive(Clone, Copy, Debug)]
pub struct FinancialRequest<'a> {
    /// Purchase, refund or OCT.
    pub kind: Financial,
    /// Minor units.
    pub amount_minor: i64,
    /// Field 49.
    pub currency_numeric: &'a str,
    /// The card (purchase, OCT); a refund names its original instead.
    pub card: Option<&'a CardDetails>,
    /// The refunded deposit and its MTI (`0200` purchase, `0100` authorization), for
    /// field 90.
    pub original: Option<(&'a OriginalRef, &'a str)>,
    /// The cardholder's 3-D Secure result (purchase), carried in field 48.
    pub authentication: Option<&'a CardAuthentication>,
}

/// Field 48 subelement tags of Kassa's dialect (ADR 68), each written as a 2-digit tag,
/// a 2-digit length and the value, after Mastercard's DE 48 subelements of the same numbers.
pub mod private_data {
    /// The electronic commerce indicator (2 digits).
    pub const ECI: &str = "42";
    /// The cardholder authentication value (CAVV/UCAF, 28 base64 characters).
    pub const AUTHENTICATION_VALUE: &str = "43";
    /// The 3DS Directory Server transaction id (36 characters).
    pub const DS_TRANS_ID: &str = "66";
}

/// Field 48 of an authenticated purchase: ECI, authentication value and DS transaction id
/// as subelements. `None` when a value would not fit a 2-digit length.
pub fn authentication_data(authentication: &CardAuthentication) -> Option<String> {
    let mut data = String::new();
    for (tag, value) in [
        (private_data::ECI, authentication.eci.as_str()),
        (
            private_data::AUTHENTICATION_VALUE,
            authentication.authentication_value.expose_secret(),
        ),
        (
            private_data::DS_TRANS_ID,
            authentication.ds_trans_id.as_str(),
        ),
    ] {
        if value.len() > 99 || !value.is_ascii() {
            return None;
        }
        data.push_str(&format!("{tag}{:02}{value}", value.len()));
    }
    Some(data)
}

/// A `0200` purchase, refund or OCT, or a `0100` authorization. The PAN is in the message
/// only, which lives until it is packed.
pub fn financial(
    request: &FinancialRequest<'_>,
    terminal: &Terminal,
    stamp: &Stamp,
) -> Result<Message, ProviderError> {
    let mut message = Message::new(mti(request.kind.mti()));
    stamp.set_common(&mut message, terminal);
    message
        .set(3, request.kind.processing_code())
        .set(4, amount_field(request.amount_minor)?)
        .set(18, MCC_GAMBLING)
        .set(22, POS_ENTRY_KEYED)
        .set(25, POS_CONDITION_ECOMMERCE)
        .set(37, stamp.numbers.rrn.as_str())
        .set(42, terminal.card_acceptor_id.as_str())
        .set(49, request.currency_numeric);
    if let Some(card) = request.card {
        message.set(2, card.pan()).set(14, card.expiry_yymm());
    }
    if let Some((original, original_mti)) = request.original {
        message.set(90, original.original_data(original_mti));
    }
    if let Some(authentication) = request.authentication {
        let data = authentication_data(authentication).ok_or_else(|| {
            ProviderError::Protocol("the 3-D Secure result does not fit field 48".into())
        })?;
        message.set(48, data);
    }
    Ok(message)
}

/// A `0420` reversal advice, or its repeat `0421`, for an original that got no answer.
pub fn reversal_advice(
    advice: &ReversalAdvice,
    repeat: bool,
    terminal: &Terminal,
    stamp: &Stamp,
) -> Message {
    advice_about(
        advice,
        if repeat { "0421" } else { "0420" },
        terminal,
        stamp,
    )
}

/// A `0220` completion advice of an approved `0100`, or its repeat `0221` (ADR 69): the same
/// facts of the original as a reversal's.
pub fn completion_advice(
    original: &ReversalAdvice,
    repeat: bool,
    terminal: &Terminal,
    stamp: &Stamp,
) -> Message {
    advice_about(
        original,
        if repeat { "0221" } else { "0220" },
        terminal,
        stamp,
    )
}

/// An advice of MTI `advice_mti` naming `advice`'s original in field 90.
fn advice_about(
    advice: &ReversalAdvice,
    advice_mti: &'static str,
    terminal: &Terminal,
    stamp: &Stamp,
) -> Message {
    let mut message = Message::new(mti(advice_mti));
    stamp.set_common(&mut message, terminal);
    let original = OriginalRef {
        terminal_id: advice.terminal_id.clone(),
        stan: advice.original_stan.clone(),
        transmitted: advice.original_transmitted.clone(),
        rrn: advice.rrn.clone(),
    };
    message
        .set(3, advice.processing_code.as_str())
        .set(4, advice.amount.as_str())
        .set(18, MCC_GAMBLING)
        .set(37, advice.rrn.as_str())
        .set(42, terminal.card_acceptor_id.as_str())
        .set(49, advice.currency_numeric.as_str())
        .set(90, original.original_data(&advice.original_mti));
    message
}

/// How Kassa classes a refusal: a hard decline is the issuer's answer about the card (do
/// not try elsewhere), a soft one a technical failure another route may not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeclineClass {
    /// The issuer refused; retrying elsewhere would be refused too.
    Hard,
    /// Technical; another provider may approve.
    Soft,
}

/// A refusal: Kassa's reason code and its class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decline {
    /// Kassa's machine-readable reason, e.g. `insufficient_funds`.
    pub reason: &'static str,
    /// Hard or soft.
    pub class: DeclineClass,
}

/// Field 39 codes and what they mean to Kassa, as data: a new code is one line.
const RESPONSE_CODES: &[(&str, &str, DeclineClass)] = &[
    ("01", "refer_to_issuer", DeclineClass::Hard),
    ("03", "invalid_merchant", DeclineClass::Hard),
    ("04", "pick_up_card", DeclineClass::Hard),
    ("05", "do_not_honour", DeclineClass::Hard),
    ("12", "invalid_transaction", DeclineClass::Hard),
    ("13", "invalid_amount", DeclineClass::Hard),
    ("14", "invalid_card_number", DeclineClass::Hard),
    ("30", "format_error", DeclineClass::Soft),
    ("41", "lost_card", DeclineClass::Hard),
    ("43", "stolen_card", DeclineClass::Hard),
    ("51", "insufficient_funds", DeclineClass::Hard),
    ("54", "expired_card", DeclineClass::Hard),
    ("57", "not_permitted_to_cardholder", DeclineClass::Hard),
    ("58", "not_permitted_to_terminal", DeclineClass::Hard),
    ("61", "exceeds_amount_limit", DeclineClass::Hard),
    ("62", "restricted_card", DeclineClass::Hard),
    ("65", "exceeds_frequency_limit", DeclineClass::Hard),
    ("91", "issuer_unavailable", DeclineClass::Soft),
    ("96", "system_malfunction", DeclineClass::Soft),
];

/// What a field 39 code means: `None` for an approval, else the decline. An unknown code
/// is a hard decline named after it (never an approval).
pub fn decline_of(code: &str) -> Option<Decline> {
    if code == APPROVED {
        return None;
    }
    let known = RESPONSE_CODES.iter().find(|(c, _, _)| *c == code);
    Some(match known {
        Some((_, reason, class)) => Decline {
            reason,
            class: *class,
        },
        None => Decline {
            reason: "declined",
            class: DeclineClass::Hard,
        },
    })
}

/// Field 39 of an answer; an answer without one breaks the protocol.
pub fn response_code(answer: &Message) -> Result<&str, ProviderError> {
    answer
        .get_text(39)
        .ok_or_else(|| ProviderError::Protocol(format!("{} without field 39", answer.mti())))
}

/// What a `0430` said.
pub fn advice_answer(answer: &Message) -> Result<AdviceAnswer, ProviderError> {
    Ok(match response_code(answer)? {
        APPROVED => AdviceAnswer::Reversed,
        ORIGINAL_NOT_FOUND => AdviceAnswer::OriginalUnknown,
        other => AdviceAnswer::Other(other.to_string()),
    })
}

/// What a `0230` said: `Ok` for `00`, the code otherwise (the host heard the completion
/// and refused it: an operator must look).
pub fn completion_answer(answer: &Message) -> Result<Result<(), String>, ProviderError> {
    Ok(match response_code(answer)? {
        APPROVED => Ok(()),
        other => Err(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_iso8583::{pack, unpack, Spec};

    fn stamp() -> Stamp {
        Stamp {
            numbers: TraceNumber::of(7, "20261206"),
            now: time::macros::datetime!(2026-12-06 09:05:01 UTC),
        }
    }

    fn terminal() -> Terminal {
        Terminal::new("KASSA001", "CASINO1").unwrap()
    }

    #[test]
    fn a_purchase_carries_the_card_mcc_and_numbers_and_packs_in_the_default_dialect() {
        let card = CardDetails::new("4000000000000002", "3012", "2612").unwrap();
        let request = FinancialRequest {
            kind: Financial::Purchase,
            amount_minor: 2500,
            currency_numeric: "978",
            card: Some(&card),
            original: None,
            authentication: None,
        };
        let message = financial(&request, &terminal(), &stamp()).unwrap();
        let bytes = pack(Spec::default_ascii(), &message).unwrap();
        let back = unpack(Spec::default_ascii(), &bytes).unwrap();
        assert_eq!(back.mti().as_str(), "0200");
        for (field, value) in [
            (2, "4000000000000002"),
            (3, "000000"),
            (4, "000000002500"),
            (7, "1206090501"),
            (11, "000007"),
            (14, "3012"),
            (18, "7995"),
            (37, "634000000007"),
            (41, "KASSA001"),
            (42, "CASINO1        "),
            (49, "978"),
        ] {
            assert_eq!(back.get_text(field), Some(value), "field {field}");
        }
        assert!(!format!("{message:?}").contains("4000000000000002"));
    }

    #[test]
    fn an_authenticated_purchase_carries_eci_cavv_and_ds_id_in_field_48() {
        let card = CardDetails::new("4000000000000002", "3012", "2612").unwrap();
        let cavv = "AAABBEg0VhI0VniQEjRWAAAAAAA=";
        let authentication = CardAuthentication {
            eci: "05".into(),
            authentication_value: cavv.to_string().into(),
            ds_trans_id: "f25084f0-5b16-4c0a-ae5d-b24808a95e4b".into(),
        };
        let request = FinancialRequest {
            kind: Financial::Purchase,
            amount_minor: 2500,
            currency_numeric: "978",
            card: Some(&card),
            original: None,
            authentication: Some(&authentication),
        };
        let message = financial(&request, &terminal(), &stamp()).unwrap();
        let bytes = pack(Spec::default_ascii(), &message).unwrap();
        let back = unpack(Spec::default_ascii(), &bytes).unwrap();
        assert_eq!(
            back.get_text(48),
            Some(
                "420205\
                 4328AAABBEg0VhI0VniQEjRWAAAAAAA=\
                 6636f25084f0-5b16-4c0a-ae5d-b24808a95e4b"
            )
        );
        assert!(!format!("{message:?}").contains(cavv));
    }

    #[test]
    fn a_refund_names_its_original_and_carries_no_card() {
        let original = OriginalRef::parse("KASSA001:000003:1206090000:634000000003").unwrap();
        assert_eq!(
            original.to_string(),
            "KASSA001:000003:1206090000:634000000003"
        );
        let request = FinancialRequest {
            kind: Financial::Refund,
            amount_minor: 100,
            currency_numeric: "978",
            card: None,
            original: Some((&original, "0200")),
            authentication: None,
        };
        let message = financial(&request, &terminal(), &stamp()).unwrap();
        assert_eq!(message.get_text(3), Some("200000"));
        assert!(!message.has(2));
        let data = message.get_text(90).unwrap();
        assert_eq!(data.len(), 42);
        assert!(data.starts_with("02000000031206090000"));
        // The refund of an authorization that was completed names the 0100.
        let of_authorization = FinancialRequest {
            original: Some((&original, "0100")),
            ..request
        };
        let message = financial(&of_authorization, &terminal(), &stamp()).unwrap();
        assert!(message
            .get_text(90)
            .unwrap()
            .starts_with("01000000031206090000"));
        for bad in ["", "a:b:c:d", "KASSA001:000003:1206090000:634000000003:x"] {
            assert!(OriginalRef::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn an_advice_is_0420_then_0421_and_names_the_original() {
        let advice = ReversalAdvice {
            account_id: "acq".into(),
            reference_id: "pay_1".into(),
            original_mti: "0200".into(),
            processing_code: "000000".into(),
            amount: "000000002500".into(),
            currency_numeric: "978".into(),
            original_stan: "000005".into(),
            original_transmitted: "1206090000".into(),
            rrn: "634000000005".into(),
            terminal_id: "KASSA001".into(),
        };
        let first = reversal_advice(&advice, false, &terminal(), &stamp());
        let repeat = reversal_advice(&advice, true, &terminal(), &stamp());
        assert_eq!(first.mti().as_str(), "0420");
        assert_eq!(repeat.mti().as_str(), "0421");
        assert_eq!(&first.get_text(90).unwrap()[4..10], "000005");
        assert!(pack(Spec::default_ascii(), &repeat).is_ok());
        let authorization = ReversalAdvice {
            original_mti: "0100".into(),
            ..advice
        };
        let completion = completion_advice(&authorization, false, &terminal(), &stamp());
        let repeat = completion_advice(&authorization, true, &terminal(), &stamp());
        assert_eq!(completion.mti().as_str(), "0220");
        assert_eq!(repeat.mti().as_str(), "0221");
        assert!(completion.get_text(90).unwrap().starts_with("0100000005"));
    }

    #[test]
    fn response_codes_map_to_decline_classes() {
        assert_eq!(decline_of("00"), None);
        let class = |code| decline_of(code).map(|d| (d.reason, d.class));
        assert_eq!(class("05"), Some(("do_not_honour", DeclineClass::Hard)));
        assert_eq!(
            class("51"),
            Some(("insufficient_funds", DeclineClass::Hard))
        );
        assert_eq!(
            class("91"),
            Some(("issuer_unavailable", DeclineClass::Soft))
        );
        assert_eq!(
            class("96"),
            Some(("system_malfunction", DeclineClass::Soft))
        );
        assert_eq!(class("X9"), Some(("declined", DeclineClass::Hard)));
    }

    #[test]
    fn terminal_ids_are_padded_and_checked() {
        assert_eq!(Terminal::new("T1", "M1").unwrap().terminal_id, "T1      ");
        assert!(Terminal::new("", "M1").is_none());
        assert!(Terminal::new("TOOLONGID", "M1").is_none());
        assert!(Terminal::new("T1", "M\n").is_none());
        assert!(amount_field(0).is_err());
        assert_eq!(amount_field(1).unwrap(), "000000000001");
    }
}
