"""Settle-aware proof that every scale set's listener reflects its caps.

After a managed apply ARC recreates AutoscalingListeners (and their config
secrets); a prove that reads mid-recreation state sees "drift" that is only
churn.  So drift is classified:

* transient while the set's AutoscalingListener or its config secret is
  missing, or younger than the grace window;
* a *stable* drift once the listener and secret are both settled (older than
  the grace window) and the same drift signature was seen on two consecutive
  observations: that fails fast;
* anything still unresolved at the overall deadline fails then;
* a missing listener while the set has active runners: under the controller's
  ``eventual`` update strategy ARC holds listener recreation until runners
  drain, so queued work has no listener (2026-05-15); under ``immediate`` (the
  chart's default) it is the moment between a listener's deletion and its
  successor, and a warm pool's idle runner is active all the while.  So it
  fails the proof once it has lasted the grace window, seen on consecutive
  observations throughout (at least two), not on two quick looks.

:func:`classify` and :class:`Prover` are pure over snapshots and an injected
clock; :func:`prove` is the polling loop over a live cluster.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from flywheel_runtime.kube import ARC_SCALE_SET_LABEL

if TYPE_CHECKING:
    from flywheel_runtime.kube import Client

OK, TRANSIENT, DRIFT = "ok", "transient", "drift"
DEFAULT_GRACE_S = 60.0
DEFAULT_DEADLINE_S = 300.0
LISTENER_NAMESPACE = "arc-systems"


@dataclass(frozen=True)
class SetSnapshot:
    """One AutoscalingRunnerSet and what its listener looked like at one instant."""

    namespace: str
    name: str
    min_runners: int
    max_runners: int | None
    listener: str | None = None  # "namespace/name" of its AutoscalingListener
    listener_min: int | None = None
    listener_max: int | None = None
    listener_created: dt.datetime | None = None
    listener_version: str | None = None
    secret_created: dt.datetime | None = None  # the listener's config secret; None = missing
    active_runners: int = 0  # the set's status.currentRunners


@dataclass(frozen=True)
class Verdict:
    namespace: str
    name: str
    state: str  # OK, TRANSIENT or DRIFT (settled drift, not yet known stable)
    reason: str
    signature: tuple[Any, ...] | None = None


def _age(created: dt.datetime | None, now: dt.datetime) -> float | None:
    return None if created is None else (now - created).total_seconds()


def classify(s: SetSnapshot, now: dt.datetime, grace_s: float) -> Verdict:
    caps = f"min {s.min_runners}/max {s.max_runners}"
    if s.listener is None:
        if s.active_runners > 0:
            return Verdict(s.namespace, s.name, DRIFT,
                           f"AutoscalingListener missing while {s.active_runners} runner(s) are active",
                           ("missing-listener", s.active_runners))
        return Verdict(s.namespace, s.name, TRANSIENT, "AutoscalingListener missing")
    matches = s.listener_min == s.min_runners and s.listener_max == s.max_runners
    if matches:
        return Verdict(s.namespace, s.name, OK, f"listener {s.listener} reflects {caps}")
    drift = f"listener {s.listener} has min {s.listener_min}/max {s.listener_max}, set wants {caps}"
    if s.secret_created is None:
        return Verdict(s.namespace, s.name, TRANSIENT, f"{drift}; its config secret is missing")
    young = [what for what, created in (("listener", s.listener_created), ("config secret", s.secret_created))
             if (age := _age(created, now)) is None or age < grace_s]
    if young:
        return Verdict(s.namespace, s.name, TRANSIENT, f"{drift}; {' and '.join(young)} younger than {grace_s:g}s")
    sig = (s.listener, s.listener_version, s.listener_min, s.listener_max, s.min_runners, s.max_runners)
    return Verdict(s.namespace, s.name, DRIFT, drift, sig)


@dataclass
class Outcome:
    done: bool
    ok: bool
    timed_out: bool
    verdicts: list[Verdict]
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "done": self.done, "timed_out": self.timed_out, "failures": self.failures,
                "sets": [{k: v for k, v in asdict(x).items() if k != "signature"} for x in self.verdicts]}


class Prover:
    """Pure state machine: feed it snapshots with their instant, read the outcome."""

    def __init__(self, started: dt.datetime, grace_s: float = DEFAULT_GRACE_S,
                 deadline_s: float = DEFAULT_DEADLINE_S) -> None:
        self.started, self.grace_s, self.deadline_s = started, grace_s, deadline_s
        self._last_sig: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._missing_since: dict[tuple[str, str], dt.datetime] = {}  # listener missing, runners active

    def observe(self, snapshots: list[SetSnapshot], now: dt.datetime) -> Outcome:
        verdicts = [classify(s, now, self.grace_s) for s in snapshots]
        stable = []
        seen: dict[tuple[str, str], tuple[Any, ...]] = {}
        missing: dict[tuple[str, str], dt.datetime] = {}
        for v in verdicts:
            if v.state == DRIFT and v.signature is not None:
                key = (v.namespace, v.name)
                if v.signature[0] == "missing-listener":
                    # however many runners: the listener has been absent since then
                    since = missing[key] = self._missing_since.get(key, now)
                    if key in self._missing_since and (now - since).total_seconds() >= self.grace_s:
                        stable.append(f"{v.namespace}/{v.name}: stable drift: {v.reason} "
                                      f"for {(now - since).total_seconds():g}s")
                    continue
                seen[key] = v.signature
                if self._last_sig.get(key) == v.signature:
                    stable.append(f"{v.namespace}/{v.name}: stable drift: {v.reason}")
        self._last_sig, self._missing_since = seen, missing
        if stable:
            return Outcome(True, False, False, verdicts, stable)
        if all(v.state == OK for v in verdicts):
            return Outcome(True, True, False, verdicts)
        if (now - self.started).total_seconds() >= self.deadline_s:
            unresolved = [f"{v.namespace}/{v.name}: unresolved at the {self.deadline_s:g}s deadline: {v.reason}"
                          for v in verdicts if v.state != OK]
            return Outcome(True, False, True, verdicts, unresolved)
        return Outcome(False, False, False, verdicts)


def _ts(value: Any) -> dt.datetime | None:
    from flywheel_runtime._files import parse_time

    return parse_time(value)


def config_secret_name(listener_name: str) -> str:
    """The secret holding the listener's config, named after the listener."""
    return f"{listener_name}-config"


