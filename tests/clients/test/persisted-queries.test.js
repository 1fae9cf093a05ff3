// Automatic persisted queries with Apollo's own link
// (@apollo/client/link/persisted-queries, sha256 from node:crypto), every
// request counted through a wrapping fetch.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServers } from '../lib/server.js';
import { browser, recordingFetch, post, get, codes } from '../lib/http.js';
import { apolloClient, sha256, CSRF_HEADERS } from '../lib/clients.js';
import { ops, username, PASSWORD } from '../lib/operations.js';
import { gql } from '@apollo/client';

let servers;
before(async () => {
  servers = await startServers(1);
});
after(() => servers?.stop());

const hashOf = (request) => request.body?.extensions?.persistedQuery?.sha256Hash
  ?? JSON.parse(request.url.searchParams.get('extensions') ?? '{}').persistedQuery?.sha256Hash;
/** The query text a request carried, or null. */
const textOf = (request) =>
  (request.method === 'GET' ? request.url.searchParams.get('query') : request.body?.query) ?? null;

test('an unknown hash is PersistedQueryNotFound with HTTP 200, as the link expects', async () => {
  const [server] = servers.servers;
  const answer = await post(fetch, server.graphql, {
    extensions: { persistedQuery: { version: 1, sha256Hash: sha256('{ me { id } } # never sent') } },
  });
  assert.equal(answer.status, 200);
  assert.deepEqual(codes(answer.body), ['PERSISTED_QUERY_NOT_FOUND']);
  assert.equal(answer.body.errors[0].message, 'PersistedQueryNotFound');
});

test('the link sends the hash alone, retries with the text once, then the hash alone runs', async () => {
  const [server] = servers.servers;
  // A query text of this test's own, so no other test has registered it.
  const query = gql`query PostsForApq { posts(first: 3) { edges { node { id title } } } }`;

  const first = recordingFetch(fetch);
  const cold = apolloClient({ uri: server.graphql, fetch: first.fetch, persisted: true });
  const { data } = await cold.query({ query });
  assert.ok(Array.isArray(data.posts.edges));
  assert.equal(first.requests.length, 2, 'hash alone, then hash and text');
  const [miss, retry] = first.requests;
  // The text is the document as sent (Apollo's cache adds __typename).
  const hash = sha256(textOf(retry));
  assert.equal(miss.method, 'POST');
  assert.equal(hashOf(miss), hash);
  assert.equal(textOf(miss), null, 'the first request carries no text');
  assert.equal(retry.method, 'POST');
  assert.equal(hashOf(retry), hash);
  assert.match(textOf(retry), /query PostsForApq/);

  // Another client (another browser, cold cache): one request, hash only.
  const second = recordingFetch(fetch);
  const warm = apolloClient({ uri: server.graphql, fetch: second.fetch, persisted: true });
  const again = await warm.query({ query });
  assert.deepEqual(again.data, data);
  assert.equal(second.requests.length, 1);
  assert.equal(hashOf(second.requests[0]), hash);
  assert.equal(textOf(second.requests[0]), null);

  // And the same client again, past its cache: still one request each.
  await warm.query({ query, fetchPolicy: 'network-only' });
  await warm.query({ query, fetchPolicy: 'network-only' });
  assert.equal(second.requests.length, 3);
  assert.ok(second.requests.every((request) => textOf(request) === null));
});

test('hashed queries over GET (useGETForHashedQueries), with the CSRF header', async () => {
  const [server] = servers.servers;
  const query = gql`query PostsForApqGet { posts(first: 2) { edges { cursor } pageInfo { hasNextPage } } }`;

  const first = recordingFetch(fetch);
  const cold = apolloClient({ uri: server.graphql, fetch: first.fetch, persisted: true, useGETForHashedQueries: true });
  await cold.query({ query });
  assert.deepEqual(first.requests.map((request) => request.method), ['GET', 'POST'], 'a GET miss, then the text by POST');
  const hash = sha256(textOf(first.requests[1]));
  assert.equal(hashOf(first.requests[0]), hash);
  assert.equal(textOf(first.requests[0]), null);
  assert.equal(first.requests[0].status, 200);
  assert.equal(first.requests[0].headers.get('apollo-require-preflight'), CSRF_HEADERS['Apollo-Require-Preflight']);

  const second = recordingFetch(fetch);
  const warm = apolloClient({ uri: server.graphql, fetch: second.fetch, persisted: true, useGETForHashedQueries: true });
  const { data } = await warm.query({ query });
  assert.ok(data.posts.pageInfo);
  assert.equal(second.requests.length, 1);
  assert.equal(second.requests[0].method, 'GET');
  assert.equal(second.requests[0].status, 200);
  assert.equal(hashOf(second.requests[0]), hash);
  assert.equal(textOf(second.requests[0]), null);

  // The CSRF rule applies to the query the hash stands for: no header, no answer.
  const bare = await get(fetch, server.graphql, {
    extensions: { persistedQuery: { version: 1, sha256Hash: hash } },
  });
  assert.equal(bare.status, 400);
  assert.deepEqual(codes(bare.body), ['BAD_REQUEST']);
});

test('mutations go through the link by POST, with the session cookie', async () => {
  const [server] = servers.servers;
  const web = browser();
  const recorded = recordingFetch(web.fetch);
  const client = apolloClient({ uri: server.graphql, fetch: recorded.fetch, persisted: true, useGETForHashedQueries: true });
  const name = username('apq');
  await client.mutate({ mutation: ops.Register, variables: { input: { username: name, password: PASSWORD } } });
  const { data } = await client.mutate({
    mutation: ops.CreatePost,
    variables: { input: { title: 'Persisted', body: 'By hash.' } },
  });
  assert.equal(data.createPost.author.username, name);
  assert.ok(recorded.requests.every((request) => request.method === 'POST'), 'never a mutation over GET');

  // The second createPost is the hash alone.
  const before = recorded.requests.length;
  await client.mutate({ mutation: ops.CreatePost, variables: { input: { title: 'Again', body: 'By hash.' } } });
  assert.equal(recorded.requests.length, before + 1);
  assert.equal(textOf(recorded.requests.at(-1)), null);
});

test('a hash that is not its text’s is BAD_REQUEST, and a text that fails validation is not remembered', async () => {
  const [server] = servers.servers;
  const text = '{ posts(first: 1) { edges { cursor } } }';
  const wrong = await post(fetch, server.graphql, {
    query: text,
    extensions: { persistedQuery: { version: 1, sha256Hash: sha256(`${text} `) } },
  });
  assert.equal(wrong.status, 400);
  assert.deepEqual(codes(wrong.body), ['BAD_REQUEST']);

  const invalid = '{ posts(first: 1) { nope } }';
  const persisted = { persistedQuery: { version: 1, sha256Hash: sha256(invalid) } };
  const refused = await post(fetch, server.graphql, { query: invalid, extensions: persisted });
  assert.deepEqual(codes(refused.body), ['GRAPHQL_VALIDATION_FAILED']);
  const unknown = await post(fetch, server.graphql, { extensions: persisted });
  assert.deepEqual(codes(unknown.body), ['PERSISTED_QUERY_NOT_FOUND']);
});
