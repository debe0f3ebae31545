//! Prometheus metrics (ADR 53): every metric is named here once, with its labels, and the
//! rest of the code calls the small `record_*` and `set_*` functions below.
//!
//! Labels carry only bounded values of our own: provider account ids (from the config),
//! method names, ISO country codes, device classes, outcomes, routing rule names and route
//! templates. Never a player, card, payment or payout id: those would make a series each.
//!
//! The recorder is the process's (the `metrics` facade's global one), installed by the first
//! server that turns metrics on (`[metrics] listen`); until then every function here is a
//! no-op costing an atomic load. Deposit and payout outcomes are counted after their
//! transaction committed, by the node that committed it: summed over nodes, each is counted
//! once.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::service::cascade::Attempt;
use kassa_connectors::PaymentEventStatus;
use kassa_core::limits::LimitKind;
use kassa_core::payment::PaymentStatus;
use kassa_core::payout::PayoutStatus;
use kassa_core::routing::Decision;
use kassa_store::now_ms;
use kassa_store::payments::PaymentRecord;
use kassa_store::payouts::PayoutRecord;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Deposits started, `{provider, method, country, device_class}`: the denominator of
/// conversion.
pub const PAYMENTS_INITIATED: &str = "kassa_payments_initiated_total";
/// Deposits decided, `{provider, method, country, device_class, outcome}`; outcome is the
/// first decision on the payment: `approved` (authorized or captured), `declined`, `failed`,
/// `cancelled`, `expired`.
pub const PAYMENTS: &str = "kassa_payments_total";
/// Seconds from a deposit's start to its first decision, `{provider, method, outcome}`.
pub const PAYMENT_DURATION: &str = "kassa_payment_duration_seconds";
/// Seconds the provider took to answer a deposit's start, or a direct acquirer a card's
/// charge (the SLA's authorization time), `{provider, method}`.
pub const PROVIDER_AUTHORIZATION_DURATION: &str = "kassa_provider_authorization_duration_seconds";
/// Withdrawals finished, `{provider, method, outcome}`; outcome: `paid`, `failed`,
/// `rejected`, `cancelled`; provider `none` when none was chosen.
pub const PAYOUTS: &str = "kassa_payouts_total";
/// Seconds from a withdrawal's request to its end, `{provider, method, outcome}`.
pub const PAYOUT_DURATION: &str = "kassa_payout_duration_seconds";
/// 3-D Secure results, `{provider, outcome}`: `challenged` (a challenge shown to the
/// player), `failed` (a decline for failed, rejected or unavailable authentication); from
/// Kassa's own 3DS Server (direct acquiring, ADR 67) also `frictionless`, `attempted` and
/// `challenge_passed`.
pub const THREEDS: &str = "kassa_threeds_total";
/// Refunds, `{provider, outcome}`: `succeeded`, `failed`.
pub const REFUNDS: &str = "kassa_refunds_total";
/// Chargebacks received, `{provider}`.
pub const CHARGEBACKS: &str = "kassa_chargebacks_total";
/// 1 while the provider account is usable, 0 while it is not (its circuit open), `{provider}`.
pub const PROVIDER_UP: &str = "kassa_provider_up";
/// The provider account's circuit breaker, `{provider}`: 0 closed, 1 half-open, 2 open.
pub const PROVIDER_CIRCUIT_STATE: &str = "kassa_provider_circuit_state";
/// Deposits routed, `{rule, provider}`.
pub const ROUTING_DECISIONS: &str = "kassa_routing_decisions_total";
/// Pre-authorization risk decisions, by `kind` (deposit, card, payout) and `outcome`.
pub const RISK_DECISIONS: &str = "kassa_risk_decisions_total";
/// AML alerts raised by the post-authorization scenarios, `{scenario}`.
pub const AML_ALERTS: &str = "kassa_aml_alerts_total";
/// AML cases opened (by their first alert).
pub const CASES_OPENED: &str = "kassa_cases_opened_total";
/// AML cases closed, `{reason}`.
pub const CASES_CLOSED: &str = "kassa_cases_closed_total";
/// Seconds a payout waited in the review queue until a reviewer decided, `{decision}`
/// (`approved`, `rejected`).
pub const PAYOUT_REVIEW_DURATION: &str = "kassa_payout_review_duration_seconds";
/// Deposits handed to the next provider of their rule, `{from, to, reason}`.
pub const CASCADES: &str = "kassa_cascades_total";
/// What approved deposits cost in provider fees, in minor units, `{provider, currency}`.
pub const PAYMENT_COST_MINOR: &str = "kassa_payment_cost_minor_total";
/// HTTP requests answered, `{route, status_class}`; route is the matched template.
pub const HTTP_REQUESTS: &str = "kassa_http_requests_total";
/// Seconds to answer an HTTP request, `{route}`.
pub const HTTP_REQUEST_DURATION: &str = "kassa_http_request_duration_seconds";
/// Inbound provider webhook deliveries, `{provider, outcome}`; outcome as the delivery log
/// names it (`processed`, `ignored`, `duplicate`, `invalid_signature`, …); provider
/// `unknown` for a name no account has.
pub const WEBHOOKS_RECEIVED: &str = "kassa_webhooks_received_total";
/// Outbox events not yet published (the backlog of outbound webhooks), read at scrape.
pub const OUTBOX_BACKLOG: &str = "kassa_outbox_backlog";
/// Players with a deposit declined, failed or expired in the last 15 minutes, read from the
/// database at scrape (the same on every node: alert on its `max`).
pub const DEPOSIT_FAILED_PLAYERS_15M: &str = "kassa_deposit_failed_players_15m";
/// The window of [`DEPOSIT_FAILED_PLAYERS_15M`].
pub const FAILED_PLAYERS_WINDOW_MS: i64 = 15 * 60 * 1000;
/// KYC checks ended by the ID provider's result, `{level, outcome}`; outcome: `approved`,
/// `rejected`, `resubmission_requested`.
pub const KYC_CHECKS: &str = "kassa_kyc_checks_total";
/// Time to verify (TTV): seconds from a KYC check's request to the provider's result,
/// `{level, outcome}`.
pub const KYC_TIME_TO_VERIFY: &str = "kassa_kyc_time_to_verify_seconds";
/// Deposits and bets refused by a responsible-gambling limit, by `limit` (`deposit`,
/// `wager`, `loss`, `session`).
pub const LIMIT_REFUSALS: &str = "kassa_limit_refusals_total";
/// Questions put to a national self-exclusion register, `{register, outcome}`; outcome:
/// `excluded`, `not_excluded`, `previously_excluded`, or no answer: `unavailable`,
/// `invalid_answer`, `refused`.
pub const REGISTER_CHECKS: &str = "kassa_register_checks_total";
/// Outbound webhook deliveries queued or being sent (`webhook.deliver` jobs), read at scrape.
pub const WEBHOOK_DELIVERIES_QUEUED: &str = "kassa_webhook_deliveries_queued";

