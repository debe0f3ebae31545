//! A player's email address (issue 19 item 2): parsed at the edge, stored normalised, and
//! compared through a key that sees through the tricks that make one mailbox look like many
//! (`+tags`, and dots in Gmail's local parts). It is personal data: `Debug` masks it, so a
//! record holding one can be logged.

use std::fmt;

/// The longest address accepted (RFC 5321's path limit less the angle brackets).
pub const EMAIL_LEN_MAX: usize = 254;
/// The longest local part (RFC 5321).
const LOCAL_LEN_MAX: usize = 64;

/// Domains whose mailboxes ignore dots in the local part.
const DOTLESS_DOMAINS: [&str; 2] = ["gmail.com", "googlemail.com"];

/// Why an email address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("must be an address like \"name@example.com\" of at most 254 characters")]
    Malformed,
}

/// A normalised email address: trimmed and lowercased.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses `raw`: one `@`, a local part of 1 to 64 characters, a domain with a dot and
    /// no empty label, no whitespace or control characters; lowercased.
    pub fn parse(raw: &str) -> Result<EmailAddress, EmailError> {
        let text = raw.trim().to_lowercase();
        if text.len() > EMAIL_LEN_MAX
            || text
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ','))
        {
            return Err(EmailError::Malformed);
        }
        let (local, domain) = text.split_once('@').ok_or(EmailError::Malformed)?;
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && domain.split('.').all(|label| !label.is_empty());
        if local.is_empty() || local.len() > LOCAL_LEN_MAX || !domain_ok {
            return Err(EmailError::Malformed);
        }
        Ok(EmailAddress(text))
    }

    /// A stored address, trusted as normalised when it was stored.
    pub fn from_stored(text: String) -> EmailAddress {
        EmailAddress(text)
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key two addresses of one mailbox share: the local part without a `+tag`, and
    /// without dots at the domains that ignore them.
    pub fn match_key(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or((&self.0, ""));
        let local = local.split('+').next().unwrap_or(local);
        let local = if DOTLESS_DOMAINS.contains(&domain) {
            local.replace('.', "")
        } else {
            local.to_string()
        };
        format!("{local}@{domain}")
    }

    /// The address with all of the local part but its first character hidden.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or((&self.0, ""));
        let first = local.chars().next().unwrap_or('*');
        format!("{first}***@{domain}")
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_and_bad_ones_refused() {
        let email = EmailAddress::parse("  Jane.Doe+Casino@GMail.com ").unwrap();
        assert_eq!(email.as_str(), "jane.doe+casino@gmail.com");
        assert_eq!(email.match_key(), "janedoe@gmail.com");
        let other = EmailAddress::parse("jane.doe+x@example.org").unwrap();
        assert_eq!(other.match_key(), "jane.doe@example.org");
        for bad in [
            "",
            "jane",
            "@example.com",
            "jane@",
            "jane@localhost",
            "jane@exa..mple.com",
            "ja ne@example.com",
            "a@b@example.com",
            "<jane@example.com>",
        ] {
            assert_eq!(
                EmailAddress::parse(bad),
                Err(EmailError::Malformed),
                "{bad}"
            );
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(EmailAddress::parse(&long).is_err());
    }

    #[test]
    fn debug_masks_the_address() {
        let email = EmailAddress::parse("jane@example.com").unwrap();
        assert_eq!(format!("{email:?}"), "EmailAddress(j***@example.com)");
    }
}
