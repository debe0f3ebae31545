//! The features of one pre-authorization decision. Those that need no counting are read
//! first, concurrently and outside any transaction: the player's deposit history and age
//! (ADR 63), their open AML case (ADR 70), the players sharing their email address, and the
//! IP's flags and the card's issuing country from the list files. The velocity counters
//! (per player, IP, device, card and email, ADR 74) are then counted in one statement,
//! inside the transaction that stores the decision when the start stores it at once, so a
//! start counts every attempt decided before it, refused ones included.

use kassa_core::risk::features::{velocity_name, VelocityMeasure, VELOCITY_WINDOWS};
use kassa_core::risk::{FeatureValue, Features};
use kassa_core::Money;
use kassa_store::directory::PlayerRecord;
use kassa_store::risk::{PlayerHistory, Velocity, VelocitySubject};
use kassa_store::{Store, StoreError};

use super::bin_list::BinList;
use super::ip_list::IpList;

/// How far back a device, IP or card is looked at for other players using it.
pub const SHARED_LOOKBACK_MS: i64 = 30 * 24 * 60 * 60 * 1_000;

/// What is decided on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RiskKind {
    Deposit,
    /// The card submitted for a deposit on Kassa's card page, before the issuer is asked.
    Card,
    Payout,
}

impl RiskKind {
    /// The stored name, and the `kind` feature.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskKind::Deposit => "deposit",
            RiskKind::Card => "card",
            RiskKind::Payout => "payout",
        }
    }
}

/// The card of a decision, where Kassa sees one: the card page's, a payout's saved card.
#[derive(Clone, Copy, Debug)]
pub struct CardSeen<'a> {
    /// The keyed fingerprint; `None` without a fingerprint key (or an old saved card).
    pub fingerprint: Option<&'a str>,
    /// The first six to eight digits, for the issuing country.
    pub bin: &'a str,
}

/// A deposit or payout about to start.
#[derive(Clone, Copy, Debug)]
pub struct RiskRequest<'a> {
    pub kind: RiskKind,
    pub player: &'a PlayerRecord,
    pub amount: Money,
    pub method: &'a str,
    /// The country the request comes from, when known.
    pub country: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub device: Option<&'a str>,
    pub card: Option<CardSeen<'a>>,
}

impl RiskRequest<'_> {
    /// The subjects velocity is counted for, with their feature names and how far back
    /// each is counted (the player's 24 h; the others' 30 days, for the players they share).
    pub fn velocity_subjects<'b>(
        &'b self,
        email_key: Option<&'b str>,
        now_ms: i64,
    ) -> Vec<(&'static str, VelocitySubject<'b>, i64)> {
        let day_ago = now_ms - VELOCITY_WINDOWS[VELOCITY_WINDOWS.len() - 1].1;
        let shared_since = now_ms - SHARED_LOOKBACK_MS;
        let player = self.player.player_id.as_str();
        let mut subjects = vec![("player", VelocitySubject::Player(player), day_ago)];
        if let Some(ip) = self.ip {
            subjects.push(("ip", VelocitySubject::Ip(ip), shared_since));
        }
        if let Some(device) = self.device {
            subjects.push(("device", VelocitySubject::Device(device), shared_since));
        }
        if let Some(fingerprint) = self.card.and_then(|card| card.fingerprint) {
            subjects.push(("card", VelocitySubject::Card(fingerprint), shared_since));
        }
        if let Some(key) = email_key {
            subjects.push(("email", VelocitySubject::Email(key), day_ago));
        }
        subjects
    }
}

/// The list files the features read.
pub struct Lists {
    pub ips: IpList,
    pub bins: BinList,
}

/// How far back `card_countries_30d` looks.
const CARD_COUNTRIES_WINDOW_MS: i64 = 30 * 24 * 3_600_000;

/// Gathers the features of `request` at `now_ms` that need no counting.
pub async fn gather_facts(
    store: &Store,
    lists: &Lists,
    request: &RiskRequest<'_>,
    email_key: Option<&str>,
    now_ms: i64,
) -> Result<Features, StoreError> {
    let merchant = request.player.merchant_id.as_str();
    let player = request.player.player_id.as_str();
    let since_ms = now_ms - CARD_COUNTRIES_WINDOW_MS;
    let history = store
        .player_history(merchant, player, since_ms, email_key)
        .await?;
    let mut features = request_features(request, now_ms, &history);
    insert_aml(&mut features, history.open_case_scenarios.as_deref());
    insert_reported_card_countries(&mut features, request.player, &history.card_countries);
    if let Some(count) = history.email_players {
        number(&mut features, "email_players", count);
    }
    if let Some(flags) = request.ip.and_then(|ip| lists.ips.flags_of(ip)) {
        for flag in super::ip_list::IP_FLAGS {
            features.insert(
                format!("ip_{flag}"),
                FeatureValue::Flag(flags.contains(&flag)),
            );
        }
    }
    if let Some(card) = &request.card {
        insert_bin_country(&mut features, request, lists.bins.country_of(card.bin));
    }
    Ok(features)
}

