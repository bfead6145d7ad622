"""The webhook sink: a signed NDJSON batch (gateway.delivery.wire) POSTed to one huvudman's
endpoint (its node, or its own receiver), answered per item (docs/delivery.md)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx
import msgspec

from gateway.delivery import retry_after, wire
from gateway.delivery.sink import DONE, REJECTED, RETRY, ItemResult, safe_reason


class WebhookSink:
    """POSTs a signed NDJSON batch (gateway.delivery.wire) to one huvudman's endpoint."""

    def __init__(self, name: str, url: str, secret: bytes, *, batch_max: int = 500,
                 timeout_s: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self.name = name
        self.url = url
        self.batch_max = batch_max
        self.timeout_s = timeout_s
        self._secret = secret
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, items: Sequence[wire.Item],
                   subjects: Sequence[wire.SubjectLine] = ()) -> Sequence[ItemResult]:
        body = wire.encode_batch(items, subjects)
        timestamp = int(time.time())
        headers = {"Content-Type": wire.CONTENT_TYPE,
                   wire.TIMESTAMP_HEADER: str(timestamp),
                   wire.SIGNATURE_HEADER: wire.sign(self._secret, timestamp, body)}
        try:
            answer = await self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return [RETRY("timeout")] * len(items)
        except httpx.HTTPError:
            return [RETRY("connection failed")] * len(items)
        status = answer.status_code
        if status in (401, 403):
            return [RETRY(f"http {status}", open_breaker=True)] * len(items)
        if not 200 <= status < 300:
            # 5xx and 429 as the design says; any other 4xx too: a receiver's or a
            # configuration's fault must not dead-letter data.
            wait = retry_after.seconds(answer.headers.get("retry-after")) \
                if status in (429, 503) else None
            return [RETRY(f"http {status}", retry_after_s=wait)] * len(items)
        if not answer.content.strip():
            return [DONE] * len(items)
        try:
            decoded = wire.decode_answer(answer.content)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return [RETRY("answer not understood")] * len(items)
        by_id = {r.event_id: r for r in decoded.results}
        return [_item_result(by_id.get(str(i.event_id))) for i in items]


def _item_result(status: wire.ItemStatus | None) -> ItemResult:
    if status is None:
        return RETRY("no answer for item")
    if status.status in ("stored", "duplicate"):
        return DONE
    if status.status == "rejected":
        return REJECTED("rejected: " + safe_reason(status.reason))
    if status.status == "retry":  # e.g. "subject unknown": sent again with its subjects
        return RETRY("retry: " + safe_reason(status.reason))
    return RETRY("unknown item status")
