// Apollo Client (HttpLink, InMemoryCache) through the web app's whole
// round: register, write, read, edit, sign out: with a cookie jar and
// nothing else, as in a browser.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CombinedGraphQLErrors } from '@apollo/client';
import { startServers } from '../lib/server.js';
import { browser, recordingFetch } from '../lib/http.js';
import { apolloClient } from '../lib/clients.js';
import { ops, username, PASSWORD } from '../lib/operations.js';

let servers;
before(async () => {
  servers = await startServers(1);
});
after(() => servers?.stop());

test('apollo client signs up, posts, reads, edits and signs out with the session cookie', async () => {
  const [server] = servers.servers;
  const alice = browser();
  const recorded = recordingFetch(alice.fetch);
  const client = apolloClient({ uri: server.graphql, fetch: recorded.fetch });
  const name = username('apollo');

  const { data: registered } = await client.mutate({
    mutation: ops.Register,
    variables: { input: { username: name, password: PASSWORD } },
  });
  assert.equal(registered.register.username, name);
  assert.equal(registered.register.role, 'USER');
  const sid = alice.jar.getCookiesSync(server.url).find((cookie) => cookie.key === 'sid');
  assert.ok(sid, 'register set the sid cookie');
  assert.equal(sid.httpOnly, true);
  assert.equal(sid.sameSite, 'lax');
  assert.equal(sid.path, '/');

  const { data: created } = await client.mutate({
    mutation: ops.CreatePost,
    variables: { input: { title: 'Hello from Apollo', body: 'Sent by @apollo/client.' } },
  });
  assert.equal(created.createPost.title, 'Hello from Apollo');
  assert.equal(created.createPost.author.username, name);
  const postId = created.createPost.id;

  const { data: page } = await client.query({ query: ops.Posts, variables: { first: 10 }, fetchPolicy: 'network-only' });
  assert.equal(page.posts.edges[0].node.id, postId, 'newest first');
  assert.equal(page.posts.edges[0].node.author.username, name);

  const { data: me } = await client.query({ query: ops.Me, fetchPolicy: 'network-only' });
  assert.equal(me.me.username, name);

  const { data: updated } = await client.mutate({
    mutation: ops.UpdatePost,
    variables: { id: postId, input: { title: 'Hello again' } },
  });
  assert.equal(updated.updatePost.title, 'Hello again');
  assert.equal(updated.updatePost.body, 'Sent by @apollo/client.');
  assert.ok(updated.updatePost.updatedAt, 'updatedAt is set by the edit');

  const { data: loggedOut } = await client.mutate({ mutation: ops.Logout });
  assert.equal(loggedOut.logout, true);
  assert.equal(alice.sid(server.url), undefined, 'logout expired the cookie');

  const { data: anonymous } = await client.query({ query: ops.Me, fetchPolicy: 'network-only' });
  assert.equal(anonymous.me, null, 'me is null once signed out, never an error');

  const refused = await client.mutate({
    mutation: ops.CreatePost,
    variables: { input: { title: 'Too late', body: 'Signed out.' } },
    errorPolicy: 'all',
  });
  assert.ok(CombinedGraphQLErrors.is(refused.error), 'a GraphQL error');
  assert.equal(refused.error.errors[0].extensions.code, 'UNAUTHENTICATED');

  // Every request was a POST that the CSRF rule let through.
  assert.ok(recorded.requests.every((request) => request.method === 'POST' && request.status === 200));
});

test('apollo client signs in again under a new session id, and the old cookie is anonymous', async () => {
  const [server] = servers.servers;
  const bob = browser();
  const client = apolloClient({ uri: server.graphql, fetch: bob.fetch });
  const name = username('apollo');
  await client.mutate({ mutation: ops.Register, variables: { input: { username: name, password: PASSWORD } } });
  const first = bob.sid(server.url);
  await client.mutate({ mutation: ops.Logout });

  const { data } = await client.mutate({
    mutation: ops.Login,
    variables: { input: { username: name.toUpperCase(), password: PASSWORD } },
  });
  assert.equal(data.login.username, name, 'login matches the username in any case');
  const second = bob.sid(server.url);
  assert.ok(second && second !== first, 'login issued a new session id');

  // Replaying the cookie from before the logout, from another browser.
  const replay = browser();
  replay.jar.setCookieSync(`sid=${first}; Path=/; HttpOnly`, server.url);
  const replayer = apolloClient({ uri: server.graphql, fetch: replay.fetch });
  const { data: replayed } = await replayer.query({ query: ops.Me, fetchPolicy: 'network-only' });
  assert.equal(replayed.me, null);

  const { data: me } = await client.query({ query: ops.Me, fetchPolicy: 'network-only' });
  assert.equal(me.me.username, name);
});

test('apollo client gets the contract codes as GraphQL errors', async () => {
  const [server] = servers.servers;
  const client = apolloClient({ uri: server.graphql, fetch: browser().fetch });
  const name = username('apollo');
  await client.mutate({ mutation: ops.Register, variables: { input: { username: name, password: PASSWORD } } });

  const taken = await client.mutate({
    mutation: ops.Register,
    variables: { input: { username: name.toUpperCase(), password: PASSWORD } },
    errorPolicy: 'all',
  });
  assert.equal(taken.error.errors[0].extensions.code, 'USERNAME_TAKEN');

  const empty = await client.mutate({
    mutation: ops.CreatePost,
    variables: { input: { title: '   ', body: 'x' } },
    errorPolicy: 'all',
  });
  assert.equal(empty.error.errors[0].extensions.code, 'BAD_USER_INPUT');
  assert.equal(empty.error.errors[0].extensions.field, 'title');
});
