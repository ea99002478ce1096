"""A name that is neither built in nor local, where the hub cannot be reached: said at once (the
libraries retried for about 30 s before the same error)."""

from __future__ import annotations

import socket
import time

import pytest

from kdexam import hub
from kdexam.config.runs import DataConfig
from kdexam.errors import KdexamError


@pytest.fixture
def no_hub(monkeypatch):
    def no_address(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub.socket, "getaddrinfo", no_address)
    hub.unreachable.cache_clear()
    yield
    hub.unreachable.cache_clear()


def test_an_unreachable_hub_is_said_at_once_for_a_dataset_and_a_model(no_hub, tmp_path):
    from kdexam.data.readers import read_hf
    from kdexam.teachers.loader import load_tokenizer

    started = time.perf_counter()
    with pytest.raises(KdexamError, match=r"Dataset 'mytickets' is not a built-in .* Hub cannot be reached .*huggingface\.co "
                                          r"has no address from this machine; set HF_HUB_OFFLINE=1"):
        read_hf("mytickets", DataConfig(name="mytickets"))
    with pytest.raises(KdexamError, match=r"Model 'nosuchmodel' is not a built-in model or a local directory, and the Hugging "
                                          r"Face Hub cannot be reached"):
        load_tokenizer("nosuchmodel")
    assert time.perf_counter() - started < 10


def test_hub_offline_mode_and_a_reachable_host_leave_the_lookup_to_the_libraries(no_hub, monkeypatch):
    assert hub.unreachable() is not None
    hub.unreachable.cache_clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the libraries read their caches and fail at once themselves
    assert hub.unreachable() is None
    hub.unreachable.cache_clear()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub.socket, "getaddrinfo", lambda *a, **k: [("addr",)])
    assert hub.unreachable() is None
