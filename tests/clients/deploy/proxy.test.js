// The deployment of deploy/ (nginx with TLS in front of two blogql
// instances), driven through the proxy by the real clients. Run by
// tests/deploy/run, which starts nginx and the instances and passes:
//   BLOGQL_DEPLOY_URL        https://localhost:PORT, nginx (also BLOGQL_PUBLIC_URL)
//   BLOGQL_DEPLOY_HTTP_URL   http://localhost:PORT, nginx's plain-HTTP side
//   BLOGQL_DEPLOY_INSTANCES  JSON [{name, ready, launcher, pidfile, rcfile}]:
//                            each instance's /readyz (direct), the script that
//                            starts it as the systemd unit would, its pid, and
//                            the file its exit code lands in once it has exited
//   NODE_EXTRA_CA_CERTS      the throw-away certificate nginx serves
// Not under test/: tests/clients/run does not pick it up.
//
// Every client connects from 127.0.0.2, as a machine other than the proxy
// would (nginx reaches blogql from 127.0.0.1, the trusted proxy), so the
// address blogql records shows whether it read X-Forwarded-For.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import makeFetchCookie from 'fetch-cookie';
import { CookieJar } from 'tough-cookie';
// Node 20's own fetch cannot choose its local address, and Node does not
// export the undici inside it: an undici Agent of the package's own does.
import { Agent, fetch as undiciFetch } from 'undici';
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { gql } from '@apollo/client';
import { apolloClient } from '../lib/clients.js';
import { ops, PostCreated, username, PASSWORD } from '../lib/operations.js';
import { collect, deliver, within } from '../lib/live.js';

const PUBLIC = process.env.BLOGQL_DEPLOY_URL;
const PLAIN = process.env.BLOGQL_DEPLOY_HTTP_URL;
const INSTANCES = JSON.parse(process.env.BLOGQL_DEPLOY_INSTANCES || '[]');
if (!PUBLIC || !PLAIN || INSTANCES.length !== 2) {
  throw new Error('run by tests/deploy/run (BLOGQL_DEPLOY_URL, BLOGQL_DEPLOY_HTTP_URL, BLOGQL_DEPLOY_INSTANCES)');
}
const GRAPHQL = `${PUBLIC}/graphql`;
const WS = `${PUBLIC.replace(/^https/, 'wss')}/graphql/ws`;
const CLIENT_ADDRESS = '127.0.0.2';

const agent = new Agent({ localAddress: CLIENT_ADDRESS });
after(() => agent.close());

/** fetch from the client machine (127.0.0.2), recording each Set-Cookie. */
const setCookies = [];
async function clientFetch(input, init = {}) {
  const response = await undiciFetch(input, { ...init, dispatcher: agent });
  setCookies.push(...response.headers.getSetCookie());
  return response;
}

/** A browser: its own cookie jar, and Apollo Client through the proxy. */
function browser() {
  const jar = new CookieJar();
  const fetch = makeFetchCookie(clientFetch, jar);
  return {
    jar,
    fetch,
    apollo: apolloClient({ uri: GRAPHQL, fetch }),
    cookieHeader: () => jar.getCookieStringSync(PUBLIC),
  };
}

async function register(web, name = username('dep')) {
  const { data } = await web.apollo.mutate({
    mutation: ops.Register,
    variables: { input: { username: name, password: PASSWORD } },
  });
  return data.register;
}

/** The WebSocket of a browser on the public page: its cookie, its Origin, from 127.0.0.2. */
function browserWebSocket(web) {
  return class extends WebSocket {
    constructor(address, protocols) {
      const headers = {};
      const cookie = web?.cookieHeader();
      if (cookie) headers.Cookie = cookie;
      super(address, protocols, { headers, origin: PUBLIC, localAddress: CLIENT_ADDRESS });
    }
  };
}

const Sessions = gql`
  query DeploySessions {
    sessions {
      id
      current
      ipAddress
    }
  }
`;

