//! The schema's object and input types; resolvers stay thin and call the
//! domain modules.

use std::collections::HashMap;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use time::OffsetDateTime;

use super::RequestContext;
use super::error::ApiError;
use super::loaders::UserLoader;
use crate::accounts::tokens::ApiToken;
use crate::accounts::{self, User};
use crate::pages::{self, CursorKind, Page, PageRequest};
use crate::posts::{Post, PostEdit};
use crate::sessions::SessionInfo;
use crate::validate;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "Role")]
pub enum RoleValue {
    User,
    Admin,
}

impl From<RoleValue> for accounts::Role {
    fn from(role: RoleValue) -> Self {
        match role {
            RoleValue::User => Self::User,
            RoleValue::Admin => Self::Admin,
        }
    }
}

impl From<accounts::Role> for RoleValue {
    fn from(role: accounts::Role) -> Self {
        match role {
            accounts::Role::User => Self::User,
            accounts::Role::Admin => Self::Admin,
        }
    }
}

/// A registered user.
pub struct UserObject(pub User);

#[Object(name = "User")]
impl UserObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn username(&self) -> &str {
        &self.0.username
    }

    async fn role(&self) -> RoleValue {
        self.0.role.into()
    }

    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at.assume_utc()
    }

    /// This user's posts, newest first.
    #[graphql(complexity = "page_complexity(first.unwrap_or(DEFAULT_PAGE_SIZE), child_complexity)")]
    async fn posts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<PostConnection, ApiError> {
        post_page(
            ctx,
            Some(self.0.id),
            first.unwrap_or(DEFAULT_PAGE_SIZE),
            after,
        )
        .await
    }
}

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

    // Batched across the whole page (and concurrent requests) by the UserLoader.
    async fn author(&self, ctx: &Context<'_>) -> Result<UserObject, ApiError> {
        if let Some(author) = &self.1 {
            return Ok(UserObject(author.clone()));
        }
        let loader = ctx.data_unchecked::<DataLoader<UserLoader>>();
        match loader.load_one(self.0.author_id).await {
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

/// Where a page sits in the whole list.
#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

/// What a post's body weighs: a page of 100 bodies costs over half the
/// complexity limit, so no request asks for two (16 aliased pages of 50,000
/// characters would be a 320 MB answer).
pub const BODY_COMPLEXITY: usize = 30;

/// The page size when `first` is omitted or null.
pub(super) const DEFAULT_PAGE_SIZE: i32 = 20;

/// The complexity of a page: its size times what each item asks for, so a
/// query's cost bounds the rows it can make the server read.
pub(super) fn page_complexity(first: i32, child_complexity: usize) -> usize {
    (first.clamp(1, 100) as usize).saturating_mul(child_complexity.max(1))
}

/// The page a `first`/`after` pair asks for, checked: a cursor of another
/// kind (or none of ours) is `BAD_USER_INPUT` on `after`.
fn page_request(
    kind: CursorKind,
    first: i32,
    after: Option<String>,
) -> Result<PageRequest, ApiError> {
    let first = validate::first(first)?;
    let after = match after {
        None => None,
        Some(cursor) => {
            Some(
                pages::decode_cursor(kind, &cursor).ok_or_else(|| validate::Invalid {
                    field: "after",
                    message: "after is not a cursor this server issued".into(),
                })?,
            )
        }
    };
    Ok(PageRequest { first, after })
}

impl PageInfo {
    /// Where `page` sits, with the cursors of its first and last items.
    fn of<T>(page: &Page<T>, cursors: &[String]) -> Self {
        Self {
            has_next_page: page.has_next_page,
            has_previous_page: page.has_previous_page,
            start_cursor: cursors.first().cloned(),
            end_cursor: cursors.last().cloned(),
        }
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
    let mut page = Post::page(&ctx.services().db, author_id, request).await?;
    // The authors of the whole page in one batch, asked for before any post
    // resolves: left to each `Post.author`, the batch would depend on how
    // many posts resolved within the loader's delay.
    let wants_authors = ctx
        .look_ahead()
        .field("edges")
        .field("node")
        .field("author")
        .exists();
    let authors = if wants_authors {
        let ids: Vec<i64> = page.items.iter().map(|post| post.author_id).collect();
        let loader = ctx.data_unchecked::<DataLoader<UserLoader>>();
        loader.load_many(ids).await.map_err(ApiError::internal)?
    } else {
        HashMap::new()
    };
    let cursors: Vec<String> = page
        .items
        .iter()
        .map(|post| pages::encode_cursor(CursorKind::Post, post.id))
        .collect();
    let page_info = PageInfo::of(&page, &cursors);
    let edges = std::mem::take(&mut page.items)
        .into_iter()
        .zip(cursors)
        .map(|(post, cursor)| {
            let author = authors.get(&post.author_id).cloned();
            PostEdge {
                cursor,
                node: PostObject(post, author),
            }
        })
        .collect();
    Ok(PostConnection { edges, page_info })
}

/// A page of users, oldest account first.
#[derive(SimpleObject)]
pub struct UserConnection {
    pub edges: Vec<UserEdge>,
    pub page_info: PageInfo,
}

/// A user and its cursor.
#[derive(SimpleObject)]
pub struct UserEdge {
    pub cursor: String,
    pub node: UserObject,
}

/// Reads a page of users for `users`.
pub(super) async fn user_page(
    ctx: &Context<'_>,
    first: i32,
    after: Option<String>,
) -> Result<UserConnection, ApiError> {
    let request = page_request(CursorKind::User, first, after)?;
    let mut page = User::page(&ctx.services().db, request).await?;
    let cursors: Vec<String> = page
        .items
        .iter()
        .map(|user| pages::encode_cursor(CursorKind::User, user.id))
        .collect();
    let page_info = PageInfo::of(&page, &cursors);
    let edges = std::mem::take(&mut page.items)
        .into_iter()
        .zip(cursors)
        .map(|(user, cursor)| UserEdge {
            cursor,
            node: UserObject(user),
        })
        .collect();
    Ok(UserConnection { edges, page_info })
}

/// `register`'s input.
#[derive(InputObject)]
pub struct RegisterInput {
    pub username: String,
    #[graphql(secret)]
    pub password: String,
}

/// `login`'s input.
#[derive(InputObject)]
pub struct LoginInput {
    pub username: String,
    #[graphql(secret)]
    pub password: String,
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

/// One of the caller's API tokens; never the token itself.
pub struct ApiTokenObject(pub ApiToken);

#[Object(name = "ApiToken")]
impl ApiTokenObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at.assume_utc()
    }

    /// Lags the last use by at most a minute; null until first used.
    async fn last_used_at(&self) -> Option<OffsetDateTime> {
        self.0.last_used_at.map(|at| at.assume_utc())
    }
}

/// A token just created: `token` is shown this once, and stored only hashed.
#[derive(SimpleObject)]
#[graphql(name = "NewApiToken")]
pub struct NewApiTokenObject {
    pub token: String,
    pub api_token: ApiTokenObject,
}

/// One of the caller's live sessions (a device signed in).
pub struct SessionObject(pub SessionInfo);

#[Object(name = "Session")]
impl SessionObject {
    /// A handle for revoking; never the cookie value, and no way to recover it.
    async fn id(&self) -> ID {
        ID(self.0.handle.clone())
    }

    /// The session making this request.
    async fn current(&self) -> bool {
        self.0.current
    }

    /// When it signed in.
    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at
    }

    /// Lags the last use by at most a minute; never before `createdAt`.
    async fn last_seen_at(&self) -> OffsetDateTime {
        self.0.last_seen_at
    }

    /// As sent at sign-in, at most 256 characters.
    async fn user_agent(&self) -> Option<&str> {
        self.0.user_agent.as_deref()
    }

    /// The client address at sign-in (after trusted proxies).
    async fn ip_address(&self) -> Option<&str> {
        self.0.ip_address.as_deref()
    }
}

/// `changePassword`'s input.
#[derive(InputObject)]
pub struct ChangePasswordInput {
    #[graphql(secret)]
    pub current_password: String,
    #[graphql(secret)]
    pub new_password: String,
}
