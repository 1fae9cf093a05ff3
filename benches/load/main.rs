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
//!
//! The files: `options` (the command line and the scenarios), `databases`
//! (the run's database and Redis prefix, made and cleaned up through
//! `tests/support/backends.rs`, shared with the tests), `server` (the
//! blogql process), `seed` (users, posts, a cookie and a token, through
//! the API), `wrk` (the runs and their Lua scripts), `ceiling` (the bare
//! handler and the login ceiling), `report` (the tables and the file).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Returns early with a formatted [`BenchError`].
macro_rules! bail {
    ($($arg:tt)*) => { return Err(format!($($arg)*).into()) };
}

#[path = "../../tests/support/backends.rs"]
mod backends;
mod ceiling;
mod databases;
mod options;
mod pgbench;
mod report;
mod seed;
mod server;
mod wrk;

use ceiling::{
    CEILING_BODY, LoginCeiling, login_ceiling_line, measure_login_ceiling, start_ceiling,
};
use databases::{BenchRedis, Db};
use options::{Args, DbChoice, LoadShape, Scenario, StoreChoice};
use report::{
    Row, RssCheckpoints, machine_line, percent, render_section, results_path, write_results,
};
use seed::{Seed, password_for, preflight, seed};
use server::Server;
use wrk::{WARM_UP, WRK_THREADS, check_wrk, measure, write_script};

/// Any failure of the benchmark itself; the message says what and where.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// The benchmark's result type.
pub type BenchResult<T> = Result<T, BenchError>;

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

    let redis = (args.store != StoreChoice::Sql).then(BenchRedis::new);
    let stores: Vec<Option<&BenchRedis>> = match args.store {
        StoreChoice::Sql => vec![None],
        StoreChoice::Redis => vec![redis.as_ref()],
        StoreChoice::All => vec![None, redis.as_ref()],
    };
    let compare = (!args.compare.is_empty()).then(|| Compare {
        settings: args.compare.clone(),
        rounds: args.rounds,
    });
    for db in dbs {
        for &store in &stores {
            let section = run_db(
                db,
                store,
                &scenarios,
                ceiling,
                shape,
                login_ceiling.as_ref(),
                compare.as_ref(),
            )
            .await?;
            print!("{section}");
            report.push_str(&section);
            write_results(&results_path, &report)?;
        }
    }
    println!("(written to {})", results_path.display());
    Ok(())
}

/// `--compare`: blogql with these settings against its defaults.
struct Compare {
    settings: Vec<(String, String)>,
    rounds: u32,
}

/// Runs every scenario against blogql on `db` (or, with `compare`, blogql
/// against itself with other settings), and returns its report section.
#[allow(clippy::too_many_arguments)]
async fn run_db(
    db: Db,
    redis: Option<&BenchRedis>,
    scenarios: &[Scenario],
    ceiling: SocketAddr,
    shape: LoadShape,
    login_ceiling: Option<&LoginCeiling>,
    compare: Option<&Compare>,
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
            let fresh = databases::fresh_postgres().await?;
            (fresh.url().to_owned(), Some(fresh))
        }
    };

    // Ctrl-C drops the inner future, and with it the server (kill_on_drop),
    // so the database can still be dropped below.
    let measured = async {
        match compare {
            Some(compare) => {
                run_compare(
                    &label,
                    &database_url,
                    redis,
                    work.path(),
                    scenarios,
                    shape,
                    compare,
                )
                .await
            }
            None => {
                run_db_inner(
                    &label,
                    &database_url,
                    redis,
                    work.path(),
                    scenarios,
                    ceiling,
                    shape,
                    login_ceiling,
                )
                .await
            }
        }
    };
    let outcome = tokio::select! {
        outcome = measured => outcome,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    };

    if let Some(fresh) = pg_cleanup {
        match fresh.drop_database().await {
            Ok(()) => println!("dropped PostgreSQL database {}", fresh.name()),
            Err(e) => eprintln!("warning: {e}"),
        }
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
    let mut server = Server::start(database_url, redis, work, "server", &[]).await?;
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
    let mut insert_rate = None;
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
        if scenario == Scenario::CreatePost && database_url.starts_with("postgres") {
            let tps = pgbench::insert_rate(database_url, work, shape).await?;
            println!("pgbench, the same INSERT … RETURNING: {tps:.0} tps");
            insert_rate = Some(tps);
        }
    }

    let rss = RssCheckpoints {
        ready: ready_rss,
        seeded: seeded_rss,
        end: server.peak_rss_kib(),
    };
    server.stop().await;
    Ok(render_section(
        label,
        &rows,
        &rss,
        login_ceiling,
        insert_rate,
    ))
}

