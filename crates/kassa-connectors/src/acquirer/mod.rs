//! Direct card acquiring over ISO 8583 (account kind `iso8583`): Kassa acts as a terminal at
//! the acquirer's host, over one persistent TCP connection per account ([`session`]).
//!
//! * A card deposit is a `0200` purchase (processing code `00`, MCC 7995 in field 18); its
//!   approval takes the funds, so the server credits at once ([`CardCharge::captured`]). With
//!   `capture = "authorize_then_complete"` it is a `0100`, credited on approval too, whose
//!   `0220` completion the server queues with the credit ([`CardCharge::completion_advice`],
//!   ADR 69).
//! * A refund is a `0200` with processing code `20` naming its original in field 90; a payout
//!   to a card an original credit transaction (`0200`, processing code `26`).
//! * Every `0200` that gets no answer in time is reversed by a `0420` advice, repeated as
//!   `0421` until the host answers; the advice lives in the server's job queue
//!   ([`AdviceQueue`]), so a restart does not forget it.
//! * STAN and RRN come from [`TraceNumbers`], which the server keeps in its database: unique
//!   per terminal per day, across restarts.
//! * Field 39 maps to Kassa's decline reasons and classes as data ([`wire::decline_of`]).
//!
//! The card number reaches [`AcquirerConnector::charge_card`] and
//! [`AcquirerConnector::payout_to_card`] only (ADR 49), and leaves them only inside the
//! packed message.
//!
//! Not the [`crate::Connector`] composition of ADR 29: its translator takes its per-attempt
//! facts from a synchronous [`crate::CallContext`], and a message here needs trace numbers
//! from the database first and a reversal when it times out; the pure half is [`wire`].

pub mod advice;
mod connection;
pub mod numbers;
pub mod session;
pub mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kassa_core::Currency;
use kassa_iso8583::framing::{FrameCodec, FrameHeader, DEFAULT_MAX_FRAME_BYTES};
use kassa_iso8583::{Message, Spec};
use reqwest::header::HeaderMap;

use self::advice::{AdviceAnswer, AdviceQueue, ReversalAdvice};
use self::numbers::{utc_day, TraceNumber, TraceNumbers};
use self::session::{Session, SessionConfig, Stamper};
use self::wire::{DeclineClass, Financial, FinancialRequest, OriginalRef, Stamp, Terminal};
use crate::account::{AccountError, ProviderAccount};
use crate::card::CardDetails;
use crate::event::InboundRefusal;
use crate::inbound::{InboundBatch, RawInbound};
use crate::provider::{
    Capabilities, CardCharge, PaymentProvider, PaymentRequest, PaymentStart, PaymentStarted,
    PaymentStatusReport, PayoutAccepted, PayoutRequest, ProviderError, ProviderPaymentStatus,
    ProviderPayoutStatus, RefundAccepted, RefundRequest,
};
use crate::threeds::{
    self, AuthenticationRequest, AuthenticationResult, CardAuthentication, DirectoryServer,
};

/// The account kind of a direct ISO 8583 acquirer.
pub const KIND: &str = "iso8583";
/// The provider reference of a deposit waiting on Kassa's card page (before its `0200`).
const CARD_PAGE_REFERENCE: &str = "card-page:";
/// A request's reversal advice is due this many timeouts after it leaves, unless the answer
/// cancels it first: past the caller's own timeout, so it never reverses a request still
/// being answered.
const ADVICE_SAFETY_NET_TIMEOUTS: u32 = 3;
/// Answer timeout unless the account says otherwise.
const TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Keep-alive period unless the account says otherwise.
const ECHO_INTERVAL_MS_DEFAULT: u64 = 30_000;
/// First reconnect wait unless the account says otherwise.
const RECONNECT_MIN_MS_DEFAULT: u64 = 100;
/// Longest reconnect wait unless the account says otherwise.
const RECONNECT_MAX_MS_DEFAULT: u64 = 30_000;

/// What the server lends an acquirer connector: the database-backed trace numbers and the
/// job queue its reversal advices wait in.
#[derive(Clone)]
pub struct AcquirerServices {
    /// STAN and RRN per terminal per day.
    pub numbers: Arc<dyn TraceNumbers>,
    /// Where timed-out requests' reversal advices wait until the host answers them.
    pub advices: Arc<dyn AdviceQueue>,
}

