//! Every setting: one clap struct read from flags, the environment and `.env`.
//!
//! Values arrive as text and are checked in [`Settings::validate`](crate::config::Settings::validate), one
//! parser per kind of setting (`parse`), so that a bad one ends the process
//! with one line naming the environment variable (exit code 2), not clap's
//! generic multi-line report.

mod parse;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderValue;
use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

use crate::db::DatabaseUrl;

/// Most connections `BLOGQL_MAX_CONNECTIONS` may ask for.
const MAX_CONNECTIONS: usize = 1_000_000;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "blogql",
    version,
    about = "A GraphQL blog server with cookie sessions"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

/// What to do; `serve` when none is given.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Apply migrations, then serve GraphQL over HTTP (the default).
    Serve,
    /// Apply migrations and exit.
    Migrate,
    /// Write the GraphQL schema (SDL) to stdout.
    PrintSchema,
    /// Make USERNAME an admin: create it with a password read from standard
    /// input (without echo on a terminal), or promote the existing user.
    CreateAdmin {
        /// The admin's username (3-32 characters of A-Z, a-z, 0-9, _, . and -).
        username: String,
    },
}

/// Settings as given; see the README's table.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(
        long,
        env = "BLOGQL_BIND",
        default_value = "127.0.0.1:8000",
        global = true
    )]
    pub bind: String,
    /// `sqlite://PATH` (created on first start) or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://blogql.db",
        global = true
    )]
    pub database_url: String,
    /// Redis for sessions when instances scale out (`redis://HOST:PORT/DB`).
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// What every Redis key starts with (inside `{…}`), to share one Redis.
    #[arg(
        long,
        env = "BLOGQL_REDIS_KEY_PREFIX",
        default_value = "bq",
        global = true
    )]
    pub redis_key_prefix: String,
    /// The URL browsers use; `https://` turns on the cookie's `Secure` flag.
    #[arg(
        long,
        env = "BLOGQL_PUBLIC_URL",
        default_value = "http://127.0.0.1:8000",
        global = true
    )]
    pub public_url: String,
    /// Overrides the `Secure` cookie flag implied by the public URL.
    #[arg(long, env = "BLOGQL_COOKIE_SECURE", global = true)]
    pub cookie_secure: Option<String>,
    /// Comma-separated origins allowed to send credentialed cross-origin requests.
    #[arg(long, env = "BLOGQL_CORS_ORIGINS", default_value = "", global = true)]
    pub cors_origins: String,
    /// A session unused for this long ends (humantime: `90s`, `15m`, `7d`).
    #[arg(
        long,
        env = "BLOGQL_SESSION_IDLE_TIMEOUT",
        default_value = "7d",
        global = true
    )]
    pub session_idle_timeout: String,
    /// A session ends this long after sign-in, however much it is used.
    #[arg(
        long,
        env = "BLOGQL_SESSION_ABSOLUTE_TIMEOUT",
        default_value = "30d",
        global = true
    )]
    pub session_absolute_timeout: String,
    /// Comma-separated proxy addresses/CIDRs whose `X-Forwarded-For` is believed.
    #[arg(
        long,
        env = "BLOGQL_TRUSTED_PROXIES",
        default_value = "",
        global = true
    )]
    pub trusted_proxies: String,
    /// Most open connections (lowered to fit the open-file limit).
    #[arg(
        long,
        env = "BLOGQL_MAX_CONNECTIONS",
        default_value = "4096",
        global = true
    )]
    pub max_connections: String,
    /// A connection that has not sent a complete request head in this long is closed.
    #[arg(
        long,
        env = "BLOGQL_REQUEST_HEAD_TIMEOUT",
        default_value = "30s",
        global = true
    )]
    pub request_head_timeout: String,
    /// A keep-alive connection idle this long is closed.
    #[arg(
        long,
        env = "BLOGQL_KEEP_ALIVE_TIMEOUT",
        default_value = "75s",
        global = true
    )]
    pub keep_alive_timeout: String,
    /// A request still running after this is answered with 503.
    #[arg(
        long,
        env = "BLOGQL_REQUEST_TIMEOUT",
        default_value = "30s",
        global = true
    )]
    pub request_timeout: String,
    /// On SIGTERM, how long requests in flight may take to finish.
    #[arg(
        long,
        env = "BLOGQL_SHUTDOWN_GRACE",
        default_value = "30s",
        global = true
    )]
    pub shutdown_grace: String,
    /// Schema introspection on (`true`) or off (`false`).
    #[arg(
        long,
        env = "BLOGQL_INTROSPECTION",
        default_value = "true",
        global = true
    )]
    pub introspection: String,
    /// Log lines as `text` or `json` (`auto`: text); colour codes only
    /// when stderr is a terminal.
    #[arg(long, env = "BLOGQL_LOG_FORMAT", default_value = "auto", global = true)]
    pub log_format: String,
    /// One line per request at `info` (`true`) or none (`false`).
    #[arg(long, env = "BLOGQL_ACCESS_LOG", default_value = "true", global = true)]
    pub access_log: String,
    /// Address of a second listener serving `GET /metrics` (Prometheus).
    #[arg(long, env = "BLOGQL_METRICS_BIND", global = true)]
    pub metrics_bind: Option<String>,
    /// Path of a trusted-documents manifest: when set, only its operations run.
    #[arg(long, env = "BLOGQL_TRUSTED_DOCUMENTS", global = true)]
    pub trusted_documents: Option<String>,
}

