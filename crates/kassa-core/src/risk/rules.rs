//! A rule set as stored and edited: ordered rules, each a condition over named features and
//! a score, and the thresholds the summed score is compared with. Validated before it is
//! stored; the error names the place of the problem (`rules[3].when.all[1].gt.feature`).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::features::{kind_of, FeatureKind};
use crate::routing::DocumentError;

/// At most this many rules in one set: the bench measures 200, and a set is evaluated on
/// every deposit.
pub const RULES_MAX: usize = 1_000;
/// Conditions nest at most this deep.
pub const DEPTH_MAX: usize = 8;
/// An `all`/`any` list or an `in` list holds at most this many items.
pub const LIST_MAX: usize = 200;

/// Ordered rules and their thresholds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Whether a `step_up` decision refuses a deposit (403 `kyc_step_up_required`). Off: the
    /// deposit goes ahead, flagged; a payout is always refused on `step_up`.
    #[serde(default)]
    pub step_up_refuses_deposits: bool,
}

/// One rule: when its condition holds, its score is added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique in the set: lowercase letters, digits, `_` and `-`, at most 64.
    pub id: String,
    /// For the staff reading a decision (at most 500 characters).
    #[serde(default)]
    pub description: String,
    pub when: Condition,
    /// Added to the decision's score when the rule fires; negative lowers the risk.
    pub score: i32,
}

/// The summed score at which each outcome starts; the strictest outcome reached wins, so on
/// equal thresholds the stricter one is taken (`step_up == decline`: never a step-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub review: i64,
    pub step_up: i64,
    pub decline: i64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            review: 50,
            step_up: 80,
            decline: 100,
        }
    }
}

/// A condition over the features.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The number feature is greater than the value.
    Gt(Compare),
    Gte(Compare),
    Lt(Compare),
    Lte(Compare),
    Eq(Compare),
    /// The text feature is one of the values.
    In(Membership),
    /// The text feature is none of the values.
    NotIn(Membership),
    /// The flag feature is true.
    Flag(String),
    /// Every condition holds.
    All(Vec<Condition>),
    /// At least one condition holds.
    Any(Vec<Condition>),
    /// The condition does not hold.
    Not(Box<Condition>),
}

/// A number feature compared with a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    pub feature: String,
    pub value: i64,
}

/// A text feature looked up in a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub feature: String,
    pub values: Vec<String>,
}

fn refuse<T>(place: impl Into<String>, problem: impl Into<String>) -> Result<T, DocumentError> {
    Err(DocumentError {
        place: place.into(),
        problem: problem.into(),
    })
}

impl RuleSet {
    /// The set, checked: ids unique and well-formed, every feature known and read by a
    /// condition of its kind, lists bounded, thresholds ordered.
    pub fn validate(self) -> Result<RuleSet, DocumentError> {
        if self.rules.len() > RULES_MAX {
            return refuse("rules", format!("at most {RULES_MAX} rules"));
        }
        let mut ids = HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let place = format!("rules[{i}]");
            rule.validate(&place)?;
            if !ids.insert(rule.id.as_str()) {
                return refuse(
                    format!("{place}.id"),
                    format!("{:?} is used twice", rule.id),
                );
            }
        }
        self.thresholds.validate()?;
        Ok(self)
    }
}

impl Rule {
    fn validate(&self, place: &str) -> Result<(), DocumentError> {
        let id_ok = (1..=64).contains(&self.id.len())
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !id_ok {
            return refuse(
                format!("{place}.id"),
                "1 to 64 lowercase letters, digits, '_' or '-'",
            );
        }
        if self.description.chars().count() > 500 {
            return refuse(format!("{place}.description"), "at most 500 characters");
        }
        self.when.validate(&format!("{place}.when"), 1)
    }
}

impl Thresholds {
    fn validate(&self) -> Result<(), DocumentError> {
        if self.review < 1 {
            return refuse("thresholds.review", "at least 1: a score of 0 approves");
        }
        if self.step_up < self.review {
            return refuse("thresholds.step_up", "at least thresholds.review");
        }
        if self.decline < self.step_up {
            return refuse("thresholds.decline", "at least thresholds.step_up");
        }
        Ok(())
    }
}