def runners_per_set(runners: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """EphemeralRunners not being deleted, per (namespace, scale set) by ARC's label."""
    out: dict[tuple[str, str], int] = {}
    for r in runners:
        meta = r.get("metadata") or {}
        name = (meta.get("labels") or {}).get(ARC_SCALE_SET_LABEL)
        if name and not meta.get("deletionTimestamp"):
            key = (meta.get("namespace", ""), name)
            out[key] = out.get(key, 0) + 1
    return out


def snapshots_from(scale_sets: list[dict[str, Any]], listeners: list[dict[str, Any]],
                   secrets: dict[tuple[str, str], dict[str, Any]],
                   runners: dict[tuple[str, str], int] | None = None) -> list[SetSnapshot]:
    """Join live objects (Kubernetes JSON) into per-set snapshots.  Active runners: the set's
    ``status.currentRunners`` or its live EphemeralRunners (``runners``), whichever is more:
    the controller stops updating the status while it holds a listener back (the eventual
    update strategy waiting for runners to drain), exactly when it matters."""
    by_set: dict[tuple[str, str], dict[str, Any]] = {}
    for lst in listeners:
        spec = lst.get("spec") or {}
        if (lst.get("metadata") or {}).get("deletionTimestamp"):
            continue  # an old listener on its way out is not the set's listener
        key = (spec.get("autoscalingRunnerSetNamespace", ""), spec.get("autoscalingRunnerSetName", ""))
        by_set[key] = lst
    out = []
    for ars in scale_sets:
        meta, spec = ars.get("metadata") or {}, ars.get("spec") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        listener = by_set.get((ns, name))
        active = max(int((ars.get("status") or {}).get("currentRunners") or 0), (runners or {}).get((ns, name), 0))
        snap = SetSnapshot(ns, name, int(spec.get("minRunners") or 0), spec.get("maxRunners"), active_runners=active)
        if listener is not None:
            lm, ls = listener.get("metadata") or {}, listener.get("spec") or {}
            secret = secrets.get((lm.get("namespace", ""), config_secret_name(lm.get("name", ""))))
            snap = SetSnapshot(ns, name, snap.min_runners, snap.max_runners,
                               f"{lm.get('namespace')}/{lm.get('name')}",
                               int(ls.get("minRunners") or 0), ls.get("maxRunners"),
                               _ts(lm.get("creationTimestamp")), lm.get("resourceVersion"),
                               _ts(((secret or {}).get("metadata") or {}).get("creationTimestamp")) if secret else None,
                               active)
        out.append(snap)
    return out


def live_snapshots(cluster: Client, namespace: str | None, listener_namespace: str | None) -> list[SetSnapshot]:
    from flywheel_runtime.kube import REQUEST_TIMEOUT_S, api_errors

    scale_sets = cluster.list_arc("autoscalingrunnersets", namespace)
    listeners = cluster.list_arc("autoscalinglisteners", listener_namespace)
    secrets: dict[tuple[str, str], dict[str, Any]] = {}
    for ns in sorted({(x.get("metadata") or {}).get("namespace", "") for x in listeners}):
        with api_errors(cluster, f"listing secrets in {ns}"):
            items = cluster.core.list_namespaced_secret(ns, _request_timeout=REQUEST_TIMEOUT_S).items
        for s in items:
            # Only metadata is kept: the config secret's data is credentials.
            secrets[(ns, s.metadata.name)] = {"metadata": {"name": s.metadata.name, "namespace": ns,
                                                           "creationTimestamp": s.metadata.creation_timestamp}}
    return snapshots_from(scale_sets, listeners, secrets,
                          runners_per_set(cluster.list_arc("ephemeralrunners", namespace)))


def prove(fetch: Callable[[], list[SetSnapshot]], *, grace_s: float = DEFAULT_GRACE_S,
          deadline_s: float = DEFAULT_DEADLINE_S, interval_s: float = 2.0,
          now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
          sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """Poll until proven, a stable drift, or the deadline."""
    prover = Prover(now(), grace_s, deadline_s)
    while True:
        outcome = prover.observe(fetch(), now())
        if outcome.done:
            return outcome
        sleep(interval_s)
