#!/usr/bin/env python3
"""TEST-ONLY STAND-IN for the GitHub runner (actions/runner) in an ARC runner pod.

The real runner (.NET) cannot be had offline.  This plays it against the
project's Actions service double, in the container named ``runner``, the way
the real one runs an ephemeral job:

1. reads its JIT config (``ACTIONS_RUNNER_INPUT_JITCONFIG``, from the secret ARC
   writes) and finds the service in it (the double's JIT config carries its
   URL; ``$FLYWHEEL_ACTIONS_URL`` overrides);
2. asks the double for its job and waits for one (``/_flywheel/runner/{jit}/acquire``);
   a runner the service removed (scale-down) exits 0 without a job;
3. (a job whose script starts with ``#standin: stall-before-start N`` first
   makes it wait N seconds holding the job unreported: a runner that took its
   job and hangs before it starts, which the service still counts as running)
   reports the job started, with its node (``$NODE_NAME`` from the downward
   API, else ``$FLYWHEEL_NODE_NAME``, else the host name);
4. runs ``ACTIONS_RUNNER_HOOK_JOB_STARTED`` as ``bash -e FILE`` (without one:
   ``flywheel-runtime hook job-started``), the job's script (the double's
   ``script``, else ``$FLYWHEEL_STANDIN_JOB``, else ``true``; ``bash -e`` in
   ``$GITHUB_WORKSPACE`` with what the hook wrote to ``$GITHUB_ENV``), then
   the _COMPLETED hook, as run.sh beside it does;
5. reports completion (succeeded when all three exit 0, else failed) and, while
   the double holds the job, keeps running until it is released;
6. exits ``$FLYWHEEL_STANDIN_EXIT`` (default 0; a job sets it for its runner
   by writing ``FLYWHEEL_STANDIN_EXIT=N`` to ``$GITHUB_ENV``).  Never 7: ARC reads 7 as "runner
   outdated" and deletes the scale set; a 7 asked for becomes 1.

Stdlib only (the runner images have Debian's python3 and the flywheel venv's).
Mount it over /home/runner/run.sh (the pod's command is
``flywheel-runtime entrypoint -- /home/runner/run.sh``).  Last line:
``standin: result {"job_id": N, "started": RC, "job": RC, "completed": RC, "result": "..."}``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

STALL = "#standin: stall-before-start"
POLL = 20.0  # seconds per long poll; the double bounds it at 60
UNREACHABLE_FOR = 120.0  # keep retrying a double that does not answer (a Service not ready yet)


def say(msg: str) -> None:
    print(f"standin: {msg}", flush=True)


def decode_jit(jit: str) -> dict[str, Any]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(jit + "=" * (-len(jit) % 4)))
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(status, JSON body); retries while the double cannot be reached."""
    data = json.dumps(body).encode()
    give_up = time.monotonic() + UNREACHABLE_FOR
    while True:
        req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=POLL + 30) as resp:  # noqa: S310 - the double's URL
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                return exc.code, {"message": raw.decode(errors="replace")}
        except (urllib.error.URLError, OSError) as exc:
            if time.monotonic() > give_up:
                raise SystemExit(f"standin: the actions double at {url} cannot be reached: {exc}") from None
            time.sleep(1)


def hook(var: str, name: str, env: dict[str, str]) -> int:
    path = env.get(var)
    cmd = ["bash", "-e", path] if path else [env.get("FLYWHEEL_RUNTIME_BIN") or "flywheel-runtime", "hook", name]
    return subprocess.run(cmd, env=env).returncode


def github_env(path: Path) -> dict[str, str]:
    """The KEY=VALUE lines a step wrote to $GITHUB_ENV (the runner hands them to later steps)."""
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def exit_code(asked: str | None = None) -> int:
    try:
        code = int(asked or os.environ.get("FLYWHEEL_STANDIN_EXIT") or 0)
    except ValueError:
        code = 1
    if code == 7:
        say("exit 7 would mark the scale set outdated (ARC deletes it): exiting 1 instead")
        return 1
    return code


