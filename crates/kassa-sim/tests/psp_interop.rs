//! The sandbox PSP driven over real HTTP by Kassa's own `SandboxConnector`, with a small
//! receiver standing in for Kassa's `/v1/payments/webhook` that verifies every webhook with
//! the connector's `verify_webhook`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use kassa_connectors::{
    sign_request, PaymentEventStatus, PaymentProvider, PaymentRequest, PayoutEventStatus,
    PayoutRequest, ProviderError, ProviderEvent, ProviderPaymentStatus, ProviderPayoutStatus,
    RefundRequest, SandboxConfig, SandboxConnector,
};
use kassa_core::Currency;
use kassa_sim::{SandboxHandle, SandboxPspConfig};

const API_SECRET: &str = "test-api-secret";
const WEBHOOK_SECRET: &str = "test-webhook-secret";
const WEBHOOK_DELAY_MS: u64 = 20;
const SLOW_APPROVAL_DELAY_MS: u64 = 400;
/// How long to keep listening after the expected events, to catch any extra one.
const QUIET_MS: u64 = 150;
const RETURN_URL: &str = "http://merchant.example/return?session=s1";

const APPROVED: &str = "4242424242424242";
const CHALLENGE: &str = "4000000000003220";
const INSUFFICIENT_FUNDS: &str = "4000000000009995";
const FRAUD: &str = "4100000000000019";
const NO_ANSWER: &str = "4000000000000119";
const SLOW: &str = "4000000000000077";

/// Stands in for Kassa's webhook endpoint.
#[derive(Clone, Default)]
struct Receiver {
    events: Arc<Mutex<Vec<ProviderEvent>>>,
    attempts: Arc<AtomicUsize>,
    rejected: Arc<AtomicUsize>,
    /// Answer 503 to this many deliveries first.
    fail_first: Arc<AtomicUsize>,
}

struct ReceiverState {
    receiver: Receiver,
    verifier: SandboxConnector,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let receiver = &state.receiver;
    receiver.attempts.fetch_add(1, Ordering::SeqCst);
    let failing = receiver
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if failing.is_ok() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let now_unix_s = time::OffsetDateTime::now_utc().unix_timestamp();
    match state.verifier.verify_webhook(&headers, &body, now_unix_s) {
        Ok(event) => {
            receiver.events.lock().unwrap().push(event);
            StatusCode::OK
        }
        Err(_) => {
            receiver.rejected.fetch_add(1, Ordering::SeqCst);
            StatusCode::UNAUTHORIZED
        }
    }
}

