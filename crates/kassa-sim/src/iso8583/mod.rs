//! A simulated acquirer host speaking ISO 8583 over TCP (`kassa sim iso8583 --listen ADDR`),
//! for Kassa's acquirer connector and for anyone with pyiso8583: messages in the default
//! dialect (pyiso8583's `default_ascii`), one per frame with a 2-byte big-endian length header
//! (4 ASCII digits or a TPDU on request). Requests on one connection are answered
//! independently, so a slow answer does not hold up the next.
//!
//! # Messages
//!
//! | request | answer |
//! |---|---|
//! | `0800` with 70 = `001` sign-on, `002` sign-off, `301` echo | `0810`, 39 = `00` (`12` for another 70, `30` without 70) |
//! | `0100` authorization, `0200` purchase | `0110`/`0210` by the test-card rules below |
//! | `0220` completion (repeat `0221`) of an approved `0100` | `0230`: `00` (a repeat too); `13` above the authorized amount; `25` if the original is unknown, a purchase, or reversed; the first `ignore_completions` get no answer at all |
//! | `0200` with processing code `20xxxx` (refund), no PAN needed | `0210`: `00` when field 90 names a known approved purchase and the amount fits what is left of it; `25` unknown original, `13` too much |
//! | `0400` reversal, `0420` reversal advice (repeat `0421`) | `0410`/`0430`: `00` whenever the original is known (repeats too), `25` if not; the first `ignore_advices` advices get no answer at all (to show that the connector repeats them) |
//! | another request or advice | its answer with `12` |
//! | a response sent to the host | nothing |
//! | bytes that do not unpack | if they start with a request MTI, its answer with `30`; else the connection is closed |
//!
//! Answers echo fields 3, 4, 7, 11, 12, 13, 18, 37, 41, 42, 49 and 70 when present (never the
//! PAN) and carry 39. An approved `0100`/`0200` also carries 38 (a 6-digit authorization code)
//! and 37 (the request's RRN, or one the host assigns).
//!
//! # Test cards (field 2, by its last four digits)
//!
//! | PAN ends in | answer |
//! |---|---|
//! | `0005` | `05` do not honour |
//! | `0051` | `51` insufficient funds |
//! | `0091` | `91` issuer unavailable |
//! | `0096` | `96` system malfunction |
//! | `0077` | `00`, but only after `slow_delay_ms` (default 40 s, past a connector's timeout); the approval is kept, so the connector's reversal finds it |
//! | `0099` | no answer: the host closes the connection |
//! | anything else, e.g. `4000000000000002` | `00` approved |
//!
//! A card of the 3-D Secure simulator's range (last four `3100` to `3599`, see
//! [`crate::threeds`]) is answered `05` unless field 48 carries an ECI (subelement `42`) and
//! an authentication value (`43`): the issuer insists on 3-D Secure (ADR 68).
//!
//! A PAN that is not 12 to 19 digits gets `14`, an amount (4) that is not 12 digits `13`, a
//! request without 11 (STAN) or 41 (terminal) `30`.
//!
//! # Settlement file
//!
//! With `settlement_listen` set, `GET /settlement/{YYYY-MM-DD}` answers the day's approved,
//! non-reversed transactions as CSV ([`settlement`] describes the columns).
//!
//! # Finding the original
//!
//! Approved `0100`/`0200` are kept in memory for the life of the process, keyed by terminal (41)
//! and STAN (11). A reversal or completion names its original by its terminal and the STAN in
//! field 90 (original data elements: MTI, STAN, transmission time, ...) or, without 90, its own
//! STAN; failing that, by RRN (37). Declined requests are not kept.

mod host;
pub mod settlement;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use kassa_iso8583::framing::{Frame, FrameCodec, FrameHeader, DEFAULT_MAX_FRAME_BYTES};
use kassa_iso8583::{pack, unpack, Message, Mti, Spec};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};

pub use host::SeenAuthentication;
use host::{Host, Reply};

