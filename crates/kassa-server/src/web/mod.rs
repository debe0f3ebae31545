//! Pages served to people by the same binary.

pub mod cashier;
