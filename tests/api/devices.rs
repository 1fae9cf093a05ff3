//! Sessions people can see and end: `sessions`, `revokeSession`,
//! `logoutOtherSessions`, `changePassword`. What the store must keep
//! (listing, revoking, the cap per user, renewal) runs against each store
//! (`store_tests!`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Browser, ME, PASSWORD, TestApp, assert_no_errors, error_code, instant, set_cookie,
};

const SESSIONS: &str = "{ sessions { id current createdAt lastSeenAt userAgent ipAddress } }";
const CHANGE_PASSWORD: &str =
    "mutation($input: ChangePasswordInput!) { changePassword(input: $input) }";

/// A browser connecting from `127.0.0.N`, signed in as `username`.
async fn device(app: &TestApp, n: u8, username: &str) -> Browser {
    let browser = app.browser_from(n);
    assert_no_errors(&browser.login(username, PASSWORD).await);
    browser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_current_passwords_are_throttled_like_logins() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let mut checked = 0;
    let mut limited = false;
    for _ in 0..11 {
        let body = alice
            .graphql(
                CHANGE_PASSWORD,
                json!({ "input": { "currentPassword": "a wrong guess", "newPassword": "a brand new password" } }),
            )
            .await;
        match error_code(&body) {
            "INVALID_CREDENTIALS" => checked += 1,
            "RATE_LIMITED" => {
                limited = true;
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(limited, "guessing the current password was never limited");
    assert!(
        checked >= 5,
        "limited after {checked} guesses, before the login threshold of 5"
    );
    // While limited, even the right current password is refused unchecked.
    let body = alice
        .graphql(
            CHANGE_PASSWORD,
            json!({ "input": { "currentPassword": PASSWORD, "newPassword": "a brand new password" } }),
        )
        .await;
    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managing_sessions_needs_a_session() {
    let app = TestApp::spawn().await;
    let anonymous = app.browser();
    for query in [
        SESSIONS,
        "mutation { logoutOtherSessions }",
        "mutation { revokeSession(id: \"x\") }",
        "mutation { changePassword(input: {currentPassword: \"a\", newPassword: \"b\"}) }",
    ] {
        let body = anonymous.graphql(query, json!({})).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{query}: {body}");
    }
}

store_tests! {
    async fn sessions_lists_each_device_newest_first_with_what_it_sent(store) {
        let app = store.spawn().await;
        app.browser().register("alice").await;
        let laptop = device(&app, 31, "alice").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let phone = app.browser_from(32);
        let agent = format!("PhoneBrowser/1.0 {}", "x".repeat(400));
        let login = phone
            .client
            .post(app.graphql_url())
            .header("user-agent", &agent)
            .json(&json!({
                "query": "mutation($input: LoginInput!) { login(input: $input) { id } }",
                "variables": { "input": { "username": "alice", "password": PASSWORD } },
            }))
            .send()
            .await
            .unwrap();
        assert!(login.status().is_success());
        let listed = phone.sessions().await;
        assert_eq!(
            listed.len(),
            3,
            "register's, the laptop's, the phone's: {listed:?}"
        );
        let newest = &listed[0];
        assert_eq!(newest["current"], true);
        assert_eq!(newest["ipAddress"], "127.0.0.32");
        let kept = newest["userAgent"].as_str().unwrap();
        assert_eq!(kept.chars().count(), 256);
        assert!(agent.starts_with(kept));
        assert_eq!(listed[1]["ipAddress"], "127.0.0.31");
        assert!(listed.iter().filter(|s| s["current"] == true).count() == 1);
        for session in &listed {
            assert!(
                instant(&session["lastSeenAt"]) >= instant(&session["createdAt"]),
                "{session}"
            );
        }
        // The handle is not the cookie, nor the stored key.
        let cookie = phone.session_cookie().unwrap();
        let stored = app.stored_session_keys().await;
        for session in &listed {
            let handle = session["id"].as_str().unwrap();
            assert_ne!(handle, cookie);
            assert!(!stored.iter().any(|key| key == handle));
        }
        // Each user sees only their own.
        let bob = app.browser_from(33);
        bob.register("bob").await;
        assert_eq!(bob.sessions().await.len(), 1);
        assert_eq!(laptop.sessions().await.len(), 3);
    }

    async fn revoking_a_session_signs_that_device_out_and_nobody_else(store) {
        let app = store.spawn().await;
        let alice = app.browser();
        alice.register("alice").await;
        let laptop = device(&app, 34, "alice").await;
        let listed = alice.sessions().await;
        let laptop_handle = listed
            .iter()
            .find(|s| s["ipAddress"] == "127.0.0.34")
            .unwrap()["id"]
            .clone();
        // Someone else's handle ends nothing.
        let mallory = app.browser_from(35);
        mallory.register("mallory").await;
        let revoke = "mutation($id: ID!) { revokeSession(id: $id) }";
        let body = mallory.graphql(revoke, json!({ "id": laptop_handle })).await;
        assert_eq!(body["data"]["revokeSession"], false, "{body}");
        assert_eq!(laptop.me().await.as_deref(), Some("alice"));
        // Its owner ends it.
        let body = alice.graphql(revoke, json!({ "id": laptop_handle })).await;
        assert_eq!(body["data"]["revokeSession"], true, "{body}");
        assert_eq!(laptop.me().await, None);
        assert_eq!(alice.me().await.as_deref(), Some("alice"));
        let body = alice.graphql(revoke, json!({ "id": laptop_handle })).await;
        assert_eq!(body["data"]["revokeSession"], false, "already gone: {body}");
        let body = alice.graphql(revoke, json!({ "id": "not-a-handle" })).await;
        assert_eq!(body["data"]["revokeSession"], false, "{body}");
    }

    async fn logout_other_sessions_ends_all_but_this_one(store) {
        let app = store.spawn().await;
        let alice = app.browser();
        alice.register("alice").await;
        let others = [
            device(&app, 36, "alice").await,
            device(&app, 37, "alice").await,
        ];
        let bob = app.browser_from(38);
        bob.register("bob").await;
        let body = alice
            .graphql("mutation { logoutOtherSessions }", json!({}))
            .await;
        assert_eq!(body["data"]["logoutOtherSessions"], 2, "{body}");
        for other in &others {
            assert_eq!(other.me().await, None);
        }
        assert_eq!(alice.me().await.as_deref(), Some("alice"));
        assert_eq!(bob.me().await.as_deref(), Some("bob"));
        let body = alice
            .graphql("mutation { logoutOtherSessions }", json!({}))
            .await;
        assert_eq!(body["data"]["logoutOtherSessions"], 0, "{body}");
    }

    async fn change_password_checks_the_current_one_and_ends_every_other_session(store) {
        let app = store.spawn().await;
        let alice = app.browser();
        alice.register("alice").await;
        let other = device(&app, 39, "alice").await;
        let input = |current: &str, new: &str| json!({ "input": { "currentPassword": current, "newPassword": new } });
        let body = alice.graphql(CHANGE_PASSWORD, input(PASSWORD, "short")).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "newPassword");
        let body = alice
            .graphql(CHANGE_PASSWORD, input("not the password", "a brand new password"))
            .await;
        assert_eq!(error_code(&body), "INVALID_CREDENTIALS", "{body}");
        assert_eq!(other.me().await.as_deref(), Some("alice"), "nothing changed");

        let before = alice.session_cookie().unwrap();
        let body = alice
            .graphql(CHANGE_PASSWORD, input(PASSWORD, "a brand new password"))
            .await;
        assert_eq!(body["data"]["changePassword"], true, "{body}");
        // This browser stays in, under a new ID; the old value is anonymous.
        let after = alice.session_cookie().unwrap();
        assert_ne!(before, after);
        assert_eq!(alice.me().await.as_deref(), Some("alice"));
        let old = app
            .cookie_replay(&format!("sid={before}"))
            .graphql(ME, json!({}))
            .await;
        assert_eq!(old["data"]["me"], Value::Null);
        assert_eq!(other.me().await, None, "the other device is out");
        // The new password signs in; the old one no longer does.
        let fresh = app.browser_from(40);
        let old_login = fresh.login("alice", PASSWORD).await;
        assert_eq!(error_code(&old_login), "INVALID_CREDENTIALS");
        assert_no_errors(&fresh.login("alice", "a brand new password").await);
    }

    async fn last_seen_follows_use_lazily(store) {
        // A 10 s idle timeout writes the last use at most once a second.
        let app = store
            .spawn_with(&[("BLOGQL_SESSION_IDLE_TIMEOUT", "10s")])
            .await;
        let alice = app.browser();
        alice.register("alice").await;
        let first = alice.sessions().await[0]["lastSeenAt"].clone();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(alice.me().await.as_deref(), Some("alice"));
        let later = alice.sessions().await[0].clone();
        assert!(instant(&later["lastSeenAt"]) > instant(&first), "{later}");
        assert!(
            instant(&later["createdAt"]) < instant(&later["lastSeenAt"]),
            "{later}"
        );
    }

    async fn a_session_renewed_by_a_password_change_keeps_its_timeouts(store) {
        let app = store.spawn().await;
        let alice = app.browser();
        alice.register("alice").await;
        let response = alice
            .send(
                CHANGE_PASSWORD,
                json!({ "input": { "currentPassword": PASSWORD, "newPassword": "a brand new password" } }),
            )
            .await;
        let cookie = set_cookie(response.headers()).expect("a new sid");
        let max_age: i64 = cookie
            .split("; ")
            .find_map(|attribute| attribute.strip_prefix("Max-Age="))
            .and_then(|seconds| seconds.parse().ok())
            .expect("Max-Age");
        // The idle timeout is 7 days; tower-sessions' own default would be 14.
        assert!(max_age <= 7 * 24 * 3600, "{cookie}");
        assert!(max_age > 7 * 24 * 3600 - 60, "{cookie}");
    }

    async fn a_user_keeps_at_most_100_sessions_the_oldest_end_first(store) {
        let app = store.spawn().await;
        let alice = app.browser();
        alice.register("alice").await;
        // A script without a cookie jar: every login is a new session.
        let script = app.cookie_replay("");
        for _ in 0..101 {
            assert_no_errors(&script.login("alice", PASSWORD).await);
        }
        assert_eq!(app.stored_session_keys().await.len(), 100);
        // The first one (register's, in alice's browser) ended.
        assert_eq!(alice.me().await, None);
    }

    async fn no_login_with_the_old_password_outlives_a_password_change(store) {
        let app = store.spawn().await;
        let alice = app.browser();
        alice.register("alice").await;
        // Logins with the old password queue for the hashers while the change
        // runs: whichever finish after it must not stay signed in.
        let logins: Vec<_> = (0..16)
            .map(|_| {
                let request = reqwest::Client::new().post(app.graphql_url()).json(&json!({
                    "query": "mutation { login(input: {username: \"alice\", password: \"correct horse battery\"}) { id } }",
                }));
                tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() })
            })
            .collect();
        let change = alice
            .graphql(
                CHANGE_PASSWORD,
                json!({ "input": { "currentPassword": PASSWORD, "newPassword": "a brand new password" } }),
            )
            .await;
        assert_eq!(change["data"]["changePassword"], true, "{change}");
        for login in logins {
            login.await.unwrap();
        }
        let listed = alice.sessions().await;
        assert_eq!(
            listed.len(),
            1,
            "only the changing session is left: {listed:?}"
        );
    }
}
