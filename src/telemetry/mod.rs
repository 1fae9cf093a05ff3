//! What the operator sees of a running server: the Prometheus metrics, the
//! correlation ID that ties a request's log lines together (`scope`), and
//! the lines the log writer had to drop.
//!
//! Every label is a closed set named here (an operation type, an error
//! code, a reason, an outcome), never a user, an operation name, a path or
//! an address, so a series can never be made up by a client. Each
//! combination is registered once at start-up and kept as a handle:
//! recording on the hot path is one atomic add, with no lookup and no
//! allocation. Without `BLOGQL_METRICS_BIND`, every handle is a no-op.
//!
//! Registry and exposition: `metrics-exporter-prometheus` (metrics-rs). Its
//! recorder is used without being installed as the process's global one,
//! so each server built in a process (the tests build many) counts alone,
//! and it writes the Prometheus text format that `promtool check metrics`
//! reads (the OpenMetrics output of `prometheus-client` names a counter's
//! family without its `_total`, which promtool's linter rejects).

pub mod logs;
mod registrar;
mod scope;

use registrar::Registrar;
pub use scope::{CorrelationId, correlation_id, in_scope, store_failed};

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::codes::ErrorCode;
use crate::db::PoolStatus;
use crate::events::EndReason;

/// Upper bounds of the request duration buckets, in seconds: from a cached
/// query (well under a millisecond) to the request time limit (30 s).
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// How often recorded durations are folded into their buckets (the
/// recorder keeps them in a queue until then, so it must run even when
/// nobody scrapes).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The kind of a GraphQL operation, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Query,
    Mutation,
    Subscription,
    /// Refused before its operation was known (unparseable, CSRF, …).
    Unknown,
}

impl Operation {
    const ALL: [Self; 4] = [
        Self::Query,
        Self::Mutation,
        Self::Subscription,
        Self::Unknown,
    ];

    /// As labels and the access log name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Mutation => "mutation",
            Self::Subscription => "subscription",
            Self::Unknown => "unknown",
        }
    }
}

/// How a login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Succeeded,
    /// Wrong or unknown credentials.
    Failed,
    /// Refused unchecked: too many failures.
    Throttled,
}

impl LoginOutcome {
    const ALL: [Self; 3] = [Self::Succeeded, Self::Failed, Self::Throttled];

    fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Throttled => "throttled",
        }
    }
}

/// A store whose failure failed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The SQL database (users, posts; sessions without Redis).
    Database,
    /// Redis (sessions, throttle counts, persisted queries).
    Redis,
}

impl Store {
    const ALL: [Self; 2] = [Self::Database, Self::Redis];

    fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Redis => "redis",
        }
    }
}

const END_REASONS: [EndReason; 5] = [
    EndReason::LoggedOut,
    EndReason::Revoked,
    EndReason::Expired,
    EndReason::PasswordChanged,
    EndReason::RoleChanged,
];

/// What is read from its owner when Prometheus scrapes, rather than
/// counted as it happens.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sampled {
    pub bus_healthy: bool,
    pub bus_reconnections: u64,
    pub pool: PoolStatus,
}

/// The server's metrics: cheap to clone, each recording an atomic add.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Handles>,
}

struct Handles {
    /// Renders the exposition; `None` when metrics are off.
    exposition: Option<PrometheusHandle>,
    /// The task that folds recorded durations into their buckets.
    upkeep: Option<tokio::task::AbortHandle>,
    /// By operation, then outcome (`OK`, then each error code).
    requests: Vec<Counter>,
    durations: Vec<Histogram>,
    errors: Vec<Counter>,
    logins: Vec<Counter>,
    sessions_started: Counter,
    sessions_ended: Vec<Counter>,
    websockets: Gauge,
    subscriptions: Gauge,
    fanouts: Histogram,
    store_errors: Vec<Counter>,
    bus_healthy: Gauge,
    bus_reconnections: Counter,
    pool_max: Gauge,
    pool_in_use: Gauge,
    pool_idle: Gauge,
    pool_waiting: Gauge,
    log_lines_dropped: Counter,
}

impl Drop for Handles {
    fn drop(&mut self) {
        if let Some(upkeep) = &self.upkeep {
            upkeep.abort();
        }
    }
}

/// Outcomes of a request, as labels: `OK`, then every error code.
const OUTCOMES: usize = ErrorCode::ALL.len() + 1;

impl Metrics {
    /// Metrics that record nothing (`BLOGQL_METRICS_BIND` unset).
    pub fn off() -> Self {
        Self::register(None, None)
    }

