//! The `blogql` binary itself: subcommands, settings, shutdown.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{PASSWORD, Process, TestApp, TestDatabase, blogql, blogql_bin, error_code};

#[test]
fn an_unreachable_redis_stops_the_server_with_one_line_and_exit_code_2() {
    // Nothing listens there: one line at start-up, not a server that fails
    // every signed-in request.
    let output = blogql(
        &["serve"],
        &[
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("BLOGQL_BIND", "127.0.0.1:0"),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("REDIS_URL"), "{stderr}");
}

#[test]
fn schema_graphql_is_exactly_print_schema() {
    let output = blogql(&["print-schema"], &[]);
    assert!(output.status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert!(
        String::from_utf8(output.stdout).unwrap() == committed,
        "schema.graphql is stale: run `cargo run -- print-schema > schema.graphql`"
    );
}

#[test]
fn a_bad_setting_stops_with_one_line_naming_it_and_exit_code_2() {
    for (name, value) in [
        ("BLOGQL_SESSION_IDLE_TIMEOUT", "soon"),
        ("BLOGQL_SESSION_ABSOLUTE_TIMEOUT", "0s"),
        ("BLOGQL_SESSION_ABSOLUTE_TIMEOUT", "10000y"),
        ("DATABASE_URL", "mysql://localhost/blog"),
        (
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/unreachable",
        ),
        ("BLOGQL_BIND", "localhost"),
        ("BLOGQL_PUBLIC_URL", "ftp://example.com"),
        ("BLOGQL_CORS_ORIGINS", "*"),
        ("BLOGQL_TRUSTED_PROXIES", "10.0.0.0/99"),
        ("BLOGQL_INTROSPECTION", "maybe"),
        // Nobody can write there, not even root: SQLite would fail later.
        ("DATABASE_URL", "sqlite:///proc/blogql.db"),
        ("BLOGQL_MAX_CONNECTIONS", "0"),
        ("BLOGQL_REQUEST_HEAD_TIMEOUT", "never"),
        ("BLOGQL_KEEP_ALIVE_TIMEOUT", "0s"),
        ("BLOGQL_REQUEST_TIMEOUT", "soon"),
        ("BLOGQL_SHUTDOWN_GRACE", "-1s"),
        ("REDIS_URL", "memcached://127.0.0.1:11211"),
        ("REDIS_URL", "rediss://127.0.0.1:6380"),
        ("BLOGQL_REDIS_KEY_PREFIX", "{bq}"),
        ("BLOGQL_ACCESS_LOG", "sometimes"),
        ("BLOGQL_METRICS_BIND", "localhost:9100"),
    ] {
        let output = blogql(&["migrate"], &[(name, value)]);
        assert_eq!(output.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(
            stderr.lines().count(),
            1,
            "one line for {name}={value}: {stderr}"
        );
        assert!(stderr.contains(name), "names {name}: {stderr}");
    }
}

#[test]
fn a_metrics_address_already_taken_stops_the_server_with_one_line_and_exit_code_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().expect("its address").to_string();
    let output = blogql(
        &["serve"],
        &[
            ("BLOGQL_BIND", "127.0.0.1:0"),
            ("BLOGQL_METRICS_BIND", &address),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("BLOGQL_METRICS_BIND"), "{stderr}");
    assert!(stderr.contains(&address), "{stderr}");
}

#[test]
fn migrate_creates_the_sqlite_file_on_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let url = format!("sqlite://{}", path.display());
    let output = blogql(&["migrate"], &[("DATABASE_URL", &url)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(path.exists());
    // Applying them again is a no-op.
    assert!(
        blogql(&["migrate"], &[("DATABASE_URL", &url)])
            .status
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(blogql_bin())
        .current_dir(dir.path())
        .env("BLOGQL_BIND", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", "sqlite://blogql.db")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log as it comes, so a full pipe never blocks the server.
    let mut log = server.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        log.read_to_string(&mut text).unwrap();
        text
    });
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/graphql");
    let mut ready = false;
    for _ in 0..100 {
        if client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the server never became ready");
    // Eight registrations queue for two argon2 slots: some are in flight
    // when the signal arrives.
    let requests: Vec<_> = (0..8)
        .map(|n| {
            let request = client.post(&url).json(&serde_json::json!({
                "query": format!("mutation {{ register(input: {{username: \"user{n}\", password: \"correct horse battery\"}}) {{ id }} }}"),
            }));
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut session_ids = Vec::new();
    for request in requests {
        let response = request
            .await
            .unwrap()
            .expect("a request in flight is answered");
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        session_ids.push(
            cookie
                .split(';')
                .next()
                .unwrap()
                .trim_start_matches("sid=")
                .to_owned(),
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["data"]["register"]["id"].is_string(), "{body}");
    }
    let status = server.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // Even at debug level, no password, hash or session ID is logged.
    let log = log.join().unwrap();
    assert!(log.contains("shutting down"), "the log was captured: {log}");
    assert!(!log.contains("correct horse"), "a password in the log");
    assert!(!log.contains("$argon2id$"), "a password hash in the log");
    for id in session_ids {
        assert!(!log.contains(&id), "a session ID in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_on_postgresql_take_turns_migrating() {
    // One SQLite file has one writer anyway.
    require!(Postgres);
    let database = TestDatabase::new().await;
    let url = database.postgres_url().expect("a PostgreSQL database");
    let runs: Vec<_> = (0..4)
        .map(|_| {
            Command::new(blogql_bin())
                .arg("migrate")
                .env("DATABASE_URL", url)
                .env("RUST_LOG", "warn")
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        let output = run.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// What `blogql create-admin USERNAME` did with `stdin` piped in, on `env`:
/// its exit code, stdout and stderr.
fn create_admin(
    username: &str,
    stdin: &str,
    env: &[(&str, String)],
) -> (Option<i32>, String, String) {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(blogql_bin())
        .args(["create-admin", username])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run blogql create-admin");
    // The program may exit before reading: a closed pipe is no failure here.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_admin_makes_the_first_admin_promotes_a_user_and_changes_nothing_twice() {
    let app = TestApp::spawn().await;
    let env = app.database.env();
    // A line from a pipe, ended as Windows editors end it too.
    let (code, stdout, stderr) = create_admin("root", "an operator's secret\r\n", &env);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "created admin root\n", "one line");
    assert_eq!(stderr, "", "nothing else");
    let root = app.browser();
    let body = root.login("root", "an operator's secret").await;
    assert_eq!(body["data"]["login"]["role"], "ADMIN", "{body}");

    let (code, stdout, _) = create_admin("ROOT", "a different secret\n", &env);
    assert_eq!(code, Some(0));
    assert_eq!(stdout, "root is already an admin; nothing changed\n");
    let again = app.browser();
    assert_eq!(
        error_code(&again.login("root", "a different secret").await),
        "INVALID_CREDENTIALS",
        "the password is left alone"
    );
    assert!(root.me().await.is_some(), "and so is the admin's session");

    let bob = app.browser();
    bob.register("bob").await;
    let (code, stdout, stderr) = create_admin("bob", "", &env);
    assert_eq!(code, Some(0), "{stderr}");
    let store = if app.on_redis() {
        "Redis"
    } else {
        "the SQL database"
    };
    assert_eq!(
        stdout,
        format!("promoted bob to admin (signed out of 1 session in {store})\n"),
        "the line says which store it used"
    );
    assert_eq!(bob.me().await, None, "the session with the old role ended");
    let body = bob.login("bob", PASSWORD).await;
    assert_eq!(
        body["data"]["login"]["role"], "ADMIN",
        "same password, new role"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_admin_refuses_bad_input_with_one_line_and_exit_code_2() {
    let app = TestApp::spawn().await;
    let env = app.database.env();
    let unreachable = [(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:1/unreachable".to_owned(),
    )];
    let long_line = format!("{}\n", "p".repeat(10_000));
    for (username, stdin, env, names) in [
        ("no spaces", "a long password\n", &env[..], "USERNAME"),
        ("al", "a long password\n", &env[..], "USERNAME"),
        ("alice", "short\n", &env[..], "password"),
        ("alice", "", &env[..], "password"),
        // Read up to 4 KiB, which is then too long to be a password.
        ("alice", long_line.as_str(), &env[..], "password"),
        (
            "alice",
            "a long password\n",
            &unreachable[..],
            "DATABASE_URL",
        ),
    ] {
        let (code, stdout, stderr) = create_admin(username, stdin, env);
        assert_eq!(code, Some(2), "{username:?} {stdin:?}: {stderr}");
        assert_eq!(stdout, "");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(names), "names {names}: {stderr}");
    }
    assert_eq!(app.sql_count("SELECT COUNT(*) AS n FROM users").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_admin_on_a_terminal_asks_twice_without_echo() {
    use std::io::Write;
    use std::sync::mpsc;
    let app = TestApp::spawn().await;
    // A name of this run's own, to find its process by.
    let username = format!("tty{:08x}", rand::random::<u32>());
    // util-linux `script` gives the program a terminal of its own.
    let mut child = Command::new("script")
        .args([
            "-qefc",
            &format!("{} create-admin {username}", blogql_bin()),
            "/dev/null",
        ])
        .env_remove("RUST_LOG")
        .envs(app.database.env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run blogql under script(1)");
    let mut stdout = child.stdout.take().unwrap();
    let (chunks, received) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 256];
        while let Ok(n @ 1..) = stdout.read(&mut buffer) {
            if chunks.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut wait_for = |text: &str| {
        while !seen.contains(text) {
            let chunk = received
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no {text:?} in {seen:?}"));
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    let mut stdin = child.stdin.take().unwrap();
    // Typed once asked for and once the terminal stopped echoing (the
    // prompt comes just before), as a person types.
    wait_for(&format!("Password for {username}: "));
    wait_for_echo_off(&username);
    stdin.write_all(b"typed in secret\n").unwrap();
    wait_for("Repeat it: ");
    wait_for_echo_off(&username);
    stdin.write_all(b"typed in secret\n").unwrap();
    wait_for(&format!("created admin {username}"));
    assert!(child.wait().unwrap().success());
    assert!(!seen.contains("typed in secret"), "echoed: {seen:?}");
    let body = app.browser().login(&username, "typed in secret").await;
    assert_eq!(body["data"]["login"]["role"], "ADMIN", "{body}");
}

/// Waits until the terminal of the process running with `needle` in its
/// command line has echo off (`stty -a` shows `-echo`); fails after 20 s.
fn wait_for_echo_off(needle: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Some(tty) = terminal_of(needle) {
            let flags = Command::new("stty").args(["-F", &tty, "-a"]).output();
            if flags.is_ok_and(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .any(|flag| flag == "-echo")
            }) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the terminal never turned echo off");
}

/// The terminal (`/dev/pts/N`) on the standard input of a process whose
/// command line contains `needle`.
fn terminal_of(needle: &str) -> Option<String> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(needle) {
            continue;
        }
        if let Ok(tty) = std::fs::read_link(entry.path().join("fd/0"))
            && tty.starts_with("/dev/pts/")
        {
            return Some(tty.display().to_string());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_when_asked_and_never_carry_colour_codes_into_a_pipe() {
    let database = TestDatabase::new().await;
    for format in ["auto", "text", "json"] {
        let server = Process::start(&database, &[("BLOGQL_LOG_FORMAT", format)], &[]).await;
        server.browser().register(&format!("logs{format}")).await;
        let log = server.log();
        assert!(
            !log.contains('\u{1b}'),
            "{format}: colour codes in a pipe: {log}"
        );
        let lines: Vec<&str> = log.lines().filter(|line| !line.is_empty()).collect();
        assert!(lines.len() >= 2, "{format}: {log}");
        if format == "json" {
            for line in &lines {
                let event: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("not one JSON object per line ({err}): {line}"));
                for field in ["timestamp", "level", "target", "message"] {
                    assert!(event.get(field).is_some(), "no {field}: {line}");
                }
            }
        } else {
            assert!(lines.iter().all(|line| !line.starts_with('{')), "{log}");
        }
    }
    let output = blogql(&["migrate"], &[("BLOGQL_LOG_FORMAT", "yaml")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("UTF-8");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("BLOGQL_LOG_FORMAT"), "{stderr}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_that_arrived_as_the_server_stopped_is_answered() {
    // Keep-alive connections, each idle after one answer, then one more
    // request on each, written just before the server is told to stop
    // (without yielding: the server has not read them yet). Each is
    // answered, and then its connection closes; none is cut unanswered,
    // which a proxy could not safely send again for a POST.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const CONNECTIONS: usize = 40;
    let app = TestApp::spawn().await;
    let body = r#"{"query":"{ me { username } }"}"#;
    let request = format!(
        "POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len(),
    );
    let mut sockets = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut socket = tokio::net::TcpStream::connect(app.address).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut answer = vec![0; 4096];
        let read = socket.read(&mut answer).await.unwrap();
        assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
        sockets.push(socket);
    }
    for socket in &sockets {
        let written = socket.try_write(request.as_bytes()).unwrap();
        assert_eq!(written, request.len());
    }
    app.stop().await;
    let mut cut = 0;
    for mut socket in sockets {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
            .await
            .expect("the connection closes after its answer");
        if read.is_err() || !answer.starts_with(b"HTTP/1.1 200") {
            cut += 1;
        }
    }
    assert_eq!(cut, 0, "{cut} of {CONNECTIONS} requests cut unanswered");
}
