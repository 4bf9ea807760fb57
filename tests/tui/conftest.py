"""Fixtures for the TUI tests: the real daemon of tests/conftest.py (one per
module), the sync SDK to seed it and check its state, and the app under test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from aether.client import Client
from tui.app import AetherApp


@pytest.fixture(scope="module")
def sdk(daemon) -> Iterator[Client]:
    with Client(daemon.http_url, token=daemon.token) as client:
        yield client


@pytest.fixture
def make_app(daemon) -> Callable[..., AetherApp]:
    def make(**kwargs) -> AetherApp:
        return AetherApp(server=daemon.http_url, token=daemon.token, **kwargs)

    return make
