// Trusted documents (BLOGQL_TRUSTED_DOCUMENTS): the manifest is the one
// graphql-codegen's client preset wrote (src/gql/persisted-documents.json,
// `npm run codegen`), and the operations are run by id, as an app built
// with codegen runs them. Written to the contract's "Trusted documents".

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, print } from 'graphql';
import { startServer, createDatabase, runToExit } from '../lib/server.js';
import { browser, recordingFetch, post, get, codes } from '../lib/http.js';
import { apolloClient, sha256, CSRF_HEADERS } from '../lib/clients.js';
import { ops, username, PASSWORD } from '../lib/operations.js';

const MANIFEST = new URL('../src/gql/persisted-documents.json', import.meta.url).pathname;

/** The codegen manifest: `sha256:<hex>` -> codegen's print of the document. */
function manifest() {
  if (!existsSync(MANIFEST)) throw new Error(`${MANIFEST} is missing: run \`npm run codegen\` first`);
  return JSON.parse(readFileSync(MANIFEST, 'utf8'));
}

/** The listed documents by operation name: `{id, hex, text, document}`. */
function listed() {
  const byName = {};
  for (const [id, text] of Object.entries(manifest())) {
    const document = parse(text);
    const name = document.definitions[0].name.value;
    // As codegen's generated documents carry it (embedHashInDocument).
    document.__meta__ = { hash: id };
    byName[name] = { id, hex: id.replace(/^sha256:/, ''), text, document };
  }
  return byName;
}

