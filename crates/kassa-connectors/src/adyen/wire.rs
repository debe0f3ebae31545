//! Adyen's JSON bodies, exactly as they travel (Checkout API v71, Payout API v68, the
//! notification webhook). Field names are Adyen's; amounts are integers in minor units.

use serde::{Deserialize, Serialize};

/// `amount` everywhere: `value` in the currency's minor units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Amount {
    pub value: i64,
    pub currency: String,
}

/// `paymentMethod` of a payment Kassa starts.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum PaymentMethod {
    /// The scheme, no card data: the player types the card on Adyen's hosted page.
    Scheme {
        #[serde(rename = "type")]
        kind: &'static str,
    },
    /// What the cashier's Adyen Drop-in produced (`state.data.paymentMethod`: a `type` and
    /// encrypted card fields, or a debit's details), passed through as it came (ADR 64).
    FromDropIn(serde_json::Map<String, serde_json::Value>),
}

/// `POST /v71/payments`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PaymentBody<'a> {
    pub merchant_account: &'a str,
    pub amount: Amount,
    pub reference: &'a str,
    pub payment_method: PaymentMethod,
    pub return_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_code: Option<&'a str>,
    pub shopper_interaction: &'static str,
    pub channel: &'static str,
}

/// `action` of a payment answer: what the shopper does next.
#[derive(Deserialize)]
pub(super) struct Action {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
}

/// Answer to `POST /v71/payments`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PaymentAnswer {
    #[serde(default)]
    pub psp_reference: Option<String>,
    pub result_code: String,
    #[serde(default)]
    pub refusal_reason: Option<String>,
    #[serde(default)]
    pub action: Option<Action>,
}

/// `POST /v71/payments/{pspReference}/cancels`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CancelBody<'a> {
    pub merchant_account: &'a str,
}

/// `POST /v71/payments/{pspReference}/refunds`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RefundBody<'a> {
    pub merchant_account: &'a str,
    pub amount: Amount,
    /// Kassa's refund id: the REFUND notification's `merchantReference`.
    pub reference: &'a str,
}

/// Answer to a modification (`/cancels`, `/refunds`, `/captures`): received, not done.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ModificationAnswer {
    pub payment_psp_reference: String,
    #[serde(default)]
    pub reference: Option<String>,
    pub status: String,
}

/// `recurring` of a payout: the contract the payout details are stored under.
#[derive(Serialize)]
pub(super) struct Recurring {
    pub contract: &'static str,
}

/// `POST /pal/servlet/Payout/v68/storeDetailAndSubmitThirdParty`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PayoutBody<'a> {
    pub merchant_account: &'a str,
    pub amount: Amount,
    /// Kassa's payout id: the PAYOUT_THIRDPARTY notification's `merchantReference`.
    pub reference: &'a str,
    pub recurring: Recurring,
    pub shopper_reference: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected_recurring_detail_reference: Option<&'a str>,
}

/// Answer to `storeDetailAndSubmitThirdParty`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PayoutAnswer {
    pub psp_reference: String,
    pub result_code: String,
}

/// Any 4xx answer: Adyen's service exception.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ErrorAnswer {
    pub error_code: String,
    #[serde(default)]
    pub message: String,
}

/// A notification webhook: a batch of items, each signed on its own.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Notification {
    pub notification_items: Vec<NotificationItemWrapper>,
}

/// Adyen wraps each item in an object of one key.
#[derive(Deserialize)]
pub(super) struct NotificationItemWrapper {
    #[serde(rename = "NotificationRequestItem")]
    pub item: NotificationItem,
}

/// One `NotificationRequestItem`; `success` is the string `"true"` or `"false"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct NotificationItem {
    pub psp_reference: String,
    #[serde(default)]
    pub original_reference: Option<String>,
    pub merchant_account_code: String,
    #[serde(default)]
    pub merchant_reference: String,
    pub amount: Amount,
    pub event_code: String,
    #[serde(default)]
    pub event_date: Option<String>,
    pub success: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub additional_data: Option<serde_json::Map<String, serde_json::Value>>,
}
