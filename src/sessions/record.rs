//! What a session holds, and how it is stored (the same on every store).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::keys::{Handle, StoredKey};
use crate::clock::Millis;

/// Longest user agent kept with a session, in characters.
pub const MAX_USER_AGENT: usize = 256;

/// Who signed in, when, and from where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedIn {
    pub user_id: i64,
    pub signed_in_at: Millis,
    /// Stored lazily: lags the last use by at most the touch interval.
    pub last_seen_at: Millis,
    /// The `User-Agent` sent at sign-in, at most [`MAX_USER_AGENT`] characters.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// The client's address at sign-in (after trusted proxies).
    #[serde(default)]
    pub ip_address: Option<String>,
    /// The user's credential version at sign-in: once the password or role
    /// changes, the session is nobody's.
    #[serde(default)]
    pub credential_version: i64,
}

/// A session as a store keeps it: what it holds and when it expires (the
/// earlier of its two deadlines).
#[derive(Debug, Clone)]
pub struct Stored {
    pub signed_in: SignedIn,
    pub expires_at: Millis,
}

/// The stored data's JSON shape (`{"auth": …}`, as sessions written by
/// earlier versions have it; other keys they kept are ignored).
#[derive(Serialize, Deserialize)]
struct Data<T> {
    auth: T,
}

impl Stored {
    /// The data column or field, as JSON.
    pub fn data(&self) -> String {
        serde_json::to_string(&Data {
            auth: &self.signed_in,
        })
        .unwrap_or_else(|_| "{}".to_owned())
    }

    /// A session read back from the store; `None` when its data is not ours.
    pub fn from_data(data: &str, expires_at: Millis) -> Option<Self> {
        let Data { auth } = serde_json::from_str::<Data<SignedIn>>(data).ok()?;
        Some(Self {
            signed_in: auth,
            expires_at,
        })
    }
}

/// One of a user's live sessions, as the user may see it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// For revoking it.
    pub handle: Handle,
    /// Whether it is the session of the request asking.
    pub current: bool,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
}

impl SessionInfo {
    /// What the stored session under `key` shows of itself.
    pub fn new(key: &StoredKey, stored: Stored, current: Option<&StoredKey>) -> Self {
        let SignedIn {
            signed_in_at,
            last_seen_at,
            user_agent,
            ip_address,
            ..
        } = stored.signed_in;
        Self {
            handle: key.handle(),
            current: current == Some(key),
            created_at: signed_in_at.date_time(),
            last_seen_at: last_seen_at.max(signed_in_at).date_time(),
            user_agent,
            ip_address,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_written_by_earlier_versions_reads_back() {
        let earlier = r#"{"auth":{"user_id":7,"signed_in_at":1,"last_seen_at":2},"user":{"id":7}}"#;
        let stored = Stored::from_data(earlier, Millis(3)).expect("readable");
        assert_eq!(stored.signed_in.user_id, 7);
        assert_eq!(stored.signed_in.last_seen_at, Millis(2));
        let again = Stored::from_data(&stored.data(), Millis(3)).expect("readable");
        assert_eq!(again.signed_in.signed_in_at, Millis(1));
    }
}
