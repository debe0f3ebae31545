//! Configuration: the embedded defaults (`config/default.toml`), then an optional file, then
//! environment variables and flags, each overriding the one before.

use std::collections::BTreeMap;

use kassa_connectors::{ExposeSecret, ProviderAccount, SecretString};
use kassa_core::share::Share;

use crate::service::inbound_sources::SourceAllowLists;
use serde::Deserialize;

const DEFAULTS_TOML: &str = include_str!("../../../config/default.toml");

/// Environment variable overriding `webhooks.allow_private_urls`.
pub const ALLOW_PRIVATE_URLS_VAR: &str = "KASSA_WEBHOOKS_ALLOW_PRIVATE_URLS";

/// Environment variable overriding `events_stream.nats_url` (empty turns the stream off).
pub const EVENTS_NATS_URL_VAR: &str = "KASSA_EVENTS_NATS_URL";

/// Environment variable overriding `auth.key_hash_secret`.
pub const KEY_HASH_SECRET_VAR: &str = "KASSA_KEY_HASH_SECRET";

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
    /// The embedded sandbox PSP simulator (`kassa serve`, `kassa demo`).
    pub sandbox: SandboxSimulatorConfig,
    /// Payment provider accounts, per merchant.
    pub providers: ProvidersConfig,
    /// Withdrawals.
    pub payouts: PayoutsConfig,
    /// Most one operation may move.
    pub limits: LimitsConfig,
    /// How API keys are stored.
    pub auth: AuthConfig,
    /// The job queue and its workers.
    pub jobs: JobsConfig,
    /// Inbound provider webhooks: their rate and their delivery log.
    pub webhooks: WebhooksConfig,
    /// The database's storage settings.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The card vault's master keys (off without keys).
    #[serde(default)]
    pub vault: VaultConfig,
    /// The outbox published to NATS JetStream, when configured.
    pub events_stream: EventsStreamConfig,
    /// Multi-provider routing: the seed document, breakers and health thresholds.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Prometheus `/metrics`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The risk decision before deposits and payouts.
    #[serde(default)]
    pub risk: RiskConfig,
    /// AML monitoring after money moved: scenario thresholds and the goAML reporting entity.
    #[serde(default)]
    pub aml: AmlConfig,
    /// KYC: ID provider accounts and the CDD thresholds per jurisdiction.
    #[serde(default)]
    pub kyc: KycConfig,
    /// National self-exclusion registers (GAMSTOP, Spelpaus) per jurisdiction.
    #[serde(default)]
    pub registers: RegistersConfig,
    /// Process hardening: zeroing freed memory on card nodes.
    #[serde(default)]
    pub security: SecurityConfig,
}

/// National self-exclusion registers (ADR 73, docs/registers.md): which register a
/// jurisdiction's players are checked against, how long an answer stands, and the register
/// accounts per merchant (kinds `gamstop`, `spelpaus`; without `base_url` the sandbox runs
/// in-process).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistersConfig {
    /// The register kind by jurisdiction, e.g. `GB = "gamstop"`, `SE = "spelpaus"`; a
    /// jurisdiction not named here is not checked. Empty by default: which licences an
    /// operator holds, and its register credentials, are the operator's to configure.
    #[serde(default)]
    pub jurisdictions: BTreeMap<String, String>,
    /// A deposit asks the register again once the stored answer is this old (hours; 0: at
    /// every deposit).
    #[serde(default = "register_recheck_hours")]
    pub recheck_hours: u32,
    /// A stored answer stands in for a register that cannot be reached until it is this old
    /// (hours, at least `recheck_hours`); a player without one is refused (fail closed).
    #[serde(default = "register_valid_hours")]
    pub valid_hours: u32,
    /// How often the recheck job asks again about active players whose answer is older
    /// than `recheck_hours` (minutes, 1 to 1440), so that bets, which ask no register, are
    /// refused within about a day of a registration.
    #[serde(default = "register_recheck_sweep_minutes")]
    pub recheck_sweep_minutes: u32,
    /// Only players with a wallet call or a deposit this recently are rechecked by the job
    /// (days, 1 to 365); a dormant player is asked at their next deposit.
    #[serde(default = "register_recheck_active_days")]
    pub recheck_active_days: u32,
    /// Players one batch of the recheck job reads and asks about (1 to 1000).
    #[serde(default = "register_recheck_batch_max")]
    pub recheck_batch_max: u32,
    /// Batches per register one run of the recheck job works through at most (1 to 100);
    /// the rest waits for the next run.
    #[serde(default = "register_recheck_batches_per_run_max")]
    pub recheck_batches_per_run_max: u32,
    /// Register accounts, each serving one merchant, shaped like the payment provider
    /// accounts (credential `api_key`; settings `base_url`, `timeout_ms`, `attempts_max`,
    /// and `actor_id` for Spelpaus).
    #[serde(default)]
    pub accounts: Vec<ProviderAccountConfig>,
}

fn register_recheck_hours() -> u32 {
    24
}

fn register_valid_hours() -> u32 {
    72
}

fn register_recheck_sweep_minutes() -> u32 {
    60
}

fn register_recheck_active_days() -> u32 {
    30
}

fn register_recheck_batch_max() -> u32 {
    100
}

fn register_recheck_batches_per_run_max() -> u32 {
    10
}

/// Longest a stored register answer may stand in for an unreachable register (30 days).
const REGISTER_VALID_HOURS_MAX: u32 = 720;

impl Default for RegistersConfig {
    fn default() -> RegistersConfig {
        RegistersConfig {
            jurisdictions: BTreeMap::new(),
            recheck_hours: register_recheck_hours(),
            valid_hours: register_valid_hours(),
            recheck_sweep_minutes: register_recheck_sweep_minutes(),
            recheck_active_days: register_recheck_active_days(),
            recheck_batch_max: register_recheck_batch_max(),
            recheck_batches_per_run_max: register_recheck_batches_per_run_max(),
            accounts: Vec::new(),
        }
    }
}

impl RegistersConfig {
    /// How long an answer stands, as the pure plan takes it.
    pub fn policy(&self) -> kassa_core::register::RegisterPolicy {
        kassa_core::register::RegisterPolicy {
            recheck_after_ms: i64::from(self.recheck_hours) * 3_600_000,
            valid_for_ms: i64::from(self.valid_hours) * 3_600_000,
        }
    }

