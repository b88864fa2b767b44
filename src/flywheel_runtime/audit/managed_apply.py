"""The managed ARC apply procedure (runner-topology.txt: the May 15 and June 9
lessons), as one command with a dry-run plan view.

Steps, in order:

1. **scope**: diff the live AutoscalingRunnerSets against the topology's
   rendering; the labels of the changed sets are quiesced.  The procedure
   refuses to run from a lane it quiesces (``--runs-on``, default
   ``$FLYWHEEL_RUNNER_CLASS``, which every runner pod carries).
2. **reap** provably leaked idle EphemeralRunners, then wait, bounded, for the
   scoped runner sets and listeners to settle.
3. **snapshot** the caps of the shared scale sets it will freeze (every set
   publishing a quiesced label in ``arc.managed_apply.freeze_labels``).
4. **freeze** them at maxRunners=0 (minRunners=0): freezing only minRunners
   lets queued work refill the lane through the existing listener.
5. **drain**: wait, bounded (20 minutes by default), until no runner of a
   frozen set carries a job.
6. **guard** a fresh post-quiesce plan: refused if the topology file or the
   live sets changed under it (the frozen caps read back as snapshotted).
7. **apply** through the owner of the AutoscalingRunnerSets, Helm: per
   changed set, ``helm upgrade --install`` of its release with the rendered
   chart values (frozen ones still frozen: caps 0), or the operator's own
   command (``--apply-command``); never server-side apply with
   force-conflicts, which would take the chart's fields from Helm.
8. **restore** caps from the topology, the source of truth; the snapshot is
   only the failure rollback.  Freeze and restore are merge patches under a
   field manager of their own (:data:`FIELD_MANAGER`).
9. **prove** the listeners (settle-aware; a missing listener with active
   runners fails).

Any failure from the freeze until the restore -- a drain timeout, a changed
plan, a failed apply, SIGINT/SIGTERM -- restores the snapshot, best effort.
The decisions (:func:`plan`, :func:`fresh_live`) are pure over Kubernetes JSON;
:class:`Procedure` runs them against a cluster with an injected clock.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel_runtime.errors import DeadlineError, ExitCode, FlywheelError
from flywheel_runtime.topology.model import Topology

if TYPE_CHECKING:
    from flywheel_runtime.kube import Client

# The spec fields the chart owns; caps are compared separately (a warm pool moves minRunners).
SPEC_FIELDS = ("githubConfigUrl", "githubConfigSecret", "runnerScaleSetName", "runnerScaleSetLabels", "template",
               "listenerTemplate")
CAP_FIELDS = ("maxRunners", "minRunners")
Key = tuple[str, str]  # (namespace, name)
#: Who wrote the freeze and restore patches (never Helm's, never the apply's).
FIELD_MANAGER = "flywheel-managed-apply"
#: ``(scale set, rendered chart values) -> values``: what a harness changes in what it installs.
ValuesHook = Callable[[str, dict[str, Any]], dict[str, Any]]
#: How one changed set is applied: ``(cluster, topo, change, values, options) -> how``.
Applier = Callable[[Any, Topology, "Change", dict[str, Any], "Options"], str]
APPLY_ENV = ("FLYWHEEL_APPLY_SCALE_SET", "FLYWHEEL_APPLY_NAMESPACE", "FLYWHEEL_APPLY_ACTION", "FLYWHEEL_APPLY_VALUES",
             "FLYWHEEL_APPLY_MANIFEST")


class PlanChangedError(FlywheelError):
    exit_code = ExitCode.PLAN_CHANGED


class ScopeConflictError(FlywheelError):
    exit_code = ExitCode.SCOPE_CONFLICT


class ApplyInterrupted(FlywheelError):
    exit_code = ExitCode.INTERRUPTED


@dataclass(frozen=True)
class Change:
    namespace: str
    name: str
    label: str
    action: str  # "create" or "update"
    fields: tuple[str, ...]


@dataclass
class Plan:
    changes: list[Change]
    quiesced_labels: list[str]
    frozen: list[Key]  # shared sets to max-freeze (live ones only)
    topology_digest: str

    def signature(self) -> tuple[Any, ...]:
        return (self.topology_digest, tuple((c.namespace, c.name, c.action, c.fields) for c in self.changes))

    def to_dict(self) -> dict[str, Any]:
        return {"changes": [asdict(c) for c in self.changes], "quiesced_labels": self.quiesced_labels,
                "frozen": [f"{ns}/{n}" for ns, n in self.frozen], "topology_digest": self.topology_digest}


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _key(obj: dict[str, Any]) -> Key:
    return (_meta(obj).get("namespace", ""), _meta(obj).get("name", ""))


def topology_digest(topo: Topology) -> str:
    return hashlib.sha256(json.dumps(topo.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


def chart_values(topo: Topology, name: str, values_hook: ValuesHook | None = None) -> dict[str, Any]:
    """The scale set's chart values as rendered (then as ``values_hook`` changes them)."""
    from flywheel_runtime.topology import render

    values = render.helm_values(topo, name)
    return values_hook(name, values) if values_hook else values


