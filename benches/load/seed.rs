//! Seeding through the GraphQL API: users from several loopback
//! addresses, their posts, and the cookie and token the scenarios use.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::options::Scenario;
use crate::{BenchError, BenchResult};

/// Users the seed step registers.
pub const SEED_USERS: usize = 50;

/// Posts each seeded user writes (50 × 20 = 1,000).
pub const POSTS_PER_USER: usize = 20;

/// Seed requests in flight at once.
pub const SEED_CONCURRENCY: usize = 8;

/// How a request proves who it is.
#[derive(Clone, Debug)]
pub enum Credential {
    /// `sid=...`, sent as `Cookie`.
    Cookie(String),
    /// An API token, sent as `Authorization: Bearer`.
    Token(String),
}

impl Credential {
    /// The header that carries it: name and value.
    pub fn header(&self) -> (&'static str, String) {
        match self {
            Credential::Cookie(cookie) => ("Cookie", cookie.clone()),
            Credential::Token(token) => ("Authorization", format!("Bearer {token}")),
        }
    }
}

/// What the seed step leaves for the scenarios.
pub struct Seed {
    /// `sid=...` of a signed-in seeded user.
    pub cookie: String,
    /// An API token of the same user.
    pub token: String,
    /// A seeded user (another one than the cookie's) whose password is known.
    pub login_username: String,
    /// That user's password.
    pub login_password: String,
}

/// The password of seeded user `i` (12+ characters).
pub fn password_for(i: usize) -> String {
    format!("bench-password-{i:02}")
}

/// The username of seeded user `i`.
pub fn username_for(i: usize) -> String {
    format!("bench_user_{i:02}")
}

/// Sends one GraphQL request and returns its `data`, and the `sid` cookie if
/// the answer set one. Anything but a 2xx answer with `data` and no `errors`
/// is an error quoting the request and the answer.
pub async fn graphql(
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
pub const REGISTRATIONS_PER_ADDRESS: usize = 25;

/// Registers the seed users and writes their posts through the API,
/// [`SEED_CONCURRENCY`] requests at a time. Registrations come from several
/// loopback addresses (127.0.0.2, .3, …), as a crowd of users would.
pub async fn seed(client: &reqwest::Client, url: &str, with_token: bool) -> BenchResult<Seed> {
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
pub async fn run_concurrently<T, F, Fut>(count: usize, job: F) -> BenchResult<Vec<T>>
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
pub async fn preflight(client: &reqwest::Client, url: &str, scenario: Scenario, seed: &Seed) {
    let (body, credential) = scenario.request(seed);
    if let Err(e) = graphql(client, url, credential.as_ref(), &body).await {
        println!("warning: {} does not succeed: {e}", scenario.name());
    }
}
