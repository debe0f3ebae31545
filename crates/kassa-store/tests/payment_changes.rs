//! A payment's first row and its changes write the payment, its history and its outbox
//! events together, on SQLite and (when `KASSA_TEST_POSTGRES_URL` is set) PostgreSQL, where
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
    // Started: created, sent to the provider and authorized at once, as a start records it.
    payment.status = PaymentStatus::Authorized;
    payment.provider_reference = Some("psp_1".into());
    payment.updated_at_ms = 1_250;
    let created = history("created", "initiated", "initiated");
    let started = [
        history("sent", "initiated", "pending"),
        history("authorized", "pending", "authorized"),
    ];
    let events = [
        PaymentOutboxEvent {
            topic: "payment.pending",
            payload: r#"{"status":"pending"}"#,
        },
        PaymentOutboxEvent {
            topic: "payment.authorized",
            payload: r#"{"status":"authorized"}"#,
        },
    ];
    let mut tx = store.begin().await.unwrap();
    store
        .insert_started_payment(&mut tx, &payment, created, &started, &events)
        .await
        .unwrap();
    // A change without an event: only the row and the history.
    payment.redirect_url = Some("https://psp.example/3ds".into());
    let noted = history("redirected", "authorized", "authorized");
    store
        .record_payment_change(&mut tx, &payment, noted, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let stored = store.find_payment(&payment.id).await.unwrap().unwrap();
    assert_eq!(stored.status, PaymentStatus::Authorized);
    assert_eq!(stored.provider_reference.as_deref(), Some("psp_1"));
    assert_eq!(stored.redirect_url, payment.redirect_url);
    assert_eq!(stored.created_at_ms, 1_000);
    let events: Vec<(String, String, Option<String>, i64)> = store
        .payment_events(&payment.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event, e.from_status, e.to_status, e.created_at_ms))
        .collect();
    let row = |event: &str, from: &str, to: &str, at_ms: i64| {
        (
            event.to_string(),
            from.to_string(),
            Some(to.to_string()),
            at_ms,
        )
    };
    assert_eq!(events.len(), 4, "{events:?}");
    // The first row at the payment's creation, the start's changes at its last change, in
    // order.
    assert_eq!(
        events[..3],
        [
            row("created", "initiated", "initiated", 1_000),
            row("sent", "initiated", "pending", 1_250),
            row("authorized", "pending", "authorized", 1_250),
        ]
    );
    assert_eq!(events[3].0, "redirected");
    let outbox = store.outbox_for(payment.id.as_str()).await.unwrap();
    let topics: Vec<&str> = outbox.iter().map(|(topic, _)| topic.as_str()).collect();
    assert_eq!(topics, ["payment.pending", "payment.authorized"]);
    assert_eq!(outbox[1].1, r#"{"status":"authorized"}"#);
}
