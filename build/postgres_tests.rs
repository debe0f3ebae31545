//! Build script shared by the crates whose tests run on PostgreSQL too (kassa-store,
//! kassa-server, kassa). libtest decides at compile time whether a test is ignored, so the
//! choice is made here: with `KASSA_TEST_POSTGRES_URL` set, the crate is compiled with
//! `--cfg kassa_postgres_tests` and the PostgreSQL tests run; without it, they carry
//! `#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]`
//! and `cargo test` lists them as ignored instead of letting them pass without running.
//! Setting or clearing the variable recompiles these crates once.

const POSTGRES_URL_VAR: &str = "KASSA_TEST_POSTGRES_URL";

fn main() {
    println!("cargo::rerun-if-env-changed={POSTGRES_URL_VAR}");
    println!("cargo::rustc-check-cfg=cfg(kassa_postgres_tests)");
    let configured = std::env::var(POSTGRES_URL_VAR).is_ok_and(|url| !url.is_empty());
    if configured {
        println!("cargo::rustc-cfg=kassa_postgres_tests");
    }
}
