"""Turning transport and API failures into one line a user can act on."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from flywheel_runtime.errors import ClusterError, KubeconfigError

if TYPE_CHECKING:
    from flywheel_runtime.kube._client import Client


class api_errors:
    """Context manager: unreachable -> KubeconfigError (exit 4), an API failure ->
    ClusterError (exit 12); statuses in ``passthrough`` reach the caller as they are."""

    def __init__(self, cluster: Client, what: str, passthrough: tuple[int, ...] = ()) -> None:
        self.cluster, self.what, self.passthrough = cluster, what, passthrough

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None:
            return False
        from kubernetes.client.rest import ApiException
        from urllib3.exceptions import HTTPError

        if isinstance(exc, ApiException):
            if exc.status in self.passthrough:
                return False
            if exc.status == 0 or exc.status is None:
                raise KubeconfigError(f"cluster {self.cluster.server} unreachable while {self.what}: "
                                      f"{exc.reason}") from exc
            raise ClusterError(f"{self.what} on {self.cluster.server} failed: HTTP {exc.status} "
                               f"{exc.reason}") from exc
        if isinstance(exc, (HTTPError, OSError)):
            raise KubeconfigError(f"cluster {self.cluster.server} unreachable while {self.what}: "
                                  f"{_why(exc)}") from exc
        return False


def _why(exc: BaseException) -> str:
    """The root cause of a transport failure, short: "Connection refused", "timed out"."""
    text = str(getattr(exc, "reason", None) or exc)
    m = re.search(r"\[Errno -?\d+\] ([^'\")(]+)", text)
    if m:
        return m.group(1).strip()
    if "timed out" in text.lower():
        return "timed out"
    return type(getattr(exc, "reason", None) or exc).__name__
