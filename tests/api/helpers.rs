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

use blogql::config::{Config, RedisConfig};
use blogql::db::{DatabaseUrl, Db, Pools};
use blogql::http::server::ConnectionLimits;
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
    /// Sessions in Redis (`BLOGQL_TEST_REDIS_URL`), under a key prefix of
    /// this database's own.
    pub redis: Option<RedisConfig>,
    /// For PostgreSQL: the server URL and the database name to drop.
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A new, empty database.
    pub async fn new() -> Arc<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let redis = std::env::var("BLOGQL_TEST_REDIS_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .map(|url| RedisConfig {
                url,
                key_prefix: format!(
                    "bqtest-{}-{}-{:08x}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed),
                    rand::random::<u32>()
                ),
            });
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
                    redis,
                    postgres: Some((server, name)),
                    _dir: None,
                })
            }
            _ => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let path = dir.path().join("blogql.db");
                Arc::new(Self {
                    url: DatabaseUrl::Sqlite(path.display().to_string()),
                    redis,
                    postgres: None,
                    _dir: Some(dir),
                })
            }
        }
    }
}

impl TestDatabase {
    /// The settings that point a `blogql` process at this database (and
    /// at its Redis key prefix).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![(
            "DATABASE_URL",
            match &self.url {
                DatabaseUrl::Sqlite(path) => format!("sqlite://{path}"),
                DatabaseUrl::Postgres(url) => url.clone(),
            },
        )];
        if let Some(redis) = &self.redis {
            env.push(("REDIS_URL", redis.url.clone()));
            env.push(("BLOGQL_REDIS_KEY_PREFIX", redis.key_prefix.clone()));
        }
        env
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(redis) = self.redis.take() {
            // Every key has a TTL; this only tidies up sooner.
            if let Ok(mut conn) =
                redis::Client::open(redis.url.as_str()).and_then(|client| client.get_connection())
            {
                let pattern = format!("{{{}}}:*", redis.key_prefix);
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(&pattern)
                    .query(&mut conn)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut conn);
                }
            }
        }
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
        redis: database.redis.clone(),
        cookie_secure: false,
        cors_origins: Vec::new(),
        session_idle_timeout: Duration::from_secs(7 * 24 * 3600),
        session_absolute_timeout: Duration::from_secs(30 * 24 * 3600),
        trusted_proxies: Vec::new(),
        introspection: true,
        connections: ConnectionLimits {
            max_connections: 4096,
            head_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            shutdown_grace: Duration::from_secs(30),
        },
        request_timeout: Duration::from_secs(30),
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
    browser_builder(reqwest::Client::builder())
}

/// A browser on another machine: it connects from loopback address
/// `127.0.0.N` (every one of them reaches the server), so that per-address
/// limits count it apart from the others.
pub fn browser_from(n: u8) -> (reqwest::Client, Arc<Jar>) {
    let address = std::net::Ipv4Addr::new(127, 0, 0, n);
    browser_builder(reqwest::Client::builder().local_address(std::net::IpAddr::V4(address)))
}

fn browser_builder(builder: reqwest::ClientBuilder) -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let client = builder
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

/// The `blogql` binary under test (`BLOGQL_TEST_BIN` names another build,
/// to measure an older one against the same attacks).
pub fn blogql_bin() -> String {
    std::env::var("BLOGQL_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_blogql").to_owned())
}

/// The `blogql` binary, running as a user runs it, under resource limits.
pub struct Process {
    pub address: SocketAddr,
    child: Option<std::process::Child>,
    log: Option<std::thread::JoinHandle<String>>,
    _dir: tempfile::TempDir,
}