/// An acquirer account's settings, checked.
#[derive(Clone)]
pub struct AcquirerConfig {
    /// The host's `address:port`.
    pub address: String,
    /// Field 41 and 42.
    pub terminal: Terminal,
    /// The dialect (pyiso8583's `default_ascii` unless the account names a file).
    pub spec: Arc<Spec>,
    /// The frame header.
    pub header: FrameHeader,
    /// Per-message answer timeout.
    pub timeout: Duration,
    /// Keep-alive period.
    pub echo_interval: Duration,
    /// Reconnect backoff, first and longest wait.
    pub reconnect: (Duration, Duration),
    /// The currencies the acquirer settles.
    pub currencies: Vec<Currency>,
    /// Kassa's card page, where a deposit sends the player (`{url}/{payment_id}`).
    pub card_page_url: Option<String>,
    /// The 3-D Secure Directory Server card-page deposits authenticate at (ADR 67);
    /// `None`: no 3-D Secure.
    pub threeds_directory_url: Option<String>,
    /// How a deposit takes the funds.
    pub capture: Capture,
}

/// How a card deposit takes the funds (setting `capture`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Capture {
    /// `purchase`: one `0200`, whose approval takes the funds.
    #[default]
    Purchase,
    /// `authorize_then_complete`: a `0100` authorization, then a `0220` completion advice
    /// repeated as `0221` until the host answers (ADR 69).
    AuthorizeThenComplete,
}

/// A direct acquirer: one terminal, one session.
pub struct AcquirerConnector {
    name: String,
    timeout: Duration,
    capabilities: Capabilities,
    terminal: Terminal,
    currencies: Vec<(Currency, &'static str)>,
    card_page_url: Option<String>,
    directory_server: Option<DirectoryServer>,
    capture: Capture,
    services: AcquirerServices,
    session: Session,
}

impl fmt::Debug for AcquirerConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquirerConnector")
            .field("name", &self.name)
            .field("terminal", &self.terminal.terminal_id)
            .finish_non_exhaustive()
    }
}

/// Makes the stamp of the next message of `terminal_id`.
fn stamper(numbers: Arc<dyn TraceNumbers>, terminal_id: String) -> Stamper {
    Arc::new(move || {
        let (numbers, terminal_id) = (numbers.clone(), terminal_id.clone());
        Box::pin(async move { next_stamp(numbers.as_ref(), &terminal_id).await })
    })
}

async fn next_stamp(numbers: &dyn TraceNumbers, terminal_id: &str) -> Result<Stamp, ProviderError> {
    let now = time::OffsetDateTime::now_utc();
    let day = utc_day(now);
    let sequence = numbers.next_sequence(terminal_id, &day).await?;
    Ok(Stamp {
        numbers: TraceNumber::of(sequence, &day),
        now,
    })
}

impl AcquirerConnector {
    /// What a card deposit of this account sends: a `0200` purchase, or a `0100`
    /// authorization completed later.
    fn deposit_kind(&self) -> Financial {
        match self.capture {
            Capture::Purchase => Financial::Purchase,
            Capture::AuthorizeThenComplete => Financial::Authorization,
        }
    }