    /// Metrics recorded for `GET /metrics`; folded into their buckets by a
    /// task of their own from now on.
    pub fn on() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(DURATION_BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            // Only an empty bucket list is refused: ours is not.
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let upkeep = tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                every.tick().await;
                handle.run_upkeep();
            }
        });
        Self::register(Some(&recorder), Some(upkeep.abort_handle()))
    }

    /// Every handle, on `recorder` (no-ops without one); `upkeep` is
    /// stopped with the last clone.
    fn register(
        recorder: Option<&PrometheusRecorder>,
        upkeep: Option<tokio::task::AbortHandle>,
    ) -> Self {
        let r = Registrar(recorder);
        let mut requests = Vec::with_capacity(Operation::ALL.len() * OUTCOMES);
        for operation in Operation::ALL {
            let outcomes = std::iter::once("OK").chain(ErrorCode::ALL.map(ErrorCode::as_str));
            for outcome in outcomes {
                requests.push(r.counter(
                    "blogql_graphql_requests_total",
                    &[("operation", operation.as_str()), ("outcome", outcome)],
                ));
            }
        }
        let handles = Handles {
            exposition: recorder.map(PrometheusRecorder::handle),
            upkeep,
            requests,
            durations: Operation::ALL
                .iter()
                .map(|op| {
                    r.histogram(
                        "blogql_graphql_request_duration_seconds",
                        &[("operation", op.as_str())],
                    )
                })
                .collect(),
            errors: ErrorCode::ALL
                .iter()
                .map(|code| r.counter("blogql_graphql_errors_total", &[("code", code.as_str())]))
                .collect(),
            logins: LoginOutcome::ALL
                .iter()
                .map(|o| r.counter("blogql_logins_total", &[("outcome", o.as_str())]))
                .collect(),
            sessions_started: r.counter("blogql_sessions_started_total", &[]),
            sessions_ended: END_REASONS
                .iter()
                .map(|reason| {
                    r.counter(
                        "blogql_sessions_ended_total",
                        &[("reason", reason.as_str())],
                    )
                })
                .collect(),
            websockets: r.gauge("blogql_websockets_open", &[]),
            subscriptions: r.gauge("blogql_subscriptions_active", &[]),
            fanouts: r.histogram("blogql_subscription_fanout_seconds", &[]),
            store_errors: Store::ALL
                .iter()
                .map(|s| r.counter("blogql_store_errors_total", &[("store", s.as_str())]))
                .collect(),
            bus_healthy: r.gauge("blogql_event_bus_healthy", &[]),
            bus_reconnections: r.counter("blogql_event_bus_reconnections_total", &[]),
            pool_max: r.gauge("blogql_db_pool_max_connections", &[]),
            pool_in_use: r.gauge("blogql_db_pool_connections", &[("state", "in_use")]),
            pool_idle: r.gauge("blogql_db_pool_connections", &[("state", "idle")]),
            pool_waiting: r.gauge("blogql_db_pool_waiting", &[]),
            log_lines_dropped: r.counter("blogql_log_lines_dropped_total", &[]),
        };
        r.gauge(
            "blogql_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
        )
        .set(1.0);
        r.describe_all();
        Self {
            inner: Arc::new(handles),
        }
    }

    /// Whether `GET /metrics` has anything to serve.
    pub fn is_on(&self) -> bool {
        self.inner.exposition.is_some()
    }

    /// One `/graphql` request: its operation, the codes of its errors (the
    /// first is its outcome), and how long it took.
    pub fn request(&self, operation: Operation, codes: &[ErrorCode], took: Duration) {
        let inner = &self.inner;
        let at = operation as usize;
        let outcome = codes.first().map_or(0, |code| *code as usize + 1);
        inner.requests[at * OUTCOMES + outcome].increment(1);
        inner.durations[at].record(took.as_secs_f64());
        for code in codes {
            inner.errors[*code as usize].increment(1);
        }
    }

    /// A login ended.
    pub fn login(&self, outcome: LoginOutcome) {
        self.inner.logins[outcome as usize].increment(1);
    }

    /// A session was stored for a new sign-in.
    pub fn session_started(&self) {
        self.inner.sessions_started.increment(1);
    }

    /// `count` sessions ended for `reason`.
    pub fn sessions_ended(&self, count: usize, reason: EndReason) {
        let at = END_REASONS.iter().position(|r| *r == reason).unwrap_or(0);
        self.inner.sessions_ended[at].increment(count as u64);
    }

    /// A WebSocket opened: counted open until the guard is dropped.
    pub fn websocket_opened(&self) -> Open {
        Open::new(&self.inner.websockets)
    }

    /// A subscription started: counted active until the guard is dropped.
    pub fn subscription_started(&self) -> Open {
        Open::new(&self.inner.subscriptions)
    }

    /// A shared subscription's result reached the last of its sockets,
    /// `took` after it was ready.
    pub fn fanned_out(&self, took: Duration) {
        self.inner.fanouts.record(took.as_secs_f64());
    }

    /// A store failed a request.
    pub fn store_failed(&self, store: Store) {
        self.inner.store_errors[store as usize].increment(1);
    }

    /// The exposition in the Prometheus text format, `sampled` read just
    /// now; `None` when metrics are off.
    pub fn render(&self, sampled: Sampled) -> Option<String> {
        let inner = &self.inner;
        let exposition = inner.exposition.as_ref()?;
        inner
            .bus_healthy
            .set(if sampled.bus_healthy { 1.0 } else { 0.0 });
        inner.bus_reconnections.absolute(sampled.bus_reconnections);
        let pool = sampled.pool;
        inner.pool_max.set(pool.max as f64);
        inner.pool_in_use.set(pool.in_use as f64);
        inner.pool_idle.set(pool.idle as f64);
        inner.pool_waiting.set(pool.waiting as f64);
        inner.log_lines_dropped.absolute(log_lines_dropped());
        Some(exposition.render())
    }
}

/// Something counted in a gauge while it lasts (a socket, a subscription).
pub struct Open(Gauge);

impl Open {
    fn new(gauge: &Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The log writer's count of dropped lines, once the program set it up.
static LOG_DROPS: OnceLock<Box<dyn Fn() -> u64 + Send + Sync>> = OnceLock::new();

/// Tells the metrics how to read the log writer's dropped lines (once,
/// by the program, which owns the writer).
pub fn count_log_drops(dropped: impl Fn() -> u64 + Send + Sync + 'static) {
    let _ = LOG_DROPS.set(Box::new(dropped));
}

fn log_lines_dropped() -> u64 {
    LOG_DROPS.get().map_or(0, |dropped| dropped())
}
