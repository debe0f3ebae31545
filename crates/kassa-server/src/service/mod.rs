//! Use cases behind the API. Each one that moves money runs in one database transaction.

pub mod payments;
pub mod payouts;
pub mod players;
pub mod wallet;
