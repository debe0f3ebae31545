//! AML monitoring after money moved (issue 19 items 3–4, docs/aml.md): scenarios that read a
//! player's recent deposits and withdrawals and raise alerts, the case workflow the alerts
//! land in, and the goAML report a case is exported as. Pure: the server gathers the facts,
//! stores the alerts and cases, and serves the export.
//!
//! - [`settings`]: the thresholds, with per-jurisdiction overrides.
//! - [`scenarios`]: the facts of one player and the alerts they raise.
//! - [`case`]: the case workflow as a state machine.
//! - [`goaml`]: the goAML XML and plain-text summary of a case.

pub mod case;
pub mod goaml;
pub mod scenarios;
pub mod settings;

pub use case::{CaseStatus, CloseReason, IllegalTransition};
pub use scenarios::{detect, Alert, Direction, Facts, Movement, Scenario};
pub use settings::{AmlSettings, AmlThresholds};
