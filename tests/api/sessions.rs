//! The session cookie and the rules every session store keeps: its
//! attributes, fixation, logout, timeouts, restarts and several instances.
//! Each rule runs against each store (`store_tests!`).

use serde_json::{Value, json};

use crate::support::{Browser, ME, PASSWORD, TestApp, assert_no_errors, error_code, set_cookie};

/// Registers `alice` in `browser`; the `Set-Cookie` it answered.
async fn register_cookie(app: &TestApp, browser: &Browser) -> String {
    let response = browser
        .client
        .post(app.graphql_url())
        .json(&json!({ "query": "mutation { register(input: {username: \"alice\", password: \"correct horse battery\"}) { id } }" }))
        .send()
        .await
        .unwrap();
    set_cookie(response.headers()).expect("a sid cookie")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_secure_behind_an_https_public_url() {
    let app = TestApp::spawn_with(&[("BLOGQL_COOKIE_SECURE", "true")]).await;
    let cookie = register_cookie(&app, &app.browser()).await;
    assert!(cookie.split("; ").any(|a| a == "Secure"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_create_post_need_a_session() {
    let app = TestApp::spawn().await;
    let anonymous = app.browser();
    assert_eq!(
        error_code(&anonymous.graphql("mutation { logout }", json!({})).await),
        "UNAUTHENTICATED"
    );
    let body = anonymous.create_post_with("t", "b").await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert_eq!(app.sql_count("SELECT COUNT(*) AS n FROM posts").await, 0);
    // `me` is never an error for anonymous users, even with a bogus cookie.
    let body = app
        .cookie_replay("sid=not-a-session")
        .graphql(ME, json!({}))
        .await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["me"], Value::Null);
}

store_tests! {
    async fn the_cookie_is_sid_httponly_lax_and_opaque(store) {
        let app = store.spawn().await;
        let browser = app.browser();
        let cookie = register_cookie(&app, &browser).await;
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
        let value = browser.session_cookie().expect("the browser keeps the cookie");
        assert!(value.len() >= 22, "at least 128 bits: {value}");
        // Nothing but the opaque ID is in the cookie, and the ID is not stored.
        assert!(!value.contains("alice"));
        let stored = app.stored_session_keys().await;
        assert_eq!(stored.len(), 1);
        assert_ne!(stored[0], value);
        let data = app.stored_session_data().await;
        assert!(!data[0].contains(&value));
    }

    async fn login_replaces_the_session_id_so_a_planted_cookie_is_useless(store) {
        let app = store.spawn().await;
        let alice = app.browser();
        alice.register("alice").await;
        let before_login = alice.session_cookie().expect("a session after register");
        // An attacker plants their own (valid) session cookie in the victim's browser...
        let attacker = app.browser();
        attacker.register("mallory").await;
        let planted = attacker.session_cookie().expect("mallory's cookie");
        let victim = app.browser();
        victim.plant_session_cookie(&planted);
        // ...the victim logs in: they get a new ID, and the planted one is destroyed.
        assert_no_errors(&victim.login("alice", PASSWORD).await);
        let after_login = victim.session_cookie().expect("a session after login");
        assert_ne!(after_login, planted);
        let attacker_view = app
            .cookie_replay(&format!("sid={planted}"))
            .graphql(ME, json!({}))
            .await;
        assert_eq!(
            attacker_view["data"]["me"],
            Value::Null,
            "the planted session must not become alice's"
        );
        // A second login in the first browser also gets a fresh ID.
        assert_no_errors(&alice.login("alice", PASSWORD).await);
        assert_ne!(alice.session_cookie().unwrap(), before_login);
        let old = app
            .cookie_replay(&format!("sid={before_login}"))
            .graphql(ME, json!({}))
            .await;
        assert_eq!(old["data"]["me"], Value::Null);
    }

    async fn logout_makes_the_old_cookie_anonymous(store) {
        let app = store.spawn().await;
        let alice = app.browser();
        alice.register("alice").await;
        let replay = app.cookie_replay(&format!("sid={}", alice.session_cookie().unwrap()));
        let response = alice.send("mutation { logout }", json!({})).await;
        let expired = set_cookie(response.headers()).expect("logout expires the cookie");
        assert!(expired.contains("Max-Age=0"), "{expired}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["data"]["logout"], true);
        assert_eq!(alice.me().await, None);
        assert_eq!(alice.session_cookie(), None, "the browser dropped the cookie");
        // Replaying the old value is anonymous, and cannot write.
        let body = replay.graphql(ME, json!({})).await;
        assert_eq!(body["data"]["me"], Value::Null);
        let body = replay.create_post_with("t", "b").await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED");
        assert_eq!(
            app.stored_session_keys().await.len(),
            0,
            "the record is gone"
        );
    }

    async fn an_idle_session_expires_and_its_record_is_deleted(store) {
        let app = store
            .spawn_with(&[("BLOGQL_SESSION_IDLE_TIMEOUT", "2s")])
            .await;
        let alice = app.browser();
        alice.register("alice").await;
        assert_eq!(alice.me().await.as_deref(), Some("alice"));
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        assert_eq!(alice.me().await, None);
        assert_eq!(app.stored_session_keys().await.len(), 0);
    }

    async fn use_extends_the_idle_timeout_but_not_the_absolute_one(store) {
        let app = store
            .spawn_with(&[
                ("BLOGQL_SESSION_IDLE_TIMEOUT", "2s"),
                ("BLOGQL_SESSION_ABSOLUTE_TIMEOUT", "5s"),
            ])
            .await;
        let alice = app.browser();
        alice.register("alice").await;
        // Used once per 0.9 s, just under half the idle timeout: 4.5 s in all,
        // more than twice the idle timeout.
        for _ in 0..5 {
            tokio::time::sleep(std::time::Duration::from_millis(900)).await;
            assert_eq!(
                alice.me().await.as_deref(),
                Some("alice"),
                "expired from idleness while in use"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
        assert_eq!(
            alice.me().await,
            None,
            "still signed in after the absolute timeout"
        );
    }

    async fn a_session_survives_a_restart_and_is_honoured_by_every_instance(store) {
        let first = store.spawn().await;
        let alice = first.browser();
        alice.register("alice").await;
        let cookie = format!("sid={}", alice.session_cookie().unwrap());
        let database = first.database.clone();
        first.stop().await;

        let restarted = TestApp::spawn_on(database.clone(), &[]).await;
        let body = restarted.cookie_replay(&cookie).graphql(ME, json!({})).await;
        assert_eq!(body["data"]["me"]["username"], "alice", "{body}");

        // A second instance on the same database honours it, and sees its end.
        let other = TestApp::spawn_on(database, &[]).await;
        let through_other = other.cookie_replay(&cookie);
        let body = through_other.graphql(ME, json!({})).await;
        assert_eq!(body["data"]["me"]["username"], "alice");
        let body = through_other.graphql("mutation { logout }", json!({})).await;
        assert_eq!(body["data"]["logout"], true);
        let body = restarted.cookie_replay(&cookie).graphql(ME, json!({})).await;
        assert_eq!(body["data"]["me"], Value::Null);
    }

    async fn me_reads_the_session_and_its_user_in_one_statement_then_from_memory(store) {
        let app = store.spawn().await;
        // In SQL: the session joined with its user. On Redis: one round
        // trip there, and the user read from the database (batched with
        // other requests'), so that a deleted user's session is nobody's.
        // Then, where the bus hears every instance (PostgreSQL, Redis),
        // the session and its user are remembered: no statement at all.
        let remembered = app.on_postgres() || app.on_redis();
        let browser = app.browser();
        browser.register("alice").await;
        let mut costs = Vec::new();
        for _ in 0..3 {
            let before = app.statements_executed();
            assert_eq!(browser.me().await.as_deref(), Some("alice"));
            costs.push(app.statements_executed() - before);
        }
        let expected = if remembered { [1, 0, 0] } else { [1, 1, 1] };
        assert_eq!(costs, expected, "statements per request");
        // Signing in as someone else in the same browser shows the new user.
        browser.register("bob").await;
        assert_eq!(browser.me().await.as_deref(), Some("bob"));
    }

    async fn a_request_in_flight_never_brings_back_a_revoked_session(store) {
        // A 10 s idle timeout: the extension is due after a second.
        let app = store
            .spawn_with(&[("BLOGQL_SESSION_IDLE_TIMEOUT", "10s")])
            .await;
        let alice = app.browser();
        alice.register("alice").await;
        let other = app.browser();
        assert_no_errors(&other.login("alice", PASSWORD).await);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        // Alice's request extends her session while the other device ends
        // it; whichever lands last, the session stays ended.
        let extend = alice.graphql(ME, json!({}));
        let end = other.graphql("mutation { logoutOtherSessions }", json!({}));
        let (_, ended) = tokio::join!(extend, end);
        assert_eq!(ended["data"]["logoutOtherSessions"], 1, "{ended}");
        assert_eq!(alice.me().await, None);
        assert_eq!(app.stored_session_keys().await.len(), 1);
    }
}