impl Receiver {
    fn events(&self) -> Vec<ProviderEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Waits (bounded) for at least `count` events, then a little longer for extra ones.
    async fn wait_for(&self, count: usize) -> Vec<ProviderEvent> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.events.lock().unwrap().len() < count {
            assert!(
                Instant::now() < deadline,
                "expected {count} events, got {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(QUIET_MS)).await;
        self.events()
    }

    /// Asserts no event arrives for a while (several webhook delays).
    async fn assert_quiet(&self) {
        tokio::time::sleep(Duration::from_millis(WEBHOOK_DELAY_MS * 10)).await;
        assert_eq!(self.events(), Vec::new());
        assert_eq!(self.attempts.load(Ordering::SeqCst), 0);
    }

    fn clear(&self) {
        self.events.lock().unwrap().clear();
    }
}

struct Env {
    sim: SandboxHandle,
    connector: SandboxConnector,
    receiver: Receiver,
    browser: reqwest::Client,
}

fn connector_config(base_url: &str) -> SandboxConfig {
    SandboxConfig {
        base_url: base_url.into(),
        api_secret: API_SECRET.into(),
        webhook_secret: WEBHOOK_SECRET.into(),
        timeout_ms: 5_000,
    }
}

async fn env(tweak: impl FnOnce(&mut SandboxPspConfig)) -> Env {
    let receiver = Receiver::default();
    let state = Arc::new(ReceiverState {
        receiver: receiver.clone(),
        // verify_webhook needs only the webhook secret, not the sandbox's address.
        verifier: SandboxConnector::new(connector_config("http://127.0.0.1:9")).unwrap(),
    });
    let app = Router::new()
        .route("/v1/payments/webhook", post(receive))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut config = SandboxPspConfig {
        listen: "127.0.0.1:0".into(),
        api_secret: API_SECRET.into(),
        webhook_secret: WEBHOOK_SECRET.into(),
        webhook_url: Some(format!("http://{receiver_addr}/v1/payments/webhook")),
        webhook_delay_ms: WEBHOOK_DELAY_MS,
        slow_approval_delay_ms: SLOW_APPROVAL_DELAY_MS,
        webhook_retry_backoff_ms: 20,
        webhook_attempts_max: 4,
        webhook_timeout_ms: 2_000,
        ..SandboxPspConfig::default()
    };
    tweak(&mut config);
    let sim = kassa_sim::start(config).await.unwrap();
    let connector = SandboxConnector::new(connector_config(sim.base_url())).unwrap();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Env {
        sim,
        connector,
        receiver,
        browser,
    }
}

fn eur() -> Currency {
    Currency::from_code("EUR").unwrap()
}

struct Paid {
    payment_id: String,
    provider_reference: String,
    /// Where the browser was finally sent.
    location: String,
}

impl Env {
    async fn init(&self, amount_minor: i64) -> (String, String, String) {
        let payment_id = kassa_core::ids::generate("pay");
        let session = self
            .connector
            .init_payment(&PaymentRequest {
                payment_id: payment_id.clone(),
                amount_minor,
                currency: eur(),
                method: "card".into(),
                country: Some("DE".into()),
                return_url: RETURN_URL.into(),
                payment_method_token: None,
            })
            .await
            .unwrap();
        assert_eq!(session.status, ProviderPaymentStatus::Pending);
        let redirect_url = session.redirect_url.expect("a hosted page");
        assert_eq!(
            redirect_url,
            format!("{}/pay/{}", self.sim.base_url(), session.provider_reference)
        );
        (payment_id, session.provider_reference, redirect_url)
    }

    async fn submit_card(&self, reference: &str, card: &str) -> reqwest::Response {
        self.browser
            .post(format!("{}/pay/{reference}", self.sim.base_url()))
            .form(&[
                ("card_number", card),
                ("expiry", "12/99"),
                ("cvc", "123"),
                ("cardholder", "Ada Lovelace"),
            ])
            .send()
            .await
            .unwrap()
    }

    /// Inits a 50.00 EUR payment and pays it on the hosted pages with `card`, answering a
    /// 3-D Secure challenge with `otp` if one comes.
    async fn pay(&self, card: &str, otp: &str) -> Paid {
        let (payment_id, provider_reference, redirect_url) = self.init(5000).await;
        let page = self.browser.get(&redirect_url).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        for id in ["card-number", "expiry", "cvc", "cardholder", "pay"] {
            assert!(
                html.contains(&format!("id=\"{id}\"")),
                "#{id} missing: {html}"
            );
        }
        assert!(html.contains("<label for=\"card-number\">"));
        assert!(html.contains("50.00 EUR"));

        let answer = self.submit_card(&provider_reference, card).await;
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        let mut location = header_location(&answer);
        if location.starts_with("/3ds/") {
            let challenge = self
                .browser
                .get(format!("{}{location}", self.sim.base_url()))
                .send()
                .await
                .unwrap();
            assert_eq!(challenge.status(), StatusCode::OK);
            let html = challenge.text().await.unwrap();
            assert!(html.contains("id=\"otp\"") && html.contains("id=\"submit-otp\""));
            let answer = self
                .browser
                .post(format!("{}{location}", self.sim.base_url()))
                .form(&[("otp", otp)])
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::SEE_OTHER);
            location = header_location(&answer);
        }
        Paid {
            payment_id,
            provider_reference,
            location,
        }
    }
}

fn header_location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

fn expected_return(payment_id: &str, status: &str) -> String {
    format!("{RETURN_URL}&payment_id={payment_id}&status={status}")
}

fn payment_events(events: &[ProviderEvent]) -> Vec<kassa_connectors::PaymentEvent> {
    events
        .iter()
        .map(|event| match event {
            ProviderEvent::Payment(event) => event.clone(),
            other => panic!("expected a payment event, got {other:?}"),
        })
        .collect()
}

fn statuses(events: &[kassa_connectors::PaymentEvent]) -> Vec<PaymentEventStatus> {
    events.iter().map(|event| event.status).collect()
}

