//! A database of each test's own: a fresh SQLite file, or, where
//! `BLOGQL_TEST_DATABASE_URL` names a PostgreSQL server, a database created
//! on it for the test and dropped when the test ends. Sessions in Redis
//! get a key prefix of the test's own, deleted at the end too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::backends::{self, PgDatabase};
use super::stores::{self, Store};

/// A database for one test (or for several servers in one test).
pub struct TestDatabase {
    /// `DATABASE_URL` as the server takes it.
    url: String,
    /// Where sessions live when not in the database: a Redis URL and a key
    /// prefix of this database's own.
    redis: Option<(String, String)>,
    postgres: Option<PgDatabase>,
    _dir: Option<tempfile::TempDir>,
}

/// A name no other test of any run uses: `{kind}_{pid}_{n}_{random}`.
fn unique(kind: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{kind}_{}_{}_{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

impl TestDatabase {
    /// A new, empty database, with sessions where the environment says.
    pub async fn new() -> Arc<Self> {
        Self::for_store(Store::from_env()).await
    }

    /// A new, empty database whose servers keep sessions in `store`.
    pub async fn for_store(store: Store) -> Arc<Self> {
        let redis = match store {
            Store::Sql => None,
            Store::Redis => Some(stores::redis_url().expect("BLOGQL_TEST_REDIS_URL is set")),
        };
        Self::create(redis).await
    }

    /// A new, empty database whose servers keep sessions in the Redis at
    /// `redis_url` (a Redis of the test's own).
    pub async fn with_redis_at(redis_url: String) -> Arc<Self> {
        Self::create(Some(redis_url)).await
    }

    async fn create(redis_url: Option<String>) -> Arc<Self> {
        let redis = redis_url.map(|url| (url, unique("bqtest").replace('_', "-")));
        let database = match stores::postgres_server() {
            Some(server) => {
                let postgres = PgDatabase::create(&server, &unique("blogql_test"))
                    .await
                    .unwrap_or_else(|err| panic!("BLOGQL_TEST_DATABASE_URL: {err}"));
                Self {
                    url: postgres.url().to_owned(),
                    redis,
                    postgres: Some(postgres),
                    _dir: None,
                }
            }
            None => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                Self {
                    url: format!("sqlite://{}", dir.path().join("blogql.db").display()),
                    redis,
                    postgres: None,
                    _dir: Some(dir),
                }
            }
        };
        Arc::new(database)
    }

    /// The settings that point a `blogql` process at this database (and
    /// at its Redis key prefix), named as the README names them.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("DATABASE_URL", self.url.clone())];
        if let Some((url, prefix)) = &self.redis {
            env.push(("REDIS_URL", url.clone()));
            env.push(("BLOGQL_REDIS_KEY_PREFIX", prefix.clone()));
        }
        env
    }

    /// The SQLite file, when the database is one.
    pub fn sqlite_path(&self) -> Option<&str> {
        self.url.strip_prefix("sqlite://")
    }

    /// The database's URL, when it is on PostgreSQL.
    pub fn postgres_url(&self) -> Option<&str> {
        self.postgres.as_ref().map(PgDatabase::url)
    }

    /// The database's name and the URL of its server (to connect to
    /// something else than the database itself), when on PostgreSQL.
    pub(super) fn postgres_name_and_server(&self) -> Option<(&str, &str)> {
        self.postgres
            .as_ref()
            .map(|postgres| (postgres.name(), postgres.server_url()))
    }

    /// The Redis URL and key prefix sessions live under, if in Redis.
    pub(super) fn redis(&self) -> Option<(&str, &str)> {
        self.redis
            .as_ref()
            .map(|(url, prefix)| (url.as_str(), prefix.as_str()))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((url, prefix)) = &self.redis {
            backends::delete_redis_keys(url, prefix);
        }
        if let Some(postgres) = &self.postgres {
            let _ = postgres.drop_database_blocking();
        }
    }
}
