"""HTTP: the GitHub and Actions-service paths ARC 0.14.0 calls, and the double's own.

GitHub (GHES-style: any host but github.com puts the API under ``/api/v3``)::

    POST /api/v3/app/installations/{id}/access_tokens                               201 (GitHub App auth)
    POST /api/v3/{orgs/O|repos/O/R|enterprises/E}/actions/runners/registration-token  201
    POST /api/v3/actions/runner-registration                                         200 {url, token}

The Actions service, under the ``url`` that answer gives (``{base}/_actions/``),
with the admin JWT::

    GET    _apis/runtime/runnergroups/?groupName=G
    GET    _apis/runtime/runnerscalesets?runnerGroupId=N&name=S
    POST   _apis/runtime/runnerscalesets                            200
    GET|PATCH|DELETE _apis/runtime/runnerscalesets/{id}             DELETE: 204
    POST   _apis/runtime/runnerscalesets/{id}/generatejitconfig
    POST   _apis/runtime/runnerscalesets/{id}/sessions
    PATCH|DELETE _apis/runtime/runnerscalesets/{id}/sessions/{sid}  DELETE: 204
    GET    _apis/distributedtask/pools/0/agents?agentName=X
    GET|DELETE _apis/distributedtask/pools/0/agents/{id}            DELETE: 204, or 400 JobStillRunning

The message queue (the session's token)::

    GET    /_message-queue/{sid}[?lastMessageId=N]                  200 message, 202 none
    DELETE /_message-queue/{sid}/{messageId}                        204

The double's own (no auth: it is a test service)::

    GET  /_flywheel/health
    POST /_flywheel/jobs {label, count, hold, script}               201 {jobs}
    GET  /_flywheel/jobs, /_flywheel/jobs/{id}
    POST /_flywheel/release {ids: [...]} | {all: true}              200 {jobs}
    POST /_flywheel/sessions/expire                                 200: queue tokens expire (401, refresh)
    GET  /_flywheel/scalesets, /_flywheel/requests
    GET  /_flywheel/runner/{jit}                                    the runner the JIT config names
    POST /_flywheel/runner/{jit}/acquire[?wait=S]                   200 {job}, 204 none yet, 410 removed
    POST /_flywheel/runner/{jit}/started {node}                     200 {job}
    POST /_flywheel/runner/{jit}/completed {result, wait}           200 {job} (still "started" while held)

Every URL handed back (``url``, ``messageQueueUrl``, the JIT config's server)
is built from the configured public URL, else from the address the client
used (its Host header): a pod reaches the double through a Service, and
``127.0.0.1`` inside a pod is the pod itself.
"""

from __future__ import annotations

import collections
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any
from urllib.parse import parse_qs, unquote, urlsplit

from flywheel_runtime.actions._service import Service, ServiceError

_API = "/_apis/"
_REG_TOKEN = re.compile(r"^(?:/api/v3)?/(?:orgs/[^/]+|repos/[^/]+/[^/]+|enterprises/[^/]+)/actions/runners/registration-token/?$")
_APP_TOKEN = re.compile(r"^(?:/api/v3)?/app/installations/\d+/access_tokens/?$")
_REGISTRATION = re.compile(r"^(?:/api/v3)?/actions/runner-registration/?$")
_SETS = re.compile(r"^runtime/runnerscalesets/?$")
_SET = re.compile(r"^runtime/runnerscalesets/(\d+)/?$")
_JIT = re.compile(r"^runtime/runnerscalesets/(\d+)/generatejitconfig/?$")
_SESSIONS = re.compile(r"^runtime/runnerscalesets/(\d+)/sessions/?$")
_SESSION = re.compile(r"^runtime/runnerscalesets/(\d+)/sessions/([^/]+)/?$")
_GROUPS = re.compile(r"^runtime/runnergroups/?$")
_AGENTS = re.compile(r"^distributedtask/pools/\d+/agents/?$")
_AGENT = re.compile(r"^distributedtask/pools/\d+/agents/(\d+)/?$")
_QUEUE = re.compile(r"^/_message-queue/([^/]+)/?$")
_ACK = re.compile(r"^/_message-queue/([^/]+)/(\d+)/?$")
_RUNNER = re.compile(r"^/_flywheel/runner/([A-Za-z0-9_-]+)(?:/(acquire|started|completed))?/?$")
_JOB = re.compile(r"^/_flywheel/jobs/(\d+)/?$")
_MAX_WAIT = 60.0  # bound on a runner's long poll, below any client's timeout


class _Reply(Exception):
    """Raised by a route: send this status and body."""

    def __init__(self, status: int, body: Any = None) -> None:
        self.status, self.body = status, body


