//! The GraphQL schema: assembly and limits here, with what a resolver reads
//! of its request (`RequestContext`, the caller's `Principal`); `Query`,
//! `Mutation`, the object types, the loaders, the guards, the error codes and
//! the document bounds beside it.

pub mod documents;
pub mod error;
pub mod guard;
pub mod loaders;
pub mod mutation;
pub mod query;
pub mod shape;
pub mod types;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, EmptySubscription, Schema, SchemaBuilder};

use crate::accounts::User;
use crate::accounts::passwords::Passwords;
use crate::accounts::throttle::Throttle;
use crate::auth::{Principal, Via};
use crate::db::Db;
use crate::sessions::AuthSession;
use error::ApiError;
use loaders::UserLoader;
use mutation::Mutation;
use query::Query;

/// The executable schema.
pub type BlogSchema = Schema<Query, Mutation, EmptySubscription>;

/// Deepest selection accepted. GraphiQL's introspection query needs 13.
pub const MAX_DEPTH: usize = 16;
/// Most costly query accepted. Fields weigh by what they can return: a
/// post's body (up to 50,000 characters) weighs [`types::BODY_COMPLEXITY`],
/// so a page of 100 posts with every field costs about 4,200 (see
/// `types::page_complexity`) and one request cannot ask for two.
pub const MAX_COMPLEXITY: usize = 5_000;

/// What resolvers share across requests.
pub struct Services {
    pub db: Db,
    pub passwords: Arc<Passwords>,
    pub throttle: Throttle,
}

/// The client's address (after trusted proxies), for throttling.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// The caller of a request authenticated by an API token (which then has
/// no cookie session: see [`crate::auth`]).
#[derive(Debug, Clone)]
pub struct TokenCaller(pub Principal);

fn builder() -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query, Mutation, EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
}

/// The schema with its services.
pub fn schema(services: Services, introspection: bool) -> BlogSchema {
    // One loader for all requests: it keeps no cache (so nothing goes stale)
    // and batches the authors of concurrent requests together.
    let users = DataLoader::new(
        UserLoader {
            db: services.db.clone(),
        },
        tokio::spawn,
    )
    .delay(Duration::from_micros(500));
    let builder = builder().data(services).data(users);
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

/// What a resolver reads of its request: the one place that knows how the
/// request's data is stored in the context.
pub(crate) trait RequestContext<'a> {
    /// The shared services.
    fn services(&self) -> &'a Services;
    /// The request's cookie session (signing in and out, listing sessions);
    /// a request authenticated by a token has an empty one.
    fn session(&self) -> &'a AuthSession;
    /// The caller, when an API token authenticated the request.
    fn token_caller(&self) -> Option<&'a Principal>;
    /// The client's address, after trusted proxies.
    fn client(&self) -> IpAddr;
}

impl<'a> RequestContext<'a> for Context<'a> {
    fn services(&self) -> &'a Services {
        self.data_unchecked::<Services>()
    }

    fn session(&self) -> &'a AuthSession {
        self.data_unchecked::<Arc<AuthSession>>()
    }

    fn client(&self) -> IpAddr {
        self.data_unchecked::<ClientAddr>().0
    }

    fn token_caller(&self) -> Option<&'a Principal> {
        self.data_opt::<TokenCaller>().map(|caller| &caller.0)
    }
}

/// The signed-in caller, if any: the request's API token's owner, or else
/// the user of its cookie session.
pub(crate) async fn principal(ctx: &Context<'_>) -> Result<Option<Principal>, ApiError> {
    if let Some(caller) = ctx.token_caller() {
        return Ok(Some(caller.clone()));
    }
    let session = ctx.session();
    // The session's own snapshot of its user: no query.
    if let Some(user) = session.user().await? {
        return Ok(Some(Principal {
            user,
            via: Via::Cookie,
        }));
    }
    // A session from before snapshots were kept.
    let Some(user_id) = session.user_id().await? else {
        return Ok(None);
    };
    let user = User::find(&ctx.services().db, user_id).await?;
    Ok(user.map(|user| Principal {
        user,
        via: Via::Cookie,
    }))
}

/// The signed-in caller, or `UNAUTHENTICATED`.
pub(crate) async fn signed_in(ctx: &Context<'_>) -> Result<Principal, ApiError> {
    principal(ctx).await?.ok_or(ApiError::Unauthenticated)
}
