"""The one place that picks a provider for each stage: cloud when its key is set, local otherwise."""

from models.enums import Language
from models.settings import Settings
from voice_worker.call_session import CallSession


def make_stt(settings: Settings, session: CallSession):
    if settings.stt_provider == "deepgram":
        from voice_worker.providers.deepgram_stt import EndpointedDeepgramSTTService

        return EndpointedDeepgramSTTService(
            api_key=settings.deepgram_api_key.get_secret_value(), base_url=settings.deepgram_base_url or ""
        )
    from prompts.caller_intent import EXPECTED_REPLIES
    from voice_worker.providers.local_stt import LocalSTTService
    from voice_worker.providers.speech_vocabulary import vocabulary_for_context

    ctx = session.context
    extra = [ctx.product, ctx.offer_pricing, *ctx.qualification_questions, ctx.commitment_question or ""]
    return LocalSTTService(
        phrases=vocabulary_for_context([*EXPECTED_REPLIES, *(t for t in extra if t)]),
        decode_processes=settings.stt_decode_processes,
    )


def make_llm(settings: Settings, session: CallSession):
    if settings.llm_provider == "openai":
        from voice_worker.providers.openai_llm import OpenAIWithRulesFallback

        return OpenAIWithRulesFallback(
            session,
            first_token_timeout=settings.llm_first_token_timeout_seconds,
            api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unset",
            base_url=settings.openai_base_url,
            settings=OpenAIWithRulesFallback.Settings(model=settings.openai_model),
        )
    from voice_worker.providers.rule_llm import RuleBasedLLMService

    return RuleBasedLLMService(session)


# eSpeak NG voices for the languages the templates speak (espeakng-loader ships both).
LOCAL_VOICES = {Language.ENGLISH: "en-us", Language.HEBREW: "he"}


def make_tts(settings: Settings, language: Language = Language.ENGLISH):
    if settings.tts_provider == "cartesia":
        from pipecat.services.cartesia.tts import CartesiaTTSService

        url = {"url": cartesia_websocket_url(settings.cartesia_base_url)} if settings.cartesia_base_url else {}
        return CartesiaTTSService(
            api_key=settings.cartesia_api_key.get_secret_value(),
            settings=CartesiaTTSService.Settings(voice=settings.cartesia_voice_id),
            **url,
        )
    from voice_worker.providers.local_tts import LocalTTSService

    return LocalTTSService(voice=LOCAL_VOICES[language])


def cartesia_websocket_url(base_url: str) -> str:
    """Cartesia's TTS websocket under its base URL: http -> ws, https -> wss, then /tts/websocket."""
    scheme, sep, rest = base_url.rstrip("/").partition("://")
    ws_scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme) if sep else "wss"
    return f"{ws_scheme}://{rest if sep else scheme}/tts/websocket"
