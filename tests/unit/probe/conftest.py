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



@pytest.fixture
def openable_root(tmp_path: Path) -> Path:
    """The same tree with nodes that open (1:3): render nodes a driver answers for."""
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    return make_root(tmp_path, CARDS, openable=True)