test('plain HTTP is redirected to HTTPS, except for certificate challenges', async () => {
  const response = await undiciFetch(`${PLAIN}/graphql`, { redirect: 'manual', dispatcher: agent });
  assert.equal(response.status, 301);
  assert.match(response.headers.get('location'), /^https:\/\/localhost(:\d+)?\/graphql$/);
  // certbot --webroot renews through plain HTTP: not redirected (404 here: no such token).
  const challenge = await undiciFetch(`${PLAIN}/.well-known/acme-challenge/no-such-token`, {
    redirect: 'manual',
    dispatcher: agent,
  });
  assert.equal(challenge.status, 404);
});

test('the sid cookie set through the proxy is Secure, HttpOnly and SameSite=Lax', async () => {
  const web = browser();
  setCookies.length = 0;
  const user = await register(web);
  const sid = setCookies.find((header) => header.startsWith('sid='));
  assert.ok(sid, `register set no sid cookie: ${JSON.stringify(setCookies)}`);
  const attributes = sid.split(';').slice(1).map((part) => part.trim().toLowerCase());
  assert.ok(attributes.includes('secure'), `not Secure: ${sid.replace(/=[^;]*/, '=…')}`);
  assert.ok(attributes.includes('httponly'), 'not HttpOnly');
  assert.ok(attributes.includes('samesite=lax'), 'not SameSite=Lax');
  // And the browser sends it back over https:// (a Secure cookie would not
  // go over plain HTTP): the next request is signed in.
  const { data } = await web.apollo.query({ query: ops.Me, fetchPolicy: 'network-only' });
  assert.equal(data.me.username, user.username);
});

test("sessions records the client's address, not the proxy's, and a forged X-Forwarded-For changes nothing", async () => {
  const web = browser();
  const name = username('addr');
  await register(web, name);
  // A second sign-in of the same user that claims to come from elsewhere:
  // nginx appends the real address, and blogql believes only what its
  // trusted proxy (127.0.0.1) wrote.
  const forger = browser();
  await forger.apollo.mutate({
    mutation: ops.Login,
    variables: { input: { username: name, password: PASSWORD } },
    context: { headers: { 'X-Forwarded-For': '203.0.113.9' } },
  });
  const { data } = await web.apollo.query({ query: Sessions, fetchPolicy: 'network-only' });
  assert.equal(data.sessions.length, 2);
  for (const session of data.sessions) {
    assert.equal(session.ipAddress, CLIENT_ADDRESS, `session ${session.current ? '(current) ' : ''}address`);
  }
});

test('a subscription over wss:// through the proxy gets a post created over https://', async () => {
  const web = browser();
  await register(web);
  const client = createClient({ url: WS, webSocketImpl: browserWebSocket(web), retryAttempts: 0 });
  try {
    const feed = collect(client, { query: PostCreated.loc.source.body });
    const { post } = await deliver(
      async (i) => {
        const { data } = await web.apollo.mutate({
          mutation: ops.CreatePost,
          variables: { input: { title: `Over the proxy ${i}`, body: 'Sent over HTTPS, heard over WSS.' } },
        });
        return data.createPost;
      },
      (post, ms) => feed.waitFor((value) => value.data?.postCreated?.id === post.id, ms),
    );
    assert.equal(feed.values.find((value) => value.data?.postCreated?.id === post.id).data.postCreated.title, post.title);
    feed.unsubscribe();
  } finally {
    await client.dispose();
  }
});

// --- the rolling restart -------------------------------------------------------

// The defaults are CI's; a soak can raise them (BLOGQL_DEPLOY_RESTARTS=10
// BLOGQL_DEPLOY_BROWSERS=8 BLOGQL_DEPLOY_PAUSE_MS=0 tests/deploy/run).
const setting = (name, value) => Number(process.env[name] ?? value);
/** Signed-in browsers looping `me` and `createPost`. */
const BROWSERS = setting('BLOGQL_DEPLOY_BROWSERS', 4);
const SUBSCRIBERS = 3;
/** Between two rounds of one browser's loop: a steady load, not a flood, on 2 cores. */
const PAUSE_MS = setting('BLOGQL_DEPLOY_PAUSE_MS', 20);
/** How many times both instances are restarted, one after the other. */
const RESTARTS = setting('BLOGQL_DEPLOY_RESTARTS', 1);

