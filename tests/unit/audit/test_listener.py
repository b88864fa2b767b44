"""prove listener-caps: pure classification over snapshots with an injected clock."""

from __future__ import annotations

import datetime as dt

from flywheel_runtime.audit.listener import (
    DRIFT,
    OK,
    TRANSIENT,
    Prover,
    SetSnapshot,
    classify,
    config_secret_name,
    prove,
    snapshots_from,
)

T0 = dt.datetime(2026, 6, 9, 10, 0, tzinfo=dt.timezone.utc)
GRACE = 60.0


def snap(listener_min: int | None = 0, listener_max: int | None = 16, *, listener: bool = True,
         listener_age: float = 600, secret_age: float | None = 600, version: str = "1") -> SetSnapshot:
    return SetSnapshot(
        "arc-runners", "tinyland-nix", 0, 16,
        "arc-systems/tinyland-nix-abc-listener" if listener else None,
        listener_min if listener else None, listener_max if listener else None,
        T0 - dt.timedelta(seconds=listener_age) if listener else None, version if listener else None,
        None if secret_age is None else T0 - dt.timedelta(seconds=secret_age),
    )


def test_matching_caps_are_ok_even_when_the_listener_is_brand_new() -> None:
    assert classify(snap(listener_age=1, secret_age=1), T0, GRACE).state == OK


def test_missing_listener_or_secret_is_transient() -> None:
    assert classify(snap(listener=False), T0, GRACE).state == TRANSIENT
    v = classify(snap(0, 8, secret_age=None), T0, GRACE)
    assert v.state == TRANSIENT and "config secret is missing" in v.reason


def test_drift_on_a_young_listener_or_secret_is_transient() -> None:
    v = classify(snap(0, 8, listener_age=10), T0, GRACE)
    assert v.state == TRANSIENT and "listener" in v.reason
    v = classify(snap(0, 8, secret_age=59.9), T0, GRACE)
    assert v.state == TRANSIENT and "config secret" in v.reason


def test_drift_on_a_settled_listener_is_drift_with_a_signature() -> None:
    v = classify(snap(0, 8), T0, GRACE)
    assert v.state == DRIFT and v.signature is not None
    assert "max 8" in v.reason and "max 16" in v.reason


def test_stable_drift_fails_fast_on_the_second_identical_observation() -> None:
    p = Prover(T0, GRACE, deadline_s=300)
    first = p.observe([snap(0, 8)], T0)
    assert not first.done  # one sighting is not yet stable
    second = p.observe([snap(0, 8)], T0 + dt.timedelta(seconds=2))
    assert second.done and not second.ok and not second.timed_out
    assert "stable drift" in second.failures[0]


def test_a_changing_drift_signature_is_not_stable() -> None:
    p = Prover(T0, GRACE, deadline_s=300)
    p.observe([snap(0, 8, version="1")], T0)
    out = p.observe([snap(0, 8, version="2")], T0 + dt.timedelta(seconds=2))  # listener patched meanwhile
    assert not out.done


def test_churn_that_settles_to_the_right_caps_passes() -> None:
    p = Prover(T0, GRACE, deadline_s=300)
    assert not p.observe([snap(listener=False)], T0).done
    assert not p.observe([snap(0, 8, listener_age=5, secret_age=5)], T0 + dt.timedelta(seconds=5)).done
    out = p.observe([snap(0, 16, listener_age=1, secret_age=1)], T0 + dt.timedelta(seconds=10))
    assert out.done and out.ok


def test_unresolved_at_the_deadline_fails() -> None:
    p = Prover(T0, GRACE, deadline_s=30)
    assert not p.observe([snap(listener=False)], T0 + dt.timedelta(seconds=29)).done
    out = p.observe([snap(listener=False)], T0 + dt.timedelta(seconds=30))
    assert out.done and out.timed_out and not out.ok
    assert "unresolved" in out.failures[0] and "AutoscalingListener missing" in out.failures[0]


def test_prove_loop_with_injected_clock_and_sleep() -> None:
    clock = [T0]
    frames = iter([[snap(listener=False)], [snap(0, 8, listener_age=1, secret_age=1)], [snap(0, 16)]])
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += dt.timedelta(seconds=s)

    out = prove(lambda: next(frames), grace_s=GRACE, deadline_s=300, interval_s=2, now=lambda: clock[0],
                sleep=sleep)
    assert out.ok and slept == [2, 2]


def test_prove_loop_times_out_without_real_waiting() -> None:
    clock = [T0]

    def sleep(s: float) -> None:
        clock[0] += dt.timedelta(seconds=s)

    out = prove(lambda: [snap(listener=False)], grace_s=GRACE, deadline_s=10, interval_s=3,
                now=lambda: clock[0], sleep=sleep)
    assert out.timed_out and (clock[0] - T0).total_seconds() == 12


