//! Sessions and API tokens answered from memory (on PostgreSQL and Redis,
//! whose bus hears every instance): warm copies answer without a store
//! round trip, every ending through any instance is seen by the others
//! within its event's delivery (the ending's request waits until its own
//! instance hears it back, so in practice at once), and nothing remembered
//! answers while the bus is cut.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Browser, ME, PASSWORD, Store, TestApp, assert_no_errors, soon};

/// Two servers on one database (and one Redis prefix), and alice
/// registered through the first.
async fn two_instances(store: Store, settings: &[(&str, &str)]) -> (TestApp, TestApp, Browser) {
    let database = store.database().await;
    let a = TestApp::spawn_on(database.clone(), settings).await;
    let b = TestApp::spawn_on(database, settings).await;
    let alice = a.browser();
    alice.register("alice").await;
    (a, b, alice)
}

/// A browser signed in as alice through `app`, its session used twice
/// (remembered from then on).
async fn warm_device(app: &TestApp) -> Browser {
    let device = app.browser();
    assert_no_errors(&device.login("alice", PASSWORD).await);
    for _ in 0..2 {
        assert_eq!(device.me().await.as_deref(), Some("alice"));
    }
    device
}

/// Asserts that `requests` run no SQL statement on `app` (so they were
/// answered from memory: a session or token read from the store costs one,
/// and so does its user when sessions live in Redis).
async fn from_memory<F: Future<Output = ()>>(app: &TestApp, requests: F) {
    let before = app.statements_executed();
    requests.await;
    assert_eq!(
        app.statements_executed(),
        before,
        "answered from memory, without a statement"
    );
}

/// `admin` makes the user signed in on `user` an admin.
async fn promote(admin: &Browser, user: &Browser) {
    let id = user.graphql("{ me { id } }", json!({})).await["data"]["me"]["id"].clone();
    let body = admin
        .graphql(
            "mutation($id: ID!, $role: Role!) { setUserRole(userId: $id, role: $role) { role } }",
            json!({ "id": id, "role": "ADMIN" }),
        )
        .await;
    assert_eq!(body["data"]["setUserRole"]["role"], "ADMIN", "{body}");
}

