//! What the operator sees: the access log (what it says and never says,
//! that it never holds a request up, that it can be turned off) and
//! `GET /metrics` on its own listener, moving as the server works.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const POST_CREATED: &str = "subscription { postCreated { id title } }";

/// The `blogql::access` lines of a JSON log.
fn access_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|line| line.contains("blogql::access"))
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect()
}

/// The one access line for which `matches` holds.
fn line_where<'a>(lines: &'a [Value], what: &str, matches: impl Fn(&Value) -> bool) -> &'a Value {
    let found: Vec<&Value> = lines.iter().filter(|line| matches(line)).collect();
    assert_eq!(found.len(), 1, "one line for {what}: {lines:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_says_how_each_caller_was_identified_never_who() {
    let database = TestDatabase::new().await;
    let server = Process::start(&database, &[("BLOGQL_LOG_FORMAT", "json")], &[]).await;
    let alice = server.browser();
    alice.register("alicelogged").await;
    let body = alice
        .graphql("query WhoAmI { me { username } }", json!({}))
        .await;
    assert_eq!(body["data"]["me"]["username"], "alicelogged");
    let token = alice.create_token("ci").await;
    let script = reqwest::Client::new();
    let by_token = |token: String| {
        script
            .post(server.url("/graphql"))
            .bearer_auth(token)
            .json(&json!({ "query": "query ByToken { me { username } }" }))
            .send()
    };
    assert_eq!(by_token(token.clone()).await.unwrap().status(), 200);
    assert_eq!(by_token("bq_wrong".into()).await.unwrap().status(), 401);
    assert!(
        reqwest::get(server.url("/healthz"))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let cookie = alice.session_cookie().expect("signed in");
    let log = server.log();
    let lines = access_lines(&log);

    let who = line_where(&lines, "WhoAmI", |line| line["operation_name"] == "WhoAmI");
    assert_eq!(who["method"], "POST", "{who}");
    assert_eq!(who["path"], "/graphql", "{who}");
    assert_eq!(who["status"], 200, "{who}");
    assert_eq!(who["operation"], "query", "{who}");
    assert_eq!(who["outcome"], "OK", "{who}");
    assert_eq!(who["caller"], "cookie", "{who}");
    assert_eq!(who["level"], "INFO", "{who}");
    assert!(
        who["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{who}"
    );
    let id = who["correlation_id"].as_str().unwrap_or_default();
    assert!(
        id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{who}"
    );
    let register = line_where(&lines, "register", |line| {
        line["operation"] == "mutation" && line["caller"] == "anonymous"
    });
    assert_eq!(register["outcome"], "OK", "{register}");
    let by_token = line_where(&lines, "the token's query", |line| {
        line["operation_name"] == "ByToken" && line["status"] == 200
    });
    assert_eq!(by_token["caller"], "token", "{by_token}");
    let refused = line_where(&lines, "the wrong token", |line| line["status"] == 401);
    assert_eq!(refused["caller"], "token", "{refused}");
    assert_eq!(refused["outcome"], "UNAUTHENTICATED", "{refused}");
    let health = line_where(&lines, "/healthz", |line| line["path"] == "/healthz");
    assert!(health.get("operation").is_none(), "not GraphQL: {health}");
    let ids: std::collections::HashSet<&str> = lines
        .iter()
        .map(|line| line["correlation_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids.len(), lines.len(), "one correlation ID per request");

    // Never who: no user, no password, no cookie, no token, no address.
    for secret in [
        "alicelogged",
        PASSWORD,
        cookie.as_str(),
        token.as_str(),
        "bq_wrong",
    ] {
        assert!(!log.contains(secret), "{secret:?} in the log: {log}");
    }
    for line in &lines {
        assert!(
            !line.to_string().contains("127.0.0.1"),
            "an address: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blogql_access_log_false_writes_no_request_lines() {
    let database = TestDatabase::new().await;
    for (setting, lines_expected) in [("true", true), ("false", false)] {
        let server = Process::start(&database, &[("BLOGQL_ACCESS_LOG", setting)], &[]).await;
        server.browser().me().await;
        let log = server.log();
        assert!(log.contains("serving GraphQL"), "{log}");
        assert_eq!(
            log.contains("blogql::access"),
            lines_expected,
            "BLOGQL_ACCESS_LOG={setting}: {log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_errors_correlation_id_leads_to_its_request_line() {
    // Sessions in the database, whose writes the test refuses.
    let database = TestDatabase::for_store(Store::Sql).await;
    let server = Process::start(&database, &[("BLOGQL_LOG_FORMAT", "json")], &[]).await;
    let peek = TestApp::spawn_on(database.clone(), &[]).await;
    peek.refuse_writes("sessions").await;
    let body = server.browser().register_with("carol", PASSWORD).await;
    assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    let id = body["errors"][0]["extensions"]["correlationId"]
        .as_str()
        .expect("a correlation ID")
        .to_owned();
    let log = server.log();
    let error = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["level"] == "ERROR" && line["correlation_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no error logged under {id}: {log}"));
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("refused by the test")),
        "the cause is in the log: {error}"
    );
    let lines = access_lines(&log);
    let request = line_where(&lines, "the failed request", |line| {
        line["correlation_id"] == id.as_str()
    });
    assert_eq!(request["outcome"], "INTERNAL_SERVER_ERROR", "{request}");
    assert_eq!(request["operation"], "mutation", "{request}");
    peek.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_nobody_reads_holds_no_request_up_and_its_dropped_lines_are_counted() {
    // Once the unread pipe (64 KiB) and the writer's backlog (8,192 lines)
    // are full, each further line is dropped: a writer that blocked would
    // hold every request up from there on, and these would time out.
    const REQUESTS: usize = 12_000;
    const CLIENTS: usize = 16;
    let database = TestDatabase::new().await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let server =
        Process::start_with_logs_unread(&database, &[("BLOGQL_METRICS_BIND", &metrics)]).await;
    let url = server.url("/healthz");
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let url = url.clone();
        clients.spawn(async move {
            let client = reqwest::Client::new();
            for _ in 0..REQUESTS / CLIENTS {
                let answer = client
                    .get(&url)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .expect("answered though nobody reads the log");
                assert!(answer.status().is_success());
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.expect("a client");
    }
    let scrape = Scrape::at(metrics.parse().unwrap()).await;
    let dropped = scrape.get("blogql_log_lines_dropped_total");
    assert!(
        dropped > 0.0 && dropped < REQUESTS as f64,
        "dropped {dropped} of {REQUESTS} lines"
    );
}

/// Waits (at most 10 s) until `series` reads `value`.
async fn until(app: &TestApp, series: &str, value: f64) {
    let mut last = f64::NAN;
    for _ in 0..200 {
        last = app.scrape().await.get(series);
        if last == value {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series} stayed {last}, never {value}");
}

store_tests! {
    async fn metrics_move_with_a_login_flood_a_revocation_and_a_subscription(store) {
        let app = store.spawn_with(&[("BLOGQL_METRICS_BIND", "127.0.0.1:0")]).await;
        let public = reqwest::get(app.url("/metrics")).await.unwrap();
        assert_eq!(public.status(), 404, "never on the public port");
        let before = app.scrape().await;
        assert_eq!(before.get("blogql_build_info{version=\"0.1.0\"}"), 1.0);
        assert_eq!(before.get("blogql_event_bus_healthy"), 1.0);
        assert!(before.get("blogql_db_pool_max_connections") >= 1.0);

        let alice = app.browser();
        alice.register("alice").await;
        // A flood of wrong passwords from one address: failed, then throttled.
        let attacker = app.browser_from(40);
        let (mut failed, mut throttled) = (0.0, 0.0);
        for _ in 0..12 {
            let body = attacker.login("alice", "not the password").await;
            match error_code(&body) {
                "INVALID_CREDENTIALS" => failed += 1.0,
                "RATE_LIMITED" => throttled += 1.0,
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert!(failed >= 5.0 && throttled >= 1.0, "{failed} failed, {throttled} throttled");
        // A second device signs in; alice revokes it.
        let laptop = app.browser_from(41);
        assert_no_errors(&laptop.login("alice", PASSWORD).await);
        let handle = alice
            .sessions()
            .await
            .into_iter()
            .find(|session| session["ipAddress"] == "127.0.0.41")
            .expect("the laptop's session")["id"]
            .clone();
        let revoke = "mutation($id: ID!) { revokeSession(id: $id) }";
        let body = alice.graphql(revoke, json!({ "id": handle })).await;
        assert_eq!(body["data"]["revokeSession"], true, "{body}");

        let after = app.scrape().await;
        let moved = |series: &str| after.get(series) - before.get(series);
        assert_eq!(moved("blogql_logins_total{outcome=\"failed\"}"), failed);
        assert_eq!(moved("blogql_logins_total{outcome=\"throttled\"}"), throttled);
        assert_eq!(moved("blogql_logins_total{outcome=\"succeeded\"}"), 1.0);
        assert_eq!(
            moved("blogql_graphql_requests_total{operation=\"mutation\",outcome=\"INVALID_CREDENTIALS\"}"),
            failed
        );
        assert_eq!(moved("blogql_graphql_errors_total{code=\"RATE_LIMITED\"}"), throttled);
        // Register, then the laptop's login.
        assert_eq!(moved("blogql_sessions_started_total"), 2.0);
        assert_eq!(moved("blogql_sessions_ended_total{reason=\"REVOKED\"}"), 1.0);
        assert_eq!(moved("blogql_sessions_ended_total{reason=\"LOGGED_OUT\"}"), 0.0);
        // Every mutation above took a measured time (register, 12 logins,
        // the laptop's, the revocation).
        assert!(
            moved("blogql_graphql_request_duration_seconds_count{operation=\"mutation\"}") >= 15.0
        );

        // A subscription counts while it runs; its socket while it is open.
        assert_eq!(after.get("blogql_websockets_open"), 0.0);
        let mut socket = app.subscriber(&alice).await;
        socket.subscribe("p", POST_CREATED).await;
        until(&app, "blogql_subscriptions_active", 1.0).await;
        assert_eq!(app.scrape().await.get("blogql_websockets_open"), 1.0);
        // A new post reaches it: one fan-out timed, from the first scrape on.
        assert_eq!(after.get("blogql_subscription_fanout_seconds_count"), 0.0);
        let id = alice.create_post("timed", "b").await;
        assert_eq!(socket.next_data("p").await["postCreated"]["id"], id.as_str());
        until(&app, "blogql_subscription_fanout_seconds_count", 1.0).await;
        socket.send(json!({ "type": "complete", "id": "p" })).await;
        until(&app, "blogql_subscriptions_active", 0.0).await;
        assert_eq!(app.scrape().await.get("blogql_websockets_open"), 1.0);
        drop(socket);
        until(&app, "blogql_websockets_open", 0.0).await;

        if store == Store::Sql {
            // A store that fails a request is counted against it.
            app.refuse_writes("sessions").await;
            let body = app.browser().login("alice", PASSWORD).await;
            assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
            let failed = app.scrape().await;
            assert_eq!(
                failed.get("blogql_store_errors_total{store=\"database\"}")
                    - before.get("blogql_store_errors_total{store=\"database\"}"),
                1.0
            );
        }
    }
}
