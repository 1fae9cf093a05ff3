//! The load benchmark: run it with `benches/run [OPTIONS]`, which installs
//! wrk if needed and calls `cargo bench --bench load -- [OPTIONS]`.
//!
//! For each database (SQLite, PostgreSQL) it starts the release-built
//! `blogql` binary on a fresh database, seeds 50 users and 1,000 posts
//! through the GraphQL API, and drives each scenario with wrk for a fixed
//! time. Just before each scenario the same wrk run (same options, same Lua
//! script, same request) goes to a bare axum handler inside this process that
//! returns a fixed body: that is the "ceiling" this machine and wrk reach
//! with no GraphQL server at all, and each scenario is reported as a share of
//! it, measured under the same conditions.
//!
//! Only answers that are 2xx, carry `"data"` and no `"errors"` count as
//! successes (see `lua/count.lua`): a fast stream of errors is not
//! throughput. The server's peak RSS is its `VmHWM` after each scenario.
//!
//! Everything listens on loopback only. The PostgreSQL database is made for
//! the run and dropped at its end, also when the run fails or is interrupted.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::{Algorithm, Argon2, Version};
use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use clap::{Parser, ValueEnum};
use diesel_async::pg::AsyncPgConnection;
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// Any failure of the benchmark itself; the message says what and where.
type BenchError = Box<dyn std::error::Error + Send + Sync>;
/// The benchmark's result type.
type BenchResult<T> = Result<T, BenchError>;

/// Returns early with a formatted [`BenchError`].
macro_rules! bail {
    ($($arg:tt)*) => { return Err(format!($($arg)*).into()) };
}

/// Users the seed step registers.
const SEED_USERS: usize = 50;
/// Posts each seeded user writes (50 × 20 = 1,000).
const POSTS_PER_USER: usize = 20;
/// Seed requests in flight at once.
const SEED_CONCURRENCY: usize = 8;
/// wrk threads; the machine this was written for has 2 cores.
const WRK_THREADS: u32 = 2;
/// Length of the unmeasured warm-up run before every measured run.
const WARM_UP: Duration = Duration::from_secs(1);
/// How long blogql may take to answer `/readyz` with 200 (migrations included).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// What the ceiling handler answers to every request.
const CEILING_BODY: &str = r#"{"data":{"me":null}}"#;
/// PostgreSQL server used when `BLOGQL_BENCH_PG_URL` is unset.
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The success check and result line shared by all wrk scripts.
const COUNT_LUA: &str = include_str!("lua/count.lua");

/// Command-line options (`benches/run --help`).
#[derive(Parser, Debug)]
#[command(
    name = "benches/run",
    bin_name = "benches/run",
    about = "Load benchmark for blogql, driven by wrk"
)]
struct Args {
    /// Which database(s) to run blogql on.
    #[arg(long, value_enum, default_value_t = DbChoice::All)]
    db: DbChoice,
    /// Where blogql keeps sessions: its database, or Redis
    /// (`BLOGQL_BENCH_REDIS_URL`, default redis://127.0.0.1:6379).
    #[arg(long, value_enum, default_value_t = StoreChoice::Sql)]
    store: StoreChoice,
    /// Seconds each measured wrk run lasts.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    duration: u32,
    /// Open connections wrk keeps.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// Run only these scenarios (comma-separated); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Measure only the bare axum ceiling (no blogql, no database): checks
    /// that wrk and the scripts work.
    #[arg(long)]
    ceiling_only: bool,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The `--db` choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DbChoice {
    Sqlite,
    Postgres,
    All,
}

/// The `--store` choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StoreChoice {
    Sql,
    Redis,
}

/// Redis server used when `BLOGQL_BENCH_REDIS_URL` is unset.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Sessions in Redis for one run: the URL and a key prefix of its own,
/// whose keys are deleted when the run ends.
#[derive(Clone, Debug)]
struct BenchRedis {
    url: String,
    prefix: String,
}

impl BenchRedis {
    fn new() -> Self {
        Self {
            url: std::env::var("BLOGQL_BENCH_REDIS_URL")
                .unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned()),
            prefix: format!("bq-bench-{}", std::process::id()),
        }
    }

    fn clean_up(&self) {
        let Ok(mut conn) =
            redis::Client::open(self.url.as_str()).and_then(|client| client.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{{{}}}:*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// A database blogql runs on during one part of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    /// The name shown in headings and progress lines.
    fn label(self) -> &'static str {
        match self {
            Db::Sqlite => "SQLite",
            Db::Postgres => "PostgreSQL",
        }
    }
}

