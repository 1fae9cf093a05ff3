//! The event bus between instances: a cut connection is noticed (`/readyz`
//! says so), reconnected, and healthy again by itself.

use std::time::Duration;

use reqwest::StatusCode;

use crate::support::{Store, TestApp};

/// `/readyz`'s status.
async fn readiness(app: &TestApp) -> StatusCode {
    reqwest::Client::new()
        .get(app.url("/readyz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("/readyz answers")
        .status()
}

/// Polls `/readyz` every 10 ms for at most `bound` until it is `status`.
async fn readiness_becomes(app: &TestApp, status: StatusCode, bound: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + bound;
    while tokio::time::Instant::now() < deadline {
        if readiness(app).await == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

store_tests! {
    async fn a_cut_bus_is_noticed_reconnected_and_healthy_again(store) {
        if store == Store::Sql {
            // On SQLite the bus is in-process: there is nothing to cut.
            require!(Postgres);
        }
        let app = store.spawn_with(&[("BLOGQL_METRICS_BIND", "127.0.0.1:0")]).await;
        assert_eq!(readiness(&app).await, StatusCode::OK);
        let reconnections = "blogql_event_bus_reconnections_total";
        assert_eq!(app.scrape().await.get(reconnections), 0.0);
        let before = app.event_bus_connections().await;
        assert_eq!(before.len(), 1, "one listening connection: {before:?}");
        assert_eq!(app.cut_event_bus().await, 1);
        // Noticed (at once on a broken connection; within the silence
        // bound of 5 s at worst).
        assert!(
            readiness_becomes(&app, StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(8)).await,
            "/readyz never noticed the cut bus"
        );
        assert!(
            readiness_becomes(&app, StatusCode::OK, Duration::from_secs(15)).await,
            "/readyz never came back"
        );
        let after = app.event_bus_connections().await;
        assert_eq!(after.len(), 1, "listening again: {after:?}");
        assert_ne!(after, before, "a new connection");
        let scrape = app.scrape().await;
        assert_eq!(scrape.get(reconnections), 1.0, "the operator sees it");
        assert_eq!(scrape.get("blogql_event_bus_healthy"), 1.0);
    }
}
