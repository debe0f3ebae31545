//! The payout (withdrawal) state machine, a pure function like the payment's: an event that
//! does not fit the current status is recorded and ignored, never applied.
//!
//! Money follows the status: the amount is held when the payout is requested, posted to the
//! provider when it is `paid`, and released back to the player when it ends `rejected`,
//! `failed` or `cancelled`. [`PayoutStatus::releases_hold`] and [`PayoutStatus::posts_hold`]
//! say which, so callers cannot disagree with the machine.

use std::fmt;

/// Where a payout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayoutStatus {
    /// Accepted; the amount is held.
    Requested,
    /// Waiting for a person in the review queue.
    InReview,
    /// Cleared to send.
    Approved,
    /// Waiting because no provider can take it now.
    Deferred,
    /// Sent to a provider; the outcome comes by webhook.
    Processing,
    /// The money reached the player.
    Paid,
    /// Refused by review or risk; the hold is released.
    Rejected,
    /// The provider could not pay; the hold is released.
    Failed,
    /// Withdrawn by the player before it was sent; the hold is released.
    Cancelled,
}

/// Something that happened to a payout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayoutEvent {
    /// Checks asked for a person to look.
    SendToReview,
    /// Checks or a reviewer cleared it.
    Approve,
    /// Checks or a reviewer refused it.
    Reject,
    /// No provider can take it now, or sending failed in a way worth retrying.
    Defer,
    /// It is being handed to a provider (committed before the call, so that a cancel can no
    /// longer race the provider paying it).
    Sent,
    /// The provider paid it.
    Paid,
    /// The provider failed it.
    Failed,
    /// The player withdrew it.
    Cancel,
}

/// What to do with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayoutTransition {
    /// Move to the new status.
    Apply(PayoutStatus),
    /// Record the event and change nothing.
    Ignore,
}

impl PayoutStatus {
    /// Every status.
    pub const ALL: [PayoutStatus; 9] = [
        PayoutStatus::Requested,
        PayoutStatus::InReview,
        PayoutStatus::Approved,
        PayoutStatus::Deferred,
        PayoutStatus::Processing,
        PayoutStatus::Paid,
        PayoutStatus::Rejected,
        PayoutStatus::Failed,
        PayoutStatus::Cancelled,
    ];

    /// The name stored and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::Requested => "requested",
            PayoutStatus::InReview => "in_review",
            PayoutStatus::Approved => "approved",
            PayoutStatus::Deferred => "deferred",
            PayoutStatus::Processing => "processing",
            PayoutStatus::Paid => "paid",
            PayoutStatus::Rejected => "rejected",
            PayoutStatus::Failed => "failed",
            PayoutStatus::Cancelled => "cancelled",
        }
    }

    /// The status stored under `text`.
    pub fn parse(text: &str) -> Option<PayoutStatus> {
        PayoutStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether nothing can happen to the payout any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PayoutStatus::Paid
                | PayoutStatus::Rejected
                | PayoutStatus::Failed
                | PayoutStatus::Cancelled
        )
    }

    /// Whether reaching this status sends the held amount to the provider.
    pub fn posts_hold(self) -> bool {
        self == PayoutStatus::Paid
    }

    /// Whether reaching this status gives the held amount back to the player.
    pub fn releases_hold(self) -> bool {
        matches!(
            self,
            PayoutStatus::Rejected | PayoutStatus::Failed | PayoutStatus::Cancelled
        )
    }

    /// Whether the payout has not gone to a provider yet (so a player may still cancel it).
    pub fn is_unsent(self) -> bool {
        matches!(
            self,
            PayoutStatus::Requested
                | PayoutStatus::InReview
                | PayoutStatus::Approved
                | PayoutStatus::Deferred
        )
    }
}

impl fmt::Display for PayoutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transition an event causes from `current`.
pub fn next(current: PayoutStatus, event: PayoutEvent) -> PayoutTransition {
    use PayoutEvent as E;
    use PayoutStatus as S;
    let to = match (current, event) {
        (S::Requested, E::SendToReview) => S::InReview,
        (S::Requested | S::InReview, E::Approve) => S::Approved,
        (S::Requested | S::InReview, E::Reject) => S::Rejected,
        (S::Approved | S::Deferred | S::Processing, E::Defer) => S::Deferred,
        (S::Approved | S::Deferred, E::Sent) => S::Processing,
        // A send that timed out may still have reached the provider: its word is final even
        // while the payout waits for a retry.
        (S::Processing | S::Deferred, E::Paid) => S::Paid,
        (S::Processing | S::Deferred, E::Failed) => S::Failed,
        (s, E::Cancel) if s.is_unsent() => S::Cancelled,
        _ => return PayoutTransition::Ignore,
    };
    PayoutTransition::Apply(to)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn event() -> impl Strategy<Value = PayoutEvent> {
        prop_oneof![
            Just(PayoutEvent::SendToReview),
            Just(PayoutEvent::Approve),
            Just(PayoutEvent::Reject),
            Just(PayoutEvent::Defer),
            Just(PayoutEvent::Sent),
            Just(PayoutEvent::Paid),
            Just(PayoutEvent::Failed),
            Just(PayoutEvent::Cancel),
        ]
    }

    #[test]
    fn review_then_pay_and_a_late_failure_changes_nothing() {
        let mut status = PayoutStatus::Requested;
        for event in [
            PayoutEvent::SendToReview,
            PayoutEvent::Approve,
            PayoutEvent::Defer,
            PayoutEvent::Sent,
            PayoutEvent::Paid,
        ] {
            match next(status, event) {
                PayoutTransition::Apply(to) => status = to,
                PayoutTransition::Ignore => panic!("{event:?} from {status} must apply"),
            }
        }
        assert_eq!(status, PayoutStatus::Paid);
        assert_eq!(next(status, PayoutEvent::Failed), PayoutTransition::Ignore);
        assert_eq!(
            next(PayoutStatus::Processing, PayoutEvent::Cancel),
            PayoutTransition::Ignore,
            "sent payouts cannot be cancelled"
        );
    }

    #[test]
    fn names_round_trip() {
        for status in PayoutStatus::ALL {
            assert_eq!(PayoutStatus::parse(status.as_str()), Some(status));
        }
    }

    proptest! {
        /// However events arrive, the hold is settled exactly once: it is either posted or
        /// released, never both and never twice, and a final status never changes.
        #[test]
        fn the_hold_is_settled_at_most_once(events in proptest::collection::vec(event(), 0..60)) {
            let mut status = PayoutStatus::Requested;
            let mut settlements = 0;
            for event in events {
                let before = status;
                if let PayoutTransition::Apply(to) = next(status, event) {
                    status = to;
                }
                if before.is_final() {
                    prop_assert_eq!(status, before);
                }
                if status != before && (status.posts_hold() || status.releases_hold()) {
                    settlements += 1;
                }
            }
            prop_assert!(settlements <= 1);
            prop_assert!(!(status.posts_hold() && status.releases_hold()));
        }
    }
}
