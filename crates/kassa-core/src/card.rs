//! Card number checks shared by Kassa's card page, its connectors and its simulators.

/// Whether a string of ASCII digits passes the Luhn (mod 10) check.
pub fn luhn_valid(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                digit
            }
        })
        .sum();
    // Not `is_multiple_of`: it needs Rust 1.87 and the workspace supports 1.85.
    matches!(sum % 10, 0)
}