    /// The register kinds some jurisdiction is mapped to, each with its jurisdictions.
    pub fn registers_in_use(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut registers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (jurisdiction, kind) in &self.jurisdictions {
            registers.entry(kind).or_default().push(jurisdiction);
        }
        registers
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.recheck_hours <= self.valid_hours && self.valid_hours <= REGISTER_VALID_HOURS_MAX,
            "registers.recheck_hours must not exceed registers.valid_hours, which is at most \
             {REGISTER_VALID_HOURS_MAX}"
        );
        for (name, value, max) in [
            ("recheck_sweep_minutes", self.recheck_sweep_minutes, 1440),
            ("recheck_active_days", self.recheck_active_days, 365),
            ("recheck_batch_max", self.recheck_batch_max, 1000),
            (
                "recheck_batches_per_run_max",
                self.recheck_batches_per_run_max,
                100,
            ),
        ] {
            anyhow::ensure!(
                (1..=max).contains(&value),
                "registers.{name} must be 1 to {max}, not {value}"
            );
        }
        for (jurisdiction, kind) in &self.jurisdictions {
            anyhow::ensure!(
                kassa_connectors::register::register_kind(kind).is_some(),
                "[registers.jurisdictions] {jurisdiction} = {kind:?}: not a register kind \
                 (gamstop, spelpaus)"
            );
        }
        Ok(())
    }
}

/// Process hardening (ADR 71).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Zero every block of memory as it is freed, so a card number leaves no copy in freed
    /// heap (core dumps, swap): `auto` (default) on a node that handles card numbers (an
    /// `iso8583` account or vault keys), `on`, `off`. `KASSA_ZERO_FREED_MEMORY`.
    #[serde(default)]
    pub zero_freed_memory: ZeroFreedMemory,
}

/// When freed memory is zeroed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZeroFreedMemory {
    /// On where card numbers pass through the process.
    #[default]
    Auto,
    /// Always.
    On,
    /// Never (a node whose core dumps and swap are otherwise kept from card data).
    Off,
}

/// Environment variable overriding `security.zero_freed_memory`.
pub const ZERO_FREED_MEMORY_VAR: &str = "KASSA_ZERO_FREED_MEMORY";

impl ZeroFreedMemory {
    /// The setting `KASSA_ZERO_FREED_MEMORY` asks for (`on`, `off`, anything else `auto`);
    /// `None` when it is unset.
    pub fn from_env() -> Option<ZeroFreedMemory> {
        let value = std::env::var(ZERO_FREED_MEMORY_VAR).ok()?;
        Some(match value.to_ascii_lowercase().as_str() {
            "on" | "true" | "1" | "yes" => ZeroFreedMemory::On,
            "off" | "false" | "0" | "no" => ZeroFreedMemory::Off,
            _ => ZeroFreedMemory::Auto,
        })
    }
}

impl Config {
    /// Whether card numbers pass through this node: it has a direct acquirer account (the
    /// card page) or vault keys (saved cards opened for payments and payouts).
    pub fn handles_card_numbers(&self) -> bool {
        let acquirer = self
            .providers
            .accounts
            .iter()
            .any(|account| account.kind == "iso8583");
        acquirer || !self.vault.master_keys.is_empty()
    }

    /// Whether this node zeroes what it frees.
    pub fn zeroes_freed_memory(&self) -> bool {
        match self.security.zero_freed_memory {
            ZeroFreedMemory::Auto => self.handles_card_numbers(),
            ZeroFreedMemory::On => true,
            ZeroFreedMemory::Off => false,
        }
    }
}

/// KYC through ID providers (issue 19 item 5, docs/kyc.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KycConfig {
    /// ID provider accounts, each serving one merchant, shaped like the payment provider
    /// accounts (kind `idv_sandbox`); webhooks go to `/v1/providers/{id}/webhook`.
    #[serde(default)]
    pub accounts: Vec<ProviderAccountConfig>,
    /// Jurisdictions whose players' withdrawals are locked at the CDD threshold until the
    /// `enhanced` level is verified (UKGC and MGA: funds locked until CDD is done). The
    /// threshold and its linking window are `[aml]`'s, the same the `cdd_threshold` alert
    /// uses, so the lock and the alert never disagree.
    #[serde(default = "cdd_lock_jurisdictions")]
    pub cdd_lock_jurisdictions: Vec<String>,
}

fn cdd_lock_jurisdictions() -> Vec<String> {
    vec!["GB".into(), "MT".into()]
}

impl Default for KycConfig {
    fn default() -> KycConfig {
        KycConfig {
            accounts: Vec::new(),
            cdd_lock_jurisdictions: cdd_lock_jurisdictions(),
        }
    }
}

impl KycConfig {
    /// The CDD threshold that locks the withdrawals of a player of `jurisdiction` holding
    /// `currency`: `aml`'s for that jurisdiction, if it locks there and `aml` has one in
    /// that currency.
    pub fn cdd_threshold(
        &self,
        aml: &kassa_core::aml::AmlSettings,
        jurisdiction: &str,
        currency: &str,
    ) -> Option<kassa_core::kyc::CddThreshold> {
        if !self
            .cdd_lock_jurisdictions
            .iter()
            .any(|j| j == jurisdiction)
        {
            return None;
        }
        let thresholds = aml.for_jurisdiction(Some(jurisdiction));
        let threshold_minor = *thresholds.cdd_threshold_minor.get(currency)?;
        let window_hours = i64::from(thresholds.cdd_window_hours);
        Some(kassa_core::kyc::CddThreshold {
            threshold_minor,
            window_ms: (window_hours > 0).then(|| window_hours * 3_600_000),
        })
    }
}

/// AML monitoring (docs/aml.md): `[aml.thresholds]`, `[aml.jurisdictions.XX]` overrides,
/// and `[aml.reporting_entity]` for the goAML export.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmlConfig {
    /// The scenarios' thresholds where no jurisdiction overrides them.
    #[serde(default)]
    pub thresholds: kassa_core::aml::AmlThresholds,
    /// Overrides per jurisdiction; absent: the built-in ones (MT links deposits over 180
    /// days). Given: exactly these.
    #[serde(default = "built_in_aml_jurisdictions")]
    pub jurisdictions: BTreeMap<String, kassa_core::aml::settings::AmlOverrides>,
    /// Who files the reports: the goAML id the FIU gave the operator, and its name.
    #[serde(default)]
    pub reporting_entity: kassa_core::aml::goaml::ReportingEntity,
    /// How long a player's monitoring run waits after the event that queued it, so that the
    /// player's other captures, refunds and chargebacks in that time join the same run
    /// (ADR 87); 0 runs it at once. A payout request's run never waits.
    #[serde(default = "default_monitor_coalesce_ms")]
    pub monitor_coalesce_ms: u64,
}

