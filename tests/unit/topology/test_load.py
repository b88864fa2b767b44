from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flywheel_runtime.errors import ExitCode, TopologyError
from flywheel_runtime.topology import DEFAULT_TOPOLOGY, load, load_data
from flywheel_runtime.topology.quantity import format_bytes, format_cpu, parse_bytes, parse_cpu
from flywheel_runtime.topology.schema import json_schema

from .conftest import scale_set

GiB = 2**30


def test_shipped_topology_encodes_the_platform(topo) -> None:
    assert [n.name for n in topo.nodes] == ["honey", "sting", "bumble"]
    honey, sting, bumble = topo.nodes
    assert (honey.allocatable.cpu, honey.allocatable.pods) == (32_000, 110)
    # 219.81Gi and 1384.60Gi in exact integers, rounded up to a whole byte.
    assert honey.allocatable.memory == -(-21981 * GiB // 100) == 236019190334
    assert honey.allocatable.ephemeral_storage == -(-13846 * GiB // 10) == 1486702929511
    assert (sting.allocatable.cpu, sting.allocatable.memory) == (32_000, parse_bytes("54.68Gi"))
    assert sting.allocatable.ephemeral_storage == parse_bytes("66.32Gi")
    assert (bumble.allocatable.cpu, bumble.allocatable.memory) == (4_000, parse_bytes("15.06Gi"))
    assert bumble.allocatable.ephemeral_storage == parse_bytes("66.44Gi")
    assert {n.allocatable.pods for n in topo.nodes} == {110}
    assert [str(t) for t in sting.taints] == ["dedicated.tinyland.dev/compute-expansion=true:NoSchedule"]
    assert honey.taints == () and bumble.taints == ()
    assert not bumble.schedulable and not bumble.runner_target and not bumble.kvm
    assert honey.kvm and sting.kvm and honey.schedulable and sting.schedulable
    github = {rc.name for rc in topo.runner_classes if rc.forge == "github"}
    assert github == {"tinyland-nix", "tinyland-docker", "tinyland-dind", "tinyland-nix-operator",
                      "tinyland-nix-heavy", "tinyland-nix-kvm", "tinyland-nix-gpu"}
    assert {rc.name for rc in topo.runner_classes if rc.forge == "gitlab"} == {"docker", "dind", "nix"}
    caps = {s.name: (s.overlay, s.label, s.node, s.min_runners, s.max_runners) for s in topo.scale_sets}
    assert caps == {
        "tinyland-nix": ("tinyland", "tinyland-nix", "honey", 0, 16),
        "tinyland-nix-compute-expansion": ("tinyland", "tinyland-nix", "sting", 0, 8),
        "tinyland-docker": ("tinyland", "tinyland-docker", "sting", 0, 20),
        "tinyland-dind": ("tinyland", "tinyland-dind", "honey", 0, 20),
        "tinyland-dind-compute-expansion": ("tinyland", "tinyland-dind", "sting", 0, 16),
        "tinyland-nix-operator": ("tinyland", "tinyland-nix-operator", "honey", 0, 1),
        "tinyland-nix-heavy": ("tinyland", "tinyland-nix-heavy", "honey", 0, 2),
        "jess-nix-heavy": ("jess", "tinyland-nix-heavy", "honey", 0, 1),
        "tinyland-nix-kvm": ("tinyland", "tinyland-nix-kvm", "honey", 0, 1),
        "tinyland-nix-gpu": ("tinyland", "tinyland-nix-gpu", "honey", 0, 1),
    }
    # Published label sets come from the runner class, written once.
    assert topo.scale_set("tinyland-nix").labels == ("tinyland-nix", "self-hosted", "nix", "linux")
    assert topo.scale_set("tinyland-nix-compute-expansion").labels == topo.scale_set("tinyland-nix").labels
    assert topo.scale_set("jess-nix-heavy").labels == ("tinyland-nix-heavy", "self-hosted", "nix", "linux")
    assert topo.scale_set("tinyland-nix-gpu").labels == (
        "tinyland-nix-gpu", "self-hosted", "nix", "linux", "gpu", "webgpu", "dawn")
    assert topo.scale_set("tinyland-dind-compute-expansion").labels == ("tinyland-dind", "self-hosted", "dind", "linux")
    # Two overlays publish the heavy label, each with its own cap.
    assert {s.overlay for s in topo.scale_sets_for("tinyland-nix-heavy")} == {"tinyland", "jess"}
    assert topo.scale_set("tinyland-nix-kvm").devices == {"kvm"}
    assert topo.scale_set("tinyland-nix-gpu").devices == {"dri"}
    assert topo.scale_set("tinyland-nix").devices == frozenset()
    wp = topo.scale_set("tinyland-nix").warm_pool
    assert wp.timezone == "UTC"
    assert [(s.cron, s.min_runners) for s in wp.schedules] == [("0 13 * * 1-5", 1), ("0 1 * * *", 0)]
    assert all(s.warm_pool is None for s in topo.scale_sets if s.name != "tinyland-nix")
    c = topo.cleanup
    assert (c.schedule, c.interval_s, c.concurrency_policy) == ("*/5 * * * *", 300, "Forbid")
    assert (c.terminating_after_s, c.succeeded_after_s, c.failed_after_s) == (300, 600, 1800)
    assert [(g.name, g.runner_class, g.node) for g in topo.gitlab_runners] == [
        ("docker", "docker", "honey"), ("dind", "dind", "honey"), ("nix", "nix", "honey")]
    assert all(g.min_replicas == 1 and g.cpu_target_percent == 70 and g.scale_down_stabilization_s == 300
               for g in topo.gitlab_runners)
    assert set(topo.namespaces) == {"arc-systems", "arc-runners", "gitlab-runners", "nix-cache"}
    assert set(topo.services) == {"attic", "bazel-remote-cache", "cnpg-postgresql", "rustfs"}
    rp = topo.runner_pod
    assert (rp.command, rp.run_as_user, rp.priority_class, rp.priority_value) == (
        ("flywheel-runtime", "entrypoint", "--", "/home/runner/run.sh"), 0, "arc-runner", -50)
    assert rp.env == {"RUNNER_ALLOW_RUNASROOT": "1"}
    tax = topo.label_taxonomy
    assert tax.base == ("self-hosted", "linux", "x64", "nix", "docker", "dind")


def test_envelopes_follow_the_platform_facts_table(topo) -> None:
    def env(name: str, container: str = "runner") -> tuple:
        c = topo.scale_set(name).envelope.container(container)
        return (c.requests.cpu, c.limits.cpu, c.requests.memory, c.limits.memory,
                c.requests.ephemeral_storage, c.limits.ephemeral_storage)

    Mi = 2**20
    assert env("tinyland-docker") == (100, 2000, 256 * Mi, 4 * GiB, 1 * GiB, 8 * GiB)
    assert env("tinyland-nix") == (500, 4000, 1 * GiB, 8 * GiB, 24 * GiB, 40 * GiB)
    assert env("tinyland-nix-compute-expansion") == (500, 4000, 4 * GiB, 16 * GiB, 1 * GiB, 16 * GiB)
    assert env("tinyland-dind") == (500, 4000, 1 * GiB, 8 * GiB, 4 * GiB, 8 * GiB)
    # The daemon runs the builds: it carries the lane's CPU and memory budget too (issue 12).
    assert env("tinyland-dind", "dind") == (500, 4000, 1 * GiB, 8 * GiB, 24 * GiB, 40 * GiB)
    assert env("tinyland-dind-compute-expansion") == (500, 4000, 1 * GiB, 8 * GiB, 512 * Mi, 2 * GiB)
    assert env("tinyland-dind-compute-expansion", "dind") == (500, 4000, 1 * GiB, 8 * GiB, 1 * GiB, 4 * GiB)
    assert env("tinyland-nix-operator") == (1000, 4000, 4 * GiB, 8 * GiB, 8 * GiB, 16 * GiB)
    assert env("tinyland-nix-heavy") == env("jess-nix-heavy") == (
        4000, 8000, 64 * GiB, 160 * GiB, 192 * GiB, 256 * GiB)
    assert env("tinyland-nix-kvm") == (2000, 8000, 8 * GiB, 16 * GiB, 64 * GiB, 128 * GiB)
    assert env("tinyland-nix-gpu") == (1000, 4000, 4 * GiB, 8 * GiB, 12 * GiB, 16 * GiB)


def test_compute_expansion_storage(topo) -> None:
    (sc,) = topo.storage_classes
    assert (sc.name, sc.provisioner, sc.binding_mode, sc.reclaim_policy, sc.node) == (
        "local-path-sting-fast-ephemeral", "rancher.io/local-path", "WaitForFirstConsumer", "Delete", "sting")
    nix = topo.scale_set("tinyland-nix-compute-expansion")
    assert [(v.name, v.mount_path, v.size // GiB, v.storage_class, v.seed_nix) for v in nix.storage] == [
        ("nix", "/nix", 64, sc.name, True),
        ("work", "/home/runner/_work", 32, sc.name, False),
        ("cache", "/home/runner/.cache", 32, sc.name, False),
    ]
    assert nix.seeds_nix and nix.storage == nix.volumes
    dind = topo.scale_set("tinyland-dind-compute-expansion")
    assert [(v.mount_path, v.size // GiB, v.container, v.seed_nix) for v in dind.storage] == [
        ("/home/runner/_work", 32, "runner", False), ("/var/lib/docker", 48, "dind", False)]
    assert not dind.seeds_nix and dind.has_dind
    assert all(not s.storage for s in topo.scale_sets if s.node != "sting" or s.name == "tinyland-docker")


def test_placement_is_derived_from_the_node(topo) -> None:
    docker = topo.scale_set("tinyland-docker")
    assert docker.placement.node_selector == {"kubernetes.io/hostname": "sting"}
    assert [t.as_k8s() for t in docker.placement.tolerations] == [{
        "key": "dedicated.tinyland.dev/compute-expansion", "operator": "Equal", "value": "true",
        "effect": "NoSchedule"}]
    assert not docker.placement.explicit_tolerations and docker.placement.affinity == ()
    assert topo.scale_set("tinyland-nix").placement.tolerations == ()


def test_affinity_loads_and_decides_admission(variant) -> None:
    def aim(d):
        s = scale_set(d, "tinyland-nix-kvm")
        del s["node"]
        s["affinity"] = [{"match_expressions": [
            {"key": "capability.tinyland.dev/kvm", "operator": "In", "values": ["true"]},
            {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["sting"]}]}]

    topo = variant(aim)
    p = topo.scale_set("tinyland-nix-kvm").placement
    assert [n.name for n in topo.nodes if p.admits(n)] == ["honey"]
    assert p.affinity_k8s() == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "capability.tinyland.dev/kvm", "operator": "In", "values": ["true"]},
            {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["sting"]}]}]}}}


