"""audit labels (offline and joined with live objects) and audit alert-rules."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import yaml

from flywheel_runtime import toolchain
from flywheel_runtime.audit import alerts, labels, promtool
from flywheel_runtime.cli import main
from flywheel_runtime.topology import capacity, load, load_data


@pytest.fixture(scope="module")
def topo() -> Any:
    return load()


def _raw() -> dict[str, Any]:
    return copy.deepcopy(load().raw)


def test_offline_report_groups_scale_sets_by_label_across_overlays(topo: Any) -> None:
    report = labels.audit(topo)
    heavy = next(lbl for lbl in report["labels"] if lbl["label"] == "tinyland-nix-heavy")
    assert heavy["overlays"] == ["jess", "tinyland"]
    assert {r["scale_set"] for r in heavy["scale_sets"]} == {s.name for s in topo.scale_sets_for("tinyland-nix-heavy")}
    assert heavy["summed_caps"] == sum(s.max_runners for s in topo.scale_sets_for("tinyland-nix-heavy"))
    assert heavy["current_runners"] is None  # offline: no live counts
    nix = next(lbl for lbl in report["labels"] if lbl["label"] == "tinyland-nix")
    assert {n["node"] for n in nix["nodes"]} == {"honey", "sting"}
    row = next(r for r in nix["scale_sets"] if r["scale_set"] == "tinyland-nix-compute-expansion")
    assert row["placement"]["tolerations"] == [{"key": "dedicated.tinyland.dev/compute-expansion",
                                                "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    assert row["envelope"]["runner"]["limits"]["memory"] == "16Gi"


def test_figures_come_from_the_topology_capacity_math(topo: Any) -> None:
    report = labels.audit(topo)
    for lc in capacity.labels(topo):
        lbl = next(x for x in report["labels"] if x["label"] == lc.label)
        assert (lbl["summed_caps"], lbl["admits"], lbl["debt"]) == (lc.summed_caps, lc.admits, lc.debt)


def test_a_second_overlay_beyond_the_node_is_flagged_as_global_capacity_debt() -> None:
    raw = _raw()
    # Jess asks for 3 more heavy runners on honey: 6 x 64Gi memory > 219.81Gi.
    next(s for s in raw["scale_sets"] if s["name"] == "jess-nix-heavy")["max_runners"] = 4
    t = load_data(raw, "<test>")
    report = labels.audit(t)
    heavy = next(lbl for lbl in report["labels"] if lbl["label"] == "tinyland-nix-heavy")
    assert heavy["summed_caps"] == 6 and heavy["admits"] == 3 and heavy["debt"] == 3
    assert heavy["nodes"] == [{"node": "honey", "scale_sets": ["tinyland-nix-heavy", "jess-nix-heavy"],
                               "summed_caps": 6, "admits": 3, "admits_summed_caps": False, "schedulable": True}]
    assert any("global capacity debt" in f and "jess, tinyland" in f for f in heavy["flags"])


def _ars(name: str, labels_: list[str], max_runners: int, current: int, ns: str = "arc-runners") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"runnerScaleSetName": name, "runnerScaleSetLabels": labels_, "maxRunners": max_runners,
                     "minRunners": 0},
            "status": {"currentRunners": current}}


def test_live_join_counts_runners_and_flags_drift_and_residue(topo: Any) -> None:
    live = [_ars(s.name, list(s.labels), s.max_runners, 1) for s in topo.scale_sets if s.name != "tinyland-nix-gpu"]
    live = [a if a["metadata"]["name"] != "jess-nix-heavy" else _ars("jess-nix-heavy", ["tinyland-nix-heavy"], 3, 2)
            for a in live]
    live.append(_ars("tinyland-lab-ci", ["tinyland-nix-heavy", "self-hosted"], 2, 1))  # repo-shaped residue
    live.append(_ars("old-thing", ["self-hosted"], 1, 0))
    report = labels.audit(topo, live)
    assert report["mode"] == "live"
    heavy = next(lbl for lbl in report["labels"] if lbl["label"] == "tinyland-nix-heavy")
    assert heavy["current_runners"] == 1 + 2
    assert any("cap drift" in f and "jess-nix-heavy" in f for f in heavy["flags"])
    assert heavy["residue"] == [{"namespace": "arc-runners", "scale_set": "tinyland-lab-ci", "max_runners": 2,
                                 "current_runners": 1}]
    gpu = next(lbl for lbl in report["labels"] if lbl["label"] == "tinyland-nix-gpu")
    assert any("not in the cluster" in f for f in gpu["flags"])
    assert report["unknown_scale_sets"] == [{"namespace": "arc-runners", "scale_set": "old-thing",
                                             "label": "old-thing"}]


def test_cli_offline_json_and_fail_on_debt(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    assert main(["audit", "labels", "--offline", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "offline" and len(report["labels"]) == len({s.label for s in load().scale_sets})
    raw = _raw()
    next(s for s in raw["scale_sets"] if s["name"] == "jess-nix-heavy")["max_runners"] = 4
    f = tmp_path / "topology.yaml"
    f.write_text(yaml.safe_dump(raw))
    assert main(["audit", "labels", "--offline", "--topology", str(f)]) == 0
    assert "DEBT 3" in capsys.readouterr().out
    assert main(["audit", "labels", "--offline", "--fail-on-debt", "--topology", str(f)]) == 1


# -- alert rules -----------------------------------------------------------------

ARC_METRICS = {"gha_controller_running_listeners", "gha_controller_pending_ephemeral_runners",
               "gha_controller_failed_ephemeral_runners", "gha_desired_runners", "gha_max_runners", "gha_min_runners"}


def test_five_rules_on_arc_metric_names(topo: Any) -> None:
    rule = alerts.prometheus_rule(topo)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["namespace"] == "arc-systems"
    rules = rule["spec"]["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == ["ARCControllerDown", "ARCListenerDown", "ARCRunnersStuckPending",
                                           "ARCScaleSetAtCap", "ARCRunnersFailing"]
    used = {m for r in rules for m in re.findall(r"\bgha_[a-z_]+", r["expr"])}
    assert used == ARC_METRICS
    for r in rules:
        assert r["labels"]["severity"] in ("critical", "warning") and r["annotations"]["summary"]
        assert r["expr"].count("(") == r["expr"].count(")") and r["expr"].count("{") == r["expr"].count("}")


def test_rules_follow_the_topology(topo: Any) -> None:
    raw = _raw()
    raw["scale_sets"].append({**copy.deepcopy(raw["scale_sets"][0]), "name": "tinyland-nix-extra"})
    for s in raw["scale_sets"]:
        s.pop("warm_pool", None)
    t = load_data(raw, "<test>")
    listener_down = alerts.rules(t)[1]["expr"]
    assert "tinyland-nix-extra" in listener_down and "tinyland-nix-extra" not in alerts.rules(topo)[1]["expr"]


def test_cli_prints_yaml_and_rule_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "alert-rules"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["kind"] == "PrometheusRule"
    assert main(["audit", "alert-rules", "--format", "rule-file", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["rules"]) == ["groups"]


@pytest.mark.timeout(1800)
def test_promtool_accepts_the_rules_and_rejects_a_broken_one(topo: Any) -> None:
    """promtool built from the Go module proxy (cached; the first run builds it)."""
    import shutil

    if toolchain.cached_binary("promtool") is None and shutil.which("go") is None:
        pytest.fail("promtool is not built and Go is missing: install Go to check the alert rules")
    binary = toolchain.binary("promtool")
    good = promtool.check_rules(yaml.safe_dump(alerts.rule_file(topo)), binary)
    assert good.ok, good.output
    assert "5 rules found" in good.output
    broken = alerts.rule_file(topo)
    broken["groups"][0]["rules"][0]["expr"] = "absent(gha_controller_running_listeners{namespace=}"
    bad = promtool.check_rules(yaml.safe_dump(broken), binary)
    assert not bad.ok and "parse error" in bad.output.lower()

# Firing and resolving on ARC 0.14.0's series shapes: test_alerts_arc_series.py.
