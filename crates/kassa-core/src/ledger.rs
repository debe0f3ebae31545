//! The double-entry ledger's rules, as a pure state machine over a loaded view.
//!
//! Storage loads the accounts and entries a batch of requests touches into a [`LedgerView`],
//! the view applies each request in order and answers with an [`Outcome`], and storage then
//! persists [`Effects`] in the same database transaction. Because deciding is pure, the same
//! code serves a single posting and a group commit of hundreds, and property tests can drive
//! it without a database.
//!
//! Every movement is a [`Transfer`] from one account to another of the same currency with a
//! positive amount, so each journal entry balances by construction and the sum of all balances
//! of a currency is always zero. Accounts with [`Floor::NonNegative`] (player cash and holds)
//! can never go below zero: a request that would take them there is recorded as rejected.

use std::collections::{BTreeSet, HashMap};

use crate::money::Currency;

mod kinds;
#[cfg(test)]
mod tests;

pub use kinds::{AccountKind, EntryStatus, Floor, Operation};

/// Database id of a ledger account.
pub type AccountId = i64;

/// An account's current state as the ledger needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Database id.
    pub id: AccountId,
    /// Every transfer on the account is in this currency.
    pub currency: Currency,
    /// Credits minus debits, in minor units.
    pub balance_minor: i64,
    /// Whether the balance may go below zero.
    pub floor: Floor,
}

/// What a request asks the ledger to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Move `amount_minor` from `debit` to `credit` at once.
    Transfer {
        debit: AccountId,
        credit: AccountId,
        amount_minor: i64,
    },
    /// First phase of a two-phase transfer: move the amount from `debit` into `hold` now;
    /// a later post sends it on to `credit`, a void returns it to `debit`.
    Reserve {
        debit: AccountId,
        hold: AccountId,
        credit: AccountId,
        amount_minor: i64,
    },
    /// Complete a reservation, sending `amount_minor` (all of it when `None`) to its credit
    /// account and returning any remainder to its debit account.
    Post {
        pending_txn_id: String,
        amount_minor: Option<i64>,
    },
    /// Cancel a reservation, returning the held amount to its debit account.
    Void { pending_txn_id: String },
    /// Undo a one-phase transfer. If the original was never seen, it is remembered as
    /// cancelled so that it is refused should it arrive late.
    Reverse {
        original_txn_id: String,
        original_label: Option<String>,
    },
}

/// Caller's data carried on an entry for history and lookups; the ledger does not read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Player the entry belongs to, when there is one.
    pub player_id: Option<String>,
    /// Game round, for wallet calls.
    pub round_id: Option<String>,
    /// Payment or payout the entry settles.
    pub reference: Option<String>,
    /// Why a rule outside the ledger refused the request, as that rule encoded it; only on
    /// entries of status [`EntryStatus::LimitRefused`].
    pub refusal: Option<String>,
}

/// One request to the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Unique per merchant; a repeat with the same fingerprint replays the first outcome.
    pub txn_id: String,
    /// Business name of the movement (`debit`, `credit`, `rollback`, `deposit`, …).
    pub label: String,
    /// What to do.
    pub command: Command,
    /// Hash of the request's content, to tell a replay from a reuse of the id.
    pub fingerprint: String,
    /// Account whose balance after the request the answer reports (the player's cash).
    pub subject: Option<AccountId>,
    /// Caller's data stored on the entry.
    pub meta: EntryMeta,
}

/// A recorded journal entry: one business event and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The request's txn id.
    pub txn_id: String,
    /// Business name of the movement.
    pub label: String,
    /// Which command produced it.
    pub operation: Operation,
    /// What became of it.
    pub status: EntryStatus,
    /// The request's fingerprint; `None` on a tombstone.
    pub fingerprint: Option<String>,
    /// Currency of the movement; `None` when nothing was ever known (tombstones).
    pub currency: Option<Currency>,
    /// Amount of the movement in minor units (0 when nothing moved or was known).
    pub amount_minor: i64,
    /// Account debited by the first transfer.
    pub debit_account: Option<AccountId>,
    /// Final destination of the money.
    pub credit_account: Option<AccountId>,
    /// Hold account of a reservation.
    pub hold_account: Option<AccountId>,
    /// The entry this one acts on (reversal original, reservation).
    pub ref_txn_id: Option<String>,
    /// Account whose balance is reported.
    pub subject_account: Option<AccountId>,
    /// That account's balance right after this entry, as first answered.
    pub subject_balance_after_minor: Option<i64>,
    /// Caller's data.
    pub meta: EntryMeta,
}

