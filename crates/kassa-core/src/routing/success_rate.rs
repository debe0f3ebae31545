//! The optional success-rate mode: among a route's accounts, the one whose recent deposits
//! for this method and country ended approved most often goes first, and any gain is
//! measured against a holdout rather than claimed.
//!
//! Every payment is drawn into one of three arms by a hash of its id (so a retry lands in the
//! same arm, and the arm is stored on the payment):
//! - `holdout` (`holdout_permille` of payments): the rules' order, untouched: the baseline;
//! - `explore` (`explore_permille`): the rules' accounts in an order drawn from the payment
//!   id, so accounts the mode would never pick keep being measured;
//! - `exploit` (the rest): accounts with at least `min_samples` finished deposits sorted by
//!   their approval rate, best first; accounts with fewer keep their places after them.
//!
//! The uplift is the exploit arm's approval rate minus the holdout's, over the same period,
//! reported with the samples behind it (`GET /v1/admin/routing/success-rate`). Health still
//! applies after the reordering: an open circuit is left out, a degraded account goes behind.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::document::DocumentError;

/// Default share of payments in the holdout, per mille: large enough that a 5-point uplift
/// on a few thousand deposits a day shows within a day, small enough to cost little.
pub const HOLDOUT_PERMILLE_DEFAULT: u32 = 100;
/// Default share of payments that explore, per mille.
pub const EXPLORE_PERMILLE_DEFAULT: u32 = 50;
/// Default fewest finished deposits an account needs before its rate reorders anything.
pub const MIN_SAMPLES_DEFAULT: u32 = 30;

/// The mode's settings, part of the routing document (`success_rate`); off unless enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuccessRateSettings {
    /// Whether the mode reorders anything; off, every payment follows the rules alone.
    pub enabled: bool,
    /// Share of payments routed by the rules alone, per mille.
    pub holdout_permille: u32,
    /// Share of payments routed in a drawn order, per mille.
    pub explore_permille: u32,
    /// Fewest finished deposits (per account, method and country, else per account and
    /// method) before an account's rate counts.
    pub min_samples: u32,
}

impl Default for SuccessRateSettings {
    fn default() -> SuccessRateSettings {
        SuccessRateSettings {
            enabled: false,
            holdout_permille: HOLDOUT_PERMILLE_DEFAULT,
            explore_permille: EXPLORE_PERMILLE_DEFAULT,
            min_samples: MIN_SAMPLES_DEFAULT,
        }
    }
}

impl SuccessRateSettings {
    /// Refuses shares that do not fit in a thousand and a zero sample floor.
    pub fn validate(&self) -> Result<(), DocumentError> {
        let refuse = |problem: &str| {
            Err(DocumentError {
                place: "success_rate".into(),
                problem: problem.into(),
            })
        };
        if self.holdout_permille.saturating_add(self.explore_permille) > 1_000 {
            return refuse("holdout_permille + explore_permille is at most 1000");
        }
        if self.min_samples == 0 {
            return refuse("min_samples is at least 1");
        }
        Ok(())
    }

    /// The arm of a payment whose draw (in `0..1000`) is `bucket`.
    pub fn arm(&self, bucket: u32) -> Arm {
        if bucket < self.holdout_permille {
            Arm::Holdout
        } else if bucket < self.holdout_permille.saturating_add(self.explore_permille) {
            Arm::Explore
        } else {
            Arm::Exploit
        }
    }
}

/// Which part of the experiment a payment is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// Routed by the rules alone.
    Holdout,
    /// Routed in a drawn order.
    Explore,
    /// Routed best measured rate first.
    Exploit,
}

impl Arm {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Holdout => "holdout",
            Arm::Explore => "explore",
            Arm::Exploit => "exploit",
        }
    }
}

/// Finished deposits and how many of them were approved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Deposits that reached a final status.
    pub finished: u32,
    /// Of those, approved (captured, refunded or disputed later: the player paid).
    pub approved: u32,
}

impl Tally {
    /// Approved per mille of finished; `None` with nothing finished.
    pub fn approval_permille(&self) -> Option<u32> {
        let permille = u64::from(self.approved) * 1_000 / u64::from(self.finished.max(1));
        (self.finished > 0).then_some(permille as u32)
    }

    fn add(&mut self, other: Tally) {
        self.finished = self.finished.saturating_add(other.finished);
        self.approved = self.approved.saturating_add(other.approved);
    }
}

/// Recent finished deposits per account, method and country (all nodes' traffic, read from
/// the database).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SuccessRates {
    by_country: BTreeMap<(String, String, String), Tally>,
    by_method: BTreeMap<(String, String), Tally>,
}

impl SuccessRates {
    /// Adds the tally of one account, method and country.
    pub fn add(&mut self, account: &str, method: &str, country: &str, tally: Tally) {
        self.by_country
            .entry((account.into(), method.into(), country.into()))
            .or_default()
            .add(tally);
        self.by_method
            .entry((account.into(), method.into()))
            .or_default()
            .add(tally);
    }

    /// The tally that counts for `account`: its method and country's when it has enough
    /// samples, else its method's in every country, else none.
    pub fn tally(
        &self,
        account: &str,
        method: &str,
        country: &str,
        min_samples: u32,
    ) -> Option<Tally> {
        let key = (account.to_string(), method.to_string(), country.to_string());
        let enough = |tally: &&Tally| tally.finished >= min_samples;
        if let Some(tally) = self.by_country.get(&key).filter(enough) {
            return Some(*tally);
        }
        let key = (account.to_string(), method.to_string());
        self.by_method.get(&key).filter(enough).copied()
    }
}