/// One kind of request the benchmark drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Scenario {
    /// `{ me { id username } }` with a session cookie.
    #[value(name = "me_authed")]
    MeAuthed,
    /// `{ me { id username } }` with an API token (`Authorization: Bearer`).
    #[value(name = "me_token")]
    MeToken,
    /// `{ me { id username } }` without a cookie: `{"data":{"me":null}}`.
    #[value(name = "me_anon")]
    MeAnon,
    /// The first page of 20 posts with their authors' usernames.
    #[value(name = "posts_page")]
    PostsPage,
    /// `createPost` as a signed-in user.
    #[value(name = "create_post")]
    CreatePost,
    /// `login` with a correct password (one argon2 verification each).
    #[value(name = "login")]
    Login,
}

impl Scenario {
    /// Every scenario, in the order they run (reads before `create_post`
    /// adds posts).
    const ALL: [Scenario; 6] = [
        Scenario::MeAuthed,
        Scenario::MeToken,
        Scenario::MeAnon,
        Scenario::PostsPage,
        Scenario::CreatePost,
        Scenario::Login,
    ];

    /// The scenario's name, as `--only` takes it.
    fn name(self) -> &'static str {
        match self {
            Scenario::MeAuthed => "me_authed",
            Scenario::MeToken => "me_token",
            Scenario::MeAnon => "me_anon",
            Scenario::PostsPage => "posts_page",
            Scenario::CreatePost => "create_post",
            Scenario::Login => "login",
        }
    }

    /// The JSON body and the credential header (if any) of its request.
    fn request(self, seed: &Seed) -> (Value, Option<Credential>) {
        let me = "{ me { id username } }";
        let cookie = || Some(Credential::Cookie(seed.cookie.clone()));
        match self {
            Scenario::MeAuthed => (json!({ "query": me }), cookie()),
            Scenario::MeToken => (
                json!({ "query": me }),
                Some(Credential::Token(seed.token.clone())),
            ),
            Scenario::MeAnon => (json!({ "query": me }), None),
            Scenario::PostsPage => (
                json!({
                    "query": "{ posts(first: 20) { edges { node { id title author { username } } } } }"
                }),
                None,
            ),
            Scenario::CreatePost => (
                json!({
                    "query": "mutation($input: CreatePostInput!) { createPost(input: $input) { id } }",
                    "variables": { "input": {
                        "title": "Load test post",
                        "body": "A short body written by the load benchmark.",
                    } },
                }),
                cookie(),
            ),
            Scenario::Login => (
                json!({
                    "query": "mutation($input: LoginInput!) { login(input: $input) { id } }",
                    "variables": { "input": {
                        "username": seed.login_username,
                        "password": seed.login_password,
                    } },
                }),
                None,
            ),
        }
    }
}

/// How a request proves who it is.
#[derive(Clone, Debug)]
enum Credential {
    /// `sid=...`, sent as `Cookie`.
    Cookie(String),
    /// An API token, sent as `Authorization: Bearer`.
    Token(String),
}

impl Credential {
    /// The header that carries it: name and value.
    fn header(&self) -> (&'static str, String) {
        match self {
            Credential::Cookie(cookie) => ("Cookie", cookie.clone()),
            Credential::Token(token) => ("Authorization", format!("Bearer {token}")),
        }
    }
}

/// What the seed step leaves for the scenarios.
struct Seed {
    /// `sid=...` of a signed-in seeded user.
    cookie: String,
    /// An API token of the same user.
    token: String,
    /// A seeded user (another one than the cookie's) whose password is known.
    login_username: String,
    /// That user's password.
    login_password: String,
}

/// The blogql binary to measure: this build, or another one named by
/// `BLOGQL_BENCH_BIN` (a build of an earlier commit, to compare the two in
/// adjacent runs).
fn server_binary() -> String {
    std::env::var("BLOGQL_BENCH_BIN")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_blogql").to_owned())
}

/// The result line `lua/count.lua` prints at the end of a wrk run.
#[derive(Debug, Deserialize)]
struct WrkResult {
    /// Successful answers: 2xx with `"data"` and no `"errors"`.
    ok: u64,
    /// Every complete HTTP response received.
    responses: u64,
    /// Length of the run in microseconds.
    duration_us: u64,
    /// Median latency in microseconds.
    p50_us: u64,
    /// 99th-percentile latency in microseconds.
    p99_us: u64,
    /// Socket-level failures, counted by wrk.
    connect_errors: u64,
    read_errors: u64,
    write_errors: u64,
    timeouts: u64,
    /// The first failing answer (`STATUS BODY…`), if any.
    sample: Option<String>,
}

