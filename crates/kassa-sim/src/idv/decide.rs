//! The sandbox's test data: what the player types decides the review's result.
//!
//! | input | result | reason |
//! |---|---|---|
//! | document number starting `EXP` | `rejected` | `document_expired` |
//! | document number starting `BLUR` | `resubmission_requested` | `document_unreadable` |
//! | last name `Fraud` | `rejected` | `identity_mismatch` |
//! | enhanced, source of funds `unexplained` | `rejected` | `source_of_funds_unverified` |
//! | anything else | `approved` | |

use serde::Serialize;

/// What the player submitted on the page.
#[derive(Clone, Debug, Default)]
pub struct Submission {
    pub first_name: String,
    pub last_name: String,
    pub birth_date: String,
    pub document_number: String,
    /// The country that issued the document (ISO 3166-1 alpha-2), as the reviewer reads it
    /// off the document; `None` when the form did not say.
    pub document_country: Option<String>,
    /// The "upload": a file name stands in for the image.
    pub document_file: String,
    /// Enhanced only.
    pub source_of_funds: Option<String>,
}

/// One document check, as the webhook carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub document: &'static str,
    pub check: &'static str,
    /// `clear` or `consider`.
    pub result: &'static str,
    pub detail: Option<String>,
}

/// The review's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// `approved`, `rejected` or `resubmission_requested`.
    pub review_result: &'static str,
    pub reason: Option<&'static str>,
    pub checks: Vec<Check>,
}

fn check(document: &'static str, check: &'static str, clear: bool) -> Check {
    Check {
        document,
        check,
        result: if clear { "clear" } else { "consider" },
        detail: None,
    }
}

/// Reviews a submission at `level` (`basic` or `enhanced`).
pub fn decide(level: &str, submission: &Submission) -> Decision {
    let number = submission.document_number.to_ascii_uppercase();
    let expired = number.starts_with("EXP");
    let blurred = number.starts_with("BLUR");
    let mismatch = submission.last_name.trim().eq_ignore_ascii_case("fraud");
    let mut checks = vec![
        check("identity_document", "expiry", !expired),
        check("identity_document", "image_quality", !blurred),
        check("identity_document", "data_consistency", !mismatch),
    ];
    if expired {
        checks[0].detail = Some("the document's expiry date has passed".into());
    }
    let mut funds_unexplained = false;
    if level == "enhanced" {
        let funds = submission.source_of_funds.as_deref().unwrap_or_default();
        funds_unexplained = funds == "unexplained";
        checks.push(check("source_of_funds", "declaration", !funds_unexplained));
    }
    let (review_result, reason) = if expired {
        ("rejected", Some("document_expired"))
    } else if mismatch {
        ("rejected", Some("identity_mismatch"))
    } else if funds_unexplained {
        ("rejected", Some("source_of_funds_unverified"))
    } else if blurred {
        ("resubmission_requested", Some("document_unreadable"))
    } else {
        ("approved", None)
    };
    Decision {
        review_result,
        reason,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission(last_name: &str, number: &str) -> Submission {
        Submission {
            first_name: "Ada".into(),
            last_name: last_name.into(),
            birth_date: "1990-01-01".into(),
            document_number: number.into(),
            document_country: Some("MT".into()),
            document_file: "passport.jpg".into(),
            source_of_funds: Some("salary".into()),
        }
    }

    #[test]
    fn the_test_data_decides() {
        assert_eq!(
            decide("basic", &submission("Lovelace", "P1234567")).review_result,
            "approved"
        );
        let expired = decide("basic", &submission("Lovelace", "EXP123"));
        assert_eq!(
            (expired.review_result, expired.reason),
            ("rejected", Some("document_expired"))
        );
        assert_eq!(expired.checks[0].result, "consider");
        assert_eq!(
            decide("basic", &submission("Lovelace", "blur1")).review_result,
            "resubmission_requested"
        );
        assert_eq!(
            decide("basic", &submission("Fraud", "P1")).reason,
            Some("identity_mismatch")
        );
        let enhanced = decide("enhanced", &submission("Lovelace", "P1"));
        assert_eq!(enhanced.checks.len(), 4);
        let mut unexplained = submission("Lovelace", "P1");
        unexplained.source_of_funds = Some("unexplained".into());
        assert_eq!(
            decide("enhanced", &unexplained).reason,
            Some("source_of_funds_unverified")
        );
    }
}
