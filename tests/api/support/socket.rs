//! A `graphql-transport-ws` client, as a browser's Apollo Client or urql
//! speaks it: the upgrade carries the browser's cookie and `Origin`, then
//! `connection_init`, `subscribe`, and the server's `next`, `error`,
//! `complete` and close frames, each awaited with a bound.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::{Browser, TestApp};

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a test waits for any one thing a socket should receive.
pub const SOCKET_WAIT: Duration = Duration::from_secs(10);

/// An open socket to `/graphql/ws`.
pub struct LiveClient {
    stream: Stream,
}

/// How an upgrade went: the socket, or the HTTP status it was refused with.
pub type Upgraded = Result<LiveClient, u16>;

impl TestApp {
    /// `ws://127.0.0.1:PORT/graphql/ws`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/graphql/ws", self.address)
    }

    /// Opens a socket as `browser` would from the server's own page: its
    /// cookie and the public URL's `Origin`; not yet initialised.
    pub async fn open_socket(&self, browser: &Browser) -> LiveClient {
        let cookie = browser.session_cookie().map(|value| format!("sid={value}"));
        self.upgrade(cookie.as_deref(), Some("http://127.0.0.1:8000"), &[])
            .await
            .expect("the upgrade is accepted")
    }

    /// Opens a socket as `browser` does, initialised (`connection_ack`).
    pub async fn subscriber(&self, browser: &Browser) -> LiveClient {
        let mut socket = self.open_socket(browser).await;
        socket.init(json!({})).await;
        socket
    }

    /// Asks for an upgrade with this `Cookie`, this `Origin` and `headers`.
    pub async fn upgrade(
        &self,
        cookie: Option<&str>,
        origin: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Upgraded {
        let mut request = self.ws_url().into_client_request().expect("a request");
        let sent = request.headers_mut();
        sent.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let given = cookie
            .map(|cookie| ("cookie", cookie))
            .into_iter()
            .chain(origin.map(|origin| ("origin", origin)))
            .chain(headers.iter().copied());
        for (name, value) in given {
            let name: tokio_tungstenite::tungstenite::http::HeaderName =
                name.parse().expect("a header name");
            sent.insert(name, value.parse().expect("a header value"));
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((stream, _)) => Ok(LiveClient { stream }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(err) => panic!("the upgrade failed: {err}"),
        }
    }
}

/// What the server sent next.
#[derive(Debug)]
pub enum Received {
    /// A protocol message.
    Message(Value),
    /// The close frame's code and reason.
    Closed(u16, String),
    /// The connection ended without a close frame.
    Dropped,
}

impl LiveClient {
    /// Sends a protocol message.
    pub async fn send(&mut self, message: Value) {
        self.send_text(message.to_string()).await;
    }

    /// Sends a text frame as is.
    pub async fn send_text(&mut self, text: String) {
        self.stream
            .send(Message::Text(text.into()))
            .await
            .expect("the socket takes a message");
    }

    /// Sends a protocol message unless the server has closed the socket
    /// (a flood it cut short); whether it was sent.
    pub async fn send_unless_closed(&mut self, message: Value) -> bool {
        self.stream
            .send(Message::Text(message.to_string().into()))
            .await
            .is_ok()
    }

    /// `connection_init` with `payload`, then the server's `connection_ack`.
    pub async fn init(&mut self, payload: Value) {
        self.send(json!({"type": "connection_init", "payload": payload}))
            .await;
        let ack = self.message().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }

    /// `subscribe` to `query` under `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str) {
        self.send(json!({"type": "subscribe", "id": id, "payload": {"query": query}}))
            .await;
    }

    /// The next thing the server sends (pings are answered and skipped),
    /// within [`SOCKET_WAIT`].
    pub async fn receive(&mut self) -> Received {
        self.receive_within(SOCKET_WAIT)
            .await
            .expect("the server sends something in time")
    }

    /// The next thing the server sends within `bound`; `None` if nothing.
    pub async fn receive_within(&mut self, bound: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()?;
            return Some(match frame {
                Some(Ok(Message::Text(text))) => {
                    Received::Message(serde_json::from_str(text.as_str()).expect("JSON"))
                }
                Some(Ok(Message::Close(Some(frame)))) => {
                    Received::Closed(frame.code.into(), frame.reason.to_string())
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(other)) => panic!("an unexpected frame: {other:?}"),
                Some(Err(_)) | None => Received::Dropped,
            });
        }
    }

    /// The next protocol message; fails the test on a close.
    pub async fn message(&mut self) -> Value {
        match self.receive().await {
            Received::Message(message) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The close frame's code, skipping messages still on their way.
    pub async fn closed(&mut self) -> u16 {
        loop {
            match self.receive().await {
                Received::Message(_) => {}
                Received::Closed(code, _) => return code,
                Received::Dropped => panic!("dropped without a close frame"),
            }
        }
    }

    /// The data of the next `next` message for `id`, skipping others.
    pub async fn next_data(&mut self, id: &str) -> Value {
        loop {
            let message = self.message().await;
            if message["id"] == id {
                assert_eq!(message["type"], "next", "{message}");
                return message["payload"]["data"].clone();
            }
        }
    }
}
