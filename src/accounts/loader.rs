//! Users by id, batched: the lookups that many objects (a page of posts'
//! authors) or many concurrent requests (the users of sessions kept in
//! Redis) would otherwise make one by one become one query per batch.
//! async-graphql's `DataLoader` does the batching; it keeps no cache here,
//! so nothing it returns is stale.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, Loader};

use super::User;
use crate::db::{Db, DbError};

/// Loads users by id, one query per batch.
pub struct UserLoader {
    db: Db,
}

/// The batching loader of users, shared by everything that needs one.
pub type Users = Arc<DataLoader<UserLoader>>;

/// How long the loader of a page's authors waits to gather a batch.
pub const FOR_PAGES: Duration = Duration::from_micros(500);
/// How long the loader of signed-in requests' users waits: every such
/// request waits this long, so it is short; concurrent requests still
/// share one query.
pub const FOR_REQUESTS: Duration = Duration::from_micros(50);

/// A loader over `db` that waits `delay` to gather a batch.
pub fn users(db: Db, delay: Duration) -> Users {
    Arc::new(DataLoader::new(UserLoader { db }, tokio::spawn).delay(delay))
}

impl Loader<i64> for UserLoader {
    type Value = User;
    type Error = Arc<DbError>;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, User>, Self::Error> {
        let users = User::find_many(&self.db, ids).await.map_err(Arc::new)?;
        Ok(users.into_iter().map(|user| (user.id, user)).collect())
    }
}
