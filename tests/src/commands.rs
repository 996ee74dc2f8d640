//! Commands of the posts domain (the blog post's `updatePost` story): writing a post, updating any
//! of its attributes with change detection, and pinning it.

use es_core::{Command, NewEvent, Rejection, changed};
use validator::Validate;

use crate::reactors::{
    DescriptionChanged, Pinned, Post, PostWritten, Published, TitleChanged, Unpublished,
};

/// Writes a new post.
#[derive(Validate, Debug, Clone)]
pub struct WritePost {
    /// The new post's id.
    pub id: i64,
    /// Its title.
    #[validate(length(min = 1, max = 100, message = "must be 1 to 100 characters"))]
    pub title: String,
}

impl Command for WritePost {
    type Aggregate = Post;

    fn aggregate_id(&self) -> i64 {
        self.id
    }

    fn decide(&self, current: Option<&Post>) -> Result<Vec<NewEvent<Post>>, Rejection> {
        if current.is_some() {
            return Err(Rejection::AlreadyExists);
        }
        Ok(vec![
            PostWritten {
                title: self.title.clone(),
            }
            .into(),
        ])
    }
}

/// Updates any of a post's attributes: an event for each one that changes, none for the others.
#[derive(Validate, Debug, Clone, Default)]
pub struct UpdatePost {
    /// The post.
    pub id: i64,
    /// A new title.
    #[validate(length(min = 1, max = 100, message = "must be 1 to 100 characters"))]
    pub title: Option<String>,
    /// A new description.
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    pub description: Option<String>,
    /// Whether the post is published.
    pub published: Option<bool>,
}

impl Command for UpdatePost {
    type Aggregate = Post;

    fn aggregate_id(&self) -> i64 {
        self.id
    }

    fn decide(&self, current: Option<&Post>) -> Result<Vec<NewEvent<Post>>, Rejection> {
        let post = current.ok_or(Rejection::NotFound)?;
        let mut events = Vec::new();
        if let Some(title) = changed(&self.title, &post.title) {
            events.push(
                TitleChanged {
                    title: title.clone(),
                }
                .into(),
            );
        }
        if let Some(description) = changed(&self.description, &post.description) {
            events.push(
                DescriptionChanged {
                    description: description.clone(),
                }
                .into(),
            );
        }
        match changed(&self.published, &post.published) {
            Some(true) => events.push(Published {}.into()),
            Some(false) if post.pinned => {
                return Err(Rejection::not_allowed("a pinned post stays published"));
            }
            Some(false) => events.push(Unpublished {}.into()),
            None => {}
        }
        Ok(events)
    }
}

/// Pins a published post (its trigger unpins the previously pinned one).
#[derive(Validate, Debug, Clone)]
pub struct PinPost {
    /// The post.
    pub id: i64,
}

impl Command for PinPost {
    type Aggregate = Post;

    fn aggregate_id(&self) -> i64 {
        self.id
    }

    fn decide(&self, current: Option<&Post>) -> Result<Vec<NewEvent<Post>>, Rejection> {
        let post = current.ok_or(Rejection::NotFound)?;
        if !post.published {
            return Err(Rejection::not_allowed(
                "only a published post can be pinned",
            ));
        }
        if post.pinned {
            return Ok(Vec::new());
        }
        Ok(vec![Pinned {}.into()])
    }
}
