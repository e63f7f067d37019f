"""A local Twilio: the Calls and Messages REST endpoints, and the phone network behind them.

Point the app at it with `TWILIO_API_BASE_URL=http://127.0.0.1:<port>` and the emulator's account
sid and auth token, and a call placed through the real `twilio` client goes through the same steps as
on Twilio: the REST request is checked (Basic auth, required parameters, the TwiML), the callee's
phone rings, then it is busy, unanswered, failed, or answered by a person or a machine. An answered
call runs its TwiML: `<Connect><Stream>` opens the media stream to the app's `/ws` with the stream's
`<Parameter>`s and a simulated callee (simulator/callee.py) who speaks its lines
as real audio; `<Say>`, `<Pause>` and `<Hangup/>` run after it. Status callbacks (and the async AMD
verdict) are POSTed to the app signed with `X-Twilio-Signature` exactly as Twilio signs them, and a
`Status=completed` update hangs the call up. Messages are accepted, stored and, with a StatusCallback,
reported as sent and delivered. Everything is kept for inspection, through Twilio's own list
endpoints or the Python API (`calls()`, `messages()`).

    python -m tests.support.twilio_rest_emulator --port 8766 \\
        --callee +14155550100=busy --say "yes sure i have a minute"

It only listens on loopback, and only reaches the URLs the app hands it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import email.utils
import math
import secrets
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from models.log_config import get_logger
from simulator import caller_scripts
from simulator.caller_scripts import CallerLine

log = get_logger(__name__)

API_VERSION = "2010-04-01"
TERMINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
CALLBACK_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
MACHINE_DETECTION_MODES = frozenset({"Enable", "DetectMessageEnd"})
# SIP response codes Twilio reports with unanswered calls.
SIP_CODES = {"busy": "486", "no-answer": "487", "failed": "503", "canceled": "487"}
MAX_BODY_CHARS = 1600
MAX_REQUEST_BYTES = 256 * 1024


class CalleeBehavior(StrEnum):
    ANSWER = "answer"  # a person picks up and speaks the callee's lines
    MACHINE = "machine"  # voicemail picks up (AMD says machine_start)
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"  # the carrier rejects the call


@dataclass
class Callee:
    behavior: CalleeBehavior = CalleeBehavior.ANSWER
    lines: list[CallerLine] = field(default_factory=list)
    ring_seconds: float = 0.3
    # Time from answer to the AMD verdict (Twilio's takes a few seconds).
    amd_seconds: float = 0.8
    # With MachineDetection=DetectMessageEnd: seconds after the AMD start until the beep.
    greeting_seconds: float = 4.5
    # The emulated phone hangs up by itself after this long on the media stream.
    max_stream_seconds: float = 120.0
    # Open the stream with a wrong token, as a forged or stale stream would: the app must refuse it.
    wrong_stream_token: bool = False


VOICEMAIL_GREETING = [caller_scripts.VOICEMAIL_GREETING]


@dataclass
class CallbackDelivery:
    url: str
    params: dict[str, str]
    signature: str
    status_code: int | None
    at: float


@dataclass
class EmulatedCall:
    sid: str
    account_sid: str
    to: str
    from_: str
    params: dict[str, list[str]]
    callee: Callee
    status: str = "queued"
    answered_by: str | None = None
    date_created: datetime = field(default_factory=lambda: datetime.now(UTC))
    date_updated: datetime = field(default_factory=lambda: datetime.now(UTC))
    start_time: datetime | None = None
    end_time: datetime | None = None
    # What the emulated phone heard from <Say>, and the stream parameters it was given.
    said: list[str] = field(default_factory=list)
    stream_parameters: dict[str, str] = field(default_factory=dict)
    stream_url: str | None = None
    stream_report: dict[str, Any] | None = None
    callbacks: list[CallbackDelivery] = field(default_factory=list)
    updates: list[dict[str, list[str]]] = field(default_factory=list)
    hangup: asyncio.Event = field(default_factory=asyncio.Event)
    # A live update with new TwiML (a transfer): the stream ends and the call runs this instead.
    redirect_twiml: str | None = None
    redirected: asyncio.Event = field(default_factory=asyncio.Event)
    # Numbers a <Dial> connected the call to.
    dialed: list[str] = field(default_factory=list)
    sequence: int = 0

    def first(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None

    def resource(self) -> dict[str, Any]:
        duration = None
        if self.start_time and self.end_time:
            duration = str(math.ceil((self.end_time - self.start_time).total_seconds()))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}.json"
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "annotation": None,
            "answered_by": self.answered_by,
            "caller_name": None,
            "date_created": _rfc2822(self.date_created),
            "date_updated": _rfc2822(self.date_updated),
            "direction": "outbound-api",
            "duration": duration,
            "end_time": _rfc2822(self.end_time),
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": self.from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": "PN" + "0" * 32,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "start_time": _rfc2822(self.start_time),
            "status": self.status,
            "to": self.to,
            "to_formatted": self.to,
            "trunk_sid": None,
            "uri": uri,
            "subresource_uris": {
                "notifications": uri.replace(".json", "/Notifications.json"),
                "recordings": uri.replace(".json", "/Recordings.json"),
                "events": uri.replace(".json", "/Events.json"),
            },
        }


def _rfc2822(moment: datetime | None) -> str | None:
    return email.utils.format_datetime(moment) if moment else None


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _error(status: int, code: int, message: str) -> JSONResponse:
    """Twilio's error body."""
    return JSONResponse(
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status},
        status_code=status,
    )


