//! Kassa's pure domain: money, identifiers and the ledger's rules.
//!
//! Nothing in this crate performs I/O or is async; the storage and server crates load state,
//! call into these functions and persist what they return.

pub mod ids;
pub mod ledger;
pub mod money;
pub mod payment;
pub mod payout;

pub use money::{AmountLimits, Currency, Money, MoneyError};
