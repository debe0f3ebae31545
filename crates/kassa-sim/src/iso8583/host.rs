//! The host's decisions, apart from the network: a request in, a [`Reply`] out. Rules and codes
//! are listed in the module doc of [`super`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kassa_iso8583::{Message, Mti};

use super::settlement::{self, Line};

/// What the connection does with a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    Send(Message),
    /// Answer, but only after `delay` (the slow test card).
    SendAfter {
        delay: Duration,
        message: Message,
    },
    /// Close the connection without answering (the dropping test card).
    Drop,
    /// Nothing to answer (a response or advice response sent to the host).
    Ignore,
}

/// Response codes (field 39) the host uses.
pub(crate) mod code {
    pub const APPROVED: &str = "00";
    pub const DO_NOT_HONOUR: &str = "05";
    pub const INVALID_TRANSACTION: &str = "12";
    pub const INVALID_AMOUNT: &str = "13";
    pub const INVALID_CARD_NUMBER: &str = "14";
    pub const ORIGINAL_NOT_FOUND: &str = "25";
    pub const FORMAT_ERROR: &str = "30";
    pub const INSUFFICIENT_FUNDS: &str = "51";
    pub const ISSUER_UNAVAILABLE: &str = "91";
    pub const SYSTEM_MALFUNCTION: &str = "96";
}

/// Fields an answer copies from its request when present.
const ECHOED_FIELDS: [u8; 12] = [3, 4, 7, 11, 12, 13, 18, 37, 41, 42, 49, 70];

/// What a test card does, by the last four digits of its PAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CardRule {
    Approve,
    Decline(&'static str),
    Slow,
    Drop,
}

/// A card of the 3-D Secure simulator's test range (last four `3100`–`3599`): its issuer
/// takes no e-commerce purchase without an authentication value.
fn requires_authentication(pan: &str) -> bool {
    pan.get(pan.len().saturating_sub(4)..)
        .and_then(|last4| last4.parse::<u16>().ok())
        .is_some_and(|last4| (3100..3600).contains(&last4))
}

/// The 3-D Secure result a purchase carried in field 48 (ADR 68).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeenAuthentication {
    /// Field 11 of the request.
    pub stan: String,
    /// Subelement 42.
    pub eci: Option<String>,
    /// Subelement 43 (CAVV).
    pub authentication_value: Option<String>,
    /// Subelement 66.
    pub ds_trans_id: Option<String>,
}

/// Reads field 48's subelements (2-digit tag, 2-digit length, value); `None` if malformed.
fn private_data(field: &str) -> Option<Vec<(&str, &str)>> {
    let mut rest = field;
    let mut found = Vec::new();
    while !rest.is_empty() {
        let tag = rest.get(..2)?;
        let len: usize = rest.get(2..4)?.parse().ok()?;
        found.push((tag, rest.get(4..4 + len)?));
        rest = &rest[4 + len..];
    }
    Some(found)
}

fn seen_authentication(request: &Message) -> Option<SeenAuthentication> {
    let subelements = private_data(request.get_text(48)?)?;
    let value = |tag: &str| {
        subelements
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.to_string())
    };
    Some(SeenAuthentication {
        stan: request.get_text(11).unwrap_or_default().to_string(),
        eci: value("42"),
        authentication_value: value("43"),
        ds_trans_id: value("66"),
    })
}

fn card_rule(pan: &str) -> CardRule {
    match pan.get(pan.len().saturating_sub(4)..) {
        Some("0005") => CardRule::Decline(code::DO_NOT_HONOUR),
        Some("0051") => CardRule::Decline(code::INSUFFICIENT_FUNDS),
        Some("0091") => CardRule::Decline(code::ISSUER_UNAVAILABLE),
        Some("0096") => CardRule::Decline(code::SYSTEM_MALFUNCTION),
        Some("0077") => CardRule::Slow,
        Some("0099") => CardRule::Drop,
        _ => CardRule::Approve,
    }
}

/// An original transaction is known by its terminal and its STAN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OriginalKey {
    terminal: String,
    stan: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthState {
    Approved,
    Completed,
    Reversed,
}

#[derive(Debug)]
struct Authorization {
    mti: Mti,
    amount_minor: u64,
    refunded_minor: u64,
    state: AuthState,
    /// For a refund: the purchase it gave money back from.
    refund_of: Option<OriginalKey>,
    /// Its line in the settlement file (RRN and authorization id filled on approval).
    line: Line,
}