impl WrkResult {
    /// Successful answers per second.
    fn ok_per_sec(&self) -> f64 {
        self.ok as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }

    /// Everything that was tried and did not succeed.
    fn non_ok(&self) -> u64 {
        self.responses.saturating_sub(self.ok)
            + self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeouts
    }
}

/// One row of a result table.
struct Row {
    scenario: Scenario,
    blogql: WrkResult,
    ceiling: WrkResult,
    /// The server's `VmHWM` after the scenario, in KiB (`None` without a server).
    peak_rss_kib: Option<u64>,
}

/// How wrk is run for every measured scenario.
#[derive(Clone, Copy)]
struct LoadShape {
    duration: Duration,
    connections: u32,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("load benchmark failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the whole benchmark as `args` asks and writes the report.
async fn run(args: Args) -> BenchResult<()> {
    check_wrk().await?;
    let scenarios: Vec<Scenario> = if args.only.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        let chosen: BTreeSet<Scenario> = args.only.iter().copied().collect();
        Scenario::ALL
            .into_iter()
            .filter(|s| chosen.contains(s))
            .collect()
    };
    let shape = LoadShape {
        duration: Duration::from_secs(u64::from(args.duration)),
        connections: args.connections,
    };
    let dbs: Vec<Db> = match args.db {
        DbChoice::Sqlite => vec![Db::Sqlite],
        DbChoice::Postgres => vec![Db::Postgres],
        DbChoice::All => vec![Db::Sqlite, Db::Postgres],
    };

    let ceiling = start_ceiling().await?;
    let mut report = String::new();
    let _ = writeln!(report, "# blogql load benchmark\n");
    let _ = writeln!(report, "{}\n", machine_line());
    let _ = writeln!(
        report,
        "wrk -t{} -c{} -d{}s, {} s warm-up before every run; ceiling = bare axum \
         handler returning `{CEILING_BODY}`, run just before each scenario.\n",
        WRK_THREADS.min(shape.connections),
        shape.connections,
        args.duration,
        WARM_UP.as_secs(),
    );
    print!("{report}");
    let results_path = results_path();
    write_results(&results_path, &report)?;

    let login_ceiling = if scenarios.contains(&Scenario::Login) {
        Some(measure_login_ceiling().await?)
    } else {
        None
    };

    if args.ceiling_only {
        let seed = Seed {
            cookie: "sid=ceiling-only".to_owned(),
            token: "blogql_ceiling-only".to_owned(),
            login_username: "bench_user_01".to_owned(),
            login_password: password_for(1),
        };
        let work = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
        for &scenario in &scenarios {
            let script = write_script(work.path(), scenario, &seed)?;
            let result = measure(&script, ceiling, shape).await?;
            println!(
                "ceiling {:<12} {:>9.0} ok req/s, p50 {:.2} ms, p99 {:.2} ms, non-ok {}",
                scenario.name(),
                result.ok_per_sec(),
                result.p50_us as f64 / 1000.0,
                result.p99_us as f64 / 1000.0,
                result.non_ok()
            );
            if let Some(sample) = &result.sample {
                println!("  first non-ok answer: {sample}");
            }
        }
        if let Some(lc) = &login_ceiling {
            println!("{}", login_ceiling_line(lc));
        }
        return Ok(());
    }

    let redis = (args.store == StoreChoice::Redis).then(BenchRedis::new);
    for db in dbs {
        let section = run_db(
            db,
            redis.as_ref(),
            &scenarios,
            ceiling,
            shape,
            login_ceiling.as_ref(),
        )
        .await?;
        print!("{section}");
        report.push_str(&section);
        write_results(&results_path, &report)?;
    }
    println!("(written to {})", results_path.display());
    Ok(())
}

/// Fails with a clear line when wrk is not installed.
async fn check_wrk() -> BenchResult<()> {
    match Command::new("wrk").arg("--version").output().await {
        Ok(_) => Ok(()),
        Err(e) => {
            bail!("cannot run wrk ({e}); install it (`apt-get install -y wrk`) or use benches/run")
        }
    }
}

/// Starts the ceiling: a bare axum handler on a loopback port that answers
/// every GET and POST to `/graphql` with [`CEILING_BODY`].
async fn start_ceiling() -> BenchResult<SocketAddr> {
    /// Reads the request body (as a real server would) and answers the fixed body.
    async fn fixed(_body: Bytes) -> impl IntoResponse {
        ([(CONTENT_TYPE, "application/json")], CEILING_BODY)
    }
    let app = Router::new().route("/graphql", get(fixed).post(fixed));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot bind the ceiling server on 127.0.0.1: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("ceiling server has no local address: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("ceiling server stopped: {e}");
        }
    });
    Ok(addr)
}

