//! The real server, spawned in the test's process on port 0, and the
//! actors that talk to it.

use std::net::SocketAddr;
use std::sync::Arc;

use blogql::config::{Cli, Config};
use blogql::db::Db;
use clap::{CommandFactory, FromArgMatches};
use tokio::sync::oneshot;

use super::{Browser, Store, TestDatabase, TokenClient};

/// A running server.
pub struct TestApp {
    pub address: SocketAddr,
    /// Where `GET /metrics` is served, with `BLOGQL_METRICS_BIND` set.
    pub metrics_address: Option<SocketAddr>,
    pub database: Arc<TestDatabase>,
    /// For the peeks behind the API (`peek.rs`).
    pub(super) db: Db,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// The settings a server on `database` runs with: the defaults, changed by
/// `settings` given as `(name, value)` under the names of the README's
/// settings table (`BLOGQL_SESSION_IDLE_TIMEOUT`, …), and checked as the
/// program checks them. The environment is ignored: a developer's
/// `REDIS_URL` must not move a test's sessions.
pub(super) fn config(database: &TestDatabase, settings: &[(&str, &str)]) -> Config {
    let mut args = vec!["blogql".to_owned(), "--bind".into(), "127.0.0.1:0".into()];
    let database = database.env();
    let given = database
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .chain(settings.iter().copied());
    for (name, value) in given {
        // The flag of each setting is its name without `BLOGQL_`, in
        // lower case with hyphens (`--session-idle-timeout`).
        let flag = name.strip_prefix("BLOGQL_").unwrap_or(name);
        args.push(format!("--{}", flag.to_lowercase().replace('_', "-")));
        args.push(value.to_owned());
    }
    let matches = Cli::command()
        .mut_args(|arg| arg.env(None::<&str>))
        .try_get_matches_from(&args)
        .unwrap_or_else(|err| panic!("test settings {args:?}: {err}"));
    let cli = Cli::from_arg_matches(&matches).expect("the settings parse");
    cli.settings
        .validate()
        .unwrap_or_else(|err| panic!("test settings: {err}"))
}

impl TestApp {
    /// A server with default settings on a new database.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// A server on a new database with `settings` changed, each given as
    /// `(name, value)` under its README name:
    /// `&[("BLOGQL_SESSION_IDLE_TIMEOUT", "2s")]`.
    pub async fn spawn_with(settings: &[(&str, &str)]) -> TestApp {
        Store::from_env().spawn_with(settings).await
    }

    /// A server on an existing database (a restart, or a second instance).
    pub async fn spawn_on(database: Arc<TestDatabase>, settings: &[(&str, &str)]) -> TestApp {
        let config = config(&database, settings);
        let app = blogql::App::build(&config)
            .await
            .expect("the server starts");
        let db = app.db.clone();
        let metrics_address = app.metrics_address();
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .expect("bind port 0");
        let address = listener.local_addr().expect("a local address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(listener, async {
            let _ = stop.await;
        }));
        TestApp {
            address,
            metrics_address,
            database,
            db,
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
        self.url("/graphql")
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A new browser with an empty cookie jar.
    pub fn browser(&self) -> Browser {
        Browser::new(self.address, reqwest::Client::builder())
    }

    /// A browser on another machine: it connects from loopback address
    /// `127.0.0.N` (every one of them reaches the server), so that
    /// per-address limits count it apart from the others.
    pub fn browser_from(&self, n: u8) -> Browser {
        let from = std::net::IpAddr::from([127, 0, 0, n]);
        Browser::new(self.address, reqwest::Client::builder().local_address(from))
    }

    /// A browser behind a proxy that says the client is `forwarded_for`
    /// (an `X-Forwarded-For` header on every request).
    pub fn browser_forwarded_for(&self, forwarded_for: &str) -> Browser {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            forwarded_for.parse().expect("a header value"),
        );
        Browser::new(
            self.address,
            reqwest::Client::builder().default_headers(headers),
        )
    }

    /// A client without a cookie jar that sends exactly `Cookie: {cookie}`
    /// on every request: a replayed or planted cookie, or (with `""`) a
    /// script that keeps no cookies.
    pub fn cookie_replay(&self, cookie: &str) -> Browser {
        Browser::replaying(self.address, cookie)
    }

    /// A script sending `token`.
    pub fn token_client(&self, token: &str) -> TokenClient {
        TokenClient::new(self.address, token)
    }
}

/// One scrape of `GET /metrics`: each sample by its series as the
/// exposition writes it (`name{label="value",…}`).
pub struct Scrape(pub std::collections::HashMap<String, f64>);

impl Scrape {
    /// Reads the Prometheus text format at `address`.
    pub async fn at(address: SocketAddr) -> Self {
        let text = reqwest::get(format!("http://{address}/metrics"))
            .await
            .expect("the metrics listener answers")
            .error_for_status()
            .expect("GET /metrics succeeds")
            .text()
            .await
            .expect("a text body");
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (series, value) = line
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("a sample: {line}"));
                let value = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
                (series.to_owned(), value)
            })
            .collect();
        Self(samples)
    }

    /// The sample of `series`, which must be exposed.
    pub fn get(&self, series: &str) -> f64 {
        *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("no {series} among {:?}", self.0.keys()))
    }
}

impl TestApp {
    /// One scrape of this server's `GET /metrics`.
    pub async fn scrape(&self) -> Scrape {
        Scrape::at(self.metrics_address.expect("BLOGQL_METRICS_BIND is set")).await
    }
}
