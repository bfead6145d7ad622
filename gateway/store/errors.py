"""What the data-access layer raises, so that no module outside gateway/store needs asyncpg."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg

# The database is away, slow or refused the statement: retry later (or give up), never crash.
# InternalClientError: asyncpg's state machine after a connection was cut mid-statement
# ("cannot switch to state 12"); the next attempt gets another connection.
DB_ERRORS: tuple[type[BaseException], ...] = (OSError, asyncpg.PostgresError,
                                              asyncpg.InterfaceError,
                                              asyncpg.InternalClientError, TimeoutError)

# SQLSTATE classes in which the rows themselves are at fault (data exception, integrity
# constraint violation): the same rows can never commit, however often they are retried.
_DATA_FAULTS = ("22", "23")


def data_fault(err: BaseException) -> str | None:
    """The SQLSTATE when the database refused the rows for their own data, else None."""
    sqlstate = str(getattr(err, "sqlstate", "") or "")
    if isinstance(err, asyncpg.PostgresError) and sqlstate[:2] in _DATA_FAULTS:
        return sqlstate
    return None


class UnknownReference(Exception):
    """A row names something that does not exist (a foreign key): `constraint` says which."""

    def __init__(self, constraint: str | None) -> None:
        super().__init__(constraint or "foreign key")
        self.constraint = constraint or ""


@contextlib.contextmanager
def references() -> Iterator[None]:
    """Turn the database's foreign-key refusal into UnknownReference."""
    try:
        yield
    except asyncpg.ForeignKeyViolationError as err:
        raise UnknownReference(err.constraint_name) from None
