//! The sandbox ID provider driven over real HTTP by Kassa's own `idv_sandbox` connector: signed
//! requests it takes (and one signed with another key it refuses), an applicant keyed by
//! Kassa's check id, the hosted page, and the result webhook verified by the connector's
//! inbound source, with its retries signed afresh.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use kassa_connectors::{
    Credentials, IdentityProvider, ProviderAccount, ProviderError, ProviderEvent, RawInbound,
    SecretString,
};
use kassa_core::kyc::{KycLevel, VerificationResult};
use kassa_sim::idv::{start, IdvSimConfig};

const API_SECRET: &str = "idv-test-api-secret";
const WEBHOOK_SECRET: &str = "idv-test-webhook-secret";

fn account(base_url: &str, api_secret: &str) -> ProviderAccount {
    let mut credentials = Credentials::new();
    credentials.insert("api_secret", SecretString::from(api_secret));
    credentials.insert("webhook_secret", SecretString::from(WEBHOOK_SECRET));
    let mut settings = serde_json::Map::new();
    settings.insert("base_url".into(), base_url.into());
    ProviderAccount {
        id: "idv-test".into(),
        merchant_id: "mch_test".into(),
        kind: "idv_sandbox".into(),
        display_name: "IDV".into(),
        credentials,
        settings,
    }
}

/// Stands in for Kassa's webhook endpoint: verifies with the connector, answers 503 to the
/// first delivery so the simulator retries.
#[derive(Clone)]
struct Receiver {
    connector: Arc<dyn IdentityProvider>,
    events: Arc<Mutex<Vec<ProviderEvent>>>,
    deliveries: Arc<Mutex<u32>>,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let delivery = {
        let mut deliveries = receiver.deliveries.lock().unwrap();
        *deliveries += 1;
        *deliveries
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let verified = receiver.connector.receive(
        RawInbound {
            metadata: &headers,
            body: &body,
        },
        now,
    );
    let Ok(batch) = verified else {
        return StatusCode::UNAUTHORIZED;
    };
    if delivery == 1 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let event = batch.into_single_event().unwrap();
    receiver.events.lock().unwrap().push(event);
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_runs_from_applicant_to_verified_webhook() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let webhook_url = format!("http://{}/webhook", listener.local_addr().unwrap());
    let sim = start(IdvSimConfig {
        listen: "127.0.0.1:0".into(),
        api_secret: API_SECRET.into(),
        webhook_secret: WEBHOOK_SECRET.into(),
        webhook_url: Some(webhook_url),
        webhook_delay_ms: 10,
        webhook_retry_backoff_ms: 20,
        ..Default::default()
    })
    .await
    .unwrap();
    let connector: Arc<dyn IdentityProvider> = Arc::new(
        kassa_connectors::idv_sandbox::from_account(&account(sim.base_url(), API_SECRET)).unwrap(),
    );
    let receiver = Receiver {
        connector: connector.clone(),
        events: Arc::default(),
        deliveries: Arc::default(),
    };
    let app = Router::new()
        .route("/webhook", post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let forged =
        kassa_connectors::idv_sandbox::from_account(&account(sim.base_url(), "wrong")).unwrap();
    match forged.create_applicant("kyc_forged", KycLevel::Basic).await {
        Err(ProviderError::Rejected { code, .. }) => assert_eq!(code, "invalid_signature"),
        other => panic!("a request signed with another key was taken: {other:?}"),
    }

    let applicant = connector
        .create_applicant("kyc_1", KycLevel::Enhanced)
        .await
        .unwrap();
    let again = connector
        .create_applicant("kyc_1", KycLevel::Enhanced)
        .await
        .unwrap();
    assert_eq!(applicant, again, "the check id keys the applicant");
    let url = connector.start_verification(&applicant).await.unwrap();
    assert_eq!(url, format!("{}/verify/{applicant}", sim.base_url()));
    assert!(matches!(
        connector.start_verification("app_unknown").await,
        Err(ProviderError::Rejected { .. })
    ));

    let browser = reqwest::Client::new();
    let page = browser
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("source_of_funds"), "enhanced asks for it");
    let form = [
        ("first_name", "Ada"),
        ("last_name", "Lovelace"),
        ("birth_date", "1990-12-10"),
        ("document_number", "P1"),
        ("document_country", "SE"),
        ("document_file", "passport.jpg"),
        ("source_of_funds", "salary"),
    ];
    let missing = browser.post(&url).form(&form[..2]).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let mut unlisted = form.to_vec();
    unlisted[4] = ("document_country", "XX");
    let refused = browser.post(&url).form(&unlisted).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let submitted = browser.post(&url).form(&form).send().await.unwrap();
    assert_eq!(submitted.status(), StatusCode::OK);

    for _ in 0..200 {
        if !receiver.events.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let events = receiver.events.lock().unwrap().clone();
    let [ProviderEvent::Verification(event)] = events.as_slice() else {
        panic!("expected one verification event, got {events:?}")
    };
    assert_eq!(event.applicant_id, applicant);
    assert_eq!(event.external_id, "kyc_1");
    assert_eq!(event.level, KycLevel::Enhanced);
    assert_eq!(event.result, VerificationResult::Approved);
    assert!(event.checks.iter().any(|c| c.document == "source_of_funds"));
    assert_eq!(event.document_country.as_deref(), Some("SE"));
    assert_eq!(
        *receiver.deliveries.lock().unwrap(),
        2,
        "the 503 was retried once"
    );
    sim.stop().await;
}
