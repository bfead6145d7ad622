"""Least privilege in the database (migration 0015, docs/operations.md): the gateway runs as a
member of gateway_runtime, which can do its work and nothing more. Every other test already runs
the gateway, its commands and the tests' store as that role, so a missing grant fails there;
here, each thing it must not do is tried and refused, and the whole matrix of grants is pinned,
so a new table cannot arrive without a decision about it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.store.connector import Store
from gateway.store.migrate import MigrationError, migrate
from gateway.store.node import migrate_node
from gateway.store.privileges import RUNTIME_ROLE, dsn_as

pytestmark = pytest.mark.integration

S, INS, U, D = "SELECT", "INSERT", "UPDATE", "DELETE"
# Every table and sequence of the gateway's schema, and what gateway_runtime may do to it.
GRANTS: dict[str, set[str]] = {
    "huvudman": {S, INS, U}, "device": {S, INS, U}, "assignment": {S, INS, U},
    "huvudman_key": {S, INS, U}, "device_seen": {S, INS, U}, "operator": {S, INS, U},
    "data_key": {S, INS, D}, "event_copy": {S, INS, D},
    "delivery": {S, INS, U, D},
    "event": {S, INS}, "incident": {S, INS}, "arc_attempt": {S, INS},
    "audit_log": {S}, "schema_migration": {S},
    "node_schema_migration": set(),  # a huvudman node's, where one shares the database
    "delivery_id_seq": {"USAGE", S}, "incident_id_seq": {"USAGE", S},
    "arc_attempt_id_seq": {"USAGE", S},
}
# Reached only through their parents: no grant of their own.
PARTITION = r"^(event|event_copy)_(default|[0-9]{4}_[0-9]{2})$"


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


async def test_the_gateway_runs_as_a_runtime_member_not_the_owner(store: Store) -> None:
    standing = await store.privileges.standing()
    assert (standing.superuser, standing.owner, standing.runtime) == (False, False, True)
    assert standing.too_powerful() is None


async def test_the_grants_are_exactly_the_matrix(owner_database_url: str) -> None:
    conn = await asyncpg.connect(owner_database_url)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, c.relkind::text AS relkind FROM pg_class c"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'S', 'v')"
            " AND c.relname !~ $1", PARTITION)
        actual: dict[str, set[str]] = {}
        for r in rows:
            kinds = ("USAGE", S, U) if r["relkind"] == "S" else (
                S, INS, U, D, "TRUNCATE", "REFERENCES", "TRIGGER")
            fn = "has_sequence_privilege" if r["relkind"] == "S" else "has_table_privilege"
            actual[r["relname"]] = {k for k in kinds if await conn.fetchval(
                f"SELECT {fn}($1, $2, $3)", RUNTIME_ROLE, r["relname"], k)}
        # The node's migration table exists only where a node shares the database.
        assert set(GRANTS) - set(actual) <= {"node_schema_migration"}
        assert actual == {k: v for k, v in GRANTS.items() if k in actual}
        partitions = await conn.fetch(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relname ~ $1", PARTITION)
        assert partitions and not [p["relname"] for p in partitions if await conn.fetchval(
            "SELECT has_table_privilege($1, $2, 'SELECT')", RUNTIME_ROLE, p["relname"])]
    finally:
        await conn.close()


@pytest.mark.parametrize(("sql", "refusal"), [
    # The audit log: read, appended to only through audit_append.
    ("UPDATE audit_log SET actor = 'x'", asyncpg.InsufficientPrivilegeError),
    ("DELETE FROM audit_log", asyncpg.InsufficientPrivilegeError),
    ("TRUNCATE audit_log", asyncpg.InsufficientPrivilegeError),
    ("INSERT INTO audit_log VALUES (1000000, now(), 'a', 'b', 'c', '{}', '', '')",
     asyncpg.InsufficientPrivilegeError),
    ("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update",
     asyncpg.InsufficientPrivilegeError),
    ("DROP TRIGGER audit_log_no_update ON audit_log", asyncpg.InsufficientPrivilegeError),
    ("ALTER FUNCTION audit_log_is_append_only() RENAME TO x",
     asyncpg.InsufficientPrivilegeError),
    ("CREATE OR REPLACE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql"
     " AS $$ BEGIN RETURN NULL; END $$", asyncpg.InsufficientPrivilegeError),
    # Stored readings are never changed; retention drops whole partitions.
    ("UPDATE event SET device_id = 'x'", asyncpg.InsufficientPrivilegeError),
    ("DELETE FROM event", asyncpg.InsufficientPrivilegeError),
    ("UPDATE event_copy SET key_id = key_id", asyncpg.InsufficientPrivilegeError),
    ("DROP TABLE event_default", asyncpg.InsufficientPrivilegeError),
    ("ALTER TABLE event DETACH PARTITION event_default", asyncpg.InsufficientPrivilegeError),
    ("SELECT drop_event_partition('audit_log')", asyncpg.InvalidParameterValueError),
    # Retention's drop may not reach what was stored recently, nor its creation run wild.
    ("SELECT drop_event_partition('event_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM'))",
     asyncpg.InvalidParameterValueError),
    ("SELECT drop_event_partition('event_copy_' || "
     "to_char(now() AT TIME ZONE 'UTC' - interval '1 month', 'YYYY_MM'))",
     asyncpg.InvalidParameterValueError),
    ("SELECT drop_event_partition('event_2999_01')", asyncpg.InvalidParameterValueError),
    ("SELECT ensure_event_partitions(0, 100000)", asyncpg.InvalidParameterValueError),
    # Nothing new in the schema, no trigger on its tables, no taking them over.
    ("CREATE TABLE public.smuggled (x int)", asyncpg.InsufficientPrivilegeError),
    ("CREATE FUNCTION public.smuggled() RETURNS int LANGUAGE sql AS 'SELECT 1'",
     asyncpg.InsufficientPrivilegeError),
    ("ALTER TABLE device DISABLE TRIGGER device_changed", asyncpg.InsufficientPrivilegeError),
    ("DROP TRIGGER assignment_changed ON assignment", asyncpg.InsufficientPrivilegeError),
    ("ALTER TABLE data_key OWNER TO CURRENT_USER", asyncpg.InsufficientPrivilegeError),
    ("DELETE FROM device", asyncpg.InsufficientPrivilegeError),
    ("DELETE FROM assignment", asyncpg.InsufficientPrivilegeError),
    ("DELETE FROM huvudman_key", asyncpg.InsufficientPrivilegeError),
    ("UPDATE data_key SET epoch = epoch", asyncpg.InsufficientPrivilegeError),
])
async def test_what_the_gateway_may_not_do_is_refused(
        runtime: asyncpg.Connection, sql: str, refusal: type[Exception]) -> None:
    async with runtime.transaction():  # rolled back should anything get through
        with pytest.raises(refusal):
            await runtime.execute(sql)


async def test_the_huvudman_nodes_opened_copies_are_out_of_reach(
        runtime: asyncpg.Connection, owner_database_url: str) -> None:
    """In the demo a node shares the database: its schema holds readings in clear."""
    await migrate_node(owner_database_url)  # as a node starting on this database does
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="schema huvudman_node"):
        await runtime.fetch("SELECT * FROM huvudman_node.copy")


async def test_what_needs_the_owner_is_done_by_its_functions(runtime: asyncpg.Connection) -> None:
    seq = await runtime.fetchval("SELECT audit_append('test:privileges', 'test.append', $1,"
                                 " '{}')", str(uuid.uuid4()))
    assert seq > 0
    created = await runtime.fetch("SELECT ensure_event_partitions(0, 12)")
    assert all(r[0].startswith(("event_", "event_copy_")) for r in created)


async def test_migrating_as_the_runtime_role_is_refused_saying_so(database_url: str) -> None:
    with pytest.raises(MigrationError, match="may not change the schema"):
        await migrate(database_url, table="schema_migration_runtime_try")


def test_a_dsn_as_another_role_keeps_the_server_and_database() -> None:
    assert dsn_as("postgresql://postgres:secret@db.example:5433/gw?sslmode=verify-full",
                  "gw_ingest") == "postgresql://gw_ingest@db.example:5433/gw?sslmode=verify-full"
    assert dsn_as("postgresql://postgres:@/postgres?host=/run/pg", "gateway_demo") == \
        "postgresql://gateway_demo@/postgres?host=/run/pg"
