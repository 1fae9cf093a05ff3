//! The Redis session store: its keys, and what happens when Redis fails.
//! Runs where `BLOGQL_TEST_REDIS_URL` names a Redis; the failure tests start
//! a redis-server of their own on a free port.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase, assert_no_errors, error_code};

/// A redis-server of this test's own, stopped when dropped.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            port,
            child: Some(child),
        }
    }

    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Holds every write (scripts included) for `millis`, while reads go
    /// on: a Redis that answers who is signed in but cannot end a session.
    fn pause_writes(&self, millis: u64) {
        let mut conn = redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("connect to the test's Redis");
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(millis)
            .arg("WRITE")
            .query(&mut conn)
            .expect("CLIENT PAUSE");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the suite runs its sessions in Redis.
fn on_redis() -> bool {
    std::env::var("BLOGQL_TEST_REDIS_URL").is_ok_and(|url| !url.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_is_hashed_prefixed_and_expires() {
    if !on_redis() {
        return;
    }
    let app = TestApp::spawn().await;
    assert_no_errors(&app.register("alice").await);
    let cookie = app.session_cookie().unwrap();
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
    if !on_redis() {
        return;
    }
    let app = TestApp::spawn().await;
    assert_no_errors(&app.register("alice").await);
    let (client, _) = app.new_browser();
    for _ in 0..5 {
        let body = app.login_as(&client, "alice", "not the password").await;
        assert_eq!(error_code(&body), "INVALID_CREDENTIALS", "{body}");
    }
    let body = app
        .login_as(&client, "alice", crate::helpers::PASSWORD)
        .await;
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
async fn a_request_in_flight_never_brings_back_a_revoked_session() {
    // A 10 s idle timeout: the extension is due after a second.
    let app = TestApp::spawn_with(|config| {
        config.session_idle_timeout = Duration::from_secs(10);
    })
    .await;
    assert_no_errors(&app.register("alice").await);
    let (other, _) = app.new_browser();
    assert_no_errors(
        &app.login_as(&other, "alice", crate::helpers::PASSWORD)
            .await,
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The default browser's request extends its session while the other
    // device ends it; whichever lands last, the session stays ended.
    let extend = app.graphql("{ me { username } }", json!({}));
    let end = app.graphql_as(&other, "mutation { logoutOtherSessions }", json!({}));
    let (_, ended) = tokio::join!(extend, end);
    assert_eq!(ended["data"]["logoutOtherSessions"], 1, "{ended}");
    assert_eq!(app.me().await, None);
    assert_eq!(app.stored_session_keys().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_sessions_fail_loudly_reads_go_on_and_it_recovers() {
    let mut redis = OwnRedis::start();
    let database = TestDatabase::new().await;
    let url = redis.url();
    let app = TestApp::spawn_on(database, move |config| {
        config.redis = Some(blogql::config::RedisConfig {
            url,
            key_prefix: "bq".into(),
        });
    })
    .await;
    assert_no_errors(&app.register("alice").await);
    assert_no_errors(&app.create_post("still readable", "b").await);
    let ready = || async {
        app.client
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
    let body = app.graphql("{ me { username } }", json!({})).await;
    assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    assert!(body["errors"][0]["extensions"]["correlationId"].is_string());
    let body = app
        .graphql(
            "mutation { createPost(input: {title: \"t\", body: \"b\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    // The throttle's counts live in Redis too: a login fails closed,
    // whatever its password.
    let (stranger, _) = app.new_browser();
    for password in [crate::helpers::PASSWORD, "not the password"] {
        let body = app.login_as(&stranger, "alice", password).await;
        assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    }
    // Anonymous reads go on.
    let (anonymous, _) = app.new_browser();
    let posts = app
        .graphql_as(
            &anonymous,
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
    let (fresh, _) = app.new_browser();
    assert_no_errors(
        &app.login_as(&fresh, "alice", crate::helpers::PASSWORD)
            .await,
    );
    let body = app
        .graphql_as(&fresh, "{ me { username } }", json!({}))
        .await;
    assert_eq!(body["data"]["me"]["username"], Value::from("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_that_cannot_end_the_sessions_changes_nothing() {
    let redis = OwnRedis::start();
    let database = TestDatabase::new().await;
    let url = redis.url();
    let app = TestApp::spawn_on(database, move |config| {
        config.redis = Some(blogql::config::RedisConfig {
            url,
            key_prefix: "bq".into(),
        });
    })
    .await;
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
