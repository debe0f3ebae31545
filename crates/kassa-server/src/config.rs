//! Configuration: the embedded defaults (`config/default.toml`), then an optional file, then
//! environment variables and flags, each overriding the one before.

use kassa_core::share::Share;
use serde::Deserialize;

const DEFAULTS_TOML: &str = include_str!("../../../config/default.toml");

/// Kassa's configuration. Units are in the names.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to bind.
    pub listen: String,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// `text` or `json`.
    pub log_format: String,
    /// HTTP limits.
    pub http: HttpConfig,
    /// Per-key request rate.
    pub rate_limit: RateLimitConfig,
    /// `Idempotency-Key` retention.
    pub idempotency: IdempotencyConfig,
    /// List endpoints.
    pub pagination: PaginationConfig,
    /// The game-round wallet.
    pub wallet: WalletConfig,
    /// Deposits.
    pub payments: PaymentsConfig,
    /// The sandbox payment provider.
    pub sandbox: SandboxProviderConfig,
    /// Withdrawals.
    pub payouts: PayoutsConfig,
    /// The job queue and its workers.
    pub jobs: JobsConfig,
}

/// The job queue (ADR 24): how a node runs background work, how failures back off.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Jobs one node runs at once.
    pub concurrency_max: u32,
    /// How often an idle node looks for due jobs.
    pub poll_interval_ms: u64,
    /// How long a claim holds without a heartbeat; a dead node's jobs wait this long.
    pub lease_ms: i64,
    /// Longest one run of a job; past it the run counts as failed.
    pub run_timeout_ms: u64,
    /// Attempts before a job is dead.
    pub attempts_max: i64,
    /// First retry waits up to this long.
    pub backoff_base_ms: u64,
    /// No retry waits longer than this.
    pub backoff_cap_ms: u64,
    /// Succeeded jobs are deleted after this long.
    pub finished_retention_hours: u32,
    /// How long a stopping node waits for its running jobs.
    pub shutdown_grace_ms: u64,
    /// How often the outbox consumer runs.
    pub outbox_interval_ms: i64,
    /// Most outbox events per publishing transaction.
    pub outbox_batch_max: u32,
}

/// Withdrawals.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutsConfig {
    /// At or above: review.
    pub review_threshold_minor: i64,
    /// Turnover below this share of the last deposit: review.
    pub wagering_review_share: Share,
    /// Where players may not cancel a withdrawal.
    pub reversal_forbidden_jurisdictions: Vec<String>,
    /// Period of the payout scheduler job.
    pub retry_interval_ms: u64,
    /// Wait after a failed send.
    pub retry_backoff_ms: i64,
    /// Sends before giving up.
    pub send_attempts_max: i64,
    /// Hours to arrive, per method.
    pub eta_hours: std::collections::BTreeMap<String, i64>,
}

/// Deposits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsConfig {
    /// Pending this long: ask the provider.
    pub status_sync_after_ms: i64,
    /// Period of the status-sync job.
    pub status_sync_interval_ms: u64,
    /// No outcome this long after creation: expire.
    pub expire_after_ms: i64,
    /// This Kassa's public URL; empty means `http://{listen}`.
    pub public_base_url: String,
}

/// The sandbox payment provider.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxProviderConfig {
    /// Route payments to it.
    pub enabled: bool,
    /// Empty: in-process.
    pub base_url: String,
    /// Request signing key.
    pub api_secret: String,
    /// Webhook signing key.
    pub webhook_secret: String,
    /// Call timeout.
    pub timeout_ms: u64,
    /// Whether the sandbox sends webhooks by itself.
    pub autopilot: bool,
    /// Webhook delay.
    pub webhook_delay_ms: u64,
    /// Delay of the slow test card.
    pub slow_approval_delay_ms: u64,
    /// Send each webhook twice.
    pub duplicate_webhooks: bool,
    /// Send captured before authorized.
    pub out_of_order_webhooks: bool,
}

