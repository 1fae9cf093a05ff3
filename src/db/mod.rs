//! The database: a pool for SQLite or PostgreSQL, chosen by `DATABASE_URL`.
//!
//! This is the only module that knows one backend from the other. Queries are
//! written once, inside `with_conn!` (or `with_tx!` for statements that
//! must commit together), which expands the body once per backend: diesel checks each expansion against its own backend, and nobody
//! has to write a function generic over the connection type.
//!
//! Errors: model functions return [`DbError`](crate::db::DbError); what a client sees is decided
//! in `graphql::error`.

pub mod schema;
mod sqlite;

use sqlite::configure_sqlite;
pub use sqlite::{SqliteConn, SqliteWriteConn};

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel::SqliteConnection;
use diesel::connection::InstrumentationEvent;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Pool, PoolError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

/// PostgreSQL advisory lock held while migrating ("blogql" in ASCII).
const MIGRATION_LOCK: i64 = 0x626c_6f67_716c;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Applied to every SQLite connection. WAL lets readers run beside the one
/// writer; `busy_timeout` makes a writer wait for the lock instead of failing.
/// `synchronous = NORMAL` is durable across a crash of the process (not of
/// the machine's power), the usual pairing with WAL.
const SQLITE_SETUP: &str = "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

/// Applied to every PostgreSQL connection: a statement, or a wait for a
/// lock, that takes longer fails instead of holding its pooled connection,
/// so one stuck table cannot take every connection; a transaction left idle
/// is ended by the server.
const POSTGRES_SETUP: &str = "SET statement_timeout = '5s'; SET lock_timeout = '3s'; \
     SET idle_in_transaction_session_timeout = '10s';";

// Connections are recycled without a `SELECT 1` per checkout (a round trip
// on every request); a connection that failed is marked broken by
// diesel-async and dropped by the pool instead.
const SQLITE_READ_POOL_SIZE: usize = 8;
/// SQLite has one writer at a time: our writes queue here, not on the lock.
const SQLITE_WRITE_POOL_SIZE: usize = 1;
/// Connections to PostgreSQL (the benchmark gives pgbench as many).
pub const POSTGRES_POOL_SIZE: usize = 16;
/// How long a request waits for a free connection (or a new one) before failing.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the data lives, parsed from `DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH`: a file, created on first start.
    Sqlite(String),
    /// `postgres://…` or `postgresql://…`, passed to the driver as given.
    Postgres(String),
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://blogql.db".into());
            }
            Ok(Self::Sqlite(path.to_owned()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else {
            Err("expected sqlite://PATH or postgres://USER@HOST/DATABASE".into())
        }
    }
}

/// Never prints a PostgreSQL password.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{path}"),
            Self::Postgres(_) => f.write_str("postgres://…"),
        }
    }
}

/// A failed database operation.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no database connection available: {0}")]
    Pool(#[from] PoolError),
    #[error("query failed: {0}")]
    Query(#[from] diesel::result::Error),
}

/// Why the database could not be opened at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("cannot apply migrations: {0}")]
    Migrate(String),
}

/// The connection pools of one backend.
#[derive(Clone)]
pub enum Pools {
    Sqlite {
        reads: Pool<SqliteConn>,
        writes: Pool<SqliteWriteConn>,
    },
    Postgres(Pool<AsyncPgConnection>),
}

/// The database pool's connections (SQLite's two pools together), for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStatus {
    pub max: usize,
    pub in_use: usize,
    pub idle: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

/// A handle to the database, cheap to clone.
#[derive(Clone)]
pub struct Db {
    url: DatabaseUrl,
    pools: Pools,
    statements: Arc<AtomicU64>,
}