/// Label value of a provider that no account has, or of a payout routed nowhere.
const NO_PROVIDER: &str = "none";
/// Label value that replaces a value unfit for a label (too long, odd characters).
const OTHER: &str = "other";
/// Longest label value passed through as given.
const LABEL_LEN_MAX: usize = 64;

/// Deposits and payouts take from milliseconds (decided at once) to an hour (a player on a
/// bank's page).
const FLOW_BUCKETS_SECONDS: &[f64] = &[
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0,
];
/// A player verifying: minutes on the page, hours to days when a provider's staff reviews.
const TTV_BUCKETS_SECONDS: &[f64] = &[
    1.0,
    5.0,
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    4.0 * 3600.0,
    12.0 * 3600.0,
    86_400.0,
    3.0 * 86_400.0,
    7.0 * 86_400.0,
];
/// A provider's or our own answer: the SLA's line is 2 s.
const CALL_BUCKETS_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
];

/// A review takes from minutes to days (the payout queue's service level is 20–48 h).
const REVIEW_BUCKETS_SECONDS: &[f64] = &[
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172800.0, 604800.0,
];

/// The process's recorder, once installed.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A histogram's buckets are invalid.
    #[error("metrics recorder: {0}")]
    Build(#[from] BuildError),
    /// Something else in this process installed a `metrics` recorder first.
    #[error("another metrics recorder is installed in this process")]
    RecorderTaken,
}

