//! The recheck job (issue 19, docs/registers.md "The recheck job"): bets ask no register (the
//! wallet reads the restricted list, ADR 41), so a player who registers with GAMSTOP and then
//! only bets would be refused at their next deposit only. Every `recheck_sweep_minutes` one
//! node (the recurring job's lease) asks again about the players whose answer is older than
//! `recheck_hours` and who made a wallet call or a deposit within `recheck_active_days`,
//! through [`RegistersService::ask`] like a deposit, so an `excluded` answer has the same
//! effects: the restricted list, the outbox event, the audit row, the metric.
//!
//! A register that cannot answer clears nobody (no answer is stored, the old one stays and
//! ages on); its merchant's part of the run stops at the first failure, so an outage costs
//! one question per run, and the run fails so that the queue retries it with its backoff.

use std::collections::HashMap;

use kassa_core::ids::MerchantId;
use kassa_store::registers::{RecheckDue, RecheckQuery, RegisterStatus};
use kassa_store::StoreError;

use super::{CheckReason, RegisterError, RegistersService};

/// Recurring (every `[registers] recheck_sweep_minutes`): asks the registers again about
/// active players whose answer has grown old.
pub const REGISTERS_RECHECK: &str = "registers.recheck";

/// What one run of the recheck job did.
#[derive(Debug, Default)]
pub struct RecheckReport {
    /// Players asked about who got an answer.
    pub answered: u32,
    /// Of those, the ones the answer names as excluded.
    pub excluded: u32,
    /// Players not asked for a reason of their own (an identity now lacking a field, a
    /// jurisdiction changed meanwhile); they are asked at their next deposit.
    pub skipped: u32,
    /// Registers that could not answer, per merchant.
    pub unanswered: Vec<Unanswered>,
}

/// A register that could not answer one merchant's question during a run.
#[derive(Debug)]
pub struct Unanswered {
    pub register: String,
    pub merchant_id: MerchantId,
    /// Why (no personal data).
    pub reason: String,
    /// Players of this merchant and register the run then left unasked.
    pub left: u32,
}

impl RecheckReport {
    /// What the run could not check, as the job's `last_error`; `None` when nothing failed.
    pub fn unanswered_summary(&self) -> Option<String> {
        if self.unanswered.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .unanswered
            .iter()
            .map(|u| {
                format!(
                    "{} for {} could not answer ({}); {} more players left unasked",
                    u.register, u.merchant_id, u.reason, u.left
                )
            })
            .collect();
        Some(parts.join("; "))
    }
}

/// The answer time and activity cut a run reads with.
#[derive(Clone, Copy)]
struct Cuts {
    answered_before_ms: i64,
    active_since_ms: i64,
}

impl RegistersService {
    /// One run of the recheck job: every register some jurisdiction is mapped to, in
    /// bounded batches. Fails only when the database does; a register that cannot answer
    /// is in the report.
    pub async fn recheck_due(&self) -> Result<RecheckReport, StoreError> {
        let now = self.now_ms();
        let cuts = Cuts {
            answered_before_ms: now - i64::from(self.config.recheck_hours) * 3_600_000,
            active_since_ms: now - i64::from(self.config.recheck_active_days) * 86_400_000,
        };
        let mut report = RecheckReport::default();
        for (register, jurisdictions) in self.config.registers_in_use() {
            self.recheck_register(register, &jurisdictions, cuts, &mut report)
                .await?;
        }
        Ok(report)
    }

    /// Up to `recheck_batches_per_run_max` batches of one register's due players.
    async fn recheck_register(
        &self,
        register: &str,
        jurisdictions: &[&str],
        cuts: Cuts,
        report: &mut RecheckReport,
    ) -> Result<(), StoreError> {
        let limit = self.config.recheck_batch_max;
        // Merchants whose account of this register failed in this run: index in the report.
        let mut down: HashMap<MerchantId, usize> = HashMap::new();
        let mut after: Option<RecheckDue> = None;
        for _ in 0..self.config.recheck_batches_per_run_max {
            let query = RecheckQuery {
                register,
                jurisdictions,
                answered_before_ms: cuts.answered_before_ms,
                active_since_ms: cuts.active_since_ms,
                after: after.as_ref(),
                limit,
            };
            let due = self.store.register_recheck_due(&query).await?;
            for player in &due {
                if let Some(&index) = down.get(&player.merchant_id) {
                    report.unanswered[index].left += 1;
                    continue;
                }
                match self.recheck_one(player, register).await {
                    Ok(status) => {
                        report.answered += 1;
                        report.excluded += u32::from(status.outcome.blocks());
                    }
                    Err(RegisterError::Unavailable { reason, .. }) => {
                        down.insert(player.merchant_id.clone(), report.unanswered.len());
                        report.unanswered.push(Unanswered {
                            register: register.to_string(),
                            merchant_id: player.merchant_id.clone(),
                            reason,
                            left: 0,
                        });
                    }
                    Err(RegisterError::Store(error)) => return Err(error),
                    Err(error) => {
                        report.skipped += 1;
                        tracing::warn!(player_id = %player.player_id, register, %error,
                            "register recheck skipped a player");
                    }
                }
            }
            let full = due.len() == limit as usize;
            after = due.into_iter().last();
            if !full {
                break;
            }
        }
        Ok(())
    }

    /// Asks `register` about one due player, as a deposit would.
    async fn recheck_one(
        &self,
        due: &RecheckDue,
        register: &str,
    ) -> Result<RegisterStatus, RegisterError> {
        let player = self.players.get(&due.merchant_id, &due.player_id).await?;
        // The jurisdiction may have changed since the batch was read.
        if self.register_for(&player) != Some(register) {
            return Err(RegisterError::NoRegister {
                jurisdiction: player.jurisdiction.clone(),
            });
        }
        self.ask(&due.merchant_id, &player, register, CheckReason::Sweep)
            .await
    }
}