/// Builds a deadpool for either connection type (a macro, not a generic
/// function: the manager's trait bounds are not worth spelling out).
macro_rules! build_pool {
    ($manager:expr, $size:expr) => {
        Pool::builder($manager)
            .max_size($size)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|err| ConnectError::Connect(err.to_string()))
    };
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever
/// backend `$db` uses: `with_conn!(db, conn => …)` for reads,
/// `with_conn!(db, write conn => …)` for statements that write. The body is
/// compiled once per backend, so it must be an expression valid for both;
/// it may use `?` on [`DbError`](crate::db::DbError)s.
macro_rules! with_conn {
    ($db:expr, write $conn:ident => $body:expr) => {
        match $db.pools() {
            $crate::db::Pools::Sqlite { writes, .. } => {
                let mut pooled = writes.get().await.map_err($crate::db::DbError::from)?;
                let $conn = &mut *pooled;
                $body
            }
            $crate::db::Pools::Postgres(pool) => {
                let mut pooled = pool.get().await.map_err($crate::db::DbError::from)?;
                let $conn = &mut *pooled;
                $body
            }
        }
    };
    ($db:expr, $conn:ident => $body:expr) => {
        match $db.pools() {
            $crate::db::Pools::Sqlite { reads, .. } => {
                let mut pooled = reads.get().await.map_err($crate::db::DbError::from)?;
                let $conn = &mut *pooled;
                $body
            }
            $crate::db::Pools::Postgres(pool) => {
                let mut pooled = pool.get().await.map_err($crate::db::DbError::from)?;
                let $conn = &mut *pooled;
                $body
            }
        }
    };
}
pub(crate) use with_conn;

/// Runs `$body` in one transaction on a write connection of whichever
/// backend `$db` uses: `with_tx!(db, conn => { …; Ok(value) })`. The body
/// is an async block's contents returning `Result<_, DbError>`; it is
/// compiled once per backend, and everything in it commits together or not
/// at all.
macro_rules! with_tx {
    ($db:expr, $conn:ident => $body:expr) => {
        match $db.pools() {
            $crate::db::Pools::Sqlite { writes, .. } => {
                let mut pooled = writes.get().await.map_err($crate::db::DbError::from)?;
                diesel_async::AsyncConnection::transaction::<_, $crate::db::DbError, _>(
                    &mut *pooled,
                    async |$conn| $body,
                )
                .await
            }
            $crate::db::Pools::Postgres(pool) => {
                let mut pooled = pool.get().await.map_err($crate::db::DbError::from)?;
                diesel_async::AsyncConnection::transaction::<_, $crate::db::DbError, _>(
                    &mut *pooled,
                    async |$conn| $body,
                )
                .await
            }
        }
    };
}
pub(crate) use with_tx;

impl Db {
    /// Opens a pool for `url` and checks that one connection can be made.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, ConnectError> {
        let statements = Arc::new(AtomicU64::new(0));
        let pools = match url {
            DatabaseUrl::Sqlite(path) => {
                check_sqlite_folder(path)?;
                configure_sqlite();
                let reads = AsyncDieselConnectionManager::new_with_config(
                    path,
                    connection_setup::<SqliteConn>(&statements, Some(SQLITE_SETUP)),
                );
                let writes = AsyncDieselConnectionManager::new_with_config(
                    path,
                    connection_setup::<SqliteWriteConn>(&statements, Some(SQLITE_SETUP)),
                );
                Pools::Sqlite {
                    reads: build_pool!(reads, SQLITE_READ_POOL_SIZE)?,
                    writes: build_pool!(writes, SQLITE_WRITE_POOL_SIZE)?,
                }
            }
            DatabaseUrl::Postgres(url) => {
                let manager = AsyncDieselConnectionManager::new_with_config(
                    url,
                    connection_setup::<AsyncPgConnection>(&statements, Some(POSTGRES_SETUP)),
                );
                Pools::Postgres(build_pool!(manager, POSTGRES_POOL_SIZE)?)
            }
        };
        let db = Self {
            url: url.clone(),
            pools,
            statements,
        };
        db.ping()
            .await
            .map_err(|err| ConnectError::Connect(err.to_string()))?;
        Ok(db)
    }

    /// Applies the migrations this binary embeds that the database lacks.
    pub async fn migrate(&self) -> Result<(), ConnectError> {
        let failed = |err: &dyn fmt::Display| ConnectError::Migrate(err.to_string());
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    use diesel::Connection;
                    let mut conn = SqliteConnection::establish(&path).map_err(|e| failed(&e))?;
                    diesel::connection::SimpleConnection::batch_execute(&mut conn, SQLITE_SETUP)
                        .map_err(|e| failed(&e))?;
                    conn.run_pending_migrations(SQLITE_MIGRATIONS)
                        .map_err(|e| failed(&e))?;
                    Ok(())
                })
                .await
                .map_err(|e| failed(&e))?
            }
            DatabaseUrl::Postgres(url) => {
                let conn = AsyncPgConnection::establish(url)
                    .await
                    .map_err(|e| failed(&e))?;
                tokio::task::spawn_blocking(move || {
                    let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
                    // Instances starting together take turns; the lock ends
                    // with this connection.
                    diesel::connection::SimpleConnection::batch_execute(
                        &mut conn,
                        &format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"),
                    )
                    .map_err(|e| failed(&e))?;
                    conn.run_pending_migrations(POSTGRES_MIGRATIONS)
                        .map_err(|e| failed(&e))?;
                    Ok(())
                })
                .await
                .map_err(|e| failed(&e))?
            }
        }
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<(), DbError> {
        with_conn!(self, conn => conn.batch_execute("SELECT 1").await?);
        Ok(())
    }

    /// Succeeds when the database accepts a write: the readiness probe. A
    /// `DELETE` that matches no row still needs write access (PostgreSQL
    /// refuses it in a read-only transaction; SQLite takes its write lock,
    /// or reports a read-only file), and changes nothing.
    pub async fn check_writable(&self) -> Result<(), DbError> {
        with_conn!(self, write conn => conn
            .batch_execute("DELETE FROM rate_windows WHERE key = ''")
            .await?);
        Ok(())
    }

    /// How many SQL statements this pool has executed so far (set-up excluded).
    pub fn statements_executed(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// The PostgreSQL URL, for a connection of one's own (the event bus's
    /// listener); `None` on SQLite.
    pub fn postgres_url(&self) -> Option<&str> {
        match &self.url {
            DatabaseUrl::Postgres(url) => Some(url),
            DatabaseUrl::Sqlite(_) => None,
        }
    }

    /// The pool's connections now (SQLite's two pools together).
    pub fn pool_status(&self) -> PoolStatus {
        let statuses = match &self.pools {
            Pools::Sqlite { reads, writes } => vec![reads.status(), writes.status()],
            Pools::Postgres(pool) => vec![pool.status()],
        };
        let mut total = PoolStatus::default();
        for status in statuses {
            total.max += status.max_size;
            total.in_use += status.size.saturating_sub(status.available);
            total.idle += status.available;
            total.waiting += status.waiting;
        }
        total
    }

    /// The pool, for `with_conn!`.
    pub fn pools(&self) -> &Pools {
        &self.pools
    }
}

