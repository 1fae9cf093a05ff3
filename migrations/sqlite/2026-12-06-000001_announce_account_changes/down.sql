-- Nothing to do on SQLite: its bus is in-process, so nothing is answered
-- from memory there (see src/cache.rs). PostgreSQL's migration of this
-- name announces account changes made in SQL on the bus.
SELECT 1;