impl Process {
    /// Starts `blogql serve` on `database` with `env` under `prlimit`'s
    /// `limits` (`--nofile=256`, `--data=…`), and waits until it answers.
    pub async fn start(database: &TestDatabase, env: &[(&str, &str)], limits: &[&str]) -> Self {
        use std::io::Read;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        let mut command = std::process::Command::new("prlimit");
        command
            .args(limits)
            .arg("--")
            .arg(blogql_bin())
            .current_dir(dir.path())
            .env("BLOGQL_BIND", address.to_string())
            .envs(database.env())
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start blogql under prlimit");
        // Read the log as it comes, so a full pipe never blocks the server.
        let mut stderr = child.stderr.take().expect("a piped stderr");
        let log = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let process = Self {
            address,
            child: Some(child),
            log: Some(log),
            _dir: dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            let ready = client
                .get(process.url("/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("blogql never became ready");
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The process's peak resident memory so far, in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the process is alive");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .expect("VmHWM")
            / 1024
    }

    /// Whether the process is still running.
    #[allow(dead_code)]
    pub fn is_running(&mut self) -> bool {
        matches!(
            self.child.as_mut().map(|child| child.try_wait()),
            Some(Ok(None))
        )
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    }

    /// Waits up to `bound` for the process to exit; its exit code, or
    /// `None` if it was still running (then it is killed).
    pub async fn wait_exit(&mut self, bound: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + bound;
        while tokio::time::Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|child| child.try_wait()) {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Stops the process (if running) and returns everything it logged.
    pub fn log(mut self) -> String {
        self.kill();
        self.log
            .take()
            .and_then(|log| log.join().ok())
            .unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

impl TestApp {
    /// Runs SQL statements on the server's database, outside the API.
    pub async fn sql_execute(&self, sql: &str) {
        match self.db.pools() {
            Pools::Sqlite { writes, .. } => {
                let mut conn = writes.get().await.expect("a connection");
                conn.batch_execute(sql).await.expect("the statements run");
            }
            Pools::Postgres(pool) => {
                let mut conn = pool.get().await.expect("a connection");
                conn.batch_execute(sql).await.expect("the statements run");
            }
        }
    }

    /// Makes every write to `table` fail, as a locked or read-only database
    /// would, until [`TestApp::allow_writes`].
    pub async fn refuse_writes(&self, table: &str) {
        let sql = match self.db.pools() {
            Pools::Sqlite { .. } => ["INSERT", "UPDATE", "DELETE"]
                .map(|op| {
                    format!(
                        "CREATE TRIGGER refuse_{table}_{op} BEFORE {op} ON {table} \
                         BEGIN SELECT RAISE(ABORT, 'writes refused by the test'); END;"
                    )
                })
                .join("\n"),
            Pools::Postgres(_) => format!(
                "CREATE OR REPLACE FUNCTION blogql_test_refuse() RETURNS trigger LANGUAGE plpgsql \
                 AS $$ BEGIN RAISE EXCEPTION 'writes refused by the test'; END $$;
                 CREATE TRIGGER refuse_{table} BEFORE INSERT OR UPDATE OR DELETE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION blogql_test_refuse();"
            ),
        };
        self.sql_execute(&sql).await;
    }

    /// Undoes [`TestApp::refuse_writes`].
    pub async fn allow_writes(&self, table: &str) {
        let sql = match self.db.pools() {
            Pools::Sqlite { .. } => ["INSERT", "UPDATE", "DELETE"]
                .map(|op| format!("DROP TRIGGER refuse_{table}_{op};"))
                .join("\n"),
            Pools::Postgres(_) => format!("DROP TRIGGER refuse_{table} ON {table};"),
        };
        self.sql_execute(&sql).await;
    }

    /// Whether the server runs on PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        matches!(self.database.url, DatabaseUrl::Postgres(_))
    }
}

/// A page of 100 posts with every field: what an honest client may ask for.
pub const HONEST_PAGE: &str = "{ posts(first: 100) {
    edges { cursor node { id title body createdAt author { id username role createdAt } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
} }";

impl TestApp {
    /// Logs in from the default browser as if through a proxy that says
    /// the client is `forwarded_for`; the response body.
    pub async fn login_forwarded_for(
        &self,
        forwarded_for: &str,
        username: &str,
        password: &str,
    ) -> Value {
        self.client
            .post(self.graphql_url())
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({
                "query": "mutation($input: LoginInput!) { login(input: $input) { id } }",
                "variables": { "input": { "username": username, "password": password } },
            }))
            .send()
            .await
            .expect("the server answers")
            .json()
            .await
            .expect("a JSON body")
    }
}

/// Sends `count` wrong guesses of alice's password at once, spread over
/// `apps` in turn; how many were checked (not refused as rate limited).
pub async fn concurrent_guesses(apps: &[&TestApp], count: usize) -> usize {
    let guesses: Vec<_> = (0..count)
        .map(|n| {
            let app = apps[n % apps.len()];
            let request = app.client.post(app.graphql_url()).json(&json!({
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

/// Writes `request` on a new connection to `address` and reads the first
/// answer (up to 8 KiB) as text; the server may stop reading early.
pub async fn raw_exchange(address: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    for part in request.chunks(64 * 1024) {
        if stream.write_all(part).await.is_err() {
            break;
        }
    }
    let mut answer = vec![0u8; 8192];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered within 10 s")
        .expect("a readable answer");
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

/// Another process's hold on a SQLite database's write lock (a backup, the
/// `sqlite3` shell): taken when made, released when dropped.
pub struct SqliteWriteLock {
    release: Option<std::sync::mpsc::Sender<()>>,
    holder: Option<std::thread::JoinHandle<()>>,
}

impl SqliteWriteLock {
    /// Takes the write lock of the database file at `path`.
    pub fn hold(path: &str) -> Self {
        let path = path.to_owned();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (locked, is_locked) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            use diesel::Connection;
            use diesel::connection::SimpleConnection;
            let mut conn = diesel::SqliteConnection::establish(&path).expect("open the file");
            conn.batch_execute("BEGIN IMMEDIATE")
                .expect("take the lock");
            let _ = locked.send(());
            let _ = released.recv();
            let _ = conn.batch_execute("COMMIT");
        });
        is_locked.recv().expect("the lock is held");
        Self {
            release: Some(release),
            holder: Some(holder),
        }
    }
}

impl Drop for SqliteWriteLock {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(holder) = self.holder.take() {
            let _ = holder.join();
        }
    }
}

impl TestApp {
    /// Whether sessions live in Redis.
    pub fn on_redis(&self) -> bool {
        self.database.redis.is_some()
    }

    /// The keys sessions are stored under (SHA-256 of their IDs), wherever
    /// they live.
    pub async fn stored_session_keys(&self) -> Vec<String> {
        match &self.database.redis {
            None => self.sql_strings("SELECT id_hash AS s FROM sessions").await,
            Some(redis) => {
                let prefix = format!("{{{}}}:s:", redis.key_prefix);
                let keys: Vec<String> =
                    self.redis(|conn| redis::cmd("KEYS").arg(format!("{prefix}*")).query(conn));
                keys.into_iter()
                    .filter_map(|key| key.strip_prefix(&prefix).map(str::to_owned))
                    .collect()
            }
        }
    }

    /// What sessions store, wherever they live.
    pub async fn stored_session_data(&self) -> Vec<String> {
        match &self.database.redis {
            None => self.sql_strings("SELECT data AS s FROM sessions").await,
            Some(redis) => {
                let mut data = Vec::new();
                for key in self.stored_session_keys().await {
                    let value: String = self.redis(|conn| {
                        redis::cmd("HGET")
                            .arg(format!("{{{}}}:s:{key}", redis.key_prefix))
                            .arg("d")
                            .query(conn)
                    });
                    data.push(value);
                }
                data
            }
        }
    }

    /// The server's Redis keys that start with `{prefix}:` and then `rest`,
    /// each with its time to live in milliseconds.
    pub fn redis_keys(&self, rest: &str) -> Vec<(String, i64)> {
        let prefix = &self
            .database
            .redis
            .as_ref()
            .expect("sessions in Redis")
            .key_prefix;
        let keys: Vec<String> = self.redis(|conn| {
            redis::cmd("KEYS")
                .arg(format!("{{{prefix}}}:{rest}*"))
                .query(conn)
        });
        keys.into_iter()
            .map(|key| {
                let ttl: i64 = self.redis(|conn| redis::cmd("PTTL").arg(&key).query(conn));
                (key, ttl)
            })
            .collect()
    }

    fn redis<T>(&self, command: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>) -> T {
        let redis = self.database.redis.as_ref().expect("sessions in Redis");
        let mut conn = redis::Client::open(redis.url.as_str())
            .and_then(|client| client.get_connection())
            .expect("BLOGQL_TEST_REDIS_URL answers");
        command(&mut conn).expect("the Redis command runs")
    }
}

/// A browser: a cookie jar, and the headers a web app sends. One actor of
/// the two ways in (the other is [`TokenClient`]).
pub struct Browser {
    /// The client, with its cookie jar.
    pub client: reqwest::Client,
    address: SocketAddr,
}

impl Browser {
    /// Runs an operation; the raw response.
    pub async fn send(&self, query: &str, variables: Value) -> reqwest::Response {
        self.client
            .post(format!("http://{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": variables }))
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

    /// Registers `username` with [`PASSWORD`] and signs in; the user's id.
    pub async fn register(&self, username: &str) -> String {
        self.text_at(
            "mutation($input: RegisterInput!) { register(input: $input) { id } }",
            json!({ "input": { "username": username, "password": PASSWORD } }),
            "register",
            "id",
        )
        .await
    }

    /// Signs in as `username` with `password`; the response body.
    pub async fn login(&self, username: &str, password: &str) -> Value {
        self.graphql(
            "mutation($input: LoginInput!) { login(input: $input) { id username role } }",
            json!({ "input": { "username": username, "password": password } }),
        )
        .await
    }

    /// The signed-in username and role, if any.
    pub async fn me(&self) -> Option<(String, String)> {
        let body = self.graphql("{ me { username role } }", json!({})).await;
        assert_no_errors(&body);
        let me = &body["data"]["me"];
        Some((
            me["username"].as_str()?.to_owned(),
            me["role"].as_str()?.to_owned(),
        ))
    }

    /// Publishes a post; its id.
    pub async fn create_post(&self, title: &str, body: &str) -> String {
        self.text_at(
            "mutation($input: CreatePostInput!) { createPost(input: $input) { id } }",
            json!({ "input": { "title": title, "body": body } }),
            "createPost",
            "id",
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
}

/// A script with an API token: no cookie jar, `Authorization: Bearer` on
/// every request. The other actor of the two ways in (see [`Browser`]).
pub struct TokenClient {
    client: reqwest::Client,
    token: String,
    address: SocketAddr,
}

impl TokenClient {
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

impl TestApp {
    /// A new browser with an empty cookie jar.
    pub fn browser(&self) -> Browser {
        Browser {
            client: browser().0,
            address: self.address,
        }
    }

    /// A script sending `token`.
    pub fn token_client(&self, token: &str) -> TokenClient {
        TokenClient {
            client: reqwest::Client::new(),
            token: token.to_owned(),
            address: self.address,
        }
    }

    /// A browser signed in as `username`, a new user and an admin, made the
    /// way an operator makes the first admin (`blogql create-admin`'s code).
    pub async fn admin(&self, username: &str) -> Browser {
        let config = test_config(&self.database);
        blogql::admin::create_admin(&config, username, |_| Ok(PASSWORD.to_owned()))
            .await
            .expect("create-admin succeeds");
        let admin = self.browser();
        assert_no_errors(&admin.login(username, PASSWORD).await);
        admin
    }
}

/// A `DateTime` the server wrote (RFC 3339), to compare instants.
pub fn instant(value: &Value) -> time::OffsetDateTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a DateTime: {value}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|err| panic!("{text:?} is not RFC 3339: {err}"))
}

/// The hex SHA-256 of `text`: how the server stores an API token.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Writes to a table held up by another connection (a backup, a migration,
/// a long transaction) until dropped: on SQLite the whole file's write
/// lock, on PostgreSQL an `EXCLUSIVE` lock on the table (reads go on).
pub enum HeldWrites {
    Sqlite(#[expect(dead_code, reason = "held until dropped")] SqliteWriteLock),
    Postgres(#[expect(dead_code, reason = "held until dropped")] Box<AsyncPgConnection>),
}

impl TestApp {
    /// Holds up writes to `table` until the guard is dropped.
    pub async fn hold_writes(&self, table: &str) -> HeldWrites {
        match &self.database.url {
            DatabaseUrl::Sqlite(path) => HeldWrites::Sqlite(SqliteWriteLock::hold(path)),
            DatabaseUrl::Postgres(url) => {
                let mut conn = AsyncPgConnection::establish(url)
                    .await
                    .expect("a connection of its own");
                conn.batch_execute(&format!("BEGIN; LOCK TABLE {table} IN EXCLUSIVE MODE"))
                    .await
                    .expect("take the lock");
                HeldWrites::Postgres(Box::new(conn))
            }
        }
    }
}
