//! The live-updates benchmark: `cargo bench --bench live [-- OPTIONS]`.
//!
//! It runs the release-built `blogql` on a fresh PostgreSQL database and
//! measures, with the real protocol (`graphql-transport-ws` over
//! tokio-tungstenite), what a subscriber waits:
//!
//! - `createPost` sent to instance A until `postCreated` arrives on a
//!   subscriber of instance B (p50/p99 over `--posts`), with the bus on
//!   PostgreSQL + Redis, then on PostgreSQL alone;
//! - `revokeSession` sent to A until the revoked session's `sessionEnded`
//!   arrives on its socket on B (p50/p99 over `--sessions`), on both;
//! - one instance holding `--subscribers` idle `postCreated` sockets: the
//!   memory they take (RSS above the same server idle), and how long one
//!   `createPost` takes to reach the last of them (p50/p99 over
//!   `--fanout-posts`), as the clients see it and as the server's own
//!   `blogql_subscription_fanout_seconds` does (its metrics listener on),
//!   with the server's CPU time per post. The sockets come from many
//!   loopback addresses (127.0.1.0/24 and up), since one address may hold
//!   64.
//!
//! The clients run in this process on the same machine: every figure
//! includes their share of the two cores. Everything is on loopback; the
//! database is dropped and the Redis keys deleted at the end.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Returns early with a formatted [`BenchError`] (as the shared modules expect).
macro_rules! bail {
    ($($arg:tt)*) => { return Err(format!($($arg)*).into()) };
}

#[path = "../../tests/support/backends.rs"]
mod backends;
#[path = "../load/databases.rs"]
#[allow(
    dead_code,
    reason = "shared with the load benchmark, which uses all of it"
)]
mod databases;
#[path = "../load/server.rs"]
#[allow(
    dead_code,
    reason = "shared with the load benchmark, which uses all of it"
)]
mod server;

use databases::BenchRedis;
use server::Server;

/// Any failure of the benchmark itself; the message says what and where.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// The benchmark's result type.
pub type BenchResult<T> = Result<T, BenchError>;

const PASSWORD: &str = "bench password 1234";

/// What to measure, and how much.
#[derive(Parser, Debug)]
#[command(about = "Measures blogql's live updates: delivery across instances, fan-out, memory")]
struct Args {
    /// Posts created for the cross-instance delay.
    #[arg(long, default_value_t = 1000)]
    posts: usize,
    /// Sessions revoked for the revocation delay (one user's, so at most
    /// 99: a user holds 100 sessions, the oldest ending first).
    #[arg(long, default_value_t = 50)]
    sessions: usize,
    /// Idle subscribers held by one instance.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Posts fanned out to all of them.
    #[arg(long, default_value_t = 20)]
    fanout_posts: usize,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    raise_open_files();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("live benchmark failed: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> BenchResult<()> {
    let work = tempfile::tempdir()?;
    let database = databases::fresh_postgres().await?;
    let redis = BenchRedis::new();
    let result = measure_all(args, database.url(), &redis, work.path()).await;
    redis.clean_up();
    if let Err(err) = database.drop_database().await {
        eprintln!("could not drop the benchmark database: {err}");
    }
    result
}

async fn measure_all(args: &Args, url: &str, redis: &BenchRedis, work: &Path) -> BenchResult<()> {
    println!("# blogql live updates, {}", machine());
    for (label, redis) in [
        ("PostgreSQL + Redis", Some(redis)),
        ("PostgreSQL alone", None),
    ] {
        let a = Server::start(
            url,
            redis,
            &folder(work, &format!("{label} a"))?,
            "server",
            &[],
        )
        .await?;
        let b = Server::start(
            url,
            redis,
            &folder(work, &format!("{label} b"))?,
            "server",
            &[],
        )
        .await?;
        let posts = cross_instance_posts(&a, &b, args.posts).await?;
        println!(
            "{label}: createPost on A -> postCreated on B, {}",
            summary(&posts)
        );
        let revocations = cross_instance_revocations(&a, &b, args.sessions).await?;
        println!(
            "{label}: revokeSession on A -> sessionEnded on B, {}",
            summary(&revocations)
        );
        a.stop().await;
        b.stop().await;
    }
    // Metrics on: the server's own account of its fan-out.
    let metrics = server::free_port()?;
    let settings = [("BLOGQL_METRICS_BIND".to_owned(), metrics.to_string())];
    let server = Server::start(
        url,
        Some(redis),
        &folder(work, "fan-out")?,
        "server",
        &settings,
    )
    .await?;
    let metrics = format!("http://{metrics}/metrics");
    fan_out(&server, &metrics, args.subscribers, args.fanout_posts).await?;
    server.stop().await;
    Ok(())
}

/// A username not yet taken in this run's database.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A folder of `work` for one server's log.
fn folder(work: &Path, name: &str) -> BenchResult<std::path::PathBuf> {
    let path = work.join(name.replace([' ', '+'], "_"));
    std::fs::create_dir_all(&path)?;
    Ok(path)
}

fn raise_open_files() {
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{date}, {cores} cores, release build, default settings")
}

/// `p50 … ms, p99 … ms (n = …)`.
fn summary(samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| {
        let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index].as_secs_f64() * 1000.0
    };
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n = {})",
        at(0.50),
        at(0.99),
        at(1.0),
        sorted.len()
    )
}

