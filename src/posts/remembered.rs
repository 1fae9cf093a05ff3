//! Pages of posts and their authors remembered per instance (see
//! [`crate::cache`]): every post created, edited or deleted anywhere, and
//! every change of a user (an author's role is on the page), forgets them
//! all; the next request reads the page again.

use std::sync::Arc;

use super::Post;
use crate::accounts::User;
use crate::cache::{Bounds, Cache, Weigh};
use crate::db::{Db, DbError};
use crate::events::{EndReason, Event, Events};
use crate::pages::{Page, PageRequest};

/// Most pages remembered, and their bytes (bodies included).
const REMEMBERED: Bounds = Bounds {
    entries: 1_000,
    bytes: 16 << 20,
    max_age: crate::cache::TRUSTED_FOR,
};

/// Which page: of whose posts, after which, how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Which {
    author: Option<i64>,
    after: Option<i64>,
    first: i64,
}

impl Weigh for Which {
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// A page of posts, with their authors when they were asked for (always,
/// when remembered).
pub struct PostPage {
    pub page: Page<Post>,
    pub authors: Vec<User>,
}

impl Weigh for Arc<PostPage> {
    fn weight(&self) -> usize {
        let posts: usize = self
            .page
            .items
            .iter()
            .map(|post| std::mem::size_of::<Post>() + post.title.capacity() + post.body.capacity())
            .sum();
        let authors: usize = self
            .authors
            .iter()
            .map(|user| std::mem::size_of::<User>() + user.username.capacity())
            .sum();
        std::mem::size_of::<PostPage>() + posts + authors
    }
}

/// Pages of posts, from memory when they may be; cheap to clone.
#[derive(Clone)]
pub struct Pages {
    remembered: Arc<Cache<Which, Arc<PostPage>>>,
}

impl Pages {
    /// Pages whose copies `events` vouches for (and forgets).
    pub fn new(events: &Events) -> Self {
        let remembered = Arc::new(Cache::new(events, REMEMBERED));
        let forget = remembered.clone();
        events.observe(Arc::new(move |event| match event {
            Event::PostCreated { .. }
            | Event::PostUpdated { .. }
            | Event::PostDeleted { .. }
            | Event::UserChanged { .. }
            | Event::UserSessionsEnded {
                reason: EndReason::RoleChanged,
                ..
            } => forget.forget_all(),
            _ => {}
        }));
        Self { remembered }
    }

    /// A page of posts, newest first, of one author or of all, with their
    /// authors if `with_authors` (or if it is to be remembered).
    pub async fn page(
        &self,
        db: &Db,
        author: Option<i64>,
        request: PageRequest,
        with_authors: bool,
    ) -> Result<Arc<PostPage>, DbError> {
        let which = Which {
            author,
            after: request.after,
            first: request.first,
        };
        if let Some(page) = self.remembered.get(&which) {
            return Ok(page);
        }
        let ticket = self.remembered.ticket();
        let page = Post::page(db, author, request).await?;
        let authors = if with_authors || self.remembered.enabled() {
            let mut ids: Vec<i64> = page.items.iter().map(|post| post.author_id).collect();
            ids.sort_unstable();
            ids.dedup();
            User::find_many(db, &ids).await?
        } else {
            Vec::new()
        };
        let page = Arc::new(PostPage { page, authors });
        self.remembered.put(ticket, which, 0, page.clone());
        Ok(page)
    }
}