impl Authorization {
    /// An approved request's record, from the request.
    fn of(request: &Message, amount_minor: u64, pan_masked: String) -> Authorization {
        let text = |field| request.get_text(field).unwrap_or_default().to_string();
        Authorization {
            mti: request.mti(),
            amount_minor,
            refunded_minor: 0,
            state: AuthState::Approved,
            refund_of: None,
            line: Line {
                date: settlement::today(),
                mti: request.mti().to_string(),
                terminal_id: text(41),
                stan: text(11),
                rrn: String::new(),
                pan_masked,
                amount_minor,
                currency: text(49),
                processing_code: text(3),
                auth_id: String::new(),
            },
        }
    }

    /// Settled: an approved `0200` or a completed `0100`, not reversed.
    fn settles(&self) -> bool {
        matches!(
            (self.mti.class(), self.state),
            (2, AuthState::Approved) | (1, AuthState::Completed)
        )
    }
}

impl Ledger {
    /// Keeps the approval, giving the answer an RRN (unless the request had one) and an
    /// authorization code.
    fn record_approval(
        &mut self,
        key: OriginalKey,
        mut authorization: Authorization,
        answer: &mut Message,
    ) {
        self.auth_codes_issued += 1;
        let auth_id = format!("{:06}", self.auth_codes_issued % 1_000_000);
        answer.set(38, auth_id.as_str());
        let rrn = match answer.get_text(37) {
            Some(rrn) => rrn.to_string(),
            None => {
                self.rrns_issued += 1;
                format!("{:012}", self.rrns_issued)
            }
        };
        answer.set(37, rrn.as_str());
        authorization.line.rrn = rrn.clone();
        authorization.line.auth_id = auth_id;
        self.keys_by_rrn.insert(rrn, key.clone());
        self.approved_in_order.push(key.clone());
        self.authorizations.insert(key, authorization);
    }

    /// The settlement file lines of `date`.
    fn settlement(&self, date: &str) -> Vec<Line> {
        self.approved_in_order
            .iter()
            .filter_map(|key| self.authorizations.get(key))
            .filter(|a| a.settles() && a.line.date == date)
            .map(|a| a.line.clone())
            .collect()
    }
}

#[derive(Debug, Default)]
struct Ledger {
    authorizations: HashMap<OriginalKey, Authorization>,
    /// Approvals in the order they were given, for the settlement file.
    approved_in_order: Vec<OriginalKey>,
    keys_by_rrn: HashMap<String, OriginalKey>,
    rrns_issued: u64,
    auth_codes_issued: u64,
}

/// The simulated acquirer host: approved authorizations live in memory for the process's life.
#[derive(Debug)]
pub(crate) struct Host {
    slow_delay: Duration,
    ledger: Mutex<Ledger>,
    /// Reversal advices still to leave unanswered.
    advices_to_ignore: Mutex<u32>,
    /// Completion advices still to leave unanswered.
    completions_to_ignore: Mutex<u32>,
    /// MTI and STAN of every request read, for tests.
    received: Mutex<Vec<(String, String)>>,
    /// Every purchase and authorization is answered `91`.
    issuer_outage: bool,
    /// The 3-D Secure results purchases and authorizations carried, in order.
    authentications: Mutex<Vec<SeenAuthentication>>,
}

impl Host {
    pub(crate) fn new(slow_delay: Duration, ignore_advices: u32) -> Host {
        Host {
            slow_delay,
            ledger: Mutex::new(Ledger::default()),
            advices_to_ignore: Mutex::new(ignore_advices),
            completions_to_ignore: Mutex::new(0),
            received: Mutex::new(Vec::new()),
            issuer_outage: false,
            authentications: Mutex::new(Vec::new()),
        }
    }

    /// A host whose issuers are unreachable: it answers `91` to every purchase.
    pub(crate) fn with_issuer_outage(mut self, outage: bool) -> Host {
        self.issuer_outage = outage;
        self
    }

    /// A host that leaves the first `count` completion advices (`0220`/`0221`) unanswered.
    pub(crate) fn with_ignored_completions(self, count: u32) -> Host {
        *relock(&self.completions_to_ignore) = count;
        self
    }

    /// MTI and STAN of every request read so far.
    pub(crate) fn received(&self) -> Vec<(String, String)> {
        relock(&self.received).clone()
    }

    /// The settlement file of `date` (`YYYY-MM-DD`).
    pub(crate) fn settlement_file(&self, date: &str) -> String {
        settlement::file(&self.lock().settlement(date))
    }

