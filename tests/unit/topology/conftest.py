from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel_runtime.topology import DEFAULT_TOPOLOGY, Topology, load, load_data


@pytest.fixture(scope="session")
def raw() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_TOPOLOGY.read_text())


@pytest.fixture(scope="session")
def topo() -> Topology:
    return load()


@pytest.fixture
def variant(raw: dict[str, Any]):
    """Build a topology from a mutated copy of the shipped data."""

    def make(mutate) -> Topology:
        data = copy.deepcopy(raw)
        mutate(data)
        return load_data(data, source="variant.yaml")

    return make


@pytest.fixture
def write_variant(raw: dict[str, Any], tmp_path: Path):
    def make(mutate) -> Path:
        data = copy.deepcopy(raw)
        mutate(data)
        p = tmp_path / "topology.yaml"
        p.write_text(yaml.safe_dump(data, sort_keys=False))
        return p

    return make


def scale_set(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in data["scale_sets"] if s["name"] == name)


def published(data: dict[str, Any], s: dict[str, Any]) -> list[str]:
    """The labels a scale set entry publishes: its own list, else its class's."""
    if s.get("labels") is not None:
        return list(s["labels"])
    return [s["label"], *data["runner_classes"][s["label"]].get("tags", [])]
