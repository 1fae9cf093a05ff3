//! Several instances on one database: what one does, the others see at once.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_no_errors, error_code};

const ME: &str = "{ me { username } }";

/// Two servers sharing one database, and a browser signed in as alice
/// through the first.
async fn two_instances() -> (TestApp, TestApp) {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(a.database.clone(), |_| {}).await;
    assert_no_errors(&a.register("alice").await);
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_ended_through_one_instance_are_anonymous_through_the_other() {
    let (a, b) = two_instances().await;
    let cookie = |app: &TestApp| format!("sid={}", app.session_cookie().unwrap());
    // Three devices: the default browser (through A), and two through B.
    let (laptop, laptop_jar) = a.new_browser();
    let (phone, phone_jar) = a.new_browser();
    for client in [&laptop, &phone] {
        assert_no_errors(&b.login_as(client, "alice", PASSWORD).await);
    }
    let laptop_cookie = format!(
        "sid={}",
        crate::helpers::session_cookie(&laptop_jar, b.address).unwrap()
    );
    let phone_cookie = format!(
        "sid={}",
        crate::helpers::session_cookie(&phone_jar, b.address).unwrap()
    );
    // Signed in through B, seen through A.
    let body = a.graphql_with_cookie(&laptop_cookie, ME).await;
    assert_eq!(body["data"]["me"]["username"], "alice");
    // Revoked through A: anonymous through B at its next request.
    let listed = a
        .graphql("{ sessions { id current ipAddress } }", json!({}))
        .await;
    let others: Vec<Value> = listed["data"]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["current"] == false)
        .cloned()
        .collect();
    assert_eq!(others.len(), 2, "{listed}");
    let revoked = a
        .graphql(
            "mutation($id: ID!) { revokeSession(id: $id) }",
            json!({ "id": others[0]["id"] }),
        )
        .await;
    assert_eq!(revoked["data"]["revokeSession"], true);
    let still_in: Vec<bool> = futures_util::future::join_all(
        [&laptop_cookie, &phone_cookie].map(|c| b.graphql_with_cookie(c, ME)),
    )
    .await
    .iter()
    .map(|body| body["data"]["me"] != Value::Null)
    .collect();
    assert_eq!(
        still_in.iter().filter(|in_| **in_).count(),
        1,
        "{still_in:?}"
    );
    // All others ended through A: both anonymous through B; A's own stays.
    let ended = a
        .graphql("mutation { logoutOtherSessions }", json!({}))
        .await;
    assert_eq!(ended["data"]["logoutOtherSessions"], 1, "{ended}");
    for other in [&laptop_cookie, &phone_cookie] {
        let body = b.graphql_with_cookie(other, ME).await;
        assert_eq!(body["data"]["me"], Value::Null, "{body}");
    }
    let body = b.graphql_with_cookie(&cookie(&a), ME).await;
    assert_eq!(body["data"]["me"]["username"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_through_either_instance_count_against_the_same_lock() {
    let (a, b) = two_instances().await;
    let (client, _) = a.new_browser();
    for (n, app) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let body = app.login_as(&client, "alice", "not the password").await;
        assert_eq!(
            error_code(&body),
            "INVALID_CREDENTIALS",
            "guess {n}: {body}"
        );
    }
    for app in [&a, &b] {
        let body = app.login_as(&client, "alice", PASSWORD).await;
        assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_spread_over_two_instances_gets_no_more_guesses_than_one() {
    let (a, b) = two_instances().await;
    let checked = crate::helpers::concurrent_guesses(&[&a, &b], 40).await;
    assert!(
        checked <= 6,
        "{checked} of 40 guesses over two instances were checked"
    );
}
