//! Throwaway backends shared by the integration tests (`tests/api`) and the
//! load benchmark (`benches/load`): a PostgreSQL database made for one run
//! and dropped after it, and the Redis keys under one run's key prefix.
//!
//! Both include this file with `#[path = "…"] mod backends;`. It knows
//! nothing of blogql's own code, only the drivers, so the clean-up of what
//! a run leaves behind exists once.

#![allow(
    dead_code,
    reason = "each of the two includers uses its own part of this file"
)]

use std::net::IpAddr;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

/// `server` (a PostgreSQL URL) naming the database `name` instead of its
/// own: user, password, host, port and query string (`?sslmode=…`) kept.
pub fn with_database(server: &str, name: &str) -> Result<String, String> {
    let mut url =
        url::Url::parse(server).map_err(|err| format!("{server:?} is not a URL: {err}"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!("{server:?} is not a postgres:// URL"));
    }
    url.set_path(&format!("/{name}"));
    Ok(url.into())
}

/// Whether the PostgreSQL server `url` names is on this machine: a loopback
/// address, `localhost`, or no host (a Unix socket).
pub fn is_on_this_machine(url: &str) -> Result<bool, String> {
    let parsed = url::Url::parse(url).map_err(|err| format!("{url:?} is not a URL: {err}"))?;
    let host = parsed.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(host.is_empty()
        || host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
}

/// A database made on a PostgreSQL server for one run. Dropping this value
/// does not drop the database: call [`PgDatabase::drop_database`] (or
/// [`PgDatabase::drop_database_blocking`] where nothing can await).
#[derive(Debug)]
pub struct PgDatabase {
    /// The server's URL as given (where the database is created and dropped).
    server: String,
    /// The database's name.
    name: String,
    /// The URL of the new database.
    url: String,
}

impl PgDatabase {
    /// Creates the database `name` on the server `server` names.
    pub async fn create(server: &str, name: &str) -> Result<Self, String> {
        let url = with_database(server, name)?;
        let mut conn = AsyncPgConnection::establish(server)
            .await
            .map_err(|err| format!("cannot connect to {server}: {err}"))?;
        conn.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|err| format!("cannot create database {name}: {err}"))?;
        Ok(Self {
            server: server.to_owned(),
            name: name.to_owned(),
            url,
        })
    }

    /// The URL of the database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's URL, as given: a connection there is not to the database.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// Drops the database, ending any connection still open to it.
    pub async fn drop_database(&self) -> Result<(), String> {
        let mut conn = AsyncPgConnection::establish(&self.server)
            .await
            .map_err(|err| format!("cannot connect to drop database {}: {err}", self.name))?;
        let forced = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if conn.batch_execute(&forced).await.is_err() {
            // PostgreSQL before 13 has no FORCE.
            conn.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\"", self.name))
                .await
                .map_err(|err| format!("cannot drop database {}: {err}", self.name))?;
        }
        Ok(())
    }

    /// [`PgDatabase::drop_database`] from a thread and a runtime of its own,
    /// for a `Drop` (which cannot await, and may run inside a runtime).
    pub fn drop_database_blocking(&self) -> Result<(), String> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|err| format!("cannot start a runtime: {err}"))?
                        .block_on(self.drop_database())
                })
                .join()
                .unwrap_or_else(|_| Err("the thread dropping the database panicked".into()))
        })
    }
}

/// Deletes every key under `{prefix}:` on the Redis `url` names. Every key
/// blogql writes has a time to live: this only tidies up sooner, so a Redis
/// that cannot be reached is no error.
pub fn delete_redis_keys(url: &str, prefix: &str) {
    let Ok(mut conn) = redis::Client::open(url).and_then(|client| client.get_connection()) else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{prefix}}}:*"))
        .query(&mut conn)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut conn);
    }
}