/// One movement between two accounts; an entry has one or more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Entry the transfer belongs to.
    pub txn_id: String,
    /// Position within the entry.
    pub seq: u32,
    /// Account whose balance decreases.
    pub debit: AccountId,
    /// Account whose balance increases.
    pub credit: AccountId,
    /// Always positive.
    pub amount_minor: i64,
    /// Currency of both accounts.
    pub currency: Currency,
}

/// Why a request was refused without being recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An account id the view does not hold.
    #[error("account {0} does not exist")]
    UnknownAccount(AccountId),
    /// Accounts of different currencies.
    #[error("accounts {0} and {1} hold different currencies")]
    CurrencyMismatch(AccountId, AccountId),
    /// Amounts must be strictly positive.
    #[error("amount must be greater than zero")]
    NotPositive,
    /// Debit and credit are the same account.
    #[error("a transfer needs two different accounts")]
    SameAccount,
    /// A balance would leave what the ledger holds, `-i64::MAX..=i64::MAX` (symmetric, so
    /// negating any balance is safe).
    #[error("balance would overflow")]
    Overflow,
    /// A post or void for a reservation never made.
    #[error("no reservation {0}")]
    PendingNotFound(String),
    /// A post or void for a reservation already posted or voided.
    #[error("reservation {txn_id} is already {status}")]
    PendingClosed { txn_id: String, status: EntryStatus },
    /// A post of more than was reserved.
    #[error("cannot post {requested_minor}, only {reserved_minor} is reserved")]
    ExceedsReservation {
        requested_minor: i64,
        reserved_minor: i64,
    },
    /// A post, void or reverse that names its own txn id as the entry it acts on.
    #[error("{0} cannot act on itself")]
    ActsOnItself(String),
    /// A reverse of something that is not a one-phase transfer of the expected kind.
    #[error("{txn_id} is a {label} and cannot be rolled back")]
    NotReversible { txn_id: String, label: String },
}

/// What the ledger answered to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new entry was recorded; its status says whether money moved.
    Recorded(Entry),
    /// The txn id was seen before with the same content: the first entry, unchanged.
    Replayed(Entry),
    /// The txn id was seen before with different content.
    TxnIdReused(Entry),
    /// The txn id was cancelled by a reversal before it arrived.
    Cancelled(Entry),
    /// Not recorded: the request cannot apply.
    Refused(Refusal),
}

/// Everything a batch changed, for storage to persist in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Entries to insert, in the order they were recorded, with their final status.
    pub new_entries: Vec<Entry>,
    /// Entries loaded from storage whose status changed.
    pub changed_entries: Vec<Entry>,
    /// Transfers to append.
    pub transfers: Vec<Transfer>,
    /// Accounts whose balance changed, with the new balance.
    pub balances: Vec<Account>,
}

/// The accounts and entries a batch touches, and the decisions made on them so far.
#[derive(Debug, Default)]
pub struct LedgerView {
    accounts: HashMap<AccountId, Account>,
    entries: HashMap<String, Entry>,
    new_txn_ids: Vec<String>,
    changed_txn_ids: BTreeSet<String>,
    touched_accounts: BTreeSet<AccountId>,
    transfers: Vec<Transfer>,
}

