//! Automatic persisted queries, as Apollo's link sends them: the hash
//! alone, not found, again with the text, then the hash alone hits; over
//! POST and GET; remembered only once the query validated; shared between
//! instances on Redis.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{TestApp, assert_no_errors, error_code};

fn hash(query: &str) -> String {
    Sha256::digest(query.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn extensions(query: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash(query) } })
}

/// POSTs `body` (JSON) asking for `application/graphql-response+json`;
/// the status and the body.
async fn post(app: &TestApp, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(app.graphql_url())
        .header("accept", "application/graphql-response+json")
        .json(&body)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// GETs `/graphql` with the hash alone in `extensions`.
async fn get_hashed(app: &TestApp, query: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(app.graphql_url())
        .header("apollo-require-preflight", "true")
        .query(&[("extensions", extensions(query).to_string())])
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

const QUERY: &str = "query Newest { posts(first: 1) { edges { node { id } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_is_not_found_then_sent_with_its_text_then_found_alone() {
    let app = TestApp::spawn().await;
    let (status, body) = post(&app, json!({ "extensions": extensions(QUERY) })).await;
    assert_eq!(status, 200, "Apollo's link retries on a 200: {body}");
    assert_eq!(error_code(&body), "PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");
    let (status, body) = get_hashed(&app, QUERY).await;
    assert_eq!(
        (status, error_code(&body)),
        (200, "PERSISTED_QUERY_NOT_FOUND")
    );

    let (status, body) = post(
        &app,
        json!({ "query": QUERY, "extensions": extensions(QUERY) }),
    )
    .await;
    assert_eq!(status, 200);
    assert_no_errors(&body);
    for _ in 0..2 {
        let (status, body) = post(&app, json!({ "extensions": extensions(QUERY) })).await;
        assert_eq!(status, 200);
        assert_no_errors(&body);
        assert!(body["data"]["posts"]["edges"].is_array(), "{body}");
        let (status, body) = get_hashed(&app, QUERY).await;
        assert_eq!(status, 200);
        assert_no_errors(&body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_that_is_not_its_querys_is_refused() {
    let app = TestApp::spawn().await;
    let (status, body) = post(
        &app,
        json!({ "query": "{ me { id } }", "extensions": extensions(QUERY) }),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "BAD_REQUEST"), "{body}");
    for bad in [
        json!({ "persistedQuery": { "version": 2, "sha256Hash": hash(QUERY) } }),
        json!({ "persistedQuery": { "version": 1, "sha256Hash": "not-a-hash" } }),
        json!({ "persistedQuery": "yes" }),
    ] {
        let (status, body) = post(&app, json!({ "extensions": bad })).await;
        assert_eq!((status, error_code(&body)), (400, "BAD_REQUEST"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_query_that_validated_is_remembered() {
    let app = TestApp::spawn().await;
    let invalid = "{ nosuchfield }";
    let (_, body) = post(
        &app,
        json!({ "query": invalid, "extensions": extensions(invalid) }),
    )
    .await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    let (_, body) = post(&app, json!({ "extensions": extensions(invalid) })).await;
    assert_eq!(error_code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_get_and_csrf_rules_apply_to_what_the_hash_stands_for() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    browser.register("alice").await;
    let mutation = "mutation { logout }";
    let remembered: Value = browser
        .post_json_text(
            json!({ "query": mutation, "extensions": extensions(mutation) }).to_string(),
        )
        .await
        .json()
        .await
        .expect("JSON");
    assert_no_errors(&remembered);
    let (status, body) = get_hashed(&app, mutation).await;
    assert_eq!(
        (status, error_code(&body)),
        (405, "METHOD_NOT_ALLOWED"),
        "{body}"
    );
    // A hashed GET without a preflight header is a simple request: refused.
    reqwest::Client::new()
        .post(app.graphql_url())
        .json(&json!({ "query": QUERY, "extensions": extensions(QUERY) }))
        .send()
        .await
        .expect("answered");
    let response = reqwest::Client::new()
        .get(app.graphql_url())
        .query(&[("extensions", extensions(QUERY).to_string())])
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 400);
}

store_tests! {
    async fn instances_share_what_they_remember_on_redis(store) {
        let first = store.spawn().await;
        let second = TestApp::spawn_on(first.database.clone(), &[]).await;
        let (_, body) = post(&first, json!({ "query": QUERY, "extensions": extensions(QUERY) })).await;
        assert_no_errors(&body);
        let (_, body) = post(&second, json!({ "extensions": extensions(QUERY) })).await;
        match store {
            crate::support::Store::Redis => assert_no_errors(&body),
            // Each instance remembers its own; the client sends the text once more.
            crate::support::Store::Sql => {
                assert_eq!(error_code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}")
            }
        }
    }
}