/// The login ceiling: what the cores can do if a login were nothing but its
/// password hash.
struct LoginCeiling {
    /// Median time of one hash on reused memory (the ceiling's basis).
    hash_time: Duration,
    /// Median time of one hash on freshly allocated memory.
    fresh_time: Duration,
    /// Cores available to this process.
    cores: usize,
}

impl LoginCeiling {
    /// Logins per second if every core did nothing but hash.
    fn per_sec(&self) -> f64 {
        self.cores as f64 / self.hash_time.as_secs_f64()
    }
}

/// The argon2 parameters blogql hashes passwords with: the library's own,
/// so the login ceiling always measures the configured cost.
fn argon2_params() -> argon2::Params {
    blogql::accounts::passwords::argon2_params()
}

/// Times one argon2id hash with the configured parameters (median of 10,
/// after one warm-up) on a blocking thread, twice: with the ~19 MiB of
/// blocks allocated afresh for each hash (what `hash_password_into` does),
/// and with one buffer reused. A fresh allocation is mmap'd and page-faulted
/// in on every hash, which a long-running server whose allocator keeps the
/// memory does not pay, so the ceiling uses the reused-memory time: a
/// ceiling must not be lower than what the server can reach.
async fn measure_login_ceiling() -> BenchResult<LoginCeiling> {
    let params = argon2_params();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::task::spawn_blocking(move || -> BenchResult<LoginCeiling> {
        let block_count = params.block_count();
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let password = b"correct horse battery staple";
        let salt = *b"bench-salt-16byt";
        let mut out = [0u8; 32];
        let mut blocks = vec![argon2::Block::default(); block_count];
        let fail = |e: argon2::Error| format!("argon2 hash failed: {e}");
        let fresh_time = median_of_10(|| {
            hasher
                .hash_password_into(password, &salt, &mut out)
                .map_err(fail)
        })?;
        let hash_time = median_of_10(|| {
            hasher
                .hash_password_into_with_memory(password, &salt, &mut out, &mut blocks)
                .map_err(fail)
        })?;
        Ok(LoginCeiling {
            hash_time,
            fresh_time,
            cores,
        })
    })
    .await
    .map_err(|e| format!("argon2 timing thread failed: {e}"))?
}

