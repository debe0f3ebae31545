//! Kassa's pure domain: money, identifiers and the ledger's rules.
//!
//! Nothing in this crate performs I/O or is async; the storage and server crates load state,
//! call into these functions and persist what they return. Where money moves:
//! [`movements`] builds every ledger request a payment, refund, chargeback, payout or wallet
//! call makes.

#[macro_use]
mod stored_names;

pub mod aml;
pub mod card;
pub mod email;
pub mod exclusion;
pub mod ids;
pub mod kyc;
pub mod ledger;
pub mod limits;
pub mod money;
pub mod movements;
pub mod payment;
pub mod payout;
pub mod play_limits;
pub mod register;
pub mod risk;
pub mod routing;
pub mod share;
pub mod status;

pub use money::{AmountLimits, Currency, Money, MoneyError};
