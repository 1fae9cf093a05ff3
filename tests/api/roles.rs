//! Roles: what admins may do that users may not, and what a role change
//! does to the sessions of the user it changes.

use serde_json::{Value, json};

use crate::support::{PASSWORD, TestApp, assert_no_errors, error_code};

const USERS: &str = "query($first: Int, $after: String) {
    users(first: $first, after: $after) {
        edges { cursor node { username role } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
}";
const SET_ROLE: &str =
    "mutation($id: ID!, $role: Role!) { setUserRole(userId: $id, role: $role) { username role } }";

fn usernames(body: &Value) -> Vec<&str> {
    assert_no_errors(body);
    body["data"]["users"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"]["username"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_list_users_oldest_first_a_page_at_a_time() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root").await;
    for name in ["alice", "bob", "carol"] {
        app.browser().register(name).await;
    }
    let anonymous = app.browser();
    let body = anonymous.graphql(USERS, json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    let alice = app.browser();
    assert_no_errors(&alice.login("alice", PASSWORD).await);
    let body = alice.graphql(USERS, json!({})).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    assert_eq!(body["data"], Value::Null, "nothing listed");

    let all = admin.graphql(USERS, json!({})).await;
    assert_eq!(usernames(&all), ["root", "alice", "bob", "carol"]);
    assert_eq!(all["data"]["users"]["edges"][0]["node"]["role"], "ADMIN");
    let first = admin.graphql(USERS, json!({ "first": 2 })).await;
    assert_eq!(usernames(&first), ["root", "alice"]);
    let info = &first["data"]["users"]["pageInfo"];
    assert_eq!(
        (info["hasNextPage"].clone(), info["hasPreviousPage"].clone()),
        (json!(true), json!(false))
    );
    let next = admin
        .graphql(USERS, json!({ "first": 2, "after": info["endCursor"] }))
        .await;
    assert_eq!(usernames(&next), ["bob", "carol"]);
    let info = &next["data"]["users"]["pageInfo"];
    assert_eq!(
        (info["hasNextPage"].clone(), info["hasPreviousPage"].clone()),
        (json!(false), json!(true))
    );

    // A post's cursor is no user cursor; page sizes follow the rule.
    let post = admin.create_post("p", "b").await;
    let posts = admin
        .graphql("{ posts { pageInfo { endCursor } } }", json!({}))
        .await;
    let post_cursor = &posts["data"]["posts"]["pageInfo"]["endCursor"];
    assert!(!post.is_empty());
    for variables in [
        json!({ "after": post_cursor }),
        json!({ "first": 0 }),
        json!({ "first": 101 }),
    ] {
        let body = admin.graphql(USERS, variables.clone()).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{variables}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_ends_every_session_of_the_user_and_applies_at_the_next_sign_in() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root").await;
    let bob_laptop = app.browser();
    let bob_id = bob_laptop.register("bob").await;
    let bob_phone = app.browser();
    assert_no_errors(&bob_phone.login("bob", PASSWORD).await);
    let carol = app.browser();
    carol.register("carol").await;

    let body = admin
        .graphql(SET_ROLE, json!({ "id": bob_id, "role": "ADMIN" }))
        .await;
    assert_no_errors(&body);
    assert_eq!(
        body["data"]["setUserRole"],
        json!({ "username": "bob", "role": "ADMIN" })
    );
    assert_eq!(bob_laptop.me().await, None, "signed out everywhere");
    assert_eq!(bob_phone.me().await, None);
    assert_eq!(carol.me().await.as_deref(), Some("carol"), "nobody else");
    assert!(admin.me().await.is_some(), "nor the admin");

    let body = bob_phone.login("bob", PASSWORD).await;
    assert_eq!(body["data"]["login"]["role"], "ADMIN", "the new role");
    assert_no_errors(&bob_phone.graphql(USERS, json!({})).await);

    let body = admin
        .graphql(SET_ROLE, json!({ "id": bob_id, "role": "USER" }))
        .await;
    assert_eq!(body["data"]["setUserRole"]["role"], "USER");
    assert_eq!(bob_phone.me().await, None, "demoted: signed out");
    assert_no_errors(&bob_phone.login("bob", PASSWORD).await);
    assert_eq!(
        error_code(&bob_phone.graphql(USERS, json!({})).await),
        "FORBIDDEN"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_a_user_already_has_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root").await;
    let bob = app.browser();
    let bob_id = bob.register("bob").await;
    let body = admin
        .graphql(SET_ROLE, json!({ "id": bob_id, "role": "USER" }))
        .await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["setUserRole"]["role"], "USER");
    assert_eq!(
        bob.me_and_role().await,
        Some(("bob".into(), "USER".into())),
        "still signed in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_set_roles_and_an_unknown_user_is_bad_input() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root").await;
    let bob = app.browser();
    let bob_id = bob.register("bob").await;
    let body = bob
        .graphql(SET_ROLE, json!({ "id": bob_id, "role": "ADMIN" }))
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    let body = app
        .browser()
        .graphql(SET_ROLE, json!({ "id": bob_id, "role": "ADMIN" }))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert_eq!(bob.me_and_role().await, Some(("bob".into(), "USER".into())));
    for id in ["999999", "not-an-id"] {
        let body = admin
            .graphql(SET_ROLE, json!({ "id": id, "role": "ADMIN" }))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "userId");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_powers_follow_the_database_not_a_sessions_copy_of_the_role() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root").await;
    let alice = app.browser();
    alice.register("alice").await;
    let post = alice.create_post("Alice's", "Her words").await;
    assert_no_errors(&admin.graphql(USERS, json!({})).await);
    // The role changes behind the sessions' back, as when a sign-in races
    // a role change: a session may still hold a copy saying ADMIN.
    app.sql_execute("UPDATE users SET role = 'USER' WHERE username = 'root'")
        .await;
    let forbidden = || async {
        let body = admin.graphql(USERS, json!({})).await;
        body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    };
    assert!(
        app.sees_sql_change(forbidden).await,
        "the role is the database's"
    );
    let body = admin
        .graphql(
            "mutation($id: ID!) { deletePost(id: $id) }",
            json!({ "id": post }),
        )
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    let bob = app.browser();
    let bob_id = bob.register("bob").await;
    let body = admin
        .graphql(SET_ROLE, json!({ "id": bob_id, "role": "ADMIN" }))
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_sets_roles_not_even_an_admins() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root").await;
    let ops = app.token_client(&admin.create_token("ops").await);
    let bob = app.browser();
    let bob_id = bob.register("bob").await;
    let bobs_script = app.token_client(&bob.create_token("bob's").await);
    let body = bobs_script
        .graphql(SET_ROLE, json!({ "id": bob_id, "role": "ADMIN" }))
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    // A leaked admin token can neither promote an attacker nor demote its
    // owner (and end the owner's browser sessions).
    let root_id = admin.graphql("{ me { id } }", json!({})).await["data"]["me"]["id"].clone();
    for (id, role) in [(Value::from(bob_id.clone()), "ADMIN"), (root_id, "USER")] {
        let body = ops
            .graphql(SET_ROLE, json!({ "id": id, "role": role }))
            .await;
        assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    }
    assert!(admin.me().await.is_some(), "the owner stays signed in");
    let roles = app
        .sql_strings("SELECT role AS s FROM users ORDER BY id")
        .await;
    assert_eq!(roles, ["ADMIN", "USER"], "nothing changed");
    // An id is read as a number wherever it is spelled so ("01" is user 1).
    for id in [bob_id.clone(), format!("0{bob_id}")] {
        let body = admin
            .graphql(SET_ROLE, json!({ "id": id, "role": "ADMIN" }))
            .await;
        assert_no_errors(&body);
        assert_eq!(body["data"]["setUserRole"]["role"], "ADMIN");
    }
    assert_eq!(bob.me().await, None, "signed out by the change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_who_demotes_themself_is_signed_out_by_the_answer() {
    let app = TestApp::spawn().await;
    let _other = app.admin("other").await;
    let admin = app.admin("root").await;
    let me = admin.graphql("{ me { id } }", json!({})).await;
    let id = me["data"]["me"]["id"].clone();
    let response = admin
        .send(SET_ROLE, json!({ "id": id, "role": "USER" }))
        .await;
    let cookie = crate::support::set_cookie(response.headers()).expect("the cookie is expired");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["setUserRole"]["role"], "USER");
    assert_eq!(admin.me().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_cannot_be_demoted_even_by_two_admins_at_once() {
    let app = TestApp::spawn().await;
    let root = app.admin("root").await;
    let root_id = root.graphql("{ me { id } }", json!({})).await["data"]["me"]["id"].clone();
    let body = root
        .graphql(SET_ROLE, json!({ "id": root_id, "role": "USER" }))
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    assert!(
        root.me().await.is_some(),
        "nothing changed, nobody signed out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_admins_demoting_each_other_at_once_one_stays_an_admin() {
    for _ in 0..3 {
        let app = TestApp::spawn().await;
        let (a, b) = (app.admin("alpha").await, app.admin("beta").await);
        let a_id = a.graphql("{ me { id } }", json!({})).await["data"]["me"]["id"].clone();
        let b_id = b.graphql("{ me { id } }", json!({})).await["data"]["me"]["id"].clone();
        let (by_a, by_b) = tokio::join!(
            a.graphql(SET_ROLE, json!({ "id": b_id, "role": "USER" })),
            b.graphql(SET_ROLE, json!({ "id": a_id, "role": "USER" })),
        );
        let admins = app
            .sql_strings("SELECT username AS s FROM users WHERE role = 'ADMIN'")
            .await;
        assert_eq!(admins.len(), 1, "{admins:?} after {by_a} and {by_b}");
        // The loser is refused: as the last admin's demotion (FORBIDDEN),
        // or, demoted first, as signed out (UNAUTHENTICATED).
        let refused = [&by_a, &by_b]
            .iter()
            .filter(|body| {
                let code = &body["errors"][0]["extensions"]["code"];
                *code == "FORBIDDEN" || *code == "UNAUTHENTICATED"
            })
            .count();
        assert_eq!(refused, 1, "{by_a} {by_b}");
        // The refused change ended nobody's session: the admin who stays
        // is still signed in, the one demoted is not.
        let (stays, demoted) = if admins == ["alpha"] {
            (&a, &b)
        } else {
            (&b, &a)
        };
        assert!(
            stays.me().await.is_some(),
            "{admins:?}: the admin was signed out"
        );
        assert_eq!(demoted.me().await, None);
    }
}
