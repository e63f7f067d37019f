"""Phone numbers are taken as written in E.164, or refused naming the field: never reinterpreted.

phonenumbers alone would dial +1415555ABCD as +14155552223 (keypad letters) and drop the
extension of +14155554301;ext=99 without a word.
"""

import httpx
import pytest

from tests.support import BOOK_MEETING_REQUEST


def named_fields(answer: httpx.Response) -> list[str]:
    return [str(problem["loc"][-1]) for problem in answer.json()["detail"]]


@pytest.mark.parametrize(
    "phone", ["+1415555ABCD", "+14155554301;ext=99", "+1 415 555 4301 ext. 99", "+14155554301x99", "+14155554301#99"]
)
def test_phone_with_letters_or_an_extension_is_refused_naming_the_field(live_server, phone):
    answer = httpx.post(f"{live_server}/calls", json=dict(BOOK_MEETING_REQUEST, phone=phone), timeout=30)

    assert answer.status_code == 422, answer.text
    assert named_fields(answer) == ["phone"]


@pytest.mark.parametrize("phone", ["+14155554302", "+1 415 555 4303", "+1 (415) 555-4304", "+1.415.555.4305"])
def test_phone_written_with_spaces_dashes_dots_or_brackets_is_accepted(live_server, phone):
    answer = httpx.post(f"{live_server}/calls", json=dict(BOOK_MEETING_REQUEST, phone=phone), timeout=30)

    assert answer.status_code == 202, answer.text


@pytest.mark.parametrize("phone", ["+1415555ABCE", "+14155554306;ext=99"])
def test_lead_phone_with_letters_or_an_extension_is_refused_naming_the_field(live_server, phone):
    created = httpx.post(f"{live_server}/workspaces", json={"name": "Strict numbers"}, timeout=30)
    key = {"Authorization": f"Bearer {created.json()['api_key']}"}

    answer = httpx.post(f"{live_server}/leads", json={"phone": phone, "consent": True}, headers=key, timeout=30)

    assert answer.status_code == 422, answer.text
    assert named_fields(answer) == ["phone"]
