// Helpers for subscriptions: a graphql-ws client for one browser, and a
// subscription whose results are collected so a test can wait for one.

import { browserWebSocket, wsClient } from './clients.js';

/**
 * A graphql-ws client to `server` as `web` (a browser from http.js, or
 * null for no cookie), with the server's own origin unless told otherwise.
 * `connected` resolves at the ack; `closed` with the CloseEvent.
 */
export function connect(server, web, { origin = server.url } = {}) {
  let onConnected;
  let onRefused;
  let onClosed;
  const connected = new Promise((done, fail) => {
    onConnected = done;
    onRefused = fail;
  });
  connected.catch(() => {}); // a test that never waits for the ack has no use for its failure
  const closed = new Promise((done) => (onClosed = done));
  const client = wsClient({
    url: server.ws,
    webSocketImpl: browserWebSocket({ cookieHeader: web?.cookieHeader, origin }),
    // Without a subscription, a lazy: false client reports failures here;
    // `connected` and `closed` carry them instead.
    onNonLazyError: () => {},
    on: {
      connected: () => onConnected(),
      error: (error) => onRefused(new Error(`WebSocket to ${server.ws}: ${error?.message ?? error}`)),
      closed: (event) => {
        onRefused(new Error(`WebSocket to ${server.ws} closed before the ack: ${event?.code} ${event?.reason ?? ''}`));
        onClosed(event);
      },
    },
  });
  return { client, connected, closed };
}

/** Subscribes and keeps every result; `waitFor(predicate)` resolves with the first match. */
export function collect(client, payload) {
  const values = [];
  let wake = () => {};
  let onEnd;
  const ended = new Promise((done) => (onEnd = done));
  const unsubscribe = client.subscribe(payload, {
    next: (value) => {
      values.push(value);
      wake();
    },
    error: (error) => {
      onEnd({ error });
      wake();
    },
    complete: () => {
      onEnd({ complete: true });
      wake();
    },
  });
  return { values, ended, unsubscribe, waitFor: (predicate, ms) => waitFor(values, predicate, ms, (w) => (wake = w)) };
}

/** Waits until `values` holds one that `predicate` accepts. */
export async function waitFor(values, predicate, ms = 10000, setWake) {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = values.find(predicate);
    if (found) return found;
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out after ${ms} ms; got ${JSON.stringify(values)}`);
    await new Promise((done) => {
      const timer = setTimeout(done, Math.min(left, 100));
      setWake?.(() => {
        clearTimeout(timer);
        done();
      });
    });
  }
}

/** Rejects after `ms` with `what`, or resolves with `promise`'s value. */
export function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, fail) => {
      timer = setTimeout(() => fail(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]);
}

/**
 * A subscription is live on the server only some time after the client
 * sent it, and the protocol has no acknowledgement: create posts until the
 * subscriber has seen one (`seen(post)`), at most `attempts` times.
 */
export async function deliver(create, seen, attempts = 20) {
  for (let i = 0; i < attempts; i++) {
    const post = await create(i);
    const got = await seen(post, 500).catch(() => null);
    if (got) return { post, got };
  }
  throw new Error(`no postCreated arrived after ${attempts} posts`);
}
