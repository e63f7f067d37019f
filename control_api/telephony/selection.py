"""Which telephony places the calls: chosen once, from the settings, in this one place."""

from collections.abc import Awaitable, Callable

from models.settings import Settings
from services.dialer import Dialer
from services.twilio_account import TwilioAccount


def make_dialer(
    settings: Settings,
    twilio: TwilioAccount | None,
    *,
    callee_ws_url: Callable[[], str | None] | None = None,
    on_unanswered: Callable[[str, str], Awaitable[None]] | None = None,
    on_machine_verdict: Callable[[str, str, str], Awaitable[None]] | None = None,
) -> Dialer:
    """`callee_ws_url` and `on_unanswered` serve the simulator (see simulator/dialer.py)."""
    if settings.telephony_provider == "twilio":
        from control_api.telephony.twilio_dialer import TwilioDialer

        if twilio is None:
            raise ValueError("TELEPHONY_PROVIDER=twilio needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER")
        return TwilioDialer(settings, twilio)
    if settings.telephony_provider == "none":
        from control_api.telephony.external_stream import ExternalStreamDialer

        return ExternalStreamDialer(settings)
    from simulator.dialer import SimulatorDialer

    return SimulatorDialer(
        settings,
        settings.simulator_scenario,
        callee_ws_url=callee_ws_url,
        on_unanswered=on_unanswered,
        on_machine_verdict=on_machine_verdict,
    )
