//! The risk decision before a deposit or payout starts (issue 19, ADR 62): a rule set as
//! data (ordered rules, each a condition over named features and a score), the summed score
//! compared with ordered thresholds, and an explanation of every decision. Pure: the server
//! gathers the features and stores the decisions.
//!
//! - [`features`]: the features a rule may read, with their kinds, and their values.
//! - [`rules`]: the rule set as stored, edited and validated.
//! - [`evaluate`]: the decision and its explanation.

pub mod evaluate;
pub mod features;
pub mod rules;

pub use evaluate::{evaluate, Decision, Fired, RiskOutcome};
pub use features::{FeatureKind, FeatureValue, Features};
pub use rules::{Condition, Rule, RuleSet, Thresholds};
