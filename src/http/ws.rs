//! GraphQL over WebSocket at `/graphql/ws`: the `graphql-transport-ws`
//! protocol (the `graphql-ws` library's, which Apollo Client and urql use),
//! driven in a loop of our own.
//!
//! async-graphql parses, validates and executes each subscription
//! (`Schema::execute_stream`); everything else is here, because its own
//! WebSocket support (7.2) drops the upgrade request (no cookie, no
//! `Origin`), cannot be closed from the server (so no 4401 when the session
//! ends, no 1001 at shutdown), and answers the protocol's errors with other
//! codes than the contract's (4403, 4401, 4408, 4409).
//!
//! Bounds: a message's size, messages per second, subscriptions per socket,
//! sockets per client address and in all; a write that a client does not
//! take within [`SEND_TIMEOUT`] drops it, and a subscriber that falls behind
//! the post feed is closed with 1013 rather than buffered. The server pings
//! every [`PING_EVERY`] so that proxies keep idle sockets open.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_graphql::parser::types::OperationType;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{AbortHandle, Abortable, BoxStream, SelectAll};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _, future};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::respond::{is_request_error, refusal};
use super::{AppState, identity};
use crate::auth::{Caller, Via};
use crate::events::EndReason;
use crate::graphql::bounds;
use crate::graphql::context::ClientAddr;
use crate::graphql::error::{ErrorCode, ensure_codes, error_body, log_internal};
use crate::graphql::live::LiveSocket;
use crate::graphql::parsed::MAX_QUERY_BYTES;

/// The subprotocol, as clients offer it in `Sec-WebSocket-Protocol`.
const PROTOCOL: &str = "graphql-transport-ws";
/// `connection_init` must arrive within this (else 4408).
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Under nginx's default `proxy_read_timeout` (60 s).
const PING_EVERY: Duration = Duration::from_secs(30);
/// A client that does not take a message within this is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message: a query at its limit, and its variables.
const MAX_MESSAGE_BYTES: usize = MAX_QUERY_BYTES + 28 * 1024;
/// What a socket reads into at first.
const READ_BUFFER_BYTES: usize = 4096;
/// Operations running at once on one socket.
const MAX_SUBSCRIPTIONS: usize = 10;
/// Sockets open at once from one client address, and in all.
const MAX_SOCKETS_PER_CLIENT: usize = 64;
const MAX_SOCKETS: usize = 20_000;
/// Messages a client may send: a burst, then this many a second.
const MESSAGE_BURST: f64 = 50.0;
const MESSAGES_PER_SECOND: f64 = 20.0;
/// After its session ends, how long a socket waits for its `sessionEnded`
/// answers to go out before it closes.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// The open sockets: how many per client address, and the signal that
/// closes them all when the server stops.
pub struct Sockets {
    open: Mutex<HashMap<IpAddr, usize>>,
    closed: Notify,
    stopping: watch::Receiver<bool>,
}

/// One socket's place among [`Sockets`], given up when it closes.
pub struct Slot {
    sockets: Arc<Sockets>,
    client: IpAddr,
}

impl Sockets {
    /// Sockets that close (1001) when `stopping` turns true.
    pub fn new(stopping: watch::Receiver<bool>) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::default(),
            closed: Notify::new(),
            stopping,
        })
    }

    fn admit(self: &Arc<Self>, client: IpAddr) -> Option<Slot> {
        let client = per_client(client);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let total: usize = open.values().sum();
        let of_client = open.entry(client).or_default();
        if *of_client >= MAX_SOCKETS_PER_CLIENT || total >= max_sockets() {
            return None;
        }
        *of_client += 1;
        Some(Slot {
            sockets: self.clone(),
            client,
        })
    }

    fn count(&self) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.values().sum()
    }

    /// Waits, at most `bound`, until every socket has closed.
    pub async fn closed(&self, bound: Duration) {
        let _ = tokio::time::timeout(bound, async {
            loop {
                let closed = self.closed.notified();
                if self.count() == 0 {
                    return;
                }
                closed.await;
            }
        })
        .await;
    }
}

/// The sockets the process may hold: [`MAX_SOCKETS`], or half its open
/// files when that is fewer (each socket is a file, and an upgraded
/// connection has left the HTTP server's count: the other half stays for
/// HTTP connections and the pools).
fn max_sockets() -> usize {
    let files = rlimit::Resource::NOFILE.get().map_or(0, |(soft, _)| soft);
    usize::try_from(files / 2)
        .unwrap_or(usize::MAX)
        .min(MAX_SOCKETS)
}

