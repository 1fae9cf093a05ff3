//! Validating a document without running it, by the rules every request
//! meets: the bounds checked before parsing and after (`parsed`), then
//! async-graphql's validation with the schema's depth and complexity limits
//! and the server's introspection setting. The trusted-documents manifest
//! is checked with it at start-up, so that a manifest written for another
//! schema stops a deploy instead of failing requests.
//!
//! The check runs the real schema's own validation: a schema built like the
//! served one, with an extension that ends each request where execution
//! would begin (async-graphql offers no public way to validate alone).

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::parser::types::{
    BaseType, ExecutableDocument, OperationDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Response, Value, Variables};

use super::parsed::parse_bounded;
use super::{BlogSchema, builder, finish};

/// Checks documents against the schema the server serves.
pub struct Validator {
    schema: BlogSchema,
    introspection: bool,
}

impl Validator {
    /// A validator for the schema served with introspection on or off.
    pub fn new(introspection: bool) -> Self {
        Self {
            schema: finish(builder().extension(ValidateOnly), introspection),
            introspection,
        }
    }

    /// Why `text` would be refused before running, whatever its variables,
    /// if it would: every operation in it is checked.
    pub async fn check(&self, text: &str) -> Result<(), String> {
        let document = parse_bounded(text).map_err(|failure| failure.message())?;
        let operations: Vec<_> = document
            .operations
            .iter()
            .map(|(name, operation)| (name.map(Name::to_string), cheapest(&operation.node)))
            .collect();
        // A request would get `null`: never what a listed document is for.
        if !self.introspection
            && document
                .operations
                .iter()
                .any(|(_, operation)| introspects(&document, &operation.node.selection_set.node))
        {
            return Err("it asks for introspection (__schema or __type), which is off".into());
        }
        for (name, variables) in operations {
            let mut request = async_graphql::Request::new(text).variables(variables);
            if let Some(name) = name {
                request = request.operation_name(name);
            }
            request.set_parsed_query(document.clone());
            let response = self.schema.execute(request).await;
            if !response.errors.is_empty() {
                let messages: Vec<_> = response
                    .errors
                    .iter()
                    .map(|error| error.message.as_str())
                    .collect();
                return Err(messages.join("; "));
            }
        }
        Ok(())
    }
}

/// Variables that make `operation` as cheap as a request can make it: the
/// complexity of a page grows with `first`, the only argument a complexity
/// reads, so every `Int` variable is 1. Other variables are left out (no
/// rule reads their values before execution; should a complexity ever read
/// one, every document using it is refused, loudly, until this learns its
/// cheapest value), so that a document is refused only when no request
/// could run it.
fn cheapest(operation: &OperationDefinition) -> Variables {
    let mut variables = Variables::default();
    for definition in &operation.variable_definitions {
        let definition = &definition.node;
        if matches!(&definition.var_type.node.base, BaseType::Named(name) if name.as_str() == "Int")
        {
            variables.insert(definition.name.node.clone(), Value::from(1));
        }
    }
    variables
}

/// Whether a root selection set asks for `__schema` or `__type`. Runs
/// before validation, so a fragment cycle is cut short by depth.
fn introspects(document: &ExecutableDocument, set: &SelectionSet) -> bool {
    fn walk(document: &ExecutableDocument, set: &SelectionSet, nesting: usize) -> bool {
        nesting <= 64
            && set.items.iter().any(|item| match &item.node {
                Selection::Field(field) => {
                    matches!(field.node.name.node.as_str(), "__schema" | "__type")
                }
                Selection::InlineFragment(inline) => {
                    walk(document, &inline.node.selection_set.node, nesting + 1)
                }
                Selection::FragmentSpread(spread) => document
                    .fragments
                    .get(&spread.node.fragment_name.node)
                    .is_some_and(|fragment| {
                        walk(document, &fragment.node.selection_set.node, nesting + 1)
                    }),
            })
    }
    walk(document, set, 0)
}

/// Ends every request where execution would begin: validation has passed.
struct ValidateOnly;

impl ExtensionFactory for ValidateOnly {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ValidateOnly)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ValidateOnly {
    async fn execute(
        &self,
        _ctx: &ExtensionContext<'_>,
        _operation_name: Option<&str>,
        _next: NextExecute<'_>,
    ) -> Response {
        Response::new(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn check(introspection: bool, text: &str) -> Result<(), String> {
        Validator::new(introspection).check(text).await
    }

    #[tokio::test]
    async fn a_valid_document_passes_and_nothing_runs() {
        // Nothing runs: the schema has no services to run it with.
        check(true, "mutation { logout }").await.unwrap();
        check(
            true,
            "query Page($first: Int!, $after: String) { posts(first: $first, after: $after) { edges { node { id } } } }",
        )
        .await
        .unwrap();
        check(
            true,
            "query A { me { id } } query B { post(id: \"1\") { id } }",
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn what_a_request_would_be_refused_for_is_refused() {
        for (text, expected) in [
            ("{ nosuchfield }", "nosuchfield"),
            ("{ me { id ", "expected"),
            ("query A { me { id } } query B { nosuch }", "nosuch"),
            (
                "{ posts(first: 100) { edges { node { body author { posts(first: 100) { edges { node { body } } } } } } } }",
                "too complex",
            ),
        ] {
            let err = check(true, text).await.unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[tokio::test]
    async fn introspection_is_refused_when_it_is_off() {
        let query = "{ __schema { queryType { name } } }";
        check(true, query).await.unwrap();
        assert!(check(false, query).await.is_err());
    }
}
