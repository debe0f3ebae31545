//! The case workflow: `open → investigating → escalated → reported → closed(reason)`.
//! Pure: which move from which status is allowed. Staff move a case; the server records
//! every accepted move in the case's audit trail.

use serde::Serialize;

stored_names! {
    /// Where a case is.
    CaseStatus {
        /// Alerts arrived; nobody looks at it yet.
        Open => "open",
        /// Someone looks at it.
        Investigating => "investigating",
        /// Handed to the MLRO (money-laundering reporting officer).
        Escalated => "escalated",
        /// Reported to the FIU (an STR or SAR filed).
        Reported => "reported",
        /// Done, with a reason.
        Closed => "closed",
    }
}

stored_names! {
    /// Why a case was closed.
    CloseReason {
        /// Looked at; nothing suspicious.
        NoSuspicion => "no_suspicion",
        /// Reported to the FIU; nothing more to do here.
        Reported => "reported",
        /// The same matter as another case.
        Duplicate => "duplicate",
        /// The alerts were wrong (bad data, a test account).
        FalsePositive => "false_positive",
    }
}

/// Every allowed move: (from, to). The one table the workflow, its docs and its tests read.
pub const MOVES: &[(CaseStatus, CaseStatus)] = &[
    (CaseStatus::Open, CaseStatus::Investigating),
    (CaseStatus::Open, CaseStatus::Closed),
    (CaseStatus::Investigating, CaseStatus::Escalated),
    (CaseStatus::Investigating, CaseStatus::Reported),
    (CaseStatus::Investigating, CaseStatus::Closed),
    (CaseStatus::Escalated, CaseStatus::Investigating),
    (CaseStatus::Escalated, CaseStatus::Reported),
    (CaseStatus::Escalated, CaseStatus::Closed),
    (CaseStatus::Reported, CaseStatus::Closed),
];

/// A move the workflow refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum IllegalTransition {
    /// No such move from this status.
    #[error("a case cannot move from {from} to {to}")]
    NotAllowed { from: CaseStatus, to: CaseStatus },
    /// Closing needs a reason.
    #[error("closing a case needs a reason")]
    ReasonRequired,
    /// Only closing takes a reason.
    #[error("only closing a case takes a reason")]
    ReasonNotExpected,
}

impl CaseStatus {
    /// Whether alerts still join this case (it is not closed).
    pub fn is_open(self) -> bool {
        self != CaseStatus::Closed
    }

    /// The statuses this one may move to.
    pub fn next(self) -> impl Iterator<Item = CaseStatus> {
        MOVES
            .iter()
            .filter(move |(from, _)| *from == self)
            .map(|(_, to)| *to)
    }
}

/// The status after moving a case from `from` to `to`, closing with `reason`.
pub fn transition(
    from: CaseStatus,
    to: CaseStatus,
    reason: Option<CloseReason>,
) -> Result<CaseStatus, IllegalTransition> {
    if !from.next().any(|next| next == to) {
        return Err(IllegalTransition::NotAllowed { from, to });
    }
    match (to, reason) {
        (CaseStatus::Closed, None) => Err(IllegalTransition::ReasonRequired),
        (CaseStatus::Closed, Some(_)) => Ok(to),
        (_, Some(_)) => Err(IllegalTransition::ReasonNotExpected),
        (_, None) => Ok(to),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn status() -> impl Strategy<Value = CaseStatus> {
        proptest::sample::select(CaseStatus::ALL.to_vec())
    }

    fn reason() -> impl Strategy<Value = Option<CloseReason>> {
        proptest::option::of(proptest::sample::select(CloseReason::ALL.to_vec()))
    }

    /// The workflow written out by hand, independent of [`MOVES`]: the order of the issue.
    fn allowed_by_hand(from: CaseStatus, to: CaseStatus) -> bool {
        use CaseStatus::*;
        matches!(
            (from, to),
            (Open, Investigating | Closed)
                | (Investigating, Escalated | Reported | Closed)
                | (Escalated, Investigating | Reported | Closed)
                | (Reported, Closed)
        )
    }

    #[test]
    fn the_happy_path_reaches_closed_with_a_reason() {
        let mut status = CaseStatus::Open;
        for to in [
            CaseStatus::Investigating,
            CaseStatus::Escalated,
            CaseStatus::Reported,
        ] {
            status = transition(status, to, None).unwrap();
        }
        assert_eq!(
            transition(status, CaseStatus::Closed, None),
            Err(IllegalTransition::ReasonRequired)
        );
        let closed = transition(status, CaseStatus::Closed, Some(CloseReason::Reported));
        assert_eq!(closed, Ok(CaseStatus::Closed));
        assert_eq!(CaseStatus::Closed.next().count(), 0);
    }

    proptest! {
        /// No illegal move is accepted: whatever is asked, from whatever status, an accepted
        /// move is one of the workflow's, with a reason exactly when it closes; a closed
        /// case never moves again; `reported` is never reached without an investigation.
        #[test]
        fn no_illegal_transition_is_accepted(
            asked in proptest::collection::vec((status(), reason()), 0..40),
            start in status(),
        ) {
            let mut status = start;
            let mut investigated = start != CaseStatus::Open;
            for (to, reason) in asked {
                let before = status;
                match transition(before, to, reason) {
                    Ok(after) => {
                        prop_assert!(allowed_by_hand(before, after));
                        prop_assert_eq!(after, to);
                        prop_assert_eq!(reason.is_some(), after == CaseStatus::Closed);
                        prop_assert!(before != CaseStatus::Closed);
                        if after == CaseStatus::Reported {
                            prop_assert!(investigated);
                        }
                        investigated |= after == CaseStatus::Investigating;
                        status = after;
                    }
                    Err(_) => {
                        let legal = allowed_by_hand(before, to)
                            && reason.is_some() == (to == CaseStatus::Closed);
                        prop_assert!(!legal, "{before} → {to} with {reason:?} was refused");
                    }
                }
            }
        }
    }
}