/// The median time of 10 calls of `f`, after one unmeasured call.
fn median_of_10(mut f: impl FnMut() -> Result<(), String>) -> BenchResult<Duration> {
    f()?;
    let mut times = Vec::with_capacity(10);
    for _ in 0..10 {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Runs every scenario against blogql on `db`, and returns its report section.
async fn run_db(
    db: Db,
    redis: Option<&BenchRedis>,
    scenarios: &[Scenario],
    ceiling: SocketAddr,
    shape: LoadShape,
    login_ceiling: Option<&LoginCeiling>,
) -> BenchResult<String> {
    let label = match redis {
        Some(_) => format!("{} + Redis", db.label()),
        None => db.label().to_owned(),
    };
    println!("== {label} ==");
    let work = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let (database_url, pg_cleanup) = match db {
        Db::Sqlite => (
            format!("sqlite://{}", work.path().join("bench.db").display()),
            None,
        ),
        Db::Postgres => {
            let fresh = FreshPgDatabase::create().await?;
            (fresh.url.clone(), Some(fresh))
        }
    };

    // Ctrl-C drops the inner future, and with it the server (kill_on_drop),
    // so the database can still be dropped below.
    let outcome = tokio::select! {
        outcome = run_db_inner(&label, &database_url, redis, work.path(), scenarios, ceiling, shape, login_ceiling) => outcome,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    };

    if let Some(fresh) = pg_cleanup
        && let Err(e) = fresh.drop_database().await
    {
        eprintln!("warning: {e}");
    }
    if let Some(redis) = redis {
        redis.clean_up();
    }
    outcome
}

/// The body of [`run_db`], between making the database and dropping it.
#[allow(clippy::too_many_arguments)]
async fn run_db_inner(
    label: &str,
    database_url: &str,
    redis: Option<&BenchRedis>,
    work: &Path,
    scenarios: &[Scenario],
    ceiling: SocketAddr,
    shape: LoadShape,
    login_ceiling: Option<&LoginCeiling>,
) -> BenchResult<String> {
    let mut server = Server::start(database_url, redis, work).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let graphql_url = format!("http://{}/graphql", server.addr);

    let ready_rss = server.peak_rss_kib();
    let seed = seed(
        &client,
        &graphql_url,
        scenarios.contains(&Scenario::MeToken),
    )
    .await
    .map_err(|e| server.explain(e))?;
    let seeded_rss = server.peak_rss_kib();

    let mut rows = Vec::new();
    for &scenario in scenarios {
        preflight(&client, &graphql_url, scenario, &seed).await;
        let script = write_script(work, scenario, &seed)?;
        let ceiling_result = measure(&script, ceiling, shape).await?;
        let blogql_result = measure(&script, server.addr, shape).await?;
        server.check_alive().await?;
        let peak_rss_kib = server.peak_rss_kib();
        println!(
            "{:<12} {:>9.0} ok req/s of {:>9.0} ceiling ({:.1}%), non-ok {}",
            scenario.name(),
            blogql_result.ok_per_sec(),
            ceiling_result.ok_per_sec(),
            percent(blogql_result.ok_per_sec(), ceiling_result.ok_per_sec()),
            blogql_result.non_ok(),
        );
        if let Some(sample) = &blogql_result.sample {
            println!("  first non-ok answer from blogql: {sample}");
        }
        if ceiling_result.non_ok() > 0 {
            println!(
                "  warning: the ceiling had {} non-ok answers (first: {})",
                ceiling_result.non_ok(),
                ceiling_result.sample.as_deref().unwrap_or("a socket error")
            );
        }
        rows.push(Row {
            scenario,
            blogql: blogql_result,
            ceiling: ceiling_result,
            peak_rss_kib,
        });
    }

    let rss = RssCheckpoints {
        ready: ready_rss,
        seeded: seeded_rss,
        end: server.peak_rss_kib(),
    };
    server.stop().await;
    Ok(render_section(label, &rows, &rss, login_ceiling))
}

/// The server's peak RSS (`VmHWM`, KiB) at points outside the scenarios.
struct RssCheckpoints {
    /// Once `/readyz` answered 200.
    ready: Option<u64>,
    /// After seeding users and posts.
    seeded: Option<u64>,
    /// After the last scenario.
    end: Option<u64>,
}

/// Renders one database's table, its final peak RSS and the login ceiling.
fn render_section(
    label: &str,
    rows: &[Row],
    rss: &RssCheckpoints,
    login_ceiling: Option<&LoginCeiling>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## {label}\n");
    let _ = writeln!(
        out,
        "| scenario | ok req/s | ceiling req/s | % of ceiling | p50 ms | p99 ms | non-ok | peak RSS MiB |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.1}% | {:.2} | {:.2} | {} | {} |",
            row.scenario.name(),
            row.blogql.ok_per_sec(),
            row.ceiling.ok_per_sec(),
            percent(row.blogql.ok_per_sec(), row.ceiling.ok_per_sec()),
            row.blogql.p50_us as f64 / 1000.0,
            row.blogql.p99_us as f64 / 1000.0,
            row.blogql.non_ok(),
            mib(row.peak_rss_kib),
        );
    }
    let _ = writeln!(
        out,
        "\nServer peak RSS: {} MiB when ready, {} MiB after seeding, {} MiB at the end.",
        mib(rss.ready),
        mib(rss.seeded),
        mib(rss.end),
    );
    if let Some(lc) = login_ceiling {
        let _ = write!(out, "\n{}", login_ceiling_line(lc));
        match rows.iter().find(|r| r.scenario == Scenario::Login) {
            Some(row) => {
                let _ = writeln!(
                    out,
                    "; login reached {:.1} ok req/s = {:.1}% of it.",
                    row.blogql.ok_per_sec(),
                    percent(row.blogql.ok_per_sec(), lc.per_sec())
                );
            }
            None => {
                let _ = writeln!(out, ".");
            }
        }
    }
    out
}

/// "Login ceiling: N cores ÷ T ms per argon2id hash (…) = X logins/s".
fn login_ceiling_line(lc: &LoginCeiling) -> String {
    let p = argon2_params();
    let params = format!("m={} KiB, t={}, p={}", p.m_cost(), p.t_cost(), p.p_cost());
    format!(
        "Login ceiling: {} cores ÷ {:.1} ms per argon2id hash ({params}; {:.1} ms when \
         its memory is freshly allocated) = {:.1} logins/s",
        lc.cores,
        lc.hash_time.as_secs_f64() * 1000.0,
        lc.fresh_time.as_secs_f64() * 1000.0,
        lc.per_sec(),
    )
}

/// `part` as a percentage of `whole`.
fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

/// KiB as MiB with one decimal, or `?` when unknown.
fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
}

