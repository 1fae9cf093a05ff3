//! Writing and reading posts; pagination; the DataLoader.

use serde_json::{Value, json};

use crate::support::{TestApp, assert_no_errors, error_code};

const PAGE: &str = "query($first: Int, $after: String) {
    posts(first: $first, after: $after) {
        edges { cursor node { id title } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
}";

fn titles(body: &Value) -> Vec<String> {
    assert_no_errors(body);
    body["data"]["posts"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"]["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_post_trims_the_title_and_credits_the_session_user() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    let user_id = alice.register("alice").await;
    let body = alice.create_post_with("  Hello, world  ", "First!\n").await;
    assert_no_errors(&body);
    let post = &body["data"]["createPost"];
    assert_eq!(post["title"], "Hello, world");
    assert_eq!(post["body"], "First!\n", "the body is stored as given");
    assert_eq!(post["author"]["id"], user_id.as_str());
    let id = post["id"].as_str().unwrap();
    let read = alice
        .graphql(
            "query($id: ID!) { post(id: $id) { title author { username } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(read["data"]["post"]["author"]["username"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_post_enforces_the_validation_rules() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let cases = [
        ("   ", "body", "title"),
        (&"t".repeat(201), "body", "title"),
        ("nul\0", "body", "title"),
        ("title", "", "body"),
        ("title", &"b".repeat(50_001), "body"),
        ("title", "nul\0", "body"),
    ];
    for (title, body_text, field) in cases {
        let body = alice.create_post_with(title, body_text).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field);
    }
    assert_eq!(app.sql_count("SELECT COUNT(*) AS n FROM posts").await, 0);
    // Limits count characters: 200 and 50,000 four-byte characters fit.
    let body = alice
        .create_post_with(&format!("  {}  ", "😀".repeat(200)), &"😀".repeat(50_000))
        .await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["createPost"]["title"], "😀".repeat(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_post_ids_are_null() {
    let app = TestApp::spawn().await;
    let reader = app.browser();
    for id in ["999999", "not-an-id", ""] {
        let body = reader
            .graphql(
                "query($id: ID!) { post(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        assert_no_errors(&body);
        assert_eq!(body["data"]["post"], Value::Null);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_newest_first_without_duplicates_or_gaps() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    for n in 1..=5 {
        alice.create_post(&format!("post {n}"), "b").await;
    }
    let first = alice.graphql(PAGE, json!({ "first": 2 })).await;
    assert_eq!(titles(&first), ["post 5", "post 4"]);
    let info = &first["data"]["posts"]["pageInfo"];
    assert_eq!(info["hasNextPage"], true);
    assert_eq!(info["hasPreviousPage"], false);
    assert_eq!(
        info["startCursor"],
        first["data"]["posts"]["edges"][0]["cursor"]
    );
    // New posts arrive between pages: the next pages neither repeat nor skip.
    alice.create_post("post 6", "b").await;
    let second = alice
        .graphql(PAGE, json!({ "first": 2, "after": info["endCursor"] }))
        .await;
    assert_eq!(titles(&second), ["post 3", "post 2"]);
    assert_eq!(second["data"]["posts"]["pageInfo"]["hasPreviousPage"], true);
    let cursor = &second["data"]["posts"]["pageInfo"]["endCursor"];
    let third = alice
        .graphql(PAGE, json!({ "first": 2, "after": cursor }))
        .await;
    assert_eq!(titles(&third), ["post 1"]);
    let info = &third["data"]["posts"]["pageInfo"];
    assert_eq!(info["hasNextPage"], false);
    // The default page size is 20 and the newest post leads.
    let all = alice.graphql(PAGE, json!({})).await;
    assert_eq!(titles(&all).len(), 6);
    assert_eq!(titles(&all)[0], "post 6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_arguments_out_of_range_are_bad_user_input() {
    let app = TestApp::spawn().await;
    let reader = app.browser();
    for (variables, field) in [
        (json!({ "first": 0 }), "first"),
        (json!({ "first": 101 }), "first"),
        (json!({ "first": -5 }), "first"),
        (json!({ "after": "not a cursor" }), "after"),
    ] {
        let body = reader.graphql(PAGE, variables).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field);
    }
    assert_no_errors(&reader.graphql(PAGE, json!({ "first": 100 })).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_posts_lists_only_that_authors_posts() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    alice.create_post("by alice", "b").await;
    let bob = app.browser();
    bob.register("bob").await;
    bob.create_post("by bob 1", "b").await;
    bob.create_post("by bob 2", "b").await;
    let body = bob
        .graphql("{ me { posts(first: 1) { edges { node { title author { username } } } pageInfo { hasNextPage endCursor } } } }", json!({}))
        .await;
    assert_no_errors(&body);
    let posts = &body["data"]["me"]["posts"];
    assert_eq!(posts["edges"][0]["node"]["title"], "by bob 2");
    assert_eq!(posts["pageInfo"]["hasNextPage"], true);
    let next = bob
        .graphql(
            "query($after: String) { me { posts(after: $after) { edges { node { title } } pageInfo { hasNextPage } } } }",
            json!({ "after": posts["pageInfo"]["endCursor"] }),
        )
        .await;
    let edges = next["data"]["me"]["posts"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0]["node"]["title"], "by bob 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_100_posts_by_100_authors_costs_two_statements_then_none() {
    let app = TestApp::spawn().await;
    let registrations = (0..100u8).map(|n| {
        let app = &app;
        async move {
            // 25 authors per address: under the registration limit.
            let author = app.browser_from(10 + n / 25);
            author.register(&format!("author{n:03}")).await;
            author.create_post(&format!("post {n}"), "b").await;
        }
    });
    futures_util::future::join_all(registrations).await;
    let query = "{ posts(first: 100) { edges { node { id title author { id username } } } } }";
    let reader = app.browser();
    let mut costs = Vec::new();
    for _ in 0..3 {
        let before = app.statements_executed();
        let body = reader.graphql(query, json!({})).await;
        let cost = app.statements_executed() - before;
        let edges = body["data"]["posts"]["edges"].as_array().expect("edges");
        assert_eq!(edges.len(), 100);
        let authors: std::collections::HashSet<_> = edges
            .iter()
            .map(|e| e["node"]["author"]["username"].clone())
            .collect();
        assert_eq!(authors.len(), 100, "100 different authors");
        costs.push(cost);
    }
    // The page, then one batch for all authors; then, where the bus hears
    // every instance (PostgreSQL, Redis), the page is remembered.
    let expected = if app.on_postgres() || app.on_redis() {
        [2, 0, 0]
    } else {
        [2, 2, 2]
    };
    assert_eq!(costs, expected, "statements per request");
}