def desired(topo: Topology, values_hook: ValuesHook | None = None) -> dict[Key, dict[str, Any]]:
    """The AutoscalingRunnerSets the chart makes of each set's values."""
    from flywheel_runtime.topology import render

    return {(s.namespace, s.name): render.autoscaling_runner_set(topo, s.name, chart_values(topo, s.name, values_hook))
            for s in topo.scale_sets}


def plan(topo: Topology, live: list[dict[str, Any]], values_hook: ValuesHook | None = None) -> Plan:
    """Pure: what an apply of ``topo`` changes on ``live`` (AutoscalingRunnerSets)."""
    by_key = {_key(a): a for a in live}
    changes = []
    wanted = desired(topo, values_hook)
    for ss in topo.scale_sets:
        want = wanted[(ss.namespace, ss.name)]["spec"]
        have = by_key.get((ss.namespace, ss.name))
        if have is None:
            changes.append(Change(ss.namespace, ss.name, ss.label, "create", ()))
            continue
        spec = have.get("spec") or {}
        fields = [f for f in SPEC_FIELDS if spec.get(f) != want.get(f)]
        if spec.get("maxRunners") != want["maxRunners"]:
            fields.append("maxRunners")
        # A warm pool's CronJob owns minRunners between applies.
        if ss.warm_pool is None and int(spec.get("minRunners") or 0) != want["minRunners"]:
            fields.append("minRunners")
        if fields:
            changes.append(Change(ss.namespace, ss.name, ss.label, "update", tuple(fields)))
    quiesced = sorted({c.label for c in changes})
    freeze = set(topo.arc.managed_apply.freeze_labels) if topo.arc and topo.arc.managed_apply else set()
    frozen = [(s.namespace, s.name) for s in topo.scale_sets
              if s.label in quiesced and s.label in freeze and (s.namespace, s.name) in by_key]
    return Plan(changes, quiesced, frozen, topology_digest(topo))


def fresh_live(live: list[dict[str, Any]], snapshot: dict[Key, dict[str, int]]) -> list[dict[str, Any]]:
    """Pure: the live sets as they would read without our freeze (frozen caps
    replaced by the snapshot), so the post-quiesce plan compares like with like."""
    out = []
    for a in live:
        a = copy.deepcopy(a)
        caps = snapshot.get(_key(a))
        if caps is not None and (a.get("spec") or {}).get("maxRunners") == 0:
            a["spec"].update(caps)
        out.append(a)
    return out


def _runners_of(runners: list[dict[str, Any]], runner_sets: list[dict[str, Any]], key: Key) -> list[dict[str, Any]]:
    """EphemeralRunners owned by an EphemeralRunnerSet of the AutoscalingRunnerSet ``key``."""
    from flywheel_runtime.kube import ARC_SCALE_SET_LABEL
    from flywheel_runtime.audit.reaper import _owner

    ns, name = key
    sets = {_meta(e).get("name") for e in runner_sets if _meta(e).get("namespace") == ns and (
        _owner(e, "AutoscalingRunnerSet") == name
        or (_meta(e).get("labels") or {}).get(ARC_SCALE_SET_LABEL) == name)}
    return [r for r in runners if _meta(r).get("namespace") == ns and _owner(r, "EphemeralRunnerSet") in sets]


def busy_runners(runners: list[dict[str, Any]], runner_sets: list[dict[str, Any]], frozen: list[Key]) -> list[str]:
    """Pure: "ns/name" of the frozen sets' runners that still carry a job."""
    from flywheel_runtime.audit.reaper import has_job

    return sorted(f"{_key(r)[0]}/{_key(r)[1]}" for k in frozen for r in _runners_of(runners, runner_sets, k)
                  if has_job(r))


