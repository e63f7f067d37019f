"""A turn model for tests: judges each VAD stop as told, then every later one finished."""

from __future__ import annotations

from pipecat.audio.turn.base_turn_analyzer import BaseTurnAnalyzer, BaseTurnParams, EndOfTurnState
from pipecat.metrics.metrics import MetricsData


class ScriptedTurnAnalyzer(BaseTurnAnalyzer):
    """`ScriptedTurnAnalyzer(INCOMPLETE)`: the first pause unfinished; with no verdicts every pause
    ends the turn (Smart Turn on flat synthetic speech)."""

    def __init__(self, *verdicts: EndOfTurnState) -> None:
        super().__init__()
        self._verdicts = list(verdicts)

    @property
    def speech_triggered(self) -> bool:
        return True

    @property
    def params(self) -> BaseTurnParams:
        return BaseTurnParams()

    def append_audio(self, buffer: bytes, is_speech: bool) -> EndOfTurnState:
        return EndOfTurnState.INCOMPLETE

    async def analyze_end_of_turn(self) -> tuple[EndOfTurnState, MetricsData | None]:
        return (self._verdicts.pop(0) if self._verdicts else EndOfTurnState.COMPLETE), None

    def clear(self) -> None:
        pass