/// Whom a socket counts against: its address, or for IPv6 its /64 (one
/// host can hold a whole /64).
fn per_client(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        other => other,
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .sockets
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
        drop(open);
        self.sockets.closed.notify_waiters();
    }
}

/// The origins a browser may open a socket from: the public URL's, and
/// those of `BLOGQL_CORS_ORIGINS`.
#[derive(Clone)]
pub struct AllowedOrigins(pub Vec<HeaderValue>);

/// `GET /graphql/ws`: checks the upgrade (its `Origin`, its caller, the
/// subprotocol, the bounds), then serves the socket.
pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // A browser sends its cookie with any site's upgrade, and no CORS
    // guards it: only our own pages (and the listed origins) may open one.
    // No `Origin`: not a browser, so no cookie it did not mean to send.
    if let Some(origin) = headers.get(header::ORIGIN)
        && !state.origins.0.contains(origin)
    {
        return refusal(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "this origin may not open a WebSocket here",
        );
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    if !offers_protocol(&headers) {
        return refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "offer the graphql-transport-ws subprotocol",
        );
    }
    let client = state.proxies.client(peer.ip(), &headers);
    let caller = match identity::identify(&state, &headers, client).await {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    let Some(slot) = state.sockets.admit(client) else {
        return refusal(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::BadRequest,
            "too many WebSockets open from this address",
        );
    };
    upgrade
        .protocols([PROTOCOL])
        // tungstenite's defaults hold 128 KiB per socket for reading, idle
        // or not: a small buffer grows for the rare large message instead.
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .max_write_buffer_size(4 * MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let connection = Connection {
                state,
                client,
                headers,
                caller: Arc::new(caller),
                live: Arc::new(LiveSocket::default()),
            };
            connection.serve(socket).await;
            drop(slot);
        })
}

fn offers_protocol(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|offered| offered.trim() == PROTOCOL)
}

/// A message from the client.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<Value>,
    },
    Ping {},
    Pong {},
    Subscribe {
        id: String,
        payload: Box<Subscribe>,
    },
    Complete {
        id: String,
    },
}

/// A `subscribe` message's operation: a GraphQL request (`query`,
/// `variables`, `operationName`, `extensions`), and the `documentId` of a
/// trusted document.
#[derive(Deserialize)]
struct Subscribe {
    #[serde(flatten)]
    request: async_graphql::Request,
    #[serde(rename = "documentId", default)]
    document_id: Option<String>,
}

