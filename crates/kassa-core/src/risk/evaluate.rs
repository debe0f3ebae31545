//! The decision: every rule whose condition holds adds its score; the sum is compared with
//! the thresholds. A rule reading a missing feature does not fire (a condition over a
//! missing feature is neither true nor false, and so is `not` of it), and the decision names
//! the missing features, so "approved" never hides "could not tell".

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::features::{FeatureValue, Features};
use super::rules::{Condition, RuleSet, Thresholds};

/// What a decision allows, from the mildest to the strictest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskOutcome {
    Approve,
    /// Goes ahead only after staff looked (a payout), or goes ahead flagged (a deposit).
    Review,
    /// The player must verify their identity further (KYC step-up) first.
    StepUp,
    Decline,
}

impl RiskOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskOutcome::Approve => "approve",
            RiskOutcome::Review => "review",
            RiskOutcome::StepUp => "step_up",
            RiskOutcome::Decline => "decline",
        }
    }

    /// The outcome a summed score reaches: the strictest whose threshold it meets.
    pub fn of_score(score: i64, thresholds: &Thresholds) -> RiskOutcome {
        if score >= thresholds.decline {
            RiskOutcome::Decline
        } else if score >= thresholds.step_up {
            RiskOutcome::StepUp
        } else if score >= thresholds.review {
            RiskOutcome::Review
        } else {
            RiskOutcome::Approve
        }
    }
}

/// One rule that fired, and what it read: the explanation of its score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fired {
    pub rule: String,
    pub description: String,
    pub score: i32,
    /// The features the rule's condition read, with their values.
    pub read: BTreeMap<String, FeatureValue>,
}

/// A decision and its explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: RiskOutcome,
    /// The sum of the fired rules' scores.
    pub score: i64,
    /// The fired rules, in the set's order.
    pub fired: Vec<Fired>,
    /// Features some rule read but the gathering did not have; those rules did not fire.
    pub missing_features: Vec<String>,
    /// The thresholds the score was compared with.
    pub thresholds: Thresholds,
    /// The rule set's stored version; `None` for the built-in or configured default.
    pub rules_version: Option<i64>,
}

/// Decides on `features` under `set` (stored as `version`).
pub fn evaluate(set: &RuleSet, version: Option<i64>, features: &Features) -> Decision {
    let mut fired = Vec::new();
    let mut missing = BTreeSet::new();
    let mut score: i64 = 0;
    for rule in &set.rules {
        let mut read = Reads {
            features,
            read: BTreeMap::new(),
            missing: &mut missing,
        };
        if read.holds(&rule.when) == Some(true) {
            score += i64::from(rule.score);
            fired.push(Fired {
                rule: rule.id.clone(),
                description: rule.description.clone(),
                score: rule.score,
                read: read.read,
            });
        }
    }
    Decision {
        outcome: RiskOutcome::of_score(score, &set.thresholds),
        score,
        fired,
        missing_features: missing.into_iter().collect(),
        thresholds: set.thresholds,
        rules_version: version,
    }
}

/// One rule's evaluation: the features it read and the ones it found missing.
struct Reads<'a> {
    features: &'a Features,
    read: BTreeMap<String, FeatureValue>,
    missing: &'a mut BTreeSet<String>,
}

