//! One persistent TCP connection to the acquirer's host, owned by one task: requests come in
//! through a channel, answers are matched to them by STAN (field 11) through a map of
//! one-shot senders, the connection is re-made with exponential backoff, signed on (`0800`
//! `70=001`) after every connect, kept alive by echoes (`70=301`) and signed off (`70=002`)
//! when the connector shuts down.
//!
//! The caller bounds every request by the per-message timeout; the task only forgets answers
//! nobody waits for any more. A request that was written and whose connection then dropped is
//! answered [`ProviderError::Timeout`], like one that timed out: the host may have acted, and
//! the caller reverses it. A request made while there is no connection is answered
//! [`ProviderError::Unavailable`] at once: it never left.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kassa_iso8583::framing::{Frame, FrameCodec};
use kassa_iso8583::{pack, unpack, Message, Spec};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::connection::Connection;
use super::wire::{self, Network, Stamp, Terminal};
use crate::provider::ProviderError;

/// Requests waiting for the task; more callers wait for room.
const COMMAND_QUEUE_LEN: usize = 256;

/// Makes the stamp (trace numbers and instant) of the next message.
pub type Stamper = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Stamp, ProviderError>> + Send>> + Send + Sync,
>;

/// How the session connects and keeps the connection.
#[derive(Clone)]
pub struct SessionConfig {
    /// The host's `address:port`.
    pub address: String,
    /// The dialect.
    pub spec: Arc<Spec>,
    /// The framing.
    pub codec: FrameCodec,
    /// Longest wait for one answer (and for a connect).
    pub timeout: Duration,
    /// Time between echoes on an idle or busy connection.
    pub echo_interval: Duration,
    /// First wait before a reconnect; doubled after every failure up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest wait before a reconnect.
    pub backoff_max: Duration,
    /// Field 41 and 42.
    pub terminal: Terminal,
}

/// Answers a request with the host's answer or why there is none.
type AnswerTo = oneshot::Sender<Result<Message, ProviderError>>;

enum Command {
    Send { message: Message, answer: AnswerTo },
    Shutdown { done: oneshot::Sender<()> },
}

/// The handle on the session task; dropping the last handle signs off and ends it.
pub struct Session {
    commands: mpsc::Sender<Command>,
    timeout: Duration,
}

impl Session {
    /// Starts the task (it connects in the background).
    pub fn start(config: SessionConfig, stamper: Stamper) -> Session {
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE_LEN);
        let timeout = config.timeout;
        tokio::spawn(
            Task {
                config,
                stamper,
                commands: receiver,
            }
            .run(),
        );
        Session { commands, timeout }
    }

    /// Sends `message` and waits, at most the per-message timeout, for its answer.
    pub async fn call(&self, message: Message) -> Result<Message, ProviderError> {
        let (answer, answered) = oneshot::channel();
        let unavailable = || ProviderError::Unavailable("the acquirer session has ended".into());
        self.commands
            .send(Command::Send { message, answer })
            .await
            .map_err(|_| unavailable())?;
        match tokio::time::timeout(self.timeout, answered).await {
            Err(_) => Err(ProviderError::Timeout),
            Ok(Err(_)) => Err(unavailable()),
            Ok(Ok(answer)) => answer,
        }
    }

    /// Signs off and closes the connection; waits for it at most twice the timeout.
    pub async fn shutdown(&self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Shutdown { done }).await.is_ok() {
            let _ = tokio::time::timeout(self.timeout * 2, finished).await;
        }
    }
}

/// Why serving a connection ended.
enum Ended {
    /// Asked to stop: the task ends.
    Shutdown,
    /// The connection failed: reconnect.
    Lost,
}

struct Task {
    config: SessionConfig,
    stamper: Stamper,
    commands: mpsc::Receiver<Command>,
}

