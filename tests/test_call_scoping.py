"""GET /calls/{id} and GET /contexts/{id} under workspace keys: a key sees its own workspace's calls and
contexts and nothing else (404, as for an unknown id), and a context never shows the whole number."""

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from scripts.local_server import running_server
from tests.support import BOOK_MEETING_REQUEST, server_env
from tests.support import place_call as place_through_queue


@dataclass
class PlacedCall:
    id: str
    context_id: str


def workspace_key(base_url: str, name: str) -> dict[str, str]:
    created = httpx.post(f"{base_url}/workspaces", json={"name": name}, timeout=30)
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['api_key']}"}


def place_call(base_url: str, phone: str, headers: dict[str, str]) -> PlacedCall:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        placed = place_through_queue(client, dict(BOOK_MEETING_REQUEST, phone=phone), headers=headers)
    return PlacedCall(placed["id"], placed["context_id"])


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("scoping-server")
    with running_server(server_env(tmp), log_path=tmp / "server.log") as base_url:
        yield base_url


def test_a_workspace_key_reads_its_own_call_and_context(server):
    acme = workspace_key(server, "Acme")
    call = place_call(server, "+14155550301", acme)

    shown = httpx.get(f"{server}/calls/{call.id}", headers=acme)
    context = httpx.get(f"{server}/contexts/{call.context_id}", headers=acme)

    assert shown.status_code == 200 and shown.json()["id"] == call.id
    assert context.status_code == 200 and context.json()["id"] == call.context_id


def test_another_workspace_key_gets_404_for_the_call_and_its_context(server):
    acme, globex = workspace_key(server, "Acme"), workspace_key(server, "Globex")
    call = place_call(server, "+14155550302", acme)

    assert httpx.get(f"{server}/calls/{call.id}", headers=globex).status_code == 404
    assert httpx.get(f"{server}/contexts/{call.context_id}", headers=globex).status_code == 404


def test_a_workspace_key_gets_404_for_a_web_form_call(server):
    acme = workspace_key(server, "Acme")
    with httpx.Client(base_url=server, timeout=30) as client:
        form_call = place_through_queue(client, dict(BOOK_MEETING_REQUEST, phone="+14155550303"), path="/form/calls")

    assert httpx.get(f"{server}/calls/{form_call['id']}", headers=acme).status_code == 404
    assert httpx.get(f"{server}/contexts/{form_call['context_id']}", headers=acme).status_code == 404
    # The form's own view, by its view token, is unchanged.
    view = httpx.get(form_call["view_url"], headers={"X-Call-Token": form_call["view_token"]})
    assert view.status_code == 200 and view.json()["id"] == form_call["id"]


def test_without_any_key_an_open_server_still_shows_calls_and_contexts_as_the_demo_uses_them(server):
    call = place_call(server, "+14155550304", {})

    assert httpx.get(f"{server}/calls/{call.id}").status_code == 200
    assert httpx.get(f"{server}/contexts/{call.context_id}").status_code == 200


@pytest.mark.parametrize(
    ("with_key", "phone", "shown"), [(True, "+14155550305", "+14*******05"), (False, "+14155550306", "+14*******06")]
)
def test_a_context_shows_the_phone_number_masked(server, with_key, phone, shown):
    headers = workspace_key(server, "Acme") if with_key else {}
    call = place_call(server, phone, headers)

    context = httpx.get(f"{server}/contexts/{call.context_id}", headers=headers).json()

    assert context["phone"] == shown
    assert context["product"] == BOOK_MEETING_REQUEST["product"]
