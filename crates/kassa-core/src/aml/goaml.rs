//! A case as a goAML report (the XML format of UNODC's goAML, which FIUs such as Malta's
//! FIAU take) and as a plain-text summary. Pure: the server gathers the case and its
//! transactions. The subset written, its order and its types are in docs/aml.md; the
//! UNODC schema itself is given to reporting entities by their FIU, not published.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;

use crate::register::PlayerIdentity;
use crate::Currency;

stored_names! {
    /// The kind of report.
    ReportCode {
        /// Suspicious transaction report: names transactions.
        Str => "STR",
        /// Suspicious activity report.
        Sar => "SAR",
    }
}

/// Who reports: the operator as its FIU registered it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportingEntity {
    /// The entity's goAML id (`rentity_id`), given by the FIU.
    pub id: String,
    /// The branch (`rentity_branch`), if the FIU registered several.
    #[serde(default)]
    pub branch: Option<String>,
    /// The entity's name, written as the institution holding the player's account.
    pub name: String,
    /// The country of the licence (ISO 3166-1 alpha-2), written as the account's country
    /// where the player's own is unknown.
    #[serde(default)]
    pub country: Option<String>,
    /// The FIU's own codes for what Kassa names in its own words.
    #[serde(default)]
    pub lookups: GoamlLookups,
}

/// The FIU's lookup tables (ADR 85): goAML's code lists for the transaction mode, the funds
/// type, the report indicators and the account type are each FIU's own. Each map takes
/// Kassa's name (a payment method such as `card`, an AML scenario such as `structuring`) to
/// the FIU's code. A name not mapped is written as Kassa's own, unless `strict`: then the
/// export is refused with the names missing, rather than a file the FIU's validator rejects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoamlLookups {
    /// Payment method → `transmode_code`.
    #[serde(default)]
    pub transmode: BTreeMap<String, String>,
    /// Payment method → `from_funds_code` / `to_funds_code`.
    #[serde(default)]
    pub funds: BTreeMap<String, String>,
    /// AML scenario → `indicator`.
    #[serde(default)]
    pub indicators: BTreeMap<String, String>,
    /// `personal_account_type` of the player's gambling account (Kassa's: `gambling`).
    #[serde(default)]
    pub account_type: Option<String>,
    /// Refuse an export that would write a name the tables do not map.
    #[serde(default)]
    pub strict: bool,
}

/// Kassa's name for the player's account type where the FIU gives no code.
const ACCOUNT_TYPE: &str = "gambling";

impl GoamlLookups {
    fn code<'a>(table: &'a BTreeMap<String, String>, name: &'a str) -> &'a str {
        table.get(name).map_or(name, String::as_str)
    }

    /// The `transmode_code` of a payment method.
    pub fn transmode<'a>(&'a self, method: &'a str) -> &'a str {
        Self::code(&self.transmode, method)
    }

    /// The `*_funds_code` of a payment method.
    pub fn funds<'a>(&'a self, method: &'a str) -> &'a str {
        Self::code(&self.funds, method)
    }

    /// The `indicator` of an AML scenario.
    pub fn indicator<'a>(&'a self, scenario: &'a str) -> &'a str {
        Self::code(&self.indicators, scenario)
    }

    /// The `personal_account_type` of the player's account.
    pub fn account_type(&self) -> &str {
        self.account_type.as_deref().unwrap_or(ACCOUNT_TYPE)
    }

    /// What a report of these payment methods and scenarios would write in Kassa's own
    /// words, as `table:name` (`transmode:card`), sorted, each once.
    pub fn unmapped(&self, methods: &[&str], scenarios: &[&str]) -> Vec<String> {
        let mut missing = std::collections::BTreeSet::new();
        for method in methods {
            for (table, map) in [("transmode", &self.transmode), ("funds", &self.funds)] {
                if !map.contains_key(*method) {
                    missing.insert(format!("{table}:{method}"));
                }
            }
        }
        for scenario in scenarios {
            if !self.indicators.contains_key(*scenario) {
                missing.insert(format!("indicators:{scenario}"));
            }
        }
        if self.account_type.is_none() {
            missing.insert(format!("account_type:{ACCOUNT_TYPE}"));
        }
        missing.into_iter().collect()
    }

