//! The AML scenarios: pure functions of one player's recent deposits and withdrawals that
//! raise alerts. Each alert carries a key that is the same however often the same pattern
//! is looked at, so the store keeps one alert per pattern (per scenario, player and window).

use std::collections::BTreeMap;

use serde::Serialize;

use super::settings::{AmlThresholds, HOUR_MS};

stored_names! {
    /// What kind of pattern an alert is about.
    Scenario {
        /// Deposits (or withdrawals) reached the CDD threshold, single or linked.
        CddThreshold => "cdd_threshold",
        /// Several deposits just under the threshold within a window.
        Structuring => "structuring",
        /// Most of recent deposits withdrawn with little play.
        RapidInOut => "rapid_in_out",
        /// A withdrawal to an instrument the player never deposited with.
        OtherInstrument => "other_instrument",
        /// An instrument several players use.
        SharedInstrument => "shared_instrument",
    }
}

/// Money in or out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A captured deposit.
    Deposit,
    /// A requested withdrawal (not cancelled or rejected).
    Withdrawal,
}

/// One deposit or withdrawal of the player.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Movement {
    /// The payment or payout id.
    pub id: String,
    pub direction: Direction,
    pub amount_minor: i64,
    /// When it was captured (deposit) or requested (withdrawal).
    pub at_ms: i64,
    /// The provider account it went through.
    pub account: String,
    /// The instrument's reference where Kassa knows it (a vault token, a payout destination).
    pub instrument: Option<String>,
}

/// Everything the scenarios read about one player, gathered by the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The player's wallet currency.
    pub currency: String,
    /// When the scenarios run.
    pub now_ms: i64,
    /// Deposits and withdrawals within the thresholds' lookback, any order.
    pub movements: Vec<Movement>,
    /// The withdrawal whose request started this run, if one did.
    pub withdrawal: Option<Movement>,
    /// What the player wagered in the rapid window before that withdrawal.
    pub wagered_before_withdrawal_minor: i64,
    /// The provider accounts the player ever deposited through.
    pub deposit_accounts: Vec<String>,
    /// The instrument references the player deposited with (saved cards' tokens).
    pub deposit_instruments: Vec<String>,
    /// The player's instruments with how many players (the player included) use each.
    pub instrument_players: Vec<(String, u32)>,
    /// Windows of earlier alerts: (scenario, end of its window); a pattern inside one is
    /// the same pattern.
    pub earlier: Vec<(Scenario, i64)>,
}

/// A pattern found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub scenario: Scenario,
    /// The same for the same pattern, however often it is found.
    pub key: String,
    pub window_start_ms: i64,
    /// The end of the window this alert covers; the same pattern inside it raises nothing.
    pub window_end_ms: i64,
    /// The payments and payouts that make the pattern.
    pub transactions: Vec<String>,
    /// The sum the pattern is about.
    pub amount_minor: i64,
    /// The figures the scenario compared, by name.
    pub figures: BTreeMap<&'static str, i64>,
}

/// The alerts `facts` raise under `thresholds`.
pub fn detect(thresholds: &AmlThresholds, facts: &Facts) -> Vec<Alert> {
    let mut alerts = Vec::new();
    if let Some(threshold) = thresholds.threshold_minor(&facts.currency) {
        for direction in [Direction::Deposit, Direction::Withdrawal] {
            alerts.extend(cdd_threshold(thresholds, facts, threshold, direction));
        }
        alerts.extend(structuring(thresholds, facts, threshold));
    }
    if let Some(withdrawal) = &facts.withdrawal {
        alerts.extend(rapid_in_out(thresholds, facts, withdrawal));
        alerts.extend(other_instrument(facts, withdrawal));
    }
    alerts.extend(shared_instruments(thresholds, facts));
    alerts
        .into_iter()
        .filter(|alert| !already_covered(facts, alert))
        .collect()
}

/// Whether an earlier alert of the scenario covers this one's time.
fn already_covered(facts: &Facts, alert: &Alert) -> bool {
    let windowed = matches!(
        alert.scenario,
        Scenario::CddThreshold | Scenario::Structuring
    );
    windowed
        && facts.earlier.iter().any(|(scenario, end_ms)| {
            *scenario == alert.scenario && *end_ms > alert.window_start_ms
        })
}

