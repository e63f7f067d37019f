"""The one Settings object; every env var the project reads is declared here."""

import secrets
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SttProvider = Literal["deepgram", "local"]
LlmProvider = Literal["openai", "local"]
TtsProvider = Literal["cartesia", "local"]
TelephonyProvider = Literal["twilio", "simulator", "none"]
VoicemailAction = Literal["leave_message", "hang_up"]
SimulatorScenario = Literal["happy", "barge_in", "opt_out", "not_interested", "silent", "voicemail"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite:///data/voice_caller.db"
    redis_url: str | None = None
    # Unset: a random key per process, which is fine for one process and a demo;
    # set it whenever the API and the worker run as separate processes.
    secret_key: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_hex(32)))
    api_key: SecretStr | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    # The public URL of the voice pool (the Procfile's `voice` processes) when media streams are served
    # apart from the API: Twilio's `<Stream>` goes to wss://<its host>/ws. Unset: PUBLIC_BASE_URL's /ws
    # (the `web` process serves /ws itself).
    voice_public_url: str | None = None
    # Where TELEPHONY_PROVIDER=simulator's callee connects; unset: this server's own /ws, at the
    # address a request reached it at (PUBLIC_BASE_URL may name a proxy, or another port).
    simulator_ws_url: str | None = None
    # Who answers TELEPHONY_PROVIDER=simulator's calls (simulator/caller_scripts.py); `voicemail` is a
    # machine, with answering-machine verdicts like Twilio's.
    simulator_scenario: SimulatorScenario = "happy"

    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = None
    # Where the twilio client sends REST calls; only changed to reach a local emulator.
    twilio_api_base_url: str | None = None

    deepgram_api_key: SecretStr | None = None
    # Where each cloud provider is reached; unset: its public endpoint. Changed to reach a private
    # deployment or the local stand-ins (scripts/standins/). Deepgram: ws(s):// or http(s)://host[:port];
    # Cartesia: its http(s) base URL (the websocket is <base with ws(s)>/tts/websocket).
    deepgram_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_model: str = "gpt-4o-mini"
    openai_base_url: str | None = None
    cartesia_api_key: SecretStr | None = None
    cartesia_voice_id: str = "71a7ad14-091c-4e8e-a314-022ece01c121"
    cartesia_base_url: str | None = None
    turnstile_secret: SecretStr | None = None
    turnstile_verify_url: str = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
    # Public: rendered into the web form's Turnstile widget (the secret above stays server-side).
    turnstile_site_key: str | None = None
    # Larger request bodies are refused with 413 before they are parsed; the lead import and history
    # routes take bulk uploads and have larger limits of their own (control_api/body_limit.py).
    max_request_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Call requests one client address may make per 60 s (the form and unauthenticated POST /calls).
    rate_limit_per_minute: int = Field(default=5, ge=1)
    # Call requests a minute per workspace, for requests that carry a workspace key (a form backend
    # relaying its visitors); they are not held to the per-address limit or Turnstile.
    workspace_calls_per_minute: int = Field(default=120, ge=1)
    # The whole OpenAI context generation, retries included; past it the templates are used.
    openai_context_timeout_seconds: float = Field(default=8.0, gt=0)
    # Twilio answering-machine detection (async: the call connects at once, the verdict comes later).
    twilio_machine_detection: bool = True
    # When a machine answers: wait for the beep (Twilio's message-end detection) and leave a short
    # message built from the context, or hang up at once.
    voicemail_action: VoicemailAction = "leave_message"

    # The local journal every finished call is written to before the database (models/outcome_journal.py),
    # and how often what it holds unconfirmed is replayed while running (also once at start-up).
    outcome_journal_dir: str = "data/journal"
    outcome_journal_replay_seconds: float = Field(default=10.0, gt=0)
    # Only for tests of crash recovery: the process SIGKILLs itself at this point of an outcome write.
    test_only_crash_point: Literal["after_journal", "after_database"] | None = None

    log_level: str = "INFO"
    log_json: bool = True

    stt_provider: SttProvider | None = None
    llm_provider: LlmProvider | None = None
    tts_provider: TtsProvider | None = None
    telephony_provider: TelephonyProvider | None = None

    # Call policy.
    max_call_seconds: float = 300.0
    silence_timeout_seconds: float = 8.0
    stream_start_timeout_seconds: float = 10.0
    llm_first_token_timeout_seconds: float = 6.0

    # Turn-taking (voice_worker/turn_taking.py); what each costs is measured in README's performance
    # section. Silence after which Silero VAD reports the caller stopped speaking. Below 0.25 s the VAD
    # stops inside "tuesday at | three pm" of the simulated callee (measured at 0.2 s), and a turn can
    # end there.
    vad_stop_seconds: float = Field(default=0.25, ge=0.05, le=2.0)
    # On: at each VAD stop the Smart Turn v3 model (bundled with pipecat, ~50-80 ms on a CPU) decides
    # whether the turn is over. Off: the turn ends USER_SPEECH_TIMEOUT_SECONDS after VAD stop.
    smart_turn: bool = True
    # With SMART_TURN: silence after VAD stop after which the turn ends although the model judged it
    # unfinished (pipecat's default is 3 s; the model judges some finished lines unfinished).
    smart_turn_stop_seconds: float = Field(default=0.5, gt=0, le=10.0)
    # With SMART_TURN: the reply is generated from the recognizer's final while the turn's end is still
    # being decided (VAD stop, Smart Turn, the mid-phrase hold), and held until the turn ends with the
    # same words; dropped, unheard, when the caller goes on. Costs an LLM request per dropped guess.
    speculative_reply: bool = True
    # Without SMART_TURN: silence after VAD stop before the turn ends.
    user_speech_timeout_seconds: float = Field(default=0.3, ge=0, le=5.0)
    # Offline recognizer (voice_worker/providers/recognition_pool.py): worker processes that decode
    # every call's audio, started once per server process; 0 decodes in threads of the server process
    # (pocketsphinx holds the GIL there, slowing every call's event loop while it decodes).
    stt_decode_processes: int = Field(default=1, ge=0, le=32)

    # Outreach policy (models/outreach_policy.py). Only the calling-hours rule can be turned
    # off, for test servers that must place calls at any hour; consent, opt-out, spacing and
    # budget always apply.
    enforce_calling_hours: bool = True

    # Call recording (voice_worker/call_recorder.py): a stereo WAV per call, caller left, agent right.
    record_calls: bool = True
    recordings_dir: str = "data/recordings"
    # Recordings older than this are deleted (at start-up and then hourly).
    recording_retention_days: float = Field(default=30.0, gt=0)
    # Spoken before the opening when set, e.g. "This call is recorded."
    recording_disclosure: str | None = Field(default=None, max_length=300)
    # Call queue (call_queue/). Celery with the Redis broker when REDIS_URL is set,
    # otherwise an in-process scheduler; the schedule itself is the call_attempt table either way.
    # How often due attempts are handed to workers (Celery beat's period, or the in-process poll).
    queue_poll_seconds: float = Field(default=2.0, gt=0)
    # A worker silent this long gives up what it held: a claimed attempt is handed out again, and
    # the broker delivers its unacknowledged task again (the visibility timeout).
    queue_lease_seconds: float = Field(default=60.0, gt=0)
    # A queued attempt whose task never ran in this long (its message was lost) is handed out again.
    queue_requeue_seconds: float = Field(default=600.0, gt=0)
    # POST /calls's database step (lead, policy decision, attempt) gives up after this long and
    # answers 503 with Retry-After: a locked or unreachable database must not hold requests open.
    call_intake_timeout_seconds: float = Field(default=3.0, gt=0)
    # Where due attempts are dialed: `in_process` (the web process polls and dials: one process,
    # the demo), `celery` (beat and queue workers; needs REDIS_URL), or `auto`: celery when
    # REDIS_URL is set, else in_process.
    queue_runner: Literal["auto", "in_process", "celery"] = "auto"

    @property
    def queue_in_process(self) -> bool:
        """Whether this process dials the due attempts itself (else Celery's workers do)."""
        return self.queue_runner == "in_process" or (self.queue_runner == "auto" and not self.redis_url)

    @model_validator(mode="after")
    def _choose_providers(self) -> "Settings":
        if self.stt_provider is None:
            self.stt_provider = "deepgram" if self.deepgram_api_key else "local"
        if self.llm_provider is None:
            self.llm_provider = "openai" if self.openai_api_key else "local"
        if self.tts_provider is None:
            self.tts_provider = "cartesia" if self.cartesia_api_key else "local"
        if self.telephony_provider is None:
            self.telephony_provider = "twilio" if self.twilio_configured else "simulator"
        return self

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from_number)

    def safe_summary(self) -> dict[str, object]:
        """What may be shown to operators: no secrets, no credentials."""
        return {
            "stt_provider": self.stt_provider,
            "llm_provider": self.llm_provider,
            "tts_provider": self.tts_provider,
            "telephony_provider": self.telephony_provider,
            "openai_model": self.openai_model if self.llm_provider == "openai" else None,
            "session_store": "redis" if self.redis_url else "memory",
            "database": self.database_url.split(":", 1)[0],
            "api_key_required": self.api_key is not None,
            "turnstile_enabled": self.turnstile_secret is not None,
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "twilio_machine_detection": self.twilio_machine_detection if self.telephony_provider == "twilio" else None,
            "sms_followup_enabled": self.twilio_configured,
            "public_base_url": self.public_base_url,
            "voice_public_url": self.voice_public_url,
            "max_call_seconds": self.max_call_seconds,
            "silence_timeout_seconds": self.silence_timeout_seconds,
        }


@lru_cache
def get_settings() -> Settings:
    return Settings()