class TwilioRestEmulator:
    def __init__(
        self, account_sid: str | None = None, auth_token: str | None = None, *, default_callee: Callee | None = None
    ) -> None:
        self.account_sid = account_sid or _sid("AC")
        self.auth_token = auth_token or secrets.token_hex(16)
        self.default_callee = default_callee or Callee()
        self._callees: dict[str, Callee] = {}
        self._calls: dict[str, EmulatedCall] = {}
        self._messages: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._lock = threading.Lock()
        self._validator = RequestValidator(self.auth_token)
        self._http: httpx.AsyncClient | None = None
        self.app = self._build_app()

    # --- configuration and inspection (safe from any thread) -----------------------------------
    def set_callee(self, phone: str, callee: Callee) -> None:
        with self._lock:
            self._callees[phone] = callee

    def calls(self) -> list[EmulatedCall]:
        with self._lock:
            return list(self._calls.values())

    def call(self, sid: str) -> EmulatedCall | None:
        with self._lock:
            return self._calls.get(sid)

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self._messages.values()]

    def sign(self, url: str, params: dict[str, str]) -> str:
        return self._validator.compute_signature(url, params)

    # --- HTTP ----------------------------------------------------------------------------------
    def _build_app(self) -> Starlette:
        base = f"/{API_VERSION}/Accounts/{{account_sid}}"
        routes = [
            Route(f"{base}/Calls.json", self._create_call, methods=["POST"]),
            Route(f"{base}/Calls.json", self._list_calls, methods=["GET"]),
            Route(f"{base}/Calls/{{sid}}.json", self._update_call, methods=["POST"]),
            Route(f"{base}/Calls/{{sid}}.json", self._fetch_call, methods=["GET"]),
            Route(f"{base}/Messages.json", self._create_message, methods=["POST"]),
            Route(f"{base}/Messages.json", self._list_messages, methods=["GET"]),
            Route(f"{base}/Messages/{{sid}}.json", self._fetch_message, methods=["GET"]),
        ]
        return Starlette(routes=routes, lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette):
        self._http = httpx.AsyncClient(timeout=10)
        try:
            yield
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._http.aclose()

    def _authorized(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        return (
            secrets.compare_digest(user, self.account_sid)
            and secrets.compare_digest(password, self.auth_token)
            and request.path_params["account_sid"] == self.account_sid
        )

    async def _form(self, request: Request) -> dict[str, list[str]] | None:
        body = await request.body()
        if len(body) > MAX_REQUEST_BYTES:
            return None
        return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)

    async def _create_form(self, request: Request) -> tuple[dict[str, list[str]], dict[str, str]] | JSONResponse:
        """A create request's form (every value, and the first of each) once its credentials pass; else Twilio's error."""
        if not self._authorized(request):
            return self._denied()
        form = await self._form(request)
        if form is None:
            return _error(413, 20001, "Request too large")
        return form, {name: values[0] for name, values in form.items() if values}

    def _denied(self) -> JSONResponse:
        return _error(401, 20003, "Authenticate")

    def _not_found(self, request: Request) -> JSONResponse:
        return _error(404, 20404, f"The requested resource {request.url.path} was not found")

    async def _create_call(self, request: Request) -> JSONResponse:
        received = await self._create_form(request)
        if isinstance(received, JSONResponse):
            return received
        form, first = received
        if not first.get("To"):
            return _error(400, 21201, "No 'To' number is specified")
        if not first.get("From"):
            return _error(400, 21213, "No 'From' number is specified")
        if not (first.get("Url") or first.get("Twiml") or first.get("ApplicationSid")):
            return _error(400, 21205, "Url parameter is required. Please provide a Url, Twiml or ApplicationSid")
        if first.get("Twiml") and _parse_twiml(first["Twiml"]) is None:
            return _error(400, 12100, "Document parse failure: Twiml is not a <Response> document")
        events = form.get("StatusCallbackEvent", [])
        if any(event not in CALLBACK_EVENTS for event in events):
            return _error(400, 21626, "Invalid 'StatusCallbackEvent'")
        if first.get("MachineDetection") and first["MachineDetection"] not in MACHINE_DETECTION_MODES:
            return _error(400, 21218, "Invalid MachineDetection: use Enable or DetectMessageEnd")
        with self._lock:
            callee = self._callees.get(first["To"], self.default_callee)
            call = EmulatedCall(_sid("CA"), self.account_sid, first["To"], first["From"], form, callee)
            self._calls[call.sid] = call
        self._spawn(self._run_call(call))
        log.info("emulator_call_created", call_sid=call.sid, behavior=callee.behavior.value)
        return JSONResponse(call.resource(), status_code=201)

    async def _update_call(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return self._denied()
        call = self.call(request.path_params["sid"])
        if call is None:
            return self._not_found(request)
        form = await self._form(request) or {}
        call.updates.append(form)
        twiml = (form.get("Twiml") or [""])[0]
        if twiml:
            if _parse_twiml(twiml) is None:
                return _error(400, 12100, "Document parse failure: Twiml is not a <Response> document")
            if call.status != "in-progress":
                return _error(400, 21220, "Call is not in-progress. Cannot redirect.")
            call.redirect_twiml = twiml
            call.redirected.set()
            call.date_updated = datetime.now(UTC)
            return JSONResponse(call.resource())
        wanted = (form.get("Status") or [""])[0]
        if wanted and wanted not in ("completed", "canceled"):
            return _error(400, 21220, f"Invalid call state: Status must be completed or canceled, not {wanted}")
        if wanted == "canceled" and call.status == "in-progress":
            pass  # Twilio only cancels calls that have not been answered yet
        elif wanted and call.status not in TERMINAL_STATUSES:
            call.hangup.set()
        call.date_updated = datetime.now(UTC)
        return JSONResponse(call.resource())

    async def _fetch_call(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return self._denied()
        call = self.call(request.path_params["sid"])
        return JSONResponse(call.resource()) if call else self._not_found(request)

    async def _list_calls(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return self._denied()
        wanted_to, wanted_status = request.query_params.get("To"), request.query_params.get("Status")
        calls = [
            c.resource()
            for c in sorted(self.calls(), key=lambda c: c.date_created, reverse=True)
            if (not wanted_to or c.to == wanted_to) and (not wanted_status or c.status == wanted_status)
        ]
        return JSONResponse(_page("calls", calls, request))

    async def _create_message(self, request: Request) -> JSONResponse:
        received = await self._create_form(request)
        if isinstance(received, JSONResponse):
            return received
        form, first = received
        if not first.get("To"):
            return _error(400, 21604, "A 'To' phone number is required.")
        if not (first.get("From") or first.get("MessagingServiceSid")):
            return _error(400, 21603, "A 'From' phone number is required.")
        body = first.get("Body", "")
        if not body and not form.get("MediaUrl"):
            return _error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        now = _rfc2822(datetime.now(UTC))
        sid = _sid("SM")
        message = {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": first.get("From"),
            "messaging_service_sid": first.get("MessagingServiceSid"),
            "num_media": str(len(form.get("MediaUrl", []))),
            "num_segments": str(max(1, math.ceil(len(body) / 153)) if len(body) > 160 else 1),
            "price": None,
            "price_unit": "USD",
            "status": "queued",
            "to": first["To"],
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
        }
        with self._lock:
            self._messages[sid] = message
        self._spawn(self._deliver_message(sid, first.get("StatusCallback")))
        return JSONResponse(message, status_code=201)

    async def _fetch_message(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return self._denied()
        with self._lock:
            message = self._messages.get(request.path_params["sid"])
        return JSONResponse(message) if message else self._not_found(request)

    async def _list_messages(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return self._denied()
        wanted_to = request.query_params.get("To")
        messages = [m for m in reversed(self.messages()) if not wanted_to or m["to"] == wanted_to]
        return JSONResponse(_page("messages", messages, request))

    # --- the phone network ----------------------------------------------------------------------
    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _callback(self, call: EmulatedCall, url: str | None, params: dict[str, str]) -> None:
        if not url or self._http is None:
            return
        signature = self.sign(url, params)
        status_code = None
        try:
            answer = await self._http.post(url, data=params, headers={"X-Twilio-Signature": signature})
            status_code = answer.status_code
        except httpx.HTTPError as exc:
            log.warning("emulator_callback_failed", url=url, error=type(exc).__name__)
        call.callbacks.append(CallbackDelivery(url, params, signature, status_code, time.monotonic()))

    async def _status_callback(self, call: EmulatedCall, event: str) -> None:
        url = call.first("StatusCallback")
        events = call.params.get("StatusCallbackEvent") or ["completed"]
        if event not in events:
            return
        call.sequence += 1
        params = {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": call.status,
            "Called": call.to,
            "Caller": call.from_,
            "CallbackSource": "call-progress-events",
            "Direction": "outbound-api",
            "From": call.from_,
            "To": call.to,
            "SequenceNumber": str(call.sequence - 1),
            "Timestamp": _rfc2822(datetime.now(UTC)) or "",
        }
        if call.status in SIP_CODES:
            params["SipResponseCode"] = SIP_CODES[call.status]
        if event == "completed" and call.start_time and call.end_time:
            params["CallDuration"] = str(math.ceil((call.end_time - call.start_time).total_seconds()))
        if call.answered_by:
            params["AnsweredBy"] = call.answered_by
        await self._callback(call, url, params)

    def _set_status(self, call: EmulatedCall, status: str) -> None:
        call.status = status
        call.date_updated = datetime.now(UTC)
        if status == "in-progress":
            call.start_time = call.date_updated
        elif status in TERMINAL_STATUSES:
            call.end_time = call.date_updated

    async def _run_call(self, call: EmulatedCall) -> None:
        try:
            await asyncio.sleep(0.05)
            self._set_status(call, "initiated")
            await self._status_callback(call, "initiated")
            self._set_status(call, "ringing")
            await self._status_callback(call, "ringing")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.hangup.wait(), call.callee.ring_seconds)
            if call.hangup.is_set():
                self._set_status(call, "canceled")
            elif call.callee.behavior in (CalleeBehavior.BUSY, CalleeBehavior.NO_ANSWER, CalleeBehavior.FAILED):
                self._set_status(call, call.callee.behavior.value)
            else:
                await self._answered(call)
                self._set_status(call, "completed")
        except asyncio.CancelledError:
            self._set_status(call, "completed")
            raise
        except Exception as exc:  # the emulator must never leave a call hanging
            log.error("emulator_call_crashed", call_sid=call.sid, error=repr(exc))
            self._set_status(call, "failed")
        finally:
            if not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                await self._status_callback(call, "completed")

    async def _answered(self, call: EmulatedCall) -> None:
        self._set_status(call, "in-progress")
        await self._status_callback(call, "answered")
        verdict = "machine_start" if call.callee.behavior is CalleeBehavior.MACHINE else "human"
        detection = call.first("MachineDetection")
        if detection and call.first("AsyncAmd") == "true":
            self._spawn(self._amd_verdict(call, verdict))
        elif detection:
            await asyncio.sleep(call.callee.amd_seconds)  # synchronous AMD holds the TwiML back
            call.answered_by = verdict
        twiml = call.first("Twiml") or await self._fetch_twiml(call)
        document = _parse_twiml(twiml or "")
        if document is None:
            call.said.append("We are sorry, an application error has occurred. Goodbye.")
            return
        await self._run_twiml(call, document, replaceable=True)
        if call.redirect_twiml is not None and not call.hangup.is_set():
            await self._run_twiml(call, _parse_twiml(call.redirect_twiml) or ET.Element("Response"), replaceable=False)

    async def _run_twiml(self, call: EmulatedCall, document: ET.Element, *, replaceable: bool) -> None:
        """Run the verbs in order; a live update with new TwiML abandons the rest of the first document."""
        for verb in document:
            if replaceable and call.redirected.is_set():
                return
            if call.hangup.is_set():
                return
            if verb.tag == "Connect":
                for noun in verb:
                    if noun.tag == "Stream":
                        await self._stream(call, noun)
            elif verb.tag == "Say":
                call.said.append((verb.text or "").strip())
                await asyncio.sleep(0.05)
            elif verb.tag == "Pause":
                await asyncio.sleep(min(float(verb.get("length", "1")), 2.0))
            elif verb.tag == "Hangup":
                return
            elif verb.tag == "Dial":
                number = (verb.text or "").strip() or next((n.text or "" for n in verb if n.tag == "Number"), "")
                call.dialed.append(number.strip())
                await asyncio.sleep(0.05)

    async def _amd_verdict(self, call: EmulatedCall, verdict: str) -> None:
        await asyncio.sleep(call.callee.amd_seconds)
        if verdict == "machine_start" and call.first("MachineDetection") == "DetectMessageEnd":
            # Twilio waits for the end of the greeting and reports how it ended.
            await asyncio.sleep(call.callee.greeting_seconds)
            verdict = "machine_end_beep"
        if call.status != "in-progress":
            return
        call.answered_by = verdict
        params = {
            "AccountSid": call.account_sid,
            "CallSid": call.sid,
            "AnsweredBy": verdict,
            "MachineDetectionDuration": str(int(call.callee.amd_seconds * 1000)),
        }
        await self._callback(call, call.first("AsyncAmdStatusCallback"), params)

    async def _fetch_twiml(self, call: EmulatedCall) -> str | None:
        url = call.first("Url")
        if not url or self._http is None:
            return None
        params = {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": call.status,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": "outbound-api",
            "From": call.from_,
            "To": call.to,
        }
        if call.answered_by:
            params["AnsweredBy"] = call.answered_by
        try:
            if (call.first("Method") or "POST").upper() == "GET":
                answer = await self._http.get(url, params=params, headers={"X-Twilio-Signature": self.sign(url, {})})
            else:
                answer = await self._http.post(url, data=params, headers={"X-Twilio-Signature": self.sign(url, params)})
        except httpx.HTTPError:
            return None
        return answer.text if answer.status_code == 200 else None

    async def _stream(self, call: EmulatedCall, stream: ET.Element) -> None:
        """<Stream>: open the media stream and let the callee talk until either side hangs up."""
        from simulator.callee import SimulatedCaller

        call.stream_url = stream.get("url", "")
        call.stream_parameters = {p.get("name", ""): p.get("value", "") for p in stream if p.tag == "Parameter"}
        lines = call.callee.lines or (VOICEMAIL_GREETING if call.callee.behavior is CalleeBehavior.MACHINE else [])
        token = call.stream_parameters.get("token", "")
        caller = SimulatedCaller(
            call.stream_url,
            call.stream_parameters.get("call_id", ""),
            token[::-1] if call.callee.wrong_stream_token else token,
            lines,
            call_sid=call.sid,
            max_seconds=call.callee.max_stream_seconds,
        )
        talking = asyncio.create_task(caller.run())
        hangup = asyncio.create_task(call.hangup.wait())
        redirected = asyncio.create_task(call.redirected.wait())
        try:
            await asyncio.wait({talking, hangup, redirected}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hangup.cancel()
            redirected.cancel()
            if not talking.done():
                talking.cancel()  # our side hung up: the websocket closes as the call drops
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await talking
        call.stream_report = caller.report.as_dict()

    async def _deliver_message(self, sid: str, status_callback: str | None) -> None:
        for status in ("sent", "delivered"):
            await asyncio.sleep(0.05)
            with self._lock:
                message = self._messages[sid]
                message["status"] = status
                message["date_updated"] = _rfc2822(datetime.now(UTC))
                if status == "sent":
                    message["date_sent"] = message["date_updated"]
            if status_callback and self._http is not None:
                params = {
                    "AccountSid": self.account_sid,
                    "ApiVersion": API_VERSION,
                    "From": message["from"] or "",
                    "MessageSid": sid,
                    "MessageStatus": status,
                    "SmsSid": sid,
                    "SmsStatus": status,
                    "To": message["to"],
                }
                with contextlib.suppress(httpx.HTTPError):
                    await self._http.post(
                        status_callback, data=params, headers={"X-Twilio-Signature": self.sign(status_callback, params)}
                    )


def _parse_twiml(text: str) -> ET.Element | None:
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    return root if root.tag == "Response" else None


def _page(key: str, items: list[dict[str, Any]], request: Request) -> dict[str, Any]:
    size = max(1, min(int(request.query_params.get("PageSize", "50") or 50), 1000))
    shown = items[:size]
    return {
        key: shown,
        "start": 0,
        "end": max(len(shown) - 1, 0),
        "page": 0,
        "page_size": size,
        "first_page_uri": request.url.path,
        "previous_page_uri": None,
        "next_page_uri": None,
        "uri": request.url.path,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmulatorServer:
    """The emulator on a loopback port, served from a background thread (for tests and scripts)."""

    def __init__(self, emulator: TwilioRestEmulator, port: int | None = None) -> None:
        self.emulator = emulator
        self.port = port or _free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(emulator.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self._thread = threading.Thread(target=self._server.run, name="twilio-emulator", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The settings that point the app at this emulator."""
        return {
            "TWILIO_ACCOUNT_SID": self.emulator.account_sid,
            "TWILIO_AUTH_TOKEN": self.emulator.auth_token,
            "TWILIO_API_BASE_URL": self.base_url,
        }

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Twilio emulator did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@contextlib.contextmanager
def running_emulator(emulator: TwilioRestEmulator | None = None) -> Iterator[EmulatorServer]:
    server = EmulatorServer(emulator or TwilioRestEmulator())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--account-sid", default=None)
    parser.add_argument("--auth-token", default=None)
    parser.add_argument("--ring-seconds", type=float, default=1.0)
    parser.add_argument("--behavior", choices=[b.value for b in CalleeBehavior], default="answer", help="what every callee does")
    parser.add_argument("--callee", action="append", default=[], metavar="NUMBER=BEHAVIOR", help="override one number")
    parser.add_argument("--say", action="append", default=[], metavar="LINE", help="what an answering callee says, in order")
    args = parser.parse_args()

    lines = [CallerLine(text) for text in args.say]
    emulator = TwilioRestEmulator(
        args.account_sid, args.auth_token, default_callee=Callee(CalleeBehavior(args.behavior), lines, args.ring_seconds)
    )
    for spec in args.callee:
        number, _, behavior = spec.partition("=")
        emulator.set_callee(number, Callee(CalleeBehavior(behavior or "answer"), lines, args.ring_seconds))
    server = EmulatorServer(emulator, args.port)
    print("Twilio REST emulator on", server.base_url)
    print("Point the app at it with:")
    for name, value in {**server.env(), "TWILIO_FROM_NUMBER": "+15005550006", "TELEPHONY_PROVIDER": "twilio"}.items():
        print(f"  export {name}={value}")
    server._server.run()


if __name__ == "__main__":
    main()