impl Condition {
    /// The condition's name as written in the document.
    pub fn name(&self) -> &'static str {
        match self {
            Condition::Gt(_) => "gt",
            Condition::Gte(_) => "gte",
            Condition::Lt(_) => "lt",
            Condition::Lte(_) => "lte",
            Condition::Eq(_) => "eq",
            Condition::In(_) => "in",
            Condition::NotIn(_) => "not_in",
            Condition::Flag(_) => "flag",
            Condition::All(_) => "all",
            Condition::Any(_) => "any",
            Condition::Not(_) => "not",
        }
    }

    fn validate(&self, place: &str, depth: usize) -> Result<(), DocumentError> {
        let here = format!("{place}.{}", self.name());
        if depth > DEPTH_MAX {
            return refuse(here, format!("conditions nest at most {DEPTH_MAX} deep"));
        }
        match self {
            Condition::Gt(c)
            | Condition::Gte(c)
            | Condition::Lt(c)
            | Condition::Lte(c)
            | Condition::Eq(c) => check_feature(&here, &c.feature, FeatureKind::Number),
            Condition::In(m) | Condition::NotIn(m) => {
                check_feature(&here, &m.feature, FeatureKind::Text)?;
                if m.values.is_empty() || m.values.len() > LIST_MAX {
                    return refuse(format!("{here}.values"), format!("1 to {LIST_MAX} values"));
                }
                Ok(())
            }
            Condition::Flag(feature) => check_feature(&here, feature, FeatureKind::Flag),
            Condition::All(list) | Condition::Any(list) => {
                if list.is_empty() || list.len() > LIST_MAX {
                    return refuse(here, format!("1 to {LIST_MAX} conditions"));
                }
                for (i, condition) in list.iter().enumerate() {
                    condition.validate(&format!("{here}[{i}]"), depth + 1)?;
                }
                Ok(())
            }
            Condition::Not(inner) => inner.validate(&here, depth + 1),
        }
    }
}

fn check_feature(place: &str, feature: &str, wanted: FeatureKind) -> Result<(), DocumentError> {
    let place = format!("{place}.feature");
    match kind_of(feature) {
        None => refuse(place, format!("no feature {feature:?}")),
        Some(kind) if kind != wanted => refuse(
            place,
            format!("{feature:?} is a {kind:?} feature, not a {wanted:?} one"),
        ),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> RuleSet {
        serde_json::from_str(json).expect("parses")
    }

    #[test]
    fn a_problem_deep_in_a_condition_is_named_by_its_place() {
        let set = parse(
            r#"{"rules": [
                {"id": "a", "when": {"flag": "first_deposit"}, "score": 10},
                {"id": "b", "when": {"all": [{"flag": "ip_vpn"}, {"gt": {"feature": "ip_vpn", "value": 1}}]}, "score": 5}
            ]}"#,
        );
        let error = set.validate().unwrap_err();
        assert_eq!(error.place, "rules[1].when.all[1].gt.feature");
        assert!(error.problem.contains("Flag"), "{}", error.problem);
    }

    #[test]
    fn unknown_features_twice_used_ids_and_unordered_thresholds_are_refused() {
        let unknown =
            parse(r#"{"rules": [{"id": "a", "when": {"flag": "card_vpn"}, "score": 1}]}"#);
        assert_eq!(
            unknown.validate().unwrap_err().place,
            "rules[0].when.flag.feature"
        );
        let twice = parse(
            r#"{"rules": [{"id": "a", "when": {"flag": "ip_tor"}, "score": 1},
                          {"id": "a", "when": {"flag": "ip_vpn"}, "score": 1}]}"#,
        );
        assert_eq!(twice.validate().unwrap_err().place, "rules[1].id");
        let unordered = parse(r#"{"thresholds": {"review": 50, "step_up": 40, "decline": 100}}"#);
        assert_eq!(
            unordered.validate().unwrap_err().place,
            "thresholds.step_up"
        );
        let empty_in = parse(
            r#"{"rules": [{"id": "a", "when": {"not": {"in": {"feature": "country", "values": []}}}, "score": 1}]}"#,
        );
        assert_eq!(
            empty_in.validate().unwrap_err().place,
            "rules[0].when.not.in.values"
        );
    }
}