describe('trusted documents', () => {
  let database;
  let server;
  let docs;
  before(async () => {
    docs = listed();
    database = await createDatabase();
    server = await startServer(database, { BLOGQL_TRUSTED_DOCUMENTS: MANIFEST });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  test('the codegen manifest lists each document under the SHA-256 of its text', () => {
    for (const { hex, text } of Object.values(docs)) assert.equal(sha256(text), hex);
    for (const name of ['Register', 'Login', 'Me', 'CreatePost', 'Posts', 'UpdatePost', 'Logout', 'PostById']) {
      assert.ok(docs[name], `${name} is listed`);
    }
  });

  test('a web app runs its listed operations by documentId, by POST and by GET', async () => {
    const web = browser();
    const name = username('trusted');
    const registered = await post(web.fetch, server.graphql, {
      documentId: docs.Register.id, // "sha256:<hex>"
      variables: { input: { username: name, password: PASSWORD } },
    });
    assert.equal(registered.status, 200, JSON.stringify(registered.body));
    assert.equal(registered.body.data.register.username, name);

    const created = await post(web.fetch, server.graphql, {
      documentId: docs.CreatePost.hex, // the bare hex
      variables: { input: { title: 'Listed', body: 'Run by id.' } },
    });
    assert.equal(created.body.data.createPost.author.username, name);

    const me = await get(web.fetch, server.graphql, { documentId: docs.Me.id }, CSRF_HEADERS);
    assert.equal(me.status, 200);
    assert.equal(me.body.data.me.username, name);

    const page = await get(web.fetch, server.graphql, { documentId: docs.Posts.id, variables: { first: 1 } }, CSRF_HEADERS);
    assert.equal(page.body.data.posts.edges[0].node.id, created.body.data.createPost.id);

    const post1 = await post(web.fetch, server.graphql, {
      documentId: docs.PostById.id,
      variables: { id: created.body.data.createPost.id },
    });
    assert.equal(post1.body.data.post.title, 'Listed');

    const out = await post(web.fetch, server.graphql, { documentId: docs.Logout.id });
    assert.equal(out.body.data.logout, true);
  });

  test('Apollo Client sends the manifest id as its persisted-query hash, and nothing else', async () => {
    const web = browser();
    const recorded = recordingFetch(web.fetch);
    const client = apolloClient({ uri: server.graphql, fetch: recorded.fetch, trustedDocuments: true });
    const name = username('trusted');
    const { data } = await client.mutate({
      mutation: docs.Register.document,
      variables: { input: { username: name, password: PASSWORD } },
    });
    assert.equal(data.register.username, name);
    const me = await client.query({ query: docs.Me.document, fetchPolicy: 'network-only' });
    assert.equal(me.data.me.username, name);
    assert.equal(recorded.requests.length, 2, 'one request each: every hash was listed');
    for (const request of recorded.requests) {
      assert.equal(request.body.query, undefined, 'no text is sent');
      assert.match(request.body.extensions.persistedQuery.sha256Hash, /^[0-9a-f]{64}$/);
    }
  });

  test('the exact listed text runs; any other text is QUERY_NOT_IN_SAFELIST', async () => {
    const listedText = await post(fetch, server.graphql, { query: docs.Me.text });
    assert.equal(listedText.status, 200);
    assert.equal(listedText.body.data.me, null);

    // The same operation as spelled in src/operations.graphql: not the listed text.
    for (const query of [print(ops.Me), '{ me { id } }', '{ posts { edges { node { body } } } }', 'not even GraphQL']) {
      const refused = await post(fetch, server.graphql, { query });
      assert.equal(refused.status, 400, query);
      assert.deepEqual(codes(refused.body), ['QUERY_NOT_IN_SAFELIST'], query);
      assert.equal(refused.body.data, undefined);
    }
  });

  test('an id the manifest does not list is PERSISTED_QUERY_NOT_IN_LIST, however it is named', async () => {
    const stranger = sha256('query Stranger { me { id } }');
    for (const payload of [
      { documentId: `sha256:${stranger}` },
      { documentId: stranger },
      { extensions: { persistedQuery: { version: 1, sha256Hash: stranger } } },
    ]) {
      const refused = await post(fetch, server.graphql, payload);
      assert.equal(refused.status, 400, JSON.stringify(payload));
      assert.deepEqual(codes(refused.body), ['PERSISTED_QUERY_NOT_IN_LIST'], JSON.stringify(payload));
    }
    const byGet = await get(fetch, server.graphql, { documentId: stranger }, CSRF_HEADERS);
    assert.equal(byGet.status, 400);
    assert.deepEqual(codes(byGet.body), ['PERSISTED_QUERY_NOT_IN_LIST']);
  });

  test('automatic persisted queries never add to the manifest', async () => {
    const text = 'query NotListed { posts(first: 1) { edges { cursor } } }';
    const extensions = { persistedQuery: { version: 1, sha256Hash: sha256(text) } };
    const offered = await post(fetch, server.graphql, { query: text, extensions });
    assert.equal(offered.status, 400);
    assert.equal(offered.body.data, undefined, 'nothing ran');
    const again = await post(fetch, server.graphql, { extensions });
    assert.equal(again.status, 400);
    assert.deepEqual(codes(again.body), ['PERSISTED_QUERY_NOT_IN_LIST']);
  });

  test('GET and CSRF rules apply to the document an id names', async () => {
    const mutation = await get(fetch, server.graphql, { documentId: docs.Logout.id }, CSRF_HEADERS);
    assert.equal(mutation.status, 405);
    assert.deepEqual(codes(mutation.body), ['METHOD_NOT_ALLOWED']);
    const bare = await get(fetch, server.graphql, { documentId: docs.Me.id });
    assert.equal(bare.status, 400);
    assert.deepEqual(codes(bare.body), ['BAD_REQUEST']);
  });
});

describe('trusted documents: manifests and start-up', () => {
  let dir;
  let database;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blogql-manifest-'));
    database = await createDatabase();
  });
  after(async () => {
    await database?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("Apollo's persisted query manifest format is loaded too", async () => {
    const docs = listed();
    const operations = Object.values(docs).map(({ hex, text, document }) => ({
      id: hex,
      name: document.definitions[0].name.value,
      type: document.definitions[0].operation,
      body: text,
    }));
    const path = join(dir, 'persisted-query-manifest.json');
    await writeFile(path, JSON.stringify({ format: 'apollo-persisted-query-manifest', version: 1, operations }));
    const server = await startServer(database, { BLOGQL_TRUSTED_DOCUMENTS: path });
    try {
      const byId = await post(fetch, server.graphql, { documentId: docs.Me.id });
      assert.equal(byId.body.data.me, null);
      const byHash = await post(fetch, server.graphql, {
        extensions: { persistedQuery: { version: 1, sha256Hash: docs.Posts.hex } },
        variables: { first: 1 },
      });
      assert.ok(Array.isArray(byHash.body.data.posts.edges));
      const other = await post(fetch, server.graphql, { query: '{ me { id } }' });
      assert.deepEqual(codes(other.body), ['QUERY_NOT_IN_SAFELIST']);
    } finally {
      await server.stop();
    }
  });

  test('a manifest with a document that does not validate stops start-up: one line, exit 2', async () => {
    const bad = 'query Gone { me { nickname } }';
    const id = `sha256:${sha256(bad)}`;
    const path = join(dir, 'stale.json');
    await writeFile(path, JSON.stringify({ ...manifest(), [id]: bad }));
    const { code, stderr } = await runToExit(database, { BLOGQL_TRUSTED_DOCUMENTS: path });
    assert.equal(code, 2, stderr);
    assert.match(stderr, /BLOGQL_TRUSTED_DOCUMENTS/);
    assert.match(stderr, new RegExp(sha256(bad)), 'the line names the document');
  });

  test('a missing or unreadable manifest stops start-up: exit 2', async () => {
    for (const [file, content] of [['missing.json', null], ['garbage.json', 'not json'], ['array.json', '[]']]) {
      const path = join(dir, file);
      if (content !== null) await writeFile(path, content);
      const { code, stderr } = await runToExit(database, { BLOGQL_TRUSTED_DOCUMENTS: path });
      assert.equal(code, 2, `${file}: ${stderr}`);
      assert.match(stderr, /BLOGQL_TRUSTED_DOCUMENTS/, file);
    }
  });
});
