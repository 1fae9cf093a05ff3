//! Trusted documents (an operation safelist): with `BLOGQL_TRUSTED_DOCUMENTS`
//! set, only the operations of a manifest written by client tooling run.
//!
//! The manifest is read once at start-up, in either format tooling writes:
//! graphql-codegen's `persisted-documents.json` (an object from the
//! lowercase hex SHA-256 of each document to its text) or Apollo's
//! persisted query manifest (`{"format": "apollo-persisted-query-manifest",
//! "version": 1, "operations": [{id, name, type, body}]}`, whose ids are
//! the tool's choice). Every document is validated against the schema
//! then, by the rules requests meet: a manifest written for another schema
//! stops the deploy instead of failing requests.
//!
//! [`TrustedDocuments::resolve`] runs once per operation, before anything
//! parses its text: a request names a document by `documentId`
//! (`sha256:<hex>` or the bare hex) or by
//! `extensions.persistedQuery.sha256Hash`, or sends the exact text of a
//! listed one; anything else is refused. It knows nothing of HTTP, so a
//! WebSocket `subscribe` can be resolved the same way. Automatic persisted
//! queries never add to the list: with a manifest, the pipeline asks only
//! this module.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::graphql::error::ErrorCode;
use crate::graphql::validator::Validator;
use crate::persisted::{hash_of, is_hash, named_id};

/// The `format` of Apollo's persisted query manifest.
const APOLLO_FORMAT: &str = "apollo-persisted-query-manifest";
/// The prefix a `documentId` may give its hash.
const SHA256_PREFIX: &str = "sha256:";

/// The documents a manifest lists: the only operations that run.
#[derive(Debug)]
pub struct TrustedDocuments {
    /// Each document by its id (hashes in lowercase).
    by_id: HashMap<String, Arc<str>>,
    /// Every listed text, for requests that send the text itself.
    texts: HashSet<Arc<str>>,
}

/// Why a manifest cannot be used; its `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "{path} is not a trusted-documents manifest (graphql-codegen's persisted-documents.json or Apollo's persisted query manifest): {reason}"
    )]
    NotAManifest { path: String, reason: String },
    #[error("document {id}: {reason}")]
    Document { id: String, reason: String },
}

/// Why a request was refused; nothing of it runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It names an id the manifest does not list.
    #[error("the document id is not one of this server's trusted documents")]
    NotInList,
    /// Its text is not a listed document.
    #[error("only trusted documents run here: send a listed document's exact text, or its id")]
    NotInSafelist,
    /// It is malformed (the message says how).
    #[error("{0}")]
    Malformed(&'static str),
}

impl Refusal {
    /// The `extensions.code` a client gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotInList => ErrorCode::PersistedQueryNotInList,
            Self::NotInSafelist => ErrorCode::QueryNotInSafelist,
            Self::Malformed(_) => ErrorCode::BadRequest,
        }
    }
}

/// Apollo's manifest (`name` and `type` are not needed here).
#[derive(Deserialize)]
struct ApolloManifest {
    version: u64,
    operations: Vec<ApolloOperation>,
}

#[derive(Deserialize)]
struct ApolloOperation {
    id: String,
    body: String,
}

impl TrustedDocuments {
    /// Reads the manifest at `path` and checks every document with
    /// `validator`; the first problem found, naming the document's id.
    pub async fn load(path: &Path, validator: &Validator) -> Result<Self, ManifestError> {
        let shown = path.display().to_string();
        let text =
            tokio::fs::read_to_string(path)
                .await
                .map_err(|err| ManifestError::Unreadable {
                    path: shown.clone(),
                    reason: err.to_string(),
                })?;
        let documents = parse(&text).map_err(|reason| ManifestError::NotAManifest {
            path: shown,
            reason,
        })?;
        let mut trusted = Self {
            by_id: HashMap::with_capacity(documents.len()),
            texts: HashSet::with_capacity(documents.len()),
        };
        for (id, body) in documents {
            let body: Arc<str> = match trusted.texts.get(body.as_str()) {
                Some(known) => known.clone(),
                None => {
                    validator
                        .check(&body)
                        .await
                        .map_err(|reason| ManifestError::Document {
                            id: id.clone(),
                            reason: one_line(&reason),
                        })?;
                    let body: Arc<str> = body.into();
                    trusted.texts.insert(body.clone());
                    body
                }
            };
            if let Some(listed) = trusted.by_id.get(&id)
                && *listed != body
            {
                return Err(ManifestError::Document {
                    id,
                    reason: "listed twice, with different documents".into(),
                });
            }
            trusted.by_id.insert(id, body);
        }
        Ok(trusted)
    }