/// Orders `accounts` for `arm`, with a reason when the order changed.
pub fn reorder(
    accounts: Vec<String>,
    arm: Arm,
    settings: &SuccessRateSettings,
    rates: &SuccessRates,
    (method, country): (&str, &str),
    draw: impl Fn(&str) -> u32,
) -> (Vec<String>, Option<String>) {
    let before = accounts.clone();
    let ordered = match arm {
        Arm::Holdout => accounts,
        Arm::Explore => {
            let mut drawn = accounts;
            // Stable: equal draws keep the rules' order.
            drawn.sort_by_key(|account| draw(account));
            drawn
        }
        Arm::Exploit => {
            let permille = |account: &String| {
                rates
                    .tally(account, method, country, settings.min_samples)
                    .and_then(|t| t.approval_permille())
            };
            let (mut measured, unmeasured): (Vec<_>, Vec<_>) =
                accounts.into_iter().partition(|a| permille(a).is_some());
            // Stable: equal rates keep the rules' order.
            measured.sort_by_key(|account| std::cmp::Reverse(permille(account)));
            measured.extend(unmeasured);
            measured
        }
    };
    let reason = (ordered != before).then(|| {
        let rated: Vec<String> = ordered
            .iter()
            .map(
                |account| match rates.tally(account, method, country, settings.min_samples) {
                    Some(t) => format!(
                        "{account} ({}‰ of {})",
                        t.approval_permille().unwrap_or(0),
                        t.finished
                    ),
                    None => format!("{account} (too few samples)"),
                },
            )
            .collect();
        format!("success rate ({}): {}", arm.as_str(), rated.join(", "))
    });
    (ordered, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SuccessRateSettings {
        SuccessRateSettings {
            enabled: true,
            holdout_permille: 100,
            explore_permille: 50,
            min_samples: 10,
        }
    }

    fn rates() -> SuccessRates {
        let mut rates = SuccessRates::default();
        let tally = |finished, approved| Tally { finished, approved };
        rates.add("psp_a", "card", "DE", tally(100, 60));
        rates.add("psp_b", "card", "DE", tally(100, 90));
        rates.add("psp_c", "card", "DE", tally(5, 5)); // too few to count
        rates.add("psp_c", "card", "FR", tally(20, 19)); // counts for card in every country
        rates
    }

    fn accounts() -> Vec<String> {
        ["psp_a", "psp_b", "psp_c"].map(String::from).to_vec()
    }

    #[test]
    fn arms_split_the_thousand_in_order() {
        let s = settings();
        assert_eq!(s.arm(0), Arm::Holdout);
        assert_eq!(s.arm(99), Arm::Holdout);
        assert_eq!(s.arm(100), Arm::Explore);
        assert_eq!(s.arm(149), Arm::Explore);
        assert_eq!(s.arm(150), Arm::Exploit);
        assert_eq!(s.arm(999), Arm::Exploit);
        let shares = (0..1_000).fold([0; 3], |mut n, bucket| {
            n[s.arm(bucket) as usize] += 1;
            n
        });
        assert_eq!(shares, [100, 50, 850]);
    }

    #[test]
    fn exploit_puts_the_best_measured_rate_first_and_says_why() {
        let (ordered, reason) = reorder(
            accounts(),
            Arm::Exploit,
            &settings(),
            &rates(),
            ("card", "DE"),
            |_| 0,
        );
        // psp_c's DE figures are too few; its card figures in every country (5+20, 24 of
        // them approved, 960‰) count instead.
        assert_eq!(ordered, ["psp_c", "psp_b", "psp_a"]);
        let reason = reason.unwrap();
        assert!(reason.contains("psp_b (900‰ of 100)"), "{reason}");
        assert!(reason.starts_with("success rate (exploit)"), "{reason}");
    }

    #[test]
    fn accounts_without_enough_samples_keep_their_place_after_the_measured() {
        let mut rates = SuccessRates::default();
        rates.add(
            "psp_c",
            "card",
            "DE",
            Tally {
                finished: 50,
                approved: 10,
            },
        );
        let (ordered, _) = reorder(
            accounts(),
            Arm::Exploit,
            &settings(),
            &rates,
            ("card", "DE"),
            |_| 0,
        );
        assert_eq!(ordered, ["psp_c", "psp_a", "psp_b"]);
    }

    #[test]
    fn the_holdout_keeps_the_rules_order_and_explore_follows_the_draw() {
        let (held, reason) = reorder(
            accounts(),
            Arm::Holdout,
            &settings(),
            &rates(),
            ("card", "DE"),
            |_| 0,
        );
        assert_eq!(held, accounts());
        assert_eq!(reason, None);
        let draw = |account: &str| match account {
            "psp_a" => 7,
            "psp_b" => 3,
            _ => 5,
        };
        let (explored, _) = reorder(
            accounts(),
            Arm::Explore,
            &settings(),
            &rates(),
            ("card", "DE"),
            draw,
        );
        assert_eq!(explored, ["psp_b", "psp_c", "psp_a"]);
    }

    #[test]
    fn shares_beyond_a_thousand_are_refused() {
        let mut s = settings();
        s.holdout_permille = 990;
        assert_eq!(s.validate().unwrap_err().place, "success_rate");
        s.holdout_permille = 950;
        assert!(s.validate().is_ok());
        s.min_samples = 0;
        assert!(s.validate().is_err());
    }
}
