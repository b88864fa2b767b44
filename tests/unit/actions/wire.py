"""A plain HTTP client for the double: the calls as the scaleset client sends them."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    body: Any
    seconds: float
    headers: dict[str, str]


def call(url: str, method: str, path: str, body: Any = None, *, token: str | None = None, scheme: str = "Bearer",
         headers: dict[str, str] | None = None, raw: bytes | None = None) -> Reply:
    """One request on a fresh connection (as the scaleset client's pooled transport would send it)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["Authorization"] = f"{scheme} {token}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    t0 = time.monotonic()
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    return Reply(resp.status, json.loads(payload) if payload else None, time.monotonic() - t0,
                 {k.lower(): v for k, v in resp.getheaders()})


@dataclass
class Admin:
    """What a controller holds after auth: the Actions base path and the admin JWT."""

    url: str
    base: str  # path prefix of the Actions service, e.g. /_actions
    jwt: str

    def __call__(self, method: str, sub: str, body: Any = None, **kw: Any) -> Reply:
        sep = "&" if "?" in sub else "?"
        return call(self.url, method, f"{self.base}/{sub}{sep}api-version=6.0-preview", body, token=self.jwt, **kw)

    def scale_set(self, name: str, labels: list[str] | None = None) -> dict[str, Any]:
        r = self("POST", "_apis/runtime/runnerscalesets",
                 {"name": name, "runnerGroupId": 1, "labels": [{"name": lb} for lb in labels or [name]]})
        assert r.status == 200, r.body
        return r.body

    def session(self, set_id: int, owner: str = "listener") -> dict[str, Any]:
        r = self("POST", f"_apis/runtime/runnerscalesets/{set_id}/sessions",
                 {"sessionId": "00000000-0000-0000-0000-000000000000", "ownerName": owner})
        assert r.status == 200, r.body
        return r.body

    def jit(self, set_id: int, name: str) -> dict[str, Any]:
        r = self("POST", f"_apis/runtime/runnerscalesets/{set_id}/generatejitconfig", {"name": name, "workFolder": "_work"})
        assert r.status == 200, r.body
        return r.body


def authenticate(url: str, org: str = "flywheel-org") -> Admin:
    reg = call(url, "POST", f"/api/v3/orgs/{org}/actions/runners/registration-token", token="a-pat")
    assert reg.status == 201, reg.body
    conn = call(url, "POST", "/api/v3/actions/runner-registration",
                {"url": f"{url}/{org}", "runner_event": "register"}, token=reg.body["token"], scheme="RemoteAuth")
    assert conn.status == 200, conn.body
    return Admin(url, urlsplit(conn.body["url"]).path.rstrip("/"), conn.body["token"])


def poll(session: dict[str, Any], last: int = 0, capacity: int | None = None, token: str | None = None) -> Reply:
    q = urlsplit(session["messageQueueUrl"])
    path = q.path + (f"?lastMessageId={last}" if last else "")
    headers = {"Accept": "application/json; api-version=6.0-preview"}
    if capacity is not None:
        headers["X-ScaleSetMaxCapacity"] = str(capacity)
    return call(f"{q.scheme}://{q.netloc}", "GET", path, token=token or session["messageQueueAccessToken"], headers=headers)


def ack(session: dict[str, Any], message_id: int) -> Reply:
    q = urlsplit(session["messageQueueUrl"])
    return call(f"{q.scheme}://{q.netloc}", "DELETE", f"{q.path}/{message_id}", token=session["messageQueueAccessToken"])


def messages(session: dict[str, Any], capacity: int | None = None) -> list[dict[str, Any]]:
    """Read and ack everything pending; the entries of every message body, in order."""
    out, last = [], 0
    while (r := poll(session, last, capacity)).status == 200:
        out += json.loads(r.body["body"])
        assert ack(session, r.body["messageId"]).status == 204
        last = r.body["messageId"]
    assert r.status == 202
    return out