/// How a socket ends, as its close frame says.
struct Close(u16, &'static str);

impl Close {
    const BAD_MESSAGE: Close = Close(4400, "Invalid message");
    const UNAUTHORIZED: Close = Close(4401, "Unauthorized");
    const FORBIDDEN: Close = Close(4403, "Forbidden");
    const INIT_TIMEOUT: Close = Close(4408, "Connection initialisation timeout");
    const TOO_MANY_INITS: Close = Close(4429, "Too many initialisation requests");
    const SESSION_ENDED: Close = Close(4401, "Session ended");
    const FELL_BEHIND: Close = Close(1013, "Fell behind: reconnect");
    const TOO_FAST: Close = Close(1008, "Too many messages");
    const GOING_AWAY: Close = Close(1001, "Server shutting down");
    const INTERNAL: Close = Close(1011, "Internal server error");
}

/// What one operation's stream yields: a result, or its end.
enum Output {
    Result(Operation, Box<async_graphql::Response>),
    Done(Operation),
}

/// A running operation: the client's id, and a serial number of ours (an
/// id completed by the client may be used again while the old stream's
/// last output is still on its way).
#[derive(Clone, PartialEq, Eq)]
struct Operation {
    id: String,
    serial: u64,
}

/// One socket and what its operations share.
struct Connection {
    state: AppState,
    client: IpAddr,
    /// The upgrade request's, for a token given in `connection_init`.
    headers: HeaderMap,
    caller: Arc<Caller>,
    live: Arc<LiveSocket>,
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

impl Connection {
    async fn serve(mut self, socket: WebSocket) {
        let (mut sink, mut incoming) = socket.split();
        let close = match self.run(&mut sink, &mut incoming).await {
            Ok(close) => close,
            // The client left, or does not read.
            Err(Gone) => return,
        };
        let frame = CloseFrame {
            code: close.0,
            reason: close.1.into(),
        };
        let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    }

    /// The protocol, until the socket must close (and with what), or the
    /// client is gone.
    async fn run(
        &mut self,
        sink: &mut Sink,
        incoming: &mut futures_util::stream::SplitStream<WebSocket>,
    ) -> Result<Close, Gone> {
        let mut stopping = self.state.sockets.stopping.clone();
        if *stopping.borrow() {
            return Ok(Close::GOING_AWAY);
        }
        // Before `connection_init`: pings, and nothing else.
        let mut budget = Budget::new();
        let deadline = tokio::time::sleep(INIT_TIMEOUT);
        tokio::pin!(deadline);
        let payload = loop {
            let message = tokio::select! {
                () = &mut deadline => return Ok(Close::INIT_TIMEOUT),
                _ = stopping.changed() => return Ok(Close::GOING_AWAY),
                message = incoming.next() => message,
            };
            if !budget.spend() {
                return Ok(Close::TOO_FAST);
            }
            match read(message)? {
                Read::Message(ClientMessage::ConnectionInit { payload }) => break payload,
                Read::Message(ClientMessage::Ping {}) => {
                    send(sink, json!({"type": "pong"})).await?
                }
                Read::Message(ClientMessage::Pong {}) | Read::Skip => {}
                Read::Message(ClientMessage::Subscribe { .. }) => return Ok(Close::UNAUTHORIZED),
                Read::Message(ClientMessage::Complete { .. }) => {}
                Read::Bad => return Ok(Close::BAD_MESSAGE),
            }
        };
        if let Err(close) = self.init(payload.as_ref()).await {
            return Ok(close);
        }
        let session_end = match self.watch_session().await {
            Ok(end) => end,
            Err(close) => return Ok(close),
        };
        send(sink, json!({"type": "connection_ack"})).await?;
        self.serve_operations(sink, incoming, session_end, stopping, budget)
            .await
    }

    /// `connection_init`: a token in `payload.authorization` (for clients
    /// that cannot set headers) replaces the cookie; one that does not
    /// authenticate refuses the socket (4403).
    async fn init(&mut self, payload: Option<&Value>) -> Result<(), Close> {
        let authorization = match payload {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Object(fields)) => fields
                .get("authorization")
                .or_else(|| fields.get("Authorization")),
            Some(_) => return Err(Close::BAD_MESSAGE),
        };
        let Some(authorization) = authorization else {
            return Ok(());
        };
        let mut headers = HeaderMap::new();
        let value = authorization
            .as_str()
            .and_then(|text| HeaderValue::from_str(text).ok())
            .ok_or(Close::FORBIDDEN)?;
        headers.insert(header::AUTHORIZATION, value);
        if let Some(agent) = self.headers.get(header::USER_AGENT) {
            headers.insert(header::USER_AGENT, agent.clone());
        }
        match identity::identify(&self.state, &headers, self.client).await {
            Ok(caller) if caller.by_api_token() => {
                self.caller = Arc::new(caller);
                Ok(())
            }
            _ => Err(Close::FORBIDDEN),
        }
    }

    /// For a socket signed in by its cookie: the end of that session, by
    /// any path; for others, never.
    async fn watch_session(
        &self,
    ) -> Result<Pin<Box<dyn Future<Output = EndReason> + Send>>, Close> {
        let principal = match self.caller.principal().await {
            Ok(principal) => principal,
            Err(err) => {
                log_internal(err);
                return Err(Close::INTERNAL);
            }
        };
        let Some(principal) = principal.filter(|p| matches!(p.via, Via::Cookie)) else {
            return Ok(Box::pin(future::pending()));
        };
        let Some(key) = self.caller.session().stored_key().await else {
            return Ok(Box::pin(future::pending()));
        };
        let services = &self.state.services;
        Ok(Box::pin(crate::live::session_end(
            services.sessions.clone(),
            &services.events,
            principal.user_id(),
            key,
        )))
    }

    async fn serve_operations(
        &self,
        sink: &mut Sink,
        incoming: &mut futures_util::stream::SplitStream<WebSocket>,
        mut session_end: Pin<Box<dyn Future<Output = EndReason> + Send>>,
        mut stopping: watch::Receiver<bool>,
        mut budget: Budget,
    ) -> Result<Close, Gone> {
        let mut running: Running = HashMap::new();
        let mut serials = 0..;
        let mut outputs: SelectAll<BoxStream<'static, Output>> = SelectAll::new();
        let mut pings =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        let mut heard_at = tokio::time::Instant::now();
        loop {
            tokio::select! {
                message = incoming.next() => {
                    heard_at = tokio::time::Instant::now();
                    if !budget.spend() {
                        return Ok(Close::TOO_FAST);
                    }
                    match read(message)? {
                        Read::Message(ClientMessage::ConnectionInit { .. }) => {
                            return Ok(Close::TOO_MANY_INITS);
                        }
                        Read::Message(ClientMessage::Ping {}) => {
                            send(sink, json!({"type": "pong"})).await?;
                        }
                        Read::Message(ClientMessage::Pong {}) | Read::Skip => {}
                        Read::Message(ClientMessage::Subscribe { id, payload }) => {
                            if running.contains_key(&id) {
                                return Ok(Close(4409, "Subscriber already exists"));
                            }
                            if running.len() >= MAX_SUBSCRIPTIONS {
                                let errors = error_body(
                                    ErrorCode::BadRequest,
                                    &format!("at most {MAX_SUBSCRIPTIONS} subscriptions per socket"),
                                    &[],
                                );
                                send(sink, json!({"type": "error", "id": id, "payload": errors["errors"]})).await?;
                                continue;
                            }
                            match self.start(payload) {
                                Ok(results) => {
                                    let (abort, registration) = AbortHandle::new_pair();
                                    let operation = Operation { id, serial: serials.next().unwrap_or_default() };
                                    running.insert(operation.id.clone(), (operation.serial, abort));
                                    let tagged = Abortable::new(results, registration)
                                        .map({
                                            let operation = operation.clone();
                                            move |result| Output::Result(operation.clone(), Box::new(result))
                                        })
                                        .chain(futures_util::stream::once(async move { Output::Done(operation) }));
                                    outputs.push(tagged.boxed());
                                }
                                Err(errors) => {
                                    send(sink, json!({"type": "error", "id": id, "payload": errors})).await?;
                                }
                            }
                        }
                        Read::Message(ClientMessage::Complete { id }) => {
                            if let Some((_, abort)) = running.remove(&id) {
                                abort.abort();
                            }
                        }
                        Read::Bad => return Ok(Close::BAD_MESSAGE),
                    }
                }
                Some(output) = outputs.next(), if !outputs.is_empty() => {
                    deliver(sink, &mut running, output).await?;
                }
                reason = &mut session_end => {
                    self.live.end(reason);
                    self.last_words(sink, &mut running, &mut outputs).await?;
                    return Ok(Close::SESSION_ENDED);
                }
                () = self.live.fell_behind() => return Ok(Close::FELL_BEHIND),
                _ = pings.tick() => {
                    // Not even the pong of the last ping: the peer is gone
                    // (a dropped NAT mapping leaves no trace otherwise).
                    if heard_at.elapsed() > 2 * PING_EVERY {
                        return Err(Gone);
                    }
                    timed(sink.send(Message::Ping(Default::default()))).await?;
                }
                _ = stopping.changed() => return Ok(Close::GOING_AWAY),
            }
        }
    }

    /// After the session ended: lets each `sessionEnded` say so (bounded
    /// by [`LAST_WORDS`]), whatever else is running.
    async fn last_words(
        &self,
        sink: &mut Sink,
        running: &mut Running,
        outputs: &mut SelectAll<BoxStream<'static, Output>>,
    ) -> Result<(), Gone> {
        let deadline = tokio::time::Instant::now() + LAST_WORDS;
        loop {
            // Every stream is polled at least once before the count is read:
            // a `sessionEnded` not yet started counts itself when first polled.
            let next = outputs.next().now_or_never();
            match next {
                Some(Some(output)) => deliver(sink, running, output).await?,
                Some(None) => return Ok(()),
                None if self.live.untold() == 0 => return Ok(()),
                None => match tokio::time::timeout_at(deadline, outputs.next()).await {
                    Ok(Some(output)) => deliver(sink, running, output).await?,
                    Ok(None) | Err(_) => return Ok(()),
                },
            }
        }
    }

    /// Parses and bounds a `subscribe`, then runs it; the errors of an
    /// operation that cannot run, as the `error` message carries them.
    fn start(
        &self,
        payload: Box<Subscribe>,
    ) -> Result<BoxStream<'static, async_graphql::Response>, Value> {
        let refuse =
            |code: ErrorCode, message: &str| error_body(code, message, &[])["errors"].take();
        let Subscribe {
            mut request,
            document_id,
        } = *payload;
        if let Some(trusted) = &self.state.trusted {
            let id = document_id.as_deref().filter(|id| !id.is_empty());
            if let Err(refused) = trusted.resolve(&mut request, id) {
                return Err(refuse(refused.code(), &refused.to_string()));
            }
        }
        let parsed = self
            .state
            .documents
            .parse(&request.query)
            .map_err(|failure| refuse(failure.code(), &failure.message()))?;
        let name = request.operation_name.as_deref();
        if !bounds::only(OperationType::Subscription, &parsed.document, name) {
            return Err(refuse(
                ErrorCode::BadRequest,
                "only subscriptions run over WebSocket: send queries and mutations to /graphql",
            ));
        }
        if let Some(missing) = bounds::missing_variable(&parsed.document, name, &request.variables)
        {
            return Err(refuse(
                ErrorCode::BadUserInput,
                &format!("Variable \"${missing}\" of required type was not provided."),
            ));
        }
        request.set_parsed_query(parsed.document);
        let request = request
            .data(self.caller.clone())
            .data(ClientAddr(self.client))
            .data(self.live.clone());
        Ok(self.state.schema.execute_stream(request).boxed())
    }
}

