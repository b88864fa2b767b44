from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel_runtime.errors import ExitCode, TopologyError
from flywheel_runtime.topology import DEFAULT_TOPOLOGY, load, load_data
from flywheel_runtime.topology.quantity import parse_bytes, parse_cpu
from flywheel_runtime.topology.schema import json_schema

from .conftest import scale_set


def test_shipped_topology_encodes_the_platform(topo) -> None:
    assert [n.name for n in topo.nodes] == ["honey", "sting", "bumble"]
    honey, sting, bumble = topo.nodes
    assert honey.allocatable.cpu == 32_000 and honey.allocatable.pods == 110
    assert honey.allocatable.memory == parse_bytes("219.81Gi")
    assert sting.allocatable.ephemeral_storage == parse_bytes("66.32Gi")
    assert [str(t) for t in sting.taints] == ["dedicated.tinyland.dev/compute-expansion=true:NoSchedule"]
    assert not bumble.schedulable and not bumble.runner_target and not bumble.kvm
    assert honey.kvm and sting.kvm
    assert {rc.name for rc in topo.runner_classes} == {
        "tinyland-nix", "tinyland-docker", "tinyland-dind", "tinyland-nix-operator",
        "tinyland-nix-heavy", "tinyland-nix-kvm", "tinyland-nix-gpu"}
    caps = {s.name: (s.node, s.max_runners) for s in topo.scale_sets}
    assert caps["tinyland-docker"] == ("sting", 20)
    assert caps["tinyland-nix"] == ("honey", 16)
    assert caps["tinyland-nix-compute-expansion"] == ("sting", 8)
    assert caps["tinyland-dind"] == ("honey", 20)
    assert caps["tinyland-dind-compute-expansion"] == ("sting", 16)
    assert caps["tinyland-nix-kvm"] == ("honey", 1) and caps["tinyland-nix-gpu"] == ("honey", 1)
    # Compute-expansion scale sets publish the shared labels, not their own.
    assert topo.scale_set("tinyland-nix-compute-expansion").label == "tinyland-nix"
    assert topo.scale_set("tinyland-dind-compute-expansion").label == "tinyland-dind"
    # Two overlays publish the heavy label, each with its own cap.
    heavy = topo.scale_sets_for("tinyland-nix-heavy")
    assert {s.overlay for s in heavy} == {"tinyland", "jess"}
    assert topo.scale_set("tinyland-nix-kvm").devices == {"kvm"}
    assert topo.scale_set("tinyland-nix-gpu").devices == {"dri"}
    assert topo.scale_set("tinyland-nix-compute-expansion").seeds_nix
    assert topo.scale_set("tinyland-dind").has_dind
    wp = topo.scale_set("tinyland-nix").warm_pool
    assert [(s.cron, s.min_runners) for s in wp.schedules] == [("0 13 * * 1-5", 1), ("0 1 * * *", 0)]
    assert (topo.cleanup.terminating_after_s, topo.cleanup.succeeded_after_s, topo.cleanup.failed_after_s) == (
        300, 600, 1800)
    assert [g.name for g in topo.gitlab_runners] == ["docker", "dind", "nix"]
    assert all(g.min_replicas == 1 and g.cpu_target_percent == 70 and g.scale_down_stabilization_s == 300
               for g in topo.gitlab_runners)
    assert set(topo.namespaces) == {"arc-systems", "arc-runners", "gitlab-runners", "nix-cache"}


def test_placement_is_derived_from_the_node(topo) -> None:
    docker = topo.scale_set("tinyland-docker")
    assert docker.placement.node_selector == {"kubernetes.io/hostname": "sting"}
    assert [t.as_k8s() for t in docker.placement.tolerations] == [{
        "key": "dedicated.tinyland.dev/compute-expansion", "operator": "Equal", "value": "true",
        "effect": "NoSchedule"}]
    assert topo.scale_set("tinyland-nix").placement.tolerations == ()


@pytest.mark.parametrize("text,expected", [("500m", 500), (4, 4000), ("1.5", 1500), ("32", 32000), ("100m", 100)])
def test_cpu_quantities(text, expected) -> None:
    assert parse_cpu(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("1Gi", 2**30), ("256Mi", 256 * 2**20), ("1G", 10**9), ("219.81Gi", 236019190334), ("512Mi", 2**29), (1024, 1024)])
