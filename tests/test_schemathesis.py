"""Fuzz every operation of the OpenAPI schema against a real server: no 500s, and every 4xx says why.

Bounded for CI: a few examples per operation, no stateful phase, TELEPHONY_PROVIDER=none so that
nothing dials, the rate limit raised so the run measures the API and not the limiter.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from control_api.main import create_app
from models.settings import Settings
from scripts.local_server import running_server
from tests.support import server_env

MAX_EXAMPLES = 12
# The schema the server will serve, known at collection time so that each operation is a test.
RAW_SCHEMA = create_app(Settings(_env_file=None, telephony_provider="none")).openapi()
OPERATIONS = [result.ok().label for result in schemathesis.openapi.from_dict(RAW_SCHEMA).get_all_operations()]


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz-server")
    with running_server(server_env(tmp), log_path=tmp / "server.log") as base_url:
        yield base_url


def client_error_names_the_reason(ctx, response, case) -> None:
    """A 4xx carries `detail`: a reason in words, or FastAPI's list naming each bad field."""
    if not 400 <= response.status_code < 500:
        return None
    detail = response.json().get("detail")
    assert detail, f"{response.status_code} without a detail: {response.text[:200]}"
    if isinstance(detail, list):
        for problem in detail:
            assert problem.get("loc") and problem.get("msg"), f"a validation error without its field: {problem}"
    else:
        assert isinstance(detail, str) and len(detail) > 5, f"an uninformative detail: {detail!r}"
    return None


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_has_no_server_errors_and_explains_every_refusal(fuzzed_server, label):
    schema = schemathesis.openapi.from_dict(RAW_SCHEMA)
    operation = next(result.ok() for result in schema.get_all_operations() if result.ok().label == label)
    # Valid requests and invalid ones (wrong types, missing fields, out-of-range values).
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same examples every run: a CI failure can be reproduced
        database=None,
    )
    def exercise(case):
        response = case.call(base_url=fuzzed_server, timeout=30)
        case.validate_response(response, checks=[not_a_server_error, client_error_names_the_reason])

    exercise()
