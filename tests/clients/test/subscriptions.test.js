// Live updates over WebSocket, with the real clients: graphql-ws (on the
// `ws` package, the session cookie in the upgrade's headers), Apollo
// Client's GraphQLWsLink and urql's subscriptionExchange. Written to the
// contract's "Live updates (WebSocket)" and its Subscription type:
// graphql-transport-ws at /graphql/ws, `postCreated: Post!` for anyone,
// `sessionEnded: SessionEndReason!` for the upgrade's cookie session, which
// fires once when the session ends, then the socket closes with 4401.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { print } from 'graphql';
import WebSocket from 'ws';
import { startServers, postgresServer, backendName } from '../lib/server.js';
import { browser } from '../lib/http.js';
import { apolloClient, urqlClient } from '../lib/clients.js';
import { connect, collect, deliver, waitFor, within } from '../lib/live.js';
import { ops, PostCreated, SessionEnded, LogoutOtherSessions, username, PASSWORD } from '../lib/operations.js';


/** A signed-in browser on `server`: its jar, an Apollo client, its name. */
async function signedIn(server) {
  const web = browser();
  const apollo = apolloClient({ uri: server.graphql, fetch: web.fetch });
  const name = username('live');
  await apollo.mutate({ mutation: ops.Register, variables: { input: { username: name, password: PASSWORD } } });
  return { web, apollo, name };
}

/** createPost through `apollo`, returning the post. */
const poster = (apollo, label) => async (i) => {
  const { data } = await apollo.mutate({
    mutation: ops.CreatePost,
    variables: { input: { title: `${label} ${i}`, body: 'Live.' } },
  });
  return data.createPost;
};

const postCreated = { query: print(PostCreated) };
const sessionEnded = { query: print(SessionEnded) };

/**
 * Subscribes to sessionEnded, and proves the subscription is live: on the
 * same socket, a postCreated subscribed after it has delivered a post (the
 * server handles one socket's messages in order).
 */
async function watchSession(live, writer, label) {
  const ended = collect(live.client, sessionEnded);
  const posts = collect(live.client, postCreated);
  await deliver(poster(writer.apollo, label), (post, ms) => posts.waitFor((v) => v.data?.postCreated?.id === post.id, ms));
  return ended;
}

