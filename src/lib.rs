//! blogql: a GraphQL blog server whose clients sign in with a server-side
//! session behind an HttpOnly cookie, on SQLite or PostgreSQL.
//!
//! Where each concern lives:

/// Users and passwords (argon2 on a bounded blocking pool).
pub mod accounts;
/// Every setting: flags, environment, `.env`; validation to one clear line.
pub mod config;
/// The only place that knows SQLite from PostgreSQL: pools, migrations, `with_conn!`.
pub mod db;
/// The schema: Query, Mutation, object types, loaders, guard, error codes.
pub mod graphql;
/// The router: CSRF rule, GET-is-read-only, CORS, limits, health, GraphiQL.
pub mod http;
/// Posts and cursor pagination.
pub mod posts;
/// The typed session, our session store, login throttling.
pub mod sessions;
/// The contract's input rules.
pub mod validate;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use accounts::passwords::{HashError, Passwords};
use config::Config;
use db::{ConnectError, Db};
use http::client_ip::TrustedProxies;
use http::{AppState, WebSettings};
use sessions::SessionPolicy;
use sessions::store::SqlSessionStore;
use sessions::throttle::LoginThrottle;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("DATABASE_URL: {0}")]
    Database(#[from] ConnectError),
    #[error(transparent)]
    Hash(#[from] HashError),
}

/// A built server, ready to serve.
pub struct App {
    /// The database, for tests that look behind the API.
    pub db: Db,
    router: Router,
    store: SqlSessionStore,
    throttle: LoginThrottle,
    housekeeping_every: Duration,
}

impl App {
    /// Connects to the database, applies migrations and assembles the server.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let db = Db::connect(&config.database_url).await?;
        db.migrate().await?;
        let passwords = Arc::new(Passwords::new().await?);
        let store = SqlSessionStore::new(db.clone());
        let throttle = LoginThrottle::new(db.clone());
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
            policy,
            proxies: TrustedProxies::new(config.trusted_proxies.clone()),
            documents: Arc::default(),
        };
        let web = WebSettings {
            store: store.clone(),
            cookie_secure: config.cookie_secure,
            cors_origins: config.cors_origins.clone(),
        };
        Ok(Self {
            db,
            router: http::router(state, web),
            store,
            throttle,
            housekeeping_every: policy.touch_interval(),
        })
    }

    /// Serves on `listener` until `shutdown` completes, then finishes the
    /// requests in flight.
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
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await;
        housekeeping.abort();
        served
    }
}

/// Deletes expired sessions and forgotten login failures, now and then.
async fn housekeeping(store: SqlSessionStore, throttle: LoginThrottle, every: Duration) {
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
