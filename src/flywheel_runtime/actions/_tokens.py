"""The tokens the double hands out: an HS256 admin JWT and an opaque JIT config.

The scaleset client parses the admin JWT unverified (three base64url parts, a
known ``alg``, a numeric ``exp``) to know when to refresh it; the double signs
it with a per-process secret so that only tokens it issued pass.  A JIT config
is opaque to the controller; the runner decodes its own (the real one holds the
runner's ``.runner`` and credentials files), so the double's holds what a
runner stand-in needs: the runner, its scale set and the service URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_jwt(secret: bytes, claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(sig)}"


def check_jwt(secret: bytes, token: str, now: float | None = None) -> dict[str, Any] | None:
    """The claims of a token this secret signed and that has not expired, else None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        want = hmac.new(secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(want, _unb64(parts[2])):
            return None
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, json.JSONDecodeError):
        return None
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or exp <= (time.time() if now is None else now):
        return None
    return claims


def encode_jit(runner_id: int, runner_name: str, scale_set_id: int, server_url: str, nonce: str) -> str:
    """URL-safe (it travels in the runner API's path) and without padding."""
    doc = {"flywheel": 1, "runnerId": runner_id, "runnerName": runner_name, "scaleSetId": scale_set_id,
           "serverUrl": server_url, "nonce": nonce}
    return _b64(json.dumps(doc, separators=(",", ":")).encode())


def decode_jit(encoded: str) -> dict[str, Any] | None:
    """The fields :func:`encode_jit` wrote, or None for anything else."""
    try:
        doc = json.loads(_unb64(encoded.strip()))
    except (ValueError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("flywheel") != 1:
        return None
    if not isinstance(doc.get("runnerId"), int) or not isinstance(doc.get("scaleSetId"), int):
        return None
    return doc
