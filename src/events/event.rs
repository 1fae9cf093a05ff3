//! What travels on the bus: the events, and why a session ended.

use serde::{Deserialize, Serialize};

/// Why a session ended, as its subscribers are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EndReason {
    /// Signed out (or signed in again over it).
    LoggedOut,
    /// Ended by its user from another session.
    Revoked,
    /// A timeout passed.
    Expired,
    /// Its user's password changed.
    PasswordChanged,
    /// Its user's role changed.
    RoleChanged,
}

impl EndReason {
    /// As the contract names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoggedOut => "LOGGED_OUT",
            Self::Revoked => "REVOKED",
            Self::Expired => "EXPIRED",
            Self::PasswordChanged => "PASSWORD_CHANGED",
            Self::RoleChanged => "ROLE_CHANGED",
        }
    }
}

/// Something other instances must learn of. Sessions are named by their
/// stored key (a hash of the session ID: it cannot be turned back into a
/// cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Event {
    /// One session ended.
    SessionEnded {
        key: String,
        reason: EndReason,
    },
    /// Every session of `user` ended, but `except`.
    UserSessionsEnded {
        user: i64,
        except: Option<String>,
        reason: EndReason,
    },
    /// A session was given a new ID (its user's password changed).
    SessionRenewed {
        from: String,
        to: String,
    },
    /// `user` was changed or deleted in SQL (announced by the database's
    /// triggers): every remembered copy of theirs is stale.
    UserChanged {
        user: i64,
    },
    /// API tokens of `user` were revoked (one, or all of them).
    TokensRevoked {
        user: i64,
    },
    PostCreated {
        id: i64,
    },
    PostUpdated {
        id: i64,
    },
    PostDeleted {
        id: i64,
    },
    /// An instance's proof that the path works, sent to itself.
    Heartbeat {
        instance: u64,
        seq: u64,
    },
}

impl Event {
    pub(super) fn encode(&self) -> String {
        // A closed enum of numbers and short strings: it always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(super) fn decode(payload: &[u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }
}
