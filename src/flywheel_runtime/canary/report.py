"""Canary reports: one schema-versioned JSON document per canary, plus markdown.

A canary passes only when every check passed and every check was computed from
data read back from the device (guest memory, mapped buffers, rendered pixels).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "flywheel.canary.report/v1"
SCHEMA_FILE = Path(__file__).with_name("report.schema.json")

# status values, in the order `all` ranks them (worst first)
FAILED, ABSENT, UNSUPPORTED, PASSED = "failed", "absent", "unsupported", "passed"


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class Adapter:
    vendor: str
    device: str
    backend: str
    type: str  # discrete / integrated / virtual / cpu / other / hypervisor
    driver: str
    # "hardware" or "software"; decided by flywheel_runtime.canary.adapter.classify
    kind: str = "hardware"


@dataclass
class Report:
    canary: str
    checks: list[Check] = field(default_factory=list)
    adapter: Adapter | None = None
    timings: dict[str, float] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    status: str = FAILED
    reason: str = ""
    exit_code: int = 1
    started_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    host: str = field(default_factory=platform.node)

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(passed), detail))
        return bool(passed)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - t0, 6)

    def finish(self) -> "Report":
        """Decide the status from the checks (only called when the canary ran to the end)."""
        if not self.checks:
            self.status, self.reason, self.exit_code = FAILED, "no checks were run", 1
        elif all(c.passed for c in self.checks):
            self.status, self.exit_code = PASSED, 0
        else:
            bad = [c for c in self.checks if not c.passed]
            self.status, self.exit_code = FAILED, 1
            self.reason = f"{len(bad)} check(s) failed: " + "; ".join(f"{c.name}: {c.detail}" for c in bad[:3])
        return self

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "canary": self.canary,
            "status": self.status,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "adapter": asdict(self.adapter) if self.adapter else None,
            "checks": [asdict(c) for c in self.checks],
            "timings": self.timings,
            "artifacts": self.artifacts,
            "started_at": self.started_at,
            "host": self.host,
        }


def to_markdown(reports: list[Report], artifacts_dir: Path | None = None) -> str:
    lines: list[str] = []
    for r in reports:
        icon = {PASSED: "✅", UNSUPPORTED: "⚠️", ABSENT: "⛔"}.get(r.status, "❌")
        lines.append(f"### {icon} canary `{r.canary}`: {r.status}")
        if r.reason:
            lines.append(f"\n{r.reason}\n")
        if r.adapter:
            a = r.adapter
            lines.append(f"\n**Adapter:** {a.device} ({a.vendor}) · backend {a.backend} · type {a.type} · "
                         f"driver {a.driver} · **{a.kind}**\n")
        if r.checks:
            lines += ["", "| check | result | detail |", "|---|---|---|"]
            for c in r.checks:
                detail = c.detail.replace("|", "\\|").replace("\n", " ")
                lines.append(f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {detail} |")
        if r.timings:
            lines.append("\nTimings: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in r.timings.items()))
        for art in r.artifacts:
            if art.endswith(".png"):
                lines.append(f"\n![{r.canary} render]({art}) ([{art}]({art}))")
            else:
                lines.append(f"\n[{art}]({art})")
        lines.append("")
    return "\n".join(lines) + "\n"


def to_document(reports: list[Report], name: str | None = None) -> dict[str, Any]:
    """One canary's report, or for a group (gpu, all) a wrapper listing each canary's report."""
    if len(reports) == 1:
        return reports[0].to_dict()
    passed = all(r.passed for r in reports)
    return {"schema": SCHEMA, "canary": name or "all", "passed": passed, "canaries": [r.to_dict() for r in reports]}


def write_outputs(reports: list[Report], artifacts_dir: Path | None, environ: dict[str, str] | None = None,
                  name: str | None = None) -> None:
    """Write report JSON/markdown into the artifacts dir and append to GITHUB_STEP_SUMMARY."""
    env = os.environ if environ is None else environ
    md = to_markdown(reports)
    if artifacts_dir is not None:
        artifacts_dir.mkdir(parents=True, exist_ok=True)
        name = reports[0].canary if len(reports) == 1 else (name or "all")
        (artifacts_dir / f"canary-{name}.json").write_text(json.dumps(to_document(reports, name), indent=2) + "\n")
        (artifacts_dir / f"canary-{name}.md").write_text(md)
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        # GitHub caps a step summary at 1 MiB; ours is a few KiB, but never exceed it
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(md[: 1024 * 1024 - 1])
