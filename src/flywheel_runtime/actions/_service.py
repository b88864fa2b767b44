"""The double's state: scale sets, runners, sessions, message queues, jobs.

Everything lives under one condition variable; long polls (the message queue,
a runner waiting for its job) wait on it and every change wakes them.

A job's life, as the service drives ARC 0.14.0:

queued
    on the double's queue for its label, waiting for a scale set that
    publishes the label (its ``labels`` or its name) and has room: the
    listener sends its ``maxRunners`` as ``X-ScaleSetMaxCapacity`` with every
    poll, and a set never holds more unfinished jobs than that, so a burst
    past a lane's cap waits here.
assigned
    the set's queue gets ``JobAssigned`` and ``totalAssignedJobs`` counts it
    (the only figure the listener scales on: min(minRunners + assigned,
    maxRunners)).  A runner of the set asking for work takes it.
started
    its runner reported it started (and on which node): ``JobStarted`` with
    the runner's id and name.  The runner's removal now answers
    ``JobStillRunningException``.  A held job stays here until released.
completed
    ``JobCompleted`` with the result; the set's count drops.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from flywheel_runtime.actions._tokens import check_jwt, decode_jit, encode_jit, make_jwt

STATES = ("queued", "assigned", "started", "completed")
DEFAULT_GROUP = "Default"
MAX_QUEUE = 1000  # jobs per queue call


class ServiceError(Exception):
    """An answer in the service's own error shape: ``{"typeName", "message"}`` with a 4xx status.

    Never 5xx: the scaleset client retries those (4 times, up to 30 s apart)."""

    def __init__(self, status: int, type_name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type_name = type_name
        self.message = message

    def body(self) -> dict[str, str]:
        return {"typeName": self.type_name, "message": self.message}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Job:
    id: int
    label: str
    queued_at: float
    hold: bool = False
    script: str = ""
    state: str = "queued"
    scale_set_id: int | None = None
    runner_id: int | None = None
    runner: str | None = None
    node: str | None = None
    assigned_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    result: str | None = None
    reported_result: str | None = None  # what its runner said while the job was held

    def view(self, scale_set: str | None) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "state": self.state, "runner": self.runner, "node": self.node,
                "queued_at": self.queued_at, "assigned_at": self.assigned_at, "started_at": self.started_at,
                "completed_at": self.completed_at, "held": self.hold, "result": self.result,
                "reported_result": self.reported_result,
                "scale_set": scale_set, "script": self.script}


@dataclass
class Runner:
    id: int
    name: str
    scale_set_id: int
    nonce: str
    created_at: float
    removed: bool = False
    job_id: int | None = None  # the one job an ephemeral runner takes
    done: bool = False  # its job completed

    def reference(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "runnerScaleSetId": self.scale_set_id,
                "status": "busy" if self.job_id is not None and not self.done else "online"}


@dataclass
class ScaleSet:
    id: int
    name: str
    runner_group_id: int
    labels: list[dict[str, str]]
    runner_setting: dict[str, Any]
    created_at: float
    # The listener's last X-ScaleSetMaxCapacity.  None (no listener polled yet): no
    # bound, so jobs can be driven by hand without one; the listener's scaling still
    # caps its runners at maxRunners.
    capacity: int | None = None

    def label_names(self) -> set[str]:
        return {lb.get("name", "") for lb in self.labels} | {self.name}


@dataclass
class Session:
    id: str
    scale_set_id: int
    owner: str
    token: str


@dataclass
class Message:
    id: int
    body: list[dict[str, Any]]
    statistics: dict[str, int]
    deleted: bool = False


@dataclass
class _SetQueue:
    messages: list[Message] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)  # events not yet in a message


class Service:
    """What the HTTP layer calls; every public method is one request's worth of work."""

    def __init__(self, *, long_poll: float = 1.0, jwt_ttl: float = 3600.0) -> None:
        self.long_poll = long_poll
        self.jwt_ttl = jwt_ttl
        self._secret = secrets.token_bytes(32)
        self._cond = threading.Condition()
        self._closing = False
        self._ids = {k: itertools.count(1) for k in ("set", "runner", "job", "message", "group")}
        self._groups: dict[int, str] = {next(self._ids["group"]): DEFAULT_GROUP}
        self._sets: dict[int, ScaleSet] = {}
        self._runners: dict[int, Runner] = {}
        self._jobs: dict[int, Job] = {}
        self._sessions: dict[int, Session] = {}  # scale set id -> its one live session
        self._queues: dict[int, _SetQueue] = {}
        self._registration_tokens: set[str] = set()
        self.owner = "flywheel"  # the org of the githubConfigUrl, once a client registered

    # --- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Wake every long poll so the server can stop at once."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def _changed(self) -> None:
        self._cond.notify_all()

    # --- auth --------------------------------------------------------------------

    def registration_token(self) -> dict[str, Any]:
        token = "FWREG" + secrets.token_hex(16).upper()
        with self._cond:
            self._registration_tokens.add(token)
        return {"token": token, "expires_at": _iso(time.time() + 3600)}

    def installation_token(self) -> dict[str, Any]:
        """A GitHub App installation token; registration-token takes any bearer."""
        return {"token": "ghs_" + secrets.token_hex(18), "expires_at": _iso(time.time() + 3600)}

    def runner_registration(self, remote_auth: str, config_url: str, base_url: str) -> dict[str, str]:
        with self._cond:
            if remote_auth not in self._registration_tokens:
                raise ServiceError(401, "UnauthorizedException", "RemoteAuth token was not issued by this service")
            parts = [p for p in config_url.split("://", 1)[-1].split("/")[1:] if p]
            if parts:
                self.owner = parts[-1] if parts[0].lower() == "enterprises" else parts[0]
        now = time.time()
        token = make_jwt(self._secret, {"iss": "flywheel-actions-double", "aud": "actions", "iat": int(now),
                                        "nbf": int(now), "exp": int(now + self.jwt_ttl), "scp": "Actions.AdminService"})
        return {"url": base_url.rstrip("/") + "/_actions/", "token": token}

    def check_admin(self, bearer: str) -> None:
        if check_jwt(self._secret, bearer) is None:
            raise ServiceError(401, "UnauthorizedException", "admin token missing, not issued here, or expired")

    # --- runner groups -------------------------------------------------------------

    def runner_groups(self, name: str) -> dict[str, Any]:
        """Any group name resolves: one a chart names is created on first lookup."""
        with self._cond:
            for gid, gname in self._groups.items():
                if gname.lower() == name.lower():
                    break
            else:
                gid = next(self._ids["group"])
                self._groups[gid] = name
            return {"count": 1, "value": [self._group(gid)]}

    def _group(self, gid: int) -> dict[str, Any]:
        return {"id": gid, "name": self._groups[gid], "size": 0, "isDefaultGroup": gid == 1}

    # --- scale sets ------------------------------------------------------------------

    def _set_view(self, s: ScaleSet, base_url: str) -> dict[str, Any]:
        return {"id": s.id, "name": s.name, "runnerGroupId": s.runner_group_id,
                "runnerGroupName": self._groups[s.runner_group_id], "labels": s.labels,
                "RunnerSetting": s.runner_setting, "createdOn": _iso(s.created_at),
                "runnerJitConfigUrl": f"{base_url.rstrip('/')}/_actions/_apis/runtime/runnerscalesets/{s.id}/generatejitconfig",
                "statistics": self._statistics(s.id)}

    def _get_set(self, set_id: int) -> ScaleSet:
        s = self._sets.get(set_id)
        if s is None:
            raise ServiceError(404, "RunnerScaleSetNotFoundException", f"no runner scale set {set_id}")
        return s

    def _labels(self, body: dict[str, Any], name: str) -> list[dict[str, str]]:
        raw = body.get("labels") or [{"name": name}]
        if not isinstance(raw, list) or not all(isinstance(x, dict) and x.get("name") for x in raw):
            raise ServiceError(400, "ArgumentException", "labels must be a list of {type, name}")
        return [{"type": str(x.get("type") or "System"), "name": str(x["name"])} for x in raw]

    def _group_id(self, body: dict[str, Any]) -> int:
        gid = body.get("runnerGroupId") or 1
        if not isinstance(gid, int) or gid not in self._groups:
            raise ServiceError(400, "RunnerGroupNotFoundException", f"no runner group {gid}")
        return gid

    def list_scale_sets(self, name: str | None, group_id: int | None, base_url: str) -> dict[str, Any]:
        with self._cond:
            value = [self._set_view(s, base_url) for s in self._sets.values()
                     if (name is None or s.name == name) and (group_id is None or s.runner_group_id == group_id)]
        return {"count": len(value), "value": value}

    def create_scale_set(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ServiceError(400, "ArgumentException", "a runner scale set needs a name")
        with self._cond:
            gid = self._group_id(body)
            if any(s.name == name and s.runner_group_id == gid for s in self._sets.values()):
                raise ServiceError(409, "RunnerScaleSetExistsException",
                                   f"runner scale set {name!r} exists in group {self._groups[gid]!r}")
            s = ScaleSet(id=next(self._ids["set"]), name=name, runner_group_id=gid, labels=self._labels(body, name),
                         runner_setting=dict(body.get("RunnerSetting") or {}), created_at=time.time())
            self._sets[s.id] = s
            self._queues[s.id] = _SetQueue()
            self._assign()
            return self._set_view(s, base_url)

    def get_scale_set(self, set_id: int, base_url: str) -> dict[str, Any]:
        with self._cond:
            return self._set_view(self._get_set(set_id), base_url)

    def update_scale_set(self, set_id: int, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        with self._cond:
            s = self._get_set(set_id)
            if body.get("name"):
                s.name = str(body["name"])
            if body.get("runnerGroupId"):
                s.runner_group_id = self._group_id(body)
            if body.get("labels"):
                s.labels = self._labels(body, s.name)
            if "RunnerSetting" in body and isinstance(body["RunnerSetting"], dict):
                s.runner_setting = dict(body["RunnerSetting"])
            self._assign()
            return self._set_view(s, base_url)

    def delete_scale_set(self, set_id: int) -> None:
        """Idempotent.  Its jobs no runner took go back to the queue; its session ends."""
        with self._cond:
            if self._sets.pop(set_id, None) is None:
                return
            self._sessions.pop(set_id, None)
            self._queues.pop(set_id, None)
            for job in self._jobs.values():
                if job.scale_set_id == set_id and job.state == "assigned" and job.runner_id is None:
                    job.state, job.scale_set_id, job.assigned_at = "queued", None, None
            self._assign()

    # --- statistics and assignment ---------------------------------------------------

    def _statistics(self, set_id: int) -> dict[str, int]:
        mine = [j for j in self._jobs.values() if j.scale_set_id == set_id and j.state in ("assigned", "started")]
        labels = self._sets[set_id].label_names() if set_id in self._sets else set()
        runners = [r for r in self._runners.values() if r.scale_set_id == set_id and not r.removed]
        busy = sum(1 for r in runners if r.job_id is not None and not r.done)
        return {
            "totalAvailableJobs": sum(1 for j in self._jobs.values() if j.state == "queued" and j.label in labels),
            "totalAcquiredJobs": sum(1 for j in mine if j.runner_id is not None),
            "totalAssignedJobs": len(mine),
            "totalRunningJobs": sum(1 for j in mine if j.state == "started"),
            "totalRegisteredRunners": len(runners),
            "totalBusyRunners": busy,
            "totalIdleRunners": len(runners) - busy,
        }

    def _event(self, job: Job, kind: str) -> None:
        event: dict[str, Any] = {
            "messageType": kind, "runnerRequestId": job.id, "repositoryName": "jobs", "ownerName": self.owner,
            "jobId": str(job.id), "jobWorkflowRef": f"{self.owner}/jobs/.github/workflows/{job.label}.yml@refs/heads/main",
            "jobDisplayName": f"flywheel job {job.id}", "workflowRunId": job.id, "eventName": "workflow_dispatch",
            "requestLabels": [job.label], "queueTime": _iso(job.queued_at),
        }
        for key, ts in (("scaleSetAssignTime", job.assigned_at), ("runnerAssignTime", job.started_at),
                        ("finishTime", job.completed_at)):
            if ts is not None:
                event[key] = _iso(ts)
        if kind in ("JobStarted", "JobCompleted"):
            event["runnerId"], event["runnerName"] = job.runner_id, job.runner
        if kind == "JobCompleted":
            event["result"] = job.result
        if job.scale_set_id in self._queues:
            self._queues[job.scale_set_id].pending.append(event)

    def _assign(self) -> None:
        """Give queued jobs, oldest first, to a set publishing their label that has room."""
        active: dict[int, int] = {sid: 0 for sid in self._sets}
        for j in self._jobs.values():
            if j.scale_set_id in active and j.state in ("assigned", "started"):
                active[j.scale_set_id] += 1
        for job in self._jobs.values():
            if job.state != "queued":
                continue
            room = [s for s in self._sets.values() if job.label in s.label_names()
                    and (s.capacity is None or active[s.id] < s.capacity)]
            if not room:
                continue
            target = min(room, key=lambda s: (active[s.id], s.id))
            job.state, job.scale_set_id, job.assigned_at = "assigned", target.id, time.time()
            active[target.id] += 1
            self._event(job, "JobAssigned")
        self._changed()

    # --- message sessions and the queue ------------------------------------------------

    def _session_view(self, sess: Session, base_url: str) -> dict[str, Any]:
        return {"sessionId": sess.id, "ownerName": sess.owner,
                "runnerScaleSet": self._set_view(self._sets[sess.scale_set_id], base_url),
                "messageQueueUrl": f"{base_url.rstrip('/')}/_message-queue/{sess.id}",
                "messageQueueAccessToken": sess.token, "statistics": self._statistics(sess.scale_set_id)}

    def create_session(self, set_id: int, owner: str, base_url: str) -> dict[str, Any]:
        """One live session per set; a new one supersedes the last (a recreated listener
        must not wait for its predecessor's session to expire)."""
        with self._cond:
            self._get_set(set_id)
            sess = Session(id=str(uuid.uuid4()), scale_set_id=set_id, owner=owner or "listener",
                           token=secrets.token_urlsafe(24))
            self._sessions[set_id] = sess
            self._changed()
            return self._session_view(sess, base_url)

    def _session(self, set_id: int, session_id: str) -> Session:
        sess = self._sessions.get(set_id)
        if sess is None or sess.id != session_id:
            raise ServiceError(404, "TaskAgentSessionNotFoundException", f"no live session {session_id} on scale set {set_id}")
        return sess

    def refresh_session(self, set_id: int, session_id: str, base_url: str) -> dict[str, Any]:
        with self._cond:
            sess = self._session(set_id, session_id)
            sess.token = secrets.token_urlsafe(24)
            return self._session_view(sess, base_url)

    def delete_session(self, set_id: int, session_id: str) -> None:
        with self._cond:
            sess = self._sessions.get(set_id)
            if sess is not None and sess.id == session_id:
                del self._sessions[set_id]
                self._changed()

    def expire_queue_tokens(self) -> int:
        """Every live session's queue token stops working (the service's hourly expiry):
        the listener gets 401 and refreshes its session."""
        with self._cond:
            for sess in self._sessions.values():
                sess.token = secrets.token_urlsafe(24)
            return len(self._sessions)

    def _queue_session(self, session_id: str, token: str) -> Session:
        for sess in self._sessions.values():
            if sess.id == session_id:
                if not secrets.compare_digest(sess.token, token):
                    raise ServiceError(401, "UnauthorizedException", "message queue token expired or invalid")
                return sess
        raise ServiceError(401, "UnauthorizedException", f"no live session {session_id}")

    def get_message(self, session_id: str, token: str, last_message_id: int, capacity: int | None) -> dict[str, Any] | None:
        """The next message after ``last_message_id`` not yet acked, or None (202) after the long poll."""
        deadline = time.monotonic() + self.long_poll
        with self._cond:
            sess = self._queue_session(session_id, token)
            s = self._sets[sess.scale_set_id]
            if capacity is not None and capacity != s.capacity:
                s.capacity = capacity
                self._assign()
            while True:
                sess = self._queue_session(session_id, token)  # superseded or refreshed while waiting: 401
                q = self._queues[sess.scale_set_id]
                msg = next((m for m in q.messages if m.id > last_message_id and not m.deleted), None)
                if msg is None and q.pending:
                    msg = Message(id=next(self._ids["message"]), body=q.pending,
                                  statistics=self._statistics(sess.scale_set_id))
                    q.pending = []
                    q.messages.append(msg)
                if msg is not None:
                    return {"messageId": msg.id, "messageType": "RunnerScaleSetJobMessages",
                            "body": json.dumps(msg.body), "statistics": msg.statistics}
                left = deadline - time.monotonic()
                if left <= 0 or self._closing:
                    return None
                self._cond.wait(left)

    def delete_message(self, session_id: str, token: str, message_id: int) -> None:
        with self._cond:
            sess = self._queue_session(session_id, token)
            q = self._queues[sess.scale_set_id]
            for m in q.messages:
                if m.id == message_id:
                    m.deleted = True
            # acked messages are never read again
            q.messages = [m for m in q.messages if not m.deleted]

    # --- runners ------------------------------------------------------------------------

    def generate_jit_config(self, set_id: int, name: str, base_url: str) -> dict[str, Any]:
        if not name:
            raise ServiceError(400, "ArgumentException", "generatejitconfig needs the runner's name")
        with self._cond:
            self._get_set(set_id)
            if any(r.name == name and not r.removed for r in self._runners.values()):
                raise ServiceError(409, "AgentExistsException", f"a runner named {name!r} exists")
            r = Runner(id=next(self._ids["runner"]), name=name, scale_set_id=set_id, nonce=secrets.token_hex(8),
                       created_at=time.time())
            self._runners[r.id] = r
            self._changed()
            jit = encode_jit(r.id, r.name, set_id, base_url.rstrip("/"), r.nonce)
            return {"runner": r.reference(), "encodedJITConfig": jit}

    def get_runner(self, runner_id: int) -> dict[str, Any]:
        with self._cond:
            r = self._runners.get(runner_id)
            if r is None or r.removed:
                raise ServiceError(404, "AgentNotFoundException", f"no runner {runner_id}")
            return r.reference()

    def runners_by_name(self, name: str) -> dict[str, Any]:
        with self._cond:
            value = [r.reference() for r in self._runners.values() if r.name == name and not r.removed]
        return {"count": len(value), "value": value}

    def remove_runner(self, runner_id: int) -> None:
        """204 every time, for a runner gone or never seen (ARC removes a runner twice and
        treats 404 as an error), except while the runner's job runs."""
        with self._cond:
            r = self._runners.get(runner_id)
            if r is None or r.removed:
                return
            if r.job_id is not None and not r.done:
                job = self._jobs[r.job_id]
                raise ServiceError(400, "JobStillRunningException",
                                   f"runner {r.name} ({r.id}) still runs job {job.id} ({job.state})")
            r.removed = True
            self._changed()

    # --- the runner's side (the double's own API; a stand-in calls it) ----------------------

    def _runner_of(self, jit: str) -> Runner:
        doc = decode_jit(jit)
        r = self._runners.get(doc["runnerId"]) if doc else None
        if r is None or doc is None or doc.get("nonce") != r.nonce:
            raise ServiceError(404, "AgentNotFoundException", "JIT config not issued by this service")
        return r

    def jit_runner(self, jit: str) -> dict[str, Any]:
        with self._cond:
            return self._runner_of(jit).reference()

    def acquire(self, jit: str, wait: float) -> dict[str, Any] | None:
        """The runner's job: one it holds, or the oldest assigned job of its set no runner took.
        None when none came within ``wait`` seconds."""
        deadline = time.monotonic() + max(0.0, wait)
        with self._cond:
            while True:
                r = self._runner_of(jit)
                if r.removed:
                    raise ServiceError(410, "AgentNotFoundException", f"runner {r.name} was removed from the service")
                if r.job_id is not None:
                    if r.done:
                        raise ServiceError(410, "AgentNotFoundException", f"runner {r.name} already ran its job")
                    return self._job_view(self._jobs[r.job_id])
                job = next((j for j in self._jobs.values() if j.scale_set_id == r.scale_set_id
                            and j.state == "assigned" and j.runner_id is None), None)
                if job is not None:
                    job.runner_id, job.runner, r.job_id = r.id, r.name, job.id
                    self._changed()
                    return self._job_view(job)
                left = deadline - time.monotonic()
                if left <= 0 or self._closing:
                    return None
                self._cond.wait(left)

    def _runner_job(self, jit: str) -> tuple[Runner, Job]:
        r = self._runner_of(jit)
        if r.job_id is None:
            raise ServiceError(409, "JobNotFoundException", f"runner {r.name} holds no job: acquire one first")
        return r, self._jobs[r.job_id]

    def started(self, jit: str, node: str | None) -> dict[str, Any]:
        with self._cond:
            _r, job = self._runner_job(jit)
            if job.state == "assigned":
                self._start(job, node)
            return self._job_view(job)

    def _start(self, job: Job, node: str | None) -> None:
        job.state, job.node, job.started_at = "started", node or None, time.time()
        self._event(job, "JobStarted")
        self._changed()

    def completed(self, jit: str, result: str, wait: float) -> dict[str, Any]:
        """Ends the runner's job, or, while it is held, records the result and waits
        (up to ``wait`` s) for its release; the answer's ``state`` says which."""
        deadline = time.monotonic() + max(0.0, wait)
        with self._cond:
            _r, job = self._runner_job(jit)
            if job.state == "assigned":
                self._start(job, None)
            if job.state == "started":
                if job.hold:
                    job.reported_result = result or "succeeded"
                else:
                    self._complete(job, result or "succeeded")
            while job.state != "completed" and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._job_view(job)

    def _complete(self, job: Job, result: str) -> None:
        job.state, job.result, job.completed_at = "completed", result, time.time()
        if job.runner_id is not None:
            self._runners[job.runner_id].done = True
        self._event(job, "JobCompleted")
        self._assign()

    # --- control surface ----------------------------------------------------------------------

    def _job_view(self, job: Job) -> dict[str, Any]:
        s = self._sets.get(job.scale_set_id) if job.scale_set_id is not None else None
        return job.view(s.name if s else None)

    def queue(self, label: str, count: int = 1, hold: bool = False, script: str = "") -> list[dict[str, Any]]:
        if not label:
            raise ServiceError(400, "ArgumentException", "a job needs a label")
        if not 1 <= count <= MAX_QUEUE:
            raise ServiceError(400, "ArgumentException", f"count must be 1..{MAX_QUEUE}")
        with self._cond:
            now = time.time()
            jobs = [Job(id=next(self._ids["job"]), label=label, queued_at=now, hold=hold, script=script)
                    for _ in range(count)]
            for job in jobs:
                self._jobs[job.id] = job
            self._assign()
            return [self._job_view(j) for j in jobs]

    def jobs(self) -> list[dict[str, Any]]:
        with self._cond:
            return [self._job_view(j) for j in self._jobs.values()]

    def job(self, job_id: int) -> dict[str, Any]:
        with self._cond:
            if job_id not in self._jobs:
                raise ServiceError(404, "JobNotFoundException", f"no job {job_id}")
            return self._job_view(self._jobs[job_id])

    def release(self, ids: list[int] | None = None, every: bool = False) -> list[dict[str, Any]]:
        """Lift the hold.  A started job ends now, with its runner's result if it reported
        one, else ``canceled`` (its runner is gone or still working); one not yet started
        runs as any other."""
        with self._cond:
            if every:
                targets = [j for j in self._jobs.values() if j.hold and j.state != "completed"]
            else:
                missing = [i for i in ids or [] if i not in self._jobs]
                if missing:
                    raise ServiceError(404, "JobNotFoundException", f"no job {', '.join(map(str, missing))}")
                targets = [self._jobs[i] for i in ids or []]
            for job in targets:
                job.hold = False
                if job.state == "started":
                    self._complete(job, job.reported_result or "canceled")
            self._changed()
            return [self._job_view(j) for j in targets]

    def scale_sets(self, base_url: str) -> list[dict[str, Any]]:
        """Every set with its session and runners (for people and tests reading the double)."""
        with self._cond:
            out = []
            for s in self._sets.values():
                view = self._set_view(s, base_url)
                sess = self._sessions.get(s.id)
                view["session"] = {"sessionId": sess.id, "ownerName": sess.owner} if sess else None
                view["capacity"] = s.capacity
                view["runners"] = [r.reference() | {"removed": r.removed, "job": r.job_id}
                                   for r in self._runners.values() if r.scale_set_id == s.id]
                out.append(view)
            return out
