//! How the metrics' handles are registered on the recorder (or made
//! no-ops without one), and the `# HELP` line of each.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder as _};
use metrics_exporter_prometheus::PrometheusRecorder;

/// Registers handles on the recorder, if there is one (else no-ops).
pub(super) struct Registrar<'a>(pub(super) Option<&'a PrometheusRecorder>);

const METADATA: Metadata<'static> = Metadata::new("blogql", metrics::Level::INFO, None);

impl Registrar<'_> {
    fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
        let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, *v)).collect();
        Key::from_parts(name, labels)
    }

    pub(super) fn counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Counter {
        self.0.map_or(Counter::noop(), |r| {
            r.register_counter(&Self::key(name, labels), &METADATA)
        })
    }

    pub(super) fn gauge(
        &self,
        name: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Gauge {
        self.0.map_or(Gauge::noop(), |r| {
            r.register_gauge(&Self::key(name, labels), &METADATA)
        })
    }

    pub(super) fn histogram(
        &self,
        name: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Histogram {
        self.0.map_or(Histogram::noop(), |r| {
            r.register_histogram(&Self::key(name, labels), &METADATA)
        })
    }

    /// Every metric's `# HELP` line (the README's "Operating it" explains
    /// each at more length).
    pub(super) fn describe_all(&self) {
        let Some(r) = self.0 else { return };
        let counters = [
            (
                "blogql_graphql_requests_total",
                "GraphQL requests over HTTP by operation type and outcome (OK or the first error code)",
            ),
            (
                "blogql_graphql_errors_total",
                "GraphQL errors answered over HTTP, by code",
            ),
            ("blogql_logins_total", "Logins by outcome"),
            (
                "blogql_sessions_started_total",
                "Sessions stored for a new sign-in (login or register)",
            ),
            (
                "blogql_sessions_ended_total",
                "Sessions ended by this instance, by reason",
            ),
            (
                "blogql_store_errors_total",
                "Requests failed by a store (database or Redis)",
            ),
            (
                "blogql_event_bus_reconnections_total",
                "Times the event bus's listener was lost and subscribed again",
            ),
            (
                "blogql_log_lines_dropped_total",
                "Log lines dropped because stderr could not keep up",
            ),
        ];
        for (name, help) in counters {
            r.describe_counter(KeyName::from(name), None, help.into());
        }
        let gauges = [
            ("blogql_build_info", "The running build (always 1)"),
            ("blogql_websockets_open", "Open GraphQL WebSockets"),
            (
                "blogql_subscriptions_active",
                "Subscriptions running on open WebSockets",
            ),
            (
                "blogql_event_bus_healthy",
                "1 while a heartbeat came back through the event bus within 2 s",
            ),
            (
                "blogql_db_pool_max_connections",
                "The database pool's size limit",
            ),
            (
                "blogql_db_pool_connections",
                "Database connections open, by state (in_use, idle)",
            ),
            (
                "blogql_db_pool_waiting",
                "Requests waiting for a database connection",
            ),
        ];
        for (name, help) in gauges {
            r.describe_gauge(KeyName::from(name), None, help.into());
        }
        r.describe_histogram(
            KeyName::from("blogql_graphql_request_duration_seconds"),
            Some(metrics::Unit::Seconds),
            "Time from a GraphQL request's arrival to its answer, by operation type".into(),
        );
        r.describe_histogram(
            KeyName::from("blogql_subscription_fanout_seconds"),
            Some(metrics::Unit::Seconds),
            "Time from a shared subscription's result to its frame written on the last of its sockets"
                .into(),
        );
    }
}