/// Two seconds: a burst of deposits is one run, and an alert still comes within seconds.
fn default_monitor_coalesce_ms() -> u64 {
    2_000
}

/// The longest wait of a monitoring run for more events.
const MONITOR_COALESCE_MS_MAX: u64 = 600_000;

fn built_in_aml_jurisdictions() -> BTreeMap<String, kassa_core::aml::settings::AmlOverrides> {
    kassa_core::aml::AmlSettings::default().jurisdictions
}

impl Default for AmlConfig {
    fn default() -> AmlConfig {
        AmlConfig {
            thresholds: Default::default(),
            jurisdictions: built_in_aml_jurisdictions(),
            reporting_entity: Default::default(),
            monitor_coalesce_ms: default_monitor_coalesce_ms(),
        }
    }
}

impl AmlConfig {
    /// The thresholds with their overrides, as the scenarios read them.
    pub fn settings(&self) -> kassa_core::aml::AmlSettings {
        kassa_core::aml::AmlSettings {
            thresholds: self.thresholds.clone(),
            jurisdictions: self.jurisdictions.clone(),
        }
    }
}

/// The risk decision before every deposit and payout start (ADR 62). The rule set here is
/// the default of every merchant and jurisdiction that has none stored; stored rule sets
/// change through `PUT /v1/admin/risk/rules`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskConfig {
    /// The default rule set; absent: the built-in one (docs/risk.md).
    #[serde(default)]
    pub rules: Option<kassa_core::risk::RuleSet>,
    /// A file of IP addresses and CIDR ranges with a flag each (`vpn`, `tor`, `hosting`),
    /// one a line; read again when it changes, without a restart. Empty: no IP flags.
    #[serde(default)]
    pub ip_list_path: String,
    /// A CSV file of card BIN prefixes (6 to 8 digits) and the issuing country, one a line;
    /// read again when it changes, without a restart. Empty: no BIN country features.
    #[serde(default)]
    pub bin_list_path: String,
}

/// Multi-provider routing (ADR 47). The document here seeds the database when it holds none;
/// after that the stored versions rule and change through `PUT /v1/admin/routing`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// The first routing document (rules, switches, decline classes, commissions).
    #[serde(default)]
    pub document: kassa_core::routing::RoutingDocument,
    /// When a provider account's circuit opens and for how long.
    #[serde(default)]
    pub breaker: kassa_core::routing::BreakerSettings,
    /// When a provider account counts as degraded.
    #[serde(default)]
    pub health: kassa_core::routing::HealthSettings,
}

/// Prometheus `/metrics` (ADR 53).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the listener serving `GET /metrics`, without authentication; empty: no
    /// metrics (none recorded). `KASSA_METRICS_LISTEN`.
    #[serde(default)]
    pub listen: String,
}

/// Environment variable overriding `metrics.listen`.
pub const METRICS_LISTEN_VAR: &str = "KASSA_METRICS_LISTEN";

/// The card vault (ADR 50): master keys by id, each 32 bytes in base64 (or `env:NAME`),
/// and the id new cards are sealed under. No keys: cards are not saved.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Master keys by id.
    #[serde(default)]
    pub master_keys: std::collections::BTreeMap<String, SecretString>,
    /// The key new cards are sealed under; must be one of `master_keys`.
    #[serde(default)]
    pub active_key: String,
    /// The key of the cards' fingerprints (HMAC-SHA256 of the PAN, ADR 75): at least 32
    /// bytes in base64, or `env:NAME`. Not rotated: another key makes every card new to the
    /// risk features. Empty: cards have no fingerprint, and no card features.
    #[serde(default)]
    pub fingerprint_key: Option<SecretString>,
}

impl std::fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultConfig")
            .field("master_keys", &self.master_keys.keys().collect::<Vec<_>>())
            .field("active_key", &self.active_key)
            .field("fingerprint_key", &self.fingerprint_key.is_some())
            .finish()
    }
}

impl VaultConfig {
    /// Replaces every `env:NAME` master key, and the fingerprint key, by that variable's
    /// value.
    fn resolve_secrets(&mut self, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        for (id, value) in self.master_keys.iter_mut() {
            resolve_env_secret(value, &format!("vault master key {id:?}"), &lookup)?;
        }
        if let Some(value) = &mut self.fingerprint_key {
            resolve_env_secret(value, "vault fingerprint_key", &lookup)?;
        }
        Ok(())
    }
}

/// Replaces an `env:NAME` secret by that variable's value; other values stay.
fn resolve_env_secret(
    value: &mut SecretString,
    what: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    let Some(variable) = value.expose_secret().strip_prefix(SECRET_ENV_PREFIX) else {
        return Ok(());
    };
    let resolved = lookup(variable)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{what} names {variable}, which is not set"))?;
    *value = SecretString::from(resolved);
    Ok(())
}

/// The event stream (ADR 51): outbox events published to NATS JetStream.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsStreamConfig {
    /// `nats://host:port`; empty turns the stream off. `KASSA_EVENTS_NATS_URL`.
    pub nats_url: String,
    /// The JetStream stream created at start if missing.
    pub stream_name: String,
    /// First token of every subject: `<prefix>.<merchant>.<event type>`.
    pub subject_prefix: String,
    /// JetStream's duplicate window: a repeat of a message id within it is dropped.
    pub duplicate_window_ms: u64,
    /// How often the publisher looks for new events.
    pub interval_ms: u64,
    /// Most events published per round trip.
    pub batch_max: u32,
    /// Longest a batch waits for its acknowledgements.
    pub publish_timeout_ms: u64,
}

