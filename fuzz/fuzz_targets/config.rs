//! The config file an operator hands Kassa: any text is parsed (over the embedded defaults)
//! and validated, or refused with an error, never a panic; whatever is accepted yields the
//! amount limits and key-hash settings the server starts with.
#![no_main]

use kassa_server::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::from_file_text(text) {
        config
            .limits
            .amount_limits()
            .expect("a validated config has valid limits");
        let _ = config.check_key_hash_secret_fits_database();
        let _ = config.auth.effective_key_hash_secret();
    }
});
