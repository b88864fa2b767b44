from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from flywheel_runtime.probe import SCHEMA_FILE, collect, env_pairs, probe_nix, to_env, to_markdown
from flywheel_runtime.probe.dri import probe_dri
from flywheel_runtime.probe.kvm import CAPABILITIES, nested, probe_kvm
from flywheel_runtime.probe.nvidia import LIBRARY_NOT_FOUND, probe_nvidia
from flywheel_runtime.probe.vulkan import icd_files, icd_search_dirs, probe_vulkan
from tests.unit.probe.tree import CARDS, as_nobody, make_root

REPO = Path(__file__).resolve().parents[3]
HAVE_KVM = os.path.exists("/dev/kvm")
SCHEMA = json.loads(Path(SCHEMA_FILE).read_text())


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flywheel_runtime", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


# --- KVM -------------------------------------------------------------------


def test_capability_numbers_match_linux_kvm_h() -> None:
    header = Path("/usr/include/linux/kvm.h")
    if not header.exists():
        pytest.skip("linux/kvm.h not installed (linux-libc-dev)")
    text = header.read_text()
    for name, number in CAPABILITIES.items():
        assert f"#define KVM_CAP_{name.upper()} " in text.replace("\t", " ")
        line = next(ln for ln in text.replace("\t", " ").splitlines() if ln.startswith(f"#define KVM_CAP_{name.upper()} "))
        assert int(line.split()[2]) == number, line


@pytest.mark.kvm
def test_real_dev_kvm_is_usable() -> None:
    kvm = probe_kvm("/")
    assert kvm["present"] and kvm["char_device"] and kvm["device_number"] == "10:232"
    assert kvm["usable"], kvm["reason"]
    assert kvm["reason"] is None and kvm["api_version"] == 12 and kvm["accessible"]
    assert kvm["access_via"] == "root" and kvm["group"] == "root"
    assert kvm["capabilities"]["user_memory"] == 1 and kvm["capabilities"]["max_vcpus"] >= 1
    assert kvm["vcpu_mmap_size"] >= 4096
    # These machines have no vmx/svm flag: reported, never the reason for a no.
    assert "vmx" not in kvm["cpu_flags"] and "svm" not in kvm["cpu_flags"]


@pytest.mark.kvm
def test_kvm_closed_to_other_users_is_reported_with_its_group() -> None:
    st = os.stat("/dev/kvm")
    if st.st_mode & 0o006 == 0o006:
        pytest.skip("/dev/kvm is world read-write here")
    kvm = as_nobody(probe_kvm, "/")
    assert kvm["present"] and not kvm["accessible"] and not kvm["usable"]
    assert kvm["access_via"] is None
    assert kvm["reason"].startswith("/dev/kvm is not openable read-write by uid 65534: Permission denied")
    assert f"owner group {kvm['group']}" in kvm["reason"]


@pytest.mark.kvm
def test_mknod_kvm_node_under_root_is_probed_for_real(captured_root: Path) -> None:
    # A node made 10:232 *is* the host's KVM device: usable only because the ioctls answer.
    os.mknod(captured_root / "dev" / "kvm", stat.S_IFCHR | 0o600, os.makedev(10, 232))
    kvm = probe_kvm(captured_root)
    assert kvm["usable"] and kvm["api_version"] == 12, kvm["reason"]
    assert kvm["cpu_flags"] == ["hypervisor"]  # read from the tree, not the host


def test_regular_file_kvm_in_a_captured_tree_is_not_usable(captured_root: Path) -> None:
    (captured_root / "dev" / "kvm").write_text("")
    kvm = probe_kvm(captured_root)
    assert kvm["present"] and kvm["char_device"] is False and not kvm["usable"] and not kvm["accessible"]
    assert kvm["reason"] == ("/dev/kvm is a regular file, not the KVM character device 10:232 "
                             "(a captured tree cannot answer KVM ioctls)")


def test_missing_kvm_under_root(captured_root: Path) -> None:
    kvm = probe_kvm(captured_root)
    assert not kvm["present"] and not kvm["usable"]
    assert kvm["reason"] == "/dev/kvm does not exist (no KVM in this pod: host passthrough missing?)"
    assert kvm["cpu_flags"] == ["hypervisor"]


