//! Registration, login, passwords and login throttling.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{PASSWORD, Store, TestApp, assert_no_errors, concurrent_guesses, error_code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_creates_the_account_and_signs_it_in() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    let body = browser.register_with("Alice", PASSWORD).await;
    assert_no_errors(&body);
    let user = &body["data"]["register"];
    assert_eq!(user["username"], "Alice", "shown as registered");
    assert_eq!(user["role"], "USER");
    let created_at = user["createdAt"].as_str().expect("createdAt");
    assert!(created_at.ends_with('Z'), "RFC 3339 in UTC: {created_at}");
    assert_eq!(browser.me().await.as_deref(), Some("Alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_are_unique_regardless_of_case() {
    let app = TestApp::spawn().await;
    app.browser().register("alice").await;
    let body = app.browser().register_with("ALICE", PASSWORD).await;
    assert_eq!(error_code(&body), "USERNAME_TAKEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_enforces_the_validation_rules() {
    let app = TestApp::spawn().await;
    let cases = [
        ("ab", PASSWORD, "username"),
        (&"a".repeat(33), PASSWORD, "username"),
        ("bad name", PASSWORD, "username"),
        ("émile", PASSWORD, "username"),
        ("shorty", "1234567", "password"),
        ("longpw", &"p".repeat(129), "password"),
        ("nulpw", "pass\0word!", "password"),
    ];
    for (username, password, field) in cases {
        let body = app.browser().register_with(username, password).await;
        assert_eq!(
            error_code(&body),
            "BAD_USER_INPUT",
            "{username:?}/{password:?}: {body}"
        );
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
    }
    // The edges of the rules are accepted; characters, not bytes, are counted.
    for (username, password) in [
        ("a_b", "12345678".to_owned()),
        (&"Z.-_9".repeat(7)[..32], "ü".repeat(128)),
    ] {
        assert_no_errors(&app.browser().register_with(username, &password).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_stored_only_as_argon2id_hashes() {
    let app = TestApp::spawn().await;
    app.browser().register("alice").await;
    let hashes = app
        .sql_strings("SELECT password_hash AS s FROM users")
        .await;
    assert_eq!(hashes.len(), 1);
    assert!(
        hashes[0].starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        hashes[0]
    );
    assert!(!hashes[0].contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_matches_the_username_in_any_case() {
    let app = TestApp::spawn().await;
    app.browser().register("Alice").await;
    let body = app.browser().login("aLiCe", PASSWORD).await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["login"]["username"], "Alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_wrong_password_look_the_same() {
    let app = TestApp::spawn().await;
    app.browser().register("alice").await;
    let client = app.browser();
    let mut wrong_password = Vec::new();
    let mut unknown_user = Vec::new();
    // Three of each, interleaved (five failures would lock the username).
    for round in 0..3 {
        let started = Instant::now();
        let wrong = client.login("alice", "not the password").await;
        wrong_password.push(started.elapsed());
        let started = Instant::now();
        let unknown = client
            .login(&format!("nobody{round}"), "not the password")
            .await;
        unknown_user.push(started.elapsed());
        assert_eq!(error_code(&wrong), "INVALID_CREDENTIALS");
        assert_eq!(error_code(&unknown), "INVALID_CREDENTIALS");
        assert_eq!(
            wrong["errors"][0]["message"],
            unknown["errors"][0]["message"]
        );
    }
    wrong_password.sort();
    unknown_user.sort();
    let (wrong, unknown) = (
        wrong_password[1].as_secs_f64(),
        unknown_user[1].as_secs_f64(),
    );
    // Without the dummy hash an unknown user answers ~30x faster.
    assert!(
        unknown > wrong / 3.0 && unknown < wrong * 3.0,
        "median times differ: wrong password {wrong:.4}s, unknown user {unknown:.4}s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_are_rate_limited_even_for_the_right_password() {
    let app = TestApp::spawn().await;
    app.browser().register("alice").await;
    let client = app.browser();
    let mut failures = 0;
    let retry_after = loop {
        let body = client.login("alice", "not the password").await;
        match error_code(&body) {
            "INVALID_CREDENTIALS" => failures += 1,
            "RATE_LIMITED" => {
                break body["errors"][0]["extensions"]["retryAfter"]
                    .as_u64()
                    .expect("retryAfter in whole seconds");
            }
            other => panic!("unexpected {other}: {body}"),
        }
        assert!(
            failures <= 10,
            "still not limited after {failures} failures"
        );
    };
    assert!(
        failures >= 5,
        "limited after {failures} failures, before the threshold of 5"
    );
    assert!(retry_after >= 1);
    // Once more after the wait: the lock doubles, and while it holds even the
    // right password is refused without being checked.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(
        error_code(&client.login("alice", "not the password").await),
        "INVALID_CREDENTIALS"
    );
    let body = client.login("alice", PASSWORD).await;
    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
    let retry_after = body["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .expect("retryAfter");
    assert!(retry_after >= 1);
    // Other users from the same address are not locked out.
    assert_no_errors(&client.register_with("bob", PASSWORD).await);
    assert_no_errors(&client.login("bob", PASSWORD).await);
    // After the wait the right password works, and clears the count.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_no_errors(&client.login("alice", PASSWORD).await);
    assert_eq!(
        error_code(&client.login("alice", "not the password").await),
        "INVALID_CREDENTIALS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_counts_the_client_behind_a_trusted_proxy() {
    let app = TestApp::spawn_with(&[("BLOGQL_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    app.browser().register("alice").await;
    let attacker = app.browser_forwarded_for("203.0.113.7");
    let mut checked = 0;
    let mut limited = false;
    for _ in 0..11 {
        let body = attacker.login("alice", "not the password").await;
        match error_code(&body) {
            "INVALID_CREDENTIALS" => checked += 1,
            "RATE_LIMITED" => {
                limited = true;
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(limited, "the attacker's address was never limited");
    assert!(checked >= 5, "limited after {checked} failures, before 5");
    // The same username from another client address is not locked out.
    assert_no_errors(
        &app.browser_forwarded_for("198.51.100.20")
            .login("alice", PASSWORD)
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waiting_for_the_sqlite_lock_does_not_stall_the_server() {
    // PostgreSQL has no file lock to hold; the failures are counted in
    // the database, not in Redis.
    require!(Sqlite);
    let app = Store::Sql.spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    // Another process (a backup, the sqlite3 shell) holds the write lock.
    let lock = app.hold_sqlite_write_lock();
    // Failed logins must record their failure: writes that now wait.
    let logins: Vec<_> = (0..4)
        .map(|_| {
            let request = alice.client.post(app.graphql_url()).json(&json!({
                "query": "mutation { login(input: {username: \"alice\", password: \"not the password\"}) { id } }",
            }));
            tokio::spawn(async move { request.send().await.unwrap().json::<serde_json::Value>().await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The server still answers while they wait (SQLite's busy timeout is 5 s).
    let health = alice
        .client
        .get(app.url("/healthz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .expect("the server answers while writes wait for the lock");
    assert!(health.status().is_success());
    drop(lock);
    for login in logins {
        let body = login.await.unwrap();
        assert_eq!(error_code(&body), "INVALID_CREDENTIALS", "{body}");
    }
    assert!(
        app.sql_count("SELECT COUNT(*) AS n FROM login_failures")
            .await
            > 0,
        "the failures were counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_guesses_counts_like_a_sequence() {
    let app = TestApp::spawn().await;
    app.browser().register("alice").await;
    let checked = concurrent_guesses(&[&app], 40).await;
    // Five failures lock the username for a second; at most one more guess
    // is checked if the burst outlasts that second. Fewer than five would
    // be a throttle that refuses what a sequence would have let through.
    assert!(
        (5..=6).contains(&checked),
        "{checked} of 40 concurrent guesses were checked"
    );
}
