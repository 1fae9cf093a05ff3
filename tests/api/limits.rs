//! Depth, complexity and body-size bounds; introspection.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{HONEST_PAGE, TestApp, assert_no_errors, first_message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_page_of_100_posts_with_every_field_is_accepted() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    browser.register("alice").await;
    browser.create_post("t", "b").await;
    let body = browser.graphql(HONEST_PAGE, json!({})).await;
    assert_no_errors(&body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_is_refused_before_touching_the_database() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    let mut query = String::from("id");
    for _ in 0..30 {
        query = format!("posts(first: 1) {{ edges {{ node {{ author {{ {query} }} }} }} }}");
    }
    let query = format!("{{ {query} }}");
    let before = app.statements_executed();
    let body = browser.graphql(&query, json!({})).await;
    assert!(first_message(&body).contains("nested too deep"), "{body}");
    assert_eq!(app.statements_executed(), before, "refused before any SQL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_past_the_depth_limit_is_refused_by_name() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    // Five levels of posts -> author: depth 21, well inside what the parser
    // accepts, so this is the depth limit speaking.
    let mut query = String::from("id");
    for _ in 0..5 {
        query = format!("posts(first: 1) {{ edges {{ node {{ author {{ {query} }} }} }} }}");
    }
    let body = browser.graphql(&format!("{{ {query} }}"), json!({})).await;
    assert!(first_message(&body).contains("nested too deep"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operation_runs_at_most_one_password_hash() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    let body = browser
        .graphql(
            r#"mutation {
                a: register(input: {username: "alias_a", password: "correct horse battery"}) { id }
                b: register(input: {username: "alias_b", password: "correct horse battery"}) { id }
            }"#,
            json!({}),
        )
        .await;
    assert!(first_message(&body).contains("complex"), "{body}");
    assert_eq!(app.sql_count("SELECT COUNT(*) AS n FROM users").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_text_over_100_kib_is_refused_before_parsing() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    let query = format!("{{ {} }}", "me { id } ".repeat(12_000));
    let before = app.statements_executed();
    let body = browser.graphql(&query, json!({})).await;
    assert!(first_message(&body).contains("too complex"), "{body}");
    assert_eq!(app.statements_executed(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_aliased_pages_are_refused() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    let fields: String = (0..1000)
        .map(|n| format!("p{n}: posts(first: 100) {{ edges {{ node {{ id }} }} }} "))
        .collect();
    let before = app.statements_executed();
    let body = browser.graphql(&format!("{{ {fields} }}"), json!({})).await;
    assert!(first_message(&body).contains("complex"), "{body}");
    assert_eq!(app.statements_executed(), before, "refused before any SQL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50k_post_in_a_1_mib_body_fits_and_a_5_mb_body_does_not() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    browser.register("alice").await;
    let query = "mutation($input: CreatePostInput!) { createPost(input: $input) { id } }";
    let mut body = json!({ "query": query, "variables": { "input": { "title": "long", "body": "é".repeat(50_000) } } }).to_string();
    // Pad with JSON whitespace up to just under 1 MiB.
    body.insert_str(1, &" ".repeat(1024 * 1024 - 1 - body.len()));
    assert_eq!(body.len(), 1024 * 1024 - 1);
    let response = browser.post_json_text(body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_no_errors(&response.json().await.unwrap());

    // A 5 MB body is refused on its Content-Length, before it is read.
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n",
        app.address
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(&vec![b' '; 64 * 1024]).await;
    let mut answer = vec![0; 64];
    let read = stream.read(&mut answer).await.unwrap();
    let status_line = String::from_utf8_lossy(&answer[..read]).into_owned();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert_eq!(app.sql_count("SELECT COUNT(*) AS n FROM posts").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_is_on_by_default_and_can_be_turned_off() {
    let query = "{ __schema { queryType { name } } }";
    let app = TestApp::spawn().await;
    let browser = app.browser();
    let body = browser.graphql(query, json!({})).await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
    let closed = TestApp::spawn_with(&[("BLOGQL_INTROSPECTION", "false")]).await;
    let body = closed
        .browser()
        .graphql("{ __schema { types { name } } }", json!({}))
        .await;
    assert_eq!(
        body["data"]["__schema"],
        Value::Null,
        "the schema stays hidden: {body}"
    );
    assert!(!body.to_string().contains("PostConnection"));
}
