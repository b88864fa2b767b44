"""Worker processes for a first seed: ``jobs`` forks share one directory's entries."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, fields
from typing import Any

from flywheel_runtime.errors import ExitCode, FlywheelError
from flywheel_runtime.nixseed.copy import Copier, Stats, _Farm, _weaker

_PR_SET_PDEATHSIG = 1


class WorkerError(FlywheelError):
    """A worker process failed with something other than an OSError (a bug: exit 70)."""

    exit_code = ExitCode.INTERNAL


class Workers:
    """``jobs`` forked processes sharing the entries of one directory.

    Each takes the next unit from a shared counter (an entry: a whole store
    path), so a long one never holds the others up.  The parent only waits,
    reports progress, and merges counts.  A worker dies with its parent
    (PR_SET_PDEATHSIG): a SIGKILLed seeder leaves no orphan writing on.  They
    also inherit the lock's open file, so a re-run cannot start before they end.
    """

    _FIELDS = [f.name for f in fields(Stats)]

    def __init__(self, copier: Copier, sdir: int, ddir: int, rel: str,
                 units: list[tuple[str, os.stat_result, os.stat_result | None, bool]], stale_tmp: bool,
                 fresh: bool, farm: _Farm | None = None) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.copier, self.sdir, self.ddir, self.rel = copier, sdir, ddir, rel
        self.units, self.stale_tmp, self.fresh = units, stale_tmp, fresh
        # The farm goes first, in slices; the other units wait until every slice is done.
        self.farm = farm
        n = len(farm.index) if farm is not None else 0
        per = max(64, -(-n // (copier.jobs * 16))) if n else 1
        self.slices = [(lo, min(lo + per, n)) for lo in range(0, n, per)]
        self.slices_done = ctx.RawValue("q", 0)
        self.farm_ready = ctx.RawValue("i", 0)
        self.jobs = copier.jobs
        self.next = ctx.RawValue("q", 0)
        self.lock = ctx.Lock()
        self.failed = ctx.RawValue("i", 0)
        self.counts = ctx.RawArray("q", len(self._FIELDS) * self.jobs)

    def live(self) -> Stats:
        out = Stats()
        n = len(self._FIELDS)
        for i, f in enumerate(self._FIELDS):
            setattr(out, f, sum(self.counts[w * n + i] for w in range(self.jobs)))
        return out

    def _collect(self, procs: dict[int, tuple[int, int]]) -> dict[int, bytearray]:
        import selectors

        sel = selectors.DefaultSelector()
        buffers: dict[int, bytearray] = {}
        for pid, (_i, r) in procs.items():
            sel.register(r, selectors.EVENT_READ, pid)
            buffers[pid] = bytearray()
        open_ends = len(procs)
        try:
            while open_ends:
                for key, _ev in sel.select(timeout=0.25):
                    chunk = os.read(key.fd, 1 << 16)
                    if chunk:
                        buffers[key.data] += chunk
                    else:
                        sel.unregister(key.fd)
                        open_ends -= 1
                if self.copier.tick is not None:
                    self.copier.tick()
                if self.copier.flush is not None:
                    # Idle here anyway: write back what the workers wrote so far, so the
                    # final sync has little left and the disk works while they copy.
                    self.copier.flush()
        finally:
            sel.close()
        for _i, r in procs.values():
            os.close(r)
        return buffers

    def run(self) -> Stats:
        parent = os.getpid()
        procs: dict[int, tuple[int, int]] = {}  # pid -> (worker index, read end)
        try:
            for index in range(self.jobs):
                r, w = os.pipe()
                pid = os.fork()
                if pid == 0:  # pragma: no cover - measured in the child, reported through the pipe
                    os.close(r)
                    self._child(index, w, parent)
                os.close(w)
                procs[pid] = (index, r)
            # Wait for the results, ticking progress meanwhile.
            buffers = self._collect(procs)
        except BaseException:
            # Whatever stops the parent (a failed flush, ^C) stops the workers too:
            # an in-process caller must not go on while they still write.
            self.failed.value = 1
            for pid, (_i, r) in procs.items():
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
                try:
                    os.close(r)
                except OSError:
                    pass
            raise
        total, first_error = Stats(), None
        for pid, (index, _r) in procs.items():
            _p, status = os.waitpid(pid, 0)
            try:
                msg = json.loads(bytes(buffers[pid]) or b"{}")
            except ValueError:
                msg = {}
            if "stats" in msg:
                total.add(Stats(**msg["stats"]))
                used = msg.get("method")
                self.copier._used = _weaker(self.copier._used, used if used != "write" else None)
                continue
            if first_error is None or (first_error.get("kind") == "peer" and msg.get("kind") != "peer"):
                first_error = msg or {"kind": "died", "status": status, "index": index}
        if first_error is not None:
            if first_error.get("kind") == "os":
                raise OSError(first_error["errno"], first_error["strerror"], first_error.get("filename"))
            raise WorkerError(first_error.get("message") or f"seed worker ended without a report ({first_error})")
        return total

    def _child(self, index: int, w: int, parent: int) -> None:  # pragma: no cover - runs in a fork
        code = 1
        try:
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
            msg = self._work(index)
            code = 0
        except OSError as exc:
            msg = {"kind": "os", "errno": exc.errno, "strerror": exc.strerror,
                   "filename": exc.filename if isinstance(exc.filename, str) else None}
        except _PeerFailed:
            msg = {"kind": "peer"}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
            msg = {"kind": "error", "message": f"{type(exc).__name__}: {exc}"}
        if code:
            self.failed.value = 1
        try:
            data = json.dumps(msg).encode()
            while data:
                data = data[os.write(w, data):]
        finally:
            os._exit(code)

    def _work(self, index: int) -> dict[str, Any]:  # pragma: no cover - runs in a fork
        c = self.copier
        c.stats = Stats()
        c.tick = None
        n = len(self._FIELDS)
        base = index * n
        sealed = False  # this process's view of the farm index is sorted
        while True:
            if self.failed.value:
                raise _PeerFailed()
            with self.lock:
                i = self.next.value
                self.next.value = i + 1
            nslices = len(self.slices)
            if i >= len(self.units) + nslices:
                break
            if i < nslices:
                self._farm_slice(*self.slices[i])
                with self.lock:
                    self.slices_done.value += 1
                    last = self.slices_done.value == nslices
                if last:  # every farm name is copied: index it, mend shared inodes, let linking start
                    assert self.farm is not None
                    self.farm.seal(c)
                    self.farm_ready.value = 1
                    sealed = True
            else:
                while nslices and not self.farm_ready.value:  # the farm must be complete to link from it
                    if self.failed.value:
                        raise _PeerFailed()
                    time.sleep(0.001)
                if nslices and not sealed:
                    assert self.farm is not None
                    self.farm.index.seal()
                    sealed = True
                name, st, dst, stale = self.units[i - nslices]
                if stale:
                    c._remove(self.ddir, name, st)
                else:
                    c.copy_entry(self.sdir, self.ddir, self.rel, name, st, dst, self.stale_tmp, self.fresh)
            s = c.stats
            for k, f in enumerate(self._FIELDS):
                self.counts[base + k] = getattr(s, f)
        return {"stats": asdict(c.stats), "method": c.method}


    def _farm_slice(self, lo: int, hi: int) -> None:  # pragma: no cover - runs in a fork
        assert self.farm is not None
        self.farm.copy_slice(self.copier, lo, hi)


class _PeerFailed(Exception):
    """Another worker failed; this one stopped early."""