/// Refuses a SQLite database whose folder (or files) this process cannot
/// write: SQLite creates `-wal` and `-shm` files beside the database and
/// maps the latter into memory, and a read-only one ends the process with
/// SIGBUS later instead of failing now.
fn check_sqlite_folder(path: &str) -> Result<(), ConnectError> {
    let file = std::path::Path::new(path);
    let folder = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    let probe = folder.join(format!(
        ".blogql-write-check-{:016x}",
        rand::random::<u64>()
    ));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|err| {
            ConnectError::Connect(format!(
                "the folder {} must be writable (SQLite keeps its -wal and -shm files beside the database): {err}",
                folder.display()
            ))
        })?;
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{path}{suffix}");
        let exists = std::path::Path::new(&path).exists();
        if exists && let Err(err) = std::fs::OpenOptions::new().write(true).open(&path) {
            return Err(ConnectError::Connect(format!(
                "{path} must be writable: {err}"
            )));
        }
    }
    Ok(())
}

/// The current time as stored: UTC without an offset.
pub use crate::clock::stored_now as now;

/// How a pool opens a connection: its set-up statements, if any, then the
/// statement counter (so set-up is not counted).
fn connection_setup<C>(statements: &Arc<AtomicU64>, setup: Option<&'static str>) -> ManagerConfig<C>
where
    C: AsyncConnection + SimpleAsyncConnection + Send + 'static,
{
    let counter = statements.clone();
    let mut config = ManagerConfig::<C>::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |url| {
        let counter = counter.clone();
        let url = url.to_owned();
        async move {
            let mut conn = C::establish(&url).await?;
            if let Some(setup) = setup {
                conn.batch_execute(setup)
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            }
            conn.set_instrumentation(statement_counter(counter));
            Ok(conn)
        }
        .boxed()
    });
    config
}

/// Counts the statements a connection starts: tests prove with it that a page
/// of posts costs a constant number of queries.
fn statement_counter(counter: Arc<AtomicU64>) -> impl FnMut(InstrumentationEvent<'_>) + Send {
    move |event| {
        if let InstrumentationEvent::StartQuery { .. } = event {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}
