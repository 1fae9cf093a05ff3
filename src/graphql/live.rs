//! Live updates in the schema: `Subscription` (`postCreated`,
//! `sessionEnded`) and `SessionEndReason`. They run on a WebSocket
//! (`http::ws`), which hands each operation its `LiveSocket`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection};
use async_graphql::{Context, Enum, Subscription};
use futures_util::Stream;
use futures_util::stream;
use tokio::sync::{Notify, broadcast, watch};

use super::bounds;
use super::context::RequestContext;
use super::error::ApiError;
use super::guard::ByCookie;
use super::posts::PostObject;
use crate::events::EndReason;
use crate::posts::Post;

/// Why a session ended, as `sessionEnded` says.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "SessionEndReason", remote = "EndReason")]
pub enum SessionEndReason {
    LoggedOut,
    Revoked,
    Expired,
    PasswordChanged,
    RoleChanged,
}

/// What the operations of one WebSocket share with its loop: the end of
/// the socket's session (told to every `sessionEnded`), and whether one of
/// its subscriptions fell behind the posts (then the socket is closed).
#[derive(Default)]
pub struct LiveSocket {
    ended: watch::Sender<Option<EndReason>>,
    /// `sessionEnded` subscriptions started and not yet told.
    untold: AtomicUsize,
    fell_behind: AtomicBool,
    behind: Notify,
}

impl LiveSocket {
    /// Tells every `sessionEnded` subscription of this socket.
    pub fn end(&self, reason: EndReason) {
        self.ended.send_replace(Some(reason));
    }

    /// How many `sessionEnded` subscriptions have not been told yet.
    pub fn untold(&self) -> usize {
        self.untold.load(Ordering::Acquire)
    }

    /// Completes when a subscription of this socket fell behind.
    pub async fn fell_behind(&self) {
        while !self.fell_behind.load(Ordering::Acquire) {
            self.behind.notified().await;
        }
    }

    /// Says that a subscription of this socket fell behind.
    pub fn mark_behind(&self) {
        self.fell_behind.store(true, Ordering::Release);
        self.behind.notify_waiters();
    }
}

/// Root fields whose answer is the same for every caller: `Post` and all
/// that is reachable from it (its author, their posts) read nothing of
/// who asks. A field that ever does must take its root off this list, or
/// one socket's view would be sent to every other (the test
/// `everything_a_shared_post_shows_is_the_same_for_every_caller` asks every
/// field introspection lists as three callers, and fails first).
const SAME_FOR_EVERY_CALLER: &[&str] = &["postCreated", "__typename"];

/// Whether the operation of `document` that runs (named `name`) answers
/// the same for every caller, so one run may serve every socket that
/// holds it: its root selects only fields of `SAME_FOR_EVERY_CALLER`,
/// with no fragments.
pub fn same_for_every_caller(document: &ExecutableDocument, name: Option<&str>) -> bool {
    let Some((_, operation)) = bounds::selected(document, name) else {
        return false;
    };
    operation.ty == OperationType::Subscription
        && operation
            .selection_set
            .node
            .items
            .iter()
            .all(|item| match &item.node {
                Selection::Field(field) => {
                    SAME_FOR_EVERY_CALLER.contains(&field.node.name.node.as_str())
                }
                Selection::FragmentSpread(_) | Selection::InlineFragment(_) => false,
            })
}

/// A `sessionEnded` not yet told, counted on its socket until dropped.
struct Untold(Arc<LiveSocket>);

impl Untold {
    fn new(socket: Arc<LiveSocket>) -> Self {
        socket.untold.fetch_add(1, Ordering::AcqRel);
        Self(socket)
    }
}

impl Drop for Untold {
    fn drop(&mut self) {
        self.0.untold.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket an operation runs on; an error when it runs elsewhere.
fn socket(ctx: &Context<'_>) -> Result<Arc<LiveSocket>, ApiError> {
    ctx.data::<Arc<LiveSocket>>()
        .cloned()
        .map_err(|_| ApiError::internal("a subscription ran outside a WebSocket"))
}

/// Live updates.
#[derive(Default)]
pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Every new post, from any instance.
    async fn post_created(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = PostObject> + use<>, ApiError> {
        let socket = socket(ctx)?;
        let posts = ctx.services().feed.subscribe();
        Ok(stream::unfold(
            (posts, socket),
            |(mut posts, socket)| async move {
                match posts.recv().await {
                    Ok(post) => Some((PostObject::from(Post::clone(&post)), (posts, socket))),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Not completed: the client would not subscribe
                        // again. The socket closes (1013) and it reconnects.
                        socket.mark_behind();
                        std::future::pending().await
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            },
        ))
    }

    /// Fires once when the session of the socket's cookie ends, with why;
    /// then the socket closes (4401).
    #[graphql(guard = "ByCookie")]
    async fn session_ended(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = SessionEndReason> + use<>, ApiError> {
        let untold = Untold::new(socket(ctx)?);
        let mut ended = untold.0.ended.subscribe();
        Ok(stream::once(async move {
            let reason = match ended.wait_for(Option::is_some).await {
                Ok(reason) => (*reason).unwrap_or(EndReason::Revoked),
                // The socket is gone; nobody reads this.
                Err(_) => EndReason::Revoked,
            };
            // Told (or completed by the client: then dropped untold).
            drop(untold);
            SessionEndReason::from(reason)
        }))
    }
}
