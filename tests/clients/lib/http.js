// Fetch as a browser does it: a cookie jar per "browser" (fetch-cookie over
// tough-cookie, which follows RFC 6265: cookies are per host, not per port,
// so two servers on 127.0.0.1 share them as two instances behind one name
// would). Plus a fetch that records what it sent, to count requests.

import makeFetchCookie from 'fetch-cookie';
import { CookieJar } from 'tough-cookie';

/** A new browser: an empty cookie jar and a fetch that uses it. */
export function browser() {
  const jar = new CookieJar();
  return {
    jar,
    fetch: makeFetchCookie(fetch, jar),
    /** The `Cookie` header this browser would send to `url`. */
    cookieHeader: (url) => jar.getCookieStringSync(url.replace(/^ws/, 'http')),
    /** The `sid` cookie's value for `url`, or undefined. */
    sid: (url) => jar.getCookiesSync(url).find((cookie) => cookie.key === 'sid')?.value,
  };
}

/**
 * Wraps `inner` so that every request is recorded as
 * `{method, url, body (parsed JSON or null), status}` in `requests`.
 */
export function recordingFetch(inner = fetch) {
  const requests = [];
  const wrapped = async (input, init = {}) => {
    const url = typeof input === 'string' ? input : input.url;
    const entry = {
      method: (init.method || 'GET').toUpperCase(),
      url: new URL(url),
      body: typeof init.body === 'string' ? JSON.parse(init.body) : null,
      headers: new Headers(init.headers),
    };
    requests.push(entry);
    const response = await inner(input, init);
    entry.status = response.status;
    return response;
  };
  return { fetch: wrapped, requests };
}

/**
 * One GraphQL request with plain fetch: `{status, headers, body}`. For
 * what no client library sends on purpose (refusals, ids, bad hashes).
 */
export async function post(fetchImpl, url, payload, headers = {}) {
  const response = await fetchImpl(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(payload),
  });
  return { status: response.status, headers: response.headers, body: await response.json() };
}

/** A GraphQL GET with `params` (objects JSON-encoded): `{status, headers, body}`. */
export async function get(fetchImpl, url, params, headers = {}) {
  const target = new URL(url);
  for (const [name, value] of Object.entries(params)) {
    target.searchParams.set(name, typeof value === 'string' ? value : JSON.stringify(value));
  }
  const response = await fetchImpl(target, { headers });
  return { status: response.status, headers: response.headers, body: await response.json() };
}

/** The `extensions.code` of each error of a response body. */
export function codes(body) {
  return (body.errors ?? []).map((error) => error.extensions?.code);
}
