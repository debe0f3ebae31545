//! A key claimed with its final answer inside the effect's transaction (a deposit's start,
//! ADR 0034): taken once, even by two transactions at the same moment (two nodes), on
//! SQLite and (when `KASSA_TEST_POSTGRES_URL` is set) PostgreSQL.

use std::time::Duration;

use kassa_store::idempotency::{claim_idempotency_key_answered_in, Claim};
use kassa_store::{now_ms, Store};

kassa_store::store_contract_tests!(
    a_key_claimed_with_its_answer_at_once_by_two_is_taken_once,
    only_a_stale_claim_without_an_answer_is_taken_over,
);

const MERCHANT: &str = "mch_claims";
const HASH: &str = "hash-of-the-request";
/// How long a claim may sit unanswered before another request may take it over.
const STALE_AFTER_MS: i64 = 60_000;

async fn claim(store: &Store, key: &str, hash: &str, stale_before_ms: i64, body: &str) -> bool {
    let mut tx = store.begin_grouped().await.unwrap();
    let claimed = claim_idempotency_key_answered_in(
        &mut tx,
        (MERCHANT, key, hash),
        stale_before_ms,
        201,
        body,
    )
    .await
    .unwrap();
    match claimed {
        true => tx.commit().await.unwrap(),
        false => tx.rollback().await.unwrap(),
    }
    claimed
}

async fn peek(store: &Store, key: &str) -> Claim {
    store
        .peek_idempotency_key(MERCHANT, key, HASH, STALE_AFTER_MS)
        .await
        .unwrap()
}

async fn a_key_claimed_with_its_answer_at_once_by_two_is_taken_once(store: Store) {
    let stale_before_ms = now_ms() - STALE_AFTER_MS;
    let mut first = store.begin_grouped().await.unwrap();
    let key = (MERCHANT, "twin", HASH);
    assert!(
        claim_idempotency_key_answered_in(&mut first, key, stale_before_ms, 201, "first")
            .await
            .unwrap()
    );
    // The twin (another node's start with the same key) waits for the first's transaction.
    let twin = tokio::spawn({
        let store = store.clone();
        async move { claim(&store, "twin", HASH, stale_before_ms, "twin").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!twin.is_finished(), "the twin waits for the first's commit");
    first.commit().await.unwrap();
    assert!(!twin.await.unwrap(), "the twin does not get the key");
    assert_eq!(
        peek(&store, "twin").await,
        Claim::Replay {
            status: 201,
            body: "first".into()
        }
    );
}

async fn only_a_stale_claim_without_an_answer_is_taken_over(store: Store) {
    let now = now_ms();
    // A claim taken before its handler ran (another endpoint's, or a stopped request's).
    for key in ["fresh", "stale", "other-request"] {
        let claimed = store
            .claim_idempotency_key(MERCHANT, key, HASH, STALE_AFTER_MS)
            .await
            .unwrap();
        assert_eq!(claimed, Claim::Claimed);
    }
    assert!(claim(&store, "answered", HASH, now - STALE_AFTER_MS, "first").await);

    // Still running: not taken.
    assert!(!claim(&store, "fresh", HASH, now - STALE_AFTER_MS, "second").await);
    assert_eq!(peek(&store, "fresh").await, Claim::InUse);
    // Answered: never taken again, the first answer stays.
    assert!(!claim(&store, "answered", HASH, now + STALE_AFTER_MS, "second").await);
    let first = Claim::Replay {
        status: 201,
        body: "first".into(),
    };
    assert_eq!(peek(&store, "answered").await, first);
    // Stale, but claimed for another request: not taken.
    assert!(
        !claim(
            &store,
            "other-request",
            "another-hash",
            now + 1_000,
            "second"
        )
        .await
    );
    // Stale and unanswered (its request stopped with no effect): taken, with the answer.
    assert!(claim(&store, "stale", HASH, now + 1_000, "taken over").await);
    assert_eq!(
        peek(&store, "stale").await,
        Claim::Replay {
            status: 201,
            body: "taken over".into()
        }
    );
}
