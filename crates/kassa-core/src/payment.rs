//! The payment (deposit) state machine: a pure function from the current status and an event
//! to the next status. An event that does not fit is recorded by the caller and ignored,
//! never applied: a late `declined` after `captured` changes nothing.

use std::fmt;

/// Where a payment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    /// Recorded; the provider has not been asked yet.
    Initiated,
    /// The provider took it; the player is on the provider's page.
    Pending,
    /// Funds reserved at the provider; not yet captured.
    Authorized,
    /// Money received: the player's balance was credited.
    Captured,
    /// Some of the captured amount was refunded.
    PartiallyRefunded,
    /// All of the captured amount was refunded.
    Refunded,
    /// The card holder disputed it and the money was taken back.
    ChargedBack,
    /// The provider or issuer refused it.
    Declined,
    /// It broke (provider error, no answer to the call).
    Failed,
    /// Cancelled before capture.
    Cancelled,
    /// Left pending until it timed out.
    Expired,
}

/// Something that happened to a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentEvent {
    /// The provider accepted the payment and gave a redirect.
    Sent,
    /// The provider authorized it.
    Authorized,
    /// The provider captured it.
    Captured,
    /// The provider or issuer declined it.
    Declined,
    /// It failed.
    Failed,
    /// It was cancelled.
    Cancelled,
    /// It stayed pending past its deadline.
    Expired,
    /// A refund completed; `full` when nothing captured is left unrefunded.
    Refunded { full: bool },
    /// A chargeback took the money back.
    Chargeback,
    /// A dispute was decided for the merchant: the chargeback is reversed.
    DisputeWon,
    /// A dispute was decided for the card holder: the chargeback stands.
    DisputeLost,
}

/// What to do with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Move to the new status (which may equal the current one, e.g. a second partial
    /// refund).
    Apply(PaymentStatus),
    /// Record the event and change nothing.
    Ignore,
}

impl PaymentStatus {
    /// Every status.
    pub const ALL: [PaymentStatus; 11] = [
        PaymentStatus::Initiated,
        PaymentStatus::Pending,
        PaymentStatus::Authorized,
        PaymentStatus::Captured,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
        PaymentStatus::ChargedBack,
        PaymentStatus::Declined,
        PaymentStatus::Failed,
        PaymentStatus::Cancelled,
        PaymentStatus::Expired,
    ];

    /// The name stored and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Initiated => "initiated",
            PaymentStatus::Pending => "pending",
            PaymentStatus::Authorized => "authorized",
            PaymentStatus::Captured => "captured",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::ChargedBack => "charged_back",
            PaymentStatus::Declined => "declined",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Cancelled => "cancelled",
            PaymentStatus::Expired => "expired",
        }
    }

    /// The status stored under `text`.
    pub fn parse(text: &str) -> Option<PaymentStatus> {
        PaymentStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the player's money has arrived (and so the balance was credited once).
    pub fn is_captured_family(self) -> bool {
        matches!(
            self,
            PaymentStatus::Captured
                | PaymentStatus::PartiallyRefunded
                | PaymentStatus::Refunded
                | PaymentStatus::ChargedBack
        )
    }

    /// Whether nothing can happen to the payment any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PaymentStatus::Declined
                | PaymentStatus::Failed
                | PaymentStatus::Cancelled
                | PaymentStatus::Expired
                | PaymentStatus::Refunded
        )
    }

    /// Whether the provider may still report a first outcome (status sync asks about these).
    pub fn awaits_outcome(self) -> bool {
        matches!(self, PaymentStatus::Pending | PaymentStatus::Authorized)
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transition an event causes from `current`.
pub fn next(current: PaymentStatus, event: PaymentEvent) -> Transition {
    use PaymentEvent as E;
    use PaymentStatus as S;
    let to = match (current, event) {
        (S::Initiated, E::Sent) => S::Pending,
        (S::Initiated, E::Failed) => S::Failed,
        (S::Initiated | S::Pending, E::Cancelled) => S::Cancelled,
        (S::Pending, E::Authorized) => S::Authorized,
        (S::Pending | S::Authorized, E::Captured) => S::Captured,
        (S::Pending, E::Declined) => S::Declined,
        (S::Pending | S::Authorized, E::Failed) => S::Failed,
        (S::Pending | S::Authorized, E::Expired) => S::Expired,
        // An authorization that is voided before capture.
        (S::Authorized, E::Cancelled) => S::Cancelled,
        (S::Captured | S::PartiallyRefunded, E::Refunded { full: false }) => S::PartiallyRefunded,
        (S::Captured | S::PartiallyRefunded, E::Refunded { full: true }) => S::Refunded,
        (S::Captured | S::PartiallyRefunded, E::Chargeback) => S::ChargedBack,
        (S::ChargedBack, E::DisputeWon) => S::Captured,
        (S::ChargedBack, E::DisputeLost) => S::ChargedBack,
        _ => return Transition::Ignore,
    };
    Transition::Apply(to)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn event() -> impl Strategy<Value = PaymentEvent> {
        prop_oneof![
            Just(PaymentEvent::Sent),
            Just(PaymentEvent::Authorized),
            Just(PaymentEvent::Captured),
            Just(PaymentEvent::Declined),
            Just(PaymentEvent::Failed),
            Just(PaymentEvent::Cancelled),
            Just(PaymentEvent::Expired),
            any::<bool>().prop_map(|full| PaymentEvent::Refunded { full }),
            Just(PaymentEvent::Chargeback),
            Just(PaymentEvent::DisputeWon),
            Just(PaymentEvent::DisputeLost),
        ]
    }

    #[test]
    fn the_happy_path_and_the_late_decline() {
        let mut status = PaymentStatus::Initiated;
        for event in [
            PaymentEvent::Sent,
            PaymentEvent::Authorized,
            PaymentEvent::Captured,
        ] {
            match next(status, event) {
                Transition::Apply(to) => status = to,
                Transition::Ignore => panic!("{event:?} from {status} must apply"),
            }
        }
        assert_eq!(status, PaymentStatus::Captured);
        assert_eq!(next(status, PaymentEvent::Declined), Transition::Ignore);
        assert_eq!(
            next(status, PaymentEvent::Captured),
            Transition::Ignore,
            "captured once"
        );
        assert_eq!(
            next(PaymentStatus::Pending, PaymentEvent::Captured),
            Transition::Apply(PaymentStatus::Captured)
        );
    }

    #[test]
    fn names_round_trip() {
        for status in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(PaymentStatus::parse("paid"), None);
    }

    proptest! {
        /// Whatever order and number of events arrive: money arrives (the captured family is
        /// entered from outside it) at most as often as a dispute is won plus one, final
        /// states stay final, and nothing leaves the captured family except nothing.
        #[test]
        fn random_event_streams_respect_the_rules(events in proptest::collection::vec(event(), 0..60)) {
            let mut status = PaymentStatus::Initiated;
            let mut captures = 0;
            let mut disputes_won = 0;
            for event in events {
                let before = status;
                if let Transition::Apply(to) = next(status, event) {
                    status = to;
                }
                if before.is_final() {
                    prop_assert_eq!(status, before, "a final status changed");
                }
                if before.is_captured_family() {
                    prop_assert!(status.is_captured_family(), "money left by a path other than refunds");
                }
                if !before.is_captured_family() && status.is_captured_family() {
                    captures += 1;
                }
                if before == PaymentStatus::ChargedBack && status == PaymentStatus::Captured {
                    disputes_won += 1;
                }
            }
            prop_assert!(captures <= 1, "captured twice");
            prop_assert!(disputes_won <= captures.max(disputes_won));
        }
    }
}