def main() -> int:
    say(f"start {time.time():.3f}")
    jit = os.environ.get("ACTIONS_RUNNER_INPUT_JITCONFIG", "").strip()
    if not jit:
        say("no ACTIONS_RUNNER_INPUT_JITCONFIG")
        return 1
    cfg = decode_jit(jit)
    url = (os.environ.get("FLYWHEEL_ACTIONS_URL") or cfg.get("serverUrl") or "").rstrip("/")
    if not url:
        say("the JIT config names no service and FLYWHEEL_ACTIONS_URL is unset")
        return 1
    base = f"{url}/_flywheel/runner/{jit}"
    say(f"runner {cfg.get('runnerName')} ({cfg.get('runnerId')}) of scale set {cfg.get('scaleSetId')} at {url}")

    while True:
        status, doc = post(f"{base}/acquire?wait={POLL:g}", {})
        if status == 200:
            job = doc["job"]
            break
        if status == 410:
            say(f"no job: {doc.get('message')}")
            return exit_code()
        if status != 204:
            say(f"acquire failed: HTTP {status} {doc.get('message')}")
            return 1

    node = os.environ.get("NODE_NAME") or os.environ.get("FLYWHEEL_NODE_NAME") or socket.gethostname()
    work = Path(os.environ.get("FLYWHEEL_STANDIN_WORK") or "/home/runner/_work")
    env = dict(os.environ)
    env.update({
        "RUNNER_NAME": str(cfg.get("runnerName") or ""), "RUNNER_TEMP": str(work / "_temp"),
        "RUNNER_WORKSPACE": str(work / "repo"), "GITHUB_WORKSPACE": str(work / "repo" / "repo"),
        "GITHUB_ENV": str(work / "_temp" / "_runner_file_commands" / "set_env"),
        "GITHUB_STEP_SUMMARY": str(work / "_temp" / "_runner_file_commands" / "step_summary"),
        "GITHUB_RUN_ID": str(job["id"]), "GITHUB_JOB": f"flywheel-job-{job['id']}",
        "FLYWHEEL_JOB_ID": str(job["id"]), "FLYWHEEL_JOB_LABEL": str(job["label"]),
    })
    Path(env["GITHUB_WORKSPACE"]).mkdir(parents=True, exist_ok=True)
    Path(env["GITHUB_ENV"]).parent.mkdir(parents=True, exist_ok=True)
    Path(env["GITHUB_ENV"]).write_text("")
    Path(env["GITHUB_STEP_SUMMARY"]).write_text("")

    first = (job.get("script") or "").splitlines()[:1]
    if first and first[0].startswith(STALL):
        stall = float(first[0][len(STALL):].strip() or 0)
        say(f"job {job['id']} taken; stalling {stall:g} s before reporting it started")
        time.sleep(stall)
    status, doc = post(f"{base}/started", {"node": node})
    if status != 200:
        say(f"reporting the job started failed: HTTP {status} {doc.get('message')}")
        return 1
    say(f"job {job['id']} ({job['label']}) started on {node}")

    started, ran = hook("ACTIONS_RUNNER_HOOK_JOB_STARTED", "job-started", env), -1
    if started == 0:
        step_env = {**env, **github_env(Path(env["GITHUB_ENV"]))}
        script = job.get("script") or os.environ.get("FLYWHEEL_STANDIN_JOB") or "true"
        ran = subprocess.run(["bash", "-e", "-c", script], cwd=env["GITHUB_WORKSPACE"], env=step_env).returncode
    asked = github_env(Path(env["GITHUB_ENV"])).get("FLYWHEEL_STANDIN_EXIT") if Path(env["GITHUB_ENV"]).exists() else None
    completed = hook("ACTIONS_RUNNER_HOOK_JOB_COMPLETED", "job-completed", env)
    result = "succeeded" if (started, ran, completed) == (0, 0, 0) else "failed"

    wait = 0.0  # the first report returns at once, so a held job says so in the log
    while True:
        status, doc = post(f"{base}/completed", {"result": result, "wait": wait})
        if status != 200:
            say(f"reporting completion failed: HTTP {status} {doc.get('message')}")
            return 1
        if doc["job"]["state"] == "completed":
            break
        if not wait:
            say(f"job {job['id']} ({result}) is held by the service: running until it is released")
        wait = POLL
    say("result " + json.dumps({"job_id": job["id"], "started": started, "job": ran, "completed": completed,
                                "result": doc["job"]["result"]}))
    return exit_code(asked)


if __name__ == "__main__":
    sys.exit(main())