/// The counted velocity of each subject (in the order of `names`), into `features`; the
/// IP's, device's and card's other players too.
pub fn insert_counted(features: &mut Features, names: &[&str], counted: &[Velocity]) {
    for (subject, velocity) in names.iter().zip(counted) {
        insert_velocity(features, subject, velocity);
        if matches!(*subject, "ip" | "device" | "card") {
            number(
                features,
                &format!("{subject}_players_30d"),
                velocity.other_players,
            );
        }
    }
}

/// The card's issuing country and how it compares with the request's country and the
/// player's KYC country. Kassa's KYC checks do not report a document country, so the KYC
/// country is the player's `country` once their KYC is `verified`; before, the player's
/// jurisdiction where it is a country code (docs/risk.md).
fn insert_bin_country(features: &mut Features, request: &RiskRequest<'_>, bin: Option<String>) {
    let Some(bin_country) = bin else {
        return;
    };
    if let Some(country) = request.country {
        features.insert(
            "bin_country_mismatch_ip".into(),
            FeatureValue::Flag(!country.eq_ignore_ascii_case(&bin_country)),
        );
    }
    if let Some(kyc_country) = kyc_country(request.player) {
        features.insert(
            "bin_country_mismatch_kyc".into(),
            FeatureValue::Flag(!kyc_country.eq_ignore_ascii_case(&bin_country)),
        );
    }
    text(features, "bin_country", &bin_country);
}

/// The player's KYC country: the issuing country of a verified identity document (ADR 86);
/// else the registration `country` once `kyc_status` is `verified`, before that the
/// jurisdiction where it is a country code (ADR 76).
fn kyc_country(player: &PlayerRecord) -> Option<&str> {
    if let Some(document_country) = &player.kyc_country {
        Some(document_country.as_str())
    } else if player.kyc_status == kassa_core::status::KycStatus::Verified {
        Some(player.country.as_str())
    } else {
        player
            .jurisdiction
            .as_deref()
            .filter(|j| j.len() == 2 && j.bytes().all(|b| b.is_ascii_alphabetic()))
    }
}

/// The issuing countries of the cards that paid the player's deposits in the last 30 days,
/// as Stripe and Adyen reported them after the fact (ADR 84): how many, and whether one is
/// not the KYC country. A deposit through them is decided before its card is known, so its
/// own card counts from the player's next decision on.
fn insert_reported_card_countries(
    features: &mut Features,
    player: &PlayerRecord,
    countries: &[String],
) {
    number(
        features,
        "card_countries_30d",
        i64::try_from(countries.len()).unwrap_or(i64::MAX),
    );
    if let Some(kyc_country) = kyc_country(player) {
        features.insert(
            "card_country_mismatch_kyc_30d".into(),
            FeatureValue::Flag(
                countries
                    .iter()
                    .any(|country| !country.eq_ignore_ascii_case(kyc_country)),
            ),
        );
    }
}

fn number(features: &mut Features, name: &str, value: i64) {
    features.insert(name.to_string(), FeatureValue::Number(value));
}

fn text(features: &mut Features, name: &str, value: &str) {
    features.insert(name.to_string(), FeatureValue::Text(value.to_string()));
}