/// Installs the process's recorder (once; later calls return the same handle).
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    // Two servers starting at once: the second waits, then finds the first's.
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _installing = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = builder()?.build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_ok() {
        describe();
        let _ = HANDLE.set(handle);
    }
    HANDLE.get().cloned().ok_or(MetricsError::RecorderTaken)
}

fn builder() -> Result<PrometheusBuilder, BuildError> {
    let flows = [PAYMENT_DURATION, PAYOUT_DURATION];
    let calls = [PROVIDER_AUTHORIZATION_DURATION, HTTP_REQUEST_DURATION];
    let mut builder = PrometheusBuilder::new().set_buckets_for_metric(
        Matcher::Full(KYC_TIME_TO_VERIFY.into()),
        TTV_BUCKETS_SECONDS,
    )?;
    for name in flows {
        builder =
            builder.set_buckets_for_metric(Matcher::Full(name.into()), FLOW_BUCKETS_SECONDS)?;
    }
    for name in calls {
        builder =
            builder.set_buckets_for_metric(Matcher::Full(name.into()), CALL_BUCKETS_SECONDS)?;
    }
    builder = builder.set_buckets_for_metric(
        Matcher::Full(PAYOUT_REVIEW_DURATION.into()),
        REVIEW_BUCKETS_SECONDS,
    )?;
    Ok(builder)
}

/// What kind of metric a name is, for its `# TYPE` line.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    /// In seconds.
    Histogram,
}

