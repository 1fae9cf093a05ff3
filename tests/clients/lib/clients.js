// The clients as a web app sets them up. The README's "Apollo Client
// setup" and "urql setup" show this code; the tests use it, so the README
// stays true.
//
// Differences from a browser, all in what is passed in, never in the
// setup itself: `fetch` is a cookie-aware fetch (a browser has its jar),
// and the WebSocket is the `ws` package with the cookie and Origin put in
// the upgrade's headers (a browser sends both by itself).

import { createHash } from 'node:crypto';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { isSubscriptionOperation } from '@apollo/client/utilities';
import { Client, cacheExchange, fetchExchange, subscriptionExchange } from '@urql/core';
import { createClient as createWsClient } from 'graphql-ws';
import WebSocket from 'ws';

/** Lowercase hex SHA-256, what Apollo's persisted-query link sends. */
export const sha256 = (text) => createHash('sha256').update(text).digest('hex');

/**
 * The CSRF rule: a JSON POST passes by its Content-Type, but a GET has none,
 * so every request carries this header (a non-empty value is all it takes).
 */
export const CSRF_HEADERS = { 'Apollo-Require-Preflight': 'true' };

/**
 * Apollo Client over HTTP (cookie session), optionally with automatic
 * persisted queries and with subscriptions over `wsClient`.
 */
export function apolloClient({ uri, fetch, persisted = false, useGETForHashedQueries = false, wsClient, headers = {} }) {
  let link = new HttpLink({
    uri,
    credentials: 'include', // send the sid cookie (a browser app on another origin needs it)
    headers: { ...CSRF_HEADERS, ...headers },
    fetch,
  });
  if (persisted) {
    link = new PersistedQueryLink({ sha256, useGETForHashedQueries }).concat(link);
  }
  if (wsClient) {
    link = ApolloLink.split(
      ({ query }) => isSubscriptionOperation(query),
      new GraphQLWsLink(wsClient),
      link,
    );
  }
  return new ApolloClient({ link, cache: new InMemoryCache() });
}

/** urql over HTTP (cookie session), optionally with subscriptions over `wsClient`. */
export function urqlClient({ url, fetch, wsClient, headers = {} }) {
  const exchanges = [cacheExchange, fetchExchange];
  if (wsClient) {
    exchanges.push(
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || '' };
          return {
            subscribe(sink) {
              return { unsubscribe: wsClient.subscribe(input, sink) };
            },
          };
        },
      }),
    );
  }
  return new Client({
    url,
    exchanges,
    fetch,
    // urql sends queries as GET while the URL stays short (preferGetMethod):
    // a GET has no Content-Type, so it needs the CSRF header.
    fetchOptions: { credentials: 'include', headers: { ...CSRF_HEADERS, ...headers } },
  });
}

/**
 * The `ws` WebSocket with the headers a browser would add to the upgrade:
 * the cookie its jar holds for the server, and its page's Origin.
 */
export function browserWebSocket({ cookieHeader, origin }) {
  return class BrowserWebSocket extends WebSocket {
    constructor(address, protocols) {
      const headers = {};
      const cookie = cookieHeader?.(String(address));
      if (cookie) headers.Cookie = cookie;
      super(address, protocols, { headers, origin });
    }
  };
}

/**
 * A graphql-ws client for `url` (ws://…/graphql/ws). `lazy: false` keeps
 * the socket open without a subscription, so the server's own close code
 * (4401 when the session ends) is the one the client sees.
 */
export function wsClient({ url, webSocketImpl, ...options }) {
  return createWsClient({ url, webSocketImpl, retryAttempts: 0, lazy: false, ...options });
}
