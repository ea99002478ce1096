"""The Hugging Face Hub, as seen from this machine.

A dataset or model name that is neither built in nor a local path is looked up on the hub. Where
the hub's host has no address (no network, or a network that does not reach it) and the hub cache
holds no copy of the name, the libraries retry for about 30 s before they fail; kdexam asks the
resolver first and says so at once. Offline modes, proxies and cached copies are left to the
libraries, which handle them.
"""

from __future__ import annotations

import os
import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_ENDPOINT = "https://huggingface.co"
OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def cached(name: str, repo_type: str) -> bool:
    """Whether the hub cache holds a copy of ``name`` (``repo_type`` ``model`` or ``dataset``; for a
    dataset, ``datasets``' own cache too), which the libraries read without the network."""
    from huggingface_hub import constants

    if (Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{name.replace('/', '--')}").is_dir():
        return True
    if repo_type == "dataset":
        import datasets.config

        return any(Path(datasets.config.HF_DATASETS_CACHE).glob(name.replace("/", "___") + "*"))
    return False


def unreachable(name: str, repo_type: str) -> str | None:
    """Why ``name`` cannot be looked up on the hub — its host has no address here and no copy is
    cached — or ``None``: an offline switch is set (the libraries then read their caches and fail at
    once by themselves), a proxy is configured (it resolves the host), a copy is cached, or the
    host has an address."""
    if any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_SWITCHES):
        return None
    proxies = urllib.request.getproxies()
    if proxies.get("https") or proxies.get("all"):
        return None
    host = urlparse(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    except OSError:
        if cached(name, repo_type):
            return None
        return f"{host} has no address from this machine, and the hub cache holds no copy of it"
    return None