/** Waits until `check()` is truthy, every 50 ms, for at most `ms`. */
async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

const readPid = (instance) =>
  existsSync(instance.pidfile) ? Number(readFileSync(instance.pidfile, 'utf8').trim()) || null : null;

/**
 * `systemctl restart blogql@N`: SIGTERM, wait for the exit (code 0 within
 * the 30 s grace), start it again, wait for its /readyz.
 */
async function restart(instance, log) {
  const pid = readPid(instance);
  assert.ok(pid, `${instance.name}: no pid`);
  const stopping = Date.now();
  process.kill(pid, 'SIGTERM');
  await until(() => existsSync(instance.rcfile), 40000, `${instance.name} (pid ${pid}) to exit`);
  const code = readFileSync(instance.rcfile, 'utf8').trim();
  const stoppedMs = Date.now() - stopping;
  assert.equal(code, '0', `${instance.name} exit code after SIGTERM`);
  assert.ok(stoppedMs < 31000, `${instance.name} took ${stoppedMs} ms to stop`);

  const starting = Date.now();
  spawn(instance.launcher, [], { stdio: 'ignore', detached: true }).unref();
  const newPid = await until(() => {
    const now = readPid(instance);
    return now && now !== pid ? now : null;
  }, 5000, `${instance.name} to start`);
  await until(
    () =>
      fetch(instance.ready, { signal: AbortSignal.timeout(2000) })
        .then((response) => response.ok)
        .catch(() => false),
    60000,
    `${instance.name} /readyz`,
  );
  log.push(`${instance.name}: SIGTERM, exited 0 in ${stoppedMs} ms; started again (pid ${newPid}), ready in ${Date.now() - starting} ms`);
}

