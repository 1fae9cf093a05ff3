//! Trusted documents: with `BLOGQL_TRUSTED_DOCUMENTS`, a listed operation
//! runs by its id (`documentId`, `extensions.persistedQuery`) or its exact
//! text, over POST and GET, from either manifest format; anything else is
//! refused before it is parsed; a manifest that cannot be used stops the
//! program at start-up with one line.

use std::io::Write as _;

use serde_json::{Value, json};

use crate::support::{TestApp, assert_no_errors, blogql, error_code, sha256_hex};

/// As graphql-codegen prints documents: several lines, two-space indents.
const REGISTER: &str = "mutation Register($input: RegisterInput!) {
  register(input: $input) {
    id
    username
  }
}";
const CREATE_POST: &str = "mutation CreatePost($input: CreatePostInput!) {
  createPost(input: $input) {
    id
  }
}";
const NEWEST: &str = "query Newest($first: Int!) {
  posts(first: $first) {
    edges {
      node {
        title
        author {
          username
        }
      }
    }
  }
}";
/// Not in any manifest here.
const ME: &str = "query Me { me { username } }";

/// A manifest file of graphql-codegen's format listing `documents`.
fn codegen_manifest(documents: &[&str]) -> tempfile::NamedTempFile {
    let map: serde_json::Map<String, Value> = documents
        .iter()
        .map(|document| (sha256_hex(document), Value::from(*document)))
        .collect();
    manifest_file(&Value::Object(map).to_string())
}

/// A manifest file of Apollo's format listing `(id, body)` pairs.
fn apollo_manifest(operations: &[(&str, &str)]) -> tempfile::NamedTempFile {
    let operations: Vec<Value> = operations
        .iter()
        .map(|(id, body)| json!({ "id": id, "name": "Op", "type": "query", "body": body }))
        .collect();
    manifest_file(
        &json!({
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": operations,
        })
        .to_string(),
    )
}

fn manifest_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(text.as_bytes()).expect("write the manifest");
    file
}

fn path(file: &tempfile::NamedTempFile) -> &str {
    file.path().to_str().expect("a UTF-8 path")
}

/// A server that runs only `manifest`'s documents.
async fn spawn(manifest: &tempfile::NamedTempFile) -> TestApp {
    TestApp::spawn_with(&[("BLOGQL_TRUSTED_DOCUMENTS", path(manifest))]).await
}