/// The blogql server process under test.
struct Server {
    /// The process; killed if this value is dropped before [`Server::stop`].
    child: Child,
    /// Its process ID, for `/proc/<pid>/status`.
    pid: u32,
    /// Where it listens.
    addr: SocketAddr,
    /// Its stdout and stderr.
    log: PathBuf,
}

impl Server {
    /// Starts the release-built `blogql` on a free loopback port with
    /// `database_url`, and waits until `/readyz` answers 200.
    async fn start(
        database_url: &str,
        redis: Option<&BenchRedis>,
        work: &Path,
    ) -> BenchResult<Server> {
        let addr = free_port()?;
        let log = work.join("server.log");
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
    async fn wait_ready(&mut self) -> BenchResult<()> {
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
    async fn check_alive(&mut self) -> BenchResult<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.explain(format!("blogql exited: {status}").into())),
            Err(e) => Err(format!("cannot check on blogql: {e}").into()),
        }
    }

    /// Adds the server log's last lines to `err`.
    fn explain(&self, err: BenchError) -> BenchError {
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
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Stops the server with SIGTERM (as an operator would), and kills it if
    /// it has not exited within 10 s. Says so if it did not exit cleanly.
    async fn stop(mut self) {
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
fn free_port() -> BenchResult<SocketAddr> {
    let listener = StdTcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))?;
    listener
        .local_addr()
        .map_err(|e| format!("cannot read a bound port: {e}").into())
}

/// A database made for one run on the PostgreSQL server named by
/// `BLOGQL_BENCH_PG_URL`.
struct FreshPgDatabase {
    /// The server's URL as given (used to create and drop the database).
    base_url: String,
    /// The new database's name.
    name: String,
    /// The URL of the new database, for blogql.
    url: String,
}

impl FreshPgDatabase {
    /// Creates `blogql_bench_<pid>_<unix time>` on the configured server.
    async fn create() -> BenchResult<FreshPgDatabase> {
        let base_url =
            std::env::var("BLOGQL_BENCH_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        ensure_loopback(&base_url)?;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!("blogql_bench_{}_{secs}", std::process::id());
        let url = with_database(&base_url, &name)?;
        let mut conn = AsyncPgConnection::establish(&base_url)
            .await
            .map_err(|e| format!("cannot connect to BLOGQL_BENCH_PG_URL ({base_url}): {e}"))?;
        conn.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| format!("cannot create database {name}: {e}"))?;
        println!("created PostgreSQL database {name}");
        Ok(FreshPgDatabase {
            base_url,
            name,
            url,
        })
    }

    /// Drops the database, closing any connection still open to it.
    async fn drop_database(self) -> BenchResult<()> {
        let mut conn = AsyncPgConnection::establish(&self.base_url)
            .await
            .map_err(|e| format!("cannot connect to drop database {}: {e}", self.name))?;
        let forced = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if conn.batch_execute(&forced).await.is_err() {
            // PostgreSQL before 13 has no FORCE.
            conn.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\"", self.name))
                .await
                .map_err(|e| format!("cannot drop database {}: {e}", self.name))?;
        }
        println!("dropped PostgreSQL database {}", self.name);
        Ok(())
    }
}

/// Refuses a PostgreSQL URL whose host is not on this machine.
fn ensure_loopback(url: &str) -> BenchResult<()> {
    let host = url_host(url).ok_or_else(|| format!("BLOGQL_BENCH_PG_URL is not a URL: {url}"))?;
    let local = host.is_empty()
        || host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if local {
        Ok(())
    } else {
        bail!("BLOGQL_BENCH_PG_URL must point at this machine (loopback), not {host:?}")
    }
}

/// The host part of `scheme://[user[:pass]@]host[:port][/path][?query]`,
/// without brackets for IPv6.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(host_port.split(':').next().unwrap_or(""))
}

/// `url` with its database (path) replaced by `name`; any `?query` is kept.
fn with_database(url: &str, name: &str) -> BenchResult<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("BLOGQL_BENCH_PG_URL is not a URL: {url}");
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    Ok(format!("{scheme}://{authority}/{name}{query}"))
}

/// The password of seeded user `i` (12+ characters).
fn password_for(i: usize) -> String {
    format!("bench-password-{i:02}")
}

/// The username of seeded user `i`.
fn username_for(i: usize) -> String {
    format!("bench_user_{i:02}")
}

