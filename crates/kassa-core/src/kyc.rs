//! KYC levels, their statuses and the small state machine between them, and the CDD
//! threshold (the €2,000 "single or linked" rule) as a pure function over deposits.
//!
//! A player has one status per level. `basic` is identity plus an identity document;
//! `enhanced` adds source of funds (the GB "step-up" and the MGA's risk-based checks at the
//! CDD threshold, ../shared/research/risk-aml-recon.md §2). An enhanced verification covers
//! the basic one: the enhanced check verifies the identity too.

use crate::status::KycStatus;

stored_names! {
    /// How deep an identity check goes.
    KycLevel {
        /// Identity and an identity document.
        Basic => "basic",
        /// Basic plus source of funds (enhanced due diligence).
        Enhanced => "enhanced",
    }
}

stored_names! {
    /// Where one level of a player's verification stands.
    LevelStatus {
        /// No check was ever asked for.
        NotStarted => "not_started",
        /// A check is open at the ID provider: the player has a page to fill in.
        Pending => "pending",
        /// The provider approved it.
        Verified => "verified",
        /// The provider refused it for good (a forged or expired document).
        Rejected => "rejected",
        /// The provider asks the player to submit again (a blurred photo, a wrong number).
        ResubmissionRequested => "resubmission_requested",
    }
}

stored_names! {
    /// Why a check was asked for.
    CheckReason {
        /// The player's first withdrawal met an unverified identity.
        FirstWithdrawal => "first_withdrawal",
        /// The risk decision answered `step_up`.
        RiskStepUp => "risk_step_up",
        /// The player's deposits reached the jurisdiction's CDD threshold.
        CddThreshold => "cdd_threshold",
        /// The operator asked for it (`POST /v1/players/{id}/kyc`).
        Operator => "operator",
    }
}

stored_names! {
    /// What the ID provider decided about one check.
    VerificationResult {
        /// Identity (and, at `enhanced`, source of funds) confirmed.
        Approved => "approved",
        /// Refused for good.
        Rejected => "rejected",
        /// The player must submit again.
        ResubmissionRequested => "resubmission_requested",
    }
}

/// What happens to one level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LevelEvent {
    /// A check is opened at the provider, for `reason`.
    Started(CheckReason),
    /// The provider's result for the open check arrived.
    Completed(VerificationResult),
}

/// The level's status after `event`, or `None` when the event does not fit (recorded and
/// ignored, never applied). A check opens from any status but `pending` (one open check per
/// level) and `verified`; a rejected level is opened again only by the operator, so that a
/// refused player cannot retry by asking for a withdrawal. A result applies only to a
/// pending level: a late or repeated result changes nothing.
pub fn next(status: LevelStatus, event: LevelEvent) -> Option<LevelStatus> {
    use LevelStatus::*;
    match (status, event) {
        (NotStarted | ResubmissionRequested, LevelEvent::Started(_)) => Some(Pending),
        (Rejected, LevelEvent::Started(CheckReason::Operator)) => Some(Pending),
        (Pending, LevelEvent::Completed(result)) => Some(match result {
            VerificationResult::Approved => Verified,
            VerificationResult::Rejected => Rejected,
            VerificationResult::ResubmissionRequested => ResubmissionRequested,
        }),
        _ => None,
    }
}

impl LevelStatus {
    /// Whether a check for `reason` may open now ([`next`] allows `Started`).
    pub fn may_start(self, reason: CheckReason) -> bool {
        next(self, LevelEvent::Started(reason)).is_some()
    }
}

/// A player's status at every level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlayerKyc {
    /// Identity and document.
    pub basic: LevelStatus,
    /// Basic plus source of funds.
    pub enhanced: LevelStatus,
}

impl Default for PlayerKyc {
    fn default() -> PlayerKyc {
        PlayerKyc {
            basic: LevelStatus::NotStarted,
            enhanced: LevelStatus::NotStarted,
        }
    }
}

