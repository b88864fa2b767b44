"""An Actions service double on loopback per test, and a controller's credentials for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel_runtime.actions import ActionsDouble
from tests.unit.actions.wire import Admin, authenticate


@pytest.fixture
def double(tmp_path: Path) -> Iterator[ActionsDouble]:
    with ActionsDouble(long_poll=0.2, log=tmp_path / "requests.jsonl") as d:
        yield d


@pytest.fixture
def admin(double: ActionsDouble) -> Admin:
    return authenticate(double.url)
