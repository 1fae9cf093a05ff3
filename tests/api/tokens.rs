//! API tokens: a script's way in, beside the browser's cookie.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{PASSWORD, TestApp, assert_no_errors, error_code, instant};

const CREATE: &str = "mutation($name: String!) {
    createApiToken(name: $name) { token apiToken { id name createdAt lastUsedAt } }
}";
const TOKENS: &str = "{ apiTokens { id name lastUsedAt } }";
const CREATE_POST: &str = "mutation($input: CreatePostInput!) { createPost(input: $input) { title author { username } } }";

fn names(body: &Value) -> Vec<&str> {
    assert_no_errors(body);
    body["data"]["apiTokens"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|token| token["name"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_shown_once_stored_hashed_and_signs_a_script_in() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let body = alice
        .graphql(CREATE, json!({ "name": "  deploy bot " }))
        .await;
    assert_no_errors(&body);
    let created = &body["data"]["createApiToken"];
    let token = created["token"].as_str().unwrap();
    let secret = token.strip_prefix("blogql_").expect("the prefix");
    assert!(
        secret.len() >= 43,
        "at least 256 bits of base64url: {token}"
    );
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(created["apiToken"]["name"], "deploy bot");
    assert_eq!(created["apiToken"]["lastUsedAt"], Value::Null);
    assert_ne!(alice.create_token("deploy bot").await, token, "each is new");

    let stored = app
        .sql_strings("SELECT token_hash AS s FROM api_tokens")
        .await;
    assert_eq!(stored.len(), 2);
    assert!(
        stored.contains(&crate::support::sha256_hex(token)),
        "only its SHA-256: {stored:?}"
    );
    let listed = alice
        .graphql("{ apiTokens { id name createdAt } }", json!({}))
        .await;
    assert!(!listed.to_string().contains(secret), "never shown again");

    let script = app.token_client(token);
    assert_eq!(script.me().await.as_deref(), Some("alice"));
    let body = script
        .graphql(
            CREATE_POST,
            json!({ "input": { "title": "From cron", "body": "Nightly" } }),
        )
        .await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["createPost"]["author"]["username"], "alice");
    assert!(
        script
            .send("{ me { id } }", json!({}))
            .await
            .headers()
            .get("set-cookie")
            .is_none(),
        "a token request is given no cookie"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_csrf_rule_guards_cookies_not_tokens() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let token = alice.create_token("script").await;
    let form_like = |client: &reqwest::Client| {
        client
            .post(app.graphql_url())
            .header("content-type", "text/plain")
            .body(r#"{"query":"{ me { username } }"}"#)
    };
    let by_cookie = form_like(&alice.client).send().await.unwrap();
    assert_eq!(
        by_cookie.status(),
        StatusCode::BAD_REQUEST,
        "the cookie needs the rule"
    );
    let by_token = form_like(&reqwest::Client::new())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_token.status(), StatusCode::OK);
    let body: Value = by_token.json().await.unwrap();
    assert_eq!(body["data"]["me"]["username"], "alice");
    // Credentials of another scheme are no token: the cookie still needs the rule.
    let basic = form_like(&alice.client)
        .basic_auth("proxy", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::BAD_REQUEST);
    let get = reqwest::Client::new()
        .get(app.graphql_url())
        .query(&[("query", "{ me { username } }")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body: Value = get.json().await.unwrap();
    assert_eq!(body["data"]["me"]["username"], "alice", "GET too: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_token_and_a_cookie_uses_the_token_alone() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let bob = app.browser();
    bob.register("bob").await;
    let bobs_token = bob.create_token("bob's").await;
    let mixed = |token: &str| {
        alice
            .client
            .post(app.graphql_url())
            .bearer_auth(token)
            .json(&json!({ "query": "{ me { username } }" }))
            .send()
    };
    let body: Value = mixed(&bobs_token).await.unwrap().json().await.unwrap();
    assert_eq!(body["data"]["me"]["username"], "bob");
    let refused = mixed("blogql_not-a-token").await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "never the cookie instead"
    );
    // A sign-out by token ends nothing: not the cookie's session.
    let body: Value = alice
        .client
        .post(app.graphql_url())
        .bearer_auth(&bobs_token)
        .json(&json!({ "query": "mutation { logout }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"]["logout"], false, "{body}");
    assert_eq!(alice.me().await.as_deref(), Some("alice"));
    assert_eq!(
        app.token_client(&bobs_token).me().await.as_deref(),
        Some("bob")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_refuses_the_whole_request_with_401() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let revoked = alice.create_token("old").await;
    let listed = alice.graphql(TOKENS, json!({})).await;
    let id = listed["data"]["apiTokens"][0]["id"].clone();
    let body = alice
        .graphql(
            "mutation($id: ID!) { revokeApiToken(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(body["data"]["revokeApiToken"], true);
    let unknown = format!("blogql_{}", "A".repeat(43));
    for token in [
        revoked.as_str(),
        unknown.as_str(),
        "blogql_short",
        "not-even-ours",
        "",
    ] {
        for accept in ["application/json", "application/graphql-response+json"] {
            let response = reqwest::Client::new()
                .post(app.graphql_url())
                .header("authorization", format!("Bearer {token}"))
                .header("accept", accept)
                .json(&json!({ "query": "{ posts { edges { cursor } } }" }))
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{token:?}, {accept}"
            );
            assert_eq!(
                response.headers()["www-authenticate"],
                r#"Bearer error="invalid_token""#
            );
            let body: Value = response.json().await.unwrap();
            assert_eq!(error_code(&body), "UNAUTHENTICATED");
            assert!(body.get("data").is_none(), "nothing ran: {body}");
        }
    }
    // A token that cannot be one of ours costs no database work to refuse.
    let before = app.statements_executed();
    for token in [
        "blogql_short",
        "not-even-ours",
        &format!("blogql_{}", "+".repeat(43)),
    ] {
        let response = reqwest::Client::new()
            .post(app.graphql_url())
            .bearer_auth(token)
            .json(&json!({ "query": "{ me { id } }" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.statements_executed(), before, "refused by its shape");
    // Another scheme is not ours: a proxy's Basic credentials pass by.
    let basic = reqwest::Client::new()
        .post(app.graphql_url())
        .basic_auth("proxy", Some("secret"))
        .json(&json!({ "query": "{ me { id } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cannot_manage_the_account() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let token = alice.create_token("leaked").await;
    let script = app.token_client(&token);
    let fields = [
        (CREATE, json!({ "name": "another" })),
        ("mutation { revokeApiToken(id: \"1\") }", json!({})),
        (TOKENS, json!({})),
        ("{ sessions { id } }", json!({})),
        ("mutation { revokeSession(id: \"x\") }", json!({})),
        ("mutation { logoutOtherSessions }", json!({})),
        (
            "mutation($input: ChangePasswordInput!) { changePassword(input: $input) }",
            json!({ "input": { "currentPassword": PASSWORD, "newPassword": "a new password" } }),
        ),
    ];
    for (query, variables) in fields {
        let body = script.graphql(query, variables).await;
        assert_eq!(error_code(&body), "FORBIDDEN", "{query}: {body}");
    }
    assert_eq!(
        names(&alice.graphql(TOKENS, json!({})).await),
        ["leaked"],
        "nothing changed"
    );
    assert!(alice.me().await.is_some(), "the owner is still signed in");
    assert_no_errors(&app.browser().login("alice", PASSWORD).await);
    assert_eq!(
        script.me().await.as_deref(),
        Some("alice"),
        "and the token still works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_newest_first_and_revoked_ones_are_gone() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let bob = app.browser();
    bob.register("bob").await;
    let bobs = bob.create_token("bob's").await;
    for name in ["first", "second", "third"] {
        alice.create_token(name).await;
    }
    let listed = alice.graphql(TOKENS, json!({})).await;
    assert_eq!(names(&listed), ["third", "second", "first"]);
    let second = listed["data"]["apiTokens"][1]["id"].clone();
    let revoke = "mutation($id: ID!) { revokeApiToken(id: $id) }";
    let body = alice.graphql(revoke, json!({ "id": second })).await;
    assert_eq!(body["data"]["revokeApiToken"], true);
    let body = alice.graphql(revoke, json!({ "id": second })).await;
    assert_eq!(body["data"]["revokeApiToken"], false, "once");
    assert_eq!(
        names(&alice.graphql(TOKENS, json!({})).await),
        ["third", "first"]
    );

    // Bob's token is not Alice's to revoke.
    let bobs_id = bob.graphql(TOKENS, json!({})).await["data"]["apiTokens"][0]["id"].clone();
    for id in [bobs_id, json!("999999"), json!("nope")] {
        let body = alice.graphql(revoke, json!({ "id": id })).await;
        assert_eq!(body["data"]["revokeApiToken"], false, "{body}");
    }
    assert_eq!(app.token_client(&bobs).me().await.as_deref(), Some("bob"));
    let anonymous = app.browser().graphql(TOKENS, json!({})).await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
}

/// One operation creating twenty tokens: the most mutation fields it may have.
fn twenty_creations() -> String {
    let fields: String = (0..20)
        .map(|n| format!("t{n}: createApiToken(name: \"bulk\") {{ token }} "))
        .collect();
    format!("mutation {{ {fields} }}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_name_is_checked_and_tokens_per_user_are_capped() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    for name in ["", "   ", &"n".repeat(65), "nul\u{0}"] {
        let body = alice.graphql(CREATE, json!({ "name": name })).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{name:?}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "name");
    }
    assert_no_errors(
        &alice
            .graphql(CREATE, json!({ "name": "😀".repeat(64) }))
            .await,
    );
    // Twenty to a request (the mutation bound), up to the cap of 100.
    for _ in 0..5 {
        alice.graphql(&twenty_creations(), json!({})).await;
    }
    assert_eq!(
        app.sql_count("SELECT COUNT(*) AS n FROM api_tokens").await,
        100
    );
    let listed = alice.graphql(TOKENS, json!({})).await;
    assert_eq!(names(&listed).len(), 100, "all listed");
    let body = alice.graphql(CREATE, json!({ "name": "one more" })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("revoke")
    );
    assert_eq!(
        app.sql_count("SELECT COUNT(*) AS n FROM api_tokens").await,
        100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_used_at_is_written_at_most_once_a_minute() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let token = alice.create_token("script").await;
    let script = app.token_client(&token);
    let last_used = || async {
        alice.graphql(TOKENS, json!({})).await["data"]["apiTokens"][0]["lastUsedAt"].clone()
    };
    // Written beside the request: it lands within moments, not within it.
    let changed_from = |before: Value| async move {
        for _ in 0..100 {
            let now = last_used().await;
            if now != before {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("lastUsedAt stayed {before}");
    };
    assert_eq!(last_used().await, Value::Null);
    script.me().await;
    let first = changed_from(Value::Null).await;
    assert!(first.is_string(), "written at first use");
    for _ in 0..5 {
        script.me().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(last_used().await, first, "not a write per request");
    // A minute later (moved back, not waited for), the next use writes it.
    app.sql_execute(
        "UPDATE api_tokens SET created_at = '2026-01-01 00:00:00', \
         last_used_at = '2026-01-01 00:00:00'",
    )
    .await;
    let moved = last_used().await;
    // (A remembered copy of the token still says "just now" until it is
    // read again.)
    let written = || async {
        script.me().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        last_used().await != moved
    };
    assert!(app.sees_unannounced_change(written).await, "written again");
    let now = changed_from(moved.clone()).await;
    assert!(instant(&now) > instant(&moved), "{moved} then {now}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_follows_its_owners_role_and_ends_with_a_password_change_unless_kept() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root").await;
    let bob = app.browser();
    let bob_id = bob.register("bob").await;
    let script = app.token_client(&bob.create_token("bob's").await);
    let users = "{ users { edges { node { username } } } }";
    assert_eq!(
        error_code(&script.graphql(users, json!({})).await),
        "FORBIDDEN"
    );
    let promote = admin
        .graphql(
            "mutation($id: ID!) { setUserRole(userId: $id, role: ADMIN) { role } }",
            json!({ "id": bob_id }),
        )
        .await;
    assert_no_errors(&promote);
    assert_no_errors(&script.graphql(users, json!({})).await);
    let demote = admin
        .graphql(
            "mutation($id: ID!) { setUserRole(userId: $id, role: USER) { role } }",
            json!({ "id": bob_id }),
        )
        .await;
    assert_no_errors(&demote);
    assert_eq!(
        error_code(&script.graphql(users, json!({})).await),
        "FORBIDDEN",
        "demoted at the next request"
    );

    // Whoever had the password for a minute may have made a token: a
    // password change revokes them all, unless asked to keep them.
    let bob = app.browser();
    assert_no_errors(&bob.login("bob", PASSWORD).await);
    let kept = app.token_client(&bob.create_token("kept").await);
    let change = "mutation($input: ChangePasswordInput!) { changePassword(input: $input) }";
    let changed = bob
        .graphql(
            change,
            json!({ "input": { "currentPassword": PASSWORD, "newPassword": "another password" } }),
        )
        .await;
    assert_no_errors(&changed);
    for revoked in [&script, &kept] {
        let response = revoked.send("{ me { username } }", json!({})).await;
        assert_eq!(response.status(), 401, "revoked by the password change");
    }
    let kept = app.token_client(&bob.create_token("kept").await);
    let changed = bob
        .graphql(
            change,
            json!({ "input": {
                "currentPassword": "another password",
                "newPassword": "a third password",
                "revokeApiTokens": false
            } }),
        )
        .await;
    assert_no_errors(&changed);
    assert_eq!(kept.me().await.as_deref(), Some("bob"), "kept when asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creations_racing_past_the_cap_are_taken_back() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let bulk = twenty_creations();
    for _ in 0..4 {
        alice.graphql(&bulk, json!({})).await;
    }
    // 80 held; four requests of twenty at once ask for 80 more.
    let racing: Vec<_> = (0..4).map(|_| alice.graphql(&bulk, json!({}))).collect();
    futures_util::future::join_all(racing).await;
    let held = app.sql_count("SELECT COUNT(*) AS n FROM api_tokens").await;
    assert!((80..=100).contains(&held), "{held} tokens");
    let listed = alice.graphql(TOKENS, json!({})).await;
    assert_eq!(names(&listed).len() as i64, held, "every one listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_of_tokens_and_sessions_weigh_what_they_can_return() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    for field in ["apiTokens { id }", "sessions { id }"] {
        let aliased: String = (0..60).map(|n| format!("a{n}: {field} ")).collect();
        let body = alice.graphql(&format!("{{ {aliased} }}"), json!({})).await;
        assert_eq!(
            error_code(&body),
            "GRAPHQL_VALIDATION_FAILED",
            "{field}: {body}"
        );
        let one = alice.graphql(&format!("{{ {field} }}"), json!({})).await;
        assert_no_errors(&one);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_request_never_waits_to_record_its_use() {
    // Well under the time a held-up write waits (5 s on SQLite, 3 s on
    // PostgreSQL) before it fails.
    let app = TestApp::spawn_with(&[("BLOGQL_REQUEST_TIMEOUT", "2s")]).await;
    let alice = app.browser();
    alice.register("alice").await;
    let script = app.token_client(&alice.create_token("script").await);
    let held = app.hold_writes("api_tokens").await;
    // Its first use is due to be recorded, and cannot be for now.
    assert_eq!(
        script.me().await.as_deref(),
        Some("alice"),
        "answered in time"
    );
    drop(held);
}
