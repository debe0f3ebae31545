//! Simulators of the payment providers Kassa talks to. Each speaks its provider's real wire
//! format, so a connector tested against a simulator is tested against the protocol.
//!
//! Today: [`psp`], a REST PSP with a hosted card page, 3-D Secure 2 (frictionless and
//! challenge), signed requests and signed webhooks. They run in-process (tests, `kassa demo`)
//! or as their own process (`kassa sim psp`).

pub mod psp;

pub use psp::{run, start, SandboxHandle, SandboxPspConfig};
