"""Runner job hooks: ACTIONS_RUNNER_HOOK_JOB_STARTED / _COMPLETED.

job-started publishes the hints to the job (GITHUB_ENV, a table in
GITHUB_STEP_SUMMARY) and refuses the job, with one clear line, when the lane's
declared devices (from the topology: kvm for the kvm lane, dri for the gpu
lane) are not really there: a lane that lost its device fails in "Set up
runner", not an hour later.  job-completed records the job's duration and
applies the workspace policy (ephemeral runners start clean: the workspace's
contents are removed, never anything outside the work directory).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from flywheel_runtime.errors import DeviceAbsentError
from flywheel_runtime.hooks.redact import redact_text

SUMMARY_CAP = 1 << 20  # GITHUB_STEP_SUMMARY is capped at 1 MiB per step


def _state_file(env: dict[str, str]) -> Path:
    base = env.get("RUNNER_TEMP") or "/tmp"
    return Path(base) / "flywheel-job.json"


def _append(path: str, text: str, cap: int | None = None) -> None:
    p = Path(path)
    if cap is not None:
        used = p.stat().st_size if p.exists() else 0
        if used + len(text.encode()) > cap:
            return  # never push the step over GitHub's cap
    with open(p, "a", encoding="utf-8") as fh:
        fh.write(redact_text(text))


def declared_devices(env: dict[str, str]) -> frozenset[str]:
    """Device needs of this pod's lane, from the topology (none when unknown)."""
    name = env.get("FLYWHEEL_SCALE_SET")
    if not name:
        return frozenset()
    from flywheel_runtime.topology import load

    return load(env.get("FLYWHEEL_TOPOLOGY") or None).scale_set(name).devices


def unmet(doc: dict[str, Any], needs: frozenset[str]) -> list[str]:
    problems = []
    if "kvm" in needs and not doc["kvm"]["usable"]:
        problems.append(f"kvm ({doc['kvm']['reason']})")
    if "dri" in needs and not any(d["accessible"] and d["kind"] == "render" for d in doc["dri"]["devices"]):
        reason = doc["dri"]["reason"] or "no accessible render node in /dev/dri"
        problems.append(f"dri ({reason})")
    return problems


def job_started(env: dict[str, str] | None = None, root: str | None = None) -> dict[str, Any]:
    from flywheel_runtime.probe import collect, to_env, to_markdown

    env = dict(os.environ if env is None else env)
    root = root or env.get("FLYWHEEL_ROOT") or "/"
    doc = collect(root, environ=env)
    needs = declared_devices(env)
    problems = unmet(doc, needs)
    if env.get("GITHUB_ENV"):
        _append(env["GITHUB_ENV"], to_env(doc))
    if env.get("GITHUB_STEP_SUMMARY"):
        _append(env["GITHUB_STEP_SUMMARY"], to_markdown(doc), cap=SUMMARY_CAP)
    _state_file(env).write_text(json.dumps({"started": time.time(), "scale_set": env.get("FLYWHEEL_SCALE_SET")}))
    if problems:
        lane = env.get("FLYWHEEL_SCALE_SET", "?")
        raise DeviceAbsentError(f"lane {lane} declares {', '.join(sorted(needs))} but this pod lacks "
                                + "; ".join(problems) + ": refusing the job")
    return doc


def job_completed(env: dict[str, str] | None = None) -> dict[str, Any]:
    env = dict(os.environ if env is None else env)
    state = _state_file(env)
    out: dict[str, Any] = {"duration_s": None, "workspace_cleaned": None}
    try:
        started = json.loads(state.read_text())["started"]
        out["duration_s"] = round(time.time() - started, 3)
        state.unlink()
    except (OSError, ValueError, KeyError):
        pass
    ws = env.get("GITHUB_WORKSPACE")
    work = env.get("RUNNER_WORKSPACE") or (str(Path(ws).parent) if ws else None)
    if ws and work:
        wsp, workp = Path(ws).resolve(), Path(work).resolve()
        # Only ever inside the runner's work directory, never the directory itself.
        if wsp != workp and workp in wsp.parents and wsp.is_dir():
            for child in wsp.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            out["workspace_cleaned"] = str(wsp)
    if env.get("GITHUB_STEP_SUMMARY") and out["duration_s"] is not None:
        _append(env["GITHUB_STEP_SUMMARY"], f"\nflywheel: job ran {out['duration_s']:.1f}s on "
                f"{env.get('FLYWHEEL_NODE_NAME', '?')} ({env.get('FLYWHEEL_SCALE_SET', '?')})\n", cap=SUMMARY_CAP)
    return out
