"""Bounded polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flywheel_runtime.errors import DeadlineError


def wait_for(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``probe`` until it returns something truthy; raise DeadlineError at ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:  # transient API errors while the cluster settles
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise DeadlineError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)