def test_contract_lookups(topo) -> None:
    assert topo.node("sting").name == "sting"
    assert topo.scale_set("tinyland-nix").name == "tinyland-nix"
    with pytest.raises(TopologyError, match=r"no node named 'wasp' \(known: honey, sting, bumble\)$"):
        topo.node("wasp")
    with pytest.raises(TopologyError, match=r"no scale set named 'nope'"):
        topo.scale_set("nope")


@pytest.mark.parametrize("text,expected", [
    ("500m", 500), (4, 4000), ("1.5", 1500), ("32", 32000), ("100m", 100), ("0.1", 100), (0.5, 500),
    ("250000u", 250), ("1k", 1_000_000)])
def test_cpu_quantities(text, expected) -> None:
    assert parse_cpu(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("1Gi", 2**30), ("256Mi", 256 * 2**20), ("1G", 10**9), ("219.81Gi", 236019190334), ("512Mi", 2**29),
    (1024, 1024), ("1384.60Gi", 1486702929511), ("1.5Ki", 1536), ("1e3", None)])
def test_byte_quantities_are_exact(text, expected) -> None:
    if expected is None:  # exponent notation is valid Kubernetes but not written here: rejected, not guessed
        with pytest.raises(ValueError):
            parse_bytes(text)
    else:
        assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["four", "1.2.3", "4 cores", "-1", "", "Gi", True, None, [4]])
