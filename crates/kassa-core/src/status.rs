//! The statuses of players, refunds and disputes, under the names stored and sent today.
//!
//! The payment and payout state machines have their own modules; these are the smaller sets
//! that were strings checked against lists in the API and the services.

stored_names! {
    /// How far a player's identity check (KYC) has got; only `verified` may withdraw.
    KycStatus {
        /// Never started.
        None => "none",
        /// Documents submitted, not yet decided.
        Pending => "pending",
        /// Identity confirmed.
        Verified => "verified",
        /// Identity check failed.
        Rejected => "rejected",
    }
}

stored_names! {
    /// A player's account standing for responsible gambling.
    AccountStatus {
        /// Plays and withdraws normally.
        Active => "active",
        /// Excluded themselves from play; may still withdraw their money.
        SelfExcluded => "self_excluded",
        /// Suspended by the operator; may not withdraw.
        Blocked => "blocked",
    }
}

stored_names! {
    /// Where a refund stands; its amount is held from the player while `pending`.
    RefundStatus {
        /// Held and sent to the provider; waiting for its answer.
        Pending => "pending",
        /// The provider refunded it; the hold was posted.
        Succeeded => "succeeded",
        /// The provider refused it; the hold was released.
        Failed => "failed",
    }
}

stored_names! {
    /// Where a dispute stands, named as the payment's history records its events.
    DisputeStatus {
        /// The card holder disputed the payment and the money was taken back.
        Open => "chargeback",
        /// Decided for the merchant: the chargeback was reversed.
        Won => "dispute_won",
        /// Decided for the card holder: the chargeback stands.
        Lost => "dispute_lost",
    }
}

impl KycStatus {
    /// Whether the player may withdraw as far as identity goes.
    pub fn allows_withdrawal(self) -> bool {
        self == KycStatus::Verified
    }
}

impl AccountStatus {
    /// Whether the player may withdraw as far as their standing goes (self-excluded players
    /// may take their money out).
    pub fn allows_withdrawal(self) -> bool {
        self != AccountStatus::Blocked
    }
}

impl RefundStatus {
    /// Whether the refund's amount is still held from the player.
    pub fn holds_money(self) -> bool {
        self == RefundStatus::Pending
    }
}

impl DisputeStatus {
    /// Whether the chargeback's money is away from the merchant.
    pub fn money_taken_back(self) -> bool {
        self != DisputeStatus::Won
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings stored today (the CHECK constraints of the players and refunds tables,
    /// the API's lists, the history's event names) must keep parsing to the same values.
    #[test]
    fn stored_strings_round_trip() {
        let stored = [
            ("none", KycStatus::None),
            ("pending", KycStatus::Pending),
            ("verified", KycStatus::Verified),
            ("rejected", KycStatus::Rejected),
        ];
        for (text, status) in stored {
            assert_eq!(KycStatus::parse(text), Some(status));
            assert_eq!(status.as_str(), text);
        }
        assert_eq!(KycStatus::ALL.len(), stored.len());
        for (text, status) in [
            ("active", AccountStatus::Active),
            ("self_excluded", AccountStatus::SelfExcluded),
            ("blocked", AccountStatus::Blocked),
        ] {
            assert_eq!(AccountStatus::parse(text), Some(status));
            assert_eq!(status.to_string(), text);
        }
        for (text, status) in [
            ("pending", RefundStatus::Pending),
            ("succeeded", RefundStatus::Succeeded),
            ("failed", RefundStatus::Failed),
        ] {
            assert_eq!(RefundStatus::parse(text), Some(status));
            assert_eq!(status.as_str(), text);
        }
        for (text, status) in [
            ("chargeback", DisputeStatus::Open),
            ("dispute_won", DisputeStatus::Won),
            ("dispute_lost", DisputeStatus::Lost),
        ] {
            assert_eq!(DisputeStatus::parse(text), Some(status));
        }
        assert_eq!(KycStatus::parse("Verified"), None);
        assert_eq!(AccountStatus::parse(""), None);
    }

    #[test]
    fn withdrawal_rules_follow_the_statuses() {
        let may_withdraw: Vec<_> = KycStatus::ALL
            .iter()
            .filter(|s| s.allows_withdrawal())
            .collect();
        assert_eq!(may_withdraw, [&KycStatus::Verified]);
        assert!(AccountStatus::SelfExcluded.allows_withdrawal());
        assert!(!AccountStatus::Blocked.allows_withdrawal());
        assert!(RefundStatus::Pending.holds_money());
        assert!(!RefundStatus::Failed.holds_money());
        assert!(!DisputeStatus::Won.money_taken_back());
        assert!(DisputeStatus::Lost.money_taken_back());
    }

    #[test]
    fn statuses_travel_as_their_stored_names() {
        assert_eq!(
            serde_json::to_string(&AccountStatus::SelfExcluded).unwrap(),
            "\"self_excluded\""
        );
        let kyc: KycStatus = serde_json::from_str("\"pending\"").unwrap();
        assert_eq!(kyc, KycStatus::Pending);
        let refused = serde_json::from_str::<KycStatus>("\"approved\"").unwrap_err();
        assert!(refused.to_string().contains("verified"), "{refused}");
    }
}
