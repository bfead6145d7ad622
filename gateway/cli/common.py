"""What every `gateway` command shares: the console, the database from DATABASE_URL, times
given without a zone, and how a refusal ends a command.

Modules print through `common.console` (looked up at each call, so tests can replace it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import NoReturn, TypeVar

import typer
from rich.console import Console

from gateway.ownership.specs import Refusal
from gateway.settings import Settings
from gateway.store.connector import Store

console = Console()
T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `message` in red, as it is (no markup: it may name ids with brackets), and end."""
    console.print(message, style="red", markup=False)
    raise typer.Exit(code)


def dsn() -> str:
    url = Settings().database_url
    if not url:
        console.print("[red]DATABASE_URL is not set.[/] Example: "
                      "postgresql://gateway@127.0.0.1:5432/gateway")
        raise typer.Exit(2)
    return url


def with_store(work: Callable[[Store], Awaitable[T]]) -> T:
    """Run `work` against DATABASE_URL; an operator's refusal ends the command (exit 1)."""
    async def main() -> T:
        store = await Store.connect(dsn())
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except Refusal as err:
        fail(str(err))


def aware(ts: datetime) -> datetime:
    """A time given without a zone is UTC."""
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def time_text(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""
