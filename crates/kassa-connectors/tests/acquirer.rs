//! The ISO 8583 acquirer connector over real TCP against Kassa's host simulator.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kassa_connectors::acquirer::advice::{AdviceAnswer, AdviceQueue, ReversalAdvice};
use kassa_connectors::acquirer::numbers::{MemoryTraceNumbers, TraceNumbers};
use kassa_connectors::acquirer::{self, AcquirerConnector, AcquirerServices};
use kassa_connectors::{
    CardDetails, Credentials, PaymentProvider, PaymentRequest, PaymentStart, PayoutRequest,
    ProviderAccount, ProviderError, ProviderPaymentStatus, ProviderPayoutStatus, RefundRequest,
};
use kassa_core::Currency;
use kassa_sim::iso8583::{start, Iso8583HostConfig, Iso8583HostHandle};

/// Luhn-valid test cards of the simulator, by what it does with them.
const APPROVE: &str = "4000000000000002";
const DO_NOT_HONOUR: &str = "4000000000070005";
const INSUFFICIENT_FUNDS: &str = "4000000000000051";
const ISSUER_UNAVAILABLE: &str = "4000000000020091";
const SLOW: &str = "4000000000000077";
const DROPS: &str = "4000000000040099";

/// Advices the connector queued and has not cancelled, as the server's job queue keeps them.
#[derive(Default)]
struct RecordedAdvices(Mutex<Vec<ReversalAdvice>>);

#[async_trait]
impl AdviceQueue for RecordedAdvices {
    async fn enqueue(&self, advice: ReversalAdvice, due_in: Duration) -> Result<(), ProviderError> {
        assert!(
            due_in > Duration::ZERO,
            "an advice is never due before its request's timeout"
        );
        self.0.lock().unwrap().push(advice);
        Ok(())
    }

    async fn cancel(&self, advice: &ReversalAdvice) -> Result<(), ProviderError> {
        self.0.lock().unwrap().retain(|queued| queued != advice);
        Ok(())
    }
}

