"""Crypto-shredding and retention (gateway/ownership/erasure.py): which data keys open what,
destroying them, forgetting sealed subject references, dropping old partitions, purging the
quarantine, and telling ingest processes to drop their cached keys."""

from __future__ import annotations

from datetime import date, datetime

from gateway.store.statements import Queries, affected


class ErasureQueries(Queries, area="erasure"):
    async def subject_keys(self, huvudman: str, pseudonym: bytes) -> list[bytes]:
        return [bytes(r["key_id"]) for r in await self._fetch("subject_keys", huvudman,
                                                                pseudonym)]

    async def huvudman_keys(self, huvudman: str) -> list[bytes]:
        return [bytes(r["key_id"]) for r in await self._fetch("huvudman_keys", huvudman)]

    async def epoch_keys(self, before_epoch: int, huvudman: str | None) -> list[bytes]:
        return [bytes(r["key_id"]) for r in await self._fetch("epoch_keys", before_epoch,
                                                                huvudman)]

    async def copies_under_keys(self, key_ids: list[bytes]) -> int:
        """How many sealed copies these data keys open (a scan: erasure is rare)."""
        return int(await self._fetchval("copies_under_keys", key_ids)) if key_ids else 0

    async def lock_keys(self) -> None:
        await self._execute("lock_keys")

    async def delete_keys(self, key_ids: list[bytes]) -> None:
        await self._execute("delete_keys", key_ids)

    async def forget_subject_refs(self, huvudman: str, subject_key: str) -> int:
        """The sealed references of a subject's assignments go (the pseudonym stays);
        how many assignments held one."""
        return len(await self._fetch("forget_subject_refs", huvudman, subject_key))

    async def old_partitions(self, before: date) -> list[str]:
        """Monthly event partitions holding nothing measured from `before` on."""
        return [r["partition"] for r in await self._fetch("old_partitions", before)]

    async def drop_partition(self, name: str) -> None:
        """Drop a monthly partition `old_partitions` named (the database checks the name)."""
        await self._execute("drop_partition", name)

    async def expired_quarantine(self, now: datetime) -> int:
        return int(await self._fetchval("expired_quarantine", now))

    async def purge_quarantine(self, now: datetime) -> int:
        return affected(await self._execute("purge_quarantine", now))

    async def notify_keys_erased(self, target: str) -> None:
        await self._execute("notify_keys_erased", target)
