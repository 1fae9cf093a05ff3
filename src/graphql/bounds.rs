//! What is checked of a document before async-graphql sees it.
//!
//! async-graphql's validation and its depth and complexity limits walk a
//! document with every fragment spread expanded in place, and only judge it
//! after the walk: a few hundred bytes that spread a fragment which spreads
//! another twice, thirty levels down, ask for 2^30 selections, and the walk
//! itself never ends (nor can a timeout interrupt it: it never yields). So
//! the expanded size, the expanded depth and the number of mutation fields
//! are counted here first, remembering each fragment's counts, which makes
//! the check linear in the text however the fragments multiply.
//!
//! Also here: a required variable that the request does not provide, which
//! async-graphql lets through when the variable is used only in a directive.

use std::collections::HashMap;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::{Name, Variables};

use super::MAX_DEPTH;

/// Most selections (fields, spreads, inline fragments) a document may make
/// with every fragment expanded. An honest page of 100 posts with every field
/// makes about 20; GraphiQL's introspection query about 150.
pub const MAX_EXPANDED_FIELDS: u64 = 2_000;
/// Most mutation fields one operation may run.
pub const MAX_MUTATION_FIELDS: u64 = 20;
/// Deepest nesting of selection sets and fragment spreads together: deeper
/// than any field depth allowed, shallow enough for the walk's own stack.
const MAX_NESTING: usize = 4 * MAX_DEPTH;

/// A bound the document exceeds; the message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded(pub String);

/// What one selection set (or fragment) amounts to once expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Extent {
    /// Selections in the whole tree: fields, spreads and inline fragments
    /// (each costs a step of every walk that expands them).
    fields: u64,
    /// Deepest field nesting.
    depth: usize,
    /// Fields at the top level (a root's fields, for the mutation count).
    top: u64,
}

/// Refuses a document whose expanded shape exceeds a bound.
pub fn check(document: &ExecutableDocument) -> Result<(), Exceeded> {
    let mut walk = Walk {
        document,
        fragments: HashMap::new(),
    };
    let mut fields: u64 = 0;
    for (_, operation) in document.operations.iter() {
        let extent = walk.operation(&operation.node)?;
        fields = fields.saturating_add(extent.fields);
    }
    if fields > MAX_EXPANDED_FIELDS {
        return Err(Exceeded(format!(
            "Query is too complex: it selects more than {MAX_EXPANDED_FIELDS} fields once its fragments are expanded."
        )));
    }
    Ok(())
}

