"""Requests an attacker or a broken client sends, against a real server: each answered in words, none echoed back whole.

Lone surrogates and bodies too large to parse: the server answers 4xx naming the field, never 500,
and neither its answers nor its log carry the raw phone number.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from scripts.local_server import running_server
from tests.support import BOOK_MEETING_REQUEST, server_env

# Every test here uses a number of its own, so the log check can tell which request leaked it.
SURROGATE_PHONE = "+14155550181"


class LoggedServer(str):
    log_path: Path


@pytest.fixture(scope="module")
def logged_server(tmp_path_factory) -> Iterator[LoggedServer]:
    tmp = tmp_path_factory.mktemp("hostile-server")
    log_path = tmp / "server.log"
    with running_server(server_env(tmp, MAX_REQUEST_BODY_BYTES="65536"), log_path=log_path) as base_url:
        server = LoggedServer(base_url)
        server.log_path = log_path
        yield server


def raw_json_post(base_url: str, path: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{base_url}{path}", content=body, headers={"content-type": "application/json", **headers}, timeout=30)


def named_fields(answer: httpx.Response) -> list[str]:
    return [str(problem["loc"][-1]) for problem in answer.json()["detail"]]


# --- lone surrogates (issue 11, case 6) ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/calls", "/form/calls"])
@pytest.mark.parametrize("field", ["phone", "name", "product", "offer_pricing", "constraints", "booking_link"])
def test_lone_surrogate_in_any_field_answers_422_naming_it_and_logs_no_raw_phone(logged_server, path, field):
    request = dict(BOOK_MEETING_REQUEST, phone=SURROGATE_PHONE)
    # The JSON escape of a lone surrogate: valid JSON, but no valid Unicode string.
    body = json.dumps(request).replace(json.dumps(request[field]), json.dumps(request[field])[:-1] + '\\udc80"', 1)
    assert "\\udc80" in body

    answer = raw_json_post(logged_server, path, body.encode())

    assert answer.status_code == 422, answer.text
    assert field in named_fields(answer)
    assert SURROGATE_PHONE not in answer.text
    assert SURROGATE_PHONE not in logged_server.log_path.read_text(errors="replace")


@pytest.mark.parametrize("path", ["/calls", "/form/calls"])
def test_lone_surrogate_as_raw_utf8_bytes_answers_422_naming_the_field(logged_server, path):
    body = json.dumps(dict(BOOK_MEETING_REQUEST, phone=SURROGATE_PHONE, name="Al__")).encode().replace(b"__", b"\xed\xb2\x80")

    answer = raw_json_post(logged_server, path, body)

    assert answer.status_code in (400, 422), answer.text
    if answer.status_code == 422:
        assert "name" in named_fields(answer)


def test_lone_surrogate_in_a_field_name_answers_422(logged_server):
    body = json.dumps(BOOK_MEETING_REQUEST)[:-1] + ', "\\udc80": 1}'

    answer = raw_json_post(logged_server, "/calls", body.encode())

    assert answer.status_code == 422, answer.text


# --- body size (case 7) ----------------------------------------------------------------------------


def test_body_over_the_limit_is_refused_with_413_before_it_is_parsed(logged_server):
    body = json.dumps(dict(BOOK_MEETING_REQUEST, product="x" * 10_000_000)).encode()

    answer = raw_json_post(logged_server, "/calls", body)

    assert answer.status_code == 413
    assert "65536" in answer.json()["detail"]


def test_chunked_body_without_content_length_over_the_limit_is_refused_with_413(logged_server):
    def chunks() -> Iterator[bytes]:
        yield b'{"product": "'
        for _ in range(200):
            yield b"x" * 8192
        yield b'"}'

    answer = httpx.post(f"{logged_server}/calls", content=chunks(), headers={"content-type": "application/json"}, timeout=30)

    assert answer.request.headers.get("transfer-encoding") == "chunked"
    assert answer.status_code == 413
    assert "65536" in answer.json()["detail"]


def test_a_bad_value_is_quoted_in_the_422_only_as_a_short_excerpt(logged_server):
    answer = httpx.post(f"{logged_server}/calls", json=dict(BOOK_MEETING_REQUEST, product="y" * 50_000), timeout=30)

    assert answer.status_code == 422
    [problem] = answer.json()["detail"]
    assert problem["loc"][-1] == "product"
    assert len(str(problem["input"])) < 100
    assert len(answer.content) < 1000


def test_a_missing_field_does_not_echo_the_whole_body_or_its_phone(logged_server):
    request = {k: v for k, v in BOOK_MEETING_REQUEST.items() if k != "product"} | {
        "phone": "+14155550182",
        "constraints": "z" * 900,
    }

    answer = httpx.post(f"{logged_server}/calls", json=request, timeout=30)

    assert answer.status_code == 422
    assert "product" in named_fields(answer)
    assert "+14155550182" not in answer.text
    assert len(answer.content) < 1000


def test_a_bad_phone_is_quoted_masked(logged_server):
    answer = httpx.post(f"{logged_server}/calls", json=dict(BOOK_MEETING_REQUEST, phone="+99912345678"), timeout=30)

    assert answer.status_code == 422
    assert "+99912345678" not in answer.text
    assert named_fields(answer) == ["phone"]


def test_form_encoded_body_with_a_lone_surrogate_answers_422_without_echoing_the_phone(logged_server):
    body = urlencode(dict(BOOK_MEETING_REQUEST, phone="+14155550183", name="Al\udc80"), errors="surrogatepass")

    answer = httpx.post(
        f"{logged_server}/form/calls", content=body, headers={"content-type": "application/x-www-form-urlencoded"}, timeout=30
    )

    assert answer.status_code == 422, answer.text
    assert "4155550183" not in answer.text
