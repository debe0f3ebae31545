//! The routing document: rules, runtime switches, decline classes and provider costs, as one
//! versioned value an operator edits (`PUT /v1/admin/routing`) or loads from the config file.
//! [`RoutingDocument::validate`] normalizes it (upper-case countries, lower-case methods) so
//! the decision compares bytes, not cases.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::declines::DeclineClasses;
use super::success_rate::SuccessRateSettings;
use crate::Currency;

/// Most rules one document holds; the decision scans them in order.
pub const RULES_MAX: usize = 5_000;
/// Longest rule id, in bytes.
pub const RULE_ID_MAX_BYTES: usize = 64;
/// Most entries in one list of a rule or switch (accounts, countries, prefixes, …).
pub const LIST_MAX: usize = 500;

/// Everything the router decides with, apart from the request and live health.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingDocument {
    /// Tried in order; the first whose conditions match and that has an available account
    /// decides. With none matching, every account that takes the payment, in configuration
    /// order.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Switches that take effect without a deploy.
    #[serde(default)]
    pub switches: Switches,
    /// Which decline reasons may cascade; the defaults when absent.
    #[serde(default)]
    pub declines: DeclineClasses,
    /// What each provider account charges, for `lowest_cost` and cost per success.
    #[serde(default)]
    pub commissions: BTreeMap<String, Commission>,
    /// The optional success-rate mode (off by default).
    #[serde(default)]
    pub success_rate: SuccessRateSettings,
}

/// One routing rule: when it applies, whom it picks, and who comes next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable name, stored on every payment it routes.
    pub id: String,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Every condition given must hold; an empty rule matches every payment.
    #[serde(default)]
    pub when: Conditions,
    /// How the first account is chosen.
    pub pick: Pick,
    /// Tried in order after the picked accounts, on a soft decline or technical error.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Whether a payment whose player already passed 3-D Secure at one provider may still
    /// cascade to the next (normally not: the player would authenticate twice).
    #[serde(default)]
    pub cascade_after_3ds: bool,
}

/// A rule's conditions; an empty list or `None` matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Merchant ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merchants: Vec<String>,
    /// ISO 3166-1 alpha-2 countries of the player.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// ISO 4217 codes of the deposit's currency (crypto assets by their code).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub currencies: Vec<String>,
    /// Payment methods, e.g. `card`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Smallest amount, in minor units of the deposit's currency, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_min_minor: Option<i64>,
    /// Largest amount, in minor units, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_max_minor: Option<i64>,
    /// The player's risk level (`low`, `medium`, `high`), when the request carries one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub risk_levels: Vec<String>,
    /// Card BIN prefixes (1 to 8 digits), when the card is known before routing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bin_prefixes: Vec<String>,
    /// Device classes: `desktop`, `mobile`, `tablet`, `unknown`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_classes: Vec<String>,
    /// Only the player's first deposit (`true`) or only later ones (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_deposit: Option<bool>,
}

/// How a rule chooses among its accounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pick {
    /// In the order listed.
    Priority {
        /// Provider account ids.
        accounts: Vec<String>,
    },
    /// A share of payments each (an A/B split), chosen by the payment id so a retry of the
    /// same payment lands on the same account; the split is stored on the payment.
    Weighted {
        /// Accounts and their weights.
        splits: Vec<WeightedSplit>,
    },
    /// The cheapest by the account's commission for this amount first.
    LowestCost {
        /// Provider account ids.
        accounts: Vec<String>,
    },
}

/// One account's share of a weighted split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedSplit {
    /// Provider account id.
    pub account: String,
    /// Relative weight, at least 1.
    pub weight: u32,
}

/// What a provider account charges per successful deposit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commission {
    /// Fixed fee per success, in minor units of the deposit's currency.
    #[serde(default)]
    pub fixed_minor: i64,
    /// Percentage fee in basis points (1/100 of a percent).
    #[serde(default)]
    pub percent_bps: u32,
    /// Monthly fee in minor units; not per payment, so it counts in cost per success (the
    /// measured figure) but not in `lowest_cost` (the per-payment choice).
    #[serde(default)]
    pub monthly_fee_minor: i64,
}

