"""Apply the Alembic migrations from Python (the embedded command and the compose `migrate` service).

``python -m api.migrate`` upgrades the configured database to the newest revision.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parents[1]


def alembic_config(database_url: str | None = None) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    # Callers that configure logging themselves (uvicorn, pytest) keep their own.
    cfg.attributes["configure_logging"] = False
    if database_url is not None:
        cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from kgan_service.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m api.migrate", description=__doc__.split("\n")[0])
    parser.add_argument("revision", nargs="?", default="head")
    args = parser.parse_args(argv)
    url = get_settings().db_url
    upgrade(url, args.revision)
    print(f"database at revision {args.revision}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