impl std::fmt::Debug for SandboxProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxProviderConfig")
            .field("enabled", &self.enabled)
            .field("base_url", &self.base_url)
            .field("api_secret", &"<redacted>")
            .field("webhook_secret", &"<redacted>")
            .field("autopilot", &self.autopilot)
            .finish_non_exhaustive()
    }
}

/// HTTP limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body.
    pub body_limit_bytes: usize,
    /// Longest a request may run.
    pub request_timeout_ms: u64,
}

/// Per-key request rate.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained rate; 0 turns the limit off.
    pub requests_per_second: u32,
    /// Extra requests allowed at once.
    pub burst: u32,
}

/// `Idempotency-Key` retention.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// How long finished keys are kept.
    pub retention_hours: u32,
    /// When an unfinished claim may be taken over.
    pub in_progress_stale_ms: i64,
}

/// List endpoints.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaginationConfig {
    /// Page size when none is asked for.
    pub page_size_default: u32,
    /// Largest page size allowed.
    pub page_size_max: u32,
}

/// The game-round wallet.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletConfig {
    /// Most calls per group commit.
    pub batch_size_max: usize,
    /// Calls allowed to wait for the writer.
    pub queue_len_max: usize,
    /// Nice value the writer thread asks for (Linux; below 0 needs `CAP_SYS_NICE` or an
    /// `RLIMIT_NICE` that allows it, and is skipped with a log line otherwise).
    #[serde(default = "default_writer_nice")]
    pub writer_nice: i32,
}

/// The writer runs ahead of request handling (docs/perf-log.md, note 29).
fn default_writer_nice() -> i32 {
    -10
}

/// Overrides from the environment and the command line; `None` leaves the file's value.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen` / `KASSA_LISTEN`.
    pub listen: Option<String>,
    /// `--database-url` / `KASSA_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `--log-format` / `KASSA_LOG_FORMAT`.
    pub log_format: Option<String>,
    /// `KASSA_RATE_LIMIT_RPS`.
    pub rate_limit_rps: Option<u32>,
}

impl Config {
    /// The embedded defaults.
    pub fn defaults() -> Config {
        toml::from_str(DEFAULTS_TOML).expect("embedded config/default.toml is valid")
    }

    /// Defaults, overlaid by the file at `path` (if any), overlaid by `overrides`.
    pub fn load(path: Option<&str>, overrides: &Overrides) -> anyhow::Result<Config> {
        let mut merged: toml::Table = toml::from_str(DEFAULTS_TOML)?;
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read config file {path}: {e}"))?;
            let file: toml::Table =
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {path}: {e}"))?;
            overlay(&mut merged, file);
        }
        let mut config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    fn apply(&mut self, overrides: &Overrides) {
        if let Some(listen) = &overrides.listen {
            self.listen = listen.clone();
        }
        if let Some(url) = &overrides.database_url {
            self.database_url = url.clone();
        }
        if let Some(format) = &overrides.log_format {
            self.log_format = format.clone();
        }
        if let Some(rps) = overrides.rate_limit_rps {
            self.rate_limit.requests_per_second = rps;
        }
        if let Ok(secret) = std::env::var("KASSA_SANDBOX_WEBHOOK_SECRET") {
            if !secret.is_empty() {
                self.sandbox.webhook_secret = secret;
            }
        }
        if let Ok(autopilot) = std::env::var("KASSA_SANDBOX_AUTOPILOT") {
            self.sandbox.autopilot = !matches!(
                autopilot.to_ascii_lowercase().as_str(),
                "off" | "false" | "0" | "no"
            );
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            matches!(self.log_format.as_str(), "text" | "json"),
            "log_format must be \"text\" or \"json\", not {:?}",
            self.log_format
        );
        anyhow::ensure!(
            self.http.body_limit_bytes >= 1024,
            "http.body_limit_bytes must be at least 1024"
        );
        anyhow::ensure!(
            (1..=1000).contains(&self.pagination.page_size_max),
            "pagination.page_size_max must be between 1 and 1000"
        );
        anyhow::ensure!(
            self.pagination.page_size_default >= 1
                && self.pagination.page_size_default <= self.pagination.page_size_max,
            "pagination.page_size_default must be between 1 and page_size_max"
        );
        anyhow::ensure!(
            (1..=4096).contains(&self.wallet.batch_size_max),
            "wallet.batch_size_max must be between 1 and 4096"
        );
        anyhow::ensure!(
            self.wallet.queue_len_max >= 1,
            "wallet.queue_len_max must be at least 1"
        );
        anyhow::ensure!(
            self.idempotency.retention_hours >= 24,
            "idempotency.retention_hours must be at least 24"
        );
        self.jobs.validate()?;
        Ok(())
    }
}

