"""Serve the Deepgram, OpenAI and Cartesia stand-ins on one loopback port.

    python -m scripts.standins --port 8765 --stt-final-ms 100 --llm-first-token-ms 250 --tts-first-audio-ms 100

Each delay flag defaults to its environment variable (STANDIN_STT_FINAL_MS, STANDIN_LLM_FIRST_TOKEN_MS,
STANDIN_LLM_TOKENS_PER_SECOND, STANDIN_TTS_FIRST_AUDIO_MS), else to the value shown by --help. It prints
the app's settings that point the three providers at it. `GET /standins` shows the delays and the
delays actually served; `DELETE /standins` shows and then forgets the latter.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from scripts.standins.app import StandinDelays, Standins, provider_env


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def main(argv: list[str] | None = None) -> None:
    defaults = StandinDelays()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--stt-final-ms",
        type=float,
        default=_env_float("STANDIN_STT_FINAL_MS", defaults.stt_final_s * 1000),
        help="Deepgram: end of speech to the final result (default %(default)s)",
    )
    parser.add_argument(
        "--llm-first-token-ms",
        type=float,
        default=_env_float("STANDIN_LLM_FIRST_TOKEN_MS", defaults.llm_first_token_s * 1000),
        help="OpenAI: request to first token (default %(default)s)",
    )
    parser.add_argument(
        "--llm-tokens-per-second",
        type=float,
        default=_env_float("STANDIN_LLM_TOKENS_PER_SECOND", defaults.llm_tokens_per_second),
        help="OpenAI: tokens streamed per second after the first (default %(default)s)",
    )
    parser.add_argument(
        "--tts-first-audio-ms",
        type=float,
        default=_env_float("STANDIN_TTS_FIRST_AUDIO_MS", defaults.tts_first_audio_s * 1000),
        help="Cartesia: input to first audio chunk (default %(default)s)",
    )
    args = parser.parse_args(argv)

    delays = StandinDelays(
        stt_final_s=args.stt_final_ms / 1000,
        llm_first_token_s=args.llm_first_token_ms / 1000,
        llm_tokens_per_second=args.llm_tokens_per_second,
        tts_first_audio_s=args.tts_first_audio_ms / 1000,
    )
    base_url = f"http://127.0.0.1:{args.port}"
    print(f"provider stand-ins on {base_url} ({delays})")
    print("Point the app at them with:")
    for name, value in provider_env(base_url).items():
        print(f"  {name}={value}")
    uvicorn.run(Standins(delays).app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