/// The operations running on a socket, by the client's id.
type Running = HashMap<String, (u64, AbortHandle)>;

/// Sends one operation's result (`next`, or `error` for one refused before
/// it ran) or its end (`complete`, unless the client completed it).
async fn deliver(sink: &mut Sink, running: &mut Running, output: Output) -> Result<(), Gone> {
    let is_running = |running: &Running, operation: &Operation| {
        running.get(&operation.id).map(|(serial, _)| *serial) == Some(operation.serial)
    };
    match output {
        Output::Result(operation, mut response) => {
            if !is_running(running, &operation) {
                return Ok(());
            }
            let id = operation.id;
            ensure_codes(&mut response.errors);
            if is_request_error(&response) {
                running.remove(&id);
                let errors = serde_json::to_value(&response.errors).unwrap_or_default();
                send(sink, json!({"type": "error", "id": id, "payload": errors})).await
            } else {
                let payload = serde_json::to_value(&response).unwrap_or_default();
                send(sink, json!({"type": "next", "id": id, "payload": payload})).await
            }
        }
        Output::Done(operation) => {
            if is_running(running, &operation) {
                running.remove(&operation.id);
                send(sink, json!({"type": "complete", "id": operation.id})).await?;
            }
            Ok(())
        }
    }
}

/// The client is gone (or does not take what is sent).
struct Gone;

