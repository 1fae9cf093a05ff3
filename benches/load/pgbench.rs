//! PostgreSQL's own rate for the statement `create_post` writes: pgbench
//! running the same single-row `INSERT … RETURNING` on the run's database,
//! over as many connections as blogql's pool holds and for wrk's duration,
//! right after `create_post`. What `create_post` reaches is reported as a
//! share of it.

use std::path::Path;

use tokio::process::Command;

use crate::BenchResult;
use crate::options::LoadShape;

/// pgbench's threads (this machine's cores, as wrk's).
const THREADS: u32 = 2;

/// Transactions per second pgbench reaches inserting posts into the
/// database at `url` (each as one of its users, a post like the
/// benchmark's).
pub async fn insert_rate(url: &str, work: &Path, shape: LoadShape) -> BenchResult<f64> {
    let users = run("psql", &[url, "-Atc", "SELECT min(id), max(id) FROM users"]).await?;
    let (first, last) = users
        .trim()
        .split_once('|')
        .ok_or_else(|| format!("psql: no users in the database: {users:?}"))?;
    let script = work.join("insert-post.sql");
    // The statement blogql runs for `createPost` (diesel's, with its
    // RETURNING list); the time from PostgreSQL's clock, where blogql
    // sends its own.
    std::fs::write(
        &script,
        format!(
            "\\set author random({first}, {last})\n\
             INSERT INTO posts (author_id, title, body, created_at) \
             VALUES (:author, 'Load test post', 'A short body written by the load benchmark.', \
             localtimestamp) \
             RETURNING id, author_id, title, body, created_at, updated_at;\n"
        ),
    )
    .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
    let connections = blogql::db::POSTGRES_POOL_SIZE.to_string();
    let threads = THREADS.to_string();
    let seconds = shape.duration.as_secs().max(1).to_string();
    let script = script.display().to_string();
    let args = [
        "-n",
        "-M",
        "prepared",
        "-c",
        &connections,
        "-j",
        &threads,
        "-T",
        &seconds,
        "-f",
        &script,
        url,
    ];
    let report = run("pgbench", &args).await?;
    report
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .ok_or_else(|| format!("pgbench printed no tps line:\n{report}").into())
}

/// `program args`' standard output; its error output when it fails.
async fn run(program: &str, args: &[&str]) -> BenchResult<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run {program} (PostgreSQL's client tools): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