    /// How many documents are listed.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether none is (then nothing runs).
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Puts the listed document `request` names into its text, or refuses
    /// it. `document_id` is the request's `documentId`, if it sent one;
    /// `extensions.persistedQuery.sha256Hash` is read from `request`. A
    /// request that names a document and also sends a text must send that
    /// document's text.
    pub fn resolve(
        &self,
        request: &mut async_graphql::Request,
        document_id: Option<&str>,
    ) -> Result<(), Refusal> {
        let hash = named_id(request).map_err(Refusal::Malformed)?;
        let id = match (document_id.map(key), hash.map(key)) {
            (Some(id), Some(hash)) if id != hash => {
                return Err(Refusal::Malformed(
                    "documentId and extensions.persistedQuery name different documents",
                ));
            }
            (Some(id), _) | (None, Some(id)) => id,
            (None, None) => {
                return if self.texts.contains(request.query.as_str()) {
                    Ok(())
                } else {
                    Err(Refusal::NotInSafelist)
                };
            }
        };
        let document = self.by_id.get(id.as_ref()).ok_or(Refusal::NotInList)?;
        if request.query.is_empty() {
            request.query = document.to_string();
        } else if request.query != **document {
            return Err(Refusal::Malformed(
                "the query is not the document its id names",
            ));
        }
        Ok(())
    }
}

/// The key a document is listed under for the id a request or a manifest
/// gives: without a `sha256:` prefix, a hash in lowercase.
fn key(id: &str) -> Cow<'_, str> {
    let id = id.strip_prefix(SHA256_PREFIX).unwrap_or(id);
    if is_hash(id) && id.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(id.to_ascii_lowercase())
    } else {
        Cow::Borrowed(id)
    }
}

/// The (id, document) pairs of a manifest in either format; what makes it
/// neither, otherwise.
fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let manifest: serde_json::Value =
        serde_json::from_str(text).map_err(|err| format!("not JSON: {err}"))?;
    let serde_json::Value::Object(fields) = manifest else {
        return Err("not a JSON object".into());
    };
    match fields.get("format") {
        Some(serde_json::Value::String(format)) if format == APOLLO_FORMAT => {
            apollo(serde_json::Value::Object(fields))
        }
        Some(format) => Err(format!("its format {format} is not {APOLLO_FORMAT:?}")),
        None => codegen(fields),
    }
}

/// Apollo's manifest: version 1, ids as the tool chose them.
fn apollo(manifest: serde_json::Value) -> Result<Vec<(String, String)>, String> {
    let manifest: ApolloManifest =
        serde_json::from_value(manifest).map_err(|err| format!("{APOLLO_FORMAT}: {err}"))?;
    if manifest.version != 1 {
        return Err(format!(
            "{APOLLO_FORMAT} version {} (only version 1 is known)",
            manifest.version
        ));
    }
    manifest
        .operations
        .into_iter()
        .map(|operation| match key(&operation.id) {
            id if id.is_empty() => Err("an operation has an empty id".to_owned()),
            id => Ok((id.into_owned(), operation.body)),
        })
        .collect()
}

