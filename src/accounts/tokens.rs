//! API tokens: credentials for clients that keep no cookie jar (scripts,
//! mobile apps, other servers).
//!
//! A token is `blogql_` and 256 random bits in base64url, shown once; only
//! its SHA-256 is stored. A fast hash is right here: unlike a password, a
//! token has nothing to guess, so a stolen table yields nothing a brute
//! force could reverse. A token authenticates as its owner with the owner's
//! role as it is now (read with the token, never copied into it); revoking
//! deletes it, so it fails at its next request.
//!
//! [`Tokens`] answers a token from memory (see [`crate::cache`]): every
//! revocation, and every change of its owner's role or sessions, is
//! announced on the bus and forgets the copies of that owner's tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sha2::{Digest, Sha256};
use time::PrimitiveDateTime;

use std::sync::Arc;

use super::{AccountError, User};
use crate::cache::{Bounds, Cache, Weigh};
use crate::db::schema::{api_tokens, users};
use crate::db::{Db, DbError, now, with_conn};
use crate::events::{Event, Events};
use crate::validate;

/// What every token starts with, so that a leaked one is recognisable
/// (secret scanners, logs) and never mistaken for a session ID.
pub const TOKEN_PREFIX: &str = "blogql_";
/// Random bytes per token: 256 bits.
const TOKEN_BYTES: usize = 32;
/// Most live tokens one user may hold: each is a standing credential, and
/// listing them stays one small page.
pub const MAX_TOKENS_PER_USER: i64 = 100;
/// How stale `lastUsedAt` may get before a request rewrites it.
const TOUCH_INTERVAL: time::Duration = time::Duration::minutes(1);

/// A token as its owner sees it; never the token itself.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: PrimitiveDateTime,
    /// Lags the last use by at most `TOUCH_INTERVAL`.
    pub last_used_at: Option<PrimitiveDateTime>,
}

/// A token itself: shown to its owner once, then never again; its `Debug`
/// does not print it.
pub struct PlainToken(String);

impl PlainToken {
    /// A new random token.
    fn random() -> Self {
        let secret: [u8; TOKEN_BYTES] = rand::random();
        Self(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret)))
    }

    /// The token, for the one answer that shows it.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainToken(…)")
    }
}

/// The stored form of a token: its SHA-256, hex. Only a token's own hash
/// can be made, so a plaintext never reaches a query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    fn of(token: &str) -> Self {
        Self(
            Sha256::digest(token.as_bytes())
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect(),
        )
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

impl Weigh for TokenHash {
    fn weight(&self) -> usize {
        self.0.weight()
    }
}

/// Whether `token` has the shape of one of ours: the prefix and exactly
/// 256 bits of base64url. Anything else is refused without a query.
fn well_formed(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|secret| {
        secret.len() == 43
            && URL_SAFE_NO_PAD
                .decode(secret)
                .is_ok_and(|bytes| bytes.len() == TOKEN_BYTES)
    })
}

impl ApiToken {
    /// Creates a token named `name` for `user_id`: the token (shown once)
    /// and what is stored of it.
    pub async fn create(
        db: &Db,
        user_id: i64,
        name: &str,
    ) -> Result<(PlainToken, ApiToken), AccountError> {
        let name = validate::token_name(name)?;
        let token = PlainToken::random();
        let stored = with_conn!(db, write conn => diesel::insert_into(api_tokens::table)
            .values((
                api_tokens::user_id.eq(user_id),
                api_tokens::name.eq(name),
                api_tokens::token_hash.eq(TokenHash::of(token.reveal()).as_str()),
                api_tokens::created_at.eq(now()),
            ))
            .returning(ApiToken::as_returning())
            .get_result(conn)
            .await
            .map_err(DbError::from)?);
        // Counted once inserted: of creations racing each other, each sees
        // the others that committed before it, so the last one over the
        // cap always sees it and takes itself back.
        if Self::count(db, user_id).await? > MAX_TOKENS_PER_USER {
            // Never shown, so never used: nothing to announce.
            Self::delete(db, user_id, stored.id).await?;
            return Err(AccountError::TooManyTokens);
        }
        Ok((token, stored))
    }

    async fn count(db: &Db, user_id: i64) -> Result<i64, DbError> {
        Ok(with_conn!(db, conn => api_tokens::table
            .filter(api_tokens::user_id.eq(user_id))
            .count()
            .get_result(conn)
            .await?))
    }

    /// The token stored under `hash`: its id, when it was last used, and
    /// its owner as they are now.
    async fn find(db: &Db, hash: &TokenHash) -> Result<Option<Authenticated>, DbError> {
        let found: Option<(i64, Option<PrimitiveDateTime>, User)> = with_conn!(db, conn => api_tokens::table
            .inner_join(users::table)
            .filter(api_tokens::token_hash.eq(hash.as_str()))
            .select((api_tokens::id, api_tokens::last_used_at, User::as_select()))
            .first(conn)
            .await
            .optional()?);
        Ok(found.map(|(id, last_used_at, user)| Authenticated {
            id,
            last_used_at,
            user,
        }))
    }

    /// Records a use of token `id` at `now`, unless one since a minute
    /// before was recorded: conditional, so concurrent uses write it once.
    async fn touch(db: Db, id: i64, now: PrimitiveDateTime) {
        let stale = now - TOUCH_INTERVAL;
        let touched: Result<usize, DbError> = async {
            Ok(
                with_conn!(db, write conn => diesel::update(api_tokens::table
                .find(id)
                .filter(api_tokens::last_used_at.is_null().or(api_tokens::last_used_at.le(stale))))
                .set(api_tokens::last_used_at.eq(now))
                .execute(conn)
                .await?),
            )
        }
        .await;
        if let Err(err) = touched {
            tracing::warn!(token_id = id, error = %err, "cannot record an API token's use");
        }
    }