impl Request {
    /// Entries storage must load before applying this request: its own txn id and the one
    /// it acts on.
    pub fn referenced_txn_ids(&self) -> impl Iterator<Item = &str> {
        let acted_on = match &self.command {
            Command::Post { pending_txn_id, .. } | Command::Void { pending_txn_id } => {
                Some(pending_txn_id.as_str())
            }
            Command::Reverse {
                original_txn_id, ..
            } => Some(original_txn_id.as_str()),
            Command::Transfer { .. } | Command::Reserve { .. } => None,
        };
        std::iter::once(self.txn_id.as_str()).chain(acted_on)
    }

    /// Accounts the request names directly; entries it acts on name the rest.
    pub fn referenced_accounts(&self) -> Vec<AccountId> {
        let mut ids = match self.command {
            Command::Transfer { debit, credit, .. } => vec![debit, credit],
            Command::Reserve {
                debit,
                hold,
                credit,
                ..
            } => vec![debit, hold, credit],
            Command::Post { .. } | Command::Void { .. } | Command::Reverse { .. } => vec![],
        };
        ids.extend(self.subject);
        ids
    }
}

impl Entry {
    /// Accounts the entry names, which a later request acting on it will touch.
    pub fn accounts(&self) -> impl Iterator<Item = AccountId> {
        [
            self.debit_account,
            self.credit_account,
            self.hold_account,
            self.subject_account,
        ]
        .into_iter()
        .flatten()
    }
}

impl LedgerView {
    /// A view over accounts and entries loaded from storage.
    pub fn new(
        accounts: impl IntoIterator<Item = Account>,
        entries: impl IntoIterator<Item = Entry>,
    ) -> LedgerView {
        LedgerView {
            accounts: accounts.into_iter().map(|a| (a.id, a)).collect(),
            entries: entries.into_iter().map(|e| (e.txn_id.clone(), e)).collect(),
            ..LedgerView::default()
        }
    }

    /// An account as the batch currently sees it.
    pub fn account(&self, id: AccountId) -> Option<&Account> {
        self.accounts.get(&id)
    }

    /// An entry as the batch currently sees it.
    pub fn entry(&self, txn_id: &str) -> Option<&Entry> {
        self.entries.get(txn_id)
    }

    /// Records `request`, a transfer not seen before, as refused by a rule the caller applies
    /// outside the ledger (a responsible-gambling limit): nothing moves, `refusal` says why,
    /// and a replay answers this entry again. Anything else, or a transfer the ledger would
    /// refuse itself, is applied as [`apply`](Self::apply) applies it.
    pub fn refuse(&mut self, request: &Request, refusal: String) -> Outcome {
        let Command::Transfer {
            debit,
            credit,
            amount_minor,
        } = request.command
        else {
            return self.apply(request);
        };
        if self.entries.contains_key(&request.txn_id) {
            return self.apply(request);
        }
        let currency = match self.check_pair(debit, credit, amount_minor) {
            Ok(currency) => currency,
            Err(refusal) => return Outcome::Refused(refusal),
        };
        let mut entry = self.new_entry(request, Operation::Transfer, Some(currency), amount_minor);
        entry.debit_account = Some(debit);
        entry.credit_account = Some(credit);
        entry.status = EntryStatus::LimitRefused;
        entry.meta.refusal = Some(refusal);
        Outcome::Recorded(self.record(entry))
    }

    /// Applies one request on top of everything applied before it.
    pub fn apply(&mut self, request: &Request) -> Outcome {
        if let Some(existing) = self.entries.get(&request.txn_id) {
            return match existing.fingerprint.as_deref() {
                None => Outcome::Cancelled(existing.clone()),
                Some(fingerprint) if fingerprint == request.fingerprint => {
                    Outcome::Replayed(existing.clone())
                }
                Some(_) => Outcome::TxnIdReused(existing.clone()),
            };
        }
        if request
            .referenced_txn_ids()
            .skip(1)
            .any(|id| id == request.txn_id)
        {
            return Outcome::Refused(Refusal::ActsOnItself(request.txn_id.clone()));
        }
        let decided = match &request.command {
            Command::Transfer {
                debit,
                credit,
                amount_minor,
            } => self.transfer(request, *debit, *credit, *amount_minor),
            Command::Reserve {
                debit,
                hold,
                credit,
                amount_minor,
            } => self.reserve(request, *debit, *hold, *credit, *amount_minor),
            Command::Post {
                pending_txn_id,
                amount_minor,
            } => self.settle_reservation(request, pending_txn_id, Some(*amount_minor)),
            Command::Void { pending_txn_id } => {
                self.settle_reservation(request, pending_txn_id, None)
            }
            Command::Reverse {
                original_txn_id,
                original_label,
            } => self.reverse(request, original_txn_id, original_label.as_deref()),
        };
        match decided {
            Ok(entry) => Outcome::Recorded(self.record(entry)),
            Err(refusal) => Outcome::Refused(refusal),
        }
    }

