//! Amount text from API callers and providers: any bytes, in any currency, are parsed or
//! refused, never panic; what is accepted is the canonical spelling, round-trips, and the
//! limits check agrees with the plain parser.
#![no_main]

use kassa_core::{AmountLimits, Currency, MoneyError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let currencies: Vec<Currency> = Currency::all().collect();
    let currency = currencies[usize::from(selector) % currencies.len()];
    let limits = AmountLimits::new(100_000_000_000, []).expect("valid limits");
    let parsed = currency.parse_minor(text);
    if let Ok(minor) = parsed {
        let formatted = currency.format_minor(minor);
        assert!(formatted.starts_with(text), "{text:?} accepted as {formatted}");
        let rest = &formatted[text.len()..];
        assert!(rest.trim_start_matches('.').bytes().all(|b| b == b'0'));
        assert_eq!(currency.parse_minor(&formatted), Ok(minor));
    }
    match (limits.parse_positive(currency, text), parsed) {
        (Ok(minor), Ok(plain)) => {
            assert_eq!(minor, plain);
            assert!(minor > 0 && minor <= limits.max_minor(currency));
        }
        (Ok(_), Err(error)) => panic!("limits accepted {text:?}, the parser refused: {error}"),
        (Err(MoneyError::TooLarge { .. }), Ok(plain)) => {
            assert!(plain > limits.max_minor(currency))
        }
        (Err(MoneyError::TooLarge { .. }), Err(MoneyError::Overflow(_))) => {}
        (Err(MoneyError::NotPositive), Ok(plain)) => assert!(plain <= 0),
        (Err(error), Err(plain_error)) => assert_eq!(error, plain_error),
        (Err(error), Ok(plain)) => panic!("{text:?}: limits said {error}, parser {plain}"),
    }
});
