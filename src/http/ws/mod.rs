//! GraphQL over WebSocket at `/graphql/ws`: the `graphql-transport-ws`
//! protocol (the `graphql-ws` library's, which Apollo Client and urql use),
//! driven in a loop of our own.
//!
//! async-graphql parses, validates and executes each subscription
//! (`Schema::execute_stream`), once for every socket holding it when its
//! answer is the same for every caller (`fanout`); everything else is here, because its own
//! WebSocket support (7.2) drops the upgrade request (no cookie, no
//! `Origin`), cannot be closed from the server (so no 4401 when the session
//! ends, no 1001 at shutdown), and answers the protocol's errors with other
//! codes than the contract's (4403, 4401, 4408, 4409).
//!
//! Bounds: a message's size, messages per second, subscriptions per socket,
//! sockets per client address and in all; a write that a client does not
//! take within `SEND_TIMEOUT` drops it, and a subscriber that falls behind
//! the post feed is closed with 1013 rather than buffered. The server pings
//! every `PING_EVERY` so that proxies keep idle sockets open.
//!
//! Here: the bounds, admitting an upgrade. `connection`: one socket's loop.
//! `fanout`: the runs shared by every socket holding the same operation.
//! `protocol`: the messages, the close codes, the message budget.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{Notify, watch};

use super::access::Note;
use super::respond::refusal;
use super::{AppState, identity};
use crate::auth::Via;
use crate::graphql::error::ErrorCode;
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
/// What a socket reads into, and at most at once: a client's messages are
/// mostly a few hundred bytes (a larger one takes several reads), and
/// every idle socket keeps its buffer.
const READ_BUFFER_BYTES: usize = 1024;
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

/// One socket's place among `Sockets`, given up when it closes.
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

/// The sockets the process may hold: `MAX_SOCKETS`, or half its open
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
    let headers = detached(&headers);
    let caller = match identity::identify(&state, &headers, client).await {
        Ok(caller) => caller,
        Err(mut refused) => {
            // Only a token that does not authenticate is refused here.
            let note = Note {
                graphql: None,
                identified_by: Some(Via::Token),
            };
            note.attach(&mut refused);
            return refused;
        }
    };
    let note = Note {
        graphql: None,
        identified_by: caller.identified_by(),
    };
    let Some(slot) = state.sockets.admit(client) else {
        return refusal(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::BadRequest,
            "too many WebSockets open from this address",
        );
    };
    // One pointer for the upgrade's task to hold until the socket opens.
    let connection = Box::new(Connection {
        state,
        client,
        headers,
        caller: Arc::new(caller),
        live: Arc::new(LiveSocket::default()),
        slot,
    });
    let mut response = upgrade
        .protocols([PROTOCOL])
        // tungstenite's defaults hold 128 KiB per socket for reading, idle
        // or not: a small buffer grows for the rare large message instead.
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .max_write_buffer_size(4 * MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| connection.serve(socket));
    note.attach(&mut response);
    response
}

/// The headers a socket keeps for its life (who it is: the cookie, a
/// token, the user agent; and what an error is answered in), copied: a
/// request's header values are slices of the buffer it was read into
/// (16 KiB), which one kept value would hold for as long as the socket.
fn detached(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in [
        header::COOKIE,
        header::AUTHORIZATION,
        header::USER_AGENT,
        header::ACCEPT,
    ] {
        for value in headers.get_all(&name) {
            if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
                copy.set_sensitive(value.is_sensitive());
                kept.append(name.clone(), copy);
            }
        }
    }
    kept
}

fn offers_protocol(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|offered| offered.trim() == PROTOCOL)
}

mod connection;
mod fanout;
mod protocol;

use connection::Connection;
pub use fanout::Fanout;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_keeps_copies_of_the_headers_it_needs_not_the_buffer_they_came_in() {
        let buffer = axum::body::Bytes::from_static(b"sid=abc; theme=darkcurl/8.0text/html");
        let slice = |from, to| HeaderValue::from_maybe_shared(buffer.slice(from..to)).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, slice(0, 19));
        headers.insert(header::USER_AGENT, slice(19, 27));
        headers.insert(header::REFERER, slice(27, 36));
        let kept = detached(&headers);
        assert_eq!(kept.len(), 2);
        for name in [header::COOKIE, header::USER_AGENT] {
            assert_eq!(kept[&name], headers[&name]);
            let at = kept[&name].as_bytes().as_ptr();
            assert!(!buffer.as_ptr_range().contains(&at), "{name} is a copy");
        }
    }

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