/// The movements of `direction` within `window_ms` before `now_ms`, oldest first.
fn recent(facts: &Facts, direction: Direction, window_ms: i64) -> Vec<&Movement> {
    let since_ms = facts.now_ms - window_ms;
    let mut found: Vec<&Movement> = facts
        .movements
        .iter()
        .filter(|m| m.direction == direction && m.at_ms > since_ms && m.at_ms <= facts.now_ms)
        .collect();
    found.sort_by(|a, b| (a.at_ms, &a.id).cmp(&(b.at_ms, &b.id)));
    found
}

fn windowed_alert(
    scenario: Scenario,
    movements: &[&Movement],
    window_ms: i64,
    figures: BTreeMap<&'static str, i64>,
) -> Alert {
    let start_ms = movements.first().map_or(0, |m| m.at_ms);
    Alert {
        scenario,
        key: format!("{}:{start_ms}", scenario.as_str()),
        window_start_ms: start_ms,
        window_end_ms: start_ms + window_ms,
        transactions: movements.iter().map(|m| m.id.clone()).collect(),
        amount_minor: movements.iter().map(|m| m.amount_minor).sum(),
        figures,
    }
}

/// Linked deposits (or withdrawals) within the window at or over the CDD threshold.
fn cdd_threshold(
    thresholds: &AmlThresholds,
    facts: &Facts,
    threshold: i64,
    direction: Direction,
) -> Option<Alert> {
    let window_ms = i64::from(thresholds.cdd_window_hours) * HOUR_MS;
    let linked = recent(facts, direction, window_ms);
    let sum: i64 = linked.iter().map(|m| m.amount_minor).sum();
    if sum < threshold {
        return None;
    }
    let figures = BTreeMap::from([
        ("linked_sum_minor", sum),
        ("threshold_minor", threshold),
        ("window_hours", i64::from(thresholds.cdd_window_hours)),
    ]);
    let mut alert = windowed_alert(Scenario::CddThreshold, &linked, window_ms, figures);
    if direction == Direction::Withdrawal {
        alert.key = format!("{}:withdrawals:{}", alert.scenario, alert.window_start_ms);
    }
    Some(alert)
}

/// At least N deposits each in [floor·T, T) within the window.
fn structuring(thresholds: &AmlThresholds, facts: &Facts, threshold: i64) -> Option<Alert> {
    let window_ms = i64::from(thresholds.structuring_window_hours) * HOUR_MS;
    // floor·T rounded up, so that "at least 80 %" never takes a deposit just below it.
    let floor_minor =
        ((i128::from(threshold) * i128::from(thresholds.structuring_floor_pct) + 99) / 100) as i64;
    let just_under: Vec<&Movement> = recent(facts, Direction::Deposit, window_ms)
        .into_iter()
        .filter(|m| m.amount_minor >= floor_minor && m.amount_minor < threshold)
        .collect();
    if (just_under.len() as u64) < u64::from(thresholds.structuring_deposits_min) {
        return None;
    }
    let figures = BTreeMap::from([
        ("deposits", just_under.len() as i64),
        (
            "deposits_min",
            i64::from(thresholds.structuring_deposits_min),
        ),
        ("floor_minor", floor_minor),
        ("threshold_minor", threshold),
        (
            "window_hours",
            i64::from(thresholds.structuring_window_hours),
        ),
    ]);
    Some(windowed_alert(
        Scenario::Structuring,
        &just_under,
        window_ms,
        figures,
    ))
}

/// A withdrawal of most of the window's deposits, with little of them wagered.
fn rapid_in_out(thresholds: &AmlThresholds, facts: &Facts, withdrawal: &Movement) -> Option<Alert> {
    let window_ms = i64::from(thresholds.rapid_window_hours) * HOUR_MS;
    let since_ms = withdrawal.at_ms - window_ms;
    let deposits: Vec<&Movement> = facts
        .movements
        .iter()
        .filter(|m| {
            m.direction == Direction::Deposit && m.at_ms > since_ms && m.at_ms <= withdrawal.at_ms
        })
        .collect();
    let deposited: i64 = deposits.iter().map(|m| m.amount_minor).sum();
    if deposited <= 0 {
        return None;
    }
    let deposited = i128::from(deposited);
    let withdrawn_enough = i128::from(withdrawal.amount_minor) * 100
        >= deposited * i128::from(thresholds.rapid_withdrawn_pct_min);
    let little_play = i128::from(facts.wagered_before_withdrawal_minor) * 100
        < deposited * i128::from(thresholds.rapid_wagered_pct_max);
    if !(withdrawn_enough && little_play) {
        return None;
    }
    let mut transactions: Vec<String> = deposits.iter().map(|m| m.id.clone()).collect();
    transactions.push(withdrawal.id.clone());
    Some(Alert {
        scenario: Scenario::RapidInOut,
        key: format!("{}:{}", Scenario::RapidInOut, withdrawal.id),
        window_start_ms: since_ms,
        window_end_ms: withdrawal.at_ms,
        transactions,
        amount_minor: withdrawal.amount_minor,
        figures: BTreeMap::from([
            ("deposited_minor", deposited as i64),
            ("withdrawn_minor", withdrawal.amount_minor),
            ("wagered_minor", facts.wagered_before_withdrawal_minor),
            ("window_hours", i64::from(thresholds.rapid_window_hours)),
        ]),
    })
}