/// POSTs `body` (JSON), accepting `accept`; the status and the body.
async fn post_accepting(app: &TestApp, accept: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(app.graphql_url())
        .header("accept", accept)
        .json(&body)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// POSTs `body` asking for `application/graphql-response+json`.
async fn post(app: &TestApp, body: Value) -> (u16, Value) {
    post_accepting(app, "application/graphql-response+json", body).await
}

/// GETs `/graphql` with `params` and the preflight header.
async fn get(app: &TestApp, params: &[(&str, String)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(app.graphql_url())
        .header("apollo-require-preflight", "true")
        .query(params)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

fn register_variables(username: &str) -> Value {
    json!({ "input": { "username": username, "password": crate::support::PASSWORD } })
}

/// The titles `body` (a `Newest` answer) lists, newest first.
fn titles(body: &Value) -> Vec<&str> {
    assert_no_errors(body);
    body["data"]["posts"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {body}"))
        .iter()
        .map(|edge| edge["node"]["title"].as_str().expect("a title"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_document_runs_by_its_id_its_hash_or_its_exact_text() {
    let manifest = codegen_manifest(&[REGISTER, CREATE_POST, NEWEST]);
    let app = spawn(&manifest).await;
    let browser = app.browser();
    // By `documentId` with the `sha256:` prefix, through a cookie session.
    let registered: Value = browser
        .post_json_text(
            json!({
                "documentId": format!("sha256:{}", sha256_hex(REGISTER)),
                "variables": register_variables("alice"),
            })
            .to_string(),
        )
        .await
        .json()
        .await
        .expect("JSON");
    assert_no_errors(&registered);
    assert_eq!(registered["data"]["register"]["username"], "alice");
    // By its exact text, as any client sends an operation.
    let created = browser
        .graphql(
            CREATE_POST,
            json!({ "input": { "title": "listed", "body": "only listed operations run" } }),
        )
        .await;
    assert_no_errors(&created);

    // By the bare hash as `documentId`, by `extensions.persistedQuery`.
    let variables = json!({ "first": 5 });
    let (status, body) = post(
        &app,
        json!({ "documentId": sha256_hex(NEWEST), "variables": variables }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(titles(&body), ["listed"]);
    let (status, body) = post(
        &app,
        json!({
            "variables": variables,
            "extensions": { "persistedQuery": { "version": 1, "sha256Hash": sha256_hex(NEWEST) } },
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(titles(&body), ["listed"]);
    // Over GET, by `documentId` in the query string.
    let (status, body) = get(
        &app,
        &[
            ("documentId", format!("sha256:{}", sha256_hex(NEWEST))),
            ("variables", variables.to_string()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(titles(&body), ["listed"]);
    assert_eq!(
        body["data"]["posts"]["edges"][0]["node"]["author"]["username"],
        "alice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_the_manifest_does_not_list_is_refused_and_nothing_runs() {
    let manifest = codegen_manifest(&[REGISTER]);
    let app = spawn(&manifest).await;
    let unlisted = sha256_hex(ME);
    for (accept, body) in [
        (
            "application/graphql-response+json",
            json!({ "documentId": format!("sha256:{unlisted}") }),
        ),
        // Over `application/json` too: the contract's 400 is not the
        // media type's.
        ("application/json", json!({ "documentId": unlisted })),
        (
            "application/json",
            json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": unlisted } } }),
        ),
        // An automatic persisted query's first request: still not listed.
        (
            "application/json",
            json!({
                "query": ME,
                "extensions": { "persistedQuery": { "version": 1, "sha256Hash": unlisted } },
            }),
        ),
    ] {
        let (status, answer) = post_accepting(&app, accept, body.clone()).await;
        assert_eq!(
            (status, error_code(&answer)),
            (400, "PERSISTED_QUERY_NOT_IN_LIST"),
            "{body}: {answer}"
        );
        assert!(answer.get("data").is_none(), "nothing ran: {answer}");
    }
    // Automatic persisted queries never add to the manifest.
    let (status, answer) = post(
        &app,
        json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": unlisted } } }),
    )
    .await;
    assert_eq!(
        (status, error_code(&answer)),
        (400, "PERSISTED_QUERY_NOT_IN_LIST")
    );
    let (status, answer) = get(&app, &[("documentId", unlisted)]).await;
    assert_eq!(
        (status, error_code(&answer)),
        (400, "PERSISTED_QUERY_NOT_IN_LIST"),
        "{answer}"
    );
    // A listed id with another text is no way around the list.
    let (status, answer) = post(
        &app,
        json!({
            "documentId": sha256_hex(REGISTER),
            "query": "mutation { logout }",
        }),
    )
    .await;
    assert_eq!(
        (status, error_code(&answer)),
        (400, "BAD_REQUEST"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_other_text_is_refused_before_it_is_parsed() {
    let manifest = codegen_manifest(&[REGISTER, NEWEST]);
    let app = spawn(&manifest).await;
    let unlisted_register = "mutation($input: RegisterInput!) { register(input: $input) { id } }";
    for (query, variables) in [
        (unlisted_register, register_variables("mallory")),
        // The listed text, spelled otherwise: not exactly a listed document.
        (&*NEWEST.replace("  ", " "), json!({ "first": 1 })),
        // Not even GraphQL: refused for not being listed, never parsed.
        ("{{{ this does not parse", json!({})),
        ("", json!({})),
    ] {
        let (status, body) = post(&app, json!({ "query": query, "variables": variables })).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "QUERY_NOT_IN_SAFELIST"),
            "{query}: {body}"
        );
    }
    let (status, body) = get(&app, &[("query", ME.to_owned())]).await;
    assert_eq!((status, error_code(&body)), (400, "QUERY_NOT_IN_SAFELIST"));
    let (status, body) = post_accepting(&app, "application/json", json!({ "query": ME })).await;
    assert_eq!((status, error_code(&body)), (400, "QUERY_NOT_IN_SAFELIST"));
    // The refused registration did not run: the name is still free.
    let (status, body) = post(
        &app,
        json!({ "query": REGISTER, "variables": register_variables("mallory") }),
    )
    .await;
    assert_eq!(status, 200);
    assert_no_errors(&body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apollos_manifest_names_documents_by_its_own_ids() {
    let manifest = apollo_manifest(&[("newest-posts", NEWEST), (&sha256_hex(ME), ME)]);
    let app = spawn(&manifest).await;
    let variables = json!({ "first": 1 });
    // Apollo Client's persisted-query link sends the manifest's id as the hash.
    let (status, body) = post(
        &app,
        json!({
            "variables": variables,
            "extensions": { "persistedQuery": { "version": 1, "sha256Hash": "newest-posts" } },
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(titles(&body), Vec::<&str>::new());
    let (status, body) = post(
        &app,
        json!({ "documentId": format!("sha256:{}", sha256_hex(ME)) }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_no_errors(&body);
    assert_eq!(body["data"]["me"], Value::Null);
    let (status, body) = post(&app, json!({ "query": ME })).await;
    assert_eq!(status, 200, "{body}");
    assert_no_errors(&body);
    let (status, body) = post(&app, json!({ "documentId": "oldest-posts" })).await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "PERSISTED_QUERY_NOT_IN_LIST")
    );
    let (status, body) = post(&app, json!({ "query": REGISTER })).await;
    assert_eq!((status, error_code(&body)), (400, "QUERY_NOT_IN_SAFELIST"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_get_and_csrf_rules_apply_to_the_document_an_id_names() {
    let manifest = codegen_manifest(&[REGISTER, NEWEST]);
    let app = spawn(&manifest).await;
    let (status, body) = get(
        &app,
        &[
            ("documentId", sha256_hex(REGISTER)),
            ("variables", register_variables("viaget").to_string()),
        ],
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (405, "METHOD_NOT_ALLOWED"),
        "{body}"
    );
    // A GET without the preflight header is a simple request: refused.
    let response = reqwest::Client::new()
        .get(app.graphql_url())
        .query(&[
            ("documentId", sha256_hex(NEWEST)),
            ("variables", json!({ "first": 1 }).to_string()),
        ])
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(error_code(&body), "BAD_REQUEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_a_document_id_changes_nothing() {
    let app = TestApp::spawn().await;
    let (status, body) = post(
        &app,
        json!({ "query": ME, "documentId": sha256_hex(REGISTER) }),
    )
    .await;
    assert_eq!(status, 200);
    assert_no_errors(&body);
}

#[test]
fn a_manifest_that_cannot_be_used_stops_start_up_with_one_line_naming_it() {
    let not_json = manifest_file("{ not json");
    let an_array = manifest_file("[]");
    let wrong_hash = manifest_file(&json!({ sha256_hex("{ me { id } }"): ME }).to_string());
    let sha1_keys = manifest_file(&json!({ "a".repeat(40): ME }).to_string());
    let unknown_field = codegen_manifest(&[ME, "query Old { oldField }"]);
    let no_parse = codegen_manifest(&["query Broken { me { id "]);
    let too_complex = codegen_manifest(&[
        "{ posts(first: 100) { edges { node { body author { posts(first: 100) { edges { node { body } } } } } } } }",
    ]);
    let apollo_invalid = apollo_manifest(&[("me", ME), ("old-one", "query Old { oldField }")]);
    let apollo_v2 = manifest_file(
        &json!({ "format": "apollo-persisted-query-manifest", "version": 2, "operations": [] })
            .to_string(),
    );
    let introspection = codegen_manifest(&["{ __schema { queryType { name } } }"]);
    let missing = "/nonexistent/persisted-documents.json".to_owned();
    let unknown_field_id = format!("document {}", sha256_hex("query Old { oldField }"));
    let no_parse_id = format!("document {}", sha256_hex("query Broken { me { id "));
    // (manifest, introspection, what the line says)
    let cases = [
        (&*missing, "true", "cannot read"),
        (path(&not_json), "true", "not JSON"),
        (path(&an_array), "true", "not a JSON object"),
        (
            path(&wrong_hash),
            "true",
            "is not the SHA-256 of its document",
        ),
        (path(&sha1_keys), "true", "sha256"),
        (path(&unknown_field), "true", &*unknown_field_id),
        (path(&no_parse), "true", &*no_parse_id),
        (path(&too_complex), "true", "too complex"),
        (path(&apollo_invalid), "true", "document old-one"),
        (path(&apollo_v2), "true", "version 2"),
        (path(&introspection), "false", "introspection"),
    ];
    for (manifest, introspection, expected) in cases {
        let env = [
            ("BLOGQL_TRUSTED_DOCUMENTS", manifest),
            ("BLOGQL_INTROSPECTION", introspection),
            ("BLOGQL_BIND", "127.0.0.1:0"),
        ];
        let output = blogql(&["serve"], &env);
        let stderr = String::from_utf8(output.stderr).expect("UTF-8");
        assert_eq!(output.status.code(), Some(2), "{manifest}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "one line for {manifest}: {stderr}"
        );
        assert!(
            stderr.starts_with("blogql: BLOGQL_TRUSTED_DOCUMENTS: "),
            "names the setting: {stderr}"
        );
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
    // An empty value is a mistake, not "off".
    let output = blogql(&["migrate"], &[("BLOGQL_TRUSTED_DOCUMENTS", " ")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("UTF-8");
    assert!(stderr.contains("BLOGQL_TRUSTED_DOCUMENTS"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_subscribes_by_id_and_no_other_text() {
    const NEW_POSTS: &str = "subscription NewPosts {
  postCreated {
    title
  }
}";
    let manifest = codegen_manifest(&[NEW_POSTS, REGISTER, CREATE_POST]);
    let path = manifest.path().to_str().unwrap();
    let app = TestApp::spawn_with(&[("BLOGQL_TRUSTED_DOCUMENTS", path)]).await;
    let mut socket = app.subscriber(&app.browser()).await;
    socket
        .send(json!({"type": "subscribe", "id": "free", "payload": {"query": "subscription { postCreated { id } }"}}))
        .await;
    let refused = socket.message().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "QUERY_NOT_IN_SAFELIST"
    );
    socket
        .send(json!({"type": "subscribe", "id": "unlisted", "payload": {"documentId": sha256_hex(ME)}}))
        .await;
    let refused = socket.message().await;
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_IN_LIST",
        "{refused}"
    );
    socket
        .send(json!({"type": "subscribe", "id": "listed", "payload": {"documentId": format!("sha256:{}", sha256_hex(NEW_POSTS))}}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let alice = app.browser();
    let registered = alice
        .send(
            REGISTER,
            json!({"input": {"username": "alice", "password": crate::support::PASSWORD}}),
        )
        .await;
    assert!(registered.status().is_success());
    let created = alice
        .send(
            CREATE_POST,
            json!({"input": {"title": "by id", "body": "b"}}),
        )
        .await;
    assert!(created.status().is_success());
    assert_eq!(
        socket.next_data("listed").await["postCreated"]["title"],
        "by id"
    );
}