/// A cookie-keeping GraphQL client on `server`.
struct Http {
    client: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    url: String,
}

impl Http {
    fn new(server: &Server) -> BenchResult<Self> {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        Ok(Self {
            client: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .build()?,
            jar,
            url: format!("http://{}/graphql", server.addr),
        })
    }

    /// The `Cookie` header this client sends (its session).
    fn session_cookie(&self) -> BenchResult<String> {
        use reqwest::cookie::CookieStore as _;
        let header = self
            .jar
            .cookies(&self.url.parse()?)
            .ok_or("no session cookie")?;
        Ok(header.to_str()?.to_owned())
    }

    async fn graphql(&self, query: &str, variables: Value) -> BenchResult<Value> {
        let body: Value = self
            .client
            .post(&self.url)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await?
            .json()
            .await?;
        if body.get("errors").is_some() {
            return Err(format!("{query}: {body}").into());
        }
        Ok(body)
    }

    async fn register(&self, username: &str) -> BenchResult<()> {
        self.graphql(
            "mutation($i: RegisterInput!) { register(input: $i) { id } }",
            json!({"i": {"username": username, "password": PASSWORD}}),
        )
        .await
        .map(drop)
    }

    async fn login(&self, username: &str) -> BenchResult<()> {
        self.graphql(
            "mutation($i: LoginInput!) { login(input: $i) { id } }",
            json!({"i": {"username": username, "password": PASSWORD}}),
        )
        .await
        .map(drop)
    }

    async fn create_post(&self, title: &str) -> BenchResult<()> {
        self.graphql(
            "mutation($i: CreatePostInput!) { createPost(input: $i) { id } }",
            json!({"i": {"title": title, "body": "live"}}),
        )
        .await
        .map(drop)
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A socket to `server` from `from`, with `cookie`, initialised and
/// subscribed to `query` as id "1".
async fn subscriber(
    server: &Server,
    from: IpAddr,
    cookie: Option<&str>,
    query: &str,
) -> BenchResult<Socket> {
    let tcp = TcpSocket::new_v4()?;
    tcp.bind(SocketAddr::new(from, 0))?;
    let stream = tcp.connect(server.addr).await?;
    let mut request = format!("ws://{}/graphql/ws", server.addr).into_client_request()?;
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    if let Some(cookie) = cookie {
        headers.insert("cookie", cookie.parse()?);
    }
    let (mut socket, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await?;
    socket
        .send(Message::Text(
            json!({"type": "connection_init"}).to_string().into(),
        ))
        .await?;
    let ack = next_message(&mut socket).await?;
    if ack["type"] != "connection_ack" {
        return Err(format!("no ack: {ack}").into());
    }
    socket
        .send(Message::Text(
            json!({"type": "subscribe", "id": "1", "payload": {"query": query}})
                .to_string()
                .into(),
        ))
        .await?;
    Ok(socket)
}

async fn next_message(socket: &mut Socket) -> BenchResult<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Ok(serde_json::from_str(text.as_str())?),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => return Err(format!("the socket ended: {other:?}").into()),
            Err(_) => return Err("nothing arrived within 30 s".into()),
        }
    }
}

async fn cross_instance_posts(a: &Server, b: &Server, count: usize) -> BenchResult<Vec<Duration>> {
    let author = Http::new(a)?;
    author.register(&unique("author")).await?;
    let mut socket = subscriber(
        b,
        [127, 0, 0, 1].into(),
        None,
        "subscription { postCreated { title } }",
    )
    .await?;
    // The subscription is live once a post made after it arrives.
    author.create_post("warm-up").await?;
    next_message(&mut socket).await?;
    let mut delays = Vec::with_capacity(count);
    for n in 0..count {
        let title = format!("p{n}");
        let sent = Instant::now();
        let (created, heard) = tokio::join!(author.create_post(&title), async {
            loop {
                let message = next_message(&mut socket).await?;
                if message["payload"]["data"]["postCreated"]["title"] == title.as_str() {
                    return BenchResult::Ok(sent.elapsed());
                }
            }
        });
        created?;
        delays.push(heard?);
    }
    Ok(delays)
}