    /// Why the tables cannot be used: an empty name or code, or one with a control character.
    pub fn check(&self) -> Result<(), String> {
        let bad = |text: &str| text.trim().is_empty() || text.chars().any(char::is_control);
        let tables = [
            ("transmode", &self.transmode),
            ("funds", &self.funds),
            ("indicators", &self.indicators),
        ];
        for (table, map) in tables {
            if let Some((name, code)) = map.iter().find(|(name, code)| bad(name) || bad(code)) {
                return Err(format!(
                    "lookups.{table}: {name:?} = {code:?} must be non-empty printable text"
                ));
            }
        }
        match self.account_type.as_deref() {
            Some(code) if bad(code) => Err(format!(
                "lookups.account_type {code:?} must be non-empty printable text"
            )),
            _ => Ok(()),
        }
    }
}

/// Money in or out of the player's account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// A deposit: from the provider account to the player's account.
    In,
    /// A withdrawal: from the player's account to the provider account.
    Out,
}

/// One transaction of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportTransaction {
    /// Kassa's payment or payout id.
    pub id: String,
    /// The provider's reference, when it gave one.
    pub provider_reference: Option<String>,
    pub flow: Flow,
    /// The payment method (`card`, `bank_transfer`, …).
    pub method: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub at_ms: i64,
    /// The provider account it went through.
    pub account: String,
}

/// The subject: the player, as Kassa knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub player_id: String,
    pub currency: Currency,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// ISO 8601 date, when known.
    pub birth_date: Option<String>,
    /// The identity the operator gave Kassa for register checks (ADR 73), when on file:
    /// its names and e-mail name the account holder. `Debug` masks it.
    pub identity: Option<PlayerIdentity>,
}

impl Subject {
    /// The account holder's name, when the identity on file gives one.
    fn name(&self) -> Option<String> {
        let identity = self.identity.as_ref()?;
        let parts: Vec<&str> = [&identity.first_name, &identity.last_name]
            .into_iter()
            .filter_map(|part| part.as_deref())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

/// Everything one report says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report<'a> {
    pub entity: &'a ReportingEntity,
    pub code: ReportCode,
    /// The case id (`entity_reference`).
    pub case_id: &'a str,
    pub submitted_at_ms: i64,
    pub subject: &'a Subject,
    /// Why it is suspicious: the scenarios and their figures, for a person.
    pub reason: String,
    /// What the operator did (the case's notes and moves, summed up).
    pub action: String,
    /// Oldest first.
    pub transactions: Vec<ReportTransaction>,
    /// The scenarios that raised the case's alerts.
    pub indicators: Vec<String>,
}

/// `2026-12-06T15:04:05` (UTC, no zone: goAML's `xs:dateTime` as FIUs show it).
pub fn iso_datetime(at_ms: i64) -> String {
    let seconds = at_ms.div_euclid(1_000);
    let (days, in_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        in_day / 3_600,
        in_day % 3_600 / 60,
        in_day % 60
    )
}

/// An ISO 8601 date (`YYYY-MM-DD`) in the form of [`iso_datetime`], at midnight; `None`
/// for anything else.
pub fn iso_date_as_datetime(date: &str) -> Option<String> {
    let bytes = date.as_bytes();
    let shaped = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    shaped.then(|| format!("{date}T00:00:00"))
}

/// The date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `text` safe inside an XML element.
fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Writes elements with indentation.
struct Xml {
    out: String,
    depth: usize,
}

impl Xml {
    fn open(&mut self, name: &str) {
        let _ = writeln!(self.out, "{:indent$}<{name}>", "", indent = self.depth * 2);
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth -= 1;
        let _ = writeln!(self.out, "{:indent$}</{name}>", "", indent = self.depth * 2);
    }

    fn leaf(&mut self, name: &str, text: &str) {
        let _ = writeln!(
            self.out,
            "{:indent$}<{name}>{}</{name}>",
            "",
            escaped(text),
            indent = self.depth * 2
        );
    }

