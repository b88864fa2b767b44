"""topology.devices: device lanes get exactly their devices through a RuntimeClass."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flywheel_runtime.errors import TopologyError
from flywheel_runtime.topology import devices, load

DEFAULT = {"ociVersion": "1.3.0", "process": {"capabilities": {"bounding": ["CAP_CHOWN"]}},
           "linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}]}}}


def test_every_declared_device_has_a_class() -> None:
    topo = load()
    declared = {d for ss in topo.scale_sets for d in ss.devices}
    assert declared == {"kvm", "dri"}
    assert {c.device for c in devices.used(topo)} == declared
    assert devices.runtime_class_for(frozenset({"kvm"})) == "flywheel-kvm"
    assert devices.runtime_class_for(frozenset()) is None


def test_two_devices_in_one_lane_need_their_own_class() -> None:
    with pytest.raises(TopologyError, match="add one class carrying both"):
        devices.runtime_class_for(frozenset({"kvm", "dri"}))
    with pytest.raises(TopologyError, match="no device class for tpu"):
        devices.runtime_class_for(frozenset({"tpu"}))


def test_base_spec_adds_the_device_after_the_default_deny() -> None:
    kvm = devices.load()["kvm"]
    spec = devices.base_spec(DEFAULT, kvm)
    allow = spec["linux"]["resources"]["devices"]
    # runc applies rules in order: the deny-all stays first, the allowance after it
    assert allow == [{"allow": False, "access": "rwm"},
                     {"allow": True, "type": "c", "major": 10, "minor": 232, "access": "rwm"}]
    assert spec["linux"]["devices"] == [{"path": "/dev/kvm", "type": "c", "major": 10, "minor": 232,
                                         "fileMode": 0o666, "uid": 0, "gid": 0}]
    assert spec["process"] == DEFAULT["process"]  # no capability added
    assert DEFAULT["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]  # input untouched


def test_containerd_block_names_handler_and_spec() -> None:
    dri = devices.load()["dri"]
    text = devices.containerd_config(dri)
    assert '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.flywheel-dri]' in text
    assert 'base_runtime_spec = "/etc/containerd/flywheel-dri-spec.json"' in text
    assert "SystemdCgroup = true" in text
    assert "SystemdCgroup = false" in devices.containerd_config(dri, systemd_cgroup=False)


def test_cli_prints_the_node_step() -> None:
    run = subprocess.run([sys.executable, "-m", "flywheel_runtime.topology.devices", "spec", "kvm"],
                         input=json.dumps(DEFAULT), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["linux"]["devices"][0]["path"] == "/dev/kvm"
    run = subprocess.run([sys.executable, "-m", "flywheel_runtime.topology.devices", "containerd", "kvm",
                          "--spec", "/var/lib/rancher/rke2/agent/etc/containerd/flywheel-kvm-spec.json"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and "rke2/agent/etc/containerd/flywheel-kvm-spec.json" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "flywheel_runtime.topology.devices", "spec", "tpu"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("flywheel-runtime: no device class 'tpu'")