#[tokio::test]
async fn an_approved_card_sends_authorized_then_captured() {
    let env = env(|_| {}).await;
    let paid = env.pay(APPROVED, "").await;
    assert_eq!(paid.location, expected_return(&paid.payment_id, "captured"));

    let events = payment_events(&env.receiver.wait_for(2).await);
    assert_eq!(
        statuses(&events),
        [PaymentEventStatus::Authorized, PaymentEventStatus::Captured]
    );
    assert_ne!(events[0].event_id, events[1].event_id);
    for event in &events {
        assert_eq!(event.payment_id, paid.payment_id);
        assert_eq!(event.amount_minor, 5000);
        assert_eq!(event.currency, eur());
        assert_eq!(
            event.provider_reference.as_deref(),
            Some(paid.provider_reference.as_str())
        );
        let age_s = time::OffsetDateTime::now_utc().unix_timestamp() - event.timestamp_unix_s;
        assert!((0..=5).contains(&age_s), "{age_s}");
    }

    let report = env
        .connector
        .get_status(&paid.provider_reference)
        .await
        .unwrap();
    assert_eq!(report.status, ProviderPaymentStatus::Captured);
    assert_eq!(report.payment_id, paid.payment_id);
    assert_eq!((report.amount_minor, report.currency), (5000, eur()));

    // A finished payment cannot be cancelled, and the page no longer takes a card.
    let cancel = env.connector.cancel(&paid.provider_reference).await;
    assert!(
        matches!(&cancel, Err(ProviderError::Rejected { code, .. }) if code == "invalid_state"),
        "{cancel:?}"
    );
    let again = env.submit_card(&paid.provider_reference, APPROVED).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(env.receiver.wait_for(2).await.len(), 2);
    env.sim.stop().await;
}

#[tokio::test]
async fn a_challenge_card_with_the_right_code_is_approved() {
    let env = env(|_| {}).await;
    let paid = env.pay(CHALLENGE, "123456").await;
    assert_eq!(paid.location, expected_return(&paid.payment_id, "captured"));
    let events = payment_events(&env.receiver.wait_for(2).await);
    assert_eq!(
        statuses(&events),
        [PaymentEventStatus::Authorized, PaymentEventStatus::Captured]
    );
}

#[tokio::test]
async fn a_challenge_card_with_a_wrong_code_is_declined() {
    let env = env(|_| {}).await;
    let paid = env.pay(CHALLENGE, "000000").await;
    assert_eq!(paid.location, expected_return(&paid.payment_id, "declined"));
    let events = payment_events(&env.receiver.wait_for(1).await);
    assert_eq!(statuses(&events), [PaymentEventStatus::Declined]);
    assert_eq!(events[0].reason.as_deref(), Some("authentication_failed"));
    // The challenge is one-time: it cannot be answered again.
    let retry = env
        .browser
        .post(format!(
            "{}/3ds/{}",
            env.sim.base_url(),
            paid.provider_reference
        ))
        .form(&[("otp", "123456")])
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    let status = env.connector.get_status(&paid.provider_reference).await;
    assert_eq!(status.unwrap().status, ProviderPaymentStatus::Declined);
    assert_eq!(env.receiver.wait_for(1).await.len(), 1);
}

#[tokio::test]
async fn declining_cards_send_one_declined_event_with_their_reason() {
    for (card, reason) in [
        (INSUFFICIENT_FUNDS, "insufficient_funds"),
        (FRAUD, "suspected_fraud"),
    ] {
        let env = env(|_| {}).await;
        let paid = env.pay(card, "").await;
        assert_eq!(paid.location, expected_return(&paid.payment_id, "declined"));
        let events = payment_events(&env.receiver.wait_for(1).await);
        assert_eq!(statuses(&events), [PaymentEventStatus::Declined], "{card}");
        assert_eq!(events[0].reason.as_deref(), Some(reason));
        assert_eq!(events[0].amount_minor, 5000);
    }
}

