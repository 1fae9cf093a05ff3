//! blogql: a GraphQL blog server whose clients sign in with a server-side
//! session behind an HttpOnly cookie (scripts: an API token), on SQLite or
//! PostgreSQL.
//!
//! Where each concern lives, lowest layer first. A module may use the
//! modules above it in this list, never one below it (`module-cycles.py`
//! in `../shared/hooks` checks there is no cycle).

/// Time as stored and compared: Unix milliseconds, and stored timestamps.
pub mod clock;
/// The contract's input rules.
pub mod validate;
/// Every error code a client can see, as one closed set.
pub mod codes;
/// Cursor pagination shared by every connection.
pub mod pages;
/// The only place that knows SQLite from PostgreSQL: pools, migrations,
/// `with_conn!`, `with_tx!`. Uses: clock.
pub mod db;
/// Every setting: flags, environment, `.env`; one parser per setting, to
/// one clear line. Uses: db (the URL's form).
pub mod config;
/// The one Redis home: connection, key prefix, scripts on Redis' clock.
/// Uses: config.
pub mod redis;
/// The bus between instances (in-process | PostgreSQL NOTIFY | Redis
/// pub/sub): sessions that ended, posts that changed, and whether the bus
/// is provably connected. Uses: db, redis.
pub mod events;
/// Copies served from memory only while the bus proves them current:
/// the rule every cache follows, and its bounds. Uses: events.
pub mod cache;
/// The operator's view: Prometheus metrics (closed label sets, registered
/// at start-up), the request's correlation ID, dropped log lines. Uses:
/// codes, db, events.
pub mod telemetry;
/// Automatic persisted queries: query texts by hash, in memory or in
/// Redis. Uses: redis, clock.
pub mod persisted;
/// Users and roles, passwords (argon2 on dedicated threads), throttling
/// logins and registrations (SQL | Redis), API tokens (remembered).
/// Uses: db, redis, events, cache, clock, validate, pages.
pub mod accounts;
/// The session service (ending sessions with a reason, announced on the
/// bus), the request's session and its cookie, the store (SQL | Redis).
/// Uses: accounts, events, db, redis, clock.
pub mod sessions;
/// Who is asking (the `Principal`, the request's `Caller`), and the account
/// changes that end sessions. Uses: accounts, sessions, db.
pub mod auth;
/// Posts: writing, editing, deleting (and who may), reading a page (from
/// memory when it may). Uses: auth, accounts, db, pages, events, cache.
pub mod posts;
/// What open WebSockets are told: new posts (read once per instance), and
/// the end of a socket's session by any path. Uses: events, posts,
/// sessions, db, clock.
pub mod live;
/// The schema: one module per domain merged into Query and Mutation,
/// guards, error codes, the document bounds checked before validation,
/// validating a document without running it. Uses: everything above.
pub mod graphql;
/// Trusted documents: the manifest whose operations alone run when
/// `BLOGQL_TRUSTED_DOCUMENTS` is set, each validated at start-up, and
/// resolving a request against it before parsing. Uses: graphql, persisted.
pub mod trusted;
/// The accept loop and connection bounds, the router, identifying the
/// caller, the GraphQL-over-HTTP pipeline, CSRF, CORS, health, GraphiQL.
/// Uses: everything above.
pub mod http;
/// The operator's `blogql create-admin`. Uses: config, db, redis,
/// accounts, sessions, auth, validate.
pub mod admin;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use accounts::passwords::{HashError, Passwords};
use accounts::throttle::Throttle;
use config::{Config, ConnectionLimits};
use db::{ConnectError, Db};
use http::AppState;
use http::client_ip::TrustedProxies;
use redis::{Redis, RedisError};
use sessions::{SessionPolicy, SessionStore, Sessions};
use telemetry::Metrics;
use trusted::{ManifestError, TrustedDocuments};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("DATABASE_URL: {0}")]
    Database(#[from] ConnectError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("REDIS_URL: cannot connect: {0}")]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Events(#[from] events::StartError),
    #[error("BLOGQL_TRUSTED_DOCUMENTS: {0}")]
    TrustedDocuments(#[from] ManifestError),
    #[error("BLOGQL_METRICS_BIND: cannot listen on {address}: {source}")]
    MetricsBind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// A built server, ready to serve.
pub struct App {
    /// The database, for tests that look behind the API.
    pub db: Db,
    router: Router,
    sessions: Sessions,
    throttle: Throttle,
    housekeeping_every: Duration,
    connections: ConnectionLimits,
    events: events::Events,
    /// `GET /metrics`, when `BLOGQL_METRICS_BIND` is set.
    metrics: Option<(TcpListener, Router)>,
    /// Turned on at shutdown: every WebSocket closes (1001).
    stopping: tokio::sync::watch::Sender<bool>,
    sockets: Arc<http::ws::Sockets>,
}

impl App {
    /// Loads the trusted documents (if set), connects to the database (and
    /// Redis, if set), applies migrations and assembles the server: each
    /// backend is chosen here, once.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        // First: a bad manifest needs no database to be refused.
        let trusted = match &config.trusted_documents {
            Some(path) => Some(Arc::new(load_trusted(path, config.introspection).await?)),
            None => None,
        };
        // Before the database: a taken metrics port needs no migration.
        let metrics_listener = match config.metrics_bind {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|source| StartError::MetricsBind { address, source })?,
            ),
            None => None,
        };
        let metrics = match metrics_listener {
            Some(_) => Metrics::on(),
            None => Metrics::off(),
        };
        let db = Db::connect(&config.database_url).await?;
        db.migrate().await?;
        let redis = match &config.redis {
            Some(redis) => Some(Redis::connect(redis).await?),
            None => None,
        };
        let events = events::Events::start(&db, redis.as_ref()).await?;
        tracing::info!(bus = events.backend_name(), "event bus subscribed");
        let passwords = Arc::new(Passwords::new().await?);
        let users = accounts::loader::users(db.clone());
        let policy = SessionPolicy {
            idle_timeout: config.session_idle_timeout,
            absolute_timeout: config.session_absolute_timeout,
        };
        let sessions = Sessions::new(
            SessionStore::new(&db, redis.as_ref()),
            policy,
            config.cookie_secure,
            users.clone(),
            events.clone(),
            metrics.clone(),
        );
        let throttle = Throttle::new(&db, redis.as_ref());
        let services = Arc::new(graphql::Services {
            db: db.clone(),
            passwords,
            throttle: throttle.clone(),
            sessions: sessions.clone(),
            tokens: accounts::tokens::Tokens::new(&db, &events),
            pages: posts::Pages::new(&events),
            users,
            feed: live::PostFeed::start(db.clone(), &events).await,
            events: events.clone(),
            metrics: metrics.clone(),
        });
        let stopping = tokio::sync::watch::channel(false).0;
        let sockets = http::ws::Sockets::new(stopping.subscribe());
        let mut origins = vec![config.public_origin.clone()];
        origins.extend(config.cors_origins.iter().cloned());
        let live_schema = graphql::live_schema(services.clone(), config.introspection);
        let state = AppState::from(http::Shared {
            schema: graphql::schema(services.clone(), config.introspection),
            fanout: http::ws::Fanout::new(live_schema.clone(), metrics.clone()),
            live_schema,
            services,
            proxies: TrustedProxies::new(config.trusted_proxies.clone()),
            persisted: persisted::PersistedQueries::new(redis.as_ref()),
            trusted,
            documents: Arc::default(),
            request_timeout: config.request_timeout,
            sockets: sockets.clone(),
            origins: http::ws::AllowedOrigins(origins),
        });
        let access = http::access::Access {
            metrics: metrics.clone(),
            log: config.access_log,
        };
        let metrics = metrics_listener.map(|listener| {
            let observed = http::Observed {
                metrics,
                events: events.clone(),
                db: db.clone(),
            };
            (listener, http::metrics_router(observed))
        });
        Ok(Self {
            db,
            router: http::router(state, config.cors_origins.clone(), access),
            metrics,
            sessions,
            throttle,
            housekeeping_every: policy.touch_interval(),
            connections: config.connections,
            events,
            stopping,
            sockets,
        })
    }

    /// Where `GET /metrics` is served, if anywhere (port 0 chosen).
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        let (listener, _) = self.metrics.as_ref()?;
        listener.local_addr().ok()
    }

    /// Serves on `listener` (and `GET /metrics` on its own) until
    /// `shutdown` completes, then finishes the requests in flight within
    /// the shutdown grace period.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let housekeeping = tokio::spawn(housekeeping(
            self.sessions,
            self.throttle,
            self.housekeeping_every,
        ));
        let stopping = self.stopping;
        let metrics = self.metrics.map(|(listener, router)| {
            let mut stopped = stopping.subscribe();
            tokio::spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|stopping| *stopping).await;
                    })
                    .await;
                if let Err(err) = served {
                    tracing::error!(error = %err, "the metrics listener failed");
                }
            })
        });
        let shutdown = async move {
            shutdown.await;
            stopping.send_replace(true);
        };
        let grace = self.connections.shutdown_grace;
        let served = http::server::serve(listener, self.router, self.connections, shutdown).await;
        self.sockets.closed(grace).await;
        housekeeping.abort();
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        self.events.stop();
        served
    }
}

/// The manifest at `path`, each document checked against the schema as
/// served (introspection on or off).
async fn load_trusted(
    path: &std::path::Path,
    introspection: bool,
) -> Result<TrustedDocuments, ManifestError> {
    let validator = graphql::validator::Validator::new(introspection);
    let trusted = TrustedDocuments::load(path, &validator).await?;
    tracing::info!(
        documents = trusted.len(),
        path = %path.display(),
        "trusted documents loaded: only they run"
    );
    Ok(trusted)
}

/// Deletes expired sessions and forgotten login failures, now and then.
async fn housekeeping(sessions: Sessions, throttle: Throttle, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(err) = sessions.delete_expired().await {
            tracing::warn!(error = %err, "cannot delete expired sessions");
        }
        if let Err(err) = throttle.forget_stale().await {
            tracing::warn!(error = %err, "cannot forget old login failures");
        }
    }
}