    /// The 3-D Secure results seen so far.
    pub(crate) fn authentications(&self) -> Vec<SeenAuthentication> {
        relock(&self.authentications).clone()
    }

    /// Decides the answer to one message.
    pub(crate) fn handle(&self, request: &Message) -> Reply {
        let mti = request.mti();
        if !mti.expects_response() {
            return Reply::Ignore;
        }
        let stan = request.get_text(11).unwrap_or_default().to_string();
        relock(&self.received).push((mti.to_string(), stan));
        match (mti.class(), mti.function()) {
            (8, 0) => Reply::Send(self.network(request)),
            (2, 0) if is_refund(request) => Reply::Send(self.refund(request)),
            (4, 2) if take_one(&self.advices_to_ignore) => Reply::Ignore,
            (2, 2) if take_one(&self.completions_to_ignore) => Reply::Ignore,
            (1 | 2, 0) => self.authorize(request),
            (2, 2) => Reply::Send(self.complete(request)),
            (4, 0 | 2) => Reply::Send(self.reverse(request)),
            _ => Reply::Send(answer(request, code::INVALID_TRANSACTION)),
        }
    }

    /// A refund (`0200`, processing code `20`) of an approved purchase named in field 90:
    /// no card needed, at most what is left of the purchase.
    fn refund(&self, request: &Message) -> Message {
        let Some(key) = own_key(request) else {
            return answer(request, code::FORMAT_ERROR);
        };
        let Some(amount) = amount_minor(request) else {
            return answer(request, code::INVALID_AMOUNT);
        };
        let mut ledger = self.lock();
        let Some((original_key, original)) = find_original_by_data(&mut ledger, request) else {
            return answer(request, code::ORIGINAL_NOT_FOUND);
        };
        if original.state == AuthState::Reversed {
            return answer(request, code::ORIGINAL_NOT_FOUND);
        }
        if amount > original.amount_minor - original.refunded_minor {
            return answer(request, code::INVALID_AMOUNT);
        }
        original.refunded_minor += amount;
        // Kept like an approval, so the settlement file lists it and a reversal finds it.
        let mut refund = Authorization::of(request, amount, original.line.pan_masked.clone());
        refund.refund_of = Some(original_key);
        let mut message = answer(request, code::APPROVED);
        ledger.record_approval(key, refund, &mut message);
        message
    }

    fn network(&self, request: &Message) -> Message {
        match request.get_text(70) {
            Some("001" | "002" | "301") => answer(request, code::APPROVED),
            Some(_) => answer(request, code::INVALID_TRANSACTION),
            None => answer(request, code::FORMAT_ERROR),
        }
    }

    /// 0100 authorization and 0200 purchase.
    fn authorize(&self, request: &Message) -> Reply {
        let (Some(key), Some(pan)) = (own_key(request), request.get_text(2)) else {
            return Reply::Send(answer(request, code::FORMAT_ERROR));
        };
        if !(12..=19).contains(&pan.len()) || !pan.bytes().all(|b| b.is_ascii_digit()) {
            return Reply::Send(answer(request, code::INVALID_CARD_NUMBER));
        }
        let Some(amount_minor) = amount_minor(request) else {
            return Reply::Send(answer(request, code::INVALID_AMOUNT));
        };
        let authentication = seen_authentication(request);
        if let Some(seen) = &authentication {
            relock(&self.authentications).push(seen.clone());
        }
        let authenticated = authentication
            .is_some_and(|seen| seen.eci.is_some() && seen.authentication_value.is_some());
        if requires_authentication(pan) && !authenticated {
            return Reply::Send(answer(request, code::DO_NOT_HONOUR));
        }
        let rule = match self.issuer_outage {
            true => CardRule::Decline(code::ISSUER_UNAVAILABLE),
            false => card_rule(pan),
        };
        match rule {
            CardRule::Drop => return Reply::Drop,
            CardRule::Decline(code) => return Reply::Send(answer(request, code)),
            CardRule::Approve | CardRule::Slow => {}
        }
        let authorization = Authorization::of(request, amount_minor, settlement::mask(pan));
        let mut message = answer(request, code::APPROVED);
        self.lock()
            .record_approval(key, authorization, &mut message);
        if rule == CardRule::Slow {
            let delay = self.slow_delay;
            return Reply::SendAfter { delay, message };
        }
        Reply::Send(message)
    }