impl PlayerKyc {
    /// The status of `level`.
    pub fn level(&self, level: KycLevel) -> LevelStatus {
        match level {
            KycLevel::Basic => self.basic,
            KycLevel::Enhanced => self.enhanced,
        }
    }

    /// The statuses after `level`'s check ended with `result`: an approved enhanced check
    /// verifies the basic level too (it checked the identity and the document as well).
    /// `None` when the result does not fit `level`'s status.
    pub fn complete(&self, level: KycLevel, result: VerificationResult) -> Option<PlayerKyc> {
        let status = next(self.level(level), LevelEvent::Completed(result))?;
        let mut after = *self;
        match level {
            KycLevel::Basic => after.basic = status,
            KycLevel::Enhanced => {
                after.enhanced = status;
                if status == LevelStatus::Verified {
                    after.basic = LevelStatus::Verified;
                }
            }
        }
        Some(after)
    }

    /// The player's one `kyc_status` as stored and sent before levels existed: the basic
    /// level's (a resubmission is still under way: `pending`).
    pub fn kyc_status(&self) -> KycStatus {
        match self.basic {
            LevelStatus::NotStarted => KycStatus::None,
            LevelStatus::Pending | LevelStatus::ResubmissionRequested => KycStatus::Pending,
            LevelStatus::Verified => KycStatus::Verified,
            LevelStatus::Rejected => KycStatus::Rejected,
        }
    }
}

/// A jurisdiction's CDD threshold: deposits of `threshold_minor` or more, in one or linked
/// within `window_ms` (`None`: over the whole relationship), call for customer due
/// diligence; until it is done the player's withdrawals are locked (UKGC, MGA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CddThreshold {
    /// The amount, in the player's currency's minor units.
    pub threshold_minor: i64,
    /// How far apart linked deposits may be: 24 h in GB, a rolling 180 days in MT.
    pub window_ms: Option<i64>,
}

