"""Twilio Media Streams messages, as Twilio sends them and as we send them back."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

MULAW_FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
FRAME_MS = 20
SAMPLE_RATE = 8000


class _Msg(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class _StreamEvent(_Msg):
    """What every event on an open stream carries besides its own body."""

    streamSid: str = ""
    sequenceNumber: str = "0"


class Connected(_Msg):
    event: Literal["connected"]
    protocol: str = "Call"
    version: str = "1.0.0"


class MediaFormat(_Msg):
    encoding: str = "audio/x-mulaw"
    sampleRate: int = SAMPLE_RATE
    channels: int = 1


class StartInfo(_Msg):
    streamSid: str
    accountSid: str = ""
    callSid: str = ""
    tracks: list[str] = Field(default_factory=lambda: ["inbound"])
    customParameters: dict[str, str] = Field(default_factory=dict)
    mediaFormat: MediaFormat = Field(default_factory=MediaFormat)


class Start(_Msg):
    event: Literal["start"]
    sequenceNumber: str = "1"
    streamSid: str
    start: StartInfo


class MediaPayload(_Msg):
    track: str = "inbound"
    chunk: str = "1"
    timestamp: str = "0"
    payload: str


class Media(_StreamEvent):
    event: Literal["media"]
    media: MediaPayload


class DtmfInfo(_Msg):
    track: str = "inbound_track"
    digit: str


class Dtmf(_StreamEvent):
    event: Literal["dtmf"]
    dtmf: DtmfInfo


class MarkInfo(_Msg):
    name: str


class Mark(_StreamEvent):
    event: Literal["mark"]
    mark: MarkInfo


class Stop(_StreamEvent):
    event: Literal["stop"]
    stop: dict = Field(default_factory=dict)


class Clear(_Msg):
    event: Literal["clear"]
    streamSid: str


InboundMessage = Annotated[Connected | Start | Media | Dtmf | Mark | Stop, Field(discriminator="event")]
inbound_adapter: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)