#[tokio::test]
async fn a_silent_card_stays_pending_without_webhooks_until_cancelled() {
    let env = env(|_| {}).await;
    let paid = env.pay(NO_ANSWER, "").await;
    assert_eq!(paid.location, expected_return(&paid.payment_id, "pending"));
    env.receiver.assert_quiet().await;
    let report = env
        .connector
        .get_status(&paid.provider_reference)
        .await
        .unwrap();
    assert_eq!(report.status, ProviderPaymentStatus::Pending);

    let status = env
        .connector
        .cancel(&paid.provider_reference)
        .await
        .unwrap();
    assert_eq!(status, ProviderPaymentStatus::Cancelled);
    let events = payment_events(&env.receiver.wait_for(1).await);
    assert_eq!(statuses(&events), [PaymentEventStatus::Cancelled]);
    // Cancelling again (a retried call) is not an error and sends nothing new.
    let again = env
        .connector
        .cancel(&paid.provider_reference)
        .await
        .unwrap();
    assert_eq!(again, ProviderPaymentStatus::Cancelled);
    assert_eq!(env.receiver.wait_for(1).await.len(), 1);
}

#[tokio::test]
async fn a_slow_card_is_approved_after_the_delay() {
    let env = env(|_| {}).await;
    let submitted = Instant::now();
    let paid = env.pay(SLOW, "").await;
    assert_eq!(paid.location, expected_return(&paid.payment_id, "pending"));
    let report = env
        .connector
        .get_status(&paid.provider_reference)
        .await
        .unwrap();
    assert_eq!(report.status, ProviderPaymentStatus::Pending);
    assert!(env.receiver.events().is_empty());

    let events = payment_events(&env.receiver.wait_for(2).await);
    assert!(submitted.elapsed() >= Duration::from_millis(SLOW_APPROVAL_DELAY_MS));
    assert_eq!(
        statuses(&events),
        [PaymentEventStatus::Authorized, PaymentEventStatus::Captured]
    );
    let report = env
        .connector
        .get_status(&paid.provider_reference)
        .await
        .unwrap();
    assert_eq!(report.status, ProviderPaymentStatus::Captured);
}

#[tokio::test]
async fn a_card_failing_luhn_is_refused_on_the_page() {
    let env = env(|_| {}).await;
    let (_, reference, _) = env.init(5000).await;
    let bad_number = "4242424242424241";
    let answer = env.submit_card(&reference, bad_number).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = answer.text().await.unwrap();
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(html.contains("The card number is not valid"), "{html}");
    assert!(html.contains("id=\"card-number\""));
    assert!(
        !html.contains(bad_number),
        "the card number is never echoed back"
    );
    env.receiver.assert_quiet().await;
    let status = env.connector.get_status(&reference).await.unwrap().status;
    assert_eq!(status, ProviderPaymentStatus::Pending);

    // The player corrects the number and pays.
    let answer = env.submit_card(&reference, APPROVED).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(env.receiver.wait_for(2).await.len(), 2);
}

#[tokio::test]
async fn duplicate_mode_delivers_every_event_twice_with_the_same_id() {
    let env = env(|config| config.duplicate_webhooks = true).await;
    env.pay(APPROVED, "").await;
    let events = payment_events(&env.receiver.wait_for(4).await);
    assert_eq!(
        statuses(&events),
        [
            PaymentEventStatus::Authorized,
            PaymentEventStatus::Authorized,
            PaymentEventStatus::Captured,
            PaymentEventStatus::Captured
        ]
    );
    assert_eq!(events[0], events[1]);
    assert_eq!(events[2], events[3]);
    assert_ne!(events[0].event_id, events[2].event_id);
}

#[tokio::test]
async fn out_of_order_mode_sends_captured_before_authorized() {
    let env = env(|config| config.out_of_order_webhooks = true).await;
    env.pay(APPROVED, "").await;
    let events = payment_events(&env.receiver.wait_for(2).await);
    assert_eq!(
        statuses(&events),
        [PaymentEventStatus::Captured, PaymentEventStatus::Authorized]
    );
}