impl CddThreshold {
    /// Whether the deposits (time in ms, amount in minor units; any order) ever reached the
    /// threshold: one deposit at or over it, or deposits within one window summing to it.
    pub fn reached(&self, deposits: &[(i64, i64)]) -> bool {
        let mut sorted = deposits.to_vec();
        sorted.sort_unstable();
        let mut window_sum: i128 = 0;
        let mut first = 0;
        for (index, &(at_ms, amount_minor)) in sorted.iter().enumerate() {
            window_sum += i128::from(amount_minor);
            if let Some(window_ms) = self.window_ms {
                // Linked: within `window_ms` of the newest deposit of the window.
                while sorted[first].0 < at_ms.saturating_sub(window_ms) {
                    window_sum -= i128::from(sorted[first].1);
                    first += 1;
                }
            }
            debug_assert!(first <= index);
            if window_sum >= i128::from(self.threshold_minor) {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn the_stored_names_are_the_documented_ones() {
        let names: Vec<_> = LevelStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "not_started",
                "pending",
                "verified",
                "rejected",
                "resubmission_requested"
            ]
        );
        assert_eq!(KycLevel::parse("enhanced"), Some(KycLevel::Enhanced));
        assert_eq!(
            CheckReason::parse("cdd_threshold"),
            Some(CheckReason::CddThreshold)
        );
    }

    #[test]
    fn one_open_check_per_level_and_a_result_only_for_an_open_one() {
        use LevelStatus::*;
        let start = LevelEvent::Started(CheckReason::FirstWithdrawal);
        assert_eq!(next(NotStarted, start), Some(Pending));
        assert_eq!(next(Pending, start), None);
        assert_eq!(next(Verified, start), None);
        assert_eq!(next(ResubmissionRequested, start), Some(Pending));
        let approved = LevelEvent::Completed(VerificationResult::Approved);
        assert_eq!(next(Pending, approved), Some(Verified));
        assert_eq!(next(NotStarted, approved), None);
        assert_eq!(next(Rejected, approved), None);
    }

    #[test]
    fn a_rejected_level_opens_again_only_for_the_operator() {
        assert!(!LevelStatus::Rejected.may_start(CheckReason::FirstWithdrawal));
        assert!(!LevelStatus::Rejected.may_start(CheckReason::RiskStepUp));
        assert!(LevelStatus::Rejected.may_start(CheckReason::Operator));
    }

    #[test]
    fn an_approved_enhanced_check_verifies_basic_too() {
        let open = PlayerKyc {
            basic: LevelStatus::NotStarted,
            enhanced: LevelStatus::Pending,
        };
        let after = open
            .complete(KycLevel::Enhanced, VerificationResult::Approved)
            .unwrap();
        assert_eq!(after.basic, LevelStatus::Verified);
        assert_eq!(after.kyc_status(), KycStatus::Verified);
        let refused = open
            .complete(KycLevel::Enhanced, VerificationResult::Rejected)
            .unwrap();
        assert_eq!(refused.basic, LevelStatus::NotStarted);
        assert_eq!(refused.kyc_status(), KycStatus::None);
    }

    #[test]
    fn gb_links_deposits_within_24_hours_only() {
        let gb = CddThreshold {
            threshold_minor: 200_000,
            window_ms: Some(24 * HOUR_MS),
        };
        assert!(gb.reached(&[(0, 200_000)]));
        assert!(gb.reached(&[(0, 100_000), (23 * HOUR_MS, 100_000)]));
        assert!(!gb.reached(&[(0, 100_000), (25 * HOUR_MS, 100_000)]));
        assert!(!gb.reached(&[(0, 199_999)]));
        let whole = CddThreshold {
            window_ms: None,
            ..gb
        };
        assert!(whole.reached(&[(0, 100_000), (9_000 * HOUR_MS, 100_000)]));
    }

    fn status() -> impl Strategy<Value = LevelStatus> {
        prop::sample::select(LevelStatus::ALL.to_vec())
    }

    fn event() -> impl Strategy<Value = LevelEvent> {
        prop_oneof![
            prop::sample::select(CheckReason::ALL.to_vec()).prop_map(LevelEvent::Started),
            prop::sample::select(VerificationResult::ALL.to_vec()).prop_map(LevelEvent::Completed),
        ]
    }

    proptest! {
        /// Whatever arrives in whatever order: `verified` is reached only from `pending` by
        /// an approval and is never left; nothing goes back to `not_started`; a result never
        /// applies twice to one check.
        #[test]
        fn no_sequence_of_events_breaks_the_level(
            start in status(),
            events in prop::collection::vec(event(), 0..40),
        ) {
            let mut current = start;
            for event in events {
                let Some(after) = next(current, event) else { continue };
                prop_assert!(current != LevelStatus::Verified);
                prop_assert!(after != LevelStatus::NotStarted);
                if after == LevelStatus::Verified {
                    prop_assert_eq!(current, LevelStatus::Pending);
                    prop_assert_eq!(event, LevelEvent::Completed(VerificationResult::Approved));
                }
                if let LevelEvent::Completed(_) = event {
                    prop_assert_eq!(current, LevelStatus::Pending);
                    prop_assert!(next(after, event).is_none());
                }
                current = after;
            }
        }

        /// The sliding window agrees with looking at every pair of deposits.
        #[test]
        fn the_threshold_matches_a_brute_force_count(
            deposits in prop::collection::vec((0i64..1_000, 1i64..1_000), 0..30),
            window in prop::option::of(0i64..300),
            threshold in 1i64..5_000,
        ) {
            let rule = CddThreshold { threshold_minor: threshold, window_ms: window };
            let brute = deposits.iter().any(|&(end, _)| {
                let sum: i64 = deposits
                    .iter()
                    .filter(|&&(at, _)| at <= end && window.is_none_or(|w| at >= end - w))
                    .map(|&(_, amount)| amount)
                    .sum();
                sum >= threshold
            });
            prop_assert_eq!(rule.reached(&deposits), brute);
        }
    }
}
