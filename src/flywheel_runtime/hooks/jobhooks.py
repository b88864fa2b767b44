"""Runner job hooks: ACTIONS_RUNNER_HOOK_JOB_STARTED / _COMPLETED.

The runner runs each hook synchronously as ``bash -e FILE`` before the job's
first step ("Set up runner") and after its last ("Complete runner"); a
non-zero exit fails the job.

job-started
    probes the pod (under ``$FLYWHEEL_ROOT``, default ``/``), appends the
    FLYWHEEL_* hints to ``$GITHUB_ENV``, a short table to
    ``$GITHUB_STEP_SUMMARY`` (never past GitHub's 1 MiB per-step cap) and the
    full JSON to ``$RUNNER_TEMP/flywheel-hints.json`` (exported as
    FLYWHEEL_HINTS_FILE), writes the start time to the state file, and refuses
    the job (exit 6) when the lane's declared devices (topology: kvm for the
    kvm lane, dri for the gpu lane) are not really usable.  A lane that lost
    its device then fails in "Set up runner" with one line, not an hour later.

job-completed
    records the job's duration (stderr, the summary, and a JSON line in
    ``flywheel-jobs.jsonl`` beside the state file) and applies the workspace
    policy.

Workspace policy (``$FLYWHEEL_WORKSPACE_POLICY``, default ``clean``): runners
are ephemeral, but a pod whose runner is re-registered, or a volume reused,
must never hand one job's checkout to the next.  ``clean`` removes the
*contents* of ``$GITHUB_WORKSPACE`` and nothing else: only when the workspace
lies strictly inside ``$RUNNER_WORKSPACE`` (the runner sets both; without it
nothing is removed) and that is not ``/``; never following a symlink out,
never crossing into another filesystem (a mount inside the workspace is left
and reported), making read-only directories (a copied Nix closure) writable
first.  ``keep`` leaves it.  Everything written passes the redaction in :mod:`.redact`.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import Any

from flywheel_runtime.errors import DeviceAbsentError, FlywheelError, TopologyError
from flywheel_runtime.hooks.redact import redact_env_text, redact_text

SUMMARY_CAP = 1 << 20  # GITHUB_STEP_SUMMARY is capped at 1 MiB per step
STATE_NAME = "flywheel-job.json"
RECORD_NAME = "flywheel-jobs.jsonl"
HINTS_NAME = "flywheel-hints.json"
POLICIES = ("clean", "keep")


def state_dir(env: dict[str, str]) -> Path:
    """Where the hooks keep state between job-started and job-completed."""
    return Path(env.get("FLYWHEEL_STATE_DIR") or env.get("RUNNER_TEMP") or "/tmp")


def _write_atomic(path: Path, text: str) -> None:
    from flywheel_runtime._files import write_atomic

    write_atomic(path, text)


def append_env(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(redact_env_text(text))


def append_summary(path: str, text: str, cap: int = SUMMARY_CAP) -> bool:
    """Append to the job summary unless that would pass ``cap``; False when skipped."""
    text = redact_text(text)
    p = Path(path)
    used = p.stat().st_size if p.exists() else 0
    if used + len(text.encode()) > cap:
        note = "\n_flywheel: runtime hints left out: the step summary is at its 1 MiB cap_\n"
        if used + len(note.encode()) <= cap:
            with open(p, "a", encoding="utf-8") as fh:
                fh.write(note)
        return False
    with open(p, "a", encoding="utf-8") as fh:
        fh.write(text)
    return True


def declared_devices(env: dict[str, str]) -> frozenset[str]:
    """Device needs of this pod's lane, from the topology (none when the pod names no lane).

    The scale set decides; a scale set the topology does not know (an owner
    overlay's own name) falls back to its runner class.  Knowing neither is a
    misconfigured pod: TopologyError, not a silent pass on a device lane."""
    scale_set, runner_class = env.get("FLYWHEEL_SCALE_SET"), env.get("FLYWHEEL_RUNNER_CLASS")
    if not scale_set and not runner_class:
        return frozenset()
    from flywheel_runtime.topology import load

    topo = load(env.get("FLYWHEEL_TOPOLOGY") or None)
    for ss in topo.scale_sets:
        if ss.name == scale_set:
            return ss.devices
    for rc in topo.runner_classes:
        if rc.name == runner_class:
            return rc.devices
    raise TopologyError(f"{topo.source}: this pod's scale set {scale_set!r} / runner class {runner_class!r} "
                        "is in neither the scale sets nor the runner classes: set FLYWHEEL_TOPOLOGY to the "
                        "overlay's topology")


def unmet(doc: dict[str, Any], needs: frozenset[str]) -> list[str]:
    """One phrase per declared device this pod cannot use."""
    problems = []
    if "kvm" in needs and not doc["kvm"]["usable"]:
        problems.append(f"kvm ({doc['kvm']['reason']})")
    renders = [d for d in doc["dri"]["devices"] if d["kind"] == "render"]
    # A node the job may open but with no kernel driver behind it in sysfs (a bare
    # mknod, e.g. a runtime that creates the node on a GPU-less host) is no GPU.
    if "dri" in needs and not any(d["accessible"] and d.get("driver") for d in renders):
        reason = doc["dri"]["reason"] or (
            "render node(s) " + ", ".join(d["path"] for d in renders if d["accessible"])
            + " have no kernel driver behind them" if any(d["accessible"] for d in renders)
            else "no render node in /dev/dri this job may open read-write")
        problems.append(f"dri ({reason})")
    return problems


def job_started(env: dict[str, str] | None = None, root: str | None = None) -> dict[str, Any]:
    from flywheel_runtime.probe import collect, to_env, to_markdown

    env = dict(os.environ if env is None else env)
    root = root or env.get("FLYWHEEL_ROOT") or "/"
    doc = collect(root, environ=env)
    sdir = state_dir(env)
    hints_file = Path(env.get("FLYWHEEL_HINTS_FILE") or sdir / HINTS_NAME)
    try:
        _write_atomic(hints_file, redact_text(json.dumps(doc, indent=2)) + "\n")
    except OSError as exc:  # the hints file is a convenience: never fail a job over it
        print(f"flywheel: hints file {hints_file} not written: {exc.strerror}", file=sys.stderr)
        hints_file = None  # type: ignore[assignment]
    if env.get("GITHUB_ENV"):
        extra = f"FLYWHEEL_HINTS_FILE={hints_file}\n" if hints_file else ""
        append_env(env["GITHUB_ENV"], to_env(doc) + extra)
    if env.get("GITHUB_STEP_SUMMARY"):
        if not append_summary(env["GITHUB_STEP_SUMMARY"], to_markdown(doc)):
            print("flywheel: job summary is at its 1 MiB cap; hints table left out", file=sys.stderr)
    try:
        _write_atomic(sdir / STATE_NAME, json.dumps({
            "started": time.time(), "scale_set": env.get("FLYWHEEL_SCALE_SET"),
            "run_id": env.get("GITHUB_RUN_ID"), "job": env.get("GITHUB_JOB")}))
    except OSError as exc:  # only the duration is lost: not worth failing a job
        print(f"flywheel: job start not recorded in {sdir}: {exc.strerror}", file=sys.stderr)
    # Decided after publishing, so a refused job still shows what the pod has.
    try:
        needs = declared_devices(env)
    except TopologyError as exc:
        raise TopologyError(redact_text(str(exc))) from None
    problems = unmet(doc, needs)
    if problems:
        lane = env.get("FLYWHEEL_SCALE_SET") or env.get("FLYWHEEL_RUNNER_CLASS") or "?"
        raise DeviceAbsentError(redact_text(f"lane {lane} declares {', '.join(sorted(needs))} but this pod lacks "
                                            + "; ".join(problems) + ": refusing the job"))
    return doc


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> list[Path]:
    """Every mount point this process sees (field 5 of mountinfo, octal escapes decoded)."""
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:
            out.append(Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])))
    return out


def clean_workspace(workspace: str | Path, work_dir: str | Path) -> dict[str, Any]:
    """Remove the contents of ``workspace``, which must lie strictly inside ``work_dir``."""
    ws, work = Path(os.path.realpath(workspace)), Path(os.path.realpath(work_dir))
    if ws == work or work not in ws.parents or work == Path("/"):
        raise FlywheelError(f"workspace {ws} is not strictly inside the work directory {work}: not cleaned")
    if not ws.is_dir():
        return {"removed": 0, "skipped": []}
    dev = ws.stat().st_dev
    removed, skipped = 0, []

    def _retry(func: Any, path: str, _exc: Any) -> None:
        # Read-only directories (Nix store copies are 0555) block listing or
        # unlinking: make the one in the way writable and try once more.
        target = path if func in (os.open, os.scandir, os.listdir, os.rmdir) and os.path.isdir(path) else None
        for p in filter(None, (target, os.path.dirname(path))):
            os.chmod(p, stat.S_IMODE(os.lstat(p).st_mode) | stat.S_IRWXU)
        func(path)

    import shutil

    rmtree_kw = {"onexc": _retry} if sys.version_info >= (3, 12) else {"onerror": _retry}
    os.chmod(ws, stat.S_IMODE(ws.stat().st_mode) | stat.S_IRWXU)
    mounts = [m for m in mount_points() if ws in m.parents]
    for child in list(ws.iterdir()):
        st = child.lstat()
        if stat.S_ISDIR(st.st_mode):
            if st.st_dev != dev or any(m == child or child in m.parents for m in mounts):
                skipped.append(str(child))  # holds another filesystem: not ours to empty
                continue
            os.chmod(child, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
            shutil.rmtree(child, **rmtree_kw)
        else:
            child.unlink()  # files and symlinks alike: a link is removed, never followed
        removed += 1
    return {"removed": removed, "skipped": skipped}


def job_completed(env: dict[str, str] | None = None) -> dict[str, Any]:
    env = dict(os.environ if env is None else env)
    sdir = state_dir(env)
    out: dict[str, Any] = {"duration_s": None, "workspace": None, "policy": None}
    try:
        state = json.loads((sdir / STATE_NAME).read_text())
        out["duration_s"] = round(time.time() - float(state["started"]), 3)
        (sdir / STATE_NAME).unlink()
    except (OSError, ValueError, KeyError, TypeError):
        pass  # job-started did not run (or ran elsewhere): nothing to time
    policy = (env.get("FLYWHEEL_WORKSPACE_POLICY") or "clean").strip().lower()
    if policy not in POLICIES:
        raise FlywheelError(f"FLYWHEEL_WORKSPACE_POLICY={policy!r}: expected one of {', '.join(POLICIES)}",
                            exit_code=2)  # type: ignore[arg-type]
    out["policy"] = policy
    # The runner sets both: GITHUB_WORKSPACE=_work/<repo>/<repo> inside RUNNER_WORKSPACE=_work/<repo>.
    # Without RUNNER_WORKSPACE there is no trusted boundary, so nothing is removed.
    ws, runner_ws = env.get("GITHUB_WORKSPACE"), env.get("RUNNER_WORKSPACE")
    if policy == "clean" and ws and runner_ws:
        out["workspace"] = {"path": ws, **clean_workspace(ws, runner_ws)}
    record = {"finished": time.time(), "duration_s": out["duration_s"], "scale_set": env.get("FLYWHEEL_SCALE_SET"),
              "node": env.get("FLYWHEEL_NODE_NAME"), "run_id": env.get("GITHUB_RUN_ID"), "job": env.get("GITHUB_JOB"),
              "workspace_policy": policy}
    try:
        sdir.mkdir(parents=True, exist_ok=True)
        with open(sdir / RECORD_NAME, "a", encoding="utf-8") as fh:
            fh.write(redact_text(json.dumps(record)) + "\n")
    except OSError as exc:
        print(f"flywheel: job record not written: {exc.strerror}", file=sys.stderr)
    if env.get("GITHUB_STEP_SUMMARY") and out["duration_s"] is not None:
        append_summary(env["GITHUB_STEP_SUMMARY"], f"\nflywheel: job ran {out['duration_s']:.1f}s on "
                       f"{env.get('FLYWHEEL_NODE_NAME') or '?'} ({env.get('FLYWHEEL_SCALE_SET') or '?'})\n")
    return out
