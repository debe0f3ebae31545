//! The router's decision: which provider accounts a deposit is offered to, in which order,
//! and why. A pure function of the request, the routing document (rules, switches, decline
//! classes, costs) and a health snapshot, so it is tested without I/O and measured by
//! `kassa bench` (ADR 47).
//!
//! - [`document`]: the routing document as stored, edited and validated.
//! - [`decide`]: first-match rules, pick strategies, fallbacks, switches and health.
//! - [`declines`]: which decline reasons may cascade to the next provider.
//! - [`breaker`]: the circuit breaker of one provider account.
//! - [`health`]: measured health of provider accounts from live traffic.
//! - [`success_rate`]: the optional success-rate mode with its holdout.

pub mod breaker;
pub mod decide;
pub mod declines;
pub mod document;
pub mod health;
pub mod success_rate;

pub use breaker::{BreakerSettings, CircuitBreaker, CircuitState, Permit};
pub use decide::{decide, Decision, NoRoute, RouteRequest, Split};
pub use declines::{DeclineClass, DeclineClasses};
pub use document::{
    Commission, Conditions, DegradationPlan, DocumentError, MaintenanceWindow, MethodSwitch, Pick,
    RoutingDocument, Rule, Switches, WeightedSplit,
};
pub use health::{AccountHealth, HealthSettings, HealthSnapshot, HealthTracker, Outcome};
pub use success_rate::{Arm, SuccessRateSettings, SuccessRates, Tally};
