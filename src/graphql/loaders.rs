//! DataLoaders: batch the lookups that a list of objects would otherwise make
//! one by one.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;

use crate::accounts::User;
use crate::db::{Db, DbError};

/// Loads users by id, one query per batch (`Post.author`).
pub struct UserLoader {
    pub db: Db,
}

impl Loader<i64> for UserLoader {
    type Value = User;
    type Error = Arc<DbError>;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, User>, Self::Error> {
        let users = User::find_many(&self.db, ids).await.map_err(Arc::new)?;
        Ok(users.into_iter().map(|user| (user.id, user)).collect())
    }
}
