//! HTTP(S) with rustls: one request per attempt, a timeout on each, bounded retries.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};

use super::{BuildMessage, Transport};
use crate::provider::ProviderError;
use crate::signing;
use crate::translator::{CallContext, ReplaySafety};

/// Most attempts one call may make; more would only hide an outage from the breaker.
pub const ATTEMPTS_MAX_LIMIT: u32 = 5;

/// One HTTP request as a translator builds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The absolute path and query, exactly as signed, e.g. `/v1/payments/sbxpay_1`.
    pub path_and_query: String,
    /// Headers, signature headers included.
    pub headers: HeaderMap,
    /// The body bytes, exactly as signed; empty for none.
    pub body: Vec<u8>,
}

/// One HTTP answer, body read whole (up to the transport's limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// Where a provider's API is and how patiently to call it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTransportConfig {
    /// The API's origin, `scheme://host[:port]`; a path here is ignored (requests carry
    /// absolute paths, so they are signed as sent).
    pub base_url: String,
    /// Timeout of one attempt, connection included.
    pub timeout_ms: u64,
    /// Attempts per call, the first included; 1 to [`ATTEMPTS_MAX_LIMIT`].
    pub attempts_max: u32,
    /// Wait before the second attempt; the n-th retry waits n times as long.
    pub retry_backoff_ms: u64,
    /// Largest answer body read.
    pub response_len_max: usize,
    /// Further origins a request may name with an absolute URL: an API spread over two
    /// hosts (Adyen's Checkout and Payout). No other origin is ever called.
    pub other_origins: Vec<String>,
}

/// Why an [`HttpTransportConfig`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportConfigError {
    /// `base_url` is not an absolute http(s) URL.
    #[error("base_url {0:?} is not an http(s) URL")]
    BaseUrl(String),
    /// A zero timeout would fail every call.
    #[error("timeout_ms must be greater than zero")]
    ZeroTimeout,
    /// `attempts_max` is outside 1 to [`ATTEMPTS_MAX_LIMIT`].
    #[error("attempts_max must be between 1 and {ATTEMPTS_MAX_LIMIT}, not {0}")]
    Attempts(u32),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Calls a REST provider over HTTP(S).
#[derive(Debug)]
pub struct HttpTransport {
    origin: Url,
    /// `scheme://host:port` of each other origin.
    other_origins: Vec<String>,
    client: reqwest::Client,
    config: HttpTransportConfig,
}

/// How one attempt failed: whether the provider may have seen the request decides retries.
enum AttemptError {
    /// The connection was never made: the request did not leave.
    NotSent(ProviderError),
    /// The request may have reached the provider.
    MaybeSent(ProviderError),
}

