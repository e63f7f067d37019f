"""MAX_REQUEST_BODY_BYTES: a request body past it is refused with 413 before anything parses it.

A pure ASGI check, so that it holds for every route, bodies sent in chunks included: a declared
Content-Length over the limit is refused before the body is read; otherwise the bytes are counted
as the app reads them and the read fails as soon as they pass the limit. The answer is JSON that
says what the limit is. (FastAPI's own `max_body_size` answers a declared length with plain text.)
"""

import json
import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_api.lead_import import MAX_IMPORT_BYTES

# The routes that take bulk uploads: a CSV import, and up to 500 messages of history at once.
BULK_UPLOAD_LIMITS = ((re.compile(r"/leads/import"), MAX_IMPORT_BYTES), (re.compile(r"/leads/[^/]+/history"), MAX_IMPORT_BYTES))


class BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI passes it on as a 413 rather than as a body it could not parse."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"the request body is larger than the {limit} bytes this endpoint accepts")


def declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def limit_for(self, path: str) -> int:
        return next(
            (max(limit, self.max_bytes) for pattern, limit in BULK_UPLOAD_LIMITS if pattern.fullmatch(path)), self.max_bytes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await refuse(send, BodyTooLarge(limit))
            return
        received = 0
        response_started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:  # read outside FastAPI's exception handling (a middleware, say)
            if response_started:
                raise
            await refuse(send, exc)


async def refuse(send: Send, exc: BodyTooLarge) -> None:
    body = json.dumps({"detail": exc.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
