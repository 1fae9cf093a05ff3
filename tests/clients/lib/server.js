// The blogql binary as an operator runs it: a child process on a free
// loopback port, a database of its own, waited for until /readyz answers,
// stopped (SIGTERM, then SIGKILL) at the end.
//
// The database is a fresh SQLite file in a temporary directory, or, when
// DATABASE_URL names a PostgreSQL server, a database created on it for this
// server (or these servers) and dropped afterwards. With REDIS_URL, the
// servers keep sessions there under a key prefix of their own
// (BLOGQL_REDIS_KEY_PREFIX), deleted afterwards. This is what the Rust suite's
// tests/api/support/database.rs does; the names start `blogql_test_` so that
// .ci/run drops what a killed run left.

import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';

const run = promisify(execFile);
const HERE = new URL('.', import.meta.url).pathname;
/** The repository's root (tests/clients/lib/../../..). */
export const REPO = resolve(HERE, '..', '..', '..');

/** The binary under test: BLOGQL_BIN, else the debug build. */
export function blogqlBin() {
  return resolve(REPO, process.env.BLOGQL_BIN || 'target/debug/blogql');
}

/** The PostgreSQL server to make databases on, if this run has one. */
export function postgresServer() {
  const url = process.env.DATABASE_URL;
  return url && /^postgres(ql)?:\/\//.test(url) ? url : null;
}

/** The Redis to keep sessions in, if this run has one. */
export function redisUrl() {
  return process.env.REDIS_URL || null;
}

/** Which backends this run has, for test names and skip messages. */
export function backendName() {
  if (!postgresServer()) return 'SQLite';
  return redisUrl() ? 'PostgreSQL + Redis' : 'PostgreSQL';
}

let next = 0;
function unique(kind, sep) {
  return [kind, process.pid, next++, randomBytes(4).toString('hex')].join(sep);
}

/**
 * A database of its own (and a Redis key prefix of its own), for one or
 * several servers. `env` points a blogql process at it; `drop()` removes it.
 */
export async function createDatabase() {
  const env = {};
  const drops = [];
  const server = postgresServer();
  if (server) {
    const name = unique('blogql_test_js', '_');
    await run('psql', [server, '-qXc', `CREATE DATABASE "${name}"`]);
    const url = new URL(server);
    url.pathname = `/${name}`;
    env.DATABASE_URL = url.toString();
    drops.push(() =>
      run('psql', [server, '-qXc', `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`]),
    );
  } else {
    const dir = await mkdtemp(join(tmpdir(), 'blogql-clients-'));
    env.DATABASE_URL = `sqlite://${join(dir, 'blogql.db')}`;
    drops.push(() => rm(dir, { recursive: true, force: true }));
  }
  const redis = redisUrl();
  if (redis) {
    const prefix = unique('bqjs', '-').slice(0, 32);
    env.REDIS_URL = redis;
    env.BLOGQL_REDIS_KEY_PREFIX = prefix;
    // Every key blogql writes expires by itself: this only tidies up sooner.
    drops.push(async () => {
      const { stdout } = await run('redis-cli', ['-u', redis, '--scan', '--pattern', `{${prefix}}:*`]);
      const keys = stdout.split('\n').filter(Boolean);
      if (keys.length) await run('redis-cli', ['-u', redis, 'DEL', ...keys]);
    });
  }
  return {
    env,
    async drop() {
      for (const drop of drops) await drop().catch(() => {});
    },
  };
}

async function freePort() {
  return new Promise((done, fail) => {
    const listener = createServer();
    listener.unref();
    listener.on('error', fail);
    listener.listen(0, '127.0.0.1', () => {
      const { port } = listener.address();
      listener.close(() => done(port));
    });
  });
}

const running = new Set();
// A test process that ends, crashes or is killed takes its servers with it.
const killAll = () => {
  for (const child of running) child.kill('SIGKILL');
};
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    killAll();
    process.kill(process.pid, signal);
  });
}

/**
 * Starts `blogql serve` on `database` with the extra settings in `env`,
 * and resolves once GET /readyz answers 200. Rejects with the server's log
 * if it exits first or never gets ready.
 */
export async function startServer(database, env = {}) {
  // The free port is free when asked, not necessarily when blogql binds it.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(database, env);
    } catch (err) {
      if (attempt >= 3 || !/BLOGQL_BIND|in use/i.test(err.message)) throw err;
    }
  }
}

async function startOnce(database, env) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const cwd = await mkdtemp(join(tmpdir(), 'blogql-cwd-')); // no .env of the repository's
  const child = spawn(blogqlBin(), ['serve'], {
    cwd,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      RUST_LOG: process.env.BLOGQL_CLIENTS_RUST_LOG || 'warn',
      BLOGQL_BIND: `127.0.0.1:${port}`,
      BLOGQL_PUBLIC_URL: url,
      ...database.env,
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  running.add(child);
  let log = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    log = (log + chunk).slice(-20000);
  });
  let exited = null;
  const exit = new Promise((done) =>
    child.on('exit', (code, signal) => {
      running.delete(child);
      exited = { code, signal };
      done(exited);
    }),
  );
  const server = {
    url,
    graphql: `${url}/graphql`,
    ws: `ws://127.0.0.1:${port}/graphql/ws`,
    log: () => log,
    /** Resolves with {code, signal} once the process has exited. */
    exited: () => exit,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exit;
        clearTimeout(timer);
      }
      await rm(cwd, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    if (exited) {
      throw new Error(`blogql exited (${JSON.stringify(exited)}) before it was ready:\n${log}`);
    }
    const ready = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) }).catch(() => null);
    if (ready?.ok) return server;
    await new Promise((done) => setTimeout(done, 50));
  }
  await server.stop();
  throw new Error(`blogql never became ready on ${url}:\n${log}`);
}

/**
 * One database and `count` servers sharing it (and its Redis prefix), for a
 * test file; `stop()` stops them all and drops the database.
 */
export async function startServers(count = 1, env = {}) {
  const database = await createDatabase();
  const servers = [];
  try {
    for (let i = 0; i < count; i++) servers.push(await startServer(database, env));
  } catch (err) {
    await Promise.all(servers.map((server) => server.stop()));
    await database.drop();
    throw err;
  }
  return {
    database,
    servers,
    async stop() {
      await Promise.all(servers.map((server) => server.stop()));
      await database.drop();
    },
  };
}

/** Runs blogql with `env` and no readiness wait: for start-up refusals. */
export async function runToExit(database, env, timeoutMs = 20000) {
  const port = await freePort();
  const cwd = await mkdtemp(join(tmpdir(), 'blogql-cwd-'));
  try {
    const { stderr } = await run(blogqlBin(), ['serve'], {
      cwd,
      timeout: timeoutMs,
      env: { PATH: process.env.PATH, RUST_LOG: 'warn', BLOGQL_BIND: `127.0.0.1:${port}`, ...database.env, ...env },
    });
    return { code: 0, stderr };
  } catch (err) {
    return { code: err.code, signal: err.signal, stderr: String(err.stderr ?? '') };
  } finally {
    await rm(cwd, { recursive: true, force: true });
  }
}
