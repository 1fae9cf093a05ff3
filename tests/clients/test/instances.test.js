// Two blogql instances sharing one database (and one Redis, when the run
// has it), one browser talking to both: a session is one session wherever
// it is used, and its end is seen by both.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServers, backendName } from '../lib/server.js';
import { browser } from '../lib/http.js';
import { apolloClient, urqlClient } from '../lib/clients.js';
import { ops, username, PASSWORD } from '../lib/operations.js';

let servers;
before(async () => {
  servers = await startServers(2);
});
after(() => servers?.stop());

test(`a session made on one instance is honoured and ended on the other (${backendName()})`, async () => {
  const [a, b] = servers.servers;
  const web = browser(); // cookies are per host, not per port: both instances get the sid
  const onA = apolloClient({ uri: a.graphql, fetch: web.fetch });
  const onB = urqlClient({ url: b.graphql, fetch: web.fetch });
  const name = username('multi');

  await onA.mutate({ mutation: ops.Register, variables: { input: { username: name, password: PASSWORD } } });
  const meOnB = await onB.query(ops.Me, {}, { requestPolicy: 'network-only' }).toPromise();
  assert.equal(meOnB.data.me.username, name);

  const created = await onB.mutation(ops.CreatePost, { input: { title: 'Written on B', body: 'Read on A.' } }).toPromise();
  assert.equal(created.error, undefined);
  const { data: page } = await onA.query({ query: ops.Posts, variables: { first: 5 }, fetchPolicy: 'network-only' });
  assert.equal(page.posts.edges[0].node.id, created.data.createPost.id);

  const keep = web.sid(a.url);
  const loggedOut = await onB.mutation(ops.Logout, {}).toPromise();
  assert.equal(loggedOut.data.logout, true);
  // The jar dropped the cookie; replay it on A as a stale tab would.
  web.jar.setCookieSync(`sid=${keep}; Path=/; HttpOnly`, a.url);
  const { data: meOnA } = await onA.query({ query: ops.Me, fetchPolicy: 'network-only' });
  assert.equal(meOnA.me, null, 'the session ended on B is anonymous on A');
});