impl EventsStreamConfig {
    /// Whether the stream is on.
    pub fn enabled(&self) -> bool {
        !self.nats_url.trim().is_empty()
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let token_ok = |t: &str| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        anyhow::ensure!(
            token_ok(&self.stream_name),
            "events_stream.stream_name must be letters, digits, '_' or '-'"
        );
        anyhow::ensure!(
            self.subject_prefix.split('.').all(token_ok),
            "events_stream.subject_prefix must be dot-separated tokens of letters, digits, '_' or '-'"
        );
        anyhow::ensure!(
            (1_000..=86_400_000).contains(&self.duplicate_window_ms),
            "events_stream.duplicate_window_ms must be between 1000 and 86400000"
        );
        anyhow::ensure!(
            self.interval_ms >= 1 && (1..=10_000).contains(&self.batch_max),
            "events_stream.interval_ms must be positive, batch_max between 1 and 10000"
        );
        anyhow::ensure!(
            (100..=120_000).contains(&self.publish_timeout_ms),
            "events_stream.publish_timeout_ms must be between 100 and 120000"
        );
        Ok(())
    }
}

/// Inbound provider webhooks: what one source address may send, and what the delivery log
/// keeps (verified deliveries in full, unverifiable ones as a counted, sampled excerpt).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Sustained deliveries per second allowed per source address; 0 turns the limit off.
    pub requests_per_second_per_address: u32,
    /// Deliveries a source address may send at once above the sustained rate.
    pub burst_per_address: u32,
    /// Delivery log rows older than this are purged.
    pub delivery_log_retention_days: u32,
    /// How often the purge job runs.
    pub delivery_log_purge_interval_ms: u64,
    /// Most rows one purge run deletes per batch; a run deletes at most ten batches.
    pub delivery_log_purge_batch_max: u32,
    /// Bytes of an unverifiable delivery's body kept in the log.
    pub unverified_excerpt_bytes: usize,
    /// Unverifiable deliveries logged per provider and minute before only a sample is.
    pub unverified_logged_per_minute_max: i64,
    /// Past that, one unverifiable delivery in this many is logged.
    pub unverified_sample_every: i64,
    /// Longest the pipeline works on one verified delivery; past it the delivery is
    /// dead-lettered and answered 503. Below `http.request_timeout_ms`.
    pub processing_timeout_ms: u64,
    /// Most deliveries one bulk replay runs again.
    pub replay_bulk_max: u32,
    /// Outbound webhook URLs may name loopback, link-local and private addresses (tests on
    /// one machine); off, such URLs are refused (SSRF). `KASSA_WEBHOOKS_ALLOW_PRIVATE_URLS`.
    pub allow_private_urls: bool,
    /// Outbound webhooks to the operator's endpoints.
    pub outbound: OutboundWebhooksConfig,
}

/// Outbound webhooks (ADR 46): delivery limits, the retry schedule and when an endpoint
/// is disabled.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundWebhooksConfig {
    /// Longest one delivery attempt may take, connection included.
    pub timeout_ms: u64,
    /// Waits before retries 1, 2, …: the schedule's length bounds the attempts (one more than
    /// its entries). Each wait is jittered by ±20%.
    pub retry_schedule_ms: Vec<u64>,
    /// Longest wait a `Retry-After` answer is honoured up to.
    pub retry_after_max_ms: u64,
    /// Deliveries one node sends to one endpoint at once; more wait their turn.
    pub concurrency_per_endpoint_max: u32,
    /// An endpoint that has failed every attempt for this long is disabled.
    pub disable_after_failing_ms: i64,
    /// How long a rotated-out secret keeps signing beside the new one.
    pub secret_grace_ms: i64,
    /// Delivery attempts older than this many days are purged (with the inbound log's
    /// purge, every `webhooks.delivery_log_purge_interval_ms`).
    pub attempts_retention_days: u32,
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

/// The most one payment, refund, payout, wallet call or webhook may move (ADR 21).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// For every currency not named below, in its minor units.
    pub amount_max_minor_default: i64,
    /// Per currency code, in that currency's minor units.
    pub amount_max_minor: std::collections::BTreeMap<String, i64>,
}

impl LimitsConfig {
    /// The limits as the domain checks them; refuses unknown codes and out-of-range values.
    pub fn amount_limits(&self) -> anyhow::Result<kassa_core::AmountLimits> {
        let mut overrides = Vec::new();
        for (code, max_minor) in &self.amount_max_minor {
            let currency = kassa_core::Currency::from_code(code)
                .map_err(|e| anyhow::anyhow!("limits.amount_max_minor: {e}"))?;
            overrides.push((currency, *max_minor));
        }
        kassa_core::AmountLimits::new(self.amount_max_minor_default, overrides)
            .map_err(|e| anyhow::anyhow!("limits: {e}"))
    }
}

/// The secret API keys are stored under (ADR 26).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Key of the HMAC over stored API key hashes; empty: the built-in demo secret, which
    /// only a SQLite database may use.
    pub key_hash_secret: String,
}

/// Stands in for an empty `auth.key_hash_secret`: public, so only fit for a demo database.
pub const DEMO_KEY_HASH_SECRET: &str = "kassa-demo-key-hash-secret-not-for-production";
/// Shortest `auth.key_hash_secret` accepted: 32 bytes, the HMAC-SHA256 block's half.
pub const KEY_HASH_SECRET_LEN_MIN: usize = 32;

impl AuthConfig {
    /// The secret to key the hash with, and whether it is the public demo one.
    pub fn effective_key_hash_secret(&self) -> (&str, bool) {
        match self.key_hash_secret.as_str() {
            "" => (DEMO_KEY_HASH_SECRET, true),
            secret => (secret, secret == DEMO_KEY_HASH_SECRET),
        }
    }
}

/// The database's storage settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The SQLite writers' parking page cache (ADR 18, 19, 38), and with it the switches
    /// below; off, both writers open plain connections. `KASSA_SQLITE_TUNING=off|on`.
    #[serde(default = "default_sqlite_tuning")]
    pub sqlite_tuning: bool,
    /// With the tuning: the wallet writer's WAL shim (ADR 16, 40), which gathers a commit's
    /// WAL writes into a few system calls. `KASSA_SQLITE_WAL_GATHER=off|on`.
    #[serde(default = "default_sqlite_wal_gather")]
    pub sqlite_wal_gather: bool,
    /// SQLite's group commit of deposit starts and provider events (ADR 39): on only with
    /// `sqlite_tuning`; off alone, each has a commit of its own.
    /// `KASSA_SQLITE_GROUP_COMMIT=off|on`.
    #[serde(default = "default_sqlite_group_commit")]
    pub sqlite_group_commit: bool,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            sqlite_tuning: default_sqlite_tuning(),
            sqlite_wal_gather: default_sqlite_wal_gather(),
            sqlite_group_commit: default_sqlite_group_commit(),
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("key_hash_secret", &"<redacted>")
            .finish()
    }
}

