//! Spawns the real server on port 0 with a database of its own, and talks to
//! it the way a browser does: over HTTP, with a cookie jar.
//!
//! The database is a fresh SQLite file, or, when `BLOGQL_TEST_DATABASE_URL`
//! names a PostgreSQL server, a freshly created database on it (dropped
//! when the test ends).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use blogql::config::Config;
use blogql::db::{DatabaseUrl, Db, Pools};
use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::Sqlite;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A password every test user has unless a test says otherwise.
pub const PASSWORD: &str = "correct horse battery";

/// A database for one test (or for several servers in one test).
pub struct TestDatabase {
    pub url: DatabaseUrl,
    /// For PostgreSQL: the server URL and the database name to drop.
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A new, empty database.
    pub async fn new() -> Arc<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        match std::env::var("BLOGQL_TEST_DATABASE_URL") {
            Ok(server) if !server.is_empty() => {
                let name = format!(
                    "blogql_test_{}_{}_{:08x}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed),
                    rand::random::<u32>()
                );
                let mut conn = AsyncPgConnection::establish(&server)
                    .await
                    .expect("BLOGQL_TEST_DATABASE_URL must name a reachable PostgreSQL server");
                conn.batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create the test database");
                let (base, _) = server.rsplit_once('/').expect("a postgres URL has a path");
                let url = format!("{base}/{name}");
                Arc::new(Self {
                    url: url.parse().expect("a postgres URL"),
                    postgres: Some((server, name)),
                    _dir: None,
                })
            }
            _ => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let path = dir.path().join("blogql.db");
                Arc::new(Self {
                    url: DatabaseUrl::Sqlite(path.display().to_string()),
                    postgres: None,
                    _dir: Some(dir),
                })
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((server, name)) = self.postgres.take() else {
            return;
        };
        // Drop cannot await: drop the database from a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                if let Ok(mut conn) = AsyncPgConnection::establish(&server).await {
                    let _ = conn
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
            Ok::<_, std::io::Error>(())
        })
        .join();
    }
}

/// The settings a test server starts from; tests change what they need.
pub fn test_config(database: &TestDatabase) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().expect("an address"),
        database_url: database.url.clone(),
        cookie_secure: false,
        cors_origins: Vec::new(),
        session_idle_timeout: Duration::from_secs(7 * 24 * 3600),
        session_absolute_timeout: Duration::from_secs(30 * 24 * 3600),
        trusted_proxies: Vec::new(),
        introspection: true,
    }
}

