//! Who is asking: the request's [`Caller`], resolved once from its headers
//! (an `Authorization: Bearer` token, else the `sid` cookie) by one function
//! that every entry point calls before anything else.

use std::net::IpAddr;

use axum::http::{HeaderMap, header};
use axum::response::Response;

use super::AppState;
use super::respond::{self, ResponseFormat};
use crate::auth::{Caller, TokenError};
use crate::graphql::error::log_internal;

/// The request's caller. A token that does not authenticate refuses the
/// request (401, whatever else it is: never anonymous), and is answered
/// before the body is read, so the connection closes after the answer.
/// A cookie's session is looked up when the request first asks who is
/// signed in (never, for a request refused before it runs).
pub async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    client: IpAddr,
) -> Result<Caller, Response> {
    let sessions = &state.services.sessions;
    let Some(token) = bearer_token(headers) else {
        return Ok(Caller::by_cookie(sessions.from_cookies(headers, client)));
    };
    let session = sessions.without_cookie(headers, client);
    match Caller::by_token(&state.services.tokens, token, session).await {
        Ok(caller) => {
            tracing::trace!("caller identified by an API token");
            Ok(caller)
        }
        Err(TokenError::Invalid) => Err(respond::closing(respond::invalid_token())),
        Err(TokenError::Db(err)) => Err(respond::closing(
            ResponseFormat::negotiate(headers).failed(&log_internal(err)),
        )),
    }
}

/// The request's bearer token, if it sends one; `Some("")` (which no token
/// matches) when it sends a Bearer credential that is not one readable
/// token: empty, not text, or several. Other schemes (a proxy's Basic
/// credentials) are not ours and are left alone.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let mut found = None;
    for value in headers.get_all(header::AUTHORIZATION) {
        let bytes = value.as_bytes();
        // The scheme, in any case, then whitespace (or nothing) before the token.
        let is_bearer = bytes.len() >= 6
            && bytes[..6].eq_ignore_ascii_case(b"bearer")
            && bytes.get(6).is_none_or(u8::is_ascii_whitespace);
        if !is_bearer {
            continue;
        }
        if found.is_some() {
            return Some("");
        }
        found = Some(value.to_str().map_or("", |text| text[6..].trim()));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::AUTHORIZATION, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn a_bearer_credential_is_read_and_other_schemes_are_left_alone() {
        assert_eq!(bearer_token(&headers(&[])), None);
        assert_eq!(bearer_token(&headers(&["Basic dXNlcjpwdw=="])), None);
        assert_eq!(
            bearer_token(&headers(&["Bearer blogql_x"])),
            Some("blogql_x")
        );
        assert_eq!(
            bearer_token(&headers(&["bearer  blogql_x "])),
            Some("blogql_x")
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer\tblogql_x"])),
            Some("blogql_x")
        );
        assert_eq!(bearer_token(&headers(&["Bearer"])), Some(""));
        assert_eq!(bearer_token(&headers(&["Bearerish x"])), None);
        assert_eq!(bearer_token(&headers(&["Bearer a", "Bearer b"])), Some(""));
    }
}
