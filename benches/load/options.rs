//! The command line (`benches/run --help`) and the scenarios it can pick.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

use crate::seed::{Credential, Seed};

/// Command-line options (`benches/run --help`).
#[derive(Parser, Debug)]
#[command(
    name = "benches/run",
    bin_name = "benches/run",
    about = "Load benchmark for blogql, driven by wrk"
)]
pub struct Args {
    /// Which database(s) to run blogql on.
    #[arg(long, value_enum, default_value_t = DbChoice::All)]
    pub db: DbChoice,
    /// Where blogql keeps sessions: its database, or Redis
    /// (`BLOGQL_BENCH_REDIS_URL`, default redis://127.0.0.1:6379).
    #[arg(long, value_enum, default_value_t = StoreChoice::Sql)]
    pub store: StoreChoice,
    /// Seconds each measured wrk run lasts.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub duration: u32,
    /// Open connections wrk keeps.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,
    /// Run only these scenarios (comma-separated); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Scenario>,
    /// Measure only the bare axum ceiling (no blogql, no database): checks
    /// that wrk and the scripts work.
    #[arg(long)]
    pub ceiling_only: bool,
    /// Compare blogql at its defaults (A) with blogql given these settings
    /// (B: `NAME=VALUE`, comma-separated), two servers on one database,
    /// measured in alternating runs (A B, then B A, …) instead of the
    /// report against the ceiling.
    #[arg(long, value_delimiter = ',', value_parser = parse_setting)]
    pub compare: Vec<(String, String)>,
    /// Alternating rounds of `--compare` (each round runs A and B once).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

/// `NAME=VALUE`, a setting of blogql's (`BLOGQL_…`).
fn parse_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if name.starts_with("BLOGQL_") => {
            Ok((name.to_owned(), value.to_owned()))
        }
        _ => Err(format!("{text:?}: expected BLOGQL_NAME=VALUE")),
    }
}

/// The `--db` choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DbChoice {
    Sqlite,
    Postgres,
    All,
}

/// The `--store` choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreChoice {
    Sql,
    Redis,
    /// Each database run twice: sessions in it, then in Redis.
    All,
}

/// One kind of request the benchmark drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
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
    pub const ALL: [Scenario; 6] = [
        Scenario::MeAuthed,
        Scenario::MeToken,
        Scenario::MeAnon,
        Scenario::PostsPage,
        Scenario::CreatePost,
        Scenario::Login,
    ];

    /// The scenario's name, as `--only` takes it.
    pub fn name(self) -> &'static str {
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
    pub fn request(self, seed: &Seed) -> (Value, Option<Credential>) {
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

/// How wrk is run for every measured scenario.
#[derive(Clone, Copy)]
pub struct LoadShape {
    pub duration: Duration,
    pub connections: u32,
}
