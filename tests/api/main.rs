//! The integration suite: the real server over HTTP, as a browser sees it.
//! Runs on SQLite, or on PostgreSQL when `BLOGQL_TEST_DATABASE_URL` is set;
//! sessions also in Redis when `BLOGQL_TEST_REDIS_URL` is set.

#[macro_use]
mod support;

mod accounts;
mod attacks;
mod backends;
mod devices;
mod editing;
mod events;
mod hardening;
mod http;
mod instances;
mod limits;
mod live;
mod operations;
mod persisted;
mod posts;
mod program;
mod redis_store;
mod remembered;
mod roles;
mod sessions;
mod tokens;
mod trusted;