def test_byte_quantities_are_exact(text, expected) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("mutate,line", [
    (lambda d: d["nodes"]["honey"].update(colour="gold"),
     "variant.yaml: nodes.honey.colour: expected no such key (known: role, labels, taints, allocatable, schedulable, "
     "runner_target), got 'gold'"),
    (lambda d: scale_set(d, "tinyland-nix")["containers"]["runner"]["limits"].update(cpu="four"),
     "variant.yaml: scale_sets[0].containers.runner.limits.cpu: expected a Kubernetes CPU quantity like \"500m\" "
     "or 4, got 'four'"),
    (lambda d: scale_set(d, "tinyland-docker").update(max_runners="20"),
     "variant.yaml: scale_sets[2].max_runners: expected an integer >= 0, got '20'"),
    (lambda d: scale_set(d, "tinyland-docker").update(node="wasp"),
     "variant.yaml: scale_sets[2].node: expected one of the nodes honey, sting, bumble, got 'wasp'"),
    (lambda d: d["nodes"]["sting"]["taints"][0].update(effect="NoWay"),
     "variant.yaml: nodes.sting.taints[0].effect: expected one of NoSchedule, PreferNoSchedule, NoExecute, "
     "got 'NoWay'"),
    (lambda d: d.pop("nodes"), "variant.yaml: nodes: expected a value (required), got nothing"),
    (lambda d: scale_set(d, "tinyland-nix").update(warm_pool="night-shift"),
     "variant.yaml: scale_sets[0].warm_pool: expected one of the warm pools business-hours, got 'night-shift'"),
    (lambda d: scale_set(d, "tinyland-nix").update(min_runners=17),
     "variant.yaml: scale_sets[0].min_runners: expected at most max_runners (16), got 17"),
    (lambda d: d["warm_pools"]["business-hours"]["schedules"][0].update(cron="at noon"),
     "variant.yaml: warm_pools.business-hours.schedules[0].cron: expected a 5-field cron expression, got 'at noon'"),
])
def test_schema_errors_are_one_exact_line(variant, mutate, line) -> None:
    with pytest.raises(TopologyError) as exc:
        variant(mutate)
    assert str(exc.value) == line
    assert exc.value.exit_code == ExitCode.TOPOLOGY_INVALID
    assert "\n" not in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"^.*/nope.yaml: no such topology file$"):
        load(tmp_path / "nope.yaml")


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "broken.yaml"
    p.write_text("schema: x\nnodes:\n  honey: [unclosed\n")
    with pytest.raises(TopologyError) as exc:
        load(p)
    assert str(exc.value).startswith(f"{p}:4:1: YAML syntax error: ")


def test_cli_bad_file_is_exit_3_one_line(write_variant) -> None:
    path = write_variant(lambda d: d["nodes"]["honey"].update(colour="gold"))
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "check", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 3
    assert out.stderr.count("\n") == 1 and "nodes.honey.colour: expected no such key" in out.stderr


def test_json_schema_is_shipped_and_accepts_the_topology(raw) -> None:
    import jsonschema

    shipped = json.loads(DEFAULT_TOPOLOGY.with_name("topology.schema.json").read_text())
    assert shipped == json_schema(), "topology.schema.json is stale: run `flywheel-runtime topology schema`"
    jsonschema.Draft202012Validator(shipped).validate(raw)


@pytest.mark.parametrize("mutate", [
    lambda d: d["nodes"]["honey"].update(colour="gold"),
    lambda d: scale_set(d, "tinyland-nix")["containers"]["runner"]["limits"].update(cpu="four"),
    lambda d: scale_set(d, "tinyland-docker").update(max_runners=-1),
    lambda d: d.pop("overlays"),
])
def test_json_schema_and_validator_reject_the_same_variants(raw, mutate) -> None:
    import copy

    import jsonschema

    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(TopologyError):
        load_data(data)
    assert list(jsonschema.Draft202012Validator(json_schema()).iter_errors(data))
