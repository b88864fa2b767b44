"""The double as an object: start it on a port (in a thread or in the foreground), stop it."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from flywheel_runtime.actions._server import DoubleHTTPServer, RequestLog, log_stream
from flywheel_runtime.actions._service import Service
from flywheel_runtime.actions._client import ActionsUnreachableError


class ActionsDouble:
    """A GitHub Actions service double speaking what ARC 0.14.0 calls.

    ``host``/``port``: where it listens (port 0: any free one).  ``public_url``:
    the base every URL it hands out uses (else the Host the client used).
    ``long_poll``: how long an empty message-queue poll waits before its 202.
    ``log``: a path (appended to), ``"-"``/None for stderr, or an open stream.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, public_url: str | None = None,
                 long_poll: float = 1.0, log: str | Path | IO[str] | None = None, jwt_ttl: float = 3600.0) -> None:
        if isinstance(log, (str, Path)) or log is None:
            stream, self._owned = log_stream(None if log is None else str(log))
        else:
            stream, self._owned = log, False
        self._stream = stream
        self.service = Service(long_poll=long_poll, jwt_ttl=jwt_ttl)
        self.requests = RequestLog(stream)
        try:
            self._httpd = DoubleHTTPServer((host, port), self.service, self.requests, public_url)
        except OSError as exc:
            self._close_stream()
            raise ActionsUnreachableError(f"actions double cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Where a client on this machine reaches it."""
        host = str(self._httpd.server_address[0])
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    def config_url(self, org: str = "flywheel") -> str:
        """A ``githubConfigUrl`` for it (GHES-style: the API under /api/v3)."""
        return f"{self._httpd.public_url or self.url}/{org}"

    def start(self) -> ActionsDouble:
        """Serve in a daemon thread (in-process use: tests, the cluster harness)."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"actions-double:{self.port}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`close` (from a signal handler) or KeyboardInterrupt."""
        self._httpd.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        self.service.close()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()
        self._close_stream()

    def _close_stream(self) -> None:
        if self._owned and self._stream is not None:
            self._stream.close()
            self._stream = None

    # in-process control: the same operations as /_flywheel/...
    def queue(self, label: str, count: int = 1, hold: bool = False, script: str = "") -> list[dict[str, Any]]:
        return self.service.queue(label, count, hold, script)

    def jobs(self) -> list[dict[str, Any]]:
        return self.service.jobs()

    def release(self, ids: list[int] | None = None, every: bool = False) -> list[dict[str, Any]]:
        return self.service.release(ids, every)

    def __enter__(self) -> ActionsDouble:
        return self.start() if self._thread is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
