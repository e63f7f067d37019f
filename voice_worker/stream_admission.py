"""Who may open a media stream: read Twilio's `connected`/`start`, check the token, find the call.

Nothing about the call is loaded, and no pipeline is built, before this says yes.
"""

import asyncio
import json
import secrets
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
# Tries at reading and claiming the call in the session store before the stream is refused.
STORE_ATTEMPTS = 3


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


async def _claim_call(store: SessionStore, call_id: str, holder: str) -> tuple[CallJob, ContextInstance]:
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
    if not await store.claim_stream(call_id, job.seconds_until_expiry(), holder):
        raise StreamRefused("call_already_streamed", call_id)
    return job, context


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
    # The stream's own name for its claim: a retry after a timeout must not find its own claim "taken".
    holder = f"{start.streamSid}:{secrets.token_hex(8)}"
    for attempt in range(STORE_ATTEMPTS):
        try:
            job, context = await _claim_call(store, call_id, holder)
            break
        except SessionStoreUnavailable:
            # A blip (a Redis restart, a busy moment) must not cost the call: Twilio does not retry a stream.
            if attempt + 1 == STORE_ATTEMPTS:
                raise StreamRefused("session_store_unavailable", call_id) from None
            await asyncio.sleep(0.25 * (attempt + 1))
    return AdmittedStream(start, job, context)
