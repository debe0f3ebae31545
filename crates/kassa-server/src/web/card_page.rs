//! Kassa's own card page, for deposits routed to a direct acquirer (ADR 49): the player
//! types the card number, expiry and CVC; the page checks the Luhn digit and the expiry
//! before sending, the server checks them again, charges the card through the acquirer and
//! sends the browser to the deposit's status page.
//!
//! With a vault configured (ADR 50) the player may save the card ("save this card"); a
//! returning player pays with a saved card, named by its token. The card number is otherwise
//! in this request's memory only: never logged, and the CVC goes nowhere past the check.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use kassa_connectors::card::{expiry_valid, luhn_valid};
use kassa_connectors::CardDetails;
use kassa_core::ids::PaymentId;
use kassa_store::acquirer::VaultCardRecord;
use kassa_store::payments::PaymentRecord;
use secrecy::zeroize::Zeroizing;

use kassa_store::threeds::ThreeDsOutcomeRecord;

use crate::error::ApiError;
use crate::service::payments::{payment_not_found, payment_request};
use crate::service::threeds::{Authenticated, Begun, CardEntry};
use crate::AppState;

/// Longest form body read: three short fields.
const FORM_LEN_MAX: usize = 1024;

/// The payment the page is for, or 404 for an id that names none.
pub(super) async fn payment_of(
    state: &AppState,
    payment_id: &str,
) -> Result<PaymentRecord, ApiError> {
    let found = match PaymentId::parse(payment_id) {
        Ok(id) => state.store.find_payment(&id).await?,
        Err(_) => None,
    };
    Ok(found.ok_or_else(|| payment_not_found(payment_id))?)
}

/// The player's saved cards, when the vault is on.
async fn saved_cards(state: &AppState, payment: &PaymentRecord) -> Vec<VaultCardRecord> {
    let Some(vault) = &state.vault else {
        return Vec::new();
    };
    let merchant = payment.merchant_id.as_str();
    match vault.cards_of(merchant, payment.player_id.as_str()).await {
        Ok(cards) => cards,
        Err(error) => {
            tracing::warn!(%error, "saved cards not shown");
            Vec::new()
        }
    }
}

/// `GET /pay/card/{payment_id}`
pub async fn card_page(
    State(state): State<AppState>,
    Path(payment_id): Path<String>,
) -> Result<Response, ApiError> {
    let payment = payment_of(&state, &payment_id).await?;
    let saved = saved_cards(&state, &payment).await;
    let can_save = state.vault.is_some();
    Ok(page(&payment, &saved, can_save, None, StatusCode::OK))
}

/// The card page again, with `why` above the form.
pub(super) async fn page_again(
    state: &AppState,
    payment: &PaymentRecord,
    why: &str,
    status: StatusCode,
) -> Response {
    let saved = saved_cards(state, payment).await;
    page(payment, &saved, state.vault.is_some(), Some(why), status)
}

/// The card form as typed, checked.
struct CardForm {
    card: CardDetails,
    /// The player asked to save the card.
    save: bool,
}

/// What was submitted: a typed card, or a saved card's token.
enum Submitted {
    Typed(CardForm),
    Saved(String),
}

/// The submitted form: a saved card's token, or a typed card checked.
fn read_submission(body: &[u8], today_yymm: &str) -> Result<Submitted, &'static str> {
    let saved = form_urlencoded::parse(body).find(|(name, _)| name == "saved");
    match saved {
        Some((_, token)) => Ok(Submitted::Saved(token.into_owned())),
        None => read_form(body, today_yymm).map(Submitted::Typed),
    }
}