def restore_targets(topo: Topology, keys: list[Key], now: Any) -> dict[Key, dict[str, int]]:
    """Caps from the topology: maxRunners, and minRunners (the warm pool's, where there is one)."""
    from flywheel_runtime.audit.warmpool import scale_set_min_runners

    by_key = {(s.namespace, s.name): s for s in topo.scale_sets}
    return {k: {"maxRunners": by_key[k].max_runners,
                "minRunners": scale_set_min_runners(by_key[k], now) if by_key[k].warm_pool else by_key[k].min_runners}
            for k in keys}


@dataclass
class Options:
    runs_on: str | None = None
    drain_timeout_s: float = 1200.0
    settle_timeout_s: float = 120.0
    interval_s: float = 2.0
    snapshot_path: Path | None = None
    listener_namespace: str | None = None
    prove_grace_s: float = 60.0
    prove_deadline_s: float = 300.0
    topology_path: str | None = None  # re-read for the guard; None: the model's own source
    # The apply: the operator's command (sh -c, once per changed set, with APPLY_ENV),
    # else `helm upgrade --install` of the set's release from `chart`.
    apply_command: str | None = None
    chart: Path | None = None  # the gha-runner-scale-set chart directory
    helm: str | None = None  # default: $FLYWHEEL_HELM, else the toolchain's
    values_hook: ValuesHook | None = None  # library only: what a harness changes in the values


@dataclass
class Report:
    mode: str
    plan: Plan | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    snapshot: dict[str, dict[str, int]] = field(default_factory=dict)
    result: str = "pending"
    exit_code: int = 0
    error: str | None = None

    def step(self, name: str, **data: Any) -> None:
        self.steps.append({"step": name, **data})

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "flywheel.tinyland.dev/managed-apply/v1", "mode": self.mode,
                "plan": self.plan.to_dict() if self.plan else None, "steps": self.steps, "snapshot": self.snapshot,
                "result": self.result, "exit_code": self.exit_code, "error": self.error}


