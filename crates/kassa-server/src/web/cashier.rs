//! The page the player's browser returns to after the provider's page: it shows the
//! deposit's status and follows it live (Server-Sent Events), with a plain link to reload
//! where scripts do not run.

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::error::ApiError;
use crate::AppState;

/// The return page's query.
#[derive(Debug, Deserialize)]
pub struct ReturnQuery {
    pub payment_id: String,
}

/// `GET /cashier/return?payment_id=…`
pub async fn return_page(
    State(state): State<AppState>,
    Query(query): Query<ReturnQuery>,
) -> Result<Response, ApiError> {
    kassa_core::ids::validate_external(&query.payment_id)
        .map_err(|e| ApiError::validation("payment_id", e.to_string()))?;
    // A valid id that is not a payment id names no payment.
    let found = match kassa_core::ids::PaymentId::parse(&query.payment_id) {
        Ok(payment_id) => state.store.find_payment(&payment_id).await?,
        Err(_) => None,
    };
    let payment =
        found.ok_or_else(|| crate::service::payments::payment_not_found(&query.payment_id))?;
    let amount = payment.amount.to_string();
    let next = super::continue_url(&payment);
    let status = payment.status.as_str();
    let id = &payment.id;
    let head = super::head(
        &format!("Deposit {status}"),
        "body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem; color: #1a1a1a; }
.status { font-size: 1.5rem; font-weight: 600; }
.captured { color: #0a6b2d; } .declined, .failed, .expired, .cancelled { color: #a4161a; }",
    );
    let page = format!(
        r#"{head}<main>
<h1>Your deposit of {amount}</h1>
<p>Status: <span id="status" class="status {status}" role="status" aria-live="polite">{status}</span></p>
<p id="explain">{explain}</p>
<p id="continue"{hidden}><a id="continue-link" href="{next}">Continue your payment with another provider</a></p>
<p><a href="?payment_id={id}">Refresh</a></p>
</main>
<script>
const el = document.getElementById("status");
const explain = document.getElementById("explain");
const done = "The money is in your account.";
const texts = {{captured: done, partially_refunded: done, refunded: done, charged_back: "The payment was disputed and reversed.", declined: "Your bank declined the payment. No money was taken.", failed: "The payment failed. No money was taken.", expired: "The payment timed out. No money was taken.", cancelled: "The payment was cancelled."}};
const waiting = ["initiated", "pending", "authorized"];
if (window.EventSource && waiting.includes(el.textContent)) {{
  const events = new EventSource("/cashier/payments/{id}/events");
  events.addEventListener("status", (e) => {{
    const data = JSON.parse(e.data);
    const s = data.status;
    if (data.continue_url) {{
      document.getElementById("continue-link").href = data.continue_url;
      document.getElementById("continue").hidden = false;
    }}
    el.textContent = s; el.className = "status " + s;
    document.title = "Deposit " + s;
    explain.textContent = data.continue_url ? "The first provider could not take your payment; another one can." : (texts[s] || "We are waiting for the payment provider.");
    if (!waiting.includes(s)) events.close();
  }});
}}
</script>
</body>
</html>"#,
        explain = match next {
            Some(_) => "The first provider could not take your payment; another one can.",
            None => explanation(status),
        },
        hidden = if next.is_some() { "" } else { " hidden" },
        next = super::escape_html(next.unwrap_or("#")),
    );
    Ok(Html(page).into_response())
}

fn explanation(status: &str) -> &'static str {
    match status {
        "captured" | "partially_refunded" | "refunded" => "The money is in your account.",
        "charged_back" => "The payment was disputed and reversed.",
        "declined" => "Your bank declined the payment. No money was taken.",
        "failed" => "The payment failed. No money was taken.",
        "expired" => "The payment timed out. No money was taken.",
        "cancelled" => "The payment was cancelled.",
        _ => "We are waiting for the payment provider.",
    }
}
