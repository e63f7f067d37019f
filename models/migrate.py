"""`python -m models.migrate`: bring DATABASE_URL's schema to the newest revision (the Procfile's release step).

Safe to run from several processes at once: init_db takes a migration lock.
"""

from models.database import init_db, make_engine
from models.settings import get_settings


def main() -> None:
    engine = make_engine(get_settings().database_url)
    try:
        init_db(engine)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