class _Signalled(BaseException):
    """Raised in the main flow by SIGINT/SIGTERM (a BaseException: no handler swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _signals_raise() -> Iterator[None]:
    def handler(signum: int, _frame: Any) -> None:
        raise _Signalled(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Procedure:
    """One managed apply against ``cluster`` (a :class:`flywheel_runtime.kube.Client`)."""

    def __init__(self, cluster: Client, topo: Topology, opts: Options, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], Any] | None = None, applier: Applier | None = None) -> None:
        import datetime as dt

        self.cluster, self.topo, self.opts = cluster, topo, opts
        self.applier: Applier = applier or apply_release
        self.clock, self.sleep = clock, sleep
        self.now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        self.namespaces = sorted({s.namespace for s in topo.scale_sets})

    # -- reads -------------------------------------------------------------

    def _list(self, plural: str) -> list[dict[str, Any]]:
        return [o for ns in self.namespaces for o in self.cluster.list_arc(plural, ns)]

    def live_sets(self) -> list[dict[str, Any]]:
        return self._list("autoscalingrunnersets")

    def scope(self, report: Report) -> Plan:
        p = plan(self.topo, self.live_sets(), self.opts.values_hook)
        report.plan = p
        busy = busy_runners(self._list("ephemeralrunners"), self._list("ephemeralrunnersets"), p.frozen)
        report.step("scope", changes=len(p.changes), quiesced_labels=p.quiesced_labels,
                    frozen=[f"{ns}/{n}" for ns, n in p.frozen], busy_runners=busy, runs_on=self.opts.runs_on)
        if self.opts.runs_on and self.opts.runs_on in p.quiesced_labels:
            raise ScopeConflictError(f"managed apply runs on {self.opts.runs_on}, a lane it would quiesce; run it "
                                     f"from {' or '.join(self._lanes_for_procedure())}")
        return p

    def _lanes_for_procedure(self) -> list[str]:
        ma = self.topo.arc.managed_apply if self.topo.arc else None
        return list(ma.runs_on) if ma and ma.runs_on else ["a lane it does not quiesce"]

    # -- the dry-run plan view ---------------------------------------------

    def plan_view(self) -> Report:
        report = Report("plan")
        self.last_report = report
        p = self.scope(report)
        live = {_key(a): a for a in self.live_sets()}
        report.snapshot = {f"{ns}/{n}": {f: (live[(ns, n)].get("spec") or {}).get(f) or 0 for f in CAP_FIELDS}
                           for ns, n in p.frozen}
        report.step("reap", would="delete provably leaked idle EphemeralRunners, then wait "
                                  f"<= {self.opts.settle_timeout_s:g}s for sets and listeners to settle")
        report.step("freeze", would={f"{ns}/{n}": {"maxRunners": 0, "minRunners": 0} for ns, n in p.frozen})
        report.step("drain", would=f"wait <= {self.opts.drain_timeout_s:g}s for the frozen sets' busy runners")
        report.step("apply", would=[f"{c.action} {c.namespace}/{c.name}" + (f" ({', '.join(c.fields)})"
                                                                              if c.fields else "")
                                    for c in p.changes])
        report.step("restore", would={f"{ns}/{n}": caps for (ns, n), caps in
                                      restore_targets(self.topo, p.frozen, self.now()).items()})
        report.result = "planned" if p.changes else "nothing to apply"
        return report

    # -- the run -------------------------------------------------------------

    def run(self) -> Report:
        report = Report("run")
        self.last_report = report  # the CLI prints it even when the run raises
        try:
            with _signals_raise():
                self._run(report)
        except _Signalled as sig:
            name = signal.Signals(sig.signum).name
            err = ApplyInterrupted(f"managed apply interrupted by {name}; "
                                   + ("caps restored from the snapshot" if report.result == "rolled back"
                                      else "caps were already restored from the topology"
                                      if report.result in ("restored", "proving") else "no cap was changed"))
            self._fail(report, err)
            raise err from None
        except FlywheelError as exc:
            self._fail(report, exc)
            raise
        return report

    def _fail(self, report: Report, exc: FlywheelError) -> None:
        """Record the error; ``result`` keeps saying where it stopped ("rolled back",
        "proving", ...) except before any cap was touched, where it is "failed"."""
        report.exit_code, report.error = int(exc.exit_code), str(exc)
        if report.result == "pending":
            report.result = "failed"

    def _run(self, report: Report) -> None:
        p = self.scope(report)
        if not p.changes:
            report.result = "nothing to apply"
            return
        if self.applier is apply_release:
            check_apply(self.opts)
        self._reap_and_settle(report, p)
        live = {_key(a): a for a in self.live_sets()}
        snapshot = {k: {f: int((live[k].get("spec") or {}).get(f) or 0) for f in CAP_FIELDS} for k in p.frozen}
        report.snapshot = {f"{ns}/{n}": caps for (ns, n), caps in snapshot.items()}
        if self.opts.snapshot_path:
            from flywheel_runtime._files import write_atomic

            write_atomic(self.opts.snapshot_path, json.dumps(report.snapshot, indent=2) + "\n")
        report.step("snapshot", caps=report.snapshot, file=str(self.opts.snapshot_path or ""))
        try:
            self._freeze(report, p.frozen)
            self._drain(report, p)
            self._guard(report, p, snapshot)
            self._apply(report, p)
        except BaseException:
            report.result = "rolling back"
            self._restore(report, snapshot, "rollback", best_effort=True)
            report.result = "rolled back"
            raise
        try:
            self._restore(report, restore_targets(self.topo, p.frozen, self.now()), "restore", best_effort=False)
        except BaseException:  # the lanes must not stay frozen: the snapshot is the rollback
            self._restore(report, snapshot, "rollback", best_effort=True)
            report.result = "rolled back"
            raise
        report.result = "restored"
        self._prove(report, p)
        report.result = "applied"

    def _reap_and_settle(self, report: Report, p: Plan) -> None:
        from flywheel_runtime.audit import reaper

        deleted: list[str] = []
        for ns in sorted({c.namespace for c in p.changes}):
            r = reaper.reap(self.cluster, ns, apply=True, settle_timeout_s=self.opts.settle_timeout_s,
                            clock=self.clock, sleep=self.sleep)
            deleted += r.deleted
        deadline = self.clock() + self.opts.settle_timeout_s
        scoped = {(c.namespace, c.name) for c in p.changes if c.action == "update"}
        while True:
            pending = self._unsettled(scoped)
            if not pending or self.clock() >= deadline:
                break
            self.sleep(self.opts.interval_s)
        report.step("reap", deleted=deleted, settled=not pending, unsettled=pending)

    def _unsettled(self, scoped: set[Key]) -> list[str]:
        """Scoped sets whose runner set is not at its desired count or whose listener is missing."""
        runners, sets = self._list("ephemeralrunners"), self._list("ephemeralrunnersets")
        listeners = self.cluster.list_arc("autoscalinglisteners", self.opts.listener_namespace)
        with_listener = {((lst.get("spec") or {}).get("autoscalingRunnerSetNamespace"),
                          (lst.get("spec") or {}).get("autoscalingRunnerSetName"))
                         for lst in listeners if not _meta(lst).get("deletionTimestamp")}
        out = []
        from flywheel_runtime.audit.reaper import _owner

        for key in sorted(scoped):
            mine = [e for e in sets if _meta(e).get("namespace") == key[0] and _owner(e, "AutoscalingRunnerSet")
                    == key[1]]
            desired_n = sum(int((e.get("spec") or {}).get("replicas") or 0) for e in mine)
            have = len(_runners_of(runners, sets, key))
            if have != desired_n:
                out.append(f"{key[0]}/{key[1]}: {have} runner(s), {desired_n} desired")
            elif key not in with_listener:
                out.append(f"{key[0]}/{key[1]}: no AutoscalingListener")
        return out

    def _freeze(self, report: Report, frozen: list[Key]) -> None:
        for ns, name in frozen:
            self.cluster.patch_arc("autoscalingrunnersets", ns, name, {"spec": {"maxRunners": 0, "minRunners": 0}},
                                   field_manager=FIELD_MANAGER)
        report.step("freeze", frozen=[f"{ns}/{n}" for ns, n in frozen])

    def _drain(self, report: Report, p: Plan) -> None:
        t0 = self.clock()
        deadline = t0 + self.opts.drain_timeout_s
        while True:
            busy = busy_runners(self._list("ephemeralrunners"), self._list("ephemeralrunnersets"), p.frozen)
            if not busy:
                report.step("drain", waited_s=round(self.clock() - t0, 1))
                return
            if self.clock() >= deadline:
                report.step("drain", waited_s=round(self.clock() - t0, 1), busy_runners=busy)
                raise DeadlineError(f"{len(busy)} shared runner(s) still busy after the "
                                    f"{self.opts.drain_timeout_s:g}s drain window (e.g. {busy[0]}); caps restored "
                                    "from the snapshot, nothing applied")
            self.sleep(self.opts.interval_s)

    def _guard(self, report: Report, p: Plan, snapshot: dict[Key, dict[str, int]]) -> None:
        from flywheel_runtime.topology import load

        topo = load(self.opts.topology_path or self.topo.source)
        fresh = plan(topo, fresh_live(self.live_sets(), snapshot), self.opts.values_hook)
        same = fresh.signature() == p.signature()
        report.step("guard", fresh=fresh.to_dict(), unchanged=same)
        if not same:
            what = ("the topology file changed" if fresh.topology_digest != p.topology_digest
                    else "the live scale sets changed")
            raise PlanChangedError(f"refused: {what} under the managed apply (fresh plan {len(fresh.changes)} "
                                   f"change(s), scoped {len(p.changes)}); caps restored from the snapshot")

    def _apply(self, report: Report, p: Plan) -> None:
        frozen = set(p.frozen)
        applied = []
        for c in p.changes:
            values = copy.deepcopy(chart_values(self.topo, c.name, self.opts.values_hook))
            if (c.namespace, c.name) in frozen:  # the upgrade must not unfreeze the lane
                values.update({"maxRunners": 0, "minRunners": 0})
            how = self.applier(self.cluster, self.topo, c, values, self.opts)
            applied.append(f"{c.action} {c.namespace}/{c.name} ({how})")
        report.step("apply", applied=applied)

    def _restore(self, report: Report, caps: dict[Key, dict[str, int]], step: str, *, best_effort: bool) -> None:
        if best_effort:  # a second signal must not cut the rollback short
            held = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._patch_caps(report, caps, step, best_effort=best_effort)
        finally:
            if best_effort:
                for s, h in held.items():
                    signal.signal(s, h)

    def _patch_caps(self, report: Report, caps: dict[Key, dict[str, int]], step: str, *, best_effort: bool) -> None:
        done, failed = [], []
        for (ns, name), values in caps.items():
            try:
                self.cluster.patch_arc("autoscalingrunnersets", ns, name, {"spec": dict(values)},
                                       field_manager=FIELD_MANAGER)
                done.append(f"{ns}/{name}")
            except Exception as exc:  # noqa: BLE001 - best effort: restore the others, report this one
                if not best_effort:
                    raise
                failed.append(f"{ns}/{name}: {exc}")
        report.step(step, restored={f"{ns}/{n}": v for (ns, n), v in caps.items()}, failed=failed)

    def _prove(self, report: Report, p: Plan) -> None:
        from flywheel_runtime.audit import listener

        report.result = "proving"
        scoped = {(c.namespace, c.name) for c in p.changes}

        def fetch() -> list[listener.SetSnapshot]:
            snaps = [s for ns in sorted({k[0] for k in scoped})
                     for s in listener.live_snapshots(self.cluster, ns, self.opts.listener_namespace)]
            return [s for s in snaps if (s.namespace, s.name) in scoped]

        outcome = listener.prove(fetch, grace_s=self.opts.prove_grace_s, deadline_s=self.opts.prove_deadline_s,
                                 interval_s=self.opts.interval_s, sleep=self.sleep)
        report.step("prove", **outcome.to_dict())
        if not outcome.ok:
            if outcome.timed_out:
                raise DeadlineError(f"listener proof unresolved: {outcome.failures[0]}")
            raise FlywheelError(f"listener proof failed: {outcome.failures[0]}")


def helm_binary(opts: Options) -> str:
    if opts.helm:
        return opts.helm
    if os.environ.get("FLYWHEEL_HELM"):
        return os.environ["FLYWHEEL_HELM"]
    from flywheel_runtime import toolchain

    return str(toolchain.binary("helm"))


def check_apply(opts: Options) -> None:
    """Before anything is frozen: the apply has an owner to go through."""
    if opts.apply_command:
        return
    if opts.chart is None or not (opts.chart / "Chart.yaml").is_file():
        raise FlywheelError("managed apply goes through Helm: pass --chart DIR (the gha-runner-scale-set chart; "
                            "default $FLYWHEEL_ARC_CHARTS/gha-runner-scale-set) or --apply-command CMD",
                            exit_code=ExitCode.USAGE)


def apply_release(cluster: Any, topo: Topology, c: Change, values: dict[str, Any], opts: Options) -> str:
    """Apply one set through its owner; returns how.  A failure raises (the caller rolls back)."""
    import subprocess
    import tempfile

    import yaml

    from flywheel_runtime.topology import render

    with tempfile.TemporaryDirectory(prefix="flywheel-apply-") as tmp:
        vfile, mfile = Path(tmp) / "values.yaml", Path(tmp) / "autoscalingrunnerset.yaml"
        vfile.write_text(yaml.safe_dump(values, sort_keys=False))
        mfile.write_text(yaml.safe_dump(render.autoscaling_runner_set(topo, c.name, values), sort_keys=False))
        if opts.apply_command:
            env = {**os.environ, **dict(zip(APPLY_ENV, (c.name, c.namespace, c.action, str(vfile), str(mfile))))}
            cmd = ["sh", "-c", opts.apply_command]
            how = "--apply-command"
        else:
            assert opts.chart is not None
            kubeconfig = getattr(cluster, "kubeconfig", None)
            cmd = [helm_binary(opts), *(["--kubeconfig", str(kubeconfig)] if kubeconfig else []), "upgrade",
                   "--install", c.name, str(opts.chart), "-n", c.namespace, "-f", str(vfile)]
            env, how = dict(os.environ), "helm upgrade"
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise FlywheelError(f"apply of {c.namespace}/{c.name} ({how}) failed (exit {proc.returncode}): "
                            f"{(proc.stderr or proc.stdout).strip()[-300:]}; caps restored from the snapshot")
    return how


def render_text(report: Report) -> str:
    """The report for people: one line per step."""
    lines = [f"managed-apply {report.mode}: {report.result}" + (f" (exit {report.exit_code})"
                                                                 if report.exit_code else "")]
    if report.plan is not None:
        for c in report.plan.changes:
            lines.append(f"  change {c.action} {c.namespace}/{c.name} [{c.label}]"
                         + (f": {', '.join(c.fields)}" if c.fields else ""))
    for s in report.steps:
        rest = {k: v for k, v in s.items() if k != "step" and k not in ("fresh", "sets") and v not in ([], {}, "")}
        lines.append(f"  {s['step']}: " + "; ".join(f"{k} {json.dumps(v, default=str)}" for k, v in rest.items()))
    if report.error:
        lines.append(f"  error: {report.error}")
    return "\n".join(lines)


def default_runs_on() -> str | None:
    """The runner class this process runs on, when it runs in a runner pod."""
    return os.environ.get("FLYWHEEL_RUNNER_CLASS") or None
