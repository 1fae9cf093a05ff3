//! The two ways in, as tests play them: a [`Browser`] keeps a cookie jar,
//! a [`TokenClient`] sends `Authorization: Bearer`. Made by
//! `TestApp::browser`, `browser_from`, `browser_forwarded_for`,
//! `cookie_replay` and `token_client`.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::cookie::{CookieStore as _, Jar};
use serde_json::{Value, json};

use super::{PASSWORD, TestApp, assert_no_errors, error_code};

/// A browser: a cookie jar, and the requests a web app sends. (Or, made by
/// `TestApp::cookie_replay`, a client with no jar and one fixed `Cookie`.)
pub struct Browser {
    /// The client, with its cookie jar, for requests of a test's own making.
    pub client: reqwest::Client,
    jar: Option<Arc<Jar>>,
    address: SocketAddr,
}

impl Browser {
    /// A browser with an empty jar, its client made from `builder`.
    pub(super) fn new(address: SocketAddr, builder: reqwest::ClientBuilder) -> Self {
        let jar = Arc::new(Jar::default());
        let client = builder
            .cookie_provider(jar.clone())
            .build()
            .expect("an HTTP client");
        Self {
            client,
            jar: Some(jar),
            address,
        }
    }

    /// A client without a jar that sends exactly `Cookie: {cookie}`.
    pub(super) fn replaying(address: SocketAddr, cookie: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("cookie", cookie.parse().expect("a header value"));
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("an HTTP client");
        Self {
            client,
            jar: None,
            address,
        }
    }

    fn graphql_url(&self) -> String {
        format!("http://{}/graphql", self.address)
    }

    /// Runs an operation; the raw response.
    pub async fn send(&self, query: &str, variables: Value) -> reqwest::Response {
        self.client
            .post(self.graphql_url())
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("the server answers")
    }

    /// POSTs `body` as given, labelled `application/json`; the raw response.
    pub async fn post_json_text(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.graphql_url())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the server answers")
    }

    /// Runs an operation; the response body.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.send(query, variables)
            .await
            .json()
            .await
            .expect("a JSON body")
    }

    /// Runs an operation that must succeed; the text at `data.{root}.{field}`.
    async fn text_at(&self, query: &str, variables: Value, root: &str, field: &str) -> String {
        let body = self.graphql(query, variables).await;
        assert_no_errors(&body);
        body["data"][root][field]
            .as_str()
            .unwrap_or_else(|| panic!("no {root}.{field} in {body}"))
            .to_owned()
    }

    /// Registers `username` with [`PASSWORD`], which must succeed, and
    /// signs in; the user's id.
    pub async fn register(&self, username: &str) -> String {
        let body = self.register_with(username, PASSWORD).await;
        assert_no_errors(&body);
        body["data"]["register"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no register.id in {body}"))
            .to_owned()
    }

    /// Tries to register `username` with `password`; the response body
    /// (`register { id username role createdAt }`).
    pub async fn register_with(&self, username: &str, password: &str) -> Value {
        self.graphql(
            "mutation($input: RegisterInput!) { register(input: $input) { id username role createdAt } }",
            json!({ "input": { "username": username, "password": password } }),
        )
        .await
    }

    /// Tries to sign in as `username` with `password`; the response body
    /// (`login { id username role }`).
    pub async fn login(&self, username: &str, password: &str) -> Value {
        self.graphql(
            "mutation($input: LoginInput!) { login(input: $input) { id username role } }",
            json!({ "input": { "username": username, "password": password } }),
        )
        .await
    }

    /// The signed-in username, if any.
    pub async fn me(&self) -> Option<String> {
        self.me_and_role().await.map(|(username, _)| username)
    }

    /// The signed-in username and role, if any.
    pub async fn me_and_role(&self) -> Option<(String, String)> {
        let body = self.graphql("{ me { username role } }", json!({})).await;
        assert_no_errors(&body);
        let me = &body["data"]["me"];
        Some((
            me["username"].as_str()?.to_owned(),
            me["role"].as_str()?.to_owned(),
        ))
    }

    /// Publishes a post, which must succeed; its id.
    pub async fn create_post(&self, title: &str, body: &str) -> String {
        self.text_at(
            "mutation($input: CreatePostInput!) { createPost(input: $input) { id } }",
            json!({ "input": { "title": title, "body": body } }),
            "createPost",
            "id",
        )
        .await
    }

    /// Tries to publish a post; the response body
    /// (`createPost { id title body author { id username } createdAt }`).
    pub async fn create_post_with(&self, title: &str, body: &str) -> Value {
        self.graphql(
            "mutation($input: CreatePostInput!) { createPost(input: $input) { id title body author { id username } createdAt } }",
            json!({ "input": { "title": title, "body": body } }),
        )
        .await
    }

    /// Creates an API token named `name`; the token.
    pub async fn create_token(&self, name: &str) -> String {
        self.text_at(
            "mutation($name: String!) { createApiToken(name: $name) { token } }",
            json!({ "name": name }),
            "createApiToken",
            "token",
        )
        .await
    }

    /// The signed-in user's sessions, newest first, which must be listed.
    pub async fn sessions(&self) -> Vec<Value> {
        let body = self
            .graphql(
                "{ sessions { id current createdAt lastSeenAt userAgent ipAddress } }",
                json!({}),
            )
            .await;
        assert_no_errors(&body);
        body["data"]["sessions"]
            .as_array()
            .unwrap_or_else(|| panic!("a list of sessions: {body}"))
            .clone()
    }

    /// The `sid` value the browser holds, if any.
    pub fn session_cookie(&self) -> Option<String> {
        let header = self
            .jar
            .as_ref()?
            .cookies(&self.graphql_url().parse().ok()?)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|pair| pair.strip_prefix("sid="))
            .map(str::to_owned)
    }

    /// Puts `sid={value}` in the browser's jar, as a sibling site could.
    pub fn plant_session_cookie(&self, value: &str) {
        let jar = self.jar.as_ref().expect("a browser with a cookie jar");
        let url = self.graphql_url().parse().expect("a URL");
        jar.add_cookie_str(&format!("sid={value}; Path=/"), &url);
    }
}

