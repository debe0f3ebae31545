//! Simulators of the payment providers Kassa talks to. Each speaks its provider's real wire
//! format, so a connector tested against a simulator is tested against the protocol.
//!
//! Today: [`psp`], a REST PSP with a hosted card page, 3-D Secure 2 (frictionless and
//! challenge), signed requests and signed webhooks; [`stripe`], Stripe's PaymentIntents API
//! with a hosted 3-D Secure page and `Stripe-Signature` webhooks; and [`iso8583`], an acquirer host speaking
//! ISO 8583 over TCP with test-card rules, reversals and completions; and [`threeds`], a
//! 3-D Secure 2 Directory Server and ACS for Kassa's own 3DS Server. They run in-process
//! (tests, `kassa demo`) or as their own process (`kassa sim psp`, `kassa sim stripe`, `kassa sim iso8583`).

pub mod adyen;
mod html;
pub mod idv;
pub mod iso8583;
pub mod psp;
pub mod register;
pub mod serving;
pub mod stripe;
pub mod threeds;

pub use psp::{run, start, SandboxHandle, SandboxPspConfig};
