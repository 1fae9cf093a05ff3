//! Programs tests run as child processes: the `blogql` binary as a user
//! runs it (under `prlimit`), and a redis-server of a test's own.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Browser, TestDatabase};

/// The `blogql` binary under test (`BLOGQL_TEST_BIN` names another build,
/// to measure an older one against the same attacks).
pub fn blogql_bin() -> String {
    std::env::var("BLOGQL_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_blogql").to_owned())
}

/// Runs `blogql ARGS` to its end in an empty directory, without the
/// developer's `DATABASE_URL`, with `RUST_LOG=warn` and `env`: its exit
/// code, stdout and stderr.
pub fn blogql(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut command = Command::new(blogql_bin());
    command
        .args(args)
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run blogql")
}

/// The `blogql` binary, running as a user runs it, under resource limits.
pub struct Process {
    pub address: SocketAddr,
    child: Option<Child>,
    log: Option<std::thread::JoinHandle<String>>,
    _dir: tempfile::TempDir,
}

impl Process {
    /// Starts `blogql serve` on `database` with `env` under `prlimit`'s
    /// `limits` (`--nofile=256`, `--data=…`), and waits until it answers.
    pub async fn start(database: &TestDatabase, env: &[(&str, &str)], limits: &[&str]) -> Self {
        Self::launch(database, env, limits, Logs::Read).await
    }

    /// As [`Process::start`], with its stderr a pipe that nobody reads:
    /// once the pipe is full, every write to it would block.
    pub async fn start_with_logs_unread(database: &TestDatabase, env: &[(&str, &str)]) -> Self {
        Self::launch(database, env, &[], Logs::Unread).await
    }

    async fn launch(
        database: &TestDatabase,
        env: &[(&str, &str)],
        limits: &[&str],
        logs: Logs,
    ) -> Self {
        use std::io::Read;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        let mut command = Command::new("prlimit");
        command
            .args(limits)
            .arg("--")
            .arg(blogql_bin())
            .current_dir(dir.path())
            .env("BLOGQL_BIND", address.to_string())
            .envs(database.env())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start blogql under prlimit");
        let log = match logs {
            // Read the log as it comes, so a full pipe never blocks the server.
            Logs::Read => {
                let mut stderr = child.stderr.take().expect("a piped stderr");
                Some(std::thread::spawn(move || {
                    let mut text = String::new();
                    let _ = stderr.read_to_string(&mut text);
                    text
                }))
            }
            // Held open (in `child`), never read.
            Logs::Unread => None,
        };
        let process = Self {
            address,
            child: Some(child),
            log,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            let ready = client
                .get(process.url("/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("blogql never became ready");
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A new browser with an empty cookie jar, talking to this process.
    pub fn browser(&self) -> Browser {
        Browser::new(self.address, reqwest::Client::builder())
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The process's peak resident memory so far, in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the process is alive");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .expect("VmHWM")
            / 1024
    }

    /// Whether the process is still running.
    #[allow(dead_code)]
    pub fn is_running(&mut self) -> bool {
        matches!(
            self.child.as_mut().map(|child| child.try_wait()),
            Some(Ok(None))
        )
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    }

    /// Waits up to `bound` for the process to exit; its exit code, or
    /// `None` if it was still running (then it is killed).
    pub async fn wait_exit(&mut self, bound: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + bound;
        while tokio::time::Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|child| child.try_wait()) {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Stops the process (if running) as an operator does (SIGTERM, so
    /// that it writes the lines still queued; killed if it has not exited
    /// within 10 s), and returns everything it logged.
    pub fn log(mut self) -> String {
        if let Some(child) = self.child.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            self.terminate();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline
                && matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
        self.log
            .take()
            .and_then(|log| log.join().ok())
            .unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a [`Process`]'s stderr is read as it comes.
enum Logs {
    Read,
    Unread,
}

/// A redis-server of this test's own, stopped when dropped.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    /// Starts redis-server on `port` (again, after [`OwnRedis::stop`]).
    pub fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            port,
            child: Some(child),
        }
    }

    /// Starts redis-server on a free port.
    pub fn start() -> Self {
        let port = free_port();
        Self::start_on(port)
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it, as a Redis that goes away.
    /// Holds every write (scripts included) for `millis`, while reads go
    /// on: a Redis that answers who is signed in but cannot end a session.
    pub fn pause_writes(&self, millis: u64) {
        let mut conn = redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("connect to the test's Redis");
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(millis)
            .arg("WRITE")
            .query(&mut conn)
            .expect("CLIENT PAUSE");
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port nobody listens on just now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