impl Commission {
    /// The fee of one successful deposit of `amount_minor`, rounded up; integer arithmetic.
    pub fn fee_minor(&self, amount_minor: i64) -> i64 {
        let percent = (i128::from(amount_minor) * i128::from(self.percent_bps) + 9_999) / 10_000;
        let percent = i64::try_from(percent).unwrap_or(i64::MAX);
        self.fixed_minor.saturating_add(percent)
    }
}

/// Switches that change routing at once on every node, without a deploy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Switches {
    /// Provider accounts taking no new payments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts_off: Vec<String>,
    /// Methods off, everywhere or per country or currency.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods_off: Vec<MethodSwitch>,
    /// Scheduled maintenance of provider accounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance: Vec<MaintenanceWindow>,
    /// The degradation plan, applied as one switch.
    #[serde(default)]
    pub degradation: DegradationPlan,
}

/// A method switched off; `country` and `currency` narrow it when given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSwitch {
    /// The method, e.g. `bank_transfer`.
    pub method: String,
    /// Only in this country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Only in this currency (its code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

impl MethodSwitch {
    fn covers(&self, method: &str, country: &str, currency: Currency) -> bool {
        self.method == method
            && self.country.as_deref().is_none_or(|c| c == country)
            && self
                .currency
                .as_deref()
                .is_none_or(|c| c == currency.code())
    }
}

/// A provider account's maintenance: no new payments from `drain_before_s` before the start
/// until the end, so payments in flight finish before the provider goes away.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// Provider account id.
    pub account: String,
    /// Start, Unix seconds.
    pub starts_at_unix_s: i64,
    /// End, Unix seconds (exclusive).
    pub ends_at_unix_s: i64,
    /// Seconds before the start from which the account takes no new payments.
    #[serde(default = "default_drain_before_s")]
    pub drain_before_s: i64,
}

fn default_drain_before_s() -> i64 {
    300
}

impl MaintenanceWindow {
    /// Whether the account takes no new payments at `now_unix_s`.
    pub fn closes(&self, account: &str, now_unix_s: i64) -> bool {
        self.account == account
            && now_unix_s >= self.starts_at_unix_s.saturating_sub(self.drain_before_s)
            && now_unix_s < self.ends_at_unix_s
    }
}

/// The degradation plan: what to do when payments must shed load, as one switch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DegradationPlan {
    /// Whether the plan is in force.
    #[serde(default)]
    pub active: bool,
    /// Heavy methods turned off while it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods_off: Vec<String>,
    /// Fast accounts moved to the front of every route while it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefer_accounts: Vec<String>,
    /// Accounts whose payouts wait (deferred, not failed) while it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_payouts: Vec<String>,
}

impl Switches {
    /// Why the method is off for this payment, if it is.
    pub fn method_off(&self, method: &str, country: &str, currency: Currency) -> Option<String> {
        if let Some(switch) = self
            .methods_off
            .iter()
            .find(|s| s.covers(method, country, currency))
        {
            let mut why = format!("method {} is switched off", switch.method);
            if let Some(country) = &switch.country {
                why.push_str(&format!(" in {country}"));
            }
            if let Some(currency) = &switch.currency {
                why.push_str(&format!(" for {currency}"));
            }
            return Some(why);
        }
        let plan = &self.degradation;
        (plan.active && plan.methods_off.iter().any(|m| m == method))
            .then(|| format!("method {method} is off under the degradation plan"))
    }

    /// Why the account takes no new payments at `now_unix_s`, if it does not.
    pub fn account_closed(&self, account: &str, now_unix_s: i64) -> Option<&'static str> {
        if self.accounts_off.iter().any(|a| a == account) {
            return Some("switched off");
        }
        self.maintenance
            .iter()
            .any(|w| w.closes(account, now_unix_s))
            .then_some("in maintenance")
    }

    /// Whether the account's payouts wait under the degradation plan.
    pub fn payouts_paused(&self, account: &str) -> bool {
        let plan = &self.degradation;
        plan.active && plan.pause_payouts.iter().any(|a| a == account)
    }
}

/// Why a routing document was refused; the message names the place.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {problem}")]
pub struct DocumentError {
    /// Where, e.g. `rules[3].when.countries[0]`.
    pub place: String,
    /// What is wrong there.
    pub problem: String,
}

fn refuse<T>(place: impl Into<String>, problem: impl Into<String>) -> Result<T, DocumentError> {
    Err(DocumentError {
        place: place.into(),
        problem: problem.into(),
    })
}

