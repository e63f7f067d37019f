"""Who may open a media stream: read Twilio's `connected`/`start`, check the token, find the call.

Nothing about the call is loaded, and no pipeline is built, before this says yes.
"""

import asyncio
import json
from dataclasses import dataclass
from uuid import UUID

from fastapi import WebSocket
from pydantic import ValidationError

from models.call_job import CallJob
from models.context import ContextInstance
from models.enums import CallStatus
from models.session_store import SessionStore, SessionStoreUnavailable, call_key
from models.twilio_media import Start
from services.stream_credential import token_matches

# Messages a client may send before `start` (Twilio sends exactly one: `connected`).
MAX_MESSAGES_BEFORE_START = 20


class StreamRefused(Exception):
    def __init__(self, reason: str, call_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.call_id = call_id


@dataclass
class AdmittedStream:
    start: Start
    job: CallJob
    context: ContextInstance


async def _read_start(websocket: WebSocket, timeout: float) -> Start:
    async def read() -> Start:
        for _ in range(MAX_MESSAGES_BEFORE_START):
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise StreamRefused("disconnected_before_start")
            text = message.get("text")
            if text is None:
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and data.get("event") == "start":
                try:
                    return Start.model_validate(data)
                except ValidationError:
                    raise StreamRefused("malformed_start") from None
        raise StreamRefused("no_start")

    try:
        return await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise StreamRefused("start_timeout") from None


async def admit_stream(websocket: WebSocket, store: SessionStore, secret_key: str, timeout: float) -> AdmittedStream:
    start = await _read_start(websocket, timeout)
    params = start.start.customParameters
    raw_id, token = params.get("call_id"), params.get("token")
    if not raw_id:
        raise StreamRefused("missing_call_id")
    try:
        call_id = str(UUID(raw_id))
    except ValueError:
        raise StreamRefused("malformed_call_id") from None
    if not token:
        raise StreamRefused("missing_token", call_id)
    if not token_matches(call_id, token, secret_key):
        raise StreamRefused("wrong_token", call_id)
    try:
        raw = await store.get(call_key(call_id))
        if raw is None:
            raise StreamRefused("unknown_or_expired_call", call_id)
        job = CallJob.model_validate_json(raw)
        if job.is_expired():
            raise StreamRefused("expired_call", call_id)
        if job.status is not CallStatus.PENDING:
            raise StreamRefused("call_already_streamed", call_id)
        context = await store.load_context(job.context_id)
        if context is None:
            raise StreamRefused("context_missing", call_id)
        # The status read above is only a fast path: racing `start`s all see PENDING; the claim is atomic.
        if not await store.claim_stream(call_id, job.seconds_until_expiry()):
            raise StreamRefused("call_already_streamed", call_id)
    except SessionStoreUnavailable:
        raise StreamRefused("session_store_unavailable", call_id) from None
    return AdmittedStream(start, job, context)