/// Every metric's `# HELP` line.
const HELP: &[(&str, Kind, &str)] = &[
    (PAYMENTS_INITIATED, Kind::Counter, "Deposits started."),
    (
        PAYMENTS,
        Kind::Counter,
        "Deposits decided, by their first decision.",
    ),
    (
        PAYMENT_DURATION,
        Kind::Histogram,
        "Deposit start to first decision.",
    ),
    (
        PROVIDER_AUTHORIZATION_DURATION,
        Kind::Histogram,
        "The provider's answer to a deposit start.",
    ),
    (PAYOUTS, Kind::Counter, "Withdrawals finished."),
    (
        PAYOUT_DURATION,
        Kind::Histogram,
        "Withdrawal request to its end.",
    ),
    (
        THREEDS,
        Kind::Counter,
        "3-D Secure results: frictionless, attempted, challenged, passed and failed authentications.",
    ),
    (REFUNDS, Kind::Counter, "Refunds settled or refused."),
    (CHARGEBACKS, Kind::Counter, "Chargebacks received."),
    (
        PROVIDER_UP,
        Kind::Gauge,
        "1 while the provider account takes traffic.",
    ),
    (
        PROVIDER_CIRCUIT_STATE,
        Kind::Gauge,
        "Circuit breaker: 0 closed, 1 half-open, 2 open.",
    ),
    (
        ROUTING_DECISIONS,
        Kind::Counter,
        "Deposits routed, by rule and provider.",
    ),
    (
        RISK_DECISIONS,
        Kind::Counter,
        "Pre-authorization risk decisions, by kind and outcome.",
    ),
    (
        CASCADES,
        Kind::Counter,
        "Deposits cascaded to the next provider.",
    ),
    (AML_ALERTS, Kind::Counter, "AML alerts raised, by scenario."),
    (CASES_OPENED, Kind::Counter, "AML cases opened."),
    (CASES_CLOSED, Kind::Counter, "AML cases closed, by reason."),
    (
        PAYOUT_REVIEW_DURATION,
        Kind::Histogram,
        "Payout review queue: request to the reviewer's decision.",
    ),
    (
        PAYMENT_COST_MINOR,
        Kind::Counter,
        "Provider fees of approved deposits, minor units.",
    ),
    (HTTP_REQUESTS, Kind::Counter, "HTTP requests answered."),
    (HTTP_REQUEST_DURATION, Kind::Histogram, "HTTP answer time."),
    (
        WEBHOOKS_RECEIVED,
        Kind::Counter,
        "Inbound provider webhook deliveries.",
    ),
    (
        OUTBOX_BACKLOG,
        Kind::Gauge,
        "Outbox events not yet published.",
    ),
    (
        DEPOSIT_FAILED_PLAYERS_15M,
        Kind::Gauge,
        "Players with a deposit declined, failed or expired in the last 15 minutes.",
    ),
    (
        KYC_CHECKS,
        Kind::Counter,
        "KYC checks ended by the ID provider's result.",
    ),
    (
        REGISTER_CHECKS,
        Kind::Counter,
        "Questions put to a national self-exclusion register, by outcome.",
    ),
    (
        KYC_TIME_TO_VERIFY,
        Kind::Histogram,
        "Time to verify: a KYC check's request to its result.",
    ),
    (
        WEBHOOK_DELIVERIES_QUEUED,
        Kind::Gauge,
        "Outbound webhook deliveries not yet done.",
    ),
    (
        LIMIT_REFUSALS,
        Kind::Counter,
        "Deposits and bets refused by a responsible-gambling limit.",
    ),
];

fn describe() {
    for &(name, kind, help) in HELP {
        match kind {
            Kind::Counter => describe_counter!(name, help),
            Kind::Gauge => describe_gauge!(name, help),
            Kind::Histogram => describe_histogram!(name, metrics::Unit::Seconds, help),
        }
    }
}

/// Whether a recorder is installed (else recording is wasted work).
pub fn installed() -> bool {
    HANDLE.get().is_some()
}

/// The text exposition of every metric, or `None` before [`install`].
pub fn render() -> Option<String> {
    HANDLE.get().map(PrometheusHandle::render)
}

/// Drains histogram samples into their buckets; run now and then, so that memory stays flat
/// between scrapes (or without any).
pub fn run_upkeep() {
    if let Some(handle) = HANDLE.get() {
        handle.run_upkeep();
    }
}

/// The device class of a deposit's `meta.device`: `desktop`, `mobile`, `tablet` or
/// `unknown` (absent or anything else: the field is free text).
pub fn device_class(device: Option<&str>) -> &'static str {
    match device.map(|d| d.trim().to_ascii_lowercase()).as_deref() {
        Some("desktop") => "desktop",
        Some("mobile") => "mobile",
        Some("tablet") => "tablet",
        _ => "unknown",
    }
}

/// `value` when it is fit for a label (short, plain characters), else `other`: a bound on
/// what a caller's mistake can add to the series.
fn label(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
    if value.is_empty() || value.len() > LABEL_LEN_MAX || !value.chars().all(plain) {
        return OTHER.to_string();
    }
    value.to_string()
}

/// Seconds since `since_ms` (0 for a clock that went back).
fn seconds_since(since_ms: i64) -> f64 {
    (now_ms() - since_ms).max(0) as f64 / 1000.0
}