impl RoutingDocument {
    /// Every provider account the document names, for checking against the configured ones.
    pub fn accounts_named(&self) -> Vec<(String, &str)> {
        let mut named = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            for account in rule.pick.accounts() {
                named.push((format!("rules[{i}].pick"), account));
            }
            for account in &rule.fallbacks {
                named.push((format!("rules[{i}].fallbacks"), account.as_str()));
            }
        }
        let switches = &self.switches;
        for account in &switches.accounts_off {
            named.push(("switches.accounts_off".into(), account.as_str()));
        }
        for window in &switches.maintenance {
            named.push(("switches.maintenance".into(), window.account.as_str()));
        }
        for account in switches
            .degradation
            .prefer_accounts
            .iter()
            .chain(&switches.degradation.pause_payouts)
        {
            named.push(("switches.degradation".into(), account.as_str()));
        }
        for account in self.commissions.keys() {
            named.push(("commissions".into(), account.as_str()));
        }
        named
    }

    /// Whether a rule asks whether the deposit is the player's first (a database read the
    /// decision otherwise skips).
    pub fn uses_first_deposit(&self) -> bool {
        self.rules.iter().any(|r| r.when.first_deposit.is_some())
    }

    /// Checks the document and normalizes its spellings; refuses the first problem found.
    pub fn validate(mut self) -> Result<RoutingDocument, DocumentError> {
        if self.rules.len() > RULES_MAX {
            return refuse("rules", format!("at most {RULES_MAX} rules"));
        }
        let mut ids = HashSet::new();
        for (i, rule) in self.rules.iter_mut().enumerate() {
            let place = format!("rules[{i}]");
            rule.validate(&place)?;
            if !ids.insert(rule.id.clone()) {
                return refuse(
                    format!("{place}.id"),
                    format!("{:?} is used twice", rule.id),
                );
            }
        }
        self.switches.validate()?;
        self.declines.validate()?;
        self.success_rate.validate()?;
        for (account, commission) in &self.commissions {
            check_account_id(&format!("commissions.{account}"), account)?;
            if commission.fixed_minor < 0 || commission.monthly_fee_minor < 0 {
                return refuse(format!("commissions.{account}"), "fees cannot be negative");
            }
            if commission.percent_bps > 10_000 {
                return refuse(
                    format!("commissions.{account}"),
                    "percent_bps is at most 10000",
                );
            }
        }
        Ok(self)
    }
}

impl Pick {
    /// The accounts this pick chooses among, in listed order.
    pub fn accounts(&self) -> impl Iterator<Item = &str> {
        let listed: Box<dyn Iterator<Item = &str>> = match self {
            Pick::Priority { accounts } | Pick::LowestCost { accounts } => {
                Box::new(accounts.iter().map(String::as_str))
            }
            Pick::Weighted { splits } => Box::new(splits.iter().map(|s| s.account.as_str())),
        };
        listed
    }
}

impl Rule {
    fn validate(&mut self, place: &str) -> Result<(), DocumentError> {
        if self.id.is_empty() || self.id.len() > RULE_ID_MAX_BYTES {
            return refuse(
                format!("{place}.id"),
                format!("a rule id has 1 to {RULE_ID_MAX_BYTES} bytes"),
            );
        }
        if !self
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return refuse(
                format!("{place}.id"),
                "a rule id uses letters, digits, '_', '-' and '.'",
            );
        }
        self.when.validate(&format!("{place}.when"))?;
        let pick_place = format!("{place}.pick");
        if self.pick.accounts().next().is_none() {
            return refuse(&pick_place, "names no account");
        }
        for account in self.pick.accounts() {
            check_account_id(&pick_place, account)?;
        }
        if let Pick::Weighted { splits } = &self.pick {
            if splits.iter().any(|s| s.weight == 0) {
                return refuse(&pick_place, "every weight is at least 1");
            }
            let total: u64 = splits.iter().map(|s| u64::from(s.weight)).sum();
            if total > 1_000_000 {
                return refuse(&pick_place, "the weights add up to at most 1000000");
            }
        }
        check_len(&pick_place, self.pick.accounts().count())?;
        check_len(&format!("{place}.fallbacks"), self.fallbacks.len())?;
        for account in &self.fallbacks {
            check_account_id(&format!("{place}.fallbacks"), account)?;
        }
        Ok(())
    }
}

