//! The only code that looks behind the API: SQL on the server's database
//! (on connections of its own, by URL), our Redis keys, the server's
//! statement counter, and `blogql create-admin`'s function. When the
//! server's internals change, this file (and `app.rs`'s `config` and
//! `spawn_on`) is what follows them.

use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::{QueryResult, QueryableByName};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use std::time::Duration;

use super::{PASSWORD, TestApp, assert_no_errors};

/// A connection of the test's own to the server's database.
enum Conn {
    Sqlite(SyncConnectionWrapper<SqliteConnection>),
    Postgres(Box<AsyncPgConnection>),
}

/// Writes to a table held up by another connection (a backup, a migration,
/// a long transaction) until dropped or released: on SQLite the whole
/// file's write lock, on PostgreSQL a lock on the table.
pub struct HeldWrites {
    sqlite: Option<SqliteWriteLock>,
    postgres: Option<AsyncPgConnection>,
}

impl HeldWrites {
    /// Lets the held-up writes go (on PostgreSQL, rolls the holding
    /// transaction back rather than waiting for the server to notice a
    /// closed connection).
    pub async fn release(mut self) {
        if let Some(mut conn) = self.postgres.take() {
            conn.batch_execute("ROLLBACK")
                .await
                .expect("release the lock");
        }
        drop(self.sqlite.take());
    }
}

impl TestApp {
    /// How many SQL statements the server has run so far.
    pub fn statements_executed(&self) -> u64 {
        self.db.statements_executed()
    }

    async fn connect(&self) -> Conn {
        match (self.database.sqlite_path(), self.database.postgres_url()) {
            (Some(path), _) => {
                let mut conn = SyncConnectionWrapper::<SqliteConnection>::establish(path)
                    .await
                    .expect("open the SQLite file");
                // The server may be writing: wait for it as it waits for us.
                conn.batch_execute("PRAGMA busy_timeout = 5000")
                    .await
                    .expect("set a busy timeout");
                Conn::Sqlite(conn)
            }
            (None, Some(url)) => Conn::Postgres(Box::new(
                AsyncPgConnection::establish(url)
                    .await
                    .expect("connect to the test database"),
            )),
            (None, None) => unreachable!("a database is SQLite or PostgreSQL"),
        }
    }

    /// Runs SQL statements on the server's database, outside the API.
    pub async fn sql_execute(&self, sql: &str) {
        let done: QueryResult<()> = match &mut self.connect().await {
            Conn::Sqlite(conn) => conn.batch_execute(sql).await,
            Conn::Postgres(conn) => conn.batch_execute(sql).await,
        };
        done.unwrap_or_else(|err| panic!("{sql}: {err}"));
    }

    /// Runs a query returning one integer column `n` (as BIGINT).
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
        let rows = match &mut self.connect().await {
            Conn::Sqlite(conn) => query.load(conn).await,
            Conn::Postgres(conn) => query.load(&mut **conn).await,
        };
        rows.unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    /// Makes every write to `table` fail, as a locked or read-only database
    /// would, until [`TestApp::allow_writes`].
    pub async fn refuse_writes(&self, table: &str) {
        let sql = if self.on_postgres() {
            format!(
                "CREATE OR REPLACE FUNCTION blogql_test_refuse() RETURNS trigger LANGUAGE plpgsql \
                 AS $$ BEGIN RAISE EXCEPTION 'writes refused by the test'; END $$;
                 CREATE TRIGGER refuse_{table} BEFORE INSERT OR UPDATE OR DELETE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION blogql_test_refuse();"
            )
        } else {
            ["INSERT", "UPDATE", "DELETE"]
                .map(|op| {
                    format!(
                        "CREATE TRIGGER refuse_{table}_{op} BEFORE {op} ON {table} \
                         BEGIN SELECT RAISE(ABORT, 'writes refused by the test'); END;"
                    )
                })
                .join("\n")
        };
        self.sql_execute(&sql).await;
    }

    /// Undoes [`TestApp::refuse_writes`].
    pub async fn allow_writes(&self, table: &str) {
        let sql = if self.on_postgres() {
            format!("DROP TRIGGER refuse_{table} ON {table};")
        } else {
            ["INSERT", "UPDATE", "DELETE"]
                .map(|op| format!("DROP TRIGGER refuse_{table}_{op};"))
                .join("\n")
        };
        self.sql_execute(&sql).await;
    }