    /// Hands over what the batch changed.
    pub fn into_effects(mut self) -> Effects {
        let new: BTreeSet<&String> = self.new_txn_ids.iter().collect();
        let changed_entries = self
            .changed_txn_ids
            .iter()
            .filter(|id| !new.contains(id))
            .filter_map(|id| self.entries.get(id).cloned())
            .collect();
        let new_entries = self
            .new_txn_ids
            .iter()
            .filter_map(|id| self.entries.get(id).cloned())
            .collect();
        let balances = self
            .touched_accounts
            .iter()
            .filter_map(|id| self.accounts.remove(id))
            .collect();
        Effects {
            new_entries,
            changed_entries,
            transfers: self.transfers,
            balances,
        }
    }

    fn transfer(
        &mut self,
        request: &Request,
        debit: AccountId,
        credit: AccountId,
        amount_minor: i64,
    ) -> Result<Entry, Refusal> {
        let currency = self.check_pair(debit, credit, amount_minor)?;
        let mut entry = self.new_entry(request, Operation::Transfer, Some(currency), amount_minor);
        entry.debit_account = Some(debit);
        entry.credit_account = Some(credit);
        entry.status = match self.plan(&[(debit, credit, amount_minor)])? {
            true => {
                self.execute(&request.txn_id, &[(debit, credit, amount_minor)]);
                EntryStatus::Posted
            }
            false => EntryStatus::Rejected,
        };
        Ok(entry)
    }

    fn reserve(
        &mut self,
        request: &Request,
        debit: AccountId,
        hold: AccountId,
        credit: AccountId,
        amount_minor: i64,
    ) -> Result<Entry, Refusal> {
        let currency = self.check_pair(debit, hold, amount_minor)?;
        if self.check_pair(hold, credit, amount_minor)? != currency {
            return Err(Refusal::CurrencyMismatch(debit, credit));
        }
        let mut entry = self.new_entry(request, Operation::Reserve, Some(currency), amount_minor);
        entry.debit_account = Some(debit);
        entry.hold_account = Some(hold);
        entry.credit_account = Some(credit);
        entry.status = match self.plan(&[(debit, hold, amount_minor)])? {
            true => {
                self.execute(&request.txn_id, &[(debit, hold, amount_minor)]);
                EntryStatus::Pending
            }
            false => EntryStatus::Rejected,
        };
        Ok(entry)
    }

