//! The features of one pre-authorization decision, gathered from the database in at most
//! five statements (run together): the player's velocity, the request IP's and device's
//! velocity with the other players seen on them, the player's deposit history and age
//! (ADR 63), and the player's open AML case (ADR 70). Counters are counted from the stored decisions, so every attempt counts,
//! refused ones included.

use kassa_core::risk::features::{velocity_name, VelocityMeasure, VELOCITY_WINDOWS};
use kassa_core::risk::{FeatureValue, Features};
use kassa_core::Money;
use kassa_store::directory::PlayerRecord;
use kassa_store::risk::{DepositHistory, Velocity, VelocitySubject};
use kassa_store::{Store, StoreError};

use super::ip_list::IpList;

/// How far back a device or IP is looked at for other players using it.
pub const SHARED_LOOKBACK_MS: i64 = 30 * 24 * 60 * 60 * 1_000;

/// What is decided on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RiskKind {
    Deposit,
    Payout,
}

impl RiskKind {
    /// The stored name, and the `kind` feature.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskKind::Deposit => "deposit",
            RiskKind::Payout => "payout",
        }
    }
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
}

/// Gathers the features of `request` at `now_ms`.
pub async fn gather(
    store: &Store,
    ip_list: &IpList,
    request: &RiskRequest<'_>,
    now_ms: i64,
) -> Result<Features, StoreError> {
    let merchant = request.player.merchant_id.as_str();
    let player = request.player.player_id.as_str();
    let windows: Vec<i64> = VELOCITY_WINDOWS.iter().map(|(_, ms)| now_ms - ms).collect();
    let day_ago = now_ms - VELOCITY_WINDOWS[VELOCITY_WINDOWS.len() - 1].1;
    let shared_since = now_ms - SHARED_LOOKBACK_MS;
    let counted = |subject, since| Counted {
        store,
        merchant,
        player,
        subject,
        windows: &windows,
        since,
    };
    let (by_player, by_ip, by_device, history, aml_case) = tokio::try_join!(
        counted(Some(VelocitySubject::Player(player)), day_ago).velocity(),
        counted(request.ip.map(VelocitySubject::Ip), shared_since).velocity(),
        counted(request.device.map(VelocitySubject::Device), shared_since).velocity(),
        store.deposit_history(merchant, player),
        store.aml_open_case_scenarios(merchant, player),
    )?;
    let mut features = request_features(request, now_ms, &history);
    insert_aml(&mut features, aml_case.as_deref());
    insert_velocity(&mut features, "player", by_player.as_ref());
    insert_velocity(&mut features, "ip", by_ip.as_ref());
    insert_velocity(&mut features, "device", by_device.as_ref());
    if let Some(by_ip) = &by_ip {
        number(&mut features, "ip_players_30d", by_ip.other_players);
    }
    if let Some(by_device) = &by_device {
        number(&mut features, "device_players_30d", by_device.other_players);
    }
    if let Some(flags) = request.ip.and_then(|ip| ip_list.flags_of(ip)) {
        for flag in super::ip_list::IP_FLAGS {
            features.insert(
                format!("ip_{flag}"),
                FeatureValue::Flag(flags.contains(&flag)),
            );
        }
    }
    Ok(features)
}

/// One velocity count to make (none without a subject: no IP or no device given).
struct Counted<'a> {
    store: &'a Store,
    merchant: &'a str,
    player: &'a str,
    subject: Option<VelocitySubject<'a>>,
    windows: &'a [i64],
    since: i64,
}

impl Counted<'_> {
    async fn velocity(self) -> Result<Option<Velocity>, StoreError> {
        let Some(subject) = self.subject else {
            return Ok(None);
        };
        self.store
            .risk_velocity(
                self.merchant,
                self.player,
                subject,
                self.windows,
                self.since,
            )
            .await
            .map(Some)
    }
}

fn number(features: &mut Features, name: &str, value: i64) {
    features.insert(name.to_string(), FeatureValue::Number(value));
}

fn text(features: &mut Features, name: &str, value: &str) {
    features.insert(name.to_string(), FeatureValue::Text(value.to_string()));
}

/// The features of the request itself and of the player's history.
fn request_features(request: &RiskRequest<'_>, now_ms: i64, history: &DepositHistory) -> Features {
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

fn insert_velocity(features: &mut Features, subject: &str, velocity: Option<&Velocity>) {
    let Some(velocity) = velocity else {
        return;
    };
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