class RequestLog:
    """Every request as one JSON line (to a file or stderr), and the last few in memory."""

    def __init__(self, stream: IO[str] | None, keep: int = 5000) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.recent)

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":"))
        with self._lock:
            self.recent.append(entry)
            if self._stream is not None:
                try:
                    self._stream.write(line + "\n")
                    self._stream.flush()
                except (OSError, ValueError):  # a closed stream must not break the service
                    self._stream = None


class DoubleHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], service: Service, log: RequestLog, public_url: str | None) -> None:
        super().__init__(address, _Handler)
        self.service = service
        self.log = log
        self.public_url = public_url.rstrip("/") if public_url else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: DoubleHTTPServer
    server_version = "flywheel-actions-double"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the request log replaces it
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # --- plumbing -----------------------------------------------------------------

    def _base_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url
        host = self.headers.get("Host")
        if not host:
            h, p = self.server.server_address[:2]
            host = f"{h!s}:{p}"
        return f"http://{host}"

    def _body(self) -> dict[str, Any]:
        raw = self._raw
        if not raw.strip():
            return {}
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ServiceError(400, "ArgumentException", f"body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ServiceError(400, "ArgumentException", "body must be a JSON object")
        return doc

    def _bearer(self, scheme: str = "Bearer") -> str:
        value = self.headers.get("Authorization") or ""
        prefix = scheme + " "
        return value[len(prefix):].strip() if value.startswith(prefix) else ""

    def _send(self, status: int, body: Any) -> None:
        data = b"" if status == 204 or body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        t0 = time.monotonic()
        split = urlsplit(self.path)
        path, query = unquote(split.path), {k: v[-1] for k, v in parse_qs(split.query).items()}
        entry: dict[str, Any] = {"ts": round(time.time(), 3), "method": method, "path": self.path,
                                 "client": self.client_address[0]}
        try:
            # read every body, used or not: the connection is kept alive for the next request
            length = int(self.headers.get("Content-Length") or 0)
            self._raw = self.rfile.read(length) if length > 0 else b""
            status, body = self._route(method, path, query)
        except ServiceError as exc:
            status, body = exc.status, exc.body()
            entry["typeName"] = exc.type_name
        except _Reply as reply:
            status, body = reply.status, reply.body
        except Exception as exc:  # noqa: BLE001 - a bug answers 4xx (never 5xx: clients retry those) and is logged
            status, body = 400, {"typeName": "FlywheelDoubleError", "message": f"{type(exc).__name__}: {exc}"}
            entry["typeName"] = "FlywheelDoubleError"
            entry["error"] = repr(exc)
        entry["status"] = status
        entry["ms"] = round((time.monotonic() - t0) * 1000, 1)
        try:
            self._send(status, body)
        except (BrokenPipeError, ConnectionResetError):
            entry["client_gone"] = True
        self.server.log.write(entry)

    # --- routes ---------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
        svc, base = self.server.service, self._base_url()
        if path.startswith("/_flywheel/"):
            return self._control(method, path, query)
        if m := _QUEUE.match(path):
            if method != "GET":
                raise _Reply(405, {"typeName": "MethodNotAllowed", "message": f"{method} {path}"})
            cap = self.headers.get("X-ScaleSetMaxCapacity")
            msg = svc.get_message(m.group(1), self._bearer(), int(query.get("lastMessageId") or 0),
                                  int(cap) if cap and cap.strip().isdigit() else None)
            return (202, None) if msg is None else (200, msg)
        if m := _ACK.match(path):
            if method != "DELETE":
                raise _Reply(405, {"typeName": "MethodNotAllowed", "message": f"{method} {path}"})
            svc.delete_message(m.group(1), self._bearer(), int(m.group(2)))
            return 204, None
        if method == "POST" and _REG_TOKEN.match(path):
            if not (self._bearer() or self._bearer("token")):
                raise ServiceError(401, "UnauthorizedException", "registration-token needs a token (Authorization: Bearer ...)")
            return 201, svc.registration_token()
        if method == "POST" and _APP_TOKEN.match(path):
            # GitHub App auth: the app's RS256 JWT is taken as is (the double holds no app key)
            if not self._bearer():
                raise ServiceError(401, "UnauthorizedException", "access_tokens needs the app's JWT (Authorization: Bearer ...)")
            return 201, svc.installation_token()
        if method == "POST" and _REGISTRATION.match(path):
            body = self._body()
            return 200, svc.runner_registration(self._bearer("RemoteAuth"), str(body.get("url") or ""), base)
        at = path.find(_API)
        if at < 0:
            raise ServiceError(404, "NotFoundException", f"no such path {method} {path}")
        svc.check_admin(self._bearer())
        return self._actions(method, path[at + len(_API):], query, base)

    def _actions(self, method: str, sub: str, query: dict[str, str], base: str) -> tuple[int, Any]:
        svc = self.server.service
        if method == "GET" and _GROUPS.match(sub):
            return 200, svc.runner_groups(query.get("groupName") or "Default")
        if _SETS.match(sub):
            if method == "GET":
                gid = query.get("runnerGroupId")
                return 200, svc.list_scale_sets(query.get("name"), int(gid) if gid and gid.isdigit() else None, base)
            if method == "POST":
                return 200, svc.create_scale_set(self._body(), base)
        if m := _SET.match(sub):
            sid = int(m.group(1))
            if method == "GET":
                return 200, svc.get_scale_set(sid, base)
            if method == "PATCH":
                return 200, svc.update_scale_set(sid, self._body(), base)
            if method == "DELETE":
                svc.delete_scale_set(sid)
                return 204, None
        if (m := _JIT.match(sub)) and method == "POST":
            return 200, svc.generate_jit_config(int(m.group(1)), str(self._body().get("name") or ""), base)
        if (m := _SESSIONS.match(sub)) and method == "POST":
            return 200, svc.create_session(int(m.group(1)), str(self._body().get("ownerName") or ""), base)
        if m := _SESSION.match(sub):
            sid, session = int(m.group(1)), m.group(2)
            if method == "PATCH":
                return 200, svc.refresh_session(sid, session, base)
            if method == "DELETE":
                svc.delete_session(sid, session)
                return 204, None
        if method == "GET" and _AGENTS.match(sub):
            return 200, svc.runners_by_name(query.get("agentName") or "")
        if m := _AGENT.match(sub):
            if method == "GET":
                return 200, svc.get_runner(int(m.group(1)))
            if method == "DELETE":
                svc.remove_runner(int(m.group(1)))
                return 204, None
        raise ServiceError(404, "NotFoundException", f"no such call {method} _apis/{sub}")

    def _control(self, method: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
        svc = self.server.service
        if path.rstrip("/") == "/_flywheel/health":
            return 200, {"ok": True, "service": "flywheel-runtime actions double", "url": self._base_url()}
        if path.rstrip("/") == "/_flywheel/jobs":
            if method == "GET":
                return 200, {"jobs": svc.jobs()}
            if method == "POST":
                body = self._body()
                count = body.get("count", 1)
                if not isinstance(count, int) or isinstance(count, bool):
                    raise ServiceError(400, "ArgumentException", "count must be an integer")
                return 201, {"jobs": svc.queue(str(body.get("label") or ""), count, bool(body.get("hold")),
                                               str(body.get("script") or ""))}
        if (m := _JOB.match(path)) and method == "GET":
            return 200, {"job": svc.job(int(m.group(1)))}
        if path.rstrip("/") == "/_flywheel/release" and method == "POST":
            body = self._body()
            ids = body.get("ids") or []
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise ServiceError(400, "ArgumentException", "ids must be a list of job ids")
            if not ids and not body.get("all"):
                raise ServiceError(400, "ArgumentException", "release needs ids or all")
            return 200, {"jobs": svc.release(ids, every=bool(body.get("all")))}
        if path.rstrip("/") == "/_flywheel/sessions/expire" and method == "POST":
            return 200, {"sessions": svc.expire_queue_tokens()}
        if path.rstrip("/") == "/_flywheel/scalesets" and method == "GET":
            return 200, {"scaleSets": svc.scale_sets(self._base_url())}
        if path.rstrip("/") == "/_flywheel/requests" and method == "GET":
            return 200, {"requests": self.server.log.snapshot()}
        if m := _RUNNER.match(path):
            jit, action = m.group(1), m.group(2)
            if action is None and method == "GET":
                return 200, {"runner": svc.jit_runner(jit)}
            if method == "POST" and action == "acquire":
                job = svc.acquire(jit, _wait(query.get("wait"), 30.0))
                return (204, None) if job is None else (200, {"job": job})
            if method == "POST" and action == "started":
                return 200, {"job": svc.started(jit, str(self._body().get("node") or "") or None)}
            if method == "POST" and action == "completed":
                body = self._body()
                return 200, {"job": svc.completed(jit, str(body.get("result") or "succeeded"),
                                                  _wait(body.get("wait"), 0.0))}
        raise ServiceError(404, "NotFoundException", f"no such control call {method} {path}")


def _wait(value: Any, default: float) -> float:
    try:
        return min(_MAX_WAIT, max(0.0, float(value))) if value is not None else default
    except (TypeError, ValueError):
        raise ServiceError(400, "ArgumentException", f"wait must be seconds, not {value!r}") from None


def log_stream(target: str | None) -> tuple[IO[str] | None, bool]:
    """``None``/``-``: stderr; else a file opened for appending (owned: close it)."""
    if target in (None, "", "-"):
        return sys.stderr, False
    return open(target, "a", encoding="utf-8", buffering=1), True  # noqa: SIM115 - closed by the owner