enum Read {
    Message(ClientMessage),
    /// A frame the protocol has no use for (a pong of ours, say).
    Skip,
    Bad,
}

fn read(message: Option<Result<Message, axum::Error>>) -> Result<Read, Gone> {
    let message = match message {
        Some(Ok(message)) => message,
        // Closed, broken, or over the size limit.
        Some(Err(_)) | None => return Err(Gone),
    };
    Ok(match message {
        Message::Text(text) => match serde_json::from_str(text.as_str()) {
            Ok(message) => Read::Message(message),
            Err(_) => Read::Bad,
        },
        Message::Binary(_) => Read::Bad,
        Message::Ping(_) | Message::Pong(_) => Read::Skip,
        Message::Close(_) => return Err(Gone),
    })
}

async fn send(sink: &mut Sink, message: Value) -> Result<(), Gone> {
    timed(sink.send(Message::Text(message.to_string().into()))).await
}

async fn timed(sent: impl Future<Output = Result<(), axum::Error>>) -> Result<(), Gone> {
    match tokio::time::timeout(SEND_TIMEOUT, sent).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(Gone),
    }
}

/// Messages a client may still send: [`MESSAGE_BURST`], refilled at
/// [`MESSAGES_PER_SECOND`].
struct Budget {
    left: f64,
    at: tokio::time::Instant,
}

impl Budget {
    fn new() -> Self {
        Self {
            left: MESSAGE_BURST,
            at: tokio::time::Instant::now(),
        }
    }

    fn spend(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * MESSAGES_PER_SECOND;
        self.left = (self.left + refill).min(MESSAGE_BURST);
        self.at = now;
        if self.left < 1.0 {
            return false;
        }
        self.left -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_counts_by_its_64_and_others_by_their_address() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(per_client(one), per_client(same_64));
        assert_ne!(per_client(one), per_client(other_64));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(per_client(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(per_client(mapped), mapped);
    }
}