    /// Posts (`Some(amount)`) or voids (`None`) a reservation.
    fn settle_reservation(
        &mut self,
        request: &Request,
        pending_txn_id: &str,
        post_amount_minor: Option<Option<i64>>,
    ) -> Result<Entry, Refusal> {
        let pending = match self.entries.get(pending_txn_id) {
            Some(entry) if entry.operation == Operation::Reserve => entry.clone(),
            _ => return Err(Refusal::PendingNotFound(pending_txn_id.to_string())),
        };
        if pending.status != EntryStatus::Pending {
            return Err(Refusal::PendingClosed {
                txn_id: pending_txn_id.to_string(),
                status: pending.status,
            });
        }
        let (Some(debit), Some(hold), Some(credit)) = (
            pending.debit_account,
            pending.hold_account,
            pending.credit_account,
        ) else {
            return Err(Refusal::PendingNotFound(pending_txn_id.to_string()));
        };
        let reserved_minor = pending.amount_minor;
        let (posted_minor, operation, closed_status) = match post_amount_minor {
            Some(requested) => {
                let posted = requested.unwrap_or(reserved_minor);
                if posted <= 0 {
                    return Err(Refusal::NotPositive);
                }
                if posted > reserved_minor {
                    return Err(Refusal::ExceedsReservation {
                        requested_minor: posted,
                        reserved_minor,
                    });
                }
                (posted, Operation::Post, EntryStatus::PendingPosted)
            }
            None => (0, Operation::Void, EntryStatus::PendingVoided),
        };
        let released_minor = reserved_minor - posted_minor;
        let moves: Vec<_> = [(hold, credit, posted_minor), (hold, debit, released_minor)]
            .into_iter()
            .filter(|(_, _, amount)| *amount > 0)
            .collect();
        // The hold holds exactly the reserved amount for this entry, so emptying it cannot
        // fail the floor; `plan` still checks, as a second line of defence.
        if !self.plan(&moves)? {
            return Err(Refusal::Overflow);
        }
        self.execute(&request.txn_id, &moves);
        let amount_minor = if operation == Operation::Post {
            posted_minor
        } else {
            released_minor
        };
        let mut entry = self.new_entry(request, operation, pending.currency, amount_minor);
        entry.debit_account = Some(hold);
        entry.credit_account = Some(if operation == Operation::Post {
            credit
        } else {
            debit
        });
        entry.hold_account = Some(hold);
        entry.ref_txn_id = Some(pending_txn_id.to_string());
        entry.status = EntryStatus::Posted;
        self.set_status(pending_txn_id, closed_status);
        Ok(entry)
    }

    fn reverse(
        &mut self,
        request: &Request,
        original_txn_id: &str,
        expected_label: Option<&str>,
    ) -> Result<Entry, Refusal> {
        let original = match self.entries.get(original_txn_id) {
            Some(entry) => entry.clone(),
            None => {
                // Remember the id so that the original, should it arrive late, is refused.
                let tombstone = Entry {
                    txn_id: original_txn_id.to_string(),
                    label: expected_label.unwrap_or("unknown").to_string(),
                    operation: Operation::Transfer,
                    status: EntryStatus::Tombstone,
                    fingerprint: None,
                    currency: None,
                    amount_minor: 0,
                    debit_account: None,
                    credit_account: None,
                    hold_account: None,
                    ref_txn_id: Some(request.txn_id.clone()),
                    subject_account: None,
                    subject_balance_after_minor: None,
                    meta: request.meta.clone(),
                };
                self.record(tombstone);
                let mut entry = self.new_entry(request, Operation::Reverse, None, 0);
                entry.ref_txn_id = Some(original_txn_id.to_string());
                entry.status = EntryStatus::OriginalNotFound;
                return Ok(entry);
            }
        };
        let label_fits = expected_label.is_none_or(|label| label == original.label);
        let reversible = original.operation == Operation::Transfer && label_fits;
        if !reversible && original.status != EntryStatus::Tombstone {
            return Err(Refusal::NotReversible {
                txn_id: original_txn_id.to_string(),
                label: original.label.clone(),
            });
        }
        let mut entry = self.new_entry(
            request,
            Operation::Reverse,
            original.currency,
            original.amount_minor,
        );
        entry.ref_txn_id = Some(original_txn_id.to_string());
        if entry.subject_account.is_none() {
            entry.subject_account = original.subject_account;
        }
        entry.status = match original.status {
            EntryStatus::Posted => {
                let (Some(debit), Some(credit)) = (original.debit_account, original.credit_account)
                else {
                    return Err(Refusal::PendingNotFound(original_txn_id.to_string()));
                };
                entry.debit_account = Some(credit);
                entry.credit_account = Some(debit);
                let moves = [(credit, debit, original.amount_minor)];
                if self.plan(&moves)? {
                    self.execute(&request.txn_id, &moves);
                    self.set_status(original_txn_id, EntryStatus::Reversed);
                    EntryStatus::Posted
                } else {
                    EntryStatus::Rejected
                }
            }
            EntryStatus::Tombstone => EntryStatus::OriginalNotFound,
            // Nothing moved (rejected) or it is already undone: answer success, move nothing.
            _ => EntryStatus::NoEffect,
        };
        Ok(entry)
    }

