//! The load generator's HTTP client: one keep-alive HTTP/1.1 connection per simulated
//! client, as a game aggregator's wallet client keeps one per worker.
//!
//! The load generator shares the machine's cores with the server and the database, so
//! whatever it spends per request is taken from what is measured. A general-purpose client
//! (reqwest) parses the URL, checks a pool out and in, and builds a header map for every
//! request; this one sends a request whose parts were built once on a connection it owns
//! (hyper's own connection type, no pool). It is used only for the measured calls; setup
//! and checks use reqwest.

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What a call got back: its status, whether it was a replay, and the body.
pub struct Reply {
    pub status: StatusCode,
    pub replayed: bool,
    pub body: Bytes,
}

/// One client's connection to the server; reconnects after a transport error.
pub struct Http1Client {
    address: String,
    host: HeaderValue,
    auth: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Http1Client {
    /// A client for `base` (`http://host:port`); it connects on first use.
    pub fn new(base: &str, auth: HeaderValue) -> anyhow::Result<Http1Client> {
        let address = base
            .strip_prefix("http://")
            .context("the load generator speaks plain http:// only")?
            .trim_end_matches('/')
            .to_string();
        Ok(Http1Client {
            host: HeaderValue::from_str(&address)?,
            address,
            auth,
            sender: None,
        })
    }

    /// POSTs a JSON `body` to `path`. `None` when the call got no answer (the connection
    /// failed or closed): whether it took effect is unknown.
    pub async fn post_json(&mut self, path: &'static str, body: Bytes) -> Option<Reply> {
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            slot => slot.insert(connect(&self.address).await.ok()?),
        };
        if sender.ready().await.is_err() {
            self.sender = None;
            return None;
        }
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = Uri::from_static(path);
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(AUTHORIZATION, self.auth.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let answered = async {
            let response = sender.send_request(request).await.ok()?;
            let status = response.status();
            let replayed = response
                .headers()
                .get("idempotent-replayed")
                .is_some_and(|v| v == "true");
            let body = response.into_body().collect().await.ok()?.to_bytes();
            Some(Reply {
                status,
                replayed,
                body,
            })
        }
        .await;
        if answered.is_none() {
            self.sender = None;
        }
        answered
    }
}

async fn connect(address: &str) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the server closes the connection or the sender is dropped.
        let _ = connection.await;
    });
    Ok(sender)
}
