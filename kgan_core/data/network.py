"""A quick reachability check, so that an offline machine refuses a download in seconds."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the URL's host opens within ``timeout`` seconds.

    Name resolution runs in a daemon thread because ``getaddrinfo`` ignores socket
    timeouts and can hang for a long time behind a firewall that drops DNS.
    """
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if not host:
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True, name=f"reachable-{host}")
    thread.start()
    thread.join(timeout * 2)
    return bool(result and result[0])
