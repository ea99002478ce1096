"""A name that is neither built in nor local, where the hub cannot be reached and holds no cached
copy: said at once (the libraries retried for about 30 s before the same error)."""

from __future__ import annotations

import socket
import time

import pytest

from kdexam import hub
from kdexam.config.runs import DataConfig
from kdexam.errors import KdexamError


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    def no_address(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    for var in (*hub.OFFLINE_SWITCHES, "HF_ENDPOINT", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub.socket, "getaddrinfo", no_address)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return tmp_path / "hub-cache"


def test_an_unreachable_hub_is_said_at_once_for_a_dataset_and_a_model(no_hub):
    from kdexam.data.readers import read_hf
    from kdexam.teachers.loader import load_tokenizer

    started = time.perf_counter()
    with pytest.raises(KdexamError, match=r"Dataset 'mytickets' is not a built-in .* Hub cannot be reached .*huggingface\.co "
                                          r"has no address from this machine, and the hub cache holds no copy"):
        read_hf("mytickets", DataConfig(name="mytickets"))
    with pytest.raises(KdexamError, match=r"Model 'nosuchmodel' is not a built-in model or a local directory, and the Hugging "
                                          r"Face Hub cannot be reached"):
        load_tokenizer("nosuchmodel")
    assert time.perf_counter() - started < 10


def test_offline_switches_proxies_and_cached_copies_leave_the_lookup_to_the_libraries(no_hub, monkeypatch):
    assert hub.unreachable("org/model", "model") is not None
    (no_hub / "models--org--model").mkdir(parents=True)  # a copy downloaded earlier: the libraries read it offline
    assert hub.unreachable("org/model", "model") is None and hub.unreachable("org/other", "model") is not None
    for var in hub.OFFLINE_SWITCHES:  # the libraries read their caches and fail at once themselves
        monkeypatch.setenv(var, "1")
        assert hub.unreachable("org/other", "model") is None
        monkeypatch.delenv(var)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")  # a proxy resolves the host itself
    assert hub.unreachable("org/other", "model") is None
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setattr(hub.socket, "getaddrinfo", lambda *a, **k: [("addr",)])
    assert hub.unreachable("org/other", "model") is None
