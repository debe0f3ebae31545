//! A start's risk decision replaces the earlier one of its subject and kind (a retry of the
//! same payment counts once), on SQLite and (when `KASSA_TEST_POSTGRES_URL` is set)
//! PostgreSQL, where the replacement is one statement.

use kassa_store::risk::RiskDecisionRecord;
use kassa_store::Store;

kassa_store::store_contract_tests!(a_decision_replaces_only_its_subjects_earlier_one_of_its_kind);

fn decision(id: &str, kind: &str, subject_id: &str, outcome: &str) -> RiskDecisionRecord {
    RiskDecisionRecord {
        id: id.into(),
        merchant_id: "mch_demo".into(),
        player_id: "p1".into(),
        kind: kind.into(),
        subject_id: subject_id.into(),
        jurisdiction: Some("MT".into()),
        ip: None,
        device: None,
        card_fingerprint: None,
        email_key: None,
        amount_minor: 1_000,
        outcome: outcome.into(),
        score: 0,
        features: "{}".into(),
        decision: "{}".into(),
        created_at_ms: 1_000,
    }
}

async fn a_decision_replaces_only_its_subjects_earlier_one_of_its_kind(store: Store) {
    let earlier = [
        decision("rd_1", "deposit", "pay_1", "decline"),
        decision("rd_2", "deposit", "pay_2", "approve"),
        decision("rd_3", "payout", "pay_1", "approve"),
    ];
    let mut tx = store.begin().await.unwrap();
    for record in &earlier {
        store.insert_risk_decision(&mut tx, record).await.unwrap();
    }
    tx.commit().await.unwrap();

    let retry = decision("rd_4", "deposit", "pay_1", "approve");
    let mut tx = store.begin().await.unwrap();
    store.replace_risk_decision(&mut tx, &retry).await.unwrap();
    tx.commit().await.unwrap();

    let stored = store
        .risk_decisions_since(0, Some("mch_demo"), None, 100)
        .await
        .unwrap();
    let mut ids: Vec<&str> = stored.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["rd_2", "rd_3", "rd_4"], "{stored:?}");
    let replaced = stored.iter().find(|d| d.id == "rd_4").unwrap();
    assert_eq!(replaced, &retry);
}
