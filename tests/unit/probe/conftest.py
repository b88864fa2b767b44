from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.unit.probe.tree import CARDS, make_root


@pytest.fixture
def captured_root(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    return make_root(tmp_path, CARDS)