def test_bad_quantities_are_rejected(bad) -> None:
    with pytest.raises(ValueError):
        parse_cpu(bad)


@given(st.integers(min_value=0, max_value=2**62))
def test_byte_quantities_round_trip(n: int) -> None:
    assert parse_bytes(format_bytes(n)) == n


@given(st.integers(min_value=0, max_value=10**9))
def test_cpu_quantities_round_trip(m: int) -> None:
    assert parse_cpu(format_cpu(m)) == m


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=99))
def test_decimal_gi_is_exact(whole: int, hundredths: int) -> None:
    # "N.ddGi" in integers: no float drift, rounded up to the next byte as the apiserver does.
    num = (whole * 100 + hundredths) * GiB
    assert parse_bytes(f"{whole}.{hundredths:02d}Gi") == -(-num // 100)


@pytest.mark.parametrize("mutate,line", [
    (lambda d: d["nodes"]["honey"].update(colour="gold"),
     "variant.yaml: nodes.honey.colour: expected no such key (known: role, labels, taints, allocatable, schedulable, "
     "runner_target, scratch, other_pods), got 'gold'"),
    (lambda d: d.update(clusters=[]),
     "variant.yaml: clusters: expected no such key (known: schema, kubernetes_version, namespaces, services, network, "
     "nodes, storage_classes, overlays, label_taxonomy, runner_pod, arc, images, hint_profiles, warm_pools, cleanup, "
     "utility_jobs, runner_classes, scale_sets, gitlab_runners), got a list"),
    (lambda d: scale_set(d, "tinyland-nix")["containers"]["runner"]["limits"].update(cpu="four"),
     "variant.yaml: scale_sets[0].containers.runner.limits.cpu: expected a Kubernetes CPU quantity like \"500m\" "
     "or 4, got 'four'"),
    (lambda d: scale_set(d, "tinyland-dind")["containers"]["dind"]["requests"].update({"ephemeral-storage": "lots"}),
     "variant.yaml: scale_sets[3].containers.dind.requests.ephemeral-storage: expected a Kubernetes byte quantity "
     "like \"8Gi\", got 'lots'"),
    (lambda d: d["nodes"]["sting"]["allocatable"].update(memory=[54]),
     "variant.yaml: nodes.sting.allocatable.memory: expected a Kubernetes byte quantity like \"8Gi\", got a list"),
    (lambda d: scale_set(d, "tinyland-docker").update(max_runners="20"),
     "variant.yaml: scale_sets[2].max_runners: expected an integer >= 0, got '20'"),
    (lambda d: d["nodes"]["bumble"].update(schedulable="no"),
     "variant.yaml: nodes.bumble.schedulable: expected true or false, got 'no'"),
    (lambda d: scale_set(d, "tinyland-nix").update(labels="tinyland-nix"),
     "variant.yaml: scale_sets[0].labels: expected a list, got 'tinyland-nix'"),
    (lambda d: scale_set(d, "tinyland-docker").update(node="wasp"),
     "variant.yaml: scale_sets[2].node: expected one of the nodes honey, sting, bumble, got 'wasp'"),
    (lambda d: scale_set(d, "tinyland-docker").update(name="Tinyland_Docker"),
     "variant.yaml: scale_sets[2].name: expected a lowercase DNS label like \"tinyland-nix\", got 'Tinyland_Docker'"),
    (lambda d: d["nodes"]["sting"]["taints"][0].update(effect="NoWay"),
     "variant.yaml: nodes.sting.taints[0].effect: expected one of NoSchedule, PreferNoSchedule, NoExecute, "
     "got 'NoWay'"),
    (lambda d: d.pop("nodes"), "variant.yaml: nodes: expected a value (required), got nothing"),
    (lambda d: d["nodes"]["honey"]["allocatable"].pop("ephemeral-storage"),
     "variant.yaml: nodes.honey.allocatable.ephemeral-storage: expected a value (required), got nothing"),
    (lambda d: scale_set(d, "tinyland-nix").update(warm_pool="night-shift"),
     "variant.yaml: scale_sets[0].warm_pool: expected one of the warm pools business-hours, got 'night-shift'"),
    (lambda d: scale_set(d, "tinyland-nix").update(min_runners=17),
     "variant.yaml: scale_sets[0].min_runners: expected at most max_runners (16), got 17"),
    (lambda d: scale_set(d, "tinyland-nix").update(overlay="acme"),
     "variant.yaml: scale_sets[0].overlay: expected one of the overlays tinyland, jess, got 'acme'"),
    (lambda d: scale_set(d, "tinyland-nix-compute-expansion")["volumes"][0].update(storage_class="nvme"),
     "variant.yaml: scale_sets[1].volumes[0].storage_class: expected one of the storage classes "
     "local-path-sting-fast-ephemeral, got 'nvme'"),
    (lambda d: d["warm_pools"]["business-hours"]["schedules"][0].update(cron="at noon"),
     "variant.yaml: warm_pools.business-hours.schedules[0].cron: expected a 5-field cron expression, got 'at noon'"),
    (lambda d: d["gitlab_runners"][0].update(name="shell"),
     "variant.yaml: gitlab_runners[0].name: expected one of the GitLab runner classes docker, dind, nix, "
     "got 'shell'"),
    (lambda d: scale_set(d, "tinyland-nix").update(affinity=[{"match_expressions": [
        {"key": "capability.tinyland.dev/kvm", "operator": "Exists", "values": ["true"]}]}]),
     "variant.yaml: scale_sets[0].affinity[0].match_expressions[0].values: expected values exactly when the "
     "operator is In or NotIn (operator Exists), got ['true']"),
])
def test_schema_errors_are_one_exact_line(variant, mutate, line) -> None:
    with pytest.raises(TopologyError) as exc:
        variant(mutate)
    assert str(exc.value) == line
    assert exc.value.exit_code == ExitCode.TOPOLOGY_INVALID
    assert "\n" not in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as exc:
        load(tmp_path / "nope.yaml")
    assert str(exc.value) == f"{tmp_path}/nope.yaml: no such topology file"


def test_directory_is_not_a_topology(tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as exc:
        load(tmp_path)
    assert str(exc.value) == f"{tmp_path}: is a directory, expected a topology YAML file"


@pytest.mark.parametrize("text,where,problem", [
    ("schema: x\nnodes:\n  honey: [unclosed\n", "4:1", "did not find expected ',' or ']'"),
    ("schema: x\n  bad: indent\n", "2:6", "mapping values are not allowed in this context"),
])
def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path, text, where, problem) -> None:
    p = tmp_path / "broken.yaml"
    p.write_text(text)
    with pytest.raises(TopologyError) as exc:
        load(p)
    assert str(exc.value) == f"{p}:{where}: YAML syntax error: {problem}"


def test_env_var_selects_the_file(tmp_path: Path, write_variant, monkeypatch) -> None:
    path = write_variant(lambda d: scale_set(d, "tinyland-nix").update(max_runners=3))
    monkeypatch.setenv("FLYWHEEL_TOPOLOGY", str(path))
    topo = load()
    assert topo.source == str(path) and topo.scale_set("tinyland-nix").max_runners == 3


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flywheel_runtime", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_cli_bad_file_is_exit_3_one_line(write_variant) -> None:
    path = write_variant(lambda d: d["nodes"]["honey"].update(colour="gold"))
    for args in (["topology", "check", str(path)], ["topology", "capacity", "--topology", str(path)],
                 ["topology", "render", "nodes", "--topology", str(path)]):
        out = _cli(*args)
        assert out.returncode == 3, args
        assert out.stderr == (f"flywheel-runtime: {path}: nodes.honey.colour: expected no such key (known: role, "
                              "labels, taints, allocatable, schedulable, runner_target, scratch, other_pods), got 'gold'\n")
        assert out.stdout == ""


def test_import_and_load_stay_light() -> None:
    """Hooks load the topology before every job: no kubernetes, jsonschema or GPU stacks."""
    code = ("import sys, flywheel_runtime.topology as t; t.load(); "
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'kubernetes','jsonschema','wgpu','vulkan','pynvml','pydantic'})))")
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "flywheel_runtime.topology.loader" in imported and "yaml" in imported
    assert not {m for m in imported if m.split(".")[0] in {"kubernetes", "jsonschema", "wgpu", "vulkan", "pynvml"}}


