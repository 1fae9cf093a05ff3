//! The attacks an audit of stage 2 made, each refused: planted cookies,
//! a pooled connection after an early refusal, racing password changes,
//! sessions of a deleted user, spoofing characters in listings.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{ME, PASSWORD, TestApp, assert_no_errors, error_code, set_cookie};

/// Registers `username` from a client without a cookie jar; its `sid=…`.
async fn signed_up(app: &TestApp, username: &str) -> String {
    let response = reqwest::Client::new()
        .post(app.graphql_url())
        .json(&json!({
            "query": "mutation($input: RegisterInput!) { register(input: $input) { id } }",
            "variables": { "input": { "username": username, "password": PASSWORD } },
        }))
        .send()
        .await
        .expect("the server answers");
    let cookie = set_cookie(response.headers()).expect("a session cookie");
    cookie.split(';').next().expect("sid=…").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_cookies_before_the_real_one_do_not_sign_the_user_out() {
    let app = TestApp::spawn().await;
    let real = signed_up(&app, "alice").await;
    for planted in [8, 40, 400] {
        // Well-formed session IDs that name no session, as a sibling
        // subdomain could plant them, all before the real one.
        let fakes: Vec<String> = (0..planted)
            .map(|_| format!("sid={}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())))
            .collect();
        let cookie = format!("{}; {real}", fakes.join("; "));
        let before = app.statements_executed();
        let body = app.cookie_replay(&cookie).graphql(ME, json!({})).await;
        assert_eq!(body["data"]["me"]["username"], "alice", "{planted}: {body}");
        if !app.on_redis() {
            let cost = app.statements_executed() - before;
            assert_eq!(cost, 1, "one round trip for {planted} cookies");
        }
    }
}

/// Sends `first` then `second` on one kept-alive connection; both answers
/// as text (the second empty if the connection was closed after the first).
async fn two_requests_on_one_connection(
    app: &TestApp,
    first: &str,
    second: &str,
) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(app.address)
        .await
        .expect("connect");
    stream.write_all(first.as_bytes()).await.expect("send");
    let first_answer = read_answer(&mut stream).await;
    let _ = stream.write_all(second.as_bytes()).await;
    let second_answer = read_answer(&mut stream).await;
    (first_answer, second_answer)
}

/// What arrives on `stream` within 5 s, as text (empty once it is closed).
async fn read_answer(stream: &mut tokio::net::TcpStream) -> String {
    let mut answer = vec![0u8; 16 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .map_or(0, |read| read.unwrap_or(0));
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_before_the_body_is_read_closes_the_connection() {
    let app = TestApp::spawn().await;
    let body = r#"{"query":"{ me { username } }"}"#;
    let next = format!(
        "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let bad_token = format!(
        "POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer blogql_unknown\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let form = format!(
        "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for (refused, status) in [(bad_token, "401"), (form, "400")] {
        let (first, second) = two_requests_on_one_connection(&app, &refused, &next).await;
        assert!(first.starts_with(&format!("HTTP/1.1 {status}")), "{first}");
        assert!(
            first.to_ascii_lowercase().contains("connection: close"),
            "the client is told not to reuse the connection: {first}"
        );
        assert_eq!(second, "", "the unread body is never taken for a request");
    }
    // A pooled client (reqwest keeps connections alive) gets both answers.
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let refused = client
            .post(app.graphql_url())
            .bearer_auth("blogql_unknown")
            .json(&json!({ "query": ME }))
            .send()
            .await
            .expect("answered");
        assert_eq!(refused.status(), 401);
        let answered = tokio::time::timeout(
            Duration::from_secs(5),
            client
                .post(app.graphql_url())
                .json(&json!({ "query": ME }))
                .send(),
        )
        .await
        .expect("the next request on the pool is answered")
        .expect("answered");
        assert_eq!(answered.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_racing_password_changes_the_loser_changes_nothing() {
    let app = TestApp::spawn().await;
    let first = app.browser();
    first.register("alice").await;
    let mut password = PASSWORD.to_owned();
    for round in 0..12 {
        let second = app.browser();
        assert_no_errors(&second.login("alice", &password).await);
        let change = |new: String| json!({ "input": { "currentPassword": password.clone(), "newPassword": new } });
        let query = "mutation($input: ChangePasswordInput!) { changePassword(input: $input) }";
        let (a, b) = tokio::join!(
            first.graphql(query, change(format!("first wins {round}"))),
            second.graphql(query, change(format!("second wins {round}"))),
        );
        let won = |body: &Value| body["data"]["changePassword"] == true;
        assert!(won(&a) ^ won(&b), "exactly one wins: {a} {b}");
        let (winner, loser, loser_body) = if won(&a) {
            (&first, &second, &b)
        } else {
            (&second, &first, &a)
        };
        assert_eq!(
            error_code(loser_body),
            "INVALID_CREDENTIALS",
            "{loser_body}"
        );
        assert!(
            winner.me().await.is_some(),
            "round {round}: the loser ended the winner's new session"
        );
        assert_eq!(
            loser.me().await,
            None,
            "the winner ended the loser's session"
        );
        password = if won(&a) {
            format!("first wins {round}")
        } else {
            format!("second wins {round}")
        };
        if !won(&a) {
            assert_no_errors(&first.login("alice", &password).await);
        }
    }
}

store_tests! {
    async fn the_sessions_and_tokens_of_a_deleted_user_are_nobodys(store) {
        let app = store.spawn().await;
        let alice = app.browser();
        alice.register("alice").await;
        let token = app.token_client(&alice.create_token("script").await);
        assert!(alice.me().await.is_some());
        assert!(token.me().await.is_some());
        app.sql_execute("DELETE FROM users WHERE username = 'alice'")
            .await;
        assert!(
            app.sees_sql_change(|| async { alice.me().await.is_none() }).await,
            "the session is anonymous"
        );
        // (Its copy was loaded after the session's: it may outlive it a little.)
        let refused = || async { token.send(ME, json!({})).await.status() == 401 };
        assert!(app.sees_sql_change(refused).await, "the token is gone with its user");
        let body = alice
            .graphql(
                "mutation { createPost(input: { title: \"t\", body: \"b\" }) { id } }",
                json!({}),
            )
            .await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titles_and_token_names_refuse_characters_that_spoof_a_listing() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    for spoof in [
        "invoice\u{202E}fdp.exe",
        "a\u{2066}b",
        "bell\u{7}",
        "two\nlines",
        "c1\u{85}x",
    ] {
        let body = alice
            .graphql(
                "mutation($t: String!) { createPost(input: { title: $t, body: \"b\" }) { id } }",
                json!({ "t": spoof }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{spoof:?}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "title");
        let body = alice
            .graphql(
                "mutation($n: String!) { createApiToken(name: $n) { token } }",
                json!({ "n": spoof }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{spoof:?}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "name");
    }
    // Bodies keep their line breaks and tabs.
    let body = alice
        .graphql(
            "mutation { createPost(input: { title: \"fine\", body: \"a\\n\\tb\" }) { id } }",
            json!({}),
        )
        .await;
    assert_no_errors(&body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_the_others_right_after_signing_in_ends_them() {
    let app = TestApp::spawn().await;
    let phone = app.browser();
    phone.register("alice").await;
    let laptop = app.browser();
    let body = laptop
        .graphql(
            "mutation($input: LoginInput!) { login(input: $input) { id } logoutOtherSessions }",
            json!({ "input": { "username": "alice", "password": PASSWORD } }),
        )
        .await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["logoutOtherSessions"], 1, "{body}");
    assert_eq!(phone.me().await, None, "the other device is signed out");
    assert!(laptop.me().await.is_some(), "this one is not");
}

store_tests! {
    async fn a_session_signed_in_before_a_credential_change_is_nobodys(store) {
        // What a login still in flight when the password changes leaves
        // behind: a session stored under the credentials before the change.
        let app = store.spawn().await;
        let late = app.browser();
        late.register("alice").await;
        let changer = app.browser();
        assert_no_errors(&changer.login("alice", PASSWORD).await);
        app.sql_execute("UPDATE users SET credential_version = credential_version + 1")
            .await;
        let response = late.send(ME, json!({})).await;
        let cookie = set_cookie(response.headers()).expect("the cookie is expired");
        assert!(cookie.contains("Max-Age=0"), "{cookie}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["data"]["me"], Value::Null, "{body}");
        // A password change signs its own session in under the new version.
        let other = app.browser();
        assert_no_errors(&other.login("alice", PASSWORD).await);
        let changed = other
            .graphql(
                "mutation($input: ChangePasswordInput!) { changePassword(input: $input) }",
                json!({ "input": { "currentPassword": PASSWORD, "newPassword": "a new secret" } }),
            )
            .await;
        assert_no_errors(&changed);
        assert_eq!(other.me().await.as_deref(), Some("alice"));
        assert_eq!(changer.me().await, None);
    }
}