/// The connection bounds (see the README's settings).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Most open connections (lowered to fit the open-file limit).
    pub max_connections: usize,
    /// Time allowed for a complete request head.
    pub head_timeout: Duration,
    /// Time a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Time requests in flight get to finish after shutdown begins.
    pub shutdown_grace: Duration,
}

/// The validated settings the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub database_url: DatabaseUrl,
    /// Sessions in Redis instead of the database.
    pub redis: Option<RedisConfig>,
    pub cookie_secure: bool,
    /// The public URL's origin (`scheme://host[:port]`), as browsers send it.
    pub public_origin: HeaderValue,
    pub cors_origins: Vec<HeaderValue>,
    pub session_idle_timeout: Duration,
    pub session_absolute_timeout: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub introspection: bool,
    /// The trusted-documents manifest, read at start-up.
    pub trusted_documents: Option<PathBuf>,
    pub connections: ConnectionLimits,
    pub request_timeout: Duration,
    /// One log line per request.
    pub access_log: bool,
    /// Where `GET /metrics` is served, if anywhere.
    pub metrics_bind: Option<SocketAddr>,
}

/// Where Redis is, and the prefix of our keys.
#[derive(Clone)]
pub struct RedisConfig {
    pub url: String,
    pub key_prefix: String,
}

/// Never prints a Redis password.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RedisConfig {{ url: redis://…, key_prefix: {:?} }}",
            self.key_prefix
        )
    }
}

/// A setting that cannot be used; its `Display` is the one line printed.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct SettingError {
    pub name: &'static str,
    pub reason: String,
}

pub(crate) fn bad(name: &'static str, reason: impl Into<String>) -> SettingError {
    SettingError {
        name,
        reason: reason.into(),
    }
}

