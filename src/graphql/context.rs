//! What a resolver reads of its request: the one place that knows how the
//! request's data is kept in the async-graphql context.

use std::net::IpAddr;

use async_graphql::Context;

use super::Services;
use super::error::ApiError;
use crate::accounts::loader::Users;
use crate::auth::{Caller, Principal};
use crate::sessions::RequestSession;

/// The client's address (after trusted proxies), for throttling.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// What a resolver reads of its request.
pub(crate) trait RequestContext<'a> {
    /// The shared services.
    fn services(&self) -> &'a Services;
    /// The batching loader of users.
    fn users(&self) -> &'a Users;
    /// Who is asking, as resolved when the request arrived.
    fn caller(&self) -> &'a Caller;
    /// The request's cookie session (signing in and out, listing sessions);
    /// a request authenticated by a token has an empty one.
    fn session(&self) -> &'a RequestSession;
    /// The client's address, after trusted proxies.
    fn client(&self) -> IpAddr;
    /// The signed-in caller, if any.
    async fn principal(&self) -> Result<Option<Principal>, ApiError>;
    /// The signed-in caller, or `UNAUTHENTICATED`.
    async fn signed_in(&self) -> Result<Principal, ApiError>;
}

impl<'a> RequestContext<'a> for Context<'a> {
    fn services(&self) -> &'a Services {
        self.data_unchecked::<std::sync::Arc<Services>>()
    }

    fn users(&self) -> &'a Users {
        &self.services().users
    }

    fn caller(&self) -> &'a Caller {
        self.data_unchecked::<std::sync::Arc<Caller>>()
    }

    fn session(&self) -> &'a RequestSession {
        self.caller().session()
    }

    fn client(&self) -> IpAddr {
        self.data_unchecked::<ClientAddr>().0
    }

    async fn principal(&self) -> Result<Option<Principal>, ApiError> {
        Ok(self.caller().principal().await?)
    }

    async fn signed_in(&self) -> Result<Principal, ApiError> {
        self.principal().await?.ok_or(ApiError::Unauthenticated)
    }
}
