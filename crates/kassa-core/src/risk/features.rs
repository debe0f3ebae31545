//! The features a rule may read: a fixed catalogue, so a rule naming a feature that does not
//! exist (or comparing a flag with a number) is refused when the rule set is stored, not
//! silently never fired. Amounts are minor units of the payment's currency (`_minor`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a feature holds, and so which conditions may read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureKind {
    /// A whole number: counts, minor units, seconds, percentages.
    Number,
    /// True or false.
    Flag,
    /// A word: a country code, a method, `deposit` or `payout`.
    Text,
}

/// One feature's value. Numbers are integers: no float ever holds money.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FeatureValue {
    Flag(bool),
    Number(i64),
    Text(String),
}

/// The features gathered for one decision, by name. A name absent here is missing: rules
/// that read it do not fire, and the decision says it was missing.
pub type Features = BTreeMap<String, FeatureValue>;

/// Who a velocity counter is kept for: the player, the request's IP, the request's device,
/// the card (by its keyed fingerprint, ADR 75) and the player's email address.
pub const VELOCITY_SUBJECTS: [&str; 5] = ["player", "ip", "device", "card", "email"];

/// The sliding windows of the velocity counters: name and length.
pub const VELOCITY_WINDOWS: [(&str, i64); 3] = [
    ("10m", 10 * 60 * 1_000),
    ("1h", 60 * 60 * 1_000),
    ("24h", 24 * 60 * 60 * 1_000),
];

/// What a velocity counter counts: deposit attempts, attempts declined (by risk or by the
/// provider), and the amount attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VelocityMeasure {
    Attempts,
    Declines,
    AmountMinor,
}

/// Every velocity measure.
pub const VELOCITY_MEASURES: [VelocityMeasure; 3] = [
    VelocityMeasure::Attempts,
    VelocityMeasure::Declines,
    VelocityMeasure::AmountMinor,
];

/// The name of one velocity feature, e.g. `ip_declines_1h` or `player_amount_24h_minor`.
pub fn velocity_name(subject: &str, measure: VelocityMeasure, window: &str) -> String {
    match measure {
        VelocityMeasure::Attempts => format!("{subject}_attempts_{window}"),
        VelocityMeasure::Declines => format!("{subject}_declines_{window}"),
        VelocityMeasure::AmountMinor => format!("{subject}_amount_{window}_minor"),
    }
}

/// The features other than the velocity counters, with their kinds.
pub const NAMED_FEATURES: &[(&str, FeatureKind)] = &[
    // The request.
    ("kind", FeatureKind::Text),
    ("amount_minor", FeatureKind::Number),
    ("currency", FeatureKind::Text),
    ("method", FeatureKind::Text),
    ("country", FeatureKind::Text),
    ("jurisdiction", FeatureKind::Text),
    // The player.
    ("player_country", FeatureKind::Text),
    ("country_mismatch", FeatureKind::Flag),
    ("account_age_s", FeatureKind::Number),
    ("first_deposit", FeatureKind::Flag),
    ("approved_deposits", FeatureKind::Number),
    ("average_deposit_minor", FeatureKind::Number),
    ("amount_vs_average_pct", FeatureKind::Number),
    ("chargebacks", FeatureKind::Number),
    // The request's IP and device.
    ("ip_vpn", FeatureKind::Flag),
    ("ip_tor", FeatureKind::Flag),
    ("ip_hosting", FeatureKind::Flag),
    ("ip_players_30d", FeatureKind::Number),
    ("device_players_30d", FeatureKind::Number),
    // The card, where Kassa sees it (its card page, a payout to a saved card).
    ("card_players_30d", FeatureKind::Number),
    ("bin_country", FeatureKind::Text),
    ("bin_country_mismatch_ip", FeatureKind::Flag),
    ("bin_country_mismatch_kyc", FeatureKind::Flag),
    // The cards that paid the player's earlier deposits, as Stripe and Adyen reported them.
    ("card_countries_30d", FeatureKind::Number),
    ("card_country_mismatch_kyc_30d", FeatureKind::Flag),
    // The player's email address.
    ("email_players", FeatureKind::Number),
    // AML monitoring after earlier money movements (docs/aml.md).
    ("aml_open_case", FeatureKind::Flag),
    ("aml_cdd_threshold", FeatureKind::Flag),
];

/// The kind of the feature called `name`, `None` when no such feature exists.
pub fn kind_of(name: &str) -> Option<FeatureKind> {
    if let Some((_, kind)) = NAMED_FEATURES.iter().find(|(known, _)| *known == name) {
        return Some(*kind);
    }
    is_velocity_name(name).then_some(FeatureKind::Number)
}

fn is_velocity_name(name: &str) -> bool {
    velocity_names().any(|known| known == name)
}

fn velocity_names() -> impl Iterator<Item = String> {
    VELOCITY_SUBJECTS.iter().flat_map(|subject| {
        VELOCITY_WINDOWS.iter().flat_map(move |(window, _)| {
            VELOCITY_MEASURES
                .iter()
                .map(move |measure| velocity_name(subject, *measure, window))
        })
    })
}

/// Every feature name, for the docs and the bench.
pub fn all_names() -> Vec<String> {
    NAMED_FEATURES
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(velocity_names())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn velocity_names_are_numbers_and_unknown_names_have_no_kind() {
        assert_eq!(kind_of("ip_declines_1h"), Some(FeatureKind::Number));
        assert_eq!(
            kind_of("player_amount_24h_minor"),
            Some(FeatureKind::Number)
        );
        assert_eq!(kind_of("first_deposit"), Some(FeatureKind::Flag));
        assert_eq!(kind_of("card_declines_1h"), Some(FeatureKind::Number));
        assert_eq!(kind_of("email_amount_24h_minor"), Some(FeatureKind::Number));
        assert_eq!(kind_of("bin_country_mismatch_ip"), Some(FeatureKind::Flag));
        assert_eq!(kind_of("iban_declines_1h"), None);
        assert_eq!(kind_of("ip_declines_2h"), None);
        assert_eq!(all_names().len(), NAMED_FEATURES.len() + 45);
    }
}
