//! The protocol's messages, as read and sent: what a client may send,
//! the close codes, and the budget of messages a client may spend.

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt as _;
use serde::Deserialize;
use serde_json::Value;

use super::{MESSAGE_BURST, MESSAGES_PER_SECOND, SEND_TIMEOUT};

/// A message from the client.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ClientMessage {
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
pub(super) struct Subscribe {
    #[serde(flatten)]
    pub(super) request: async_graphql::Request,
    #[serde(rename = "documentId", default)]
    pub(super) document_id: Option<String>,
}

/// How a socket ends, as its close frame says.
pub(super) struct Close(pub(super) u16, pub(super) &'static str);

impl Close {
    pub(super) const BAD_MESSAGE: Close = Close(4400, "Invalid message");
    pub(super) const UNAUTHORIZED: Close = Close(4401, "Unauthorized");
    pub(super) const FORBIDDEN: Close = Close(4403, "Forbidden");
    pub(super) const INIT_TIMEOUT: Close = Close(4408, "Connection initialisation timeout");
    pub(super) const TOO_MANY_INITS: Close = Close(4429, "Too many initialisation requests");
    pub(super) const SESSION_ENDED: Close = Close(4401, "Session ended");
    pub(super) const FELL_BEHIND: Close = Close(1013, "Fell behind: reconnect");
    pub(super) const TOO_FAST: Close = Close(1008, "Too many messages");
    pub(super) const GOING_AWAY: Close = Close(1001, "Server shutting down");
    pub(super) const INTERNAL: Close = Close(1011, "Internal server error");
}

/// The client is gone (or does not take what is sent).
pub(super) struct Gone;

/// Where a socket's messages are written.
pub(super) type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

pub(super) enum Read {
    Message(ClientMessage),
    /// A frame the protocol has no use for (a pong of ours, say).
    Skip,
    Bad,
}

pub(super) fn read(message: Option<Result<Message, axum::Error>>) -> Result<Read, Gone> {
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

pub(super) async fn send(sink: &mut Sink, message: Value) -> Result<(), Gone> {
    send_text(sink, message.to_string()).await
}

/// Sends a message already serialized.
pub(super) async fn send_text(sink: &mut Sink, message: String) -> Result<(), Gone> {
    timed(sink.send(Message::Text(message.into()))).await
}

/// The message of `kind` (`next`, `error`) for operation `id`, with
/// `payload` already serialized: the one allocation a shared result costs
/// each socket.
pub(super) fn message_with(kind: &str, id: &str, payload: &str) -> String {
    let id = serde_json::to_string(id).unwrap_or_default();
    let mut message = String::with_capacity(payload.len() + id.len() + 32);
    message.push_str(r#"{"type":""#);
    message.push_str(kind);
    message.push_str(r#"","id":"#);
    message.push_str(&id);
    message.push_str(r#","payload":"#);
    message.push_str(payload);
    message.push('}');
    message
}

pub(super) async fn timed(sent: impl Future<Output = Result<(), axum::Error>>) -> Result<(), Gone> {
    match tokio::time::timeout(SEND_TIMEOUT, sent).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(Gone),
    }
}

/// Messages a client may still send: `MESSAGE_BURST`, refilled at
/// `MESSAGES_PER_SECOND`.
pub(super) struct Budget {
    left: f64,
    at: tokio::time::Instant,
}

impl Budget {
    pub(super) fn new() -> Self {
        Self {
            left: MESSAGE_BURST,
            at: tokio::time::Instant::now(),
        }
    }

    pub(super) fn spend(&mut self) -> bool {
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
