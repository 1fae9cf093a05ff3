// urql (@urql/core: cacheExchange, fetchExchange) through the web app's
// whole round, with a cookie jar and the CSRF header, as in a browser. urql
// sends queries as GET (preferGetMethod): they pass because of the header.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServers } from '../lib/server.js';
import { browser, recordingFetch, get, codes } from '../lib/http.js';
import { urqlClient } from '../lib/clients.js';
import { ops, username, PASSWORD } from '../lib/operations.js';
import { print } from 'graphql';

let servers;
before(async () => {
  servers = await startServers(1);
});
after(() => servers?.stop());

const network = { requestPolicy: 'network-only' };

test('urql signs up, posts, reads, edits and signs out with the session cookie', async () => {
  const [server] = servers.servers;
  const carol = browser();
  const recorded = recordingFetch(carol.fetch);
  const client = urqlClient({ url: server.graphql, fetch: recorded.fetch });
  const name = username('urql');

  const registered = await client.mutation(ops.Register, { input: { username: name, password: PASSWORD } }).toPromise();
  assert.equal(registered.error, undefined);
  assert.equal(registered.data.register.username, name);
  assert.ok(carol.sid(server.url), 'register set the sid cookie');

  const created = await client
    .mutation(ops.CreatePost, { input: { title: 'Hello from urql', body: 'Sent by @urql/core.' } })
    .toPromise();
  assert.equal(created.error, undefined);
  assert.equal(created.data.createPost.author.username, name);
  const postId = created.data.createPost.id;

  const page = await client.query(ops.Posts, { first: 10 }, network).toPromise();
  assert.equal(page.error, undefined);
  assert.equal(page.data.posts.edges[0].node.id, postId, 'newest first');

  const me = await client.query(ops.Me, {}, network).toPromise();
  assert.equal(me.data.me.username, name);

  const updated = await client.mutation(ops.UpdatePost, { id: postId, input: { body: 'Edited by urql.' } }).toPromise();
  assert.equal(updated.error, undefined);
  assert.equal(updated.data.updatePost.body, 'Edited by urql.');
  assert.equal(updated.data.updatePost.title, 'Hello from urql');
  assert.ok(updated.data.updatePost.updatedAt);

  const loggedOut = await client.mutation(ops.Logout, {}).toPromise();
  assert.equal(loggedOut.data.logout, true);
  assert.equal(carol.sid(server.url), undefined, 'logout expired the cookie');

  const anonymous = await client.query(ops.Me, {}, network).toPromise();
  assert.equal(anonymous.error, undefined);
  assert.equal(anonymous.data.me, null);

  const refused = await client.mutation(ops.CreatePost, { input: { title: 'Too late', body: 'x' } }).toPromise();
  assert.equal(refused.error.graphQLErrors[0].extensions.code, 'UNAUTHENTICATED');

  const methods = recorded.requests.map((request) => `${request.method} ${request.status}`);
  assert.ok(methods.includes('GET 200'), `urql sent its queries as GET: ${methods}`);
  assert.ok(methods.includes('POST 200'), `and its mutations as POST: ${methods}`);
  assert.ok(recorded.requests.every((request) => request.status === 200), methods.join(', '));
});

test('a GET query without the CSRF header is refused, as the contract says', async () => {
  const [server] = servers.servers;
  const refused = await get(fetch, server.graphql, { query: print(ops.Me) });
  assert.equal(refused.status, 400);
  assert.deepEqual(codes(refused.body), ['BAD_REQUEST']);

  const allowed = await get(fetch, server.graphql, { query: print(ops.Me) }, { 'Apollo-Require-Preflight': 'true' });
  assert.equal(allowed.status, 200);
  assert.deepEqual(allowed.body, { data: { me: null } });
});

test('a mutation over GET is refused with 405', async () => {
  const [server] = servers.servers;
  const refused = await get(fetch, server.graphql, { query: print(ops.Logout) }, { 'Apollo-Require-Preflight': 'true' });
  assert.equal(refused.status, 405);
  assert.equal(refused.headers.get('allow'), 'POST');
  assert.deepEqual(codes(refused.body), ['METHOD_NOT_ALLOWED']);
});
