//! The Redis session store: its keys, and what happens when Redis fails.
//! The key tests need `BLOGQL_TEST_REDIS_URL`; the failure tests start a
//! redis-server of their own on a free port. (The rules every store keeps
//! are in sessions.rs and devices.rs, run against each store.)

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    OwnRedis, PASSWORD, Store, TestApp, TestDatabase, assert_no_errors, error_code,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_is_hashed_prefixed_and_expires() {
    require!(Redis);
    let app = Store::Redis.spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let cookie = alice.session_cookie().unwrap();
    let keys: Vec<(String, i64)> = app
        .redis_keys("")
        .into_iter()
        .filter(|(key, _)| !key.contains("}:t:"))
        .collect();
    assert_eq!(keys.len(), 2, "the session and alice's index: {keys:?}");
    for (key, ttl) in keys {
        assert!(!key.contains(&cookie), "{key}");
        assert!(ttl > 0, "{key} has no expiry");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_counts_live_in_redis() {
    require!(Redis);
    let app = Store::Redis.spawn().await;
    app.browser().register("alice").await;
    let client = app.browser();
    for _ in 0..5 {
        let body = client.login("alice", "not the password").await;
        assert_eq!(error_code(&body), "INVALID_CREDENTIALS", "{body}");
    }
    let body = client.login("alice", PASSWORD).await;
    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
    assert_eq!(
        app.sql_count("SELECT COUNT(*) AS n FROM login_failures")
            .await,
        0,
        "nothing counted in the database"
    );
    let keys = app.redis_keys("t:");
    assert_eq!(
        keys.len(),
        3,
        "user, address and registration counts: {keys:?}"
    );
    for (key, ttl) in keys {
        assert!(ttl > 0, "{key} has no expiry");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_sessions_fail_loudly_reads_go_on_and_it_recovers() {
    let mut redis = OwnRedis::start();
    let app = TestApp::spawn_on(TestDatabase::with_redis_at(redis.url()).await, &[]).await;
    let alice = app.browser();
    alice.register("alice").await;
    alice.create_post("still readable", "b").await;
    let ready = || async {
        alice
            .client
            .get(app.url("/readyz"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(ready().await.status(), StatusCode::OK);
    redis.stop();
    let unready = ready().await;
    assert_eq!(unready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(unready.text().await.unwrap().contains("session store"));
    // Signed in: never silently anonymous, never silently signed in.
    let body = alice.graphql("{ me { username } }", json!({})).await;
    assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    assert!(body["errors"][0]["extensions"]["correlationId"].is_string());
    let body = alice.create_post_with("t", "b").await;
    assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    // The throttle's counts live in Redis too: a login fails closed,
    // whatever its password.
    let stranger = app.browser();
    for password in [PASSWORD, "not the password"] {
        let body = stranger.login("alice", password).await;
        assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    }
    // Anonymous reads go on.
    let posts = app
        .browser()
        .graphql(
            "{ posts(first: 5) { edges { node { title } } } }",
            json!({}),
        )
        .await;
    assert_no_errors(&posts);
    assert_eq!(
        posts["data"]["posts"]["edges"][0]["node"]["title"],
        "still readable"
    );
    // Redis returns (empty: it kept nothing): the service recovers by itself.
    let _back = OwnRedis::start_on(redis.port);
    let mut recovered = false;
    for _ in 0..50 {
        if ready().await.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "/readyz never came back");
    let fresh = app.browser();
    assert_no_errors(&fresh.login("alice", PASSWORD).await);
    let body = fresh.graphql("{ me { username } }", json!({})).await;
    assert_eq!(body["data"]["me"]["username"], Value::from("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_that_cannot_end_the_sessions_changes_nothing() {
    let redis = OwnRedis::start();
    let app = TestApp::spawn_on(TestDatabase::with_redis_at(redis.url()).await, &[]).await;
    // The admin's session is read while Redis takes no writes: the role
    // change cannot end bob's sessions.
    let admin = app.admin("root").await;
    let bob_id = app.browser().register("bob").await;
    redis.pause_writes(6_000);
    let body = admin
        .graphql(
            "mutation($id: ID!) { setUserRole(userId: $id, role: ADMIN) { role } }",
            json!({ "id": bob_id }),
        )
        .await;
    assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    let role = app
        .sql_strings("SELECT role AS s FROM users WHERE username = 'bob'")
        .await;
    assert_eq!(role, ["USER"], "no role change whose sessions live on");
}