    fn optional(&mut self, name: &str, text: Option<&str>) {
        if let Some(text) = text {
            self.leaf(name, text);
        }
    }
}

impl Report<'_> {
    /// The goAML XML of this report.
    pub fn xml(&self) -> String {
        let mut xml = Xml {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            depth: 0,
        };
        xml.open("report");
        xml.leaf("rentity_id", &self.entity.id);
        xml.optional("rentity_branch", self.entity.branch.as_deref());
        xml.leaf("submission_code", "E");
        xml.leaf("report_code", self.code.as_str());
        xml.leaf("entity_reference", self.case_id);
        xml.leaf("submission_date", &iso_datetime(self.submitted_at_ms));
        xml.leaf("currency_code_local", self.subject.currency.code());
        xml.leaf("reason", &self.reason);
        xml.leaf("action", &self.action);
        for transaction in &self.transactions {
            self.transaction(&mut xml, transaction);
        }
        xml.open("report_indicators");
        for indicator in &self.indicators {
            xml.leaf("indicator", self.entity.lookups.indicator(indicator));
        }
        xml.close("report_indicators");
        xml.close("report");
        xml.out
    }

    fn transaction(&self, xml: &mut Xml, transaction: &ReportTransaction) {
        xml.open("transaction");
        xml.leaf("transactionnumber", &transaction.id);
        xml.optional(
            "internal_ref_number",
            transaction.provider_reference.as_deref(),
        );
        let description = match transaction.flow {
            Flow::In => "deposit to the player's gambling account",
            Flow::Out => "withdrawal from the player's gambling account",
        };
        xml.leaf("transaction_description", description);
        xml.leaf("date_transaction", &iso_datetime(transaction.at_ms));
        xml.leaf(
            "transmode_code",
            self.entity.lookups.transmode(&transaction.method),
        );
        let amount = transaction.currency.format_minor(transaction.amount_minor);
        xml.leaf("amount_local", &amount);
        match transaction.flow {
            Flow::In => {
                self.provider_side(xml, "from", transaction);
                self.player_side(xml, "to", transaction);
            }
            Flow::Out => {
                self.player_side(xml, "from", transaction);
                self.provider_side(xml, "to", transaction);
            }
        }
        xml.close("transaction");
    }

    /// The player's account at the operator: "my client".
    fn player_side(&self, xml: &mut Xml, side: &str, transaction: &ReportTransaction) {
        xml.open(&format!("t_{side}_my_client"));
        xml.leaf(
            &format!("{side}_funds_code"),
            self.entity.lookups.funds(&transaction.method),
        );
        xml.open(&format!("{side}_account"));
        xml.leaf("institution_name", &self.entity.name);
        xml.leaf("account", &self.subject.player_id);
        xml.leaf("currency_code", self.subject.currency.code());
        xml.leaf("client_number", &self.subject.player_id);
        xml.leaf("personal_account_type", self.entity.lookups.account_type());
        self.account_holder(xml);
        xml.close(&format!("{side}_account"));
        xml.leaf(&format!("{side}_country"), &self.subject.country);
        xml.close(&format!("t_{side}_my_client"));
    }

    /// The player as the account's primary signatory, from the identity on file (nothing
    /// without one): goAML's person elements in its order, those Kassa has.
    fn account_holder(&self, xml: &mut Xml) {
        let Some(identity) = &self.subject.identity else {
            return;
        };
        let birthdate = self
            .subject
            .birth_date
            .as_deref()
            .and_then(iso_date_as_datetime);
        xml.open("signatory");
        xml.leaf("is_primary", "true");
        xml.open("t_person");
        xml.optional("first_name", identity.first_name.as_deref());
        xml.optional("last_name", identity.last_name.as_deref());
        xml.optional("birthdate", birthdate.as_deref());
        xml.optional("email", identity.email.as_deref());
        xml.close("t_person");
        xml.close("signatory");
    }