/// Sends one GraphQL request and returns its `data`, and the `sid` cookie if
/// the answer set one. Anything but a 2xx answer with `data` and no `errors`
/// is an error quoting the request and the answer.
async fn graphql(
    client: &reqwest::Client,
    url: &str,
    credential: Option<&Credential>,
    body: &Value,
) -> BenchResult<(Value, Option<String>)> {
    let mut request = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(credential) = credential {
        let (name, value) = credential.header();
        request = request.header(name, value);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("POST {url} {body}: {e}"))?;
    let status = response.status();
    let sid = response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sid="))
        .map(|v| v.split(';').next().unwrap_or(v).to_owned());
    let text = response
        .text()
        .await
        .map_err(|e| format!("POST {url} {body}: reading the answer: {e}"))?;
    let answer: Option<Value> = serde_json::from_str(&text).ok();
    match answer {
        Some(mut answer)
            if status.is_success()
                && answer.get("errors").is_none()
                && answer.get("data").is_some_and(|d| !d.is_null()) =>
        {
            Ok((answer["data"].take(), sid))
        }
        _ => Err(format!(
            "unexpected answer\n  request: POST {url} ({}) {body}\n  answer: HTTP {status} {text}",
            credential.map_or("no credential", |credential| credential.header().0)
        )
        .into()),
    }
}

/// Registrations the seed step sends from one address: under the server's
/// limit of 30 per address in 10 minutes.
const REGISTRATIONS_PER_ADDRESS: usize = 25;

/// Registers the seed users and writes their posts through the API,
/// [`SEED_CONCURRENCY`] requests at a time. Registrations come from several
/// loopback addresses (127.0.0.2, .3, …), as a crowd of users would.
async fn seed(client: &reqwest::Client, url: &str, with_token: bool) -> BenchResult<Seed> {
    let start = Instant::now();
    let register = "mutation($input: RegisterInput!) { register(input: $input) { id } }";
    let users = run_concurrently(SEED_USERS, {
        let url = url.to_owned();
        move |i| {
            let url = url.clone();
            let from = IpAddr::from([127, 0, 0, 2 + (i / REGISTRATIONS_PER_ADDRESS) as u8]);
            async move {
                let client = reqwest::Client::builder()
                    .local_address(from)
                    .timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
                let body = json!({
                    "query": register,
                    "variables": { "input": { "username": username_for(i), "password": password_for(i) } },
                });
                let (_, sid) = graphql(&client, &url, None, &body).await?;
                sid.ok_or_else(|| -> BenchError {
                    format!("register of {} answered without a Set-Cookie: sid=…", username_for(i)).into()
                })
            }
        }
    })
    .await?;
    println!(
        "seeded {SEED_USERS} users in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let users = Arc::new(users);
    let total = SEED_USERS * POSTS_PER_USER;
    let done = Arc::new(AtomicUsize::new(0));
    run_concurrently(total, {
        let client = client.clone();
        let url = url.to_owned();
        let users = Arc::clone(&users);
        move |j| {
            let client = client.clone();
            let url = url.clone();
            let users = Arc::clone(&users);
            let done = Arc::clone(&done);
            async move {
                let user = j / POSTS_PER_USER;
                let body = json!({
                    "query": "mutation($input: CreatePostInput!) { createPost(input: $input) { id } }",
                    "variables": { "input": {
                        "title": format!("Post {} by {}", j % POSTS_PER_USER, username_for(user)),
                        "body": format!(
                            "Seed post {j} of the load benchmark. It has a few sentences so that a page \
                             of posts is not trivially small, though the benchmark only asks for titles."
                        ),
                    } },
                });
                let cookie = Credential::Cookie(users[user].clone());
                graphql(&client, &url, Some(&cookie), &body).await?;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(250) {
                    println!("seeded {n}/{total} posts");
                }
                Ok(())
            }
        }
    })
    .await?;
    println!(
        "seeded {total} posts in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    // The cookie and the token the authed scenarios use must really sign in.
    // The token only when asked for: a build from before API tokens can
    // still be measured on the other scenarios.
    let cookie = Credential::Cookie(users[0].clone());
    let mut credentials = vec![cookie.clone()];
    let mut token = String::new();
    if with_token {
        let (data, _) = graphql(
            client,
            url,
            Some(&cookie),
            &json!({ "query": "mutation { createApiToken(name: \"load benchmark\") { token } }" }),
        )
        .await?;
        token = data["createApiToken"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        credentials.push(Credential::Token(token.clone()));
    }
    for credential in &credentials {
        let (data, _) = graphql(
            client,
            url,
            Some(credential),
            &json!({ "query": "{ me { id username } }" }),
        )
        .await?;
        if data["me"]["username"] != username_for(0) {
            bail!(
                "the seeded {} does not sign in as {}: me = {}",
                credential.header().0,
                username_for(0),
                data["me"]
            );
        }
    }
    Ok(Seed {
        cookie: users[0].clone(),
        token,
        login_username: username_for(1),
        login_password: password_for(1),
    })
}

/// Runs `job(0..count)` with at most [`SEED_CONCURRENCY`] in flight, and
/// returns the results in index order; the first error ends the run.
async fn run_concurrently<T, F, Fut>(count: usize, job: F) -> BenchResult<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = BenchResult<T>> + Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..SEED_CONCURRENCY {
        let job = Arc::clone(&job);
        let next = Arc::clone(&next);
        workers.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, BenchError>(out);
                }
                out.push((i, job(i).await?));
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = workers.join_next().await {
        let part = joined.map_err(|e| format!("a seed task failed: {e}"))??;
        all.extend(part);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, v)| v).collect())
}

