//! What blogql runs on during one part of the benchmark: a PostgreSQL
//! database made for the run (on a server on this machine), or a SQLite
//! file; sessions in Redis under a key prefix of the run's own. Creating,
//! dropping and cleaning up go through `tests/support/backends.rs`, shared
//! with the tests.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::BenchResult;
use crate::backends::{self, PgDatabase};

/// PostgreSQL server used when `BLOGQL_BENCH_PG_URL` is unset.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Redis server used when `BLOGQL_BENCH_REDIS_URL` is unset.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Sessions in Redis for one run: the URL and a key prefix of its own,
/// whose keys are deleted when the run ends.
#[derive(Clone, Debug)]
pub struct BenchRedis {
    pub url: String,
    pub prefix: String,
}

impl BenchRedis {
    /// The Redis `BLOGQL_BENCH_REDIS_URL` names, and a prefix of this run.
    pub fn new() -> Self {
        Self {
            url: std::env::var("BLOGQL_BENCH_REDIS_URL")
                .unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned()),
            prefix: format!("bq-bench-{}", std::process::id()),
        }
    }

    /// Deletes the run's keys.
    pub fn clean_up(&self) {
        backends::delete_redis_keys(&self.url, &self.prefix);
    }
}

/// A database blogql runs on during one part of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    /// The name shown in headings and progress lines.
    pub fn label(self) -> &'static str {
        match self {
            Db::Sqlite => "SQLite",
            Db::Postgres => "PostgreSQL",
        }
    }
}

/// Creates `blogql_bench_<pid>_<unix time>` on the PostgreSQL server
/// `BLOGQL_BENCH_PG_URL` names, which must be on this machine.
pub async fn fresh_postgres() -> BenchResult<PgDatabase> {
    let server = std::env::var("BLOGQL_BENCH_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
    if !backends::is_on_this_machine(&server).map_err(|e| format!("BLOGQL_BENCH_PG_URL: {e}"))? {
        bail!("BLOGQL_BENCH_PG_URL must point at this machine (loopback), not {server:?}");
    }
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!("blogql_bench_{}_{secs}", std::process::id());
    let fresh = PgDatabase::create(&server, &name)
        .await
        .map_err(|e| format!("BLOGQL_BENCH_PG_URL ({server}): {e}"))?;
    println!("created PostgreSQL database {name}");
    Ok(fresh)
}
