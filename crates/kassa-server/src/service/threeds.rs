//! Kassa's own 3DS Server for card-page deposits through a direct acquirer (ADR 67): the
//! AReq when the card is submitted, the challenge's RReq (server to server, the result Kassa
//! acts on) and the browser's return with the `cres`.
//!
//! Between the AReq and the return, the card waits here, in this process's memory only (never
//! the database, ADR 49/50), for at most [`PENDING_TTL`]; so do the RReq's result and its
//! authentication value. A challenge therefore finishes on the node that began it (the card
//! page's requests of one payment go to one node, see ADR 67).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kassa_connectors::threeds::{
    AuthenticationResult, CardAuthentication, ChallengeRequest, ChallengeResponse, ResultsResponse,
    TransStatus,
};
use kassa_connectors::{CardDetails, PaymentRequest, ProviderError};
use kassa_store::now_ms;
use kassa_store::threeds::ThreeDsOutcomeRecord;

use crate::service::acquirer::Acquirers;

/// How long a card waits for its challenge to finish.
pub const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Most challenges waiting at once on one node; past it a new one is refused.
const PENDING_MAX: usize = 10_000;

/// The card as submitted on the page, waiting for its authentication.
pub struct CardEntry {
    /// The card.
    pub card: CardDetails,
    /// The player asked to save it.
    pub save: bool,
    /// The saved card it came from.
    pub saved_token: Option<String>,
}

/// A successful authentication: what the authorization carries and what is stored.
pub struct Authenticated {
    /// ECI, CAVV and DS transaction id for the authorization message.
    pub authentication: CardAuthentication,
    /// The row kept with the payment (no CAVV).
    pub outcome: ThreeDsOutcomeRecord,
}

/// What the card page does after the AReq.
pub enum Begun {
    /// Authorize: without 3-D Secure (the account runs none) or with a frictionless result.
    Charge(CardEntry, Option<Authenticated>),
    /// The issuer refused (`N`, `R`, `U`): decline without any authorization.
    Refused(ThreeDsOutcomeRecord),
    /// Send the browser to the ACS with this `creq`.
    Challenge {
        /// The ACS's challenge URL.
        acs_url: String,
        /// The base64url CReq.
        creq: String,
    },
}

/// What a final result lets the card page do.
pub enum Verdict {
    /// Authorize with it.
    Authenticated(Authenticated),
    /// Decline without an authorization; the outcome is stored with the decline.
    Refused(ThreeDsOutcomeRecord),
}

/// A challenge's end: the card and the verdict.
pub struct Finished {
    /// The card, for the authorization.
    pub entry: CardEntry,
    /// Authenticated or refused.
    pub verdict: Verdict,
}

/// Why a 3-D Secure step could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ThreeDsError {
    /// The Directory Server could not be asked or answered nonsense; nothing was charged.
    #[error("3-D Secure is unavailable: {0}")]
    Unavailable(ProviderError),
    /// Too many challenges are waiting on this node.
    #[error("too many 3-D Secure challenges are waiting")]
    Busy,
    /// No challenge of this payment waits here (expired, finished, or another node's).
    #[error("no 3-D Secure challenge waits for this payment")]
    UnknownChallenge,
    /// The RReq does not match the challenge it names.
    #[error("the results request does not match its challenge")]
    Mismatch,
}

struct Pending {
    payment_id: String,
    account: String,
    entry: CardEntry,
    acs_trans_id: String,
    ds_trans_id: String,
    /// The RReq's result, once it came.
    result: Option<AuthenticationResult>,
    since: Instant,
}

/// The 3DS Server: the acquirer accounts' Directory Servers and the challenges under way.
#[derive(Clone)]
pub struct ThreeDsService {
    acquirers: Acquirers,
    pending: Arc<Mutex<HashMap<String, Pending>>>,
}

/// The stored outcome of `result` for `payment_id`.
fn outcome_of(
    payment_id: &str,
    result: &AuthenticationResult,
    challenged: bool,
) -> ThreeDsOutcomeRecord {
    ThreeDsOutcomeRecord {
        payment_id: payment_id.to_string(),
        trans_status: result.trans_status.letter().to_string(),
        eci: result.eci.clone(),
        three_ds_server_trans_id: result.ids.three_ds_server_trans_id.clone(),
        acs_trans_id: result.ids.acs_trans_id.clone(),
        ds_trans_id: result.ids.ds_trans_id.clone(),
        challenged,
        created_at_ms: now_ms(),
    }
}

/// A final result as the card page acts on it.
fn settle(payment_id: &str, result: &AuthenticationResult, challenged: bool) -> Verdict {
    let outcome = outcome_of(payment_id, result, challenged);
    match result.card_authentication() {
        Some(authentication) => Verdict::Authenticated(Authenticated {
            authentication,
            outcome,
        }),
        None => Verdict::Refused(outcome),
    }
}

/// The decline reason of a refused authentication.
pub fn decline_reason(outcome: &ThreeDsOutcomeRecord) -> &'static str {
    match outcome.trans_status.as_str() {
        "R" => "authentication_rejected",
        "U" => "authentication_unavailable",
        _ => "authentication_failed",
    }
}