/// Sends the scenario's request once, and prints the exact request and
/// answer if it does not succeed (the wrk run still goes ahead, so the table
/// shows how often it fails).
async fn preflight(client: &reqwest::Client, url: &str, scenario: Scenario, seed: &Seed) {
    let (body, credential) = scenario.request(seed);
    if let Err(e) = graphql(client, url, credential.as_ref(), &body).await {
        println!("warning: {} does not succeed: {e}", scenario.name());
    }
}

/// Writes the wrk script for `scenario` into `dir` and returns its path.
fn write_script(dir: &Path, scenario: Scenario, seed: &Seed) -> BenchResult<PathBuf> {
    let (body, credential) = scenario.request(seed);
    let body = body.to_string();
    if body.contains("]==]") {
        bail!(
            "the {} body cannot be quoted as a Lua long string",
            scenario.name()
        );
    }
    let mut script = format!(
        "-- generated by benches/load.rs for {}\nwrk.method = \"POST\"\nwrk.body = [==[{body}]==]\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n",
        scenario.name()
    );
    if let Some(credential) = credential {
        let (name, value) = credential.header();
        if value.contains(['"', '\\', '\n', '\r']) {
            bail!("the {name} header has characters that cannot go into a wrk script: {value:?}");
        }
        let _ = writeln!(script, "wrk.headers[\"{name}\"] = \"{value}\"");
    }
    script.push('\n');
    script.push_str(COUNT_LUA);
    let path = dir.join(format!("{}.lua", scenario.name()));
    std::fs::write(&path, script).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// A warm-up run and then a measured run of `script` against `addr`.
async fn measure(script: &Path, addr: SocketAddr, shape: LoadShape) -> BenchResult<WrkResult> {
    wrk(script, addr, shape.connections, WARM_UP).await?;
    wrk(script, addr, shape.connections, shape.duration).await
}

/// Runs wrk once and parses the result line of `lua/count.lua`.
async fn wrk(
    script: &Path,
    addr: SocketAddr,
    connections: u32,
    duration: Duration,
) -> BenchResult<WrkResult> {
    let output = Command::new("wrk")
        .arg(format!("-t{}", WRK_THREADS.min(connections)))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs()))
        // Logins queue behind the password hash; wrk's default 2 s timeout
        // would turn slow answers into missing ones.
        .args(["--timeout", "10s", "--latency", "-s"])
        .arg(script)
        .arg(format!("http://{addr}/graphql"))
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_RESULT "))
        .ok_or_else(|| format!("wrk printed no BENCH_RESULT line:\n{stdout}"))?;
    serde_json::from_str(line)
        .map_err(|e| format!("cannot parse wrk's result line ({e}): {line}").into())
}

/// One line describing the machine: cores, kernel (`uname -r`), CPU model,
/// and the commit measured.
fn machine_line() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "no commit".to_owned());
    let measured = match std::env::var("BLOGQL_BENCH_BIN") {
        Ok(path) if !path.is_empty() => format!("the build {path} (harness at {commit})"),
        _ => format!("blogql at {commit}"),
    };
    format!("Machine: {cores} cores, {cpu}, Linux {kernel}; {measured}.")
}

/// Where the report goes: `bench-results.md` in cargo's target directory.
fn results_path() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| manifest.join("target"), |t| manifest.join(t));
    target.join("bench-results.md")
}

/// Overwrites the report file with `report` (the whole run so far).
fn write_results(path: &Path, report: &str) -> BenchResult<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, report).map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}