/// `--compare`: blogql at its defaults (A) and with `compare.settings` (B),
/// both serving one seeded database, each scenario measured in alternating
/// runs (A B, B A, A B, …, so that a drift of the machine falls on both).
/// Reports every run, each side's mean and spread, and B's mean as a share
/// of A's.
async fn run_compare(
    label: &str,
    database_url: &str,
    redis: Option<&BenchRedis>,
    work: &Path,
    scenarios: &[Scenario],
    shape: LoadShape,
    compare: &Compare,
) -> BenchResult<String> {
    let changed = compare
        .settings
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut a = Server::start(database_url, redis, work, "server-a", &[]).await?;
    let mut b = Server::start(database_url, redis, work, "server-b", &compare.settings).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let graphql_url = format!("http://{}/graphql", a.addr);
    let seed = seed(
        &client,
        &graphql_url,
        scenarios.contains(&Scenario::MeToken),
    )
    .await
    .map_err(|e| a.explain(e))?;
    let mut section = format!(
        "\n## {label}: A = defaults, B = {changed} ({} alternating rounds)\n\n\
         | scenario | A ok req/s (runs) | B ok req/s (runs) | B / A | A p99 | B p99 |\n\
         |---|---|---|---|---|---|\n",
        compare.rounds
    );
    for &scenario in scenarios {
        preflight(&client, &graphql_url, scenario, &seed).await;
        let script = write_script(work, scenario, &seed)?;
        let (mut runs_a, mut runs_b) = (Vec::new(), Vec::new());
        for round in 0..compare.rounds {
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for is_a in order {
                let server = if is_a { &mut a } else { &mut b };
                let result = measure(&script, server.addr, shape).await?;
                server.check_alive().await?;
                println!(
                    "{:<12} round {} {}: {:>9.0} ok req/s, p99 {:.2} ms, non-ok {}",
                    scenario.name(),
                    round + 1,
                    if is_a { "A" } else { "B" },
                    result.ok_per_sec(),
                    result.p99_us as f64 / 1000.0,
                    result.non_ok()
                );
                if is_a { &mut runs_a } else { &mut runs_b }.push(result);
            }
        }
        let summary = |runs: &[wrk::WrkResult]| {
            let rates: Vec<f64> = runs.iter().map(wrk::WrkResult::ok_per_sec).collect();
            let mean = rates.iter().sum::<f64>() / rates.len() as f64;
            let listed = rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ");
            let p99 = runs.iter().map(|r| r.p99_us).max().unwrap_or_default() as f64 / 1000.0;
            (mean, format!("{mean:.0} ({listed})"), p99)
        };
        let (mean_a, text_a, p99_a) = summary(&runs_a);
        let (mean_b, text_b, p99_b) = summary(&runs_b);
        let line = format!(
            "| {} | {text_a} | {text_b} | {:.1}% | {p99_a:.2} ms | {p99_b:.2} ms |\n",
            scenario.name(),
            percent(mean_b, mean_a),
        );
        print!("{line}");
        section.push_str(&line);
    }
    a.stop().await;
    b.stop().await;
    Ok(section)
}
