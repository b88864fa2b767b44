from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel_runtime.probe import collect, to_env, to_markdown
from flywheel_runtime.probe.dri import probe_dri
from flywheel_runtime.probe.kvm import probe_kvm
from flywheel_runtime.probe.nvidia import probe_nvidia
from flywheel_runtime.probe.vulkan import icd_files, probe_vulkan

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "src/flywheel_runtime/probe/hints.schema.json"


@pytest.mark.kvm
def test_real_dev_kvm_is_usable() -> None:
    kvm = probe_kvm("/")
    assert kvm["present"] and kvm["char_device"] and kvm["device_number"] == "10:232"
    assert kvm["usable"], kvm["reason"]
    assert kvm["api_version"] == 12
    assert kvm["capabilities"]["user_memory"] == 1
    # These machines have no vmx/svm flag: reported, never the reason for a no.
    assert "vmx" not in kvm["cpu_flags"] and "svm" not in kvm["cpu_flags"]


def test_missing_kvm_under_root(captured_root: Path) -> None:
    kvm = probe_kvm(captured_root)
    assert not kvm["present"] and not kvm["usable"]
    assert kvm["reason"].startswith("/dev/kvm does not exist")
    assert kvm["cpu_flags"] == ["hypervisor"]


def test_wrong_device_number_is_not_kvm(captured_root: Path) -> None:
    os.mknod(captured_root / "dev" / "kvm", 0o666 | 0o020000, os.makedev(1, 3))  # /dev/null's numbers
    kvm = probe_kvm(captured_root)
    assert kvm["present"] and not kvm["usable"]
    assert kvm["reason"] == "/dev/kvm is not the KVM character device 10:232"


def test_crafted_dri_tree_is_reported_exactly(captured_root: Path) -> None:
    dri = probe_dri(captured_root)
    assert dri["present"]
    got = [{k: d[k] for k in ("path", "kind", "vendor_id", "device_id", "vendor", "driver", "pci_slot",
                              "boot_vga", "accessible")} for d in dri["devices"]]
    assert got == [
        {"path": "/dev/dri/card0", "kind": "card", "vendor_id": "0x10de", "device_id": "0x2684", "vendor": "NVIDIA",
         "driver": "nvidia", "pci_slot": "0000:01:00.0", "boot_vga": True, "accessible": True},
        {"path": "/dev/dri/card1", "kind": "card", "vendor_id": "0x1002", "device_id": "0x744c", "vendor": "AMD",
         "driver": "amdgpu", "pci_slot": "0000:06:00.0", "boot_vga": False, "accessible": True},
        {"path": "/dev/dri/renderD128", "kind": "render", "vendor_id": "0x10de", "device_id": "0x2684",
         "vendor": "NVIDIA", "driver": "nvidia", "pci_slot": "0000:01:00.0", "boot_vga": True, "accessible": True},
        {"path": "/dev/dri/renderD129", "kind": "render", "vendor_id": "0x1002", "device_id": "0x744c",
         "vendor": "AMD", "driver": "amdgpu", "pci_slot": "0000:06:00.0", "boot_vga": False, "accessible": True},
    ]


def test_no_dri_on_this_machine() -> None:
    dri = probe_dri("/")
    assert dri == {"present": False, "devices": [], "reason": "/dev/dri does not exist"}


def test_no_nvidia_here_reports_nvml_reason() -> None:
    nv = probe_nvidia()
    assert nv["present"] is False and nv["gpus"] == []
    assert nv["reason"].startswith("NVML: ") and "LibraryNotFound" in nv["reason"]


def test_vulkan_loader_and_lavapipe_icd_are_found() -> None:
    vk = probe_vulkan("/", deep=True)
    assert vk["loader"] == "/usr/lib/x86_64-linux-gnu/libvulkan.so.1"
    assert any("lvp_icd" in i["manifest"] for i in vk["icds"])
    assert isinstance(vk["devices"], list) and any(d["type"] == "cpu" for d in vk["devices"])


def test_vk_driver_files_override_standard_dirs(tmp_path: Path) -> None:
    f = tmp_path / "only.json"
    f.write_text('{"file_format_version": "1.0.0", "ICD": {"library_path": "libx.so", "api_version": "1.3.0"}}')
    assert icd_files("/", {"VK_DRIVER_FILES": str(f)}) == [f]
    assert icd_files("/", {"VK_ICD_FILENAMES": str(f)}) == [f]


def test_hints_document_matches_its_schema(captured_root: Path) -> None:
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text())
    for root in ("/", captured_root):
        doc = collect(root, environ={"FLYWHEEL_RUNNER_CLASS": "tinyland-nix-gpu", "FLYWHEEL_NODE_NAME": "honey"})
        jsonschema.validate(doc, schema)
    assert doc["runner"]["runner_class"] == "tinyland-nix-gpu" and doc["runner"]["node"] == "honey"


def test_env_and_markdown_formats(captured_root: Path) -> None:
    doc = collect(captured_root, environ={})
    env = dict(line.split("=", 1) for line in to_env(doc).splitlines())
    assert env["FLYWHEEL_DRI"] == "1" and env["FLYWHEEL_DRI_RENDER_NODES"] == "/dev/dri/renderD128,/dev/dri/renderD129"
    assert env["FLYWHEEL_KVM"] == "0"
    md = to_markdown(doc)
    assert md.startswith("### flywheel runtime hints") and "NVIDIA nvidia" in md


def test_hints_cli_formats() -> None:
    for fmt in ("json", "env", "markdown"):
        out = subprocess.run([sys.executable, "-m", "flywheel_runtime", "hints", "--format", fmt],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    doc = json.loads(subprocess.run([sys.executable, "-m", "flywheel_runtime", "hints"], capture_output=True,
                                    text=True).stdout)
    assert doc["schema"] == "flywheel.tinyland.dev/hints/v1"