impl Conditions {
    fn validate(&mut self, place: &str) -> Result<(), DocumentError> {
        normalize_countries(&format!("{place}.countries"), &mut self.countries)?;
        lower_words(&format!("{place}.methods"), &mut self.methods)?;
        lower_words(&format!("{place}.risk_levels"), &mut self.risk_levels)?;
        lower_words(&format!("{place}.device_classes"), &mut self.device_classes)?;
        check_len(&format!("{place}.merchants"), self.merchants.len())?;
        check_len(&format!("{place}.currencies"), self.currencies.len())?;
        for currency in self.currencies.iter_mut() {
            *currency = normalize_currency(&format!("{place}.currencies"), currency)?;
        }
        check_len(&format!("{place}.bin_prefixes"), self.bin_prefixes.len())?;
        for prefix in &self.bin_prefixes {
            if prefix.is_empty() || prefix.len() > 8 || !prefix.bytes().all(|b| b.is_ascii_digit())
            {
                return refuse(
                    format!("{place}.bin_prefixes"),
                    format!("{prefix:?} is not 1 to 8 digits"),
                );
            }
        }
        let min = self.amount_min_minor;
        let max = self.amount_max_minor;
        if min.is_some_and(|m| m < 0) || max.is_some_and(|m| m < 0) {
            return refuse(place, "amounts cannot be negative");
        }
        if let (Some(min), Some(max)) = (min, max) {
            if min > max {
                return refuse(place, "amount_min_minor is above amount_max_minor");
            }
        }
        Ok(())
    }
}

impl Switches {
    fn validate(&mut self) -> Result<(), DocumentError> {
        check_len("switches.accounts_off", self.accounts_off.len())?;
        check_len("switches.methods_off", self.methods_off.len())?;
        check_len("switches.maintenance", self.maintenance.len())?;
        for (i, switch) in self.methods_off.iter_mut().enumerate() {
            let place = format!("switches.methods_off[{i}]");
            switch.method = lower_word(&place, &switch.method)?;
            if let Some(country) = &switch.country {
                switch.country = Some(normalize_country(&place, country)?);
            }
            if let Some(currency) = &switch.currency {
                switch.currency = Some(normalize_currency(&place, currency)?);
            }
        }
        for (i, window) in self.maintenance.iter().enumerate() {
            let place = format!("switches.maintenance[{i}]");
            if window.ends_at_unix_s <= window.starts_at_unix_s {
                return refuse(place, "ends_at_unix_s must be after starts_at_unix_s");
            }
            if window.drain_before_s < 0 {
                return refuse(place, "drain_before_s cannot be negative");
            }
        }
        lower_words(
            "switches.degradation.methods_off",
            &mut self.degradation.methods_off,
        )?;
        Ok(())
    }
}

fn check_len(place: &str, len: usize) -> Result<(), DocumentError> {
    if len > LIST_MAX {
        return refuse(place, format!("at most {LIST_MAX} entries"));
    }
    Ok(())
}

fn check_account_id(place: &str, account: &str) -> Result<(), DocumentError> {
    if account.is_empty() || account.len() > 64 || account.bytes().any(|b| b.is_ascii_control()) {
        return refuse(place, format!("{account:?} is not a provider account id"));
    }
    Ok(())
}

fn normalize_country(place: &str, country: &str) -> Result<String, DocumentError> {
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
        return refuse(
            place,
            format!("{country:?} is not an ISO 3166-1 alpha-2 code"),
        );
    }
    Ok(country.to_ascii_uppercase())
}

fn normalize_currency(place: &str, code: &str) -> Result<String, DocumentError> {
    match Currency::from_code(&code.to_ascii_uppercase()) {
        Ok(currency) => Ok(currency.code().to_string()),
        Err(_) => refuse(place, format!("{code:?} is not a currency Kassa holds")),
    }
}

fn normalize_countries(place: &str, countries: &mut [String]) -> Result<(), DocumentError> {
    check_len(place, countries.len())?;
    for country in countries.iter_mut() {
        *country = normalize_country(place, country)?;
    }
    Ok(())
}

