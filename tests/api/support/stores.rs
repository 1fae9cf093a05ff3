//! Which backends a run has: the database from `BLOGQL_TEST_DATABASE_URL`
//! (SQLite without it), sessions in Redis where `BLOGQL_TEST_REDIS_URL`
//! names one. A test for a backend the run does not have says so on the
//! test output (libtest captures what passing tests print, but not a
//! direct write to stderr).

use std::io::Write as _;
use std::sync::Arc;

use super::{TestApp, TestDatabase};

/// The PostgreSQL server tests make their databases on, if any.
pub(super) fn postgres_server() -> Option<String> {
    std::env::var("BLOGQL_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// The Redis tests keep sessions in, if any.
pub(super) fn redis_url() -> Option<String> {
    std::env::var("BLOGQL_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// A backend some tests need.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    /// The database is a SQLite file (`BLOGQL_TEST_DATABASE_URL` unset).
    Sqlite,
    /// The database is on PostgreSQL (`BLOGQL_TEST_DATABASE_URL`).
    Postgres,
    /// A Redis for sessions (`BLOGQL_TEST_REDIS_URL`).
    Redis,
}

impl Backend {
    /// Whether this run has the backend; if not, writes
    /// `skipped: <test> needs <what>` where the test output shows it.
    /// Use [`require!`] rather than calling this.
    pub fn is_configured_or_say_skipped(self) -> bool {
        let (configured, needs) = match self {
            Backend::Sqlite => (
                postgres_server().is_none(),
                "SQLite (BLOGQL_TEST_DATABASE_URL unset)",
            ),
            Backend::Postgres => (postgres_server().is_some(), "BLOGQL_TEST_DATABASE_URL"),
            Backend::Redis => (redis_url().is_some(), "BLOGQL_TEST_REDIS_URL"),
        };
        if !configured {
            skip(needs);
        }
        configured
    }
}

/// Writes `skipped: <this test> needs <needs>` to stderr, uncaptured.
fn skip(needs: &str) {
    // libtest runs each test on a thread named after it.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "skipped: {test} needs {needs}");
}

/// Where a server keeps its sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// In its database.
    Sql,
    /// In the Redis `BLOGQL_TEST_REDIS_URL` names, under a key prefix of
    /// the test database's own.
    Redis,
}

impl Store {
    /// The store the environment chooses: Redis where
    /// `BLOGQL_TEST_REDIS_URL` is set, the database otherwise.
    pub fn from_env() -> Self {
        if redis_url().is_some() {
            Store::Redis
        } else {
            Store::Sql
        }
    }

    /// A new database whose servers keep sessions in this store.
    pub async fn database(self) -> Arc<TestDatabase> {
        TestDatabase::for_store(self).await
    }

    /// A server with default settings, sessions in this store.
    pub async fn spawn(self) -> TestApp {
        self.spawn_with(&[]).await
    }

    /// A server with `settings` (see [`TestApp::spawn_with`]), sessions in
    /// this store.
    pub async fn spawn_with(self, settings: &[(&str, &str)]) -> TestApp {
        TestApp::spawn_on(self.database().await, settings).await
    }
}