def test_json_schema_is_shipped_and_accepts_the_topology(raw) -> None:
    import jsonschema

    shipped = json.loads(DEFAULT_TOPOLOGY.with_name("topology.schema.json").read_text())
    assert shipped == json_schema(), "topology.schema.json is stale: run `flywheel-runtime topology schema`"
    jsonschema.Draft202012Validator.check_schema(shipped)
    jsonschema.Draft202012Validator(shipped).validate(raw)


def test_cli_prints_the_schema() -> None:
    out = _cli("topology", "schema")
    assert out.returncode == 0 and json.loads(out.stdout) == json_schema()


BROKEN = {
    "unknown key": lambda d: d["nodes"]["honey"].update(colour="gold"),
    "bad cpu": lambda d: scale_set(d, "tinyland-nix")["containers"]["runner"]["limits"].update(cpu="four"),
    "negative cap": lambda d: scale_set(d, "tinyland-docker").update(max_runners=-1),
    "missing section": lambda d: d.pop("overlays"),
    "bad effect": lambda d: d["nodes"]["sting"]["taints"][0].update(effect="NoWay"),
    "bad cron": lambda d: d["warm_pools"]["business-hours"]["schedules"][0].update(cron="at noon"),
    "bad node name": lambda d: d["nodes"].update({"Wasp_1": d["nodes"]["bumble"]}),
    "bool as int": lambda d: d["nodes"]["honey"]["allocatable"].update(pods=True),
    "relative mount": lambda d: scale_set(d, "tinyland-nix-compute-expansion")["volumes"][0].update(mount_path="nix"),
    "unknown device": lambda d: d["runner_classes"]["tinyland-nix-gpu"].update(devices=["tpu"]),
    "wrong schema id": lambda d: d.update(schema="v2"),
    "unknown volume key": lambda d: scale_set(d, "tinyland-nix-compute-expansion")["volumes"][0].update(mode="rw"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_json_schema_and_validator_reject_the_same_variants(raw, name) -> None:
    import jsonschema

    data = copy.deepcopy(raw)
    BROKEN[name](data)
    with pytest.raises(TopologyError):
        load_data(data)
    assert list(jsonschema.Draft202012Validator(json_schema()).iter_errors(data))


ACCEPTED = {
    "defaults omitted": lambda d: [s.pop("namespace", None) for s in d["scale_sets"]],
    "affinity": lambda d: scale_set(d, "tinyland-nix").update(affinity=[{"match_expressions": [
        {"key": "capability.tinyland.dev/kvm", "operator": "In", "values": ["true"]}]}]),
    "numeric quantities": lambda d: d["nodes"]["honey"]["allocatable"].update(cpu=32, memory=236019190334),
    "explicit tolerations": lambda d: scale_set(d, "tinyland-docker").update(tolerations=[
        {"key": "dedicated.tinyland.dev/compute-expansion", "value": "true", "effect": "NoSchedule"}]),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_json_schema_and_validator_accept_the_same_variants(raw, name) -> None:
    import jsonschema

    data = copy.deepcopy(raw)
    ACCEPTED[name](data)
    load_data(data)
    assert not list(jsonschema.Draft202012Validator(json_schema()).iter_errors(data))