/// Why a submitted form is refused, in words for the player.
fn read_form(body: &[u8], today_yymm: &str) -> Result<CardForm, &'static str> {
    // Wiped when dropped, whatever the allocator does (ADR 71).
    let (mut number, mut expiry, mut cvc) = (
        Zeroizing::new(String::new()),
        Zeroizing::new(String::new()),
        Zeroizing::new(String::new()),
    );
    let mut save = false;
    for (name, value) in form_urlencoded::parse(body) {
        match name.as_ref() {
            "number" => *number = value.chars().filter(|c| !c.is_whitespace()).collect(),
            "expiry" => *expiry = value.trim().to_string(),
            "cvc" => *cvc = value.trim().to_string(),
            "save" => save = value == "on",
            _ => {}
        }
    }
    if !luhn_valid(&number) {
        return Err("The card number is not valid.");
    }
    // MM/YY as typed, YYMM on the wire.
    let expiry_yymm = match expiry.split_once('/') {
        Some((month, year)) if month.len() == 2 && year.len() == 2 => format!("{year}{month}"),
        _ => return Err("Type the expiry as MM/YY."),
    };
    if !expiry_valid(&expiry_yymm, today_yymm) {
        return Err("The card has expired or the expiry is not a month.");
    }
    if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
        return Err("The security code is 3 or 4 digits.");
    }
    let card = CardDetails::new(&number, &expiry_yymm, today_yymm)
        .map_err(|_| "The card number is not valid.")?;
    Ok(CardForm { card, save })
}

/// `YYMM` of the current UTC month.
fn today_yymm() -> String {
    let today = time::OffsetDateTime::now_utc().date();
    format!(
        "{:02}{:02}",
        today.year().rem_euclid(100),
        u8::from(today.month())
    )
}