/// On: the property, fault-injection and power-loss tests cover it (ADR 19).
fn default_sqlite_tuning() -> bool {
    true
}

/// ADR 40.
fn default_sqlite_wal_gather() -> bool {
    kassa_store::SQLITE_WAL_GATHER_DEFAULT
}

/// On: its store tests cover drops, cancellations and failed commits (ADR 39).
fn default_sqlite_group_commit() -> bool {
    true
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

/// The embedded sandbox PSP simulator, which `kassa serve` and `kassa demo` start for a
/// `sandbox` provider account that names no `base_url`. Not a provider account: its secrets
/// are the account's.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSimulatorConfig {
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

/// Payment provider accounts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    /// Every account, each serving one merchant; at most [`PROVIDER_ACCOUNTS_MAX`].
    pub accounts: Vec<ProviderAccountConfig>,
}

/// Most provider accounts one Kassa loads.
pub const PROVIDER_ACCOUNTS_MAX: usize = 1000;

/// Prefix of a credential that names an environment variable instead of holding the value.
pub const SECRET_ENV_PREFIX: &str = "env:";

/// One merchant's account at one provider. `Debug` shows credential names, never values.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderAccountConfig {
    /// Unique; payments are stored and webhooks addressed under it.
    pub id: String,
    /// The merchant whose payments may use it.
    pub merchant: String,
    /// The connector kind, e.g. `sandbox`.
    pub kind: String,
    /// Shown to people.
    pub name: String,
    /// Keys by name; a value `env:NAME` is read from that environment variable at load.
    pub credentials: std::collections::BTreeMap<String, SecretString>,
    /// The kind's other settings (base URL, timeouts, retries).
    #[serde(default)]
    pub settings: toml::Table,
    /// Networks (CIDR, e.g. `203.0.113.0/24`, `2001:db8::/32`) the account's webhooks may
    /// come from, as the socket's peer address (a bare address is a network of one); empty:
    /// any.
    #[serde(default)]
    pub webhook_source_cidrs: Vec<String>,
}

impl ProviderAccountConfig {
    /// The account as the connectors take it.
    pub fn to_account(&self) -> anyhow::Result<ProviderAccount> {
        let settings = match serde_json::to_value(&self.settings)? {
            serde_json::Value::Object(map) => map,
            _ => anyhow::bail!("provider account {:?}: settings must be a table", self.id),
        };
        Ok(ProviderAccount {
            id: self.id.clone(),
            merchant_id: self.merchant.clone(),
            kind: self.kind.clone(),
            display_name: self.name.clone(),
            credentials: self
                .credentials
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            settings,
        })
    }

    /// The networks of `webhook_source_cidrs`; an error names the account and the entry.
    pub fn webhook_source_networks(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        self.webhook_source_cidrs
            .iter()
            .map(|cidr| {
                let cidr = cidr.trim();
                // A bare address is a network of one.
                let parsed = cidr
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
                parsed.map_err(|_| {
                    anyhow::anyhow!(
                        "provider account {:?}: webhook_source_cidrs entry {cidr:?} is not a \
                         network in CIDR notation (such as \"203.0.113.0/24\" or \"2001:db8::/32\")",
                        self.id
                    )
                })
            })
            .collect()
    }

