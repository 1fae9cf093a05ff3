//! Attacks that one small request (or a few sockets) could make, each made
//! for real and bounded itself: servers that could blow up run as the
//! binary under `prlimit`, and every wait has a bound.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    HONEST_PAGE, PASSWORD, Process, Store, TestApp, TestDatabase, assert_no_errors, error_code,
    first_message, raw_exchange, set_cookie, sha256_hex,
};

/// Memory the server may use under attack: it idles at about 60 MiB.
const MEMORY_LIMIT: &str = "--data=1073741824";

/// `query { ...F0 }` where each fragment spreads the next twice: 2^levels
/// selections in well under a kilobyte.
fn fragment_bomb(levels: usize) -> String {
    let mut query = String::from("query { ...F0 }");
    for n in 0..levels {
        query.push_str(&format!(
            " fragment F{n} on Query {{ ...F{m} ...F{m} }}",
            m = n + 1
        ));
    }
    query.push_str(&format!(" fragment F{levels} on Query {{ __typename }}"));
    query
}

/// Reads from `stream` until the server closes it; `false` if it is still
/// open after `bound`.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(bound, read).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_chain_spreading_2_to_the_30_is_refused_with_memory_flat() {
    let database = TestDatabase::new().await;
    let server = Process::start(&database, &[], &[MEMORY_LIMIT]).await;
    let client = reqwest::Client::new();
    let query = fragment_bomb(30);
    assert!(query.len() < 1536, "{}", query.len());
    for _ in 0..4 {
        let response = client
            .post(server.url("/graphql"))
            .json(&json!({ "query": query }))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("the server answers instead of expanding 2^30 selections");
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
        assert!(first_message(&body).contains("fields"), "{body}");
    }
    let health = client
        .get(server.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
    let peak = server.peak_rss_mib();
    assert!(peak < 200, "peak RSS {peak} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_sockets_never_make_the_server_unreachable() {
    let database = TestDatabase::new().await;
    // 256 open files: 400 silent sockets would exhaust them.
    let server = Process::start(
        &database,
        &[("BLOGQL_REQUEST_HEAD_TIMEOUT", "2s")],
        &["--nofile=256:256", MEMORY_LIMIT],
    )
    .await;
    let mut silent = Vec::new();
    for n in 0..400 {
        let Ok(mut stream) = TcpStream::connect(server.address).await else {
            continue;
        };
        // Half say nothing; half start an upload they never finish.
        if n % 2 == 1 {
            let _ = stream
                .write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
                .await;
        }
        silent.push(stream);
    }
    let mut half_sent = TcpStream::connect(server.address).await.unwrap();
    half_sent
        .write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        .await
        .unwrap();
    // A new client is answered at once: the longest-idle sockets give way.
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let body: Value = client
            .post(server.url("/graphql"))
            .json(&json!({ "query": "{ me { id } }" }))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("answered while hundreds of sockets sit silent")
            .json()
            .await
            .unwrap();
        assert_eq!(body, json!({ "data": { "me": null } }));
    }
    assert!(
        closed_within(&mut half_sent, Duration::from_secs(10)).await,
        "a half-sent request head is closed after the head timeout"
    );
    let log = server.log();
    assert!(!log.contains("Too many open files"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = TestApp::spawn_with(&[("BLOGQL_KEEP_ALIVE_TIMEOUT", "1s")]).await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", app.address);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = [0u8; 256];
    let read = stream.read(&mut answer).await.unwrap();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    assert!(
        closed_within(&mut stream, Duration::from_secs(10)).await,
        "still open long after the keep-alive timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_period_whatever_is_in_flight() {
    let database = TestDatabase::new().await;
    let mut server = Process::start(
        &database,
        &[("BLOGQL_SHUTDOWN_GRACE", "2s")],
        &[MEMORY_LIMIT],
    )
    .await;
    // One request whose body never finishes, one whose head never does.
    let mut in_flight = TcpStream::connect(server.address).await.unwrap();
    in_flight
        .write_all(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"qu",
        )
        .await
        .unwrap();
    let mut half_sent = TcpStream::connect(server.address).await.unwrap();
    half_sent
        .write_all(b"GET /graphql HTTP/1.1\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();
    let code = server.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, Some(0), "exits 0 once the grace period is over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_aliased_pages_of_bodies_are_refused_and_one_is_not() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let long = "x".repeat(50_000);
    alice.create_post("long", &long).await;
    let pages: String = (0..16)
        .map(|n| format!("p{n}: posts(first: 100) {{ edges {{ node {{ body }} }} }} "))
        .collect();
    let before = app.statements_executed();
    let body = alice.graphql(&format!("{{ {pages} }}"), json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    assert!(first_message(&body).contains("complex"), "{body}");
    assert_eq!(app.statements_executed(), before, "refused before any SQL");
    let two: String = (0..2)
        .map(|n| format!("p{n}: posts(first: 100) {{ edges {{ node {{ body }} }} }} "))
        .collect();
    let body = alice.graphql(&format!("{{ {two} }}"), json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    // An honest page of 100 with every field, bodies of 50,000 characters.
    let body = alice.graphql(HONEST_PAGE, json!({})).await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["posts"]["edges"][0]["node"]["body"], long);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operation_runs_at_most_20_mutation_fields() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let posts = |count: usize| -> String {
        let fields: String = (0..count)
            .map(|n| format!("p{n}: createPost(input: {{title: \"t{n}\", body: \"b\"}}) {{ id }} "))
            .collect();
        format!("mutation {{ {fields} }}")
    };
    let body = alice.graphql(&posts(21), json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    assert!(
        first_message(&body).contains("20 mutation fields"),
        "{body}"
    );
    assert_eq!(app.sql_count("SELECT COUNT(*) AS n FROM posts").await, 0);
    assert_no_errors(&alice.graphql(&posts(20), json!({})).await);
    assert_eq!(app.sql_count("SELECT COUNT(*) AS n FROM posts").await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_from_one_address_are_rate_limited() {
    let app = TestApp::spawn().await;
    let spammer = app.browser_from(20);
    let mut limited = None;
    for n in 0..40 {
        let body = spammer
            .register_with(&format!("spam{n:02}"), PASSWORD)
            .await;
        if body.get("errors").is_some() {
            assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
            let message = body["errors"][0]["message"].as_str().unwrap_or_default();
            assert!(message.contains("registrations"), "{body}");
            let retry = body["errors"][0]["extensions"]["retryAfter"].as_u64();
            limited = Some((n, retry.expect("retryAfter")));
            break;
        }
    }
    let (accepted, retry_after) = limited.expect("40 registrations were never limited");
    assert_eq!(accepted, 30, "accounts from one address before the limit");
    assert!(retry_after > 0 && retry_after <= 600, "{retry_after}");
    let users = app.sql_count("SELECT COUNT(*) AS n FROM users").await;
    assert_eq!(users, accepted as i64, "the refused one was not created");
    // Another address is not limited.
    app.browser_from(21).register("honest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_session_write_is_a_graphql_error_not_an_empty_500() {
    // Sessions in the database (Redis failing: redis_store.rs).
    let app = Store::Sql.spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    app.refuse_writes("sessions").await;
    let answers = [
        app.browser().login("alice", PASSWORD).await,
        app.browser().register_with("bob", PASSWORD).await,
        alice.graphql("mutation { logout }", json!({})).await,
    ];
    for body in answers {
        assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
        let id = body["errors"][0]["extensions"]["correlationId"].as_str();
        assert!(id.is_some_and(|id| !id.is_empty()), "{body}");
        assert!(!body.to_string().contains("refused by the test"), "{body}");
    }
    // The failed logout left the session in place, and the client knows it.
    app.allow_writes("sessions").await;
    assert_eq!(alice.me().await.as_deref(), Some("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_idle_extension_is_a_graphql_error() {
    // A 10 s idle timeout extends at most once a second. Sessions in the
    // database (Redis failing: redis_store.rs).
    let app = Store::Sql
        .spawn_with(&[("BLOGQL_SESSION_IDLE_TIMEOUT", "10s")])
        .await;
    let alice = app.browser();
    alice.register("alice").await;
    app.refuse_writes("sessions").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = alice.send("{ me { username } }", json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(set_cookie(response.headers()).is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_refused_while_failures_cannot_be_recorded() {
    // The counts in the database (in Redis: redis_store.rs stops it).
    let app = Store::Sql.spawn().await;
    app.browser().register("alice").await;
    app.refuse_writes("login_failures").await;
    let client = app.browser();
    for _ in 0..12 {
        let wrong = client.login("alice", "not the password").await;
        assert_eq!(error_code(&wrong), "INTERNAL_SERVER_ERROR", "{wrong}");
    }
    let right = client.login("alice", PASSWORD).await;
    assert_eq!(error_code(&right), "INTERNAL_SERVER_ERROR", "{right}");
    let (answer_wrong, answer_right) = (client.login("alice", "not the password").await, right);
    assert_eq!(
        answer_wrong["errors"][0]["message"],
        answer_right["errors"][0]["message"]
    );
    assert_eq!(answer_right["data"], Value::Null);
    // Nothing signed in meanwhile.
    let body = client.graphql("{ me { id } }", json!({})).await;
    assert_eq!(body["data"]["me"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sessions_table_fails_fast_and_reads_keep_working() {
    // SQLite's writer waits on its busy timeout, tested in accounts.rs.
    require!(Postgres);
    let app = Store::Sql.spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    alice.create_post("t", "b").await;
    // A session not yet used, so read from the store at its next request.
    let fresh = app.browser();
    assert_no_errors(&fresh.login("alice", PASSWORD).await);
    // Another client holds the table, as a stuck migration would.
    let holder = app.hold_table("sessions").await;
    let signed_in: Vec<_> = (0..20)
        .map(|_| {
            let request = fresh
                .client
                .post(app.graphql_url())
                .json(&json!({ "query": "{ me { username } }" }))
                .timeout(Duration::from_secs(20));
            tokio::spawn(
                async move { request.send().await.unwrap().json::<Value>().await.unwrap() },
            )
        })
        .collect();
    // Anonymous reads go on while those wait for the lock.
    let posts = app
        .browser()
        .graphql(
            "{ posts(first: 5) { edges { node { title } } } }",
            json!({}),
        )
        .await;
    assert_no_errors(&posts);
    // A session used a moment ago is remembered: it needs no store.
    assert_eq!(alice.me().await.as_deref(), Some("alice"));
    for request in signed_in {
        let body = request.await.unwrap();
        assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    }
    holder.release().await;
    assert_eq!(fresh.me().await.as_deref(), Some("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_notices_a_database_that_refuses_writes() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    let ready = || {
        let request = browser
            .client
            .get(app.url("/readyz"))
            .timeout(Duration::from_secs(10));
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(ready().await, StatusCode::OK);
    if app.on_postgres() {
        // From a connection of its own: the pool's are all ended, so that
        // new ones start with the database's new default.
        app.set_postgres_read_only(true).await;
        // The first answers may be about the ended connections; then
        // every one is about the read-only database.
        for _ in 0..3 {
            let _ = ready().await;
        }
        for _ in 0..3 {
            assert_eq!(ready().await, StatusCode::SERVICE_UNAVAILABLE);
        }
        app.set_postgres_read_only(false).await;
        // The event bus's connections were ended too: ready again once it
        // has listened again and heard its own heartbeat.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while ready().await != StatusCode::OK && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        // Another process holds the write lock.
        let lock = app.hold_sqlite_write_lock();
        assert_eq!(ready().await, StatusCode::SERVICE_UNAVAILABLE);
        drop(lock);
    }
    assert_eq!(ready().await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_is_logged_even_at_trace() {
    let database = TestDatabase::new().await;
    let server = Process::start(&database, &[("RUST_LOG", "trace")], &[MEMORY_LIMIT]).await;
    let browser = server.browser();
    let graphql = |query: &'static str, variables: Value| browser.graphql(query, variables);
    let input = json!({ "input": { "username": "alice", "password": "trace-secret-password" } });
    assert_no_errors(
        &graphql(
            "mutation($input: RegisterInput!) { register(input: $input) { id } }",
            input.clone(),
        )
        .await,
    );
    assert_no_errors(
        &graphql(
            "mutation($input: CreatePostInput!) { createPost(input: $input) { id } }",
            json!({ "input": { "title": "a quiet title", "body": "a body nobody logs" } }),
        )
        .await,
    );
    assert_no_errors(
        &graphql(
            "mutation($input: LoginInput!) { login(input: $input) { id } }",
            input,
        )
        .await,
    );
    let cookie = browser.session_cookie().expect("signed in");
    let created = graphql(
        "mutation { createApiToken(name: \"a token nobody logs\") { token } }",
        json!({}),
    )
    .await;
    let token = created["data"]["createApiToken"]["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let stored = sha256_hex(&token);
    // Well-formed but unknown (looked up), and malformed (refused by shape).
    let unknown = format!("blogql_{}A", &"nobodyLogsThis".repeat(3)[..42]);
    for bearer in [
        token.as_str(),
        unknown.as_str(),
        "blogql_a-wrong-token-nobody-logs",
    ] {
        reqwest::Client::new()
            .post(server.url("/graphql"))
            .bearer_auth(bearer)
            .json(&json!({ "query": "{ me { id } }" }))
            .send()
            .await
            .unwrap();
    }
    let log = server.log();
    assert!(log.contains("TRACE"), "the log was captured at trace");
    for secret in [
        "trace-secret-password",
        "$argon2id$",
        "a quiet title",
        "a body nobody logs",
        cookie.as_str(),
        token.as_str(),
        stored.as_str(),
        unknown.as_str(),
        "a-wrong-token-nobody-logs",
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_in_the_graphql_shape_however_it_is_sent() {
    let app = TestApp::spawn().await;
    // Chunked: no Content-Length to refuse it by.
    let mut chunked = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        app.address
    );
    for _ in 0..48 {
        chunked.push_str(&format!("10000\r\n{}\r\n", " ".repeat(0x10000)));
    }
    // Declared: refused on its Content-Length, before it is read.
    let declared = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\n\r\n",
        app.address
    );
    for request in [chunked, declared] {
        let answer = raw_exchange(app.address, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"BAD_REQUEST\""), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("cache-control: no-store"),
            "{answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_time_limit_is_503_in_the_graphql_shape() {
    let app = TestApp::spawn_with(&[("BLOGQL_REQUEST_TIMEOUT", "1s")]).await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"query\":",
        app.address
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = stream.read(&mut buffer).await.unwrap();
            answer.extend_from_slice(&buffer[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"}]}") || answer.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "answered after the time limit");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("cache-control: no-store"),
        "{text}"
    );
    assert!(text.contains("\"INTERNAL_SERVER_ERROR\""), "{text}");
    assert!(text.contains("correlationId"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_json_with_a_code_and_no_store() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    let csrf = browser
        .client
        .post(app.graphql_url())
        .header("content-type", "text/plain")
        .body(r#"{"query":"{ me { id } }"}"#)
        .send()
        .await
        .unwrap();
    let get_mutation = browser
        .client
        .get(app.graphql_url())
        .query(&[("query", "mutation { logout }")])
        .send()
        .await
        .unwrap();
    let batch = browser
        .post_json_text(r#"[{"query":"{ me { id } }"}]"#)
        .await;
    let invalid = browser.post_json_text(r#"{"query":"{ nope }"}"#).await;
    let unparsable = browser.post_json_text(r#"{"query":"{"}"#).await;
    let put = browser.client.put(app.graphql_url()).send().await.unwrap();
    assert_eq!(put.headers()["allow"], "GET, POST");
    for (response, code) in [
        (put, "METHOD_NOT_ALLOWED"),
        (csrf, "BAD_REQUEST"),
        (get_mutation, "METHOD_NOT_ALLOWED"),
        (batch, "BAD_REQUEST"),
        (invalid, "GRAPHQL_VALIDATION_FAILED"),
        (unparsable, "GRAPHQL_PARSE_FAILED"),
    ] {
        assert_eq!(response.headers()["cache-control"], "no-store", "{code}");
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(error_code(&body), code, "{body}");
    }
    let page = browser
        .client
        .get(app.graphql_url())
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()["cache-control"], "no-store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_sid_cookie_neither_logs_the_user_out_nor_is_cleared() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let real = alice.session_cookie().expect("signed in");
    // A well-formed ID no session has, as a sibling subdomain could plant.
    let planted = "AAAAAAAAAAAAAAAAAAAAAA";
    for cookie in [
        format!("sid={planted}; sid={real}"),
        format!("sid={real}; sid={planted}"),
    ] {
        let body = app
            .cookie_replay(&cookie)
            .graphql("{ me { username } }", json!({}))
            .await;
        assert_eq!(body["data"]["me"]["username"], "alice", "{cookie}");
    }
    let response = app
        .cookie_replay(&format!("sid={planted}"))
        .send("{ me { username } }", json!({}))
        .await;
    assert!(
        set_cookie(response.headers()).is_none(),
        "an unknown session's cookie is left alone"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["me"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_required_variable_is_an_error_even_in_a_directive() {
    let app = TestApp::spawn().await;
    let body = app
        .browser()
        .graphql(
            "query($show: Boolean!) { me @include(if: $show) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["field"], "show");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_introspection_off_no_error_suggests_field_names() {
    let app = TestApp::spawn_with(&[("BLOGQL_INTROSPECTION", "false")]).await;
    let body = app
        .browser()
        .graphql("{ post { titl } me { usernam } }", json!({}))
        .await;
    assert!(body.get("errors").is_some(), "{body}");
    assert!(!body.to_string().contains("Did you mean"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_with_ports_are_throttled_as_their_address() {
    let app = TestApp::spawn_with(&[("BLOGQL_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    app.browser().register("alice").await;
    let attacker = app.browser_forwarded_for("[2001:db8::1]:443");
    for _ in 0..5 {
        let body = attacker.login("alice", "not the password").await;
        assert_eq!(error_code(&body), "INVALID_CREDENTIALS", "{body}");
    }
    // The same address from another port is the same client: locked.
    let body = app
        .browser_forwarded_for("[2001:db8::1]:8443")
        .login("alice", PASSWORD)
        .await;
    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
    // Everyone else behind the proxy is not.
    assert_no_errors(
        &app.browser_forwarded_for("203.0.113.9:5555")
            .login("alice", PASSWORD)
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_right_logins_of_one_account_all_succeed() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let logins: Vec<_> = (0..16)
        .map(|_| {
            let request = alice.client.post(app.graphql_url()).json(&json!({
                "query": "mutation($input: LoginInput!) { login(input: $input) { username } }",
                "variables": { "input": { "username": "alice", "password": PASSWORD } },
            }));
            tokio::spawn(
                async move { request.send().await.unwrap().json::<Value>().await.unwrap() },
            )
        })
        .collect();
    for login in logins {
        let body = login.await.unwrap();
        assert_eq!(body["data"]["login"]["username"], "alice", "{body}");
    }
    if !app.on_redis() {
        let in_progress = app
            .sql_count(
                "SELECT CAST(COALESCE(SUM(in_progress), 0) AS BIGINT) AS n FROM login_failures",
            )
            .await;
        assert_eq!(in_progress, 0, "every slot was given back");
    }
}
