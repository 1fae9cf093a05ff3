// A small typed client: the documents codegen typed (src/operations.graphql
// and the graphql() calls below), sent by Apollo Client, or by id alone when
// the server runs with trusted documents. `tsc --strict --noEmit` checks it.
import { ApolloClient, HttpLink, InMemoryCache } from '@apollo/client';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { graphql } from './gql';
import { CreatePostDocument, MeDocument, PostsDocument } from './gql/graphql';

export const PostByIdDocument = graphql(`
  query PostById($id: ID!) {
    post(id: $id) {
      id
      title
      body
      updatedAt
      author {
        username
      }
    }
  }
`);

export const CreateScriptTokenDocument = graphql(`
  mutation CreateScriptToken($name: String!) {
    createApiToken(name: $name) {
      token
      apiToken {
        id
        name
        createdAt
      }
    }
  }
`);

/** Apollo Client for blogql with the session cookie and the CSRF header. */
export function createClient(uri: string, fetchImpl: typeof fetch = fetch): ApolloClient {
  return new ApolloClient({
    link: new HttpLink({
      uri,
      credentials: 'include',
      headers: { 'Apollo-Require-Preflight': 'true' },
      fetch: fetchImpl,
    }),
    cache: new InMemoryCache(),
  });
}

/** A GraphQL answer: typed data, and errors with their contract code. */
export interface Answer<TResult> {
  data?: TResult | null;
  errors?: { message: string; extensions?: { code?: string; field?: string } }[];
}

/**
 * The id codegen embedded in a document (persistedDocuments):
 * `sha256:<hex>`, the key of the document in persisted-documents.json.
 */
export function documentId(document: TypedDocumentNode<unknown, never>): string {
  const hash = (document as { __meta__?: { hash?: unknown } }).__meta__?.hash;
  if (typeof hash !== 'string') throw new Error('codegen ran without persistedDocuments');
  return hash.startsWith('sha256:') ? hash : `sha256:${hash}`;
}

/**
 * Runs a document listed in the trusted-documents manifest by its id: the
 * body carries `documentId` and the variables, never the text.
 */
export async function runTrusted<TResult, TVariables extends Record<string, unknown>>(
  uri: string,
  document: TypedDocumentNode<TResult, TVariables>,
  variables: TVariables,
  fetchImpl: typeof fetch = fetch,
): Promise<Answer<TResult>> {
  const response = await fetchImpl(uri, {
    method: 'POST',
    credentials: 'include',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ documentId: documentId(document as TypedDocumentNode<unknown, never>), variables }),
  });
  return (await response.json()) as Answer<TResult>;
}

/** What the types buy: wrong fields and variables do not compile. */
export async function example(uri: string): Promise<string[]> {
  const client = createClient(uri);
  const created = await client.mutate({
    mutation: CreatePostDocument,
    variables: { input: { title: 'Typed', body: 'Checked by tsc.' } },
  });
  const title: string | undefined = created.data?.createPost.title;
  // @ts-expect-error: Post has no field `nope`
  void created.data?.createPost.nope;

  const page = await client.query({ query: PostsDocument, variables: { first: 10 } });
  const titles = page.data?.posts.edges.map((edge) => edge.node.title) ?? [];

  const me = await runTrusted(uri, MeDocument, {});
  const role: 'USER' | 'ADMIN' | undefined = me.data?.me?.role;

  const post = await runTrusted(uri, PostByIdDocument, { id: '1' });
  const updatedAt: string | null | undefined = post.data?.post?.updatedAt;

  // @ts-expect-error: `id` is required
  await runTrusted(uri, PostByIdDocument, {});

  return [title ?? '', ...titles, role ?? '', updatedAt ?? ''];
}
