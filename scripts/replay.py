"""Run a stored call again against the current code, and print the old and new conversations side by side.

    python -m scripts.replay CALL_ID                      # the recorded caller channel of a stored call
    python -m scripts.replay CALL_ID --transcript         # no recording: the caller's stored lines, spoken by eSpeak
    python -m scripts.replay CALL_ID --strategy-version 3 # the same call under the workspace's strategy version 3
    python -m scripts.replay --wav call.wav --request request.json

A local server is started (scripts.local_server, TELEPHONY_PROVIDER=none, its own SQLite file);
the call is created on it from the stored call's request (the fields of its context, rebuilt by
the current prompts) and the caller's side is sent over `/ws` paced in real time: the left channel
of the recording, at the times the caller really spoke. The stored call is read from DATABASE_URL
and RECORDINGS_DIR (the settings of the deployment it was made on, or a copy of its data).

A call that ran on a strategy version runs on it again: the stored context carries the version's
text, which becomes the active strategy of a workspace on the local server. `--strategy-version N`
takes the text of version N of the call's workspace (from DATABASE_URL) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import audioop
import json
import os
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from sqlmodel import Session, col, select

from models.call_queue import CallAttempt
from models.call_request import CallRequest
from models.context import ContextInstance, ContextStrategy
from models.database import make_engine
from models.domain import StrategyVersion
from models.settings import Settings
from models.tables import Call
from models.twilio_media import MULAW_FRAME_BYTES, SAMPLE_RATE
from scripts.local_server import running_server
from scripts.simulate_call import wait_until_placed
from services.recording_store import context_path, is_wav, recording_path
from simulator.callee import SimulatedCaller
from simulator.caller_scripts import CallerLine

# Seconds the replayed caller stays on the line after its recording has run out.
TAIL_SECONDS = 8.0
REQUEST_FIELDS = ("phone", "name", "product", "offer_pricing", "target", "goal", "style", "booking_link", "constraints")


class ReplayError(Exception):
    """Bad input: said plainly, and the script exits non-zero."""


@dataclass
class Conversation:
    outcome: str | None
    transcript: list[dict[str, Any]]
    turn_metrics: list[dict[str, Any]]
    duration_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def agent_lines(self) -> list[str]:
        return [entry["text"] for entry in self.transcript if entry["role"] == "agent"]

    def caller_lines(self) -> list[str]:
        return [entry["text"] for entry in self.transcript if entry["role"] == "caller"]

    def latencies(self) -> list[float | None]:
        return [turn.get("first_audio_sent_ms") for turn in self.turn_metrics]


@dataclass
class ReplayInput:
    request: dict[str, Any]
    old: Conversation | None
    wav: Path | None
    caller_lines: list[str]
    # The strategy the stored call ran on, and the one the replay runs on (None: no strategy).
    old_strategy: ContextStrategy | None = None
    strategy: ContextStrategy | None = None


def caller_frames(wav_path: Path) -> list[bytes]:
    """The recording's left channel (the caller) as Twilio's 20 ms mu-law frames."""
    if not wav_path.is_file():
        raise ReplayError(f"recording {wav_path} does not exist (not recorded, or deleted after its retention)")
    if not is_wav(wav_path):
        raise ReplayError(f"{wav_path} is not a WAV file")
    try:
        with wave.open(str(wav_path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            pcm = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ReplayError(f"{wav_path} is not a readable WAV file: {exc}") from None
    if width != 2:
        raise ReplayError(f"{wav_path} must be 16-bit PCM, not {8 * width}-bit")
    if channels == 2:
        pcm = audioop.tomono(pcm, 2, 1, 0)
    elif channels != 1:
        raise ReplayError(f"{wav_path} must have 1 or 2 channels, not {channels}")
    if rate != SAMPLE_RATE:
        pcm, _ = audioop.ratecv(pcm, 2, 1, rate, SAMPLE_RATE, None)
    mulaw = audioop.lin2ulaw(pcm, 2)
    usable = len(mulaw) - len(mulaw) % MULAW_FRAME_BYTES
    return [mulaw[i : i + MULAW_FRAME_BYTES] for i in range(0, usable, MULAW_FRAME_BYTES)]


class RecordedCaller(SimulatedCaller):
    """Plays a recorded caller channel from the first frame, at the pace it was recorded, whatever the agent does."""

    def __init__(self, ws_url: str, call_id: str, token: str, frames: list[bytes]) -> None:
        super().__init__(ws_url, call_id, token, [], max_seconds=len(frames) * 0.02 + TAIL_SECONDS)
        self._recorded = frames

    async def _speak(self, prepared: list[list[bytes]]) -> None:
        self._mic.extend(self._recorded)


def _strategy_version(db: Session, record: Call, number: int) -> ContextStrategy:
    if record.workspace_id is None:
        raise ReplayError(f"call {record.id} belongs to no workspace, so it has no strategy versions to choose from")
    query = select(StrategyVersion).where(col(StrategyVersion.workspace_id) == record.workspace_id)
    versions = {version.version_number: version for version in db.exec(query).all()}
    if number not in versions:
        known = ", ".join(str(n) for n in sorted(versions)) or "none"
        raise ReplayError(
            f"--strategy-version {number}: workspace {record.workspace_id} has no strategy version {number} (it has: {known})"
        )
    return ContextStrategy.model_validate(versions[number])


def stored_input(call_id: str, settings: Settings, use_transcript: bool, strategy_version: int | None = None) -> ReplayInput:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as db:
            record = db.get(Call, call_id)
            chosen = _strategy_version(db, record, strategy_version) if record and strategy_version is not None else None
            attempt = db.exec(select(CallAttempt).where(col(CallAttempt.call_id) == call_id)).first()
    finally:
        engine.dispose()
    if record is None:
        raise ReplayError(
            f"call {call_id} is unknown in {settings.database_url.split('://', 1)[0]} database (or has been deleted)"
        )
    stored_context = context_path(settings, call_id)
    if not stored_context.is_file():
        raise ReplayError(f"call {call_id} has no stored context in {stored_context.parent} (expired with its recording?)")
    context = ContextInstance.model_validate_json(stored_context.read_text())
    request = {name: getattr(context, name) for name in REQUEST_FIELDS} | {"consent": True}
    if attempt is not None and "style" in attempt.call_request:
        # The context holds the style the strategy's tone chose; another strategy starts from the request's.
        request["style"] = attempt.call_request["style"]
    old = Conversation(record.outcome, record.transcript, record.turn_metrics, record.duration_seconds)
    wav = None
    if not use_transcript:
        wav = Path(record.recording_path) if record.recording_path else recording_path(settings, call_id)
    strategy = chosen if strategy_version is not None else context.strategy
    return ReplayInput(request, old, wav, old.caller_lines(), old_strategy=context.strategy, strategy=strategy)


def file_input(wav: Path, request_path: Path) -> ReplayInput:
    try:
        request = json.loads(request_path.read_text())
        CallRequest.model_validate(request)
    except (OSError, json.JSONDecodeError) as exc:
        raise ReplayError(f"--request {request_path}: not a readable JSON file ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ReplayError(f"--request {request_path}: field {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return ReplayInput(request, None, wav, [])


async def _workspace_with(http: httpx.AsyncClient, strategy: ContextStrategy) -> dict[str, str]:
    """A workspace on the local server whose active strategy has this text: its key's header."""
    created = await http.post("/workspaces", json={"name": f"replay of strategy version {strategy.version_number}"})
    if created.status_code != 201:
        raise ReplayError(f"the local server refused the workspace ({created.status_code}): {created.text}")
    key = {"Authorization": f"Bearer {created.json()['api_key']}"}
    fields = strategy.model_dump(include={"tone", "objectives", "objection_handling", "cta_rules"})
    version = await http.post("/strategies", json=fields, headers=key)
    if version.status_code != 201:
        raise ReplayError(f"the local server refused the strategy ({version.status_code}): {version.text}")
    activated = await http.post(f"/strategies/{version.json()['id']}/activate", headers=key)
    if activated.status_code != 200:
        raise ReplayError(f"the local server did not activate the strategy ({activated.status_code}): {activated.text}")
    return key


