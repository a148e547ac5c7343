"""API keys from the command line: ``python -m api.keys create --owner NAME`` (``kgan create-key``).

The key is printed once and stored only as a hash; keep it somewhere safe.
"""

from __future__ import annotations

import argparse
import sys

from api.auth import NewKey, create_key
from api.migrate import upgrade
from kgan_service.db import Database
from kgan_service.settings import Settings, get_settings


def new_key(settings: Settings, owner: str) -> NewKey:
    upgrade(settings.db_url)  # a fresh embedded install has no tables yet
    db = Database(settings)
    try:
        with db.session() as session:
            return create_key(session, owner)
    finally:
        db.dispose()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--owner", default="local", help="owner name; a new name creates a new owner (default: local)")
    parser.add_argument("--data-dir", help="embedded data folder (default: KGAN_DATA_DIR or ./var)")
    parser.add_argument("--quiet", action="store_true", help="print only the key")


def run(args: argparse.Namespace) -> int:
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    settings = Settings(**overrides) if overrides else get_settings()
    key = new_key(settings, args.owner)
    if args.quiet:
        print(key.token)
    else:
        print(f"API key for owner {key.owner_name!r} (shown once; only its hash is stored):\n\n  {key.token}\n\n"
              f"Use it as:  curl -H 'Authorization: Bearer {key.token}' ...")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.keys", description="Manage API keys.")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create an API key (and its owner, if new)")
    add_arguments(create)
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