    /// Replaces every `env:NAME` credential by that variable's value, through `lookup`.
    fn resolve_secrets(&mut self, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        for (name, value) in self.credentials.iter_mut() {
            let Some(variable) = value.expose_secret().strip_prefix(SECRET_ENV_PREFIX) else {
                continue;
            };
            let resolved = lookup(variable).filter(|v| !v.is_empty()).ok_or_else(|| {
                anyhow::anyhow!(
                    "provider account {:?}: credential {name:?} names {variable}, which is not set",
                    self.id
                )
            })?;
            *value = SecretString::from(resolved);
        }
        Ok(())
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
    /// Minutes without a wallet call that end a play session, for session-time limits
    /// (ADR 78).
    #[serde(default = "default_play_session_break_minutes")]
    pub play_session_break_minutes: i64,
}

impl WalletConfig {
    /// [`play_session_break_minutes`](Self::play_session_break_minutes) in milliseconds.
    pub fn play_session_break_ms(&self) -> i64 {
        self.play_session_break_minutes * 60_000
    }
}

/// Kassa's choice, absent a regulator's definition of a session (ADR 78).
fn default_play_session_break_minutes() -> i64 {
    kassa_core::play_limits::SESSION_BREAK_MINUTES_DEFAULT
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
        let file_text = match path {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read config file {path}: {e}"))?,
            ),
            None => None,
        };
        let mut config =
            Config::from_file_text(file_text.as_deref().unwrap_or("")).map_err(|e| match path {
                Some(path) => anyhow::anyhow!("config file {path}: {e}"),
                None => e,
            })?;
        config.apply(overrides);
        for account in config
            .providers
            .accounts
            .iter_mut()
            .chain(config.kyc.accounts.iter_mut())
            .chain(config.registers.accounts.iter_mut())
        {
            account.resolve_secrets(|name| std::env::var(name).ok())?;
        }
        config
            .vault
            .resolve_secrets(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Defaults overlaid by the text of a config file, validated; no environment is read.
    /// The parser of the one file an operator hands Kassa, and what the config fuzzer drives.
    pub fn from_file_text(text: &str) -> anyhow::Result<Config> {
        let mut merged: toml::Table = toml::from_str(DEFAULTS_TOML)?;
        let file: toml::Table = toml::from_str(text)?;
        overlay(&mut merged, file);
        let config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
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
                self.set_sandbox_credential("webhook_secret", &secret);
            }
        }
        if let Ok(secret) = std::env::var(KEY_HASH_SECRET_VAR) {
            if !secret.is_empty() {
                self.auth.key_hash_secret = secret;
            }
        }
        if let Some(tuning) = kassa_store::sqlite_tuning_from_env() {
            self.storage.sqlite_tuning = tuning;
        }
        if let Some(wal_gather) = kassa_store::sqlite_wal_gather_from_env() {
            self.storage.sqlite_wal_gather = wal_gather;
        }
        if let Some(group_commit) = kassa_store::sqlite_group_commit_from_env() {
            self.storage.sqlite_group_commit = group_commit;
        }
        if let Ok(listen) = std::env::var(METRICS_LISTEN_VAR) {
            self.metrics.listen = listen;
        }
        if let Some(zeroing) = ZeroFreedMemory::from_env() {
            self.security.zero_freed_memory = zeroing;
        }
        if let Ok(allow) = std::env::var(ALLOW_PRIVATE_URLS_VAR) {
            self.webhooks.allow_private_urls = matches!(
                allow.to_ascii_lowercase().as_str(),
                "true" | "on" | "1" | "yes"
            );
        }
        if let Ok(url) = std::env::var(EVENTS_NATS_URL_VAR) {
            self.events_stream.nats_url = url;
        }
        if let Ok(autopilot) = std::env::var("KASSA_SANDBOX_AUTOPILOT") {
            self.sandbox.autopilot = !matches!(
                autopilot.to_ascii_lowercase().as_str(),
                "off" | "false" | "0" | "no"
            );
        }
    }

    /// Sets the credential `name` of every `sandbox` account (the sandbox's secrets are shared
    /// with `kassa sim psp`, which reads the same variables).
    pub fn set_sandbox_credential(&mut self, name: &str, value: &str) {
        for account in &mut self.providers.accounts {
            if account.kind == kassa_connectors::sandbox::KIND {
                account
                    .credentials
                    .insert(name.to_string(), SecretString::from(value));
            }
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.metrics.listen.is_empty()
                || self.metrics.listen.parse::<std::net::SocketAddr>().is_ok(),
            "metrics.listen must be empty or an address like 127.0.0.1:9464, not {:?}",
            self.metrics.listen
        );
        anyhow::ensure!(
            self.providers.accounts.len() + self.kyc.accounts.len() + self.registers.accounts.len()
                <= PROVIDER_ACCOUNTS_MAX,
            "at most {PROVIDER_ACCOUNTS_MAX} provider accounts"
        );
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
            (1..=kassa_core::play_limits::SESSION_MINUTES_MAX)
                .contains(&self.wallet.play_session_break_minutes),
            "wallet.play_session_break_minutes must be between 1 and 1440"
        );
        anyhow::ensure!(
            self.idempotency.retention_hours >= 24,
            "idempotency.retention_hours must be at least 24"
        );
        self.validate_webhooks()?;
        for account in &self.providers.accounts {
            account.webhook_source_networks()?;
            kassa_core::ids::MerchantId::parse(&account.merchant).map_err(|error| {
                anyhow::anyhow!(
                    "provider account {:?}: merchant {:?} {error}",
                    account.id,
                    account.merchant
                )
            })?;
        }
        self.jobs.validate()?;
        self.registers.validate()?;
        self.webhooks.outbound.validate()?;
        self.events_stream.validate()?;
        self.limits.amount_limits()?;
        if let Some(rules) = &self.risk.rules {
            rules
                .clone()
                .validate()
                .map_err(|e| anyhow::anyhow!("[risk.rules] {e}"))?;
        }
        if let Some(problem) = self.aml.settings().problem() {
            anyhow::bail!("[aml] {problem}");
        }
        anyhow::ensure!(
            self.aml.monitor_coalesce_ms <= MONITOR_COALESCE_MS_MAX,
            "[aml] monitor_coalesce_ms must be at most {MONITOR_COALESCE_MS_MAX} (ten minutes): \
             alerts would come too late"
        );
        self.aml
            .reporting_entity
            .lookups
            .check()
            .map_err(|e| anyhow::anyhow!("[aml.reporting_entity] {e}"))?;
        let secret_len = self.auth.key_hash_secret.len();
        anyhow::ensure!(
            secret_len == 0 || secret_len >= KEY_HASH_SECRET_LEN_MIN,
            "auth.key_hash_secret must be empty (demo) or at least {KEY_HASH_SECRET_LEN_MIN} bytes"
        );
        Ok(())
    }

    fn validate_webhooks(&self) -> anyhow::Result<()> {
        let webhooks = &self.webhooks;
        anyhow::ensure!(
            webhooks.processing_timeout_ms >= 1
                && webhooks.processing_timeout_ms < self.http.request_timeout_ms,
            "webhooks.processing_timeout_ms must be at least 1 and below http.request_timeout_ms"
        );
        anyhow::ensure!(
            (1..=1000).contains(&webhooks.replay_bulk_max),
            "webhooks.replay_bulk_max must be between 1 and 1000"
        );
        Ok(())
    }

    /// The IP allow-lists of the provider accounts that have one.
    pub fn source_allow_lists(&self) -> anyhow::Result<SourceAllowLists> {
        let mut by_account = std::collections::HashMap::new();
        for account in self.providers.accounts.iter().chain(&self.kyc.accounts) {
            let networks = account.webhook_source_networks()?;
            if !networks.is_empty() {
                by_account.insert(account.id.clone(), networks);
            }
        }
        Ok(SourceAllowLists::new(by_account))
    }

    /// Refuses a PostgreSQL deployment keyed with the public demo secret: its API key hashes
    /// could be checked offline by anyone holding a copy of the database (ADR 26).
    pub fn check_key_hash_secret_fits_database(&self) -> anyhow::Result<()> {
        let (_, is_demo) = self.auth.effective_key_hash_secret();
        anyhow::ensure!(
            !(is_demo && self.database_url.starts_with("postgres")),
            "a PostgreSQL database needs its own auth.key_hash_secret (at least \
             {KEY_HASH_SECRET_LEN_MIN} random bytes; {KEY_HASH_SECRET_VAR} or the config file): \
             the built-in demo secret is public"
        );
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

impl OutboundWebhooksConfig {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (100..=120_000).contains(&self.timeout_ms),
            "webhooks.outbound.timeout_ms must be between 100 and 120000"
        );
        anyhow::ensure!(
            (1..=20).contains(&self.retry_schedule_ms.len()),
            "webhooks.outbound.retry_schedule_ms must list 1 to 20 waits"
        );
        anyhow::ensure!(
            (1..=64).contains(&self.concurrency_per_endpoint_max),
            "webhooks.outbound.concurrency_per_endpoint_max must be between 1 and 64"
        );
        anyhow::ensure!(
            self.disable_after_failing_ms >= 1 && self.secret_grace_ms >= 0,
            "webhooks.outbound.disable_after_failing_ms must be positive, secret_grace_ms not negative"
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
    fn metrics_are_off_by_default_and_take_only_an_address() {
        assert_eq!(Config::defaults().metrics.listen, "");
        let on = Config::from_file_text("[metrics]\nlisten = \"127.0.0.1:9464\"\n").unwrap();
        assert_eq!(on.metrics.listen, "127.0.0.1:9464");
        let refused = Config::from_file_text("[metrics]\nlisten = \"everywhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(refused.contains("metrics.listen"), "{refused}");
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

    #[test]
    fn registers_are_off_until_mapped_and_bad_maps_are_errors() {
        let config = Config::defaults();
        assert!(config.registers.jurisdictions.is_empty());
        assert!(config.registers.accounts.is_empty());
        let sandbox = "[registers.jurisdictions]\nGB = \"gamstop\"\nSE = \"spelpaus\"\n\
            [[registers.accounts]]\nid = \"gamstop-sandbox\"\nmerchant = \"mch_demo\"\n\
            kind = \"gamstop\"\nname = \"GAMSTOP sandbox\"\n\
            [registers.accounts.credentials]\napi_key = \"k\"\n";
        let config = Config::from_file_text(sandbox).unwrap();
        assert_eq!(config.registers.jurisdictions["GB"], "gamstop");
        assert_eq!(config.registers.policy().recheck_after_ms, 24 * 3_600_000);
        assert_eq!(
            (
                config.registers.recheck_sweep_minutes,
                config.registers.recheck_active_days,
                config.registers.recheck_batch_max,
                config.registers.recheck_batches_per_run_max,
            ),
            (60, 30, 100, 10)
        );
        assert_eq!(
            config.registers.registers_in_use(),
            [("gamstop", vec!["GB"]), ("spelpaus", vec!["SE"])].into()
        );
        for bad in [
            "[registers.jurisdictions]\nGB = \"gamstopp\"\n",
            "[registers]\nrecheck_hours = 73\nvalid_hours = 72\n",
            "[registers]\nvalid_hours = 100000\n",
            "[registers]\nrecheck_sweep_minutes = 0\n",
            "[registers]\nrecheck_active_days = 366\n",
            "[registers]\nrecheck_batch_max = 1001\n",
            "[registers]\nrecheck_batches_per_run_max = 0\n",
        ] {
            assert!(Config::from_file_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_sandbox_account_serves_the_demo_merchant() {
        let config = Config::defaults();
        let [account] = config.providers.accounts.as_slice() else {
            panic!("one default account")
        };
        assert_eq!(account.id, "sandbox");
        assert_eq!(account.merchant, crate::bootstrap::DEMO_MERCHANT_ID);
        let account = account.to_account().unwrap();
        assert_eq!(account.kind, "sandbox");
        assert_eq!(account.setting_str("base_url", "x").unwrap(), "");
        assert!(account.credential("api_secret").is_ok());
    }

    #[test]
    fn debug_and_logs_of_the_config_never_show_a_credential() {
        let mut config = Config::defaults();
        config.set_sandbox_credential("webhook_secret", "whsec_do_not_print_me");
        let shown = format!(
            "{config:?} {config:#?} {:?}",
            config.providers.accounts[0].to_account().unwrap()
        );
        assert!(!shown.contains("whsec_do_not_print_me"), "{shown}");
        assert!(!shown.contains("sandbox_api_secret_not_for_production"));
        assert!(shown.contains("webhook_secret"), "the names still show");
    }

    #[test]
    fn a_file_replaces_the_accounts_and_secrets_may_name_the_environment() {
        let text = r#"
            [[providers.accounts]]
            id = "psp-eu"
            merchant = "mch_eu"
            kind = "sandbox"
            name = "EU sandbox"
            credentials = { api_secret = "env:TEST_PSP_EU_API", webhook_secret = "literal" }
            settings = { base_url = "http://psp.internal:8090", timeout_ms = 2500 }
        "#;
        let file: toml::Table = toml::from_str(text).unwrap();
        let mut merged: toml::Table = toml::from_str(DEFAULTS_TOML).unwrap();
        overlay(&mut merged, file);
        let mut config: Config = toml::Value::Table(merged).try_into().unwrap();
        let [account] = config.providers.accounts.as_mut_slice() else {
            panic!("the file's accounts replace the defaults")
        };
        assert!(
            account.clone().resolve_secrets(|_| None).is_err(),
            "unset: refuse"
        );
        account
            .resolve_secrets(|name| (name == "TEST_PSP_EU_API").then(|| "from-env".into()))
            .unwrap();
        let account = account.to_account().unwrap();
        assert_eq!(
            account.credential("api_secret").unwrap().expose_secret(),
            "from-env"
        );
        assert_eq!(
            account
                .credential("webhook_secret")
                .unwrap()
                .expose_secret(),
            "literal"
        );
        assert_eq!(account.setting_u64("timeout_ms", 0).unwrap(), 2500);
        assert_eq!(account.merchant_id, "mch_eu");
    }

    #[test]
    fn webhook_source_cidrs_are_checked_at_load() {
        let account = |cidrs: &str| {
            format!(
                "[[providers.accounts]]\nid = \"psp\"\nmerchant = \"mch_eu\"\n\
                 kind = \"sandbox\"\nname = \"PSP\"\ncredentials = {{ api_secret = \"x\" }}\n\
                 webhook_source_cidrs = [{cidrs}]\n"
            )
        };
        let config =
            Config::from_file_text(&account(r#""203.0.113.0/24", "2001:db8::/32""#)).unwrap();
        let lists = config.source_allow_lists().unwrap();
        assert!(lists.permits("psp", Some("203.0.113.7".parse().unwrap())));
        assert!(!lists.permits("psp", Some("127.0.0.1".parse().unwrap())));
        let single = Config::from_file_text(&account(r#""10.0.0.1""#)).unwrap();
        let lists = single.source_allow_lists().unwrap();
        assert!(lists.permits("psp", Some("10.0.0.1".parse().unwrap())));
        assert!(!lists.permits("psp", Some("10.0.0.2".parse().unwrap())));
        for bad in [
            r#""203.0.113.0/33""#,
            r#""not-a-network""#,
            r#""10.0.0.256""#,
        ] {
            let error = Config::from_file_text(&account(bad))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("webhook_source_cidrs") && error.contains("\"psp\""),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn a_provider_account_names_a_merchant_id() {
        let account = |merchant: &str| {
            format!(
                "[[providers.accounts]]\nid = \"psp\"\nmerchant = \"{merchant}\"\n\
                 kind = \"sandbox\"\nname = \"PSP\"\ncredentials = {{ api_secret = \"x\" }}\n"
            )
        };
        assert!(Config::from_file_text(&account("mch_eu")).is_ok());
        for bad in ["eu", "mch_", "mch_a b", ""] {
            let refused = Config::from_file_text(&account(bad)).unwrap_err();
            assert!(
                refused.to_string().contains("merchant"),
                "{bad:?}: {refused}"
            );
        }
    }

    #[test]
    fn a_risk_rule_set_from_config_is_validated_with_its_place() {
        let config = Config::from_file_text(
            "[risk.rules]\nthresholds = { review = 10, step_up = 20, decline = 30 }\n\
             [[risk.rules.rules]]\nid = \"tor\"\nscore = 30\nwhen = { flag = \"ip_tor\" }\n",
        )
        .unwrap();
        let rules = config.risk.rules.expect("a rule set");
        assert_eq!(rules.rules[0].id, "tor");
        assert_eq!(rules.thresholds.decline, 30);
        let error = Config::from_file_text(
            "[[risk.rules.rules]]\nid = \"x\"\nscore = 1\nwhen = { flag = \"amount_minor\" }\n",
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("rules[0].when.flag.feature"),
            "{error:#}"
        );
    }

    #[test]
    fn aml_thresholds_take_overrides_per_jurisdiction_and_bad_ones_are_refused() {
        let defaults = Config::defaults().aml.settings();
        assert_eq!(
            defaults.for_jurisdiction(Some("MT")).cdd_window_hours,
            180 * 24
        );
        let config = Config::from_file_text(
            "[aml.thresholds]\ncdd_threshold_minor = { EUR = 150000 }\n\
             [aml.jurisdictions.SE]\nstructuring_deposits_min = 4\n\
             [aml.reporting_entity]\nid = \"4711\"\nname = \"Casino Ltd\"\n",
        )
        .unwrap();
        let settings = config.aml.settings();
        let se = settings.for_jurisdiction(Some("SE"));
        assert_eq!(
            (se.structuring_deposits_min, se.threshold_minor("EUR")),
            (4, Some(150_000))
        );
        // Naming jurisdictions replaces the built-in list: MT is back to the defaults.
        assert_eq!(settings.for_jurisdiction(Some("MT")).cdd_window_hours, 24);
        assert_eq!(config.aml.reporting_entity.id, "4711");
        let fiu = Config::from_file_text(
            "[aml.reporting_entity]\nid = \"4711\"\nname = \"Casino Ltd\"\n\
             [aml.reporting_entity.lookups]\nstrict = true\ntransmode = { card = \"K\" }\n",
        )
        .unwrap();
        let lookups = &fiu.aml.reporting_entity.lookups;
        assert_eq!((lookups.transmode("card"), lookups.strict), ("K", true));
        let error = Config::from_file_text(
            "[aml.reporting_entity]\nid = \"4711\"\nname = \"Casino Ltd\"\n\
             [aml.reporting_entity.lookups]\nindicators = { structuring = \"\" }\n",
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("lookups.indicators"),
            "{error:#}"
        );
        let error =
            Config::from_file_text("[aml.jurisdictions.GB]\ncdd_window_hours = 0\n").unwrap_err();
        assert!(
            format!("{error:#}").contains("jurisdictions.GB.cdd_window_hours"),
            "{error:#}"
        );
        assert_eq!(Config::defaults().aml.monitor_coalesce_ms, 2_000);
        let at_once = Config::from_file_text("[aml]\nmonitor_coalesce_ms = 0\n").unwrap();
        assert_eq!(at_once.aml.monitor_coalesce_ms, 0);
        let error = Config::from_file_text("[aml]\nmonitor_coalesce_ms = 600001\n").unwrap_err();
        assert!(
            format!("{error:#}").contains("monitor_coalesce_ms"),
            "{error:#}"
        );
    }

    #[test]
    fn amount_limits_come_from_config_and_bad_ones_are_refused() {
        let config = Config::defaults();
        let limits = config.limits.amount_limits().unwrap();
        let eur = kassa_core::Currency::from_code("EUR").unwrap();
        let usdt = kassa_core::Currency::from_code("USDT").unwrap();
        assert_eq!(limits.max_minor(eur), 100_000_000_000);
        assert_eq!(limits.max_minor(usdt), 10_000_000_000_000);
        let config = Config::from_file_text(
            "[limits]\namount_max_minor_default = 500\n[limits.amount_max_minor]\nJPY = 7\n",
        )
        .unwrap();
        let limits = config.limits.amount_limits().unwrap();
        assert_eq!(limits.max_minor(eur), 500);
        let jpy = kassa_core::Currency::from_code("JPY").unwrap();
        assert_eq!(limits.max_minor(jpy), 7);
        assert_eq!(limits.max_minor(usdt), 10_000_000_000_000, "defaults stay");
        for bad in [
            "[limits]\namount_max_minor_default = 0\n",
            "[limits]\namount_max_minor_default = 9223372036854775807\n",
            "[limits.amount_max_minor]\nXXX = 5\n",
            "[limits.amount_max_minor]\nEUR = -5\n",
        ] {
            assert!(Config::from_file_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn postgres_refuses_the_demo_key_hash_secret() {
        let mut config = Config::defaults();
        assert!(
            config.check_key_hash_secret_fits_database().is_ok(),
            "SQLite demo"
        );
        config.database_url = "postgres://kassa@db:5432/kassa".into();
        assert!(config.check_key_hash_secret_fits_database().is_err());
        config.auth.key_hash_secret = DEMO_KEY_HASH_SECRET.into();
        assert!(config.check_key_hash_secret_fits_database().is_err());
        config.auth.key_hash_secret = "x".repeat(KEY_HASH_SECRET_LEN_MIN);
        assert!(config.check_key_hash_secret_fits_database().is_ok());
        assert!(Config::from_file_text("[auth]\nkey_hash_secret = \"short\"\n").is_err());
        assert!(
            !format!("{:?}", config.auth).contains("xxxx"),
            "never shown"
        );
    }
}