impl Settings {
    /// Checks every setting, naming the first bad one.
    pub fn validate(&self) -> Result<Config, SettingError> {
        let public_url = parse::public_url("BLOGQL_PUBLIC_URL", &self.public_url)?;
        let cookie_secure = match &self.cookie_secure {
            None => public_url.scheme_str() == Some("https"),
            Some(value) => parse::flag("BLOGQL_COOKIE_SECURE", value)?,
        };
        Ok(Config {
            bind: parse::address("BLOGQL_BIND", &self.bind)?,
            database_url: self
                .database_url
                .parse()
                .map_err(|reason: String| bad("DATABASE_URL", reason))?,
            redis: parse::redis(
                ("REDIS_URL", self.redis_url.as_deref()),
                ("BLOGQL_REDIS_KEY_PREFIX", &self.redis_key_prefix),
            )?,
            cookie_secure,
            public_origin: parse::origin_of(&public_url),
            cors_origins: parse::origins("BLOGQL_CORS_ORIGINS", &self.cors_origins)?,
            session_idle_timeout: parse::duration(
                "BLOGQL_SESSION_IDLE_TIMEOUT",
                &self.session_idle_timeout,
            )?,
            session_absolute_timeout: parse::duration(
                "BLOGQL_SESSION_ABSOLUTE_TIMEOUT",
                &self.session_absolute_timeout,
            )?,
            trusted_proxies: parse::networks("BLOGQL_TRUSTED_PROXIES", &self.trusted_proxies)?,
            introspection: parse::flag("BLOGQL_INTROSPECTION", &self.introspection)?,
            trusted_documents: self
                .trusted_documents
                .as_deref()
                .map(|path| parse::path("BLOGQL_TRUSTED_DOCUMENTS", path))
                .transpose()?,
            connections: ConnectionLimits {
                max_connections: parse::count(
                    "BLOGQL_MAX_CONNECTIONS",
                    &self.max_connections,
                    MAX_CONNECTIONS,
                )?,
                head_timeout: parse::duration(
                    "BLOGQL_REQUEST_HEAD_TIMEOUT",
                    &self.request_head_timeout,
                )?,
                idle_timeout: parse::duration(
                    "BLOGQL_KEEP_ALIVE_TIMEOUT",
                    &self.keep_alive_timeout,
                )?,
                shutdown_grace: parse::duration("BLOGQL_SHUTDOWN_GRACE", &self.shutdown_grace)?,
            },
            request_timeout: parse::duration("BLOGQL_REQUEST_TIMEOUT", &self.request_timeout)?,
            access_log: parse::flag("BLOGQL_ACCESS_LOG", &self.access_log)?,
            metrics_bind: self
                .metrics_bind
                .as_deref()
                .filter(|value| !value.trim().is_empty())
                .map(|value| parse::address("BLOGQL_METRICS_BIND", value))
                .transpose()?,
        })
    }
}

/// How log lines are written (`BLOGQL_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: one line of text per event.
    Text,
    /// For log shippers: one JSON object per line (timestamp, level,
    /// target, message, fields).
    Json,
}

impl Settings {
    /// The log format, read before anything else is (so that every later
    /// line, a bad setting's included, is written in it).
    pub fn log_format(&self) -> Result<LogFormat, SettingError> {
        match self.log_format.trim().to_ascii_lowercase().as_str() {
            "auto" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(bad("BLOGQL_LOG_FORMAT", "expected auto, text or json")),
        }
    }
}

/// Targets whose own logging writes what must never be logged, and the most
/// they may log unless `RUST_LOG` names them: at debug, the PostgreSQL
/// driver writes every statement's parameters (password hashes, session
/// data, post bodies).
const QUIETED_TARGETS: [(&str, &str); 2] =
    [("tokio_postgres", "info"), ("postgres_protocol", "info")];

/// The log filter for a `RUST_LOG` value (`info` when unset or unusable),
/// with `QUIETED_TARGETS` capped unless the value names them.
pub fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    let wanted = rust_log.map(str::trim).filter(|value| !value.is_empty());
    let mut filter = wanted
        .and_then(|value| tracing_subscriber::EnvFilter::try_new(value).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    // Named: a directive for the target itself or one of its modules.
    let names = |target: &str| {
        wanted.is_some_and(|value| {
            value.split(',').any(|directive| {
                let name = directive.trim().split(['=', '[']).next().unwrap_or("");
                name == target || name.starts_with(&format!("{target}::"))
            })
        })
    };
    for (target, level) in QUIETED_TARGETS {
        if !names(target)
            && let Ok(directive) = format!("{target}={level}").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_driver_stays_quiet_at_debug_unless_named() {
        let filter = log_filter(Some("debug")).to_string();
        assert!(filter.contains("tokio_postgres=info"), "{filter}");
        let named = log_filter(Some("debug,tokio_postgres=trace")).to_string();
        assert!(named.contains("tokio_postgres=trace"), "{named}");
        assert!(!named.contains("tokio_postgres=info"), "{named}");
        assert!(log_filter(None).to_string().contains("info"));
        let unrelated = log_filter(Some("debug,my_tokio_postgres_app=debug")).to_string();
        assert!(unrelated.contains("tokio_postgres=info"), "{unrelated}");
    }
}