impl Reads<'_> {
    fn value(&mut self, name: &str) -> Option<&FeatureValue> {
        match self.features.get(name) {
            Some(value) => {
                self.read.insert(name.to_string(), value.clone());
                Some(value)
            }
            None => {
                self.missing.insert(name.to_string());
                None
            }
        }
    }

    fn number(&mut self, name: &str) -> Option<i64> {
        match self.value(name)? {
            FeatureValue::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// `Some(true)`/`Some(false)`, or `None` when a feature it needs is missing.
    fn holds(&mut self, condition: &Condition) -> Option<bool> {
        match condition {
            Condition::Gt(c) => self.number(&c.feature).map(|n| n > c.value),
            Condition::Gte(c) => self.number(&c.feature).map(|n| n >= c.value),
            Condition::Lt(c) => self.number(&c.feature).map(|n| n < c.value),
            Condition::Lte(c) => self.number(&c.feature).map(|n| n <= c.value),
            Condition::Eq(c) => self.number(&c.feature).map(|n| n == c.value),
            Condition::In(m) => self.member(&m.feature, &m.values),
            Condition::NotIn(m) => self.member(&m.feature, &m.values).map(|found| !found),
            Condition::Flag(name) => match self.value(name)? {
                FeatureValue::Flag(flag) => Some(*flag),
                _ => None,
            },
            Condition::All(list) => {
                let truths: Vec<Option<bool>> = list.iter().map(|c| self.holds(c)).collect();
                if truths.contains(&Some(false)) {
                    Some(false)
                } else if truths.contains(&None) {
                    None
                } else {
                    Some(true)
                }
            }
            Condition::Any(list) => {
                let truths: Vec<Option<bool>> = list.iter().map(|c| self.holds(c)).collect();
                if truths.contains(&Some(true)) {
                    Some(true)
                } else if truths.contains(&None) {
                    None
                } else {
                    Some(false)
                }
            }
            Condition::Not(inner) => self.holds(inner).map(|truth| !truth),
        }
    }

    fn member(&mut self, name: &str, values: &[String]) -> Option<bool> {
        match self.value(name)? {
            FeatureValue::Text(text) => Some(values.iter().any(|v| v == text)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::risk::rules::{Compare, Rule};

    fn rule(id: &str, when: Condition, score: i32) -> Rule {
        Rule {
            id: id.into(),
            description: String::new(),
            when,
            score,
        }
    }

    fn gt(feature: &str, value: i64) -> Condition {
        Condition::Gt(Compare {
            feature: feature.into(),
            value,
        })
    }

    fn features(pairs: &[(&str, FeatureValue)]) -> Features {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn fired_rules_explain_the_score_and_missing_features_are_named() {
        let set = RuleSet {
            rules: vec![
                rule("burst", gt("player_attempts_10m", 3), 60),
                rule("vpn", Condition::Flag("ip_vpn".into()), 30),
                rule(
                    "not_tor",
                    Condition::Not(Box::new(Condition::Flag("ip_tor".into()))),
                    5,
                ),
            ],
            ..RuleSet::default()
        };
        let seen = features(&[
            ("player_attempts_10m", FeatureValue::Number(4)),
            ("ip_vpn", FeatureValue::Flag(true)),
        ]);
        let decision = evaluate(&set, Some(7), &seen);
        assert_eq!(decision.outcome, RiskOutcome::StepUp);
        assert_eq!(decision.score, 90);
        let fired: Vec<&str> = decision.fired.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(fired, ["burst", "vpn"]);
        assert_eq!(
            decision.fired[0].read.get("player_attempts_10m"),
            Some(&FeatureValue::Number(4))
        );
        // `not` of a missing feature does not fire either.
        assert_eq!(decision.missing_features, ["ip_tor"]);
        assert_eq!(decision.rules_version, Some(7));
    }

    #[test]
    fn on_equal_thresholds_the_stricter_outcome_wins() {
        let thresholds = Thresholds {
            review: 10,
            step_up: 20,
            decline: 20,
        };
        assert_eq!(RiskOutcome::of_score(9, &thresholds), RiskOutcome::Approve);
        assert_eq!(RiskOutcome::of_score(19, &thresholds), RiskOutcome::Review);
        assert_eq!(RiskOutcome::of_score(20, &thresholds), RiskOutcome::Decline);
    }

    #[test]
    fn any_with_one_true_branch_fires_even_when_another_is_missing() {
        let set = RuleSet {
            rules: vec![rule(
                "either",
                Condition::Any(vec![gt("ip_players_30d", 2), gt("device_players_30d", 2)]),
                50,
            )],
            ..RuleSet::default()
        };
        let seen = features(&[("ip_players_30d", FeatureValue::Number(3))]);
        assert_eq!(evaluate(&set, None, &seen).score, 50);
        let unknown = features(&[("ip_players_30d", FeatureValue::Number(1))]);
        assert_eq!(evaluate(&set, None, &unknown).fired.len(), 0);
    }

    fn arb_condition() -> impl Strategy<Value = Condition> {
        let leaf = prop_oneof![
            (0i64..10).prop_map(|v| gt("player_attempts_1h", v)),
            (0i64..10).prop_map(|v| gt("ip_players_30d", v)),
            Just(Condition::Flag("ip_vpn".into())),
            Just(Condition::Flag("first_deposit".into())),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..3).prop_map(Condition::All),
                prop::collection::vec(inner.clone(), 1..3).prop_map(Condition::Any),
                inner.prop_map(|c| Condition::Not(Box::new(c))),
            ]
        })
    }

    fn arb_features() -> impl Strategy<Value = Features> {
        (
            prop::option::of(0i64..10),
            prop::option::of(0i64..10),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(attempts, players, vpn, first)| {
                let mut f = Features::new();
                if let Some(n) = attempts {
                    f.insert("player_attempts_1h".into(), FeatureValue::Number(n));
                }
                if let Some(n) = players {
                    f.insert("ip_players_30d".into(), FeatureValue::Number(n));
                }
                if let Some(b) = vpn {
                    f.insert("ip_vpn".into(), FeatureValue::Flag(b));
                }
                if let Some(b) = first {
                    f.insert("first_deposit".into(), FeatureValue::Flag(b));
                }
                f
            })
    }

    fn arb_set() -> impl Strategy<Value = RuleSet> {
        (
            prop::collection::vec((arb_condition(), -50i32..100), 0..8),
            1i64..100,
            0i64..100,
            0i64..100,
        )
            .prop_map(|(rules, review, step, decline)| RuleSet {
                rules: rules
                    .into_iter()
                    .enumerate()
                    .map(|(i, (when, score))| rule(&format!("r{i}"), when, score))
                    .collect(),
                thresholds: Thresholds {
                    review,
                    step_up: review + step,
                    decline: review + step + decline,
                },
                step_up_refuses_deposits: false,
            })
    }

    proptest! {
        #[test]
        fn adding_a_rule_with_a_positive_score_never_lowers_the_outcome(
            set in arb_set(), seen in arb_features(), when in arb_condition(), score in 1i32..100,
        ) {
            let before = evaluate(&set, None, &seen);
            let mut more = set.clone();
            more.rules.push(rule("added", when, score));
            let after = evaluate(&more, None, &seen);
            prop_assert!(after.outcome >= before.outcome);
            prop_assert!(after.score >= before.score);
        }

        #[test]
        fn the_decision_is_deterministic_and_its_score_is_the_sum_of_fired_rules(
            set in arb_set(), seen in arb_features(),
        ) {
            let once = evaluate(&set, Some(1), &seen);
            prop_assert_eq!(&once, &evaluate(&set, Some(1), &seen));
            let sum: i64 = once.fired.iter().map(|f| i64::from(f.score)).sum();
            prop_assert_eq!(once.score, sum);
            prop_assert_eq!(once.outcome, RiskOutcome::of_score(sum, &set.thresholds));
            let valid = set.clone().validate();
            prop_assert!(valid.is_ok(), "{:?}", valid);
        }
    }
}