    /// `user_id`'s tokens, newest first.
    pub async fn list(db: &Db, user_id: i64) -> Result<Vec<ApiToken>, DbError> {
        Ok(with_conn!(db, conn => api_tokens::table
            .filter(api_tokens::user_id.eq(user_id))
            .order(api_tokens::id.desc())
            .limit(MAX_TOKENS_PER_USER)
            .select(ApiToken::as_select())
            .load(conn)
            .await?))
    }

    /// Deletes `user_id`'s token `id`; `false` when the user has no such
    /// token. (Announced by [`Tokens::revoke`].)
    async fn delete(db: &Db, user_id: i64, id: i64) -> Result<bool, DbError> {
        let deleted = with_conn!(db, write conn => diesel::delete(api_tokens::table
            .find(id)
            .filter(api_tokens::user_id.eq(user_id)))
            .execute(conn)
            .await?);
        Ok(deleted == 1)
    }
}

/// Most tokens kept in memory, and their bytes.
const REMEMBERED: Bounds = Bounds {
    entries: 10_000,
    bytes: 4 << 20,
    max_age: crate::cache::TRUSTED_FOR,
};

/// A token that authenticates, as remembered.
#[derive(Debug)]
struct Authenticated {
    id: i64,
    last_used_at: Option<PrimitiveDateTime>,
    user: User,
}

impl Weigh for Arc<Authenticated> {
    fn weight(&self) -> usize {
        std::mem::size_of::<Authenticated>() + self.user.username.capacity()
    }
}

/// Authenticating and revoking API tokens, with the copies kept in memory;
/// cheap to clone.
#[derive(Clone)]
pub struct Tokens {
    db: Db,
    events: Events,
    remembered: Arc<Cache<TokenHash, Arc<Authenticated>>>,
}

impl Tokens {
    /// Tokens in `db`, their revocations announced on `events` (and heard
    /// from it).
    pub fn new(db: &Db, events: &Events) -> Self {
        let remembered = Arc::new(Cache::new(events, REMEMBERED));
        let forget = remembered.clone();
        events.observe(Arc::new(move |event| match event {
            Event::TokensRevoked { user }
            | Event::UserSessionsEnded { user, .. }
            | Event::UserChanged { user } => {
                forget.forget_owner(*user);
            }
            _ => {}
        }));
        Self {
            db: db.clone(),
            events: events.clone(),
            remembered,
        }
    }

    /// Who `token` authenticates, with their role as it is now; `None` for
    /// a token that is malformed, unknown or revoked. Records the use at
    /// most once per `TOUCH_INTERVAL`.
    pub async fn authenticate(&self, token: &str) -> Result<Option<User>, DbError> {
        if !well_formed(token) {
            return Ok(None);
        }
        let hash = TokenHash::of(token);
        let now = now();
        let stale = |found: &Authenticated| {
            found
                .last_used_at
                .is_none_or(|at| at <= now - TOUCH_INTERVAL)
        };
        if let Some(found) = self.remembered.get(&hash)
            && !stale(&found)
        {
            return Ok(Some(found.user.clone()));
        }
        let ticket = self.remembered.ticket();
        let Some(found) = ApiToken::find(&self.db, &hash).await? else {
            return Ok(None);
        };
        let mut found = found;
        if stale(&found) {
            // Beside the request, which never waits for it (on SQLite, for
            // the writer); a failure costs only the timestamp.
            tokio::spawn(ApiToken::touch(self.db.clone(), found.id, now));
            found.last_used_at = Some(now);
        }
        let user = found.user.clone();
        self.remembered.put(ticket, hash, user.id, Arc::new(found));
        Ok(Some(user))
    }

    /// Revokes `user_id`'s token `id` everywhere; `false` when the user
    /// has no such token.
    pub async fn revoke(&self, user_id: i64, id: i64) -> Result<bool, DbError> {
        // To its end even if the request is dropped: a token deleted is
        // always announced.
        let this = self.clone();
        let revoking = tokio::spawn(async move {
            let deleted = ApiToken::delete(&this.db, user_id, id).await?;
            if deleted {
                this.revoked(user_id).await;
            }
            Ok(deleted)
        });
        match revoking.await {
            Ok(revoked) => revoked,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // The server is stopping: whatever was deleted, its copies age out.
            Err(_) => Ok(false),
        }
    }

    /// Tells every instance that tokens of `user_id` were revoked (after
    /// the store says so): no copy of them answers again.
    pub async fn revoked(&self, user_id: i64) {
        self.remembered.forget_owner(user_id);
        self.events
            .publish_heard(Event::TokensRevoked { user: user_id })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_prefix_and_256_bits_of_base64url_are_well_formed() {
        let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
        assert!(well_formed(&token));
        assert!(!well_formed(&token[1..]), "without the prefix");
        assert!(
            !well_formed(&token[..token.len() - 1]),
            "one character short"
        );
        assert!(!well_formed(&format!("{token}A")), "one character long");
        assert!(
            !well_formed(&token.replace(&token[10..11], "+")),
            "not base64url"
        );
        assert!(!well_formed(""));
    }

    #[test]
    fn the_stored_hash_is_the_hex_sha256_of_the_whole_token() {
        assert_eq!(
            TokenHash::of("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
