//! The three names of a session, each its own type so that one can never
//! be sent where another is expected:
//! - [`SessionId`], the secret in the cookie; never stored, never logged;
//! - [`StoredKey`], what the store keeps it under: the SHA-256 of the ID, so
//!   that a copy of the store cannot be replayed as cookies;
//! - [`Handle`], what its user sees (`Session.id`) to revoke it: a hash of
//!   the stored key, leading back to neither.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use tower_sessions::session::Id;

/// The secret a session cookie carries: 128 random bits (tower-sessions'
/// `Id`, in its base64url form).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(Id);

impl SessionId {
    /// A new random ID.
    pub fn random() -> Self {
        Self(Id::default())
    }

    /// The ID a cookie value names, if it is one.
    pub fn parse(value: &str) -> Option<Self> {
        value.parse().ok().map(Self)
    }

    /// The cookie's value.
    pub fn cookie_value(&self) -> String {
        self.0.to_string()
    }

    /// Where the store keeps this session.
    pub fn stored_key(&self) -> StoredKey {
        StoredKey(URL_SAFE_NO_PAD.encode(Sha256::digest(self.0.0.to_le_bytes())))
    }
}

/// Never prints the secret.
impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(…)")
    }
}

/// The key a session is stored under (never shown to anyone).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StoredKey(String);

impl StoredKey {
    /// A key as read back from the store.
    pub(crate) fn from_stored(key: String) -> Self {
        Self(key)
    }

    /// As the store writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The handle its user sees.
    pub fn handle(&self) -> Handle {
        let mut digest = Sha256::new();
        digest.update(b"blogql session handle\0");
        digest.update(self.0.as_bytes());
        Handle(URL_SAFE_NO_PAD.encode(digest.finalize()))
    }
}

/// Looked up by the `&str` an event carries.
impl std::borrow::Borrow<str> for StoredKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl crate::cache::Weigh for StoredKey {
    fn weight(&self) -> usize {
        self.0.weight()
    }
}

/// Not secret, but not for logs either: it names a live session.
impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoredKey(…)")
    }
}

/// A handle for revoking a session, as its user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handle(String);

impl Handle {
    /// A handle as a client sent it.
    pub fn from_client(handle: &str) -> Self {
        Self(handle.to_owned())
    }

    /// As the client sees it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_names_lead_one_way_only() {
        let id = SessionId::random();
        let key = id.stored_key();
        let handle = key.handle();
        assert_ne!(key.as_str(), id.cookie_value());
        assert_ne!(handle.as_str(), key.as_str());
        assert_eq!(
            SessionId::parse(&id.cookie_value()).map(|id| id.stored_key()),
            Some(key)
        );
        assert_eq!(format!("{id:?}"), "SessionId(…)");
    }
}
