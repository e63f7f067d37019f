"""No phone number reaches the log unmasked, whichever way it gets there: here, a database fault whose
error carries the number, answered with a 500 and logged by uvicorn with its traceback."""

import httpx
import psycopg

from scripts.local_server import running_server
from tests.support import BOOK_MEETING_REQUEST, server_env

PHONE = "+14155550191"

# A fault that names the number in its own message, the way PostgreSQL's constraint errors do
# ("Key (phone)=(+1...) already exists"); SQLAlchemy adds the statement's parameters besides.
REFUSE_EVERY_CALL = """
CREATE FUNCTION refuse_call() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'no call may be stored for %', NEW.call_request::jsonb->>'phone';
END $$;
CREATE TRIGGER refuse_call BEFORE INSERT ON call_attempt FOR EACH ROW EXECUTE FUNCTION refuse_call();
"""


def test_a_traceback_carrying_a_phone_number_is_logged_masked(tmp_path, postgres_url):
    log_path = tmp_path / "server.log"
    # INFO, as in production: uvicorn's access log and SQLAlchemy's loggers are on too.
    with running_server(server_env(tmp_path, DATABASE_URL=postgres_url, LOG_LEVEL="INFO"), log_path=log_path) as base_url:
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute(REFUSE_EVERY_CALL)

        answer = httpx.post(f"{base_url}/calls", json=dict(BOOK_MEETING_REQUEST, phone=PHONE), timeout=30)

    assert answer.status_code == 500
    text = log_path.read_text()
    assert "Traceback" in text and "no call may be stored for" in text  # the fault was logged, with its traceback
    assert PHONE not in text
    assert "+14*******91" in text
    assert "SQL parameters hidden" in text