describe('subscriptions over /graphql/ws', () => {
  let servers;
  let server;
  const sockets = [];
  before(async () => {
    servers = await startServers(1);
    [server] = servers.servers;
  });
  after(async () => {
    for (const live of sockets) await live.client.dispose();
    await servers?.stop();
  });
  const open = (...args) => {
    const live = connect(...args);
    sockets.push(live);
    return live;
  };

  test('graphql-ws: an anonymous subscriber gets postCreated when another client creates a post', async () => {
    const author = await signedIn(server);
    const live = open(server, null, { origin: undefined }); // no Origin: not a browser, allowed
    await within(live.connected, 5000, 'connection_ack');
    const sub = collect(live.client, postCreated);
    const { post, got } = await deliver(poster(author.apollo, 'graphql-ws'), (p, ms) =>
      sub.waitFor((v) => v.data?.postCreated?.id === p.id, ms),
    );
    assert.deepEqual(got, {
      data: { postCreated: { id: post.id, title: post.title, author: { username: author.name } } },
    });
    // Once live, every post arrives, in order.
    const more = [];
    for (let i = 0; i < 3; i++) more.push(await poster(author.apollo, 'more')(i));
    for (const p of more) await sub.waitFor((v) => v.data?.postCreated?.id === p.id, 5000);
    const ids = sub.values.map((v) => v.data.postCreated.id);
    assert.deepEqual(ids.slice(-3), more.map((p) => p.id));
    sub.unsubscribe();
  });

  test('graphql-ws: sessionEnded LOGGED_OUT when the session logs out, then close 4401', async () => {
    const user = await signedIn(server);
    const live = open(server, user.web);
    await within(live.connected, 5000, 'connection_ack');
    const ended = await watchSession(live, user, 'before logout');

    const { data } = await user.apollo.mutate({ mutation: ops.Logout });
    assert.equal(data.logout, true);
    const reason = await ended.waitFor((v) => v.data?.sessionEnded, 5000);
    assert.deepEqual(reason, { data: { sessionEnded: 'LOGGED_OUT' } });
    const close = await within(live.closed, 5000, 'the socket to close');
    assert.equal(close.code, 4401);
    assert.equal(ended.values.length, 1, 'fires once');
  });

  test('graphql-ws: sessionEnded REVOKED when another device signs the others out', async () => {
    const user = await signedIn(server);
    const live = open(server, user.web);
    await within(live.connected, 5000, 'connection_ack');
    const ended = await watchSession(live, user, 'before revoke');

    const other = browser();
    const otherApollo = apolloClient({ uri: server.graphql, fetch: other.fetch });
    await otherApollo.mutate({ mutation: ops.Login, variables: { input: { username: user.name, password: PASSWORD } } });
    const { data } = await otherApollo.mutate({ mutation: LogoutOtherSessions });
    assert.equal(data.logoutOtherSessions, 1);

    const reason = await ended.waitFor((v) => v.data?.sessionEnded, 5000);
    assert.equal(reason.data.sessionEnded, 'REVOKED');
    assert.equal((await within(live.closed, 5000, 'the socket to close')).code, 4401);
  });

  test('graphql-ws: sessionEnded without a session is refused with UNAUTHENTICATED, never a reason', async () => {
    const live = open(server, null);
    await within(live.connected, 5000, 'connection_ack').catch(() => {});
    const sub = collect(live.client, sessionEnded);
    const end = await within(Promise.race([sub.ended, live.closed.then((close) => ({ close }))]), 5000, 'a refusal');
    if (end.close) {
      assert.equal(sub.values.length, 0);
      assert.equal(end.close.code, 4401);
    } else if (sub.values.length > 0) {
      // As graphql-ws's own server answers a subscription whose field fails:
      // one result with the error and no data, then complete.
      assert.equal(sub.values.length, 1);
      assert.equal(sub.values[0].data?.sessionEnded ?? null, null);
      assert.equal(sub.values[0].errors?.[0]?.extensions?.code, 'UNAUTHENTICATED');
    } else {
      const errors = Array.isArray(end.error) ? end.error : [end.error];
      assert.equal(errors[0]?.extensions?.code ?? errors[0]?.code, errors[0]?.extensions ? 'UNAUTHENTICATED' : 4401);
    }
  });

  test('an upgrade from a foreign Origin is refused with HTTP 403', async () => {
    const status = await new Promise((done, fail) => {
      const socket = new WebSocket(server.ws, 'graphql-transport-ws', { origin: 'https://evil.example' });
      socket.on('unexpected-response', (_request, response) => {
        done(response.statusCode);
        socket.terminate();
      });
      socket.on('open', () => {
        socket.terminate();
        fail(new Error('the upgrade was accepted'));
      });
      socket.on('error', () => {});
    });
    assert.equal(status, 403);
  });

  test("Apollo Client's GraphQLWsLink receives postCreated; its HttpLink writes", async () => {
    const web = browser();
    const live = open(server, web);
    const apollo = apolloClient({ uri: server.graphql, fetch: web.fetch, wsClient: live.client });
    await within(live.connected, 5000, 'connection_ack');
    const name = username('apollows');
    await apollo.mutate({ mutation: ops.Register, variables: { input: { username: name, password: PASSWORD } } });

    const values = [];
    const subscription = apollo.subscribe({ query: PostCreated }).subscribe({ next: (result) => values.push(result) });
    try {
      const { post } = await deliver(poster(apollo, 'apollo'), (p, ms) =>
        waitFor(values, (v) => v.data?.postCreated?.id === p.id, ms),
      );
      const got = values.find((v) => v.data?.postCreated?.id === post.id);
      assert.equal(got.data.postCreated.title, post.title);
      assert.equal(got.data.postCreated.author.username, name);
    } finally {
      subscription.unsubscribe();
    }
  });

  test("urql's subscriptionExchange receives postCreated; its fetchExchange writes", async () => {
    const web = browser();
    const live = open(server, web);
    const urql = urqlClient({ url: server.graphql, fetch: web.fetch, wsClient: live.client });
    await within(live.connected, 5000, 'connection_ack');
    const name = username('urqlws');
    const registered = await urql.mutation(ops.Register, { input: { username: name, password: PASSWORD } }).toPromise();
    assert.equal(registered.error, undefined);

    const values = [];
    const subscription = urql.subscription(PostCreated, {}).subscribe((result) => values.push(result));
    try {
      const create = async (i) => {
        const result = await urql.mutation(ops.CreatePost, { input: { title: `urql ${i}`, body: 'Live.' } }).toPromise();
        return result.data.createPost;
      };
      const { post } = await deliver(create, (p, ms) => waitFor(values, (v) => v.data?.postCreated?.id === p.id, ms));
      const got = values.find((v) => v.data?.postCreated?.id === post.id);
      assert.equal(got.error, undefined);
      assert.equal(got.data.postCreated.author.username, name);
    } finally {
      subscription.unsubscribe();
    }
  });
});

const pgSkip = postgresServer() ? false : `needs PostgreSQL (DATABASE_URL): on ${backendName()} events stay in one process`;

describe(`subscriptions across two instances (${backendName()})`, () => {
  let servers;
  const sockets = [];
  before(async () => {
    if (pgSkip) return;
    servers = await startServers(2);
  });
  after(async () => {
    for (const live of sockets) await live.client.dispose();
    await servers?.stop();
  });

  test('a subscriber on A gets the posts created on B, and its sessionEnded when it logs out on B', { skip: pgSkip }, async () => {
    const [a, b] = servers.servers;
    const user = await signedIn(a); // cookies are per host: the same jar signs B's requests
    const onB = { apollo: apolloClient({ uri: b.graphql, fetch: user.web.fetch }) };
    const live = connect(a, user.web);
    sockets.push(live);
    await within(live.connected, 5000, 'connection_ack');

    const ended = collect(live.client, sessionEnded);
    const posts = collect(live.client, postCreated);
    const { post, got } = await deliver(poster(onB.apollo, 'from B'), (p, ms) =>
      posts.waitFor((v) => v.data?.postCreated?.id === p.id, ms),
    );
    assert.equal(got.data.postCreated.title, post.title);
    assert.equal(got.data.postCreated.author.username, user.name);

    const { data } = await onB.apollo.mutate({ mutation: ops.Logout });
    assert.equal(data.logout, true);
    const reason = await ended.waitFor((v) => v.data?.sessionEnded, 5000);
    assert.deepEqual(reason, { data: { sessionEnded: 'LOGGED_OUT' } });
    assert.equal((await within(live.closed, 5000, 'the socket on A to close')).code, 4401);
  });
});