def test_snapshots_join_sets_listeners_and_config_secrets() -> None:
    ars = [{"metadata": {"name": "tinyland-nix", "namespace": "arc-runners"}, "spec": {"minRunners": 1, "maxRunners": 16}},
           {"metadata": {"name": "tinyland-docker", "namespace": "arc-runners"}, "spec": {"maxRunners": 20}}]
    lst = {"metadata": {"name": "tinyland-nix-754b578d-listener", "namespace": "arc-systems",
                        "creationTimestamp": "2026-06-09T09:00:00Z", "resourceVersion": "99"},
           "spec": {"autoscalingRunnerSetName": "tinyland-nix", "autoscalingRunnerSetNamespace": "arc-runners",
                    "minRunners": 1, "maxRunners": 16}}
    old = {"metadata": {"name": "tinyland-docker-old-listener", "namespace": "arc-systems",
                        "deletionTimestamp": "2026-06-09T09:59:00Z"},
           "spec": {"autoscalingRunnerSetName": "tinyland-docker", "autoscalingRunnerSetNamespace": "arc-runners",
                    "minRunners": 0, "maxRunners": 20}}
    secrets = {("arc-systems", config_secret_name("tinyland-nix-754b578d-listener")):
               {"metadata": {"creationTimestamp": "2026-06-09T09:00:01Z"}}}
    snaps = snapshots_from(ars, [lst, old], secrets)
    nix, docker = snaps
    assert (nix.min_runners, nix.listener_min, nix.listener_max, nix.listener_version) == (1, 1, 16, "99")
    assert nix.secret_created == dt.datetime(2026, 6, 9, 9, 0, 1, tzinfo=dt.timezone.utc)
    assert docker.listener is None  # the listener being deleted does not count
    assert [classify(s, T0, GRACE).state for s in snaps] == [OK, TRANSIENT]


def test_missing_listener_with_active_runners_fails_the_proof() -> None:
    import dataclasses

    missing = dataclasses.replace(snap(listener=False), active_runners=2)
    v = classify(missing, T0, GRACE)
    assert (v.state, v.reason) == (DRIFT, "AutoscalingListener missing while 2 runner(s) are active")
    p = Prover(T0, GRACE, 300)
    # Within the grace window it may be a listener on its way back (the immediate strategy
    # deletes and recreates it while a warm pool's idle runner stays active).
    for t in (0, 2, 30, GRACE - 1):
        assert not p.observe([missing], T0 + dt.timedelta(seconds=t)).done, t
    # The runner count may change meanwhile: still the same absence.
    out = p.observe([dataclasses.replace(missing, active_runners=1)], T0 + dt.timedelta(seconds=GRACE))
    assert (out.done, out.ok) == (True, False)
    assert out.failures == ["arc-runners/tinyland-nix: stable drift: AutoscalingListener missing while 1 "
                            f"runner(s) are active for {GRACE:g}s"]
    # With no active runners a missing listener is only churn.
    assert classify(snap(listener=False), T0, GRACE).state == TRANSIENT


def test_a_listener_back_within_the_grace_window_restarts_the_clock() -> None:
    import dataclasses

    missing = dataclasses.replace(snap(listener=False), active_runners=1)
    p = Prover(T0, GRACE, 600)
    assert not p.observe([missing], T0).done
    back = p.observe([snap(listener_age=1, secret_age=1)], T0 + dt.timedelta(seconds=GRACE - 10))
    assert (back.done, back.ok) == (True, True)
    p = Prover(T0, GRACE, 600)
    p.observe([missing], T0)
    p.observe([snap(0, 10, listener_age=1, secret_age=1)], T0 + dt.timedelta(seconds=GRACE - 10))  # churn, not OK
    # missing again: a new absence, timed from here
    assert not p.observe([missing], T0 + dt.timedelta(seconds=GRACE + 5)).done
    out = p.observe([missing], T0 + dt.timedelta(seconds=2 * GRACE + 5))
    assert (out.done, out.ok) == (True, False) and "for 60s" in out.failures[0]


def test_snapshots_carry_the_sets_active_runners() -> None:
    ars = {"metadata": {"namespace": "arc-runners", "name": "tinyland-nix"},
           "spec": {"minRunners": 0, "maxRunners": 16}, "status": {"currentRunners": 3}}
    (s,) = snapshots_from([ars], [], {})
    assert (s.listener, s.active_runners) == (None, 3)


def test_active_runners_count_live_ephemeral_runners_when_the_sets_status_is_stale() -> None:
    """The controller holding a listener back (eventual strategy) stops updating the set's
    status: its live EphemeralRunners still count, those being deleted do not."""
    from flywheel_runtime.audit.listener import runners_per_set

    ars = {"metadata": {"namespace": "arc-runners", "name": "tinyland-nix-operator"},
           "spec": {"minRunners": 0, "maxRunners": 2}, "status": {"currentRunners": 0}}

    def er(name: str, set_name: str, deleting: bool = False) -> dict:
        meta = {"namespace": "arc-runners", "name": name,
                "labels": {"actions.github.com/scale-set-name": set_name}}
        if deleting:
            meta["deletionTimestamp"] = "2026-05-15T10:00:00Z"
        return {"metadata": meta}

    runners = runners_per_set([er("a", "tinyland-nix-operator"), er("b", "tinyland-nix-operator", deleting=True),
                               er("c", "tinyland-nix")])
    assert runners == {("arc-runners", "tinyland-nix-operator"): 1, ("arc-runners", "tinyland-nix"): 1}
    (s,) = snapshots_from([ars], [], {}, runners)
    assert (s.listener, s.active_runners) == (None, 1)
    assert classify(s, T0, GRACE).state == DRIFT
