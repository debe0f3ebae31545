//! The small closed sets the ledger speaks in, with their stored names (declared with
//! `stored_names!`, which also gives them serde).

stored_names! {
    /// What an account is for; decides its floor.
    AccountKind {
        /// A player's spendable money.
        PlayerCash => "player_cash",
        /// A player's money reserved for a withdrawal in flight.
        PlayerHold => "player_hold",
        /// Money a provider owes us or we owe it, per provider and currency.
        ProviderClearing => "provider_clearing",
        /// Fees charged by a provider.
        ProviderFees => "provider_fees",
        /// Chargebacks the player's balance could not cover.
        ChargebackLosses => "chargeback_losses",
        /// The operator's side of every bet and win.
        OperatorRevenue => "operator_revenue",
        /// Money that arrived from outside a known flow, awaiting reconciliation.
        Suspense => "suspense",
    }
}

stored_names! {
    /// Whether an account's balance may go below zero.
    Floor {
        /// Never below zero (player money).
        NonNegative => "non_negative",
        /// Any balance (the house's and providers' side).
        Unbounded => "unbounded",
    }
}

stored_names! {
    /// Which ledger command produced an entry.
    Operation {
        /// One-phase transfer.
        Transfer => "transfer",
        /// First phase of a two-phase transfer.
        Reserve => "reserve",
        /// Completion of a reservation.
        Post => "post",
        /// Cancellation of a reservation.
        Void => "void",
        /// Undoing of a one-phase transfer.
        Reverse => "reverse",
    }
}

stored_names! {
    /// What became of an entry.
    EntryStatus {
        /// The money moved.
        Posted => "posted",
        /// Refused for lack of funds; nothing moved.
        Rejected => "rejected",
        /// A posted transfer later undone by a reversal.
        Reversed => "reversed",
        /// A reservation whose money sits in the hold.
        Pending => "pending",
        /// A reservation completed by a post.
        PendingPosted => "pending_posted",
        /// A reservation cancelled by a void.
        PendingVoided => "pending_voided",
        /// An id cancelled by a reversal before it was seen; refuses the late original.
        Tombstone => "tombstone",
        /// A reversal whose original was never seen; nothing moved.
        OriginalNotFound => "original_not_found",
        /// A reversal with nothing left to undo; nothing moved.
        NoEffect => "no_effect",
        /// Refused by a rule outside the ledger (a responsible-gambling limit, named by the
        /// entry's `refusal`); nothing moved.
        LimitRefused => "limit_refused",
    }
}

impl AccountKind {
    /// Player money can never go below zero; everything else may.
    pub fn floor(self) -> Floor {
        match self {
            AccountKind::PlayerCash | AccountKind::PlayerHold => Floor::NonNegative,
            _ => Floor::Unbounded,
        }
    }
}
