//! The blogql server process under test: started on a free loopback port,
//! waited for, watched, and stopped as an operator stops it.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::databases::BenchRedis;
use crate::{BenchError, BenchResult};

/// How long blogql may take to answer `/readyz` with 200 (migrations included).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The blogql binary to measure: this build, or another one named by
/// `BLOGQL_BENCH_BIN` (a build of an earlier commit, to compare the two in
/// adjacent runs).
pub fn server_binary() -> String {
    std::env::var("BLOGQL_BENCH_BIN")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_blogql").to_owned())
}

/// The blogql server process under test.
pub struct Server {
    /// The process; killed if this value is dropped before [`Server::stop`].
    pub child: Child,
    /// Its process ID, for `/proc/<pid>/status`.
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Server {
    /// Starts the release-built `blogql` on a free loopback port with
    /// `database_url` and `settings` (none: its defaults), logging to
    /// `work/{name}.log`, and waits until `/readyz` answers 200.
    pub async fn start(
        database_url: &str,
        redis: Option<&BenchRedis>,
        work: &Path,
        name: &str,
        settings: &[(String, String)],
    ) -> BenchResult<Server> {
        let addr = free_port()?;
        let log = work.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("cannot reopen {}: {e}", log.display()))?;
        let mut command = Command::new(server_binary());
        // Only the settings below: no developer's BLOGQL_*, REDIS_URL or
        // RUST_LOG (the server runs at its default log level, as a user runs
        // it), and no `.env` (the server reads one from its working directory).
        for (key, _) in std::env::vars_os() {
            let key_str = key.to_string_lossy();
            if key_str.starts_with("BLOGQL_")
                || key_str == "REDIS_URL"
                || key_str == "DATABASE_URL"
                || key_str == "RUST_LOG"
            {
                command.env_remove(&key);
            }
        }
        command
            .current_dir(work)
            .env("BLOGQL_BIND", addr.to_string())
            .env("DATABASE_URL", database_url)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        if let Some(redis) = redis {
            command
                .env("REDIS_URL", &redis.url)
                .env("BLOGQL_REDIS_KEY_PREFIX", &redis.prefix);
        }
        command.envs(settings.iter().map(|(name, value)| (name, value)));
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", server_binary()))?;
        let pid = child.id().ok_or("blogql exited as soon as it started")?;
        let mut server = Server {
            child,
            pid,
            addr,
            log,
        };
        println!("started blogql (pid {pid}) on {addr} with DATABASE_URL={database_url}");
        server.wait_ready().await?;
        Ok(server)
    }

    /// Polls `GET /readyz` until it answers 200.
    pub async fn wait_ready(&mut self) -> BenchResult<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let url = format!("http://{}/readyz", self.addr);
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        while start.elapsed() < READY_TIMEOUT {
            self.check_alive().await?;
            match client.get(&url).send().await {
                Ok(resp) if resp.status().is_success() => {
                    println!("blogql ready after {:.1} s", start.elapsed().as_secs_f64());
                    return Ok(());
                }
                Ok(resp) => last = format!("HTTP {}", resp.status()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(self.explain(
            format!("blogql was not ready within {READY_TIMEOUT:?}: GET /readyz: {last}").into(),
        ))
    }

    /// Fails with the exit status and the log's tail if the server has exited.
    pub async fn check_alive(&mut self) -> BenchResult<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.explain(format!("blogql exited: {status}").into())),
            Err(e) => Err(format!("cannot check on blogql: {e}").into()),
        }
    }

    /// Adds the server log's last lines to `err`.
    pub fn explain(&self, err: BenchError) -> BenchError {
        let tail = std::fs::read_to_string(&self.log)
            .map(|text| {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(20)..].join("\n")
            })
            .unwrap_or_default();
        if tail.is_empty() {
            err
        } else {
            format!("{err}\n--- last lines of the blogql log ---\n{tail}").into()
        }
    }

    /// The process's peak resident set so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Stops the server with SIGTERM (as an operator would), and kills it if
    /// it has not exited within 10 s. Says so if it did not exit cleanly.
    pub async fn stop(mut self) {
        let term = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if !matches!(term, Ok(s) if s.success()) {
            let _ = self.child.start_kill();
        }
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                println!("note: blogql exited with {status} after SIGTERM (expected 0)")
            }
            Ok(Err(e)) => println!("note: cannot wait for blogql: {e}"),
            Err(_) => {
                println!("note: blogql did not exit within 10 s of SIGTERM; killing it");
                let _ = self.child.kill().await;
            }
        }
    }
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> BenchResult<SocketAddr> {
    let listener = StdTcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))?;
    listener
        .local_addr()
        .map_err(|e| format!("cannot read a bound port: {e}").into())
}
