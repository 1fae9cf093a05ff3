//! The session cookie: its attributes, fixation, logout, timeouts, restarts
//! and several instances.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, assert_no_errors, error_code, session_cookie, set_cookie};

const ME: &str = "{ me { username } }";

/// Registers `alice` in the default browser; the `Set-Cookie` it answered.
async fn register_cookie(app: &TestApp) -> String {
    let response = app
        .client
        .post(app.graphql_url())
        .json(&json!({ "query": "mutation { register(input: {username: \"alice\", password: \"correct horse battery\"}) { id } }" }))
        .send()
        .await
        .unwrap();
    set_cookie(response.headers()).expect("a sid cookie")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_sid_httponly_lax_and_opaque() {
    let app = TestApp::spawn().await;
    let cookie = register_cookie(&app).await;
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(
            cookie.split("; ").any(|a| a == attribute),
            "{attribute} missing from {cookie}"
        );
    }
    assert!(
        !cookie.contains("Secure"),
        "plain http: no Secure flag: {cookie}"
    );
    let value = app.session_cookie().expect("the browser keeps the cookie");
    assert!(value.len() >= 22, "at least 128 bits: {value}");
    // Nothing but the opaque ID is in the cookie, and the ID is not stored.
    assert!(!value.contains("alice"));
    let stored = app.stored_session_keys().await;
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], value);
    let data = app.stored_session_data().await;
    assert!(!data[0].contains(&value));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_secure_behind_an_https_public_url() {
    let app = TestApp::spawn_with(|config| config.cookie_secure = true).await;
    let cookie = register_cookie(&app).await;
    assert!(cookie.split("; ").any(|a| a == "Secure"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_replaces_the_session_id_so_a_planted_cookie_is_useless() {
    let app = TestApp::spawn().await;
    assert_no_errors(&app.register("alice").await);
    let before_login = app.session_cookie().expect("a session after register");
    // An attacker plants their own (valid) session cookie in the victim's browser...
    let (attacker, attacker_jar) = app.new_browser();
    assert_no_errors(&app.register_as(&attacker, "mallory", PASSWORD).await);
    let planted = session_cookie(&attacker_jar, app.address).expect("mallory's cookie");
    let (victim, victim_jar) = app.new_browser();
    victim_jar.add_cookie_str(
        &format!("sid={planted}; Path=/"),
        &app.graphql_url().parse().unwrap(),
    );
    // ...the victim logs in: they get a new ID, and the planted one is destroyed.
    assert_no_errors(&app.login_as(&victim, "alice", PASSWORD).await);
    let after_login = session_cookie(&victim_jar, app.address).expect("a session after login");
    assert_ne!(after_login, planted);
    let attacker_view = app.graphql_with_cookie(&format!("sid={planted}"), ME).await;
    assert_eq!(
        attacker_view["data"]["me"],
        serde_json::Value::Null,
        "the planted session must not become alice's"
    );
    // A second login in the first browser also gets a fresh ID.
    assert_no_errors(&app.login_as(&app.client, "alice", PASSWORD).await);
    assert_ne!(app.session_cookie().unwrap(), before_login);
    let old = app
        .graphql_with_cookie(&format!("sid={before_login}"), ME)
        .await;
    assert_eq!(old["data"]["me"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_makes_the_old_cookie_anonymous() {
    let app = TestApp::spawn().await;
    assert_no_errors(&app.register("alice").await);
    let cookie = format!("sid={}", app.session_cookie().unwrap());
    let response = app
        .client
        .post(app.graphql_url())
        .json(&json!({ "query": "mutation { logout }" }))
        .send()
        .await
        .unwrap();
    let expired = set_cookie(response.headers()).expect("logout expires the cookie");
    assert!(expired.contains("Max-Age=0"), "{expired}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["data"]["logout"], true);
    assert_eq!(app.me().await, None);
    assert_eq!(app.session_cookie(), None, "the browser dropped the cookie");
    // Replaying the old value is anonymous, and cannot write.
    let replay = app.graphql_with_cookie(&cookie, ME).await;
    assert_eq!(replay["data"]["me"], serde_json::Value::Null);
    let replay = app
        .graphql_with_cookie(
            &cookie,
            "mutation { createPost(input: {title: \"t\", body: \"b\"}) { id } }",
        )
        .await;
    assert_eq!(error_code(&replay), "UNAUTHENTICATED");
    assert_eq!(
        app.stored_session_keys().await.len(),
        0,
        "the record is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_create_post_need_a_session() {
    let app = TestApp::spawn().await;
    assert_eq!(
        error_code(&app.graphql("mutation { logout }", json!({})).await),
        "UNAUTHENTICATED"
    );
    let body = app.create_post("t", "b").await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert_eq!(app.sql_count("SELECT COUNT(*) AS n FROM posts").await, 0);
    // `me` is never an error for anonymous users, even with a bogus cookie.
    let body = app.graphql_with_cookie("sid=not-a-session", ME).await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["me"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_expires_and_its_record_is_deleted() {
    let app =
        TestApp::spawn_with(|config| config.session_idle_timeout = Duration::from_secs(2)).await;
    assert_no_errors(&app.register("alice").await);
    assert_eq!(app.me().await.as_deref(), Some("alice"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(app.me().await, None);
    assert_eq!(app.stored_session_keys().await.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_extends_the_idle_timeout_but_not_the_absolute_one() {
    let app = TestApp::spawn_with(|config| {
        config.session_idle_timeout = Duration::from_secs(2);
        config.session_absolute_timeout = Duration::from_secs(5);
    })
    .await;
    assert_no_errors(&app.register("alice").await);
    // Used once per 0.9 s, just under half the idle timeout: 4.5 s in all,
    // more than twice the idle timeout.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(
            app.me().await.as_deref(),
            Some("alice"),
            "expired from idleness while in use"
        );
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        app.me().await,
        None,
        "still signed in after the absolute timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_a_restart_and_is_honoured_by_every_instance() {
    let first = TestApp::spawn().await;
    assert_no_errors(&first.register("alice").await);
    let cookie = format!("sid={}", first.session_cookie().unwrap());
    let database = first.database.clone();
    first.stop().await;

    let restarted = TestApp::spawn_on(database.clone(), |_| {}).await;
    let body = restarted.graphql_with_cookie(&cookie, ME).await;
    assert_eq!(body["data"]["me"]["username"], "alice", "{body}");

    // A second instance on the same database honours it, and sees its end.
    let other = TestApp::spawn_on(database, |_| {}).await;
    let body = other.graphql_with_cookie(&cookie, ME).await;
    assert_eq!(body["data"]["me"]["username"], "alice");
    let body = other
        .graphql_with_cookie(&cookie, "mutation { logout }")
        .await;
    assert_eq!(body["data"]["logout"], true);
    let body = restarted.graphql_with_cookie(&cookie, ME).await;
    assert_eq!(body["data"]["me"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_reads_the_session_and_its_user_in_one_statement() {
    let app = TestApp::spawn().await;
    // In SQL: the session joined with its user. On Redis: one round trip
    // there, and the user read from the database (batched with other
    // requests'), so that a deleted user's session is nobody's.
    let expected = 1;
    assert_no_errors(&app.register("alice").await);
    let mut costs = Vec::new();
    for _ in 0..3 {
        let before = app.db.statements_executed();
        assert_eq!(app.me().await.as_deref(), Some("alice"));
        costs.push(app.db.statements_executed() - before);
    }
    assert_eq!(
        costs.iter().min(),
        Some(&expected),
        "statements per request: {costs:?}"
    );
    // Signing in as someone else in the same browser shows the new user.
    assert_no_errors(&app.register("bob").await);
    assert_eq!(app.me().await.as_deref(), Some("bob"));
}