#[tokio::test]
async fn with_autopilot_off_nothing_is_sent_but_status_sync_sees_the_outcome() {
    let env = env(|config| config.autopilot = false).await;
    let paid = env.pay(APPROVED, "").await;
    let declined = env.pay(INSUFFICIENT_FUNDS, "").await;
    let payout = env
        .connector
        .payout(&PayoutRequest {
            payout_id: kassa_core::ids::generate("po"),
            amount_minor: 100,
            currency: eur(),
            method: "card".into(),
            destination: None,
        })
        .await
        .unwrap();
    assert_eq!(payout.status, ProviderPayoutStatus::Pending);
    env.receiver.assert_quiet().await;
    let status = env.connector.get_status(&paid.provider_reference).await;
    assert_eq!(status.unwrap().status, ProviderPaymentStatus::Captured);
    let status = env.connector.get_status(&declined.provider_reference).await;
    assert_eq!(status.unwrap().status, ProviderPaymentStatus::Declined);

    // An explicit sandbox command still sends its webhook.
    let chargeback = env
        .browser
        .post(format!(
            "{}/sandbox/payments/{}/chargeback",
            env.sim.base_url(),
            paid.provider_reference
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(chargeback.status(), StatusCode::OK);
    let events = payment_events(&env.receiver.wait_for(1).await);
    assert_eq!(statuses(&events), [PaymentEventStatus::Chargeback]);
}

#[tokio::test]
async fn refunds_send_refunded_with_their_id_and_amount() {
    let env = env(|_| {}).await;
    let paid = env.pay(APPROVED, "").await;
    env.receiver.wait_for(2).await;
    env.receiver.clear();

    let refund = |refund_id: &str, amount_minor| RefundRequest {
        provider_reference: paid.provider_reference.clone(),
        refund_id: refund_id.into(),
        amount_minor,
        currency: eur(),
    };
    let accepted = env.connector.refund(&refund("rf_1", 2000)).await.unwrap();
    assert_eq!(accepted.refund_id, "rf_1");
    assert_eq!(accepted.provider_reference, paid.provider_reference);
    let events = payment_events(&env.receiver.wait_for(1).await);
    assert_eq!(statuses(&events), [PaymentEventStatus::Refunded]);
    assert_eq!(events[0].refund_id.as_deref(), Some("rf_1"));
    assert_eq!(events[0].amount_minor, 2000);
    assert_eq!(events[0].payment_id, paid.payment_id);
    let status = env.connector.get_status(&paid.provider_reference).await;
    assert_eq!(
        status.unwrap().status,
        ProviderPaymentStatus::PartiallyRefunded
    );

    // More than what is left is refused; a retried refund is not refunded twice.
    let too_much = env.connector.refund(&refund("rf_2", 3001)).await;
    assert!(
        matches!(&too_much, Err(ProviderError::Rejected { code, .. }) if code == "amount_exceeds_refundable"),
        "{too_much:?}"
    );
    env.connector.refund(&refund("rf_1", 2000)).await.unwrap();
    env.connector.refund(&refund("rf_2", 3000)).await.unwrap();
    let events = payment_events(&env.receiver.wait_for(2).await);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].refund_id.as_deref(), Some("rf_2"));
    assert_eq!(events[1].amount_minor, 3000);
    let status = env.connector.get_status(&paid.provider_reference).await;
    assert_eq!(status.unwrap().status, ProviderPaymentStatus::Refunded);
}

#[tokio::test]
async fn payouts_are_paid_or_fail_with_account_closed() {
    let env = env(|_| {}).await;
    let payout = |payout_id: &str, destination: &str| PayoutRequest {
        payout_id: payout_id.into(),
        amount_minor: 12_345,
        currency: eur(),
        method: "bank_transfer".into(),
        destination: Some(destination.into()),
    };
    let paid = env
        .connector
        .payout(&payout("po_ok", "DE89370400440532013000"))
        .await
        .unwrap();
    assert_eq!(paid.status, ProviderPayoutStatus::Pending);
    let events = env.receiver.wait_for(1).await;
    let ProviderEvent::Payout(event) = &events[0] else {
        panic!("expected a payout event: {events:?}");
    };
    assert_eq!(event.payout_id, "po_ok");
    assert_eq!(event.status, PayoutEventStatus::Paid);
    assert_eq!((event.amount_minor, event.currency), (12_345, eur()));
    assert_eq!(
        event.provider_reference.as_deref(),
        Some(paid.provider_reference.as_str())
    );
    assert_eq!(event.reason, None);
    env.receiver.clear();

    env.connector
        .payout(&payout("po_bad", "acct-will-fail"))
        .await
        .unwrap();
    let events = env.receiver.wait_for(1).await;
    let ProviderEvent::Payout(event) = &events[0] else {
        panic!("expected a payout event: {events:?}");
    };
    assert_eq!(event.payout_id, "po_bad");
    assert_eq!(event.status, PayoutEventStatus::Failed);
    assert_eq!(event.reason.as_deref(), Some("account_closed"));
}

