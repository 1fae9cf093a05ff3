//! Editing and deleting posts: who may, what is checked, and what readers
//! see afterwards (pages included).

use serde_json::{Value, json};

use crate::support::{TestApp, assert_no_errors, error_code, instant};

const UPDATE: &str = "mutation($id: ID!, $input: UpdatePostInput!) {
    updatePost(id: $id, input: $input) { id title body createdAt updatedAt author { username } }
}";
const DELETE: &str = "mutation($id: ID!) { deletePost(id: $id) }";
const POST: &str = "query($id: ID!) { post(id: $id) { title body updatedAt } }";

fn edit(id: &str, input: Value) -> Value {
    json!({ "id": id, "input": input })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_author_edits_a_post_and_it_says_when() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let id = alice.create_post("Helo", "First draft").await;
    let before = alice.graphql(POST, json!({ "id": id })).await;
    assert_eq!(before["data"]["post"]["updatedAt"], Value::Null);

    let body = alice
        .graphql(UPDATE, edit(&id, json!({ "title": "  Hello  " })))
        .await;
    assert_no_errors(&body);
    let post = &body["data"]["updatePost"];
    assert_eq!(post["title"], "Hello", "trimmed like createPost's");
    assert_eq!(post["body"], "First draft", "a field not given is kept");
    let updated = instant(&post["updatedAt"]);
    assert!(updated >= instant(&post["createdAt"]));

    let body = alice
        .graphql(UPDATE, edit(&id, json!({ "body": "Second draft" })))
        .await;
    assert_no_errors(&body);
    let read = alice.graphql(POST, json!({ "id": id })).await;
    assert_eq!(read["data"]["post"]["title"], "Hello");
    assert_eq!(read["data"]["post"]["body"], "Second draft");
    assert!(
        instant(&read["data"]["post"]["updatedAt"]) > updated,
        "each edit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_checked_like_a_new_post_and_needs_a_field() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let id = alice.create_post("Title", "Body").await;
    let long_title = "t".repeat(201);
    let long_body = "b".repeat(50_001);
    let cases = [
        (json!({}), "input"),
        (json!({ "title": null, "body": null }), "input"),
        (json!({ "title": "   " }), "title"),
        (json!({ "title": long_title }), "title"),
        (json!({ "title": "nul\u{0}" }), "title"),
        (json!({ "body": "" }), "body"),
        (json!({ "body": long_body }), "body"),
        (json!({ "title": "fine", "body": "nul\u{0}" }), "body"),
    ];
    for (input, field) in cases {
        let body = alice.graphql(UPDATE, edit(&id, input.clone())).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{input}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{input}");
    }
    let read = alice.graphql(POST, json!({ "id": id })).await;
    assert_eq!(
        read["data"]["post"],
        json!({ "title": "Title", "body": "Body", "updatedAt": null }),
        "no refused edit changed anything"
    );
    let emoji = alice
        .graphql(
            UPDATE,
            edit(
                &id,
                json!({ "title": "😀".repeat(200), "body": "😀".repeat(50_000) }),
            ),
        )
        .await;
    assert_no_errors(&emoji);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_does_not_exist_is_bad_input_to_edit_and_false_to_delete() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    for id in ["999999", "not-an-id"] {
        let body = alice
            .graphql(UPDATE, edit(id, json!({ "title": "x" })))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "id");
        let body = alice.graphql(DELETE, json!({ "id": id })).await;
        assert_no_errors(&body);
        assert_eq!(body["data"]["deletePost"], false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_author_or_an_admin_may_edit_or_delete_a_post() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let id = alice.create_post("Alice's", "Her words").await;

    let anonymous = app.browser();
    let body = anonymous
        .graphql(UPDATE, edit(&id, json!({ "title": "x" })))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    let body = anonymous.graphql(DELETE, json!({ "id": id })).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");

    let bob = app.browser();
    bob.register("bob").await;
    let body = bob
        .graphql(UPDATE, edit(&id, json!({ "title": "Bob's now" })))
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    let body = bob.graphql(DELETE, json!({ "id": id })).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    let read = bob.graphql(POST, json!({ "id": id })).await;
    assert_eq!(read["data"]["post"]["title"], "Alice's", "untouched");

    // A token carries its owner's rights, no more.
    let bobs_script = app.token_client(&bob.create_token("bob's").await);
    let body = bobs_script
        .graphql(UPDATE, edit(&id, json!({ "title": "x" })))
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    let body = bobs_script.graphql(DELETE, json!({ "id": id })).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");

    let admin = app.admin("root").await;
    let admins_script = app.token_client(&admin.create_token("moderation").await);
    let body = admins_script
        .graphql(
            UPDATE,
            edit(&id, json!({ "body": "Edited by a moderation script" })),
        )
        .await;
    assert_no_errors(&body);
    let body = admin
        .graphql(UPDATE, edit(&id, json!({ "title": "Moderated" })))
        .await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["updatePost"]["title"], "Moderated");
    assert_eq!(
        body["data"]["updatePost"]["author"]["username"], "alice",
        "an admin's edit keeps the author"
    );
    let body = admin.graphql(DELETE, json!({ "id": id })).await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["deletePost"], true);
}

/// The post ids of a `posts` page, and the cursor of the next page.
fn page_ids(body: &Value) -> (Vec<String>, Option<String>) {
    assert_no_errors(body);
    let connection = &body["data"]["posts"];
    let ids = connection["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"]["id"].as_str().unwrap().to_owned())
        .collect();
    let next = (connection["pageInfo"]["hasNextPage"] == true).then(|| {
        connection["pageInfo"]["endCursor"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    (ids, next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_post_is_gone_everywhere_and_older_cursors_still_work() {
    let app = TestApp::spawn().await;
    let alice = app.browser();
    alice.register("alice").await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(alice.create_post(&format!("post {n}"), "body").await);
    }
    ids.reverse(); // newest first, as pages are
    let page = "query($after: String) {
        posts(first: 2, after: $after) {
            edges { node { id } } pageInfo { hasNextPage endCursor }
        }
    }";
    let first = alice.graphql(page, json!({ "after": null })).await;
    let (seen, cursor) = page_ids(&first);
    assert_eq!(seen, ids[..2]);
    let cursor = cursor.expect("another page");

    // The post the cursor names goes, and so does the next one.
    for id in [&ids[1], &ids[2]] {
        let body = alice.graphql(DELETE, json!({ "id": id })).await;
        assert_eq!(body["data"]["deletePost"], true, "{body}");
    }
    let body = alice.graphql(DELETE, json!({ "id": ids[1] })).await;
    assert_eq!(body["data"]["deletePost"], false, "deleted once");

    let mut rest = Vec::new();
    let mut after = Some(cursor);
    while let Some(cursor) = after {
        let body = alice.graphql(page, json!({ "after": cursor })).await;
        let (seen, next) = page_ids(&body);
        rest.extend(seen);
        after = next;
    }
    assert_eq!(rest, ids[3..], "no error, no duplicate, no gap");

    let read = alice.graphql(POST, json!({ "id": ids[1] })).await;
    assert_eq!(read["data"]["post"], Value::Null);
    let mine = alice
        .graphql(
            "{ me { posts(first: 100) { edges { node { id } } } } }",
            json!({}),
        )
        .await;
    assert_no_errors(&mine);
    let mine: Vec<&str> = mine["data"]["me"]["posts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(mine, [&ids[0], &ids[3], &ids[4], &ids[5]]);
}