/// The answer to a submitted card closes its connection: the server's read buffer of a
/// kept-alive connection holds the form, card number included, in space it reuses without
/// clearing; closed, the buffer is freed, and zeroed as it is (ADR 71).
pub async fn close_connection(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// `POST /pay/card/{payment_id}` (form: `number`, `expiry` as MM/YY, `cvc`, optional `save`;
/// or `saved` with a saved card's token).
pub async fn submit_card(
    State(state): State<AppState>,
    Path(payment_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let payment = payment_of(&state, &payment_id).await?;
    let saved = saved_cards(&state, &payment).await;
    let can_save = state.vault.is_some();
    let refuse = |why: &str, status| Ok(page(&payment, &saved, can_save, Some(why), status));
    if body.len() > FORM_LEN_MAX {
        return refuse("The form is too large.", StatusCode::PAYLOAD_TOO_LARGE);
    }
    let today = today_yymm();
    let (card, save, saved_token) = match read_submission(&body, &today) {
        Ok(Submitted::Typed(form)) => (form.card, form.save && can_save, None),
        Ok(Submitted::Saved(token)) => match open_saved(&state, &payment, &token, &today).await {
            Some(card) => (card, false, Some(token)),
            None => {
                return refuse(
                    "That saved card cannot be used.",
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
            }
        },
        Err(why) => return refuse(why, StatusCode::UNPROCESSABLE_ENTITY),
    };
    // Only a pending deposit takes a card: checked before 3-D Secure asks the issuer.
    state.payments.card_payment(&payment.id).await?;
    // The card's risk decision, before the issuer hears of it (ADR 75).
    if let Some(declined) = state.payments.decide_card(&payment, &card).await? {
        tracing::info!(payment_id = %declined.id, "card refused by the risk rules; no authorization sent");
        return Ok(to_status_page(declined.id.as_str()));
    }
    let entry = CardEntry {
        card,
        save,
        saved_token,
    };
    let request = payment_request(&payment);
    match state
        .threeds
        .begin(&payment.provider, &request, entry)
        .await
    {
        Ok(Begun::Charge(entry, authenticated)) => {
            charge(&state, &payment, entry, authenticated.as_ref()).await
        }
        Ok(Begun::Refused(outcome)) => decline_unauthenticated(&state, &payment, &outcome).await,
        Ok(Begun::Challenge { acs_url, creq }) => Ok(to_challenge(&acs_url, &creq)),
        Err(error) => {
            tracing::warn!(%error, payment_id = %payment.id, "3-D Secure did not start");
            refuse(
                "Your bank's security check is not available just now. Try again in a moment.",
                StatusCode::SERVICE_UNAVAILABLE,
            )
        }
    }
}

/// Charges the card (with its 3-D Secure result, if any), saves it when asked and approved,
/// and sends the browser to the deposit's status page.
pub(super) async fn charge(
    state: &AppState,
    payment: &PaymentRecord,
    entry: CardEntry,
    authenticated: Option<&Authenticated>,
) -> Result<Response, ApiError> {
    let CardEntry {
        card,
        save,
        saved_token,
    } = entry;
    let paid = state
        .payments
        .pay_with_card(&payment.id, &card, saved_token.as_deref(), authenticated)
        .await?;
    tracing::info!(payment_id = %paid.id, status = %paid.status, card = ?card, "card submitted on the card page");
    if save && paid.status.is_captured_family() {
        save_card(state, &paid, &card).await;
    }
    Ok(to_status_page(paid.id.as_str()))
}

/// A deposit whose card 3-D Secure refused: declined, nothing sent to the acquirer.
pub(super) async fn decline_unauthenticated(
    state: &AppState,
    payment: &PaymentRecord,
    outcome: &ThreeDsOutcomeRecord,
) -> Result<Response, ApiError> {
    let declined = state
        .payments
        .decline_unauthenticated(&payment.id, outcome)
        .await?;
    tracing::info!(payment_id = %declined.id, trans_status = %outcome.trans_status, "card refused by 3-D Secure; no authorization sent");
    Ok(to_status_page(declined.id.as_str()))
}

/// `303` to the deposit's status page.
fn to_status_page(payment_id: &str) -> Response {
    let status_page = format!("/cashier/return?payment_id={payment_id}");
    (StatusCode::SEE_OTHER, [(header::LOCATION, status_page)]).into_response()
}

/// A page that carries the `creq` to the ACS by a form post (EMVCo's browser challenge).
fn to_challenge(acs_url: &str, creq: &str) -> Response {
    let head = super::head("Confirm with your bank", "body { font-family: system-ui, sans-serif; max-width: 26rem; margin: 3rem auto; padding: 0 1rem; }");
    let html = format!(
        r#"{head}<main>
<h1>Confirm with your bank</h1>
<form id="challenge" method="post" action="{acs_url}">
<input type="hidden" name="creq" value="{creq}">
<noscript><button type="submit">Continue to your bank</button></noscript>
</form>
</main>
<script>document.getElementById("challenge").submit();</script>
</body>
</html>"#,
        acs_url = super::escape_html(acs_url),
        creq = super::escape_html(creq),
    );
    no_store(Html(html).into_response())
}

/// Never cached, never framed: the pages of a card payment.
pub(super) fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    response
}

/// The player's saved card `token`, opened for one charge.
async fn open_saved(
    state: &AppState,
    payment: &PaymentRecord,
    token: &str,
    today: &str,
) -> Option<CardDetails> {
    let vault = state.vault.as_ref()?;
    let (merchant, player) = (payment.merchant_id.as_str(), payment.player_id.as_str());
    match vault.open(merchant, player, token, today).await {
        Ok(card) => Some(card),
        Err(error) => {
            tracing::warn!(%error, payment_id = %payment.id, "saved card refused");
            None
        }
    }
}

/// Saves an approved card; a failure costs the player only the convenience.
async fn save_card(state: &AppState, payment: &PaymentRecord, card: &CardDetails) {
    let Some(vault) = &state.vault else {
        return;
    };
    let (merchant, player) = (payment.merchant_id.as_str(), payment.player_id.as_str());
    if let Err(error) = vault
        .save(merchant, player, card, Some(&payment.provider))
        .await
    {
        tracing::warn!(%error, payment_id = %payment.id, "the card was not saved");
    }
}

/// Buttons paying with each saved card (last four and expiry only).
fn saved_buttons(payment: &PaymentRecord, saved: &[VaultCardRecord]) -> String {
    saved
        .iter()
        .map(|card| {
            let (year, month) = card.expiry_yymm.split_at_checked(2).unwrap_or(("", ""));
            let expiry = format!("{month}/{year}");
            format!(
                r#"<form method="post" action="/pay/card/{id}"><input type="hidden" name="saved" value="{token}"><button class="saved" type="submit">Pay with saved card •••• {last4} ({expiry})</button></form>
"#,
                id = payment.id,
                token = card.token,
                last4 = card.last4,
            )
        })
        .collect()
}

/// The form, with an error above it when the last submission was refused.
fn page(
    payment: &PaymentRecord,
    saved: &[VaultCardRecord],
    can_save: bool,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let amount = payment.amount.to_string();
    let id = &payment.id;
    let saved = saved_buttons(payment, saved);
    let save_box = if can_save {
        r#"<label><input id="save" name="save" type="checkbox" style="width:auto"> Save this card for next time</label>"#
    } else {
        ""
    };
    let error = error
        .map(|e| format!(r#"<p id="error" role="alert">{e}</p>"#))
        .unwrap_or_else(|| r#"<p id="error" role="alert" hidden></p>"#.to_string());
    let head = super::head(
        &format!("Pay {amount} by card"),
        "body { font-family: system-ui, sans-serif; max-width: 26rem; margin: 3rem auto; padding: 0 1rem; color: #1a1a1a; }
label { display: block; margin: .8rem 0 .2rem; } input { font-size: 1.1rem; padding: .4rem; width: 100%; box-sizing: border-box; }
button { margin-top: 1.2rem; font-size: 1.1rem; padding: .5rem 1.2rem; } #error { color: #a4161a; }",
    );
    let html = format!(
        r#"{head}<main>
<h1>Pay {amount} by card</h1>
{error}
{saved}<form id="card" method="post" action="/pay/card/{id}" autocomplete="off">
<label for="number">Card number</label>
<input id="number" name="number" inputmode="numeric" autocomplete="cc-number" required>
<label for="expiry">Expiry (MM/YY)</label>
<input id="expiry" name="expiry" inputmode="numeric" autocomplete="cc-exp" placeholder="MM/YY" required>
<label for="cvc">Security code</label>
<input id="cvc" name="cvc" inputmode="numeric" autocomplete="cc-csc" required>
{save_box}
<button id="pay" type="submit">Pay {amount}</button>
</form>
</main>
<script>
function luhn(n) {{
  if (!/^\d{{12,19}}$/.test(n)) return false;
  let sum = 0;
  for (let i = 0; i < n.length; i++) {{
    let d = +n[n.length - 1 - i];
    if (i % 2) {{ d *= 2; if (d > 9) d -= 9; }}
    sum += d;
  }}
  return sum % 10 === 0;
}}
function expiryOk(text) {{
  const m = /^(\d\d)\/(\d\d)$/.exec(text.trim());
  if (!m || +m[1] < 1 || +m[1] > 12) return false;
  const now = new Date();
  const year = now.getUTCFullYear() % 100, month = now.getUTCMonth() + 1;
  return +m[2] > year || (+m[2] === year && +m[1] >= month);
}}
const form = document.getElementById("card"), error = document.getElementById("error");
form.addEventListener("submit", (e) => {{
  const number = form.number.value.replace(/\s+/g, "");
  let why = null;
  if (!luhn(number)) why = "The card number is not valid.";
  else if (!expiryOk(form.expiry.value)) why = "The card has expired or the expiry is not MM/YY.";
  else if (!/^\d{{3,4}}$/.test(form.cvc.value.trim())) why = "The security code is 3 or 4 digits.";
  if (why) {{ e.preventDefault(); error.textContent = why; error.hidden = false; return; }}
  document.getElementById("pay").disabled = true;
}});
</script>
</body>
</html>"#
    );
    // The page takes a card number: never cached, never framed.
    no_store((status, Html(html)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_is_checked_again_on_the_server() {
        let read =
            |body: &str| read_form(body.as_bytes(), "2612").map(|f| f.card.last4().to_string());
        assert_eq!(
            read("number=4000+0000+0000+0002&expiry=12%2F30&cvc=123"),
            Ok("0002".into())
        );
        assert!(
            read("number=4000000000000003&expiry=12/30&cvc=123").is_err(),
            "Luhn"
        );
        assert!(
            read("number=4000000000000002&expiry=11/26&cvc=123").is_err(),
            "expired"
        );
        assert!(
            read("number=4000000000000002&expiry=1230&cvc=123").is_err(),
            "format"
        );
        assert!(
            read("number=4000000000000002&expiry=12/30&cvc=12").is_err(),
            "cvc"
        );
        assert!(read("").is_err());
    }
}