    /// The provider account the money came from or went to.
    fn provider_side(&self, xml: &mut Xml, side: &str, transaction: &ReportTransaction) {
        xml.open(&format!("t_{side}"));
        xml.leaf(
            &format!("{side}_funds_code"),
            self.entity.lookups.funds(&transaction.method),
        );
        xml.open(&format!("{side}_account"));
        xml.leaf("institution_name", &transaction.account);
        xml.leaf(
            "account",
            transaction
                .provider_reference
                .as_deref()
                .unwrap_or(&transaction.id),
        );
        xml.leaf("currency_code", transaction.currency.code());
        xml.close(&format!("{side}_account"));
        let country = self
            .entity
            .country
            .as_deref()
            .unwrap_or(&self.subject.country);
        xml.leaf(&format!("{side}_country"), country);
        xml.close(&format!("t_{side}"));
    }

    /// The plain-text summary: the same facts for a person, no markup.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let subject = self.subject;
        let _ = writeln!(out, "{} report for case {}", self.code, self.case_id);
        let _ = writeln!(
            out,
            "Reporting entity: {} ({}{})",
            self.entity.name,
            self.entity.id,
            self.entity
                .branch
                .as_deref()
                .map(|b| format!(", branch {b}"))
                .unwrap_or_default()
        );
        let _ = writeln!(out, "Prepared: {} UTC", iso_datetime(self.submitted_at_ms));
        let _ = writeln!(
            out,
            "Subject: player {} ({}, wallet {}{})",
            subject.player_id,
            subject.country,
            subject.currency,
            subject
                .birth_date
                .as_deref()
                .map(|d| format!(", born {d}"))
                .unwrap_or_default()
        );
        let name = subject.name();
        let _ = writeln!(
            out,
            "Name: {}",
            name.as_deref().unwrap_or("unknown (no identity on file)")
        );
        let email = subject.identity.as_ref().and_then(|i| i.email.as_deref());
        if let Some(email) = email {
            let _ = writeln!(out, "E-mail: {email}");
        }
        let _ = writeln!(out, "Indicators: {}", self.indicators.join(", "));
        let _ = writeln!(
            out,
            "\nReason:\n{}\n\nAction:\n{}\n",
            self.reason, self.action
        );
        let _ = writeln!(out, "Transactions ({}):", self.transactions.len());
        for t in &self.transactions {
            let direction = match t.flow {
                Flow::In => "deposit",
                Flow::Out => "withdrawal",
            };
            let _ = writeln!(
                out,
                "  {}  {:<10} {:>14} {}  {}  via {} ({})",
                iso_datetime(t.at_ms),
                direction,
                t.currency.format_minor(t.amount_minor),
                t.currency,
                t.id,
                t.account,
                t.method
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_iso_8601_in_utc() {
        assert_eq!(iso_datetime(0), "1970-01-01T00:00:00");
        assert_eq!(iso_datetime(951_782_400_000), "2000-02-29T00:00:00");
        assert_eq!(iso_datetime(1_796_569_445_000), "2026-12-06T15:04:05");
        assert_eq!(iso_datetime(-1_000), "1969-12-31T23:59:59");
    }

    fn eur() -> Currency {
        Currency::from_code("EUR").unwrap()
    }

    /// A EUR player of Malta with no birth date or identity on file.
    fn maltese(player_id: &str) -> Subject {
        Subject {
            player_id: player_id.into(),
            currency: eur(),
            country: "MT".into(),
            birth_date: None,
            identity: None,
        }
    }

    /// A EUR deposit through the sandbox account at the epoch.
    fn deposit(id: &str, method: &str, amount_minor: i64) -> ReportTransaction {
        ReportTransaction {
            id: id.into(),
            provider_reference: None,
            flow: Flow::In,
            method: method.into(),
            amount_minor,
            currency: eur(),
            at_ms: 0,
            account: "sandbox".into(),
        }
    }

    #[test]
    fn text_is_escaped_and_amounts_are_decimals() {
        let entity = ReportingEntity {
            id: "1234".into(),
            branch: None,
            name: "Casino <Ltd> & Co".into(),
            country: Some("MT".into()),
            lookups: GoamlLookups::default(),
        };
        let subject = maltese("p'1");
        let report = Report {
            entity: &entity,
            code: ReportCode::Str,
            case_id: "case_1",
            submitted_at_ms: 0,
            subject: &subject,
            reason: "structuring".into(),
            action: "held".into(),
            transactions: vec![deposit("pay_1", "card", 180_000)],
            indicators: vec!["structuring".into()],
        };
        let xml = report.xml();
        assert!(xml.contains("<institution_name>Casino &lt;Ltd&gt; &amp; Co</institution_name>"));
        assert!(xml.contains("<account>p&apos;1</account>"));
        assert!(xml.contains("<amount_local>1800.00</amount_local>"));
        assert!(report.summary().contains("1800.00 EUR  pay_1"));
        assert!(!xml.contains("signatory"), "no identity, no person");
        assert!(report
            .summary()
            .contains("Name: unknown (no identity on file)"));
    }

    #[test]
    fn the_fius_codes_replace_kassas_names_where_mapped() {
        let table = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let lookups = GoamlLookups {
            transmode: table(&[("card", "K")]),
            funds: table(&[("card", "CARD<1>")]),
            indicators: table(&[("structuring", "2001")]),
            account_type: None,
            strict: false,
        };
        let entity = ReportingEntity {
            id: "1234".into(),
            name: "Casino".into(),
            lookups,
            ..ReportingEntity::default()
        };
        let subject = maltese("p1");
        let report = Report {
            entity: &entity,
            code: ReportCode::Str,
            case_id: "case_1",
            submitted_at_ms: 0,
            subject: &subject,
            reason: String::new(),
            action: String::new(),
            transactions: vec![
                deposit("pay_1", "card", 100),
                deposit("pay_2", "bank_transfer", 100),
            ],
            indicators: vec!["rapid_in_out".into(), "structuring".into()],
        };
        let xml = report.xml();
        assert!(xml.contains("<transmode_code>K</transmode_code>"), "{xml}");
        assert!(
            xml.contains("<from_funds_code>CARD&lt;1&gt;</from_funds_code>"),
            "{xml}"
        );
        assert!(xml.contains("<indicator>2001</indicator>"), "{xml}");
        // Unmapped names are written as Kassa's own.
        assert!(
            xml.contains("<transmode_code>bank_transfer</transmode_code>"),
            "{xml}"
        );
        assert!(xml.contains("<indicator>rapid_in_out</indicator>"), "{xml}");
        assert!(xml.contains("<personal_account_type>gambling</personal_account_type>"));
        assert_eq!(
            entity.lookups.unmapped(
                &["card", "bank_transfer", "card"],
                &["rapid_in_out", "structuring"]
            ),
            [
                "account_type:gambling",
                "funds:bank_transfer",
                "indicators:rapid_in_out",
                "transmode:bank_transfer",
            ]
        );
    }

    #[test]
    fn lookup_tables_take_only_printable_names_and_codes() {
        let mut lookups = GoamlLookups::default();
        assert!(lookups.check().is_ok());
        lookups.transmode.insert("card".into(), " ".into());
        assert!(lookups.check().unwrap_err().contains("lookups.transmode"));
        lookups.transmode.clear();
        lookups
            .indicators
            .insert("struct\nuring".into(), "1".into());
        assert!(lookups.check().unwrap_err().contains("lookups.indicators"));
        lookups.indicators.clear();
        lookups.account_type = Some("\u{7}".into());
        assert!(lookups.check().unwrap_err().contains("account_type"));
        lookups.account_type = Some("G".into());
        assert!(lookups.check().is_ok());
    }

    #[test]
    fn birth_dates_become_midnight_date_times() {
        assert_eq!(
            iso_date_as_datetime("1990-04-01").as_deref(),
            Some("1990-04-01T00:00:00")
        );
        assert_eq!(iso_date_as_datetime("1990-4-1"), None);
        assert_eq!(iso_date_as_datetime("01.04.1990"), None);
    }
}
