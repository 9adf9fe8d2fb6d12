"""Fixtures of the service tests."""

from __future__ import annotations

from typing import List

import pytest

from tests.service.helpers import Broker, Serve


@pytest.fixture
def procs():
    """`serve` processes a test started; any still running at the end is killed."""
    running: List[Serve] = []
    yield running
    for p in running:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


@pytest.fixture
def broker():
    """A real mosquitto on a free loopback port (skips without mosquitto)."""
    b = Broker().start()
    yield b
    b.stop()
