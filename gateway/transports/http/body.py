"""Reading a request body with a size limit, for every HTTP endpoint (ingest, admin, node)."""

from __future__ import annotations

from starlette.requests import Request


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than `limit` bytes (declared or actually sent)."""
    declared = request.headers.get("content-length")
    # isascii(): str.isdigit() also accepts digits like '¹' that int() refuses.
    if (declared is not None and declared.isascii() and declared.isdigit()
            and int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