impl RecordedAdvices {
    fn taken(&self) -> Vec<ReversalAdvice> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

async fn host(ignore_advices: u32) -> Iso8583HostHandle {
    start(Iso8583HostConfig {
        listen: "127.0.0.1:0".into(),
        slow_delay_ms: 5_000,
        ignore_advices,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn account(address: &str, timeout_ms: u64) -> ProviderAccount {
    let settings = serde_json::json!({
        "address": address,
        "terminal_id": "KASSA001",
        "card_acceptor_id": "CASINO-MT-01",
        "timeout_ms": timeout_ms,
        "echo_interval_ms": 200,
        "reconnect_min_ms": 20,
        "reconnect_max_ms": 200,
        "currencies": "EUR,GBP",
        "card_page_url": "https://kassa.example/pay/card/",
    });
    ProviderAccount {
        id: "acquirer-eu".into(),
        merchant_id: "mch_demo".into(),
        kind: acquirer::KIND.into(),
        display_name: "Direct acquirer".into(),
        credentials: Credentials::new(),
        settings: settings.as_object().unwrap().clone(),
    }
}

struct Rig {
    host: Iso8583HostHandle,
    connector: AcquirerConnector,
    advices: Arc<RecordedAdvices>,
    numbers: Arc<MemoryTraceNumbers>,
}

async fn rig(ignore_advices: u32, timeout_ms: u64) -> Rig {
    let host = host(ignore_advices).await;
    let advices = Arc::new(RecordedAdvices::default());
    let numbers = Arc::new(MemoryTraceNumbers::default());
    let connector = connect(&host, &numbers, &advices, timeout_ms);
    Rig {
        host,
        connector,
        advices,
        numbers,
    }
}

fn connect(
    host: &Iso8583HostHandle,
    numbers: &Arc<MemoryTraceNumbers>,
    advices: &Arc<RecordedAdvices>,
    timeout_ms: u64,
) -> AcquirerConnector {
    let services = AcquirerServices {
        numbers: numbers.clone() as Arc<dyn TraceNumbers>,
        advices: advices.clone() as Arc<dyn AdviceQueue>,
    };
    acquirer::from_account(
        &account(&host.local_addr().to_string(), timeout_ms),
        services,
    )
    .unwrap()
}

fn card(pan: &str) -> CardDetails {
    CardDetails::new(pan, "3012", "2612").unwrap()
}

fn deposit(payment_id: &str, amount_minor: i64) -> PaymentRequest {
    PaymentRequest {
        payment_id: payment_id.into(),
        amount_minor,
        currency: Currency::from_code("EUR").unwrap(),
        method: "card".into(),
        country: Some("MT".into()),
        return_url: "https://casino.example/back".into(),
        payment_method_token: None,
    }
}

/// Waits until the host has read a request of `mti` (the session signs on in the background).
async fn wait_for(host: &Iso8583HostHandle, mti: &str, count: usize) {
    for _ in 0..200 {
        if host.received().iter().filter(|(m, _)| m == mti).count() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the host never read {count} × {mti}: {:?}", host.received());
}

/// Charges with retries while the session is still signing on.
async fn charge(
    connector: &AcquirerConnector,
    payment_id: &str,
    pan: &str,
) -> Result<kassa_connectors::CardCharge, ProviderError> {
    for _ in 0..100 {
        match connector
            .charge_card(&deposit(payment_id, 2500), &card(pan), None)
            .await
        {
            Err(ProviderError::Unavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
    panic!("the session never came up");
}

#[tokio::test]
async fn a_deposit_redirects_to_the_card_page_and_the_card_is_captured_by_a_0200() {
    let rig = rig(0, 2_000).await;
    wait_for(&rig.host, "0800", 1).await;
    let started = rig
        .connector
        .start_payment(&deposit("pay_1", 2500))
        .await
        .unwrap();
    assert_eq!(
        started.start,
        PaymentStart::Redirect {
            url: "https://kassa.example/pay/card/pay_1".into()
        }
    );
    let waiting = rig
        .connector
        .get_status(&started.provider_reference)
        .await
        .unwrap();
    assert_eq!(waiting.payment_id, "pay_1");
    assert_eq!(waiting.status, ProviderPaymentStatus::Pending);
    let charged = charge(&rig.connector, "pay_1", APPROVE).await.unwrap();
    assert!(charged.captured);
    assert_eq!(charged.started.start, PaymentStart::Authorized);
    let reference = charged.started.provider_reference;
    assert!(reference.starts_with("KASSA001:"), "{reference}");
    let purchases: Vec<_> = rig
        .host
        .received()
        .into_iter()
        .filter(|(m, _)| m == "0200")
        .collect();
    assert_eq!(purchases.len(), 1);
    assert_eq!(reference.split(':').nth(1), Some(purchases[0].1.as_str()));
    // The reversal stays queued: the server calls it off in the transaction that records
    // the answer (ADR 49), by the key the charge hands back.
    let [queued] = rig.advices.taken().try_into().unwrap();
    assert_eq!(charged.reversal_advice_key, Some(queued.key()));
    let debug = format!("{:?} {:?}", rig.connector, card(APPROVE));
    assert!(!debug.contains(APPROVE), "{debug}");
}

#[tokio::test]
async fn declines_are_classed_hard_or_soft() {
    let rig = rig(0, 2_000).await;
    for (pan, reason, soft) in [
        (DO_NOT_HONOUR, "do_not_honour", false),
        (INSUFFICIENT_FUNDS, "insufficient_funds", false),
        (ISSUER_UNAVAILABLE, "issuer_unavailable", true),
    ] {
        let charged = charge(&rig.connector, "pay_d", pan).await.unwrap();
        assert!(!charged.captured, "{pan}");
        let [queued] = rig.advices.taken().try_into().unwrap();
        assert_eq!(charged.reversal_advice_key, Some(queued.key()), "{pan}");
        assert_eq!(charged.soft_decline, soft, "{pan}");
        assert_eq!(
            charged.started.start,
            PaymentStart::Declined {
                reason: Some(reason.into())
            }
        );
    }
}

#[tokio::test]
async fn a_timeout_queues_a_reversal_advice_that_is_repeated_until_the_host_answers() {
    let rig = rig(2, 300).await;
    let charged = charge(&rig.connector, "pay_slow", SLOW).await;
    assert_eq!(charged.unwrap_err(), ProviderError::Timeout);
    let [advice] = rig.advices.taken().try_into().unwrap();
    assert_eq!(advice.reference_id, "pay_slow");
    assert_eq!(advice.amount, "000000002500");
    let serialized = serde_json::to_string(&advice).unwrap();
    assert!(!serialized.contains(SLOW), "no PAN in a job: {serialized}");
    // The host ignores the first two advices, as a host that is down would.
    let mut answers = Vec::new();
    for attempt in 0..4 {
        let answer = rig
            .connector
            .send_reversal_advice(&advice, attempt > 0)
            .await;
        let done = answer.is_ok();
        answers.push(answer);
        if done {
            break;
        }
    }
    assert_eq!(
        answers,
        [
            Err(ProviderError::Timeout),
            Err(ProviderError::Timeout),
            Ok(AdviceAnswer::Reversed)
        ]
    );
    let advices: Vec<String> = rig
        .host
        .received()
        .into_iter()
        .map(|(mti, _)| mti)
        .filter(|mti| mti.starts_with("04"))
        .collect();
    assert_eq!(advices, ["0420", "0421", "0421"]);
}

#[tokio::test]
async fn a_dropped_connection_after_the_write_is_ambiguous_and_reversed_then_the_session_reconnects(
) {
    let rig = rig(0, 2_000).await;
    let charged = charge(&rig.connector, "pay_drop", DROPS).await;
    assert_eq!(charged.unwrap_err(), ProviderError::Timeout);
    let [advice] = rig.advices.taken().try_into().unwrap();
    wait_for(&rig.host, "0800", 2).await;
    let answer = loop {
        match rig.connector.send_reversal_advice(&advice, false).await {
            Err(ProviderError::Unavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => break other,
        }
    };
    assert_eq!(
        answer,
        Ok(AdviceAnswer::OriginalUnknown),
        "the host never had it"
    );
    assert!(
        charge(&rig.connector, "pay_after", APPROVE)
            .await
            .unwrap()
            .captured
    );
}

#[tokio::test]
async fn refunds_and_card_payouts_are_0200s_with_processing_codes_20_and_26() {
    let rig = rig(0, 2_000).await;
    let charged = charge(&rig.connector, "pay_r", APPROVE).await.unwrap();
    let refund = |amount_minor, refund_id: &str| RefundRequest {
        provider_reference: charged.started.provider_reference.clone(),
        refund_id: refund_id.into(),
        amount_minor,
        currency: Currency::from_code("EUR").unwrap(),
    };
    rig.advices.taken();
    let accepted = rig.connector.refund(&refund(1000, "rf_1")).await.unwrap();
    assert!(accepted.settled);
    // An approval's reversal stays queued for the server's recording transaction (ADR 49);
    // a refusal's is called off at once (the host changed nothing).
    let [queued] = rig.advices.taken().try_into().unwrap();
    assert_eq!(accepted.reversal_advice_key, Some(queued.key()));
    let too_much = rig
        .connector
        .refund(&refund(2000, "rf_2"))
        .await
        .unwrap_err();
    assert!(
        matches!(&too_much, ProviderError::Rejected { code, .. } if code == "invalid_amount"),
        "{too_much:?}"
    );
    assert!(
        rig.advices.taken().is_empty(),
        "a refused refund's advice is cancelled"
    );
    let payout = PayoutRequest {
        payout_id: "po_1".into(),
        amount_minor: 700,
        currency: Currency::from_code("GBP").unwrap(),
        method: "card".into(),
        destination: None,
    };
    let paid = rig
        .connector
        .payout_to_card(&payout, &card(APPROVE))
        .await
        .unwrap();
    assert_eq!(paid.status, ProviderPayoutStatus::Paid);
    let [queued] = rig.advices.taken().try_into().unwrap();
    assert_eq!(paid.reversal_advice_key, Some(queued.key()));
    let refused = rig
        .connector
        .payout_to_card(&payout, &card(INSUFFICIENT_FUNDS))
        .await
        .unwrap();
    assert_eq!(refused.status, ProviderPayoutStatus::Failed);
    assert_eq!(refused.reversal_advice_key, None);
    assert!(rig.advices.taken().is_empty());
    assert!(matches!(
        rig.connector.payout(&payout).await,
        Err(ProviderError::Unsupported(_))
    ));
}

#[tokio::test]
async fn a_rebuilt_connector_on_the_same_numbers_never_reuses_a_stan() {
    let rig = rig(0, 2_000).await;
    charge(&rig.connector, "pay_a", APPROVE).await.unwrap();
    rig.connector.shutdown().await;
    wait_for(&rig.host, "0800", 2).await; // sign-on, sign-off
    let again = connect(&rig.host, &rig.numbers, &rig.advices, 2_000);
    charge(&again, "pay_b", APPROVE).await.unwrap();
    let stans: Vec<String> = rig
        .host
        .received()
        .into_iter()
        .map(|(_, stan)| stan)
        .collect();
    let mut unique = stans.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), stans.len(), "{stans:?}");
}

#[tokio::test]
async fn echoes_keep_the_session_alive() {
    let rig = rig(0, 2_000).await;
    // Sign-on plus at least two echoes at 200 ms.
    wait_for(&rig.host, "0800", 3).await;
    assert!(
        charge(&rig.connector, "pay_e", APPROVE)
            .await
            .unwrap()
            .captured
    );
}

#[tokio::test]
async fn an_unreachable_host_is_unavailable_at_once() {
    let address = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let advices = Arc::new(RecordedAdvices::default());
    let numbers = Arc::new(MemoryTraceNumbers::default());
    let services = AcquirerServices {
        numbers: numbers as Arc<dyn TraceNumbers>,
        advices: advices.clone() as Arc<dyn AdviceQueue>,
    };
    let connector =
        acquirer::from_account(&account(&address.to_string(), 1_000), services).unwrap();
    let started = std::time::Instant::now();
    let charged = connector
        .charge_card(&deposit("pay_u", 100), &card(APPROVE), None)
        .await;
    assert!(
        matches!(charged, Err(ProviderError::Unavailable(_))),
        "{charged:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(900));
    assert!(
        advices.taken().is_empty(),
        "nothing left, nothing to reverse"
    );
}

#[test]
fn account_settings_are_checked() {
    let mut bad = account("127.0.0.1:1", 1000);
    bad.settings.remove("terminal_id");
    assert!(acquirer::config_of(&bad).is_err());
    let mut bad = account("127.0.0.1:1", 1000);
    bad.settings.insert("frame_header".into(), "morse".into());
    assert!(acquirer::config_of(&bad).is_err());
    let mut bad = account("127.0.0.1:1", 1000);
    bad.settings.insert("currencies".into(), "EUR,XXX".into());
    assert!(acquirer::config_of(&bad).is_err());
    let config = acquirer::config_of(&account("127.0.0.1:1", 1000)).unwrap();
    assert_eq!(config.terminal.terminal_id, "KASSA001");
    assert_eq!(
        config.card_page_url.as_deref(),
        Some("https://kassa.example/pay/card")
    );
}