def test_wrong_device_number_is_not_kvm(captured_root: Path) -> None:
    os.mknod(captured_root / "dev" / "kvm", stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers
    kvm = probe_kvm(captured_root)
    assert kvm["present"] and not kvm["usable"] and kvm["device_number"] == "1:3"
    assert kvm["reason"] == "/dev/kvm is character device 1:3, not the KVM character device 10:232"


def test_vmx_flag_alone_never_makes_kvm_usable(captured_root: Path) -> None:
    (captured_root / "proc" / "cpuinfo").write_text("flags\t\t: fpu vmx svm lm\n")
    kvm = probe_kvm(captured_root)
    assert kvm["cpu_flags"] == ["svm", "vmx"] and not kvm["usable"]


@pytest.mark.parametrize("module,value,enabled", [("kvm_intel", "Y", True), ("kvm_intel", "N", False),
                                                  ("kvm_amd", "1", True), ("kvm_amd", "0", False)])
def test_nested_reads_both_vendor_spellings(tmp_path: Path, module: str, value: str, enabled: bool) -> None:
    p = tmp_path / "sys" / "module" / module / "parameters"
    p.mkdir(parents=True)
    (p / "nested").write_text(value + "\n")
    assert nested(tmp_path) == {"module": module, "value": value, "enabled": enabled}
    assert nested(tmp_path / "nothing") == {"module": None, "value": None, "enabled": None}


# --- DRI -------------------------------------------------------------------


def test_crafted_dri_tree_is_reported_exactly(captured_root: Path) -> None:
    dri = probe_dri(captured_root)
    assert dri["present"] and dri["reason"] is None
    # No DRM driver answers for these nodes here (ENXIO/ENODEV): neither opened nor usable.
    common = {"char_device": True, "group": "video", "mode": "0660", "access_via": "root", "accessible": False,
              "usable": False}
    expected = []
    for kind, nodes in (("card", ("card0", "card1")), ("render", ("renderD128", "renderD129"))):
        for node, card in zip(nodes, CARDS):
            minor = card["minor"] + (128 if kind == "render" else 0)
            expected.append({"path": f"/dev/dri/{node}", "kind": kind, "device_number": f"226:{minor}",
                             "vendor_id": card["vendor"], "device_id": card["device"],
                             "vendor": {"0x10de": "NVIDIA", "0x1002": "AMD"}[card["vendor"]],
                             "driver": card["driver"], "pci_slot": card["slot"], "boot_vga": card["boot_vga"] == "1",
                             **common})
    got = [{k: v for k, v in d.items() if k != "open_error"} for d in dri["devices"]]
    assert got == expected
    # The open fails with ENXIO/ENODEV, not EACCES, and the report says what that means.
    assert {d["open_error"] for d in dri["devices"]} <= {"No such device or address (no driver behind the node)",
                                                         "No such device (no driver behind the node)"}


def test_dri_nodes_closed_to_this_user_are_not_accessible(captured_root: Path) -> None:
    dri = as_nobody(probe_dri, ".", cwd=captured_root)
    assert [d["accessible"] for d in dri["devices"]] == [False] * 4
    assert {d["open_error"] for d in dri["devices"]} == {"Permission denied"}
    assert {d["access_via"] for d in dri["devices"]} == {None}


def test_dri_platform_device_unknown_vendor_and_a_regular_file(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    root = make_root(tmp_path, [{"card": "card2", "render": "renderD130", "minor": 2, "slot": "fd4a0000.gpu",
                                 "vendor": "0xABCD", "device": "0x0001", "driver": "panfrost", "pci": False}])
    (root / "dev" / "dri" / "card9").write_text("")  # a stray regular file
    (root / "dev" / "dri" / "controlD64").write_text("")  # not a card/render name: ignored
    devs = {d["path"]: d for d in probe_dri(root)["devices"]}
    assert sorted(devs) == ["/dev/dri/card2", "/dev/dri/card9", "/dev/dri/renderD130"]
    card = devs["/dev/dri/card2"]
    assert (card["vendor"], card["driver"], card["pci_slot"], card["boot_vga"]) == ("unknown", "panfrost",
                                                                                    "fd4a0000.gpu", None)
    stray = devs["/dev/dri/card9"]
    assert stray["char_device"] is False and stray["accessible"] is False and stray["vendor_id"] is None
    assert stray["open_error"] == "not a character device"


def test_no_dri_on_this_machine() -> None:
    if os.path.exists("/dev/dri"):
        pytest.skip("this machine has /dev/dri")
    assert probe_dri("/") == {"present": False, "devices": [], "reason": "/dev/dri does not exist"}


def test_empty_dri_dir(tmp_path: Path) -> None:
    (tmp_path / "dev" / "dri").mkdir(parents=True)
    assert probe_dri(tmp_path) == {"present": False, "devices": [], "reason": "/dev/dri has no card or render nodes"}


# --- NVIDIA ------------------------------------------------------------------


def test_no_nvidia_here_reports_nvml_reason_without_raising() -> None:
    nv = probe_nvidia()
    assert nv["present"] is False and nv["gpus"] == [] and nv["driver_version"] is None
    assert nv["error"] == {"name": "NVMLError_LibraryNotFound", "code": 12, "message": "NVML Shared Library Not Found"}
    assert nv["reason"].startswith("NVML: NVML Shared Library Not Found (NVMLError_LibraryNotFound, code 12): ")


def test_fast_path_says_what_nvml_itself_says() -> None:
    # probe_nvidia skips importing pynvml when dlopen fails; the words must be NVML's own.
    import pynvml

    with pytest.raises(pynvml.NVMLError) as info:
        pynvml.nvmlInit()
    assert (type(info.value).__name__, info.value.value, str(info.value)) == LIBRARY_NOT_FOUND


def test_nvidia_kernel_module_read_from_a_captured_proc(tmp_path: Path) -> None:
    p = tmp_path / "proc" / "driver" / "nvidia"
    p.mkdir(parents=True)
    (p / "version").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n"
                               "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    nv = probe_nvidia(tmp_path)
    assert nv["kernel_module"] == "550.54.14" and nv["present"] is False
    assert nv["reason"] == "NVML is not consulted under --root (it reads the live driver)"


# --- Vulkan ------------------------------------------------------------------


@pytest.mark.gpu
def test_vulkan_loader_and_lavapipe_cpu_device() -> None:
    vk = probe_vulkan("/", deep=True, environ={})
    assert vk["loader"] == "/usr/lib/x86_64-linux-gnu/libvulkan.so.1"
    lvp = [i for i in vk["icds"] if i["manifest"].endswith("/lvp_icd.json")]
    assert lvp and lvp[0]["library_path"].endswith("libvulkan_lvp.so") and lvp[0]["error"] is None
    assert isinstance(vk["devices"], list) and any(d["type"] == "cpu" for d in vk["devices"]), vk["devices_reason"]
    assert vk["devices_reason"] is None


def test_vulkan_not_deep_enumerates_nothing() -> None:
    vk = probe_vulkan("/", environ={})
    assert vk["devices"] is None and vk["devices_reason"] == "not enumerated (use --deep)"


def test_vk_driver_files_override_the_search_and_accept_directories(tmp_path: Path) -> None:
    f = tmp_path / "only.json"
    f.write_text('{"file_format_version": "1.0.0", "ICD": {"library_path": "libx.so", "api_version": "1.3.0"}}')
    d = tmp_path / "dir"
    d.mkdir()
    (d / "b.json").write_text("{}")
    (d / "a.json").write_text("{}")
    assert icd_files("/", {"VK_DRIVER_FILES": str(f)}) == [str(f)]
    assert icd_files("/", {"VK_ICD_FILENAMES": str(f)}) == [str(f)]
    assert icd_files("/", {"VK_DRIVER_FILES": f"{d}:{f}"}) == [str(d / "a.json"), str(d / "b.json"), str(f)]
    added = icd_files("/", {"VK_DRIVER_FILES": str(f), "VK_ADD_DRIVER_FILES": str(d / "b.json")})
    assert added == [str(d / "b.json"), str(f)]


def test_icd_search_follows_the_loader_order() -> None:
    dirs = icd_search_dirs({"HOME": "/home/runner"})
    assert dirs == ["/home/runner/.config/vulkan/icd.d", "/etc/xdg/vulkan/icd.d", "/etc/vulkan/icd.d",
                    "/home/runner/.local/share/vulkan/icd.d", "/usr/local/share/vulkan/icd.d",
                    "/usr/share/vulkan/icd.d"]
    custom = icd_search_dirs({"XDG_DATA_DIRS": "/opt/mesa/share", "XDG_CONFIG_DIRS": "/cfg"})
    assert custom == ["/cfg/vulkan/icd.d", "/etc/vulkan/icd.d", "/opt/mesa/share/vulkan/icd.d",
                      "/usr/local/share/vulkan/icd.d", "/usr/share/vulkan/icd.d"]


def test_vulkan_under_a_captured_root(tmp_path: Path) -> None:
    lib = tmp_path / "usr" / "lib" / "x86_64-linux-gnu"
    lib.mkdir(parents=True)
    (lib / "libvulkan.so.1").write_bytes(b"")
    icd = tmp_path / "usr" / "share" / "vulkan" / "icd.d"
    icd.mkdir(parents=True)
    (icd / "nvidia_icd.json").write_text(json.dumps({"file_format_version": "1.0.1", "ICD": {
        "library_path": "libGLX_nvidia.so.0", "api_version": "1.3.277"}}))
    (icd / "broken.json").write_text("{not json")
    vk = probe_vulkan(tmp_path, deep=True, environ={})
    assert vk["loader"] == "/usr/lib/x86_64-linux-gnu/libvulkan.so.1"
    by_name = {i["manifest"]: i for i in vk["icds"]}
    assert by_name["/usr/share/vulkan/icd.d/nvidia_icd.json"] == {
        "manifest": "/usr/share/vulkan/icd.d/nvidia_icd.json", "library_path": "libGLX_nvidia.so.0",
        "api_version": "1.3.277", "error": None}
    assert by_name["/usr/share/vulkan/icd.d/broken.json"]["error"].startswith("JSONDecodeError")
    assert vk["devices"] is None and "under --root" in vk["devices_reason"]
    assert probe_vulkan(tmp_path / "empty", environ={})["loader"] is None


# --- Nix ---------------------------------------------------------------------


def test_nix_seed_stamp_states(tmp_path: Path) -> None:
    nix = tmp_path / "nix"
    (nix / "store").mkdir(parents=True)
    assert probe_nix(tmp_path)["seed_state"] == "absent"
    (nix / ".flywheel-seed.partial").write_text("id")
    assert probe_nix(tmp_path)["seed_state"] == "partial"
    (nix / ".flywheel-seed.json").write_text('{"schema": "someone-else/v9", "identity": "x"}')
    assert probe_nix(tmp_path)["seed_state"] == "unknown-format"
    (nix / ".flywheel-seed.json").write_text("not json")
    assert probe_nix(tmp_path)["seed_state"] == "unreadable"
    (nix / ".flywheel-seed.json").unlink()
    (tmp_path / "elsewhere.json").write_text('{"schema": "flywheel.tinyland.dev/nix-seed/v1", "identity": "x"}')
    (nix / ".flywheel-seed.json").symlink_to(tmp_path / "elsewhere.json")  # a planted link never counts
    assert probe_nix(tmp_path)["seed_state"] == "unreadable"


def test_nix_reads_the_stamp_the_real_seeder_writes(tmp_path: Path) -> None:
    from flywheel_runtime.nixseed import read_stamp, seed

    src = tmp_path / "image-nix"
    (src / "store" / "abc-hello").mkdir(parents=True)
    (src / "store" / "abc-hello" / "bin").write_text("#!/bin/sh\n")
    root = tmp_path / "pod"
    seed(src, root / "nix")
    nix = probe_nix(root)
    stamp = read_stamp(root / "nix")
    assert nix["store_present"] and nix["seed_state"] == "seeded"
    assert nix["seeded_from"] == stamp["identity"] and nix["seeded_at"] == stamp["seeded_at"]


# --- The document and its renderings -----------------------------------------


def test_hints_documents_match_the_checked_in_schema(captured_root: Path) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    env = {"FLYWHEEL_RUNNER_CLASS": "tinyland-nix-gpu", "FLYWHEEL_SCALE_SET": "tinyland-nix-gpu",
           "FLYWHEEL_NODE_NAME": "honey", "FLYWHEEL_OVERLAY": "tinyland"}
    for root, deep in (("/", False), ("/", True), (captured_root, False), (captured_root, True)):
        doc = collect(root, deep=deep, environ=env)
        jsonschema.validate(doc, SCHEMA)
    assert doc["runner"] == {"runner_class": "tinyland-nix-gpu", "scale_set": "tinyland-nix-gpu",
                             "overlay": "tinyland", "node": "honey"}


def test_schema_rejects_a_document_missing_a_section() -> None:
    doc = collect("/", environ={})
    del doc["kvm"]["usable"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_env_lines_are_shell_safe_and_survive_sourcing(openable_root: Path, tmp_path: Path) -> None:
    doc = collect(openable_root, environ={"FLYWHEEL_RUNNER_CLASS": "tiny land;$(rm -rf /)`x`",
                                          "FLYWHEEL_NODE_NAME": "honey"})
    text = to_env(doc)
    lines = text.splitlines()
    assert all(__import__("re").fullmatch(r"FLYWHEEL_[A-Z_]+=[A-Za-z0-9_.,:/+=@-]*", ln) for ln in lines), lines
    env = dict(ln.split("=", 1) for ln in lines)
    assert env["FLYWHEEL_DRI"] == "1" and env["FLYWHEEL_KVM"] == "0" and env["FLYWHEEL_NODE"] == "honey"
    assert env["FLYWHEEL_DRI_RENDER_NODES"] == "/dev/dri/renderD128,/dev/dri/renderD129"
    assert env["FLYWHEEL_DRI_VENDORS"] == "NVIDIA,AMD"
    assert env["FLYWHEEL_RUNNER_CLASS"] == "tiny_land___rm_-rf_/__x_"
    f = tmp_path / "env"
    f.write_text(text)
    # A clean environment: the caller's own FLYWHEEL_* (e.g. FLYWHEEL_CACHE_DIR) must not leak in.
    out = subprocess.run(["bash", "-c", f'set -a; . "{f}"; env'], capture_output=True, text=True, check=True,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    sourced = dict(ln.split("=", 1) for ln in out.stdout.splitlines() if ln.startswith("FLYWHEEL_"))
    assert sourced == env


def test_markdown_is_a_short_table(openable_root: Path) -> None:
    md = to_markdown(collect(openable_root, environ={"FLYWHEEL_RUNNER_CLASS": "a|b"}))
    lines = md.splitlines()
    assert lines[0] == "### flywheel runtime hints" and lines[2:4] == ["| | |", "|---|---|"]
    assert len(lines) == 10 and all(ln.count("|") == 3 for ln in lines[4:])
    assert "| DRI | /dev/dri/card0 NVIDIA nvidia, /dev/dri/card1 AMD amdgpu," in md
    assert "a/b" in md
    assert len(md.encode()) < 4096


def test_env_pairs_cover_every_section() -> None:
    keys = env_pairs(collect("/", environ={}))
    for word in ("KVM", "DRI", "NVIDIA", "VULKAN", "NIX", "RUNNER_CLASS", "NODE"):
        assert any(word in k for k in keys), word


def test_hints_cli_formats_and_root(tmp_path: Path) -> None:
    for fmt in ("json", "env", "markdown"):
        out = _cli("hints", "--format", fmt)
        assert out.returncode == 0 and out.stdout, out.stderr
    for args, env in ((["--root", str(tmp_path)], {}), ([], {"FLYWHEEL_ROOT": str(tmp_path)})):
        doc = json.loads(_cli("hints", *args, env=env).stdout)
        jsonschema.validate(doc, SCHEMA)
        assert doc["root"] == str(tmp_path) and not doc["kvm"]["present"]
        assert not doc["vulkan"]["icds"] and doc["vulkan"]["loader"] is None
    missing = _cli("hints", "--root", str(tmp_path / "typo"))
    assert missing.returncode == 7 and missing.stderr.strip() == (
        f"flywheel-runtime: hints: probe root {tmp_path / 'typo'} is not a directory (--root / $FLYWHEEL_ROOT)")


def test_hints_path_stays_light() -> None:
    """The runtime path imports no YAML, NVML, Vulkan, wgpu or kubernetes (here: no NVIDIA library)."""
    heavy = ["yaml", "pynvml", "vulkan", "wgpu", "kubernetes", "cffi"]
    code = ("import sys, contextlib, io\n"
            "from flywheel_runtime.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['hints']) == 0\n"
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    bare = subprocess.run([sys.executable, "-c", f"import sys, flywheel_runtime, flywheel_runtime.probe\n"
                                                 f"print(','.join(m for m in {heavy!r} if m in sys.modules))"],
                          capture_output=True, text=True, check=True)
    assert bare.stdout.strip() == ""


def test_check_jsonschema_accepts_the_cli_output(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("check-jsonschema")
    out = tmp_path / "hints.json"
    out.write_text(_cli("hints", "--deep").stdout)
    res = subprocess.run([str(exe), "--schemafile", SCHEMA_FILE, str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture(scope="module")
def fake_nvml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a stand-in libnvidia-ml.so.1, built from data/fake_nvml.c."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        pytest.skip("no C compiler to build the stand-in NVML library (apt-get install gcc)")
    out = tmp_path_factory.mktemp("nvml")
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(out / "libnvidia-ml.so.1"),
                    str(Path(__file__).with_name("data") / "fake_nvml.c")], check=True)
    return out


def test_nvidia_through_nvml_when_a_driver_answers(fake_nvml: Path) -> None:
    out = _cli("hints", env={"LD_LIBRARY_PATH": str(fake_nvml)})
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["nvidia"] == {
        "present": True, "driver_version": "550.54.15", "cuda_version": "12.4", "kernel_module": None,
        "reason": None, "error": None,
        "gpus": [{"index": 0, "name": "NVIDIA H200", "uuid": "GPU-11111111-2222-3333-4444-555555555555",
                  "memory_total": 150754820096, "mig": {"enabled": True, "pending": True}},
                 {"index": 1, "name": "NVIDIA L4", "uuid": "GPU-66666666-7777-8888-9999-000000000000",
                  "memory_total": 24152899584, "mig": None}]}
    env = dict(ln.split("=", 1) for ln in to_env(doc).splitlines())
    assert (env["FLYWHEEL_NVIDIA"], env["FLYWHEEL_NVIDIA_DRIVER"], env["FLYWHEEL_NVIDIA_GPUS"]) == ("1", "550.54.15", "2")
    assert "| NVIDIA | NVIDIA H200, NVIDIA L4 (driver 550.54.15, CUDA 12.4) |" in to_markdown(doc)


@pytest.mark.parametrize("mode,name,code,message", [("driver", "NVMLError_DriverNotLoaded", 9, "Driver Not Loaded"),
                                                    ("perm", "NVMLError_NoPermission", 4, "Insufficient Permissions")])
def test_nvml_failures_are_reported_never_raised(fake_nvml: Path, mode: str, name: str, code: int,
                                                 message: str) -> None:
    out = _cli("hints", "--format", "json", env={"LD_LIBRARY_PATH": str(fake_nvml), "FAKE_NVML_MODE": mode})
    assert out.returncode == 0, out.stderr
    nv = json.loads(out.stdout)["nvidia"]
    assert nv["present"] is False and nv["error"] == {"name": name, "code": code, "message": message}
    assert nv["reason"] == f"NVML: {message} ({name}, code {code})"
