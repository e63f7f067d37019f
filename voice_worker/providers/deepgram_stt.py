"""Deepgram live transcription whose endpointed finals count as finalized for turn-taking."""

from __future__ import annotations

from pipecat.services.deepgram.stt import DeepgramSTTService


class EndpointedDeepgramSTTService(DeepgramSTTService):
    """Marks a final with `speech_final: true` finalized, as pipecat marks the answer to its `Finalize`.

    `speech_final` is Deepgram saying its endpointing found the end of the utterance: nothing more of
    it is coming. Pipecat only trusts the answer to the `Finalize` it sends at VAD stop; when Deepgram
    endpointed first, that answer is empty and the turn waited out the STT's p99 latency (0.35 s
    after the end of speech) although the words were in.
    """

    async def _on_message(self, message) -> None:
        if getattr(message, "is_final", False) and getattr(message, "speech_final", False):
            alternatives = getattr(getattr(message, "channel", None), "alternatives", None) or []
            if alternatives and alternatives[0].transcript:
                self.request_finalize()
                self.confirm_finalize()
        await super()._on_message(message)
