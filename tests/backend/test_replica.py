"""The process's replica id: configured, or generated once per process."""

from __future__ import annotations

import os
import re
import socket

import pytest

from backend import replica
from backend.settings import Settings, SettingsError


@pytest.fixture(autouse=True)
def _restore_replica_id() -> object:
    saved = (replica._configured, replica._generated)
    yield
    replica._configured, replica._generated = saved


def test_generated_from_host_pid_and_a_random_suffix() -> None:
    generated = replica.configure_replica_id("")
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:64]
    assert re.fullmatch(rf"{re.escape(host)}-{os.getpid()}-[0-9a-f]{{6}}", generated), generated
    assert replica.REPLICA_ID_PATTERN.match(generated)
    assert replica.replica_id() == generated  # stable within the process
    assert replica.generate_replica_id() != generated  # the suffix is random


def test_a_configured_id_wins() -> None:
    assert replica.configure_replica_id("replica-7") == "replica-7"
    assert replica.replica_id() == "replica-7"
    with pytest.raises(ValueError):
        replica.configure_replica_id("no spaces please")


def test_a_forked_process_gets_its_own_id(monkeypatch: pytest.MonkeyPatch) -> None:
    replica.configure_replica_id("")
    parent = replica.replica_id()
    monkeypatch.setattr(os, "getpid", lambda: 4242)
    child = replica.replica_id()
    assert child != parent and "-4242-" in child


def test_the_setting_is_validated() -> None:
    assert Settings.from_env({"AGENT_TUI_REPLICA_ID": "web-2"}).replica_id == "web-2"
    with pytest.raises(SettingsError, match="AGENT_TUI_REPLICA_ID"):
        Settings.from_env({"AGENT_TUI_REPLICA_ID": "a b"})
