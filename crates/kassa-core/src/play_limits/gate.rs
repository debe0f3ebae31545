//! The play limits at the ledger boundary: a batch of wallet calls applied through the
//! ledger with each limited player's bets checked first and every call that moved money
//! counted, in the batch's order, so a bet sees the calls decided before it.

use std::collections::{BTreeSet, HashMap};

use super::PlayState;
use crate::ledger::{AccountId, Command, Entry, EntryStatus, LedgerView, Outcome, Request};
use crate::movements::EntryLabel;

/// What a batch decides with: its time and the session break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlayRules {
    /// The batch's time, ms since the epoch.
    pub now_ms: i64,
    /// The pause in play that ends a session.
    pub session_break_ms: i64,
}

/// A wallet call as the limits see it.
enum PlayCall {
    /// A stake from the player's cash.
    Bet { cash: AccountId, amount_minor: i64 },
    /// A win to the player's cash (an enrolled deposit names its payment and is no win).
    Win { cash: AccountId, amount_minor: i64 },
    /// A rollback of the posted bet `bet_txn_id` of `amount_minor`.
    Rollback {
        cash: AccountId,
        bet_txn_id: String,
        amount_minor: i64,
    },
    /// Anything else: not play.
    Other,
}

/// The limited players' states a batch touches, checked and counted as the batch is applied.
#[derive(Debug)]
pub struct PlayGate {
    rules: PlayRules,
    states: HashMap<AccountId, PlayState>,
    bet_times: HashMap<String, i64>,
    changed: BTreeSet<AccountId>,
}

impl PlayGate {
    /// A gate over the states of the batch's limited players, by cash account.
    pub fn new(rules: PlayRules, states: impl IntoIterator<Item = (AccountId, PlayState)>) -> Self {
        PlayGate {
            rules,
            states: states.into_iter().collect(),
            bet_times: HashMap::new(),
            changed: BTreeSet::new(),
        }
    }

    /// Whether no player of the batch has a play limit: the batch is applied as it is.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The txn ids of the stored bets of limited players that `requests` roll back: the
    /// caller passes their posting times to [`with_bet_times`](Self::with_bet_times), so that
    /// each stake leaves the bucket it was counted in.
    pub fn rolled_back_bets<'r>(&self, view: &LedgerView, requests: &'r [Request]) -> Vec<&'r str> {
        requests
            .iter()
            .filter_map(|request| match &request.command {
                Command::Reverse {
                    original_txn_id, ..
                } => Some(original_txn_id.as_str()),
                _ => None,
            })
            .filter(|original| {
                view.entry(original)
                    .and_then(posted_bet_cash)
                    .is_some_and(|cash| self.states.contains_key(&cash))
            })
            .collect()
    }

    /// When the bets named by [`rolled_back_bets`](Self::rolled_back_bets) were posted.
    pub fn with_bet_times(&mut self, times: impl IntoIterator<Item = (String, i64)>) {
        self.bet_times.extend(times);
    }

    /// Applies `request` through `view`: a limited player's bet that the balance covers but
    /// a limit does not is recorded as refused ([`LedgerView::refuse`]); a call of a limited
    /// player that moved money is counted. A replay is answered as the ledger answers it.
    pub fn apply(&mut self, view: &mut LedgerView, request: &Request) -> Outcome {
        if self.states.is_empty() || view.entry(&request.txn_id).is_some() {
            return view.apply(request);
        }
        let rules = self.rules;
        let call = play_call(view, request);
        let cash = match &call {
            PlayCall::Bet { cash, .. }
            | PlayCall::Win { cash, .. }
            | PlayCall::Rollback { cash, .. } => *cash,
            PlayCall::Other => return view.apply(request),
        };
        let Some(state) = self.states.get_mut(&cash) else {
            return view.apply(request);
        };
        if let PlayCall::Bet { amount_minor, .. } = call {
            // A bet the balance does not cover is the ledger's to refuse (insufficient funds).
            let covered = view
                .account(cash)
                .is_some_and(|a| a.balance_minor >= amount_minor);
            if let (true, Err(exceeded)) = (covered, state.check_bet(amount_minor, rules)) {
                return view.refuse(request, exceeded.encode());
            }
        }
        let outcome = view.apply(request);
        let moved = matches!(&outcome, Outcome::Recorded(e) if e.status == EntryStatus::Posted);
        if !moved {
            return outcome;
        }
        match call {
            PlayCall::Bet { amount_minor, .. } => state.count_bet(amount_minor, rules),
            PlayCall::Win { amount_minor, .. } => state.count_win(amount_minor, rules),
            PlayCall::Rollback {
                bet_txn_id,
                amount_minor,
                ..
            } => {
                // A bet posted earlier in this batch is not stored yet: it was posted now.
                let bet_at_ms = self
                    .bet_times
                    .get(&bet_txn_id)
                    .copied()
                    .unwrap_or(rules.now_ms);
                state.count_rollback(amount_minor, bet_at_ms, rules);
            }
            PlayCall::Other => {}
        }
        self.changed.insert(cash);
        outcome
    }

    /// The states the batch changed, by cash account, to store with its postings.
    pub fn into_changes(mut self) -> Vec<(AccountId, PlayState)> {
        self.changed
            .iter()
            .filter_map(|cash| self.states.remove(cash).map(|state| (*cash, state)))
            .collect()
    }
}

/// What `request` is as play, read from its label and command (and, for a rollback, from
/// the bet it names as the view holds it).
fn play_call(view: &LedgerView, request: &Request) -> PlayCall {
    match (EntryLabel::parse(&request.label), &request.command) {
        (
            Some(EntryLabel::Debit),
            Command::Transfer {
                debit,
                amount_minor,
                ..
            },
        ) => PlayCall::Bet {
            cash: *debit,
            amount_minor: *amount_minor,
        },
        (
            Some(EntryLabel::Credit),
            Command::Transfer {
                credit,
                amount_minor,
                ..
            },
        ) if request.meta.reference.is_none() => PlayCall::Win {
            cash: *credit,
            amount_minor: *amount_minor,
        },
        (
            Some(EntryLabel::Rollback),
            Command::Reverse {
                original_txn_id, ..
            },
        ) => match view.entry(original_txn_id) {
            Some(bet) => match posted_bet_cash(bet) {
                Some(cash) => PlayCall::Rollback {
                    cash,
                    bet_txn_id: bet.txn_id.clone(),
                    amount_minor: bet.amount_minor,
                },
                None => PlayCall::Other,
            },
            None => PlayCall::Other,
        },
        _ => PlayCall::Other,
    }
}

/// The cash account a posted (not yet rolled back) bet took its stake from.
fn posted_bet_cash(entry: &Entry) -> Option<AccountId> {
    let is_bet = entry.entry_label() == Some(EntryLabel::Debit);
    (is_bet && entry.status == EntryStatus::Posted)
        .then_some(entry.debit_account)
        .flatten()
}
