"""Device lanes: the RuntimeClass (and its containerd handler) that hands a
runner pod exactly the host devices its lane declares.

The data is ``devices.yaml`` beside the topology; this module turns it into
the RuntimeClass objects, the per-handler base OCI spec (containerd's default
spec plus the devices and their cgroup allowances) and the containerd config
that registers the handler, for kind's nodes and for RKE2's.

``python -m flywheel_runtime.topology.devices spec kvm < default.json`` prints
the base spec (feed it ``ctr oci spec``); ``... containerd kvm --spec PATH``
prints the config block.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from flywheel_runtime.errors import BuildError, TopologyError

if TYPE_CHECKING:
    from flywheel_runtime.topology.model import Topology

DATA = Path(__file__).with_name("devices.yaml")
FILE_MODE = 0o666  # any uid in the pod (the runner runs as 0 or 1001)
# containerd's CRI plugin in the v2 config format (what kind's and RKE2's templates use).
CRI_PLUGIN = 'plugins."io.containerd.grpc.v1.cri".containerd.runtimes'
SPEC_DIR = "/etc/containerd"


@dataclass(frozen=True)
class Device:
    path: str
    type: str
    major: int
    minor: int
    card: bool = False  # a DRM card (display, mode-setting): only for a lane that asks for cards


@dataclass(frozen=True)
class DeviceClass:
    device: str  # the topology's device name (kvm, dri)
    runtime_class: str
    all_devices: tuple[Device, ...]
    node_label: str  # nodes with the handler carry it ("true"): the class's scheduling.nodeSelector
    cards: bool = False  # the variant that also hands out card nodes

    @property
    def devices(self) -> tuple[Device, ...]:
        """What a pod of this class gets: card nodes only in the cards variant."""
        return tuple(d for d in self.all_devices if self.cards or not d.card)

    @property
    def handler(self) -> str:
        return self.runtime_class

    @property
    def spec_path(self) -> str:
        """Where the handler's base spec lives on a node."""
        return f"{SPEC_DIR}/{self.handler}-spec.json"

    def with_cards(self) -> DeviceClass:
        """The class a lane asking for cards runs under (its own RuntimeClass and handler)."""
        return dataclasses.replace(self, runtime_class=f"{self.runtime_class}-cards", cards=True)


