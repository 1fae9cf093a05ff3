// A script's client: an API token made in the browser (createApiToken over
// the cookie session), then `Authorization: Bearer …` and no cookie jar.
// What a token may do (act as its owner) and may not (manage the account).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { print } from 'graphql';
import { startServers } from '../lib/server.js';
import { browser, post, get, codes } from '../lib/http.js';
import { apolloClient, urqlClient } from '../lib/clients.js';
import { ops, CreateApiToken, RevokeApiToken, Sessions, username, PASSWORD } from '../lib/operations.js';

let servers;
before(async () => {
  servers = await startServers(1);
});
after(() => servers?.stop());

/** A signed-in browser's Apollo client and a new token of its user. */
async function userWithToken(server) {
  const name = username('token');
  const web = browser();
  const client = apolloClient({ uri: server.graphql, fetch: web.fetch });
  await client.mutate({ mutation: ops.Register, variables: { input: { username: name, password: PASSWORD } } });
  const { data } = await client.mutate({ mutation: CreateApiToken, variables: { name: 'nightly import' } });
  return { name, web, client, token: data.createApiToken.token, tokenId: data.createApiToken.apiToken.id };
}

test('a token made in the browser acts as its owner from a client without cookies', async () => {
  const [server] = servers.servers;
  const { name, token } = await userWithToken(server);
  assert.match(token, /^blogql_[A-Za-z0-9_-]{43,}$/);

  // Plain fetch: no cookie jar at all.
  const script = apolloClient({ uri: server.graphql, fetch, headers: { Authorization: `Bearer ${token}` } });
  const { data: me } = await script.query({ query: ops.Me, fetchPolicy: 'network-only' });
  assert.equal(me.me.username, name);

  const { data: created } = await script.mutate({
    mutation: ops.CreatePost,
    variables: { input: { title: 'From cron', body: 'Posted by a script.' } },
  });
  assert.equal(created.createPost.author.username, name);

  const { data: edited } = await script.mutate({
    mutation: ops.UpdatePost,
    variables: { id: created.createPost.id, input: { body: 'Edited by the script.' } },
  });
  assert.equal(edited.updatePost.body, 'Edited by the script.');

  // urql with the token too (queries over GET).
  const urql = urqlClient({ url: server.graphql, fetch, headers: { Authorization: `Bearer ${token}` } });
  const page = await urql.query(ops.Posts, { first: 1 }, { requestPolicy: 'network-only' }).toPromise();
  assert.equal(page.error, undefined);
  assert.equal(page.data.posts.edges[0].node.id, created.createPost.id);
});

test('a token request needs no CSRF header: it carries no cookie authority', async () => {
  const [server] = servers.servers;
  const { name, token } = await userWithToken(server);
  const answer = await get(fetch, server.graphql, { query: print(ops.Me) }, { Authorization: `Bearer ${token}` });
  assert.equal(answer.status, 200);
  assert.equal(answer.body.data.me.username, name);
});

test('a token cannot manage the account: FORBIDDEN, and logout through it ends nothing', async () => {
  const [server] = servers.servers;
  const { name, client: web, token } = await userWithToken(server);
  const script = apolloClient({ uri: server.graphql, fetch, headers: { Authorization: `Bearer ${token}` } });

  const minted = await script.mutate({ mutation: CreateApiToken, variables: { name: 'another' }, errorPolicy: 'all' });
  assert.equal(minted.error.errors[0].extensions.code, 'FORBIDDEN');
  const sessions = await script.query({ query: Sessions, fetchPolicy: 'network-only', errorPolicy: 'all' });
  assert.equal(sessions.error.errors[0].extensions.code, 'FORBIDDEN');

  const { data: logout } = await script.mutate({ mutation: ops.Logout });
  assert.equal(logout.logout, false, 'a token has no session to end');
  const { data: still } = await script.query({ query: ops.Me, fetchPolicy: 'network-only' });
  assert.equal(still.me.username, name, 'the token still works');
  const { data: browserMe } = await web.query({ query: ops.Me, fetchPolicy: 'network-only' });
  assert.equal(browserMe.me.username, name, 'and the browser is still signed in');
});

test('a request with a token and a cookie is the token’s user', async () => {
  const [server] = servers.servers;
  const owner = await userWithToken(server);
  const other = await userWithToken(server);
  const answer = await post(other.web.fetch, server.graphql, { query: print(ops.Me) }, { Authorization: `Bearer ${owner.token}` });
  assert.equal(answer.body.data.me.username, owner.name);
});

test('a revoked token is refused at its next request: 401 UNAUTHENTICATED', async () => {
  const [server] = servers.servers;
  const { client: web, token, tokenId } = await userWithToken(server);
  const { data } = await web.mutate({ mutation: RevokeApiToken, variables: { id: tokenId } });
  assert.equal(data.revokeApiToken, true);

  const refused = await post(fetch, server.graphql, { query: print(ops.Me) }, { Authorization: `Bearer ${token}` });
  assert.equal(refused.status, 401);
  assert.match(refused.headers.get('www-authenticate') ?? '', /^Bearer/);
  assert.deepEqual(codes(refused.body), ['UNAUTHENTICATED']);

  const script = apolloClient({ uri: server.graphql, fetch, headers: { Authorization: `Bearer ${token}` } });
  const seen = await script.query({ query: ops.Me, fetchPolicy: 'network-only', errorPolicy: 'all' });
  assert.ok(seen.error, 'Apollo Client reports it as an error, never as an anonymous answer');
  assert.equal(seen.data, undefined);
});
