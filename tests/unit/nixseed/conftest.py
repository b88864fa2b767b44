from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NIX_ENV = {**os.environ, "NIX_CONFIG": "build-users-group =\nsandbox = false\n"}


def nix_store(root: Path, *args: str) -> str:
    out = subprocess.run(["nix-store", "--store", f"local?root={root}", *args], env=NIX_ENV,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def build_store(root: Path, packages: int = 6, variant: str = "a") -> Path:
    """A real Nix store (nix-bin): packages with bins, libs, docs, symlinks and
    duplicated files so that --optimise makes hardlinks; plus a profile link."""
    if shutil.which("nix-store") is None:
        pytest.skip("nix-store (Debian nix-bin) is not installed")
    work = root.parent / f"{root.name}-src"
    for i in range(packages):
        pkg = work / f"pkg{i}"
        (pkg / "bin").mkdir(parents=True)
        (pkg / "share" / "doc").mkdir(parents=True)
        (pkg / "lib").mkdir()
        (pkg / "empty").mkdir()
        (pkg / "bin" / f"tool{i}").write_text(f"#!/bin/sh\necho tool {i} {variant}\n")
        (pkg / "bin" / f"tool{i}").chmod(0o755)
        (pkg / "share" / "doc" / "LICENSE").write_text("same text in every package\n" * 50)
        (pkg / "lib" / f"libbig{i}.so").write_bytes(os.urandom(200_000 + i))
        (pkg / "lib" / "libtool.so").symlink_to(f"libbig{i}.so")
        (pkg / "dangling").symlink_to("/nonexistent/target")
        (pkg / "absolute").symlink_to("/bin/sh")
        (pkg / "weird name \u00e9\nnewline").write_text("odd")
    paths = [nix_store(root, "--add", str(work / f"pkg{i}")).strip().splitlines()[-1] for i in range(packages)]
    nix_store(root, "--optimise")
    nixdir = root / "nix"
    profiles = nixdir / "var" / "nix" / "profiles"
    (profiles / "default-1-link").symlink_to(paths[0])
    (profiles / "default").symlink_to("default-1-link")
    gc = nixdir / "var" / "nix" / "gcroots" / "auto"
    gc.mkdir(parents=True, exist_ok=True)
    (gc / "root1").symlink_to("/nix/var/nix/profiles/default")
    return nixdir


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("store") / "root")


@pytest.fixture(scope="session")
def store_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("storeb") / "root", packages=4, variant="b")


def as_if_killed_before_the_stamp(target: Path, *, trusted: bool = True) -> None:
    """Leave ``target`` as a seed killed just before its stamp would: the stamp
    gone, the journal of the run (its identity; ``trusted``: the run began on
    an empty target) in its place."""
    from flywheel_runtime.nixseed.seeding import JOURNAL_SCHEMA, PARTIAL_NAME, STAMP_NAME

    stamp = json.loads((target / STAMP_NAME).read_text())
    (target / PARTIAL_NAME).write_text(json.dumps({"schema": JOURNAL_SCHEMA, "identity": stamp["identity"],
                                                   "trusted": trusted}))
    (target / STAMP_NAME).unlink()