/// Polls `/readyz` every 10 ms for at most 8 s until it is 503.
async fn bus_noticed_cut(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while tokio::time::Instant::now() < deadline {
        let status = reqwest::get(app.url("/readyz"))
            .await
            .expect("/readyz answers")
            .status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("/readyz never noticed the cut bus");
}

store_tests! {
    async fn a_session_ended_through_one_instance_is_anonymous_through_the_other(store) {
        if store == Store::Sql {
            // On SQLite nothing is remembered (its bus is in-process).
            require!(Postgres);
        }
        let (_a, b, alice) = two_instances(store, &[]).await;
        let laptop = warm_device(&b).await;
        let phone = warm_device(&b).await;
        from_memory(&b, async {
            assert_eq!(laptop.me().await.as_deref(), Some("alice"));
            assert_eq!(phone.me().await.as_deref(), Some("alice"));
        })
        .await;
        // The laptop's handle, then revoked through A.
        let own = laptop.sessions().await;
        let handle = own.iter().find(|s| s["current"] == true).expect("its own")["id"].clone();
        let body = alice
            .graphql("mutation($id: ID!) { revokeSession(id: $id) }", json!({ "id": handle }))
            .await;
        assert_eq!(body["data"]["revokeSession"], true, "{body}");
        assert!(soon(|| async { laptop.me().await.is_none() }).await, "revoked: anonymous through B");
        assert_eq!(phone.me().await.as_deref(), Some("alice"), "the phone's stays");
        // Every other session ended through A.
        let body = alice.graphql("mutation { logoutOtherSessions }", json!({})).await;
        assert_eq!(body["data"]["logoutOtherSessions"], 1, "{body}");
        assert!(soon(|| async { phone.me().await.is_none() }).await, "ended: anonymous through B");
        // Signed out through A, its cookie replayed through B.
        let cookie = format!("sid={}", alice.session_cookie().expect("a session"));
        let replay = b.cookie_replay(&cookie);
        assert_eq!(replay.me().await.as_deref(), Some("alice"));
        assert_eq!(replay.me().await.as_deref(), Some("alice"));
        assert_no_errors(&alice.graphql("mutation { logout }", json!({})).await);
        assert!(soon(|| async { replay.me().await.is_none() }).await, "logged out: anonymous through B");
    }

    async fn a_token_revoked_or_its_owner_changed_through_one_instance_shows_through_the_other(store) {
        if store == Store::Sql {
            require!(Postgres);
        }
        let (a, b, alice) = two_instances(store, &[]).await;
        let admin = a.admin("root").await;
        let kept = b.token_client(&alice.create_token("kept").await);
        let revoked = alice.create_token("revoked").await;
        let revoked = b.token_client(&revoked);
        let role = "{ me { username role } }";
        for _ in 0..2 {
            assert_no_errors(&kept.graphql(role, json!({})).await);
            assert_eq!(revoked.me().await.as_deref(), Some("alice"));
        }
        from_memory(&b, async {
            assert_eq!(kept.me().await.as_deref(), Some("alice"));
            assert_eq!(revoked.me().await.as_deref(), Some("alice"));
        })
        .await;
        let listed = alice.graphql("{ apiTokens { id name } }", json!({})).await;
        let id = listed["data"]["apiTokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .find(|t| t["name"] == "revoked")
            .expect("the token")["id"]
            .clone();
        let body = alice
            .graphql("mutation($id: ID!) { revokeApiToken(id: $id) }", json!({ "id": id }))
            .await;
        assert_eq!(body["data"]["revokeApiToken"], true, "{body}");
        let refused = || async { revoked.send(ME, json!({})).await.status() == StatusCode::UNAUTHORIZED };
        assert!(soon(refused).await, "revoked: refused through B");
        // Promoted through A: the kept token is an admin's through B.
        promote(&admin, &alice).await;
        let admin_now = || async { kept.graphql(role, json!({})).await["data"]["me"]["role"] == "ADMIN" };
        assert!(soon(admin_now).await, "promoted: an admin's through B");
    }

    async fn with_the_bus_cut_every_request_reads_the_store(store) {
        if store == Store::Sql {
            require!(Postgres);
        }
        let app = store.spawn().await;
        let alice = app.browser();
        alice.register("alice").await;
        let token = app.token_client(&alice.create_token("script").await);
        let device = warm_device(&app).await;
        for _ in 0..2 {
            assert_eq!(token.me().await.as_deref(), Some("alice"));
        }
        from_memory(&app, async {
            assert_eq!(device.me().await.as_deref(), Some("alice"));
            assert_eq!(token.me().await.as_deref(), Some("alice"));
        })
        .await;
        assert_eq!(app.cut_event_bus().await, 1);
        bus_noticed_cut(&app).await;
        // Revoked where no event tells the server: only the store knows.
        app.delete_credentials_behind_its_back().await;
        assert_eq!(device.me().await, None, "read from the store: gone");
        let answer = token.send(ME, json!({})).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "read from the store: gone");
    }

    async fn a_remembered_session_that_looks_expired_is_read_again_before_it_ends(store) {
        if store == Store::Sql {
            require!(Postgres);
        }
        // Idle timeout 2 s: the session's last use is written every 200 ms.
        let (a, b, _) = two_instances(store, &[("BLOGQL_SESSION_IDLE_TIMEOUT", "2s")]).await;
        let device = warm_device(&b).await;
        let cookie = format!("sid={}", device.session_cookie().expect("a session"));
        // Kept alive through A for longer than B's copy says it lives.
        let through_a = a.cookie_replay(&cookie);
        for _ in 0..14 {
            assert_eq!(through_a.me().await.as_deref(), Some("alice"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // (The browser's own cookie has expired by now: its jar dropped it.)
        assert_eq!(
            b.cookie_replay(&cookie).me().await.as_deref(),
            Some("alice"),
            "B read it again (A had extended it) rather than ending it"
        );
        assert_eq!(through_a.me().await.as_deref(), Some("alice"), "still live everywhere");
    }
}

/// The titles and author roles of the first page, read by an anonymous
/// reader.
async fn first_page(reader: &Browser) -> Vec<(String, String)> {
    let body = reader
        .graphql(
            "{ posts(first: 5) { edges { node { title author { role } } } } }",
            json!({}),
        )
        .await;
    assert_no_errors(&body);
    body["data"]["posts"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| {
            let node = &edge["node"];
            (
                node["title"].as_str().expect("a title").to_owned(),
                node["author"]["role"].as_str().expect("a role").to_owned(),
            )
        })
        .collect()
}

store_tests! {
    async fn a_page_of_posts_is_remembered_until_a_post_or_its_author_changes_anywhere(store) {
        if store == Store::Sql {
            require!(Postgres);
        }
        let (a, b, alice) = two_instances(store, &[]).await;
        let admin = a.admin("root").await;
        let first = alice.create_post("one", "body").await;
        let reader = b.browser();
        let local = a.browser();
        let user = |title: &str| (title.to_owned(), "USER".to_owned());
        assert_eq!(first_page(&reader).await, [user("one")]);
        assert_eq!(first_page(&local).await, [user("one")]);
        assert_eq!(first_page(&local).await, [user("one")]);
        from_memory(&b, async {
            assert_eq!(first_page(&reader).await, [user("one")]);
        })
        .await;
        let second = alice.create_post("two", "body").await;
        let shows = |page: Vec<(String, String)>| {
            let reader = &reader;
            async move { soon(|| async { first_page(reader).await == page }).await }
        };
        assert!(shows(vec![user("two"), user("one")]).await, "created");
        assert_eq!(first_page(&local).await, [user("two"), user("one")], "where it was written");
        let body = alice
            .graphql(
                "mutation($id: ID!) { updatePost(id: $id, input: { title: \"2\" }) { id } }",
                json!({ "id": second }),
            )
            .await;
        assert_no_errors(&body);
        assert!(shows(vec![user("2"), user("one")]).await, "edited");
        let body = alice
            .graphql("mutation($id: ID!) { deletePost(id: $id) }", json!({ "id": first }))
            .await;
        assert_eq!(body["data"]["deletePost"], true, "{body}");
        assert!(shows(vec![user("2")]).await, "deleted");
        promote(&admin, &alice).await;
        assert!(shows(vec![("2".to_owned(), "ADMIN".to_owned())]).await, "its author promoted");
    }
}