    fn check_pair(
        &self,
        debit: AccountId,
        credit: AccountId,
        amount_minor: i64,
    ) -> Result<Currency, Refusal> {
        if amount_minor <= 0 {
            return Err(Refusal::NotPositive);
        }
        if debit == credit {
            return Err(Refusal::SameAccount);
        }
        let debit_account = self
            .accounts
            .get(&debit)
            .ok_or(Refusal::UnknownAccount(debit))?;
        let credit_account = self
            .accounts
            .get(&credit)
            .ok_or(Refusal::UnknownAccount(credit))?;
        if debit_account.currency != credit_account.currency {
            return Err(Refusal::CurrencyMismatch(debit, credit));
        }
        Ok(debit_account.currency)
    }

    /// Whether the moves can all be made: `Ok(false)` when a floor would be broken,
    /// `Err` when a balance would overflow. Checks the moves in order, as they will be made.
    fn plan(&self, moves: &[(AccountId, AccountId, i64)]) -> Result<bool, Refusal> {
        let mut balances: HashMap<AccountId, i64> = HashMap::new();
        for &(debit, credit, amount_minor) in moves {
            for (id, delta) in [(debit, -amount_minor), (credit, amount_minor)] {
                let account = self.accounts.get(&id).ok_or(Refusal::UnknownAccount(id))?;
                let balance = balances.entry(id).or_insert(account.balance_minor);
                *balance = balance
                    .checked_add(delta)
                    .filter(|b| *b != i64::MIN)
                    .ok_or(Refusal::Overflow)?;
                if account.floor == Floor::NonNegative && *balance < 0 {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Makes moves that [`plan`](Self::plan) accepted.
    fn execute(&mut self, txn_id: &str, moves: &[(AccountId, AccountId, i64)]) {
        for &(debit, credit, amount_minor) in moves {
            let mut currency = None;
            for (id, delta) in [(debit, -amount_minor), (credit, amount_minor)] {
                if let Some(account) = self.accounts.get_mut(&id) {
                    account.balance_minor += delta;
                    currency = Some(account.currency);
                    self.touched_accounts.insert(id);
                }
            }
            if let Some(currency) = currency {
                let seq = self.transfers.iter().filter(|t| t.txn_id == txn_id).count() as u32;
                self.transfers.push(Transfer {
                    txn_id: txn_id.to_string(),
                    seq,
                    debit,
                    credit,
                    amount_minor,
                    currency,
                });
            }
        }
    }

    fn new_entry(
        &self,
        request: &Request,
        operation: Operation,
        currency: Option<Currency>,
        amount_minor: i64,
    ) -> Entry {
        Entry {
            txn_id: request.txn_id.clone(),
            label: request.label.clone(),
            operation,
            status: EntryStatus::Posted,
            fingerprint: Some(request.fingerprint.clone()),
            currency,
            amount_minor,
            debit_account: None,
            credit_account: None,
            hold_account: None,
            ref_txn_id: None,
            subject_account: request.subject,
            subject_balance_after_minor: None,
            meta: request.meta.clone(),
        }
    }

    /// Stores a new entry, stamping the subject's balance as it stands now.
    fn record(&mut self, mut entry: Entry) -> Entry {
        entry.subject_balance_after_minor = entry
            .subject_account
            .and_then(|id| self.accounts.get(&id))
            .map(|account| account.balance_minor);
        self.new_txn_ids.push(entry.txn_id.clone());
        self.entries.insert(entry.txn_id.clone(), entry.clone());
        entry
    }

    fn set_status(&mut self, txn_id: &str, status: EntryStatus) {
        if let Some(entry) = self.entries.get_mut(txn_id) {
            entry.status = status;
            self.changed_txn_ids.insert(txn_id.to_string());
        }
    }
}