impl HttpTransport {
    /// A transport for `config`, after checking it.
    pub fn new(config: HttpTransportConfig) -> Result<HttpTransport, TransportConfigError> {
        let mut origin = Url::parse(&config.base_url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| TransportConfigError::BaseUrl(config.base_url.clone()))?;
        origin.set_path("/");
        origin.set_query(None);
        let other_origins = config
            .other_origins
            .iter()
            .map(|other| {
                Url::parse(other)
                    .ok()
                    .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
                    .map(|url| url.origin().ascii_serialization())
                    .ok_or_else(|| TransportConfigError::BaseUrl(other.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if config.timeout_ms == 0 {
            return Err(TransportConfigError::ZeroTimeout);
        }
        if !(1..=ATTEMPTS_MAX_LIMIT).contains(&config.attempts_max) {
            return Err(TransportConfigError::Attempts(config.attempts_max));
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect would carry a signed request somewhere it was not meant for.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| TransportConfigError::Client(error.to_string()))?;
        Ok(HttpTransport {
            origin,
            other_origins,
            client,
            config,
        })
    }

    /// The checked configuration.
    pub fn config(&self) -> &HttpTransportConfig {
        &self.config
    }

    async fn attempt(&self, request: HttpRequest) -> Result<HttpResponse, AttemptError> {
        let url = self
            .origin
            .join(&request.path_and_query)
            .ok()
            .filter(|url| {
                url.origin() == self.origin.origin()
                    || self
                        .other_origins
                        .contains(&url.origin().ascii_serialization())
            })
            .ok_or_else(|| {
                AttemptError::NotSent(ProviderError::Protocol(format!(
                    "bad path {:?}",
                    request.path_and_query
                )))
            })?;
        let method = request.method.clone();
        let mut builder = self
            .client
            .request(request.method, url)
            .headers(request.headers);
        if !request.body.is_empty() {
            builder = builder.body(request.body);
        }
        let mut response = builder.send().await.map_err(classify)?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| AttemptError::MaybeSent(provider_error(error)))?
        {
            if body.len() + chunk.len() > self.config.response_len_max {
                return Err(AttemptError::MaybeSent(ProviderError::Protocol(format!(
                    "answer is larger than {} bytes",
                    self.config.response_len_max
                ))));
            }
            body.extend_from_slice(&chunk);
        }
        tracing::debug!(%method, path = %request.path_and_query, %status, "provider call");
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

fn provider_error(error: reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout
    } else {
        ProviderError::Unavailable(error.to_string())
    }
}

fn classify(error: reqwest::Error) -> AttemptError {
    // A refused or failed connection never carried the request; anything later may have.
    if error.is_connect() && !error.is_timeout() {
        AttemptError::NotSent(provider_error(error))
    } else {
        AttemptError::MaybeSent(provider_error(error))
    }
}

/// Whether an answer is worth asking again for: the provider said it could not act now.
fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

#[async_trait]
impl Transport for HttpTransport {
    type Request = HttpRequest;
    type Response = HttpResponse;

    async fn call(
        &self,
        safety: ReplaySafety,
        build: &BuildMessage<'_, HttpRequest>,
    ) -> Result<HttpResponse, ProviderError> {
        let mut attempt = 1;
        loop {
            let context = CallContext {
                now_unix_s: time::OffsetDateTime::now_utc().unix_timestamp(),
                nonce: signing::new_nonce(),
                attempt,
            };
            let result = self.attempt(build(&context)?).await;
            let retry = match &result {
                Ok(response) => {
                    is_retryable_status(response.status) && safety == ReplaySafety::Safe
                }
                Err(AttemptError::NotSent(_)) => true,
                Err(AttemptError::MaybeSent(_)) => safety == ReplaySafety::Safe,
            };
            if !retry || attempt >= self.config.attempts_max {
                return match result {
                    Ok(response) => Ok(response),
                    Err(AttemptError::NotSent(error) | AttemptError::MaybeSent(error)) => {
                        Err(error)
                    }
                };
            }
            let backoff_ms = self.config.retry_backoff_ms * u64::from(attempt);
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A provider that answers each connection with the next scripted status (`None`: stay
    /// silent), recording every request head it read.
    async fn scripted(script: Vec<Option<u16>>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for answer in script {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buffer = vec![0u8; 8192];
                let read = socket.read(&mut buffer).await.unwrap();
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buffer[..read]).into_owned());
                match answer {
                    Some(status) => {
                        let text = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                        );
                        socket.write_all(text.as_bytes()).await.unwrap();
                    }
                    None => {
                        // Hold the connection open without answering.
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            drop(socket);
                        });
                    }
                }
            }
        });
        (format!("http://{address}"), seen)
    }

    fn transport(base_url: &str, timeout_ms: u64) -> HttpTransport {
        HttpTransport::new(HttpTransportConfig {
            base_url: base_url.into(),
            timeout_ms,
            attempts_max: 3,
            retry_backoff_ms: 1,
            response_len_max: 1024,
            other_origins: Vec::new(),
        })
        .unwrap()
    }

    fn get(context: &CallContext) -> Result<HttpRequest, ProviderError> {
        let mut headers = HeaderMap::new();
        headers.insert("x-nonce", context.nonce.parse().unwrap());
        headers.insert("x-attempt", context.attempt.to_string().parse().unwrap());
        Ok(HttpRequest {
            method: Method::GET,
            path_and_query: "/v1/thing".into(),
            headers,
            body: Vec::new(),
        })
    }

