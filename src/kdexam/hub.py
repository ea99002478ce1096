"""The Hugging Face Hub, as seen from this machine.

A dataset or model name that is neither built in nor a local path is looked up on the hub. Where
the hub's host has no address (no network, or a network that does not reach it), the libraries
retry for about 30 s before they fail; kdexam asks the resolver once and says so at once.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

DEFAULT_ENDPOINT = "https://huggingface.co"


@functools.lru_cache(maxsize=None)
def unreachable() -> str | None:
    """Why the hub cannot be reached (its host has no address here), or ``None``: reachable as far as
    a name lookup tells, or ``HF_HUB_OFFLINE`` set (the libraries then read their caches and fail at
    once by themselves). Asked once a process."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    host = urlparse(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    except OSError:
        return (f"{host} has no address from this machine; set HF_HUB_OFFLINE=1 to read a copy cached from the hub "
                "earlier")
    return None