    /// The connector of account `name`; its session starts connecting at once.
    pub fn start(
        name: &str,
        config: AcquirerConfig,
        services: AcquirerServices,
    ) -> Result<AcquirerConnector, String> {
        let currencies = config
            .currencies
            .iter()
            .map(|&currency| {
                wire::currency_numeric(currency)
                    .map(|numeric| (currency, numeric))
                    .ok_or_else(|| {
                        format!("no ISO 4217 numeric code known for {}", currency.code())
                    })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let timeout = config.timeout;
        let directory_server = match &config.threeds_directory_url {
            Some(url) => Some(DirectoryServer::new(url, timeout).map_err(|e| e.to_string())?),
            None => None,
        };
        let session = Session::start(
            SessionConfig {
                address: config.address,
                spec: config.spec,
                codec: FrameCodec::new(config.header, DEFAULT_MAX_FRAME_BYTES),
                timeout: config.timeout,
                echo_interval: config.echo_interval,
                backoff_min: config.reconnect.0,
                backoff_max: config.reconnect.1,
                terminal: config.terminal.clone(),
            },
            stamper(
                services.numbers.clone(),
                config.terminal.terminal_id.clone(),
            ),
        );
        Ok(AcquirerConnector {
            name: name.to_string(),
            timeout,
            capabilities: Capabilities {
                methods: vec!["card".into()],
                currencies: config.currencies,
                countries: Vec::new(),
                payouts: true,
                refunds: true,
            },
            terminal: config.terminal,
            currencies,
            card_page_url: config.card_page_url,
            directory_server,
            capture: config.capture,
            services,
            session,
        })
    }

    /// Signs off and closes the connection (also done, in the background, on drop).
    pub async fn shutdown(&self) {
        self.session.shutdown().await;
    }

    /// Whether card-page deposits of this account run 3-D Secure first.
    pub fn requires_threeds(&self) -> bool {
        self.directory_server.is_some()
    }

    /// Sends the AReq of a card-page deposit to the account's Directory Server (ADR 67) as
    /// 3DS transaction `trans_id`: the ACS's result comes back to the card page under
    /// `{card_page_url}/{payment_id}/threeds/…`. `None` when the account runs no 3-D Secure.
    pub async fn authenticate(
        &self,
        request: &PaymentRequest,
        card: &CardDetails,
        trans_id: &str,
    ) -> Result<Option<AuthenticationResult>, ProviderError> {
        let (Some(directory), Some(page)) = (&self.directory_server, &self.card_page_url) else {
            return Ok(None);
        };
        let base = format!("{page}/{}/threeds", request.payment_id);
        let (notification_url, server_url) = (format!("{base}/return"), format!("{base}/results"));
        let purchase = threeds::Purchase {
            three_ds_server_trans_id: trans_id,
            card,
            amount_minor: request.amount_minor,
            currency_numeric: self.currency_numeric(request.currency)?,
            currency_exponent: request.currency.exponent(),
            acquirer_merchant_id: self.terminal.card_acceptor_id.trim_end(),
            notification_url: &notification_url,
            three_ds_server_url: &server_url,
        };
        let areq = AuthenticationRequest::of(&purchase);
        directory.authenticate(&areq).await.map(Some)
    }

    async fn stamp(&self) -> Result<Stamp, ProviderError> {
        next_stamp(self.services.numbers.as_ref(), &self.terminal.terminal_id).await
    }

    fn currency_numeric(&self, currency: Currency) -> Result<&'static str, ProviderError> {
        self.currencies
            .iter()
            .find(|(known, _)| *known == currency)
            .map(|(_, numeric)| *numeric)
            .ok_or_else(|| ProviderError::Rejected {
                code: "unsupported_currency".into(),
                message: format!("{} does not settle {}", self.name, currency.code()),
            })
    }

    /// Sends a `0200` and answers the host's answer with the reversal advice still queued.
    /// The advice is queued before the request leaves, due [`ADVICE_SAFETY_NET_TIMEOUTS`]
    /// timeouts later: a timeout, a connection lost after the write, or a node that dies
    /// while the request is out all leave it queued, so a charge is never left behind
    /// unknowingly. A request that never left has its advice cancelled here; an answered one
    /// is the caller's to cancel, once it has recorded the answer ([`Self::financial_answered`],
    /// or the server's transaction for a card charge).
    async fn financial(
        &self,
        request: FinancialRequest<'_>,
        reference_id: &str,
    ) -> Result<(OriginalRef, Message, ReversalAdvice), ProviderError> {
        let stamp = self.stamp().await?;
        let message = wire::financial(&request, &self.terminal, &stamp)?;
        let original = OriginalRef::of(&self.terminal, &stamp);
        let advice = self.advice_for(&request, &original, reference_id)?;
        let due_in = self.timeout * ADVICE_SAFETY_NET_TIMEOUTS;
        self.services
            .advices
            .enqueue(advice.clone(), due_in)
            .await?;
        match self.session.call(message).await {
            Ok(answer) => Ok((original, answer, advice)),
            Err(ProviderError::Timeout) => {
                tracing::warn!(account = %self.name, reference_id, stan = %original.stan, "acquirer request unanswered; its reversal advice stays queued");
                Err(ProviderError::Timeout)
            }
            Err(error) => {
                // The request never reached the host: nothing to reverse.
                self.cancel_advice(&advice).await?;
                Err(error)
            }
        }
    }

    /// [`Self::financial`] for a refund or a credit, read: a refusal changed nothing at the
    /// host, so its advice is cancelled at once; an approval's advice stays queued and its key
    /// goes back to the server, which cancels it in the transaction that records the approval
    /// (ADR 49): a node dying in between reverses the refund or credit instead of leaving it
    /// done and unrecorded (and a payout sent again).
    async fn financial_answered(
        &self,
        request: FinancialRequest<'_>,
        reference_id: &str,
    ) -> Result<(OriginalRef, Result<String, wire::Decline>), ProviderError> {
        let (original, answer, advice) = self.financial(request, reference_id).await?;
        match wire::decline_of(wire::response_code(&answer)?) {
            None => Ok((original, Ok(advice.key()))),
            Some(decline) => {
                self.cancel_advice(&advice).await?;
                Ok((original, Err(decline)))
            }
        }
    }

    async fn cancel_advice(&self, advice: &ReversalAdvice) -> Result<(), ProviderError> {
        self.services.advices.cancel(advice).await.inspect_err(|error| {
            tracing::error!(account = %self.name, advice = %advice.key(), %error, "reversal advice not cancelled; the request will be reversed");
        })
    }

    fn advice_for(
        &self,
        request: &FinancialRequest<'_>,
        original: &OriginalRef,
        reference_id: &str,
    ) -> Result<ReversalAdvice, ProviderError> {
        Ok(ReversalAdvice {
            account_id: self.name.clone(),
            reference_id: reference_id.to_string(),
            original_mti: request.kind.mti().into(),
            processing_code: request.kind.processing_code().into(),
            amount: wire::amount_field(request.amount_minor)?,
            currency_numeric: request.currency_numeric.into(),
            original_stan: original.stan.clone(),
            original_transmitted: original.transmitted.clone(),
            rrn: original.rrn.clone(),
            terminal_id: original.terminal_id.clone(),
        })
    }

    /// Sends a queued completion advice of an approved `0100`: `0220` the first time, `0221`
    /// on every repeat. `Ok(Err(code))`: the host answered and refused it.
    /// [`ProviderError::Timeout`] or [`ProviderError::Unavailable`] mean: send it again later.
    pub async fn send_completion_advice(
        &self,
        original: &ReversalAdvice,
        repeat: bool,
    ) -> Result<Result<(), String>, ProviderError> {
        let stamp = self.stamp().await?;
        let message = wire::completion_advice(original, repeat, &self.terminal, &stamp);
        let answer = self.session.call(message).await?;
        wire::completion_answer(&answer)
    }

    /// Sends a queued reversal advice: `0420` the first time, `0421` on every repeat.
    /// [`ProviderError::Timeout`] or [`ProviderError::Unavailable`] mean: send it again later.
    pub async fn send_reversal_advice(
        &self,
        advice: &ReversalAdvice,
        repeat: bool,
    ) -> Result<AdviceAnswer, ProviderError> {
        let stamp = self.stamp().await?;
        let message = wire::reversal_advice(advice, repeat, &self.terminal, &stamp);
        let answer = self.session.call(message).await?;
        wire::advice_answer(&answer)
    }
}

/// The account's settings as an [`AcquirerConfig`]: `address` (required, `host:port`),
/// `terminal_id` and `card_acceptor_id` (required), `frame_header` (`binary_length2`,
/// `ascii_length4`, `tpdu`), `dialect_file` (a TOML dialect; default pyiso8583's
/// `default_ascii`), `currencies` (comma separated, default `EUR`), `timeout_ms`,
/// `echo_interval_ms`, `reconnect_min_ms`, `reconnect_max_ms`, `card_page_url`,
/// `threeds_directory_url` (3-D Secure on when set; ADR 67), `capture` (`purchase`, the
/// default, or `authorize_then_complete`; ADR 69).
pub fn config_of(account: &ProviderAccount) -> Result<AcquirerConfig, AccountError> {
    let invalid = |name: &str, why: String| AccountError::InvalidSetting {
        account: account.id.clone(),
        name: name.to_string(),
        why,
    };
    let required = |name: &str| -> Result<String, AccountError> {
        let value = account.setting_str(name, "")?;
        match value.is_empty() {
            true => Err(invalid(name, "is required".into())),
            false => Ok(value.to_string()),
        }
    };
    let millis = |name: &str, default: u64| -> Result<Duration, AccountError> {
        match account.setting_u64(name, default)? {
            0 => Err(invalid(name, "must be greater than zero".into())),
            ms => Ok(Duration::from_millis(ms)),
        }
    };
    let terminal = Terminal::new(&required("terminal_id")?, &required("card_acceptor_id")?)
        .ok_or_else(|| {
            invalid(
                "terminal_id",
                "terminal_id (1 to 8) and card_acceptor_id (1 to 15) must be printable ASCII"
                    .into(),
            )
        })?;
    let header = account
        .setting_str("frame_header", "binary_length2")?
        .parse()
        .map_err(|e: kassa_iso8583::framing::UnknownFrameHeader| {
            invalid("frame_header", e.to_string())
        })?;
    let spec = match account.setting_str("dialect_file", "")? {
        "" => Spec::default_ascii().clone(),
        path => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid("dialect_file", format!("{path}: {e}")))?;
            Spec::from_toml_str(&text).map_err(|e| invalid("dialect_file", e.to_string()))?
        }
    };
    let currencies = account
        .setting_str("currencies", "EUR")?
        .split(',')
        .map(|code| {
            Currency::from_code(code.trim()).map_err(|e| invalid("currencies", e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let card_page_url = Some(account.setting_str("card_page_url", "")?)
        .filter(|url| !url.is_empty())
        .map(|url| url.trim_end_matches('/').to_string());
    let threeds_directory_url = Some(account.setting_str("threeds_directory_url", "")?)
        .filter(|url| !url.is_empty())
        .map(str::to_string);
    let capture = match account.setting_str("capture", "purchase")? {
        "purchase" => Capture::Purchase,
        "authorize_then_complete" => Capture::AuthorizeThenComplete,
        other => {
            let why = format!("{other:?} is not purchase or authorize_then_complete");
            return Err(invalid("capture", why));
        }
    };
    Ok(AcquirerConfig {
        capture,
        threeds_directory_url,
        address: required("address")?,
        terminal,
        spec: Arc::new(spec),
        header,
        timeout: millis("timeout_ms", TIMEOUT_MS_DEFAULT)?,
        echo_interval: millis("echo_interval_ms", ECHO_INTERVAL_MS_DEFAULT)?,
        reconnect: (
            millis("reconnect_min_ms", RECONNECT_MIN_MS_DEFAULT)?,
            millis("reconnect_max_ms", RECONNECT_MAX_MS_DEFAULT)?,
        ),
        currencies,
        card_page_url,
    })
}

/// Builds the connector of an `iso8583` account with the server's services. Must run inside
/// a Tokio runtime (the session task starts at once).
pub fn from_account(
    account: &ProviderAccount,
    services: AcquirerServices,
) -> Result<AcquirerConnector, AccountError> {
    let config = config_of(account)?;
    AcquirerConnector::start(&account.id, config, services).map_err(|why| {
        AccountError::InvalidSetting {
            account: account.id.clone(),
            name: "currencies".into(),
            why,
        }
    })
}

/// A decline as the start of a payment.
fn declined(reference: &OriginalRef, decline: wire::Decline) -> CardCharge {
    CardCharge {
        started: PaymentStarted {
            provider_reference: reference.to_string(),
            start: PaymentStart::Declined {
                reason: Some(decline.reason.to_string()),
            },
        },
        captured: false,
        soft_decline: decline.class == DeclineClass::Soft,
        reversal_advice_key: None,
        completion_advice: None,
    }
}

#[async_trait]
impl PaymentProvider for AcquirerConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Sends the player to Kassa's card page; the `0200` goes when the card is submitted.
    async fn start_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<PaymentStarted, ProviderError> {
        self.currency_numeric(request.currency)?;
        let Some(page) = &self.card_page_url else {
            return Err(ProviderError::Unsupported(
                "deposits without Kassa's card page",
            ));
        };
        Ok(PaymentStarted {
            provider_reference: format!("{CARD_PAGE_REFERENCE}{}", request.payment_id),
            start: PaymentStart::Redirect {
                url: format!("{page}/{}", request.payment_id),
            },
        })
    }

    async fn charge_card(
        &self,
        request: &PaymentRequest,
        card: &CardDetails,
        authentication: Option<&CardAuthentication>,
    ) -> Result<CardCharge, ProviderError> {
        let purchase = FinancialRequest {
            kind: self.deposit_kind(),
            amount_minor: request.amount_minor,
            currency_numeric: self.currency_numeric(request.currency)?,
            card: Some(card),
            original: None,
            authentication,
        };
        // The advice stays queued until the server's transaction that records the answer
        // cancels it (ADR 49): a node dying in between reverses the charge instead of
        // leaving the player charged and the deposit uncredited. An unreadable answer leaves
        // it queued too.
        let (reference, answer, advice) = self.financial(purchase, &request.payment_id).await?;
        let mut charge = match wire::decline_of(wire::response_code(&answer)?) {
            None => CardCharge {
                started: PaymentStarted {
                    provider_reference: reference.to_string(),
                    start: PaymentStart::Authorized,
                },
                // An authorization is credited on its approval too; its completion is
                // queued with the credit (ADR 69).
                captured: true,
                soft_decline: false,
                reversal_advice_key: None,
                completion_advice: (self.deposit_kind() == Financial::Authorization)
                    .then(|| advice.clone()),
            },
            Some(decline) => declined(&reference, decline),
        };
        charge.reversal_advice_key = Some(advice.key());
        Ok(charge)
    }

    /// The host has no status query: a payment is settled by the `0210` (or reversed). A
    /// payment whose card was never submitted is pending, so status sync expires it in time.
    async fn get_status(
        &self,
        provider_reference: &str,
    ) -> Result<PaymentStatusReport, ProviderError> {
        let (Some(payment_id), Some(&currency)) = (
            provider_reference.strip_prefix(CARD_PAGE_REFERENCE),
            self.capabilities.currencies.first(),
        ) else {
            return Err(ProviderError::Unsupported("status queries"));
        };
        Ok(PaymentStatusReport {
            provider_reference: provider_reference.to_string(),
            payment_id: payment_id.to_string(),
            status: ProviderPaymentStatus::Pending,
            // Not known here and not needed: a pending payment moves no money.
            amount_minor: 0,
            currency,
        })
    }

    /// Only a payment whose card was not submitted can be cancelled; the host never heard
    /// of it.
    async fn cancel(
        &self,
        _provider_reference: &str,
    ) -> Result<ProviderPaymentStatus, ProviderError> {
        Ok(ProviderPaymentStatus::Cancelled)
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundAccepted, ProviderError> {
        let original = OriginalRef::parse(&request.provider_reference).ok_or_else(|| {
            ProviderError::Rejected {
                code: "unknown_original".into(),
                message: "the payment has no approved purchase to refund".into(),
            }
        })?;
        let refund = FinancialRequest {
            kind: Financial::Refund,
            amount_minor: request.amount_minor,
            currency_numeric: self.currency_numeric(request.currency)?,
            card: None,
            // The account's capture mode says what the original was; a payment made before
            // the mode changed names the other MTI, which a host matching by STAN ignores.
            original: Some((&original, self.deposit_kind().mti())),
            authentication: None,
        };
        let (_, answered) = self.financial_answered(refund, &request.refund_id).await?;
        match answered {
            Ok(advice_key) => Ok(RefundAccepted {
                refund_id: request.refund_id.clone(),
                provider_reference: request.provider_reference.clone(),
                settled: true,
                reversal_advice_key: Some(advice_key),
            }),
            Err(decline) => Err(ProviderError::Rejected {
                code: decline.reason.into(),
                message: "the acquirer refused the refund".into(),
            }),
        }
    }

    /// A payout needs the card: [`PaymentProvider::payout_to_card`].
    async fn payout(&self, _request: &PayoutRequest) -> Result<PayoutAccepted, ProviderError> {
        Err(ProviderError::Unsupported("payouts without a card"))
    }

    async fn payout_to_card(
        &self,
        request: &PayoutRequest,
        card: &CardDetails,
    ) -> Result<PayoutAccepted, ProviderError> {
        let credit = FinancialRequest {
            kind: Financial::OriginalCredit,
            amount_minor: request.amount_minor,
            currency_numeric: self.currency_numeric(request.currency)?,
            card: Some(card),
            original: None,
            authentication: None,
        };
        let (reference, answered) = self.financial_answered(credit, &request.payout_id).await?;
        let (status, reversal_advice_key) = match answered {
            Ok(advice_key) => (ProviderPayoutStatus::Paid, Some(advice_key)),
            Err(_) => (ProviderPayoutStatus::Failed, None),
        };
        Ok(PayoutAccepted {
            provider_reference: reference.to_string(),
            status,
            reversal_advice_key,
        })
    }

    /// An acquirer sends no webhooks: anything posted to its webhook URL is refused.
    fn receive(
        &self,
        _message: RawInbound<'_>,
        _now_unix_s: i64,
    ) -> Result<InboundBatch, InboundRefusal> {
        Err(InboundRefusal::InvalidSignature)
    }

    fn verify_webhook(
        &self,
        _headers: &HeaderMap,
        _raw_body: &[u8],
        _now_unix_s: i64,
    ) -> Result<crate::event::ProviderEvent, InboundRefusal> {
        Err(InboundRefusal::InvalidSignature)
    }
}