/// Answers waiting to be written on one connection.
const ANSWER_QUEUE_LEN: usize = 64;

/// How the host simulator listens and behaves.
#[derive(Debug, Clone)]
pub struct Iso8583HostConfig {
    /// Address to listen on, e.g. `127.0.0.1:8583` (port 0 picks a free one).
    pub listen: String,
    /// The frame header on the wire.
    pub header: FrameHeader,
    /// Frames longer than this are refused and the connection closed.
    pub max_frame_bytes: usize,
    /// How long the slow test card (`...0077`) waits before its answer.
    pub slow_delay_ms: u64,
    /// The dialect; pyiso8583's `default_ascii` by default.
    pub spec: Spec,
    /// How many reversal advices (`0420`/`0421`) go unanswered before the host answers them.
    pub ignore_advices: u32,
    /// How many completion advices (`0220`/`0221`) go unanswered before the host answers them.
    pub ignore_completions: u32,
    /// Where the settlement file is served over HTTP (`GET /settlement/{YYYY-MM-DD}`, see
    /// [`settlement`]); `None`: not served.
    pub settlement_listen: Option<String>,
    /// The acquirer has lost its issuers: every purchase and authorization is answered `91`
    /// (issuer unavailable), whatever the card. For cascading tests and demos.
    pub issuer_outage: bool,
}

impl Default for Iso8583HostConfig {
    fn default() -> Self {
        Iso8583HostConfig {
            listen: "127.0.0.1:8583".into(),
            header: FrameHeader::default(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            slow_delay_ms: 40_000,
            spec: Spec::default_ascii().clone(),
            ignore_advices: 0,
            ignore_completions: 0,
            settlement_listen: None,
            issuer_outage: false,
        }
    }
}

/// A running host simulator; dropping it stops accepting connections.
pub struct Iso8583HostHandle {
    local_addr: SocketAddr,
    acceptor: JoinHandle<()>,
    shared: Arc<Shared>,
    settlement: Option<crate::serving::Serving>,
}

impl Iso8583HostHandle {
    /// The address the host is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The MTI and STAN of every request the host has read so far, in order (for tests).
    pub fn received(&self) -> Vec<(String, String)> {
        self.shared.host.received()
    }

    /// The 3-D Secure results (field 48) purchases and authorizations carried, in order.
    pub fn authentications(&self) -> Vec<SeenAuthentication> {
        self.shared.host.authentications()
    }

    /// The settlement file of `date` (`YYYY-MM-DD`), as `GET /settlement/{date}` serves it.
    pub fn settlement_file(&self, date: &str) -> String {
        self.shared.host.settlement_file(date)
    }

    /// Where the settlement file is served, e.g. `http://127.0.0.1:41234`, when it is.
    pub fn settlement_url(&self) -> Option<&str> {
        self.settlement
            .as_ref()
            .map(crate::serving::Serving::base_url)
    }

    /// Stops accepting connections (open ones end when their peer closes).
    pub fn stop(self) {
        self.acceptor.abort();
    }
}

impl Drop for Iso8583HostHandle {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// Everything a connection needs, shared by all of them.
struct Shared {
    host: Host,
    spec: Spec,
    codec: FrameCodec,
}

/// Binds and starts serving in the background.
pub async fn start(config: Iso8583HostConfig) -> anyhow::Result<Iso8583HostHandle> {
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        host: Host::new(
            Duration::from_millis(config.slow_delay_ms),
            config.ignore_advices,
        )
        .with_issuer_outage(config.issuer_outage)
        .with_ignored_completions(config.ignore_completions),
        spec: config.spec,
        codec: FrameCodec::new(config.header, config.max_frame_bytes),
    });
    let settlement = match &config.settlement_listen {
        Some(listen) => Some(serve_settlement(listen, Arc::clone(&shared)).await?),
        None => None,
    };
    let acceptor = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
    Ok(Iso8583HostHandle {
        local_addr,
        acceptor,
        shared,
        settlement,
    })
}

