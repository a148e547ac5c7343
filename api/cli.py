"""The service's ``kgan`` subcommands, registered through the ``kgan.commands`` entry-point
group (kgan_core's CLI calls ``register(subparsers)``; kgan_core never imports the service)."""

from __future__ import annotations

import argparse

from api import keys, serve


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the API, a worker and an embedded broker on this machine")
    serve.add_arguments(p)
    p.set_defaults(func=serve.run)

    p = sub.add_parser("create-key", help="create an API key for the service (shown once)")
    keys.add_arguments(p)
    p.set_defaults(func=keys.run)