fn lower_word(place: &str, word: &str) -> Result<String, DocumentError> {
    if word.is_empty()
        || word.len() > 64
        || !word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return refuse(
            place,
            format!("{word:?} is not a name (letters, digits, '_', '-')"),
        );
    }
    Ok(word.to_ascii_lowercase())
}

fn lower_words(place: &str, words: &mut [String]) -> Result<(), DocumentError> {
    check_len(place, words.len())?;
    for word in words.iter_mut() {
        *word = lower_word(place, word)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, accounts: &[&str]) -> Rule {
        Rule {
            id: id.into(),
            description: None,
            when: Conditions::default(),
            pick: Pick::Priority {
                accounts: accounts.iter().map(|a| a.to_string()).collect(),
            },
            fallbacks: Vec::new(),
            cascade_after_3ds: false,
        }
    }

    #[test]
    fn validation_normalizes_spellings() {
        let mut document = RoutingDocument::default();
        let mut first = rule("eu", &["psp_a"]);
        first.when.countries = vec!["de".into()];
        first.when.methods = vec!["Card".into()];
        document.rules.push(first);
        let valid = document.validate().expect("valid");
        assert_eq!(valid.rules[0].when.countries, ["DE"]);
        assert_eq!(valid.rules[0].when.methods, ["card"]);
    }

    #[test]
    fn validation_refuses_with_the_place() {
        let document = RoutingDocument {
            rules: vec![rule("a", &["psp_a"]), rule("a", &["psp_b"])],
            ..RoutingDocument::default()
        };
        let error = document.validate().unwrap_err();
        assert_eq!(error.place, "rules[1].id");

        let mut bad_country = rule("b", &["psp_a"]);
        bad_country.when.countries = vec!["DEU".into()];
        let error = RoutingDocument {
            rules: vec![bad_country],
            ..RoutingDocument::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(error.place, "rules[0].when.countries");

        let mut empty_weight = rule("c", &["psp_a"]);
        empty_weight.pick = Pick::Weighted {
            splits: vec![WeightedSplit {
                account: "psp_a".into(),
                weight: 0,
            }],
        };
        let error = RoutingDocument {
            rules: vec![empty_weight],
            ..RoutingDocument::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(error.place, "rules[0].pick");
    }

    #[test]
    fn unknown_fields_are_refused_when_parsed() {
        let parsed = serde_json::from_str::<RoutingDocument>(r#"{"rulez": []}"#);
        assert!(parsed.is_err());
    }

    #[test]
    fn commission_fee_rounds_up_without_floats() {
        let commission = Commission {
            fixed_minor: 25,
            percent_bps: 290,
            monthly_fee_minor: 0,
        };
        // 2.9% of 10.01 is 0.29029: 30 minor units rounded up, plus 25 fixed.
        assert_eq!(commission.fee_minor(1_001), 25 + 30);
        assert_eq!(commission.fee_minor(0), 25);
        assert_eq!(Commission::default().fee_minor(i64::MAX), 0);
    }

    #[test]
    fn maintenance_drains_before_it_starts() {
        let switches = Switches {
            maintenance: vec![MaintenanceWindow {
                account: "psp_a".into(),
                starts_at_unix_s: 1_000,
                ends_at_unix_s: 2_000,
                drain_before_s: 300,
            }],
            ..Switches::default()
        };
        assert_eq!(switches.account_closed("psp_a", 699), None);
        assert_eq!(
            switches.account_closed("psp_a", 700),
            Some("in maintenance")
        );
        assert_eq!(
            switches.account_closed("psp_a", 1_999),
            Some("in maintenance")
        );
        assert_eq!(switches.account_closed("psp_a", 2_000), None);
        assert_eq!(switches.account_closed("psp_b", 1_500), None);
    }

    #[test]
    fn method_switches_narrow_by_country_and_currency() {
        let eur = Currency::from_code("EUR").unwrap();
        let gbp = Currency::from_code("GBP").unwrap();
        let switches = Switches {
            methods_off: vec![MethodSwitch {
                method: "card".into(),
                country: Some("DE".into()),
                currency: Some("EUR".into()),
            }],
            ..Switches::default()
        };
        assert!(switches.method_off("card", "DE", eur).is_some());
        assert!(switches.method_off("card", "DE", gbp).is_none());
        assert!(switches.method_off("card", "AT", eur).is_none());
        assert!(switches.method_off("bank_transfer", "DE", eur).is_none());
    }
}