/// A deposit's start committed: counts it, the provider's answer time, and its decision
/// when the provider decided at once.
pub fn record_payment_started(payment: &PaymentRecord, provider_elapsed: Duration) {
    counter!(
        PAYMENTS_INITIATED,
        "provider" => label(&payment.provider),
        "method" => label(&payment.method),
        "country" => label(&payment.country),
        "device_class" => device_class(payment.device.as_deref()),
    )
    .increment(1);
    record_authorization(&payment.provider, &payment.method, provider_elapsed);
    record_payment_change(payment, PaymentStatus::Initiated);
}

/// The provider took `elapsed` to answer a deposit's start, or a direct acquirer to answer
/// the card's charge (the SLA's authorization time).
pub fn record_authorization(provider: &str, method: &str, elapsed: Duration) {
    histogram!(
        PROVIDER_AUTHORIZATION_DURATION,
        "provider" => label(provider),
        "method" => label(method),
    )
    .record(elapsed.as_secs_f64());
}

/// The outcome label of a deposit's first decision, or `None` while it is undecided.
fn payment_outcome(status: PaymentStatus) -> Option<&'static str> {
    match status {
        PaymentStatus::Initiated | PaymentStatus::Pending => None,
        PaymentStatus::Declined => Some("declined"),
        PaymentStatus::Failed => Some("failed"),
        PaymentStatus::Cancelled => Some("cancelled"),
        PaymentStatus::Expired => Some("expired"),
        // Authorized, or already past it: the issuer said yes.
        _ => Some("approved"),
    }
}

/// Whether a deposit moving from `was` to `now` was approved by this move (its first
/// decision, a yes).
pub fn newly_approved(was: PaymentStatus, now: PaymentStatus) -> bool {
    payment_outcome(was).is_none() && payment_outcome(now) == Some("approved")
}

/// A deposit moved from `was` to its present status in a committed transaction: counts its
/// first decision (with the time it took), a failed 3-D Secure authentication and a
/// chargeback. A call whose status did not change counts nothing.
pub fn record_payment_change(payment: &PaymentRecord, was: PaymentStatus) {
    let now = payment.status;
    if now == was {
        return;
    }
    if payment_outcome(was).is_none() {
        if let Some(outcome) = payment_outcome(now) {
            record_payment_decided(payment, outcome);
        }
    }
    if now == PaymentStatus::ChargedBack {
        counter!(CHARGEBACKS, "provider" => label(&payment.provider)).increment(1);
    }
}

fn record_payment_decided(payment: &PaymentRecord, outcome: &'static str) {
    counter!(
        PAYMENTS,
        "provider" => label(&payment.provider),
        "method" => label(&payment.method),
        "country" => label(&payment.country),
        "device_class" => device_class(payment.device.as_deref()),
        "outcome" => outcome,
    )
    .increment(1);
    histogram!(
        PAYMENT_DURATION,
        "provider" => label(&payment.provider),
        "method" => label(&payment.method),
        "outcome" => outcome,
    )
    .record(seconds_since(payment.created_at_ms));
    if outcome == "declined" && is_authentication_failure(payment.failure_reason.as_deref()) {
        record_threeds(&payment.provider, "failed");
    }
}

/// Whether a decline reason says the player failed 3-D Secure (the sandbox's
/// `authentication_failed`, a PSP's `3ds_failed`, …).
fn is_authentication_failure(reason: Option<&str>) -> bool {
    let Some(reason) = reason.map(str::to_ascii_lowercase) else {
        return false;
    };
    reason.contains("authentication") || reason.contains("3ds") || reason.contains("three_d")
}

/// A verified provider event about a deposit committed, moving it from `was`: its status
/// change and, for an applied refund, the refund.
pub fn record_payment_event(
    payment: &PaymentRecord,
    was: PaymentStatus,
    event: PaymentEventStatus,
    applied: bool,
) {
    record_payment_change(payment, was);
    if applied && event == PaymentEventStatus::Refunded {
        record_refund(&payment.provider, "succeeded");
    }
    if applied && event == PaymentEventStatus::RefundFailed {
        record_refund(&payment.provider, "failed");
    }
}