    /// Holds up writes to `table` until the guard is dropped or released:
    /// on SQLite the file's write lock, on PostgreSQL an `EXCLUSIVE` lock
    /// on the table (reads go on).
    pub async fn hold_writes(&self, table: &str) -> HeldWrites {
        self.lock(table, "EXCLUSIVE").await
    }

    /// Holds `table` entirely, reads included, as a stuck migration would:
    /// `ACCESS EXCLUSIVE` (PostgreSQL; on SQLite, as [`TestApp::hold_writes`]).
    pub async fn hold_table(&self, table: &str) -> HeldWrites {
        self.lock(table, "ACCESS EXCLUSIVE").await
    }

    async fn lock(&self, table: &str, mode: &str) -> HeldWrites {
        if self.database.sqlite_path().is_some() {
            return HeldWrites {
                sqlite: Some(self.hold_sqlite_write_lock()),
                postgres: None,
            };
        }
        let Conn::Postgres(mut conn) = self.connect().await else {
            unreachable!("not SQLite: PostgreSQL")
        };
        conn.batch_execute(&format!("BEGIN; LOCK TABLE {table} IN {mode} MODE"))
            .await
            .expect("take the lock");
        HeldWrites {
            sqlite: None,
            postgres: Some(*conn),
        }
    }

    /// Another process's hold on the SQLite file's write lock (a backup,
    /// the `sqlite3` shell), until the guard is dropped.
    pub fn hold_sqlite_write_lock(&self) -> SqliteWriteLock {
        SqliteWriteLock::hold(self.database.sqlite_path().expect("a SQLite database"))
    }

    /// Makes the PostgreSQL database read-only for new transactions (or
    /// writable again), and ends the server's connections so that new ones
    /// start with the new default. Runs from a connection to the server's
    /// default database: one to this database would be read-only itself.
    pub async fn set_postgres_read_only(&self, read_only: bool) {
        let (name, server) = self
            .database
            .postgres_name_and_server()
            .expect("a PostgreSQL database");
        let on = if read_only { "on" } else { "off" };
        let sql = format!(
            "ALTER DATABASE \"{name}\" SET default_transaction_read_only = {on}; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid();"
        );
        AsyncPgConnection::establish(server)
            .await
            .expect("connect to the PostgreSQL server")
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }

    /// Whether the server runs on PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.database.postgres_url().is_some()
    }

    /// Whether sessions live in Redis.
    pub fn on_redis(&self) -> bool {
        self.database.redis().is_some()
    }

    /// The keys sessions are stored under (SHA-256 of their IDs), wherever
    /// they live.
    pub async fn stored_session_keys(&self) -> Vec<String> {
        match self.database.redis() {
            None => self.sql_strings("SELECT id_hash AS s FROM sessions").await,
            Some((_, prefix)) => {
                let prefix = format!("{{{prefix}}}:s:");
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
        match self.database.redis() {
            None => self.sql_strings("SELECT data AS s FROM sessions").await,
            Some((_, prefix)) => {
                let mut data = Vec::new();
                for key in self.stored_session_keys().await {
                    let value: String = self.redis(|conn| {
                        redis::cmd("HGET")
                            .arg(format!("{{{prefix}}}:s:{key}"))
                            .arg("d")
                            .query(conn)
                    });
                    data.push(value);
                }
                data
            }
        }
    }

    /// Whether `holds` becomes true after a change made in SQL behind the
    /// API: at once where nothing is remembered (SQLite); within an event's
    /// delivery where the bus carries the database's announcement of it
    /// (PostgreSQL's: polled for a second); else (Redis' bus) once
    /// remembered copies are no longer trusted.
    pub async fn sees_sql_change<F, Fut>(&self, holds: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let bound = if self.on_redis() {
            blogql::cache::TRUSTED_FOR + Duration::from_secs(1)
        } else if self.on_postgres() {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        };
        super::within(bound, holds).await
    }

    /// Whether `holds` becomes true after a change made in SQL that no
    /// event announces: at once where nothing is remembered (SQLite), else
    /// once remembered copies are no longer trusted.
    pub async fn sees_unannounced_change<F, Fut>(&self, holds: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let remembers = self.on_postgres() || self.on_redis();
        let bound = blogql::cache::TRUSTED_FOR + Duration::from_secs(1);
        super::within(if remembers { bound } else { Duration::ZERO }, holds).await
    }

    /// Deletes every session and API token where they are stored, as an
    /// operator's `psql` or `redis-cli` would: no event tells any server.
    pub async fn delete_credentials_behind_its_back(&self) {
        self.sql_execute("DELETE FROM api_tokens").await;
        match self.database.redis() {
            None => self.sql_execute("DELETE FROM sessions").await,
            Some((_, prefix)) => {
                for key in self.stored_session_keys().await {
                    let _: i64 = self.redis(|conn| {
                        redis::cmd("DEL")
                            .arg(format!("{{{prefix}}}:s:{key}"))
                            .query(conn)
                    });
                }
            }
        }
        assert!(self.stored_session_keys().await.is_empty());
    }

    /// The server's Redis keys that start with `{prefix}:` and then `rest`,
    /// each with its time to live in milliseconds.
    pub fn redis_keys(&self, rest: &str) -> Vec<(String, i64)> {
        let (_, prefix) = self.database.redis().expect("sessions in Redis");
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
        let (url, _) = self.database.redis().expect("sessions in Redis");
        let mut conn = redis::Client::open(url)
            .and_then(|client| client.get_connection())
            .expect("the tests' Redis answers");
        command(&mut conn).expect("the Redis command runs")
    }

    /// The server's event-bus connections now (Redis client IDs of the
    /// connection named `blogql-bus-<prefix>`, or PostgreSQL backend PIDs
    /// named `blogql-bus` on this database; none when the bus is
    /// in-process): a new one after [`TestApp::cut_event_bus`] is the bus
    /// reconnected.
    pub async fn event_bus_connections(&self) -> Vec<String> {
        if let Some((_, prefix)) = self.database.redis() {
            let name = format!("name=blogql-bus-{prefix}");
            let clients: String = self.redis(|conn| redis::cmd("CLIENT").arg("LIST").query(conn));
            return clients
                .lines()
                .filter(|line| line.split(' ').any(|field| field == name))
                .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
                .map(str::to_owned)
                .collect();
        }
        if !self.on_postgres() {
            return Vec::new();
        }
        self.sql_strings(
            "SELECT pid::text AS s FROM pg_stat_activity \
             WHERE application_name = 'blogql-bus' AND datname = current_database()",
        )
        .await
    }

    /// Cuts the server's event-bus connections the way a network or an
    /// operator would (`CLIENT KILL ID` in Redis, `pg_terminate_backend`
    /// in PostgreSQL); how many it cut.
    pub async fn cut_event_bus(&self) -> usize {
        let connections = self.event_bus_connections().await;
        for id in &connections {
            if self.database.redis().is_some() {
                let _: i64 = self.redis(|conn| {
                    redis::cmd("CLIENT")
                        .arg("KILL")
                        .arg("ID")
                        .arg(id)
                        .query(conn)
                });
            } else {
                self.sql_execute(&format!("SELECT pg_terminate_backend({id})"))
                    .await;
            }
        }
        connections.len()
    }

    /// A browser signed in as `username`, a new user and an admin, made the
    /// way an operator makes the first admin (`blogql create-admin`'s code).
    pub async fn admin(&self, username: &str) -> super::Browser {
        let config = super::app::config(&self.database, &[]);
        blogql::admin::create_admin(&config, username, |_| Ok(PASSWORD.to_owned()))
            .await
            .expect("create-admin succeeds");
        let admin = self.browser();
        assert_no_errors(&admin.login(username, PASSWORD).await);
        admin
    }
}

/// Another process's hold on a SQLite database's write lock (a backup, the
/// `sqlite3` shell): taken when made, released when dropped.
pub struct SqliteWriteLock {
    release: Option<std::sync::mpsc::Sender<()>>,
    holder: Option<std::thread::JoinHandle<()>>,
}

impl SqliteWriteLock {
    /// Takes the write lock of the database file at `path`.
    fn hold(path: &str) -> Self {
        let path = path.to_owned();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (locked, is_locked) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            use diesel::Connection;
            use diesel::connection::SimpleConnection;
            let mut conn = SqliteConnection::establish(&path).expect("open the file");
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