/// A withdrawal through an account the player never deposited through, or to an instrument
/// they never deposited with. A player without deposits has nothing to compare with.
fn other_instrument(facts: &Facts, withdrawal: &Movement) -> Option<Alert> {
    if facts.deposit_accounts.is_empty() {
        return None;
    }
    let other_account = !facts.deposit_accounts.contains(&withdrawal.account);
    let other_reference = withdrawal
        .instrument
        .as_ref()
        .is_some_and(|reference| !facts.deposit_instruments.contains(reference));
    if !(other_account || other_reference) {
        return None;
    }
    Some(Alert {
        scenario: Scenario::OtherInstrument,
        key: format!("{}:{}", Scenario::OtherInstrument, withdrawal.id),
        window_start_ms: withdrawal.at_ms,
        window_end_ms: withdrawal.at_ms,
        transactions: vec![withdrawal.id.clone()],
        amount_minor: withdrawal.amount_minor,
        figures: BTreeMap::from([
            ("other_account", i64::from(other_account)),
            ("other_reference", i64::from(other_reference)),
            ("deposit_accounts", facts.deposit_accounts.len() as i64),
        ]),
    })
}

/// Each instrument of the player that enough players use, once per instrument.
fn shared_instruments(thresholds: &AmlThresholds, facts: &Facts) -> Vec<Alert> {
    facts
        .instrument_players
        .iter()
        .filter(|(_, players)| *players >= thresholds.shared_instrument_players_min)
        .map(|(instrument, players)| {
            let transactions = facts
                .movements
                .iter()
                .filter(|m| m.instrument.as_ref() == Some(instrument))
                .map(|m| m.id.clone())
                .collect();
            Alert {
                scenario: Scenario::SharedInstrument,
                key: format!("{}:{instrument}", Scenario::SharedInstrument),
                window_start_ms: facts.now_ms,
                window_end_ms: facts.now_ms,
                transactions,
                amount_minor: 0,
                figures: BTreeMap::from([
                    ("players", i64::from(*players)),
                    (
                        "players_min",
                        i64::from(thresholds.shared_instrument_players_min),
                    ),
                ]),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = HOUR_MS;

    fn deposit(id: &str, amount_minor: i64, at_ms: i64) -> Movement {
        Movement {
            id: id.into(),
            direction: Direction::Deposit,
            amount_minor,
            at_ms,
            account: "sandbox".into(),
            instrument: None,
        }
    }

    fn withdrawal(id: &str, amount_minor: i64, at_ms: i64) -> Movement {
        Movement {
            direction: Direction::Withdrawal,
            ..deposit(id, amount_minor, at_ms)
        }
    }

    fn facts(movements: Vec<Movement>, now_ms: i64) -> Facts {
        Facts {
            currency: "EUR".into(),
            now_ms,
            deposit_accounts: vec!["sandbox".into()],
            movements,
            ..Facts::default()
        }
    }

    fn scenarios(alerts: &[Alert]) -> Vec<Scenario> {
        alerts.iter().map(|a| a.scenario).collect()
    }

    #[test]
    fn three_deposits_just_under_the_threshold_are_structuring_once() {
        let t = AmlThresholds::default();
        let three = vec![
            deposit("p1", 180_000, 0),
            deposit("p2", 180_000, HOUR),
            deposit("p3", 180_000, 2 * HOUR),
        ];
        let alerts = detect(&t, &facts(three.clone(), 2 * HOUR));
        let structuring: Vec<&Alert> = alerts
            .iter()
            .filter(|a| a.scenario == Scenario::Structuring)
            .collect();
        assert_eq!(structuring.len(), 1);
        assert_eq!(structuring[0].transactions, ["p1", "p2", "p3"]);
        assert_eq!(structuring[0].key, "structuring:0");
        // A fourth in the same window is the same pattern: covered by the first alert.
        let mut four = facts(
            [three, vec![deposit("p4", 180_000, 3 * HOUR)]].concat(),
            3 * HOUR,
        );
        four.earlier = vec![(Scenario::Structuring, 24 * HOUR)];
        assert!(!scenarios(&detect(&t, &four)).contains(&Scenario::Structuring));
    }

    #[test]
    fn deposits_spread_wider_than_the_window_or_at_the_threshold_are_not_structuring() {
        let t = AmlThresholds::default();
        let spread = vec![
            deposit("p1", 180_000, 0),
            deposit("p2", 180_000, 13 * HOUR),
            deposit("p3", 180_000, 25 * HOUR),
        ];
        assert!(!scenarios(&detect(&t, &facts(spread, 25 * HOUR))).contains(&Scenario::Structuring));
        let at_threshold = vec![
            deposit("p1", 200_000, 0),
            deposit("p2", 159_999, 1),
            deposit("p3", 180_000, 2),
        ];
        assert!(!scenarios(&detect(&t, &facts(at_threshold, 2))).contains(&Scenario::Structuring));
    }

    #[test]
    fn linked_deposits_reach_the_cdd_threshold_once_per_window() {
        let t = AmlThresholds::default();
        let below = vec![deposit("p1", 100_000, 0), deposit("p2", 99_999, HOUR)];
        assert!(detect(&t, &facts(below, HOUR)).is_empty());
        let reached = vec![deposit("p1", 100_000, 0), deposit("p2", 100_000, HOUR)];
        let alerts = detect(&t, &facts(reached.clone(), HOUR));
        assert_eq!(scenarios(&alerts), [Scenario::CddThreshold]);
        assert_eq!(alerts[0].window_end_ms, 24 * HOUR);
        let mut again = facts(reached, 2 * HOUR);
        again.earlier = vec![(Scenario::CddThreshold, 24 * HOUR)];
        assert!(detect(&t, &again).is_empty());
    }

    #[test]
    fn malta_links_deposits_months_apart() {
        let settings = crate::aml::AmlSettings::default();
        let day = 24 * HOUR;
        let months_apart = vec![deposit("p1", 100_000, 0), deposit("p2", 100_000, 90 * day)];
        let mt = settings.for_jurisdiction(Some("MT"));
        let gb = settings.for_jurisdiction(Some("GB"));
        assert_eq!(
            scenarios(&detect(&mt, &facts(months_apart.clone(), 90 * day))),
            [Scenario::CddThreshold]
        );
        assert!(detect(&gb, &facts(months_apart, 90 * day)).is_empty());
    }

    #[test]
    fn withdrawing_most_of_a_deposit_with_little_play_is_rapid_in_out() {
        let t = AmlThresholds::default();
        let out = withdrawal("po1", 90_000, 2 * HOUR);
        let mut f = facts(vec![deposit("p1", 100_000, 0), out.clone()], 2 * HOUR);
        f.withdrawal = Some(out);
        f.wagered_before_withdrawal_minor = 9_999;
        let alerts = detect(&t, &f);
        assert_eq!(scenarios(&alerts), [Scenario::RapidInOut]);
        assert_eq!(alerts[0].transactions, ["p1", "po1"]);
        f.wagered_before_withdrawal_minor = 10_000;
        assert!(detect(&t, &f).is_empty());
    }

    #[test]
    fn a_withdrawal_elsewhere_than_the_deposits_is_another_instrument() {
        let t = AmlThresholds::default();
        let mut out = withdrawal("po1", 1_000, 30 * HOUR);
        out.instrument = Some("NL91ABNA0417164300".into());
        let mut f = facts(vec![deposit("p1", 5_000, 0)], 30 * HOUR);
        f.withdrawal = Some(out.clone());
        assert_eq!(scenarios(&detect(&t, &f)), [Scenario::OtherInstrument]);
        f.deposit_instruments = vec!["NL91ABNA0417164300".into()];
        assert!(detect(&t, &f).is_empty());
        out.account = "other-psp".into();
        f.withdrawal = Some(out);
        assert_eq!(scenarios(&detect(&t, &f)), [Scenario::OtherInstrument]);
    }

    #[test]
    fn an_instrument_of_two_players_is_shared() {
        let t = AmlThresholds::default();
        let mut f = facts(vec![], 0);
        f.instrument_players = vec![("card_a".into(), 1), ("card_b".into(), 2)];
        let alerts = detect(&t, &f);
        assert_eq!(scenarios(&alerts), [Scenario::SharedInstrument]);
        assert_eq!(alerts[0].key, "shared_instrument:card_b");
    }
}
