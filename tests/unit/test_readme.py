"""The README's measured table: every figure names its command and what it is compared with."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("peer", "floor", "ceiling", "context", "no peer")


def _measured_rows() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Measured"):]
    section = section[:section.find("\n## ", 1)] if "\n## " in section[1:] else section
    rows = [ln for ln in section.splitlines() if ln.startswith("|")]
    header, _rule, *body = rows
    assert [c.strip() for c in re.split(r"(?<!\\)\|", header)[1:-1]] == ["what", "figure", "compared with", "command"]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in body]


def test_every_row_names_what_it_is_compared_with() -> None:
    rows = _measured_rows()
    assert len(rows) >= 10
    for what, _figure, compared, _cmd in rows:
        assert any(k in compared for k in KINDS), f"{what}: say whether it is compared with a peer, floor or context"


def test_every_row_names_a_command_that_exists() -> None:
    for what, _figure, _compared, cmd in _measured_rows():
        paths = re.findall(r"\b((?:bench|tests)/[\w/]+\.py)\b", cmd)
        assert paths or "./dev " in cmd, f"{what}: no command named"
        for p in paths:
            assert (ROOT / p).is_file(), f"{what}: {p} does not exist"


def test_vulkaninfo_is_never_quoted_as_a_peer() -> None:
    for what, figure, compared, _cmd in _measured_rows():
        if "vulkaninfo" in figure + compared:
            assert "context" in compared and "vulkaninfo" not in figure, what


def test_no_share_of_a_ceiling_above_100_percent() -> None:
    """A copy that beats the 'ceiling' means the ceiling was not one."""
    for what, figure, _compared, _cmd in _measured_rows():
        if "ceiling" in what:
            assert all(int(p) <= 100 for p in re.findall(r"(\d+)%", figure)), what