def load(path: Path = DATA) -> dict[str, DeviceClass]:
    doc = yaml.safe_load(path.read_text())
    out = {}
    for name, d in doc.items():
        try:
            out[name] = DeviceClass(name, d["runtime_class"],
                                    tuple(Device(x["path"], x["type"], int(x["major"]), int(x["minor"]),
                                                 bool(x.get("card", False)))
                                          for x in d["devices"]), d["node_label"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TopologyError(f"{path}: device {name!r} needs runtime_class, node_label and devices "
                                f"[{{path, type, major, minor}}]: {exc}") from None
    return out


def lane_class(devices: frozenset[str] | set[str], cards: bool = False) -> DeviceClass | None:
    """The device class a lane declaring ``devices`` runs under (None without devices);
    ``cards``: its runner class asks for DRM card nodes too (``dri_cards``)."""
    if not devices:
        return None
    classes = load()
    unknown = sorted(set(devices) - set(classes))
    if unknown:
        raise TopologyError(f"{DATA}: no device class for {', '.join(unknown)}")
    if len(devices) > 1:
        # One pod has one RuntimeClass: a lane needing two devices needs its own class.
        raise TopologyError(f"{DATA}: a lane declares {', '.join(sorted(devices))}; add one class carrying both")
    dc = classes[next(iter(devices))]
    return dc.with_cards() if cards and any(d.card for d in dc.all_devices) else dc


def runtime_class_for(devices: frozenset[str] | set[str], cards: bool = False) -> str | None:
    """The RuntimeClass a lane declaring ``devices`` runs under (None without devices)."""
    dc = lane_class(devices, cards)
    return dc.runtime_class if dc else None


def of_scale_set(ss: Any) -> DeviceClass | None:
    """The device class scale set ``ss`` runs under."""
    return lane_class(ss.devices, ss.dri_cards)


def used(topo: Topology) -> list[DeviceClass]:
    """The device classes some scale set of ``topo`` runs under, in devices.yaml order."""
    wanted = {dc for ss in topo.scale_sets if (dc := of_scale_set(ss)) is not None}
    return sorted(wanted, key=lambda c: (list(load()).index(c.device), c.cards))


def lanes(topo: Topology, dc: DeviceClass) -> list[Any]:
    """The scale sets that run under ``dc``: the only pods its admission policy lets in."""
    return [ss for ss in topo.scale_sets if of_scale_set(ss) == dc]


def runtime_classes(topo: Topology) -> list[dict[str, Any]]:
    """node.k8s.io/v1 RuntimeClass objects for the device lanes.  The scheduling
    nodeSelector is merged into every pod of the class: such a pod cannot land
    on a node without the handler (and its devices)."""
    return [{"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
             "metadata": {"name": c.runtime_class, "labels": {"flywheel.tinyland.dev/device": c.device}},
             "handler": c.handler,
             "scheduling": {"nodeSelector": {c.node_label: "true"}}} for c in used(topo)]


def base_spec(default: dict[str, Any], dc: DeviceClass) -> dict[str, Any]:
    """containerd's default spec with ``dc``'s devices created and allowed (rwm)."""
    spec = copy.deepcopy(default)
    linux = spec.setdefault("linux", {})
    devs = linux.setdefault("devices", [])
    allow = linux.setdefault("resources", {}).setdefault("devices", [])
    for d in dc.devices:
        devs.append({"path": d.path, "type": d.type, "major": d.major, "minor": d.minor,
                     "fileMode": FILE_MODE, "uid": 0, "gid": 0})
        allow.append({"allow": True, "type": d.type, "major": d.major, "minor": d.minor, "access": "rwm"})
    return spec


def containerd_config(dc: DeviceClass, spec_path: str | None = None, *, systemd_cgroup: bool = True) -> str:
    """The config block registering ``dc``'s handler (runc, like the default runtime)."""
    key = f"{CRI_PLUGIN}.{dc.handler}"
    return (f"[{key}]\n  runtime_type = \"io.containerd.runc.v2\"\n"
            f"  base_runtime_spec = \"{spec_path or dc.spec_path}\"\n"
            f"[{key}.options]\n  SystemdCgroup = {'true' if systemd_cgroup else 'false'}\n")


def default_spec(ctr: Path) -> dict[str, Any]:
    """``ctr oci spec``: containerd's own default spec (the handler's starting point)."""
    proc = subprocess.run([str(ctr), "oci", "spec"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{ctr} oci spec failed: {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout)


def kind_node_setup(topo: Topology, spec_dir: Path, ctr: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """kind: containerd config patches and the extraMounts carrying each base spec into every node.

    Every node gets every handler: containerd reads the base specs at start."""
    spec_dir.mkdir(parents=True, exist_ok=True)
    default = default_spec(ctr) if used(topo) else {}
    patches, mounts = [], []
    for dc in used(topo):
        host = spec_dir / f"{dc.handler}-spec.json"
        host.write_text(json.dumps(base_spec(default, dc), indent=2) + "\n")
        patches.append(containerd_config(dc))
        mounts.append({"hostPath": str(host), "containerPath": dc.spec_path, "readOnly": True})
    return patches, mounts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flywheel_runtime.topology.devices",
                                description="The node side of a device lane: base spec and containerd config.")
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("spec", help="base OCI spec for DEVICE from containerd's default spec on stdin")
    s.add_argument("device")
    c = sub.add_parser("containerd", help="containerd (v2 config) block registering DEVICE's handler")
    c.add_argument("device")
    c.add_argument("--spec", help="base spec path on the node (default /etc/containerd/<handler>-spec.json)")
    c.add_argument("--cgroupfs", action="store_true", help="the node's runc uses cgroupfs, not systemd")
    for q in (s, c):
        q.add_argument("--cards", action="store_true",
                       help="the class variant that also hands out DRM card nodes (<class>-cards)")
    a = p.parse_args(argv)
    classes = load()
    if a.device not in classes:
        print(f"flywheel-runtime: no device class {a.device!r} (known: {', '.join(classes)})", file=sys.stderr)
        return 2
    dc = classes[a.device].with_cards() if a.cards else classes[a.device]
    if a.what == "spec":
        sys.stdout.write(json.dumps(base_spec(json.load(sys.stdin), dc), indent=2) + "\n")
    else:
        sys.stdout.write(containerd_config(dc, a.spec, systemd_cgroup=not a.cgroupfs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