#[tokio::test]
async fn chargebacks_and_disputes_send_their_events() {
    let env = env(|_| {}).await;
    let paid = env.pay(APPROVED, "").await;
    env.receiver.wait_for(2).await;
    env.receiver.clear();
    let command = |action: &str| {
        env.browser
            .post(format!(
                "{}/sandbox/payments/{}/{action}",
                env.sim.base_url(),
                paid.provider_reference
            ))
            .send()
    };
    // No dispute to resolve before a chargeback.
    assert_eq!(
        command("dispute_won").await.unwrap().status(),
        StatusCode::CONFLICT
    );

    assert_eq!(
        command("chargeback").await.unwrap().status(),
        StatusCode::OK
    );
    let events = payment_events(&env.receiver.wait_for(1).await);
    assert_eq!(statuses(&events), [PaymentEventStatus::Chargeback]);
    let first_dispute = events[0].dispute_id.clone().expect("a dispute id");
    assert_eq!(events[0].amount_minor, 5000);
    let status = env.connector.get_status(&paid.provider_reference).await;
    assert_eq!(status.unwrap().status, ProviderPaymentStatus::ChargedBack);

    assert_eq!(
        command("dispute_won").await.unwrap().status(),
        StatusCode::OK
    );
    let events = payment_events(&env.receiver.wait_for(2).await);
    assert_eq!(events[1].status, PaymentEventStatus::DisputeWon);
    assert_eq!(events[1].dispute_id.as_ref(), Some(&first_dispute));
    let status = env.connector.get_status(&paid.provider_reference).await;
    assert_eq!(status.unwrap().status, ProviderPaymentStatus::Captured);

    assert_eq!(
        command("chargeback").await.unwrap().status(),
        StatusCode::OK
    );
    env.receiver.wait_for(3).await;
    assert_eq!(
        command("dispute_lost").await.unwrap().status(),
        StatusCode::OK
    );
    let events = payment_events(&env.receiver.wait_for(4).await);
    assert_eq!(events[3].status, PaymentEventStatus::DisputeLost);
    assert_ne!(events[3].dispute_id.as_ref(), Some(&first_dispute));
    assert_eq!(events[3].dispute_id, events[2].dispute_id);
    let status = env.connector.get_status(&paid.provider_reference).await;
    assert_eq!(status.unwrap().status, ProviderPaymentStatus::ChargedBack);
}

