"""The CLI layer: thin, light to import, every package's commands registered."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flywheel_runtime import __version__
from flywheel_runtime.cli import build_parser, main

HEAVY = ("kubernetes", "wgpu", "vulkan", "pynvml", "jsonschema", "hypothesis")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "code",
    [
        "import flywheel_runtime",
        "from flywheel_runtime.cli import build_parser; build_parser()",
        "import flywheel_runtime.probe",
        "import flywheel_runtime.hooks",
        "import flywheel_runtime.nixseed",
        "import flywheel_runtime.topology",
    ],
)
def test_runtime_path_imports_nothing_heavy(code: str) -> None:
    loaded = _modules_after(code)
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert heavy == [], f"{code!r} imported {heavy}"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"flywheel-runtime {__version__}"


def test_every_capability_registers_commands() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = set(sub.choices)
    for expected in ("topology", "cluster", "seed-nix", "hints", "hook", "entrypoint",
                     "canary", "audit", "prove", "reap", "cleanup", "warm-pool", "main"):
        assert expected in names, f"command {expected!r} missing from flywheel-runtime"


def test_python_dash_m_matches_console_script() -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "--version"],
                         capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"flywheel-runtime {__version__}"


def test_usage_error_is_exit_2() -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "no-such-command"],
                         capture_output=True, text=True)
    assert out.returncode == 2