    #[tokio::test]
    async fn a_replay_safe_call_is_retried_after_a_5xx_with_a_fresh_context() {
        let (base, seen) = scripted(vec![Some(503), Some(200)]).await;
        let response = transport(&base, 2000)
            .call(ReplaySafety::Safe, &get)
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body, b"ok");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[0].contains("x-attempt: 1") && seen[1].contains("x-attempt: 2"));
        let nonce = |head: &str| {
            head.lines()
                .find(|l| l.starts_with("x-nonce"))
                .map(str::to_string)
        };
        assert_ne!(nonce(&seen[0]), nonce(&seen[1]), "each attempt signs anew");
    }

    #[tokio::test]
    async fn a_call_that_could_charge_twice_is_not_resent_after_a_5xx_or_a_timeout() {
        let (base, seen) = scripted(vec![Some(503), Some(200)]).await;
        let response = transport(&base, 2000)
            .call(ReplaySafety::Never, &get)
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(seen.lock().unwrap().len(), 1);

        let (base, seen) = scripted(vec![None, Some(200)]).await;
        let result = transport(&base, 150).call(ReplaySafety::Never, &get).await;
        assert_eq!(result, Err(ProviderError::Timeout));
        assert_eq!(seen.lock().unwrap().len(), 1, "a timeout may have charged");
    }

    #[tokio::test]
    async fn a_replay_safe_call_is_retried_after_a_timeout() {
        let (base, seen) = scripted(vec![None, Some(200)]).await;
        let response = transport(&base, 150)
            .call(ReplaySafety::Safe, &get)
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_even_when_unsafe_then_reported() {
        // Bind then drop, so the port is (almost certainly) closed.
        let address = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let built = AtomicU32::new(0);
        let build = |context: &CallContext| {
            built.fetch_add(1, Ordering::SeqCst);
            get(context)
        };
        let result = transport(&format!("http://{address}"), 1000)
            .call(ReplaySafety::Never, &build)
            .await;
        assert!(
            matches!(result, Err(ProviderError::Unavailable(_))),
            "{result:?}"
        );
        assert_eq!(built.load(Ordering::SeqCst), 3, "attempts_max attempts");
    }

    #[tokio::test]
    async fn a_path_cannot_leave_the_configured_origin() {
        let transport = transport("http://127.0.0.1:9", 1000);
        let escape = |_: &CallContext| {
            Ok(HttpRequest {
                method: Method::GET,
                path_and_query: "//evil.example/v1".into(),
                headers: HeaderMap::new(),
                body: Vec::new(),
            })
        };
        let result = transport.call(ReplaySafety::Never, &escape).await;
        assert!(
            matches!(result, Err(ProviderError::Protocol(_))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn an_absolute_url_may_name_only_a_configured_other_origin() {
        let transport = HttpTransport::new(HttpTransportConfig {
            other_origins: vec!["http://127.0.0.1:10".into()],
            ..transport("http://127.0.0.1:9", 1000).config().clone()
        })
        .unwrap();
        let to = |url: &'static str| {
            move |_: &CallContext| {
                Ok(HttpRequest {
                    method: Method::GET,
                    path_and_query: url.into(),
                    headers: HeaderMap::new(),
                    body: Vec::new(),
                })
            }
        };
        // The other origin is called (nothing listens there: unavailable, not refused).
        let other = transport
            .call(ReplaySafety::Never, &to("http://127.0.0.1:10/pal/x"))
            .await;
        assert!(
            matches!(other, Err(ProviderError::Unavailable(_))),
            "{other:?}"
        );
        let elsewhere = transport
            .call(ReplaySafety::Never, &to("http://127.0.0.1:11/pal/x"))
            .await;
        assert!(
            matches!(elsewhere, Err(ProviderError::Protocol(_))),
            "{elsewhere:?}"
        );
    }

    #[test]
    fn unusable_configs_are_refused() {
        let config = |base_url: &str, timeout_ms, attempts_max| HttpTransportConfig {
            base_url: base_url.into(),
            timeout_ms,
            attempts_max,
            retry_backoff_ms: 0,
            response_len_max: 1,
            other_origins: Vec::new(),
        };
        assert!(matches!(
            HttpTransport::new(config("ftp://h", 1, 1)),
            Err(TransportConfigError::BaseUrl(_))
        ));
        assert_eq!(
            HttpTransport::new(config("http://h", 0, 1)).unwrap_err(),
            TransportConfigError::ZeroTimeout
        );
        for attempts in [0, ATTEMPTS_MAX_LIMIT + 1] {
            assert_eq!(
                HttpTransport::new(config("http://h", 1, attempts)).unwrap_err(),
                TransportConfigError::Attempts(attempts)
            );
        }
    }
}
