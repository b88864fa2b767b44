"""Finding a running double and driving its control surface over HTTP."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from flywheel_runtime._files import pid_alive
from flywheel_runtime.errors import ExitCode, FlywheelError

URL_ENV = "FLYWHEEL_ACTIONS_URL"
STATE_NAME = "actions/double.json"


class ActionsUnreachableError(FlywheelError):
    exit_code = ExitCode.ACTIONS_UNREACHABLE


def cache_dir() -> Path:
    """``$FLYWHEEL_CACHE_DIR``, else the XDG cache (the harness's own rule, kept here so
    this package imports nothing from it)."""
    explicit = os.environ.get("FLYWHEEL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flywheel-runtime"


def state_file() -> Path:
    """Where ``actions serve`` (or the cluster that runs a double) records its URL."""
    return cache_dir() / STATE_NAME


def write_state(url: str, pid: int | None = None) -> Path:
    """Record ``url`` as the running double's (atomically); ``pid``: the serving process, if local."""
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"url": url, "pid": pid}) + "\n")
    os.replace(tmp, path)
    return path


def clear_state(pid: int | None = None) -> None:
    """Remove the state file if it still names ``pid`` (another serve may have replaced it)."""
    path = state_file()
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return
    if pid is None or doc.get("pid") == pid:
        path.unlink(missing_ok=True)


def find_url(explicit: str | None = None) -> str:
    """``--url``, else ``$FLYWHEEL_ACTIONS_URL``, else the state file; one-line error otherwise."""
    for value in (explicit, os.environ.get(URL_ENV)):
        if value:
            return value.rstrip("/")
    path = state_file()
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ActionsUnreachableError(
            f"no actions double found: pass --url, set {URL_ENV}, or start one (actions serve; it writes {path})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ActionsUnreachableError(f"cannot read {path}: {exc}") from None
    url, pid = doc.get("url"), doc.get("pid")
    if not isinstance(url, str) or not url:
        raise ActionsUnreachableError(f"{path} names no url")
    if isinstance(pid, int) and not pid_alive(pid):
        raise ActionsUnreachableError(f"the actions double recorded in {path} (pid {pid}) is not running")
    return url.rstrip("/")


class ActionsClient:
    """The double's control surface (``/_flywheel/...``)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - a URL the user gave
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                doc = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                doc = {}
            message = doc.get("message") if isinstance(doc, dict) else None
            code = ExitCode.USAGE if exc.code in (400, 404) else ExitCode.FAILED
            raise FlywheelError(f"actions double {self.url}: {message or f'HTTP {exc.code}'}", exit_code=code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ActionsUnreachableError(f"actions double at {self.url} cannot be reached: {reason}") from None
        except json.JSONDecodeError:
            raise ActionsUnreachableError(f"{self.url} does not answer as an actions double") from None

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/_flywheel/health")[1]

    def queue(self, label: str, count: int = 1, hold: bool = False, script: str = "") -> list[dict[str, Any]]:
        return self._call("POST", "/_flywheel/jobs", {"label": label, "count": count, "hold": hold, "script": script})[1]["jobs"]

    def jobs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_flywheel/jobs")[1]["jobs"]

    def job(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/_flywheel/jobs/{job_id}")[1]["job"]

    def release(self, ids: list[int] | None = None, every: bool = False) -> list[dict[str, Any]]:
        return self._call("POST", "/_flywheel/release", {"ids": ids or [], "all": every})[1]["jobs"]

    def scale_sets(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_flywheel/scalesets")[1]["scaleSets"]

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_flywheel/requests")[1]["requests"]