async def replay_on(base_url: str, source: ReplayInput, frames: list[bytes] | None) -> tuple[Conversation, float]:
    # The local server inherits this shell's environment, an API_KEY included.
    headers = {"X-API-Key": os.environ["API_KEY"]} if os.environ.get("API_KEY") else {}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        if source.strategy is not None:
            http.headers.update(await _workspace_with(http, source.strategy))
        created = await http.post("/calls", json=source.request)
        if created.status_code != 202:
            raise ReplayError(f"the local server refused the call ({created.status_code}): {created.text}")
        call = created.json()
        stream = call["stream"]
        # The queue places the call just after the 202: its stream is admitted once it is placed.
        placed = await wait_until_placed(http, call["id"])
        if placed.get("status") == "failed":
            raise ReplayError(f"the local server could not place the call: {placed.get('error')}")
        ws_url = base_url.replace("http", "ws", 1) + "/ws"
        if frames is not None:
            caller: SimulatedCaller = RecordedCaller(ws_url, stream["call_id"], stream["token"], frames)
        else:
            caller = SimulatedCaller(
                ws_url, stream["call_id"], stream["token"], [CallerLine(text) for text in source.caller_lines]
            )
        started = time.monotonic()
        await caller.run()
        shown: dict[str, Any] = {}
        for _ in range(200):
            shown = (await http.get(f"/calls/{call['id']}")).json()
            if shown.get("status") in ("completed", "failed"):
                break
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
    new = Conversation(
        shown.get("outcome"), shown.get("transcript", []), shown.get("turn_metrics", []), shown.get("duration_seconds")
    )
    return new, elapsed


