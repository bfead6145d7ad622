"""Subject references once per assignment (format 2, docs/delivery.md): which sealed subject
references each sink still has to be sent.

A stored copy names the assignments it came under (with a digest of each one's sealed subject
reference) instead of carrying the references themselves, which are about 1.5 KB each. Before
the first item of an assignment reaches a sink, the sink is sent that assignment's `subject`
line, read from `assignment`; once an item of the assignment is accepted, the sink holds it and
is not sent it again by this process. An item the receiver answers `retry` for (a node that
lost its cache answers "subject unknown") sends its subjects again with the retry. After a
restart each sink is sent each subject once more: the receiver keeps the first it verified.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from gateway.delivery import wire
from gateway.delivery.outbox import Claimed, Outbox
from gateway.delivery.sink import ItemResult, Verdict

# Per sink, the assignments it is known to hold, the oldest forgotten first (a forgotten one is
# only sent once more).
KNOWN_PER_SINK = 20_000


class SubjectLines:
    def __init__(self, outbox: Outbox, *, known_per_sink: int = KNOWN_PER_SINK) -> None:
        self._outbox = outbox
        self._cap = known_per_sink
        self._known: dict[str, dict[uuid.UUID, None]] = {}

    async def needed(self, sink: str, chunk: Sequence[Claimed]) -> list[wire.SubjectLine]:
        """The subject lines to send with `chunk` to `sink`: one per assignment its items came
        under that the sink is not known to hold (none for an erased subject: its items
        cannot be opened either)."""
        known = self._known.get(sink, {})
        wanted = list(dict.fromkeys(a for c in chunk for a in c.assignment_ids if a not in known))
        if not wanted:
            return []
        sealed = await self._outbox.subjects(wanted)
        return [wire.subject_line(huvudman, a, blob) for a, (huvudman, blob) in sealed.items()]

    def answered(self, sink: str, chunk: Sequence[Claimed],
                 results: Sequence[ItemResult]) -> None:
        """Learn from the sink's answers which subjects it holds, and which it asked for."""
        known = self._known.setdefault(sink, {})
        for claimed, result in zip(chunk, results, strict=True):
            if result.verdict is Verdict.DONE:
                for a in claimed.assignment_ids:
                    known.pop(a, None)  # to the end: the most recently used are kept longest
                    known[a] = None
            elif result.verdict is Verdict.RETRY:
                for a in claimed.assignment_ids:
                    known.pop(a, None)
        while len(known) > self._cap:
            del known[next(iter(known))]
