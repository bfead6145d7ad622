"""The one data-access layer: everything the gateway and the huvudman node read from or write
to PostgreSQL.

- `connector`: `Store`, ingest's pool, every area's queries on it, and `transaction()`.
- One module per area (`events`, `registry`, `registration`, `lifecycle`, `keys`, `audit`,
  `erasure`, `operators`, `outbox`, `supervision`, `alarms`, `arc`, `node`): typed rows and the
  methods that run its statements, from `sql/<area>.sql`.
- `statements`: loading the .sql files; `errors`: what callers catch instead of asyncpg's.
- `migrate` and `migrations/ingest`, `migrations/node`: the schemas, versioned.
"""