def replay(source: ReplayInput) -> tuple[Conversation, float]:
    # Checked before a server starts: bad input fails at once.
    frames = caller_frames(source.wav) if source.wav is not None else None
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        env = {
            "TELEPHONY_PROVIDER": "none",
            "DATABASE_URL": f"sqlite:///{tmp}/replay.db",
            "RECORDINGS_DIR": f"{tmp}/recordings",
            "ENFORCE_CALLING_HOURS": "false",
            "RATE_LIMIT_PER_MINUTE": "10000",
            "LOG_JSON": "true",
        }
        with running_server(env, log_path=Path(tmp) / "server.log") as base_url:
            return asyncio.run(replay_on(base_url, source, frames))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def strategy_label(strategy: ContextStrategy | None) -> str:
    return f"version {strategy.version_number}" if strategy is not None else "none"


def side_by_side(
    old: Conversation | None,
    new: Conversation,
    width: int = 60,
    strategies: tuple[ContextStrategy | None, ContextStrategy | None] = (None, None),
) -> str:
    old = old or Conversation(None, [], [])
    old_strategy, new_strategy = strategies
    rows = [
        f"strategy: old {strategy_label(old_strategy)}  new {strategy_label(new_strategy)}",
        f"{'turn':<5}{'old agent':<{width}}  {'new agent':<{width}}  {'old latency':>12}  {'new latency':>12}",
    ]
    old_lines, new_lines = old.agent_lines(), new.agent_lines()
    old_lat, new_lat = [None, *old.latencies()], [None, *new.latencies()]  # the opening answers no caller turn
    for i in range(max(len(old_lines), len(new_lines))):
        left = old_lines[i] if i < len(old_lines) else ""
        right = new_lines[i] if i < len(new_lines) else ""
        mark = " " if left == right else "*"
        rows.append(
            f"{i:<4}{mark}{left[:width]:<{width}}  {right[:width]:<{width}}  "
            f"{_ms(old_lat[i] if i < len(old_lat) else None):>12}  {_ms(new_lat[i] if i < len(new_lat) else None):>12}"
        )
    rows.append(
        f"outcome: old {old.outcome or '-'}  new {new.outcome or '-'}" + ("" if old.outcome == new.outcome else "  (CHANGED)")
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("call_id", nargs="?", help="a stored call's id")
    parser.add_argument("--wav", type=Path, help="a recording to replay (its left channel is the caller)")
    parser.add_argument("--request", type=Path, help="with --wav: the call request (JSON) to run it with")
    parser.add_argument(
        "--transcript", action="store_true", help="speak the stored caller lines with eSpeak instead of a recording"
    )
    parser.add_argument(
        "--strategy-version",
        type=int,
        metavar="N",
        help="with CALL_ID: run on version N of the call's workspace strategy instead of the one the call ran on",
    )
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = parser.parse_args(argv)
    try:
        if args.call_id and not args.wav:
            source = stored_input(args.call_id, Settings(), args.transcript, args.strategy_version)
        elif args.strategy_version is not None:
            raise ReplayError("--strategy-version needs a CALL_ID: the version is read from the stored call's workspace")
        elif args.wav and args.request and not args.call_id:
            source = file_input(args.wav, args.request)
        else:
            raise ReplayError("give a CALL_ID, or --wav PATH with --request JSON")
        if source.wav is None and not source.caller_lines:
            raise ReplayError("the stored call has no caller lines to speak")
        new, elapsed = replay(source)
    except ReplayError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    if args.json:
        old = source.old
        print(
            json.dumps(
                {
                    "old": None
                    if old is None
                    else {"outcome": old.outcome, "agent": old.agent_lines(), "latency_ms": old.latencies()},
                    "new": {"outcome": new.outcome, "agent": new.agent_lines(), "latency_ms": new.latencies()},
                    "strategy_version": {
                        "old": source.old_strategy.version_number if source.old_strategy else None,
                        "new": source.strategy.version_number if source.strategy else None,
                    },
                    "replay_seconds": round(elapsed, 1),
                }
            )
        )
    else:
        print(side_by_side(source.old, new, strategies=(source.old_strategy, source.strategy)))
        print(f"replayed in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
