//! A start's risk decision replaces the earlier one of its subject and kind (a retry of the
//! same payment counts once), on SQLite and (when `KASSA_TEST_POSTGRES_URL` is set)
//! PostgreSQL, where the replacement is one statement. The velocity count's other players
//! reach back 30 days through `risk_subject_players` (ADR 94) while the counts read a day.

use kassa_store::risk::{RiskDecisionRecord, VelocityAsk, VelocitySubject};
use kassa_store::{now_ms, Store};

kassa_store::store_contract_tests!(
    a_decision_replaces_only_its_subjects_earlier_one_of_its_kind,
    other_players_count_back_to_the_subjects_since_and_attempts_within_their_windows,
);

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

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const IP: &str = "203.0.113.9";
const CARD: &str = "card-fingerprint-1";

/// A decision of `player` of `kind` made `ago_ms` before `now`, with the shared IP and, for
/// a card's, the shared card.
fn seen(n: usize, player: &str, kind: &str, ago_ms: i64, now: i64) -> RiskDecisionRecord {
    RiskDecisionRecord {
        player_id: player.into(),
        ip: Some(IP.into()),
        card_fingerprint: Some(CARD.into()),
        created_at_ms: now - ago_ms,
        ..decision(
            &format!("rd_seen_{n}"),
            kind,
            &format!("pay_seen_{n}"),
            "approve",
        )
    }
}

async fn other_players_count_back_to_the_subjects_since_and_attempts_within_their_windows(
    store: Store,
) {
    let now = now_ms();
    let records = [
        // Deposits from the IP: two other players within 30 days (p2 twice), one before.
        seen(1, "p2", "deposit", 40 * DAY_MS, now),
        seen(2, "p2", "deposit", 2 * DAY_MS, now),
        seen(3, "p3", "deposit", HOUR_MS / 2, now),
        seen(4, "p4", "deposit", 31 * DAY_MS, now),
        // The asking player's own deposit, and a payout from the IP: neither is another
        // player's deposit.
        seen(5, "p1", "deposit", 2 * HOUR_MS, now),
        seen(6, "p5", "payout", HOUR_MS, now),
        // The card submitted by p6 three days ago (a card's decision: not a deposit from the
        // IP); p7's deposit from elsewhere carried it, but the card counts its submissions.
        seen(7, "p6", "card", 3 * DAY_MS, now),
        RiskDecisionRecord {
            ip: None,
            ..seen(8, "p7", "deposit", 3 * DAY_MS, now)
        },
    ];
    let mut tx = store.begin().await.unwrap();
    for record in &records {
        store.insert_risk_decision(&mut tx, record).await.unwrap();
    }
    tx.commit().await.unwrap();

    let windows = [now - 10 * 60_000, now - HOUR_MS, now - DAY_MS];
    let ask = VelocityAsk {
        merchant_id: "mch_demo",
        player_id: "p1",
        subject_id: "pay_new",
        window_starts_ms: &windows,
    };
    let since_30d = now - 30 * DAY_MS;
    let subjects = [
        (VelocitySubject::Player("p1"), now - DAY_MS),
        (VelocitySubject::Ip(IP), since_30d),
        (VelocitySubject::Card(CARD), since_30d),
    ];
    let mut conn = store.read_connection().await.unwrap();
    let counted = store
        .risk_velocity_in(&mut conn, &ask, &subjects)
        .await
        .unwrap();
    let [player, ip, card] = [&counted[0], &counted[1], &counted[2]];
    assert_eq!(player.attempts, [0, 0, 1], "{player:?}");
    assert_eq!(player.other_players, 0);
    // p3 within the hour and p1 two hours ago; p2 two days ago is in no window.
    assert_eq!(ip.attempts, [0, 1, 2], "{ip:?}");
    assert_eq!(ip.amount_minor, [0, 1_000, 2_000]);
    // p2 and p3, not p4 (31 days), p5 (a payout) or p1 (the asking player).
    assert_eq!(ip.other_players, 2, "{ip:?}");
    assert_eq!(card.attempts, [0, 0, 0], "{card:?}");
    assert_eq!(card.other_players, 1, "{card:?}");

    // Seen again, p4 counts again; a decision older than the one on file changes nothing.
    let mut tx = store.begin().await.unwrap();
    let again = seen(9, "p4", "deposit", 5 * DAY_MS, now);
    store.insert_risk_decision(&mut tx, &again).await.unwrap();
    let older = seen(10, "p3", "deposit", 60 * DAY_MS, now);
    store.insert_risk_decision(&mut tx, &older).await.unwrap();
    tx.commit().await.unwrap();
    let counted = store
        .risk_velocity_in(&mut conn, &ask, &subjects)
        .await
        .unwrap();
    assert_eq!(counted[1].other_players, 3, "{:?}", counted[1]);
}