/// Serves `GET /settlement/{date}` on `listen`.
async fn serve_settlement(
    listen: &str,
    shared: Arc<Shared>,
) -> anyhow::Result<crate::serving::Serving> {
    use axum::extract::{Path, State};
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    async fn file(
        State(shared): State<Arc<Shared>>,
        Path(date): Path<String>,
    ) -> axum::response::Response {
        if !settlement::is_date(&date) {
            return (StatusCode::BAD_REQUEST, "the date is YYYY-MM-DD\n").into_response();
        }
        let body = shared.host.settlement_file(&date);
        ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
    }
    let router = axum::Router::new()
        .route("/settlement/{date}", axum::routing::get(file))
        .with_state(shared);
    let bound = crate::serving::bind(listen, None).await?;
    Ok(bound.serve(router, "ISO 8583 host settlement"))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tracing::debug!(%peer, "ISO 8583 connection");
                tokio::spawn(serve_connection(stream, Arc::clone(&shared)));
            }
            Err(error) => {
                tracing::warn!(%error, "ISO 8583 accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads frames until the peer closes, a frame is bad, or a test card drops the connection.
/// Answers go through a queue to one writer, so delayed answers can interleave.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let (read_half, write_half) = stream.into_split();
    let mut frames = FramedRead::new(read_half, shared.codec);
    let (answers, mut queued) = mpsc::channel::<Frame>(ANSWER_QUEUE_LEN);
    let mut sink = FramedWrite::new(write_half, shared.codec);
    let writer = tokio::spawn(async move {
        while let Some(frame) = queued.recv().await {
            if let Err(error) = sink.send(frame).await {
                tracing::debug!(%error, "ISO 8583 write failed");
                break;
            }
        }
    });
    while let Some(next) = frames.next().await {
        let frame = match next {
            Ok(frame) => frame,
            Err(error) => {
                tracing::warn!(%error, "ISO 8583 frame refused; closing the connection");
                break;
            }
        };
        let reply = reply_to(&shared, &frame.message);
        let answer_frame = |message: &Message| answer_frame(&shared.spec, &frame, message);
        match reply {
            Reply::Send(message) => {
                if let Some(out) = answer_frame(&message) {
                    let _ = answers.send(out).await;
                }
            }
            Reply::SendAfter { delay, message } => {
                let (answers, out) = (answers.clone(), answer_frame(&message));
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Some(out) = out {
                        let _ = answers.send(out).await;
                    }
                });
            }
            Reply::Drop => {
                writer.abort();
                return;
            }
            Reply::Ignore => {}
        }
    }
}

/// Unpacks and decides; bytes that do not unpack get a format-error answer when they start
/// with a request MTI, and close the connection otherwise.
fn reply_to(shared: &Shared, bytes: &Bytes) -> Reply {
    match unpack(&shared.spec, bytes) {
        Ok(request) => {
            tracing::debug!(?request, "ISO 8583 request");
            shared.host.handle(&request)
        }
        Err(error) => {
            tracing::warn!(%error, "ISO 8583 message refused");
            let mti = bytes
                .get(..4)
                .and_then(|d| std::str::from_utf8(d).ok()?.parse::<Mti>().ok());
            match mti.filter(Mti::expects_response) {
                Some(mti) => {
                    Reply::Send(host::answer(&Message::new(mti), host::code::FORMAT_ERROR))
                }
                None => Reply::Drop,
            }
        }
    }
}

/// Packs an answer into a frame for the request's connection (TPDU addresses swapped).
fn answer_frame(spec: &Spec, request: &Frame, answer: &Message) -> Option<Frame> {
    match pack(spec, answer) {
        Ok(bytes) => Some(Frame {
            tpdu: request.tpdu.map(|tpdu| tpdu.reply()),
            message: bytes.into(),
        }),
        Err(error) => {
            tracing::error!(%error, "ISO 8583 answer does not pack");
            None
        }
    }
}
