"""Twilio's serializer, with every inbound message checked before it becomes a frame.

A malformed message (not JSON, unknown event, bad base64, a media payload that is
not 20 ms of mu-law) is logged, counted and dropped: one bad frame must never
take the call, let alone the worker, down.
"""

import base64
import binascii
import json
from collections import Counter
from collections.abc import Awaitable, Callable

from pipecat.frames.frames import Frame
from pipecat.serializers.twilio import TwilioFrameSerializer

from models.log_config import get_logger
from models.twilio_media import MULAW_FRAME_BYTES

log = get_logger(__name__)

_KNOWN_EVENTS = {"connected", "start", "media", "dtmf", "mark", "stop"}


class CheckedTwilioFrameSerializer(TwilioFrameSerializer):
    def __init__(self, *args, call_id: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._call_id = call_id
        self.rejected: Counter[str] = Counter()
        self.marks_echoed: list[str] = []
        self.stopped = False
        # Runs instead of the REST hang-up when it returns True (a transfer keeps the call up).
        self.instead_of_hang_up: Callable[[], Awaitable[bool]] | None = None

    def _reject(self, reason: str) -> None:
        self.rejected[reason] += 1
        # Log the first of each kind and then every hundredth, so a flood stays readable.
        if self.rejected[reason] in (1,) or self.rejected[reason] % 100 == 0:
            log.warning("media_stream_message_rejected", call_id=self._call_id, reason=reason, count=self.rejected[reason])

    async def _hang_up_call(self) -> None:
        if self.instead_of_hang_up is not None and await self.instead_of_hang_up():
            return
        await super()._hang_up_call()

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes):
            self._reject("binary_frame")
            return None
        try:
            message = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._reject("not_json")
            return None
        if not isinstance(message, dict) or message.get("event") not in _KNOWN_EVENTS:
            self._reject("unknown_event")
            return None
        event = message["event"]
        if event == "media":
            media = message.get("media")
            payload = media.get("payload") if isinstance(media, dict) else None
            if not isinstance(payload, str):
                self._reject("media_without_payload")
                return None
            try:
                audio = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                self._reject("media_bad_base64")
                return None
            if len(audio) == 0 or len(audio) % MULAW_FRAME_BYTES != 0 or len(audio) > MULAW_FRAME_BYTES * 50:
                # Twilio always sends 20 ms (160 bytes); tolerate whole multiples, drop the rest.
                self._reject("media_wrong_size")
                return None
        elif event == "dtmf":
            dtmf = message.get("dtmf")
            if not isinstance(dtmf, dict) or not isinstance(dtmf.get("digit"), str):
                self._reject("dtmf_malformed")
                return None
        elif event == "mark":
            mark = message.get("mark")
            if isinstance(mark, dict) and isinstance(mark.get("name"), str):
                self.marks_echoed.append(mark["name"][:100])
            return None
        elif event == "stop":
            self.stopped = True
            return None
        return await super().deserialize(data)