#[tokio::test]
async fn webhook_deliveries_are_retried_after_server_errors() {
    let env = env(|_| {}).await;
    env.receiver.fail_first.store(2, Ordering::SeqCst);
    env.pay(APPROVED, "").await;
    let events = payment_events(&env.receiver.wait_for(2).await);
    assert_eq!(
        statuses(&events),
        [PaymentEventStatus::Authorized, PaymentEventStatus::Captured]
    );
    // Two 503s, then the authorized event, then the captured event.
    assert_eq!(env.receiver.attempts.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn webhook_delivery_gives_up_after_the_attempt_limit() {
    let env = env(|config| config.webhook_attempts_max = 3).await;
    env.receiver.fail_first.store(usize::MAX, Ordering::SeqCst);
    env.pay(INSUFFICIENT_FUNDS, "").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while env.receiver.attempts.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(QUIET_MS + 200)).await;
    assert_eq!(env.receiver.attempts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn webhooks_signed_with_another_secret_are_refused_and_not_retried() {
    let env = env(|config| config.webhook_secret = "not-the-shared-secret".into()).await;
    env.pay(APPROVED, "").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while env.receiver.rejected.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(QUIET_MS)).await;
    assert!(env.receiver.events().is_empty());
    // A 4xx is final: one attempt per event.
    assert_eq!(env.receiver.rejected.load(Ordering::SeqCst), 2);
    assert_eq!(env.receiver.attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_retried_init_finds_the_same_payment_and_bad_requests_are_rejected() {
    let env = env(|_| {}).await;
    let request = PaymentRequest {
        payment_id: "pay_retried".into(),
        amount_minor: 1999,
        currency: eur(),
        method: "card".into(),
        country: None,
        return_url: RETURN_URL.into(),
        payment_method_token: None,
    };
    let first = env.connector.init_payment(&request).await.unwrap();
    let second = env.connector.init_payment(&request).await.unwrap();
    assert_eq!(first.provider_reference, second.provider_reference);

    let other_amount = PaymentRequest {
        amount_minor: 2000,
        ..request.clone()
    };
    let conflict = env.connector.init_payment(&other_amount).await;
    assert!(
        matches!(&conflict, Err(ProviderError::Rejected { code, .. }) if code == "duplicate_payment_id"),
        "{conflict:?}"
    );
    let crypto = PaymentRequest {
        payment_id: "pay_crypto".into(),
        method: "crypto".into(),
        ..request
    };
    let refused = env.connector.init_payment(&crypto).await;
    assert!(
        matches!(&refused, Err(ProviderError::Rejected { code, .. }) if code == "unsupported_method"),
        "{refused:?}"
    );
    let missing = env.connector.get_status("sbxpay_missing").await;
    assert!(
        matches!(&missing, Err(ProviderError::Rejected { code, .. }) if code == "not_found"),
        "{missing:?}"
    );
}

/// Sends a raw request to the sandbox API with the given auth headers.
async fn raw(
    env: &Env,
    path: &str,
    body: &str,
    timestamp_unix_s: i64,
    nonce: &str,
    signature: &str,
) -> (StatusCode, serde_json::Value) {
    let response = env
        .browser
        .post(format!("{}{path}", env.sim.base_url()))
        .header("content-type", "application/json")
        .header("X-Kassa-Timestamp", timestamp_unix_s.to_string())
        .header("X-Kassa-Nonce", nonce)
        .header("X-Kassa-Signature", signature)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn the_sandbox_refuses_bad_signatures_stale_timestamps_and_replayed_nonces() {
    let env = env(|_| {}).await;
    let path = "/v1/payouts";
    let body = r#"{"payout_id":"po_raw","amount":"1.00","currency":"EUR","method":"card"}"#;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sign = |timestamp: i64, nonce: &str, body: &str| {
        sign_request(
            API_SECRET.as_bytes(),
            "POST",
            path,
            timestamp,
            nonce,
            body.as_bytes(),
        )
    };
    let error_code =
        |answer: &serde_json::Value| answer["error"].as_str().unwrap_or("").to_string();

    // A correctly signed request passes.
    let nonce = "nonce-aaaaaaaaaaaaaaaa";
    let (status, _) = raw(&env, path, body, now, nonce, &sign(now, nonce, body)).await;
    assert_eq!(status, StatusCode::CREATED);

    // The very same request again: replayed nonce.
    let (status, answer) = raw(&env, path, body, now, nonce, &sign(now, nonce, body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&answer), "replayed_nonce");

    // Signed with the wrong secret, or over another body.
    let nonce = "nonce-bbbbbbbbbbbbbbbb";
    let wrong_secret = sign_request(b"wrong", "POST", path, now, nonce, body.as_bytes());
    let (status, answer) = raw(&env, path, body, now, nonce, &wrong_secret).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&answer), "invalid_signature");
    let nonce = "nonce-cccccccccccccccc";
    let tampered = body.replace("1.00", "1000.00");
    let (status, answer) = raw(&env, path, &tampered, now, nonce, &sign(now, nonce, body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&answer), "invalid_signature");

    // Timestamps more than 300 s away, either way, even when correctly signed.
    for (offset_s, nonce) in [
        (-301, "nonce-dddddddddddddddd"),
        (301, "nonce-eeeeeeeeeeeeeeee"),
    ] {
        let stamp = now + offset_s;
        let (status, answer) = raw(&env, path, body, stamp, nonce, &sign(stamp, nonce, body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{offset_s}");
        assert_eq!(error_code(&answer), "stale_timestamp");
    }

    // A short nonce, and no headers at all.
    let short = "short";
    let (status, answer) = raw(&env, path, body, now, short, &sign(now, short, body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&answer), "invalid_nonce");
    let unsigned = env
        .browser
        .get(format!("{}/v1/payments/sbxpay_x", env.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    let answer: serde_json::Value = unsigned.json().await.unwrap();
    assert_eq!(error_code(&answer), "missing_signature");

    // Only the first, correctly signed request had an effect.
    let events = env.receiver.wait_for(1).await;
    assert_eq!(events.len(), 1);
}