/// The operation a request runs: the one `name` names, else the only
/// one; with its name, if it has one. `None` when that is undecided
/// (async-graphql reports it).
pub fn selected<'a>(
    document: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<(Option<&'a Name>, &'a OperationDefinition)> {
    match (&document.operations, name) {
        (DocumentOperations::Single(operation), _) => Some((None, &operation.node)),
        (DocumentOperations::Multiple(operations), Some(name)) => operations
            .get_key_value(name)
            .map(|(name, operation)| (Some(name), &operation.node)),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations
            .iter()
            .next()
            .map(|(name, operation)| (Some(name), &operation.node)),
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// The name of a required variable (non-null, no default) that the
/// operation to run declares and `variables` lacks, if any.
pub fn missing_variable<'a>(
    document: &'a ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Option<&'a str> {
    let (_, operation) = selected(document, operation_name)?;
    operation
        .variable_definitions
        .iter()
        .map(|definition| &definition.node)
        .find(|definition| {
            !definition.var_type.node.nullable
                && definition.default_value.is_none()
                && variables
                    .get(&definition.name.node)
                    .is_none_or(|value| *value == async_graphql::Value::Null)
        })
        .map(|definition| definition.name.node.as_str())
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    /// Each fragment's extent once known; `None` while it is being walked
    /// (a spread met again then is a cycle, which validation refuses).
    fragments: HashMap<&'a str, Option<Extent>>,
}

impl<'a> Walk<'a> {
    fn operation(&mut self, operation: &'a OperationDefinition) -> Result<Extent, Exceeded> {
        let extent = self.selection_set(&operation.selection_set.node, 0)?;
        if operation.ty == OperationType::Mutation && extent.top > MAX_MUTATION_FIELDS {
            return Err(Exceeded(format!(
                "Operation runs more than {MAX_MUTATION_FIELDS} mutation fields."
            )));
        }
        Ok(extent)
    }

    fn selection_set(&mut self, set: &'a SelectionSet, nesting: usize) -> Result<Extent, Exceeded> {
        if nesting > MAX_NESTING {
            return Err(too_deep());
        }
        let mut total = Extent::default();
        for item in &set.items {
            let extent = match &item.node {
                Selection::Field(field) => {
                    let inner = self.selection_set(&field.node.selection_set.node, nesting + 1)?;
                    Extent {
                        fields: inner.fields.saturating_add(1),
                        depth: inner.depth + 1,
                        top: 1,
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let inner =
                        self.fragment(spread.node.fragment_name.node.as_str(), nesting + 1)?;
                    Extent {
                        fields: inner.fields.saturating_add(1),
                        ..inner
                    }
                }
                Selection::InlineFragment(inline) => {
                    let inner = self.selection_set(&inline.node.selection_set.node, nesting + 1)?;
                    Extent {
                        fields: inner.fields.saturating_add(1),
                        ..inner
                    }
                }
            };
            total.fields = total.fields.saturating_add(extent.fields);
            total.top = total.top.saturating_add(extent.top);
            total.depth = total.depth.max(extent.depth);
            // Stop as soon as the answer is known: the sums only grow.
            if total.fields > MAX_EXPANDED_FIELDS {
                return Ok(total);
            }
        }
        if total.depth > MAX_DEPTH {
            return Err(too_deep());
        }
        Ok(total)
    }

    fn fragment(&mut self, name: &'a str, nesting: usize) -> Result<Extent, Exceeded> {
        // Refused here, not left to validation: async-graphql expands spreads
        // before it validates (its recursion check) and skips unknown ones,
        // so a chain of spreads ending in an unknown fragment would be walked
        // in full without ever failing.
        match self.fragments.get(name) {
            Some(Some(extent)) => return Ok(*extent),
            Some(None) => {
                return Err(Exceeded(format!("Fragment \"{name}\" spreads itself.")));
            }
            None => {}
        }
        let Some((name, definition)) = self.document.fragments.get_key_value(name) else {
            return Err(Exceeded(format!("Unknown fragment \"{name}\".")));
        };
        let name = name.as_str();
        self.fragments.insert(name, None);
        let extent = self.selection_set(&definition.node.selection_set.node, nesting)?;
        self.fragments.insert(name, Some(extent));
        Ok(extent)
    }
}

fn too_deep() -> Exceeded {
    Exceeded("Query is nested too deep.".into())
}

/// Whether every operation of `document` that may run (the one named, or
/// any when the name is missing or names none) is of type `ty`: a GET runs
/// queries only, a WebSocket subscriptions only.
pub fn only(ty: OperationType, document: &ExecutableDocument, name: Option<&str>) -> bool {
    match (&document.operations, name) {
        (DocumentOperations::Single(operation), _) => operation.node.ty == ty,
        (DocumentOperations::Multiple(operations), Some(name)) => match operations.get(name) {
            Some(operation) => operation.node.ty == ty,
            None => operations.values().all(|operation| operation.node.ty == ty),
        },
        (DocumentOperations::Multiple(operations), None) => {
            operations.values().all(|operation| operation.node.ty == ty)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).expect("a valid query")
    }

    /// `query { ...F0 }` where each fragment spreads the next twice.
    fn fragment_chain(levels: usize) -> String {
        let mut query = String::from("query { ...F0 }");
        for n in 0..levels {
            query.push_str(&format!(
                " fragment F{n} on Query {{ ...F{m} ...F{m} }}",
                m = n + 1
            ));
        }
        query.push_str(&format!(" fragment F{levels} on Query {{ __typename }}"));
        query
    }

    #[test]
    fn a_fragment_chain_of_2_to_the_30_is_refused_and_one_of_2_to_the_8_is_not() {
        let refused = check(&parse(&fragment_chain(30))).unwrap_err();
        assert!(refused.0.contains("2000 fields"), "{refused:?}");
        assert_eq!(check(&parse(&fragment_chain(8))), Ok(()));
    }

    #[test]
    fn depth_counts_through_fragments() {
        let mut query = String::from("query { ...F0 }");
        for n in 0..20 {
            query.push_str(&format!(
                " fragment F{n} on Query {{ me {{ ...F{} }} }}",
                n + 1
            ));
        }
        query.push_str(" fragment F20 on Query { __typename }");
        assert_eq!(check(&parse(&query)), Err(too_deep()));
    }

    #[test]
    fn mutation_fields_are_counted_through_fragments() {
        let twenty_one = (0..21)
            .map(|n| format!("a{n}: logout"))
            .collect::<Vec<_>>()
            .join(" ");
        let query = format!("mutation {{ ...M }} fragment M on Mutation {{ {twenty_one} }}");
        assert!(check(&parse(&query)).unwrap_err().0.contains("20 mutation"));
        let twenty = (0..20)
            .map(|n| format!("a{n}: logout"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(check(&parse(&format!("mutation {{ {twenty} }}"))), Ok(()));
    }

    #[test]
    fn cycles_and_unknown_fragments_are_refused_before_anything_expands_them() {
        let cycle = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
        assert!(
            check(&parse(cycle))
                .unwrap_err()
                .0
                .contains("spreads itself")
        );
        // A chain of 4^30 spreads that ends in a fragment nobody defined.
        let mut chain = String::from("query { ...F0 }");
        for n in 0..30 {
            let next = format!("...F{}", n + 1);
            chain.push_str(&format!(
                " fragment F{n} on Query {{ {next} {next} {next} {next} }}"
            ));
        }
        chain.push_str(" fragment F30 on Query { ...Missing }");
        assert!(
            check(&parse(&chain))
                .unwrap_err()
                .0
                .contains("Unknown fragment")
        );
    }

    /// graphql-js's `getIntrospectionQuery()` with every option GraphiQL
    /// turns on: what the playground and codegen send.
    const INTROSPECTION: &str = r#"
        query IntrospectionQuery {
          __schema {
            description
            queryType { name } mutationType { name } subscriptionType { name }
            types { ...FullType }
            directives { name description isRepeatable locations args(includeDeprecated: true) { ...InputValue } }
          }
        }
        fragment FullType on __Type {
          kind name description specifiedByURL
          fields(includeDeprecated: true) {
            name description args(includeDeprecated: true) { ...InputValue }
            type { ...TypeRef } isDeprecated deprecationReason
          }
          inputFields(includeDeprecated: true) { ...InputValue }
          interfaces { ...TypeRef }
          enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
          possibleTypes { ...TypeRef }
        }
        fragment InputValue on __InputValue {
          name description type { ...TypeRef } defaultValue isDeprecated deprecationReason
        }
        fragment TypeRef on __Type {
          kind name
          ofType { kind name ofType { kind name ofType { kind name ofType { kind name
            ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
        }
    "#;

    #[test]
    fn graphiqls_introspection_query_fits_with_room_to_spare() {
        let document = parse(INTROSPECTION);
        assert_eq!(check(&document), Ok(()));
        let mut walk = Walk {
            document: &document,
            fragments: HashMap::new(),
        };
        let (_, operation) = document.operations.iter().next().unwrap();
        let extent = walk.operation(&operation.node).unwrap();
        assert!(extent.fields * 2 < MAX_EXPANDED_FIELDS, "{extent:?}");
    }

    #[test]
    fn a_required_variable_must_be_given() {
        let document =
            parse("query($show: Boolean!, $n: Int = 3) { me @include(if: $show) { id } }");
        let none = Variables::default();
        assert_eq!(missing_variable(&document, None, &none), Some("show"));
        let given = Variables::from_json(serde_json::json!({ "show": true }));
        assert_eq!(missing_variable(&document, None, &given), None);
    }
}