impl JobsConfig {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=256).contains(&self.concurrency_max),
            "jobs.concurrency_max must be between 1 and 256"
        );
        anyhow::ensure!(
            self.poll_interval_ms >= 10,
            "jobs.poll_interval_ms must be at least 10"
        );
        // The heartbeat renews the lease every third of it; shorter leases are all renewals.
        anyhow::ensure!(self.lease_ms >= 300, "jobs.lease_ms must be at least 300");
        anyhow::ensure!(
            (1..=1000).contains(&self.attempts_max),
            "jobs.attempts_max must be between 1 and 1000"
        );
        anyhow::ensure!(
            self.backoff_base_ms >= 1 && self.backoff_cap_ms >= self.backoff_base_ms,
            "jobs.backoff_base_ms must be at least 1 and at most jobs.backoff_cap_ms"
        );
        anyhow::ensure!(
            self.outbox_interval_ms >= 1,
            "jobs.outbox_interval_ms must be at least 1"
        );
        anyhow::ensure!(
            (1..=10_000).contains(&self.outbox_batch_max),
            "jobs.outbox_batch_max must be between 1 and 10000"
        );
        Ok(())
    }
}

fn overlay(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(top_table)) => {
                overlay(base_table, top_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_overrides_win() {
        let config = Config::defaults();
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert!(config.database_url.starts_with("sqlite://"));
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".into()),
            rate_limit_rps: Some(0),
            ..Overrides::default()
        };
        let config = Config::load(None, &overrides).unwrap();
        assert_eq!(config.listen, "127.0.0.1:0");
        assert_eq!(config.rate_limit.requests_per_second, 0);
    }

    #[test]
    fn the_wagering_share_reads_exactly_as_written() {
        assert_eq!(
            Config::defaults().payouts.wagering_review_share,
            Share::WHOLE
        );
        let dir = std::env::temp_dir().join(kassa_core::ids::generate("cfg"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kassa.toml");
        for (written, basis_points) in [("0.35", 3_500), ("\"0.0041\"", 41), ("2", 20_000)] {
            std::fs::write(
                &path,
                format!("[payouts]\nwagering_review_share = {written}\n"),
            )
            .unwrap();
            let config = Config::load(path.to_str(), &Overrides::default()).unwrap();
            assert_eq!(
                config.payouts.wagering_review_share.basis_points(),
                basis_points,
                "{written}"
            );
        }
        std::fs::write(&path, "[payouts]\nwagering_review_share = -1.0\n").unwrap();
        assert!(Config::load(path.to_str(), &Overrides::default()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_overrides_only_what_it_names_and_typos_are_errors() {
        let dir = std::env::temp_dir().join(kassa_core::ids::generate("cfg"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kassa.toml");
        std::fs::write(&path, "[rate_limit]\nburst = 7\n").unwrap();
        let config = Config::load(path.to_str(), &Overrides::default()).unwrap();
        assert_eq!(config.rate_limit.burst, 7);
        assert_eq!(config.rate_limit.requests_per_second, 200);
        std::fs::write(&path, "[rate_limit]\nburts = 7\n").unwrap();
        assert!(Config::load(path.to_str(), &Overrides::default()).is_err());
        std::fs::write(&path, "log_format = \"xml\"\n").unwrap();
        assert!(Config::load(path.to_str(), &Overrides::default()).is_err());
    }
}
