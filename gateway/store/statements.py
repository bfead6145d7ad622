"""Named SQL statements, one `.sql` file per area under gateway/store/sql/, and the base of the
per-area query classes.

A file is split at `-- name: <name>` lines. A statement uses `$1, $2, ...`, or, where it takes
many arguments, named placeholders `:name`, which are turned into positions here once: the
caller passes them by keyword (`Queries._named`), so a column cannot be fed the wrong array.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar, TypeAlias

import asyncpg

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.M)
# `:name`, but not the second colon of a cast (`x::int`) nor a word's inside (`a:b`).
_PLACEHOLDER = re.compile(r"(?<![:\w]):([a-z][a-z0-9_]*)")
_POSITIONAL = re.compile(r"\$[0-9]")
_QUOTED = re.compile(r"'[^']*'")


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    params: tuple[str, ...] = ()  # named placeholders, in position order; () for $n statements


def _compile(name: str, body: str) -> Statement:
    """Positional statements (`$1`, `$2`, ...) stay as written; named ones (`:name`) get
    positions. A statement may not mix the two. Comments are not SQL: `:word` in one is not a
    placeholder."""
    sql = "\n".join(line.split("--", 1)[0].rstrip() for line in body.strip().splitlines())
    sql = "\n".join(line for line in sql.splitlines() if line.strip())
    named = list(dict.fromkeys(_PLACEHOLDER.findall(_QUOTED.sub("''", sql))))
    if named and _POSITIONAL.search(sql):
        raise ValueError(f"statement {name} mixes $n and :name placeholders")
    if not named:
        return Statement(sql)
    return Statement(_PLACEHOLDER.sub(lambda m: f"${named.index(m.group(1)) + 1}", sql),
                     tuple(named))


def load(filename: str, package: str = "gateway.store") -> dict[str, Statement]:
    """The statements of one file (`sql/<area>.sql` of `package`), by name."""
    text = resources.files(package).joinpath(filename).read_text("utf-8")
    parts = _NAME.split(text)
    return {name: _compile(name, body)
            for name, body in zip(parts[1::2], parts[2::2], strict=True)}


# A pool (each statement its own transaction) or one connection inside a transaction: asyncpg
# gives both the same fetch/fetchrow/fetchval/execute.
Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection


class Queries:
    """The statements of one area (`sql/<area>.sql`), run on `db`."""

    area: ClassVar[str]
    _statements: ClassVar[dict[str, Statement]]

    def __init_subclass__(cls, *, area: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.area = area
        cls._statements = load(f"sql/{area}.sql")

    def __init__(self, db: Executor) -> None:
        self._db = db

    def _sql(self, name: str) -> str:
        return self._statements[name].sql

    async def _fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self._db.fetch(self._sql(name), *args))

    async def _fetchrow(self, name: str, *args: Any) -> asyncpg.Record | None:
        return await self._db.fetchrow(self._sql(name), *args)

    async def _fetchval(self, name: str, *args: Any) -> Any:
        return await self._db.fetchval(self._sql(name), *args)

    async def _execute(self, name: str, *args: Any) -> str:
        return str(await self._db.execute(self._sql(name), *args))

    async def _named(self, name: str, **args: Any) -> asyncpg.Record | None:
        """fetchrow with every named placeholder given by keyword, none missing or extra."""
        statement = self._statements[name]
        if set(args) != set(statement.params):
            missing = sorted(set(statement.params) - set(args))
            extra = sorted(set(args) - set(statement.params))
            raise TypeError(f"{self.area}.{name}: missing {missing}, unexpected {extra}")
        return await self._db.fetchrow(statement.sql, *(args[p] for p in statement.params))


async def open_pool(dsn: str, *, max_size: int, application_name: str,
                    min_size: int = 1) -> asyncpg.Pool:
    """A pool named in pg_stat_activity; a statement that takes over 30 s is cancelled."""
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                     command_timeout=30,
                                     server_settings={"application_name": application_name})


def affected(status: str) -> int:
    """The row count of a command tag ("UPDATE 3", "INSERT 0 1", "DELETE 0")."""
    return int(status.rsplit(" ", 1)[-1])
