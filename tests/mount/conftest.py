"""Real mounts: the installed `aether mount` command against a real daemon.

Skipped only where FUSE cannot work at all (no /dev/fuse). Every mount made
here is unmounted at teardown, forcibly if it has to be, so a failing test
leaves no mount behind. Helpers live in mount_helpers.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from aether.client import Client

if not os.path.exists("/dev/fuse"):
    pytest.skip("/dev/fuse is missing: FUSE mounts cannot run here", allow_module_level=True)

from mount_helpers import Mounts, mount_env  # noqa: E402


@pytest.fixture(scope="module")
def module_mounts(daemon, tmp_path_factory) -> Iterator[Mounts]:
    base = tmp_path_factory.mktemp("mounts")
    m = Mounts(mount_env(daemon, base), base)
    yield m
    m.cleanup()


@pytest.fixture
def mounts(daemon, tmp_path) -> Iterator[Mounts]:
    m = Mounts(mount_env(daemon, tmp_path), tmp_path)
    yield m
    m.cleanup()


@pytest.fixture(scope="module")
def sdk(daemon) -> Iterator[Client]:
    with Client(daemon.http_url, token=daemon.token) as c:
        yield c
