//! Live updates at `/graphql/ws`, as Apollo Client's and urql's
//! `graphql-ws` link speaks to them: `postCreated` from any instance,
//! `sessionEnded` by every path and then 4401, the protocol's close codes,
//! the `Origin` rule, and the bounds a hostile client meets.

use std::time::Duration;

use serde_json::json;

use crate::support::{Browser, PASSWORD, Received, Store, TestApp, assert_no_errors, error_code};

const POST_CREATED: &str = "subscription { postCreated { id title author { username } } }";
const SESSION_ENDED: &str = "subscription { sessionEnded }";

/// A browser signed in as a new user `username`.
async fn signed_in(app: &TestApp, username: &str) -> Browser {
    let browser = app.browser();
    browser.register(username).await;
    browser
}

/// `browser`'s socket on `app`, subscribed to `sessionEnded` as "end".
async fn watching_its_session(app: &TestApp, browser: &Browser) -> crate::support::LiveClient {
    let mut socket = app.subscriber(browser).await;
    socket.subscribe("end", SESSION_ENDED).await;
    socket
}

/// Expects `sessionEnded` with `reason`, its `complete`, then close 4401.
async fn expect_session_ended(socket: &mut crate::support::LiveClient, reason: &str) {
    let data = socket.next_data("end").await;
    assert_eq!(data["sessionEnded"], reason, "{data}");
    assert_eq!(socket.closed().await, 4401);
}

