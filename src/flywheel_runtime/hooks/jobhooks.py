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
    A GITHUB_ENV that is not a writable regular file fails it too (exit 18:
    the job would run without its hints); a summary, hints file or state file
    that cannot be written only costs a warning line.

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
first, also as a non-root runner (a mode-000 directory the runner owns is
opened up, never followed).  What cannot be removed is reported in one
line, exit 19: the next job must not silently inherit it.  ``keep`` leaves it.

Everything written (GITHUB_ENV, the summary, the hints file, job records,
stderr) passes the redaction in :mod:`.redact`; nothing a user controls adds a
line to GITHUB_ENV (a value with a line break is written in the runner's
heredoc form, under a random delimiter).  Files read or appended to are
opened non-blocking and must be regular files: a FIFO never hangs a hook.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import Any

from flywheel_runtime.errors import (
    DeviceAbsentError,
    ExitCode,
    FlywheelError,
    OutputUnusableError,
    TopologyError,
    WorkspaceLeftError,
)
from flywheel_runtime.hooks.redact import redact_doc, redact_env_text, redact_text, redact_value

SUMMARY_CAP = 1 << 20  # GITHUB_STEP_SUMMARY is capped at 1 MiB per step
STATE_NAME = "flywheel-job.json"
RECORD_NAME = "flywheel-jobs.jsonl"
HINTS_NAME = "flywheel-hints.json"
POLICIES = ("clean", "keep")
# Everything any reader (the runner's, Python's splitlines) may take for a line break.
_LINE_BREAK = re.compile(r"[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def warn(message: str) -> None:
    """One redacted line on stderr."""
    print(redact_text(" ".join(message.splitlines())), file=sys.stderr)


def state_dir(env: dict[str, str]) -> Path:
    """Where the hooks keep state between job-started and job-completed."""
    return Path(env.get("FLYWHEEL_STATE_DIR") or env.get("RUNNER_TEMP") or "/tmp")


def _write_atomic(path: Path, text: str) -> None:
    from flywheel_runtime._files import write_atomic

    write_atomic(path, text)


def open_append(path: str | Path) -> int:
    """A descriptor appending to ``path``, a regular file (created if missing).

    Non-blocking open, then fstat on the descriptor: a FIFO with no reader
    answers ENXIO at once, one with a reader (or a device) is refused, never
    waited on."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


def _append(path: str | Path, text: str) -> None:
    fd = open_append(path)
    try:
        data = text.encode("utf-8", errors="backslashreplace")
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def env_line(name: str, value: str) -> str:
    """One GITHUB_ENV entry, the value redacted.  A value with a line break is
    written in the runner's heredoc form (``NAME<<DELIM``) under a random
    delimiter it does not hold, so it can never start a line of its own."""
    value = redact_value(name, value)
    if not _LINE_BREAK.search(value):
        return f"{name}={value}\n"
    import secrets

    while True:
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        if delimiter not in value:
            return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def env_file_names(text: str) -> list[str]:
    """The names a GITHUB_ENV text sets, read the way the runner reads it
    (``NAME=value`` lines, ``NAME<<DELIM`` ... ``DELIM`` blocks); any line break
    counts as one, which is stricter than the runner."""
    names, lines, i = [], _LINE_BREAK.split(text), 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        eq, heredoc = line.find("="), line.find("<<")
        if eq >= 0 and (heredoc < 0 or eq < heredoc):
            names.append(line[:eq])
        elif heredoc >= 0:
            names.append(line[:heredoc])
            delimiter = line[heredoc + 2:]
            while i < len(lines) and lines[i] != delimiter:
                i += 1
            i += 1
        else:
            names.append(line)  # the runner refuses such a line: count it so the guard does too
    return names


def append_env(path: str, text: str, expected: list[str]) -> None:
    """Append ``text`` (redacted) to GITHUB_ENV when it sets exactly ``expected``."""
    text = redact_env_text(text)
    if env_file_names(text) != expected:  # cannot happen by construction: a bug, not a user error
        raise FlywheelError("refusing to write GITHUB_ENV: a value would set a variable of its own",
                            exit_code=ExitCode.INTERNAL)
    try:
        _append(path, text)
    except OSError as exc:
        raise OutputUnusableError(redact_text(f"GITHUB_ENV {path}: {exc.strerror}: the hints cannot be published "
                                              "(GITHUB_ENV must name a writable regular file)")) from None


def append_summary(path: str, text: str, cap: int = SUMMARY_CAP) -> bool:
    """Append to the job summary unless that would pass ``cap``; False when skipped.
    Raises OSError when the summary is not a writable regular file."""
    text = redact_text(text)
    fd = open_append(path)
    try:
        used = os.fstat(fd).st_size
        data = text.encode("utf-8", errors="backslashreplace")
        if used + len(data) > cap:
            note = b"\n_flywheel: runtime hints left out: the step summary is at its 1 MiB cap_\n"
            if used + len(note) <= cap:
                os.write(fd, note)
            return False
        while data:
            data = data[os.write(fd, data):]
        return True
    finally:
        os.close(fd)


def _summary(env: dict[str, str], text: str, skipped_note: str | None = None) -> None:
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        if not append_summary(path, text) and skipped_note:
            warn(skipped_note)
    except OSError as exc:  # the summary is a convenience: say so, never fail a job over it
        warn(f"flywheel: job summary {path} not written: {exc.strerror}")


def _load_topology(env: dict[str, str]) -> Any:
    """The topology, or a TopologyError that says what was wrong without quoting
    the file: FLYWHEEL_TOPOLOGY may name anything (/etc/shadow)."""
    from flywheel_runtime.topology import load

    path = env.get("FLYWHEEL_TOPOLOGY") or None
    if path is not None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as exc:
            raise TopologyError(redact_text(f"FLYWHEEL_TOPOLOGY={path}: {exc.strerror}")) from None
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
        if not regular:
            raise TopologyError(redact_text(f"FLYWHEEL_TOPOLOGY={path}: not a regular file"))
    try:
        return load(path)
    except TopologyError:
        where = f"FLYWHEEL_TOPOLOGY={path}" if path else "the packaged topology"
        raise TopologyError(redact_text(
            f"{where} is not a valid topology (unparsable or failing the schema; its content is not shown "
            f"here: run `flywheel-runtime topology check {path or ''}`".rstrip() + " to see why)")) from None


def declared_devices(env: dict[str, str]) -> frozenset[str]:
    """Device needs of this pod's lane, from the topology (none when the pod names no lane).

    The scale set decides; a scale set the topology does not know (an owner
    overlay's own name) falls back to its runner class.  Knowing neither is a
    misconfigured pod: TopologyError, not a silent pass on a device lane."""
    scale_set, runner_class = env.get("FLYWHEEL_SCALE_SET"), env.get("FLYWHEEL_RUNNER_CLASS")
    if not scale_set and not runner_class:
        return frozenset()
    topo = _load_topology(env)
    for ss in topo.scale_sets:
        if ss.name == scale_set:
            return ss.devices
    for rc in topo.runner_classes:
        if rc.name == runner_class:
            return rc.devices
    raise TopologyError(redact_text(
        f"{topo.source}: this pod's scale set {scale_set!r} / runner class {runner_class!r} "
        "is in neither the scale sets nor the runner classes: set FLYWHEEL_TOPOLOGY to the overlay's topology"))


def unmet(doc: dict[str, Any], needs: frozenset[str]) -> list[str]:
    """One phrase per declared device this pod cannot use."""
    from flywheel_runtime.probe.dri import usable

    problems = []
    if "kvm" in needs and not doc["kvm"]["usable"]:
        problems.append(f"kvm ({doc['kvm']['reason']})")
    renders = [d for d in doc["dri"]["devices"] if d["kind"] == "render"]
    # The hints' FLYWHEEL_DRI and this gate make one decision (probe.dri.usable).
    if "dri" in needs and not any(usable(d) for d in renders):
        opened = [d["path"] for d in renders if d["accessible"]]
        driverless = [d["path"] for d in renders if not d["accessible"] and "no driver" in (d["open_error"] or "")]
        if doc["dri"]["reason"]:
            reason = doc["dri"]["reason"]
        elif opened:
            # a bare mknod on a GPU-less host may open, yet nothing in sysfs drives it
            reason = "render node(s) " + ", ".join(opened) + " have no kernel driver behind them"
        elif driverless:
            reason = ("render node(s) " + ", ".join(driverless)
                      + " answer ENXIO/ENODEV on open: no driver behind them")
        else:
            reason = "no render node in /dev/dri this job may open read-write"
        problems.append(f"dri ({reason})")
    return problems


def job_started(env: dict[str, str] | None = None, root: str | None = None) -> dict[str, Any]:
    from flywheel_runtime.probe import collect, env_pairs, to_env, to_markdown

    env = dict(os.environ if env is None else env)
    root = root or env.get("FLYWHEEL_ROOT") or "/"
    doc = collect(root, environ=env)
    safe = redact_doc(doc)  # what any file or log gets: every string redacted before it is rendered
    sdir = state_dir(env)
    wanted = Path(env.get("FLYWHEEL_HINTS_FILE") or sdir / HINTS_NAME)
    hints_file: Path | None = wanted
    try:
        _write_atomic(wanted, json.dumps(safe, indent=2) + "\n")  # every string in it redacted above
    except OSError as exc:  # the hints file is a convenience: never fail a job over it
        warn(f"flywheel: hints file {wanted} not written: {exc.strerror}")
        hints_file = None
    if env.get("GITHUB_ENV"):
        text = to_env(doc, mask=redact_value)
        names = list(env_pairs(doc))
        if hints_file is not None:
            text += env_line("FLYWHEEL_HINTS_FILE", str(hints_file))
            names.append("FLYWHEEL_HINTS_FILE")
        append_env(env["GITHUB_ENV"], text, names)
    _summary(env, to_markdown(safe), "flywheel: job summary is at its 1 MiB cap; hints table left out")
    try:
        _write_atomic(sdir / STATE_NAME, json.dumps({
            "started": time.time(), "scale_set": env.get("FLYWHEEL_SCALE_SET"),
            "run_id": env.get("GITHUB_RUN_ID"), "job": env.get("GITHUB_JOB")}))
    except OSError as exc:  # only the duration is lost: not worth failing a job
        warn(f"flywheel: job start not recorded in {sdir}: {exc.strerror}")
    # Decided after publishing, so a refused job still shows what the pod has.
    needs = declared_devices(env)
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


def _open_dir(parent_fd: int, name: str, seen: os.stat_result) -> int:
    """Open the directory ``name`` (lstat'ed as ``seen``) for emptying.

    A directory its owner may not list or write (a 0555 Nix copy, a mode-000
    directory a job left) is given u+rwx first.  It is reached through an
    O_PATH|O_NOFOLLOW descriptor checked against ``seen``, so a directory
    swapped for a symlink is never followed, and the chmod goes through that
    descriptor (/proc/self/fd), never through a path."""
    pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        now = os.fstat(pfd)
        if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino):
            raise OSError(errno.EAGAIN, "changed while it was being removed")
        mode = stat.S_IMODE(now.st_mode)
        if mode & stat.S_IRWXU != stat.S_IRWXU:
            try:
                os.chmod(f"/proc/self/fd/{pfd}", mode | stat.S_IRWXU)
            except FileNotFoundError:  # no /proc: by name, the identity was just checked
                os.chmod(name, mode | stat.S_IRWXU, dir_fd=parent_fd)
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
    finally:
        os.close(pfd)


class _Cleaner:
    """Removes trees under one directory descriptor, iteratively (depth costs no
    Python stack), never leaving the workspace's filesystem nor entering a
    mount; records what it had to leave."""

    def __init__(self, dev: int, mounts: set[tuple[int, int]]) -> None:
        self.dev, self.mounts = dev, mounts
        self.skipped: list[str] = []
        self.errors: list[str] = []

    def _fail(self, path: str, exc: OSError) -> bool:
        self.errors.append(f"{path}: {exc.strerror or exc}")
        return False

    def _leaf_or_open(self, parent_fd: int, name: str, path: str) -> tuple[bool, int | None]:
        """(removed, descriptor of a directory to descend into)."""
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return True, None
        except OSError as exc:
            return self._fail(path, exc), None
        if not stat.S_ISDIR(st.st_mode):
            try:
                os.unlink(name, dir_fd=parent_fd)  # files and symlinks alike: a link is removed, never followed
                return True, None
            except FileNotFoundError:
                return True, None
            except OSError as exc:
                return self._fail(path, exc), None
        if st.st_dev != self.dev or (st.st_dev, st.st_ino) in self.mounts:
            self.skipped.append(path)  # another filesystem: not ours to empty
            return False, None
        try:
            return False, _open_dir(parent_fd, name, st)
        except OSError as exc:
            return self._fail(path, exc), None

    def remove(self, parent_fd: int, name: str, path: str) -> bool:
        """Remove ``name`` under ``parent_fd``; True when it is gone."""
        removed, fd = self._leaf_or_open(parent_fd, name, path)
        if fd is None:
            return removed
        # frames: [fd, path, names left, everything below removed, parent fd, name]
        stack: list[list[Any]] = []
        try:
            stack.append([fd, path, iter(os.listdir(fd)), True, parent_fd, name])
        except OSError as exc:
            os.close(fd)
            return self._fail(path, exc)
        gone = False
        while stack:
            frame = stack[-1]
            child = next(frame[2], None)
            if child is None:
                stack.pop()
                os.close(frame[0])
                gone = frame[3]
                if gone:
                    try:
                        os.rmdir(frame[5], dir_fd=frame[4])
                    except OSError as exc:
                        gone = self._fail(frame[1], exc)
                if stack and not gone:
                    stack[-1][3] = False
                continue
            cpath = os.path.join(frame[1], child)
            ok, cfd = self._leaf_or_open(frame[0], child, cpath)
            if cfd is None:
                if not ok:
                    frame[3] = False
                continue
            try:
                stack.append([cfd, cpath, iter(os.listdir(cfd)), True, frame[0], child])
            except OSError as exc:
                os.close(cfd)
                frame[3] = self._fail(cpath, exc)
        return gone


def clean_workspace(workspace: str | Path, work_dir: str | Path) -> dict[str, Any]:
    """Remove the contents of ``workspace``, which must lie strictly inside ``work_dir``.

    Raises WorkspaceLeftError (after removing all it can) when something
    could not be removed."""
    ws, work = Path(os.path.realpath(workspace)), Path(os.path.realpath(work_dir))
    if ws == work or work not in ws.parents or work == Path("/"):
        raise FlywheelError(f"workspace {ws} is not strictly inside the work directory {work}: not cleaned")
    if not ws.is_dir():
        return {"removed": 0, "skipped": []}
    mounts = set()
    for m in mount_points():
        if ws in m.parents:
            try:
                st = os.stat(m)
            except OSError:
                continue
            mounts.add((st.st_dev, st.st_ino))
    try:
        mode = stat.S_IMODE(os.stat(ws).st_mode)
        if mode & stat.S_IRWXU != stat.S_IRWXU:
            os.chmod(ws, mode | stat.S_IRWXU)
        top = os.open(ws, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise WorkspaceLeftError(redact_text(f"workspace {ws} not cleaned: {exc.strerror}")) from None
    try:
        cleaner = _Cleaner(os.fstat(top).st_dev, mounts)
        removed = 0
        try:
            names = sorted(os.listdir(top))
        except OSError as exc:
            raise WorkspaceLeftError(redact_text(f"workspace {ws} not cleaned: {exc.strerror}")) from None
        for name in names:
            removed += cleaner.remove(top, name, str(ws / name))
    finally:
        os.close(top)
    if cleaner.errors:
        n = len(cleaner.errors)
        raise WorkspaceLeftError(redact_text(
            f"workspace {ws}: {n} entr{'y' if n == 1 else 'ies'} could not be removed (first: {cleaner.errors[0]}); "
            "the next job would inherit them"))
    return {"removed": removed, "skipped": cleaner.skipped}


def job_completed(env: dict[str, str] | None = None) -> dict[str, Any]:
    from flywheel_runtime.probe._fs import read_regular

    env = dict(os.environ if env is None else env)
    sdir = state_dir(env)
    out: dict[str, Any] = {"duration_s": None, "workspace": None, "policy": None}
    raw = read_regular(str(sdir / STATE_NAME), limit=1 << 16)
    if raw is not None:
        try:
            state = json.loads(raw)
            out["duration_s"] = round(time.time() - float(state["started"]), 3)
            (sdir / STATE_NAME).unlink()
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            pass  # job-started did not run (or ran elsewhere): nothing to time
    policy = (env.get("FLYWHEEL_WORKSPACE_POLICY") or "clean").strip().lower()
    if policy not in POLICIES:
        # The value is not echoed: it is whatever the pod spec put there.
        raise FlywheelError(f"FLYWHEEL_WORKSPACE_POLICY is not one of {', '.join(POLICIES)} (its value is not shown)",
                            exit_code=ExitCode.USAGE)
    out["policy"] = policy
    # The runner sets both: GITHUB_WORKSPACE=_work/<repo>/<repo> inside RUNNER_WORKSPACE=_work/<repo>.
    # Without RUNNER_WORKSPACE there is no trusted boundary, so nothing is removed.
    ws, runner_ws = env.get("GITHUB_WORKSPACE"), env.get("RUNNER_WORKSPACE")
    left: WorkspaceLeftError | None = None
    if policy == "clean" and ws and runner_ws:
        try:
            out["workspace"] = {"path": ws, **clean_workspace(ws, runner_ws)}
        except WorkspaceLeftError as exc:
            left = exc  # still record the job; then fail it
    record = {"finished": time.time(), "duration_s": out["duration_s"], "scale_set": env.get("FLYWHEEL_SCALE_SET"),
              "node": env.get("FLYWHEEL_NODE_NAME"), "run_id": env.get("GITHUB_RUN_ID"), "job": env.get("GITHUB_JOB"),
              "workspace_policy": policy, "workspace_left": str(left) if left else None}
    try:
        sdir.mkdir(parents=True, exist_ok=True)
        _append(sdir / RECORD_NAME, redact_text(json.dumps(redact_doc(record))) + "\n")
    except OSError as exc:
        warn(f"flywheel: job record not written: {exc.strerror}")
    if out["duration_s"] is not None:
        _summary(env, f"\nflywheel: job ran {out['duration_s']:.1f}s on "
                 f"{env.get('FLYWHEEL_NODE_NAME') or '?'} ({env.get('FLYWHEEL_SCALE_SET') or '?'})\n")
    if left is not None:
        raise left
    return out
