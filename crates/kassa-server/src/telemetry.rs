//! Logs: readable lines for a terminal, JSON for machines. Every line logged while a request
//! runs carries its trace id (the request span's field).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` refines the level (default `info`).
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init()
    } else {
        builder.try_init()
    };
}
