//! SQLite's own set-up: the connection types (reads run in place, writes
//! on the blocking pool) and the process-wide configuration that needs
//! SQLite's C API.

use diesel::SqliteConnection;
use diesel_async::sync_connection_wrapper::{SpawnBlocking, SyncConnectionWrapper};
use futures_util::FutureExt;

/// An SQLite connection for reads: diesel's sync connection, run in place.
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection, InPlace>;
/// The SQLite connection for writes, run on tokio's blocking pool: a write
/// may wait for the file's lock (another process, a checkpoint), and must
/// not stall the async threads while it does.
pub type SqliteWriteConn = SyncConnectionWrapper<SqliteConnection>;

/// Runs each SQLite call on the task's own thread instead of tokio's
/// blocking pool. A read on a local file takes microseconds; handing it to
/// another thread and back costs more than that (two futex wake-ups), and
/// was most of a signed-in request's time. In WAL mode readers never wait
/// for writers, so only reads run this way.
pub struct InPlace;

impl SpawnBlocking for InPlace {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<R, Box<dyn std::error::Error + Send + Sync + 'static>>,
    >
    where
        R: Send + 'static,
    {
        std::future::ready(Ok(task())).boxed()
    }

    fn get_runtime() -> Self {
        Self
    }
}

/// Sets SQLite up for this process, once: no mutexes it does not need, and
/// every connection keeps one query plan per statement, whatever values are
/// bound (`SQLITE_DBCONFIG_ENABLE_QPSG`).
///
/// Without it, the bundled SQLite (built with STAT4) marks a statement for
/// re-preparation whenever a parameter the planner looked at is re-bound —
/// diesel's `LIMIT ?` is one — so every execution compiled its SQL again,
/// which was a quarter of a signed-in request's time. There is no pragma for
/// this setting, so it is applied through SQLite's auto-extension hook,
/// which runs for each new connection.
pub(super) fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` runs before SQLite is initialized (this
        // is the first SQLite call the process makes; later calls would only
        // be refused). `enable_qpsg` has the signature SQLite expects of an
        // auto-extension entry point and lives for the whole program.
        unsafe {
            // Each connection is used by one thread at a time (the pool lends
            // it out), so SQLite's per-connection mutex is redundant; memory
            // statistics would take a global mutex on every allocation.
            let codes = [
                libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD),
                libsqlite3_sys::sqlite3_config(
                    libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
                    0 as std::os::raw::c_int,
                ),
                libsqlite3_sys::sqlite3_auto_extension(Some(enable_qpsg)),
            ];
            if codes.iter().any(|&code| code != libsqlite3_sys::SQLITE_OK) {
                tracing::warn!(
                    ?codes,
                    "SQLite was set up before blogql could configure it; it runs slower"
                );
            }
        }
    });
}

/// SQLite's auto-extension entry point: turns on the query planner
/// stability guarantee for the new connection `db`.
unsafe extern "C" fn enable_qpsg(
    db: *mut libsqlite3_sys::sqlite3,
    _error: *mut *mut std::os::raw::c_char,
    _api: *const libsqlite3_sys::sqlite3_api_routines,
) -> std::os::raw::c_int {
    // SAFETY: SQLite passes a valid, open connection; this option takes an
    // int (1 = on) and an optional int pointer for the resulting state.
    unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::os::raw::c_int,
            std::ptr::null_mut::<std::os::raw::c_int>(),
        );
    }
    libsqlite3_sys::SQLITE_OK
}