impl Task {
    async fn run(mut self) {
        let mut backoff = self.config.backoff_min;
        loop {
            match self.connect().await {
                Ok(connection) => {
                    backoff = self.config.backoff_min;
                    tracing::info!(address = %self.config.address, "acquirer session signed on");
                    if let Ended::Shutdown = self.serve(connection).await {
                        return;
                    }
                    tracing::warn!(address = %self.config.address, "acquirer connection lost");
                }
                Err(error) => {
                    tracing::warn!(address = %self.config.address, %error, "acquirer connect failed");
                }
            }
            if let Ended::Shutdown = self.refuse_while_waiting(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(self.config.backoff_max);
        }
    }

    /// Connects and signs on; the host must approve the sign-on within the timeout.
    async fn connect(&self) -> Result<Connection, ProviderError> {
        let unavailable = |why: String| ProviderError::Unavailable(why);
        let stream = tokio::time::timeout(
            self.config.timeout,
            TcpStream::connect(&self.config.address),
        )
        .await
        .map_err(|_| ProviderError::Timeout)?
        .map_err(|e| unavailable(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut connection = Connection::new(stream, self.config.codec);
        let answer = self
            .network_exchange(&mut connection, Network::SignOn)
            .await?;
        match wire::response_code(&answer)? {
            wire::APPROVED => Ok(connection),
            code => Err(unavailable(format!("the host refused the sign-on: {code}"))),
        }
    }

    /// Sends one network message on a connection nothing else uses yet and waits for its
    /// answer (other frames are dropped: nothing else is outstanding).
    async fn network_exchange(
        &self,
        connection: &mut Connection,
        kind: Network,
    ) -> Result<Message, ProviderError> {
        let message = wire::network(kind, &self.config.terminal, &(self.stamper)().await?);
        let stan = message.get_text(11).unwrap_or_default().to_string();
        self.write(connection, &message).await?;
        let exchange = async {
            while let Some(frame) = connection.next().await {
                let frame = frame.map_err(|e| ProviderError::Unavailable(e.to_string()))?;
                match unpack(&self.config.spec, &frame.message) {
                    Ok(answer) if answer.get_text(11) == Some(&stan) => return Ok(answer),
                    _ => continue,
                }
            }
            Err(ProviderError::Unavailable(
                "the host closed the connection".into(),
            ))
        };
        tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| ProviderError::Timeout)?
    }

    async fn write(
        &self,
        connection: &mut Connection,
        message: &Message,
    ) -> Result<(), ProviderError> {
        let bytes = pack(&self.config.spec, message)
            .map_err(|e| ProviderError::Protocol(format!("cannot pack {}: {e}", message.mti())))?;
        connection
            .send(Frame::new(bytes))
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))
    }