/// The features of the request itself and of the player's history.
fn request_features(request: &RiskRequest<'_>, now_ms: i64, history: &PlayerHistory) -> Features {
    let mut features = Features::new();
    let player = request.player;
    text(&mut features, "kind", request.kind.as_str());
    number(&mut features, "amount_minor", request.amount.amount_minor);
    text(&mut features, "currency", request.amount.currency.code());
    text(&mut features, "method", request.method);
    text(&mut features, "player_country", &player.country);
    if let Some(jurisdiction) = &player.jurisdiction {
        text(&mut features, "jurisdiction", jurisdiction);
    }
    if let Some(country) = request.country {
        text(&mut features, "country", country);
        features.insert(
            "country_mismatch".into(),
            FeatureValue::Flag(!country.eq_ignore_ascii_case(&player.country)),
        );
    }
    if let Some(created_at_ms) = history.player_created_at_ms {
        number(
            &mut features,
            "account_age_s",
            (now_ms - created_at_ms).max(0) / 1_000,
        );
    }
    features.insert(
        "first_deposit".into(),
        FeatureValue::Flag(history.approved == 0),
    );
    number(&mut features, "approved_deposits", history.approved);
    number(&mut features, "chargebacks", history.chargebacks);
    if history.approved > 0 {
        let average = history.approved_sum_minor / history.approved;
        number(&mut features, "average_deposit_minor", average);
        if average > 0 {
            // i128: a large amount times 100 does not overflow; the result is capped.
            let pct = i128::from(request.amount.amount_minor) * 100 / i128::from(average);
            number(
                &mut features,
                "amount_vs_average_pct",
                i64::try_from(pct).unwrap_or(i64::MAX),
            );
        }
    }
    features
}

/// Whether the player has an AML case under way, and whether it holds a CDD threshold alert
/// (a rule can ask for the step-up that CDD is before a payout: UKGC and MGA lock the funds
/// until CDD is done, docs/aml.md).
fn insert_aml(features: &mut Features, open_case_scenarios: Option<&[String]>) {
    let cdd = kassa_core::aml::Scenario::CddThreshold.as_str();
    features.insert(
        "aml_open_case".into(),
        FeatureValue::Flag(open_case_scenarios.is_some()),
    );
    features.insert(
        "aml_cdd_threshold".into(),
        FeatureValue::Flag(open_case_scenarios.is_some_and(|s| s.iter().any(|s| s == cdd))),
    );
}

fn insert_velocity(features: &mut Features, subject: &str, velocity: &Velocity) {
    for (i, (window, _)) in VELOCITY_WINDOWS.iter().enumerate() {
        let counted = [
            (VelocityMeasure::Attempts, &velocity.attempts),
            (VelocityMeasure::Declines, &velocity.declines),
            (VelocityMeasure::AmountMinor, &velocity.amount_minor),
        ];
        for (measure, values) in counted {
            if let Some(value) = values.get(i) {
                number(features, &velocity_name(subject, measure, window), *value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kassa_core::ids::{MerchantId, PlayerId};
    use kassa_core::status::{AccountStatus, KycStatus};
    use kassa_core::Currency;

    use super::*;

    fn maltese(kyc_status: KycStatus, kyc_country: Option<&str>) -> PlayerRecord {
        PlayerRecord {
            merchant_id: MerchantId::parse("mch_demo").unwrap(),
            player_id: PlayerId::parse("p1").unwrap(),
            currency: Currency::from_code("EUR").unwrap(),
            country: "MT".into(),
            jurisdiction: Some("GB".into()),
            kyc_status,
            birth_date: None,
            account_status: AccountStatus::Active,
            cash_account_id: 1,
            hold_account_id: 2,
            email: None,
            kyc_country: kyc_country.map(str::to_string),
        }
    }

    #[test]
    fn the_kyc_country_is_the_verified_documents_then_the_registrations_then_the_licences() {
        assert_eq!(kyc_country(&maltese(KycStatus::None, None)), Some("GB"));
        assert_eq!(kyc_country(&maltese(KycStatus::Verified, None)), Some("MT"));
        let documented = maltese(KycStatus::Verified, Some("SE"));
        assert_eq!(kyc_country(&documented), Some("SE"));
    }

    #[test]
    fn reported_card_countries_count_and_compare_with_the_kyc_country() {
        let mut features = Features::new();
        let documented = maltese(KycStatus::Verified, Some("SE"));
        insert_reported_card_countries(&mut features, &documented, &["SE".into()]);
        assert_eq!(features["card_countries_30d"], FeatureValue::Number(1));
        assert_eq!(
            features["card_country_mismatch_kyc_30d"],
            FeatureValue::Flag(false)
        );
        insert_reported_card_countries(&mut features, &documented, &["DE".into(), "SE".into()]);
        assert_eq!(features["card_countries_30d"], FeatureValue::Number(2));
        assert_eq!(
            features["card_country_mismatch_kyc_30d"],
            FeatureValue::Flag(true)
        );
        let mut none = Features::new();
        insert_reported_card_countries(&mut none, &documented, &[]);
        assert_eq!(none["card_countries_30d"], FeatureValue::Number(0));
        assert_eq!(
            none["card_country_mismatch_kyc_30d"],
            FeatureValue::Flag(false)
        );
    }
}