/// A 3-D Secure challenge presented to the player: counted when a start answers with one
/// (Stripe, Adyen), or, for providers whose hosted page runs 3-D Secure unseen by Kassa
/// (the sandbox), when a payment is captured after one. A challenge the player failed is
/// counted as `failed` when the payment is declined.
pub fn record_threeds_challenge(
    provider: &str,
    start: Option<&kassa_connectors::PaymentStart>,
    captured_after_challenge: bool,
) {
    if matches!(
        start,
        Some(kassa_connectors::PaymentStart::Challenge { .. })
    ) || captured_after_challenge
    {
        record_threeds(provider, "challenged");
    }
}

/// A 3-D Secure result at `provider` (outcomes at [`THREEDS`]).
pub fn record_threeds(provider: &str, outcome: &'static str) {
    counter!(THREEDS, "provider" => label(provider), "outcome" => outcome).increment(1);
}

/// A result of Kassa's own 3DS Server at acquirer account `provider` that lets the
/// authorization go ahead; refusals are counted as `failed` by the decline they cause.
pub fn record_threeds_result(
    provider: &str,
    status: kassa_connectors::threeds::TransStatus,
    challenged: bool,
) {
    use kassa_connectors::threeds::TransStatus;
    let outcome = match (status, challenged) {
        (TransStatus::Y, false) => "frictionless",
        (TransStatus::Y, true) => "challenge_passed",
        (TransStatus::A, _) => "attempted",
        _ => return,
    };
    record_threeds(provider, outcome);
}

/// A refund settled (`succeeded`) or refused by the provider (`failed`).
pub fn record_refund(provider: &str, outcome: &'static str) {
    counter!(REFUNDS, "provider" => label(provider), "outcome" => outcome).increment(1);
}

/// The outcome label of a finished withdrawal, or `None` while it is under way.
fn payout_outcome(status: PayoutStatus) -> Option<&'static str> {
    match status {
        PayoutStatus::Paid => Some("paid"),
        PayoutStatus::Failed => Some("failed"),
        PayoutStatus::Rejected => Some("rejected"),
        PayoutStatus::Cancelled => Some("cancelled"),
        _ => None,
    }
}

/// A withdrawal's end committed (call once, where its status changed): counts it and its
/// duration. A payout still under way counts nothing.
pub fn record_payout_finished(payout: &PayoutRecord) {
    let Some(outcome) = payout_outcome(payout.status) else {
        return;
    };
    let provider = label(payout.provider.as_deref().unwrap_or(NO_PROVIDER));
    let method = label(&payout.method);
    histogram!(
        PAYOUT_DURATION,
        "provider" => provider.clone(),
        "method" => method.clone(),
        "outcome" => outcome,
    )
    .record(seconds_since(payout.created_at_ms));
    counter!(PAYOUTS, "provider" => provider, "method" => method, "outcome" => outcome)
        .increment(1);
}

/// A deposit or bet refused by a responsible-gambling limit of `kind` (a refusal answered
/// again to a replay is not counted again).
pub fn record_limit_refusal(kind: LimitKind) {
    counter!(LIMIT_REFUSALS, "limit" => kind.as_str()).increment(1);
}

/// A KYC check's result committed: counts it and its time to verify.
pub fn record_kyc_check_completed(level: &'static str, outcome: &'static str, ttv_ms: i64) {
    histogram!(KYC_TIME_TO_VERIFY, "level" => level, "outcome" => outcome)
        .record(ttv_ms.max(0) as f64 / 1000.0);
    counter!(KYC_CHECKS, "level" => level, "outcome" => outcome).increment(1);
}

/// Counts one question put to a self-exclusion register (the register kind is a
/// configured value, not input).
pub fn record_register_check(register: &str, outcome: &'static str) {
    counter!(REGISTER_CHECKS, "register" => label(register), "outcome" => outcome).increment(1);
}