store_tests! {
    async fn every_subscriber_receives_each_new_post_once(store) {
        let app = store.spawn().await;
        let alice = signed_in(&app, "alice").await;
        let mut sockets = Vec::new();
        for viewer in [app.browser(), app.browser()] {
            let mut socket = app.subscriber(&viewer).await;
            socket.subscribe("p", POST_CREATED).await;
            sockets.push(socket);
        }
        // Subscribed before the posts are made: give the server a moment
        // to start the operations it was sent.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let first = alice.create_post("first", "body").await;
        let second = alice.create_post("second", "body").await;
        for socket in &mut sockets {
            for (id, title) in [(&first, "first"), (&second, "second")] {
                let data = socket.next_data("p").await;
                assert_eq!(data["postCreated"]["id"], id.as_str());
                assert_eq!(data["postCreated"]["title"], title);
                assert_eq!(data["postCreated"]["author"]["username"], "alice");
            }
            assert!(
                socket.receive_within(Duration::from_millis(300)).await.is_none(),
                "each post once"
            );
        }
    }

    async fn session_ended_fires_once_for_each_way_a_session_ends_then_closes_4401(store) {
        let app = store.spawn().await;
        // Logged out.
        let alice = signed_in(&app, "alice").await;
        let mut socket = watching_its_session(&app, &alice).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_no_errors(&alice.graphql("mutation { logout }", json!({})).await);
        expect_session_ended(&mut socket, "LOGGED_OUT").await;
        // Revoked from another device, and all others logged out.
        let laptop = app.browser();
        assert_no_errors(&laptop.login("alice", PASSWORD).await);
        let phone = app.browser();
        assert_no_errors(&phone.login("alice", PASSWORD).await);
        let mut on_laptop = watching_its_session(&app, &laptop).await;
        let mut on_phone = watching_its_session(&app, &phone).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let listed = phone.graphql("{ sessions { id current } }", json!({})).await;
        let laptop_handle = listed["data"]["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["current"] == false)
            .map(|s| s["id"].clone())
            .unwrap();
        let revoked = phone
            .graphql("mutation($id: ID!) { revokeSession(id: $id) }", json!({"id": laptop_handle}))
            .await;
        assert_eq!(revoked["data"]["revokeSession"], true, "{revoked}");
        expect_session_ended(&mut on_laptop, "REVOKED").await;
        // The phone's own session was not the one revoked.
        assert!(on_phone.receive_within(Duration::from_millis(300)).await.is_none());
        // A password change ends the others; the changing one goes on
        // under a new ID, and its socket with it.
        let desktop = app.browser();
        assert_no_errors(&desktop.login("alice", PASSWORD).await);
        let mut on_desktop = watching_its_session(&app, &desktop).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let changed = phone
            .graphql(
                "mutation($input: ChangePasswordInput!) { changePassword(input: $input) }",
                json!({"input": {"currentPassword": PASSWORD, "newPassword": "a new long password"}}),
            )
            .await;
        assert_no_errors(&changed);
        expect_session_ended(&mut on_desktop, "PASSWORD_CHANGED").await;
        assert!(on_phone.receive_within(Duration::from_millis(300)).await.is_none());
        // ...and after the renewal, the phone's socket still hears its end.
        assert_no_errors(&phone.graphql("mutation { logout }", json!({})).await);
        expect_session_ended(&mut on_phone, "LOGGED_OUT").await;
    }

    async fn a_role_change_ends_the_targets_socket_with_role_changed(store) {
        let app = store.spawn().await;
        let admin = app.admin("root").await;
        let bob = signed_in(&app, "bob").await;
        let bob_id = bob.graphql("{ me { id } }", json!({})).await["data"]["me"]["id"].clone();
        let mut socket = watching_its_session(&app, &bob).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let promoted = admin
            .graphql(
                "mutation($id: ID!) { setUserRole(userId: $id, role: ADMIN) { role } }",
                json!({"id": bob_id}),
            )
            .await;
        assert_no_errors(&promoted);
        expect_session_ended(&mut socket, "ROLE_CHANGED").await;
    }

    async fn an_open_socket_does_not_keep_its_session_alive(store) {
        let app = store
            .spawn_with(&[("BLOGQL_SESSION_IDLE_TIMEOUT", "2s")])
            .await;
        let alice = signed_in(&app, "alice").await;
        let mut socket = watching_its_session(&app, &alice).await;
        let started = std::time::Instant::now();
        expect_session_ended(&mut socket, "EXPIRED").await;
        assert!(started.elapsed() >= Duration::from_millis(1500), "not before its time");
        assert_eq!(alice.me().await, None);
    }

    async fn a_socket_outlives_a_cut_bus_and_misses_nothing(store) {
        if store == Store::Sql {
            // On SQLite the bus is in-process: there is nothing to cut.
            require!(Postgres);
        }
        let app = store.spawn().await;
        let alice = signed_in(&app, "alice").await;
        let mut socket = watching_its_session(&app, &alice).await;
        socket.subscribe("p", POST_CREATED).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(app.cut_event_bus().await, 1);
        // Made while the bus is down or reconnecting: caught up.
        let during = alice.create_post("during the cut", "body").await;
        let data = socket.next_data("p").await;
        assert_eq!(data["postCreated"]["id"], during.as_str());
        let after = alice.create_post("after the cut", "body").await;
        let data = socket.next_data("p").await;
        assert_eq!(data["postCreated"]["id"], after.as_str());
        // Its session's end is still heard.
        assert_no_errors(&alice.graphql("mutation { logout }", json!({})).await);
        expect_session_ended(&mut socket, "LOGGED_OUT").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_and_session_ends_cross_instances() {
    require!(Postgres);
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(a.database.clone(), &[]).await;
    let alice = signed_in(&a, "alice").await;
    let mut on_b = b.subscriber(&alice).await;
    on_b.subscribe("p", POST_CREATED).await;
    on_b.subscribe("end", SESSION_ENDED).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = alice.create_post("through A", "body").await;
    let data = on_b.next_data("p").await;
    assert_eq!(data["postCreated"]["id"], id.as_str());
    assert_eq!(data["postCreated"]["author"]["username"], "alice");
    assert_no_errors(&alice.graphql("mutation { logout }", json!({})).await);
    expect_session_ended(&mut on_b, "LOGGED_OUT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ended_is_for_cookie_sessions_only() {
    let app = TestApp::spawn().await;
    // Anonymous: refused for that operation, the socket stays.
    let mut anonymous = app.subscriber(&app.browser()).await;
    anonymous.subscribe("end", SESSION_ENDED).await;
    let refused = anonymous.message().await;
    assert_eq!(refused["id"], "end");
    let errors = match refused["type"].as_str() {
        Some("next") => refused["payload"].clone(),
        _ => json!({"errors": refused["payload"]}),
    };
    assert_eq!(error_code(&errors), "UNAUTHENTICATED", "{refused}");
    anonymous.subscribe("p", POST_CREATED).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let alice = signed_in(&app, "alice").await;
    alice.create_post("still served", "b").await;
    assert_eq!(
        anonymous.next_data("p").await["postCreated"]["title"],
        "still served"
    );
    // An API token (in connection_init, as graphql-ws clients send it):
    // signed in, but no cookie session to watch.
    let token = alice.create_token("cli").await;
    let mut by_token = app.open_socket(&app.browser()).await;
    by_token
        .init(json!({"authorization": format!("Bearer {token}")}))
        .await;
    by_token.subscribe("end", SESSION_ENDED).await;
    let refused = by_token.message().await;
    let errors = match refused["type"].as_str() {
        Some("next") => refused["payload"].clone(),
        _ => json!({"errors": refused["payload"]}),
    };
    assert_eq!(error_code(&errors), "FORBIDDEN", "{refused}");
    // A token that does not authenticate refuses the socket.
    let mut forged = app.open_socket(&app.browser()).await;
    forged
        .send(json!({"type": "connection_init", "payload": {"authorization": "Bearer blogql_forged"}}))
        .await;
    assert_eq!(forged.closed().await, 4403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_sites_own_pages_and_listed_origins_may_open_a_socket() {
    let app = TestApp::spawn_with(&[("BLOGQL_CORS_ORIGINS", "https://app.example")]).await;
    let alice = signed_in(&app, "alice").await;
    let cookie = format!("sid={}", alice.session_cookie().unwrap());
    for (origin, allowed) in [
        (Some("http://127.0.0.1:8000"), true),
        (Some("https://app.example"), true),
        (None, true),
        (Some("https://evil.example"), false),
        (Some("http://127.0.0.1:8001"), false),
        (Some("null"), false),
    ] {
        let upgraded = app.upgrade(Some(&cookie), origin, &[]).await;
        match (upgraded, allowed) {
            (Ok(_), true) => {}
            (Err(status), false) => assert_eq!(status, 403, "{origin:?}"),
            (upgraded, _) => panic!("{origin:?}: {:?}", upgraded.err()),
        }
    }
    // Without the subprotocol: not a GraphQL client.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            app.ws_url(),
        )
        .unwrap();
    request.headers_mut().remove("sec-websocket-protocol");
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_close_with_the_contracts_codes() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    // Not JSON, an unknown type, a binary frame: 4400.
    for bad in [
        "not json",
        r#"{"type":"hello"}"#,
        r#"{"type":"subscribe","id":"1"}"#,
    ] {
        let mut socket = app.subscriber(&browser).await;
        socket.send_text(bad.to_owned()).await;
        assert_eq!(socket.closed().await, 4400, "{bad}");
    }
    // Subscribing before connection_init: 4401.
    let mut early = app.open_socket(&browser).await;
    early.subscribe("1", POST_CREATED).await;
    assert_eq!(early.closed().await, 4401);
    // A second connection_init: 4429.
    let mut twice = app.subscriber(&browser).await;
    twice.send(json!({"type": "connection_init"})).await;
    assert_eq!(twice.closed().await, 4429);
    // The same id twice while the first runs: 4409.
    let mut duplicate = app.subscriber(&browser).await;
    duplicate.subscribe("1", POST_CREATED).await;
    duplicate.subscribe("1", POST_CREATED).await;
    assert_eq!(duplicate.closed().await, 4409);
    // Ping is answered with pong, before and after connection_init.
    let mut pinging = app.open_socket(&browser).await;
    pinging.send(json!({"type": "ping"})).await;
    assert_eq!(pinging.message().await["type"], "pong");
    // Queries and mutations belong on /graphql; a bad document is an
    // `error` for that id, and the socket stays.
    pinging.init(json!({})).await;
    for (query, code) in [
        ("{ me { username } }", "BAD_REQUEST"),
        (
            "subscription { postCreated { nope } }",
            "GRAPHQL_VALIDATION_FAILED",
        ),
        ("subscription {", "GRAPHQL_PARSE_FAILED"),
        // It runs again for every new post: a page of bodies is too costly.
        (
            "subscription { postCreated { author { posts(first: 20) { edges { node { body } } } } } }",
            "GRAPHQL_VALIDATION_FAILED",
        ),
    ] {
        pinging.subscribe("q", query).await;
        let refused = pinging.message().await;
        assert_eq!(refused["type"], "error", "{refused}");
        assert_eq!(
            refused["payload"][0]["extensions"]["code"], code,
            "{query}: {refused}"
        );
    }
    // Completing a subscription stops it; the id may then be used again.
    pinging.subscribe("p", POST_CREATED).await;
    pinging.send(json!({"type": "complete", "id": "p"})).await;
    pinging.subscribe("p", POST_CREATED).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    signed_in(&app, "alice")
        .await
        .create_post("once", "b")
        .await;
    assert_eq!(pinging.next_data("p").await["postCreated"]["title"], "once");
    assert!(
        pinging
            .receive_within(Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_without_connection_init_is_closed_4408_after_ten_seconds() {
    let app = TestApp::spawn().await;
    let mut idle = app.open_socket(&app.browser()).await;
    let started = std::time::Instant::now();
    match idle.receive_within(Duration::from_secs(15)).await {
        Some(Received::Closed(code, reason)) => {
            assert_eq!(
                (code, reason.as_str()),
                (4408, "Connection initialisation timeout")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_meet_the_bounds() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    // Subscriptions per socket: the 11th is refused, the socket stays.
    let mut greedy = app.subscriber(&browser).await;
    for n in 0..10 {
        greedy.subscribe(&n.to_string(), POST_CREATED).await;
    }
    greedy.subscribe("one too many", POST_CREATED).await;
    let refused = greedy.message().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "one too many");
    // A flood of messages: closed (1008), the bucket refilling at 20/s.
    let mut flooding = app.subscriber(&browser).await;
    for _ in 0..200 {
        if !flooding.send_unless_closed(json!({"type": "pong"})).await {
            break;
        }
    }
    assert_eq!(flooding.closed().await, 1008);
    // A message over the size limit ends the socket.
    let mut huge = app.subscriber(&browser).await;
    huge.send_text(format!(
        r#"{{"type":"subscribe","id":"1","payload":{{"query":"{}"}}}}"#,
        " ".repeat(1024 * 1024)
    ))
    .await;
    assert!(matches!(
        huge.receive().await,
        Received::Closed(..) | Received::Dropped
    ));
    // Sockets per client address: 64, then 429.
    let mut open = Vec::new();
    for _ in 0..64 - 1 {
        open.push(app.upgrade(None, None, &[]).await.expect("under the cap"));
    }
    drop(greedy);
    tokio::time::sleep(Duration::from_millis(200)).await;
    open.push(app.upgrade(None, None, &[]).await.expect("room again"));
    assert_eq!(app.upgrade(None, None, &[]).await.err(), Some(429));
    // The server is well.
    assert_no_errors(
        &browser
            .graphql("{ posts(first: 1) { edges { cursor } } }", json!({}))
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_is_dropped_not_buffered() {
    let app = TestApp::spawn().await;
    let alice = signed_in(&app, "alice").await;
    let mut stalled = app.subscriber(&app.browser()).await;
    stalled
        .subscribe("p", "subscription { postCreated { body } }")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 500 posts of 50,000 characters: 25 MB that the reader never takes,
    // more than the sockets' buffers hold.
    let body = "x".repeat(50_000);
    for n in 0..500 {
        alice.create_post(&format!("post {n}"), &body).await;
    }
    // Now it reads: what was buffered, then the end, well before all 500.
    let mut received = 0;
    loop {
        match stalled.receive_within(Duration::from_secs(30)).await {
            Some(Received::Message(message)) if message["type"] == "next" => received += 1,
            // Never `complete`: the client would not subscribe again.
            Some(Received::Message(other)) => panic!("{other}"),
            // Closed for falling behind, or dropped for not reading.
            Some(Received::Closed(code, _)) => {
                assert_eq!(code, 1013);
                break;
            }
            Some(Received::Dropped) => break,
            None => panic!("neither closed nor dropped"),
        }
    }
    assert!(received < 500, "all {received} were kept for it");
    let body = alice.graphql("{ me { username } }", json!({})).await;
    assert_eq!(body["data"]["me"]["username"], "alice");
}

/// A subscription that costs a statement of its own for every new post
/// (its author's latest posts), run by itself.
const WITH_LATEST: &str = "subscription($n: Int) { postCreated { id author { posts(first: $n) { edges { node { title } } } } } }";

/// Subscribes `socket` to [`WITH_LATEST`] under `id`, with `$n` = `n`.
async fn subscribe_with_latest(socket: &mut crate::support::LiveClient, id: &str, n: i64) {
    socket
        .send(json!({"type": "subscribe", "id": id, "payload": {"query": WITH_LATEST, "variables": {"n": n}}}))
        .await;
}

/// The next result of each of `ids` on `socket` (in whatever order they
/// come): the titles of the author's latest posts, in the order of `ids`.
async fn latest_of(socket: &mut crate::support::LiveClient, ids: &[&str]) -> Vec<Vec<String>> {
    let mut results = vec![None; ids.len()];
    while results.iter().any(Option::is_none) {
        let message = socket.message().await;
        assert_eq!(message["type"], "next", "{message}");
        let at = ids
            .iter()
            .position(|id| message["id"] == *id)
            .unwrap_or_else(|| panic!("only {ids:?}: {message}"));
        assert!(results[at].is_none(), "one result each: {message}");
        results[at] = Some(latest_titles(&message["payload"]["data"]));
    }
    results.into_iter().flatten().collect()
}

/// The titles of the author's latest posts, as `next_data` carries them.
fn latest_titles(data: &serde_json::Value) -> Vec<String> {
    data["postCreated"]["author"]["posts"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("a page of posts: {data}"))
        .iter()
        .map(|edge| {
            edge["node"]["title"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_holding_the_same_subscription_share_one_run_each_under_its_own_id() {
    let app = TestApp::spawn().await;
    let alice = signed_in(&app, "alice").await;
    // What a post costs with one subscriber...
    let mut first = app.subscriber(&app.browser()).await;
    subscribe_with_latest(&mut first, "mine", 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = app.statements_executed();
    let id = alice.create_post("one", "b").await;
    assert_eq!(
        first.next_data("mine").await["postCreated"]["id"],
        id.as_str()
    );
    let alone = app.statements_executed() - before;
    // ...and with twelve more sockets, each under an id of its own.
    let mut others = Vec::new();
    for n in 0..12 {
        let mut socket = app.subscriber(&app.browser()).await;
        subscribe_with_latest(&mut socket, &format!("s{n}"), 2).await;
        others.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = app.statements_executed();
    let id = alice.create_post("two", "b").await;
    for (n, socket) in others.iter_mut().enumerate() {
        let data = socket.next_data(&format!("s{n}")).await;
        assert_eq!(data["postCreated"]["id"], id.as_str());
        assert_eq!(latest_titles(&data), ["two", "one"]);
    }
    assert_eq!(
        first.next_data("mine").await["postCreated"]["id"],
        id.as_str()
    );
    let shared = app.statements_executed() - before;
    // Run once per socket, it would cost twelve statements more.
    assert!(
        shared <= alone + 1,
        "{shared} statements for 13 sockets against {alone} for one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_subscription_answers_by_its_variables_and_outlives_a_socket_that_leaves() {
    let app = TestApp::spawn().await;
    let alice = signed_in(&app, "alice").await;
    alice.create_post("older", "b").await;
    let mut one = app.subscriber(&app.browser()).await;
    subscribe_with_latest(&mut one, "a", 1).await;
    let mut other = app.subscriber(&app.browser()).await;
    subscribe_with_latest(&mut other, "a", 2).await;
    subscribe_with_latest(&mut other, "b", 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    alice.create_post("newer", "b").await;
    assert_eq!(latest_of(&mut one, &["a"]).await, [vec!["newer"]]);
    assert_eq!(
        latest_of(&mut other, &["a", "b"]).await,
        [vec!["newer", "older"], vec!["newer"]]
    );
    // The first socket goes; the other's subscription of the same
    // operation goes on, and a new socket joins it.
    one.send(json!({"type": "complete", "id": "a"})).await;
    drop(one);
    let mut joining = app.subscriber(&app.browser()).await;
    subscribe_with_latest(&mut joining, "c", 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    alice.create_post("newest", "b").await;
    assert_eq!(
        latest_of(&mut other, &["a", "b"]).await,
        [vec!["newest", "newer"], vec!["newest"]]
    );
    assert_eq!(latest_of(&mut joining, &["c"]).await, [vec!["newest"]]);
    // Every socket left: a new one starts the operation afresh.
    drop((other, joining));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut last = app.subscriber(&app.browser()).await;
    subscribe_with_latest(&mut last, "d", 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    alice.create_post("last", "b").await;
    assert_eq!(latest_of(&mut last, &["d"]).await, [vec!["last"]]);
}

/// What introspection says of every type's fields.
const TYPES: &str = "{ __schema { types { name fields { name \
    args { type { kind } defaultValue } \
    type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }";

/// Every field reachable from `name`, `depth` objects deep, as a selection
/// set: fields with a required argument, and objects too deep to select
/// anything in, are left out.
fn every_field(types: &serde_json::Value, name: &str, depth: usize) -> String {
    let Some(fields) = types
        .as_array()
        .and_then(|types| types.iter().find(|t| t["name"] == name))
        .and_then(|t| t["fields"].as_array())
    else {
        return String::new();
    };
    let mut selection = Vec::new();
    for field in fields {
        let required = field["args"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|arg| arg["type"]["kind"] == "NON_NULL" && arg["defaultValue"].is_null());
        if required {
            continue;
        }
        let mut ty = &field["type"];
        while ty["name"].is_null() {
            ty = &ty["ofType"];
        }
        let field_name = field["name"].as_str().unwrap_or_default();
        if ty["kind"] != "OBJECT" {
            selection.push(field_name.to_owned());
        } else if depth > 0 {
            let inner = every_field(types, ty["name"].as_str().unwrap_or_default(), depth - 1);
            if !inner.is_empty() {
                selection.push(format!("{field_name} {{ {inner} }}"));
            }
        }
    }
    selection.join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_a_shared_post_shows_is_the_same_for_every_caller() {
    // One run serves every socket holding `postCreated`, whoever opened
    // it: that is sound only while nothing under `Post` depends on who
    // asks. Every field introspection lists now, asked by the anonymous, a
    // user and an admin, over HTTP and over a socket.
    let app = TestApp::spawn().await;
    let admin = app.admin("root").await;
    let alice = signed_in(&app, "alice").await;
    let anonymous = app.browser();
    let types = anonymous.graphql(TYPES, json!({})).await;
    assert_no_errors(&types);
    let types = &types["data"]["__schema"]["types"];
    // A socket's complexity limit allows the author's fields; a query's,
    // their posts too.
    let on_sockets = every_field(types, "Post", 3);
    assert!(on_sockets.contains("author {"), "{on_sockets}");
    let over_http = every_field(types, "Post", 4);
    assert!(over_http.contains("posts {"), "{over_http}");
    let mut sockets = Vec::new();
    for caller in [&anonymous, &alice, &admin] {
        let mut socket = app.subscriber(caller).await;
        socket
            .subscribe(
                "all",
                &format!("subscription {{ postCreated {{ {on_sockets} }} }}"),
            )
            .await;
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = alice.create_post("seen alike", "b").await;
    for selection in [&over_http, &on_sockets] {
        let query = format!("query($id: ID!) {{ post(id: $id) {{ {selection} }} }}");
        let seen = anonymous.graphql(&query, json!({"id": id})).await;
        assert_no_errors(&seen);
        for caller in [&alice, &admin] {
            assert_eq!(caller.graphql(&query, json!({"id": id})).await, seen);
        }
        if selection == &on_sockets {
            for socket in &mut sockets {
                let data = socket.next_data("all").await;
                assert_eq!(data["postCreated"], seen["data"]["post"]);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sockets_with_1001() {
    let app = TestApp::spawn().await;
    let mut socket = app.subscriber(&app.browser()).await;
    socket.subscribe("p", POST_CREATED).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(app.stop());
    assert_eq!(socket.closed().await, 1001);
    stopping.await.unwrap();
}