test('a rolling restart of both instances under load loses no request, session, post or subscriber', { timeout: 60000 + RESTARTS * 120000 }, async () => {
  const stats = { sent: 0, answered: 0, failed: 0, failures: [], anonymous: 0 };
  /** One request of a browser's loop: answered only with data and no error. */
  async function send(what, request, onAnswer) {
    stats.sent++;
    try {
      const result = await request();
      if (result.error || result.errors?.length) throw result.error ?? new Error(JSON.stringify(result.errors));
      stats.answered++;
      onAnswer(result.data);
    } catch (err) {
      stats.failed++;
      stats.failures.push(`${new Date().toISOString()} ${what}: ${err.message}`);
    }
  }

  const browsers = [];
  for (let i = 0; i < BROWSERS; i++) {
    const web = browser();
    const user = await register(web, username(`roll${i}`));
    browsers.push({ web, user, acknowledged: [] });
  }

  // Subscribers as apps configure graphql-ws: retries on (its default
  // backoff), nothing else. Each counts its connections and closes.
  const subscribers = [];
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const subscriber = { connects: 0, closes: [] };
    let ready;
    subscriber.ready = new Promise((done) => (ready = done));
    subscriber.client = createClient({
      url: WS,
      webSocketImpl: browserWebSocket(null),
      lazy: false,
      retryAttempts: 10,
      onNonLazyError: () => {},
      on: {
        connected: () => {
          subscriber.connects++;
          ready();
        },
        closed: (event) => subscriber.closes.push(event?.code),
      },
    });
    subscriber.feed = collect(subscriber.client, { query: PostCreated.loc.source.body });
    subscribers.push(subscriber);
  }
  await within(Promise.all(subscribers.map((s) => s.ready)), 10000, 'the subscribers to connect');

  let running = true;
  const loops = browsers.map(async (b, i) => {
    for (let round = 0; running; round++) {
      await send(
        'me',
        () => b.web.apollo.query({ query: ops.Me, fetchPolicy: 'network-only' }),
        (data) => {
          if (data.me?.username !== b.user.username) stats.anonymous++;
        },
      );
      await send(
        'createPost',
        () =>
          b.web.apollo.mutate({
            mutation: ops.CreatePost,
            variables: { input: { title: `Rolling ${i}.${round}`, body: 'Written while an instance restarts.' } },
          }),
        (data) => b.acknowledged.push(data.createPost.id),
      );
      await sleep(PAUSE_MS);
    }
  });

  const log = [];
  let summary;
  try {
    await sleep(2000);
    for (let round = 0; round < RESTARTS; round++) {
      for (const instance of INSTANCES) {
        await restart(instance, log);
        await sleep(1500); // load on the restarted instance before the next one goes
      }
    }
    await sleep(2000);
  } finally {
    running = false;
    await Promise.all(loops);
  }
  for (const line of log) console.log(line);

  // Every browser still signed in.
  let sessionsLost = 0;
  for (const b of browsers) {
    const { data } = await b.web.apollo.query({ query: ops.Me, fetchPolicy: 'network-only' });
    if (data.me?.username !== b.user.username) sessionsLost++;
  }

  // Every acknowledged post exists: read the whole feed back.
  const acknowledged = browsers.flatMap((b) => b.acknowledged);
  const ids = new Set();
  const titles = new Map(); // each loop title is written once: two posts with one would be a request run twice
  let after = null;
  for (;;) {
    const { data } = await browsers[0].web.apollo.query({
      query: ops.Posts,
      variables: { first: 100, after },
      fetchPolicy: 'network-only',
    });
    for (const { node } of data.posts.edges) {
      ids.add(node.id);
      titles.set(node.title, (titles.get(node.title) ?? 0) + 1);
    }
    if (!data.posts.pageInfo.hasNextPage) break;
    after = data.posts.pageInfo.endCursor;
  }
  const found = acknowledged.filter((id) => ids.has(id)).length;
  const twice = [...titles].filter(([title, count]) => title.startsWith('Rolling ') && count > 1);

  // The subscribers reconnected by themselves: a post made now reaches each.
  const reached = new Set();
  const author = browsers[0].web.apollo;
  for (let attempt = 0; attempt < 20 && reached.size < SUBSCRIBERS; attempt++) {
    const { data } = await author.mutate({
      mutation: ops.CreatePost,
      variables: { input: { title: `After the restarts ${attempt}`, body: 'Every subscriber hears this.' } },
    });
    const id = data.createPost.id;
    await Promise.all(
      subscribers.map((s, i) =>
        s.feed
          .waitFor((value) => value.data?.postCreated?.id === id, 1000)
          .then(() => reached.add(i))
          .catch(() => {}),
      ),
    );
  }
  for (const s of subscribers) await s.client.dispose();

  summary =
    `rolling restart: ${stats.sent} requests sent, ${stats.answered} answered, ${stats.failed} failed, ` +
    `${sessionsLost} sessions lost, ${acknowledged.length} posts acknowledged, ${found} found, ` +
    `subscribers reconnected: ${reached.size}/${SUBSCRIBERS}`;
  console.log(summary);
  console.log(
    `subscribers: ${subscribers.map((s, i) => `#${i} connected ${s.connects} times, closes ${JSON.stringify(s.closes)}`).join('; ')}`,
  );
  console.log(`posts written twice: ${twice.length}`);
  if (stats.failures.length) console.log(`failures:\n  ${stats.failures.slice(0, 20).join('\n  ')}`);

  assert.equal(stats.failed, 0, 'requests failed during the restarts');
  assert.equal(stats.answered, stats.sent);
  assert.equal(stats.anonymous, 0, 'a signed-in request was answered as someone else or anonymous');
  assert.equal(sessionsLost, 0, 'sessions lost');
  assert.ok(acknowledged.length > 0, 'no post was acknowledged: no load ran');
  assert.equal(found, acknowledged.length, 'acknowledged posts missing');
  assert.deepEqual(twice, [], 'createPost requests that ran twice');
  assert.equal(reached.size, SUBSCRIBERS, 'subscribers that did not hear a post made after the restarts');
  for (const [i, s] of subscribers.entries()) {
    // Both instances restarted, so every subscriber's socket was closed at
    // least once and it connected again by itself.
    assert.ok(s.connects >= 2, `subscriber #${i} connected ${s.connects} time(s): its socket was never restarted`);
  }
});
