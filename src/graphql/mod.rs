//! The GraphQL schema: assembly and limits here; one module per domain
//! (accounts, sessions, tokens, posts), each with its object types and its
//! share of `Query` and `Mutation`, merged with `MergedObject`; `live` is
//! the `Subscription`. Beside them: what a resolver reads of its request
//! (`context`), the guards, the error codes, the document bounds checked
//! before validation, the cache of parsed documents, and validating a
//! document without running it.

pub mod accounts;
pub mod bounds;
pub mod context;
pub mod error;
pub mod guard;
pub mod live;
pub mod pages;
pub mod parsed;
pub mod posts;
pub mod sessions;
pub mod tokens;
pub mod validator;

use std::sync::Arc;

use async_graphql::{ID, MergedObject, Schema, SchemaBuilder};

use crate::accounts::loader::Users;
use crate::accounts::passwords::Passwords;
use crate::accounts::throttle::Throttle;
use crate::accounts::tokens::Tokens;
use crate::auth::changes;
use crate::db::Db;
use crate::events::Events;
use crate::live::PostFeed;
use crate::sessions::Sessions;

/// Reads.
#[derive(MergedObject, Default)]
pub struct Query(
    accounts::AccountQuery,
    sessions::SessionQuery,
    tokens::TokenQuery,
    posts::PostQuery,
);

/// Writes.
#[derive(MergedObject, Default)]
pub struct Mutation(
    accounts::AccountMutation,
    sessions::SessionMutation,
    tokens::TokenMutation,
    posts::PostMutation,
);

/// The executable schema.
pub type BlogSchema = Schema<Query, Mutation, live::Subscription>;

/// Deepest selection accepted. GraphiQL's introspection query needs 13.
pub const MAX_DEPTH: usize = 16;
/// Most costly query accepted. Fields weigh by what they can return: a
/// post's body (up to 50,000 characters) weighs [`posts::BODY_COMPLEXITY`],
/// so a page of 100 posts with every field costs about 4,200 (see
/// `pages::page_complexity`) and one request cannot ask for two.
pub const MAX_COMPLEXITY: usize = 5_000;

/// What resolvers share across requests.
pub struct Services {
    pub db: Db,
    pub passwords: Arc<Passwords>,
    pub throttle: Throttle,
    pub sessions: Sessions,
    /// API tokens: authenticating (from memory when it may), revoking.
    pub tokens: Tokens,
    /// Pages of posts, from memory when they may be.
    pub pages: crate::posts::Pages,
    /// Users by id, batched (and shared with the session store's reads).
    pub users: Users,
    /// What happened, for every instance.
    pub events: Events,
    /// New posts, for their subscribers.
    pub feed: PostFeed,
    /// What the operator sees (logins, sockets, subscriptions, …).
    pub metrics: crate::telemetry::Metrics,
}

impl Services {
    /// What an account change needs.
    pub fn changes(&self) -> changes::Services<'_> {
        changes::Services {
            db: &self.db,
            passwords: &self.passwords,
            throttle: &self.throttle,
            sessions: &self.sessions,
            tokens: &self.tokens,
        }
    }
}

/// The numeric id an `ID` names; `None` for one this server never issued
/// (which then names nothing).
fn row_id(id: &ID) -> Option<i64> {
    id.parse().ok()
}

fn builder() -> SchemaBuilder<Query, Mutation, live::Subscription> {
    Schema::build(Query::default(), Mutation::default(), live::Subscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
}

/// The schema with its services.
pub fn schema(services: Arc<Services>, introspection: bool) -> BlogSchema {
    finish(builder().data(services), introspection)
}

/// Costliest subscription accepted: it runs again for every new post, once
/// for each distinct operation (sockets holding the same one share its run,
/// but every socket may hold one of its own making); a post with its author
/// and a few of theirs fits, a page of bodies does not.
pub const MAX_SUBSCRIPTION_COMPLEXITY: usize = 200;
/// Deepest subscription accepted.
pub const MAX_SUBSCRIPTION_DEPTH: usize = 8;

/// The schema for WebSockets: the same, with the tighter subscription
/// limits.
pub fn live_schema(services: Arc<Services>, introspection: bool) -> BlogSchema {
    let builder = builder()
        .data(services)
        .limit_depth(MAX_SUBSCRIPTION_DEPTH)
        .limit_complexity(MAX_SUBSCRIPTION_COMPLEXITY);
    finish(builder, introspection)
}

/// The schema, with introspection on or off.
fn finish(
    builder: SchemaBuilder<Query, Mutation, live::Subscription>,
    introspection: bool,
) -> BlogSchema {
    if introspection {
        builder.finish()
    } else {
        // "Did you mean …" would list the field names introspection hides.
        builder
            .disable_introspection()
            .disable_suggestions()
            .finish()
    }
}

/// The schema's SDL, as `blogql print-schema` writes it.
pub fn sdl() -> String {
    builder().finish().sdl()
}
