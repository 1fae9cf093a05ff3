//! How sessions end: deleted from the store, counted, and announced to
//! every instance (its open WebSockets, its remembered copies). Each
//! ending runs in a task of its own, so that a dropped request cannot
//! delete without announcing.

use super::keys::{Handle, StoredKey};
use super::{EndReason, SessionError, Sessions, StoreError, forget_ended};
use crate::events::Event;

impl Sessions {
    /// Ends the session under `key`; whether there was one.
    pub async fn end(&self, key: &StoredKey, reason: EndReason) -> Result<bool, SessionError> {
        let (this, key) = (self.clone(), key.clone());
        to_the_end(async move { this.end_now(&key, reason).await }).await
    }

    async fn end_now(&self, key: &StoredKey, reason: EndReason) -> Result<bool, SessionError> {
        let ended = self.inner.store.delete(key).await?;
        self.ended(usize::from(ended), reason);
        if ended {
            self.announce(Event::SessionEnded {
                key: key.as_str().to_owned(),
                reason,
            })
            .await;
        }
        Ok(ended)
    }

    /// Ends `user_id`'s session with this handle; `false` when the user has
    /// no live session with it (nobody else's is ever ended).
    pub async fn revoke(&self, user_id: i64, handle: &Handle) -> Result<bool, SessionError> {
        let (this, handle) = (self.clone(), handle.clone());
        to_the_end(async move { this.revoke_now(user_id, &handle).await }).await
    }

    async fn revoke_now(&self, user_id: i64, handle: &Handle) -> Result<bool, SessionError> {
        let ended = self.inner.store.revoke(user_id, handle).await?;
        self.ended(usize::from(ended), EndReason::Revoked);
        if ended {
            // The store knows the session by its handle only: each of the
            // user's watchers checks whether it was theirs.
            self.announce(Event::UserSessionsEnded {
                user: user_id,
                except: None,
                reason: EndReason::Revoked,
            })
            .await;
        }
        Ok(ended)
    }

    /// Ends every session of `user_id`; how many there were.
    pub async fn end_all_of(&self, user_id: i64, reason: EndReason) -> Result<usize, SessionError> {
        let this = self.clone();
        to_the_end(async move { this.end_all_of_now(user_id, reason).await }).await
    }

    async fn end_all_of_now(&self, user_id: i64, reason: EndReason) -> Result<usize, SessionError> {
        let ended = self.inner.store.delete_of_user(user_id, None).await?;
        self.ended(ended, reason);
        self.announce(Event::UserSessionsEnded {
            user: user_id,
            except: None,
            reason,
        })
        .await;
        Ok(ended)
    }

    /// Ends every session of `user_id` but `keep`; how many there were.
    pub async fn end_others_of(
        &self,
        user_id: i64,
        keep: &StoredKey,
        reason: EndReason,
    ) -> Result<usize, SessionError> {
        let (this, keep) = (self.clone(), keep.clone());
        to_the_end(async move { this.end_others_of_now(user_id, &keep, reason).await }).await
    }

    async fn end_others_of_now(
        &self,
        user_id: i64,
        keep: &StoredKey,
        reason: EndReason,
    ) -> Result<usize, SessionError> {
        let ended = self.inner.store.delete_of_user(user_id, Some(keep)).await?;
        self.ended(ended, reason);
        if ended > 0 {
            self.announce(Event::UserSessionsEnded {
                user: user_id,
                except: Some(keep.as_str().to_owned()),
                reason,
            })
            .await;
        }
        Ok(ended)
    }

    /// Tells every instance (its open WebSockets, its caches), once the
    /// store says so: this one's copy is forgotten first, the others' by
    /// the time the event is heard back.
    pub(crate) async fn announce(&self, event: Event) {
        forget_ended(&self.inner.remembered, &event);
        self.inner.events.publish_heard(event).await;
    }

    /// Deletes the sessions past their expiry; run by the housekeeping task.
    /// (Not announced: whoever holds a session knows when it expires.)
    pub async fn delete_expired(&self) -> Result<usize, SessionError> {
        let ended = self.inner.store.delete_expired().await?;
        self.ended(ended, EndReason::Expired);
        Ok(ended)
    }

    /// Counts (and at `debug` logs) `count` sessions that ended.
    fn ended(&self, count: usize, reason: EndReason) {
        if count > 0 {
            self.inner.metrics.sessions_ended(count, reason);
            tracing::debug!(count, reason = reason.as_str(), "sessions ended");
        }
    }
}

/// Runs an ending to its end even when the request that began it is
/// dropped (its time limit passed, its client went away): a session deleted
/// in the store is always announced, or other instances would answer from
/// their copies of it until those age out.
async fn to_the_end<T: Send + 'static>(
    ending: impl Future<Output = Result<T, SessionError>> + Send + 'static,
) -> Result<T, SessionError> {
    match tokio::spawn(ending).await {
        Ok(ended) => ended,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(StoreError::Stopped.into()),
    }
}
