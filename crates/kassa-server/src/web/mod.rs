//! Pages served to people by the same binary.

pub mod card_page;
pub mod card_threeds;
pub mod cashier;

/// The start of every page up to `<body>`: the document head with its `title` and `style`.
pub(crate) fn head(title: &str, style: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>
{style}
</style>
</head>
<body>
"#
    )
}

/// `text` safe inside HTML text and double-quoted attributes.
pub(crate) fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Where a pending payment that cascaded after a later decline continues (ADR 56): the next
/// provider's page, when it is a plain web address.
pub(crate) fn continue_url(payment: &kassa_store::payments::PaymentRecord) -> Option<&str> {
    let cascaded = payment
        .routing
        .as_deref()
        .is_some_and(|routing| routing.contains("\"after_decline\""));
    let url = payment.redirect_url.as_deref()?;
    let web = url.starts_with("https://") || url.starts_with("http://");
    (cascaded && web && payment.status == kassa_core::payment::PaymentStatus::Pending)
        .then_some(url)
}