    /// 0220 completion of an earlier 0100 authorization (0221 repeats it).
    fn complete(&self, request: &Message) -> Message {
        let amount = amount_minor(request);
        let mut ledger = self.lock();
        let Some(original) = find_original(&mut ledger, request) else {
            return answer(request, code::ORIGINAL_NOT_FOUND);
        };
        let completable = original.mti.class() == 1 && original.state != AuthState::Reversed;
        match amount {
            _ if !completable => answer(request, code::ORIGINAL_NOT_FOUND),
            Some(amount) if amount <= original.amount_minor => {
                original.state = AuthState::Completed;
                original.amount_minor = amount;
                original.line.amount_minor = amount;
                answer(request, code::APPROVED)
            }
            _ => answer(request, code::INVALID_AMOUNT),
        }
    }

    /// 0400 reversal, 0420 reversal advice and its repeat 0421: answered `00` every time the
    /// original is known, so a repeat gets the same answer.
    fn reverse(&self, request: &Message) -> Message {
        let mut ledger = self.lock();
        let Some(original) = find_original(&mut ledger, request) else {
            return answer(request, code::ORIGINAL_NOT_FOUND);
        };
        let undone_refund = match original.state {
            AuthState::Reversed => None,
            _ => original
                .refund_of
                .clone()
                .map(|of| (of, original.amount_minor)),
        };
        original.state = AuthState::Reversed;
        // A reversed refund gives its purchase back what it had taken from it.
        if let Some((of, amount)) = undone_refund {
            if let Some(purchase) = ledger.authorizations.get_mut(&of) {
                purchase.refunded_minor = purchase.refunded_minor.saturating_sub(amount);
            }
        }
        answer(request, code::APPROVED)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The answer to `request` with response code `code`: the response MTI and the echoed fields.
pub(crate) fn answer(request: &Message, code: &str) -> Message {
    let mti = request.mti().response().unwrap_or(request.mti());
    let mut answer = Message::new(mti);
    for field in ECHOED_FIELDS {
        if let Some(value) = request.get(field) {
            answer.set(field, value);
        }
    }
    answer.set(39, code);
    answer
}

/// Whether a countdown of messages to leave unanswered still runs; counts this one.
fn take_one(left: &Mutex<u32>) -> bool {
    let mut left = relock(left);
    let ignore = *left > 0;
    *left = left.saturating_sub(1);
    ignore
}

/// Locks a mutex of plain data, poisoned or not.
fn relock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A `0200` whose processing code says refund (`20xxxx`).
fn is_refund(request: &Message) -> bool {
    request
        .get_text(3)
        .is_some_and(|code| code.starts_with("20"))
}

/// The original named by field 90 only (a refund's own STAN is new, never the original's).
fn find_original_by_data<'a>(
    ledger: &'a mut Ledger,
    request: &Message,
) -> Option<(OriginalKey, &'a mut Authorization)> {
    let key = OriginalKey {
        terminal: request.get_text(41)?.to_string(),
        stan: request.get_text(90)?.get(4..10)?.to_string(),
    };
    let found = ledger.authorizations.get_mut(&key)?;
    Some((key, found))
}

/// Field 4 as minor units: exactly 12 digits.
fn amount_minor(request: &Message) -> Option<u64> {
    let amount = request.get_text(4).filter(|a| a.len() == 12)?;
    amount
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| amount.parse().ok())?
}

/// The request's own terminal (41) and STAN (11).
fn own_key(request: &Message) -> Option<OriginalKey> {
    Some(OriginalKey {
        terminal: request.get_text(41)?.to_string(),
        stan: request.get_text(11)?.to_string(),
    })
}

/// The original a reversal or completion refers to: by terminal and the original STAN from
/// field 90 (original MTI, STAN, ...) or else the message's own STAN; failing that, by RRN.
fn find_original<'a>(ledger: &'a mut Ledger, request: &Message) -> Option<&'a mut Authorization> {
    let original_stan = request.get_text(90).and_then(|data| data.get(4..10));
    let by_stan = request.get_text(41).and_then(|terminal| {
        let stan = original_stan.or(request.get_text(11))?;
        let key = OriginalKey {
            terminal: terminal.to_string(),
            stan: stan.to_string(),
        };
        ledger.authorizations.contains_key(&key).then_some(key)
    });
    let by_rrn = || {
        request
            .get_text(37)
            .and_then(|rrn| ledger.keys_by_rrn.get(rrn).cloned())
    };
    let key = by_stan.or_else(by_rrn)?;
    ledger.authorizations.get_mut(&key)
}

#[cfg(test)]
mod tests;
