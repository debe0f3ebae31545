//! A payment's first row and its changes write the payment, its history and its outbox
//! event together, on SQLite and (when `KASSA_TEST_POSTGRES_URL` is set) PostgreSQL, where
//! each is one statement of data-modifying CTEs.

use kassa_core::ids::PaymentId;
use kassa_core::money::{Currency, Money};
use kassa_core::payment::PaymentStatus;
use kassa_store::payments::{PaymentOutboxEvent, PaymentRecord};
use kassa_store::testing::ledger_fixture;
use kassa_store::{HistoryEvent, Store};

kassa_store::store_contract_tests!(a_payment_its_history_and_its_events_are_written_together);

fn new_payment(merchant: &str, id: &str) -> PaymentRecord {
    let eur = Currency::from_code("EUR").unwrap();
    PaymentRecord {
        id: PaymentId::parse(id).unwrap(),
        merchant_id: merchant.parse().unwrap(),
        player_id: "alice".parse().unwrap(),
        provider: "sandbox".into(),
        provider_reference: None,
        method: "card".into(),
        amount: Money::new(1_000, eur),
        status: PaymentStatus::Initiated,
        refunded: Money::new(0, eur),
        return_url: "https://casino.example/back".into(),
        redirect_url: None,
        country: "MT".into(),
        device: None,
        ip: None,
        session_id: None,
        failure_reason: None,
        routing: None,
        risk: None,
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
        routing_arm: None,
        card: None,
    }
}

fn history<'a>(event: &'a str, from: &'a str, to: &'a str) -> HistoryEvent<'a> {
    HistoryEvent {
        source: "api",
        event,
        from,
        to: Some(to),
        actor: None,
        detail: None,
    }
}

async fn a_payment_its_history_and_its_events_are_written_together(store: Store) {
    let fixture = ledger_fixture(&store).await;
    let mut payment = new_payment(&fixture.merchant, "pay_0123456789abcdef0123456789abcdef");
    let mut tx = store.begin().await.unwrap();
    let created = history("created", "initiated", "initiated");
    store
        .insert_payment(&mut tx, &payment, created)
        .await
        .unwrap();
    payment.status = PaymentStatus::Pending;
    payment.provider_reference = Some("psp_1".into());
    let sent = history("sent", "initiated", "pending");
    let event = PaymentOutboxEvent {
        topic: "payment.pending",
        payload: r#"{"status":"pending"}"#,
    };
    store
        .record_payment_change(&mut tx, &payment, sent, Some(event))
        .await
        .unwrap();
    // A change without an event: only the row and the history.
    payment.redirect_url = Some("https://psp.example/3ds".into());
    let noted = history("redirected", "pending", "pending");
    store
        .record_payment_change(&mut tx, &payment, noted, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let stored = store.find_payment(&payment.id).await.unwrap().unwrap();
    assert_eq!(stored.status, PaymentStatus::Pending);
    assert_eq!(stored.provider_reference.as_deref(), Some("psp_1"));
    assert_eq!(stored.redirect_url, payment.redirect_url);
    let events: Vec<(String, String, Option<String>)> = store
        .payment_events(&payment.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event, e.from_status, e.to_status))
        .collect();
    let pending = Some("pending".to_string());
    assert_eq!(
        events,
        [
            (
                "created".into(),
                "initiated".into(),
                Some("initiated".into())
            ),
            ("sent".into(), "initiated".into(), pending.clone()),
            ("redirected".into(), "pending".into(), pending),
        ]
    );
    let outbox = store.outbox_for(payment.id.as_str()).await.unwrap();
    assert_eq!(
        outbox,
        [(
            "payment.pending".to_string(),
            r#"{"status":"pending"}"#.to_string()
        )]
    );
}
