//! One socket, from `connection_init` to its close: the operations it
//! runs, and what ends it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use async_graphql::parser::types::OperationType;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::http::{HeaderMap, HeaderValue, header};
use futures_util::stream::{AbortHandle, Abortable, BoxStream, SelectAll};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _, future};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::fanout::Shared;
use super::protocol::{
    Budget, ClientMessage, Close, Gone, Read, Sink, Subscribe, message_with, read, send, send_text,
    timed,
};
use super::{INIT_TIMEOUT, LAST_WORDS, MAX_SUBSCRIPTIONS, PING_EVERY, SEND_TIMEOUT};
use crate::auth::{Caller, Via};
use crate::events::EndReason;
use crate::graphql::bounds;
use crate::graphql::context::ClientAddr;
use crate::graphql::error::{ErrorCode, ensure_codes, error_body, log_internal};
use crate::graphql::live::{self, LiveSocket};
use crate::http::respond::is_request_error;
use crate::http::{AppState, identity};
use crate::telemetry::Open;

/// What one operation's stream yields: a result, or its end.
enum Output {
    /// A result of this socket's own run of the operation.
    Result(Operation, Box<async_graphql::Response>),
    /// A result of a run shared with every socket that holds the same
    /// operation, serialized once.
    Shared(Operation, Shared),
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
pub(super) struct Connection {
    pub(super) state: AppState,
    pub(super) client: IpAddr,
    /// The upgrade request's, for a token given in `connection_init`.
    pub(super) headers: HeaderMap,
    pub(super) caller: Arc<Caller>,
    pub(super) live: Arc<LiveSocket>,
    /// Its place among the open sockets, given up when it is dropped.
    #[allow(dead_code, reason = "held, never read")]
    pub(super) slot: super::Slot,
}

impl Connection {
    /// Serves `socket` until it closes. Not an `async fn`: the socket is
    /// split before the future is made, so that the future (kept for as
    /// long as the socket is open) holds its two halves and not, besides,
    /// the room of the whole.
    pub(super) fn serve(
        mut self: Box<Self>,
        socket: WebSocket,
    ) -> impl Future<Output = ()> + Send + 'static {
        let open = self.state.services.metrics.websocket_opened();
        let (mut sink, mut incoming) = socket.split();
        async move {
            // Counted open until this ends.
            let _open = open;
            let close = match self.run(&mut sink, &mut incoming).await {
                Ok(close) => close,
                // The client left, or does not read.
                Err(Gone) => return,
            };
            let frame = CloseFrame {
                code: close.0,
                reason: close.1.into(),
            };
            let _ =
                tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
        }
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
        // Boxed: their store lookups are large futures, and a socket's own
        // is as large as the largest it ever awaits, for as long as it is
        // open (10,000 idle sockets each kept about 5 KiB for these).
        if let Err(close) = Box::pin(self.init(payload.as_ref())).await {
            return Ok(close);
        }
        let session_end = match Box::pin(self.watch_session()).await {
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
        // Made once, not at every turn: a socket turns once per frame.
        let stopped = stopping.changed();
        tokio::pin!(stopped);
        let fell_behind = self.live.fell_behind();
        tokio::pin!(fell_behind);
        loop {
            // In this order: an end before anything else; a result without
            // polling the rest (ten thousand sockets turn for each post).
            tokio::select! {
                biased;
                _ = &mut stopped => return Ok(Close::GOING_AWAY),
                reason = &mut session_end => {
                    self.live.end(reason);
                    self.last_words(sink, &mut running, &mut outputs).await?;
                    return Ok(Close::SESSION_ENDED);
                }
                () = &mut fell_behind => return Ok(Close::FELL_BEHIND),
                Some(output) = outputs.next(), if !outputs.is_empty() => {
                    deliver(sink, &mut running, output).await?;
                }
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
                            let operation = Operation { id, serial: serials.next().unwrap_or_default() };
                            match self.start(payload, &operation) {
                                Ok(results) => {
                                    let (abort, registration) = AbortHandle::new_pair();
                                    let active = self.state.services.metrics.subscription_started();
                                    running.insert(operation.id.clone(), (operation.serial, abort, active));
                                    let tagged = Abortable::new(results, registration)
                                        .chain(futures_util::stream::once(async move { Output::Done(operation) }));
                                    outputs.push(tagged.boxed());
                                }
                                Err(errors) => {
                                    send(sink, json!({"type": "error", "id": operation.id, "payload": errors})).await?;
                                }
                            }
                        }
                        Read::Message(ClientMessage::Complete { id }) => {
                            if let Some((_, abort, _)) = running.remove(&id) {
                                abort.abort();
                            }
                        }
                        Read::Bad => return Ok(Close::BAD_MESSAGE),
                    }
                }
                _ = pings.tick() => {
                    // Not even the pong of the last ping: the peer is gone
                    // (a dropped NAT mapping leaves no trace otherwise).
                    if heard_at.elapsed() > 2 * PING_EVERY {
                        return Err(Gone);
                    }
                    timed(sink.send(Message::Ping(Default::default()))).await?;
                }
            }
        }
    }

    /// After the session ended: lets each `sessionEnded` say so (bounded
    /// by `LAST_WORDS`), whatever else is running.
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

    /// Parses and bounds a `subscribe`, then runs it as `operation` (on a
    /// run shared with other sockets when its answer is the same for every
    /// caller); the errors of an operation that cannot run, as the `error`
    /// message carries them.
    fn start(
        &self,
        payload: Box<Subscribe>,
        operation: &Operation,
    ) -> Result<BoxStream<'static, Output>, Value> {
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
        let shared = live::same_for_every_caller(&parsed.document, name);
        request.set_parsed_query(parsed.document);
        let operation = operation.clone();
        if shared {
            let results = self.state.fanout.join(request, self.live.clone());
            return Ok(results
                .map(move |result| Output::Shared(operation.clone(), result))
                .boxed());
        }
        let request = request
            .data(self.caller.clone())
            .data(ClientAddr(self.client))
            .data(self.live.clone());
        Ok(self
            .state
            .live_schema
            .execute_stream(request)
            .map(move |result| Output::Result(operation.clone(), Box::new(result)))
            .boxed())
    }
}

/// The operations running on a socket, by the client's id.
/// Each counts as active in the metrics while it is here.
type Running = HashMap<String, (u64, AbortHandle, Open)>;

/// Sends one operation's result (`next`, or `error` for one refused before
/// it ran) or its end (`complete`, unless the client completed it).
async fn deliver(sink: &mut Sink, running: &mut Running, output: Output) -> Result<(), Gone> {
    let is_running = |running: &Running, operation: &Operation| {
        running.get(&operation.id).map(|(serial, ..)| *serial) == Some(operation.serial)
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
        Output::Shared(operation, Shared::Next(payload)) => {
            if !is_running(running, &operation) {
                return Ok(());
            }
            send_text(sink, message_with("next", &operation.id, &payload)).await
        }
        Output::Shared(operation, Shared::Refused(errors)) => {
            if !is_running(running, &operation) {
                return Ok(());
            }
            running.remove(&operation.id);
            send_text(sink, message_with("error", &operation.id, &errors)).await
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