async fn cross_instance_revocations(
    a: &Server,
    b: &Server,
    count: usize,
) -> BenchResult<Vec<Duration>> {
    let username = unique("revoked");
    let owner = Http::new(a)?;
    owner.register(&username).await?;
    let mut watched = Vec::new();
    for n in 0..count {
        let device = Http::new(a)?;
        device.login(&username).await?;
        let cookie = device.session_cookie()?;
        // One loopback address holds 64 sockets: 60 per address from 127.0.2.0.
        let from = IpAddr::from([127, 0, 2, u8::try_from(n / 60)?]);
        let socket = subscriber(b, from, Some(&cookie), "subscription { sessionEnded }").await?;
        watched.push(socket);
    }
    let listed = owner
        .graphql("{ sessions { id current createdAt } }", json!({}))
        .await?;
    // Newest first: the devices in reverse order of signing in.
    let mut handles: Vec<String> = listed["data"]["sessions"]
        .as_array()
        .ok_or("no sessions")?
        .iter()
        .filter(|s| s["current"] == false)
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    handles.reverse();
    if handles.len() != watched.len() {
        return Err(format!(
            "{} sessions listed for {} devices",
            handles.len(),
            watched.len()
        )
        .into());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut delays = Vec::with_capacity(count);
    for (handle, socket) in handles.iter().zip(watched.iter_mut()) {
        let sent = Instant::now();
        let (revoked, heard) = tokio::join!(
            owner.graphql(
                "mutation($id: ID!) { revokeSession(id: $id) }",
                json!({"id": handle})
            ),
            async {
                let message = next_message(socket).await?;
                if message["payload"]["data"]["sessionEnded"] != "REVOKED" {
                    return Err(format!("not revoked: {message}").into());
                }
                BenchResult::Ok(sent.elapsed())
            }
        );
        revoked?;
        delays.push(heard?);
    }
    Ok(delays)
}

/// The server's resident memory now, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The server's CPU time so far (user and system), from `/proc`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: state is field 3, utime 14.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel's USER_HZ, 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// The cumulative buckets of the histogram `name` in a Prometheus
/// exposition: (upper bound, count), `+Inf` last.
fn histogram_buckets(exposition: &str, name: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect()
}

/// The bucket bound under which fraction `q` of the histogram's samples
/// fall (Prometheus' own resolution: no finer than its buckets).
fn bucket_quantile(buckets: &[(f64, u64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0, |(_, count)| *count);
    let wanted = (q * total as f64).ceil() as u64;
    buckets
        .iter()
        .find(|(_, count)| *count >= wanted)
        .map_or(f64::INFINITY, |(bound, _)| *bound)
}

async fn fan_out(
    server: &Server,
    metrics: &str,
    subscribers: usize,
    posts: usize,
) -> BenchResult<()> {
    let author = Http::new(server)?;
    author.register(&unique("fan")).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(server.pid).ok_or("cannot read the server's RSS")?;
    let received = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut readers = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(256));
    for n in 0..subscribers {
        // 60 sockets per loopback address, from 127.0.1.0 up.
        let host = u32::from(std::net::Ipv4Addr::new(127, 0, 1, 0)) + u32::try_from(n / 60)?;
        let from = IpAddr::from(std::net::Ipv4Addr::from(host));
        let permit = limit.clone().acquire_owned().await?;
        let socket = subscriber(
            server,
            from,
            None,
            "subscription { postCreated { id title } }",
        )
        .await?;
        drop(permit);
        opened.fetch_add(1, Ordering::Relaxed);
        let received = received.clone();
        readers.spawn(async move {
            let mut socket = socket;
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(_) = message {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        if (n + 1) % 2000 == 0 {
            println!(
                "  {} subscribers open ({:.0} s)",
                n + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = rss_kib(server.pid).ok_or("cannot read the server's RSS")?;
    let per_socket = (loaded.saturating_sub(idle)) as f64 / subscribers as f64;
    println!(
        "fan-out server: RSS {:.1} MiB idle, {:.1} MiB with {subscribers} idle subscribers: {:.1} KiB each, {:.0} per 100 MiB",
        idle as f64 / 1024.0,
        loaded as f64 / 1024.0,
        per_socket,
        100.0 * 1024.0 / per_socket
    );
    let mut delays = Vec::with_capacity(posts);
    let cpu_before = cpu_time(server.pid).ok_or("cannot read the server's CPU time")?;
    for n in 0..posts {
        let before = received.load(Ordering::Relaxed);
        let sent = Instant::now();
        author.create_post(&format!("fan {n}")).await?;
        while received.load(Ordering::Relaxed) < before + subscribers {
            if sent.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "post {n} reached {} of {subscribers} in 60 s",
                    received.load(Ordering::Relaxed) - before
                )
                .into());
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        delays.push(sent.elapsed());
    }
    let cpu = cpu_time(server.pid).ok_or("cannot read the server's CPU time")? - cpu_before;
    println!(
        "fan-out: createPost -> the last of {subscribers} subscribers on one instance, {}",
        summary(&delays)
    );
    let exposition = reqwest::get(metrics).await?.text().await?;
    let buckets = histogram_buckets(&exposition, "blogql_subscription_fanout_seconds");
    let per_post = cpu.as_secs_f64() / posts as f64;
    println!(
        "fan-out, as the server saw it: result ready -> frame written on the last socket, p50 <= {} ms, p99 <= {} ms (its histogram's buckets, n = {}); server CPU {:.1} ms per post, {:.1} us per subscriber",
        bucket_quantile(&buckets, 0.5) * 1000.0,
        bucket_quantile(&buckets, 0.99) * 1000.0,
        buckets.last().map_or(0, |(_, count)| *count),
        per_post * 1000.0,
        per_post * 1e6 / subscribers as f64
    );
    readers.abort_all();
    Ok(())
}
