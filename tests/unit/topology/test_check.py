"""Every rule of the runner-scale contract guard, fed a broken variant."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flywheel_runtime.topology.check import check

from .conftest import published, scale_set

STING_TAINT = {"key": "dedicated.tinyland.dev/compute-expansion", "operator": "Equal", "value": "true",
               "effect": "NoSchedule"}


def lines(topo) -> list[str]:
    return [str(v) for v in check(topo)]


def test_shipped_topology_holds(topo) -> None:
    assert lines(topo) == []


def test_cli_exit_0_on_shipped() -> None:
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ""


def _unpin(d):
    s = scale_set(d, "tinyland-nix")
    del s["node"]


@pytest.mark.parametrize("mutate,expected", [
    # An unpinned lane with no selector can land anywhere, bumble included once uncordoned.
    (_unpin, ["check: no-storage-node: scale set tinyland-nix: selector {} can land on bumble, "
              "which is never a default runner target"]),
    (lambda d: d["gitlab_runners"][0].update(node="bumble"),
     ["check: no-storage-node: gitlab runner docker: selector {kubernetes.io/hostname=bumble} can land on bumble, "
      "which is never a default runner target"]),
    (lambda d: scale_set(d, "tinyland-nix-kvm").update(node=None, node_selector={"capability.tinyland.dev/kvm": "true"}),
     []),  # the kvm label excludes bumble: allowed
])
def test_rule_no_storage_node(variant, mutate, expected) -> None:
    got = [line for line in lines(variant(mutate)) if "no-storage-node" in line]
    assert got == expected


def test_rule_sting_lane_needs_exact_toleration(variant) -> None:
    def strip(d):
        scale_set(d, "tinyland-docker")["tolerations"] = []

    assert lines(variant(strip)) == [
        "check: taint-toleration: scale set tinyland-docker: placed on sting but lacks the exact toleration "
        "dedicated.tinyland.dev/compute-expansion=true:NoSchedule"]


def test_rule_sting_lane_exists_toleration_is_not_exact(variant) -> None:
    def loose(d):
        scale_set(d, "tinyland-docker")["tolerations"] = [
            {"key": "dedicated.tinyland.dev/compute-expansion", "operator": "Exists", "effect": "NoSchedule"}]

    assert lines(variant(loose)) == [
        "check: taint-toleration: scale set tinyland-docker: placed on sting but lacks the exact toleration "
        "dedicated.tinyland.dev/compute-expansion=true:NoSchedule"]


def test_rule_orphan_toleration(variant) -> None:
    def extra(d):
        scale_set(d, "tinyland-nix")["tolerations"] = [
            {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]

    assert lines(variant(extra)) == [
        "check: orphan-toleration: scale set tinyland-nix: tolerates nvidia.com/gpu=present:NoSchedule, "
        "which no node carries"]


def test_rule_label_identity(variant) -> None:
    def owner(d):
        s = scale_set(d, "jess-nix-heavy")
        s["labels"] = published(d, s) + ["tinyland-nix-jess"]

    assert lines(variant(owner)) == [
        "check: label-identity: scale set jess-nix-heavy: label 'tinyland-nix-jess' encodes owner or repository 'jess'"]


def test_rule_label_identity_catches_repository_names(variant) -> None:
    def repo(d):
        d["overlays"]["tinyland"]["github_config_url"] = "https://github.com/tinyland-inc/lab"
        s = scale_set(d, "tinyland-nix")
        s["labels"] = published(d, s) + ["lab-runner"]

    assert lines(variant(repo)) == [
        "check: label-identity: scale set tinyland-nix: label 'lab-runner' encodes owner or repository 'lab'"]


def test_rule_label_taxonomy(variant) -> None:
    def odd(d):
        s = scale_set(d, "tinyland-docker")
        s["labels"] = published(d, s) + ["tinyland-docker-turbo"]

    assert lines(variant(odd)) == [
        "check: label-taxonomy: scale set tinyland-docker: label 'tinyland-docker-turbo' is outside the label taxonomy"]


def test_rule_label_taxonomy_covers_runner_class_tags(variant) -> None:
    def turbo(d):
        d["runner_classes"]["tinyland-docker"]["tags"].append("turbo")

    assert lines(variant(turbo)) == [
        "check: label-taxonomy: scale set tinyland-docker: label 'turbo' is outside the label taxonomy"]


def test_rule_envelope_fit(variant) -> None:
    def huge(d):
        scale_set(d, "tinyland-nix-compute-expansion")["containers"]["runner"]["requests"]["ephemeral-storage"] = "80Gi"

    assert lines(variant(huge)) == [
        "check: envelope-fit: scale set tinyland-nix-compute-expansion: requests do not fit sting's allocatable "
        "even once: ephemeral-storage 80.00Gi > 66.32Gi",
        "check: scratch-claims: scale set tinyland-nix-compute-expansion: container runner requests 80.00Gi of "
        "sting's root ephemeral-storage (at most 2.00Gi: scratch goes through claims of "
        "local-path-sting-fast-ephemeral)"]


def test_rule_envelope_fit_counts_the_dind_sidecar(variant) -> None:
    def big_daemon(d):
        scale_set(d, "tinyland-dind-compute-expansion")["containers"]["dind"]["requests"]["ephemeral-storage"] = "66Gi"

    assert lines(variant(big_daemon)) == [
        "check: envelope-fit: scale set tinyland-dind-compute-expansion: requests do not fit sting's allocatable "
        "even once: ephemeral-storage 66.50Gi > 66.32Gi",
        "check: scratch-claims: scale set tinyland-dind-compute-expansion: container dind requests 66.00Gi of "
        "sting's root ephemeral-storage (at most 2.00Gi: scratch goes through claims of "
        "local-path-sting-fast-ephemeral)"]


def test_rule_unknown_label(variant) -> None:
    def orphan(d):
        s = scale_set(d, "tinyland-docker")
        s["label"] = "tinyland-docker-privileged"
        s["labels"] = ["tinyland-docker-privileged", "self-hosted", "docker", "linux"]

    assert lines(variant(orphan)) == [
        "check: unknown-label: scale set tinyland-docker: publishes 'tinyland-docker-privileged', "
        "which no GitHub runner class defines"]


def test_rule_unknown_label_for_extra_class_shaped_labels(variant) -> None:
    def extra(d):
        s = scale_set(d, "tinyland-docker")
        s["labels"] = published(d, s) + ["tinyland-docker-privileged"]

    assert lines(variant(extra)) == [
        "check: unknown-label: scale set tinyland-docker: publishes 'tinyland-docker-privileged', "
        "which no GitHub runner class defines"]


def test_rule_unknown_label_rejects_a_gitlab_class(variant) -> None:
    def gitlab(d):
        s = scale_set(d, "tinyland-docker")
        s["label"] = "docker"
        s["labels"] = ["docker", "self-hosted", "linux"]

    assert lines(variant(gitlab)) == [
        "check: unknown-label: scale set tinyland-docker: publishes 'docker', which no GitHub runner class defines"]


def test_rule_unknown_label_class_missing_from_published_labels(variant) -> None:
    def drop(d):
        s = scale_set(d, "tinyland-nix-gpu")
        s["labels"] = [x for x in published(d, s) if x != "tinyland-nix-gpu"]

    assert lines(variant(drop)) == [
        "check: unknown-label: scale set tinyland-nix-gpu: runner class 'tinyland-nix-gpu' is missing from its "
        "published labels"]


def test_rule_no_storage_node_respects_affinity(variant) -> None:
    def away(d):
        s = scale_set(d, "tinyland-nix")
        del s["node"]
        s["affinity"] = [{"match_expressions": [
            {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["bumble", "sting"]}]}]

    assert lines(variant(away)) == []

    def towards(d):
        s = scale_set(d, "tinyland-nix")
        del s["node"]
        s["affinity"] = [{"match_expressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["honey", "bumble"]}]}]

    assert lines(variant(towards)) == [
        "check: no-storage-node: scale set tinyland-nix: selector {} can land on bumble, "
        "which is never a default runner target",
        "check: baseline-node: scale set tinyland-nix: baseline tinyland-nix lane placed on honey, bumble; "
        "it must stay on honey"]


def test_rule_gitlab_lane_on_sting_needs_the_toleration(variant) -> None:
    def placement(topo) -> list[str]:  # gitlab-hpa keeps them on honey: its own test
        return [x for x in lines(topo) if "gitlab-hpa" not in x]

    assert placement(variant(lambda d: d["gitlab_runners"][2].update(node="sting"))) == []  # derived from the node

    def strip(d):
        d["gitlab_runners"][2].update(node="sting", tolerations=[])

    assert placement(variant(strip)) == [
        "check: taint-toleration: gitlab runner nix: placed on sting but lacks the exact toleration "
        "dedicated.tinyland.dev/compute-expansion=true:NoSchedule"]


def test_rule_taint_toleration_multi_node_lanes(variant) -> None:
    def kvm_anywhere(d):
        s = scale_set(d, "tinyland-nix-kvm")
        del s["node"]
        s["node_selector"] = {"capability.tinyland.dev/kvm": "true"}

    # Aimed at honey and sting without tolerating sting: it simply stays on honey.
    assert lines(variant(kvm_anywhere)) == []

    def loosely(d):
        kvm_anywhere(d)
        scale_set(d, "tinyland-nix-kvm")["tolerations"] = [
            {"key": "dedicated.tinyland.dev/compute-expansion", "operator": "Exists"}]

    assert lines(variant(loosely)) == [
        "check: taint-toleration: scale set tinyland-nix-kvm: placed on sting but lacks the exact toleration "
        "dedicated.tinyland.dev/compute-expansion=true:NoSchedule",
        # ... and once it can land on sting, its 64Gi root request breaks sting's scratch contract.
        "check: scratch-claims: scale set tinyland-nix-kvm: container runner requests 64.00Gi of sting's root "
        "ephemeral-storage (at most 2.00Gi: scratch goes through claims of local-path-sting-fast-ephemeral)"]


def test_rule_envelope_fit_on_gitlab_runner(variant) -> None:
    def fat(d):
        d["gitlab_runners"][1]["containers"]["runner"]["requests"]["cpu"] = "33"

    assert lines(variant(fat)) == [
        "check: envelope-fit: gitlab runner dind: requests do not fit honey's allocatable even once: cpu 33 > 32"]


def test_cli_prints_one_line_per_violation_and_exits_1(write_variant) -> None:
    def two(d):
        scale_set(d, "tinyland-docker")["tolerations"] = []
        scale_set(d, "tinyland-dind-compute-expansion")["tolerations"] = []

    path = write_variant(two)
    for how in ([str(path)], ["--topology", str(path)]):
        out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "check", *how],
                             capture_output=True, text=True)
        assert out.returncode == 1
        # the root-jobs note first (one line, not a violation), then the count
        note, count = out.stderr.splitlines()
        assert note.startswith("check: note: root-jobs: 10 of 10 scale sets run jobs as uid 0 ")
        assert count == f"{path}: 2 violation(s) of the runner-scale contract"
        assert out.stdout.splitlines() == [
            "check: taint-toleration: scale set tinyland-docker: placed on sting but lacks the exact toleration "
            "dedicated.tinyland.dev/compute-expansion=true:NoSchedule",
            "check: taint-toleration: scale set tinyland-dind-compute-expansion: placed on sting but lacks the exact "
            "toleration dedicated.tinyland.dev/compute-expansion=true:NoSchedule",
        ]


# --- baseline-node, scratch-claims, listener-placement, dind-envelope --------


def test_rule_baseline_nix_and_dind_stay_on_honey(variant) -> None:
    def move(d):
        scale_set(d, "tinyland-nix").update(node="sting")
        scale_set(d, "tinyland-dind").update(node="sting")

    got = [line for line in lines(variant(move)) if "baseline-node" in line]
    assert got == [
        "check: baseline-node: scale set tinyland-nix: baseline tinyland-nix lane placed on sting; it must stay on honey",
        "check: baseline-node: scale set tinyland-dind: baseline tinyland-dind lane placed on sting; "
        "it must stay on honey"]


def test_rule_baseline_node_only_overflow_sets_leave(variant) -> None:
    def not_overflow(d):
        scale_set(d, "tinyland-nix-compute-expansion")["overflow"] = False

    assert lines(variant(not_overflow)) == [
        "check: baseline-node: scale set tinyland-nix-compute-expansion: baseline tinyland-nix lane placed on "
        "sting; it must stay on honey"]


def test_rule_baseline_node_overflow_needs_a_baseline(variant) -> None:
    assert [line for line in lines(variant(lambda d: scale_set(d, "tinyland-docker").update(overflow=True)))
            if "baseline-node" in line] == [
        "check: baseline-node: scale set tinyland-docker: is an overflow lane, but runner class 'tinyland-docker' "
        "has no baseline node"]


def test_rule_sting_lane_keeps_root_requests_small(variant) -> None:
    def big_root(d):
        scale_set(d, "tinyland-dind-compute-expansion")["containers"]["dind"]["requests"]["ephemeral-storage"] = "24Gi"

    assert lines(variant(big_root)) == [
        "check: scratch-claims: scale set tinyland-dind-compute-expansion: container dind requests 24.00Gi of "
        "sting's root ephemeral-storage (at most 2.00Gi: scratch goes through claims of "
        "local-path-sting-fast-ephemeral)"]


def test_rule_sting_overflow_lane_reserves_scratch_through_claims(variant) -> None:
    def no_claims(d):
        scale_set(d, "tinyland-dind-compute-expansion")["volumes"] = []

    assert lines(variant(no_claims)) == [
        "check: scratch-claims: scale set tinyland-dind-compute-expansion: overflow lane on sting reserves no "
        "local-path-sting-fast-ephemeral claim at /home/runner/_work",
        "check: scratch-claims: scale set tinyland-dind-compute-expansion: overflow lane on sting reserves no "
        "local-path-sting-fast-ephemeral claim at /var/lib/docker"]


def test_rule_listener_needs_placement(variant) -> None:
    assert lines(variant(lambda d: d["arc"]["listeners"].pop("node"))) == [
        f"check: listener-placement: listener {name}: has no placement (no listenerTemplate: it lands wherever "
        "the scheduler likes, uncounted)"
        for name in ("tinyland-nix", "tinyland-nix-compute-expansion", "tinyland-dind",
                     "tinyland-dind-compute-expansion", "tinyland-nix-operator", "tinyland-nix-heavy",
                     "jess-nix-heavy", "tinyland-nix-kvm", "tinyland-nix-gpu")]


def test_rule_jess_listener_stays_on_honey(variant) -> None:
    # On sting with the toleration: allowed for Docker's (it goes with its runners), not for Jess's.
    assert lines(variant(lambda d: scale_set(d, "jess-nix-heavy").update(listener={"node": "sting"}))) == [
        "check: listener-placement: listener jess-nix-heavy: can land on sting: listeners go with their runners "
        "(honey) or with the controller (honey)",
        "check: listener-placement: listener jess-nix-heavy: overlay jess pins its listeners to honey, but it "
        "lands on sting"]


def test_rule_docker_listener_on_sting_needs_the_toleration(variant) -> None:
    def strip(d):
        scale_set(d, "tinyland-docker")["listener"] = {"node": "sting", "tolerations": []}

    assert lines(variant(strip)) == [
        "check: taint-toleration: listener tinyland-docker: placed on sting but lacks the exact toleration "
        "dedicated.tinyland.dev/compute-expansion=true:NoSchedule"]


def test_rule_controller_is_a_checked_lane(variant) -> None:
    assert lines(variant(lambda d: d["arc"]["controller"].update(node="bumble"))) == [
        "check: no-storage-node: arc controller: selector {kubernetes.io/hostname=bumble} can land on bumble, "
        "which is never a default runner target",
        "check: listener-placement: listener tinyland-nix-compute-expansion: can land on honey: listeners go with "
        "their runners (sting) or with the controller (bumble)",
        "check: listener-placement: listener tinyland-dind-compute-expansion: can land on honey: listeners go with "
        "their runners (sting) or with the controller (bumble)"]


def test_rule_dind_daemon_needs_an_envelope(variant) -> None:
    def bare(d):
        scale_set(d, "tinyland-dind")["containers"]["dind"] = {
            "requests": {"ephemeral-storage": "24Gi"}, "limits": {"ephemeral-storage": "40Gi"}}

    assert lines(variant(bare)) == [
        "check: dind-envelope: scale set tinyland-dind: daemon container dind has no request cpu, request memory, "
        "limit cpu, limit memory"]


def test_rule_device_class_refuses_an_undeclared_device_class(variant) -> None:
    topo = variant(lambda d: scale_set(d, "tinyland-nix").update(runtime_class="flywheel-kvm"))
    assert [x for x in lines(topo) if "device-class" in x] == [
        "check: device-class: scale set tinyland-nix: names RuntimeClass flywheel-kvm (device kvm), but runner class "
        "tinyland-nix declares no device: the device admission policy refuses its pods"]
    topo = variant(lambda d: scale_set(d, "tinyland-nix-gpu").update(runtime_class="flywheel-dri-cards"))
    assert [x for x in lines(topo) if "device-class" in x] == [
        "check: device-class: scale set tinyland-nix-gpu: names RuntimeClass flywheel-dri-cards (device dri), but "
        "runner class tinyland-nix-gpu declares dri: the device admission policy refuses its pods"]
    topo = variant(lambda d: scale_set(d, "tinyland-nix-kvm").update(runtime_class="gvisor"))
    assert [x for x in lines(topo) if "device-class" in x] == [
        "check: device-class: scale set tinyland-nix-kvm: declares kvm but names RuntimeClass gvisor: its pods would "
        "not get the device (its class is flywheel-kvm)"]
    # its own class, written out, or a non-device class on a lane without devices: fine
    assert lines(variant(lambda d: scale_set(d, "tinyland-nix-kvm").update(runtime_class="flywheel-kvm"))) == []
    assert lines(variant(lambda d: scale_set(d, "tinyland-nix").update(runtime_class="gvisor"))) == []


def test_rule_device_node_needs_the_capability_label(variant) -> None:
    topo = variant(lambda d: d["nodes"]["honey"]["labels"].pop("capability.tinyland.dev/dri"))
    assert [x for x in lines(topo) if "device-node" in x] == [
        "check: device-node: scale set tinyland-nix-gpu: declares dri but can land on honey, which lacks "
        "capability.tinyland.dev/dri=true (RuntimeClass flywheel-dri would leave its pods Pending)"]


def test_rule_api_server_for_the_managed_apply_lanes(variant) -> None:
    topo = variant(lambda d: d["runner_classes"]["tinyland-nix-heavy"].pop("api_server"))
    assert [x for x in lines(topo) if "api-server" in x] == [
        "check: api-server: runner class tinyland-nix-heavy: the managed apply runs on it, but it lacks "
        "api_server: true (its jobs could not reach the API server)"]


def _gitlab(d, name: str) -> dict:
    return next(g for g in d["gitlab_runners"] if g["name"] == name)


def test_rule_gitlab_hpa_holds_the_document(variant) -> None:
    def mutate(d) -> None:
        _gitlab(d, "docker").update(min_replicas=0, cpu_target_percent=80)
        _gitlab(d, "dind").pop("memory_target_percent")
        _gitlab(d, "dind")["scale_down_stabilization_s"] = 60
        _gitlab(d, "nix").update(namespace="ci", node="sting")
        d["runner_classes"]["nix"].pop("executor")

    assert [x for x in lines(variant(mutate)) if "gitlab-hpa" in x] == [
        "check: gitlab-hpa: gitlab runner docker: min replicas 0; the document keeps 1 always on",
        "check: gitlab-hpa: gitlab runner docker: CPU target 80%; the document's is 70%",
        "check: gitlab-hpa: gitlab runner dind: no memory target; the document scales on CPU and memory",
        "check: gitlab-hpa: gitlab runner dind: scale-down window 60 s; the document's is 300 s",
        "check: gitlab-hpa: gitlab runner nix: in ci; the document's namespace is gitlab-runners",
        "check: gitlab-hpa: gitlab runner nix: on sting; the document places GitLab runners on honey",
        "check: gitlab-hpa: gitlab runner nix: its runner class nix names no executor (the chart's runners.config)",
    ]


def test_cli_notes_the_lanes_that_run_jobs_as_root(write_variant) -> None:
    path = write_variant(lambda d: scale_set(d, "tinyland-docker").update(run_as_user=1001))
    out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "topology", "check", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "", out.stdout + out.stderr
    (note,) = [ln for ln in out.stderr.splitlines() if ln.startswith("check: note: root-jobs:")]
    assert note == ("check: note: root-jobs: 9 of 10 scale sets run jobs as uid 0 (capabilities kept: CHOWN, "
                    "DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID): tinyland-nix, tinyland-nix-compute-expansion, "
                    "tinyland-dind, tinyland-dind-compute-expansion, tinyland-nix-operator, tinyland-nix-heavy, "
                    "jess-nix-heavy, tinyland-nix-kvm, tinyland-nix-gpu")
