//! Several instances on one database: what one does, the others see at once.

use serde_json::{Value, json};

use crate::support::{
    Browser, ME, PASSWORD, TestApp, assert_no_errors, concurrent_guesses, error_code, soon,
};

/// Two servers sharing one database, and a browser signed in as alice
/// through the first.
async fn two_instances() -> (TestApp, TestApp, Browser) {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(a.database.clone(), &[]).await;
    let alice = a.browser();
    alice.register("alice").await;
    (a, b, alice)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_ended_through_one_instance_are_anonymous_through_the_other() {
    let (a, b, alice) = two_instances().await;
    // Three devices: alice's browser (through A), and two through B.
    let (laptop, phone) = (b.browser(), b.browser());
    for device in [&laptop, &phone] {
        assert_no_errors(&device.login("alice", PASSWORD).await);
    }
    let laptop_cookie = format!("sid={}", laptop.session_cookie().unwrap());
    let phone_cookie = format!("sid={}", phone.session_cookie().unwrap());
    // Signed in through B, seen through A.
    let body = a.cookie_replay(&laptop_cookie).graphql(ME, json!({})).await;
    assert_eq!(body["data"]["me"]["username"], "alice");
    // Revoked through A: anonymous through B at its next request.
    let listed = alice
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
    let revoked = alice
        .graphql(
            "mutation($id: ID!) { revokeSession(id: $id) }",
            json!({ "id": others[0]["id"] }),
        )
        .await;
    assert_eq!(revoked["data"]["revokeSession"], true);
    let replays = [&laptop_cookie, &phone_cookie].map(|cookie| b.cookie_replay(cookie));
    let still_in: Vec<bool> =
        futures_util::future::join_all(replays.iter().map(|replay| replay.graphql(ME, json!({}))))
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
    let ended = alice
        .graphql("mutation { logoutOtherSessions }", json!({}))
        .await;
    assert_eq!(ended["data"]["logoutOtherSessions"], 1, "{ended}");
    // (Within the event's delivery: B may have remembered the phone's.)
    for replay in &replays {
        let anonymous =
            || async { replay.graphql(ME, json!({})).await["data"]["me"] == Value::Null };
        assert!(soon(anonymous).await, "anonymous through B");
    }
    let alices = format!("sid={}", alice.session_cookie().unwrap());
    let body = b.cookie_replay(&alices).graphql(ME, json!({})).await;
    assert_eq!(body["data"]["me"]["username"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_through_either_instance_count_against_the_same_lock() {
    let (a, b, _) = two_instances().await;
    // Guesses from one client address, spread over the two instances.
    let (through_a, through_b) = (a.browser(), b.browser());
    for (n, client) in [&through_a, &through_b, &through_a, &through_b, &through_a]
        .into_iter()
        .enumerate()
    {
        let body = client.login("alice", "not the password").await;
        assert_eq!(
            error_code(&body),
            "INVALID_CREDENTIALS",
            "guess {n}: {body}"
        );
    }
    for client in [&through_a, &through_b] {
        let body = client.login("alice", PASSWORD).await;
        assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_spread_over_two_instances_gets_no_more_guesses_than_one() {
    let (a, b, _) = two_instances().await;
    let checked = concurrent_guesses(&[&a, &b], 40).await;
    // As on one instance: the threshold's five, and at most one more if
    // the burst outlasts the first lock. Fewer would be a throttle that
    // refuses what a sequence would have let through.
    assert!(
        (5..=6).contains(&checked),
        "{checked} of 40 guesses over two instances were checked"
    );
}
