//! One parser per kind of setting: each takes the variable's name (for the
//! one line a bad value ends the process with) and its text.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use axum::http::{HeaderValue, Uri};
use ipnet::IpNet;

use super::{RedisConfig, SettingError, bad};

/// Longest duration accepted: ten years keeps every deadline a date.
const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 60 * 60);

/// The items of a comma-separated list, trimmed, empty ones left out.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
pub fn flag(name: &'static str, value: &str) -> Result<bool, SettingError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(bad(name, "expected true or false")),
    }
}

/// A humantime duration from 1 s to 3650 days.
pub fn duration(name: &'static str, value: &str) -> Result<Duration, SettingError> {
    let parsed = humantime::parse_duration(value.trim()).map_err(|err| {
        bad(
            name,
            format!("{value:?} is not a duration like 90s, 15m or 7d ({err})"),
        )
    })?;
    if parsed < Duration::from_secs(1) {
        return Err(bad(name, "must be at least 1s"));
    }
    if parsed > MAX_DURATION {
        return Err(bad(name, "must be at most 3650d"));
    }
    Ok(parsed)
}

/// A whole number from 1 to `max`.
pub fn count(name: &'static str, value: &str, max: usize) -> Result<usize, SettingError> {
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| bad(name, format!("expected a whole number from 1 to {max}")))
}

/// The path of a file (read later): not empty.
pub fn path(name: &'static str, value: &str) -> Result<PathBuf, SettingError> {
    if value.trim().is_empty() {
        return Err(bad(
            name,
            "expected the path of a file (unset the variable to go without)",
        ));
    }
    Ok(PathBuf::from(value))
}

/// An address to listen on.
pub fn address(name: &'static str, value: &str) -> Result<SocketAddr, SettingError> {
    value.parse().map_err(|_| {
        bad(
            name,
            format!("{value:?} is not an address like 127.0.0.1:8000"),
        )
    })
}

/// An `http://` or `https://` URL with a host.
pub fn public_url(name: &'static str, value: &str) -> Result<Uri, SettingError> {
    value
        .parse()
        .ok()
        .filter(|uri: &Uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
        })
        .ok_or_else(|| bad(name, format!("{value:?} is not an http:// or https:// URL")))
}

/// The origin a browser sends for pages under `url`: its scheme and host,
/// and its port unless it is the scheme's default.
pub fn origin_of(url: &Uri) -> HeaderValue {
    let scheme = url.scheme_str().unwrap_or("http");
    let host = url.host().unwrap_or_default().to_ascii_lowercase();
    let origin = match url.port_u16() {
        Some(port) if !matches!((scheme, port), ("http", 80) | ("https", 443)) => {
            format!("{scheme}://{host}:{port}")
        }
        _ => format!("{scheme}://{host}"),
    };
    // Made of a parsed URI's parts: always a valid header value.
    HeaderValue::from_str(&origin).unwrap_or(HeaderValue::from_static("null"))
}

/// A list of origins (scheme and host, no wildcard, path or trailing slash).
pub fn origins(name: &'static str, value: &str) -> Result<Vec<HeaderValue>, SettingError> {
    list(value)
        .map(|origin| {
            let valid = origin != "*"
                && origin.parse::<Uri>().is_ok_and(|uri| {
                    uri.scheme().is_some() && uri.host().is_some() && uri.path() == "/"
                })
                && !origin.ends_with('/');
            valid
                .then(|| HeaderValue::from_str(origin).ok())
                .flatten()
                .ok_or_else(|| {
                    bad(
                        name,
                        format!(
                            "{origin:?} is not an origin like https://app.example.com \
                             (no wildcard, path or trailing slash)"
                        ),
                    )
                })
        })
        .collect()
}

/// A list of IP addresses and CIDR blocks.
pub fn networks(name: &'static str, value: &str) -> Result<Vec<IpNet>, SettingError> {
    list(value)
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| bad(name, format!("{entry:?} is not an IP address or CIDR")))
        })
        .collect()
}

/// Redis, when its URL is set, with the prefix of our keys.
pub fn redis(
    (url_name, url): (&'static str, Option<&str>),
    (prefix_name, prefix): (&'static str, &str),
) -> Result<Option<RedisConfig>, SettingError> {
    let prefix = prefix.trim();
    if !(1..=32).contains(&prefix.len())
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(bad(
            prefix_name,
            "expected 1 to 32 characters of A-Z, a-z, 0-9, _, - and .",
        ));
    }
    match url.map(str::trim) {
        None | Some("") => Ok(None),
        Some(url) if url.starts_with("redis://") => Ok(Some(RedisConfig {
            url: url.to_owned(),
            key_prefix: prefix.to_owned(),
        })),
        Some(url) if url.starts_with("rediss://") => Err(bad(
            url_name,
            "rediss:// (TLS) is not built in: use redis:// on loopback or a private network",
        )),
        Some(_) => Err(bad(url_name, "expected redis://HOST:PORT[/DB]")),
    }
}
