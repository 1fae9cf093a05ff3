//! Sessions people can see and end: `sessions`, `revokeSession`,
//! `logoutOtherSessions`, `changePassword`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_no_errors, browser_from, error_code};

const SESSIONS: &str = "{ sessions { id current createdAt lastSeenAt userAgent ipAddress } }";
const ME: &str = "{ me { username } }";

/// A browser with its own user agent, connecting from `127.0.0.N`, signed
/// in as `username`.
async fn device(app: &TestApp, n: u8, username: &str) -> reqwest::Client {
    let (client, _) = browser_from(n);
    let body = app
        .graphql_as(
            &client,
            "mutation($input: LoginInput!) { login(input: $input) { id } }",
            json!({ "input": { "username": username, "password": PASSWORD } }),
        )
        .await;
    assert_no_errors(&body);
    client
}

/// A `DateTime` of the API, as a time.
fn at(value: &Value) -> time::OffsetDateTime {
    let text = value.as_str().expect("an RFC 3339 string");
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
}

async fn me_as(app: &TestApp, client: &reqwest::Client) -> Value {
    app.graphql_as(client, ME, json!({})).await["data"]["me"].clone()
}

async fn sessions_as(app: &TestApp, client: &reqwest::Client) -> Vec<Value> {
    let body = app.graphql_as(client, SESSIONS, json!({})).await;
    assert_no_errors(&body);
    body["data"]["sessions"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_lists_each_device_newest_first_with_what_it_sent() {
    let app = TestApp::spawn().await;
    assert_no_errors(&app.register("alice").await);
    let laptop = device(&app, 31, "alice").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (phone, phone_jar) = browser_from(32);
    let agent = format!("PhoneBrowser/1.0 {}", "x".repeat(400));
    let login = phone
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
    let listed = sessions_as(&app, &phone).await;
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
            at(&session["lastSeenAt"]) >= at(&session["createdAt"]),
            "{session}"
        );
    }
    // The handle is not the cookie, nor the stored key.
    let cookie = crate::helpers::session_cookie(&phone_jar, app.address).unwrap();
    let stored = app.stored_session_keys().await;
    for session in &listed {
        let handle = session["id"].as_str().unwrap();
        assert_ne!(handle, cookie);
        assert!(!stored.iter().any(|key| key == handle));
    }
    // Each user sees only their own.
    let (bob, _) = browser_from(33);
    assert_no_errors(&app.register_as(&bob, "bob", PASSWORD).await);
    assert_eq!(sessions_as(&app, &bob).await.len(), 1);
    assert_eq!(sessions_as(&app, &laptop).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_session_signs_that_device_out_and_nobody_else() {
    let app = TestApp::spawn().await;
    assert_no_errors(&app.register("alice").await);
    let laptop = device(&app, 34, "alice").await;
    let listed = sessions_as(&app, &app.client).await;
    let laptop_handle = listed
        .iter()
        .find(|s| s["ipAddress"] == "127.0.0.34")
        .unwrap()["id"]
        .clone();
    // Someone else's handle ends nothing.
    let (mallory, _) = browser_from(35);
    assert_no_errors(&app.register_as(&mallory, "mallory", PASSWORD).await);
    let revoke = "mutation($id: ID!) { revokeSession(id: $id) }";
    let body = app
        .graphql_as(&mallory, revoke, json!({ "id": laptop_handle }))
        .await;
    assert_eq!(body["data"]["revokeSession"], false, "{body}");
    assert_eq!(me_as(&app, &laptop).await["username"], "alice");
    // Its owner ends it.
    let body = app.graphql(revoke, json!({ "id": laptop_handle })).await;
    assert_eq!(body["data"]["revokeSession"], true, "{body}");
    assert_eq!(me_as(&app, &laptop).await, Value::Null);
    assert_eq!(app.me().await.as_deref(), Some("alice"));
    let body = app.graphql(revoke, json!({ "id": laptop_handle })).await;
    assert_eq!(body["data"]["revokeSession"], false, "already gone: {body}");
    let body = app.graphql(revoke, json!({ "id": "not-a-handle" })).await;
    assert_eq!(body["data"]["revokeSession"], false, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_other_sessions_ends_all_but_this_one() {
    let app = TestApp::spawn().await;
    assert_no_errors(&app.register("alice").await);
    let others = [
        device(&app, 36, "alice").await,
        device(&app, 37, "alice").await,
    ];
    let (bob, _) = browser_from(38);
    assert_no_errors(&app.register_as(&bob, "bob", PASSWORD).await);
    let body = app
        .graphql("mutation { logoutOtherSessions }", json!({}))
        .await;
    assert_eq!(body["data"]["logoutOtherSessions"], 2, "{body}");
    for other in &others {
        assert_eq!(me_as(&app, other).await, Value::Null);
    }
    assert_eq!(app.me().await.as_deref(), Some("alice"));
    assert_eq!(me_as(&app, &bob).await["username"], "bob");
    let body = app
        .graphql("mutation { logoutOtherSessions }", json!({}))
        .await;
    assert_eq!(body["data"]["logoutOtherSessions"], 0, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_checks_the_current_one_and_ends_every_other_session() {
    let app = TestApp::spawn().await;
    assert_no_errors(&app.register("alice").await);
    let other = device(&app, 39, "alice").await;
    let change = "mutation($input: ChangePasswordInput!) { changePassword(input: $input) }";
    let input = |current: &str, new: &str| json!({ "input": { "currentPassword": current, "newPassword": new } });
    let body = app.graphql(change, input(PASSWORD, "short")).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["field"], "newPassword");
    let body = app
        .graphql(change, input("not the password", "a brand new password"))
        .await;
    assert_eq!(error_code(&body), "INVALID_CREDENTIALS", "{body}");
    assert_eq!(
        me_as(&app, &other).await["username"],
        "alice",
        "nothing changed"
    );

    let before = app.session_cookie().unwrap();
    let body = app
        .graphql(change, input(PASSWORD, "a brand new password"))
        .await;
    assert_eq!(body["data"]["changePassword"], true, "{body}");
    // This browser stays in, under a new ID; the old value is anonymous.
    let after = app.session_cookie().unwrap();
    assert_ne!(before, after);
    assert_eq!(app.me().await.as_deref(), Some("alice"));
    let old = app.graphql_with_cookie(&format!("sid={before}"), ME).await;
    assert_eq!(old["data"]["me"], Value::Null);
    assert_eq!(
        me_as(&app, &other).await,
        Value::Null,
        "the other device is out"
    );
    // The new password signs in; the old one no longer does.
    let (fresh, _) = browser_from(40);
    let old_login = app.login_as(&fresh, "alice", PASSWORD).await;
    assert_eq!(error_code(&old_login), "INVALID_CREDENTIALS");
    assert_no_errors(&app.login_as(&fresh, "alice", "a brand new password").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_current_passwords_are_throttled_like_logins() {
    let app = TestApp::spawn().await;
    assert_no_errors(&app.register("alice").await);
    let change = "mutation($input: ChangePasswordInput!) { changePassword(input: $input) }";
    let mut limited = false;
    for _ in 0..11 {
        let body = app
            .graphql(
                change,
                json!({ "input": { "currentPassword": "a wrong guess", "newPassword": "a brand new password" } }),
            )
            .await;
        match error_code(&body) {
            "INVALID_CREDENTIALS" => {}
            "RATE_LIMITED" => {
                limited = true;
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(limited, "guessing the current password was never limited");
    // While limited, even the right current password is refused unchecked.
    let body = app
        .graphql(
            change,
            json!({ "input": { "currentPassword": PASSWORD, "newPassword": "a brand new password" } }),
        )
        .await;
    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_seen_follows_use_lazily() {
    // A 10 s idle timeout writes the last use at most once a second.
    let app = TestApp::spawn_with(|config| {
        config.session_idle_timeout = Duration::from_secs(10);
    })
    .await;
    assert_no_errors(&app.register("alice").await);
    let first = sessions_as(&app, &app.client).await[0]["lastSeenAt"].clone();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.me().await.as_deref(), Some("alice"));
    let later = sessions_as(&app, &app.client).await[0].clone();
    assert!(at(&later["lastSeenAt"]) > at(&first), "{later}");
    assert!(
        at(&later["createdAt"]) < at(&later["lastSeenAt"]),
        "{later}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managing_sessions_needs_a_session() {
    let app = TestApp::spawn().await;
    for query in [
        SESSIONS,
        "mutation { logoutOtherSessions }",
        "mutation { revokeSession(id: \"x\") }",
        "mutation { changePassword(input: {currentPassword: \"a\", newPassword: \"b\"}) }",
    ] {
        let body = app.graphql(query, json!({})).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{query}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_renewed_by_a_password_change_keeps_its_timeouts() {
    let app = TestApp::spawn().await;
    assert_no_errors(&app.register("alice").await);
    let response = app
        .client
        .post(app.graphql_url())
        .json(&json!({
            "query": "mutation($input: ChangePasswordInput!) { changePassword(input: $input) }",
            "variables": { "input": { "currentPassword": PASSWORD, "newPassword": "a brand new password" } },
        }))
        .send()
        .await
        .unwrap();
    let cookie = crate::helpers::set_cookie(response.headers()).expect("a new sid");
    let max_age: i64 = cookie
        .split("; ")
        .find_map(|attribute| attribute.strip_prefix("Max-Age="))
        .and_then(|seconds| seconds.parse().ok())
        .expect("Max-Age");
    // The idle timeout is 7 days; tower-sessions' own default would be 14.
    assert!(max_age <= 7 * 24 * 3600, "{cookie}");
    assert!(max_age > 7 * 24 * 3600 - 60, "{cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_keeps_at_most_100_sessions_the_oldest_end_first() {
    let app = TestApp::spawn().await;
    assert_no_errors(&app.register("alice").await);
    for _ in 0..101 {
        // A script without a cookie jar: every login is a new session.
        let body = app
            .graphql_with_cookie(
                "",
                "mutation { login(input: {username: \"alice\", password: \"correct horse battery\"}) { id } }",
            )
            .await;
        assert_no_errors(&body);
    }
    assert_eq!(app.stored_session_keys().await.len(), 100);
    // The first one (register's, in the default browser) ended.
    assert_eq!(app.me().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_login_with_the_old_password_outlives_a_password_change() {
    let app = TestApp::spawn().await;
    assert_no_errors(&app.register("alice").await);
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
    let change = app
        .graphql(
            "mutation($input: ChangePasswordInput!) { changePassword(input: $input) }",
            json!({ "input": { "currentPassword": PASSWORD, "newPassword": "a brand new password" } }),
        )
        .await;
    assert_eq!(change["data"]["changePassword"], true, "{change}");
    for login in logins {
        login.await.unwrap();
    }
    let listed = sessions_as(&app, &app.client).await;
    assert_eq!(
        listed.len(),
        1,
        "only the changing session is left: {listed:?}"
    );
}
