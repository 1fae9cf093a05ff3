//! blogql: a GraphQL blog server whose clients sign in with a server-side
//! session behind an HttpOnly cookie (scripts: an API token), on SQLite or
//! PostgreSQL.
//!
//! Where each concern lives:

/// Users and roles, passwords (argon2 on dedicated threads), throttling
/// logins and registrations, API tokens.
pub mod accounts;
/// The operator's `blogql create-admin`: the first administrator.
pub mod admin;
/// The request's identity (the `Principal`): its cookie session or its API token.
pub mod auth;
/// Every setting: flags, environment, `.env`; validation to one clear line.
pub mod config;
/// The only place that knows SQLite from PostgreSQL: pools, migrations, `with_conn!`.
pub mod db;
/// The schema: Query, Mutation, object types, loaders, guards, error codes,
/// the document bounds checked before validation.
pub mod graphql;
/// The accept loop and connection bounds, the router, the GraphQL-over-HTTP
/// pipeline, the CSRF rule, CORS, health, GraphiQL.
pub mod http;
/// Cursor pagination shared by every connection.
pub mod pages;
/// Posts: writing, editing, deleting (and who may), reading a page.
pub mod posts;
/// The typed session, read from and written to its cookie; the session
/// stores (SQL or Redis), listing and revocation.
pub mod sessions;
/// The contract's input rules.
pub mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use accounts::passwords::{HashError, Passwords};
use accounts::throttle::Throttle;
use config::Config;
use db::{ConnectError, Db};
use http::AppState;
use http::client_ip::TrustedProxies;
use http::server::ConnectionLimits;
use sessions::store::Store;
use sessions::{SessionPolicy, Sessions};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("DATABASE_URL: {0}")]
    Database(#[from] ConnectError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("REDIS_URL: cannot connect: {0}")]
    Redis(String),
}

/// A built server, ready to serve.
pub struct App {
    /// The database, for tests that look behind the API.
    pub db: Db,
    router: Router,
    store: Store,
    throttle: Throttle,
    housekeeping_every: Duration,
    connections: ConnectionLimits,
}

impl App {
    /// Connects to the database, applies migrations and assembles the server.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let db = Db::connect(&config.database_url).await?;
        db.migrate().await?;
        let passwords = Arc::new(Passwords::new().await?);
        let store = Store::open(&db, config.redis.as_ref())
            .await
            .map_err(StartError::Redis)?;
        let throttle = Throttle::new(
            db.clone(),
            match &store {
                Store::Redis(redis) => Some(redis.connection()),
                Store::Sql(_) => None,
            },
        );
        let policy = SessionPolicy {
            idle_timeout: config.session_idle_timeout,
            absolute_timeout: config.session_absolute_timeout,
        };
        let services = graphql::Services {
            db: db.clone(),
            passwords,
            throttle: throttle.clone(),
        };
        let state = AppState {
            schema: graphql::schema(services, config.introspection),
            db: db.clone(),
            sessions: Sessions::new(store.clone(), policy, config.cookie_secure),
            proxies: TrustedProxies::new(config.trusted_proxies.clone()),
            documents: Arc::default(),
            request_timeout: config.request_timeout,
        };
        Ok(Self {
            db,
            router: http::router(state, config.cors_origins.clone()),
            store,
            throttle,
            housekeeping_every: policy.touch_interval(),
            connections: config.connections,
        })
    }

    /// Serves on `listener` until `shutdown` completes, then finishes the
    /// requests in flight within the shutdown grace period.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let housekeeping = tokio::spawn(housekeeping(
            self.store,
            self.throttle,
            self.housekeeping_every,
        ));
        let served = http::server::serve(listener, self.router, self.connections, shutdown).await;
        housekeeping.abort();
        served
    }
}

/// Deletes expired sessions and forgotten login failures, now and then.
async fn housekeeping(store: Store, throttle: Throttle, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(err) = store.delete_expired().await {
            tracing::warn!(error = %err, "cannot delete expired sessions");
        }
        if let Err(err) = throttle.forget_stale().await {
            tracing::warn!(error = %err, "cannot forget old login failures");
        }
    }
}
