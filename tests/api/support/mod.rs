//! Everything the test files share, by concern:
//!
//! - `database`: a database (and a Redis key prefix) of each test's own;
//! - `stores`: which session store a test runs on, and reporting a test
//!   whose backend is not configured (`require!`, `store_tests!`);
//! - `app`: the real server spawned on port 0, and the actors that talk to it;
//! - `actors`: [`Browser`] (a cookie jar) and [`TokenClient`] (a bearer
//!   token), the only two ways tests talk to the server over GraphQL;
//! - `process`: the `blogql` binary as a child process, and a Redis server
//!   of a test's own;
//! - `socket`: a `graphql-transport-ws` client, upgraded with a browser's
//!   cookie and `Origin`;
//! - `peek`: the only code that looks behind the API (SQL, Redis keys, the
//!   statement counter, `create-admin`'s function).
//!
//! `backends` is shared with the load benchmark.

#[path = "../../support/backends.rs"]
pub mod backends;

mod actors;
mod app;
mod database;
mod peek;
mod process;
mod socket;
mod stores;

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

pub use actors::{Browser, TokenClient, concurrent_guesses};
pub use app::{Scrape, TestApp};
pub use database::TestDatabase;
pub use process::{OwnRedis, Process, blogql, blogql_bin, free_port};
pub use socket::{LiveClient, Received};
pub use stores::{Backend, Store};

/// A password every test user has unless a test says otherwise.
pub const PASSWORD: &str = "correct horse battery";

/// The smallest query that says who is signed in.
pub const ME: &str = "{ me { username } }";

/// A page of 100 posts with every field: what an honest client may ask for.
pub const HONEST_PAGE: &str = "{ posts(first: 100) {
    edges { cursor node { id title body createdAt author { id username role createdAt } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
} }";

/// The most an event may take to reach another instance here: its delivery
/// takes milliseconds (`benches/live` measures it); the rest is room for a
/// loaded machine running the suite in parallel.
pub const DELIVERY: Duration = Duration::from_secs(2);

/// Whether `holds` becomes true within an event's delivery to another
/// instance ([`DELIVERY`]).
pub async fn soon<F, Fut>(holds: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(DELIVERY, holds).await
}

/// Whether `holds` is true at once or becomes true within `bound`, polled
/// every 5 ms.
pub async fn within<F, Fut>(bound: Duration, mut holds: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if holds().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Fails the test with the body if it carries errors.
pub fn assert_no_errors(body: &Value) {
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
}

/// The `extensions.code` of the first error.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code: {body}"))
}

/// The message of the first error, or `""`.
pub fn first_message(body: &Value) -> &str {
    body["errors"][0]["message"].as_str().unwrap_or_default()
}

/// A `DateTime` the server wrote (RFC 3339), to compare instants.
pub fn instant(value: &Value) -> time::OffsetDateTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a DateTime: {value}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|err| panic!("{text:?} is not RFC 3339: {err}"))
}

/// The hex SHA-256 of `text`: how the server stores an API token.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The `Set-Cookie` header for `sid` in a response, if any.
pub fn set_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("sid="))
        .map(str::to_owned)
}

/// Writes `request` on a new connection to `address` and reads the first
/// answer (up to 8 KiB) as text; the server may stop reading early.
pub async fn raw_exchange(address: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    for part in request.chunks(64 * 1024) {
        if stream.write_all(part).await.is_err() {
            break;
        }
    }
    let mut answer = vec![0u8; 8192];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered within 10 s")
        .expect("a readable answer");
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

/// Ends the test at once unless `$backend` (a [`Backend`]: `Sqlite`,
/// `Postgres`, `Redis`) is configured, writing `skipped: <test> needs …` to
/// the test output, so a backend that is not there is reported, never
/// silently passed.
macro_rules! require {
    ($backend:ident) => {
        if !$crate::support::Backend::$backend.is_configured_or_say_skipped() {
            return;
        }
    };
}

/// The behaviour every session store must have, written once: each
/// `async fn name(store) { … }` becomes a module `name` with a test `sql`
/// and a test `redis`, the body run with `store` set to that
/// [`Store`]. The `redis` one is reported as skipped without
/// `BLOGQL_TEST_REDIS_URL`.
macro_rules! store_tests {
    ($($(#[$doc:meta])* async fn $name:ident($store:ident) $body:block)*) => {$(
        $(#[$doc])*
        mod $name {
            #[allow(unused_imports, reason = "the file's imports, for the body")]
            use super::*;

            async fn run($store: $crate::support::Store) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sql() {
                run($crate::support::Store::Sql).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                require!(Redis);
                run($crate::support::Store::Redis).await;
            }
        }
    )*};
}