/// graphql-codegen's map: each key the SHA-256 of its document (bare, or
/// `sha256:`-prefixed as the client preset writes it).
fn codegen(
    fields: serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<(String, String)>, String> {
    fields
        .into_iter()
        .map(|(id, document)| {
            let serde_json::Value::String(document) = document else {
                return Err(format!("the value of {id:?} is not a document's text"));
            };
            // The client preset (6.x) writes its keys as `sha256:<hex>`.
            let hex = id.strip_prefix(SHA256_PREFIX).unwrap_or(&id);
            if !is_hash(hex) {
                return Err(format!(
                    "the key {id:?} is not a SHA-256 hex (with graphql-codegen, set hashAlgorithm: 'sha256')"
                ));
            }
            let id = hex.to_ascii_lowercase();
            if hash_of(&document) != id {
                return Err(format!(
                    "the key {id} is not the SHA-256 of its document (that is {})",
                    hash_of(&document)
                ));
            }
            Ok((id, document))
        })
        .collect()
}

/// `text` on one line: the start-up refusal is one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "query Me { me { id } }";

    fn listed(documents: &[&str]) -> TrustedDocuments {
        let texts: HashSet<Arc<str>> = documents.iter().map(|text| Arc::from(*text)).collect();
        TrustedDocuments {
            by_id: texts
                .iter()
                .map(|text| (hash_of(text), text.clone()))
                .collect(),
            texts,
        }
    }

    fn request(query: &str, extensions: serde_json::Value) -> async_graphql::Request {
        let mut request = async_graphql::Request::new(query);
        request.extensions = serde_json::from_value(extensions).unwrap();
        request
    }

    #[test]
    fn a_request_names_a_document_every_way_the_contract_gives() {
        let trusted = listed(&[ME]);
        let hash = hash_of(ME);
        for id in [
            hash.clone(),
            format!("sha256:{hash}"),
            hash.to_ascii_uppercase(),
        ] {
            let mut by_id = request("", serde_json::json!({}));
            trusted.resolve(&mut by_id, Some(&id)).unwrap();
            assert_eq!(by_id.query, ME);
        }
        let mut by_hash = request(
            "",
            serde_json::json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } }),
        );
        trusted.resolve(&mut by_hash, None).unwrap();
        assert_eq!(by_hash.query, ME);
        let mut by_text = request(ME, serde_json::json!({}));
        trusted.resolve(&mut by_text, None).unwrap();
        let mut both = request(ME, serde_json::json!({}));
        trusted.resolve(&mut both, Some(&hash)).unwrap();
    }

    #[test]
    fn anything_else_is_refused_with_its_code() {
        let trusted = listed(&[ME]);
        let other = hash_of("{ me { id } }");
        let refused = |query: &str, id: Option<&str>, extensions| {
            trusted
                .resolve(&mut request(query, extensions), id)
                .unwrap_err()
                .code()
        };
        let none = serde_json::json!({});
        assert_eq!(
            refused("", Some(&other), none.clone()),
            ErrorCode::PersistedQueryNotInList
        );
        let hashed = serde_json::json!({ "persistedQuery": { "version": 1, "sha256Hash": other } });
        assert_eq!(
            refused("", None, hashed.clone()),
            ErrorCode::PersistedQueryNotInList
        );
        assert_eq!(
            refused("{ me { id } }", None, none.clone()),
            ErrorCode::QueryNotInSafelist
        );
        assert_eq!(
            refused("", None, none.clone()),
            ErrorCode::QueryNotInSafelist
        );
        assert_eq!(
            refused("{ me { id } }", Some(&hash_of(ME)), none),
            ErrorCode::BadRequest,
            "a text that is not the named document"
        );
        assert_eq!(
            refused("", Some(&hash_of(ME)), hashed),
            ErrorCode::BadRequest,
            "two ids that disagree"
        );
    }

    #[test]
    fn both_formats_parse_and_a_wrong_key_is_named() {
        let codegen = serde_json::json!({ hash_of(ME): ME }).to_string();
        assert_eq!(parse(&codegen).unwrap(), vec![(hash_of(ME), ME.to_owned())]);
        // As the client preset 6.x writes it.
        let prefixed = serde_json::json!({ format!("sha256:{}", hash_of(ME)): ME }).to_string();
        assert_eq!(
            parse(&prefixed).unwrap(),
            vec![(hash_of(ME), ME.to_owned())]
        );
        let apollo = serde_json::json!({
            "format": APOLLO_FORMAT,
            "version": 1,
            "operations": [{ "id": "me-1", "name": "Me", "type": "query", "body": ME }],
        })
        .to_string();
        assert_eq!(parse(&apollo).unwrap(), vec![("me-1".into(), ME.into())]);
        let wrong = serde_json::json!({ hash_of("{ x }"): ME }).to_string();
        assert!(parse(&wrong).unwrap_err().contains(&hash_of("{ x }")));
        let sha1 = serde_json::json!({ "a".repeat(40): ME }).to_string();
        assert!(parse(&sha1).unwrap_err().contains("sha256"));
        for bad in ["[]", "{", r#"{"format": "other", "operations": []}"#] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