/// A running server and a browser-like client for it.
pub struct TestApp {
    pub address: SocketAddr,
    pub database: Arc<TestDatabase>,
    pub db: Db,
    /// The default "browser": keeps cookies like a browser does.
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// A server with default settings on a new database.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// A server on a new database, with settings changed by `configure`.
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_on(TestDatabase::new().await, configure).await
    }

    /// A server on an existing database (a restart, or a second instance).
    pub async fn spawn_on(
        database: Arc<TestDatabase>,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        let mut config = test_config(&database);
        configure(&mut config);
        let app = blogql::App::build(&config)
            .await
            .expect("the server starts");
        let db = app.db.clone();
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .expect("bind port 0");
        let address = listener.local_addr().expect("a local address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(listener, async {
            let _ = stop.await;
        }));
        let (client, jar) = browser();
        TestApp {
            address,
            database,
            db,
            client,
            jar,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("the server task")
                .expect("the server stops cleanly");
        }
    }

    /// `http://127.0.0.1:PORT/graphql`
    pub fn graphql_url(&self) -> String {
        format!("http://{}/graphql", self.address)
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A second, independent browser with an empty cookie jar.
    pub fn new_browser(&self) -> (reqwest::Client, Arc<Jar>) {
        browser()
    }

    /// Runs an operation from the default browser; the response body.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.graphql_as(&self.client, query, variables).await
    }

    /// Runs an operation from `client`; the response body.
    pub async fn graphql_as(
        &self,
        client: &reqwest::Client,
        query: &str,
        variables: Value,
    ) -> Value {
        let response = client
            .post(self.graphql_url())
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("the server answers");
        response.json().await.expect("a JSON body")
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

    /// Runs an operation with exactly this `Cookie` header (no jar); the body.
    pub async fn graphql_with_cookie(&self, cookie: &str, query: &str) -> Value {
        reqwest::Client::new()
            .post(self.graphql_url())
            .header("cookie", cookie)
            .json(&json!({ "query": query }))
            .send()
            .await
            .expect("the server answers")
            .json()
            .await
            .expect("a JSON body")
    }

    /// Registers `username` with [`PASSWORD`] in the default browser.
    pub async fn register(&self, username: &str) -> Value {
        self.register_as(&self.client, username, PASSWORD).await
    }

    /// Registers from `client`; the response body.
    pub async fn register_as(
        &self,
        client: &reqwest::Client,
        username: &str,
        password: &str,
    ) -> Value {
        self.graphql_as(
            client,
            "mutation($input: RegisterInput!) { register(input: $input) { id username role createdAt } }",
            json!({ "input": { "username": username, "password": password } }),
        )
        .await
    }

    /// Logs in from `client`; the response body.
    pub async fn login_as(
        &self,
        client: &reqwest::Client,
        username: &str,
        password: &str,
    ) -> Value {
        self.graphql_as(
            client,
            "mutation($input: LoginInput!) { login(input: $input) { id username } }",
            json!({ "input": { "username": username, "password": password } }),
        )
        .await
    }

    /// Creates a post from the default browser; the response body.
    pub async fn create_post(&self, title: &str, body: &str) -> Value {
        self.create_post_as(&self.client, title, body).await
    }

    /// Creates a post from `client`; the response body.
    pub async fn create_post_as(&self, client: &reqwest::Client, title: &str, body: &str) -> Value {
        self.graphql_as(
            client,
            "mutation($input: CreatePostInput!) { createPost(input: $input) { id title body author { id username } createdAt } }",
            json!({ "input": { "title": title, "body": body } }),
        )
        .await
    }

    /// The signed-in username seen by the default browser, if any.
    pub async fn me(&self) -> Option<String> {
        let body = self.graphql("{ me { username } }", json!({})).await;
        assert_no_errors(&body);
        body["data"]["me"]["username"].as_str().map(str::to_owned)
    }

    /// The `sid` value the default browser holds, if any.
    pub fn session_cookie(&self) -> Option<String> {
        session_cookie(&self.jar, self.address)
    }

    /// Runs a query returning one integer column `n` (as BIGINT) on the
    /// server's database: to look behind the API.
    pub async fn sql_count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let rows: Vec<Row> = self.sql_rows(sql).await;
        rows.into_iter().next().map_or(0, |row| row.n)
    }

    /// Runs a query returning one text column `s`.
    pub async fn sql_strings(&self, sql: &str) -> Vec<String> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            s: String,
        }
        let rows: Vec<Row> = self.sql_rows(sql).await;
        rows.into_iter().map(|row| row.s).collect()
    }

    async fn sql_rows<R>(&self, sql: &str) -> Vec<R>
    where
        R: QueryableByName<Sqlite> + QueryableByName<Pg> + Send + 'static,
    {
        let query = diesel::sql_query(sql);
        match self.db.pools() {
            Pools::Sqlite { reads, .. } => {
                let mut conn = reads.get().await.expect("a connection");
                query.load(&mut *conn).await.expect("the query runs")
            }
            Pools::Postgres(pool) => {
                let mut conn = pool.get().await.expect("a connection");
                query.load(&mut *conn).await.expect("the query runs")
            }
        }
    }
}

/// A client that stores cookies the way a browser does.
pub fn browser() -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .build()
        .expect("an HTTP client");
    (client, jar)
}

/// The `sid` value in `jar` for the server at `address`.
pub fn session_cookie(jar: &Jar, address: SocketAddr) -> Option<String> {
    let url = format!("http://{address}/graphql").parse().expect("a URL");
    let header = jar.cookies(&url)?;
    header
        .to_str()
        .ok()?
        .split("; ")
        .find_map(|pair| pair.strip_prefix("sid="))
        .map(str::to_owned)
}

/// The `Set-Cookie` header for `sid` in a response, if any.
pub fn set_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("sid="))
        .map(str::to_owned)
}

/// Fails the test with the body if it carries errors.
pub fn assert_no_errors(body: &Value) {
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
}

/// The `extensions.code` of the first error.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code: {body}"))
}