    /// Waits `backoff` before the next connect, answering requests meanwhile: they never
    /// left, so they are unavailable, not ambiguous.
    async fn refuse_while_waiting(&mut self, backoff: Duration) -> Ended {
        let wake = tokio::time::sleep(backoff);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                _ = &mut wake => return Ended::Lost,
                command = self.commands.recv() => match command {
                    None => return Ended::Shutdown,
                    Some(Command::Send { answer, .. }) => {
                        let _ = answer.send(Err(ProviderError::Unavailable(
                            "not connected to the acquirer".into(),
                        )));
                    }
                    Some(Command::Shutdown { done }) => {
                        let _ = done.send(());
                        return Ended::Shutdown;
                    }
                },
            }
        }
    }

    /// Serves a signed-on connection until it fails or the session is stopped.
    async fn serve(&mut self, mut connection: Connection) -> Ended {
        let mut pending: HashMap<String, AnswerTo> = HashMap::new();
        let echo_every = self.config.echo_interval;
        let mut echo = tokio::time::interval_at(Instant::now() + echo_every, echo_every);
        let mut echo_outstanding: Option<(String, Instant)> = None;
        let ended = loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    None => break self.sign_off(&mut connection, None).await,
                    Some(Command::Shutdown { done }) => {
                        break self.sign_off(&mut connection, Some(done)).await
                    }
                    Some(Command::Send { message, answer }) => {
                        if !self.send_request(&mut connection, &mut pending, message, answer).await {
                            break Ended::Lost;
                        }
                    }
                },
                frame = connection.next() => match frame {
                    Some(Ok(frame)) => {
                        self.take_frame(&mut connection, &mut pending, &mut echo_outstanding, &frame)
                            .await;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "acquirer frame refused");
                        break Ended::Lost;
                    }
                    None => break Ended::Lost,
                },
                _ = echo.tick() => {
                    pending.retain(|_, answer| !answer.is_closed());
                    if !self.echo(&mut connection, &mut echo_outstanding).await {
                        break Ended::Lost;
                    }
                }
            }
        };
        // Written but unanswered: the host may have acted, so the callers must reverse.
        for (_, answer) in pending.drain() {
            let _ = answer.send(Err(ProviderError::Timeout));
        }
        ended
    }

    /// Writes a request, remembering who waits for its answer; `false` if the connection
    /// failed.
    async fn send_request(
        &self,
        connection: &mut Connection,
        pending: &mut HashMap<String, AnswerTo>,
        message: Message,
        answer: AnswerTo,
    ) -> bool {
        if answer.is_closed() {
            // The caller gave up (and is reversing) before the message left: it never must.
            return true;
        }
        let Some(stan) = message.get_text(11).map(str::to_string) else {
            let _ = answer.send(Err(ProviderError::Protocol(
                "a request without a STAN".into(),
            )));
            return true;
        };
        match self.write(connection, &message).await {
            Ok(()) => {
                pending.insert(stan, answer);
                true
            }
            Err(error @ ProviderError::Protocol(_)) => {
                let _ = answer.send(Err(error));
                true
            }
            Err(error) => {
                let _ = answer.send(Err(error));
                false
            }
        }
    }

    /// Hands an answer to whoever waits for its STAN, answers the host's own echo, and
    /// drops the rest (a late answer whose caller gave up: its reversal is on the way).
    async fn take_frame(
        &self,
        connection: &mut Connection,
        pending: &mut HashMap<String, AnswerTo>,
        echo_outstanding: &mut Option<(String, Instant)>,
        frame: &Frame,
    ) {
        let message = match unpack(&self.config.spec, &frame.message) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "acquirer message does not unpack; dropped");
                return;
            }
        };
        if message.mti().expects_response() {
            self.answer_host_request(connection, &message).await;
            return;
        }
        let stan = message.get_text(11).unwrap_or_default();
        if let Some(answer) = pending.remove(stan) {
            let _ = answer.send(Ok(message));
        } else if echo_outstanding
            .as_ref()
            .is_some_and(|(echo, _)| echo == stan)
        {
            *echo_outstanding = None;
        } else {
            tracing::info!(mti = %message.mti(), stan, "acquirer answer nobody waits for; dropped");
        }
    }

    /// The host's echo gets `00`; any other request from it `12` (Kassa takes no host
    /// advices yet).
    async fn answer_host_request(&self, connection: &mut Connection, request: &Message) {
        let Some(mti) = request.mti().response() else {
            return;
        };
        let mut answer = Message::new(mti);
        for field in [7, 11, 41, 70] {
            if let Some(value) = request.get(field) {
                answer.set(field, value);
            }
        }
        let is_echo = request.mti().class() == 8 && request.get_text(70) == Some("301");
        answer.set(39, if is_echo { wire::APPROVED } else { "12" });
        if let Err(error) = self.write(connection, &answer).await {
            tracing::warn!(%error, "cannot answer the host's request");
        }
    }

    /// Sends the keep-alive; `false` when the last one is unanswered past the timeout (the
    /// host is gone though the socket looks open) or the write failed.
    async fn echo(
        &self,
        connection: &mut Connection,
        outstanding: &mut Option<(String, Instant)>,
    ) -> bool {
        if let Some((_, sent)) = outstanding {
            if sent.elapsed() > self.config.timeout {
                tracing::warn!("acquirer echo unanswered; reconnecting");
                return false;
            }
            return true;
        }
        let Ok(stamp) = (self.stamper)().await else {
            return true;
        };
        let message = wire::network(Network::Echo, &self.config.terminal, &stamp);
        *outstanding = Some((stamp.numbers.stan.clone(), Instant::now()));
        self.write(connection, &message).await.is_ok()
    }

    /// Signs off (waiting at most the timeout for the host's answer) and ends the session.
    async fn sign_off(
        &self,
        connection: &mut Connection,
        done: Option<oneshot::Sender<()>>,
    ) -> Ended {
        if let Err(error) = self.network_exchange(connection, Network::SignOff).await {
            tracing::info!(%error, "acquirer sign-off unanswered");
        }
        let _ = connection.close().await;
        if let Some(done) = done {
            let _ = done.send(());
        }
        tracing::info!(address = %self.config.address, "acquirer session signed off");
        Ended::Shutdown
    }
}
