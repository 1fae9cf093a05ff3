//! The report: a table per database, the machine it ran on, and the file
//! it is written to (`target/bench-results.md`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::BenchResult;
use crate::ceiling::{LoginCeiling, login_ceiling_line};
use crate::options::Scenario;
use crate::wrk::WrkResult;

/// One row of a result table.
pub struct Row {
    pub scenario: Scenario,
    pub blogql: WrkResult,
    pub ceiling: WrkResult,
    /// The server's `VmHWM` after the scenario, in KiB (`None` without a server).
    pub peak_rss_kib: Option<u64>,
}

/// The server's peak RSS (`VmHWM`, KiB) at points outside the scenarios.
pub struct RssCheckpoints {
    /// Once `/readyz` answered 200.
    pub ready: Option<u64>,
    /// After seeding users and posts.
    pub seeded: Option<u64>,
    /// After the last scenario.
    pub end: Option<u64>,
}

/// Renders one database's table, its final peak RSS, the login ceiling
/// and (PostgreSQL) pgbench's rate for `create_post`'s statement.
pub fn render_section(
    label: &str,
    rows: &[Row],
    rss: &RssCheckpoints,
    login_ceiling: Option<&LoginCeiling>,
    insert_rate: Option<f64>,
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
    if let Some(tps) = insert_rate
        && let Some(row) = rows.iter().find(|r| r.scenario == Scenario::CreatePost)
    {
        let _ = writeln!(
            out,
            "\npgbench, right after create_post, on the same database over as many \
             connections as blogql's pool ({}), running its single-row INSERT … RETURNING: \
             {tps:.0} tps; create_post reached {:.0} ok req/s = {:.1}% of it.",
            blogql::db::POSTGRES_POOL_SIZE,
            row.blogql.ok_per_sec(),
            percent(row.blogql.ok_per_sec(), tps)
        );
    }
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

/// `part` as a percentage of `whole`.
pub fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

/// KiB as MiB with one decimal, or `?` when unknown.
pub fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
}

/// One line describing the machine: cores, kernel (`uname -r`), CPU model,
/// and the commit measured.
pub fn machine_line() -> String {
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
pub fn results_path() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| manifest.join("target"), |t| manifest.join(t));
    target.join("bench-results.md")
}

/// Overwrites the report file with `report` (the whole run so far).
pub fn write_results(path: &Path, report: &str) -> BenchResult<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, report).map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}
