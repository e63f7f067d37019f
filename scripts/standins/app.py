"""The three stand-ins on one loopback port, in a thread (tests) or a child process (benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from scripts.local_server import free_port, serving_child
from scripts.standins.cartesia import CartesiaStandin, CartesiaTiming
from scripts.standins.deepgram import DeepgramStandin, DeepgramTiming
from scripts.standins.observed import ObservedDelays
from scripts.standins.openai_chat import OpenAIChatStandin, OpenAITiming

# Any non-empty key is accepted; the product only needs one to choose the cloud provider.
DUMMY_KEY = "standin-key"


@dataclass
class StandinDelays:
    """The delays the stand-ins add, in seconds (the benchmark subtracts them from what callers hear)."""

    stt_final_s: float = 0.1
    llm_first_token_s: float = 0.25
    llm_tokens_per_second: float = 100.0
    tts_first_audio_s: float = 0.1

    def as_args(self) -> list[str]:
        return [
            "--stt-final-ms", str(round(self.stt_final_s * 1000)),
            "--llm-first-token-ms", str(round(self.llm_first_token_s * 1000)),
            "--llm-tokens-per-second", str(self.llm_tokens_per_second),
            "--tts-first-audio-ms", str(round(self.tts_first_audio_s * 1000)),
        ]  # fmt: skip


@dataclass
class Standins:
    delays: StandinDelays = field(default_factory=StandinDelays)
    observed: ObservedDelays = field(default_factory=ObservedDelays)

    def __post_init__(self) -> None:
        d = self.delays
        self.deepgram = DeepgramStandin(DeepgramTiming(final_delay_s=d.stt_final_s), self.observed)
        self.openai = OpenAIChatStandin(
            OpenAITiming(first_token_s=d.llm_first_token_s, tokens_per_second=d.llm_tokens_per_second), self.observed
        )
        self.cartesia = CartesiaStandin(CartesiaTiming(first_audio_s=d.tts_first_audio_s), self.observed)

    def app(self) -> Starlette:
        async def health(_request: Request) -> JSONResponse:
            return JSONResponse({"status": "ok"})

        async def observed(request: Request) -> JSONResponse:
            summary = {"delays": asdict(self.delays), "observed": self.observed.summary()}
            if request.method == "DELETE":
                self.observed.reset()
            return JSONResponse(summary)

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            await asyncio.to_thread(self.deepgram.warm_up)
            yield

        return Starlette(
            routes=[
                # Bound methods: Starlette treats any other callable object as a raw ASGI app.
                WebSocketRoute("/v1/listen", self.deepgram.__call__),
                Route("/v1/chat/completions", self.openai.__call__, methods=["POST"]),
                WebSocketRoute("/tts/websocket", self.cartesia.__call__),
                Route("/health", health),
                Route("/standins", observed, methods=["GET", "DELETE"]),
            ],
            lifespan=lifespan,
        )


def provider_env(base_url: str) -> dict[str, str]:
    """The app's settings that send all three providers to stand-ins at `base_url` (http://host:port)."""
    return {
        "STT_PROVIDER": "deepgram",
        "LLM_PROVIDER": "openai",
        "TTS_PROVIDER": "cartesia",
        "DEEPGRAM_API_KEY": DUMMY_KEY,
        "OPENAI_API_KEY": DUMMY_KEY,
        "CARTESIA_API_KEY": DUMMY_KEY,
        "DEEPGRAM_BASE_URL": base_url.replace("http", "ws", 1),
        "OPENAI_BASE_URL": f"{base_url}/v1",
        "CARTESIA_BASE_URL": base_url,
    }


class StandinServer:
    """The stand-ins on a loopback port, served from a background thread."""

    def __init__(self, standins: Standins | None = None, port: int | None = None) -> None:
        self.standins = standins or Standins()
        self.port = port or free_port()
        config = uvicorn.Config(self.standins.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="provider-standins", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return provider_env(self.base_url)

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the provider stand-ins did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@contextlib.contextmanager
def running_standins(standins: Standins | None = None) -> Iterator[StandinServer]:
    server = StandinServer(standins)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def standins_process(
    delays: StandinDelays, log_path: Path | None = None, startup_timeout: float = 60
) -> Iterator[tuple[str, int]]:
    """The stand-ins in a child process (its CPU is then not the measured server's); yields (base_url, pid)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "scripts.standins", "--port", str(port), *delays.as_args()]
    with serving_child(argv, base_url, "the stand-ins", dict(os.environ), log_path, startup_timeout) as process:
        yield base_url, process.pid