/// Rule label of a decision no rule made (every account that takes the payment, in
/// configuration order).
const NO_RULE: &str = "none";

/// A deposit's route and its offers: the decision (its rule and first choice, the split's
/// draw included) and each cascade from one account to the next, by the attempt's outcome
/// (`declined` is a soft decline: a hard one never cascades).
pub fn record_routing(decision: &Decision, attempts: &[Attempt]) {
    if let Some(first) = decision.candidates.first() {
        record_routing_decision(decision.rule.as_deref().unwrap_or(NO_RULE), first);
    }
    for pair in attempts.windows(2) {
        if pair[0].cascaded {
            let reason = match pair[0].outcome {
                "declined" => "soft_decline",
                other => other,
            };
            record_cascade(&pair[0].provider, &pair[1].provider, reason);
        }
    }
}

/// A routing decision: the deposit went to `provider` by `rule`.
pub fn record_routing_decision(rule: &str, provider: &str) {
    counter!(ROUTING_DECISIONS, "rule" => label(rule), "provider" => label(provider)).increment(1);
}

/// Records an AML alert raised, and the case it opened if it opened one.
pub fn record_aml_alert(scenario: &'static str, case_opened: bool) {
    counter!(AML_ALERTS, "scenario" => scenario).increment(1);
    if case_opened {
        counter!(CASES_OPENED).increment(1);
    }
}

/// Records an AML case closed with `reason`.
pub fn record_case_closed(reason: &'static str) {
    counter!(CASES_CLOSED, "reason" => reason).increment(1);
}

/// Records a reviewer's decision on a payout that waited `waited` in the queue.
pub fn record_payout_review(decision: &'static str, waited: Duration) {
    histogram!(PAYOUT_REVIEW_DURATION, "decision" => decision).record(waited.as_secs_f64());
}

/// A pre-authorization risk decision on a deposit or payout (`kind`), with its outcome.
pub fn record_risk_decision(kind: &'static str, outcome: &'static str) {
    counter!(RISK_DECISIONS, "kind" => kind, "outcome" => outcome).increment(1);
}

/// A deposit cascaded from one provider to the next, for `reason` (a decline class such as
/// `soft_decline` or `technical_error`: a bounded set, never a provider's free text).
pub fn record_cascade(from: &str, to: &str, reason: &str) {
    counter!(CASCADES, "from" => label(from), "to" => label(to), "reason" => label(reason))
        .increment(1);
}

pub use kassa_core::routing::CircuitState;

/// The provider account's circuit changed; an open circuit also marks it down, any other
/// state up (the uptime panels read [`PROVIDER_UP`]).
pub fn set_circuit_state(provider: &str, state: CircuitState) {
    gauge!(PROVIDER_CIRCUIT_STATE, "provider" => label(provider)).set(state.gauge() as f64);
    set_provider_up(provider, state != CircuitState::Open);
}

/// The provider account takes traffic (`true`) or not.
pub fn set_provider_up(provider: &str, up: bool) {
    gauge!(PROVIDER_UP, "provider" => label(provider)).set(if up { 1.0 } else { 0.0 });
}

/// An approved deposit cost `cost_minor` in provider fees (minor units of `currency`).
pub fn record_payment_cost(provider: &str, currency: &str, cost_minor: i64) {
    counter!(PAYMENT_COST_MINOR, "provider" => label(provider), "currency" => label(currency))
        .increment(cost_minor.max(0).unsigned_abs());
}

/// An inbound webhook delivery was answered with `outcome`; `provider` is `None` when no
/// account has the name the delivery was sent to.
pub fn record_webhook_received(provider: Option<&str>, outcome: &str) {
    let provider = provider.map_or_else(|| "unknown".to_string(), label);
    counter!(WEBHOOKS_RECEIVED, "provider" => provider, "outcome" => label(outcome)).increment(1);
}

