"""Shared fixtures for the canary tests: whole-process CLI runs and a Mesa 22.3 lavapipe ICD."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MESA22 = "22.3.6-1+deb12u2"  # Debian 12's own lavapipe: Dawn rejects it


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.startswith("flywheel-runtime:")]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
    """The real command, in a fresh process, the way CI and the lanes run it."""
    e = {**os.environ, **(env or {})}
    p = subprocess.run([sys.executable, "-m", "flywheel_runtime", *args], capture_output=True, text=True, env=e,
                       timeout=timeout)
    return Run(p.returncode, p.stdout, p.stderr)


@pytest.fixture(scope="session")
def cli():
    return run_cli


@pytest.fixture(scope="session")
def mesa22_icd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ICD manifest for Debian 12's Mesa 22.3 lavapipe, extracted from the Debian archive into the cache.

    The system may carry a newer Mesa (bookworm-backports, which Dawn accepts);
    this keeps the Dawn-rejects-the-adapter path testable against the real driver.
    """
    cache = Path(os.environ.get("FLYWHEEL_CACHE_DIR") or Path.home() / ".cache" / "flywheel-runtime") / "mesa" / MESA22
    lib = cache / "usr/lib/x86_64-linux-gnu/libvulkan_lvp.so"
    if not lib.is_file():
        if not shutil.which("apt-get"):
            pytest.fail("needs apt-get to fetch Debian's mesa-vulkan-drivers " + MESA22)
        dl = tmp_path_factory.mktemp("mesa22")
        p = subprocess.run(["apt-get", "download", f"mesa-vulkan-drivers={MESA22}"], cwd=dl, capture_output=True,
                           text=True, timeout=300)
        debs = list(dl.glob("mesa-vulkan-drivers_*.deb"))
        if p.returncode != 0 or not debs:
            pytest.fail(f"could not fetch mesa-vulkan-drivers={MESA22} from the Debian archive: {p.stderr.strip()}")
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(cache)], check=True)
    icd = cache / "lvp_icd.json"
    icd.write_text(json.dumps({"file_format_version": "1.0.0",
                               "ICD": {"library_path": str(lib), "api_version": "1.1.230"}}))
    return icd


@pytest.fixture
def no_vulkan_driver(tmp_path: Path) -> dict[str, str]:
    """Environment whose Vulkan loader finds no driver: both ICD variables point at an empty directory's file."""
    missing = str(tmp_path / "icd.d" / "none.json")
    return {"VK_ICD_FILENAMES": missing, "VK_DRIVER_FILES": missing}
