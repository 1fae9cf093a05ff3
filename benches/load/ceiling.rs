//! The ceilings a scenario is measured against: a bare axum handler that
//! answers a fixed body (what this machine and wrk reach with no GraphQL
//! server at all), and for logins what the cores can hash.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Version};
use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::BenchResult;

/// What the ceiling handler answers to every request.
pub const CEILING_BODY: &str = r#"{"data":{"me":null}}"#;

/// Starts the ceiling: a bare axum handler on a loopback port that answers
/// every GET and POST to `/graphql` with [`CEILING_BODY`].
pub async fn start_ceiling() -> BenchResult<SocketAddr> {
    /// Reads the request body (as a real server would) and answers the fixed body.
    pub async fn fixed(_body: Bytes) -> impl IntoResponse {
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
pub struct LoginCeiling {
    /// Median time of one hash on reused memory (the ceiling's basis).
    pub hash_time: Duration,
    /// Median time of one hash on freshly allocated memory.
    pub fresh_time: Duration,
    /// Cores available to this process.
    pub cores: usize,
}

impl LoginCeiling {
    /// Logins per second if every core did nothing but hash.
    pub fn per_sec(&self) -> f64 {
        self.cores as f64 / self.hash_time.as_secs_f64()
    }
}

/// The argon2 parameters blogql hashes passwords with: the library's own,
/// so the login ceiling always measures the configured cost.
pub fn argon2_params() -> argon2::Params {
    blogql::accounts::passwords::argon2_params()
}

/// Times one argon2id hash with the configured parameters (median of 10,
/// after one warm-up) on a blocking thread, twice: with the ~19 MiB of
/// blocks allocated afresh for each hash (what `hash_password_into` does),
/// and with one buffer reused. A fresh allocation is mmap'd and page-faulted
/// in on every hash, which a long-running server whose allocator keeps the
/// memory does not pay, so the ceiling uses the reused-memory time: a
/// ceiling must not be lower than what the server can reach.
pub async fn measure_login_ceiling() -> BenchResult<LoginCeiling> {
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
pub fn median_of_10(mut f: impl FnMut() -> Result<(), String>) -> BenchResult<Duration> {
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

/// "Login ceiling: N cores ÷ T ms per argon2id hash (…) = X logins/s".
pub fn login_ceiling_line(lc: &LoginCeiling) -> String {
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