/// Sets the outbox backlog gauge (read from the database at scrape).
pub fn set_outbox_backlog(events: i64) {
    gauge!(OUTBOX_BACKLOG).set(events.max(0) as f64);
}

/// Sets the gauge of players whose deposits failed lately (read from the database at scrape).
pub fn set_deposit_failed_players(players: i64) {
    gauge!(DEPOSIT_FAILED_PLAYERS_15M).set(players.max(0) as f64);
}

/// Sets the outbound webhook queue gauge (read from the database at scrape).
pub fn set_webhook_deliveries_queued(jobs: i64) {
    gauge!(WEBHOOK_DELIVERIES_QUEUED).set(jobs.max(0) as f64);
}

/// An HTTP request was answered: `route` is the matched template (`/v1/payments/{id}`),
/// never the raw path.
pub fn record_http_request(route: &str, status: u16, elapsed: Duration) {
    let status_class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    counter!(HTTP_REQUESTS, "route" => route.to_string(), "status_class" => status_class)
        .increment(1);
    histogram!(HTTP_REQUEST_DURATION, "route" => route.to_string()).record(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_class_is_one_of_four() {
        assert_eq!(device_class(Some("Mobile ")), "mobile");
        assert_eq!(device_class(Some("tablet")), "tablet");
        assert_eq!(device_class(Some("desktop")), "desktop");
        assert_eq!(
            device_class(Some("iPhone 15 / fingerprint 8f3a")),
            "unknown"
        );
        assert_eq!(device_class(None), "unknown");
    }

    #[test]
    fn labels_refuse_what_could_be_free_text() {
        assert_eq!(label("sandbox-2"), "sandbox-2");
        assert_eq!(label("soft_decline"), "soft_decline");
        assert_eq!(label(""), OTHER);
        assert_eq!(label("do not honour"), OTHER);
        assert_eq!(label(&"x".repeat(LABEL_LEN_MAX + 1)), OTHER);
    }

    #[test]
    fn the_first_decision_is_the_outcome() {
        assert_eq!(payment_outcome(PaymentStatus::Pending), None);
        assert_eq!(payment_outcome(PaymentStatus::Authorized), Some("approved"));
        assert_eq!(payment_outcome(PaymentStatus::Captured), Some("approved"));
        assert_eq!(payment_outcome(PaymentStatus::Declined), Some("declined"));
        assert_eq!(payment_outcome(PaymentStatus::Expired), Some("expired"));
        assert_eq!(payout_outcome(PayoutStatus::Processing), None);
        assert_eq!(payout_outcome(PayoutStatus::Rejected), Some("rejected"));
        assert!(newly_approved(
            PaymentStatus::Pending,
            PaymentStatus::Captured
        ));
        assert!(!newly_approved(
            PaymentStatus::Authorized,
            PaymentStatus::Captured
        ));
        assert!(!newly_approved(
            PaymentStatus::ChargedBack,
            PaymentStatus::Captured
        ));
    }

    #[test]
    fn authentication_failures_are_told_from_other_declines() {
        assert!(is_authentication_failure(Some("authentication_failed")));
        assert!(is_authentication_failure(Some("3DS_FAILED")));
        assert!(!is_authentication_failure(Some("insufficient_funds")));
        assert!(!is_authentication_failure(None));
    }

    #[test]
    fn names_follow_the_prometheus_conventions() {
        let mut names: Vec<&str> = HELP.iter().map(|(name, _, _)| *name).collect();
        for &(name, kind, _) in HELP {
            assert!(name.starts_with("kassa_"), "{name}");
            match kind {
                Kind::Counter => assert!(name.ends_with("_total"), "{name}"),
                Kind::Histogram => assert!(name.ends_with("_seconds"), "{name}"),
                Kind::Gauge => assert!(!name.ends_with("_total"), "{name}"),
            }
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), HELP.len(), "a name is described twice");
    }
}
