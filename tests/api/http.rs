//! The HTTP surface: the CSRF rule, GET, GraphiQL, response formats, CORS,
//! health.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, assert_no_errors, error_code};

const REGISTER: &str = r#"mutation { register(input: {username: "alice", password: "correct horse battery"}) { id } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_content_types_are_refused_by_the_csrf_rule() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    let body = json!({ "query": REGISTER }).to_string();
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ] {
        let mut request = browser.client.post(app.graphql_url()).body(body.clone());
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{content_type:?}"
        );
        let answer: Value = response.json().await.unwrap();
        let message = answer["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("CSRF"),
            "the message names the rule: {message}"
        );
    }
    assert_eq!(
        app.sql_count("SELECT COUNT(*) AS n FROM users").await,
        0,
        "nothing ran"
    );
    // Either preflight header lets the same body through.
    for header in ["apollo-require-preflight", "x-apollo-operation-name"] {
        let response = browser
            .client
            .post(app.graphql_url())
            .header("content-type", "text/plain")
            .header(header, "Register")
            .body(json!({ "query": "{ me { id } }" }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{header}");
        assert_no_errors(&response.json().await.unwrap());
    }
    let response = browser
        .client
        .post(app.graphql_url())
        .json(&json!({ "query": REGISTER }))
        .send()
        .await
        .unwrap();
    assert_no_errors(&response.json().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_runs_queries_with_a_preflight_header() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    browser.register("alice").await;
    let url = format!(
        "{}?query={}",
        app.graphql_url(),
        "%7B%20me%20%7B%20username%20%7D%20%7D"
    );
    let response = browser
        .client
        .get(&url)
        .header("apollo-require-preflight", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["me"]["username"], "alice");
    // Without the header a GET is what a cross-site <img> or link could send.
    let response = browser.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_never_runs_a_mutation() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    let response = browser
        .client
        .get(app.graphql_url())
        .query(&[("query", REGISTER)])
        .header("apollo-require-preflight", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    // Also when the mutation is picked by name from a document with a query.
    let document = format!(
        "query Q {{ me {{ id }} }} mutation M {REGISTER}",
        REGISTER = &REGISTER["mutation ".len()..]
    );
    let response = browser
        .client
        .get(app.graphql_url())
        .query(&[("query", document.as_str()), ("operationName", "M")])
        .header("apollo-require-preflight", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    // A lone named mutation, with and without the preflight header.
    let named = format!("mutation M {}", &REGISTER["mutation ".len()..]);
    for header in [Some("true"), None] {
        let mut request = browser
            .client
            .get(app.graphql_url())
            .query(&[("query", named.as_str())]);
        if let Some(value) = header {
            request = request.header("apollo-require-preflight", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "header {header:?}"
        );
    }
    assert_eq!(app.sql_count("SELECT COUNT(*) AS n FROM users").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_one_request_get_a_graphql_shaped_400() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    for body in [
        "{not json",
        r#"[{"query":"{ me { id } }"},{"query":"{ me { id } }"}]"#,
    ] {
        let response = browser.post_json_text(body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = response.json().await.expect("a JSON error body");
        assert_eq!(error_code(&answer), "BAD_REQUEST", "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_is_served_from_the_binary_under_a_strict_csp() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    let response = browser
        .client
        .get(app.graphql_url())
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(
        !csp.contains("http") && !csp.contains("unsafe-inline"),
        "only our own origin: {csp}"
    );
    let page = response.text().await.unwrap();
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external URL in the page"
    );
    let assets: Vec<&str> = page
        .split(['"', '\''])
        .filter(|part| part.starts_with("/graphiql/"))
        .collect();
    assert!(assets.len() >= 5, "scripts and styles: {assets:?}");
    for asset in assets {
        let response = browser.client.get(app.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
    }
    let init = browser
        .client
        .get(app.url("/graphiql/init.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        init.contains("Apollo-Require-Preflight"),
        "the page's requests pass the CSRF rule"
    );
    assert!(init.contains("same-origin"), "and carry the session cookie");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_follow_graphql_over_http() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    let send = |accept: &'static str, query: &'static str| {
        browser
            .client
            .post(app.graphql_url())
            .header("accept", accept)
            .json(&json!({ "query": query }))
            .send()
    };
    let response = send("application/graphql-response+json", "{ me { id } }")
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/graphql-response+json"
    );
    assert_eq!(response.status(), StatusCode::OK);
    // A request error: 400 with the new media type, 200 with plain JSON.
    let response = send("application/graphql-response+json", "{ nope }")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED");
    let response = send("application/json", "{ nope }").await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.status(), StatusCode::OK);
    let response = send("application/json", "{ me { id ").await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "GRAPHQL_PARSE_FAILED");
    // A field error is still a 200: the operation ran.
    let response = send("application/graphql-response+json", "mutation { logout }")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_credentials_only_for_listed_origins() {
    let app = TestApp::spawn_with(&[("BLOGQL_CORS_ORIGINS", "https://app.example")]).await;
    let browser = app.browser();
    let preflight = |origin: &'static str| {
        browser
            .client
            .request(reqwest::Method::OPTIONS, app.graphql_url())
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    // Without a list, no cross-origin access at all.
    let closed = TestApp::spawn().await;
    let response = closed
        .browser()
        .client
        .post(closed.graphql_url())
        .header("origin", "https://app.example")
        .json(&json!({ "query": "{ me { id } }" }))
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    for path in ["/healthz", "/readyz"] {
        let response = browser.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}