impl ThreeDsService {
    /// The 3DS Server of the acquirer connectors in `acquirers`.
    pub fn new(acquirers: Acquirers) -> ThreeDsService {
        ThreeDsService {
            acquirers,
            pending: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Authenticates the card submitted for `request` at `account`'s Directory Server, when
    /// the account runs 3-D Secure.
    pub async fn begin(
        &self,
        account: &str,
        request: &PaymentRequest,
        entry: CardEntry,
    ) -> Result<Begun, ThreeDsError> {
        let Some(connector) = self.acquirers.get(account) else {
            return Ok(Begun::Charge(entry, None));
        };
        let trans_id = uuid::Uuid::new_v4().to_string();
        let ares = connector
            .authenticate(request, &entry.card, &trans_id)
            .await
            .map_err(ThreeDsError::Unavailable)?;
        let Some(ares) = ares else {
            return Ok(Begun::Charge(entry, None));
        };
        let payment_id = &request.payment_id;
        tracing::info!(%payment_id, account, trans_status = ares.trans_status.letter(), eci = ?ares.eci, ds_trans_id = %ares.ids.ds_trans_id, "3-D Secure authentication answered");
        if ares.trans_status != TransStatus::C {
            crate::metrics::record_threeds_result(account, ares.trans_status, false);
            return Ok(match settle(payment_id, &ares, false) {
                Verdict::Authenticated(authenticated) => Begun::Charge(entry, Some(authenticated)),
                Verdict::Refused(outcome) => Begun::Refused(outcome),
            });
        }
        crate::metrics::record_threeds(account, "challenged");
        let creq = ChallengeRequest::after(&ares).encoded();
        let acs_url = ares.acs_url.clone().unwrap_or_default();
        let mut pending = self.pending();
        pending.retain(|_, waiting| waiting.since.elapsed() < PENDING_TTL);
        if pending.len() >= PENDING_MAX {
            return Err(ThreeDsError::Busy);
        }
        pending.insert(
            trans_id,
            Pending {
                payment_id: payment_id.clone(),
                account: account.to_string(),
                entry,
                acs_trans_id: ares.ids.acs_trans_id,
                ds_trans_id: ares.ids.ds_trans_id,
                result: None,
                since: Instant::now(),
            },
        );
        Ok(Begun::Challenge { acs_url, creq })
    }

    /// Takes the RReq of a challenge of `payment_id` and answers its RRes.
    pub fn results(
        &self,
        payment_id: &str,
        rreq: AuthenticationResult,
    ) -> Result<ResultsResponse, ThreeDsError> {
        let mut pending = self.pending();
        let waiting = pending
            .get_mut(&rreq.ids.three_ds_server_trans_id)
            .filter(|waiting| waiting.payment_id == payment_id)
            .ok_or(ThreeDsError::UnknownChallenge)?;
        let matches = rreq.message_type == "RReq"
            && rreq.ids.acs_trans_id == waiting.acs_trans_id
            && rreq.ids.ds_trans_id == waiting.ds_trans_id
            && rreq.trans_status != TransStatus::C;
        if !matches {
            return Err(ThreeDsError::Mismatch);
        }
        tracing::info!(payment_id, trans_status = rreq.trans_status.letter(), eci = ?rreq.eci, "3-D Secure challenge result received");
        let answer = ResultsResponse::received(&rreq);
        waiting.result = Some(rreq);
        Ok(answer)
    }

    /// The browser's return from the ACS with `cres`: the challenge of `payment_id` ends with
    /// the RReq's result (the `cres` only names the challenge; a return before any RReq
    /// counts as not authenticated).
    pub fn finish(&self, payment_id: &str, cres: &str) -> Result<Finished, ThreeDsError> {
        let cres = ChallengeResponse::decode(cres).ok_or(ThreeDsError::UnknownChallenge)?;
        let waiting = {
            let mut pending = self.pending();
            let ours = pending
                .get(&cres.three_ds_server_trans_id)
                .is_some_and(|w| w.payment_id == payment_id && w.acs_trans_id == cres.acs_trans_id);
            match ours {
                true => pending.remove(&cres.three_ds_server_trans_id),
                false => None,
            }
        };
        let waiting = waiting
            .filter(|w| w.since.elapsed() < PENDING_TTL)
            .ok_or(ThreeDsError::UnknownChallenge)?;
        let verdict = match &waiting.result {
            Some(rreq) => {
                crate::metrics::record_threeds_result(&waiting.account, rreq.trans_status, true);
                settle(payment_id, rreq, true)
            }
            None => Verdict::Refused(ThreeDsOutcomeRecord {
                payment_id: payment_id.to_string(),
                trans_status: TransStatus::U.letter().to_string(),
                eci: None,
                three_ds_server_trans_id: cres.three_ds_server_trans_id,
                acs_trans_id: waiting.acs_trans_id.clone(),
                ds_trans_id: waiting.ds_trans_id.clone(),
                challenged: true,
                created_at_ms: now_ms(),
            }),
        };
        Ok(Finished {
            entry: waiting.entry,
            verdict,
        })
    }
}