/// A script with an API token: no cookie jar, `Authorization: Bearer` on
/// every request. The other actor of the two ways in (see [`Browser`]).
pub struct TokenClient {
    client: reqwest::Client,
    token: String,
    address: SocketAddr,
}

impl TokenClient {
    pub(super) fn new(address: SocketAddr, token: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            token: token.to_owned(),
            address,
        }
    }

    /// Runs an operation; the raw response.
    pub async fn send(&self, query: &str, variables: Value) -> reqwest::Response {
        self.client
            .post(format!("http://{}/graphql", self.address))
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("the server answers")
    }

    /// Runs an operation that the token must authenticate; the response body.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        let response = self.send(query, variables).await;
        assert_eq!(
            response.status(),
            reqwest::StatusCode::OK,
            "the token works"
        );
        response.json().await.expect("a JSON body")
    }

    /// The username the token authenticates.
    pub async fn me(&self) -> Option<String> {
        let body = self.graphql("{ me { username } }", json!({})).await;
        assert_no_errors(&body);
        body["data"]["me"]["username"].as_str().map(str::to_owned)
    }
}

/// Sends `count` wrong guesses of alice's password at once, spread over
/// `apps` in turn; how many were checked (not refused as rate limited).
pub async fn concurrent_guesses(apps: &[&TestApp], count: usize) -> usize {
    let browsers: Vec<Browser> = apps.iter().map(|app| app.browser()).collect();
    let guesses: Vec<_> = (0..count)
        .map(|n| {
            let browser = &browsers[n % browsers.len()];
            let request = browser.client.post(browser.graphql_url()).json(&json!({
                "query": "mutation { login(input: {username: \"alice\", password: \"not the password\"}) { id } }",
            }));
            tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() })
        })
        .collect();
    let mut checked = 0;
    for guess in guesses {
        let body = guess.await.expect("the guess ran");
        match error_code(&body) {
            "INVALID_CREDENTIALS" => checked += 1,
            "RATE_LIMITED" => {}
            other => panic!("unexpected {other}: {body}"),
        }
    }
    checked
}
