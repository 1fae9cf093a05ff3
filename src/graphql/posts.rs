//! Posts in the schema: `Post`, `posts`, `post`, `createPost`,
//! `updatePost`, `deletePost`.

use std::collections::HashMap;

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use time::OffsetDateTime;

use super::accounts::UserObject;
use super::context::RequestContext;
use super::error::ApiError;
use super::guard::LoggedIn;
use super::pages::{DEFAULT_PAGE_SIZE, PageInfo, cursors, page_complexity, page_request};
use super::row_id;
use crate::accounts::User;
use crate::pages::CursorKind;
use crate::posts::{Post, PostEdit, PostError};
use crate::validate;

/// What a post's body weighs: a page of 100 bodies costs over half the
/// complexity limit, so no request asks for two (16 aliased pages of 50,000
/// characters would be a 320 MB answer).
pub const BODY_COMPLEXITY: usize = 30;

/// A blog post, with its author when the page it came in already loaded it.
pub struct PostObject(pub Post, pub Option<User>);

impl From<Post> for PostObject {
    fn from(post: Post) -> Self {
        Self(post, None)
    }
}

#[Object(name = "Post")]
impl PostObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn title(&self) -> &str {
        &self.0.title
    }

    #[graphql(complexity = "BODY_COMPLEXITY")]
    async fn body(&self) -> &str {
        &self.0.body
    }

    // Batched across the whole page (and concurrent requests) by the loader.
    async fn author(&self, ctx: &Context<'_>) -> Result<UserObject, ApiError> {
        if let Some(author) = &self.1 {
            return Ok(UserObject(author.clone()));
        }
        match ctx.users().load_one(self.0.author_id).await {
            Ok(Some(user)) => Ok(UserObject(user)),
            Ok(None) => Err(ApiError::internal(format!(
                "post {} has no author",
                self.0.id
            ))),
            Err(err) => Err(ApiError::internal(err)),
        }
    }

    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at.assume_utc()
    }

    /// Null until the post is first edited.
    async fn updated_at(&self) -> Option<OffsetDateTime> {
        self.0.updated_at.map(|at| at.assume_utc())
    }
}

/// A page of posts.
#[derive(SimpleObject)]
pub struct PostConnection {
    pub edges: Vec<PostEdge>,
    pub page_info: PageInfo,
}

/// A post and its cursor.
#[derive(SimpleObject)]
pub struct PostEdge {
    pub cursor: String,
    pub node: PostObject,
}

/// `createPost`'s input.
#[derive(InputObject)]
pub struct CreatePostInput {
    pub title: String,
    pub body: String,
}

/// `updatePost`'s input: the fields to replace.
#[derive(InputObject)]
pub struct UpdatePostInput {
    pub title: Option<String>,
    pub body: Option<String>,
}

impl UpdatePostInput {
    /// The edit, each field checked like `createPost`'s; at least one.
    pub fn edit(&self) -> Result<PostEdit<'_>, validate::Invalid> {
        if self.title.is_none() && self.body.is_none() {
            return Err(validate::Invalid {
                field: "input",
                message: "input must change the title, the body or both".into(),
            });
        }
        let title = self.title.as_deref().map(validate::title).transpose()?;
        if let Some(body) = &self.body {
            validate::body(body)?;
        }
        Ok(PostEdit {
            title,
            body: self.body.as_deref(),
        })
    }
}

/// Reads a page of posts (of one author, or of all) for `posts` fields.
pub(super) async fn post_page(
    ctx: &Context<'_>,
    author_id: Option<i64>,
    first: i32,
    after: Option<String>,
) -> Result<PostConnection, ApiError> {
    let request = page_request(CursorKind::Post, first, after)?;
    // The authors of the whole page in one query, read before any post
    // resolves: left to each `Post.author`, the batch would depend on how
    // many posts resolved within the loader's delay; and with every id
    // known, there is nothing to wait for.
    let wants_authors = ctx
        .look_ahead()
        .field("edges")
        .field("node")
        .field("author")
        .exists();
    let services = ctx.services();
    let remembered = services
        .pages
        .page(&services.db, author_id, request, wants_authors)
        .await?;
    let page = &remembered.page;
    let authors: HashMap<i64, &User> = remembered
        .authors
        .iter()
        .map(|user| (user.id, user))
        .collect();
    let cursors = cursors(CursorKind::Post, page, |post| post.id);
    let page_info = PageInfo::of(page, &cursors);
    let edges = page
        .items
        .iter()
        .zip(cursors)
        .map(|(post, cursor)| {
            let author = authors.get(&post.author_id).map(|user| (*user).clone());
            PostEdge {
                cursor,
                node: PostObject(post.clone(), author),
            }
        })
        .collect();
    Ok(PostConnection { edges, page_info })
}

/// Reads about posts.
#[derive(Default)]
pub struct PostQuery;

#[Object]
impl PostQuery {
    /// All posts, newest first.
    #[graphql(complexity = "page_complexity(first.unwrap_or(DEFAULT_PAGE_SIZE), child_complexity)")]
    async fn posts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<PostConnection, ApiError> {
        post_page(ctx, None, first.unwrap_or(DEFAULT_PAGE_SIZE), after).await
    }

    /// The post with this id; null when there is none.
    async fn post(&self, ctx: &Context<'_>, id: ID) -> Result<Option<PostObject>, ApiError> {
        let Some(id) = row_id(&id) else {
            return Ok(None);
        };
        Ok(Post::find(&ctx.services().db, id)
            .await?
            .map(PostObject::from))
    }
}

/// Writes to posts.
#[derive(Default)]
pub struct PostMutation;

#[Object]
impl PostMutation {
    /// Publishes a post by the signed-in user.
    #[graphql(guard = "LoggedIn")]
    async fn create_post(
        &self,
        ctx: &Context<'_>,
        input: CreatePostInput,
    ) -> Result<PostObject, ApiError> {
        let title = validate::title(&input.title)?;
        validate::body(&input.body)?;
        let author_id = ctx.signed_in().await?.user_id();
        let post = Post::create(
            &ctx.services().db,
            &ctx.services().events,
            author_id,
            title,
            &input.body,
        )
        .await?;
        Ok(PostObject::from(post))
    }

    /// Edits a post: its author's or, for an admin, any.
    #[graphql(guard = "LoggedIn")]
    async fn update_post(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdatePostInput,
    ) -> Result<PostObject, ApiError> {
        let edit = input.edit()?;
        let caller = ctx.signed_in().await?;
        let id = row_id(&id).ok_or(PostError::NotFound)?;
        let post = Post::update(
            &ctx.services().db,
            &ctx.services().events,
            &caller,
            id,
            edit,
        )
        .await?;
        Ok(PostObject::from(post))
    }

    /// Deletes a post: its author's or, for an admin, any; `false` when
    /// there is no such post.
    #[graphql(guard = "LoggedIn")]
    async fn delete_post(&self, ctx: &Context<'_>, id: ID) -> Result<bool, ApiError> {
        let caller = ctx.signed_in().await?;
        let Some(id) = row_id(&id) else {
            return Ok(false);
        };
        Ok(Post::delete(&ctx.services().db, &ctx.services().events, &caller, id).await?)
    }
}
