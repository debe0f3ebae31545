//! Pages served to people by the same binary.

pub mod card_page;
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
