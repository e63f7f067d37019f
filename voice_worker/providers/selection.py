"""The one place that picks a provider for each stage: cloud when its key is set, local otherwise."""

from models.enums import Language
from models.settings import Settings
from voice_worker.call_session import CallSession


def make_stt(settings: Settings, session: CallSession):
    if settings.stt_provider == "deepgram":
        from pipecat.services.deepgram.stt import DeepgramSTTService

        return DeepgramSTTService(api_key=settings.deepgram_api_key.get_secret_value())
    from prompts.caller_intent import EXPECTED_REPLIES
    from voice_worker.providers.local_stt import LocalSTTService
    from voice_worker.providers.speech_vocabulary import vocabulary_for_context

    ctx = session.context
    extra = [ctx.product, ctx.offer_pricing, *ctx.qualification_questions, ctx.commitment_question or ""]
    return LocalSTTService(phrases=vocabulary_for_context([*EXPECTED_REPLIES, *(t for t in extra if t)]))


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

        return CartesiaTTSService(
            api_key=settings.cartesia_api_key.get_secret_value(),
            settings=CartesiaTTSService.Settings(voice=settings.cartesia_voice_id),
        )
    from voice_worker.providers.local_tts import LocalTTSService

    return LocalTTSService(voice=LOCAL_VOICES[language])
