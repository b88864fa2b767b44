"""harness.kind.runner_images: what the offline builder feeds `docker build` and how it caches."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flywheel_runtime.harness.kind import runner_images
from flywheel_runtime.topology import load


class FakeEngine:
    """Answers `docker image inspect` from a dict; records everything else."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.env: dict[str, str] = {}

    def docker(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[bytes]:
        if args[:2] == ("image", "inspect"):
            tag = args[-1]
            if tag in self.ids:
                return subprocess.CompletedProcess(args, 0, self.ids[tag].encode(), b"")
            return subprocess.CompletedProcess(args, 1, b"", b"no such image")
        raise AssertionError(f"unexpected docker {args}")


def test_targets_are_the_topologys_runner_images() -> None:
    topo = load()
    targets = runner_images.runner_targets(topo)
    assert targets == {k: topo.images[k] for k in ("nix", "docker", "dind", "kvm", "gpu")}
    assert runner_images.DAEMON_KEY in topo.images and runner_images.DAEMON_KEY not in targets


def test_context_holds_only_what_the_build_copies(tmp_path: Path) -> None:
    b = runner_images.Builder(FakeEngine(), load(), tmp_path, log=lambda m: None)
    ctx, key = b.context()
    files = {p.relative_to(ctx).as_posix() for p in ctx.rglob("*") if p.is_file()}
    assert "images/Dockerfile" in files and "pyproject.toml" in files
    assert "images/hooks/job-started.sh" in files and "canaries/install-mesa-backports.sh" in files
    assert "canaries/dawn/node_modules/webgpu/dist/linux-x64/dawn.node" in files
    assert not any("darwin-" in f or "win32-" in f or "__pycache__" in f or f.startswith(".venv") for f in files)
    assert not any(f.startswith("tests/") for f in files)  # the stand-in run.sh stays a test's
    assert (ctx / "images/hooks/job-started.sh").stat().st_mode & 0o111  # COPY keeps it executable
    # the key is the content: the same tree gives the same key
    assert b.context()[1] == key


def test_stamp_needs_the_same_key_and_the_same_image(tmp_path: Path) -> None:
    eng = FakeEngine()
    b = runner_images.Builder(eng, load(), tmp_path, log=lambda m: None)
    tag = "example/img:1"
    eng.ids[tag] = "sha256:aaa"
    b._record("nix", tag, "k1", 3.0)
    assert b._cached("nix", tag, "k1")
    assert not b._cached("nix", tag, "k2")  # inputs changed
    eng.ids[tag] = "sha256:bbb"  # someone rebuilt or retagged it
    assert not b._cached("nix", tag, "k1")
    del eng.ids[tag]
    assert not b._cached("nix", tag, "k1")


def test_unknown_target_is_refused(tmp_path: Path) -> None:
    from flywheel_runtime.errors import BuildError

    b = runner_images.Builder(FakeEngine(), load(), tmp_path, log=lambda m: None)
    with pytest.raises(BuildError, match="no runner image target nope"):
        b.build_all(["nope"])


@pytest.mark.parametrize("args,expect", [
    (["dockerd", "--host=unix:///x"], "dockerd --host=unix:///x"),
    (["--debug"], "dockerd --debug"),
    ([], "dockerd"),
    (["docker", "info"], "docker info"),
])
def test_daemon_stand_in_runs_what_the_pod_asks(tmp_path: Path, args: list[str], expect: str) -> None:
    # the entrypoint's logic with `echo` in front of exec: what it would run
    script = tmp_path / "entry.sh"
    script.write_text(runner_images.DAEMON_ENTRYPOINT.replace('exec "$@"', 'echo "$@"'))
    out = subprocess.run(["sh", str(script), *args], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expect
